//! Responses and their tool calls: which responses are in progress (the agent is speaking
//! or thinking), which tool calls each is waiting on, and when the model may go on.
//!
//! The model goes on after its tools once the response that called them is done and every
//! call has an answer: one continue per response, however many tools it called, and none
//! if a tool ended the call. Repeated announcements of one call are answered once.

use std::collections::{HashMap, HashSet};

/// What to do after a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Still waiting for the response to finish or for a tool.
    Wait,
    /// Every tool of a finished response answered: let the model go on.
    Continue,
    /// Nothing to do.
    Nothing,
}

/// The tool calls of one response.
#[derive(Debug, Default)]
struct Pending {
    outstanding: usize,
    answered: usize,
    done: bool,
    /// A hang-up or transfer went through: the model need not speak again.
    settled: bool,
    /// The engine's ids of this response's calls, forgotten with it.
    call_ids: Vec<String>,
}

/// The responses of one call.
#[derive(Debug, Default)]
pub(crate) struct Turns {
    in_progress: HashSet<String>,
    pending: HashMap<String, Pending>,
    seen_calls: HashSet<String>,
}

impl Turns {
    /// A response started.
    pub(crate) fn response_started(&mut self, response_id: &str) {
        self.in_progress.insert(response_id.to_owned());
    }

    /// Whether a response is in progress.
    pub(crate) fn is_responding(&self) -> bool {
        !self.in_progress.is_empty()
    }

    /// The model asked for a tool in this response; `false` if this call was already
    /// announced (it then gets no second answer).
    pub(crate) fn tool_called(&mut self, response_id: &str, call_id: &str) -> bool {
        if !self.seen_calls.insert(call_id.to_owned()) {
            return false;
        }
        let entry = self.pending.entry(response_id.to_owned()).or_default();
        entry.outstanding += 1;
        entry.call_ids.push(call_id.to_owned());
        true
    }

    /// A response finished.
    pub(crate) fn response_done(&mut self, response_id: &str) -> Next {
        self.in_progress.remove(response_id);
        match self.pending.get_mut(response_id) {
            Some(entry) => {
                entry.done = true;
                self.check(response_id)
            }
            None => Next::Nothing,
        }
    }

    /// One of the response's tool calls has its answer.
    pub(crate) fn tool_answered(&mut self, response_id: &str) -> Next {
        if let Some(entry) = self.pending.get_mut(response_id) {
            entry.outstanding = entry.outstanding.saturating_sub(1);
            entry.answered += 1;
        }
        self.check(response_id)
    }

    /// One of the response's tool calls ended the call: nothing is to follow it.
    pub(crate) fn settled(&mut self, response_id: &str) {
        if let Some(entry) = self.pending.get_mut(response_id) {
            entry.outstanding = entry.outstanding.saturating_sub(1);
            entry.settled = true;
        }
    }

    /// The engine session was replaced: the responses that were running are gone (their
    /// ends will not come), and tools still running answer in the new session. `Continue`
    /// if a response now has every answer (the new session is to go on from them).
    pub(crate) fn engine_replaced(&mut self) -> Next {
        self.in_progress.clear();
        let ids: Vec<String> = self.pending.keys().cloned().collect();
        let mut next = Next::Nothing;
        for id in ids {
            if let Some(entry) = self.pending.get_mut(&id) {
                entry.done = true;
            }
            match self.check(&id) {
                Next::Continue => next = Next::Continue,
                Next::Wait if next == Next::Nothing => next = Next::Wait,
                _ => {}
            }
        }
        next
    }

    fn check(&mut self, response_id: &str) -> Next {
        let ready = self
            .pending
            .get(response_id)
            .is_some_and(|p| p.done && p.outstanding == 0);
        if !ready {
            return Next::Wait;
        }
        let Some(entry) = self.pending.remove(response_id) else {
            return Next::Nothing;
        };
        // Every event of a response comes before its end: no repeat of its calls can follow.
        for call_id in &entry.call_ids {
            self.seen_calls.remove(call_id);
        }
        if entry.answered > 0 && !entry.settled {
            Next::Continue
        } else {
            Next::Nothing
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replaced_engine_leaves_running_tools_to_answer_in_the_new_session() {
        let mut t = Turns::default();
        t.response_started("r1");
        assert!(t.tool_called("r1", "c1"));
        assert!(t.tool_called("r1", "c2"));
        assert_eq!(t.tool_answered("r1"), Next::Wait);
        // The engine drops before r1 is done: r1 will never be; c2 still runs.
        assert_eq!(t.engine_replaced(), Next::Wait);
        assert!(!t.is_responding());
        assert_eq!(
            t.tool_answered("r1"),
            Next::Continue,
            "the new session goes on"
        );
        // Every answer already in when the engine dropped: it goes on at once.
        let mut u = Turns::default();
        u.response_started("r2");
        assert!(u.tool_called("r2", "c3"));
        assert_eq!(u.tool_answered("r2"), Next::Wait);
        assert_eq!(u.engine_replaced(), Next::Continue);
    }

    #[test]
    fn a_response_without_tools_needs_nothing() {
        let mut t = Turns::default();
        t.response_started("r1");
        assert!(t.is_responding());
        assert_eq!(t.response_done("r1"), Next::Nothing);
        assert!(!t.is_responding());
    }

    #[test]
    fn continue_waits_for_the_response_to_finish() {
        let mut t = Turns::default();
        t.response_started("r1");
        assert!(t.tool_called("r1", "c1"));
        assert_eq!(
            t.tool_answered("r1"),
            Next::Wait,
            "the response is still going"
        );
        assert_eq!(t.response_done("r1"), Next::Continue);
    }

    #[test]
    fn continue_waits_for_every_tool_of_the_response() {
        let mut t = Turns::default();
        t.response_started("r1");
        t.tool_called("r1", "c1");
        t.tool_called("r1", "c2");
        assert_eq!(t.response_done("r1"), Next::Wait);
        assert_eq!(t.tool_answered("r1"), Next::Wait);
        assert_eq!(t.tool_answered("r1"), Next::Continue);
        // Exactly once.
        assert_eq!(t.tool_answered("r1"), Next::Wait);
        assert_eq!(t.response_done("r1"), Next::Nothing);
    }

    #[test]
    fn a_repeated_call_is_answered_once_and_forgotten_with_its_response() {
        let mut t = Turns::default();
        assert!(t.tool_called("r1", "c1"));
        assert!(!t.tool_called("r1", "c1"));
        assert_eq!(t.response_done("r1"), Next::Wait);
        assert_eq!(t.tool_answered("r1"), Next::Continue);
        // A new response may reuse the id.
        assert!(t.tool_called("r2", "c1"));
    }

    #[test]
    fn a_tool_that_ended_the_call_gets_no_continue() {
        let mut t = Turns::default();
        t.tool_called("r1", "c1");
        t.response_done("r1");
        t.settled("r1");
        assert_eq!(t.tool_answered("r1"), Next::Nothing);
    }

    #[test]
    fn responses_are_independent() {
        let mut t = Turns::default();
        t.response_started("r1");
        t.response_started("r2");
        t.tool_called("r1", "c1");
        t.tool_called("r2", "c2");
        assert_eq!(t.response_done("r2"), Next::Wait);
        assert_eq!(t.tool_answered("r2"), Next::Continue);
        assert!(t.is_responding(), "r1 is still going");
        assert_eq!(t.response_done("r1"), Next::Wait);
        assert_eq!(t.tool_answered("r1"), Next::Continue);
    }
}
