//! [`CallEnv`]: everything a call needs besides its two legs, as one narrow value.

use std::fmt;
use std::sync::Arc;

use tokio::sync::watch;

use super::{CallSummary, Hooks};
use crate::agent::AgentSpec;
use crate::carrier::{CallControl, CarrierLeg, NoCallControl};
use crate::config::Limits;
use crate::engine::Engine;
use crate::tool::CallContext;

/// What a call runs with besides its two legs: the agent, its limits and hooks, whether the
/// system tools (`end_call`, `transfer_call`) are added, call control, and the server's
/// shutdown signal.
///
/// A server builds one and runs every admitted call through [`CallEnv::run`]; so can a
/// carrier or an engine of your own, and `patter::testing` runs its in-memory calls
/// the same way.
#[derive(Clone)]
pub struct CallEnv {
    pub(crate) agent: AgentSpec,
    pub(crate) hooks: Hooks,
    pub(crate) limits: Limits,
    pub(crate) system_tools: bool,
    pub(crate) control: Arc<dyn CallControl>,
    pub(crate) shutdown: Option<watch::Receiver<bool>>,
    /// Settings for this call that `on_call_start` may still change (a dialled call's).
    pub(crate) preset: super::CallSetup,
    /// What a call's usage and minutes cost.
    pub(crate) prices: super::Prices,
    /// What traces may say about a call.
    pub(crate) trace: TraceSettings,
    /// What the caller hears when the engine cannot take or go on with the call.
    pub(crate) outage: crate::carrier::Outage,
}

/// What a call's spans may carry beyond ids, timings and outcomes. By default: nothing
/// about the caller and nothing they said.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct TraceSettings {
    /// When set, `call.caller_hash` is the caller's number hashed with this key
    /// (HMAC-SHA256, 16 hex digits): calls from one number can be grouped, the number not
    /// read back.
    pub caller_hash_key: Option<crate::Secret>,
    /// When set, each turn's words are events of its span.
    pub transcripts: bool,
}

impl TraceSettings {
    /// Nothing about the caller.
    pub fn new() -> Self {
        TraceSettings::default()
    }

    /// Adds `call.caller_hash`, keyed with `key`.
    pub fn caller_hash_key(mut self, key: impl Into<String>) -> Self {
        self.caller_hash_key = Some(crate::Secret::new(key.into()));
        self
    }

    /// Puts each turn's words in its span, as events.
    pub fn transcripts(mut self, on: bool) -> Self {
        self.transcripts = on;
        self
    }

    /// The caller's number, hashed with the key, if one is set.
    pub(crate) fn caller_hash(&self, caller: &str) -> Option<String> {
        let key = self.caller_hash_key.as_ref()?;
        let mac = crate::util::hmac_sha256_hex(key.expose().as_bytes(), &[caller.as_bytes()]);
        Some(mac[..16].to_owned())
    }
}

impl fmt::Debug for TraceSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TraceSettings")
            .field("caller_hash_key", &self.caller_hash_key.is_some())
            .field("transcripts", &self.transcripts)
            .finish()
    }
}

impl CallEnv {
    /// Calls of `agent`, with the default limits, no hooks, the system tools, no call
    /// control ([`NoCallControl`]) and no shutdown signal.
    pub fn new(agent: AgentSpec) -> Self {
        CallEnv {
            agent,
            hooks: Hooks::default(),
            limits: Limits::default(),
            system_tools: true,
            control: Arc::new(NoCallControl),
            shutdown: None,
            preset: super::CallSetup::default(),
            prices: super::Prices::defaults(),
            trace: TraceSettings::default(),
            outage: crate::carrier::Outage::default(),
        }
    }

    /// Sets the hooks.
    pub fn hooks(mut self, hooks: Hooks) -> Self {
        self.hooks = hooks;
        self
    }

    /// Sets the limits (the call reads `max_call_duration`, `goodbye_wait` and
    /// `max_tool_result_bytes`).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Whether `end_call` and `transfer_call` are added to the agent's tools (default true).
    pub fn system_tools(mut self, enabled: bool) -> Self {
        self.system_tools = enabled;
        self
    }

    /// How the call is hung up and transferred.
    pub fn control(mut self, control: Arc<dyn CallControl>) -> Self {
        self.control = control;
        self
    }

    /// Once `signal` turns `true`, calls in progress say goodbye and end
    /// ([`EndReason::Shutdown`](super::EndReason::Shutdown)).
    pub fn shutdown_signal(mut self, signal: watch::Receiver<bool>) -> Self {
        self.shutdown = Some(signal);
        self
    }

    /// Settings for the calls run with this value, applied before `on_call_start` (whose
    /// changes win): how a dialled call brings its own variables and first message.
    pub fn preset(mut self, setup: super::CallSetup) -> Self {
        self.preset = setup;
        self
    }

    /// The price table for each call's cost (default: [`Prices::defaults`](super::Prices::defaults)).
    pub fn prices(mut self, prices: super::Prices) -> Self {
        self.prices = prices;
        self
    }

    /// What the call's spans may carry about the caller (default: nothing).
    pub fn trace_settings(mut self, settings: TraceSettings) -> Self {
        self.trace = settings;
        self
    }

    /// What the caller hears (from the carrier itself) when the engine cannot be reached
    /// or fails: an apology, then a hang-up or a transfer (default: [`Outage::default`]).
    ///
    /// [`Outage::default`]: crate::carrier::Outage
    pub fn outage(mut self, outage: crate::carrier::Outage) -> Self {
        self.outage = outage;
        self
    }

    /// The agent.
    pub fn agent(&self) -> &AgentSpec {
        &self.agent
    }

    /// Runs one admitted call, from opening the engine session to `on_call_end`, and
    /// returns its summary. The call ends, cleanly and exactly once, when the caller's side
    /// stops or closes, a tool hangs up or transfers, the engine is lost or fails, the time
    /// limit's goodbye has played, or the shutdown signal's goodbye has.
    pub async fn run<E: Engine, C: CarrierLeg>(
        &self,
        engine: &E,
        leg: C,
        context: CallContext,
    ) -> CallSummary {
        super::session::run(self, engine, leg, context).await
    }
}

impl fmt::Debug for CallEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallEnv")
            .field("agent", &self.agent)
            .field("hooks", &self.hooks)
            .field("limits", &self.limits)
            .field("system_tools", &self.system_tools)
            .field("shutdown_signal", &self.shutdown.is_some())
            .finish_non_exhaustive()
    }
}
