//! Shared pieces of the load benchmarks (`soak`, `loadgen`): Twilio-style call placement,
//! the frames callers send, the lean message shapes both peers read on their hot paths, and
//! process figures from `/proc`.
//!
//! The peers of a benchmark must stay cheap and small next to the server they measure, so
//! these helpers read messages into borrowed structs and keep no history.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::SinkExt;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::fake_twilio;

/// One caller frame: 20 ms of 8 kHz μ-law.
pub const FRAME_BYTES: usize = 160;
/// How often Twilio sends a caller frame.
pub const FRAME_PERIOD: Duration = Duration::from_millis(20);

static START: OnceLock<Instant> = OnceLock::new();

/// Microseconds since the first call of this function in the process: the clock stamped
/// into frames, so that the far end (in the same process) can tell their age.
pub fn now_us() -> u64 {
    START.get_or_init(Instant::now).elapsed().as_micros() as u64
}

/// One frame's bytes: its sequence number and send time (little-endian), then `fill`.
pub fn frame_bytes(seq: u64, fill: u8) -> [u8; FRAME_BYTES] {
    let mut bytes = [fill; FRAME_BYTES];
    bytes[..8].copy_from_slice(&seq.to_le_bytes());
    bytes[8..16].copy_from_slice(&now_us().to_le_bytes());
    bytes
}

/// One frame ([`frame_bytes`]), base64.
pub fn frame_b64(seq: u64, fill: u8) -> String {
    base64::engine::general_purpose::STANDARD.encode(frame_bytes(seq, fill))
}

/// A frame's sequence number and send time, if it is one of ours, unchanged.
pub fn read_frame(b64: &str, fill: u8) -> Option<(u64, u64)> {
    let mut bytes = [0u8; FRAME_BYTES + 8];
    let n = base64::engine::general_purpose::STANDARD
        .decode_slice(b64, &mut bytes)
        .ok()?;
    if n != FRAME_BYTES || bytes[16..FRAME_BYTES].iter().any(|&b| b != fill) {
        return None;
    }
    let seq = u64::from_le_bytes(bytes[..8].try_into().ok()?);
    let sent = u64::from_le_bytes(bytes[8..16].try_into().ok()?);
    Some((seq, sent))
}

/// The peers' WebSocket settings: a small read buffer instead of tungstenite's 128 KiB
/// (which it zero-fills, so all of it is resident), so that the peers' memory stays small.
pub fn peer_ws_config(read_buffer_bytes: usize) -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(read_buffer_bytes)
}

// ---------------------------------------------------------------------------------------
// What the peers read on their hot paths
// ---------------------------------------------------------------------------------------

/// What patter sends Twilio. Base64 payloads and patter's mark names carry no JSON escapes,
/// so they borrow from the message.
#[derive(Deserialize)]
pub struct TwilioOut<'a> {
    /// `media`, `mark` or `clear`.
    pub event: &'a str,
    /// The stream the message is for.
    #[serde(rename = "streamSid")]
    pub stream_sid: Option<&'a str>,
    /// A `media` message's body.
    #[serde(borrow, default)]
    pub media: Option<MediaOut<'a>>,
    /// A `mark` message's body.
    #[serde(borrow, default)]
    pub mark: Option<MarkOut<'a>>,
}

/// The body of a `media` message from patter.
#[derive(Deserialize)]
pub struct MediaOut<'a> {
    /// Base64 μ-law.
    pub payload: &'a str,
}

/// The body of a `mark` message from patter.
#[derive(Deserialize)]
pub struct MarkOut<'a> {
    /// The mark's name, echoed back when the audio before it has played.
    pub name: &'a str,
}

/// The head of a client event at the engine; the hot path (`input_audio_buffer.append`)
/// needs no more.
#[derive(Deserialize)]
pub struct ClientHead<'a> {
    /// The event type.
    #[serde(rename = "type")]
    pub kind: &'a str,
    /// An append's base64 audio.
    #[serde(default)]
    pub audio: Option<&'a str>,
}

// ---------------------------------------------------------------------------------------
// Placing a call as Twilio does
// ---------------------------------------------------------------------------------------

/// The stream URL and `<Parameter>`s of a `<Connect><Stream>` TwiML answer.
pub fn parse_twiml(twiml: &str) -> Result<(String, Vec<(String, String)>), String> {
    if !twiml.contains("<Response><Connect><Stream url=") {
        return Err(format!("not a <Connect><Stream> TwiML: {twiml}"));
    }
    let attr = |tag: &str, name: &str| -> Result<String, String> {
        let key = format!("{name}=\"");
        let start = tag.find(&key).ok_or_else(|| format!("no {name}"))? + key.len();
        let end = start + tag[start..].find('"').ok_or("no closing quote")?;
        Ok(tag[start..end]
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"))
    };
    let stream_tag = &twiml[twiml.find("<Stream").ok_or("no <Stream>")?..];
    let url = attr(stream_tag, "url")?;
    let params = twiml
        .split("<Parameter ")
        .skip(1)
        .map(|tag| Ok((attr(tag, "name")?, attr(tag, "value")?)))
        .collect::<Result<_, String>>()?;
    Ok((url, params))
}

/// One call to place: where, as whom, and with which ids.
pub struct CallPlan<'a> {
    /// The server, `http://127.0.0.1:port`.
    pub base: &'a str,
    /// What Twilio is configured with (and signs): the public URL in front of the server.
    pub public_url: &'a str,
    /// The Twilio auth token the requests are signed with.
    pub auth_token: &'a str,
    /// `CA…`.
    pub call_sid: String,
    /// `MZ…`.
    pub stream_sid: String,
    /// `AC…`.
    pub account_sid: String,
    /// The stream socket's settings.
    pub ws_config: WebSocketConfig,
    /// The bound on the stream's connect and on its upgrade, each.
    pub timeout: Duration,
}

/// The caller's end of a call's media stream, after `start`.
pub struct Caller {
    /// The stream socket.
    pub ws: WebSocketStream<TcpStream>,
    /// `CA…`.
    pub call_sid: String,
    /// `MZ…`.
    pub stream_sid: String,
    /// `AC…`.
    pub account_sid: String,
    /// The last `sequenceNumber` sent.
    pub seq: u64,
    /// The last media `chunk` sent.
    pub chunk: u64,
}

/// Places a call as Twilio does: signed voice webhook, TwiML, signed stream upgrade (over the
/// TwiML's `wss://` URL), `connected`, `start` with the TwiML's parameters.
pub async fn place_call(plan: CallPlan<'_>) -> Result<Caller, String> {
    let (status, content_type, twiml) = fake_twilio::post_voice_webhook(
        plan.base,
        plan.public_url,
        plan.auth_token,
        &[
            ("CallSid", &plan.call_sid),
            ("AccountSid", &plan.account_sid),
            ("From", "+15550111"),
            ("To", "+15550100"),
            ("CallStatus", "ringing"),
            ("Direction", "inbound"),
            ("ApiVersion", "2010-04-01"),
        ],
    )
    .await;
    if status != 200 || !content_type.starts_with("text/xml") {
        return Err(format!("voice webhook: {status} {content_type} {twiml}"));
    }
    let (signed_url, params) = parse_twiml(&twiml)?;
    let ws_url = format!("{}/twilio/stream", plan.base.replace("http://", "ws://"));
    let mut request = ws_url
        .as_str()
        .into_client_request()
        .map_err(|e| e.to_string())?;
    let signature = fake_twilio::signature(plan.auth_token, &signed_url, &[]);
    request.headers_mut().insert(
        "X-Twilio-Signature",
        HeaderValue::from_str(&signature).map_err(|e| e.to_string())?,
    );
    let authority = plan.base.trim_start_matches("http://");
    let tcp = tokio::time::timeout(plan.timeout, TcpStream::connect(authority))
        .await
        .map_err(|_| "stream connect timed out".to_owned())?
        .map_err(|e| format!("stream connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let (ws, _) = tokio::time::timeout(
        plan.timeout,
        tokio_tungstenite::client_async_with_config(request, tcp, Some(plan.ws_config)),
    )
    .await
    .map_err(|_| "stream upgrade timed out".to_owned())?
    .map_err(|e| format!("stream upgrade: {e}"))?;
    let mut caller = Caller {
        ws,
        call_sid: plan.call_sid,
        stream_sid: plan.stream_sid,
        account_sid: plan.account_sid,
        seq: 0,
        chunk: 0,
    };
    caller
        .send(json!({"event": "connected", "protocol": "Call", "version": "1.0.0"}).to_string())
        .await?;
    let custom: serde_json::Map<String, Value> = params
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    caller.seq += 1;
    let start = json!({
        "event": "start",
        "sequenceNumber": caller.seq.to_string(),
        "streamSid": caller.stream_sid,
        "start": {
            "accountSid": caller.account_sid,
            "streamSid": caller.stream_sid,
            "callSid": caller.call_sid,
            "tracks": ["inbound"],
            "customParameters": custom,
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
        }
    });
    caller.send(start.to_string()).await?;
    Ok(caller)
}

impl Caller {
    /// Sends one text message.
    pub async fn send(&mut self, text: String) -> Result<(), String> {
        self.ws
            .send(Message::text(text))
            .await
            .map_err(|e| format!("{}: send failed: {e}", self.call_sid))
    }

    /// The next `media` message, carrying `payload` (base64).
    pub fn media(&mut self, payload: &str) -> String {
        let mut text = String::with_capacity(160 + payload.len());
        self.media_into(&mut text, |text| text.push_str(payload));
        text
    }

    /// Writes the next `media` message into `text`; `payload` writes the base64 payload in
    /// place, so that a frame costs one allocation (the message).
    pub fn media_into(&mut self, text: &mut String, payload: impl FnOnce(&mut String)) {
        use std::fmt::Write as _;
        self.seq += 1;
        self.chunk += 1;
        // Writing to a String cannot fail.
        let _ = write!(
            text,
            r#"{{"event":"media","sequenceNumber":"{}","streamSid":"{}","media":{{"track":"inbound","chunk":"{}","timestamp":"{}","payload":""#,
            self.seq,
            self.stream_sid,
            self.chunk,
            self.chunk * FRAME_PERIOD.as_millis() as u64,
        );
        payload(text);
        text.push_str("\"}}");
    }

    /// The echo of mark `name`, as Twilio sends it once the audio before it has played.
    pub fn mark_echo(&mut self, name: &str) -> String {
        self.seq += 1;
        mark_message(self.seq, &self.stream_sid, name)
    }

    /// The `stop` message: the caller hung up.
    pub fn stop(&mut self) -> String {
        self.seq += 1;
        json!({
            "event": "stop",
            "sequenceNumber": self.seq.to_string(),
            "streamSid": self.stream_sid,
            "stop": {"accountSid": self.account_sid, "callSid": self.call_sid}
        })
        .to_string()
    }
}

/// A `mark` message from Twilio. A mark follows every chunk of agent audio, so names that
/// need no escaping (patter's are `p<n>`) are written in directly rather than through a JSON
/// value.
fn mark_message(seq: u64, stream_sid: &str, name: &str) -> String {
    if name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
    {
        return format!(
            r#"{{"event":"mark","sequenceNumber":"{seq}","streamSid":"{stream_sid}","mark":{{"name":"{name}"}}}}"#
        );
    }
    json!({
        "event": "mark",
        "sequenceNumber": seq.to_string(),
        "streamSid": stream_sid,
        "mark": {"name": name}
    })
    .to_string()
}

// ---------------------------------------------------------------------------------------
// The server's figures
// ---------------------------------------------------------------------------------------

/// A `kB` field of `/proc/<pid>/status` (`pid` may be `self`): `VmRSS`, `VmHWM` ….
pub fn proc_status_kib(pid: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        line.strip_prefix(field)?
            .strip_prefix(':')?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    })
}

/// CPU time (user + system) of process `pid` (may be `self`), from `/proc/<pid>/stat`, whose
/// times are in clock ticks of 1/100 s (USER_HZ on Linux).
pub fn proc_cpu_time(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) may hold spaces; the fields after it are plain.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15; `after` starts at field 3.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// The number of calls in progress, from the server's `GET /health`.
pub async fn health_calls(base: &str) -> Result<u64, String> {
    let (status, _, body) =
        fake_twilio::http_request("GET", &format!("{base}/health"), &[], b"").await;
    if status != 200 {
        return Err(format!("GET /health: {status} {body}"));
    }
    let v: Value = serde_json::from_str(&body).map_err(|e| format!("GET /health: {e}"))?;
    v["calls"]
        .as_u64()
        .ok_or_else(|| format!("GET /health: no calls in {body}"))
}

/// Polls `done` every 100 ms until it holds or `limit` passes; whether it held. For states
/// that announce no event (another process's figures, counters summed over many tasks).
pub async fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads `--name value` and `--name=value` flags, handing each to `set`, which answers
/// `None` for a name it does not know and `Some(false)` for a value it refuses. `-h` and
/// `--help`, an unknown name, a missing or refused value: the error carries `usage`.
pub fn read_flags(
    args: impl Iterator<Item = String>,
    usage: &str,
    mut set: impl FnMut(&str, &str) -> Option<bool>,
) -> Result<(), String> {
    let mut args = args;
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            return Err(usage.to_owned());
        }
        let (name, value) = match arg.split_once('=') {
            Some((name, value)) => (name.to_owned(), value.to_owned()),
            None => match args.next() {
                Some(value) => (arg, value),
                None => return Err(format!("{arg} needs a value\n{usage}")),
            },
        };
        match set(&name, &value) {
            None => return Err(format!("unknown argument {name:?}\n{usage}")),
            Some(false) => return Err(format!("bad value {value:?} for {name}\n{usage}")),
            Some(true) => {}
        }
    }
    Ok(())
}

/// Parses `text` into `slot`; whether it parsed.
pub fn set_parsed<T: std::str::FromStr>(slot: &mut T, text: &str) -> bool {
    text.parse().map(|value| *slot = value).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_reads_back_unchanged() {
        let b64 = frame_b64(42, 0x55);
        let (seq, _) = read_frame(&b64, 0x55).expect("our frame");
        assert_eq!(seq, 42);
        assert!(read_frame(&b64, 0x56).is_none());
    }

    #[test]
    fn mark_echoes_are_json_whatever_the_name() {
        for name in ["p12", "a \"quoted\" \\ name"] {
            let echo = mark_message(1, "MZ1", name);
            let v: Value = serde_json::from_str(&echo).expect("JSON");
            assert_eq!(v["event"], "mark");
            assert_eq!(v["mark"]["name"], name);
            assert_eq!(v["sequenceNumber"], "1");
            assert_eq!(v["streamSid"], "MZ1");
        }
    }

    #[test]
    fn twiml_stream_url_and_parameters() {
        let twiml = r#"<?xml version="1.0" encoding="UTF-8"?><Response><Connect><Stream url="wss://a.example/twilio/stream"><Parameter name="caller" value="+1&amp;2"/></Stream></Connect></Response>"#;
        let (url, params) = parse_twiml(twiml).expect("TwiML");
        assert_eq!(url, "wss://a.example/twilio/stream");
        assert_eq!(params, vec![("caller".to_owned(), "+1&2".to_owned())]);
    }

    #[test]
    fn proc_figures_of_this_process() {
        assert!(proc_status_kib("self", "VmRSS").is_some_and(|kib| kib > 0));
        assert!(proc_status_kib("self", "VmHWM").is_some());
        assert!(proc_status_kib("self", "NoSuchField").is_none());
    }
}
