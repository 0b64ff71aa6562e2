//! Calls a number to confirm an appointment; leaves a voicemail if a machine answers.
//!
//! ```sh
//! cargo run --bin appointment_reminder -- +15550123 --name Ada --when "on Friday at 3 p.m."
//! cargo run --bin appointment_reminder -- console --param name=Ada   # try it in text
//! cargo run --bin appointment_reminder -- --softphone                # or in the browser
//! ```

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    // A missing .env file is fine: the variables may come from the environment.
    let _ = dotenvy::dotenv();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let agent = patter_examples::appointment_reminder::AppointmentReminder;
    if let Ok(code) = patter_examples::try_locally(agent, &args).await {
        return code;
    }
    // stdout is the call's progress; logs go to stderr.
    let _telemetry = patter_examples::logging(true, "warn");
    patter_examples::appointment_reminder::run(args).await
}
