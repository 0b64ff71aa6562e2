//! What a call measures, from the wire. Per turn ([`TurnMetrics`]): the time the caller
//! waited, from the end of their speech to the agent's first audio sent to the carrier and
//! to the carrier's confirmation that it played (the mark's echo); the engine's own times to
//! first audio and text; each tool call; whether the answer was cut off, and how much was
//! heard. Per call ([`CallMetrics`]): the turns, percentiles, frames each way, barge-ins,
//! the engine's usage and the cost.
//!
//! [`TurnClock`] is a pure state machine over instants handed in by the session, so what it
//! measures is what the session saw, and its rules are tested without a call.

use std::time::Duration;

use tokio::time::Instant;

use super::cost::Cost;
use crate::engine::Usage;

/// One tool call's timing.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ToolTiming {
    /// The tool.
    pub name: String,
    /// From the model's call to the result.
    pub duration: Duration,
    /// `ok`, or the error's kind (`invalid_arguments`, `timeout`, `tool_error`, …).
    pub outcome: &'static str,
}

/// The timings of one turn: from the end of the caller's words (or from patter asking for a
/// response: the greeting, keys, a goodbye) to the agent's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TurnMetrics {
    /// The turn's number, from 1.
    pub index: u32,
    /// Whether the caller's words opened it (otherwise patter asked for the response).
    pub by_caller: bool,
    /// What the caller waited: from the engine hearing them stop to the agent's first
    /// audio sent to the carrier. Caller turns only.
    pub response_time: Option<Duration>,
    /// From the same start to the carrier confirming that first audio played.
    pub played_after: Option<Duration>,
    /// From the turn's start to the engine's first audio.
    pub first_audio: Option<Duration>,
    /// From the turn's start to the first text of the answer (its transcript, or the text
    /// in text conversations).
    pub first_text: Option<Duration>,
    /// From the turn's start until the agent was done.
    pub duration: Duration,
    /// Tool calls in the turn.
    pub tool_calls: u32,
    /// Each tool call's timing, in the order they finished.
    pub tools: Vec<ToolTiming>,
    /// Whether the caller spoke over the answer.
    pub interrupted: bool,
    /// How much of the answer the caller heard, when it was cut off.
    pub heard: Option<Duration>,
}

/// Summary statistics of a set of durations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Percentiles {
    /// How many.
    pub count: usize,
    /// The median.
    pub p50: Duration,
    /// The 90th percentile.
    pub p90: Duration,
    /// The 99th percentile.
    pub p99: Duration,
    /// The largest.
    pub max: Duration,
    /// The mean.
    pub mean: Duration,
}

impl Percentiles {
    /// Nearest-rank percentiles of `values`; `None` if there are none.
    pub fn of(values: impl IntoIterator<Item = Duration>) -> Option<Percentiles> {
        let mut values: Vec<Duration> = values.into_iter().collect();
        if values.is_empty() {
            return None;
        }
        values.sort_unstable();
        let rank = |p: usize| values[(values.len() * p).div_ceil(100).max(1) - 1];
        let total: Duration = values.iter().sum();
        Some(Percentiles {
            count: values.len(),
            p50: rank(50),
            p90: rank(90),
            p99: rank(99),
            max: values[values.len() - 1],
            mean: total / u32::try_from(values.len()).unwrap_or(u32::MAX),
        })
    }
}

/// Everything measured on one call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallMetrics {
    /// Each turn, in order.
    pub turns: Vec<TurnMetrics>,
    /// The caller turns' response times.
    pub response_time: Option<Percentiles>,
    /// The caller turns' times to confirmed playback.
    pub played_after: Option<Percentiles>,
    /// The tool calls' durations.
    pub tool_time: Option<Percentiles>,
    /// Tool calls that ended in an error.
    pub tool_errors: u32,
    /// Audio frames from the caller.
    pub frames_in: u64,
    /// Audio frames to the caller.
    pub frames_out: u64,
    /// Frames that could not be read, from either side, ignored.
    pub malformed_frames: u64,
    /// Times the caller spoke over the agent.
    pub barge_ins: u32,
    /// What the engine reported it used.
    pub usage: Usage,
    /// The engine model the call ran on.
    pub model: String,
    /// Minutes the carrier bills (every started minute).
    pub carrier_minutes: u32,
    /// What the call cost, when its model has a price ([`Prices`](super::Prices)).
    pub cost: Option<Cost>,
}

impl CallMetrics {
    /// Fills the percentiles from the turns.
    pub(crate) fn summarise(&mut self) {
        self.response_time = Percentiles::of(self.turns.iter().filter_map(|t| t.response_time));
        self.played_after = Percentiles::of(self.turns.iter().filter_map(|t| t.played_after));
        let tools = self.turns.iter().flat_map(|t| t.tools.iter());
        self.tool_time = Percentiles::of(tools.clone().map(|t| t.duration));
        self.tool_errors = tools.filter(|t| t.outcome != "ok").count() as u32;
    }
}

/// The turn being measured.
#[derive(Debug)]
struct Open {
    index: u32,
    by_caller: bool,
    started: Instant,
    /// Responses started since the turn opened: theirs is the answer's audio.
    responses: Vec<String>,
    first_audio: Option<Instant>,
    first_sent: Option<Instant>,
    /// The mark sent after the first audio: its echo is the confirmed playback.
    first_mark: Option<u64>,
    played: Option<Instant>,
    first_text: Option<Instant>,
    tool_calls: u32,
    tools: Vec<ToolTiming>,
    interrupted: bool,
    heard: Option<Duration>,
    /// The turn's span: the tools called in it are its children.
    span: tracing::Span,
}

/// Measures a call's turns as they happen; see the module documentation.
#[derive(Debug, Default)]
pub(crate) struct TurnClock {
    taken: u32,
    open: Option<Open>,
}

impl TurnClock {
    fn open(&mut self, by_caller: bool, now: Instant) {
        self.taken += 1;
        let span = tracing::info_span!(
            "turn",
            turn.index = self.taken,
            turn.by_caller = by_caller,
            turn.response_time_ms = tracing::field::Empty,
            turn.played_after_ms = tracing::field::Empty,
            turn.first_audio_ms = tracing::field::Empty,
            turn.tool_calls = tracing::field::Empty,
            turn.interrupted = tracing::field::Empty,
            turn.heard_ms = tracing::field::Empty,
        );
        self.open = Some(Open {
            span,
            index: self.taken,
            by_caller,
            started: now,
            responses: Vec::new(),
            first_audio: None,
            first_sent: None,
            first_mark: None,
            played: None,
            first_text: None,
            tool_calls: 0,
            tools: Vec::new(),
            interrupted: false,
            heard: None,
        });
    }

    /// The span of the turn being measured.
    pub(crate) fn span(&self) -> Option<tracing::Span> {
        self.open.as_ref().map(|turn| turn.span.clone())
    }

    /// The engine heard the caller stop speaking: their turn starts; the one before ends.
    pub(crate) fn caller_stopped(&mut self, now: Instant) -> Option<TurnMetrics> {
        let ended = self.close(now);
        self.open(true, now);
        ended
    }

    /// Patter asked the engine for a response (the greeting, keys, a goodbye): a turn of
    /// its own, unless one is open.
    pub(crate) fn response_requested(&mut self, now: Instant) {
        if self.open.is_none() {
            self.open(false, now);
        }
    }

    /// A response started.
    pub(crate) fn response_started(&mut self, response_id: &str) {
        if let Some(turn) = &mut self.open {
            turn.responses.push(response_id.to_owned());
        }
    }

    /// Engine audio arrived; `true` if it is the answer's first (for the turn being
    /// measured). It runs for every engine audio frame: `now` is read only when needed.
    pub(crate) fn engine_audio(
        &mut self,
        response_id: &str,
        now: impl FnOnce() -> Instant,
    ) -> bool {
        match &mut self.open {
            Some(turn)
                if turn.first_audio.is_none()
                    && turn.responses.iter().any(|r| r == response_id) =>
            {
                turn.first_audio = Some(now());
                true
            }
            _ => false,
        }
    }

    /// Audio went to the carrier, followed by mark `mark`: the answer's first, once its
    /// first audio has come (audio of an older response still flowing is not the answer).
    pub(crate) fn first_audio_sent(&mut self, mark: u64, now: impl FnOnce() -> Instant) {
        if let Some(turn) = &mut self.open
            && turn.first_audio.is_some()
            && turn.first_sent.is_none()
        {
            turn.first_sent = Some(now());
            turn.first_mark = Some(mark);
        }
    }

    /// The carrier echoed mark `mark`: the audio before it has played.
    pub(crate) fn mark_echoed(&mut self, mark: u64, now: Instant) {
        if let Some(turn) = &mut self.open
            && turn.played.is_none()
            && turn.first_mark.is_some_and(|first| mark >= first)
        {
            turn.played = Some(now);
        }
    }

    /// Text of the answer (a transcript fragment, or text).
    pub(crate) fn text(&mut self, now: Instant) {
        if let Some(turn) = &mut self.open
            && turn.first_text.is_none()
            && !turn.responses.is_empty()
        {
            turn.first_text = Some(now);
        }
    }

    /// The model called a tool.
    pub(crate) fn tool_called(&mut self) {
        if let Some(turn) = &mut self.open {
            turn.tool_calls += 1;
        }
    }

    /// A tool call finished.
    pub(crate) fn tool_finished(&mut self, timing: ToolTiming) {
        if let Some(turn) = &mut self.open {
            turn.tools.push(timing);
        }
    }

    /// The caller spoke over the agent, who had been heard for `heard`: the turn ends,
    /// interrupted, if its answer had started to play.
    pub(crate) fn barge_in(
        &mut self,
        heard: Option<Duration>,
        now: Instant,
    ) -> Option<TurnMetrics> {
        let turn = self.open.as_mut()?;
        // Nothing played yet: the caller is only adding to their own turn.
        turn.first_sent?;
        turn.interrupted = true;
        turn.heard = heard;
        self.close(now)
    }

    /// Nothing is left to come of the turn (no response, tool or unplayed audio): it ends,
    /// if its answer came.
    pub(crate) fn idle(&mut self, now: Instant) -> Option<TurnMetrics> {
        let turn = self.open.as_ref()?;
        if turn.first_sent.is_none() && turn.first_text.is_none() && turn.tools.is_empty() {
            return None;
        }
        self.close(now)
    }

    /// The call ended: the open turn ends with it.
    pub(crate) fn close(&mut self, now: Instant) -> Option<TurnMetrics> {
        let turn = self.open.take()?;
        let since = |at: Option<Instant>| at.map(|at| at.saturating_duration_since(turn.started));
        let ms = |d: Option<Duration>| d.map(|d| d.as_millis() as u64);
        let span = &turn.span;
        if turn.by_caller {
            span.record("turn.response_time_ms", ms(since(turn.first_sent)));
            span.record("turn.played_after_ms", ms(since(turn.played)));
        }
        span.record("turn.first_audio_ms", ms(since(turn.first_audio)));
        span.record("turn.tool_calls", turn.tool_calls);
        span.record("turn.interrupted", turn.interrupted);
        span.record("turn.heard_ms", ms(turn.heard));
        Some(TurnMetrics {
            index: turn.index,
            by_caller: turn.by_caller,
            response_time: if turn.by_caller {
                since(turn.first_sent)
            } else {
                None
            },
            played_after: if turn.by_caller {
                since(turn.played)
            } else {
                None
            },
            first_audio: since(turn.first_audio),
            first_text: since(turn.first_text),
            duration: now.saturating_duration_since(turn.started),
            tool_calls: turn.tool_calls,
            tools: turn.tools,
            interrupted: turn.interrupted,
            heard: turn.heard,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn a_caller_turn_measures_the_wait_the_playback_and_the_tools() {
        let t0 = Instant::now();
        let mut clock = TurnClock::default();
        assert!(clock.caller_stopped(t0).is_none());
        clock.response_started("r1");
        clock.tool_called();
        clock.tool_finished(ToolTiming {
            name: "lookup".into(),
            duration: MS(250),
            outcome: "ok",
        });
        clock.response_started("r2");
        assert!(clock.engine_audio("r2", || t0 + MS(430)));
        assert!(!clock.engine_audio("r2", || t0 + MS(450)));
        clock.first_audio_sent(7, || t0 + MS(431));
        clock.first_audio_sent(8, || t0 + MS(451));
        clock.mark_echoed(6, t0 + MS(440));
        clock.mark_echoed(7, t0 + MS(531));
        clock.text(t0 + MS(480));
        let turn = clock.idle(t0 + MS(900)).expect("turn over");
        assert_eq!(turn.index, 1);
        assert_eq!(turn.response_time, Some(MS(431)));
        assert_eq!(turn.played_after, Some(MS(531)));
        assert_eq!(turn.first_audio, Some(MS(430)));
        assert_eq!(turn.first_text, Some(MS(480)));
        assert_eq!(turn.duration, MS(900));
        assert_eq!((turn.tool_calls, turn.tools.len()), (1, 1));
        assert!(!turn.interrupted);
    }

    #[test]
    fn audio_of_an_older_response_is_not_the_answer() {
        let t0 = Instant::now();
        let mut clock = TurnClock::default();
        clock.response_requested(t0);
        clock.response_started("greeting");
        clock.caller_stopped(t0 + MS(100));
        assert!(!clock.engine_audio("greeting", || t0 + MS(120)));
        assert!(clock.idle(t0 + MS(130)).is_none(), "no answer yet");
    }

    #[test]
    fn audio_still_flowing_from_before_the_turn_is_not_its_answer() {
        let t0 = Instant::now();
        let mut clock = TurnClock::default();
        clock.caller_stopped(t0);
        clock.first_audio_sent(1, || t0 + MS(5));
        clock.response_started("r1");
        clock.engine_audio("r1", || t0 + MS(300));
        clock.first_audio_sent(2, || t0 + MS(301));
        let turn = clock.close(t0 + MS(400)).expect("turn");
        assert_eq!(turn.response_time, Some(MS(301)));
    }

    #[test]
    fn a_barge_in_ends_the_turn_with_what_was_heard() {
        let t0 = Instant::now();
        let mut clock = TurnClock::default();
        clock.caller_stopped(t0);
        assert!(
            clock.barge_in(None, t0 + MS(10)).is_none(),
            "nothing played yet"
        );
        clock.response_started("r1");
        clock.engine_audio("r1", || t0 + MS(200));
        clock.first_audio_sent(1, || t0 + MS(200));
        let turn = clock
            .barge_in(Some(MS(640)), t0 + MS(900))
            .expect("cut off");
        assert!(turn.interrupted);
        assert_eq!(turn.heard, Some(MS(640)));
        assert!(clock.idle(t0 + MS(950)).is_none());
    }

    #[test]
    fn patter_initiated_turns_have_no_response_time() {
        let t0 = Instant::now();
        let mut clock = TurnClock::default();
        clock.response_requested(t0);
        clock.response_requested(t0 + MS(5));
        clock.response_started("r1");
        clock.engine_audio("r1", || t0 + MS(300));
        clock.first_audio_sent(1, || t0 + MS(300));
        let turn = clock.close(t0 + MS(400)).expect("turn");
        assert!(!turn.by_caller);
        assert_eq!(turn.response_time, None);
        assert_eq!(turn.first_audio, Some(MS(300)));
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        assert_eq!(Percentiles::of([]), None);
        let p = Percentiles::of((1..=100).map(MS)).expect("some");
        assert_eq!(
            (p.p50, p.p90, p.p99, p.max),
            (MS(50), MS(90), MS(99), MS(100))
        );
        assert_eq!(p.mean, Duration::from_micros(50_500));
        let one = Percentiles::of([MS(7)]).expect("one");
        assert_eq!((one.p50, one.p99, one.count), (MS(7), MS(7), 1));
    }
}
