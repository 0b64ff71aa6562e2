//! Setting up a simulated call: the call's data, limits, hooks, stand-ins for tools, and
//! how the engine and the phone network behave.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::engine::ScriptedEngine;
use super::phone::{SimControl, SimLeg};
use super::state::Shared;
use super::{TaskGone, TestCall};
use crate::JsonValue;
use crate::agent::{Agent, AgentSpec};
use crate::call::{CallEnv, Hooks};
use crate::config::Limits;
use crate::engine::EngineKind;
use crate::tool::{
    CallContext, Direction, Invocation, Tool, ToolDefinition, ToolError, ToolOutput, ToolSet,
    ToolSetError,
};

/// A silence no test reaches: stall detection off.
const NEVER: std::time::Duration = std::time::Duration::from_secs(100 * 365 * 24 * 3600);

/// Sets up a [`TestCall`]; [`TestCall::new`] starts one.
#[must_use = "a test call runs once `.start().await` is called"]
pub struct TestCallBuilder {
    agent: Box<dyn FnOnce() -> Result<AgentSpec, ToolSetError> + Send>,
    env: Vec<(String, String)>,
    call_id: String,
    caller: String,
    callee: String,
    direction: Direction,
    parameters: Vec<(String, String)>,
    limits: Limits,
    detect_stalls: bool,
    hooks: Hooks,
    system_tools: bool,
    replacements: Vec<Replacement>,
    engine_unavailable: Option<String>,
    refuse_hang_up: Option<String>,
    refuse_transfer: Option<String>,
    expect_within: Duration,
}

impl TestCall {
    /// A simulated call of `agent`: from `+15550100` to `+15550199`, inbound, with the
    /// default limits, the system tools, and no hooks.
    // `TestCall::new(agent)…start()` reads as what it does; the builder is a detail.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(agent: impl Agent) -> TestCallBuilder {
        let agent = Arc::new(agent);
        TestCallBuilder {
            agent: Box::new(move || agent.spec()),
            env: Vec::new(),
            call_id: "call_test".to_owned(),
            caller: "+15550100".to_owned(),
            callee: "+15550199".to_owned(),
            direction: Direction::Inbound,
            parameters: Vec::new(),
            limits: Limits::default(),
            detect_stalls: false,
            hooks: Hooks::default(),
            system_tools: true,
            replacements: Vec::new(),
            engine_unavailable: None,
            refuse_hang_up: None,
            refuse_transfer: None,
            expect_within: Duration::from_secs(60),
        }
    }
}

impl TestCallBuilder {
    /// The call's id (default `call_test`).
    pub fn call_id(mut self, id: impl Into<String>) -> Self {
        self.call_id = id.into();
        self
    }

    /// The caller's number (default `+15550100`).
    pub fn caller(mut self, number: impl Into<String>) -> Self {
        self.caller = number.into();
        self
    }

    /// The number called (default `+15550199`).
    pub fn callee(mut self, number: impl Into<String>) -> Self {
        self.callee = number.into();
        self
    }

    /// Which way the call goes (default inbound).
    pub fn direction(mut self, direction: Direction) -> Self {
        self.direction = direction;
        self
    }

    /// One of the call's custom parameters, as a carrier passes them.
    pub fn parameter(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.parameters.push((name.into(), value.into()));
        self
    }

    /// An environment variable as the agent's webhook tools read it when they are made
    /// (`url_env`, `secret_env`), for this call only: the process environment is untouched.
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Treats the scripted engine like a real one that may stall: silent for
    /// [`Limits::engine_stall`] while it owes an answer, it is given up, and the call ends
    /// with the apology (the scripted engine opens once). Off by default: a scripted engine
    /// says only what the test scripts, and a test may leave it silent for an hour.
    pub fn detect_stalls(mut self) -> Self {
        self.detect_stalls = true;
        self
    }

    /// The limits (call duration, goodbye wait, tool result size…).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The hooks, as a server would run them:
    /// `.hooks(Hooks::new().on_transcript(|_, turn| …))`.
    pub fn hooks(mut self, hooks: Hooks) -> Self {
        self.hooks = hooks;
        self
    }

    /// Whether `end_call` and `transfer_call` are added (default true).
    pub fn system_tools(mut self, enabled: bool) -> Self {
        self.system_tools = enabled;
        self
    }

    /// Puts `tool` in place of the agent's tool of the same name (a webhook tool pointed at
    /// a local server, say). A tool that makes real network requests needs a test in real
    /// time (`#[tokio::test]`, not paused): paused time jumps past its timeouts while it
    /// waits on the socket.
    ///
    /// # Panics
    /// At [`start`](Self::start), if the agent has no tool of that name.
    pub fn replace_tool(mut self, tool: impl Tool) -> Self {
        self.replacements.push(Replacement::Tool(Arc::new(tool)));
        self
    }

    /// Puts a stub in place of the agent's tool `name`: it gets the model's arguments as JSON
    /// (once they pass the tool's own argument checks) and its answer goes to the model. The
    /// tool's description, schema and timeout stay.
    ///
    /// # Panics
    /// At [`start`](Self::start), if the agent has no tool of that name.
    pub fn stub_tool(
        mut self,
        name: &str,
        answer: impl Fn(JsonValue) -> JsonValue + Send + Sync + 'static,
    ) -> Self {
        self.replacements.push(Replacement::Stub {
            name: name.to_owned(),
            answer: Arc::new(answer),
        });
        self
    }

    /// The engine refuses the session, as an unreachable or failing engine does.
    pub fn engine_unavailable(mut self, message: impl Into<String>) -> Self {
        self.engine_unavailable = Some(message.into());
        self
    }

    /// The phone network refuses to hang up, with this message.
    pub fn refuse_hang_up(mut self, message: impl Into<String>) -> Self {
        self.refuse_hang_up = Some(message.into());
        self
    }

    /// The phone network refuses transfers, with this message.
    pub fn refuse_transfer(mut self, message: impl Into<String>) -> Self {
        self.refuse_transfer = Some(message.into());
        self
    }

    /// How long (in test time) an expectation waits before it fails (default 60 s).
    pub fn expect_within(mut self, wait: Duration) -> Self {
        self.expect_within = wait;
        self
    }

    /// Starts the call: `on_call_start` runs, the engine is opened (and, as a real engine
    /// does, confirms its configuration at once, so the first message is asked for).
    ///
    /// # Panics
    /// If the agent's tools are invalid, or a replaced tool does not exist.
    pub async fn start(self) -> TestCall {
        let vars: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let agent = match crate::tool::webhook::with_env(&vars, self.agent) {
            Ok(agent) => agent,
            Err(e) => panic!("the agent is invalid: {e}"),
        };
        let agent = with_replacements(agent, self.replacements);
        let shared = Shared::new();
        let (engine_tx, engine_rx) = mpsc::unbounded_channel();
        let (caller_tx, caller_rx) = mpsc::unbounded_channel();
        let (shutdown, shutdown_rx) = watch::channel(false);
        let control = SimControl {
            shared: Arc::clone(&shared),
            refuse_hang_up: self.refuse_hang_up,
            refuse_transfer: self.refuse_transfer,
        };
        let mut limits = self.limits;
        if !self.detect_stalls {
            // The scripted engine says only what the test scripts: its silence is no stall.
            limits.engine_stall = NEVER;
        }
        let env = CallEnv::new(agent)
            .hooks(self.hooks)
            .limits(limits)
            .system_tools(self.system_tools)
            .control(Arc::new(control))
            .shutdown_signal(shutdown_rx);
        // The scripted engine plays the agent's own engine: its default model shows in the
        // setup, as on a real call.
        let default_model = match env.agent().engine {
            EngineKind::GptLive => crate::engine::openai_live::DEFAULT_MODEL,
            _ => crate::engine::openai_realtime::DEFAULT_MODEL,
        };
        let engine = ScriptedEngine {
            default_model,
            shared: Arc::clone(&shared),
            frames: Mutex::new(Some(engine_rx)),
            unavailable: self.engine_unavailable,
        };
        let leg = SimLeg::new(Arc::clone(&shared), caller_rx);
        let context = CallContext::builder(self.call_id)
            .caller(self.caller)
            .callee(self.callee)
            .direction(self.direction)
            .parameters(self.parameters)
            .build();
        let on_end = Arc::clone(&shared);
        let task = tokio::spawn(async move {
            // Marks the task gone however it ends, so that no wait outlasts a panic.
            let _gone = TaskGone(Arc::clone(&on_end));
            let summary = env.run(&engine, leg, context).await;
            on_end.update(|s| {
                s.push_event(format!("call ended: {:?}", summary.reason));
                s.summary = Some(summary.clone());
            });
            summary
        });
        let call = TestCall {
            shared,
            engine: engine_tx,
            caller: Some(caller_tx),
            task: Some(task),
            shutdown,
            started: Instant::now(),
            engine_frames: 0,
            caller_frames: 0,
            next_id: 0,
            responds_seen: 0,
            expect_within: self.expect_within,
        };
        call.wait("the call to open the engine", |s| {
            s.setup.as_ref().map(|_| ())
        })
        .await;
        call
    }
}

pub(super) type Answer = Arc<dyn Fn(JsonValue) -> JsonValue + Send + Sync>;

/// A tool put in place of one of the agent's.
pub(super) enum Replacement {
    Tool(Arc<dyn Tool>),
    Stub { name: String, answer: Answer },
}

impl Replacement {
    fn name(&self) -> &str {
        match self {
            Replacement::Tool(tool) => &tool.definition().name,
            Replacement::Stub { name, .. } => name,
        }
    }

    /// The tool in place of `original`.
    fn into_tool(self, original: &Arc<dyn Tool>) -> Arc<dyn Tool> {
        match self {
            Replacement::Tool(tool) => tool,
            Replacement::Stub { answer, .. } => Arc::new(Stub {
                original: Arc::clone(original),
                answer,
            }),
        }
    }
}

/// The agent with each replacement in place of its tool of the same name.
pub(super) fn with_replacements(mut agent: AgentSpec, replacements: Vec<Replacement>) -> AgentSpec {
    if replacements.is_empty() {
        return agent;
    }
    let mut replacements: Vec<Option<Replacement>> = replacements.into_iter().map(Some).collect();
    let mut builder = ToolSet::builder();
    for definition in agent.tools.definitions() {
        let name = &definition.name;
        let replacement = replacements
            .iter_mut()
            .find(|r| r.as_ref().is_some_and(|r| r.name() == name))
            .and_then(Option::take);
        builder = match (replacement, agent.tools.get(name)) {
            (Some(replacement), Some(own)) => builder.shared(replacement.into_tool(own)),
            (None, Some(own)) => builder.shared(Arc::clone(own)),
            (_, None) => builder,
        };
    }
    if let Some(missing) = replacements.into_iter().flatten().next() {
        panic!(
            "the agent has no tool named `{}` to replace",
            missing.name()
        );
    }
    agent.tools = match builder.build() {
        Ok(tools) => tools.with_max_result_bytes(agent.tools.max_result_bytes()),
        Err(e) => panic!("the replaced tools are invalid: {e}"),
    };
    agent
}

/// A stand-in tool: a closure from the model's JSON arguments to its answer, with the
/// replaced tool's description, schema, timeout and argument checks.
struct Stub {
    original: Arc<dyn Tool>,
    answer: Answer,
}

impl Tool for Stub {
    fn definition(&self) -> &ToolDefinition {
        self.original.definition()
    }

    fn timeout(&self) -> Duration {
        self.original.timeout()
    }

    fn check_arguments(&self, arguments: &str) -> Result<(), ToolError> {
        self.original.check_arguments(arguments)
    }

    fn call<'a>(
        &'a self,
        invocation: Invocation<'a>,
    ) -> futures_util::future::BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            self.original.check_arguments(invocation.arguments)?;
            let arguments = if invocation.arguments.trim().is_empty() {
                JsonValue::Object(Default::default())
            } else {
                serde_json::from_str(invocation.arguments)
                    .map_err(|e| ToolError::InvalidArguments(e.to_string()))?
            };
            Ok(ToolOutput::text((self.answer)(arguments).to_string()))
        })
    }
}
