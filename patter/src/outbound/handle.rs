//! [`OutboundCall`]: what the dialling code holds while the call goes on.

use std::fmt;

use tokio::sync::{mpsc, oneshot};

use super::{CallOutcome, DialEvent};

/// A placed call: its id, its events as they happen, and its outcome.
///
/// Dropping the handle does not end the call; it only stops listening.
pub struct OutboundCall {
    pub(crate) sid: String,
    pub(crate) to: String,
    pub(crate) events: mpsc::Receiver<DialEvent>,
    pub(crate) outcome: oneshot::Receiver<CallOutcome>,
}

impl OutboundCall {
    /// Twilio's id of the call (`CA…`).
    pub fn sid(&self) -> &str {
        &self.sid
    }

    /// The number called.
    pub fn to(&self) -> &str {
        &self.to
    }

    /// The next status change or machine-detection answer; `None` once the call is over
    /// and every event has been read.
    pub async fn next_event(&mut self) -> Option<DialEvent> {
        self.events.recv().await
    }

    /// Waits for the call to end and says how it did.
    pub async fn outcome(self) -> CallOutcome {
        // The follower always answers, unless the runtime is going away.
        self.outcome
            .await
            .unwrap_or(CallOutcome::Unknown { last_status: None })
    }
}

impl fmt::Debug for OutboundCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboundCall")
            .field("sid", &self.sid)
            .finish_non_exhaustive()
    }
}
