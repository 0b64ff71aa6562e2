//! A call patter ends on its own initiative (the time limit, a shutdown): the agent is asked
//! for a goodbye, and the line is cut once it has started, finished and played, or once the
//! wait for it runs out.

use super::EndReason;

/// What the agent is asked to say when the call reaches its time limit.
pub(crate) const TIME_LIMIT_GOODBYE: &str = "The call has reached its time limit. In one short \
    sentence, apologise that you have to end the call now and say goodbye.";
/// What the agent is asked to say when the server shuts down mid-call.
pub(crate) const SHUTDOWN_GOODBYE: &str = "The service is restarting. In one short sentence, \
    apologise that you have to end the call now, ask the caller to call back, and say goodbye.";

/// A goodbye in progress.
#[derive(Debug)]
pub(crate) struct Closing {
    reason: EndReason,
    /// The goodbye response has started.
    spoke: bool,
}

impl Closing {
    /// The call ends for `reason` once the goodbye has played.
    pub(crate) fn new(reason: EndReason) -> Self {
        Closing {
            reason,
            spoke: false,
        }
    }

    /// The instructions for the goodbye.
    pub(crate) fn instructions(&self) -> &'static str {
        match self.reason {
            EndReason::Shutdown => SHUTDOWN_GOODBYE,
            _ => TIME_LIMIT_GOODBYE,
        }
    }

    /// A response started: the goodbye (or whatever was still being said) is under way.
    pub(crate) fn on_response_started(&mut self) {
        self.spoke = true;
    }

    /// Whether the goodbye has been said and played: nothing is being said, and every mark
    /// sent has come back.
    pub(crate) fn is_done(&self, responding: bool, unplayed_marks: usize) -> bool {
        self.spoke && !responding && unplayed_marks == 0
    }

    /// Why the call ends.
    pub(crate) fn reason(&self) -> &EndReason {
        &self.reason
    }

    /// Why the call ends, taken.
    pub(crate) fn into_reason(self) -> EndReason {
        self.reason
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn done_only_once_the_goodbye_started_finished_and_played() {
        let mut c = Closing::new(EndReason::MaxDuration);
        assert!(!c.is_done(false, 0), "nothing said yet");
        c.on_response_started();
        assert!(!c.is_done(true, 0), "still speaking");
        assert!(!c.is_done(false, 2), "not played yet");
        assert!(c.is_done(false, 0));
    }

    #[test]
    fn each_reason_has_its_goodbye() {
        assert_eq!(
            Closing::new(EndReason::Shutdown).instructions(),
            SHUTDOWN_GOODBYE
        );
        assert_eq!(
            Closing::new(EndReason::MaxDuration).instructions(),
            TIME_LIMIT_GOODBYE
        );
    }
}
