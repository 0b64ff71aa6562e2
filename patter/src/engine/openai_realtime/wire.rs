//! OpenAI Realtime (GA) on the wire: the client events patter sends and the server events it
//! reads. Builders write each message into one exactly sized string where it is sent per
//! frame; the parser reads only the fields patter acts on, borrowing from the frame.

use std::borrow::Cow;

use serde::de::{IgnoredAny, MapAccess};
use serde_json::{Value, json};

use super::ServerVad;
use crate::audio::{AudioChunk, AudioFormat};
use crate::engine::json::{Fields, Object, Text};
use crate::engine::{EngineEvent, EngineSetup, Modality, Usage};
use crate::tool::ToolDefinition;

fn format_json(format: AudioFormat) -> Value {
    match format {
        AudioFormat::Pcmu => json!({ "type": "audio/pcmu" }),
        AudioFormat::Pcm24k => json!({ "type": "audio/pcm", "rate": 24000 }),
    }
}

/// A tool definition as a Realtime `tools[]` entry.
pub fn tool_json(tool: &ToolDefinition) -> Value {
    json!({
        "type": "function",
        "name": tool.name,
        "description": tool.description,
        "parameters": tool.parameters,
    })
}

/// The GA `session.update` for a phone call: audio both ways in the setup's format, server
/// VAD that starts and interrupts responses, input transcription, the tools. In text
/// modality only `output_modalities` differs, so a text conversation runs with the call's
/// own settings.
pub fn session_update(
    setup: &EngineSetup,
    vad: &ServerVad,
    transcription_model: Option<&str>,
) -> String {
    let tools: Vec<Value> = setup.tools.iter().map(tool_json).collect();
    let mut input = json!({
        "format": format_json(setup.audio),
        "turn_detection": {
            "type": "server_vad",
            "threshold": vad.threshold,
            "prefix_padding_ms": vad.prefix_padding_ms,
            "silence_duration_ms": vad.silence_duration_ms,
            "create_response": true,
            "interrupt_response": true
        }
    });
    if let Some(model) = transcription_model {
        input["transcription"] = json!({ "model": model });
    }
    json!({
        "type": "session.update",
        "session": {
            "type": "realtime",
            "model": setup.model,
            "output_modalities": [match setup.modality {
                Modality::Text => "text",
                _ => "audio",
            }],
            "instructions": setup.instructions,
            "audio": {
                "input": input,
                "output": { "format": format_json(setup.audio), "voice": setup.voice }
            },
            "tools": tools,
            "tool_choice": "auto"
        }
    })
    .to_string()
}

const APPEND_HEAD: &str = r#"{"type":"input_audio_buffer.append","audio":""#;
const APPEND_TAIL: &str = r#""}"#;

/// Caller audio: base64 text goes in as it is (it needs no escaping), raw bytes are
/// base64-encoded straight into the message.
pub fn append_audio(audio: AudioChunk<'_>) -> String {
    crate::audio::audio_message(&[APPEND_HEAD], audio, APPEND_TAIL)
}

/// A tool's result.
pub fn function_call_output(call_id: &str, output: &str) -> String {
    json!({
        "type": "conversation.item.create",
        "item": { "type": "function_call_output", "call_id": call_id, "output": output }
    })
    .to_string()
}

/// A message in the conversation: the caller's typed words (`user`, `input_text`) or the
/// agent's own (`assistant`, `output_text`).
pub fn message_item(role: &str, text: &str) -> String {
    let kind = if role == "assistant" {
        "output_text"
    } else {
        "input_text"
    };
    json!({
        "type": "conversation.item.create",
        "item": {
            "type": "message",
            "role": role,
            "content": [{ "type": kind, "text": text }]
        }
    })
    .to_string()
}

/// The conversation so far as `conversation.item.create` messages, in order (a session
/// that continues a call): words as messages, tool calls as `function_call` items and their
/// results as `function_call_output` items.
pub fn history_items(history: &[crate::engine::HistoryItem]) -> Vec<String> {
    use crate::engine::HistoryItem;
    history
        .iter()
        .map(|item| match item {
            HistoryItem::Caller(text) => message_item("user", text),
            HistoryItem::Agent(text) => message_item("assistant", text),
            HistoryItem::ToolCall {
                call_id,
                name,
                arguments,
            } => json!({
                "type": "conversation.item.create",
                "item": {
                    "type": "function_call",
                    "call_id": call_id,
                    "name": name,
                    "arguments": arguments
                }
            })
            .to_string(),
            HistoryItem::ToolOutput { call_id, output } => function_call_output(call_id, output),
        })
        .collect()
}

/// Asks the model to respond.
pub fn response_create() -> String {
    r#"{"type":"response.create"}"#.to_owned()
}

/// Asks the model to say `text` word for word.
pub fn say_verbatim(text: &str) -> String {
    response_with_instructions(&format!(
        "Say exactly the following words, verbatim, and nothing else: {text}"
    ))
}

/// Asks for one response with its own instructions (the session's stay as they are).
pub fn response_with_instructions(instructions: &str) -> String {
    json!({ "type": "response.create", "response": { "instructions": instructions } }).to_string()
}

/// Cuts an assistant item's audio at what the caller actually heard.
pub fn truncate(item_id: &str, audio_end_ms: u64) -> String {
    json!({
        "type": "conversation.item.truncate",
        "item_id": item_id,
        "content_index": 0,
        "audio_end_ms": audio_end_ms
    })
    .to_string()
}

/// Error codes after which the session cannot go on.
const FATAL_CODES: &[&str] = &[
    "session_expired",
    "beta_api_shape_disabled",
    "invalid_api_key",
    "insufficient_quota",
    "model_not_found",
];

/// Reads one server event. Malformed JSON is an error; unknown events are `Ignored`, and a
/// field of the wrong type reads as empty. Only the fields patter acts on are read; the rest
/// of the event is skipped without being built, and strings borrow from `raw`.
pub fn parse_event(raw: &str) -> Result<EngineEvent<'_>, serde_json::Error> {
    fn text(field: Option<Cow<'_, str>>) -> Cow<'_, str> {
        field.unwrap_or_default()
    }
    let Object(v) = serde_json::from_str::<Object<RawEvent<'_>>>(raw)?;
    Ok(match v.kind.as_deref().unwrap_or_default() {
        "session.updated" => match &v.session {
            Some(session) => EngineEvent::Configured {
                input: reported(session.pointer("/audio/input/format")),
                output: reported(session.pointer("/audio/output/format")),
            },
            None => EngineEvent::Ready,
        },
        "response.created" => EngineEvent::ResponseStarted {
            response_id: text(v.response.id),
        },
        "response.output_audio.delta" => match v.delta {
            Some(audio) => EngineEvent::Audio {
                response_id: text(v.response_id),
                item_id: text(v.item_id),
                audio,
            },
            None => EngineEvent::Ignored,
        },
        "input_audio_buffer.speech_started" => EngineEvent::SpeechStarted,
        "input_audio_buffer.speech_stopped" => EngineEvent::SpeechStopped,
        "response.function_call_arguments.done" => EngineEvent::FunctionCall {
            response_id: text(v.response_id),
            call_id: text(v.call_id),
            name: text(v.name),
            arguments: text(v.arguments),
        },
        "response.done" => EngineEvent::ResponseDone {
            response_id: text(v.response.id),
            status: text(v.response.status),
            usage: v.response.usage,
        },
        "conversation.item.input_audio_transcription.completed" => EngineEvent::UserTranscript {
            text: text(v.transcript),
        },
        "response.output_audio_transcript.done" => EngineEvent::AgentTranscript {
            text: text(v.transcript),
        },
        "response.output_text.delta" => match v.delta {
            Some(delta) => EngineEvent::TextDelta {
                response_id: text(v.response_id),
                delta,
            },
            None => EngineEvent::Ignored,
        },
        "response.output_text.done" => EngineEvent::AgentTranscript { text: text(v.text) },
        "error" => {
            let fatal = v
                .error
                .code
                .as_deref()
                .is_some_and(|c| FATAL_CODES.contains(&c));
            EngineEvent::Error {
                code: v.error.code,
                message: text(v.error.message),
                fatal,
            }
        }
        _ => EngineEvent::Ignored,
    })
}

/// The top-level fields of a server event that patter reads.
#[derive(Default)]
struct RawEvent<'a> {
    kind: Option<Cow<'a, str>>,
    delta: Option<Cow<'a, str>>,
    response_id: Option<Cow<'a, str>>,
    item_id: Option<Cow<'a, str>>,
    call_id: Option<Cow<'a, str>>,
    name: Option<Cow<'a, str>>,
    arguments: Option<Cow<'a, str>>,
    transcript: Option<Cow<'a, str>>,
    text: Option<Cow<'a, str>>,
    response: Nested<'a>,
    error: Nested<'a>,
    /// The session a `session.updated` reports (rare: read through a `Value`).
    session: Option<Value>,
}

/// A reported audio format, if it is one.
fn reported(format: Option<&Value>) -> Option<crate::engine::ReportedFormat> {
    let format = format?;
    Some(crate::engine::ReportedFormat {
        kind: format.get("type")?.as_str()?.to_owned(),
        rate: format
            .get("rate")
            .and_then(Value::as_u64)
            .and_then(|r| u32::try_from(r).ok()),
    })
}

/// The fields patter reads of the `response` and `error` objects.
#[derive(Default)]
struct Nested<'a> {
    id: Option<Cow<'a, str>>,
    status: Option<Cow<'a, str>>,
    code: Option<Cow<'a, str>>,
    message: Option<Cow<'a, str>>,
    usage: Option<Usage>,
}

/// A response's `usage`, as billed. Once per response, so read through a `Value`: a field
/// missing or of the wrong type counts 0.
fn usage(value: &serde_json::Value) -> Option<Usage> {
    let count = |path: &[&str]| {
        path.iter()
            .try_fold(value, |v, key| v.get(key))
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0)
    };
    value.is_object().then(|| Usage {
        text_in: count(&["input_token_details", "text_tokens"]),
        audio_in: count(&["input_token_details", "audio_tokens"]),
        cached_text_in: count(&[
            "input_token_details",
            "cached_tokens_details",
            "text_tokens",
        ]),
        cached_audio_in: count(&[
            "input_token_details",
            "cached_tokens_details",
            "audio_tokens",
        ]),
        text_out: count(&["output_token_details", "text_tokens"]),
        audio_out: count(&["output_token_details", "audio_tokens"]),
        billed_ms: 0,
    })
}

impl<'de> Fields<'de> for RawEvent<'de> {
    fn field<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        let slot = match key {
            "type" => &mut self.kind,
            "delta" => &mut self.delta,
            "response_id" => &mut self.response_id,
            "item_id" => &mut self.item_id,
            "call_id" => &mut self.call_id,
            "name" => &mut self.name,
            "arguments" => &mut self.arguments,
            "transcript" => &mut self.transcript,
            "text" => &mut self.text,
            "response" => {
                self.response = map.next_value::<Object<Nested<'de>>>()?.0;
                return Ok(());
            }
            "error" => {
                self.error = map.next_value::<Object<Nested<'de>>>()?.0;
                return Ok(());
            }
            "session" => {
                self.session = Some(map.next_value::<Value>()?);
                return Ok(());
            }
            _ => {
                map.next_value::<IgnoredAny>()?;
                return Ok(());
            }
        };
        *slot = map.next_value::<Text<'de>>()?.0;
        Ok(())
    }
}

impl<'de> Fields<'de> for Nested<'de> {
    fn field<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        let slot = match key {
            "id" => &mut self.id,
            "status" => &mut self.status,
            "code" => &mut self.code,
            "message" => &mut self.message,
            "usage" => {
                self.usage = usage(&map.next_value::<serde_json::Value>()?);
                return Ok(());
            }
            _ => {
                map.next_value::<IgnoredAny>()?;
                return Ok(());
            }
        };
        *slot = map.next_value::<Text<'de>>()?.0;
        Ok(())
    }
}
