//! Dialling an engine's WebSocket: the request, the bearer token and the frame limits that
//! every OpenAI engine shares.

use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tracing::warn;

use super::EngineError;
use crate::secret::Secret;

/// An open connection to an engine.
pub(crate) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// tungstenite's default 128 KiB read buffer is zeroed on every read and stays resident per
/// call; phone-call events are small.
const READ_BUFFER_BYTES: usize = 4 * 1024;

/// Opens `url` with `Authorization: Bearer <api_key>`, refusing messages and frames larger
/// than `max_message_bytes`. The caller bounds how long this may take.
pub(crate) async fn dial(
    url: &str,
    api_key: &Secret,
    max_message_bytes: usize,
) -> Result<Socket, EngineError> {
    crate::util::install_crypto_provider();
    let mut request = url
        .into_client_request()
        .map_err(|e| EngineError::Connect(format!("invalid engine request: {e}")))?;
    let auth = HeaderValue::from_str(&format!("Bearer {}", api_key.expose()))
        .map_err(|_| EngineError::Connect("the API key is not a valid header value".into()))?;
    request.headers_mut().insert("Authorization", auth);
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .max_message_size(Some(max_message_bytes))
        .max_frame_size(Some(max_message_bytes));
    let (socket, _response) =
        tokio_tungstenite::connect_async_with_config(request, Some(config), true)
            .await
            .map_err(refused)?;
    Ok(socket)
}

/// At most this many connection attempts per call.
const MAX_ATTEMPTS: u32 = 4;
/// The first wait between attempts; it doubles, plus up to half again at random.
const FIRST_BACKOFF: Duration = Duration::from_millis(150);

/// [`dial`]s within `budget`: a busy or failing engine (429, 5xx, a refused connection) is
/// tried again after a jittered backoff while the budget lasts, at most [`MAX_ATTEMPTS`]
/// times; refused credentials (401, 403) are not retried. Past the budget: `Timeout`.
pub(crate) async fn dial_within(
    url: &str,
    api_key: &Secret,
    max_message_bytes: usize,
    budget: Duration,
) -> Result<Socket, EngineError> {
    let deadline = Instant::now() + budget;
    let mut backoff = FIRST_BACKOFF;
    for attempt in 1..=MAX_ATTEMPTS {
        let left = deadline.saturating_duration_since(Instant::now());
        let result = tokio::time::timeout(left, dial(url, api_key, max_message_bytes))
            .await
            .map_err(|_| EngineError::Timeout(budget.as_millis()))?;
        let error = match result {
            Ok(socket) => return Ok(socket),
            Err(e) => e,
        };
        let wait = jittered(backoff);
        if !error.is_transient() || attempt == MAX_ATTEMPTS || Instant::now() + wait >= deadline {
            return Err(error);
        }
        warn!(error = %error, attempt, "engine connection failed; trying again");
        tokio::time::sleep(wait).await;
        backoff *= 2;
    }
    Err(EngineError::Timeout(budget.as_millis()))
}

/// `base` and up to half of it again, at random: many calls failing at once do not retry
/// in step.
pub(crate) fn jittered(base: Duration) -> Duration {
    base + jitter(base / 2)
}

/// Up to `max`, at random.
fn jitter(max: Duration) -> Duration {
    let random = getrandom::u64().unwrap_or(0);
    let max_ms = max.as_millis().max(1) as u64;
    Duration::from_millis(random % max_ms)
}

/// A failed handshake: an HTTP answer is [`EngineError::Refused`] with its status and the
/// engine's message; anything else could not connect.
fn refused(error: tokio_tungstenite::tungstenite::Error) -> EngineError {
    match error {
        tokio_tungstenite::tungstenite::Error::Http(response) => {
            let body = response.body().as_deref().unwrap_or_default();
            let message = serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .and_then(|v| {
                    v.pointer("/error/message")
                        .and_then(|m| m.as_str())
                        .map(str::to_owned)
                })
                .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
            EngineError::Refused {
                status: response.status().as_u16(),
                message: message
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(200)
                    .collect(),
            }
        }
        other => EngineError::Connect(other.to_string()),
    }
}
