//! What a tool asks the call to do (hang up, transfer), carried out after the agent's last
//! words have played, through the call's [`CallControl`].

use std::time::Duration;

use tokio::sync::watch;
use tracing::warn;

use super::EndReason;
use crate::carrier::CallControl;
use crate::tool::CallAction;

/// How a tool's actions went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ActionsOutcome {
    /// One of them ended the call.
    Ended(EndReason),
    /// None ended the call, and some failed: the model is told why.
    Failed(String),
    /// None ended the call, and none failed.
    Done,
}

/// Waits (up to `wait`) until the agent has stopped speaking, then carries out `actions` in
/// order. An action that ends the call ends the list (a hang-up after a transfer would cut
/// off the transferred caller); one that fails is logged and the next one runs.
pub(crate) async fn carry_out(
    control: &dyn CallControl,
    call_id: &str,
    actions: &[CallAction],
    mut speaking: watch::Receiver<bool>,
    wait: Duration,
) -> ActionsOutcome {
    // The response that asked is usually still speaking its goodbye.
    let played = tokio::time::timeout(wait, async {
        let _ = speaking.wait_for(|speaking| !speaking).await;
    })
    .await;
    if played.is_err() {
        warn!("goodbye still playing after the wait; acting anyway");
    }
    let mut failures = Vec::new();
    for (index, action) in actions.iter().enumerate() {
        let (result, ends_as) = match action {
            CallAction::HangUp { reason } => (
                control.hang_up(call_id).await,
                EndReason::AgentHungUp {
                    reason: reason.clone(),
                },
            ),
            CallAction::Transfer { to } => (
                control.transfer(call_id, to).await,
                EndReason::Transferred { to: to.clone() },
            ),
        };
        match result {
            Ok(()) => {
                let skipped = actions.len() - index - 1;
                if skipped > 0 {
                    warn!(
                        skipped,
                        action = kind(action),
                        "the call ended; the actions after this one were not carried out"
                    );
                }
                return ActionsOutcome::Ended(ends_as);
            }
            Err(e) => {
                warn!(action = kind(action), error = %e, "call action failed");
                failures.push(e.to_string());
            }
        }
    }
    if failures.is_empty() {
        ActionsOutcome::Done
    } else {
        ActionsOutcome::Failed(failures.join("; "))
    }
}

/// The action's kind, for the log (a number may be personal data).
fn kind(action: &CallAction) -> &'static str {
    match action {
        CallAction::HangUp { .. } => "hang_up",
        CallAction::Transfer { .. } => "transfer",
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use futures_util::future::BoxFuture;

    use super::*;
    use crate::carrier::ControlError;

    /// Refuses the numbers in `refuse`; records every request.
    #[derive(Default)]
    struct Recording {
        refuse: Vec<&'static str>,
        requests: Mutex<Vec<String>>,
    }

    impl CallControl for Recording {
        fn hang_up<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<(), ControlError>> {
            self.requests.lock().unwrap().push("hang_up".into());
            Box::pin(async { Ok(()) })
        }
        fn transfer<'a>(
            &'a self,
            _: &'a str,
            number: &'a str,
        ) -> BoxFuture<'a, Result<(), ControlError>> {
            self.requests
                .lock()
                .unwrap()
                .push(format!("transfer {number}"));
            let refused = self.refuse.contains(&number);
            Box::pin(async move {
                if refused {
                    Err(ControlError::new("refused"))
                } else {
                    Ok(())
                }
            })
        }
    }

    fn quiet() -> watch::Receiver<bool> {
        watch::channel(false).1
    }

    #[tokio::test]
    async fn a_failed_action_is_followed_by_the_next_in_order() {
        let control = Recording {
            refuse: vec!["+15550199"],
            ..Recording::default()
        };
        let actions = [
            CallAction::Transfer {
                to: "+15550199".into(),
            },
            CallAction::HangUp {
                reason: "no agent free".into(),
            },
        ];
        let outcome = carry_out(&control, "CA1", &actions, quiet(), Duration::ZERO).await;
        assert_eq!(
            outcome,
            ActionsOutcome::Ended(EndReason::AgentHungUp {
                reason: "no agent free".into()
            })
        );
        assert_eq!(
            *control.requests.lock().unwrap(),
            ["transfer +15550199", "hang_up"]
        );
    }

    #[tokio::test]
    async fn an_action_that_ends_the_call_ends_the_list() {
        let control = Recording::default();
        let actions = [
            CallAction::Transfer {
                to: "+15550199".into(),
            },
            CallAction::HangUp { reason: "x".into() },
        ];
        let outcome = carry_out(&control, "CA1", &actions, quiet(), Duration::ZERO).await;
        assert_eq!(
            outcome,
            ActionsOutcome::Ended(EndReason::Transferred {
                to: "+15550199".into()
            })
        );
        assert_eq!(*control.requests.lock().unwrap(), ["transfer +15550199"]);
    }

    #[tokio::test]
    async fn when_every_action_fails_the_model_is_told_each_reason() {
        let control = Recording {
            refuse: vec!["+15550199", "+15550198"],
            ..Recording::default()
        };
        let actions = [
            CallAction::Transfer {
                to: "+15550199".into(),
            },
            CallAction::Transfer {
                to: "+15550198".into(),
            },
        ];
        let outcome = carry_out(&control, "CA1", &actions, quiet(), Duration::ZERO).await;
        assert_eq!(outcome, ActionsOutcome::Failed("refused; refused".into()));
    }
}
