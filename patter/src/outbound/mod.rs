//! Outbound calls: [`Dial`] what to call, [`Server::dial`](crate::Server::dial) places it, and
//! the [`OutboundCall`] handle follows it to its [`CallOutcome`].
//!
//! ```no_run
//! use patter::outbound::{CallOutcome, Dial, MachineDetection};
//! use patter::Patter;
//!
//! #[patter::agent(system_prompt = "You remind {name} of an appointment.")]
//! struct Reminder;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let server = Patter::from_env()?.start(Reminder).await?;
//! let call = server
//!     .dial(
//!         Dial::to("+15550123")
//!             .variable("name", "Ada")
//!             .machine_detection(MachineDetection::HumanFirst)
//!             .voicemail("Hi Ada, this is a reminder of your appointment tomorrow at 10."),
//!     )
//!     .await?;
//! match call.outcome().await {
//!     CallOutcome::Answered { summary, .. } => println!("talked: {summary:?}"),
//!     other => println!("{other}"),
//! }
//! server.shutdown().await?;
//! # Ok(()) }
//! ```
//!
//! Everything a dialled call needs later (its agent, variables, first message, machine
//! detection, voicemail) travels signed in the webhook URLs Twilio calls back, so any
//! instance behind a load balancer can take its webhook and its stream. Only the handle's
//! own bookkeeping (status events and the outcome) lives in the process that dialled.

mod handle;
mod number;
pub(crate) mod state;
pub(crate) mod tracker;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

pub use handle::OutboundCall;
pub use number::is_e164;

use crate::call::CallSummary;

/// What to do about answering machines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MachineDetection {
    /// No detection: whoever answers hears the agent.
    #[default]
    Off,
    /// The agent greets at once while Twilio listens in the background (async AMD); if a
    /// machine answered, the agent stops and the voicemail (if any) is left.
    HumanFirst,
    /// Nothing is said until Twilio has decided who answered (a few seconds of silence
    /// for a human), then the agent greets a human or the voicemail is left.
    Wait,
}

/// One outbound call to place: the number, and what may differ from the agent's defaults.
///
/// Its `Debug` output leaves out the number, the variables and the voicemail: they are
/// about a person.
#[derive(Clone)]
pub struct Dial {
    pub(crate) to: String,
    pub(crate) agent: Option<String>,
    pub(crate) first_message: Option<Option<String>>,
    pub(crate) variables: BTreeMap<String, String>,
    pub(crate) machine_detection: MachineDetection,
    pub(crate) voicemail: Option<String>,
    pub(crate) ring_timeout: Option<Duration>,
    pub(crate) time_limit: Option<Duration>,
}

impl Dial {
    /// A call to `to`, an E.164 number (`+15550123`), with the agent's settings.
    pub fn to(to: impl Into<String>) -> Self {
        Dial {
            to: to.into(),
            agent: None,
            first_message: None,
            variables: BTreeMap::new(),
            machine_detection: MachineDetection::Off,
            voicemail: None,
            ring_timeout: None,
            time_limit: None,
        }
    }

    /// Runs this call with the agent registered under `name`
    /// ([`Patter::agent`](crate::Patter::agent)) instead of the server's own.
    pub fn agent(mut self, name: impl Into<String>) -> Self {
        self.agent = Some(name.into());
        self
    }

    /// A prompt variable for this call (`{name}` in the system prompt).
    pub fn variable(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.variables.insert(name.into(), value.into());
        self
    }

    /// The first thing the agent says on this call.
    pub fn first_message(mut self, text: impl Into<String>) -> Self {
        self.first_message = Some(Some(text.into()));
        self
    }

    /// No first message: the agent waits for the callee to speak.
    pub fn no_first_message(mut self) -> Self {
        self.first_message = Some(None);
        self
    }

    /// Answering-machine detection (default [`MachineDetection::Off`]).
    pub fn machine_detection(mut self, mode: MachineDetection) -> Self {
        self.machine_detection = mode;
        self
    }

    /// Left verbatim on an answering machine after its beep, then the call hangs up.
    /// Without one, a call a machine answers hangs up at once. Needs machine detection.
    pub fn voicemail(mut self, message: impl Into<String>) -> Self {
        self.voicemail = Some(message.into());
        self
    }

    /// How long the phone may ring before the call counts as not answered (Twilio's
    /// default is 60 s; 5 to 600 s).
    pub fn ring_timeout(mut self, timeout: Duration) -> Self {
        self.ring_timeout = Some(timeout);
        self
    }

    /// The longest the call may last once answered (Twilio's `TimeLimit`).
    pub fn time_limit(mut self, limit: Duration) -> Self {
        self.time_limit = Some(limit);
        self
    }
}

impl fmt::Debug for Dial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dial")
            .field("agent", &self.agent)
            .field("variables", &self.variables.keys().collect::<Vec<_>>())
            .field("machine_detection", &self.machine_detection)
            .field("voicemail", &self.voicemail.is_some())
            .field("ring_timeout", &self.ring_timeout)
            .field("time_limit", &self.time_limit)
            .finish_non_exhaustive()
    }
}

/// Where a dialled call is, as Twilio reports it (`CallStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallStatus {
    /// Waiting to be placed.
    Queued,
    /// Twilio started dialling.
    Initiated,
    /// The phone is ringing.
    Ringing,
    /// Answered (by a person or a machine).
    InProgress,
    /// Answered, then ended.
    Completed,
    /// The line was busy.
    Busy,
    /// Nobody answered in time.
    NoAnswer,
    /// The call could not be placed.
    Failed,
    /// Cancelled before it was answered.
    Canceled,
}

impl CallStatus {
    /// Reads Twilio's `CallStatus` value.
    pub fn parse(value: &str) -> Option<CallStatus> {
        Some(match value {
            "queued" => CallStatus::Queued,
            "initiated" => CallStatus::Initiated,
            "ringing" => CallStatus::Ringing,
            "in-progress" | "answered" => CallStatus::InProgress,
            "completed" => CallStatus::Completed,
            "busy" => CallStatus::Busy,
            "no-answer" => CallStatus::NoAnswer,
            "failed" => CallStatus::Failed,
            "canceled" => CallStatus::Canceled,
            _ => return None,
        })
    }

    /// Whether the call is over.
    pub fn is_final(self) -> bool {
        self.stage() == 4
    }

    /// Calls only move forward: queued, initiated, ringing, in progress, over.
    pub(crate) fn stage(self) -> u8 {
        match self {
            CallStatus::Queued => 0,
            CallStatus::Initiated => 1,
            CallStatus::Ringing => 2,
            CallStatus::InProgress => 3,
            _ => 4,
        }
    }
}

impl fmt::Display for CallStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CallStatus::Queued => "queued",
            CallStatus::Initiated => "initiated",
            CallStatus::Ringing => "ringing",
            CallStatus::InProgress => "in-progress",
            CallStatus::Completed => "completed",
            CallStatus::Busy => "busy",
            CallStatus::NoAnswer => "no-answer",
            CallStatus::Failed => "failed",
            CallStatus::Canceled => "canceled",
        })
    }
}

/// Who answered, as Twilio's machine detection decided (`AnsweredBy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AnsweredBy {
    /// A person.
    Human,
    /// A machine, detected at the start of its greeting (`machine_start`).
    MachineStart,
    /// A machine, whose greeting ended with a beep (`machine_end_beep`).
    MachineEndBeep,
    /// A machine, whose greeting ended in silence (`machine_end_silence`).
    MachineEndSilence,
    /// A machine, whose greeting ended otherwise (`machine_end_other`).
    MachineEndOther,
    /// A fax machine.
    Fax,
    /// Twilio could not tell (`unknown`): treated as a person, so nobody is hung up on.
    Unknown,
}

impl AnsweredBy {
    /// Reads Twilio's `AnsweredBy` value; anything else is [`AnsweredBy::Unknown`].
    pub fn parse(value: &str) -> AnsweredBy {
        match value {
            "human" => AnsweredBy::Human,
            "machine_start" => AnsweredBy::MachineStart,
            "machine_end_beep" => AnsweredBy::MachineEndBeep,
            "machine_end_silence" => AnsweredBy::MachineEndSilence,
            "machine_end_other" => AnsweredBy::MachineEndOther,
            "fax" => AnsweredBy::Fax,
            _ => AnsweredBy::Unknown,
        }
    }

    /// Any of the machine values.
    pub fn is_machine(self) -> bool {
        matches!(
            self,
            AnsweredBy::MachineStart
                | AnsweredBy::MachineEndBeep
                | AnsweredBy::MachineEndSilence
                | AnsweredBy::MachineEndOther
        )
    }

    /// A machine whose greeting is over: the moment to leave a voicemail.
    pub fn is_end_of_greeting(self) -> bool {
        self.is_machine() && self != AnsweredBy::MachineStart
    }

    /// Who the agent talks to: a person, or someone Twilio could not classify.
    pub fn is_person(self) -> bool {
        matches!(self, AnsweredBy::Human | AnsweredBy::Unknown)
    }
}

impl fmt::Display for AnsweredBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AnsweredBy::Human => "human",
            AnsweredBy::MachineStart => "machine_start",
            AnsweredBy::MachineEndBeep => "machine_end_beep",
            AnsweredBy::MachineEndSilence => "machine_end_silence",
            AnsweredBy::MachineEndOther => "machine_end_other",
            AnsweredBy::Fax => "fax",
            AnsweredBy::Unknown => "unknown",
        })
    }
}

/// Something that happened to a dialled call, in order ([`OutboundCall::next_event`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DialEvent {
    /// Twilio reported a new status. Replayed and out-of-order reports are not repeated.
    Status(CallStatus),
    /// Machine detection decided who answered.
    Answered(AnsweredBy),
}

/// How a dialled call ended.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum CallOutcome {
    /// A person answered (or Twilio could not tell, or detection was off) and talked to
    /// the agent. `summary` is the conversation, when its stream ran on this server.
    Answered {
        /// What machine detection said, if it ran.
        answered_by: Option<AnsweredBy>,
        /// The call's summary (`None` when its stream ran on another instance).
        summary: Option<Box<CallSummary>>,
    },
    /// A machine answered and the voicemail was left in full.
    VoicemailLeft {
        /// How the machine's greeting ended.
        answered_by: AnsweredBy,
    },
    /// A machine answered and the voicemail started, but the call ended before it was
    /// all played.
    VoicemailInterrupted {
        /// How the machine's greeting ended.
        answered_by: AnsweredBy,
    },
    /// A machine answered and, with no voicemail to leave, the call hung up.
    Machine {
        /// What detection said.
        answered_by: AnsweredBy,
    },
    /// A fax machine answered; the call hung up.
    Fax,
    /// Nobody answered in time.
    NoAnswer,
    /// The line was busy.
    Busy,
    /// Twilio could not place the call.
    Failed {
        /// Twilio's reason: its error code or SIP response, when it gave one.
        reason: String,
    },
    /// The call was cancelled before anyone answered.
    Canceled,
    /// No final word on the call reached this server in time (its callbacks went to
    /// another instance, or the server stopped first).
    Unknown {
        /// The last status this server saw.
        last_status: Option<CallStatus>,
    },
}

impl fmt::Display for CallOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallOutcome::Answered { summary, .. } => match summary {
                Some(summary) => write!(f, "answered; {}", summary.reason),
                None => f.write_str("answered"),
            },
            CallOutcome::VoicemailLeft { answered_by } => {
                write!(f, "voicemail left ({answered_by})")
            }
            CallOutcome::VoicemailInterrupted { answered_by } => {
                write!(f, "voicemail cut off ({answered_by})")
            }
            CallOutcome::Machine { answered_by } => {
                write!(f, "a machine answered ({answered_by}); hung up")
            }
            CallOutcome::Fax => f.write_str("a fax machine answered; hung up"),
            CallOutcome::NoAnswer => f.write_str("no answer"),
            CallOutcome::Busy => f.write_str("busy"),
            CallOutcome::Failed { reason } => write!(f, "failed: {reason}"),
            CallOutcome::Canceled => f.write_str("cancelled"),
            CallOutcome::Unknown { last_status } => match last_status {
                Some(status) => write!(f, "unknown (last status {status})"),
                None => f.write_str("unknown"),
            },
        }
    }
}

/// Why a call could not be placed. Nothing was dialled, and no call slot is held.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DialError {
    /// A number is not E.164 (`+` then 8 to 15 digits, the first not 0). The message
    /// does not repeat the number.
    #[error("the {which} number is not E.164 (+ then 8 to 15 digits)")]
    InvalidNumber {
        /// `to`, or `from` (the configured `PHONE_NUMBER`).
        which: &'static str,
        /// The number given.
        number: String,
    },
    /// No agent is registered under this name.
    #[error("no agent is registered as {0:?}")]
    UnknownAgent(String),
    /// A voicemail needs machine detection to know when the machine answered.
    #[error("a voicemail message needs machine detection (HumanFirst or Wait)")]
    VoicemailWithoutDetection,
    /// A setting is out of range.
    #[error("{0}")]
    Invalid(String),
    /// The server is draining: it places no new calls.
    #[error("the server is shutting down and places no new calls")]
    Draining,
    /// The server is at `max_concurrent_calls`.
    #[error("the server is at its call limit")]
    AtCapacity,
    /// Twilio refused to create the call.
    #[error("Twilio refused the call: HTTP {status}{}: {message}", code.map(|c| format!(", error {c}")).unwrap_or_default())]
    Rejected {
        /// The HTTP status.
        status: u16,
        /// Twilio's error code (e.g. 21211, an invalid `To`).
        code: Option<u32>,
        /// Twilio's message.
        message: String,
    },
    /// Twilio could not be reached, or answered without a call id.
    #[error("Twilio could not be reached: {0}")]
    Network(String),
}
