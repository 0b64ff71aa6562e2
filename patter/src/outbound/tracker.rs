//! Following one dialled call to its outcome: a pure state machine ([`Progress`]) fed by
//! what reaches this server (status callbacks, machine detection, the voicemail's end, the
//! call's own session), and the task that owns the call's slot until the outcome is known.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use super::{AnsweredBy, CallOutcome, CallStatus, DialEvent};
use crate::call::CallSummary;

/// How long the outcome waits for the other half of the news (the final status once the
/// session ended, or the session's end once the final status came) before it is decided
/// with what is known. Longer than `on_call_end` may take, which runs before the session
/// reports its end.
pub(crate) const SETTLE: Duration = Duration::from_secs(20);
/// Room for a dial's signals: a call has a handful; more are dropped (and logged).
const SIGNALS: usize = 64;

/// What this server learnt about a dialled call.
#[derive(Debug)]
pub(crate) enum Signal {
    /// A status callback.
    Status {
        status: CallStatus,
        /// Twilio's reason, for a failed call.
        reason: Option<String>,
    },
    /// Machine detection's answer.
    AnsweredBy(AnsweredBy),
    /// The voicemail started playing.
    VoicemailStarted,
    /// The voicemail played to its end.
    VoicemailLeft,
    /// The call's stream started on this server.
    SessionStarted,
    /// The call's stream on this server ended.
    SessionEnded(Box<CallSummary>),
}

#[derive(Debug, Default, PartialEq, Eq, Clone, Copy)]
enum Voicemail {
    #[default]
    None,
    Started,
    Left,
}

#[derive(Debug, Default)]
enum Session {
    #[default]
    NotStarted,
    Running,
    Ended(Box<CallSummary>),
}

/// The outcome so far, from signals in any order.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    status: Option<CallStatus>,
    reason: Option<String>,
    answered_by: Option<AnsweredBy>,
    voicemail: Voicemail,
    session: Session,
}

impl Progress {
    /// Takes a signal in; returns what the handle's event stream shows, if anything.
    /// Statuses only move forward: a replayed or late one changes nothing.
    pub(crate) fn apply(&mut self, signal: Signal) -> Option<DialEvent> {
        match signal {
            Signal::Status { status, reason } => {
                let current = self.status.map_or(0, CallStatus::stage);
                let fresh = match self.status {
                    None => true,
                    Some(old) => !old.is_final() && status.stage() > current,
                };
                if !fresh {
                    debug!(%status, "status replayed or out of order; ignored");
                    return None;
                }
                self.status = Some(status);
                if status == CallStatus::Failed {
                    self.reason = reason;
                }
                Some(DialEvent::Status(status))
            }
            Signal::AnsweredBy(answered_by) => {
                if self.answered_by.is_some() {
                    return None;
                }
                self.answered_by = Some(answered_by);
                Some(DialEvent::Answered(answered_by))
            }
            Signal::VoicemailStarted => {
                if self.voicemail == Voicemail::None {
                    self.voicemail = Voicemail::Started;
                }
                None
            }
            Signal::VoicemailLeft => {
                self.voicemail = Voicemail::Left;
                None
            }
            Signal::SessionStarted => {
                if matches!(self.session, Session::NotStarted) {
                    self.session = Session::Running;
                }
                None
            }
            Signal::SessionEnded(summary) => {
                self.session = Session::Ended(summary);
                None
            }
        }
    }

    /// Whether the outcome is known: the call is over, and its session (if one ran here)
    /// has ended.
    pub(crate) fn settled(&self) -> bool {
        let over = self.status.is_some_and(CallStatus::is_final);
        over && !matches!(self.session, Session::Running)
    }

    /// Whether one half of the news is in, so the other is waited for at most [`SETTLE`].
    /// A session that ended because a voicemail replaced it is not: the voicemail plays on,
    /// for as long as it takes, until the final status.
    pub(crate) fn half_settled(&self) -> bool {
        let over = self.status.is_some_and(CallStatus::is_final);
        let session_ended = matches!(self.session, Session::Ended(_));
        over || (session_ended && self.voicemail != Voicemail::Started)
    }

    /// Whether the call's conversation is running on this server (its session then says
    /// goodbye and ends the call itself on shutdown).
    pub(crate) fn in_session(&self) -> bool {
        matches!(self.session, Session::Running)
    }

    /// The last status seen.
    pub(crate) fn status(&self) -> Option<CallStatus> {
        self.status
    }

    /// The outcome, from what is known now.
    pub(crate) fn outcome(self) -> CallOutcome {
        let summary = match self.session {
            Session::Ended(summary) => Some(summary),
            _ => None,
        };
        if let Some(answered_by) = self.answered_by {
            match (answered_by, self.voicemail) {
                (AnsweredBy::Fax, _) => return CallOutcome::Fax,
                (_, Voicemail::Left) => return CallOutcome::VoicemailLeft { answered_by },
                (_, Voicemail::Started) => {
                    return CallOutcome::VoicemailInterrupted { answered_by };
                }
                (by, Voicemail::None) if by.is_machine() => {
                    return CallOutcome::Machine { answered_by };
                }
                _ => {}
            }
        }
        match self.status {
            Some(CallStatus::Busy) => CallOutcome::Busy,
            Some(CallStatus::NoAnswer) => CallOutcome::NoAnswer,
            Some(CallStatus::Canceled) => CallOutcome::Canceled,
            Some(CallStatus::Failed) => CallOutcome::Failed {
                reason: self
                    .reason
                    .unwrap_or_else(|| "Twilio gave no reason".to_owned()),
            },
            Some(CallStatus::Completed) => CallOutcome::Answered {
                answered_by: self.answered_by,
                summary,
            },
            last_status => match summary {
                // The session ended here but the final status never came.
                Some(summary) => CallOutcome::Answered {
                    answered_by: self.answered_by,
                    summary: Some(summary),
                },
                None => CallOutcome::Unknown { last_status },
            },
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The dials this process placed and still follows, by dial id. Only handles are found
/// here: what a call needs travels signed with it.
#[derive(Debug, Default)]
pub(crate) struct Dials {
    open: Mutex<HashMap<String, mpsc::Sender<Signal>>>,
}

impl Dials {
    /// Starts following dial `id`.
    pub(crate) fn open(&self, id: &str) -> mpsc::Receiver<Signal> {
        let (tx, rx) = mpsc::channel(SIGNALS);
        lock(&self.open).insert(id.to_owned(), tx);
        rx
    }

    /// Stops following dial `id`.
    pub(crate) fn close(&self, id: &str) {
        lock(&self.open).remove(id);
    }

    /// Whether dial `id` was placed by this process and is still followed.
    pub(crate) fn is_open(&self, id: &str) -> bool {
        lock(&self.open).contains_key(id)
    }

    /// Hands `signal` to dial `id`'s handle, if it is followed here; otherwise (another
    /// instance dialled, or it is long over) nothing happens.
    pub(crate) fn tell(&self, id: &str, signal: Signal) {
        let sender = lock(&self.open).get(id).cloned();
        match sender {
            Some(tx) => {
                if tx.try_send(signal).is_err() {
                    warn!("dial signal dropped: too many for one call");
                }
            }
            None => debug!("signal for a dial not followed here"),
        }
    }
}

/// Stops following a dial unless it is handed over to its follower: a dial whose future is
/// dropped, or that fails, leaves nothing behind.
pub(crate) struct Opened<'a> {
    dials: &'a Dials,
    id: &'a str,
    handed_over: bool,
}

impl<'a> Opened<'a> {
    pub(crate) fn new(dials: &'a Dials, id: &'a str) -> Self {
        Opened {
            dials,
            id,
            handed_over: false,
        }
    }

    /// The follower owns the dial from now on.
    pub(crate) fn hand_over(mut self) {
        self.handed_over = true;
    }
}

impl Drop for Opened<'_> {
    fn drop(&mut self) {
        if !self.handed_over {
            self.dials.close(self.id);
        }
    }
}

/// What ends a dialled call whose conversation is not running here, when the server stops.
pub(crate) trait Cancel: Send + Sync {
    /// Cancels the call if it is still ringing, hangs it up if it was answered; best
    /// effort.
    fn cancel(&self, call_sid: &str) -> futures_util::future::BoxFuture<'_, ()>;
}

/// Follows one dial until its outcome is known, then frees its slot and resolves the
/// handle. Bounded: `deadline` after dialling it gives up with what it knows.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn follow<S: Send>(
    dials: Arc<Dials>,
    id: String,
    call_sid: String,
    mut signals: mpsc::Receiver<Signal>,
    events: mpsc::Sender<DialEvent>,
    outcome: oneshot::Sender<CallOutcome>,
    slot: S,
    deadline: Duration,
    mut shutdown: watch::Receiver<bool>,
    cancel: Arc<dyn Cancel>,
) {
    let mut progress = Progress::default();
    let give_up = tokio::time::sleep(deadline);
    tokio::pin!(give_up);
    let settle = tokio::time::sleep(Duration::MAX / 4);
    tokio::pin!(settle);
    let mut settling = false;
    let mut shutting_down = false;
    loop {
        if progress.settled() {
            break;
        }
        // Checked each turn, so a shutdown that came before this dial was followed counts.
        if !shutting_down && *shutdown.borrow() {
            shutting_down = true;
            if !progress.status().is_some_and(CallStatus::is_final) && !progress.in_session() {
                info!(call_sid, "server stopping: ending the dialled call");
                cancel.cancel(&call_sid).await;
            }
            // Twilio's final status (or the session's end) may still come; bounded.
            if !settling {
                settling = true;
                settle.as_mut().reset(tokio::time::Instant::now() + SETTLE);
            }
        }
        if !settling && progress.half_settled() {
            settling = true;
            settle.as_mut().reset(tokio::time::Instant::now() + SETTLE);
        }
        tokio::select! {
            signal = signals.recv() => match signal {
                Some(signal) => {
                    if let Some(event) = progress.apply(signal) {
                        let _ = events.try_send(event);
                    }
                }
                None => break,
            },
            () = &mut settle, if settling => {
                debug!("outcome decided without the rest of the news");
                break;
            }
            () = &mut give_up => {
                warn!(call_sid, "no final status in time; outcome unknown");
                break;
            }
            changed = shutdown.changed(), if !shutting_down => {
                if changed.is_err() {
                    // The server is gone: nothing more will come.
                    break;
                }
            }
        }
    }
    dials.close(&id);
    drop(slot);
    let outcome_now = progress.outcome();
    info!(call_sid, outcome = %outcome_now, "dialled call over");
    let _ = outcome.send(outcome_now);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(s: CallStatus) -> Signal {
        Signal::Status {
            status: s,
            reason: None,
        }
    }

    #[test]
    fn statuses_only_move_forward() {
        let mut p = Progress::default();
        assert_eq!(
            p.apply(status(CallStatus::Ringing)),
            Some(DialEvent::Status(CallStatus::Ringing))
        );
        assert_eq!(p.apply(status(CallStatus::Initiated)), None);
        assert_eq!(p.apply(status(CallStatus::Ringing)), None);
        assert!(p.apply(status(CallStatus::Completed)).is_some());
        assert_eq!(p.apply(status(CallStatus::Busy)), None);
        assert!(matches!(p.outcome(), CallOutcome::Answered { .. }));
    }

    #[test]
    fn a_voicemail_in_progress_is_waited_for_until_the_final_status() {
        let mut p = Progress::default();
        p.apply(Signal::SessionStarted);
        p.apply(Signal::AnsweredBy(AnsweredBy::MachineEndBeep));
        p.apply(Signal::VoicemailStarted);
        p.apply(Signal::SessionEnded(Box::new(summary())));
        assert!(!p.half_settled(), "the voicemail may play for a while");
        p.apply(Signal::VoicemailLeft);
        assert!(p.half_settled());
        p.apply(status(CallStatus::Completed));
        assert!(p.settled());
        assert!(matches!(
            p.outcome(),
            CallOutcome::VoicemailLeft {
                answered_by: AnsweredBy::MachineEndBeep
            }
        ));
    }

    #[test]
    fn a_status_callback_may_carry_answered_by() {
        let mut p = Progress::default();
        assert_eq!(
            p.apply(Signal::AnsweredBy(AnsweredBy::Fax)),
            Some(DialEvent::Answered(AnsweredBy::Fax))
        );
        assert_eq!(p.apply(Signal::AnsweredBy(AnsweredBy::Fax)), None, "once");
    }

    fn summary() -> CallSummary {
        CallSummary {
            context: crate::tool::CallContext::builder("CA1").build(),
            reason: crate::call::EndReason::StreamStopped,
            duration: Duration::from_secs(1),
            transcript: Vec::new(),
            tool_calls: Vec::new(),
            metrics: Default::default(),
            reconnects: Vec::new(),
        }
    }

    #[test]
    fn a_running_session_holds_the_outcome_back() {
        let mut p = Progress::default();
        p.apply(Signal::SessionStarted);
        p.apply(status(CallStatus::Completed));
        assert!(!p.settled() && p.half_settled());
    }
}
