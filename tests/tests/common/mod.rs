//! A patter server on loopback wired to the fake Twilio and the fake OpenAI Realtime, and a
//! way to place a call through it exactly as Twilio does.

#![allow(dead_code)]

pub mod browser;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use patter::engine::EngineKind;
use patter::{Agent, CallSummary, ConfigBuilder, Limits, Patter, TranscriptEntry};
use patter_tests::fake_openai::{ConnHandle, FakeRealtime};
use patter_tests::fake_twilio::{self, FakeTwilioRest, MediaStream};
use patter_tests::twilio_sid;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub const AUTH_TOKEN: &str = "test_auth_token_not_a_real_one_01";
pub const OPENAI_KEY: &str = "sk-test-openai-key-not-real-0123";
/// What Twilio is configured with: a TLS proxy in front of the loopback server.
pub const PUBLIC_URL: &str = "https://agent.example.com";
pub const WAIT: Duration = Duration::from_secs(10);

pub fn account_sid() -> String {
    twilio_sid("AC", 0xacc)
}

/// One patter server and its fake peers.
pub struct Harness {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub engine: Arc<FakeRealtime>,
    pub rest: Arc<FakeTwilioRest>,
    pub ends: mpsc::UnboundedReceiver<CallSummary>,
    pub transcripts: Arc<Mutex<Vec<TranscriptEntry>>>,
    /// How many transcript turns `on_transcript` has seen.
    pub transcript_count: tokio::sync::watch::Receiver<usize>,
    shutdown: Option<oneshot::Sender<()>>,
    server: JoinHandle<patter::Result<()>>,
}

/// Options of a harness.
pub struct Options {
    pub limits: Limits,
    pub configure: Box<dyn FnOnce(Patter) -> Patter + Send>,
    /// Adjusts the configuration before it is built.
    pub config: Box<dyn FnOnce(ConfigBuilder) -> ConfigBuilder + Send>,
    pub engine: Option<Arc<FakeRealtime>>,
    pub rest: Option<Arc<FakeTwilioRest>>,
    pub system_tools: bool,
    /// The engine every call uses (`PATTER_ENGINE`); the fake engine speaks its protocol.
    pub engine_kind: EngineKind,
}

/// The limits of a test call: the defaults, but the fake engine's silence is no stall (it
/// says only what a test makes it say); the tests about stalls set their own.
pub fn test_limits() -> Limits {
    let mut limits = Limits::default();
    limits.engine_stall = Duration::from_secs(3600);
    limits
}

impl Default for Options {
    fn default() -> Self {
        Options {
            limits: test_limits(),
            configure: Box::new(|p| p),
            config: Box::new(|c| c),
            engine: None,
            rest: None,
            system_tools: true,
            engine_kind: EngineKind::Realtime,
        }
    }
}

impl Harness {
    pub async fn start(agent: impl Agent) -> Harness {
        Harness::start_with(agent, Options::default()).await
    }

    /// A harness whose limits `set` adjusts.
    pub async fn with_limits(agent: impl Agent, set: impl FnOnce(&mut Limits)) -> Harness {
        let mut limits = test_limits();
        set(&mut limits);
        Harness::start_with(
            agent,
            Options {
                limits,
                ..Options::default()
            },
        )
        .await
    }

    pub async fn start_with(agent: impl Agent, options: Options) -> Harness {
        let engine = match (options.engine, options.engine_kind) {
            (Some(engine), _) => engine,
            (None, EngineKind::GptLive) => Arc::new(FakeRealtime::start_live().await),
            (None, _) => Arc::new(FakeRealtime::start().await),
        };
        let rest = match options.rest {
            Some(rest) => rest,
            None => Arc::new(FakeTwilioRest::start().await),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let config = ConfigBuilder::default()
            .twilio_account_sid(account_sid())
            .twilio_auth_token(AUTH_TOKEN)
            .openai_api_key(OPENAI_KEY)
            .phone_number("+15550100")
            .webhook_url(PUBLIC_URL)
            .openai_realtime_url(engine.url())
            .openai_live_url(engine.url())
            .engine(options.engine_kind)
            .twilio_api_url(rest.base_url())
            .stream_secret("shared stream secret")
            .system_tools(options.system_tools)
            .limits(options.limits);
        let config = (options.config)(config).build().expect("valid config");
        let (end_tx, ends) = mpsc::unbounded_channel();
        let transcripts = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&transcripts);
        let (count_tx, transcript_count) = tokio::sync::watch::channel(0usize);
        let phone = Patter::new(config)
            .on_call_end(move |summary| {
                let end_tx = end_tx.clone();
                async move {
                    let _ = end_tx.send(summary);
                }
            })
            .on_transcript(move |_, entry| {
                let mut seen = seen.lock().expect("lock");
                seen.push(entry.clone());
                count_tx.send_replace(seen.len());
            });
        let phone = (options.configure)(phone);
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            phone
                .serve_on(listener, agent, async {
                    let _ = shutdown_rx.await;
                })
                .await
        });
        Harness {
            base,
            engine,
            rest,
            ends,
            transcripts,
            transcript_count,
            shutdown: Some(shutdown_tx),
            server,
        }
    }

    /// Posts the voice webhook for call `n` as Twilio would.
    pub async fn voice_webhook(&self, call_sid: &str) -> (u16, String, String) {
        fake_twilio::post_voice_webhook(
            &self.base,
            PUBLIC_URL,
            AUTH_TOKEN,
            &[
                ("CallSid", call_sid),
                ("AccountSid", &account_sid()),
                ("From", "+15550111"),
                ("To", "+15550100"),
                ("CallStatus", "ringing"),
                ("Direction", "inbound"),
                ("ApiVersion", "2010-04-01"),
            ],
        )
        .await
    }

    /// Places call `n`: voice webhook, then the stream, `connected` and `start` with the
    /// TwiML's parameters.
    pub async fn call(&self, n: u128) -> Call {
        self.call_via(n, &self.base).await
    }

    /// Like [`Harness::call`], with the stream going to another server (`stream_base`).
    pub async fn call_via(&self, n: u128, stream_base: &str) -> Call {
        let call_sid = twilio_sid("CA", n);
        let (status, content_type, twiml) = self.voice_webhook(&call_sid).await;
        assert_eq!(status, 200, "voice webhook: {twiml}");
        assert!(content_type.starts_with("text/xml"), "{content_type}");
        let (url, params) = parse_twiml(&twiml);
        assert_eq!(
            url,
            format!("{}/twilio/stream", PUBLIC_URL.replace("https", "wss"))
        );
        let stream = MediaStream::connect_signed_as(
            &format!("{}/twilio/stream", stream_base.replace("http", "ws")),
            &url,
            AUTH_TOKEN,
        )
        .await
        .expect("stream connects");
        let stream_sid = twilio_sid("MZ", n);
        stream.send_connected().await.expect("connected");
        let pairs: Vec<(&str, &str)> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        stream
            .send_start(&stream_sid, &call_sid, &account_sid(), &pairs)
            .await
            .expect("start");
        Call {
            stream,
            call_sid,
            stream_sid,
            params,
        }
    }

    /// The engine connection of the `i`-th call, once its `session.update` has arrived.
    pub async fn engine_conn(&self, i: usize) -> ConnHandle {
        let conn = self
            .engine
            .wait_for_conn(i, WAIT)
            .await
            .expect("engine connection");
        conn.wait_for_event("session.update", WAIT)
            .await
            .expect("session.update");
        conn
    }

    /// The GPT-Live connection of the `i`-th call, once its `session.start` has arrived.
    pub async fn live_conn(&self, i: usize) -> ConnHandle {
        let conn = self
            .engine
            .wait_for_conn(i, WAIT)
            .await
            .expect("engine connection");
        conn.wait_for_event("session.start", WAIT)
            .await
            .expect("session.start");
        conn
    }

    /// Waits until `on_transcript` has seen `n` turns.
    pub async fn wait_for_transcripts(&mut self, n: usize) {
        tokio::time::timeout(WAIT, self.transcript_count.wait_for(|&c| c >= n))
            .await
            .expect("transcript turns in time")
            .expect("hook alive");
    }

    /// The next `on_call_end`.
    pub async fn next_end(&mut self) -> CallSummary {
        tokio::time::timeout(WAIT, self.ends.recv())
            .await
            .expect("on_call_end in time")
            .expect("hook channel open")
    }

    /// `GET /health`'s number of calls in progress.
    pub async fn active_calls(&self) -> u64 {
        let (status, _, body) =
            fake_twilio::http_request("GET", &format!("{}/health", self.base), &[], b"").await;
        assert_eq!(status, 200);
        let v: serde_json::Value = serde_json::from_str(&body).expect("health json");
        v["calls"].as_u64().expect("calls")
    }

    /// Triggers shutdown (drain) and waits for the server to return.
    pub async fn shutdown(mut self) -> patter::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(60), &mut self.server)
            .await
            .expect("server stops in time")
            .expect("server task")
    }

    /// Starts the drain without waiting.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Waits for the server to return.
    pub async fn stopped(mut self) -> patter::Result<()> {
        tokio::time::timeout(Duration::from_secs(60), &mut self.server)
            .await
            .expect("server stops in time")
            .expect("server task")
    }
}

/// A call in progress, seen from Twilio.
pub struct Call {
    pub stream: MediaStream,
    pub call_sid: String,
    pub stream_sid: String,
    pub params: Vec<(String, String)>,
}

/// The stream URL and `<Parameter>`s of a `<Connect><Stream>` TwiML answer.
pub fn parse_twiml(twiml: &str) -> (String, Vec<(String, String)>) {
    assert!(twiml.contains("<Response><Connect><Stream url="), "{twiml}");
    let attr = |tag: &str, name: &str| -> String {
        let start = tag.find(&format!("{name}=\"")).expect("attribute") + name.len() + 2;
        let end = start + tag[start..].find('"').expect("closing quote");
        unescape(&tag[start..end])
    };
    let stream_tag = &twiml[twiml.find("<Stream").expect("stream")..];
    let url = attr(stream_tag, "url");
    let params = twiml
        .split("<Parameter ")
        .skip(1)
        .map(|tag| (attr(tag, "name"), attr(tag, "value")))
        .collect();
    (url, params)
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// `n` bytes of μ-law as base64 (distinct per `seed`).
pub fn mulaw_b64(n: usize, seed: u8) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(vec![seed; n])
}

/// Every log line of the process, at every level, from the moment it is installed (once
/// per test binary: the subscriber is process-wide).
#[derive(Clone, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl LogCapture {
    /// Captures every log line from now on.
    pub fn install() -> LogCapture {
        let capture = LogCapture::default();
        let writer = capture.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .init();
        capture
    }

    /// What was logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("lock")).into_owned()
    }
}

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
