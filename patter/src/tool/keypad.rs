//! The caller's keypad as a tool sees it: [`CallContext::collect_digits`] takes the next
//! keys the caller presses (a PIN, an account number) for the tool alone. While a tool
//! collects, keys go to it, not to the model as text, and digits are never logged or put in
//! the transcript (the `on_dtmf` hook still sees each key).

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::mpsc;

use super::{CallContext, ToolError};

/// What a tool asks of the keypad: at most `max` keys, ending early at an end key, within a
/// time limit.
///
/// ```
/// use std::time::Duration;
/// use patter::tool::Digits;
///
/// let pin = Digits::up_to(4).ending_with('#').within(Duration::from_secs(15));
/// # let _ = pin;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digits {
    max: usize,
    end: Option<char>,
    within: Duration,
}

impl Digits {
    /// At most `max` keys (at least one), within 8 s (inside a tool's default 10 s), with
    /// no end key.
    pub fn up_to(max: usize) -> Self {
        Digits {
            max: max.max(1),
            end: None,
            within: Duration::from_secs(8),
        }
    }

    /// Stops early when the caller presses `key` (not part of the digits), like `#`.
    pub fn ending_with(mut self, key: char) -> Self {
        self.end = Some(key);
        self
    }

    /// How long the caller has, from the start. Give the tool a longer timeout
    /// (`#[patter::tool(timeout_secs = …)]`).
    pub fn within(mut self, time: Duration) -> Self {
        self.within = time;
        self
    }
}

/// Where a call's keys go while a tool collects them.
#[derive(Default)]
pub(crate) struct Keypad {
    collector: Mutex<Option<mpsc::UnboundedSender<char>>>,
}

impl Keypad {
    /// Whether a tool is collecting keys.
    pub(crate) fn is_collecting(&self) -> bool {
        let collector = self.collector.lock().unwrap_or_else(|p| p.into_inner());
        collector.as_ref().is_some_and(|tx| !tx.is_closed())
    }

    /// Hands `key` to a collecting tool; `false` if none is collecting.
    pub(crate) fn offer(&self, key: char) -> bool {
        let collector = self.collector.lock().unwrap_or_else(|p| p.into_inner());
        collector.as_ref().is_some_and(|tx| tx.send(key).is_ok())
    }
}

/// Stops the collection when the tool is done (or dropped by its timeout).
struct Collecting<'a>(&'a Keypad);

impl Drop for Collecting<'_> {
    fn drop(&mut self) {
        *self.0.collector.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

impl CallContext {
    /// Takes the next keys the caller presses, for this tool alone: up to the number
    /// asked, the end key, or the time limit. The model does not see them, and they are
    /// never logged. An error if the caller pressed nothing in time, or another tool of the
    /// call is already collecting.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use patter::tool::Digits;
    /// use patter::{CallContext, ToolError};
    ///
    /// /// Check the caller's PIN. Ask them to type it and press #.
    /// #[patter::tool(timeout_secs = 30)]
    /// async fn check_pin(call: &CallContext) -> Result<String, ToolError> {
    ///     let pin = call
    ///         .collect_digits(Digits::up_to(6).ending_with('#').within(Duration::from_secs(20)))
    ///         .await?;
    ///     Ok(if pin == "1234" { "verified" } else { "wrong PIN" }.to_owned())
    /// }
    /// ```
    pub async fn collect_digits(&self, digits: Digits) -> Result<String, ToolError> {
        let keypad = self.keypad();
        let (tx, mut rx) = mpsc::unbounded_channel();
        {
            let mut collector = keypad.collector.lock().unwrap_or_else(|p| p.into_inner());
            if collector.as_ref().is_some_and(|c| !c.is_closed()) {
                return Err(ToolError::msg("another tool is already collecting keys"));
            }
            *collector = Some(tx);
        }
        let _collecting = Collecting(keypad);
        let now = tokio::time::Instant::now();
        // A limit too far to represent is no limit (the tool's own timeout still holds).
        let deadline = now
            .checked_add(digits.within)
            .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365));
        let mut keys = String::new();
        while keys.len() < digits.max {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(key)) if Some(key) == digits.end => break,
                Ok(Some(key)) => keys.push(key),
                Ok(None) | Err(_) => break,
            }
        }
        if keys.is_empty() {
            return Err(ToolError::msg("the caller pressed no keys in time"));
        }
        Ok(keys)
    }
}
