//! Calls that outlive their engine session: what a new session is told of the conversation
//! (the history it replays), and how a stalled engine is recognised.
//!
//! **History.** The transcript is kept for the summary anyway; the tool calls are kept here,
//! stamped with the same clock, so a new session gets both in the order they happened:
//! the caller's and the agent's words as messages, each tool call with its result, and the
//! calls still running without one (their results go to the new session when they come).
//! The replay is the most recent part that fits [`Limits::reconnect_history_items`] and
//! [`Limits::reconnect_history_bytes`]; a result is never replayed without its call.
//!
//! **Stalls.** An engine owes something when a response is running, one was asked for, the
//! caller stopped speaking and nothing answered yet, or its configuration was sent and not
//! confirmed. One that owes something and has sent nothing for [`Limits::engine_stall`] is
//! stalled. So is one that has sent nothing that long while the caller was talking (it
//! did not notice the speech) or had stopped (it did not notice the end). The caller's
//! voice is only measured once the engine has been quiet a while, so a chatty engine costs
//! the audio path nothing but one counter.
//!
//! [`Limits::reconnect_history_items`]: crate::Limits::reconnect_history_items
//! [`Limits::reconnect_history_bytes`]: crate::Limits::reconnect_history_bytes
//! [`Limits::engine_stall`]: crate::Limits::engine_stall

use std::time::Duration;

use tokio::time::Instant;

use super::{Role, TranscriptEntry};
use crate::engine::HistoryItem;

/// What the new session is told on top of the agent's instructions.
pub(crate) const RESUMED_NOTE: &str = "\n\nThe call was interrupted for a moment by a technical \
     problem and has now resumed on a new connection; the conversation so far is in your \
     context. Continue it from where it stopped. Do not greet the caller again, do not \
     introduce yourself again and do not repeat what you already said, unless the caller \
     asks.";

/// A tool call, for the replay.
#[derive(Debug)]
struct ToolItem {
    at: Duration,
    call_id: String,
    name: String,
    arguments: String,
    output: Option<String>,
}

/// The tool calls of a call, stamped with the transcript's clock.
#[derive(Debug, Default)]
pub(crate) struct History {
    tools: Vec<ToolItem>,
    /// Where a caller's transcript entry (by index) belongs: when they stopped speaking.
    caller_at: Vec<(usize, Duration)>,
}

impl History {
    /// The caller's transcript entry number `index` was said by `at` (when the engine heard
    /// them stop), whenever its transcript came.
    pub(crate) fn caller_said(&mut self, index: usize, at: Duration) {
        self.caller_at.push((index, at));
    }

    /// The model called a tool at `at` (since the call started).
    pub(crate) fn tool_called(&mut self, at: Duration, call_id: &str, name: &str, args: &str) {
        self.tools.push(ToolItem {
            at,
            call_id: call_id.to_owned(),
            name: name.to_owned(),
            arguments: args.to_owned(),
            output: None,
        });
    }

    /// The tool's result went to the model.
    pub(crate) fn tool_answered(&mut self, call_id: &str, output: &str) {
        if let Some(item) = self.tools.iter_mut().rev().find(|t| t.call_id == call_id) {
            item.output = Some(output.to_owned());
        }
    }

    /// The conversation to replay: the transcript and the tool calls in the order they
    /// happened, the most recent part within `max_items` and `max_bytes`. A call still
    /// running is always in it (its result will be sent to the new session); a result is
    /// never without its call.
    pub(crate) fn replay(
        &self,
        transcript: &[TranscriptEntry],
        max_items: usize,
        max_bytes: usize,
    ) -> Vec<HistoryItem> {
        // Each entry with its time; a tool call and its result stay together (one entry).
        let said_at = |index: usize| {
            self.caller_at
                .iter()
                .find(|(i, _)| *i == index)
                .map(|(_, at)| *at)
        };
        let mut entries: Vec<(Duration, Vec<HistoryItem>)> = transcript
            .iter()
            .enumerate()
            .filter(|(_, e)| !e.text.is_empty())
            .map(|(index, e)| {
                let (at, item) = match e.role {
                    Role::Caller => (
                        said_at(index).unwrap_or(e.at),
                        HistoryItem::Caller(e.text.clone()),
                    ),
                    Role::Agent => (e.at, HistoryItem::Agent(e.text.clone())),
                };
                (at, vec![item])
            })
            .collect();
        for tool in &self.tools {
            let mut items = vec![HistoryItem::ToolCall {
                call_id: tool.call_id.clone(),
                name: tool.name.clone(),
                arguments: tool.arguments.clone(),
            }];
            if let Some(output) = &tool.output {
                items.push(HistoryItem::ToolOutput {
                    call_id: tool.call_id.clone(),
                    output: output.clone(),
                });
            }
            entries.push((tool.at, items));
        }
        // Stable: a transcript entry and a tool call at the same instant keep their order.
        entries.sort_by_key(|(at, _)| *at);
        let running = |items: &[HistoryItem]| matches!(items, [HistoryItem::ToolCall { .. }]);
        let mut kept = Vec::new();
        let (mut count, mut bytes) = (0usize, 0usize);
        let mut full = false;
        for (_, items) in entries.into_iter().rev() {
            let size: usize = items.iter().map(HistoryItem::size).sum();
            // The most recent stretch, without gaps: once one entry does not fit, only
            // running calls are added.
            full = full || count + items.len() > max_items || bytes + size > max_bytes;
            if !full || running(&items) {
                count += items.len();
                bytes += size;
                kept.push(items);
            }
        }
        kept.into_iter().rev().flatten().collect()
    }
}

/// Why the engine was replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReconnectCause {
    /// The socket closed or failed.
    Lost,
    /// The engine stopped sending while it owed an answer (see the module documentation).
    Stalled,
}

impl ReconnectCause {
    /// A short, stable name (`lost`, `stalled`), for logs and metrics.
    pub fn kind(self) -> &'static str {
        match self {
            ReconnectCause::Lost => "lost",
            ReconnectCause::Stalled => "stalled",
        }
    }
}

/// One replacement of the engine session, in [`CallSummary::reconnects`](super::CallSummary::reconnects).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reconnect {
    /// When the old session was given up, since the call started.
    pub at: Duration,
    /// From then until the new session was open and configured with the conversation.
    pub took: Duration,
    /// Why.
    pub cause: ReconnectCause,
    /// Connection attempts it took (1 when the first succeeded).
    pub attempts: u32,
    /// Conversation items replayed.
    pub replayed: usize,
}

/// What the engine owes, as the session sees it at a check.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Owed {
    /// A response is running, was asked for, or the caller stopped and was not answered,
    /// or the configuration is not yet confirmed.
    pub(crate) answer: bool,
    /// The engine said the caller started speaking and has not said they stopped.
    pub(crate) hearing: bool,
}

/// How often the session looks for a stall.
pub(crate) const STALL_CHECK_EVERY: Duration = Duration::from_millis(200);
/// Quiet this long, the engine's silence starts being compared with the caller's voice.
const LISTEN_AFTER: Duration = Duration::from_millis(500);
/// Silence that ends a stretch of the caller's speech (noise now and then does not add up).
const SPEECH_BREAK: Duration = Duration::from_millis(300);
const FRAME: Duration = Duration::from_millis(20);

/// Watches for a stalled engine; see the module documentation.
#[derive(Debug)]
pub(crate) struct StallWatch {
    after: Duration,
    missed_speech: Duration,
    missed_silence: Duration,
    frames: u64,
    seen: u64,
    quiet_since: Instant,
    listening: bool,
    /// The caller's current stretch of speech, and the silence since they last spoke.
    voiced: Duration,
    silent_run: Duration,
    /// The caller spoke since the engine was last heard from.
    spoke: bool,
}

impl StallWatch {
    /// The watch of [`Limits::engine_stall`], [`Limits::engine_missed_speech`] and
    /// [`Limits::engine_missed_silence`].
    ///
    /// [`Limits::engine_stall`]: crate::Limits::engine_stall
    /// [`Limits::engine_missed_speech`]: crate::Limits::engine_missed_speech
    /// [`Limits::engine_missed_silence`]: crate::Limits::engine_missed_silence
    pub(crate) fn new(limits: &crate::Limits, now: Instant) -> Self {
        StallWatch {
            after: limits.engine_stall,
            missed_speech: limits.engine_missed_speech,
            missed_silence: limits.engine_missed_silence,
            frames: 0,
            seen: 0,
            quiet_since: now,
            listening: false,
            voiced: Duration::ZERO,
            silent_run: Duration::ZERO,
            spoke: false,
        }
    }

    /// A frame came from the engine (called for every frame: one addition).
    pub(crate) fn engine_frame(&mut self) {
        self.frames = self.frames.wrapping_add(1);
    }

    /// Whether the caller's frames are being measured (the engine has been quiet a while).
    pub(crate) fn listening(&self) -> bool {
        self.listening
    }

    /// A 20 ms frame of the caller, voiced or not (only called while [`Self::listening`]).
    pub(crate) fn caller_frame(&mut self, voiced: bool) {
        if voiced {
            if self.silent_run >= SPEECH_BREAK {
                self.voiced = Duration::ZERO;
            }
            self.voiced += FRAME;
            self.spoke = true;
            self.silent_run = Duration::ZERO;
        } else {
            self.silent_run += FRAME;
        }
    }

    /// A new engine session: its quiet is counted from now.
    pub(crate) fn restart(&mut self, now: Instant) {
        self.seen = self.frames;
        self.quiet_since = now;
        self.listening = false;
        self.voiced = Duration::ZERO;
        self.silent_run = Duration::ZERO;
        self.spoke = false;
    }

    /// The periodic check: `true` if the engine is stalled.
    pub(crate) fn check(&mut self, now: Instant, owed: Owed) -> bool {
        if self.frames != self.seen {
            self.restart(now);
            return false;
        }
        let quiet = now.saturating_duration_since(self.quiet_since);
        self.listening = quiet >= LISTEN_AFTER;
        if quiet < self.after {
            return false;
        }
        owed.answer
            || (!owed.hearing
                && self.voiced >= self.missed_speech
                && self.silent_run < SPEECH_BREAK)
            || (owed.hearing && self.spoke && self.silent_run >= self.missed_silence)
    }
}

/// Whether a 20 ms frame of μ-law (base64) sounds like speech: its mean level above about
/// −36 dBFS, well over line noise and well under speech.
pub(crate) fn is_voiced(base64_mulaw: &str) -> bool {
    use base64::Engine as _;
    let mut bytes = [0u8; 256];
    let Ok(n) = base64::engine::general_purpose::STANDARD.decode_slice(base64_mulaw, &mut bytes)
    else {
        return false;
    };
    if n == 0 {
        return false;
    }
    let total: u64 = bytes[..n]
        .iter()
        .map(|&b| u64::from(crate::audio::codec::mulaw_decode(b).unsigned_abs()))
        .sum();
    total / n as u64 > 500
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default limits, with a 2 s stall.
    fn two_seconds() -> crate::Limits {
        crate::Limits {
            engine_stall: Duration::from_secs(2),
            ..crate::Limits::default()
        }
    }

    fn said(role: Role, text: &str, ms: u64) -> TranscriptEntry {
        TranscriptEntry {
            role,
            text: text.into(),
            at: Duration::from_millis(ms),
        }
    }

    #[test]
    fn the_replay_interleaves_words_and_tools_and_keeps_the_latest_that_fit() {
        let transcript = [
            said(Role::Agent, "Hello!", 0),
            said(Role::Caller, "Is SKU-1 in stock?", 1000),
            said(Role::Agent, "It is.", 3000),
            said(Role::Caller, "And SKU-2?", 4000),
        ];
        let mut history = History::default();
        history.tool_called(Duration::from_millis(2000), "c1", "check", r#"{"id":1}"#);
        history.tool_answered("c1", r#"{"ok":true}"#);
        history.tool_called(Duration::from_millis(5000), "c2", "check", r#"{"id":2}"#);
        let all = history.replay(&transcript, 100, 1 << 20);
        assert_eq!(
            all,
            [
                HistoryItem::Agent("Hello!".into()),
                HistoryItem::Caller("Is SKU-1 in stock?".into()),
                HistoryItem::ToolCall {
                    call_id: "c1".into(),
                    name: "check".into(),
                    arguments: r#"{"id":1}"#.into()
                },
                HistoryItem::ToolOutput {
                    call_id: "c1".into(),
                    output: r#"{"ok":true}"#.into()
                },
                HistoryItem::Agent("It is.".into()),
                HistoryItem::Caller("And SKU-2?".into()),
                HistoryItem::ToolCall {
                    call_id: "c2".into(),
                    name: "check".into(),
                    arguments: r#"{"id":2}"#.into()
                },
            ]
        );
        // Three items: the running call, the words before it; the answered call and its
        // result would make four, so they go with everything older.
        let latest = history.replay(&transcript, 3, 1 << 20);
        assert_eq!(latest.len(), 3, "{latest:?}");
        assert_eq!(latest[0], HistoryItem::Agent("It is.".into()));
        // No room at all: the running call is still there, alone.
        let none = history.replay(&transcript, 0, 0);
        assert_eq!(none.len(), 1);
        assert!(matches!(&none[0], HistoryItem::ToolCall { call_id, .. } if call_id == "c2"));
    }

    #[test]
    fn an_engine_owing_an_answer_stalls_after_the_limit_and_any_frame_resets_it() {
        let start = Instant::now();
        let mut watch = StallWatch::new(&two_seconds(), start);
        let owed = Owed {
            answer: true,
            hearing: false,
        };
        assert!(!watch.check(start + Duration::from_millis(1900), owed));
        watch.engine_frame();
        assert!(
            !watch.check(start + Duration::from_millis(2100), owed),
            "a frame came"
        );
        assert!(!watch.check(start + Duration::from_millis(4000), owed));
        assert!(watch.check(start + Duration::from_millis(4100), owed));
        // Owing nothing, a quiet engine is fine.
        let mut idle = StallWatch::new(&two_seconds(), start);
        assert!(!idle.check(start + Duration::from_secs(60), Owed::default()));
    }

    #[test]
    fn speech_the_engine_did_not_notice_is_a_stall() {
        let start = Instant::now();
        let mut watch = StallWatch::new(&two_seconds(), start);
        assert!(!watch.check(start + Duration::from_millis(600), Owed::default()));
        assert!(watch.listening());
        for _ in 0..60 {
            watch.caller_frame(true);
        }
        assert!(watch.check(start + Duration::from_millis(2000), Owed::default()));
        // Hearing the caller: a long monologue is not a stall, but its unnoticed end is.
        let mut hearing = StallWatch::new(&two_seconds(), start);
        let owed = Owed {
            answer: false,
            hearing: true,
        };
        assert!(!hearing.check(start + Duration::from_millis(600), owed));
        for _ in 0..100 {
            hearing.caller_frame(true);
        }
        assert!(!hearing.check(start + Duration::from_millis(2600), owed));
        for _ in 0..75 {
            hearing.caller_frame(false);
        }
        assert!(
            !hearing.check(start + Duration::from_millis(4100), owed),
            "1.5 s of silence: a detector may still be waiting for the turn's end"
        );
        for _ in 0..450 {
            hearing.caller_frame(false);
        }
        assert!(hearing.check(start + Duration::from_millis(14_000), owed));
    }

    #[test]
    fn scattered_noise_is_not_speech() {
        let start = Instant::now();
        let mut watch = StallWatch::new(&two_seconds(), start);
        assert!(!watch.check(start + Duration::from_millis(600), Owed::default()));
        // A loud frame now and then, for long: never a second of speech in a row.
        for _ in 0..40 {
            watch.caller_frame(true);
            for _ in 0..20 {
                watch.caller_frame(false);
            }
        }
        assert!(!watch.check(start + Duration::from_secs(20), Owed::default()));
    }

    #[test]
    fn the_callers_words_are_replayed_where_they_were_said_not_where_their_transcript_came() {
        // The transcript of the caller's words came after the answer had started.
        let transcript = [
            said(Role::Agent, "Hello!", 0),
            said(Role::Agent, "Let me book that.", 2000),
            said(Role::Caller, "Book me for 3 pm.", 2500),
        ];
        let mut history = History::default();
        history.caller_said(2, Duration::from_millis(1800));
        history.tool_called(Duration::from_millis(2100), "c1", "book", "{}");
        let replay = history.replay(&transcript, 100, 1 << 20);
        assert_eq!(replay[1], HistoryItem::Caller("Book me for 3 pm.".into()));
        assert_eq!(replay[2], HistoryItem::Agent("Let me book that.".into()));
        assert!(matches!(&replay[3], HistoryItem::ToolCall { name, .. } if name == "book"));
    }

    #[test]
    fn voice_is_told_from_silence() {
        use base64::Engine as _;
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        let silence = b64(&[0xFF; 160]);
        let tone: Vec<u8> = (0..160)
            .map(|i| {
                let s = (f64::from(i) * 0.3).sin() * 8000.0;
                crate::audio::codec::mulaw_encode(s as i16)
            })
            .collect();
        assert!(!is_voiced(&silence));
        assert!(is_voiced(&b64(&tone)));
        assert!(!is_voiced("not base64!"));
    }
}
