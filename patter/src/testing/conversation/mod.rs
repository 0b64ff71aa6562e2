//! [`Conversation`]: your agent against the real model, in text, turn by turn.
//!
//! A [`TestCall`](super::TestCall) scripts the model; a `Conversation` asks it. It runs the
//! agent's prompt, tools and hooks on the engine real calls use, with text in place of
//! speech (see [`CallEnv::start_text`]), so it answers "does the model call my tool with the
//! right arguments when a caller says X?".
//!
//! ```no_run
//! use patter::json;
//! use patter::testing::Conversation;
//!
//! /// Arguments of get_order_status.
//! #[patter::args]
//! struct OrderId {
//!     /// The order ID, e.g. "ORD-123456".
//!     order_id: String,
//! }
//!
//! /// Look up an order's status.
//! #[patter::tool]
//! async fn get_order_status(args: OrderId) -> Result<String, patter::ToolError> {
//!     Ok(format!("order {} is shipped", args.order_id))
//! }
//!
//! #[patter::agent(
//!     system_prompt = "You help callers with their orders. Ask for the order ID.",
//!     tools(get_order_status)
//! )]
//! struct CustomerService;
//!
//! # async fn test() {
//! // Without OPENAI_API_KEY this prints why and returns: a CI without a key stays green.
//! let Some(mut conv) = Conversation::openai_from_env(CustomerService).await else { return };
//! conv.mock_tool("get_order_status", |_args| json!({ "status": "shipped" }));
//!
//! let turn = conv.user_says("Where is my order?").await;
//! turn.expect().no_tool_call().reply_matches(|text| text.contains("order ID"));
//!
//! let turn = conv.user_says("It's ORD-123456").await;
//! turn.expect()
//!     .tool_called("get_order_status")
//!     .with_args_subset(json!({ "order_id": "ORD-123456" }))
//!     .succeeded();
//! turn.judge("tells the caller the order has shipped").await;
//! # }
//! ```
//!
//! Models are not deterministic: [`repeat`] runs a scenario several times and reports how
//! often it passed.

mod expect;
mod judge;
mod repeat;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub use self::expect::{Turn, TurnExpect};
pub use self::judge::{Judge, JudgeError, Verdict};
pub use self::repeat::{RepeatReport, repeat};
use super::builder::{Replacement, with_replacements};
use crate::JsonValue;
use crate::agent::{Agent, AgentSpec};
use crate::call::{CallEnv, CallSummary, Hooks, TextCall, TextEvent};
use crate::config::{ConfigBuilder, LocalConfig};
use crate::deploy::{self, Engines};
use crate::engine::{Engine, EngineKind};
use crate::tool::ToolSetError;
use crate::tool::{CallContext, Direction};

/// How long one turn may take by default before the test fails.
const DEFAULT_TURN_TIMEOUT: Duration = Duration::from_secs(60);

/// Starts a text call on an engine of the test's own.
type Starter = Box<dyn FnOnce(CallEnv, CallContext) -> TextCall + Send>;

/// Makes the agent's spec (webhook tools read their settings then).
type MakeAgent = Box<dyn FnOnce() -> Result<AgentSpec, ToolSetError> + Send>;

/// The engine a conversation runs on.
enum EngineChoice {
    /// The one the deployment's agent runs on, built as the server builds it.
    Deployment(Box<LocalConfig>),
    /// One the test gave.
    Custom(Starter),
}

/// A conversation with your agent in text; see [`patter::testing`](crate::testing).
pub struct Conversation {
    agent: Option<MakeAgent>,
    engine: Option<EngineChoice>,
    env: Vec<(String, String)>,
    replacements: Vec<Replacement>,
    hooks: Hooks,
    limits: crate::config::Limits,
    system_tools: bool,
    caller: String,
    callee: String,
    parameters: BTreeMap<String, String>,
    judge: Option<Judge>,
    turn_timeout: Duration,
    call: Option<TextCall>,
    /// Every event so far, the greeting included: the judge reads the conversation.
    history: Vec<TextEvent>,
    greeting: Option<String>,
    ended: Option<crate::call::EndReason>,
}

impl fmt::Debug for Conversation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conversation")
            .field("started", &self.call.is_some())
            .field("events", &self.history.len())
            .finish_non_exhaustive()
    }
}

impl Conversation {
    /// A conversation on OpenAI Realtime with the settings of the environment
    /// (`OPENAI_API_KEY`, `OPENAI_REALTIME_URL`, `PATTER_MODEL`, …, as `console` reads them),
    /// and a [`Judge`] from the environment. Without `OPENAI_API_KEY` it prints one line
    /// saying the test is skipped and returns `None`.
    ///
    /// # Panics
    /// If a setting is malformed; at the first turn, if the agent is invalid.
    pub async fn openai_from_env(agent: impl Agent) -> Option<Conversation> {
        if std::env::var("OPENAI_API_KEY").map_or(true, |key| key.trim().is_empty()) {
            println!(
                "skipped: OPENAI_API_KEY is not set (this test talks to the real model; set it to run it)"
            );
            repeat::note_skipped();
            return None;
        }
        let config = match ConfigBuilder::from_env().build_local() {
            Ok(config) => config,
            Err(e) => panic!("the settings are invalid: {e}"),
        };
        let mut conversation = Conversation::with_config(agent, &config);
        conversation.judge = Judge::from_env();
        Some(conversation)
    }

    /// A conversation with explicit settings: the engine the deployment's agent runs on,
    /// built as the server builds it. No judge is set: see [`Conversation::judge_with`].
    pub fn with_config(agent: impl Agent, config: &LocalConfig) -> Conversation {
        let mut conversation =
            Conversation::build(agent, EngineChoice::Deployment(Box::new(config.clone())));
        conversation.limits = config.limits.clone();
        conversation.system_tools = config.system_tools;
        conversation
    }

    /// A conversation of `agent` on any engine that has a text mode.
    pub fn with_engine<E: Engine>(agent: impl Agent, engine: E) -> Conversation {
        Conversation::build(
            agent,
            EngineChoice::Custom(Box::new(move |env: CallEnv, ctx| {
                env.start_text(engine, ctx)
            })),
        )
    }

    fn build(agent: impl Agent, engine: EngineChoice) -> Conversation {
        let agent = Arc::new(agent);
        Conversation {
            agent: Some(Box::new(move || agent.spec())),
            engine: Some(engine),
            env: Vec::new(),
            replacements: Vec::new(),
            hooks: Hooks::default(),
            limits: crate::config::Limits::default(),
            system_tools: true,
            caller: "+15550100".to_owned(),
            callee: "+15550199".to_owned(),
            parameters: BTreeMap::new(),
            judge: None,
            turn_timeout: DEFAULT_TURN_TIMEOUT,
            call: None,
            history: Vec::new(),
            greeting: None,
            ended: None,
        }
    }

    /// An environment variable as the agent's webhook tools read it (`url_env`,
    /// `secret_env`), for this conversation only: nothing process-wide changes. A mocked
    /// webhook tool still needs its settings to be made.
    pub fn env(&mut self, name: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.before_start("env");
        self.env.push((name.into(), value.into()));
        self
    }

    fn before_start(&self, what: &str) {
        assert!(
            self.call.is_none(),
            "{what} must come before the conversation's first turn"
        );
    }

    /// Puts a mock in place of the agent's tool `name`: it gets the model's arguments as
    /// JSON (once they pass the tool's own checks) and its answer goes to the model. The
    /// tool's description and schema stay. Call it before the first turn.
    ///
    /// # Panics
    /// At the first turn, if the agent has no tool of that name; at once, after it.
    pub fn mock_tool(
        &mut self,
        name: &str,
        answer: impl Fn(JsonValue) -> JsonValue + Send + Sync + 'static,
    ) -> &mut Self {
        self.before_start("mock_tool");
        self.replacements.push(Replacement::Stub {
            name: name.to_owned(),
            answer: Arc::new(answer),
        });
        self
    }

    /// The caller's number (default `+15550100`).
    pub fn caller(&mut self, number: impl Into<String>) -> &mut Self {
        self.before_start("caller");
        self.caller = number.into();
        self
    }

    /// A call parameter (`CallContext::parameter`).
    pub fn parameter(&mut self, name: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.before_start("parameter");
        self.parameters.insert(name.into(), value.into());
        self
    }

    /// The hooks the call runs with.
    pub fn hooks(&mut self, hooks: Hooks) -> &mut Self {
        self.before_start("hooks");
        self.hooks = hooks;
        self
    }

    /// The judge [`Turn::judge`] asks.
    pub fn judge_with(&mut self, judge: Judge) -> &mut Self {
        self.judge = Some(judge);
        self
    }

    /// How long one turn may take before the test fails (default 60 s).
    pub fn turn_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.turn_timeout = timeout;
        self
    }

    /// What the agent said first, once the conversation has started.
    pub fn greeting(&self) -> Option<&str> {
        self.greeting.as_deref()
    }

    /// Starts the call at the first turn, so that mocks and settings given before it
    /// apply.
    ///
    /// # Panics
    /// If the agent is invalid or a mocked tool does not exist.
    fn start(&mut self) {
        if self.call.is_some() {
            return;
        }
        let (Some(make), Some(engine)) = (self.agent.take(), self.engine.take()) else {
            return;
        };
        let vars: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let agent = match crate::tool::webhook::with_env(&vars, make) {
            Ok(agent) => agent,
            Err(e) => panic!("the agent is invalid: {e}"),
        };
        let agent = match &engine {
            EngineChoice::Deployment(config) => deploy::deployed(config, agent),
            EngineChoice::Custom(_) => agent,
        };
        let agent = with_replacements(agent, std::mem::take(&mut self.replacements));
        let kind = agent.engine;
        let env = CallEnv::new(agent)
            .hooks(self.hooks.clone())
            .limits(self.limits.clone())
            .system_tools(self.system_tools);
        let context = CallContext::builder(format!("conversation-{}", std::process::id()))
            .caller(self.caller.clone())
            .callee(self.callee.clone())
            .direction(Direction::Inbound)
            .parameters(self.parameters.clone())
            .build();
        self.call = Some(match engine {
            EngineChoice::Custom(start) => start(env, context),
            EngineChoice::Deployment(config) => {
                let engines = Engines::new(&config);
                match kind {
                    EngineKind::GptLive => env.start_text(engines.live, context),
                    _ => env.start_text(engines.realtime, context),
                }
            }
        });
    }

    /// The caller says `text`; returns the agent's whole turn: its tool calls and their
    /// outputs, and what it said, in order.
    ///
    /// # Panics
    /// If the conversation has ended, or the turn does not end within the turn timeout.
    pub async fn user_says(&mut self, text: &str) -> Turn {
        self.start();
        if let Some(reason) = &self.ended {
            panic!("the caller cannot speak: the conversation ended ({reason:?})");
        }
        let Some(call) = &self.call else {
            panic!("the conversation could not start");
        };
        call.say(text);
        let deadline = tokio::time::Instant::now() + self.turn_timeout;
        let mut events = Vec::new();
        let mut in_turn = false;
        while let Some(call) = &mut self.call {
            let next = tokio::time::timeout_at(deadline, call.next_event()).await;
            let event = match next {
                Ok(Some(event)) => event,
                Ok(None) => break,
                Err(_) => panic!(
                    "the agent's turn after {text:?} did not end within {:?}; it went:\n{}",
                    self.turn_timeout,
                    expect::describe(&events)
                ),
            };
            match &event {
                TextEvent::Assistant {
                    text,
                    greeting: true,
                } => {
                    self.greeting = Some(text.clone());
                    self.history.push(event);
                    continue;
                }
                // This turn starts with these words; a turn before it (keys pressed) is
                // not this one's.
                TextEvent::Caller { text: said } if *said == text => {
                    in_turn = true;
                    events.clear();
                }
                TextEvent::AssistantDelta { .. } => continue,
                _ => {}
            }
            self.history.push(event.clone());
            match event {
                TextEvent::TurnEnded(metrics) if in_turn => {
                    return Turn::new(
                        text,
                        events,
                        Some(metrics),
                        self.history.clone(),
                        self.judge.clone(),
                    );
                }
                TextEvent::Ended { reason } => {
                    self.ended = Some(reason.clone());
                    events.push(TextEvent::Ended { reason });
                    break;
                }
                TextEvent::Caller { .. } | TextEvent::TurnEnded(_) => {}
                other => events.push(other),
            }
        }
        Turn::new(text, events, None, self.history.clone(), self.judge.clone())
    }

    /// The caller presses `keys` on the keypad (they reach `on_dtmf`).
    ///
    /// # Panics
    /// If a key is not a phone key.
    pub fn press(&mut self, keys: &str) {
        self.start();
        if let Some(call) = &self.call
            && let Err(e) = call.press(keys)
        {
            panic!("{e}");
        }
    }

    /// Hangs up (if the conversation is still on) and returns what `on_call_end` got.
    pub async fn end(mut self) -> CallSummary {
        self.start();
        let Some(call) = self.call.take() else {
            panic!("the conversation could not start");
        };
        call.hang_up();
        call.finish().await
    }

    /// The conversation so far, one line per message: `caller: …` / `agent: …`.
    pub fn transcript(&self) -> String {
        expect::transcript(&self.history)
    }
}
