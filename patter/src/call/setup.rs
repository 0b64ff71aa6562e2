//! Everything decided once, when a call starts: `on_call_start`'s changes, the tools (with
//! the system tools), the prompt with its variables filled, and the engine's setup.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures_util::FutureExt;
use tracing::{error, warn};

use super::{CallEnv, CallSetup};
use crate::engine::EngineSetup;
use crate::tool::{CallContext, ToolSet};

/// How long `on_call_start` and `on_call_end` may run.
pub(crate) const HOOK_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest caller-supplied value put into a prompt.
const MAX_PROMPT_VALUE_CHARS: usize = 256;

/// What one call runs with.
pub(crate) struct CallPlan {
    /// The call's tools, system tools included, with the result limit applied.
    pub(crate) tools: ToolSet,
    /// The engine's configuration.
    pub(crate) setup: EngineSetup,
    /// Whether the call is recorded.
    pub(crate) record: bool,
}

/// Runs `on_call_start` (bounded) and works out the call's tools and engine setup.
pub(crate) async fn plan(env: &CallEnv, default_model: &str, ctx: &CallContext) -> CallPlan {
    let spec = &env.agent;
    let setup = match &env.hooks.on_call_start {
        Some(hook) => {
            let ran = AssertUnwindSafe(hook(ctx.clone())).catch_unwind();
            match tokio::time::timeout(HOOK_TIMEOUT, ran).await {
                Ok(Ok(setup)) => setup.over(&env.preset),
                Ok(Err(_)) => {
                    error!("on_call_start panicked; using the agent's settings");
                    env.preset.clone()
                }
                Err(_) => {
                    warn!("on_call_start did not finish within 10 s; using the agent's settings");
                    env.preset.clone()
                }
            }
        }
        None => env.preset.clone(),
    };
    let tools = setup.tools.clone().unwrap_or_else(|| spec.tools.clone());
    let tools = if env.system_tools {
        match super::system_tools(&tools, &spec.transfers) {
            Ok(all) => all,
            Err(e) => {
                // The agent's own tools already use a system tool's name: keep theirs.
                warn!(error = %e, "system tools not added");
                tools
            }
        }
    } else {
        tools
    };
    let tools = tools.with_max_result_bytes(env.limits.max_tool_result_bytes);
    let first_message = setup
        .first_message
        .clone()
        .unwrap_or_else(|| spec.first_message.clone());
    let engine_setup = EngineSetup::new(
        spec.model.as_deref().unwrap_or(default_model),
        instructions(env, &setup, ctx),
        spec.voice.clone(),
        spec.audio,
    )
    .tools(tools.definitions().cloned().collect())
    .first_message(first_message);
    CallPlan {
        tools,
        setup: engine_setup,
        record: setup.record.unwrap_or(spec.record),
    }
}

/// The system prompt with `{name}` filled from the agent's variables, then the call's
/// parameters (`caller`, `callee`, `call_id` and custom ones), then `on_call_start`'s.
fn instructions(env: &CallEnv, setup: &CallSetup, ctx: &CallContext) -> String {
    let spec = &env.agent;
    let mut values: BTreeMap<String, String> = spec.variables.clone();
    for (name, value) in ctx.parameters() {
        values.insert(name.clone(), prompt_safe(value));
    }
    values.insert("caller".into(), prompt_safe(ctx.caller()));
    values.insert("callee".into(), prompt_safe(ctx.callee()));
    values.insert("call_id".into(), prompt_safe(ctx.call_id()));
    values.extend(setup.variables.clone());
    let template = setup
        .system_prompt
        .as_deref()
        .unwrap_or(&spec.system_prompt);
    super::fill_placeholders(template, &values)
}

/// Caller-supplied text going into a prompt: no control characters, bounded length.
fn prompt_safe(value: &str) -> String {
    value
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_PROMPT_VALUE_CHARS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::AgentSpec;

    #[test]
    fn caller_values_reach_the_prompt_without_control_characters_and_bounded() {
        let env = CallEnv::new(AgentSpec::new("Caller {caller}, tier {tier}."));
        let ctx = CallContext::builder("CA1")
            .caller("+1555\n0100")
            .parameter("tier", "g".repeat(1000))
            .build();
        let text = instructions(&env, &CallSetup::default(), &ctx);
        assert!(text.starts_with("Caller +15550100, tier g"), "{text}");
        assert_eq!(text.len(), "Caller +15550100, tier .".len() + 256);
    }

    #[test]
    fn a_preset_fills_what_on_call_start_leaves_alone() {
        let preset = CallSetup::new()
            .variable("a", "preset")
            .variable("b", "preset")
            .first_message("Hi from the preset");
        let hook = CallSetup::new().variable("b", "hook").over(&preset);
        assert_eq!(hook.variables["a"], "preset");
        assert_eq!(hook.variables["b"], "hook");
        assert_eq!(
            hook.first_message,
            Some(Some("Hi from the preset".to_owned()))
        );
        let hook = CallSetup::new().no_first_message().over(&preset);
        assert_eq!(hook.first_message, Some(None));
    }

    #[test]
    fn on_call_start_variables_win_over_the_agents_and_the_calls() {
        let env = CallEnv::new(AgentSpec::new("{a} {b}").variable("a", "agent"));
        let ctx = CallContext::builder("CA1").parameter("b", "call").build();
        let setup = CallSetup::new().variable("b", "hook");
        assert_eq!(instructions(&env, &setup, &ctx), "agent hook");
    }
}
