//! [`repeat`]: a scenario run several times, with its pass rate. Models are not
//! deterministic; one pass proves little, and one failure may be noise.

use std::fmt;
use std::future::Future;

/// How the runs of a scenario went.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RepeatReport {
    /// How many times it ran.
    pub runs: usize,
    /// How many runs passed.
    pub passed: usize,
    /// Each failed run's message, with its run number (from 1).
    pub failures: Vec<(usize, String)>,
}

impl RepeatReport {
    /// The share of runs that passed, 0.0 to 1.0 (1.0 for no runs).
    pub fn pass_rate(&self) -> f64 {
        if self.runs == 0 {
            return 1.0;
        }
        self.passed as f64 / self.runs as f64
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
        write!(
            f,
            "{}/{} runs passed ({:.0} %)",
            self.passed,
            self.runs,
            self.pass_rate() * 100.0
        )?;
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
        failures: Vec::new(),
    };
    for run in 1..=runs {
        match tokio::spawn(scenario()).await {
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
