//! OpenAI GPT-Live (`/v1/live/sessions`) on the wire: the client events patter sends and the
//! server events it reads.
//!
//! Shapes as implemented by Pipecat (`src/pipecat/services/openai/live/`, `events.py`,
//! `llm.py`), LiveKit Agents (`livekit/agents/llm/_realtime/gpt_live.py`,
//! `gpt_live_types.py`) and the types of OpenAI's Python SDK (`openai/types/live/`), which
//! agree on everything used here. The server rejects unknown fields, so optional fields are
//! left out rather than sent as `null` (except `delegation_id`, which is required and
//! nullable).

use std::borrow::Cow;

use serde::de::{IgnoredAny, MapAccess};
use serde_json::{Value, json};

use crate::audio::{AudioChunk, AudioFormat};
use crate::engine::json::{Fields, Object, Text};
use crate::engine::{EngineSetup, openai_realtime};

fn format_json(format: AudioFormat) -> Value {
    match format {
        AudioFormat::Pcmu => json!({ "type": "audio/pcmu", "rate": 8000 }),
        AudioFormat::Pcm24k => json!({ "type": "audio/pcm", "rate": 24000 }),
    }
}

/// A tool as a Responses function tool. No `strict` (Pipecat's adapter found the Live
/// session refuses it); and since Pipecat found float literals in a tool schema make
/// `session.start` fail, whole numbers written as floats (`2.0`) are written as integers.
pub fn tool_json(tool: &crate::tool::ToolDefinition) -> Value {
    let mut value = openai_realtime::wire::tool_json(tool);
    integral_floats_as_integers(&mut value);
    value
}

fn integral_floats_as_integers(value: &mut Value) {
    match value {
        Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64()
                && f.fract() == 0.0
                && f.abs() < 9.0e15
            {
                *value = Value::from(f as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_floats_as_integers),
        Value::Object(map) => map.values_mut().for_each(integral_floats_as_integers),
        _ => {}
    }
}

/// `session.start`: the whole session, fixed from here on. Tools are delegated to a backend
/// Responses model, which gets the same instructions as the voice.
pub fn session_start(setup: &EngineSetup, backend_model: &str) -> String {
    let tools: Vec<Value> = setup.tools.iter().map(tool_json).collect();
    let mut responses = json!({
        "model": backend_model,
        "instructions": setup.instructions,
        "tool_choice": "auto",
        "parallel_tool_calls": true,
    });
    if !tools.is_empty() {
        responses["tools"] = Value::Array(tools);
    }
    let mut session = json!({
        "model": setup.model,
        "instructions": setup.instructions,
        "audio": {
            "format": format_json(setup.audio),
            "output": { "voice": setup.voice }
        },
        "delegation": { "type": "responses", "responses": responses }
    });
    let input = history_input(&setup.history);
    if !input.is_empty() {
        session["input"] = Value::Array(input);
    }
    json!({ "type": "session.start", "session": session }).to_string()
}

/// How many items `session.start` takes in `input`.
const MAX_INPUT_ITEMS: usize = 128;

/// The conversation so far as `session.start` input (a session that continues a call): the
/// words of both sides as messages, the latest 128. The backend's tool calls belong to the
/// lost session; their results reach the new one as commentary.
fn history_input(history: &[crate::engine::HistoryItem]) -> Vec<Value> {
    use crate::engine::HistoryItem;
    let messages: Vec<Value> = history
        .iter()
        .filter_map(|item| {
            let (role, kind, text) = match item {
                HistoryItem::Caller(text) => ("user", "input_text", text),
                HistoryItem::Agent(text) => ("assistant", "output_text", text),
                _ => return None,
            };
            Some(json!({
                "type": "message",
                "role": role,
                "content": [{ "type": kind, "text": text }]
            }))
        })
        .collect();
    let skip = messages.len().saturating_sub(MAX_INPUT_ITEMS);
    messages.into_iter().skip(skip).collect()
}

const APPEND_HEAD: &str = r#"{"type":"session.input_audio.append","audio":""#;
const APPEND_TAIL: &str = r#""}"#;

/// Caller audio, written once into an exactly sized message.
pub fn append_audio(audio: AudioChunk<'_>) -> String {
    crate::audio::audio_message(&[APPEND_HEAD], audio, APPEND_TAIL)
}

/// A tool's result, queued for the backend.
pub fn function_call_output(call_id: &str, output: &str) -> String {
    json!({
        "type": "response.item.create",
        "item": { "type": "function_call_output", "call_id": call_id, "output": output }
    })
    .to_string()
}

/// Lets the backend go on once every queued result is in.
pub fn response_create() -> String {
    r#"{"type":"response.create"}"#.to_owned()
}

/// Something for the voice to say, in its own words; not tied to a delegation.
pub fn commentary(content: &str) -> String {
    json!({ "type": "session.commentary.append", "delegation_id": null, "content": content })
        .to_string()
}

/// Asks the voice to say `text` as it is. GPT-Live cannot be made to read a sentence word for
/// word; this wording gave verbatim speech in tests others report, but it may paraphrase.
pub fn say_verbatim(text: &str) -> String {
    commentary(&format!(
        "Say exactly this to the caller now, adding nothing, then listen: {text}"
    ))
}

/// Something the voice must say now, in its own words (a goodbye): commentary that asks to
/// act at once, as LiveKit words it.
pub fn act_now(instructions: &str) -> String {
    commentary(&format!(
        "Immediately follow the instruction below. Do not wait for the caller to speak. \
         {instructions}"
    ))
}

/// Ends the session; the server answers `session.closed`.
pub fn session_close() -> String {
    r#"{"type":"session.close"}"#.to_owned()
}

/// Error codes after which the session cannot go on (LiveKit's list, plus the start-up
/// failures reported before `session.started`).
const FATAL_CODES: &[&str] = &[
    "invalid_api_key",
    "insufficient_quota",
    "account_deactivated",
    "billing_hard_limit_reached",
    "credit_balance_exhausted",
    "model_not_found",
];

/// Whether an error code ends the session.
pub fn is_fatal(code: &str) -> bool {
    FATAL_CODES.contains(&code)
}

/// One server event, as far as patter reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveEvent<'a> {
    /// The session is configured and running.
    Started,
    /// Agent audio (base64, the session's format), silence included.
    OutputAudio(Cow<'a, str>),
    /// A fragment of what the caller said.
    InputTranscript(Cow<'a, str>),
    /// A fragment of what the agent said.
    OutputTranscript(Cow<'a, str>),
    /// A backend response started.
    BackendStarted {
        /// Its delegation (empty when the server could not tell).
        delegation_id: Cow<'a, str>,
    },
    /// The backend wants a tool called.
    FunctionCall {
        /// Its delegation.
        delegation_id: Cow<'a, str>,
        /// The call's id.
        call_id: Cow<'a, str>,
        /// The tool.
        name: Cow<'a, str>,
        /// JSON arguments.
        arguments: Cow<'a, str>,
    },
    /// A backend response ended (completed, failed or incomplete).
    BackendDone {
        /// Its delegation.
        delegation_id: Cow<'a, str>,
        /// How, in the Responses API's words.
        status: Cow<'a, str>,
    },
    /// The session ended, for this reason.
    Closed(Cow<'a, str>),
    /// The session's billed time so far (`session.usage.updated`), in milliseconds.
    UsageSoFar(u64),
    /// An error.
    Error {
        /// Its code, if any.
        code: Option<Cow<'a, str>>,
        /// Its message.
        message: Cow<'a, str>,
    },
    /// Anything patter does not act on.
    Ignored,
}

/// Reads one server event. Malformed JSON is an error; unknown events are `Ignored`.
pub fn parse_event(raw: &str) -> Result<LiveEvent<'_>, serde_json::Error> {
    fn text(field: Option<Cow<'_, str>>) -> Cow<'_, str> {
        field.unwrap_or_default()
    }
    let Object(v) = serde_json::from_str::<Object<RawEvent<'_>>>(raw)?;
    Ok(match v.kind.as_deref().unwrap_or_default() {
        "session.output_audio.delta" => match v.delta {
            Some(audio) => LiveEvent::OutputAudio(audio),
            None => LiveEvent::Ignored,
        },
        "session.input_transcript.delta" => LiveEvent::InputTranscript(text(v.delta)),
        "session.output_transcript.delta" => LiveEvent::OutputTranscript(text(v.delta)),
        "session.started" => LiveEvent::Started,
        "response.event" => {
            let delegation_id = text(v.delegation_id);
            let inner = v.event;
            match inner.kind.as_deref().unwrap_or_default() {
                "response.created" => LiveEvent::BackendStarted { delegation_id },
                // A call is announced three times; the finished item is the one to act on.
                "response.output_item.done"
                    if inner.item.kind.as_deref() == Some("function_call")
                        && inner.item.status.as_deref() == Some("completed") =>
                {
                    LiveEvent::FunctionCall {
                        delegation_id,
                        call_id: text(inner.item.call_id),
                        name: text(inner.item.name),
                        arguments: text(inner.item.arguments),
                    }
                }
                "response.completed" => LiveEvent::BackendDone {
                    delegation_id,
                    status: Cow::Borrowed("completed"),
                },
                "response.failed" => LiveEvent::BackendDone {
                    delegation_id,
                    status: Cow::Borrowed("failed"),
                },
                "response.incomplete" => LiveEvent::BackendDone {
                    delegation_id,
                    status: Cow::Borrowed("incomplete"),
                },
                _ => LiveEvent::Ignored,
            }
        }
        "session.closed" => LiveEvent::Closed(text(v.reason)),
        "session.usage.updated" => match v.usage_ms {
            Some(ms) => LiveEvent::UsageSoFar(ms),
            None => LiveEvent::Ignored,
        },
        "error" => LiveEvent::Error {
            code: v.error.code,
            message: text(v.error.message),
        },
        _ => LiveEvent::Ignored,
    })
}

/// The top-level fields of a server event that patter reads.
#[derive(Default)]
struct RawEvent<'a> {
    kind: Option<Cow<'a, str>>,
    delta: Option<Cow<'a, str>>,
    delegation_id: Option<Cow<'a, str>>,
    reason: Option<Cow<'a, str>>,
    /// `usage.seconds`, in milliseconds.
    usage_ms: Option<u64>,
    event: Inner<'a>,
    error: ErrorBody<'a>,
}

/// The fields patter reads of a wrapped Responses event.
#[derive(Default)]
struct Inner<'a> {
    kind: Option<Cow<'a, str>>,
    item: Item<'a>,
}

/// The fields patter reads of a Responses output item.
#[derive(Default)]
struct Item<'a> {
    kind: Option<Cow<'a, str>>,
    status: Option<Cow<'a, str>>,
    call_id: Option<Cow<'a, str>>,
    name: Option<Cow<'a, str>>,
    arguments: Option<Cow<'a, str>>,
}

/// The fields patter reads of an `error` object.
#[derive(Default)]
struct ErrorBody<'a> {
    code: Option<Cow<'a, str>>,
    message: Option<Cow<'a, str>>,
}

fn skip<'de, A: MapAccess<'de>>(map: &mut A) -> Result<(), A::Error> {
    map.next_value::<IgnoredAny>().map(drop)
}

fn read<'de, A: MapAccess<'de>>(
    slot: &mut Option<Cow<'de, str>>,
    map: &mut A,
) -> Result<(), A::Error> {
    *slot = map.next_value::<Text<'de>>()?.0;
    Ok(())
}

impl<'de> Fields<'de> for RawEvent<'de> {
    fn field<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "type" => read(&mut self.kind, map),
            "delta" => read(&mut self.delta, map),
            "delegation_id" => read(&mut self.delegation_id, map),
            "reason" => read(&mut self.reason, map),
            "event" => {
                self.event = map.next_value::<Object<Inner<'de>>>()?.0;
                Ok(())
            }
            "error" => {
                self.error = map.next_value::<Object<ErrorBody<'de>>>()?.0;
                Ok(())
            }
            "usage" => {
                // A few times a minute: read through a `Value`.
                let usage = map.next_value::<serde_json::Value>()?;
                self.usage_ms = usage
                    .get("seconds")
                    .and_then(serde_json::Value::as_f64)
                    .filter(|s| s.is_finite() && *s >= 0.0)
                    .map(|s| (s * 1000.0).round() as u64);
                Ok(())
            }
            _ => skip(map),
        }
    }
}

impl<'de> Fields<'de> for Inner<'de> {
    fn field<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "type" => read(&mut self.kind, map),
            "item" => {
                self.item = map.next_value::<Object<Item<'de>>>()?.0;
                Ok(())
            }
            _ => skip(map),
        }
    }
}

impl<'de> Fields<'de> for Item<'de> {
    fn field<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "type" => read(&mut self.kind, map),
            "status" => read(&mut self.status, map),
            "call_id" => read(&mut self.call_id, map),
            "name" => read(&mut self.name, map),
            "arguments" => read(&mut self.arguments, map),
            _ => skip(map),
        }
    }
}

impl<'de> Fields<'de> for ErrorBody<'de> {
    fn field<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "code" => read(&mut self.code, map),
            "message" => read(&mut self.message, map),
            _ => skip(map),
        }
    }
}

/// Below this level (of 32,768) a sample counts as quiet: about −54 dBFS.
const QUIET_LEVEL: u16 = 64;

/// Whether a base64 chunk of agent audio is quiet: every sample below −54 dBFS. GPT-Live
/// streams silence between its words; patter tells speech from it by this.
///
/// Decoded in small pieces on the stack, stopping at the first sound: speech is told apart
/// in its first few bytes.
pub fn is_quiet(audio: &str, format: AudioFormat) -> bool {
    use base64::Engine as _;
    const PIECE: usize = 512;
    if audio.is_empty() || !audio.len().is_multiple_of(4) {
        return false;
    }
    let quiet = |bytes: &[u8]| match format {
        AudioFormat::Pcmu => bytes
            .iter()
            .all(|&b| crate::audio::codec::mulaw_decode(b).unsigned_abs() < QUIET_LEVEL),
        AudioFormat::Pcm24k => bytes
            .chunks_exact(2)
            .all(|s| i16::from_le_bytes([s[0], s[1]]).unsigned_abs() < QUIET_LEVEL),
    };
    let mut buf = [0u8; PIECE / 4 * 3];
    // The first two samples' worth alone (8 characters: 6 bytes, whole PCM samples), then
    // the rest in pieces.
    let (first, rest) = audio.split_at(audio.len().min(8));
    std::iter::once(first)
        .chain(
            rest.as_bytes()
                .chunks(PIECE)
                .filter_map(|c| std::str::from_utf8(c).ok()),
        )
        .all(|piece| {
            match base64::engine::general_purpose::STANDARD.decode_slice(piece, &mut buf) {
                Ok(n) => quiet(&buf[..n]),
                Err(_) => false,
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_function_call_is_read_from_its_finished_item_only() {
        let added = r#"{"type":"response.event","delegation_id":"dlg_1","event":{"type":"response.output_item.added","item":{"type":"function_call","status":"in_progress","call_id":"c1","name":"lookup","arguments":""}}}"#;
        assert_eq!(parse_event(added).unwrap(), LiveEvent::Ignored);
        let done = r#"{"type":"response.event","delegation_id":"dlg_1","event":{"type":"response.output_item.done","item":{"id":"fc_1","type":"function_call","status":"completed","call_id":"c1","name":"lookup","arguments":"{\"id\":\"42\"}"}}}"#;
        assert_eq!(
            parse_event(done).unwrap(),
            LiveEvent::FunctionCall {
                delegation_id: "dlg_1".into(),
                call_id: "c1".into(),
                name: "lookup".into(),
                arguments: r#"{"id":"42"}"#.into(),
            }
        );
    }

    #[test]
    fn backend_responses_are_correlated_by_delegation() {
        let created = r#"{"type":"response.event","delegation_id":"dlg_7","event":{"type":"response.created","response":{"id":"resp_1","output":[]}}}"#;
        assert_eq!(
            parse_event(created).unwrap(),
            LiveEvent::BackendStarted {
                delegation_id: "dlg_7".into()
            }
        );
        let failed = r#"{"type":"response.event","event":{"type":"response.failed"}}"#;
        assert_eq!(
            parse_event(failed).unwrap(),
            LiveEvent::BackendDone {
                delegation_id: "".into(),
                status: "failed".into()
            }
        );
    }

    #[test]
    fn audio_is_borrowed_and_quiet_audio_is_recognised() {
        let frame = r#"{"type":"session.output_audio.delta","delta":"AAECAw=="}"#;
        let Ok(LiveEvent::OutputAudio(audio)) = parse_event(frame) else {
            panic!("not audio");
        };
        assert!(matches!(audio, Cow::Borrowed("AAECAw==")));
        use base64::Engine as _;
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        assert!(is_quiet(&b64(&[0xff; 160]), AudioFormat::Pcmu));
        assert!(is_quiet(&b64(&[0x7f; 161]), AudioFormat::Pcmu));
        // μ-law 0xFE and 0x7E are ±8: quiet, though not digital zero.
        assert!(is_quiet(
            &b64(&[0xfe, 0x7e, 0xff].repeat(100)),
            AudioFormat::Pcmu
        ));
        assert!(is_quiet(&b64(&[0xff; 4801]), AudioFormat::Pcmu));
        let late_sound = [[0xff; 4000].as_slice(), &[1]].concat();
        assert!(!is_quiet(&b64(&late_sound), AudioFormat::Pcmu));
        assert!(!is_quiet(&b64(&[0xff, 0x10, 0xff]), AudioFormat::Pcmu));
        assert!(is_quiet(&b64(&[0; 960]), AudioFormat::Pcm24k));
        let faint: Vec<u8> = [10i16, -20, 30]
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect();
        assert!(is_quiet(&b64(&faint.repeat(160)), AudioFormat::Pcm24k));
        assert!(!is_quiet(&b64(&1000i16.to_le_bytes()), AudioFormat::Pcm24k));
        assert!(!is_quiet("", AudioFormat::Pcmu));
    }

    #[test]
    fn integral_floats_in_tool_schemas_become_integers() {
        let mut schema = json!({"minimum": 0.0, "maximum": 2.5, "items": [1.0, "x"]});
        integral_floats_as_integers(&mut schema);
        assert_eq!(
            schema.to_string(),
            r#"{"items":[1,"x"],"maximum":2.5,"minimum":0}"#
        );
    }
}
