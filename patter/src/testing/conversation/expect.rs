//! One turn of a [`Conversation`](super::Conversation) and the expectations about it.
//!
//! Expectations walk the turn's events in order (tool calls, their outputs, messages) with
//! a cursor: `tool_called` moves it past the next tool call, `reply_matches` past the next
//! message. A failed expectation panics with what the turn did instead.

use std::fmt::Write as _;

use super::judge::{Judge, Verdict};
use crate::JsonValue;
use crate::call::{EndReason, TextEvent, TurnMetrics};

/// What the agent did in answer to one thing the caller said.
#[derive(Debug, Clone)]
pub struct Turn {
    said: String,
    events: Vec<TextEvent>,
    metrics: Option<TurnMetrics>,
    /// The conversation up to the end of this turn, for the judge.
    conversation: Vec<TextEvent>,
    judge: Option<Judge>,
}

impl Turn {
    pub(super) fn new(
        said: &str,
        events: Vec<TextEvent>,
        metrics: Option<TurnMetrics>,
        conversation: Vec<TextEvent>,
        judge: Option<Judge>,
    ) -> Self {
        Turn {
            said: said.to_owned(),
            events,
            metrics,
            conversation,
            judge,
        }
    }

    /// The turn's events: tool calls, tool results, messages, errors, and the end of the
    /// call if it ended in this turn.
    pub fn events(&self) -> &[TextEvent] {
        &self.events
    }

    /// Everything the agent said in the turn, joined by blank lines.
    pub fn reply(&self) -> String {
        self.messages().collect::<Vec<_>>().join("\n\n")
    }

    fn messages(&self) -> impl Iterator<Item = &str> {
        self.events.iter().filter_map(|e| match e {
            TextEvent::Assistant { text, .. } => Some(text.as_str()),
            _ => None,
        })
    }

    /// The turn's timings, if it ended normally (not by the end of the call).
    pub fn metrics(&self) -> Option<&TurnMetrics> {
        self.metrics.as_ref()
    }

    /// Whether the call ended in this turn, and why.
    pub fn ended(&self) -> Option<&EndReason> {
        self.events.iter().find_map(|e| match e {
            TextEvent::Ended { reason } => Some(reason),
            _ => None,
        })
    }

    /// Expectations about the turn, from its start.
    pub fn expect(&self) -> TurnExpect<'_> {
        TurnExpect {
            turn: self,
            next: 0,
            call: None,
        }
    }

    /// Asks the judge whether the conversation so far does what `intent` says; fails the
    /// test with the judge's reason if not.
    ///
    /// # Panics
    /// If the judge says no, or cannot be asked (no judge set, or its request failed).
    pub async fn judge(&self, intent: &str) -> Verdict {
        match self.try_judge(intent).await {
            Ok(verdict) if verdict.pass => verdict,
            Ok(verdict) => panic!(
                "the judge found the agent did not {intent:?}: {}\nthe conversation:\n{}",
                verdict.reason,
                transcript(&self.conversation)
            ),
            Err(e) => panic!("the judge could not be asked: {e}"),
        }
    }

    /// The judge's verdict on `intent`, pass or fail, without failing the test.
    pub async fn try_judge(&self, intent: &str) -> Result<Verdict, super::JudgeError> {
        match &self.judge {
            Some(judge) => judge.verdict(&transcript(&self.conversation), intent).await,
            None => Err(super::JudgeError::NotSet),
        }
    }

    #[track_caller]
    fn fail(&self, expected: &str, instead: &str) -> ! {
        panic!(
            "expected {expected}, but {instead}; after the caller said {:?} the turn went:\n{}",
            self.said,
            describe(&self.events)
        )
    }
}

/// A cursor over a turn's events; see [`Turn::expect`]. Each expectation is checked as it
/// is called and returns the cursor, so they chain.
#[derive(Debug, Clone, Copy)]
pub struct TurnExpect<'t> {
    turn: &'t Turn,
    /// The first event not yet walked past.
    next: usize,
    /// The tool call `with_args…`, `succeeded` and `failed_with` look at.
    call: Option<usize>,
}

impl TurnExpect<'_> {
    fn rest(&self) -> impl Iterator<Item = (usize, &TextEvent)> {
        self.turn.events.iter().enumerate().skip(self.next)
    }

    /// The next tool call is `name`. Messages and outputs before it are passed over.
    #[track_caller]
    pub fn tool_called(mut self, name: &str) -> Self {
        let found = self.rest().find_map(|(i, e)| match e {
            TextEvent::ToolCall { name: called, .. } => Some((i, called)),
            _ => None,
        });
        match found {
            Some((i, called)) if called == name => {
                self.next = i + 1;
                self.call = Some(i);
                self
            }
            Some((_, called)) => self.turn.fail(
                &format!("a call to {name}"),
                &format!("the next tool call was {called}"),
            ),
            None => self.turn.fail(
                &format!("a call to {name}"),
                "no tool was called after that point",
            ),
        }
    }

    /// No tool is called from here to the end of the turn.
    #[track_caller]
    pub fn no_tool_call(self) -> Self {
        if let Some((_, TextEvent::ToolCall { name, .. })) = self
            .rest()
            .find(|(_, e)| matches!(e, TextEvent::ToolCall { .. }))
        {
            self.turn
                .fail("no tool call", &format!("{name} was called"));
        }
        self
    }

    fn arguments(&self, what: &str) -> (&str, JsonValue) {
        let Some(TextEvent::ToolCall {
            name, arguments, ..
        }) = self.call.and_then(|i| self.turn.events.get(i))
        else {
            self.turn.fail(
                what,
                "no tool call was expected before it (use tool_called first)",
            )
        };
        let parsed = serde_json::from_str(arguments)
            .unwrap_or_else(|_| JsonValue::String(arguments.clone()));
        (name, parsed)
    }

    /// The tool call just expected has these arguments, exactly.
    #[track_caller]
    pub fn with_args(self, expected: JsonValue) -> Self {
        let what = format!("the arguments {expected}");
        let (name, actual) = self.arguments(&what);
        if actual != expected {
            self.turn
                .fail(&what, &format!("{name} was called with {actual}"));
        }
        self
    }

    /// The tool call just expected has at least these arguments: each key of `expected`
    /// (in nested objects too) is there with the same value; other keys may be too.
    #[track_caller]
    pub fn with_args_subset(self, expected: JsonValue) -> Self {
        let what = format!("arguments including {expected}");
        let (name, actual) = self.arguments(&what);
        if !is_subset(&expected, &actual) {
            self.turn
                .fail(&what, &format!("{name} was called with {actual}"));
        }
        self
    }

    fn output(&self, what: &str) -> (&str, &str, bool) {
        let Some(TextEvent::ToolCall { call_id, name, .. }) =
            self.call.and_then(|i| self.turn.events.get(i))
        else {
            self.turn.fail(
                what,
                "no tool call was expected before it (use tool_called first)",
            )
        };
        let output = self.turn.events.iter().find_map(|e| match e {
            TextEvent::ToolResult {
                call_id: id,
                output,
                ok,
                ..
            } if id == call_id => Some((output.as_str(), *ok)),
            _ => None,
        });
        match output {
            Some((output, ok)) => (name, output, ok),
            None => self
                .turn
                .fail(what, &format!("{name} never finished in this turn")),
        }
    }

    /// The tool call just expected returned a result (not an error).
    #[track_caller]
    pub fn succeeded(self) -> Self {
        let (name, output, ok) = self.output("the tool call to succeed");
        if !ok {
            self.turn.fail(
                "the tool call to succeed",
                &format!("{name} failed with {output}"),
            );
        }
        self
    }

    /// The tool call just expected failed with this error type (`invalid_arguments`,
    /// `timeout`, `failed`, …: the `error.type` the model was handed).
    #[track_caller]
    pub fn failed_with(self, error_type: &str) -> Self {
        let what = format!("the tool call to fail with {error_type}");
        let (name, output, ok) = self.output(&what);
        let actual = serde_json::from_str::<JsonValue>(output)
            .ok()
            .and_then(|v| v["error"]["type"].as_str().map(str::to_owned));
        if ok || actual.as_deref() != Some(error_type) {
            self.turn.fail(&what, &format!("{name} returned {output}"));
        }
        self
    }

    /// The next thing the agent says satisfies `check`.
    #[track_caller]
    pub fn reply_matches(mut self, check: impl Fn(&str) -> bool) -> Self {
        let found = self.rest().find_map(|(i, e)| match e {
            TextEvent::Assistant { text, .. } => Some((i, text)),
            _ => None,
        });
        match found {
            Some((i, text)) if check(text) => {
                self.next = i + 1;
                self
            }
            Some((_, text)) => self
                .turn
                .fail("a reply that matches", &format!("the agent said {text:?}")),
            None => self
                .turn
                .fail("a reply", "the agent said nothing after that point"),
        }
    }

    /// The next thing the agent says contains `text` (ignoring case).
    #[track_caller]
    pub fn reply_contains(mut self, text: &str) -> Self {
        let wanted = text.to_lowercase();
        let expected = format!("a reply containing {text:?}");
        let found = self.rest().find_map(|(i, e)| match e {
            TextEvent::Assistant { text, .. } => Some((i, text)),
            _ => None,
        });
        match found {
            Some((i, said)) if said.to_lowercase().contains(&wanted) => {
                self.next = i + 1;
                self
            }
            Some((_, said)) => self
                .turn
                .fail(&expected, &format!("the agent said {said:?}")),
            None => self
                .turn
                .fail(&expected, "the agent said nothing after that point"),
        }
    }

    /// The call ended in this turn (a hang-up or transfer by the agent, say).
    #[track_caller]
    pub fn call_ended(self) -> Self {
        if self.turn.ended().is_none() {
            self.turn.fail("the call to end", "it went on");
        }
        self
    }
}

/// Whether every key and value of `expected` is in `actual`.
fn is_subset(expected: &JsonValue, actual: &JsonValue) -> bool {
    match (expected, actual) {
        (JsonValue::Object(expected), JsonValue::Object(actual)) => expected
            .iter()
            .all(|(k, v)| actual.get(k).is_some_and(|a| is_subset(v, a))),
        _ => expected == actual,
    }
}

/// A turn's events, numbered, one per line.
pub(super) fn describe(events: &[TextEvent]) -> String {
    if events.is_empty() {
        return "    (nothing)".to_owned();
    }
    let mut out = String::new();
    for (i, event) in events.iter().enumerate() {
        let line = match event {
            TextEvent::Caller { text } => format!("the caller said {text:?}"),
            TextEvent::Assistant { text, .. } => format!("the agent said {text:?}"),
            TextEvent::ToolCall {
                name, arguments, ..
            } => format!("tool call {name} {arguments}"),
            TextEvent::ToolResult {
                name, output, ok, ..
            } => {
                let how = if *ok { "returned" } else { "failed with" };
                format!("{name} {how} {output}")
            }
            TextEvent::Error { message, .. } => format!("engine error: {message}"),
            TextEvent::Ended { reason } => format!("the call ended: {reason:?}"),
            TextEvent::TurnEnded(_) | TextEvent::AssistantDelta { .. } => continue,
        };
        let _ = writeln!(out, "    {}. {line}", i + 1);
    }
    out.trim_end().to_owned()
}

/// The conversation's messages and tool calls, one per line, for the judge.
pub(super) fn transcript(events: &[TextEvent]) -> String {
    let mut out = String::new();
    for event in events {
        let _ = match event {
            TextEvent::Caller { text } => writeln!(out, "caller: {text}"),
            TextEvent::Assistant { text, .. } => writeln!(out, "agent: {text}"),
            TextEvent::ToolCall {
                name, arguments, ..
            } => writeln!(out, "(the agent called {name} with {arguments})"),
            TextEvent::ToolResult { name, output, .. } => {
                writeln!(out, "({name} returned {output})")
            }
            TextEvent::Ended { reason } => writeln!(out, "(the call ended: {reason:?})"),
            _ => Ok(()),
        };
    }
    out
}
