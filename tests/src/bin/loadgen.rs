//! The load benchmark: what one patter server costs per call and per audio frame, at a few
//! levels of concurrent calls, in both audio modes, all on 127.0.0.1.
//!
//! ```sh
//! cargo run --release -p patter-tests --bin loadgen -- --levels 1,50,100,200 --modes pcmu,pcm24k
//! cargo run --release -p patter-tests --bin loadgen -- --levels 200 --engines realtime,gpt-live
//! ```
//!
//! Flags (defaults): `--levels 1,50,100,200`, `--modes pcmu,pcm24k`, `--engines realtime`
//! (`realtime`, `gpt-live`), `--secs 30`, `--warmup-secs 5`, `--tool-every-secs 5`,
//! `--chaos 0`.
//!
//! **Chaos mode** (`--chaos SHARE`, e.g. `--levels 100 --secs 120 --chaos 0.2`): that
//! share of calls, picked at random, have their engine connection killed (dropped without
//! a close frame) or stalled (it reads on and sends nothing), half each, at a random moment
//! of the window. Patter replaces the session; the fake engine greets only a call's first
//! session, takes the replayed conversation, and numbers each tool run (the tool's result
//! carries its run), so that a replayed result is told from a second run. The line gets a
//! `chaos` object: calls `affected` and `recovered` (echoes came back after the fault and
//! patter did not end the call), each affected call's `longest_silence_ms` (p50/p99/max, the
//! longest gap between two pieces of audio the caller heard in the window; and the longest
//! of the calls not affected), frames lost in reconnects (in flight to the failing
//! session: found lost within 5 s of the fault) and outside them, and duplicate tool runs.
//! Targets, checked by the exit code: ≥ 99 % recovered, longest silence ≤ 3 s, 0 frames
//! lost outside reconnects, 0 duplicate runs.
//!
//! With `gpt-live` the fake engine speaks GPT-Live (`/v1/live/sessions`): it answers
//! `session.start`, echoes each `session.input_audio.append` as a
//! `session.output_audio.delta`, and calls the tool through backend delegation
//! (`response.event` wrappers; patter answers with `response.item.create` and
//! `response.create`), with a fragment of the agent's transcript every 200 ms. Its greeting
//! is a short non-silent sound, since patter does not relay GPT-Live's silence.
//!
//! For each mode and level N, a fresh patter server runs as a child process (this binary,
//! re-executed with a hidden `serve` subcommand), so that its CPU time and memory are its own
//! and no earlier level's heap is counted. This process plays both of its peers:
//!
//! * N callers, each placing its call exactly as Twilio does (signed voice webhook, TwiML,
//!   signed stream upgrade over the TwiML's `wss://` URL, `connected`, `start` with the
//!   TwiML's parameters), then sending a 20 ms μ-law frame every 20 ms and echoing every mark
//!   at once (as Twilio does once the audio before it has played). The calls start spread
//!   over about a second, so that their 20 ms clocks are not in step.
//! * A fake OpenAI Realtime GA engine that answers `session.update`, sends one short
//!   greeting (silence), then echoes every caller frame it receives back as one
//!   `response.output_audio.delta`, and calls the agent's in-process tool every
//!   `--tool-every-secs` per call.
//!
//! Every frame is told apart from the others when it comes back. In `pcmu` mode patter
//! passes the base64 through both ways, so the frame carries its sequence number and comes
//! back byte for byte. In `pcm24k` mode patter resamples (μ-law 8 kHz → PCM16 24 kHz and
//! back), so no byte survives: the frame carries a 10-bit tag (its sequence number modulo
//! 1024) as five blocks of a constant level out of four; the engine reads the tag from the
//! PCM it gets and answers with a fresh PCM chunk carrying the same tag, which the caller
//! reads from the μ-law it hears. Echoes that match no frame in flight are "garbled", frames
//! that never come back are "lost". Before the first `pcm24k` level the tag code is run
//! through patter's own resamplers to check that it survives them.
//!
//! Each level: all calls up, `--warmup-secs` of warm-up, a `--secs` measurement window,
//! then the callers stop sending, what is in flight lands (up to 5 s), every caller sends
//! `stop`, and the server must report 0 calls at `/health` before it is killed.
//!
//! One JSON line per (mode, level) goes to stdout (progress goes to stderr):
//!
//! * `frames_sent`, `frames_lost`, `frames_garbled`: frames sent in the window; `all_frames`
//!   counts the warm-up too;
//! * `rtt_ms`: a frame's round trip, sent by the caller → its echo heard by the caller
//!   (p50, p99, max), over the window's frames;
//! * `server_cpu_us_per_frame`: the server's CPU time (user + system, `/proc/<pid>/stat`)
//!   over the window divided by the frames echoed in it (each relayed both ways);
//!   `server_cpu_pct` is of one core; `loadgen_cpu_pct` is this process's share;
//! * `idle_rss_kib` (before any call), `peak_rss_kib` (VmRSS sampled every 200 ms),
//!   `hwm_rss_kib` (VmHWM at the end), `rss_per_call_kib` = (peak − idle) / N;
//! * `tool_rtt_ms`: the engine sends a function call → it receives the function's output
//!   (p50, p99, max, `count` sent, `answered` right);
//! * `setup_ms`: voice webhook sent → the engine's greeting heard by the caller (webhook,
//!   stream upgrade, engine session and first audio), p50, p99, max;
//! * `nproc`: the machine's cores, shared by this process and the server.
//!
//! The exit code is 1 if any frame is lost or garbled, a tool call goes unanswered, a call
//! fails to come up, a peer sees a protocol problem or the server does not get back to 0
//! calls; 2 on bad flags; else 0.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write as _};
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use futures_util::{SinkExt, StreamExt};
use patter::audio::codec::{Downsampler, Upsampler, mulaw_decode, mulaw_encode};
use patter::engine::EngineKind;
use patter::{
    AgentSpec, AudioFormat, CallContext, ConfigBuilder, FnTool, Json, Limits, Patter, ToolSet,
};
use patter_tests::fake_openai as ev;
use patter_tests::fake_twilio::FakeTwilioRest;
use patter_tests::load::{
    self, CallPlan, Caller, ClientHead, FRAME_BYTES, FRAME_PERIOD, TwilioOut, frame_bytes,
    health_calls, now_us, proc_cpu_time, proc_status_kib, read_frame, set_parsed,
};
use patter_tests::twilio_sid;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

const AUTH_TOKEN: &str = "load_auth_token_not_a_real_one_01";
const OPENAI_KEY: &str = "sk-load-openai-key-not-real-0123";
/// What Twilio is configured with: a TLS proxy in front of the loopback server.
const PUBLIC_URL: &str = "https://agent.example.com";
const TOOL_NAME: &str = "load_lookup";
/// The tool's runs in the server process.
static TOOL_RUNS: AtomicU64 = AtomicU64::new(0);
/// Chaos mode: frames found lost this soon after their call's fault were in flight to the
/// failing session (patter replaces one within `Limits::reconnect_within`, 4 s).
const RECONNECT_WINDOW: Duration = Duration::from_secs(5);
/// The hidden subcommand that runs the server.
const SERVE: &str = "serve";

/// 16 KiB WebSocket read buffers for this process's peers: tungstenite's default 128 KiB is
/// zero-filled, so all resident, and phone-call messages are small.
const WS_READ_BUFFER: usize = 16 * 1024;
/// The bound on each step of a level that waits for the other side (child start, all calls
/// up, stream close, `/health` back to 0).
const SETTLE: Duration = Duration::from_secs(30);
/// How long frames still in flight after the last one was sent may take to come back.
const GRACE: Duration = Duration::from_secs(5);
/// The spread of the calls' starts.
const RAMP: Duration = Duration::from_secs(1);
/// How often the server's RSS is sampled.
const RSS_EVERY: Duration = Duration::from_millis(200);
/// How many example messages of problems are kept.
const NOTES_KEPT: usize = 8;

/// The pcmu frames' filler after the sequence number and send time: not silence, so that a
/// frame never looks like the greeting.
const CALLER_FILL: u8 = 0x55;
/// μ-law's code for a zero sample.
const MULAW_SILENCE: u8 = 0xff;

// ---------------------------------------------------------------------------------------
// The pcm24k tag: a frame's identity that survives resampling
// ---------------------------------------------------------------------------------------

/// Tags are sequence numbers modulo this (10 bits; 20 s of frames per call).
const TAGS: u64 = 1024;
/// Two bits per block, five blocks per 20 ms frame.
const BLOCKS: usize = 5;
const LEVELS: [i16; 4] = [-12000, -4000, 4000, 12000];
/// A block is 32 samples at 8 kHz, 96 at 24 kHz.
const MULAW_BLOCK: usize = FRAME_BYTES / BLOCKS;
const PCM_BLOCK: usize = MULAW_BLOCK * 3;
/// One 20 ms chunk of PCM16 at 24 kHz.
const PCM_SAMPLES: usize = FRAME_BYTES * 3;
/// Where the engine reads each block of the PCM it gets: the block's centre (48) moved by
/// the upsampler's delay (23.5 samples), and a few samples either side for a median. Each
/// point's 16 μ-law inputs all lie inside the block.
const PCM_READ: [usize; 5] = [64, 68, 72, 76, 80];
/// Where the caller reads each block of the μ-law it hears: the centre (16) moved by the
/// downsampler's delay (about 7 samples), and either side. Each point's 48 PCM inputs all lie
/// inside the block.
const MULAW_READ: [usize; 5] = [19, 21, 23, 25, 27];
/// A block quieter than this is silence; the levels are at least 4000 from 0, and the
/// decision thresholds are 0 and ±8000, halfway between levels.
const SILENT_BELOW: i32 = 2000;
/// What the engine sends back for a frame whose tag it cannot read: blocks that no tag has,
/// so that the caller counts it as garbled.
const UNREADABLE: [i16; BLOCKS] = [12000, 0, 12000, 0, 12000];

/// What a block code says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Heard {
    Tag(u64),
    /// Every block silent: audio that is not a frame's echo.
    Silence,
    Garbled,
}

/// A tag's five block levels, most significant bits first.
fn tag_levels(tag: u64) -> [i16; BLOCKS] {
    std::array::from_fn(|b| LEVELS[((tag >> (2 * (BLOCKS - 1 - b))) & 3) as usize])
}

/// Reads the tag from `sample(i)`, blocks of `block` samples read at `offsets` within each.
fn read_tag(sample: impl Fn(usize) -> i32, block: usize, offsets: &[usize; 5]) -> Heard {
    let mut tag = 0;
    let mut silent = 0;
    for b in 0..BLOCKS {
        // The median of a few points, so that one odd sample does not decide.
        let mut points = offsets.map(|o| sample(b * block + o));
        points.sort_unstable();
        let level = points[2];
        if level.abs() < SILENT_BELOW {
            silent += 1;
            continue;
        }
        let bits = match level {
            l if l < -8000 => 0,
            l if l < 0 => 1,
            l if l < 8000 => 2,
            _ => 3,
        };
        tag = (tag << 2) | bits;
    }
    match silent {
        0 => Heard::Tag(tag),
        BLOCKS => Heard::Silence,
        _ => Heard::Garbled,
    }
}

/// A caller frame (μ-law, 8 kHz) carrying these block levels.
fn mulaw_frame(levels: [i16; BLOCKS]) -> [u8; FRAME_BYTES] {
    std::array::from_fn(|i| mulaw_encode(levels[i / MULAW_BLOCK]))
}

/// An engine chunk (PCM16 LE, 24 kHz) carrying these block levels.
fn pcm_chunk(levels: [i16; BLOCKS]) -> Vec<u8> {
    (0..PCM_SAMPLES)
        .flat_map(|i| levels[i / PCM_BLOCK].to_le_bytes())
        .collect()
}

/// The tag the engine reads from an append's PCM16 LE.
fn read_pcm_tag(pcm: &[u8]) -> Heard {
    if pcm.len() != PCM_SAMPLES * 2 {
        return Heard::Garbled;
    }
    read_tag(
        |i| i32::from(i16::from_le_bytes([pcm[2 * i], pcm[2 * i + 1]])),
        PCM_BLOCK,
        &PCM_READ,
    )
}

/// The tag the caller reads from the μ-law it hears.
fn read_mulaw_tag(mulaw: &[u8]) -> Heard {
    if mulaw.len() != FRAME_BYTES {
        return Heard::Garbled;
    }
    read_tag(
        |i| i32::from(mulaw_decode(mulaw[i])),
        MULAW_BLOCK,
        &MULAW_READ,
    )
}

/// Runs the tag code through patter's own resamplers, as a call does (greeting first, then
/// two full cycles of tags), and says where it breaks: a change in the filters' delay would
/// otherwise show up as garbled frames under load.
fn check_tag_code() -> Result<(), String> {
    let mut up = Upsampler::default();
    let mut down = Downsampler::default();
    let mut mulaw = Vec::new();
    down.process(&vec![0; PCM_SAMPLES * 2], &mut mulaw);
    if mulaw != [MULAW_SILENCE; FRAME_BYTES] {
        return Err(
            "the greeting's silence does not come out of the downsampler as silence".into(),
        );
    }
    for seq in 0..2 * TAGS {
        let tag = seq % TAGS;
        let mut pcm = Vec::new();
        up.process(&mulaw_frame(tag_levels(tag)), &mut pcm);
        let heard = read_pcm_tag(&pcm);
        if heard != Heard::Tag(tag) {
            return Err(format!(
                "frame {seq}: the engine reads {heard:?} for tag {tag}"
            ));
        }
        mulaw.clear();
        down.process(&pcm_chunk(tag_levels(tag)), &mut mulaw);
        let heard = read_mulaw_tag(&mulaw);
        if heard != Heard::Tag(tag) {
            return Err(format!(
                "frame {seq}: the caller reads {heard:?} for tag {tag}"
            ));
        }
    }
    let mut pcm = Vec::new();
    up.process(&mulaw_frame(UNREADABLE), &mut pcm);
    mulaw.clear();
    down.process(&pcm_chunk(UNREADABLE), &mut mulaw);
    if read_pcm_tag(&pcm) != Heard::Garbled || read_mulaw_tag(&mulaw) != Heard::Garbled {
        return Err("the unreadable-frame answer reads as a tag".into());
    }
    Ok(())
}

/// Audio computed once per level, so that frames cost no encoding.
struct Payloads {
    /// pcm24k: each tag's caller frame, base64 μ-law.
    caller: Vec<String>,
    /// pcm24k: each tag's echo, base64 PCM16 24 kHz.
    echo: Vec<String>,
    /// pcm24k: the answer to a frame whose tag the engine cannot read.
    unreadable: String,
    /// The greeting the engine sends: 20 ms of silence in the engine's format (GPT-Live: a
    /// steady sound, since patter does not relay its silence).
    greeting: String,
    /// The greeting as the caller hears it (silence is silence in both modes; GPT-Live's
    /// sound as patter's own downsampler makes it at the start of a call).
    greeting_heard: String,
}

/// GPT-Live's greeting: a steady level, unlike any caller frame.
const LIVE_GREETING_LEVEL: i16 = 6000;

impl Payloads {
    fn new(mode: Mode, engine: EngineKind) -> Payloads {
        let mut payloads = Payloads::for_mode(mode);
        if engine == EngineKind::GptLive {
            let levels = [LIVE_GREETING_LEVEL; BLOCKS];
            match mode {
                Mode::Pcmu => {
                    payloads.greeting = B64.encode(mulaw_frame(levels));
                    payloads.greeting_heard = payloads.greeting.clone();
                }
                Mode::Pcm24k => {
                    let pcm = pcm_chunk(levels);
                    let mut heard = Vec::new();
                    Downsampler::default().process(&pcm, &mut heard);
                    payloads.greeting = B64.encode(&pcm);
                    payloads.greeting_heard = B64.encode(heard);
                }
            }
        }
        payloads
    }

    fn for_mode(mode: Mode) -> Payloads {
        let silence = B64.encode([MULAW_SILENCE; FRAME_BYTES]);
        match mode {
            Mode::Pcmu => Payloads {
                caller: Vec::new(),
                echo: Vec::new(),
                unreadable: String::new(),
                greeting: silence.clone(),
                greeting_heard: silence,
            },
            Mode::Pcm24k => Payloads {
                caller: (0..TAGS)
                    .map(|t| B64.encode(mulaw_frame(tag_levels(t))))
                    .collect(),
                echo: (0..TAGS)
                    .map(|t| B64.encode(pcm_chunk(tag_levels(t))))
                    .collect(),
                unreadable: B64.encode(pcm_chunk(UNREADABLE)),
                greeting: B64.encode(vec![0u8; PCM_SAMPLES * 2]),
                greeting_heard: silence,
            },
        }
    }
}

// ---------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Pcmu,
    Pcm24k,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Pcmu => "pcmu",
            Mode::Pcm24k => "pcm24k",
        }
    }

    fn parse(name: &str) -> Option<Mode> {
        match name {
            "pcmu" => Some(Mode::Pcmu),
            "pcm24k" => Some(Mode::Pcm24k),
            _ => None,
        }
    }

    fn format(self) -> AudioFormat {
        match self {
            Mode::Pcmu => AudioFormat::Pcmu,
            Mode::Pcm24k => AudioFormat::Pcm24k,
        }
    }

    /// The `session.audio.input.format.type` patter must ask the engine for.
    fn engine_format(self) -> &'static str {
        match self {
            Mode::Pcmu => "audio/pcmu",
            Mode::Pcm24k => "audio/pcm",
        }
    }
}

fn engine_name(engine: EngineKind) -> &'static str {
    engine.as_str()
}

/// Where the fake engine listens, for each engine's protocol.
fn engine_path(engine: EngineKind) -> &'static str {
    match engine {
        EngineKind::GptLive => "/v1/live/sessions",
        _ => "/v1/realtime",
    }
}

#[derive(Debug, Clone)]
struct Opts {
    levels: Vec<usize>,
    modes: Vec<Mode>,
    engines: Vec<EngineKind>,
    secs: u64,
    warmup_secs: u64,
    tool_every_secs: u64,
    /// The share of calls whose engine connection is killed or stalled (0: none).
    chaos: f64,
}

const USAGE: &str = "usage: loadgen [--levels N,N,… (1,50,100,200)] [--modes pcmu,pcm24k (both)] [--engines|--engine realtime,gpt-live (realtime)] [--secs S (30)] [--warmup-secs S (5)] [--tool-every-secs S (5)] [--chaos SHARE (0)]";

impl Opts {
    fn parse(args: impl Iterator<Item = String>) -> Result<Opts, String> {
        let mut opts = Opts {
            levels: vec![1, 50, 100, 200],
            modes: vec![Mode::Pcmu, Mode::Pcm24k],
            engines: vec![EngineKind::Realtime],
            secs: 30,
            warmup_secs: 5,
            tool_every_secs: 5,
            chaos: 0.0,
        };
        load::read_flags(args, USAGE, |name, v| {
            Some(match name {
                "--levels" => v
                    .split(',')
                    .map(|n| n.trim().parse::<usize>().ok().filter(|&n| n > 0))
                    .collect::<Option<_>>()
                    .map(|levels| opts.levels = levels)
                    .is_some(),
                "--modes" => v
                    .split(',')
                    .map(|m| Mode::parse(m.trim()))
                    .collect::<Option<_>>()
                    .map(|modes| opts.modes = modes)
                    .is_some(),
                "--engines" | "--engine" => v
                    .split(',')
                    .map(|e| EngineKind::parse(e.trim()))
                    .collect::<Option<_>>()
                    .map(|engines| opts.engines = engines)
                    .is_some(),
                "--secs" => set_parsed(&mut opts.secs, v) && opts.secs > 0,
                "--warmup-secs" => set_parsed(&mut opts.warmup_secs, v),
                "--tool-every-secs" => {
                    set_parsed(&mut opts.tool_every_secs, v) && opts.tool_every_secs > 0
                }
                "--chaos" => set_parsed(&mut opts.chaos, v) && (0.0..=1.0).contains(&opts.chaos),
                _ => return None,
            })
        })?;
        Ok(opts)
    }
}

/// A multi-thread tokio runtime, or `None` (said on stderr) if it cannot be built.
fn runtime() -> Option<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| eprintln!("tokio runtime: {e}"))
        .ok()
}

// ---------------------------------------------------------------------------------------
// The server under test: this binary's `serve` subcommand
// ---------------------------------------------------------------------------------------

struct ServeOpts {
    audio: Mode,
    engine: EngineKind,
    engine_url: String,
    rest_url: String,
    max_calls: usize,
}

const SERVE_USAGE: &str = "usage: loadgen serve --audio pcmu|pcm24k --engine realtime|gpt-live --engine-url ws://127.0.0.1:PORT/v1/realtime --rest-url http://127.0.0.1:PORT --max-calls N";

impl ServeOpts {
    fn parse(args: impl Iterator<Item = String>) -> Result<ServeOpts, String> {
        let (mut audio, mut engine_url, mut rest_url, mut max_calls) = (None, None, None, None);
        let mut engine = Some(EngineKind::Realtime);
        let mut args = args;
        while let Some(name) = args.next() {
            let value = args
                .next()
                .ok_or_else(|| format!("{name} needs a value\n{SERVE_USAGE}"))?;
            match name.as_str() {
                "--audio" => audio = Mode::parse(&value),
                "--engine" => engine = EngineKind::parse(&value),
                "--engine-url" => engine_url = Some(value),
                "--rest-url" => rest_url = Some(value),
                "--max-calls" => max_calls = value.parse().ok(),
                other => return Err(format!("unknown argument {other:?}\n{SERVE_USAGE}")),
            }
        }
        match (audio, engine, engine_url, rest_url, max_calls) {
            (Some(audio), Some(engine), Some(engine_url), Some(rest_url), Some(max_calls)) => {
                Ok(ServeOpts {
                    audio,
                    engine,
                    engine_url,
                    rest_url,
                    max_calls,
                })
            }
            _ => Err(SERVE_USAGE.to_owned()),
        }
    }
}

#[patter::args]
struct LookupArgs {
    /// The record number.
    k: u64,
}

fn agent(audio: Mode) -> Result<AgentSpec, String> {
    let lookup = FnTool::new(
        TOOL_NAME,
        "Look up a load-test record.",
        |args: LookupArgs, call: CallContext| async move {
            // Each run numbered: the chaos mode tells a replayed result from a second run.
            let run = TOOL_RUNS.fetch_add(1, Ordering::Relaxed);
            Json(json!({ "call": call.call_id(), "k": args.k, "ok": true, "run": run }))
        },
    );
    let tools = ToolSet::builder()
        .tool(lookup)
        .build()
        .map_err(|e| e.to_string())?;
    Ok(
        AgentSpec::new("You are the load-test agent on call {call_id}.")
            .first_message("Hello from the load-test agent.")
            .audio_format(audio.format())
            .tools(tools),
    )
}

/// The child's subscriber: warnings to stderr; with the `otel` feature, spans exported.
fn telemetry() -> Option<Box<dyn std::any::Any>> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_filter(tracing_subscriber::filter::LevelFilter::WARN);
    let registry = tracing_subscriber::registry().with(fmt);
    #[cfg(feature = "otel")]
    if let Ok((otel, guard)) = patter::telemetry::otel::Otel::from_env().install() {
        registry
            .with(otel.with_filter(tracing_subscriber::filter::LevelFilter::INFO))
            .init();
        return Some(Box::new(guard));
    }
    registry.init();
    None
}

/// Accepts OTLP/HTTP exports and drops them: where a server built with `otel` sends its
/// spans during a benchmark. Returns the endpoint.
#[cfg(feature = "otel")]
async fn otlp_sink() -> Result<String, String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("bind the OTLP sink: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let app = axum::Router::new().route("/v1/traces", axum::routing::post(|| async { "" }));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(format!("http://{addr}"))
}

/// The child: a patter server on 127.0.0.1:0 that prints its port and serves until killed
/// or until its stdin closes (loadgen holds the other end, so the server cannot outlive it).
fn serve_main(args: impl Iterator<Item = String>) -> ExitCode {
    let opts = match ServeOpts::parse(args) {
        Ok(opts) => opts,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    // Warnings only: logging every call would cost the server CPU the figures would count.
    // Built with `otel`, spans at INFO are exported too (to the sink loadgen names in
    // OTEL_EXPORTER_OTLP_ENDPOINT), so their cost is in the figures.
    let _otel = telemetry();
    std::thread::spawn(exit_on_stdin_eof);
    let Some(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    match runtime.block_on(serve(opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen serve: {e}");
            ExitCode::FAILURE
        }
    }
}

fn exit_on_stdin_eof() {
    let mut stdin = std::io::stdin();
    let mut buf = [0u8; 64];
    loop {
        match stdin.read(&mut buf) {
            Ok(0) => std::process::exit(0),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => std::process::exit(0),
        }
    }
}

async fn serve(opts: ServeOpts) -> Result<(), String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("bind: {e}"))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let mut limits = Limits::default();
    limits.max_concurrent_calls = opts.max_calls;
    limits.max_call_duration = Duration::from_secs(24 * 3600);
    let config = ConfigBuilder::default()
        .twilio_account_sid(twilio_sid("AC", 0xacc))
        .twilio_auth_token(AUTH_TOKEN)
        .openai_api_key(OPENAI_KEY)
        .phone_number("+15550100")
        .webhook_url(PUBLIC_URL)
        .openai_realtime_url(opts.engine_url.as_str())
        .openai_live_url(opts.engine_url.as_str())
        .engine(opts.engine)
        .twilio_api_url(opts.rest_url.as_str())
        .stream_secret("load stream secret")
        .limits(limits)
        .build()
        .map_err(|e| format!("config: {e}"))?;
    let agent = agent(opts.audio)?;
    // Announced once bound, so that loadgen can connect at once.
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{port}")
        .and_then(|()| stdout.flush())
        .map_err(|e| format!("stdout: {e}"))?;
    Patter::new(config)
        .serve_on(listener, agent, std::future::pending())
        .await
        .map_err(|e| e.to_string())
}

/// The server child, killed when dropped (also when loadgen panics).
struct ServerChild {
    child: Child,
    /// Held open: the child exits when it closes.
    stdin: Option<ChildStdin>,
    port: Option<tokio::sync::oneshot::Receiver<Result<u16, String>>>,
    log_lines: Arc<AtomicU64>,
}

impl ServerChild {
    fn spawn(
        mode: Mode,
        engine: EngineKind,
        engine_url: &str,
        rest_url: &str,
        max_calls: usize,
        #[cfg(feature = "otel")] otlp_endpoint: &str,
    ) -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let mut command = Command::new(exe);
        #[cfg(feature = "otel")]
        command.env("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_endpoint);
        let mut child = command
            .args([SERVE, "--audio", mode.name(), "--engine-url", engine_url])
            .args(["--engine", engine_name(engine)])
            .args([
                "--rest-url",
                rest_url,
                "--max-calls",
                &max_calls.to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn the server: {e}"))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        // The port is the child's one line on stdout; reading it blocks, so on a thread.
        let (port_tx, port_rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let port = match stdout.map(|out| BufReader::new(out).read_line(&mut line)) {
                Some(Ok(n)) if n > 0 => line
                    .trim()
                    .parse::<u16>()
                    .map_err(|_| format!("the server printed {line:?}, not a port")),
                Some(Err(e)) => Err(format!("reading the server's port: {e}")),
                _ => Err("the server exited before printing its port".to_owned()),
            };
            let _ = port_tx.send(port);
        });
        // The child's log (warnings and errors), passed on and counted.
        let log_lines = Arc::new(AtomicU64::new(0));
        let lines = Arc::clone(&log_lines);
        std::thread::spawn(move || {
            let Some(stderr) = stderr else { return };
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                lines.fetch_add(1, Ordering::Relaxed);
                eprintln!("  [server] {line}");
            }
        });
        Ok(ServerChild {
            child,
            stdin,
            port: Some(port_rx),
            log_lines,
        })
    }

    async fn port(&mut self) -> Result<u16, String> {
        let rx = self.port.take().ok_or("the port was read already")?;
        match tokio::time::timeout(SETTLE, rx).await {
            Ok(Ok(port)) => port,
            Ok(Err(_)) => Err("the port reader ended".to_owned()),
            Err(_) => Err(format!("the server printed no port within {SETTLE:?}")),
        }
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }
}

impl Drop for ServerChild {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Aborts a task when dropped, so that no helper outlives its level.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

// ---------------------------------------------------------------------------------------
// One level's shared state
// ---------------------------------------------------------------------------------------

/// The level's phases, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    /// Calls coming up, then warm-up.
    Warmup,
    /// The measurement window.
    Measure,
    /// Callers stop sending; what is in flight lands.
    Drain,
    /// Callers send `stop`.
    Stop,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Counts of one kind of problem, with the first few messages.
#[derive(Default)]
struct Notes {
    count: AtomicUsize,
    first: Mutex<Vec<String>>,
}

impl Notes {
    fn note(&self, message: impl Into<String>) {
        if self.count.fetch_add(1, Ordering::Relaxed) < NOTES_KEPT {
            lock(&self.first).push(message.into());
        }
    }

    fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }
}

struct Level {
    mode: Mode,
    engine: EngineKind,
    payloads: Payloads,
    phase: watch::Sender<Phase>,
    tool_every: Duration,
    /// Woken when a call comes up or fails, drains, or a tool call is answered.
    notify: Notify,
    up: AtomicUsize,
    failed: AtomicUsize,
    drained: AtomicUsize,
    /// Echoes matched to their frame, by any caller: the window's frame count for CPU.
    echoes: AtomicU64,
    engine_conns: AtomicUsize,
    /// pcm24k: appends whose tag the engine could not read.
    engine_unreadable: AtomicU64,
    tools_sent: AtomicU64,
    tools_answered: AtomicU64,
    tools_wrong: AtomicU64,
    tool_rtt_us: Mutex<Vec<u32>>,
    problems: Notes,
    chaos: Chaos,
}

/// Chaos mode's faults and what they did.
#[derive(Default)]
struct Chaos {
    /// The share of calls to hit; 0 for none.
    share: f64,
    /// Seconds from a call's engine session to the end of the window, less a margin: the
    /// fault comes at random within the window.
    warmup_secs: u64,
    secs: u64,
    /// Calls whose engine session has started at least once (a later one is a reconnect).
    sessions: Mutex<std::collections::HashSet<String>>,
    /// The calls hit: when, and how (`kill`, `stall`).
    faults: Mutex<std::collections::HashMap<String, (Instant, &'static str)>>,
    /// The runs of each tool call whose result an engine saw (a replay repeats a run).
    runs: Mutex<std::collections::HashMap<String, std::collections::HashSet<u64>>>,
}

impl Level {
    fn wake(&self) {
        self.notify.notify_waiters();
    }

    fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    fn tools_settled(&self) -> bool {
        self.tools_answered.load(Ordering::SeqCst) + self.tools_wrong.load(Ordering::SeqCst)
            >= self.tools_sent.load(Ordering::SeqCst)
    }
}

/// Waits until `done` holds, woken by `notify`, for at most `limit`; whether it held.
async fn wait_for(notify: &Notify, limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        // Registered before the check, so that a wake-up between the two is not missed.
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if done() {
            return true;
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return done();
        }
    }
}

// ---------------------------------------------------------------------------------------
// The fake engine: echoes caller audio, calls the tool
// ---------------------------------------------------------------------------------------

async fn engine_accept(listener: TcpListener, level: Arc<Level>) {
    // Owned here, so that aborting this task ends every connection too.
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => {
                    let index = level.engine_conns.fetch_add(1, Ordering::SeqCst);
                    conns.spawn(engine_conn(Arc::clone(&level), tcp, index));
                }
                Err(e) => {
                    level.problems.note(format!("engine accept: {e}"));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = conns.join_next() => {}
        }
    }
}

type Ws = WebSocketStream<TcpStream>;

async fn engine_conn(level: Arc<Level>, tcp: TcpStream, index: usize) {
    let _ = tcp.set_nodelay(true);
    let checker = Arc::clone(&level);
    // The GA connection: /v1/realtime?model=…, a bearer key, no beta header. (The error type
    // is tungstenite's callback signature; this check never refuses, it notes.)
    #[allow(clippy::result_large_err)]
    let check = move |request: &Request, response: Response| {
        let uri = request.uri();
        let auth = request
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let right_url = match checker.engine {
            // GPT-Live: the model is in session.start, not in the URL.
            EngineKind::GptLive => uri.path() == "/v1/live/sessions" && uri.query().is_none(),
            _ => uri.path() == "/v1/realtime" && uri.query().is_some_and(|q| q.contains("model=")),
        };
        if !right_url
            || auth != Some(&format!("Bearer {OPENAI_KEY}"))
            || request.headers().contains_key("openai-beta")
        {
            checker.problems.note(format!(
                "engine connection {index}: not a GA request: {uri}"
            ));
        }
        Ok(response)
    };
    let config = load::peer_ws_config(WS_READ_BUFFER);
    let accepting = tokio_tungstenite::accept_hdr_async_with_config(tcp, check, Some(config));
    let mut ws = match tokio::time::timeout(SETTLE, accepting).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            level.problems.note(format!("engine handshake: {e}"));
            return;
        }
        Err(_) => {
            level.problems.note("engine handshake timed out");
            return;
        }
    };
    let started = match level.engine {
        EngineKind::GptLive => live_session(&level, &mut ws, index).await,
        _ => engine_session(&level, &mut ws, index).await,
    };
    let Some(call_sid) = started else {
        return;
    };
    let fault = chaos_fault(&level, &call_sid, index);
    let mut conn = EngineConn {
        level: &level,
        index,
        call_sid,
        events: 0,
        tools: 0,
        pending: Vec::new(),
        fault,
        stalled: false,
    };
    conn.run(&mut ws).await;
}

/// What a misbehaving engine does to its call in chaos mode.
#[derive(Clone, Copy)]
enum Fault {
    /// The connection drops mid-call.
    Kill,
    /// It stays open, and nothing more comes.
    Stall,
}

/// Chaos mode: whether this call's first engine session fails, when, and how. Calls are
/// picked at random with the configured share; kills and stalls alternate; the moment is
/// at random within the measurement window (the session starts about when the warm-up
/// does).
fn chaos_fault(
    level: &Level,
    call_sid: &str,
    index: usize,
) -> Option<(tokio::time::Instant, Fault)> {
    let chaos = &level.chaos;
    if chaos.share <= 0.0 || lock(&chaos.faults).contains_key(call_sid) {
        return None;
    }
    // A reconnect of a call already hit is left alone: one fault per call. The dice: a
    // SplitMix64 sequence seeded with the connection and the clock.
    let mut state = (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ now_us();
    let mut random = |bound: u64| {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % bound.max(1)
    };
    if (random(1_000_000) as f64) >= chaos.share * 1_000_000.0 || index >= 1_000_000 {
        return None;
    }
    let window_ms = chaos.secs.saturating_sub(8) * 1000;
    let at = Duration::from_secs(chaos.warmup_secs + 2) + Duration::from_millis(random(window_ms));
    let fault = if random(2) == 0 {
        Fault::Kill
    } else {
        Fault::Stall
    };
    Some((tokio::time::Instant::now() + at, fault))
}

/// The session's start: `session.created`, patter's `session.update` (checked), then
/// `session.updated` and the greeting. Returns the call's SID, named in the instructions.
async fn engine_session(level: &Level, ws: &mut Ws, index: usize) -> Option<String> {
    let created = json!({
        "type": "session.created",
        "event_id": ev::next_event_id(),
        "session": {
            "type": "realtime", "object": "realtime.session", "id": format!("sess_{index}"),
            "model": "gpt-realtime", "output_modalities": ["audio"], "instructions": "",
            "tools": [], "tool_choice": "auto"
        }
    });
    if ws.send(Message::text(created.to_string())).await.is_err() {
        level
            .problems
            .note("engine: could not send session.created");
        return None;
    }
    let update = match tokio::time::timeout(SETTLE, ws.next()).await {
        Ok(Some(Ok(Message::Text(text)))) => serde_json::from_str::<Value>(text.as_str()).ok(),
        _ => None,
    };
    let Some(update) = update.filter(|u| u["type"] == "session.update") else {
        level.problems.note(format!(
            "engine connection {index}: the first event was not a session.update"
        ));
        return None;
    };
    let session = &update["session"];
    for way in ["input", "output"] {
        let format = &session["audio"][way]["format"];
        if format["type"] != level.mode.engine_format()
            || (level.mode == Mode::Pcm24k && format["rate"] != 24000)
        {
            level.problems.note(format!(
                "engine connection {index}: {way} format {format}, not {}",
                level.mode.engine_format()
            ));
        }
    }
    let call_sid = call_sid_in(session);
    let updated = json!({
        "type": "session.updated",
        "event_id": ev::next_event_id(),
        "session": session,
    });
    let greeting = ev::audio_delta(
        &format!("resp_greeting_{index}"),
        &format!("item_greeting_{index}"),
        &level.payloads.greeting,
    );
    // A session that replaces a lost one (chaos mode) is not asked to greet: it does not.
    let first = lock(&level.chaos.sessions).insert(call_sid.clone());
    let greeting = first.then_some(greeting);
    send_session_start(level, ws, index, std::iter::once(updated).chain(greeting)).await?;
    Some(call_sid)
}

/// GPT-Live's start: patter's `session.start` (checked), then `session.started` and the
/// greeting. Returns the call's SID, named in the instructions.
async fn live_session(level: &Level, ws: &mut Ws, index: usize) -> Option<String> {
    let start = match tokio::time::timeout(SETTLE, ws.next()).await {
        Ok(Some(Ok(Message::Text(text)))) => serde_json::from_str::<Value>(text.as_str()).ok(),
        _ => None,
    };
    let Some(start) = start.filter(|s| s["type"] == "session.start") else {
        level.problems.note(format!(
            "engine connection {index}: the first event was not a session.start"
        ));
        return None;
    };
    let session = &start["session"];
    let format = &session["audio"]["format"];
    let (kind, rate) = match level.mode {
        Mode::Pcmu => ("audio/pcmu", 8000),
        Mode::Pcm24k => ("audio/pcm", 24000),
    };
    if format["type"] != kind || format["rate"] != rate {
        level.problems.note(format!(
            "engine connection {index}: format {format}, not {kind} at {rate}"
        ));
    }
    if session["delegation"]["responses"]["tools"][0]["name"] != TOOL_NAME {
        level.problems.note(format!(
            "engine connection {index}: the tool is not delegated"
        ));
    }
    let call_sid = call_sid_in(session);
    let started = json!({
        "type": "session.started",
        "event_id": ev::next_event_id(),
        "session": { "id": format!("sess_live_{index}"), "status": "active", "expires_at": 1_900_000_000u64 },
    });
    let greeting = ev::live::audio_delta(&level.payloads.greeting);
    send_session_start(level, ws, index, [started, greeting]).await?;
    Some(call_sid)
}

/// The call's SID, which the agent's instructions name.
fn call_sid_in(session: &Value) -> String {
    let instructions = session["instructions"].as_str().unwrap_or("");
    instructions
        .find("CA")
        .and_then(|at| instructions.get(at..at + 34))
        .unwrap_or_default()
        .to_owned()
}

/// Sends the engine's session-start replies; `None` (and a problem noted) if one fails.
async fn send_session_start(
    level: &Level,
    ws: &mut Ws,
    index: usize,
    events: impl IntoIterator<Item = Value>,
) -> Option<()> {
    for event in events {
        if ws.send(Message::text(event.to_string())).await.is_err() {
            level.problems.note(format!(
                "engine connection {index}: the session start failed"
            ));
            return None;
        }
    }
    Some(())
}

struct EngineConn<'a> {
    level: &'a Level,
    index: usize,
    call_sid: String,
    /// Events sent, for their ids.
    events: u64,
    /// Tool calls made.
    tools: u64,
    /// Tool calls not answered yet: (k, when sent).
    pending: Vec<(u64, Instant)>,
    /// Chaos mode: what happens to this session, and when.
    fault: Option<(tokio::time::Instant, Fault)>,
    /// Stalled: it reads on, and sends nothing.
    stalled: bool,
}

impl EngineConn<'_> {
    /// Chaos mode: records a tool result's run wherever it lands; `true` if it is the first
    /// result of a call this session made (the usual bookkeeping follows). A call of a lost
    /// session answered here counts as answered; a replayed result (a run already seen) is
    /// not counted again, and a second run is a duplicate, reported.
    fn first_sight_of_result(&mut self, item: &Value) -> bool {
        let level = self.level;
        let call_id = item["call_id"].as_str().unwrap_or_default();
        let run = item["output"]
            .as_str()
            .and_then(|o| serde_json::from_str::<Value>(o).ok())
            .and_then(|o| o["run"].as_u64());
        let first = {
            let mut runs = lock(&level.chaos.runs);
            let seen = runs.entry(call_id.to_owned()).or_default();
            let first = seen.is_empty();
            seen.extend(run);
            first
        };
        let own = call_id.starts_with(&format!("call_{}_", self.index));
        if first && !own {
            level.tools_answered.fetch_add(1, Ordering::SeqCst);
            level.wake();
        }
        first && own
    }

    async fn run(&mut self, ws: &mut Ws) {
        let every = self.level.tool_every;
        let mut tools = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        let fault_at = self.fault.map(|(at, _)| at);
        let fault = tokio::time::sleep_until(fault_at.unwrap_or_else(tokio::time::Instant::now));
        tokio::pin!(fault);
        loop {
            tokio::select! {
                () = &mut fault, if self.fault.is_some() => {
                    let Some((_, kind)) = self.fault.take() else { continue };
                    let name = match kind {
                        Fault::Kill => "kill",
                        Fault::Stall => "stall",
                    };
                    lock(&self.level.chaos.faults).insert(self.call_sid.clone(), (Instant::now(), name));
                    match kind {
                        // Dropped without a close frame, as a failed connection is.
                        Fault::Kill => return,
                        Fault::Stall => self.stalled = true,
                    }
                }
                incoming = ws.next() => match incoming {
                    Some(Ok(Message::Text(text))) => {
                        if self.on_client_event(ws, text.as_str()).await.is_err() {
                            break;
                        }
                    }
                    // Patter ends the call by closing; that is the only way out.
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => {}
                },
                _ = tools.tick() => {
                    if !self.stalled && self.level.phase() <= Phase::Measure && self.call_tool(ws).await.is_err() {
                        break;
                    }
                }
            }
        }
    }

    async fn on_client_event(
        &mut self,
        ws: &mut Ws,
        text: &str,
    ) -> Result<(), tokio_tungstenite::tungstenite::Error> {
        let head: ClientHead<'_> = match serde_json::from_str(text) {
            Ok(head) => head,
            Err(e) => {
                self.level
                    .problems
                    .note(format!("{}: unreadable client event ({e})", self.call_sid));
                return Ok(());
            }
        };
        if self.stalled {
            // Reads, and says nothing (patter closes it once it has given up on it).
            return Ok(());
        }
        if head.kind == "input_audio_buffer.append" || head.kind == "session.input_audio.append" {
            let Some(audio) = head.audio else {
                self.level
                    .problems
                    .note(format!("{}: an append without audio", self.call_sid));
                return Ok(());
            };
            let echo = self.echo(audio);
            // GPT-Live also transcribes the agent as it speaks, in fragments: one every
            // 200 ms, so that assembling them costs what it does on a real call.
            if self.level.engine == EngineKind::GptLive && self.events.is_multiple_of(10) {
                ws.feed(Message::text(echo)).await?;
                let ms = self.events * 20;
                let fragment = format!(
                    r#"{{"type":"session.output_transcript.delta","event_id":"evt_t_{}_{}","delta":" word","start_ms":{ms},"end_ms":{}}}"#,
                    self.index,
                    self.events,
                    ms + 200
                );
                return ws.send(Message::text(fragment)).await;
            }
            return ws.send(Message::text(echo)).await;
        }
        // Everything else is rare: read it whole.
        let Ok(event) = serde_json::from_str::<Value>(text) else {
            return Ok(());
        };
        match head.kind {
            // The greeting's and each tool answer's follow-up; the engine has nothing to say.
            "response.create" | "session.commentary.append" | "session.close" => {}
            "conversation.item.create" | "response.item.create"
                if event["item"]["type"] == "function_call_output" =>
            {
                self.on_tool_output(&event["item"]);
            }
            // A replacement session's replay of the conversation (chaos mode).
            "conversation.item.create"
                if self.level.chaos.share > 0.0
                    && (event["item"]["type"] == "message"
                        || event["item"]["type"] == "function_call") => {}
            other => self.level.problems.note(format!(
                "{}: unexpected client event {other}",
                self.call_sid
            )),
        }
        Ok(())
    }

    /// The delta that echoes an append: the same base64 in pcmu; in pcm24k a fresh chunk
    /// with the tag read from the PCM (precomputed, so an echo costs one allocation).
    fn echo(&mut self, audio: &str) -> String {
        let level = self.level;
        let delta: &str = match level.mode {
            Mode::Pcmu => audio,
            Mode::Pcm24k => {
                let mut pcm = [0u8; PCM_SAMPLES * 2 + 8];
                let heard = match B64.decode_slice(audio, &mut pcm) {
                    Ok(n) => read_pcm_tag(&pcm[..n]),
                    Err(_) => Heard::Garbled,
                };
                match heard {
                    Heard::Tag(tag) => &level.payloads.echo[tag as usize],
                    Heard::Silence | Heard::Garbled => {
                        level.engine_unreadable.fetch_add(1, Ordering::Relaxed);
                        &level.payloads.unreadable
                    }
                }
            }
        };
        self.events += 1;
        let mut text = String::with_capacity(delta.len() + 200);
        // Writing to a String cannot fail.
        let _ = match level.engine {
            EngineKind::GptLive => {
                write!(text, r#"{{"type":"session.output_audio.delta","delta":""#)
            }
            _ => write!(
                text,
                r#"{{"type":"response.output_audio.delta","event_id":"evt_{}_{}","response_id":"resp_echo_{}","item_id":"item_echo_{}","output_index":0,"content_index":0,"delta":""#,
                self.index, self.events, self.index, self.index
            ),
        };
        text.push_str(delta);
        text.push_str("\"}");
        text
    }

    /// A tool-calling response: `response.created`, the call's arguments, `response.done`.
    async fn call_tool(
        &mut self,
        ws: &mut Ws,
    ) -> Result<(), tokio_tungstenite::tungstenite::Error> {
        self.tools += 1;
        let k = self.tools;
        let response_id = format!("resp_tool_{}_{k}", self.index);
        let item_id = format!("item_tool_{}_{k}", self.index);
        let call_id = format!("call_{}_{k}", self.index);
        let arguments = format!(r#"{{"k":{k}}}"#);
        if self.level.engine == EngineKind::GptLive {
            let delegation = format!("dlg_{}_{k}", self.index);
            self.pending.push((k, Instant::now()));
            self.level.tools_sent.fetch_add(1, Ordering::SeqCst);
            for event in ev::live::function_calls(&delegation, &[(&call_id, TOOL_NAME, &arguments)])
            {
                ws.feed(Message::text(event.to_string())).await?;
            }
            return ws.flush().await;
        }
        let done = json!({
            "type": "response.function_call_arguments.done",
            "event_id": ev::next_event_id(),
            "response_id": response_id,
            "item_id": item_id,
            "output_index": 0,
            "call_id": call_id,
            "name": TOOL_NAME,
            "arguments": arguments
        });
        let events = [
            ev::response_created(&response_id),
            done,
            ev::response_done(
                &response_id,
                "completed",
                vec![ev::function_call_item(
                    &item_id, &call_id, TOOL_NAME, &arguments,
                )],
            ),
        ];
        self.pending.push((k, Instant::now()));
        self.level.tools_sent.fetch_add(1, Ordering::SeqCst);
        for event in events {
            ws.feed(Message::text(event.to_string())).await?;
        }
        ws.flush().await
    }

    fn on_tool_output(&mut self, item: &Value) {
        if self.level.chaos.share > 0.0 && !self.first_sight_of_result(item) {
            return;
        }
        let k = item["call_id"]
            .as_str()
            .and_then(|id| id.strip_prefix(&format!("call_{}_", self.index)))
            .and_then(|k| k.parse::<u64>().ok());
        let at = k.and_then(|k| self.pending.iter().position(|&(p, _)| p == k));
        let output: Option<Value> = item["output"]
            .as_str()
            .and_then(|o| serde_json::from_str(o).ok());
        let right = match (k, &output) {
            (Some(k), Some(output)) => {
                output["call"] == self.call_sid.as_str() && output["k"] == k && output["ok"] == true
            }
            _ => false,
        };
        match at {
            Some(at) if right => {
                let (_, sent) = self.pending.swap_remove(at);
                let us = u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX);
                lock(&self.level.tool_rtt_us).push(us);
                self.level.tools_answered.fetch_add(1, Ordering::SeqCst);
            }
            _ => {
                if let Some(at) = at {
                    self.pending.swap_remove(at);
                }
                self.level.tools_wrong.fetch_add(1, Ordering::SeqCst);
                self.level.problems.note(format!(
                    "{}: unexpected function_call_output {item}",
                    self.call_sid
                ));
            }
        }
        self.level.wake();
    }
}

// ---------------------------------------------------------------------------------------
// The callers: lean fake Twilio Media Streams clients that match every echo
// ---------------------------------------------------------------------------------------

/// Room for one `media` message with a 160-byte payload.
const MEDIA_MESSAGE_BYTES: usize = 384;

/// What one call counted.
#[derive(Default)]
struct CallOutcome {
    /// Voice webhook sent → greeting heard, µs.
    setup_us: Option<u64>,
    /// Frames sent, matched to their echo, and echoes that match no frame in flight.
    sent: u64,
    matched: u64,
    garbled: u64,
    /// The same for the frames sent in the window.
    window_sent: u64,
    window_matched: u64,
    window_garbled: u64,
    /// The round trips of the window's frames, µs.
    rtt_us: Vec<u32>,
    /// The call, and (chaos mode) the longest silence the caller heard in the window, the
    /// window's frames lost in a reconnect (found lost within [`RECONNECT_WINDOW`] of the
    /// call's fault), when the last
    /// echo came, and whether patter closed the stream before the caller hung up.
    call_sid: String,
    longest_gap_us: u32,
    lost_in_reconnects: u64,
    last_echo: Option<Instant>,
    closed_early: bool,
}

struct Call<'a> {
    level: &'a Level,
    started: Instant,
    out: CallOutcome,
    /// Send times (µs) by sequence number modulo `TAGS`: far more than ever in flight.
    sent_at: Box<[u64; TAGS as usize]>,
    /// The oldest frame neither matched nor passed over: echoes come back in order, so a
    /// frame passed over is lost.
    next: u64,
    /// The window: the first frame sent in it, and the first after it.
    window: (Option<u64>, Option<u64>),
    /// When the last audio came from patter.
    last_audio: Option<Instant>,
    streaming: bool,
    stop_sent: bool,
    closed: bool,
    counted_up: bool,
    counted_drained: bool,
}

async fn call_task(
    level: Arc<Level>,
    index: usize,
    base: Arc<str>,
    delay: Duration,
    give_up: tokio::time::Instant,
) -> CallOutcome {
    let mut phase = level.phase.subscribe();
    tokio::time::sleep(delay).await;
    let mut call = Call {
        level: &level,
        started: Instant::now(),
        out: CallOutcome::default(),
        sent_at: Box::new([0; TAGS as usize]),
        next: 0,
        window: (None, None),
        last_audio: None,
        streaming: true,
        stop_sent: false,
        closed: false,
        counted_up: false,
        counted_drained: false,
    };
    let placed = load::place_call(CallPlan {
        base: &base,
        public_url: PUBLIC_URL,
        auth_token: AUTH_TOKEN,
        call_sid: twilio_sid("CA", index as u128 + 1),
        stream_sid: twilio_sid("MZ", index as u128 + 1),
        account_sid: twilio_sid("AC", 0xacc),
        ws_config: load::peer_ws_config(WS_READ_BUFFER),
        timeout: SETTLE,
    })
    .await;
    match placed {
        Ok(caller) => call.run(caller, &mut phase, give_up).await,
        Err(e) => level.problems.note(format!("call {index}: {e}")),
    }
    call.finish()
}

impl Call<'_> {
    /// Streams a frame every 20 ms and answers patter until the level says stop, then reads
    /// until patter closes the stream.
    async fn run(
        &mut self,
        mut caller: Caller,
        phase: &mut watch::Receiver<Phase>,
        give_up: tokio::time::Instant,
    ) {
        self.out.call_sid = caller.call_sid.clone();
        let mut tick = tokio::time::interval(FRAME_PERIOD);
        let give_up = tokio::time::sleep_until(give_up);
        tokio::pin!(give_up);
        let now = *phase.borrow_and_update();
        let mut stop = self.on_phase(now, &mut caller);
        loop {
            if let Some(text) = stop.take() {
                give_up.as_mut().reset(tokio::time::Instant::now() + SETTLE);
                if let Err(e) = caller.send(text).await {
                    self.note(&caller, &e);
                    return;
                }
            }
            tokio::select! {
                _ = tick.tick(), if self.streaming => {
                    if let Err(e) = self.send_frame(&mut caller).await {
                        self.note(&caller, &e);
                        return;
                    }
                }
                incoming = caller.ws.next() => match incoming {
                    Some(Ok(Message::Text(text))) => {
                        if let Some(echo) = self.on_message(&mut caller, text.as_str())
                            && let Err(e) = caller.send(echo).await
                            && !self.stop_sent
                        {
                            self.note(&caller, &e);
                        }
                    }
                    Some(Ok(Message::Close(_))) => {
                        if !self.stop_sent {
                            self.out.closed_early = true;
                            self.note(&caller, "patter closed the stream before stop");
                        }
                        // Read on until the socket ends: tungstenite answers the close.
                        self.closed = true;
                        self.streaming = false;
                        give_up.as_mut().reset(tokio::time::Instant::now() + SETTLE);
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        if !self.stop_sent {
                            self.note(&caller, &format!("stream failed: {e}"));
                        }
                        return;
                    }
                    None => return,
                },
                changed = phase.changed(), if !self.stop_sent && !self.closed => {
                    let now = if changed.is_ok() { *phase.borrow_and_update() } else { Phase::Stop };
                    stop = self.on_phase(now, &mut caller);
                }
                () = &mut give_up => {
                    self.note(&caller, "the stream did not end in time");
                    return;
                }
            }
        }
    }

    fn note(&self, caller: &Caller, problem: &str) {
        self.level
            .problems
            .note(format!("{}: {problem}", caller.call_sid));
    }

    async fn send_frame(&mut self, caller: &mut Caller) -> Result<(), String> {
        let seq = self.out.sent;
        let slot = (seq % TAGS) as usize;
        let mut text = String::with_capacity(MEDIA_MESSAGE_BYTES);
        match self.level.mode {
            Mode::Pcmu => {
                let bytes = frame_bytes(seq, CALLER_FILL);
                caller.media_into(&mut text, |text| B64.encode_string(bytes, text));
            }
            Mode::Pcm24k => {
                let payload = &self.level.payloads.caller[slot];
                caller.media_into(&mut text, |text| text.push_str(payload));
            }
        }
        self.sent_at[slot] = now_us();
        caller
            .ws
            .send(Message::text(text))
            .await
            .map_err(|e| format!("send failed: {e}"))?;
        self.out.sent += 1;
        Ok(())
    }

    /// Handles one message from patter; returns the mark echo to send, if any.
    fn on_message(&mut self, caller: &mut Caller, text: &str) -> Option<String> {
        let msg: TwilioOut<'_> = match serde_json::from_str(text) {
            Ok(msg) => msg,
            Err(e) => {
                self.note(caller, &format!("unreadable message ({e})"));
                return None;
            }
        };
        if msg.stream_sid != Some(caller.stream_sid.as_str()) {
            self.note(caller, &format!("streamSid {:?}", msg.stream_sid));
        }
        match (msg.event, msg.media, msg.mark) {
            ("media", Some(media), None) => {
                self.on_audio(caller, media.payload);
                None
            }
            // Played at once: echoed as Twilio does when the audio before it is done.
            ("mark", None, Some(mark)) => Some(caller.mark_echo(mark.name)),
            (other, _, _) => {
                self.note(caller, &format!("unexpected message {other}"));
                None
            }
        }
    }

    fn on_audio(&mut self, caller: &Caller, payload: &str) {
        let level = self.level;
        // The silence before this audio, as the caller heard it.
        let now = Instant::now();
        let gap = self.last_audio.map_or(Duration::ZERO, |last| now - last);
        self.last_audio = Some(now);
        if self.window.0.is_some() && self.window.1.is_none() {
            let us = u32::try_from(gap.as_micros()).unwrap_or(u32::MAX);
            self.out.longest_gap_us = self.out.longest_gap_us.max(us);
        }
        if payload == level.payloads.greeting_heard {
            if self.out.setup_us.is_some() {
                self.note(caller, "a second greeting");
                return;
            }
            self.out.setup_us = Some(self.started.elapsed().as_micros() as u64);
            self.counted_up = true;
            level.up.fetch_add(1, Ordering::SeqCst);
            level.wake();
            return;
        }
        let seq = match level.mode {
            Mode::Pcmu => read_frame(payload, CALLER_FILL).map(|(seq, _)| seq),
            Mode::Pcm24k => {
                let mut mulaw = [0u8; FRAME_BYTES + 8];
                match B64
                    .decode_slice(payload, &mut mulaw)
                    .map(|n| read_mulaw_tag(&mulaw[..n]))
                {
                    // The first frame at or after `next` with this tag.
                    Ok(Heard::Tag(tag)) => Some(self.next + (tag + TAGS - self.next % TAGS) % TAGS),
                    _ => None,
                }
            }
        };
        match seq {
            Some(seq) if seq >= self.next && seq < self.out.sent => {
                // Frames passed over soon after the call's fault went to the engine session
                // that failed (chaos mode): lost in a reconnect.
                if seq > self.next && self.in_window(seq) && self.just_faulted(caller, now) {
                    self.out.lost_in_reconnects += seq - self.next.max(self.window.0.unwrap_or(0));
                }
                self.out.last_echo = Some(now);
                self.next = seq + 1;
                self.out.matched += 1;
                level.echoes.fetch_add(1, Ordering::Relaxed);
                if self.in_window(seq) {
                    self.out.window_matched += 1;
                    let sent = self.sent_at[(seq % TAGS) as usize];
                    let rtt = u32::try_from(now_us().saturating_sub(sent)).unwrap_or(u32::MAX);
                    self.out.rtt_us.push(rtt);
                }
            }
            _ => {
                self.out.garbled += 1;
                if self.in_window(self.next) {
                    self.out.window_garbled += 1;
                }
            }
        }
        self.check_drained();
    }

    /// Chaos mode: whether this call's engine failed within [`RECONNECT_WINDOW`] of `now`.
    fn just_faulted(&self, caller: &Caller, now: Instant) -> bool {
        self.level.chaos.share > 0.0
            && lock(&self.level.chaos.faults)
                .get(&caller.call_sid)
                .is_some_and(|(at, _)| now.saturating_duration_since(*at) <= RECONNECT_WINDOW)
    }

    fn in_window(&self, seq: u64) -> bool {
        self.window.0.is_some_and(|first| seq >= first)
            && self.window.1.is_none_or(|after| seq < after)
    }

    /// Follows the level's phase; returns `stop` when it is time to send it.
    fn on_phase(&mut self, phase: Phase, caller: &mut Caller) -> Option<String> {
        if phase >= Phase::Measure && self.window.0.is_none() {
            self.window.0 = Some(self.out.sent);
        }
        if phase >= Phase::Drain && self.window.1.is_none() {
            self.window.1 = Some(self.out.sent);
            self.streaming = false;
            self.check_drained();
        }
        if phase >= Phase::Stop && !self.stop_sent {
            self.stop_sent = true;
            self.streaming = false;
            return Some(caller.stop());
        }
        None
    }

    /// Once the caller has stopped sending: every frame matched or passed over.
    fn check_drained(&mut self) {
        if !self.counted_drained && self.window.1.is_some() && self.next >= self.out.sent {
            self.counted_drained = true;
            self.level.drained.fetch_add(1, Ordering::SeqCst);
            self.level.wake();
        }
    }

    /// The call's counts; a call that never came up or never drained is counted as such, so
    /// that the level's waits do not hang on it.
    fn finish(self) -> CallOutcome {
        let level = self.level;
        if !self.counted_up {
            level.failed.fetch_add(1, Ordering::SeqCst);
        }
        if !self.counted_drained {
            level.drained.fetch_add(1, Ordering::SeqCst);
        }
        level.wake();
        let mut out = self.out;
        out.window_sent = match self.window {
            (Some(first), after) => after.unwrap_or(out.sent) - first,
            (None, _) => 0,
        };
        out
    }
}

// ---------------------------------------------------------------------------------------
// One level
// ---------------------------------------------------------------------------------------

#[derive(Serialize)]
struct Quantiles {
    p50: Option<f64>,
    p99: Option<f64>,
    max: Option<f64>,
}

impl Quantiles {
    /// Nearest-rank quantiles of samples in µs, in ms.
    fn of(samples: &mut [u32]) -> Quantiles {
        samples.sort_unstable();
        let at = |q: f64| {
            let rank = ((samples.len() as f64) * q).ceil().max(1.0) as usize;
            samples.get(rank - 1).map(|&us| ms(us as f64))
        };
        Quantiles {
            p50: at(0.5),
            p99: at(0.99),
            max: samples.last().map(|&us| ms(us as f64)),
        }
    }
}

/// µs → ms, to the µs.
fn ms(us: f64) -> f64 {
    us.round() / 1000.0
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

#[derive(Serialize)]
struct ToolFigures {
    p50: Option<f64>,
    p99: Option<f64>,
    max: Option<f64>,
    count: u64,
    answered: u64,
}

#[derive(Serialize)]
struct FrameCounts {
    sent: u64,
    lost: u64,
    garbled: u64,
}

/// One level's JSON line.
#[derive(Serialize)]
struct Report {
    mode: &'static str,
    engine: &'static str,
    calls: usize,
    secs: u64,
    frames_sent: u64,
    frames_lost: u64,
    frames_garbled: u64,
    rtt_ms: Quantiles,
    server_cpu_us_per_frame: Option<f64>,
    server_cpu_pct: f64,
    idle_rss_kib: u64,
    peak_rss_kib: u64,
    rss_per_call_kib: f64,
    tool_rtt_ms: ToolFigures,
    setup_ms: Quantiles,
    nproc: usize,
    warmup_secs: u64,
    /// Echoes heard during the window (the CPU figure's divisor).
    frames_echoed: u64,
    /// Warm-up and window.
    all_frames: FrameCounts,
    hwm_rss_kib: u64,
    loadgen_cpu_pct: f64,
    calls_up: usize,
    /// One per call, none again.
    engine_connections: usize,
    setup_failures: usize,
    problems: usize,
    server_log_lines: u64,
    rest_requests: usize,
    health_calls_after: Option<u64>,
    /// Chaos mode only.
    #[serde(skip_serializing_if = "Option::is_none")]
    chaos: Option<ChaosReport>,
}

/// What chaos mode did and what came of it.
#[derive(Serialize)]
struct ChaosReport {
    /// The share of calls picked.
    share: f64,
    /// Calls whose engine connection was killed or stalled, of each kind.
    affected: usize,
    kills: usize,
    stalls: usize,
    /// Of those, calls whose audio came back (echoes after the fault) and that patter did
    /// not end.
    recovered: usize,
    /// Each affected call's longest silence in the window, p50/p99/max.
    longest_silence_ms: Quantiles,
    /// The longest silence of any call not affected.
    unaffected_longest_silence_ms: Option<f64>,
    /// Frames lost across a reconnect (in flight to the lost session), and elsewhere.
    frames_lost_in_reconnects: u64,
    frames_lost_outside_reconnects: u64,
    /// Tool calls run more than once.
    duplicate_tool_runs: u64,
}

impl ChaosReport {
    fn passed(&self) -> bool {
        self.recovered * 100 >= self.affected * 99
            && self.longest_silence_ms.max.is_none_or(|ms| ms <= 3000.0)
            && self.frames_lost_outside_reconnects == 0
            && self.duplicate_tool_runs == 0
    }
}

impl Report {
    fn passed(&self) -> bool {
        if let Some(chaos) = &self.chaos {
            return chaos.passed()
                && self.frames_garbled == 0
                && self.tool_rtt_ms.answered == self.tool_rtt_ms.count
                && self.calls_up == self.calls
                && self.setup_failures == 0
                && self.problems == 0
                && self.health_calls_after == Some(0);
        }
        self.frames_lost == 0
            && self.frames_garbled == 0
            && self.all_frames.lost == 0
            && self.all_frames.garbled == 0
            && self.tool_rtt_ms.answered == self.tool_rtt_ms.count
            && self.calls_up == self.calls
            && self.engine_connections == self.calls
            && self.setup_failures == 0
            && self.problems == 0
            && self.health_calls_after == Some(0)
    }
}

/// Chaos mode's figures, from the faults the engine made and what each caller heard.
fn chaos_report(level: &Level, outcomes: &[CallOutcome], window_lost: u64) -> ChaosReport {
    let faults = lock(&level.chaos.faults).clone();
    let mut gaps = Vec::new();
    let mut unaffected: Option<u32> = None;
    let (mut recovered, mut in_reconnects) = (0, 0);
    for o in outcomes {
        in_reconnects += o.lost_in_reconnects;
        match faults.get(&o.call_sid) {
            Some((at, _)) => {
                gaps.push(o.longest_gap_us);
                if !o.closed_early && o.last_echo.is_some_and(|echo| echo > *at) {
                    recovered += 1;
                }
            }
            None => unaffected = unaffected.max(Some(o.longest_gap_us)),
        }
    }
    let duplicates = lock(&level.chaos.runs)
        .values()
        .map(|runs| runs.len().saturating_sub(1) as u64)
        .sum();
    ChaosReport {
        share: level.chaos.share,
        affected: faults.len(),
        kills: faults.values().filter(|(_, kind)| *kind == "kill").count(),
        stalls: faults.values().filter(|(_, kind)| *kind == "stall").count(),
        recovered,
        longest_silence_ms: Quantiles::of(&mut gaps),
        unaffected_longest_silence_ms: unaffected.map(|us| ms(f64::from(us))),
        frames_lost_in_reconnects: in_reconnects,
        frames_lost_outside_reconnects: window_lost.saturating_sub(in_reconnects),
        duplicate_tool_runs: duplicates,
    }
}

async fn sample_rss(pid: String, peak: Arc<AtomicU64>) {
    let mut every = tokio::time::interval(RSS_EVERY);
    loop {
        every.tick().await;
        let Some(kib) = proc_status_kib(&pid, "VmRSS") else {
            return;
        };
        peak.fetch_max(kib, Ordering::Relaxed);
    }
}

async fn run_level(
    mode: Mode,
    engine_kind: EngineKind,
    calls: usize,
    opts: &Opts,
    rest: &FakeTwilioRest,
    nproc: usize,
) -> Result<Report, String> {
    let level = Arc::new(Level {
        mode,
        engine: engine_kind,
        payloads: Payloads::new(mode, engine_kind),
        phase: watch::channel(Phase::Warmup).0,
        tool_every: Duration::from_secs(opts.tool_every_secs),
        notify: Notify::new(),
        up: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        drained: AtomicUsize::new(0),
        echoes: AtomicU64::new(0),
        engine_conns: AtomicUsize::new(0),
        engine_unreadable: AtomicU64::new(0),
        tools_sent: AtomicU64::new(0),
        tools_answered: AtomicU64::new(0),
        tools_wrong: AtomicU64::new(0),
        tool_rtt_us: Mutex::new(Vec::new()),
        problems: Notes::default(),
        chaos: Chaos {
            share: opts.chaos,
            warmup_secs: opts.warmup_secs,
            secs: opts.secs,
            ..Chaos::default()
        },
    });

    // The fake engine and a fresh server.
    let engine_listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("bind the engine: {e}"))?;
    let engine_addr = engine_listener.local_addr().map_err(|e| e.to_string())?;
    let engine_url = format!("ws://{engine_addr}{}", engine_path(engine_kind));
    let engine = AbortOnDrop(tokio::spawn(engine_accept(
        engine_listener,
        Arc::clone(&level),
    )));
    #[cfg(feature = "otel")]
    let sink = otlp_sink().await?;
    let mut server = ServerChild::spawn(
        mode,
        engine_kind,
        &engine_url,
        &rest.base_url(),
        calls * 2 + 10,
        #[cfg(feature = "otel")]
        &sink,
    )?;
    let port = server.port().await?;
    let pid = server.pid();
    let base: Arc<str> = format!("http://127.0.0.1:{port}").into();
    let answering_by = Instant::now() + SETTLE;
    loop {
        match health_calls(&base).await {
            Ok(_) => break,
            Err(e) if Instant::now() >= answering_by => {
                return Err(format!("the server does not answer: {e}"));
            }
            // Bound already, so this is only the moment before it serves.
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let idle_rss = proc_status_kib(&pid, "VmRSS").ok_or("no VmRSS for the server")?;
    let peak_rss = Arc::new(AtomicU64::new(idle_rss));
    let sampler = AbortOnDrop(tokio::spawn(sample_rss(pid.clone(), Arc::clone(&peak_rss))));
    let rest_before = rest.requests().len();
    eprintln!("  server pid {pid} at {base}; idle RSS {idle_rss} KiB");

    // The calls, their starts spread so that their 20 ms clocks are not in step.
    let ramp = if calls > 1 { RAMP } else { Duration::ZERO };
    let run_limit = ramp + SETTLE + Duration::from_secs(opts.warmup_secs + opts.secs) + GRACE;
    let give_up = tokio::time::Instant::now() + run_limit + SETTLE;
    let mut callers = JoinSet::new();
    for i in 0..calls {
        let delay = ramp * i as u32 / calls as u32;
        callers.spawn(call_task(
            Arc::clone(&level),
            i,
            Arc::clone(&base),
            delay,
            give_up,
        ));
    }
    let placing = Instant::now();
    wait_for(&level.notify, ramp + SETTLE, || {
        level.up.load(Ordering::SeqCst) + level.failed.load(Ordering::SeqCst) >= calls
    })
    .await;
    eprintln!(
        "  {}/{calls} calls up in {:.1} s; warm-up {} s, then {} s measured",
        level.up.load(Ordering::SeqCst),
        placing.elapsed().as_secs_f64(),
        opts.warmup_secs,
        opts.secs
    );
    tokio::time::sleep(Duration::from_secs(opts.warmup_secs)).await;

    // The measurement window.
    let (cpu0, own0) = (proc_cpu_time(&pid), proc_cpu_time("self"));
    let echoes0 = level.echoes.load(Ordering::SeqCst);
    let t0 = Instant::now();
    level.phase.send_replace(Phase::Measure);
    tokio::time::sleep(Duration::from_secs(opts.secs)).await;
    let (cpu1, own1) = (proc_cpu_time(&pid), proc_cpu_time("self"));
    let echoed = level.echoes.load(Ordering::SeqCst) - echoes0;
    let wall = t0.elapsed();
    level.phase.send_replace(Phase::Drain);
    let landed = wait_for(&level.notify, GRACE, || {
        level.drained.load(Ordering::SeqCst) >= calls && level.tools_settled()
    })
    .await;
    if !landed {
        eprintln!("  frames or tool outputs still in flight {GRACE:?} after the last frame");
    }

    // Every caller hangs up; patter must end every call.
    level.phase.send_replace(Phase::Stop);
    let mut outcomes = Vec::with_capacity(calls);
    let joined = tokio::time::timeout(SETTLE, async {
        while let Some(joined) = callers.join_next().await {
            match joined {
                Ok(outcome) => outcomes.push(outcome),
                Err(e) => level.problems.note(format!("a caller task failed: {e}")),
            }
        }
    })
    .await;
    if joined.is_err() {
        level.problems.note(format!(
            "{} callers still running {SETTLE:?} after stop",
            callers.len()
        ));
        callers.abort_all();
    }
    let ending_by = Instant::now() + SETTLE;
    let health_after = loop {
        let calls_now = health_calls(&base).await.ok();
        if calls_now == Some(0) || Instant::now() >= ending_by {
            break calls_now;
        }
        // /health is the only sign of the server's bookkeeping.
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let hwm_rss = proc_status_kib(&pid, "VmHWM").unwrap_or(0);
    if let Some(rss) = proc_status_kib(&pid, "VmRSS") {
        peak_rss.fetch_max(rss, Ordering::Relaxed);
    }
    drop(sampler);
    let server_log_lines = server.log_lines.load(Ordering::Relaxed);
    drop(server);
    drop(engine);
    let peak_rss = peak_rss.load(Ordering::Relaxed);

    // The figures.
    let mut rtt: Vec<u32> = Vec::new();
    let mut setup: Vec<u32> = Vec::new();
    let (mut sent, mut matched, mut garbled) = (0, 0, 0);
    let (mut w_sent, mut w_matched, mut w_garbled) = (0, 0, 0);
    for o in &outcomes {
        rtt.extend_from_slice(&o.rtt_us);
        setup.extend(o.setup_us.map(|us| u32::try_from(us).unwrap_or(u32::MAX)));
        sent += o.sent;
        matched += o.matched;
        garbled += o.garbled;
        w_sent += o.window_sent;
        w_matched += o.window_matched;
        w_garbled += o.window_garbled;
    }
    let mut tool_rtt = std::mem::take(&mut *lock(&level.tool_rtt_us));
    let tools = Quantiles::of(&mut tool_rtt);
    let cpu = cpu1.saturating_sub(cpu0);
    let own = own1.saturating_sub(own0);
    let report = Report {
        engine: engine_name(engine_kind),
        mode: mode.name(),
        calls,
        secs: opts.secs,
        frames_sent: w_sent,
        frames_lost: w_sent.saturating_sub(w_matched + w_garbled),
        frames_garbled: w_garbled,
        rtt_ms: Quantiles::of(&mut rtt),
        server_cpu_us_per_frame: (echoed > 0)
            .then(|| round1(cpu.as_micros() as f64 / echoed as f64)),
        server_cpu_pct: round1(cpu.as_secs_f64() * 100.0 / wall.as_secs_f64()),
        idle_rss_kib: idle_rss,
        peak_rss_kib: peak_rss,
        rss_per_call_kib: round1(peak_rss.saturating_sub(idle_rss) as f64 / calls as f64),
        tool_rtt_ms: ToolFigures {
            p50: tools.p50,
            p99: tools.p99,
            max: tools.max,
            count: level.tools_sent.load(Ordering::SeqCst),
            answered: level.tools_answered.load(Ordering::SeqCst),
        },
        setup_ms: Quantiles::of(&mut setup),
        nproc,
        warmup_secs: opts.warmup_secs,
        frames_echoed: echoed,
        all_frames: FrameCounts {
            sent,
            lost: sent.saturating_sub(matched + garbled),
            garbled,
        },
        hwm_rss_kib: hwm_rss,
        loadgen_cpu_pct: round1(own.as_secs_f64() * 100.0 / wall.as_secs_f64()),
        calls_up: level.up.load(Ordering::SeqCst),
        engine_connections: level.engine_conns.load(Ordering::SeqCst),
        setup_failures: level.failed.load(Ordering::SeqCst),
        problems: level.problems.count(),
        server_log_lines,
        rest_requests: rest.requests().len().saturating_sub(rest_before),
        health_calls_after: health_after,
        chaos: (opts.chaos > 0.0)
            .then(|| chaos_report(&level, &outcomes, w_sent - w_matched - w_garbled)),
    };
    if let Some(chaos) = &report.chaos {
        eprintln!(
            "  chaos: {}/{} affected calls recovered ({} kills, {} stalls); longest silence p99 {:?} ms, max {:?} ms; frames lost in reconnects {}, outside {}; duplicate tool runs {}",
            chaos.recovered,
            chaos.affected,
            chaos.kills,
            chaos.stalls,
            chaos.longest_silence_ms.p99,
            chaos.longest_silence_ms.max,
            chaos.frames_lost_in_reconnects,
            chaos.frames_lost_outside_reconnects,
            chaos.duplicate_tool_runs
        );
    }
    let unreadable = level.engine_unreadable.load(Ordering::Relaxed);
    eprintln!(
        "  {} frames in the window, {} lost, {} garbled ({unreadable} unreadable at the engine); server {:.0}% CPU, peak RSS {peak_rss} KiB; /health after: {health_after:?}",
        report.frames_sent, report.frames_lost, report.frames_garbled, report.server_cpu_pct
    );
    let problems = lock(&level.problems.first).clone();
    if !problems.is_empty() {
        eprintln!("  problems ({}):", level.problems.count());
        for problem in problems {
            eprintln!("    {problem}");
        }
    }
    Ok(report)
}

// ---------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().is_some_and(|a| a == SERVE) {
        args.next();
        return serve_main(args);
    }
    let opts = match Opts::parse(args) {
        Ok(opts) => opts,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    // Starts the clock the frames are stamped with.
    now_us();
    let Some(runtime) = runtime() else {
        return ExitCode::FAILURE;
    };
    if runtime.block_on(run(opts)) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn run(opts: Opts) -> bool {
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    eprintln!(
        "loadgen: levels {:?}, modes {:?}, {} s measured after {} s of warm-up, a tool call every {} s per call; {nproc} cores, {profile} build, features: {}",
        opts.levels,
        opts.modes.iter().map(|m| m.name()).collect::<Vec<_>>(),
        opts.secs,
        opts.warmup_secs,
        opts.tool_every_secs,
        [
            (cfg!(feature = "prometheus"), "prometheus"),
            (
                cfg!(feature = "otel"),
                "otel (spans exported to a local sink)"
            ),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, name)| *name)
        .collect::<Vec<_>>()
        .join(", ")
    );
    if opts.modes.contains(&Mode::Pcm24k) {
        if let Err(e) = check_tag_code() {
            eprintln!("loadgen: the pcm24k frame tags do not survive patter's resamplers: {e}");
            return false;
        }
        eprintln!("loadgen: the pcm24k frame tags survive patter's resamplers");
    }
    let rest = FakeTwilioRest::start().await;
    let mut passed = true;
    for &engine in &opts.engines {
        for &mode in &opts.modes {
            for &calls in &opts.levels {
                eprintln!(
                    "loadgen: {} {} × {calls} calls",
                    engine_name(engine),
                    mode.name()
                );
                let line = match run_level(mode, engine, calls, &opts, &rest, nproc).await {
                    Ok(report) => {
                        passed &= report.passed();
                        serde_json::to_string(&report).unwrap_or_else(|e| {
                            json!({"mode": mode.name(), "calls": calls, "error": e.to_string()})
                                .to_string()
                        })
                    }
                    Err(e) => {
                        passed = false;
                        eprintln!("  failed: {e}");
                        json!({"mode": mode.name(), "calls": calls, "error": e}).to_string()
                    }
                };
                println!("{line}");
            }
        }
    }
    passed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_survive_patters_resamplers() {
        check_tag_code().expect("tag code");
    }

    /// Every read point sits on its block's plateau, well inside the decision thresholds,
    /// whatever the neighbouring blocks and frames.
    #[test]
    fn read_points_sit_on_the_plateaus() {
        let mut up = Upsampler::default();
        let mut down = Downsampler::default();
        let mut worst = 0;
        for seq in 0..2 * TAGS {
            // Tags that jump between extremes from frame to frame: the hardest neighbours.
            let tag = (seq * 0x2b5) % TAGS;
            let levels = tag_levels(tag);
            let (mut pcm, mut mulaw) = (Vec::new(), Vec::new());
            up.process(&mulaw_frame(levels), &mut pcm);
            down.process(&pcm_chunk(levels), &mut mulaw);
            for (b, &level) in levels.iter().enumerate() {
                for o in PCM_READ {
                    let i = b * PCM_BLOCK + o;
                    let got = i16::from_le_bytes([pcm[2 * i], pcm[2 * i + 1]]);
                    worst = worst.max((i32::from(got) - i32::from(level)).abs());
                }
                for o in MULAW_READ {
                    let got = mulaw_decode(mulaw[b * MULAW_BLOCK + o]);
                    worst = worst.max((i32::from(got) - i32::from(level)).abs());
                }
            }
        }
        // μ-law steps near 12000 are 512 wide; the thresholds are 4000 away from a level.
        assert!(worst < 1000, "a read point is {worst} off its level");
    }

    #[test]
    fn every_tag_reads_back_unresampled() {
        for tag in 0..TAGS {
            let frame = mulaw_frame(tag_levels(tag));
            assert_eq!(read_mulaw_tag(&frame), Heard::Tag(tag));
            assert_eq!(read_pcm_tag(&pcm_chunk(tag_levels(tag))), Heard::Tag(tag));
        }
        assert_eq!(
            read_mulaw_tag(&[MULAW_SILENCE; FRAME_BYTES]),
            Heard::Silence
        );
    }

    #[test]
    fn flags() {
        let args = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        let opts = Opts::parse(args("--levels 1,20 --modes pcm24k --secs=10").into_iter())
            .expect("good flags");
        assert_eq!(opts.levels, vec![1, 20]);
        assert_eq!(opts.modes, vec![Mode::Pcm24k]);
        assert_eq!(opts.secs, 10);
        assert_eq!(opts.engines, vec![EngineKind::Realtime]);
        let both = Opts::parse(args("--engines realtime,gpt-live").into_iter()).expect("engines");
        assert_eq!(
            both.engines,
            vec![EngineKind::Realtime, EngineKind::GptLive]
        );
        let one = Opts::parse(args("--engine gpt-live").into_iter()).expect("engine");
        assert_eq!(one.engines, vec![EngineKind::GptLive]);
        for bad in [
            "--levels 0",
            "--modes alaw",
            "--engines gemini",
            "--secs 0",
            "--nope",
            "--levels",
        ] {
            assert!(Opts::parse(args(bad).into_iter()).is_err(), "{bad}");
        }
    }
}
