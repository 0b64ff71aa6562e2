//! Media Streams WebSocket messages (Twilio → patter and back), parsed leniently: unknown
//! events and unknown keys are accepted, and numbers arrive as strings.
//!
//! Parsing borrows from the frame's text: a media frame's payload is relayed as the very
//! string Twilio sent, with no copy (it is base64, so it never holds a JSON escape).

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;

use crate::audio::AudioChunk;

/// One message from Twilio, borrowing its strings from the frame's text where it can.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound<'a> {
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
        media: Media<'a>,
    },
    /// A mark patter sent has been reached in playback (or flushed by `clear`).
    Mark {
        /// The mark.
        mark: Mark<'a>,
    },
    /// The caller pressed a key.
    Dtmf {
        /// The key.
        dtmf: Dtmf,
    },
    /// The stream ended (last message).
    Stop {},
    /// Any event this version does not know.
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
pub struct Media<'a> {
    /// `inbound` for caller audio.
    #[serde(default, borrow, deserialize_with = "optional_borrowed")]
    pub track: Option<Cow<'a, str>>,
    /// Milliseconds since the stream started, as a string.
    #[serde(default, borrow, deserialize_with = "optional_borrowed")]
    pub timestamp: Option<Cow<'a, str>>,
    /// Base64 μ-law 8 kHz mono.
    #[serde(borrow)]
    pub payload: Cow<'a, str>,
}

/// A string that borrows from the frame when it has no escapes. serde borrows a bare
/// `Cow<str>` field but not one inside an `Option`, hence this newtype.
#[derive(Deserialize)]
struct Borrowed<'a>(#[serde(borrow)] Cow<'a, str>);

fn optional_borrowed<'de, D>(deserializer: D) -> Result<Option<Cow<'de, str>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Ok(Option::<Borrowed<'de>>::deserialize(deserializer)?.map(|b| b.0))
}

impl Media<'_> {
    /// The timestamp in milliseconds, if it is a number.
    pub fn timestamp_ms(&self) -> Option<u64> {
        self.timestamp.as_deref()?.trim().parse().ok()
    }
}

/// `mark` body.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Mark<'a> {
    /// The name patter gave it.
    #[serde(borrow)]
    pub name: Cow<'a, str>,
}

/// `dtmf` body.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Dtmf {
    /// The key pressed.
    pub digit: String,
}

/// A frame as it is on the wire: the event name and whichever known bodies it carries. A
/// flat struct rather than a tagged enum, because serde buffers a tagged enum's whole content
/// before it looks at the tag; this reads each media frame in one pass without allocating.
#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(default)]
    start: Option<Start>,
    #[serde(default, borrow)]
    media: Option<Media<'a>>,
    #[serde(default, borrow)]
    mark: Option<Mark<'a>>,
    #[serde(default)]
    dtmf: Option<Dtmf>,
}

/// Parses one text frame. A known event must carry its body; a known body key must have its
/// documented shape whatever the event.
pub fn parse(text: &str) -> Result<Inbound<'_>, serde_json::Error> {
    use serde::de::Error as _;
    let frame: Frame<'_> = serde_json::from_str(text)?;
    let missing = serde_json::Error::missing_field;
    Ok(match &*frame.event {
        "connected" => Inbound::Connected {},
        "start" => Inbound::Start {
            start: frame.start.ok_or_else(|| missing("start"))?,
        },
        "media" => Inbound::Media {
            media: frame.media.ok_or_else(|| missing("media"))?,
        },
        "mark" => Inbound::Mark {
            mark: frame.mark.ok_or_else(|| missing("mark"))?,
        },
        "dtmf" => Inbound::Dtmf {
            dtmf: frame.dtmf.ok_or_else(|| missing("dtmf"))?,
        },
        "stop" => Inbound::Stop {},
        _ => Inbound::Unknown,
    })
}

pub use crate::audio::{decoded_len, is_base64 as looks_like_base64};

/// Builds patter's messages to Twilio for one stream; the stream id is escaped once. Media
/// and marks are written into one exactly sized string each: one allocation per message,
/// which the socket then owns.
#[derive(Debug, Clone)]
pub struct Outbound {
    stream_sid_json: String,
}

const MEDIA_HEAD: &str = r#"{"event":"media","streamSid":"#;
const MEDIA_MID: &str = r#","media":{"payload":""#;
const MEDIA_TAIL: &str = r#""}}"#;
const MARK_HEAD: &str = r#"{"event":"mark","streamSid":"#;
const MARK_MID: &str = r#","mark":{"name":"#;
const MARK_TAIL: &str = "}}";

impl Outbound {
    /// For the stream `stream_sid`.
    pub fn new(stream_sid: &str) -> Self {
        Outbound {
            stream_sid_json: json_string(stream_sid),
        }
    }

    /// Agent audio: base64 text goes in as it is (it needs no escaping), raw μ-law bytes are
    /// base64-encoded straight into the message.
    pub fn media(&self, audio: AudioChunk<'_>) -> String {
        crate::audio::audio_message(
            &[MEDIA_HEAD, &self.stream_sid_json, MEDIA_MID],
            audio,
            MEDIA_TAIL,
        )
    }

    /// A mark, echoed back once the audio before it has played.
    pub fn mark(&self, name: &str) -> String {
        let mut out = String::with_capacity(
            MARK_HEAD.len()
                + self.stream_sid_json.len()
                + MARK_MID.len()
                + name.len()
                + 2
                + MARK_TAIL.len(),
        );
        out.push_str(MARK_HEAD);
        out.push_str(&self.stream_sid_json);
        out.push_str(MARK_MID);
        push_json_string(&mut out, name);
        out.push_str(MARK_TAIL);
        out
    }

    /// Drops audio Twilio has buffered but not played.
    pub fn clear(&self) -> String {
        format!(
            r#"{{"event":"clear","streamSid":{}}}"#,
            self.stream_sid_json
        )
    }
}

/// `text` as a JSON string literal.
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    push_json_string(&mut out, text);
    out
}

/// Appends `text` as a JSON string literal; patter's own names need no escaping and are
/// copied as they are.
fn push_json_string(out: &mut String, text: &str) {
    let plain = text
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
    if plain {
        out.push('"');
        out.push_str(text);
        out.push('"');
    } else {
        out.push_str(&serde_json::Value::from(text).to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_media_frame_is_read_without_copying_its_strings() {
        let frame = r#"{"event":"media","sequenceNumber":"3","media":{"track":"inbound","chunk":"2","timestamp":"40","payload":"AAAA"},"streamSid":"MZ1"}"#;
        let Ok(Inbound::Media { media }) = parse(frame) else {
            panic!("not parsed as media");
        };
        assert!(matches!(media.payload, Cow::Borrowed("AAAA")));
        assert!(matches!(media.track, Some(Cow::Borrowed("inbound"))));
        assert!(matches!(media.timestamp, Some(Cow::Borrowed("40"))));
        assert_eq!(media.timestamp_ms(), Some(40));
    }

    #[test]
    fn escaped_strings_are_unescaped_into_owned_ones() {
        let frame = r#"{"event":"media","media":{"track":"in\u0062ound","payload":"AAAA"}}"#;
        let Ok(Inbound::Media { media }) = parse(frame) else {
            panic!("not parsed as media");
        };
        assert!(matches!(media.track, Some(Cow::Owned(ref t)) if t == "inbound"));
        assert_eq!(media.timestamp, None);
    }
}
