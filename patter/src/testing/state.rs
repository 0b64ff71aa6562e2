//! What the test, the scripted engine, the simulated phone and the call share: everything
//! that happened, in order, and the counters the test waits on.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use super::SentCommand;
use crate::call::CallSummary;
use crate::engine::EngineSetup;

/// How many of the last events a failed expectation shows.
const EVENTS_SHOWN: usize = 12;

/// The record of one simulated call.
#[derive(Default)]
pub(crate) struct State {
    /// Everything that crossed either seam, described for a person, in order.
    pub(crate) events: Vec<String>,
    /// What the engine was opened with.
    pub(crate) setup: Option<EngineSetup>,
    /// Every command the call sent the engine, in order.
    pub(crate) commands: Vec<SentCommand>,
    /// Engine frames the call has finished handling (they are numbered from 1).
    pub(crate) engine_handled: u64,
    /// Caller frames the call has finished handling (numbered from 1).
    pub(crate) carrier_handled: u64,
    /// μ-law bytes of agent audio the phone received.
    pub(crate) agent_audio_bytes: usize,
    /// `Clear`s the phone received.
    pub(crate) clears: usize,
    /// Marks echoed as played.
    pub(crate) marks_played: usize,
    /// Hang-ups asked of call control.
    pub(crate) hang_ups: usize,
    /// Transfers asked of call control, by number.
    pub(crate) transfers: Vec<String>,
    /// Marks sent and neither played nor flushed yet.
    pub(crate) marks_unplayed: usize,
    /// The call's end.
    pub(crate) summary: Option<CallSummary>,
    /// The call's task is gone: with no summary, it panicked.
    pub(crate) task_gone: bool,
    /// The kind, count and total of the run of like events the last event sums up.
    last_run: Option<(&'static str, u64, u64)>,
}

impl State {
    /// Records an event.
    pub(crate) fn push_event(&mut self, text: String) {
        self.last_run = None;
        self.events.push(text);
    }

    /// Records one of a run of like events (audio frames, say) as one line: `render` gets
    /// how many there were and the sum of their `amount`s.
    pub(crate) fn push_run(
        &mut self,
        kind: &'static str,
        amount: u64,
        render: impl Fn(u64, u64) -> String,
    ) {
        match &mut self.last_run {
            Some((last, count, total)) if *last == kind => {
                *count += 1;
                *total += amount;
                let line = render(*count, *total);
                if let Some(event) = self.events.last_mut() {
                    *event = line;
                }
            }
            _ => {
                self.events.push(render(1, amount));
                self.last_run = Some((kind, 1, amount));
            }
        }
    }
}

/// The state behind a lock, and a wake-up for whoever waits on it.
#[derive(Default)]
pub(crate) struct Shared {
    state: Mutex<State>,
    pub(crate) changed: Notify,
}

impl Shared {
    pub(crate) fn new() -> Arc<Shared> {
        Arc::new(Shared::default())
    }

    /// The state; a test that panicked while holding it poisons nothing that matters.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Changes the state and wakes the waiters.
    pub(crate) fn update<T>(&self, change: impl FnOnce(&mut State) -> T) -> T {
        let result = change(&mut self.lock());
        self.changed.notify_waiters();
        result
    }

    /// Records an event.
    pub(crate) fn event(&self, text: impl Into<String>) {
        let text = text.into();
        self.update(|s| s.push_event(text));
    }

    /// The last events, one per line, for a failure message.
    pub(crate) fn recent_events(&self) -> String {
        let state = self.lock();
        let skip = state.events.len().saturating_sub(EVENTS_SHOWN);
        let mut out = String::new();
        if skip > 0 {
            out.push_str(&format!("  … {skip} earlier events\n"));
        }
        for (i, event) in state.events.iter().enumerate().skip(skip) {
            out.push_str(&format!("  {:>3}. {event}\n", i + 1));
        }
        if state.events.is_empty() {
            out.push_str("  (nothing happened)\n");
        }
        out
    }
}
