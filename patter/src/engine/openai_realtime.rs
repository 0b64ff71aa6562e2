//! OpenAI Realtime (GA): the WebSocket client and the GA message shapes.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::{AudioFormat, EngineEvent, EngineSetup};
use crate::secret::Secret;

/// The engine's socket.
pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Why the engine could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL or header was malformed.
    #[error("invalid engine request: {0}")]
    Request(String),
    /// The handshake did not finish in time.
    #[error("the engine did not accept the connection within {0} ms")]
    Timeout(u128),
    /// The connection or handshake failed.
    #[error("the engine connection failed: {0}")]
    Failed(String),
}

/// Opens the Realtime socket: `<url>?model=<model>` with `Authorization: Bearer`, GA (no
/// `OpenAI-Beta` header).
pub async fn connect(
    url: &str,
    api_key: &Secret,
    model: &str,
    timeout: Duration,
    max_message_bytes: usize,
) -> Result<Socket, ConnectError> {
    crate::util::install_crypto_provider();
    let separator = if url.contains('?') { '&' } else { '?' };
    let model: String = url::form_urlencoded::byte_serialize(model.as_bytes()).collect();
    let mut request = format!("{url}{separator}model={model}")
        .into_client_request()
        .map_err(|e| ConnectError::Request(e.to_string()))?;
    let auth = HeaderValue::from_str(&format!("Bearer {}", api_key.expose()))
        .map_err(|_| ConnectError::Request("the API key is not a valid header value".into()))?;
    request.headers_mut().insert("Authorization", auth);
    let config = WebSocketConfig::default()
        // tungstenite's default 128 KiB read buffer is zeroed on every read and stays
        // resident per call; phone-call events are small.
        .read_buffer_size(crate::util::WS_READ_BUFFER_BYTES)
        .max_message_size(Some(max_message_bytes))
        .max_frame_size(Some(max_message_bytes));
    let connecting = tokio_tungstenite::connect_async_with_config(request, Some(config), true);
    match tokio::time::timeout(timeout, connecting).await {
        Ok(Ok((socket, _response))) => Ok(socket),
        Ok(Err(e)) => Err(ConnectError::Failed(e.to_string())),
        Err(_) => Err(ConnectError::Timeout(timeout.as_millis())),
    }
}

fn format_json(format: AudioFormat) -> Value {
    match format {
        AudioFormat::Pcmu => json!({ "type": "audio/pcmu" }),
        AudioFormat::Pcm24k => json!({ "type": "audio/pcm", "rate": 24000 }),
    }
}

/// The GA `session.update` for a phone call.
pub fn session_update(setup: &EngineSetup) -> String {
    let tools: Vec<Value> = setup.tools.iter().map(|t| t.to_openai_json()).collect();
    json!({
        "type": "session.update",
        "session": {
            "type": "realtime",
            "model": setup.model,
            "output_modalities": ["audio"],
            "instructions": setup.instructions,
            "audio": {
                "input": {
                    "format": format_json(setup.audio),
                    "transcription": { "model": "gpt-4o-mini-transcribe" },
                    "turn_detection": {
                        "type": "server_vad",
                        "threshold": 0.5,
                        "prefix_padding_ms": 300,
                        "silence_duration_ms": 500,
                        "create_response": true,
                        "interrupt_response": true
                    }
                },
                "output": { "format": format_json(setup.audio), "voice": setup.voice }
            },
            "tools": tools,
            "tool_choice": "auto"
        }
    })
    .to_string()
}

/// Caller audio. `audio` is base64 (checked by the caller), so it needs no escaping.
pub fn append_audio(audio: &str) -> String {
    format!(r#"{{"type":"input_audio_buffer.append","audio":"{audio}"}}"#)
}

/// A tool's result.
pub fn function_call_output(call_id: &str, output: &str) -> String {
    json!({
        "type": "conversation.item.create",
        "item": { "type": "function_call_output", "call_id": call_id, "output": output }
    })
    .to_string()
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

fn text(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// Reads one server event. Malformed JSON is an error; unknown events are `Ignored`.
pub fn parse_event(raw: &str) -> Result<EngineEvent, serde_json::Error> {
    let v: Value = serde_json::from_str(raw)?;
    let kind = v.get("type").and_then(Value::as_str).unwrap_or_default();
    Ok(match kind {
        "session.updated" => EngineEvent::SessionUpdated,
        "response.created" => EngineEvent::ResponseStarted {
            response_id: v.get("response").map(|r| text(r, "id")).unwrap_or_default(),
        },
        "response.output_audio.delta" => match v.get("delta").and_then(Value::as_str) {
            Some(delta) => EngineEvent::Audio {
                response_id: text(&v, "response_id"),
                item_id: text(&v, "item_id"),
                audio: delta.to_owned(),
            },
            None => EngineEvent::Ignored,
        },
        "input_audio_buffer.speech_started" => EngineEvent::SpeechStarted,
        "response.function_call_arguments.done" => EngineEvent::FunctionCall {
            response_id: text(&v, "response_id"),
            call_id: text(&v, "call_id"),
            name: text(&v, "name"),
            arguments: text(&v, "arguments"),
        },
        "response.done" => {
            let response = v.get("response").cloned().unwrap_or_default();
            EngineEvent::ResponseDone {
                response_id: text(&response, "id"),
                status: text(&response, "status"),
            }
        }
        "conversation.item.input_audio_transcription.completed" => EngineEvent::UserTranscript {
            text: text(&v, "transcript"),
        },
        "response.output_audio_transcript.done" => EngineEvent::AgentTranscript {
            text: text(&v, "transcript"),
        },
        "error" => {
            let error = v.get("error").cloned().unwrap_or_default();
            let code = error.get("code").and_then(Value::as_str).map(str::to_owned);
            let fatal = code.as_deref().is_some_and(|c| FATAL_CODES.contains(&c));
            EngineEvent::Error {
                code,
                message: text(&error, "message"),
                fatal,
            }
        }
        _ => EngineEvent::Ignored,
    })
}
