//! Calls a number to confirm an appointment; leaves a voicemail if a machine answers.
//!
//! ```sh
//! cargo run --bin appointment_reminder -- +15550123 --name Ada --when "on Friday at 3 p.m."
//! ```

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    // A missing .env file is fine: the variables may come from the environment.
    let _ = dotenvy::dotenv();
    // stdout is the call's progress; logs go to stderr.
    let _telemetry = patter_examples::logging(true, "warn");
    patter_examples::appointment_reminder::run(std::env::args().skip(1).collect()).await
}
