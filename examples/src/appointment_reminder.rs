//! An outbound agent: it calls a patient to confirm an appointment, leaves a voicemail when
//! a machine answers, and reports how the call went.

use std::process::ExitCode;

use patter::outbound::{CallOutcome, Dial, DialError, DialEvent, MachineDetection};
use patter::{CallContext, ToolError};

/// Arguments of `record_reply`.
#[patter::args]
pub struct Reply {
    /// Whether the patient confirmed the appointment.
    pub confirmed: bool,
    /// What the patient asked for instead, if anything (another day, a callback).
    pub request: Option<String>,
}

/// What was recorded.
#[patter::data]
#[derive(Debug, PartialEq)]
pub struct Recorded {
    /// Always true: the reply is stored.
    pub recorded: bool,
}

/// Record the patient's reply: whether they confirmed, and any request.
#[patter::tool]
pub async fn record_reply(args: Reply, call: &CallContext) -> Result<Recorded, ToolError> {
    // A stand-in for the practice's booking system.
    tracing::info!(
        call_id = call.call_id(),
        confirmed = args.confirmed,
        has_request = args.request.is_some(),
        "patient replied"
    );
    Ok(Recorded { recorded: true })
}

/// The reminder agent: `{name}` and `{when}` come with each call.
#[patter::agent(
    system_prompt = "You are calling {name} on behalf of Riverside Dental to confirm their \
                     appointment {when}. Ask whether they can make it. Record their answer with \
                     record_reply, thank them, then end the call with end_call. Be brief.",
    first_message = "Hello, this is Riverside Dental calling about your appointment.",
    tools(record_reply),
    // Each dial sets both; these are for trying the agent out (`console`, `--softphone`).
    variables(name = "there", when = "tomorrow at 10 a.m.")
)]
pub struct AppointmentReminder;

/// The voicemail left when a machine answers.
pub fn voicemail(name: &str, when: &str) -> String {
    format!(
        "Hello {name}, this is Riverside Dental reminding you of your appointment {when}. \
         Please call us back if you need to change it. Goodbye."
    )
}

/// `appointment_reminder <+number> [--name NAME] [--when WHEN]`: calls the number, prints
/// each status and the outcome on stdout, and exits 0 once the call is over (1 if Twilio
/// refused the call, 2 on a bad argument or setting).
pub async fn run(args: Vec<String>) -> ExitCode {
    let mut to = None;
    let (mut name, mut when) = (String::from("there"), String::from("tomorrow at 10 a.m."));
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--name" => name = args.next().unwrap_or_default(),
            "--when" => when = args.next().unwrap_or_default(),
            _ if to.is_none() && !arg.starts_with("--") => to = Some(arg),
            _ => {
                eprintln!("error: unexpected argument {arg:?}");
                return usage();
            }
        }
    }
    let Some(to) = to else {
        return usage();
    };
    let (phone, agent) = match crate::settings(AppointmentReminder) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    let server = match phone.start(agent).await {
        Ok(server) => server,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let dial = Dial::to(&to)
        .variable("name", &name)
        .variable("when", &when)
        .machine_detection(MachineDetection::HumanFirst)
        .voicemail(voicemail(&name, &when));
    let mut call = match server.dial(dial).await {
        Ok(call) => call,
        Err(e) => {
            eprintln!("error: {e}");
            let _ = server.shutdown().await;
            return match e {
                DialError::InvalidNumber { .. } => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            };
        }
    };
    println!("calling {to}: {}", call.sid());
    while let Some(event) = call.next_event().await {
        match event {
            DialEvent::Status(status) => println!("status: {status}"),
            DialEvent::Answered(by) => println!("answered by: {by}"),
            _ => {}
        }
    }
    let outcome = call.outcome().await;
    println!("outcome: {outcome}");
    if let CallOutcome::Answered {
        summary: Some(summary),
        ..
    } = &outcome
    {
        println!(
            "conversation: {} transcript entries, {} tool calls",
            summary.transcript.len(),
            summary.tool_calls.len()
        );
    }
    match server.shutdown().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage() -> ExitCode {
    eprintln!("usage: appointment_reminder <+E.164 number> [--name NAME] [--when WHEN]");
    ExitCode::from(2)
}
