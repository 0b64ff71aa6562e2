//! The soak benchmark: many concurrent calls through one patter server for minutes, all in
//! this process on 127.0.0.1.
//!
//! ```sh
//! cargo run --release -p patter-tests --bin soak -- --calls 200 --minutes 10
//! ```
//!
//! Flags (defaults): `--calls 200`, `--minutes 10`, `--warmup-secs 60`, `--tool-every-secs 3`,
//! `--call-secs 120`.
//!
//! `--calls` is the number of caller lines (slots), each with one call in progress at a time,
//! so the load is N concurrent calls that start and end as a phone line sees them: each call
//! lasts `--call-secs` (a slot's first call between half that and that, so that the ends do
//! not fall together), then the caller hangs up (the engine falls silent, what is in flight
//! lands, the caller sends `stop`), waits until patter has closed the stream, closed the
//! engine connection and fired `on_call_end`, and places the slot's next call at once.
//! `--call-secs 0` keeps each slot's one call up for the whole run. (Patter keeps a call's
//! transcript and tool-call records until the call ends, by design; churn is what keeps that
//! per-call state out of the RSS growth figure.)
//!
//! Each call is placed exactly as Twilio places it (signed voice webhook, TwiML, signed
//! stream upgrade, `connected`, `start` with the TwiML's parameters), with its own CallSid and
//! stream SID (slot and generation encoded in them); the caller then sends a 20 ms μ-law
//! frame every 20 ms until it hangs up. The fake engine speaks in bursts (a
//! 160-byte audio delta every 100 ms between `response.created` and `response.done`) and
//! calls the agent's in-process tool every `--tool-every-secs`. Every frame carries its
//! sequence number and send time, so the far end checks that none is lost, duplicated or
//! reordered, and measures its latency.
//!
//! The peers here are lean on purpose: `FakeRealtime` and `MediaStream` keep every event
//! they see (200 calls × 50 frames/s × 10 min is 60 M events), which would swamp the RSS
//! figure. These peers keep fixed-size counters per call, so the process RSS measures
//! patter. They speak the same protocol: the engine's events come from the builders of
//! `patter_tests::fake_openai` (the very events `ConnHandle::send_function_call_response`
//! sends), and patter's client events other than audio appends are checked against the GA
//! schema.
//!
//! Goals (the exit code is 1 if one is missed), checked call by call as each call ends:
//! every call set up (one engine connection each); no caller frame and no agent audio lost;
//! every tool call answered with its output; RSS growth after warm-up under 5 %; every
//! `on_call_end` fired, once per call; after the last streams stop, `GET /health` reports 0
//! calls and tokio's alive tasks are back to the baseline taken before the calls; no panic;
//! no protocol violation.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use patter::{
    AgentSpec, CallContext, CallSummary, ConfigBuilder, EndReason, FnTool, Json, Limits, Patter,
    ToolSet,
};
use patter_tests::fake_openai as ev;
use patter_tests::fake_twilio::FakeTwilioRest;
use patter_tests::load::{
    self, CallPlan, Caller, ClientHead, FRAME_PERIOD, TwilioOut, frame_b64, health_calls, now_us,
    read_frame, set_parsed, wait_until,
};
use patter_tests::realtime_schema::validate_client_event;
use patter_tests::twilio_sid;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

const AUTH_TOKEN: &str = "soak_auth_token_not_a_real_one_01";
const OPENAI_KEY: &str = "sk-soak-openai-key-not-real-0123";
/// What Twilio is configured with: a TLS proxy in front of the loopback server.
const PUBLIC_URL: &str = "https://agent.example.com";
const TOOL_NAME: &str = "soak_lookup";

/// The engine's clock: one agent audio delta (160 bytes) per tick while speaking.
const ENGINE_TICK: Duration = Duration::from_millis(100);
/// Ticks per speaking cycle, of which the first `BURST_TICKS` speak (1 s on, 1 s off).
const CYCLE_TICKS: u64 = 20;
const BURST_TICKS: u64 = 10;

const RSS_EVERY_SECS: u64 = 10;
const RSS_GROWTH_GOAL_PCT: f64 = 5.0;
/// How long the end of the run may take at each step before it counts as a failure.
const SETTLE: Duration = Duration::from_secs(30);
/// How many example messages each kind of problem keeps.
const NOTES_KEPT: usize = 8;

// ---------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Opts {
    calls: usize,
    minutes: f64,
    warmup_secs: u64,
    tool_every_secs: u64,
    /// How long each call lasts; 0: the whole run.
    call_secs: u64,
}

const USAGE: &str = "usage: soak [--calls N (200)] [--minutes M (10)] [--warmup-secs S (60)] [--tool-every-secs S (3)] [--call-secs S (120; 0 = the whole run)]";

impl Opts {
    fn parse(args: impl Iterator<Item = String>) -> Result<Opts, String> {
        let mut opts = Opts {
            calls: 200,
            minutes: 10.0,
            warmup_secs: 60,
            tool_every_secs: 3,
            call_secs: 120,
        };
        load::read_flags(args, USAGE, |name, v| {
            Some(match name {
                "--calls" => set_parsed(&mut opts.calls, v),
                "--minutes" => set_parsed(&mut opts.minutes, v),
                "--warmup-secs" => set_parsed(&mut opts.warmup_secs, v),
                "--tool-every-secs" => set_parsed(&mut opts.tool_every_secs, v),
                "--call-secs" => set_parsed(&mut opts.call_secs, v),
                _ => return None,
            })
        })?;
        if opts.calls == 0 {
            return Err("--calls must be at least 1".to_owned());
        }
        if !(opts.minutes > 0.0 && opts.minutes.is_finite()) {
            return Err("--minutes must be positive".to_owned());
        }
        if opts.tool_every_secs == 0 {
            return Err("--tool-every-secs must be at least 1".to_owned());
        }
        if opts.warmup_secs >= opts.run_secs() {
            return Err(format!(
                "--warmup-secs ({}) must be shorter than the run ({} s)",
                opts.warmup_secs,
                opts.run_secs()
            ));
        }
        Ok(opts)
    }

    fn run_secs(&self) -> u64 {
        (self.minutes * 60.0).round() as u64
    }
}

// ---------------------------------------------------------------------------------------
// Shared counters
// ---------------------------------------------------------------------------------------

static PANICS: AtomicUsize = AtomicUsize::new(0);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A latency histogram in power-of-two microsecond buckets.
struct Hist {
    buckets: [AtomicU64; 40],
    count: AtomicU64,
    sum: AtomicU64,
    max: AtomicU64,
}

impl Hist {
    const fn new() -> Hist {
        Hist {
            buckets: [const { AtomicU64::new(0) }; 40],
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
            max: AtomicU64::new(0),
        }
    }

    fn record(&self, us: u64) {
        let bucket = (64 - us.leading_zeros() as usize).min(39);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(us, Ordering::Relaxed);
        self.max.fetch_max(us, Ordering::Relaxed);
    }

    /// The upper bound of the bucket holding quantile `q`, in µs.
    fn quantile(&self, q: f64) -> u64 {
        let count = self.count.load(Ordering::Relaxed);
        if count == 0 {
            return 0;
        }
        let rank = ((count as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            seen += b.load(Ordering::Relaxed);
            if seen >= rank {
                return (1u64 << i).min(self.max.load(Ordering::Relaxed));
            }
        }
        self.max.load(Ordering::Relaxed)
    }

    fn summary(&self) -> String {
        let count = self.count.load(Ordering::Relaxed);
        if count == 0 {
            return "no samples".to_owned();
        }
        let mean = self.sum.load(Ordering::Relaxed) as f64 / count as f64;
        format!(
            "mean {} p50 ≤{} p99 ≤{} p99.9 ≤{} max {} (n={})",
            ms(mean),
            ms(self.quantile(0.5) as f64),
            ms(self.quantile(0.99) as f64),
            ms(self.quantile(0.999) as f64),
            ms(self.max.load(Ordering::Relaxed) as f64),
            thousands(count),
        )
    }
}

fn ms(us: f64) -> String {
    if us < 10_000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{:.0} ms", us / 1000.0)
    }
}

/// Caller frame: sent → appended at the engine.
static LAT_CALLER: Hist = Hist::new();
/// Agent audio: delta sent by the engine → media at Twilio.
static LAT_AGENT: Hist = Hist::new();
/// Tool: function call sent by the engine → its function_call_output.
static LAT_TOOL: Hist = Hist::new();
/// How late the callers' 20 ms timers fire (the runtime's own scheduling delay).
static LAT_TICK: Hist = Hist::new();

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

    fn examples(&self) -> Vec<String> {
        lock(&self.first).clone()
    }
}

/// Everything counted about one call; fixed size, whatever the call's length.
#[derive(Default)]
struct CallStats {
    // The call's end, as the caller drives it.
    /// The caller is hanging up: the engine stops speaking and calling tools.
    quiesce: AtomicBool,
    /// The caller has sent (or is sending) `stop`.
    stop_sent: AtomicBool,
    /// The call's engine connections open now.
    engine_open: AtomicUsize,
    // The caller (fake Twilio).
    frames_sent: AtomicU64,
    media_rx: AtomicU64,
    media_bad: AtomicU64,
    marks_rx: AtomicU64,
    clears_rx: AtomicU64,
    // The fake engine.
    established: AtomicBool,
    engine_conns: AtomicU64,
    appends_rx: AtomicU64,
    appends_bad: AtomicU64,
    deltas_sent: AtomicU64,
    tools_sent: AtomicU64,
    tool_outputs_ok: AtomicU64,
    tool_outputs_bad: AtomicU64,
    response_creates: AtomicU64,
    // on_call_end.
    ended: AtomicU64,
    end_tool_calls: AtomicU64,
    end_tool_calls_failed: AtomicU64,
}

impl CallStats {
    /// The counters, to add a finished call into its slot's sums.
    fn counters(&self) -> [&AtomicU64; 16] {
        [
            &self.frames_sent,
            &self.media_rx,
            &self.media_bad,
            &self.marks_rx,
            &self.clears_rx,
            &self.engine_conns,
            &self.appends_rx,
            &self.appends_bad,
            &self.deltas_sent,
            &self.tools_sent,
            &self.tool_outputs_ok,
            &self.tool_outputs_bad,
            &self.response_creates,
            &self.ended,
            &self.end_tool_calls,
            &self.end_tool_calls_failed,
        ]
    }

    /// Nothing in flight: every agent delta sent reached Twilio, every tool call sent was
    /// answered.
    fn drained(&self) -> bool {
        self.media_rx.load(Ordering::SeqCst) == self.deltas_sent.load(Ordering::SeqCst)
            && self.tool_outputs_ok.load(Ordering::SeqCst)
                + self.tool_outputs_bad.load(Ordering::SeqCst)
                >= self.tools_sent.load(Ordering::SeqCst)
    }
}

/// One caller line: its calls follow one another.
#[derive(Default)]
struct Slot {
    /// The call in progress: its generation and counters.
    current: Mutex<Option<(u64, Arc<CallStats>)>>,
    /// The sums of the slot's finished calls.
    done: CallStats,
}

/// The call-by-call comparisons, made as each call ends.
#[derive(Default)]
struct Verdicts {
    calls_checked: AtomicUsize,
    calls_losing_frames: AtomicUsize,
    lost_frames: AtomicU64,
    calls_losing_agent: AtomicUsize,
    lost_agent: AtomicU64,
    tool_mismatch: AtomicUsize,
    create_mismatch: AtomicUsize,
    /// Calls without exactly one engine connection.
    engine_conn_mismatch: AtomicUsize,
    /// Calls without exactly one `on_call_end`.
    end_mismatch: AtomicUsize,
    /// The first few mismatches.
    examples: Notes,
}

const RUN: u8 = 0;
const QUIESCE: u8 = 1;
const STOP: u8 = 2;

struct Soak {
    opts: Opts,
    slots: Vec<Slot>,
    /// RUN, then QUIESCE (the engine stops speaking and calling tools), then STOP (callers
    /// send `stop`).
    phase: AtomicU8,
    /// Calls placed (voice webhooks sent), established (engine session set up), ended
    /// (`on_call_end`).
    placed: AtomicUsize,
    established: AtomicUsize,
    ends: AtomicUsize,
    /// Engine connections accepted in all, and open now.
    engine_conns: AtomicUsize,
    engine_live: AtomicUsize,
    schema_checked: AtomicU64,
    verdicts: Verdicts,
    setup_failures: Notes,
    call_failures: Notes,
    engine_failures: Notes,
    schema_violations: Notes,
    twilio_violations: Notes,
    unexpected_ends: Notes,
}

impl Soak {
    fn phase(&self) -> u8 {
        self.phase.load(Ordering::SeqCst)
    }

    /// The call in progress with this CallSid: its slot and counters.
    fn call(&self, call_sid: &str) -> Option<(usize, Arc<CallStats>)> {
        let (slot, generation) = call_slot(call_sid)?;
        match &*lock(&self.slots.get(slot)?.current) {
            Some((g, stats)) if *g == generation => Some((slot, Arc::clone(stats))),
            _ => None,
        }
    }

    /// The calls in progress.
    fn current_calls(&self) -> Vec<Arc<CallStats>> {
        self.slots
            .iter()
            .filter_map(|s| lock(&s.current).as_ref().map(|(_, c)| Arc::clone(c)))
            .collect()
    }

    /// A counter summed over every call, finished or in progress.
    fn total(&self, field: impl Fn(&CallStats) -> &AtomicU64) -> u64 {
        self.slots
            .iter()
            .map(|s| {
                let current = lock(&s.current);
                field(&s.done).load(Ordering::Relaxed)
                    + current
                        .as_ref()
                        .map_or(0, |(_, c)| field(c).load(Ordering::Relaxed))
            })
            .sum()
    }

    fn on_call_end(&self, summary: &CallSummary) {
        let call_sid = summary.context.call_id();
        match self.call(call_sid) {
            Some((_, stats)) => {
                stats.ended.fetch_add(1, Ordering::SeqCst);
                stats
                    .end_tool_calls
                    .store(summary.tool_calls.len() as u64, Ordering::SeqCst);
                let failed = summary.tool_calls.iter().filter(|t| !t.ok).count();
                stats
                    .end_tool_calls_failed
                    .store(failed as u64, Ordering::SeqCst);
                if summary.reason != EndReason::StreamStopped
                    || !stats.stop_sent.load(Ordering::SeqCst)
                {
                    self.unexpected_ends.note(format!(
                        "{call_sid}: {:?} after {:?}",
                        summary.reason, summary.duration
                    ));
                }
            }
            None => self.unexpected_ends.note(format!(
                "on_call_end for an unknown or finished call {call_sid:?} ({:?})",
                summary.reason
            )),
        }
        self.ends.fetch_add(1, Ordering::SeqCst);
    }

    /// Compares what both ends counted for a call that is over, then adds its counters into
    /// its slot's sums and clears the slot.
    fn finish_call(&self, slot: usize, call_sid: &str, c: &CallStats) {
        let v = &self.verdicts;
        let get = |a: &AtomicU64| a.load(Ordering::SeqCst);
        if c.established.load(Ordering::SeqCst) {
            v.calls_checked.fetch_add(1, Ordering::Relaxed);
            let (sent, got) = (get(&c.frames_sent), get(&c.appends_rx));
            if sent != got || get(&c.appends_bad) > 0 {
                v.calls_losing_frames.fetch_add(1, Ordering::Relaxed);
                v.lost_frames
                    .fetch_add(sent.abs_diff(got), Ordering::Relaxed);
                v.examples.note(format!(
                    "{call_sid}: caller frames sent {sent}, appended {got}, out of order {}",
                    get(&c.appends_bad)
                ));
            }
            let (sent, got) = (get(&c.deltas_sent), get(&c.media_rx));
            if sent != got || get(&c.media_bad) > 0 {
                v.calls_losing_agent.fetch_add(1, Ordering::Relaxed);
                v.lost_agent
                    .fetch_add(sent.abs_diff(got), Ordering::Relaxed);
                v.examples.note(format!(
                    "{call_sid}: agent deltas sent {sent}, media at Twilio {got}, out of order {}",
                    get(&c.media_bad)
                ));
            }
            let tools = get(&c.tools_sent);
            if get(&c.tool_outputs_ok) != tools
                || get(&c.end_tool_calls) != tools
                || get(&c.end_tool_calls_failed) > 0
            {
                v.tool_mismatch.fetch_add(1, Ordering::Relaxed);
                v.examples.note(format!(
                    "{call_sid}: tool calls sent {tools}, answered {}, in on_call_end {} ({} failed)",
                    get(&c.tool_outputs_ok),
                    get(&c.end_tool_calls),
                    get(&c.end_tool_calls_failed)
                ));
            }
            // The greeting, then one response.create after each answered tool response.
            if get(&c.response_creates) != 1 + get(&c.tool_outputs_ok) {
                v.create_mismatch.fetch_add(1, Ordering::Relaxed);
                v.examples.note(format!(
                    "{call_sid}: response.create {} for {} tool outputs (expected 1 + outputs)",
                    get(&c.response_creates),
                    get(&c.tool_outputs_ok)
                ));
            }
            if get(&c.engine_conns) != 1 {
                v.engine_conn_mismatch.fetch_add(1, Ordering::Relaxed);
                v.examples.note(format!(
                    "{call_sid}: {} engine connections",
                    get(&c.engine_conns)
                ));
            }
            if get(&c.ended) != 1 {
                v.end_mismatch.fetch_add(1, Ordering::Relaxed);
                v.examples
                    .note(format!("{call_sid}: {} on_call_end", get(&c.ended)));
            }
        }
        let s = &self.slots[slot];
        let mut current = lock(&s.current);
        for (sum, n) in s.done.counters().into_iter().zip(c.counters()) {
            sum.fetch_add(get(n), Ordering::SeqCst);
        }
        *current = None;
    }
}

/// The SIDs' number for generation `generation` of slot `slot` (0-based): the slot + 1 in
/// the low 32 bits, the generation above, so that the first calls are `CA…1`, `CA…2` ….
fn sid_number(slot: usize, generation: u64) -> u128 {
    (u128::from(generation) << 32) | (slot as u128 + 1)
}

fn call_sid_of(slot: usize, generation: u64) -> String {
    twilio_sid("CA", sid_number(slot, generation))
}

fn stream_sid_of(slot: usize, generation: u64) -> String {
    twilio_sid("MZ", sid_number(slot, generation))
}

/// A CallSid's slot and generation.
fn call_slot(call_sid: &str) -> Option<(usize, u64)> {
    let hex = call_sid.strip_prefix("CA")?;
    let n = u128::from_str_radix(hex.get(..32)?, 16).ok()?;
    let slot = usize::try_from(n & 0xffff_ffff).ok()?.checked_sub(1)?;
    let generation = u64::try_from(n >> 32).ok()?;
    Some((slot, generation))
}

/// How long a slot's first call lasts: between half of `--call-secs` and all of it, spread
/// over the slots by a fixed hash (splitmix64), so that runs are alike and ends do not fall
/// together.
fn first_call_length(slot: usize, call_secs: u64) -> Duration {
    let mut x = (slot as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    let full = call_secs * 1000;
    let half = full / 2;
    Duration::from_millis(half + x % (full - half + 1))
}

/// The peers' WebSocket settings: an 8 KiB read buffer instead of tungstenite's 128 KiB
/// (which it zero-fills, so all of it is resident), so that the RSS figure is mostly patter's.
fn peer_ws_config() -> WebSocketConfig {
    load::peer_ws_config(8 * 1024)
}

const CALLER_FILL: u8 = 0xff;
const AGENT_FILL: u8 = 0x7f;

// ---------------------------------------------------------------------------------------
// The fake engine: a lean OpenAI Realtime GA peer that counts
// ---------------------------------------------------------------------------------------

async fn engine_accept(listener: TcpListener, soak: Arc<Soak>) {
    loop {
        match listener.accept().await {
            Ok((tcp, _)) => {
                tokio::spawn(engine_conn(Arc::clone(&soak), tcp));
            }
            Err(e) => {
                soak.engine_failures.note(format!("accept: {e}"));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

type EngineWs = WebSocketStream<TcpStream>;

/// Decrements the live engine connection count when a connection task ends.
struct Live<'a>(&'a AtomicUsize);

impl Drop for Live<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn engine_conn(soak: Arc<Soak>, tcp: TcpStream) {
    let _ = tcp.set_nodelay(true);
    soak.engine_live.fetch_add(1, Ordering::SeqCst);
    let _live = Live(&soak.engine_live);
    soak.engine_conns.fetch_add(1, Ordering::SeqCst);
    let accepting = tokio_tungstenite::accept_async_with_config(tcp, Some(peer_ws_config()));
    let mut ws = match tokio::time::timeout(SETTLE, accepting).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            soak.engine_failures.note(format!("handshake: {e}"));
            return;
        }
        Err(_) => {
            soak.engine_failures.note("handshake timed out");
            return;
        }
    };
    let created = json!({
        "type": "session.created",
        "event_id": ev::next_event_id(),
        "session": {
            "type": "realtime", "object": "realtime.session", "id": "sess_soak",
            "model": "gpt-realtime", "output_modalities": ["audio"], "instructions": "",
            "tools": [], "tool_choice": "auto"
        }
    });
    if ws.send(Message::text(created.to_string())).await.is_err() {
        soak.engine_failures.note("could not send session.created");
        return;
    }
    // The first client event is the session.update; its instructions name the call.
    let update = match tokio::time::timeout(SETTLE, ws.next()).await {
        Ok(Some(Ok(Message::Text(text)))) => serde_json::from_str::<Value>(text.as_str()).ok(),
        _ => None,
    };
    let Some(update) = update.filter(|u| u["type"] == "session.update") else {
        soak.engine_failures
            .note("the first client event was not a session.update");
        return;
    };
    check_schema(&soak, &update, "session.update");
    let instructions = update["session"]["instructions"].as_str().unwrap_or("");
    let found = instructions
        .find("CA")
        .and_then(|at| instructions.get(at..at + 34))
        .and_then(|sid| soak.call(sid).map(|(i, stats)| (i, sid.to_owned(), stats)));
    let Some((index, call_sid, stats)) = found else {
        soak.engine_failures.note(format!(
            "no call in progress named in the instructions {instructions:?}"
        ));
        return;
    };
    let stats = &*stats;
    stats.engine_open.fetch_add(1, Ordering::SeqCst);
    let _open = Live(&stats.engine_open);
    if stats.engine_conns.fetch_add(1, Ordering::SeqCst) > 0 {
        soak.engine_failures
            .note(format!("{call_sid}: a second engine connection"));
    }
    let updated = json!({
        "type": "session.updated",
        "event_id": ev::next_event_id(),
        "session": update["session"],
    });
    if ws.send(Message::text(updated.to_string())).await.is_err() {
        soak.engine_failures
            .note(format!("{call_sid}: could not send session.updated"));
        return;
    }
    drop(update);
    if !stats.established.swap(true, Ordering::SeqCst) {
        soak.established.fetch_add(1, Ordering::SeqCst);
    }
    let mut driver = EngineDriver {
        soak: &soak,
        stats,
        index,
        call_sid,
        tick: 0,
        burst: None,
        next_tool_tick: soak.opts.tool_every_secs * 1000 / ENGINE_TICK.as_millis() as u64,
        tool_every_ticks: soak.opts.tool_every_secs * 1000 / ENGINE_TICK.as_millis() as u64,
        pending_tools: HashMap::new(),
        schema_checked_append: false,
        closing: false,
    };
    driver.run(&mut ws).await;
}

fn check_schema(soak: &Soak, event: &Value, what: &str) {
    soak.schema_checked.fetch_add(1, Ordering::Relaxed);
    if let Err(e) = validate_client_event(event) {
        soak.schema_violations.note(format!("{what}: {e}"));
    }
}

struct EngineDriver<'a> {
    soak: &'a Soak,
    stats: &'a CallStats,
    index: usize,
    call_sid: String,
    tick: u64,
    /// The response speaking now: (response id, item id).
    burst: Option<(String, String)>,
    next_tool_tick: u64,
    tool_every_ticks: u64,
    /// Tool calls sent and not answered yet: k → when sent.
    pending_tools: HashMap<u64, Instant>,
    schema_checked_append: bool,
    /// The client has sent its close frame: nothing more is sent.
    closing: bool,
}

impl EngineDriver<'_> {
    async fn run(&mut self, ws: &mut EngineWs) {
        let mut tick = tokio::time::interval(ENGINE_TICK);
        tick.reset();
        loop {
            tokio::select! {
                incoming = ws.next() => match incoming {
                    Some(Ok(Message::Text(text))) => self.on_client_event(text.as_str()),
                    Some(Ok(Message::Close(_))) => self.closing = true,
                    Some(Ok(Message::Binary(_))) => self.soak.schema_violations.note(format!("{}: binary frame to the engine", self.call_sid)),
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        if !self.stats.stop_sent.load(Ordering::SeqCst) {
                            self.soak.engine_failures.note(format!("{}: engine socket failed: {e}", self.call_sid));
                        }
                        break;
                    }
                    None => break,
                },
                _ = tick.tick(), if !self.closing => {
                    let events = self.on_tick();
                    if !events.is_empty() && send_all(ws, events).await.is_err() {
                        if !self.stats.stop_sent.load(Ordering::SeqCst) {
                            self.soak.engine_failures.note(format!("{}: engine send failed", self.call_sid));
                        }
                        self.closing = true;
                    }
                }
            }
        }
        if !self.stats.stop_sent.load(Ordering::SeqCst) {
            self.soak.engine_failures.note(format!(
                "{}: the engine connection ended before the stream stopped",
                self.call_sid
            ));
        }
        for k in self.pending_tools.keys() {
            self.soak.call_failures.note(format!(
                "{}: tool call call_{k} never answered",
                self.call_sid
            ));
        }
    }

    /// What the engine says on this tick.
    fn on_tick(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        let t = self.tick;
        self.tick += 1;
        if self.soak.phase() != RUN || self.stats.quiesce.load(Ordering::SeqCst) {
            if let Some((response_id, item_id)) = self.burst.take() {
                finish_burst(&mut out, &response_id, &item_id);
            }
            return out;
        }
        let pos = t % CYCLE_TICKS;
        if pos < BURST_TICKS {
            let (response_id, item_id) = self.burst.get_or_insert_with(|| {
                let response_id = format!("resp_{}_{t}", self.index);
                let item_id = format!("item_{}_{t}", self.index);
                out.push(ev::response_created(&response_id));
                out.push(ev::output_item_added(
                    &response_id,
                    0,
                    ev::assistant_audio_item(&item_id, "in_progress", ""),
                ));
                (response_id, item_id)
            });
            let seq = self.stats.deltas_sent.fetch_add(1, Ordering::SeqCst);
            out.push(ev::audio_delta(
                response_id,
                item_id,
                &frame_b64(seq, AGENT_FILL),
            ));
            if pos == BURST_TICKS - 1
                && let Some((response_id, item_id)) = self.burst.take()
            {
                finish_burst(&mut out, &response_id, &item_id);
            }
        } else if t >= self.next_tool_tick {
            // A tool-calling response, between spoken ones, as
            // `ConnHandle::send_function_call_response` sends it.
            self.next_tool_tick += self.tool_every_ticks;
            let k = self.stats.tools_sent.fetch_add(1, Ordering::SeqCst);
            let response_id = format!("resp_{}_tool_{k}", self.index);
            let call_id = format!("call_{k}");
            let item_id = format!("item_{call_id}");
            let arguments = format!(r#"{{"k":{k}}}"#);
            out.push(ev::response_created(&response_id));
            out.extend(ev::function_call_events_at(
                &response_id,
                0,
                &item_id,
                &call_id,
                TOOL_NAME,
                &arguments,
            ));
            out.push(ev::response_done(
                &response_id,
                "completed",
                vec![ev::function_call_item(
                    &item_id, &call_id, TOOL_NAME, &arguments,
                )],
            ));
            self.pending_tools.insert(k, Instant::now());
        }
        out
    }

    fn on_client_event(&mut self, text: &str) {
        let head: ClientHead<'_> = match serde_json::from_str(text) {
            Ok(head) => head,
            Err(e) => {
                self.soak
                    .schema_violations
                    .note(format!("{}: unreadable client event ({e})", self.call_sid));
                return;
            }
        };
        if head.kind == "input_audio_buffer.append" {
            let expected = self.stats.appends_rx.fetch_add(1, Ordering::Relaxed);
            match head.audio.and_then(|a| read_frame(a, CALLER_FILL)) {
                Some((seq, sent)) => {
                    LAT_CALLER.record(now_us().saturating_sub(sent));
                    if seq != expected {
                        self.stats.appends_bad.fetch_add(1, Ordering::Relaxed);
                        self.soak.call_failures.note(format!(
                            "{}: caller frame #{seq} arrived as append #{expected}",
                            self.call_sid
                        ));
                    }
                }
                None => {
                    self.stats.appends_bad.fetch_add(1, Ordering::Relaxed);
                    self.soak.call_failures.note(format!(
                        "{}: append #{expected} does not carry a caller frame unchanged",
                        self.call_sid
                    ));
                }
            }
            if !self.schema_checked_append {
                self.schema_checked_append = true;
                if let Ok(event) = serde_json::from_str::<Value>(text) {
                    check_schema(self.soak, &event, "input_audio_buffer.append");
                }
            }
            return;
        }
        // Everything else is rare: parse it whole and check it against the schema.
        let Ok(event) = serde_json::from_str::<Value>(text) else {
            return;
        };
        check_schema(self.soak, &event, head.kind);
        match head.kind {
            "response.create" => {
                self.stats.response_creates.fetch_add(1, Ordering::Relaxed);
            }
            "conversation.item.create" if event["item"]["type"] == "function_call_output" => {
                self.on_tool_output(&event["item"]);
            }
            other => self.soak.call_failures.note(format!(
                "{}: unexpected client event {other}",
                self.call_sid
            )),
        }
    }

    fn on_tool_output(&mut self, item: &Value) {
        let call_id = item["call_id"].as_str().unwrap_or("");
        let k = call_id
            .strip_prefix("call_")
            .and_then(|k| k.parse::<u64>().ok());
        let sent = k.and_then(|k| self.pending_tools.remove(&k));
        let output: Option<Value> = item["output"]
            .as_str()
            .and_then(|o| serde_json::from_str(o).ok());
        let right = match (k, &output) {
            (Some(k), Some(output)) => {
                output["call"] == self.call_sid.as_str() && output["k"] == k && output["ok"] == true
            }
            _ => false,
        };
        match sent {
            Some(at) if right => {
                LAT_TOOL.record(at.elapsed().as_micros() as u64);
                self.stats.tool_outputs_ok.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                self.stats.tool_outputs_bad.fetch_add(1, Ordering::Relaxed);
                self.soak.call_failures.note(format!(
                    "{}: unexpected function_call_output {item}",
                    self.call_sid
                ));
            }
        }
    }
}

fn finish_burst(out: &mut Vec<Value>, response_id: &str, item_id: &str) {
    let done = ev::assistant_audio_item(item_id, "completed", "");
    out.push(ev::audio_done(response_id, item_id));
    out.push(ev::output_item_done(response_id, 0, done.clone()));
    out.push(ev::response_done(response_id, "completed", vec![done]));
}

async fn send_all(
    ws: &mut EngineWs,
    events: Vec<Value>,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    for event in events {
        ws.feed(Message::text(event.to_string())).await?;
    }
    ws.flush().await
}

// ---------------------------------------------------------------------------------------
// The callers: lean fake Twilio Media Streams clients that count
// ---------------------------------------------------------------------------------------

/// Places generation `generation` of slot `slot`'s calls as Twilio does: signed voice
/// webhook, TwiML, signed stream upgrade, `connected`, `start` with the TwiML's parameters.
async fn place_call(slot: usize, generation: u64, base: &str) -> Result<Caller, String> {
    load::place_call(CallPlan {
        base,
        public_url: PUBLIC_URL,
        auth_token: AUTH_TOKEN,
        call_sid: call_sid_of(slot, generation),
        stream_sid: stream_sid_of(slot, generation),
        account_sid: twilio_sid("AC", 0xacc),
        ws_config: peer_ws_config(),
        timeout: SETTLE,
    })
    .await
}

/// Streams a frame every 20 ms, echoing marks, until it hangs up: at `hang_up` (the
/// engine falls silent; once what is in flight has landed the caller sends `stop`) or in
/// the STOP phase (`stop` at once). Then reads until patter closes the socket.
async fn run_caller(
    mut caller: Caller,
    soak: &Soak,
    stats: &CallStats,
    hang_up: Option<tokio::time::Instant>,
) {
    let mut tick = tokio::time::interval(FRAME_PERIOD);
    let mut streaming = true;
    let mut hanging_up: Option<tokio::time::Instant> = None;
    let give_up = tokio::time::sleep(Duration::from_secs(86_400));
    tokio::pin!(give_up);
    loop {
        tokio::select! {
            scheduled = tick.tick(), if streaming => {
                LAT_TICK.record(scheduled.elapsed().as_micros() as u64);
                let now = tokio::time::Instant::now();
                if hanging_up.is_none() && hang_up.is_some_and(|at| now >= at) {
                    stats.quiesce.store(true, Ordering::SeqCst);
                    hanging_up = Some(now);
                }
                // A few engine ticks first, so that a tick that began before the quiesce
                // has counted its delta; then wait until what is in flight has landed.
                let landed = hanging_up.is_some_and(|at| {
                    let waited = now - at;
                    if waited >= SETTLE {
                        soak.call_failures.note(format!(
                            "{}: agent audio or tool outputs still in flight {SETTLE:?} after hanging up",
                            caller.call_sid
                        ));
                        true
                    } else {
                        waited >= ENGINE_TICK * 3 && stats.drained()
                    }
                });
                let text = if landed || soak.phase() == STOP {
                    streaming = false;
                    stats.stop_sent.store(true, Ordering::SeqCst);
                    give_up.as_mut().reset(tokio::time::Instant::now() + SETTLE);
                    caller.stop()
                } else {
                    let seq = stats.frames_sent.load(Ordering::Relaxed);
                    let frame = frame_b64(seq, CALLER_FILL);
                    caller.media(&frame)
                };
                if let Err(e) = caller.send(text).await {
                    soak.call_failures.note(e);
                    return;
                }
                if streaming {
                    stats.frames_sent.fetch_add(1, Ordering::Relaxed);
                }
            }
            incoming = caller.ws.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    if let Some(echo) = on_server_message(&mut caller, soak, stats, text.as_str())
                        && let Err(e) = caller.send(echo).await
                        && streaming
                    {
                        soak.call_failures.note(e);
                    }
                }
                Some(Ok(Message::Close(_))) => {
                    if streaming {
                        soak.call_failures.note(format!("{}: patter closed the stream during the run", caller.call_sid));
                        streaming = false;
                        give_up.as_mut().reset(tokio::time::Instant::now() + SETTLE);
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    if streaming {
                        soak.call_failures.note(format!("{}: stream failed: {e}", caller.call_sid));
                    }
                    return;
                }
                None => return,
            },
            () = &mut give_up => {
                soak.call_failures.note(format!("{}: patter did not close the stream within {SETTLE:?} of stop", caller.call_sid));
                return;
            }
        }
    }
}

/// Checks one message from patter; returns the mark echo to send, if any.
fn on_server_message(
    caller: &mut Caller,
    soak: &Soak,
    stats: &CallStats,
    text: &str,
) -> Option<String> {
    let msg: TwilioOut<'_> = match serde_json::from_str(text) {
        Ok(msg) => msg,
        Err(e) => {
            soak.twilio_violations
                .note(format!("{}: unreadable message ({e})", caller.call_sid));
            return None;
        }
    };
    if msg.stream_sid != Some(caller.stream_sid.as_str()) {
        soak.twilio_violations.note(format!(
            "{}: streamSid {:?}",
            caller.call_sid, msg.stream_sid
        ));
    }
    match (msg.event, msg.media, msg.mark) {
        ("media", Some(media), None) => {
            let expected = stats.media_rx.fetch_add(1, Ordering::Relaxed);
            match read_frame(media.payload, AGENT_FILL) {
                Some((seq, sent)) => {
                    LAT_AGENT.record(now_us().saturating_sub(sent));
                    if seq != expected {
                        stats.media_bad.fetch_add(1, Ordering::Relaxed);
                        soak.call_failures.note(format!(
                            "{}: agent delta #{seq} arrived as media #{expected}",
                            caller.call_sid
                        ));
                    }
                }
                None => {
                    stats.media_bad.fetch_add(1, Ordering::Relaxed);
                    soak.call_failures.note(format!(
                        "{}: media #{expected} is not an agent delta unchanged",
                        caller.call_sid
                    ));
                }
            }
            None
        }
        ("mark", None, Some(mark)) => {
            stats.marks_rx.fetch_add(1, Ordering::Relaxed);
            // Played at once: echoed as Twilio does when the audio before it is done.
            Some(caller.mark_echo(mark.name))
        }
        ("clear", None, None) => {
            stats.clears_rx.fetch_add(1, Ordering::Relaxed);
            None
        }
        (other, _, _) => {
            soak.twilio_violations.note(format!(
                "{}: unexpected message {other}: {text}",
                caller.call_sid
            ));
            None
        }
    }
}

/// One caller line: places a call, keeps it up for its length, hangs up, waits until patter
/// has ended it, and places the next, until the run ends.
async fn slot_task(soak: Arc<Soak>, slot: usize, base: String, delay: Duration) {
    tokio::time::sleep(delay).await;
    let call_secs = soak.opts.call_secs;
    let mut generation = 0;
    while soak.phase() == RUN {
        let length = match call_secs {
            0 => None,
            secs if generation == 0 => Some(first_call_length(slot, secs)),
            secs => Some(Duration::from_secs(secs)),
        };
        let call_sid = call_sid_of(slot, generation);
        let stats = Arc::new(CallStats::default());
        *lock(&soak.slots[slot].current) = Some((generation, Arc::clone(&stats)));
        soak.placed.fetch_add(1, Ordering::SeqCst);
        let placed = match place_call(slot, generation, &base).await {
            Ok(caller) => {
                let hang_up = length.map(|l| tokio::time::Instant::now() + l);
                run_caller(caller, &soak, &stats, hang_up).await;
                // Patter has closed the stream; the call is over once `on_call_end` has
                // fired and the engine connection is closed.
                let over = wait_until(SETTLE, || {
                    stats.ended.load(Ordering::SeqCst) > 0
                        && stats.engine_open.load(Ordering::SeqCst) == 0
                })
                .await;
                if !over {
                    soak.call_failures.note(format!(
                        "{call_sid}: {} on_call_end, {} engine connections open {SETTLE:?} after the stream closed",
                        stats.ended.load(Ordering::SeqCst),
                        stats.engine_open.load(Ordering::SeqCst)
                    ));
                }
                true
            }
            Err(e) => {
                soak.setup_failures
                    .note(format!("{call_sid} (slot {slot}): {e}"));
                false
            }
        };
        soak.finish_call(slot, &call_sid, &stats);
        if !placed {
            if call_secs == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        generation += 1;
    }
}

// ---------------------------------------------------------------------------------------
// Process figures
// ---------------------------------------------------------------------------------------

/// VmRSS of this process, in KiB.
fn rss_kib() -> u64 {
    load::proc_status_kib("self", "VmRSS").unwrap_or(0)
}

/// CPU time of this process (user + system).
fn cpu_time() -> Duration {
    load::proc_cpu_time("self")
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// Waits for the server's helper tasks (HTTP connections of /health …) to finish.
async fn settled_tasks(target: usize, limit: Duration) -> usize {
    wait_until(limit, || alive_tasks() <= target).await;
    alive_tasks()
}

// ---------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------

#[patter::args]
struct SoakArgs {
    /// The record number.
    k: u64,
}

fn agent() -> AgentSpec {
    let lookup = FnTool::new(
        TOOL_NAME,
        "Look up a soak record.",
        |args: SoakArgs, call: CallContext| async move {
            Json(json!({ "call": call.call_id(), "k": args.k, "ok": true }))
        },
    );
    AgentSpec::new("You are the soak agent on call {call_id}.")
        .first_message("Hello from the soak agent.")
        .tools(ToolSet::builder().tool(lookup).build().expect("tool set"))
}

/// How long the calls last, in words.
fn call_length(opts: &Opts) -> String {
    match opts.call_secs {
        0 => "each call the whole run".to_owned(),
        secs => format!(
            "calls of {secs} s (a slot's first {:.0}–{secs} s)",
            secs as f64 / 2.0
        ),
    }
}

struct Goal {
    name: &'static str,
    ok: bool,
    detail: String,
}

fn main() -> ExitCode {
    // Starts the clock the frames are stamped with.
    now_us();
    let opts = match Opts::parse(std::env::args().skip(1)) {
        Ok(opts) => opts,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        default_hook(info);
    }));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let passed = runtime.block_on(run(opts));
    if passed {
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
    println!(
        "soak: {} concurrent calls × {} min (warm-up {} s), {}, tool call every {} s per call; {nproc} cores, {profile} build",
        opts.calls,
        opts.minutes,
        opts.warmup_secs,
        call_length(&opts),
        opts.tool_every_secs
    );
    let soak = Arc::new(Soak {
        slots: (0..opts.calls).map(|_| Slot::default()).collect(),
        opts: opts.clone(),
        phase: AtomicU8::new(RUN),
        placed: AtomicUsize::new(0),
        established: AtomicUsize::new(0),
        ends: AtomicUsize::new(0),
        engine_conns: AtomicUsize::new(0),
        engine_live: AtomicUsize::new(0),
        schema_checked: AtomicU64::new(0),
        verdicts: Verdicts::default(),
        setup_failures: Notes::default(),
        call_failures: Notes::default(),
        engine_failures: Notes::default(),
        schema_violations: Notes::default(),
        twilio_violations: Notes::default(),
        unexpected_ends: Notes::default(),
    });

    // The peers and the server.
    let rest = FakeTwilioRest::start().await;
    let engine_listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the fake engine");
    let engine_url = format!(
        "ws://{}/v1/realtime",
        engine_listener.local_addr().expect("engine address")
    );
    let engine_task = tokio::spawn(engine_accept(engine_listener, Arc::clone(&soak)));
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the server");
    let base = format!("http://{}", listener.local_addr().expect("server address"));
    let mut limits = Limits::default();
    limits.max_concurrent_calls = opts.calls + 10;
    limits.max_call_duration = Duration::from_secs(opts.run_secs() + 3600);
    let config = ConfigBuilder::default()
        .twilio_account_sid(twilio_sid("AC", 0xacc))
        .twilio_auth_token(AUTH_TOKEN)
        .openai_api_key(OPENAI_KEY)
        .phone_number("+15550100")
        .webhook_url(PUBLIC_URL)
        .openai_realtime_url(engine_url.as_str())
        .twilio_api_url(rest.base_url())
        .stream_secret("soak stream secret")
        .limits(limits)
        .build()
        .expect("valid config");
    let hook_soak = Arc::clone(&soak);
    let phone = Patter::new(config).on_call_end(move |summary| {
        hook_soak.on_call_end(&summary);
        std::future::ready(())
    });
    let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        phone
            .serve_on(listener, agent(), async {
                let _ = shutdown_rx.await;
            })
            .await
    });

    // Baselines, before any call.
    let health_before = match health_calls(&base).await {
        Ok(calls) => calls,
        Err(e) => {
            eprintln!("soak: the server does not answer: {e}");
            return false;
        }
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let tasks_before = alive_tasks();
    let rss_before = rss_kib();
    println!(
        "soak: server up at {base}; before calls: RSS {}, {tasks_before} tasks, /health calls {health_before}",
        mib(rss_before)
    );

    // Place the first calls, spread over up to 5 s so that their 20 ms clocks are not in step.
    let ramp = Duration::from_millis((opts.calls as u64 * 10).min(5000));
    let mut callers = JoinSet::new();
    for i in 0..opts.calls {
        let delay = ramp * i as u32 / opts.calls as u32;
        callers.spawn(slot_task(Arc::clone(&soak), i, base.clone(), delay));
    }
    let placing = Instant::now();
    wait_until(ramp + SETTLE, || {
        soak.established.load(Ordering::SeqCst) + soak.setup_failures.count() >= opts.calls
    })
    .await;
    let established = soak.established.load(Ordering::SeqCst);
    println!(
        "soak: {established}/{} calls established in {:.1} s; running {} s",
        opts.calls,
        placing.elapsed().as_secs_f64(),
        opts.run_secs()
    );

    // The run: sample RSS every 10 s, and at the end of the warm-up.
    let run_secs = opts.run_secs();
    let mut marks: Vec<u64> = (1..=run_secs / RSS_EVERY_SECS)
        .map(|k| k * RSS_EVERY_SECS)
        .chain([opts.warmup_secs, run_secs])
        .collect();
    marks.sort_unstable();
    marks.dedup();
    let t0 = tokio::time::Instant::now();
    let cpu0 = cpu_time();
    let busy0 = worker_busy();
    let mut samples: Vec<(u64, u64)> = vec![(0, rss_kib())];
    let mut rss_warm = samples[0].1;
    let mut tools_warm = 0;
    for &at in &marks {
        tokio::time::sleep_until(t0 + Duration::from_secs(at)).await;
        let rss = rss_kib();
        samples.push((at, rss));
        if at == opts.warmup_secs {
            rss_warm = rss;
            tools_warm = soak.total(|c| &c.tool_outputs_ok);
        }
        let cpu = (cpu_time().saturating_sub(cpu0)).as_secs_f64() / t0.elapsed().as_secs_f64();
        println!(
            "  t={at:>4}s  RSS {:>10}  calls {:>6}  frames {:>11}  appends {:>11}  agent media {:>9}  tools {:>7}  tasks {:>5}  cpu {:>4.0}%{}",
            mib(rss),
            thousands(soak.placed.load(Ordering::SeqCst) as u64),
            thousands(soak.total(|c| &c.frames_sent)),
            thousands(soak.total(|c| &c.appends_rx)),
            thousands(soak.total(|c| &c.media_rx)),
            thousands(soak.total(|c| &c.tool_outputs_ok)),
            alive_tasks(),
            cpu * 100.0,
            if at == opts.warmup_secs {
                "  (end of warm-up)"
            } else {
                ""
            }
        );
    }
    let run_wall = t0.elapsed();
    let cpu_run = cpu_time().saturating_sub(cpu0);
    let busy_run: Vec<Duration> = worker_busy()
        .iter()
        .zip(busy0.iter().chain(std::iter::repeat(&Duration::ZERO)))
        .map(|(now, then)| now.saturating_sub(*then))
        .collect();
    let rss_end = rss_kib();
    let rss_max = samples
        .iter()
        .map(|&(_, r)| r)
        .chain([rss_end])
        .max()
        .unwrap_or(0);
    let growth_pct = if rss_warm > 0 {
        (rss_end as f64 - rss_warm as f64) * 100.0 / rss_warm as f64
    } else {
        f64::NAN
    };
    let tools_after_warm = soak.total(|c| &c.tool_outputs_ok) - tools_warm;
    let tasks_during = alive_tasks();
    let health_during = health_calls(&base).await.ok();

    // Quiesce: the engine stops speaking and calling tools; wait for what is in flight,
    // and for a call placed just before this moment to be up and greeted (its first
    // `response.create` seen), so that no call is cut off before patter could greet.
    soak.phase.store(QUIESCE, Ordering::SeqCst);
    let drained = wait_until(SETTLE, || {
        soak.current_calls().iter().all(|c| {
            c.established.load(Ordering::SeqCst)
                && c.response_creates.load(Ordering::SeqCst) > 0
                && c.drained()
        })
    })
    .await;
    if !drained {
        println!("soak: agent audio or tool outputs still in flight after {SETTLE:?}");
    }

    // Stop every stream and wait for the calls to end (each slot waits for its call's
    // on_call_end and engine connection, and checks the call).
    soak.phase.store(STOP, Ordering::SeqCst);
    let stopping = Instant::now();
    let callers_done = tokio::time::timeout(SETTLE * 3, async {
        while callers.join_next().await.is_some() {}
    })
    .await
    .is_ok();
    if !callers_done {
        println!("soak: {} callers still running; aborted", callers.len());
        callers.abort_all();
        while callers.join_next().await.is_some() {}
    }
    let placed = soak.placed.load(Ordering::SeqCst);
    let established_total = soak.established.load(Ordering::SeqCst);
    let all_ended = wait_until(SETTLE, || soak.ends.load(Ordering::SeqCst) >= placed).await;
    let ends_after = stopping.elapsed();
    let engine_closed = wait_until(SETTLE, || soak.engine_live.load(Ordering::SeqCst) == 0).await;
    let health_after = health_calls(&base).await;
    let tasks_after = settled_tasks(tasks_before, Duration::from_secs(10)).await;
    let rss_after = rss_kib();

    // Shut the server down (not measured).
    let _ = shutdown_tx.send(());
    let server_stopped = matches!(
        tokio::time::timeout(SETTLE * 2, server).await,
        Ok(Ok(Ok(())))
    );
    engine_task.abort();
    let rest_requests = rest.requests().len();

    // The call-by-call comparisons, made as each call ended.
    let v = &soak.verdicts;
    let load = |a: &AtomicUsize| a.load(Ordering::SeqCst);
    let calls_checked = load(&v.calls_checked);
    let calls_losing_frames = load(&v.calls_losing_frames);
    let lost_frames = v.lost_frames.load(Ordering::SeqCst);
    let calls_losing_agent = load(&v.calls_losing_agent);
    let lost_agent = v.lost_agent.load(Ordering::SeqCst);
    let tool_mismatch = load(&v.tool_mismatch);
    let create_mismatch = load(&v.create_mismatch);
    let engine_conn_mismatch = load(&v.engine_conn_mismatch);
    let end_mismatch = load(&v.end_mismatch);
    let engine_conns = load(&soak.engine_conns);
    let frames_sent = soak.total(|c| &c.frames_sent);
    let appends = soak.total(|c| &c.appends_rx);
    let deltas = soak.total(|c| &c.deltas_sent);
    let media = soak.total(|c| &c.media_rx);
    let tools_sent = soak.total(|c| &c.tools_sent);
    let tools_ok = soak.total(|c| &c.tool_outputs_ok);
    let tools_bad = soak.total(|c| &c.tool_outputs_bad);
    let end_tools = soak.total(|c| &c.end_tool_calls);
    let ends = soak.ends.load(Ordering::SeqCst);
    let panics = PANICS.load(Ordering::SeqCst);
    let busy_pct: Vec<String> = busy_run
        .iter()
        .map(|b| format!("{:.0}%", b.as_secs_f64() * 100.0 / run_wall.as_secs_f64()))
        .collect();

    let goals = vec![
        Goal {
            name: "every call set up",
            ok: established_total == placed
                && soak.setup_failures.count() == 0
                && engine_conns == placed
                && engine_conn_mismatch == 0
                && calls_checked == placed,
            detail: format!(
                "{established_total}/{placed} established, {} setup failures; {engine_conns} engine connections, {engine_conn_mismatch} calls without exactly one; {calls_checked} calls checked",
                soak.setup_failures.count()
            ),
        },
        Goal {
            name: "no lost caller frame",
            ok: calls_losing_frames == 0 && frames_sent > 0,
            detail: format!(
                "{} sent, {} appended, {lost_frames} lost, {calls_losing_frames} calls affected",
                thousands(frames_sent),
                thousands(appends)
            ),
        },
        Goal {
            name: "no lost agent audio",
            ok: calls_losing_agent == 0 && deltas > 0,
            detail: format!(
                "{} deltas sent, {} media at Twilio, {lost_agent} lost, {calls_losing_agent} calls affected",
                thousands(deltas),
                thousands(media)
            ),
        },
        Goal {
            name: "every tool call answered",
            ok: tool_mismatch == 0 && create_mismatch == 0 && tools_bad == 0 && tools_sent > 0,
            detail: format!(
                "{} sent, {} answered right, {tools_bad} wrong, {} in on_call_end; {tool_mismatch} calls with a mismatch, {create_mismatch} with a response.create mismatch",
                thousands(tools_sent),
                thousands(tools_ok),
                thousands(end_tools)
            ),
        },
        Goal {
            name: "RSS growth after warm-up < 5 %",
            ok: growth_pct < RSS_GROWTH_GOAL_PCT,
            detail: format!("{} → {} ({growth_pct:+.2} %)", mib(rss_warm), mib(rss_end)),
        },
        Goal {
            name: "every on_call_end fired",
            ok: all_ended
                && ends == placed
                && end_mismatch == 0
                && soak.unexpected_ends.count() == 0,
            detail: format!(
                "{ends}/{placed} calls ended (the last within {:.1} s of the final stop), {end_mismatch} calls without exactly one, {} unexpected",
                ends_after.as_secs_f64(),
                soak.unexpected_ends.count()
            ),
        },
        Goal {
            name: "/health back to 0 calls",
            ok: health_after == Ok(health_before),
            detail: format!(
                "before {health_before}, during {}, after {}",
                health_during.map_or_else(|| "?".to_owned(), |c| c.to_string()),
                match &health_after {
                    Ok(c) => c.to_string(),
                    Err(e) => e.clone(),
                }
            ),
        },
        Goal {
            name: "tokio tasks back to baseline",
            ok: tasks_after <= tasks_before && engine_closed,
            detail: format!(
                "before {tasks_before}, during {tasks_during}, after {tasks_after}; engine connections left {}",
                soak.engine_live.load(Ordering::SeqCst)
            ),
        },
        Goal {
            name: "no panic",
            ok: panics == 0,
            detail: format!("{panics} panics"),
        },
        Goal {
            name: "no protocol violation",
            ok: soak.schema_violations.count() == 0
                && soak.twilio_violations.count() == 0
                && soak.engine_failures.count() == 0
                && soak.call_failures.count() == 0,
            detail: format!(
                "{} client events checked against the GA schema, {} violations; {} Twilio message violations; {} engine-side and {} call-side problems",
                thousands(soak.schema_checked.load(Ordering::Relaxed)),
                soak.schema_violations.count(),
                soak.twilio_violations.count(),
                soak.engine_failures.count(),
                soak.call_failures.count()
            ),
        },
    ];

    println!();
    println!("==================== patter soak: summary ====================");
    println!(
        "machine        {nproc} cores (nproc), {} tokio workers, {profile} build",
        tokio::runtime::Handle::current().metrics().num_workers()
    );
    println!(
        "run            {} concurrent calls × {:.1} min measured (warm-up {} s), {}, 20 ms caller frames, agent audio 1 s on / 1 s off, tool every {} s",
        opts.calls,
        run_wall.as_secs_f64() / 60.0,
        opts.warmup_secs,
        call_length(&opts),
        opts.tool_every_secs
    );
    println!(
        "calls          {placed} placed in total, {established_total} established, {ends} ended (on_call_end; {:.1} s after the final stop); {established} up at the start of the run; engine connections {engine_conns}; REST requests {rest_requests}",
        ends_after.as_secs_f64()
    );
    println!(
        "caller audio   {} frames sent, {} appended at the engine ({:.0}/s)",
        thousands(frames_sent),
        thousands(appends),
        appends as f64 / run_wall.as_secs_f64()
    );
    println!(
        "agent audio    {} deltas sent, {} media at Twilio, {} marks echoed, {} clears",
        thousands(deltas),
        thousands(media),
        thousands(soak.total(|c| &c.marks_rx)),
        thousands(soak.total(|c| &c.clears_rx))
    );
    println!(
        "tools          {} calls, {} outputs right, {tools_bad} wrong, {} recorded in on_call_end",
        thousands(tools_sent),
        thousands(tools_ok),
        thousands(end_tools)
    );
    println!(
        "latency        caller frame → engine  {}",
        LAT_CALLER.summary()
    );
    println!(
        "               agent delta → Twilio   {}",
        LAT_AGENT.summary()
    );
    println!(
        "               tool round trip        {}",
        LAT_TOOL.summary()
    );
    println!(
        "               caller 20 ms tick late {}",
        LAT_TICK.summary()
    );
    println!(
        "RSS            before calls {}, end of warm-up {} ({:.0} KiB per call), end {}, max {}, growth after warm-up {growth_pct:+.2} %; after the calls ended {}",
        mib(rss_before),
        mib(rss_warm),
        rss_warm.saturating_sub(rss_before) as f64 / opts.calls as f64,
        mib(rss_end),
        mib(rss_max),
        mib(rss_after)
    );
    if tools_after_warm > 0 {
        println!(
            "               {:.0} bytes of RSS growth per tool call answered after warm-up ({} calls)",
            (rss_end as f64 - rss_warm as f64) * 1024.0 / tools_after_warm as f64,
            thousands(tools_after_warm)
        );
    }
    println!(
        "live calls     /health before {health_before}, during {}, after {}",
        health_during.map_or_else(|| "?".to_owned(), |c| c.to_string()),
        health_after
            .as_ref()
            .map_or_else(Clone::clone, |c| c.to_string())
    );
    println!(
        "tasks          tokio num_alive_tasks before {tasks_before}, during {tasks_during}, after {tasks_after}"
    );
    println!(
        "CPU            process {:.0}% of one core over the run ({:.0}% of {nproc}); tokio workers busy {}",
        cpu_run.as_secs_f64() * 100.0 / run_wall.as_secs_f64(),
        cpu_run.as_secs_f64() * 100.0 / run_wall.as_secs_f64() / nproc.max(1) as f64,
        busy_pct.join(", ")
    );
    println!("panics         {panics}");
    println!(
        "server         stopped cleanly: {}",
        if server_stopped { "yes" } else { "no" }
    );
    for (what, notes) in [
        ("setup failures", &soak.setup_failures),
        ("call problems", &soak.call_failures),
        ("engine problems", &soak.engine_failures),
        ("schema violations", &soak.schema_violations),
        ("Twilio message violations", &soak.twilio_violations),
        ("unexpected call ends", &soak.unexpected_ends),
    ] {
        if notes.count() > 0 {
            println!("{what} ({}):", notes.count());
            for example in notes.examples() {
                println!("  {example}");
            }
        }
    }
    if v.examples.count() > 0 {
        println!("per-call mismatches ({}):", v.examples.count());
        for example in v.examples.examples() {
            println!("  {example}");
        }
    }
    println!("goals:");
    for goal in &goals {
        println!(
            "  [{}] {:<32} {}",
            if goal.ok { "PASS" } else { "FAIL" },
            goal.name,
            goal.detail
        );
    }
    let passed = goals.iter().all(|g| g.ok);
    println!(
        "result         {}",
        if passed { "PASS" } else { "FAIL (exit code 1)" }
    );
    passed
}

/// Each tokio worker's busy time so far.
fn worker_busy() -> Vec<Duration> {
    let metrics = tokio::runtime::Handle::current().metrics();
    (0..metrics.num_workers())
        .map(|w| metrics.worker_total_busy_duration(w))
        .collect()
}
