//! Whole calls in memory, for your agent's own tests (cargo feature `testing`).
//!
//! A [`TestCall`] runs your agent through the very session a phone call uses, with a
//! scripted engine in the model's place and a simulated phone in the caller's: no ports, no
//! TLS, no API key. You play both: what the model does (`model_says`, `model_calls`), and
//! what the caller does (`caller_says`, `caller_interrupts_after`, `caller_presses`,
//! `caller_hangs_up`). Your tools, hooks, prompt variables, limits and the system tools run
//! for real.
//!
//! Time is the test's: under `#[tokio::test(start_paused = true)]` a one-hour call limit or a
//! ten-second tool timeout passes in milliseconds of wall time, and agent audio plays out in
//! simulated time, so barge-in positions are exact.
//!
//! ```
//! use std::time::Duration;
//!
//! use patter::testing::TestCall;
//! use patter::{CallContext, EndReason, ToolError, json};
//!
//! /// Arguments of check_inventory.
//! #[patter::args]
//! struct CheckInventory {
//!     /// Product ID, e.g. "SKU-1234".
//!     product_id: String,
//! }
//!
//! /// Check if a product is in stock.
//! #[patter::tool]
//! async fn check_inventory(args: CheckInventory, call: &CallContext) -> Result<String, ToolError> {
//!     let store = call.parameter("store").unwrap_or("main");
//!     Ok(format!(r#"{{"in_stock":true,"store":"{store}","product_id":"{}"}}"#, args.product_id))
//! }
//!
//! #[patter::agent(
//!     system_prompt = "You are a product specialist.",
//!     first_message = "Hello! I can check stock for you.",
//!     tools(check_inventory)
//! )]
//! struct ProductSpecialist;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let mut call = TestCall::new(ProductSpecialist)
//!     .caller("+15550100")
//!     .parameter("store", "north")
//!     .start()
//!     .await;
//! call.expect_greeting("Hello! I can check stock for you.").await;
//!
//! let stock = call.model_calls("check_inventory", json!({ "product_id": "SKU-1234" })).await;
//! assert_eq!(stock.json()["store"], "north"); // the real tool ran, with the call's context
//! let bad = call.model_calls("check_inventory", json!({ "product_id": 42 })).await;
//! assert_eq!(bad.error_type(), Some("invalid_arguments"));
//!
//! call.model_says("We have it in stock.").await;
//! call.caller_interrupts_after(Duration::from_millis(300)).await; // barge-in
//! assert_eq!(call.last_truncation_ms(), Some(300));
//!
//! call.model_calls("end_call", json!({ "reason": "done" })).await;
//! let summary = call.ended().await;
//! assert!(matches!(summary.reason, EndReason::AgentHungUp { .. }));
//! # }
//! ```
//!
//! A failed expectation panics with what happened instead, event by event:
//!
//! ```text
//! expected the greeting "Hi!", but the engine was asked to say "Hello!"; the call's last events:
//!     1. call → engine: open (model gpt-realtime-2.1, 3 tools)
//!     2. call → engine: say verbatim "Hello!"
//! ```

mod builder;
mod conversation;
mod engine;
mod phone;
mod reply;
mod state;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use self::builder::TestCallBuilder;
pub use self::conversation::{
    Conversation, Judge, JudgeError, RepeatReport, Turn, TurnExpect, Verdict, repeat,
};
use self::engine::Said;
use self::phone::Sent;
pub use self::reply::{SentCommand, ToolReply};
use self::state::{Shared, State};
use crate::JsonValue;
use crate::audio::AudioFormat;
use crate::call::CallSummary;
use crate::engine::EngineSetup;

/// How long the agent takes to say one character of text: about 15 characters a second.
const SPEECH_MS_PER_CHAR: u64 = 65;
/// The length of one chunk of agent audio the scripted engine sends.
const AGENT_CHUNK_MS: u64 = 100;
/// The length of one frame of caller audio (Twilio's).
const CALLER_FRAME_MS: u64 = 20;
/// μ-law silence.
const MULAW_SILENCE: u8 = 0xff;

/// A simulated call of one agent; see the [module docs](self).
pub struct TestCall {
    shared: Arc<Shared>,
    engine: mpsc::UnboundedSender<self::engine::Frame>,
    caller: Option<mpsc::UnboundedSender<self::phone::Frame>>,
    task: Option<JoinHandle<CallSummary>>,
    shutdown: watch::Sender<bool>,
    started: Instant,
    engine_frames: u64,
    caller_frames: u64,
    next_id: u64,
    /// `Respond` commands already returned by `expect_response_request`.
    responds_seen: usize,
    expect_within: Duration,
}

/// Tells the waiters the call's task is gone, on drop: at its end, or while a panic unwinds.
struct TaskGone(Arc<Shared>);

impl Drop for TaskGone {
    fn drop(&mut self) {
        self.0.update(|s| s.task_gone = true);
    }
}

/// Why a wait ended without what it waited for.
enum Missed {
    Ended,
    Crashed,
    Timeout,
}

impl TestCall {
    // ---------------------------------------------------------------------------------
    // Waiting

    /// Waits until `check` finds what it looks for in the record.
    async fn try_wait<T>(&self, mut check: impl FnMut(&State) -> Option<T>) -> Result<T, Missed> {
        let deadline = Instant::now() + self.expect_within;
        loop {
            let changed = self.shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let state = self.shared.lock();
                if let Some(found) = check(&state) {
                    return Ok(found);
                }
                if state.summary.is_some() {
                    return Err(Missed::Ended);
                }
                if state.task_gone {
                    return Err(Missed::Crashed);
                }
            }
            tokio::select! {
                () = &mut changed => {}
                () = tokio::time::sleep_until(deadline) => return Err(Missed::Timeout),
            }
        }
    }

    /// Like [`TestCall::try_wait`], failing the test with the events if it misses.
    async fn wait<T>(&self, what: &str, check: impl FnMut(&State) -> Option<T>) -> T {
        match self.try_wait(check).await {
            Ok(found) => found,
            Err(missed) => self.fail(what, missed),
        }
    }

    fn fail(&self, what: &str, missed: Missed) -> ! {
        let why = match missed {
            Missed::Ended => "the call ended first".to_owned(),
            Missed::Crashed => "the call's task panicked (its message is above)".to_owned(),
            Missed::Timeout => format!(
                "it did not happen within {:?} of test time",
                self.expect_within
            ),
        };
        panic!(
            "expected {what}, but {why}; the call's last events:\n{}",
            self.shared.recent_events()
        );
    }

    /// Waits until the call has handled every frame sent so far (or has ended).
    async fn handled(&self) {
        let (engine, caller) = (self.engine_frames, self.caller_frames);
        let waited = self
            .try_wait(|s| (s.engine_handled >= engine && s.carrier_handled >= caller).then_some(()))
            .await;
        if let Err(missed @ (Missed::Timeout | Missed::Crashed)) = waited {
            self.fail("the call to handle what was sent", missed);
        }
    }

    /// Lets the call handle everything sent so far. Under `start_paused`, tasks it started
    /// (tools) also run until they wait on something; in real time they get a millisecond.
    pub async fn settle(&mut self) {
        self.handled().await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }

    /// Lets `time` pass (test time under `start_paused`): timers fire, agent audio plays.
    /// The caller stays silent and sends nothing meanwhile.
    pub async fn advance(&mut self, time: Duration) {
        tokio::time::sleep(time).await;
    }

    // ---------------------------------------------------------------------------------
    // The model's side

    fn new_id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}_{}", self.next_id)
    }

    fn say(&mut self, said: Said, event: String) {
        self.engine_frames += 1;
        self.shared.event(format!("engine → call: {event}"));
        let _ = self.engine.send((self.engine_frames, said));
    }

    fn engine_format(&self) -> AudioFormat {
        self.shared
            .lock()
            .setup
            .as_ref()
            .map_or(AudioFormat::Pcmu, |s| s.audio)
    }

    /// Expects the first message, word for word, as the first thing the engine is asked to
    /// say.
    pub async fn expect_greeting(&mut self, text: &str) {
        let said = self
            .wait(&format!("the greeting {text:?}"), |s| {
                s.commands.iter().find_map(|c| match c {
                    SentCommand::SayVerbatim { text } => Some(text.clone()),
                    _ => None,
                })
            })
            .await;
        if said != text {
            panic!(
                "expected the greeting {text:?}, but the engine was asked to say {said:?}; the \
                 call's last events:\n{}",
                self.shared.recent_events()
            );
        }
    }

    /// What the engine was asked to say word for word first, if anything yet.
    pub fn greeting(&self) -> Option<String> {
        self.shared.lock().commands.iter().find_map(|c| match c {
            SentCommand::SayVerbatim { text } => Some(text.clone()),
            _ => None,
        })
    }

    /// The model says `text`: a response with audio (as long as saying it takes, about 15
    /// characters a second, in 100 ms chunks) and its transcript. Returns once the call has
    /// relayed it; the audio then plays out in test time.
    pub async fn model_says(&mut self, text: &str) {
        // The caller's line streams continuously; its clock is what "heard" is measured by.
        self.caller_frame(Sent::Media {
            audio: caller_silence(),
            timestamp_ms: self.now_ms(),
        });
        self.handled().await;
        let response = self.new_id("resp");
        let item = self.new_id("item");
        self.say(
            Said::ResponseStarted(response.clone()),
            format!("response {response} started"),
        );
        let total_ms = (text.chars().count() as u64 * SPEECH_MS_PER_CHAR).max(AGENT_CHUNK_MS);
        let format = self.engine_format();
        let chunks = total_ms.div_ceil(AGENT_CHUNK_MS);
        let chunk = agent_audio(format, AGENT_CHUNK_MS);
        for _ in 0..chunks {
            self.engine_frames += 1;
            let _ = self.engine.send((
                self.engine_frames,
                Said::Audio {
                    response_id: response.clone(),
                    item_id: item.clone(),
                    audio: chunk.clone(),
                },
            ));
        }
        self.shared.event(format!(
            "engine → call: {} ms of agent audio ({item})",
            chunks * AGENT_CHUNK_MS
        ));
        self.say(
            Said::AgentTranscript(text.to_owned()),
            format!("the agent said {text:?}"),
        );
        self.say(
            Said::ResponseDone(response.clone()),
            format!("response {response} done"),
        );
        self.handled().await;
    }

    /// The model calls tool `name` with `arguments`, in a response of its own; returns what
    /// the model got back. Waits for the result and the go-ahead that follows it, or for the
    /// call's end if the tool ended it.
    pub async fn model_calls(&mut self, name: &str, arguments: JsonValue) -> ToolReply {
        let arguments = arguments.to_string();
        self.calls_in_one_response(&[(name, arguments.as_str())])
            .await
            .remove(0)
    }

    /// Like [`model_calls`](Self::model_calls), with the arguments as the model's raw text
    /// (which need not be JSON).
    pub async fn model_calls_raw(&mut self, name: &str, arguments: &str) -> ToolReply {
        self.calls_in_one_response(&[(name, arguments)])
            .await
            .remove(0)
    }

    /// The model calls several tools in one response; the replies are in the same order.
    pub async fn model_calls_together(&mut self, calls: &[(&str, JsonValue)]) -> Vec<ToolReply> {
        let texts: Vec<(&str, String)> = calls.iter().map(|(n, a)| (*n, a.to_string())).collect();
        let calls: Vec<(&str, &str)> = texts.iter().map(|(n, a)| (*n, a.as_str())).collect();
        self.calls_in_one_response(&calls).await
    }

    async fn calls_in_one_response(&mut self, calls: &[(&str, &str)]) -> Vec<ToolReply> {
        let response = self.new_id("resp");
        self.say(
            Said::ResponseStarted(response.clone()),
            format!("response {response} started"),
        );
        let mut ids = Vec::new();
        for (name, arguments) in calls {
            let call_id = self.new_id("call");
            self.say(
                Said::FunctionCall {
                    response_id: response.clone(),
                    call_id: call_id.clone(),
                    name: (*name).to_owned(),
                    arguments: (*arguments).to_owned(),
                },
                format!("the model calls {name} {arguments} ({call_id})"),
            );
            ids.push(call_id);
        }
        self.say(
            Said::ResponseDone(response.clone()),
            format!("response {response} done"),
        );
        let what = format!(
            "the result of {}",
            calls
                .iter()
                .zip(&ids)
                .map(|((name, _), id)| format!("{name} ({id})"))
                .collect::<Vec<_>>()
                .join(" and ")
        );
        let outputs = |s: &State| -> Vec<Option<(usize, String)>> {
            ids.iter()
                .map(|id| {
                    s.commands.iter().enumerate().find_map(|(i, c)| match c {
                        SentCommand::ToolResult { call_id, output } if call_id == id => {
                            Some((i, output.clone()))
                        }
                        _ => None,
                    })
                })
                .collect()
        };
        // Every result, then the one go-ahead after the last of them; or the call's end.
        let answered = self
            .try_wait(|s| {
                let found = outputs(s);
                let last = found.iter().flatten().map(|(i, _)| *i).max();
                let all = found.iter().all(Option::is_some);
                let continued = last.is_some_and(|last| {
                    s.commands[last + 1..].contains(&SentCommand::ContinueAfterTools)
                });
                (all && continued).then_some(())
            })
            .await;
        if let Err(missed @ (Missed::Timeout | Missed::Crashed)) = answered {
            self.fail(&what, missed);
        }
        let state = self.shared.lock();
        let found = outputs(&state);
        let continued = answered.is_ok();
        calls
            .iter()
            .zip(&ids)
            .zip(found)
            .map(|(((name, _), id), output)| {
                ToolReply::new(name, id, output.map(|(_, o)| o), continued)
            })
            .collect()
    }

    /// The engine reports an error it can recover from; the call goes on.
    pub async fn engine_error(&mut self, code: &str, message: &str) {
        self.engine_reports(code, message, false).await;
    }

    /// The engine reports an error it cannot recover from; the call ends.
    pub async fn engine_fails(&mut self, code: &str, message: &str) {
        self.engine_reports(code, message, true).await;
    }

    async fn engine_reports(&mut self, code: &str, message: &str, fatal: bool) {
        self.say(
            Said::Error {
                code: code.to_owned(),
                message: message.to_owned(),
                fatal,
            },
            format!(
                "error {code}: {message}{}",
                if fatal { " (fatal)" } else { "" }
            ),
        );
        self.handled().await;
    }

    /// The engine's connection drops.
    pub async fn engine_drops(&mut self) {
        self.say(Said::Drop, "the connection drops".to_owned());
        self.handled().await;
    }

    /// The engine sends something that is not an event.
    pub async fn engine_sends_garbage(&mut self) {
        self.say(Said::Garbage, "a malformed event".to_owned());
        self.handled().await;
    }

    /// Expects the engine to be asked for a response with instructions of its own (the
    /// goodbye at the time limit or at shutdown), and returns them. Each call returns the
    /// next such request.
    pub async fn expect_response_request(&mut self) -> String {
        let seen = self.responds_seen;
        let instructions = self
            .wait("a request to respond with instructions", |s| {
                s.commands
                    .iter()
                    .filter_map(|c| match c {
                        SentCommand::Respond { instructions } => Some(instructions.clone()),
                        _ => None,
                    })
                    .nth(seen)
            })
            .await;
        self.responds_seen += 1;
        instructions
    }

    // ---------------------------------------------------------------------------------
    // The caller's side

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn caller_frame(&mut self, sent: Sent) {
        self.caller_frames += 1;
        if let Some(caller) = &self.caller {
            let _ = caller.send((self.caller_frames, sent));
        }
    }

    /// Streams `time` of caller audio (`audio` per 20 ms frame) in real (test) time.
    async fn stream_caller(&mut self, time: Duration, audio: &str) {
        let frames = time.as_millis() as u64 / CALLER_FRAME_MS;
        for _ in 0..frames {
            tokio::time::sleep(Duration::from_millis(CALLER_FRAME_MS)).await;
            self.caller_frame(Sent::Media {
                audio: audio.to_owned(),
                timestamp_ms: self.now_ms(),
            });
        }
        // What the engine says next comes after all of this, as it would on the wire.
        self.handled().await;
    }

    /// The caller says `text`: the engine hears speech start (the agent stops), the caller's
    /// audio streams for as long as saying it takes, and the engine transcribes it.
    pub async fn caller_says(&mut self, text: &str) {
        self.say(
            Said::SpeechStarted,
            "the caller started speaking".to_owned(),
        );
        self.handled().await;
        let time = Duration::from_millis(text.chars().count() as u64 * SPEECH_MS_PER_CHAR);
        self.shared
            .event(format!("caller → call: {} ms of speech", time.as_millis()));
        self.stream_caller(time, &caller_silence()).await;
        self.say(
            Said::SpeechStopped,
            "the caller stopped speaking".to_owned(),
        );
        self.say(
            Said::UserTranscript(text.to_owned()),
            format!("the caller said {text:?}"),
        );
        self.handled().await;
    }

    /// The caller's line carries `mulaw` (G.711 μ-law 8 kHz), in 20 ms frames.
    pub async fn caller_sends_audio(&mut self, mulaw: &[u8]) {
        self.shared
            .event(format!("caller → call: {} bytes of audio", mulaw.len()));
        let frame_bytes = (CALLER_FRAME_MS * 8) as usize;
        for chunk in mulaw.chunks(frame_bytes) {
            self.caller_frame(Sent::Media {
                audio: base64::engine::general_purpose::STANDARD.encode(chunk),
                timestamp_ms: self.now_ms(),
            });
            tokio::time::sleep(Duration::from_millis(CALLER_FRAME_MS)).await;
        }
        self.handled().await;
    }

    /// `after` passes with the caller's line streaming silence, then the caller starts to
    /// speak over the agent: the call clears unplayed audio and truncates what was not
    /// heard (see [`last_truncation_ms`](Self::last_truncation_ms)).
    pub async fn caller_interrupts_after(&mut self, after: Duration) {
        self.shared.event(format!(
            "caller → call: {} ms of silence",
            after.as_millis()
        ));
        self.stream_caller(after, &caller_silence()).await;
        self.say(
            Said::SpeechStarted,
            "the caller started speaking".to_owned(),
        );
        self.handled().await;
    }

    /// The caller presses `keys` on the keypad (`0`-`9`, `*`, `#`, `A`-`D`).
    ///
    /// # Panics
    /// On any other character.
    pub async fn caller_presses(&mut self, keys: &str) {
        for key in keys.chars() {
            assert!(
                key.is_ascii_digit() || matches!(key, '*' | '#' | 'A'..='D'),
                "{key:?} is not a keypad key"
            );
            self.shared.event(format!("caller → call: pressed {key}"));
            self.caller_frame(Sent::Dtmf(key));
        }
        self.handled().await;
    }

    /// The caller hangs up: the carrier stops the media.
    pub async fn caller_hangs_up(&mut self) {
        self.shared.event("caller → call: hung up (stop)");
        self.caller_frame(Sent::Stop);
        self.handled().await;
    }

    /// The caller's connection closes without a stop.
    pub async fn caller_disconnects(&mut self) {
        self.shared.event("caller → call: connection closed");
        self.caller = None;
        self.handled().await;
    }

    /// The caller's side sends something that is not a frame.
    pub async fn caller_sends_garbage(&mut self) {
        self.shared.event("caller → call: a malformed frame");
        self.caller_frame(Sent::Garbage);
        self.handled().await;
    }

    /// Waits until every mark sent has been played (or flushed).
    pub async fn wait_until_played(&mut self) {
        self.settle().await;
        self.wait("the agent's audio to finish playing", |s| {
            (s.marks_unplayed == 0).then_some(())
        })
        .await;
    }

    // ---------------------------------------------------------------------------------
    // The server's side

    /// The server starts shutting down: the agent says goodbye and the call ends.
    pub async fn server_shuts_down(&mut self) {
        self.shared.event("server: shutting down");
        self.shutdown.send_replace(true);
        self.settle().await;
    }

    /// Waits (up to [`expect_within`](TestCallBuilder::expect_within) of test time) for the
    /// call to end and returns its summary. A call ending at its time limit ends that long
    /// after it started: [`advance`](Self::advance) first.
    ///
    /// # Panics
    /// If the call does not end in time, or its task panicked.
    pub async fn ended(&mut self) -> CallSummary {
        if let Some(task) = &mut self.task {
            match tokio::time::timeout(self.expect_within, task).await {
                Ok(Ok(summary)) => {
                    self.task = None;
                    return summary;
                }
                Ok(Err(e)) => panic!(
                    "the call failed: {e}; its last events:\n{}",
                    self.shared.recent_events()
                ),
                Err(_) => self.fail("the call to end", Missed::Timeout),
            }
        }
        match self.shared.lock().summary.clone() {
            Some(summary) => summary,
            None => panic!("the call's task is gone"),
        }
    }

    // ---------------------------------------------------------------------------------
    // What happened

    /// Whether the call has ended.
    pub fn is_ended(&self) -> bool {
        self.shared.lock().summary.is_some()
    }

    /// What the engine was opened with: the model, the prompt with its variables filled,
    /// the voice, the audio format, the tools and the first message.
    pub fn engine_setup(&self) -> EngineSetup {
        match self.shared.lock().setup.clone() {
            Some(setup) => setup,
            None => panic!("the engine was not opened"),
        }
    }

    /// Every command the call sent the engine, in order.
    pub fn engine_commands(&self) -> Vec<SentCommand> {
        self.shared.lock().commands.clone()
    }

    /// How many times the model was told to go on after its tools.
    pub fn continues(&self) -> usize {
        self.shared
            .lock()
            .commands
            .iter()
            .filter(|c| **c == SentCommand::ContinueAfterTools)
            .count()
    }

    /// Bytes of caller audio the engine received.
    pub fn caller_audio_bytes(&self) -> usize {
        self.shared
            .lock()
            .commands
            .iter()
            .map(|c| match c {
                SentCommand::AppendAudio { bytes } => *bytes,
                _ => 0,
            })
            .sum()
    }

    /// Where the agent's last item was cut after a barge-in: how much of it the caller
    /// heard, in ms. `None` if nothing was ever truncated.
    pub fn last_truncation_ms(&self) -> Option<u64> {
        self.shared
            .lock()
            .commands
            .iter()
            .rev()
            .find_map(|c| match c {
                SentCommand::Truncate { heard_ms, .. } => Some(*heard_ms),
                _ => None,
            })
    }

    /// Agent audio the caller's phone received, in ms.
    pub fn agent_audio_ms(&self) -> u64 {
        self.shared.lock().agent_audio_bytes as u64 / 8
    }

    /// How many times the phone was told to drop unplayed audio.
    pub fn clears(&self) -> usize {
        self.shared.lock().clears
    }

    /// How many times the call was hung up through call control.
    pub fn hang_ups(&self) -> usize {
        self.shared.lock().hang_ups
    }

    /// The numbers the call was transferred to, in order.
    pub fn transfers(&self) -> Vec<String> {
        self.shared.lock().transfers.clone()
    }

    /// Everything that happened, described, in order.
    pub fn events(&self) -> Vec<String> {
        self.shared.lock().events.clone()
    }
}

impl Drop for TestCall {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl std::fmt::Debug for TestCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCall")
            .field("events", &self.shared.lock().events.len())
            .field("ended", &self.is_ended())
            .finish_non_exhaustive()
    }
}

/// A 20 ms frame of caller silence, base64 μ-law.
fn caller_silence() -> String {
    base64::engine::general_purpose::STANDARD
        .encode([MULAW_SILENCE; (CALLER_FRAME_MS * 8) as usize])
}

/// `ms` of agent audio in the engine's format, base64.
fn agent_audio(format: AudioFormat, ms: u64) -> String {
    let bytes = match format {
        AudioFormat::Pcmu => vec![MULAW_SILENCE; (ms * 8) as usize],
        AudioFormat::Pcm24k => vec![0u8; (ms * 48) as usize],
    };
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
