//! The tool runtime: what a tool is, how a set of them is checked, and how a call from the
//! model is dispatched to one.
//!
//! Every kind of tool can be built without macros: [`FnTool`] for in-process closures and
//! [`WebhookTool`] for endpoints patter POSTs to. `#[patter::tool]`, `#[patter::webhook]` and
//! `#[patter::agent]` generate exactly these.

mod args;
mod context;
mod function;
mod keypad;
mod output;
mod set;
pub mod webhook;

use std::time::Duration;

use futures_util::future::BoxFuture;
use serde_json::Value;

#[doc(hidden)]
pub use args::ArgsShape;
pub use args::{NoArgs, ToolArgs, flat_schema};
pub use context::{CallContext, CallContextBuilder, Direction};
pub use function::FnTool;
pub use keypad::Digits;
pub(crate) use keypad::Keypad;
pub use output::{CallAction, IntoToolResult, Json, ToolError, ToolErrorText, ToolOutput};
pub use set::{DispatchOutcome, ToolSet, ToolSetBuilder, ToolSetError};
pub use webhook::WebhookTool;

/// How long a tool may run before the model is told it timed out, unless the tool says.
pub const DEFAULT_TOOL_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest tool result handed to the model unless a limit says otherwise: 16 KiB.
pub const DEFAULT_MAX_RESULT_BYTES: usize = 16 * 1024;

/// What the model is told about a tool: built once, when the tool is made.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolDefinition {
    /// The name the model calls the tool by, `[A-Za-z0-9_-]{1,64}`.
    pub name: String,
    /// What the tool does, for the model.
    pub description: String,
    /// JSON schema of the arguments; its root is an object.
    pub parameters: Value,
}

/// One tool the model can call.
///
/// Object-safe: a [`ToolSet`] holds `Arc<dyn Tool>`. Implementations deserialise the raw JSON
/// arguments themselves, so a bad argument is reported by the tool that knows its type.
pub trait Tool: Send + Sync + 'static {
    /// The tool's name, description and argument schema.
    fn definition(&self) -> &ToolDefinition;

    /// How long one call may take; the dispatcher enforces it.
    fn timeout(&self) -> Duration {
        DEFAULT_TOOL_TIMEOUT
    }

    /// Checks, when the tool set is built, what can only be checked at run time (an
    /// environment variable holding a URL, say). The message names what is wrong.
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }

    /// Checks the model's raw JSON arguments against the tool's argument type without
    /// running it; the error is the one [`Tool::call`] would give. Stand-ins for a tool in
    /// tests (`patter::testing`) check arguments with it, as the real tool would.
    fn check_arguments(&self, arguments: &str) -> Result<(), ToolError> {
        let _ = arguments;
        Ok(())
    }

    /// Runs the tool with the model's raw JSON arguments.
    fn call<'a>(
        &'a self,
        invocation: Invocation<'a>,
    ) -> BoxFuture<'a, Result<ToolOutput, ToolError>>;
}

/// One call of a tool by the model.
#[derive(Debug, Clone, Copy)]
pub struct Invocation<'a> {
    /// The model's arguments, a JSON text.
    pub arguments: &'a str,
    /// The phone call the tool runs in.
    pub context: &'a CallContext,
    /// Unique per model tool call (the engine's function `call_id` when there is one);
    /// webhook tools send it as their idempotency key.
    pub id: &'a str,
}
