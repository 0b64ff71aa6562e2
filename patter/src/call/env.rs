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
