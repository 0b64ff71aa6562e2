//! Event-driven waiting: a change counter that wakes waiters when a record changes.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// A cloneable "something changed" signal.
///
/// Recorders call [`Signal::bump`] after every change to the state they guard; waiters call
/// [`Signal::wait_for`] with a closure that inspects that state. No sleeping or polling: a
/// waiter re-checks only when woken by a bump, and gives up at its deadline.
#[derive(Clone, Debug)]
pub(crate) struct Signal(Arc<watch::Sender<u64>>);

impl Default for Signal {
    fn default() -> Self {
        Self::new()
    }
}

impl Signal {
    /// A new signal with no waiters.
    pub(crate) fn new() -> Self {
        let (tx, _rx) = watch::channel(0u64);
        Self(Arc::new(tx))
    }

    /// Records that something changed and wakes every waiter.
    pub(crate) fn bump(&self) {
        self.0.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Runs `check` now and after every bump until it returns `Some`, or until `timeout`
    /// has passed (then runs it one last time and returns its answer).
    pub(crate) async fn wait_for<T>(
        &self,
        timeout: Duration,
        mut check: impl FnMut() -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + timeout;
        // Subscribe before the first check so that a bump between the check and the
        // await is not lost.
        let mut rx = self.0.subscribe();
        loop {
            if let Some(found) = check() {
                return Some(found);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                // The sender lives in `self`, so this cannot happen; re-check and stop.
                Ok(Err(_)) | Err(_) => return check(),
            }
        }
    }
}
