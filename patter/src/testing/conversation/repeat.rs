//! [`repeat`]: a scenario run several times, with its pass rate. Models are not
//! deterministic; one pass proves little, and one failure may be noise.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

tokio::task_local! {
    /// Set by `openai_from_env` when it skips, inside a run of [`repeat`].
    static SKIPPED: Arc<AtomicBool>;
}

/// Notes, inside a run of [`repeat`], that the run is skipped.
pub(super) fn note_skipped() {
    let _ = SKIPPED.try_with(|skipped| skipped.store(true, Ordering::SeqCst));
}

/// How the runs of a scenario went.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RepeatReport {
    /// How many times it ran.
    pub runs: usize,
    /// How many runs passed.
    pub passed: usize,
    /// How many runs were skipped ([`Conversation::openai_from_env`] without a key): they
    /// count as neither passed nor failed.
    ///
    /// [`Conversation::openai_from_env`]: super::Conversation::openai_from_env
    pub skipped: usize,
    /// Each failed run's message, with its run number (from 1).
    pub failures: Vec<(usize, String)>,
}

impl RepeatReport {
    /// The share of the runs that ran that passed, 0.0 to 1.0 (1.0 when none ran).
    pub fn pass_rate(&self) -> f64 {
        let ran = self.runs - self.skipped;
        if ran == 0 {
            return 1.0;
        }
        self.passed as f64 / ran as f64
    }

    /// Fails the test, with every failure's message, if fewer than `min` of the runs
    /// passed (`0.8` for 80 %).
    #[track_caller]
    pub fn assert_pass_rate(&self, min: f64) {
        if self.pass_rate() < min {
            panic!(
                "{self}\nwanted a pass rate of at least {:.0} %",
                min * 100.0
            );
        }
    }
}

impl fmt::Display for RepeatReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.skipped == self.runs && self.runs > 0 {
            return write!(f, "all {} runs skipped (no OPENAI_API_KEY)", self.runs);
        }
        write!(
            f,
            "{}/{} runs passed ({:.0} %)",
            self.passed,
            self.runs - self.skipped,
            self.pass_rate() * 100.0
        )?;
        if self.skipped > 0 {
            write!(f, ", {} skipped", self.skipped)?;
        }
        for (run, message) in &self.failures {
            write!(f, "\nrun {run} failed: {message}")?;
        }
        Ok(())
    }
}

/// Runs `scenario` `runs` times, one after the other (each on its own task, so a failed
/// expectation fails that run only), prints the report, and returns it.
///
/// ```no_run
/// # async fn doc() {
/// use patter::testing::{Conversation, repeat};
/// # #[patter::agent(system_prompt = "You help with orders.")]
/// # struct CustomerService;
///
/// let report = repeat(5, || async {
///     let Some(mut conv) = Conversation::openai_from_env(CustomerService).await else { return };
///     conv.user_says("Where is my order?").await.expect().no_tool_call();
/// })
/// .await;
/// report.assert_pass_rate(0.8);
/// # }
/// ```
pub async fn repeat<F, Fut>(runs: usize, scenario: F) -> RepeatReport
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut report = RepeatReport {
        runs,
        passed: 0,
        skipped: 0,
        failures: Vec::new(),
    };
    for run in 1..=runs {
        let skipped = Arc::new(AtomicBool::new(false));
        let ran = tokio::spawn(SKIPPED.scope(Arc::clone(&skipped), scenario()));
        match ran.await {
            Ok(()) if skipped.load(Ordering::SeqCst) => report.skipped += 1,
            Ok(()) => report.passed += 1,
            Err(e) => {
                let message = if e.is_panic() {
                    panic_message(e.into_panic())
                } else {
                    "the run was cancelled".to_owned()
                };
                report.failures.push((run, message));
            }
        }
    }
    println!("{report}");
    report
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(text) => *text,
        Err(payload) => match payload.downcast::<&'static str>() {
            Ok(text) => (*text).to_owned(),
            Err(_) => "the run panicked".to_owned(),
        },
    }
}
