//! The scripted engine: plays the model. The test decides what it says; every command the
//! call sends it is recorded.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::SentCommand;
use super::state::Shared;
use crate::engine::{Engine, EngineCommand, EngineError, EngineEvent, EngineSession, EngineSetup};

/// One event the test has the engine send, owned until the call reads it.
#[derive(Debug, Clone)]
pub(crate) enum Said {
    Ready,
    ResponseStarted(String),
    Audio {
        response_id: String,
        item_id: String,
        audio: String,
    },
    SpeechStarted,
    SpeechStopped,
    FunctionCall {
        response_id: String,
        call_id: String,
        name: String,
        arguments: String,
    },
    ResponseDone(String),
    UserTranscript(String),
    AgentTranscript(String),
    Error {
        code: String,
        message: String,
        fatal: bool,
    },
    /// Not an event at all: the call counts it and goes on.
    Garbage,
    /// The connection drops.
    Drop,
}

/// A numbered frame (test frames count from 1; the automatic `Ready` is 0).
pub(crate) type Frame = (u64, Said);

/// The engine of a simulated call.
pub(crate) struct ScriptedEngine {
    pub(crate) shared: Arc<Shared>,
    pub(crate) frames: Mutex<Option<mpsc::UnboundedReceiver<Frame>>>,
    /// Set to refuse the session with this message.
    pub(crate) unavailable: Option<String>,
    /// The model of the engine the agent would run on, when it names none.
    pub(crate) default_model: &'static str,
}

impl Engine for ScriptedEngine {
    type Session = ScriptedSession;

    fn default_model(&self) -> &str {
        self.default_model
    }

    fn name(&self) -> &'static str {
        "scripted"
    }

    async fn open(&self, setup: &EngineSetup) -> Result<ScriptedSession, EngineError> {
        self.shared.update(|s| s.setup = Some(setup.clone()));
        if let Some(message) = &self.unavailable {
            self.shared
                .event(format!("call → engine: open refused ({message})"));
            return Err(EngineError::Connect(message.clone()));
        }
        let frames = self
            .frames
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
            .ok_or_else(|| EngineError::Connect("the scripted engine opens once".into()))?;
        self.shared.event(format!(
            "call → engine: open (model {}, {} tools)",
            setup.model,
            setup.tools.len()
        ));
        Ok(ScriptedSession {
            shared: Arc::clone(&self.shared),
            frames,
            // A real engine confirms its configuration at once.
            ready_sent: false,
            handed_out: None,
        })
    }
}

/// One simulated engine session.
pub(crate) struct ScriptedSession {
    shared: Arc<Shared>,
    frames: mpsc::UnboundedReceiver<Frame>,
    ready_sent: bool,
    /// The frame last handed to the call: handled once the call asks for the next one.
    handed_out: Option<u64>,
}

impl EngineSession for ScriptedSession {
    type Frame = Said;

    async fn recv(&mut self) -> Result<Said, EngineError> {
        if let Some(n) = self.handed_out.take() {
            self.shared
                .update(|s| s.engine_handled = s.engine_handled.max(n));
        }
        if !self.ready_sent {
            self.ready_sent = true;
            return Ok(Said::Ready);
        }
        match self.frames.recv().await {
            Some((_, Said::Drop)) | None => {
                self.shared.event("engine: connection dropped");
                Err(EngineError::Closed(
                    "the engine connection dropped".to_owned(),
                ))
            }
            Some((n, said)) => {
                self.handed_out = Some(n);
                Ok(said)
            }
        }
    }

    fn parse<'f>(&mut self, frame: &'f Said) -> Result<EngineEvent<'f>, EngineError> {
        let text = |s: &'f String| Cow::Borrowed(s.as_str());
        Ok(match frame {
            Said::Ready => EngineEvent::Ready,
            Said::ResponseStarted(id) => EngineEvent::ResponseStarted {
                response_id: text(id),
            },
            Said::Audio {
                response_id,
                item_id,
                audio,
            } => EngineEvent::Audio {
                response_id: text(response_id),
                item_id: text(item_id),
                audio: text(audio),
            },
            Said::SpeechStarted => EngineEvent::SpeechStarted,
            Said::SpeechStopped => EngineEvent::SpeechStopped,
            Said::FunctionCall {
                response_id,
                call_id,
                name,
                arguments,
            } => EngineEvent::FunctionCall {
                response_id: text(response_id),
                call_id: text(call_id),
                name: text(name),
                arguments: text(arguments),
            },
            Said::ResponseDone(id) => EngineEvent::ResponseDone {
                response_id: text(id),
                status: Cow::Borrowed("completed"),
                usage: None,
            },
            Said::UserTranscript(t) => EngineEvent::UserTranscript { text: text(t) },
            Said::AgentTranscript(t) => EngineEvent::AgentTranscript { text: text(t) },
            Said::Error {
                code,
                message,
                fatal,
            } => EngineEvent::Error {
                code: Some(text(code)),
                message: text(message),
                fatal: *fatal,
            },
            Said::Garbage => {
                return Err(EngineError::Malformed("not an event".to_owned()));
            }
            Said::Drop => EngineEvent::Ignored,
        })
    }

    async fn send(&mut self, command: EngineCommand<'_>) -> Result<(), EngineError> {
        let sent = SentCommand::from(command);
        self.shared.update(|s| {
            match &sent {
                SentCommand::AppendAudio { bytes } => {
                    s.push_run("append", *bytes as u64, |count, bytes| {
                        format!("call → engine: caller audio, {count} chunks, {bytes} bytes")
                    });
                }
                other => s.push_event(format!("call → engine: {}", other.describe())),
            }
            s.commands.push(sent);
        });
        Ok(())
    }

    async fn close(self) {
        self.shared.event("call → engine: close");
    }
}
