//! Dialling an engine's WebSocket: the request, the bearer token and the frame limits that
//! every OpenAI engine shares.

use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

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
            .map_err(|e| EngineError::Connect(e.to_string()))?;
    Ok(socket)
}
