//! Configuration: credentials, the public URL Twilio reaches, endpoints and limits.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use crate::audio::AudioFormat;
use crate::engine::EngineKind;
use crate::error::ConfigError;
use crate::secret::Secret;

/// Default OpenAI Realtime endpoint.
pub const DEFAULT_OPENAI_REALTIME_URL: &str = "wss://api.openai.com/v1/realtime";
/// Default OpenAI GPT-Live endpoint.
pub const DEFAULT_OPENAI_LIVE_URL: &str = "wss://api.openai.com/v1/live/sessions";
/// Default Twilio REST base URL.
pub const DEFAULT_TWILIO_API_URL: &str = "https://api.twilio.com";
/// Default HTTP port.
pub const DEFAULT_PORT: u16 = 8000;

/// Limits that keep one call, or one caller, from taking the server down. All have safe
/// defaults; see the README's "Security" section.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Largest HTTP request body accepted (default 64 KiB; Twilio's webhooks are ~2 KiB).
    pub max_http_body_bytes: usize,
    /// Largest WebSocket message accepted from Twilio or the engine (default 1 MiB).
    pub max_ws_message_bytes: usize,
    /// Calls served at once; beyond it new calls hear a busy message (default 100).
    pub max_concurrent_calls: usize,
    /// Longest call; then the agent hangs up (default 1 hour).
    pub max_call_duration: Duration,
    /// How long the engine may take to accept the WebSocket (default 10 s).
    pub engine_handshake_timeout: Duration,
    /// How long a new media stream may take to say which call it is (Twilio's `start`);
    /// then it is closed, with no engine session opened (default 10 s).
    pub stream_start_timeout: Duration,
    /// Largest tool result handed to the model; longer ones are cut, with a note
    /// (default 16 KiB).
    pub max_tool_result_bytes: usize,
    /// How long `end_call` waits for the goodbye to finish playing (default 10 s).
    pub goodbye_wait: Duration,
    /// On shutdown, how long calls in progress may go on before they are ended (default 30 s).
    pub drain_timeout: Duration,
    /// How long after the caller's last key their keys go to the model as one message
    /// ("The caller pressed 1 2 #"), unless a tool is collecting them (default 1.5 s).
    pub dtmf_gap: Duration,
    /// An engine that owes an answer (or missed the caller's speech) and has sent nothing
    /// this long is stalled, and replaced like a lost one (default 2 s: a Realtime response
    /// starts within a few hundred milliseconds and its events do not pause that long, and
    /// detection plus a reconnect stay within the 3 s of silence a caller may hear; see the
    /// README's "When the engine fails").
    pub engine_stall: Duration,
    /// Caller speech an engine must notice: this much, without a break, while the engine
    /// says nothing for `engine_stall`, is a stall (default 1 s; a Realtime engine reports
    /// speech within a few hundred milliseconds).
    pub engine_missed_speech: Duration,
    /// Caller silence after speech an engine must notice the end of, once it heard them
    /// start: longer than any voice-activity detector waits for a turn's end (default 10 s).
    pub engine_missed_silence: Duration,
    /// Engine sessions a call may open to replace lost or stalled ones; then the caller
    /// hears the apology (default 3; 0 turns reconnecting off).
    pub reconnect_attempts: u32,
    /// How long one replacement may take, all attempts together (default 4 s).
    pub reconnect_within: Duration,
    /// Conversation items a replacement session is given at most: the latest (default 60).
    pub reconnect_history_items: usize,
    /// Text a replacement session is given at most, in bytes (default 32 KiB).
    pub reconnect_history_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_http_body_bytes: 64 * 1024,
            max_ws_message_bytes: 1024 * 1024,
            max_concurrent_calls: 100,
            max_call_duration: Duration::from_secs(3600),
            engine_handshake_timeout: Duration::from_secs(10),
            stream_start_timeout: Duration::from_secs(10),
            max_tool_result_bytes: crate::tool::DEFAULT_MAX_RESULT_BYTES,
            goodbye_wait: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(30),
            dtmf_gap: Duration::from_millis(1500),
            engine_stall: Duration::from_secs(2),
            engine_missed_speech: Duration::from_secs(1),
            engine_missed_silence: Duration::from_secs(10),
            reconnect_attempts: 3,
            reconnect_within: Duration::from_secs(4),
            reconnect_history_items: 60,
            reconnect_history_bytes: 32 * 1024,
        }
    }
}

/// The public base URL Twilio reaches the server at, e.g. `https://agent.example.com`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl {
    /// `https` or `http`.
    scheme: String,
    /// Host, with the port if one was given.
    authority: String,
    /// Path prefix without a trailing `/` (empty for the root).
    prefix: String,
}

impl PublicUrl {
    /// Parses `https://host[:port][/prefix]`; a bare host means https.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let with_scheme = if text.contains("://") {
            text.to_owned()
        } else {
            format!("https://{text}")
        };
        let url = url::Url::parse(&with_scheme).map_err(|e| format!("is not a URL ({e})"))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err("must be an https:// URL".into());
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err("must not have a query string".into());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not contain credentials".into());
        }
        let Some(host) = url.host_str() else {
            return Err("has no host".into());
        };
        let authority = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        Ok(PublicUrl {
            scheme: url.scheme().to_owned(),
            authority,
            prefix: url.path().trim_end_matches('/').to_owned(),
        })
    }

    /// The `https://` URL of `path` (which starts with `/`).
    pub fn http(&self, path: &str) -> String {
        format!(
            "{}://{}{}{}",
            self.scheme, self.authority, self.prefix, path
        )
    }

    /// The `wss://` URL of `path` (`ws://` when the public URL is plain http).
    pub fn ws(&self, path: &str) -> String {
        let scheme = if self.scheme == "http" { "ws" } else { "wss" };
        format!("{scheme}://{}{}{}", self.authority, self.prefix, path)
    }
}

impl fmt::Display for PublicUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority, self.prefix)
    }
}

/// Everything patter needs to reach Twilio and the engine.
#[derive(Clone)]
pub struct Config {
    pub(crate) twilio_account_sid: String,
    pub(crate) twilio_auth_token: Secret,
    pub(crate) phone_number: String,
    pub(crate) public_url: PublicUrl,
    pub(crate) port: u16,
    pub(crate) bind: IpAddr,
    pub(crate) twilio_api_url: String,
    pub(crate) stream_secret: Secret,
    /// Where `/metrics` is served instead of the main port (`PATTER_METRICS_PORT`).
    pub(crate) metrics_port: Option<u16>,
    /// The bearer token `/metrics` asks for, if set (`PATTER_METRICS_TOKEN`).
    pub(crate) metrics_token: Option<Secret>,
    pub(crate) local: LocalConfig,
}

/// What a conversation needs besides a phone line: the OpenAI key, the engines' endpoints,
/// this deployment's engine, model, voice and audio format, the limits, and whether the
/// system tools are added. The console runs with one alone (only `OPENAI_API_KEY` is
/// required); a [`Config`] holds one ([`Config::local`]).
#[derive(Clone)]
pub struct LocalConfig {
    pub(crate) openai_api_key: Secret,
    /// The port a local server (the softphone) listens on (`PORT`).
    pub(crate) port: u16,
    /// The address it binds, if set (`BIND_ADDRESS`); the softphone's default is loopback.
    pub(crate) bind: Option<IpAddr>,
    /// The softphone's token when set (`PATTER_DEV_TOKEN`) instead of a random one; it also
    /// lets the softphone bind beyond loopback.
    pub(crate) dev_token: Option<Secret>,
    /// Transfer destinations and allow-patterns that replace the agent's, where set
    /// (`PATTER_TRANSFER_DESTINATIONS`, `PATTER_TRANSFER_ALLOW`).
    pub(crate) transfers: crate::call::Transfers,
    pub(crate) openai_realtime_url: String,
    pub(crate) openai_live_url: String,
    pub(crate) system_tools: bool,
    pub(crate) limits: Limits,
    pub(crate) model: Option<String>,
    pub(crate) voice: Option<String>,
    pub(crate) audio_format: Option<AudioFormat>,
    pub(crate) engine: Option<EngineKind>,
    pub(crate) delegation_model: Option<String>,
    /// What traces may say about a call (`PATTER_CALLER_HASH_KEY`,
    /// `PATTER_TRACE_TRANSCRIPTS`).
    pub(crate) trace: crate::call::TraceSettings,
    /// What callers hear when the engine cannot take their call (`PATTER_OUTAGE_MESSAGE`,
    /// `PATTER_OUTAGE_VOICE`, `PATTER_OUTAGE_TRANSFER`).
    pub(crate) outage: crate::carrier::Outage,
}

impl LocalConfig {
    /// The port a local server listens on (`PORT`, default 8000).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The address a local server binds, if set (`BIND_ADDRESS`).
    pub fn bind_address(&self) -> Option<IpAddr> {
        self.bind
    }

    /// The OpenAI Realtime endpoint.
    pub fn openai_realtime_url(&self) -> &str {
        &self.openai_realtime_url
    }

    /// The OpenAI GPT-Live endpoint.
    pub fn openai_live_url(&self) -> &str {
        &self.openai_live_url
    }

    /// The engine every call uses instead of its agent's, if set (`PATTER_ENGINE`).
    pub fn engine(&self) -> Option<EngineKind> {
        self.engine
    }

    /// The limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The model every call uses instead of its agent's, if set (`PATTER_MODEL`).
    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }
}

impl fmt::Debug for LocalConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalConfig")
            .field("openai_api_key", &self.openai_api_key)
            .field("port", &self.port)
            .field("bind", &self.bind)
            .field("dev_token", &self.dev_token)
            .field("transfers", &self.transfers)
            .field(
                "openai_realtime_url",
                &crate::util::redact_url(&self.openai_realtime_url),
            )
            .field(
                "openai_live_url",
                &crate::util::redact_url(&self.openai_live_url),
            )
            .field("system_tools", &self.system_tools)
            .field("limits", &self.limits)
            .field("model", &self.model)
            .field("voice", &self.voice)
            .field("audio_format", &self.audio_format)
            .field("engine", &self.engine)
            .field("delegation_model", &self.delegation_model)
            .field("trace", &self.trace)
            .field("outage", &self.outage)
            .finish()
    }
}

impl Config {
    /// The Twilio account SID.
    pub fn twilio_account_sid(&self) -> &str {
        &self.twilio_account_sid
    }

    /// The agent's phone number.
    pub fn phone_number(&self) -> &str {
        &self.phone_number
    }

    /// The public base URL.
    pub fn public_url(&self) -> &PublicUrl {
        &self.public_url
    }

    /// The HTTP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The address the server binds.
    pub fn bind_address(&self) -> IpAddr {
        self.bind
    }

    /// The OpenAI Realtime endpoint.
    pub fn openai_realtime_url(&self) -> &str {
        &self.local.openai_realtime_url
    }

    /// The OpenAI GPT-Live endpoint.
    pub fn openai_live_url(&self) -> &str {
        &self.local.openai_live_url
    }

    /// The engine every call uses instead of its agent's, if set (`PATTER_ENGINE`).
    pub fn engine(&self) -> Option<EngineKind> {
        self.local.engine
    }

    /// The backend model GPT-Live delegates tools to, if set (`PATTER_DELEGATION_MODEL`).
    pub fn delegation_model(&self) -> Option<&str> {
        self.local.delegation_model.as_deref()
    }

    /// The Twilio REST base URL.
    pub fn twilio_api_url(&self) -> &str {
        &self.twilio_api_url
    }

    /// The limits.
    pub fn limits(&self) -> &Limits {
        &self.local.limits
    }

    /// The model every call uses instead of its agent's, if set (`PATTER_MODEL`).
    pub fn model(&self) -> Option<&str> {
        self.local.model.as_deref()
    }

    /// What a conversation needs besides the phone line.
    pub fn local(&self) -> &LocalConfig {
        &self.local
    }

    /// The voice every call uses instead of its agent's, if set (`PATTER_VOICE`).
    pub fn voice(&self) -> Option<&str> {
        self.local.voice.as_deref()
    }

    /// The engine audio format every call uses instead of its agent's, if set
    /// (`PATTER_AUDIO_FORMAT`).
    pub fn audio_format(&self) -> Option<AudioFormat> {
        self.local.audio_format
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("twilio_account_sid", &self.twilio_account_sid)
            .field("twilio_auth_token", &self.twilio_auth_token)
            .field("phone_number", &self.phone_number)
            .field("public_url", &self.public_url.to_string())
            .field("port", &self.port)
            .field("bind", &self.bind)
            .field(
                "twilio_api_url",
                &crate::util::redact_url(&self.twilio_api_url),
            )
            .field("stream_secret", &self.stream_secret)
            .field("metrics_port", &self.metrics_port)
            .field("metrics_token", &self.metrics_token)
            .field("local", &self.local)
            .finish()
    }
}

/// Builds a [`Config`] by hand; [`crate::Patter::builder`] starts one.
#[derive(Debug, Clone, Default)]
pub struct ConfigBuilder {
    values: Vec<(&'static str, String)>,
    limits: Limits,
    system_tools: Option<bool>,
}

/// The settings, by environment variable name.
pub(crate) const TWILIO_ACCOUNT_SID: &str = "TWILIO_ACCOUNT_SID";
pub(crate) const TWILIO_AUTH_TOKEN: &str = "TWILIO_AUTH_TOKEN";
pub(crate) const OPENAI_API_KEY: &str = "OPENAI_API_KEY";
pub(crate) const PHONE_NUMBER: &str = "PHONE_NUMBER";
pub(crate) const WEBHOOK_URL: &str = "WEBHOOK_URL";
pub(crate) const PORT: &str = "PORT";
pub(crate) const BIND_ADDRESS: &str = "BIND_ADDRESS";
pub(crate) const OPENAI_REALTIME_URL: &str = "OPENAI_REALTIME_URL";
pub(crate) const OPENAI_LIVE_URL: &str = "OPENAI_LIVE_URL";
pub(crate) const TWILIO_API_URL: &str = "TWILIO_API_URL";
pub(crate) const STREAM_SECRET: &str = "PATTER_STREAM_SECRET";
pub(crate) const METRICS_PORT: &str = "PATTER_METRICS_PORT";
pub(crate) const METRICS_TOKEN: &str = "PATTER_METRICS_TOKEN";
pub(crate) const MAX_CONCURRENT_CALLS: &str = "PATTER_MAX_CONCURRENT_CALLS";
pub(crate) const MAX_CALL_DURATION_SECS: &str = "PATTER_MAX_CALL_DURATION_SECS";
pub(crate) const DRAIN_TIMEOUT_SECS: &str = "PATTER_DRAIN_TIMEOUT_SECS";
pub(crate) const AUDIO_FORMAT: &str = "PATTER_AUDIO_FORMAT";
pub(crate) const MODEL: &str = "PATTER_MODEL";
pub(crate) const VOICE: &str = "PATTER_VOICE";
pub(crate) const ENGINE: &str = "PATTER_ENGINE";
pub(crate) const DELEGATION_MODEL: &str = "PATTER_DELEGATION_MODEL";
pub(crate) const CALLER_HASH_KEY: &str = "PATTER_CALLER_HASH_KEY";
pub(crate) const OUTAGE_MESSAGE: &str = "PATTER_OUTAGE_MESSAGE";
pub(crate) const OUTAGE_VOICE: &str = "PATTER_OUTAGE_VOICE";
pub(crate) const OUTAGE_TRANSFER: &str = "PATTER_OUTAGE_TRANSFER";
pub(crate) const TRACE_TRANSCRIPTS: &str = "PATTER_TRACE_TRANSCRIPTS";
pub(crate) const DEV_TOKEN: &str = "PATTER_DEV_TOKEN";
pub(crate) const TRANSFER_DESTINATIONS: &str = "PATTER_TRANSFER_DESTINATIONS";
pub(crate) const TRANSFER_ALLOW: &str = "PATTER_TRANSFER_ALLOW";

const ALL: &[&str] = &[
    TWILIO_ACCOUNT_SID,
    TWILIO_AUTH_TOKEN,
    OPENAI_API_KEY,
    PHONE_NUMBER,
    WEBHOOK_URL,
    PORT,
    BIND_ADDRESS,
    OPENAI_REALTIME_URL,
    OPENAI_LIVE_URL,
    TWILIO_API_URL,
    STREAM_SECRET,
    METRICS_PORT,
    METRICS_TOKEN,
    MAX_CONCURRENT_CALLS,
    MAX_CALL_DURATION_SECS,
    DRAIN_TIMEOUT_SECS,
    AUDIO_FORMAT,
    MODEL,
    VOICE,
    ENGINE,
    DELEGATION_MODEL,
    CALLER_HASH_KEY,
    TRACE_TRANSCRIPTS,
    OUTAGE_MESSAGE,
    OUTAGE_VOICE,
    OUTAGE_TRANSFER,
    DEV_TOKEN,
    TRANSFER_DESTINATIONS,
    TRANSFER_ALLOW,
];

impl ConfigBuilder {
    fn set(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.values.retain(|(k, _)| *k != key);
        self.values.push((key, value.into()));
        self
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Reads every setting from the environment (variables that are unset stay unset).
    pub fn from_env() -> Self {
        ALL.iter().fold(ConfigBuilder::default(), |b, &key| {
            match std::env::var(key) {
                Ok(value) => b.set(key, value),
                Err(_) => b,
            }
        })
    }

    /// Twilio account SID (`AC…`).
    pub fn twilio_account_sid(self, sid: impl Into<String>) -> Self {
        self.set(TWILIO_ACCOUNT_SID, sid)
    }

    /// Twilio auth token; also the key Twilio signs its webhooks with.
    pub fn twilio_auth_token(self, token: impl Into<String>) -> Self {
        self.set(TWILIO_AUTH_TOKEN, token)
    }

    /// OpenAI API key.
    pub fn openai_api_key(self, key: impl Into<String>) -> Self {
        self.set(OPENAI_API_KEY, key)
    }

    /// The agent's phone number, E.164.
    pub fn phone_number(self, number: impl Into<String>) -> Self {
        self.set(PHONE_NUMBER, number)
    }

    /// The public base URL Twilio reaches (a bare host means https).
    pub fn webhook_url(self, url: impl Into<String>) -> Self {
        self.set(WEBHOOK_URL, url)
    }

    /// Adds `call.caller_hash` to each call's span: the caller's number, HMAC-SHA256 keyed
    /// with `key` (`PATTER_CALLER_HASH_KEY`).
    pub fn caller_hash_key(self, key: impl Into<String>) -> Self {
        self.set(CALLER_HASH_KEY, key)
    }

    /// Puts each turn's words in the trace (`PATTER_TRACE_TRANSCRIPTS`; off by default).
    pub fn trace_transcripts(self, on: bool) -> Self {
        self.set(TRACE_TRANSCRIPTS, if on { "1" } else { "0" })
    }

    /// What callers hear, in the carrier's voice, when the engine cannot take or go on
    /// with their call (`PATTER_OUTAGE_MESSAGE`).
    pub fn outage_message(self, message: impl Into<String>) -> Self {
        self.set(OUTAGE_MESSAGE, message)
    }

    /// The carrier's voice for it (`PATTER_OUTAGE_VOICE`, e.g. `Polly.Joanna`).
    pub fn outage_voice(self, voice: impl Into<String>) -> Self {
        self.set(OUTAGE_VOICE, voice)
    }

    /// Transfers the caller here after the message instead of hanging up
    /// (`PATTER_OUTAGE_TRANSFER`, E.164).
    pub fn outage_transfer(self, number: impl Into<String>) -> Self {
        self.set(OUTAGE_TRANSFER, number)
    }

    /// Serves `/metrics` (feature `prometheus`) on this port instead of the main one.
    pub fn metrics_port(self, port: u16) -> Self {
        self.set(METRICS_PORT, port.to_string())
    }

    /// Asks for `Authorization: Bearer <token>` on `/metrics`.
    pub fn metrics_token(self, token: impl Into<String>) -> Self {
        self.set(METRICS_TOKEN, token)
    }

    /// The HTTP port (default 8000).
    pub fn port(self, port: u16) -> Self {
        self.set(PORT, port.to_string())
    }

    /// The address to bind (default `0.0.0.0`).
    pub fn bind_address(self, address: IpAddr) -> Self {
        self.set(BIND_ADDRESS, address.to_string())
    }

    /// The OpenAI Realtime endpoint (a proxy, Azure, or a local test peer).
    pub fn openai_realtime_url(self, url: impl Into<String>) -> Self {
        self.set(OPENAI_REALTIME_URL, url)
    }

    /// The OpenAI GPT-Live endpoint (a proxy, a gateway, or a local test peer).
    pub fn openai_live_url(self, url: impl Into<String>) -> Self {
        self.set(OPENAI_LIVE_URL, url)
    }

    /// The engine of every call, instead of its agent's (`PATTER_ENGINE`: `realtime` or
    /// `gpt-live`).
    pub fn engine(self, engine: EngineKind) -> Self {
        self.set(ENGINE, engine.as_str())
    }

    /// The backend model GPT-Live delegates tools to (`PATTER_DELEGATION_MODEL`).
    pub fn delegation_model(self, model: impl Into<String>) -> Self {
        self.set(DELEGATION_MODEL, model)
    }

    /// The Twilio REST base URL.
    pub fn twilio_api_url(self, url: impl Into<String>) -> Self {
        self.set(TWILIO_API_URL, url)
    }

    /// The secret per-call stream tokens are signed with; instances behind one load
    /// balancer share it. Defaults to one derived from the auth token.
    pub fn stream_secret(self, secret: impl Into<String>) -> Self {
        self.set(STREAM_SECRET, secret)
    }

    /// Whether every agent gets the `end_call` and `transfer_call` tools (default true).
    pub fn system_tools(mut self, enabled: bool) -> Self {
        self.system_tools = Some(enabled);
        self
    }

    /// Replaces the limits. Settings of single limits (`max_concurrent_calls`, …, or their
    /// `PATTER_*` variables) apply on top.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Calls served at once (`PATTER_MAX_CONCURRENT_CALLS`, default 100).
    pub fn max_concurrent_calls(self, calls: usize) -> Self {
        self.set(MAX_CONCURRENT_CALLS, calls.to_string())
    }

    /// The longest call, in whole seconds (`PATTER_MAX_CALL_DURATION_SECS`, default 3600).
    pub fn max_call_duration_secs(self, secs: u64) -> Self {
        self.set(MAX_CALL_DURATION_SECS, secs.to_string())
    }

    /// How long calls may go on after a shutdown starts, in whole seconds
    /// (`PATTER_DRAIN_TIMEOUT_SECS`, default 30).
    pub fn drain_timeout_secs(self, secs: u64) -> Self {
        self.set(DRAIN_TIMEOUT_SECS, secs.to_string())
    }

    /// The engine audio format of every call, instead of its agent's
    /// (`PATTER_AUDIO_FORMAT`: `pcmu` or `pcm24k`).
    pub fn audio_format(self, format: AudioFormat) -> Self {
        self.set(AUDIO_FORMAT, format.as_str())
    }

    /// The model of every call, instead of its agent's (`PATTER_MODEL`).
    pub fn model(self, model: impl Into<String>) -> Self {
        self.set(MODEL, model)
    }

    /// The voice of every call, instead of its agent's (`PATTER_VOICE`).
    pub fn voice(self, voice: impl Into<String>) -> Self {
        self.set(VOICE, voice)
    }

    /// The softphone's token instead of a random one (`PATTER_DEV_TOKEN`); with it, the
    /// softphone may bind beyond loopback.
    pub fn dev_token(self, token: impl Into<String>) -> Self {
        self.set(DEV_TOKEN, token)
    }

    /// Named transfer destinations, `name=+number` separated by commas, instead of the
    /// agent's (`PATTER_TRANSFER_DESTINATIONS`).
    pub fn transfer_destinations(self, pairs: impl Into<String>) -> Self {
        self.set(TRANSFER_DESTINATIONS, pairs)
    }

    /// Patterns of numbers the model may transfer to, separated by commas, instead of the
    /// agent's (`PATTER_TRANSFER_ALLOW`; see [`crate::NumberPattern`]).
    pub fn transfer_allow(self, patterns: impl Into<String>) -> Self {
        self.set(TRANSFER_ALLOW, patterns)
    }

    /// Checks every setting and reports every problem at once.
    pub fn build(self) -> Result<Config, ConfigError> {
        let mut problems = ConfigError::new();
        let sid = self.required(TWILIO_ACCOUNT_SID, &mut problems);
        let token = self.required(TWILIO_AUTH_TOKEN, &mut problems);
        let api_key = self.required(OPENAI_API_KEY, &mut problems);
        let phone = self.required(PHONE_NUMBER, &mut problems);
        let webhook = self.required(WEBHOOK_URL, &mut problems);

        let sid_ok = sid.len() == 34
            && sid.starts_with("AC")
            && sid[2..].bytes().all(|b| b.is_ascii_hexdigit());
        if !sid.is_empty() && !sid_ok {
            problems.push(TWILIO_ACCOUNT_SID, "must be AC followed by 32 hex digits");
        }
        if !phone.is_empty() && !is_e164(&phone) {
            problems.push(PHONE_NUMBER, "must be an E.164 number like +15550100");
        }
        let public_url = if webhook.is_empty() {
            None
        } else {
            match PublicUrl::parse(&webhook) {
                Ok(url) => Some(url),
                Err(problem) => {
                    problems.push(WEBHOOK_URL, problem);
                    None
                }
            }
        };
        let local = self.local_settings(api_key, &mut problems);
        let metrics_port = match self.get(METRICS_PORT).map(str::trim) {
            None | Some("") => None,
            Some(text) => match text.parse::<u16>() {
                Ok(port) if port > 0 => Some(port),
                _ => {
                    problems.push(METRICS_PORT, "must be a port number (1-65535)");
                    None
                }
            },
        };
        let metrics_token = self
            .get(METRICS_TOKEN)
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(Secret::new);
        let twilio_api = endpoint(
            self.get(TWILIO_API_URL),
            DEFAULT_TWILIO_API_URL,
            &["https", "http"],
            TWILIO_API_URL,
            &mut problems,
        );
        if !problems.is_empty() {
            return Err(problems);
        }
        let stream_secret = match self.get(STREAM_SECRET) {
            Some(secret) if !secret.is_empty() => Secret::new(secret),
            // Derived, so every instance with the same auth token agrees without more setup.
            _ => Secret::new(crate::util::hmac_sha256_hex(
                token.as_bytes(),
                &[b"patter stream token key v1"],
            )),
        };
        let public_url = public_url.ok_or_else(ConfigError::new)?;
        Ok(Config {
            twilio_account_sid: sid,
            twilio_auth_token: Secret::new(token),
            phone_number: phone,
            public_url,
            port: local.port,
            bind: local.bind.unwrap_or(IpAddr::from([0, 0, 0, 0])),
            twilio_api_url: twilio_api.trim_end_matches('/').to_owned(),
            stream_secret,
            metrics_port,
            metrics_token,
            local,
        })
    }

    /// Checks only what a conversation without a phone line needs (the console's settings):
    /// `OPENAI_API_KEY`, the engine's endpoints and choice, model, voice, audio format and
    /// limits. Twilio's settings are not asked for.
    pub fn build_local(self) -> Result<LocalConfig, ConfigError> {
        let mut problems = ConfigError::new();
        let api_key = self.required(OPENAI_API_KEY, &mut problems);
        let local = self.local_settings(api_key, &mut problems);
        if problems.is_empty() {
            Ok(local)
        } else {
            Err(problems)
        }
    }

    fn required(&self, key: &str, problems: &mut ConfigError) -> String {
        match self.get(key).map(str::trim) {
            Some(v) if !v.is_empty() => v.to_owned(),
            _ => {
                problems.push(key, "is not set");
                String::new()
            }
        }
    }

    /// Reads the settings of [`LocalConfig`]; each problem is added to `problems`.
    fn local_settings(&self, api_key: String, problems: &mut ConfigError) -> LocalConfig {
        let port = match self.get(PORT).map(str::trim) {
            None | Some("") => DEFAULT_PORT,
            Some(text) => text.parse::<u16>().unwrap_or_else(|_| {
                problems.push(PORT, "must be a port number (1-65535)");
                DEFAULT_PORT
            }),
        };
        let bind = match self.get(BIND_ADDRESS).map(str::trim) {
            None | Some("") => None,
            Some(text) => text.parse().map(Some).unwrap_or_else(|_| {
                problems.push(
                    BIND_ADDRESS,
                    "must be an IP address like 0.0.0.0 or 127.0.0.1",
                );
                None
            }),
        };
        let realtime = endpoint(
            self.get(OPENAI_REALTIME_URL),
            DEFAULT_OPENAI_REALTIME_URL,
            &["wss", "ws"],
            OPENAI_REALTIME_URL,
            problems,
        );
        let live = endpoint(
            self.get(OPENAI_LIVE_URL),
            DEFAULT_OPENAI_LIVE_URL,
            &["wss", "ws"],
            OPENAI_LIVE_URL,
            problems,
        );
        let mut limits = self.limits.clone();
        if let Some(calls) = number(
            self.get(MAX_CONCURRENT_CALLS),
            1,
            MAX_CONCURRENT_CALLS,
            problems,
        ) {
            limits.max_concurrent_calls = usize::try_from(calls).unwrap_or(usize::MAX);
        }
        if let Some(secs) = number(
            self.get(MAX_CALL_DURATION_SECS),
            1,
            MAX_CALL_DURATION_SECS,
            problems,
        ) {
            limits.max_call_duration = Duration::from_secs(secs);
        }
        if let Some(secs) = number(
            self.get(DRAIN_TIMEOUT_SECS),
            0,
            DRAIN_TIMEOUT_SECS,
            problems,
        ) {
            limits.drain_timeout = Duration::from_secs(secs);
        }
        let audio_format = match self.get(AUDIO_FORMAT).map(str::trim) {
            None | Some("") => None,
            Some(text) => AudioFormat::parse(text).or_else(|| {
                problems.push(AUDIO_FORMAT, "must be pcmu or pcm24k");
                None
            }),
        };
        let engine = match self.get(ENGINE).map(str::trim) {
            None | Some("") => None,
            Some(text) => EngineKind::parse(text).or_else(|| {
                problems.push(ENGINE, "must be realtime or gpt-live");
                None
            }),
        };
        let text = |key: &str| {
            self.get(key)
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        // The token travels in a URL fragment and as a WebSocket subprotocol, and guards a
        // softphone reachable beyond loopback: URL- and header-safe, and not guessable.
        let dev_token = text(DEV_TOKEN);
        if let Some(token) = &dev_token
            && (token.len() < 16
                || !token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._~-".contains(&b)))
        {
            problems.push(
                DEV_TOKEN,
                "must be at least 16 characters of A-Z, a-z, 0-9, '.', '_', '~' or '-'",
            );
        }
        let mut transfers = crate::call::Transfers::new();
        if let Some(text) = text(TRANSFER_DESTINATIONS) {
            match transfers.clone().with_destinations_from(&text) {
                Ok(read) => transfers = read,
                Err(e) => problems.push(TRANSFER_DESTINATIONS, e.to_string()),
            }
        }
        if let Some(text) = text(TRANSFER_ALLOW) {
            match transfers.clone().with_allowed_from(&text) {
                Ok(read) => transfers = read,
                Err(e) => problems.push(TRANSFER_ALLOW, e.to_string()),
            }
        }
        LocalConfig {
            openai_api_key: Secret::new(api_key),
            transfers,
            port,
            bind,
            dev_token: dev_token.map(Secret::new),
            openai_realtime_url: realtime.trim_end_matches('/').to_owned(),
            openai_live_url: live.trim_end_matches('/').to_owned(),
            system_tools: self.system_tools.unwrap_or(true),
            limits,
            model: text(MODEL),
            voice: text(VOICE),
            audio_format,
            engine,
            delegation_model: text(DELEGATION_MODEL),
            outage: {
                let mut outage = crate::carrier::Outage::default();
                if let Some(message) = text(OUTAGE_MESSAGE) {
                    outage.message = message;
                }
                outage.voice = text(OUTAGE_VOICE);
                outage.fallback = text(OUTAGE_TRANSFER);
                if let Some(number) = &outage.fallback
                    && !is_e164(number)
                {
                    problems.push(OUTAGE_TRANSFER, "must be an E.164 number like +15550100");
                }
                outage
            },
            trace: crate::call::TraceSettings {
                caller_hash_key: text(CALLER_HASH_KEY).map(Secret::new),
                transcripts: matches!(
                    self.get(TRACE_TRANSCRIPTS).map(str::trim),
                    Some("1" | "true" | "yes")
                ),
            },
        }
    }
}

fn endpoint(
    value: Option<&str>,
    default: &str,
    schemes: &[&str],
    key: &str,
    problems: &mut ConfigError,
) -> String {
    let value = value
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .unwrap_or(default);
    match url::Url::parse(value) {
        Ok(url) if schemes.contains(&url.scheme()) && url.host_str().is_some() => value.to_owned(),
        _ => {
            problems.push(
                key,
                format!(
                    "must be a {}:// URL",
                    schemes.first().copied().unwrap_or("https")
                ),
            );
            String::new()
        }
    }
}

/// A whole number of at least `min`, if set; a problem naming `key` otherwise.
fn number(value: Option<&str>, min: u64, key: &str, problems: &mut ConfigError) -> Option<u64> {
    let text = value.map(str::trim).filter(|v| !v.is_empty())?;
    match text.parse::<u64>() {
        Ok(n) if n >= min => Some(n),
        _ => {
            problems.push(key, format!("must be a whole number of at least {min}"));
            None
        }
    }
}

/// Whether `number` is E.164: `+` then 8 to 15 digits, not starting with 0.
pub fn is_e164(number: &str) -> bool {
    number.strip_prefix('+').is_some_and(|digits| {
        (8..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0')
    })
}
