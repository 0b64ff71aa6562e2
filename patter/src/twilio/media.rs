//! Media Streams WebSocket messages (Twilio → patter and back), parsed leniently: unknown
//! events and unknown keys are accepted, and numbers arrive as strings.

use std::collections::BTreeMap;

use serde::Deserialize;

/// One message from Twilio.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum Inbound {
    /// The socket is up (first message).
    Connected {},
    /// The stream started: ids and the call's custom parameters.
    Start {
        /// The stream's metadata.
        start: Start,
    },
    /// Caller audio.
    Media {
        /// The audio chunk.
        media: Media,
    },
    /// A mark patter sent has been reached in playback (or flushed by `clear`).
    Mark {
        /// The mark.
        mark: Mark,
    },
    /// The caller pressed a key.
    Dtmf {
        /// The key.
        dtmf: Dtmf,
    },
    /// The stream ended (last message).
    Stop {},
    /// Any event this version does not know.
    #[serde(other)]
    Unknown,
}

/// `start` metadata.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Start {
    /// `MZ…`
    pub stream_sid: String,
    /// `CA…`
    pub call_sid: String,
    /// `AC…`
    #[serde(default)]
    pub account_sid: String,
    /// The `<Parameter>`s of the TwiML.
    #[serde(default)]
    pub custom_parameters: BTreeMap<String, String>,
}

/// `media` body.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Media {
    /// `inbound` for caller audio.
    #[serde(default)]
    pub track: Option<String>,
    /// Milliseconds since the stream started, as a string.
    #[serde(default)]
    pub timestamp: Option<String>,
    /// Base64 μ-law 8 kHz mono.
    pub payload: String,
}

impl Media {
    /// The timestamp in milliseconds, if it is a number.
    pub fn timestamp_ms(&self) -> Option<u64> {
        self.timestamp.as_deref()?.trim().parse().ok()
    }
}

/// `mark` body.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Mark {
    /// The name patter gave it.
    pub name: String,
}

/// `dtmf` body.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Dtmf {
    /// The key pressed.
    pub digit: String,
}

/// Parses one text frame.
pub fn parse(text: &str) -> Result<Inbound, serde_json::Error> {
    serde_json::from_str(text)
}

/// Whether `text` is non-empty, canonical standard base64, checked without decoding: the
/// alphabet, a length that is a multiple of 4, at most two `=` and only at the end, and no
/// stray bits before the padding. These are exactly the non-empty texts the standard decoder
/// accepts, so nothing else is relayed as audio (nor needs escaping in JSON).
pub fn looks_like_base64(text: &str) -> bool {
    let bytes = text.as_bytes();
    if bytes.is_empty() || !bytes.len().is_multiple_of(4) {
        return false;
    }
    let padding = bytes.iter().rev().take_while(|&&b| b == b'=').count();
    if padding > 2 {
        return false;
    }
    let data = &bytes[..bytes.len() - padding];
    let mut last = 0;
    for &b in data {
        last = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return false,
        };
    }
    // The last symbol before the padding carries bits that must be zero.
    match padding {
        1 => last & 0b11 == 0,
        2 => last & 0b1111 == 0,
        _ => true,
    }
}

/// How many bytes a base64 text decodes to, without decoding it.
pub fn decoded_len(text: &str) -> usize {
    let padding = text.bytes().rev().take_while(|&b| b == b'=').count().min(2);
    (text.len() / 4 * 3).saturating_sub(padding)
}

/// Builds patter's messages to Twilio for one stream; the stream id is escaped once.
#[derive(Debug, Clone)]
pub struct Outbound {
    stream_sid_json: String,
}

impl Outbound {
    /// For the stream `stream_sid`.
    pub fn new(stream_sid: &str) -> Self {
        Outbound {
            stream_sid_json: serde_json::Value::from(stream_sid).to_string(),
        }
    }

    /// Agent audio; `payload` must be base64 (see [`looks_like_base64`]).
    pub fn media(&self, payload: &str) -> String {
        format!(
            r#"{{"event":"media","streamSid":{},"media":{{"payload":"{payload}"}}}}"#,
            self.stream_sid_json
        )
    }

    /// A mark, echoed back once the audio before it has played.
    pub fn mark(&self, name: &str) -> String {
        format!(
            r#"{{"event":"mark","streamSid":{},"mark":{{"name":{}}}}}"#,
            self.stream_sid_json,
            serde_json::Value::from(name)
        )
    }

    /// Drops audio Twilio has buffered but not played.
    pub fn clear(&self) -> String {
        format!(
            r#"{{"event":"clear","streamSid":{}}}"#,
            self.stream_sid_json
        )
    }
}
