//! What a tool knows about the phone call it runs in.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// Which way the call was placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Direction {
    /// A caller dialled the agent's number.
    #[default]
    Inbound,
    /// The agent placed the call.
    Outbound,
}

impl Direction {
    /// `"inbound"` or `"outbound"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The call a tool runs in: who called whom, and the call's custom parameters.
///
/// It is what getpatter hands its handlers as the `context` dict, typed. Cloning is one
/// reference-count increment, so tools may keep a copy on their own tasks.
///
/// Unit tests of a tool build one with [`CallContext::builder`]:
///
/// ```
/// use patter::CallContext;
///
/// let ctx = CallContext::builder("CA0123456789abcdef0123456789abcdef")
///     .caller("+15550100")
///     .callee("+15550199")
///     .parameter("customer_tier", "gold")
///     .build();
/// assert_eq!(ctx.caller(), "+15550100");
/// assert_eq!(ctx.parameter("customer_tier"), Some("gold"));
/// ```
#[derive(Clone)]
pub struct CallContext {
    inner: Arc<Inner>,
}

struct Inner {
    call_id: String,
    caller: String,
    callee: String,
    stream_id: String,
    direction: Direction,
    parameters: BTreeMap<String, String>,
    keypad: super::keypad::Keypad,
}

impl CallContext {
    /// Where the call's keys go while a tool collects them.
    pub(crate) fn keypad(&self) -> &super::keypad::Keypad {
        &self.inner.keypad
    }

    /// Starts a context for the call with this id (the carrier's id of the call).
    pub fn builder(call_id: impl Into<String>) -> CallContextBuilder {
        CallContextBuilder {
            inner: Inner {
                call_id: call_id.into(),
                caller: String::new(),
                callee: String::new(),
                stream_id: String::new(),
                direction: Direction::Inbound,
                parameters: BTreeMap::new(),
                keypad: Default::default(),
            },
        }
    }

    /// The call's id, as the carrier knows it.
    pub fn call_id(&self) -> &str {
        &self.inner.call_id
    }

    /// The caller's number, E.164.
    pub fn caller(&self) -> &str {
        &self.inner.caller
    }

    /// The number that was called, E.164.
    pub fn callee(&self) -> &str {
        &self.inner.callee
    }

    /// The carrier's id of the call's media stream; empty outside a live stream.
    pub fn stream_id(&self) -> &str {
        &self.inner.stream_id
    }

    /// Whether the call came in or went out.
    pub fn direction(&self) -> Direction {
        self.inner.direction
    }

    /// One of the call's custom parameters.
    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.inner.parameters.get(name).map(String::as_str)
    }

    /// All of the call's custom parameters, sorted by name.
    pub fn parameters(&self) -> &BTreeMap<String, String> {
        &self.inner.parameters
    }
}

impl fmt::Debug for CallContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

/// Builds a [`CallContext`]; see [`CallContext::builder`].
#[derive(Debug)]
pub struct CallContextBuilder {
    inner: Inner,
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Parameter values may carry tokens or personal data: names only.
        f.debug_struct("CallContext")
            .field("call_id", &self.call_id)
            .field("caller", &self.caller)
            .field("callee", &self.callee)
            .field("stream_id", &self.stream_id)
            .field("direction", &self.direction)
            .field("parameters", &self.parameters.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl CallContextBuilder {
    /// The caller's number.
    pub fn caller(mut self, caller: impl Into<String>) -> Self {
        self.inner.caller = caller.into();
        self
    }

    /// The called number.
    pub fn callee(mut self, callee: impl Into<String>) -> Self {
        self.inner.callee = callee.into();
        self
    }

    /// The carrier's id of the call's media stream.
    pub fn stream_id(mut self, stream_id: impl Into<String>) -> Self {
        self.inner.stream_id = stream_id.into();
        self
    }

    /// The call's direction.
    pub fn direction(mut self, direction: Direction) -> Self {
        self.inner.direction = direction;
        self
    }

    /// Adds one custom parameter.
    pub fn parameter(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.inner.parameters.insert(name.into(), value.into());
        self
    }

    /// Adds custom parameters.
    pub fn parameters<K, V>(mut self, parameters: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        self.inner
            .parameters
            .extend(parameters.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// The finished context.
    pub fn build(self) -> CallContext {
        CallContext {
            inner: Arc::new(self.inner),
        }
    }
}
