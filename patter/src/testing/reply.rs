//! What a simulated call reports back: the engine's commands, and a tool's reply.

use crate::engine::EngineCommand;

/// A command the call sent the engine, as recorded by the scripted engine.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SentCommand {
    /// Caller audio, `bytes` long in the engine's format.
    AppendAudio {
        /// Its length.
        bytes: usize,
    },
    /// A tool's result.
    ToolResult {
        /// The engine's id of the call.
        call_id: String,
        /// What the model was handed.
        output: String,
    },
    /// The model may go on after its tools.
    ContinueAfterTools,
    /// Words to say verbatim (the first message).
    SayVerbatim {
        /// The words.
        text: String,
    },
    /// One response with its own instructions (a goodbye).
    Respond {
        /// The instructions.
        instructions: String,
    },
    /// The caller's typed words (a text conversation).
    CallerText {
        /// The words.
        text: String,
    },
    /// Words put in the conversation as the agent's (a text conversation's greeting).
    AgentSaid {
        /// The words.
        text: String,
    },
    /// The caller heard only `heard_ms` of this item.
    Truncate {
        /// The item.
        item_id: String,
        /// How much of it was heard.
        heard_ms: u64,
    },
}

impl From<EngineCommand<'_>> for SentCommand {
    fn from(command: EngineCommand<'_>) -> Self {
        match command {
            EngineCommand::AppendAudio(audio) => SentCommand::AppendAudio { bytes: audio.len() },
            EngineCommand::ToolResult { call_id, output } => SentCommand::ToolResult {
                call_id: call_id.to_owned(),
                output: output.to_owned(),
            },
            // A scripted engine opens once: no session of it resumes another.
            EngineCommand::ContinueAfterTools | EngineCommand::Resume => {
                SentCommand::ContinueAfterTools
            }
            EngineCommand::SayVerbatim { text } => SentCommand::SayVerbatim {
                text: text.to_owned(),
            },
            EngineCommand::Respond { instructions } => SentCommand::Respond {
                instructions: instructions.to_owned(),
            },
            EngineCommand::CallerText { text } => SentCommand::CallerText {
                text: text.to_owned(),
            },
            EngineCommand::AgentSaid { text } => SentCommand::AgentSaid {
                text: text.to_owned(),
            },
            EngineCommand::Truncate { item_id, heard_ms } => SentCommand::Truncate {
                item_id: item_id.to_owned(),
                heard_ms,
            },
        }
    }
}

impl SentCommand {
    /// One line for the event log.
    pub(crate) fn describe(&self) -> String {
        match self {
            SentCommand::AppendAudio { bytes } => format!("{bytes} bytes of caller audio"),
            SentCommand::ToolResult { call_id, output } => {
                format!("result of {call_id}: {}", shorten(output))
            }
            SentCommand::ContinueAfterTools => "continue after the tools".to_owned(),
            SentCommand::SayVerbatim { text } => format!("say verbatim {:?}", shorten(text)),
            SentCommand::Respond { instructions } => {
                format!("respond with instructions {:?}", shorten(instructions))
            }
            SentCommand::CallerText { text } => format!("caller typed {:?}", shorten(text)),
            SentCommand::AgentSaid { text } => format!("agent said {:?}", shorten(text)),
            SentCommand::Truncate { item_id, heard_ms } => {
                format!("truncate {item_id} at {heard_ms} ms")
            }
        }
    }
}

/// At most 120 characters of `text`, for a log line.
fn shorten(text: &str) -> String {
    const KEEP: usize = 120;
    match text.char_indices().nth(KEEP) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// What the model got back for one tool call.
///
/// ```
/// # use patter::testing::ToolReply;
/// # fn check(reply: ToolReply) {
/// assert_eq!(reply.json()["in_stock"], true);
/// assert_eq!(reply.error_type(), None);
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ToolReply {
    pub(crate) name: String,
    pub(crate) call_id: String,
    pub(crate) output: Option<String>,
    pub(crate) json: Option<crate::JsonValue>,
    pub(crate) continued: bool,
}

impl ToolReply {
    pub(crate) fn new(name: &str, call_id: &str, output: Option<String>, continued: bool) -> Self {
        let json = output.as_deref().and_then(|o| serde_json::from_str(o).ok());
        ToolReply {
            name: name.to_owned(),
            call_id: call_id.to_owned(),
            output,
            json,
            continued,
        }
    }

    /// The tool's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The engine's id of the call.
    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// What the model was handed, or `None` if the call ended instead (the tool hung up or
    /// transferred).
    pub fn output(&self) -> Option<&str> {
        self.output.as_deref()
    }

    /// What the model was handed.
    ///
    /// # Panics
    /// If the call ended instead of answering.
    pub fn text(&self) -> &str {
        match &self.output {
            Some(output) => output,
            None => panic!(
                "{} ({}) got no result: the call ended instead",
                self.name, self.call_id
            ),
        }
    }

    /// What the model was handed, as JSON.
    ///
    /// # Panics
    /// If it is not JSON, or the call ended instead of answering.
    pub fn json(&self) -> &crate::JsonValue {
        match &self.json {
            Some(json) => json,
            None => panic!(
                "the result of {} ({}) is not JSON: {:?}",
                self.name, self.call_id, self.output
            ),
        }
    }

    /// The error's type (`invalid_arguments`, `tool_error`, `timeout`, …) if the model was
    /// handed an error.
    pub fn error_type(&self) -> Option<&str> {
        self.json.as_ref()?.get("error")?.get("type")?.as_str()
    }

    /// The error's message if the model was handed an error.
    pub fn error_message(&self) -> Option<&str> {
        self.json.as_ref()?.get("error")?.get("message")?.as_str()
    }

    /// Whether the model was told to go on once this result (and the rest of its response's)
    /// was in.
    pub fn continued(&self) -> bool {
        self.continued
    }

    /// Whether the call ended instead of answering.
    pub fn ended_call(&self) -> bool {
        self.output.is_none()
    }
}
