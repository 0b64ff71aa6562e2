//! A checked, ordered set of tools, and the dispatcher that runs the model's calls.

use std::collections::HashMap;
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use futures_util::FutureExt;
use tracing::Instrument;

use super::{
    CallAction, CallContext, DEFAULT_MAX_RESULT_BYTES, Invocation, Tool, ToolDefinition, ToolError,
};

/// Why a [`ToolSet`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ToolSetError {
    /// Two tools share a name.
    #[error("two tools are named `{0}`; tool names must be unique within an agent")]
    DuplicateName(String),
    /// A name outside `[A-Za-z0-9_-]{{1,64}}`.
    #[error("tool name `{0}` is invalid: use 1 to 64 of A-Z, a-z, 0-9, `_` and `-`")]
    InvalidName(String),
    /// An argument schema whose root is not an object.
    #[error("tool `{0}`: the arguments schema must be a JSON object with `\"type\": \"object\"`")]
    SchemaNotObject(String),
    /// A tool's own check failed (e.g. a missing environment variable).
    #[error("tool `{name}`: {message}")]
    Invalid {
        /// The tool's name.
        name: String,
        /// What is wrong.
        message: String,
    },
}

/// Whether `name` is a valid tool name, `[A-Za-z0-9_-]{1,64}`.
pub fn is_valid_tool_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The tools of one agent, in registration order, checked when built.
///
/// Dispatching through the set is exactly what a call does: the same argument checks,
/// timeouts, error mapping and result limit ([`ToolSet::with_max_result_bytes`]).
#[derive(Clone)]
pub struct ToolSet {
    tools: Vec<Arc<dyn Tool>>,
    by_name: HashMap<String, usize>,
    max_result_bytes: usize,
}

impl Default for ToolSet {
    fn default() -> Self {
        ToolSet {
            tools: Vec::new(),
            by_name: HashMap::new(),
            max_result_bytes: DEFAULT_MAX_RESULT_BYTES,
        }
    }
}

/// Collects tools for a [`ToolSet`]; see [`ToolSet::builder`].
#[derive(Default)]
pub struct ToolSetBuilder {
    tools: Vec<Arc<dyn Tool>>,
}

impl ToolSetBuilder {
    /// Adds a tool.
    pub fn tool(mut self, tool: impl Tool) -> Self {
        self.tools.push(Arc::new(tool));
        self
    }

    /// Adds a shared tool.
    pub fn shared(mut self, tool: Arc<dyn Tool>) -> Self {
        self.tools.push(tool);
        self
    }

    /// Adds every tool of `set`, after the ones already added.
    pub fn extend(mut self, set: &ToolSet) -> Self {
        self.tools.extend(set.tools.iter().cloned());
        self
    }

    /// Checks names, schemas and each tool's own validation, and builds the set.
    pub fn build(self) -> Result<ToolSet, ToolSetError> {
        let mut by_name = HashMap::with_capacity(self.tools.len());
        for (index, tool) in self.tools.iter().enumerate() {
            let def = tool.definition();
            if !is_valid_tool_name(&def.name) {
                return Err(ToolSetError::InvalidName(def.name.clone()));
            }
            let is_object = def.parameters.get("type").and_then(|t| t.as_str()) == Some("object");
            if !is_object {
                return Err(ToolSetError::SchemaNotObject(def.name.clone()));
            }
            tool.validate().map_err(|message| ToolSetError::Invalid {
                name: def.name.clone(),
                message,
            })?;
            if by_name.insert(def.name.clone(), index).is_some() {
                return Err(ToolSetError::DuplicateName(def.name.clone()));
            }
        }
        Ok(ToolSet {
            tools: self.tools,
            by_name,
            max_result_bytes: DEFAULT_MAX_RESULT_BYTES,
        })
    }
}

/// What the model is handed for one tool call.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DispatchOutcome {
    /// The `output` string of the `function_call_output` item.
    pub output: String,
    /// Set when the call failed; `output` is then the error JSON.
    pub error: Option<ToolError>,
    /// What the tool asked the call to do.
    pub actions: Vec<CallAction>,
}

impl DispatchOutcome {
    fn failed(error: ToolError) -> Self {
        DispatchOutcome {
            output: error.to_model_json(),
            error: Some(error),
            actions: Vec::new(),
        }
    }

    /// Whether the tool produced a result.
    pub fn is_ok(&self) -> bool {
        self.error.is_none()
    }
}

impl ToolSet {
    /// Starts an empty set.
    pub fn builder() -> ToolSetBuilder {
        ToolSetBuilder::default()
    }

    /// The tools' definitions, in registration order.
    pub fn definitions(&self) -> impl Iterator<Item = &ToolDefinition> {
        self.tools.iter().map(|t| t.definition())
    }

    /// The tool named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Tool>> {
        self.by_name.get(name).map(|&i| &self.tools[i])
    }

    /// How many tools there are.
    pub fn len(&self) -> usize {
        self.tools.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }

    /// The same tools, with results longer than `bytes` cut (default 16 KiB, as a call's
    /// [`Limits::max_tool_result_bytes`](crate::Limits::max_tool_result_bytes)).
    pub fn with_max_result_bytes(mut self, bytes: usize) -> Self {
        self.max_result_bytes = bytes;
        self
    }

    /// The longest result handed to the model; longer ones are cut, with a note.
    pub fn max_result_bytes(&self) -> usize {
        self.max_result_bytes
    }

    /// Runs the model's call of tool `name` with JSON `arguments`, with a fresh invocation id.
    pub async fn dispatch(
        &self,
        name: &str,
        arguments: &str,
        ctx: &CallContext,
    ) -> DispatchOutcome {
        let id = crate::util::random_hex(16);
        self.dispatch_with_id(name, arguments, ctx, &id).await
    }

    /// Runs the model's call of tool `name`; `id` identifies this invocation (the engine's
    /// function `call_id`).
    ///
    /// Every outcome is a string for the model, cut to [`ToolSet::max_result_bytes`] (with a
    /// note): the result, or an error JSON for an unknown tool, bad arguments, a tool error, a
    /// panic or a timeout. Nothing here ends the call.
    pub async fn dispatch_with_id(
        &self,
        name: &str,
        arguments: &str,
        ctx: &CallContext,
        id: &str,
    ) -> DispatchOutcome {
        let Some(tool) = self.get(name) else {
            tracing::warn!(tool = name, "model called an unknown tool");
            let mut failed = DispatchOutcome::failed(ToolError::UnknownTool {
                name: name.to_owned(),
            });
            failed.output = cap(name, failed.output, self.max_result_bytes);
            return failed;
        };
        let span = tracing::info_span!(
            "tool",
            tool.name = name,
            gen_ai.operation.name = "execute_tool",
            gen_ai.tool.name = name,
            gen_ai.tool.call.id = id,
            tool.outcome = tracing::field::Empty,
        );
        let timeout = tool.timeout();
        let started = Instant::now();
        let invocation = Invocation {
            arguments,
            context: ctx,
            id,
        };
        let run = AssertUnwindSafe(tool.call(invocation)).catch_unwind();
        let result = match tokio::time::timeout(timeout, run)
            .instrument(span.clone())
            .await
        {
            Ok(Ok(result)) => result,
            Ok(Err(panic)) => {
                let message = panic_message(panic.as_ref());
                span.in_scope(|| tracing::error!(panic = %message, "tool panicked"));
                Err(ToolError::Panicked)
            }
            Err(_) => Err(ToolError::TimedOut(timeout.as_millis())),
        };
        let elapsed_ms = started.elapsed().as_millis() as u64;
        match result {
            Ok(output) => {
                span.record("tool.outcome", "ok");
                span.in_scope(|| tracing::info!(elapsed_ms, "tool finished"));
                let (output, actions) = output.into_parts();
                DispatchOutcome {
                    output: span.in_scope(|| cap(name, output, self.max_result_bytes)),
                    error: None,
                    actions,
                }
            }
            Err(error) => {
                span.record("tool.outcome", error.kind());
                // The kind only: an error's message may quote the model's arguments back.
                span.in_scope(|| {
                    tracing::warn!(elapsed_ms, error_type = error.kind(), "tool failed")
                });
                span.in_scope(|| tracing::debug!(error = %error, "tool failure in full"));
                let mut failed = DispatchOutcome::failed(error);
                // An error's text (a tool's own message, arguments quoted back) is bounded too.
                failed.output = span.in_scope(|| cap(name, failed.output, self.max_result_bytes));
                failed
            }
        }
    }
}

/// A result longer than `limit` is cut at a character boundary, with a note; the full text
/// goes to the log.
fn cap(name: &str, output: String, limit: usize) -> String {
    if output.len() <= limit {
        return output;
    }
    tracing::info!(tool = name, full_output = %output, "tool result cut for the model");
    let mut cut = limit;
    while !output.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(
        "{}… [result cut: it was {} bytes, the limit is {limit}]",
        &output[..cut],
        output.len()
    )
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

impl fmt::Debug for ToolSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.tools.iter().map(|t| &t.definition().name))
            .finish()
    }
}

impl fmt::Debug for ToolSetBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.tools.iter().map(|t| &t.definition().name))
            .finish()
    }
}
