//! A Twilio Media Stream as a [`CarrierLeg`]: the bidirectional `<Connect><Stream>` WebSocket,
//! from its `start` message on.

use std::time::Duration;

use axum::extract::ws::{Message, Utf8Bytes, WebSocket};
use futures_util::{SinkExt, StreamExt};
use tracing::{debug, warn};

use super::media::{self, Inbound, Outbound, Start};
use super::stream_token;
use crate::carrier::{CarrierCommand, CarrierError, CarrierEvent, CarrierLeg};
use crate::tool::{CallContext, Direction};

/// The `<Parameter>` carrying the per-call stream token.
pub const TOKEN_PARAMETER: &str = "call_token";
/// How long closing the socket may take before it is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// At most this many frames before `start`: a peer that floods never gets a call.
const MAX_FRAMES_BEFORE_START: usize = 256;

/// One Media Stream after its `start`.
pub struct TwilioLeg {
    socket: WebSocket,
    out: Outbound,
}

impl std::fmt::Debug for TwilioLeg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioLeg").finish_non_exhaustive()
    }
}

impl TwilioLeg {
    /// Reads frames until `start` (ignoring `connected`, stray media and malformed frames)
    /// and returns the leg with the stream's metadata. A stream that sends no `start` within
    /// `timeout`, stops or closes first, or floods is closed, with the reason.
    pub async fn accept(
        mut socket: WebSocket,
        timeout: Duration,
    ) -> Result<(TwilioLeg, Start), &'static str> {
        match wait_for_start(&mut socket, timeout).await {
            Ok(start) => {
                let out = Outbound::new(&start.stream_sid);
                Ok((TwilioLeg { socket, out }, start))
            }
            Err(why) => {
                close_socket(socket).await;
                Err(why)
            }
        }
    }

    /// Closes a leg that will not become a call (refused at admission).
    pub async fn refuse(self) {
        close_socket(self.socket).await;
    }
}

async fn wait_for_start(socket: &mut WebSocket, timeout: Duration) -> Result<Start, &'static str> {
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    for _ in 0..MAX_FRAMES_BEFORE_START {
        let frame = tokio::select! {
            frame = socket.next() => frame,
            () = &mut deadline => return Err("no start in time"),
        };
        match frame {
            Some(Ok(Message::Text(text))) => match media::parse(&text) {
                Ok(Inbound::Start { start }) => return Ok(start),
                Ok(Inbound::Stop {}) => return Err("stop before start"),
                Ok(Inbound::Media { .. }) => debug!("media before start ignored"),
                Ok(_) => {}
                Err(e) => warn!(error = %e, "malformed frame before start ignored"),
            },
            Some(Ok(Message::Close(_))) | None => return Err("socket closed"),
            Some(Ok(_)) => debug!("non-text frame before start ignored"),
            Some(Err(_)) => return Err("socket error"),
        }
    }
    Err("too many frames before start")
}

async fn close_socket(mut socket: WebSocket) {
    let closing = async {
        let _ = socket.send(Message::Close(None)).await;
        let _ = SinkExt::close(&mut socket).await;
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, closing).await;
}

/// Checks the per-call token `start` presents against the one the voice webhook issued.
pub fn check_token(secret: &[u8], start: &Start, now: u64) -> Result<(), &'static str> {
    let token = start
        .custom_parameters
        .get(TOKEN_PARAMETER)
        .ok_or("missing")?;
    stream_token::verify(secret, &start.call_sid, token, now).map_err(|e| match e {
        stream_token::TokenError::Malformed => "malformed",
        stream_token::TokenError::Expired => "expired",
        stream_token::TokenError::Mismatch => "mismatch",
    })
}

/// The call's context, from `start` and the TwiML's parameters: the call id is Twilio's
/// `CallSid`, the stream id its `StreamSid`; the token and a dialled call's state are not
/// parameters tools see.
pub fn context(start: &Start) -> CallContext {
    let params = &start.custom_parameters;
    let get = |name: &str| params.get(name).cloned().unwrap_or_default();
    CallContext::builder(start.call_sid.clone())
        .caller(get("caller"))
        .callee(get("callee"))
        .stream_id(start.stream_sid.clone())
        .direction(direction(&get("direction")))
        .parameters(
            params
                .iter()
                .filter(|(k, _)| {
                    ![
                        TOKEN_PARAMETER,
                        crate::outbound::state::PARAMETER,
                        crate::telemetry::TRACEPARENT,
                    ]
                    .contains(&k.as_str())
                })
                .map(|(k, v)| (k.clone(), v.clone())),
        )
        .build()
}

/// Reads Twilio's `Direction` value (`inbound`, `outbound-api`, `outbound-dial`, …).
pub fn direction(value: &str) -> Direction {
    if value.starts_with("outbound") {
        Direction::Outbound
    } else {
        Direction::Inbound
    }
}

impl CarrierLeg for TwilioLeg {
    type Frame = Message;

    async fn recv(&mut self) -> Result<Option<Message>, CarrierError> {
        match self.socket.next().await {
            Some(Ok(Message::Close(_))) | None => Ok(None),
            Some(Ok(message)) => Ok(Some(message)),
            Some(Err(e)) => Err(CarrierError::Io(e.to_string())),
        }
    }

    fn parse<'f>(&mut self, frame: &'f Message) -> Result<CarrierEvent<'f>, CarrierError> {
        let text = match frame {
            Message::Text(text) => text,
            Message::Binary(_) => {
                return Err(CarrierError::Malformed("a binary frame".to_owned()));
            }
            _ => return Ok(CarrierEvent::Ignored),
        };
        let inbound = media::parse(text).map_err(|e| CarrierError::Malformed(e.to_string()))?;
        Ok(match inbound {
            Inbound::Media { media } => {
                // `<Connect><Stream>` streams the caller's track only; anything else is not
                // the caller's voice.
                if media.track.as_deref().is_some_and(|t| t != "inbound") {
                    return Ok(CarrierEvent::Ignored);
                }
                CarrierEvent::Media {
                    timestamp_ms: media.timestamp_ms(),
                    audio: media.payload,
                }
            }
            Inbound::Mark { mark } => CarrierEvent::Mark { name: mark.name },
            Inbound::Dtmf { dtmf } => match dtmf_key(&dtmf.digit) {
                Some(digit) => CarrierEvent::Dtmf { digit },
                None => return Err(CarrierError::Malformed("not a keypad key".to_owned())),
            },
            Inbound::Stop {} => CarrierEvent::Stop,
            Inbound::Start { .. } => {
                debug!("second start ignored");
                CarrierEvent::Ignored
            }
            Inbound::Connected {} | Inbound::Unknown => CarrierEvent::Ignored,
        })
    }

    async fn send(&mut self, command: CarrierCommand<'_>) -> Result<(), CarrierError> {
        let failed = |e: axum::Error| CarrierError::Io(e.to_string());
        match command {
            CarrierCommand::Media { audio, mark } => {
                // Audio and its mark leave in one write.
                let media = self.out.media(audio);
                self.socket
                    .feed(Message::Text(Utf8Bytes::from(media)))
                    .await
                    .map_err(failed)?;
                let mark = self.out.mark(mark);
                self.socket
                    .send(Message::Text(Utf8Bytes::from(mark)))
                    .await
                    .map_err(failed)
            }
            CarrierCommand::Clear => self
                .socket
                .send(Message::Text(Utf8Bytes::from(self.out.clear())))
                .await
                .map_err(failed),
        }
    }

    async fn close(self) {
        close_socket(self.socket).await;
    }
}

/// A keypad key: one of `0-9 * # A-D`.
fn dtmf_key(digit: &str) -> Option<char> {
    let mut chars = digit.trim().chars();
    let key = chars.next()?;
    let valid = key.is_ascii_digit() || matches!(key, '*' | '#' | 'A'..='D');
    (valid && chars.next().is_none()).then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keypad_keys_are_single_known_characters() {
        for key in ["0", "9", "*", "#", "A", "D"] {
            assert!(dtmf_key(key).is_some(), "{key}");
        }
        for bad in ["", "10", "E", "x", "**"] {
            assert_eq!(dtmf_key(bad), None, "{bad}");
        }
    }

    #[test]
    fn direction_reads_twilio_values() {
        assert_eq!(direction("inbound"), Direction::Inbound);
        assert_eq!(direction("outbound-api"), Direction::Outbound);
        assert_eq!(direction("outbound-dial"), Direction::Outbound);
        assert_eq!(direction(""), Direction::Inbound);
    }
}
