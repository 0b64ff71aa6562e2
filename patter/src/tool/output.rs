//! What a tool hands back: text for the model, and optionally something for the call to do.

use std::fmt;

use serde::Serialize;

/// Something a tool asks the call to do once its result has been handed to the model.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallAction {
    /// Hang up after the agent's current words have played.
    HangUp {
        /// Why, for the call's record.
        reason: String,
    },
    /// Hand the caller to another phone number (E.164).
    Transfer {
        /// The number to dial.
        to: String,
    },
}

/// A tool's successful result: the text the model reads, plus any [`CallAction`]s.
///
/// Tools usually return a `String` or any `Serialize` type and never see this type; return it
/// when the tool must also act on the call:
///
/// ```
/// use patter::ToolOutput;
///
/// let out = ToolOutput::text("Transferring you now.").then_transfer("+15550199");
/// assert_eq!(out.content(), "Transferring you now.");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolOutput {
    content: String,
    actions: Vec<CallAction>,
}

impl ToolOutput {
    /// Text handed to the model as it is.
    pub fn text(content: impl Into<String>) -> Self {
        ToolOutput {
            content: content.into(),
            actions: Vec::new(),
        }
    }

    /// Any serialisable value, handed to the model as compact JSON.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Self, ToolError> {
        serde_json::to_string(value)
            .map(Self::text)
            .map_err(|e| ToolError::Serialize(e.to_string()))
    }

    /// Also hang up once the agent has finished speaking.
    pub fn then_hang_up(mut self, reason: impl Into<String>) -> Self {
        self.actions.push(CallAction::HangUp {
            reason: reason.into(),
        });
        self
    }

    /// Also transfer the caller to `to` (E.164).
    pub fn then_transfer(mut self, to: impl Into<String>) -> Self {
        self.actions.push(CallAction::Transfer { to: to.into() });
        self
    }

    /// The text for the model.
    pub fn content(&self) -> &str {
        &self.content
    }

    /// The actions asked for, in order.
    pub fn actions(&self) -> &[CallAction] {
        &self.actions
    }

    /// Splits into text and actions.
    pub fn into_parts(self) -> (String, Vec<CallAction>) {
        (self.content, self.actions)
    }
}

impl From<String> for ToolOutput {
    fn from(value: String) -> Self {
        ToolOutput::text(value)
    }
}

impl From<&str> for ToolOutput {
    fn from(value: &str) -> Self {
        ToolOutput::text(value)
    }
}

/// Why a tool produced no result. Each becomes an error JSON the model can react to; none
/// ends the call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ToolError {
    /// The model named a tool this agent does not have.
    #[error("there is no tool named `{name}`")]
    UnknownTool {
        /// The name the model used.
        name: String,
    },
    /// The model's arguments did not fit the tool's argument type.
    #[error("invalid arguments: {0}")]
    InvalidArguments(String),
    /// The tool's own code reported an error (its `Display` text).
    #[error("{0}")]
    Failed(String),
    /// The tool's code panicked; details are in the log only.
    #[error("the tool failed unexpectedly")]
    Panicked,
    /// The tool ran longer than its timeout.
    #[error("the tool did not finish within {0} ms")]
    TimedOut(u128),
    /// The tool's result could not be serialised.
    #[error("the tool's result could not be serialised: {0}")]
    Serialize(String),
    /// A webhook tool's endpoint could not be reached or answered with an error.
    #[error("{0}")]
    Webhook(String),
}

impl ToolError {
    /// An error whose text the model sees as it is.
    pub fn msg(message: impl fmt::Display) -> Self {
        ToolError::Failed(message.to_string())
    }

    /// A short machine-readable kind, the `type` of the error JSON.
    pub fn kind(&self) -> &'static str {
        match self {
            ToolError::UnknownTool { .. } => "unknown_tool",
            ToolError::InvalidArguments(_) => "invalid_arguments",
            ToolError::Failed(_) => "tool_error",
            ToolError::Panicked => "tool_panicked",
            ToolError::TimedOut(_) => "timeout",
            ToolError::Serialize(_) => "serialization_error",
            ToolError::Webhook(_) => "webhook_error",
        }
    }

    /// The error JSON handed to the model: `{"error":{"type":…,"message":…}}`.
    pub fn to_model_json(&self) -> String {
        serde_json::json!({ "error": { "type": self.kind(), "message": self.to_string() } })
            .to_string()
    }
}

/// Turns what a tool function returns into its result for the model.
///
/// Implemented for `String`, `&'static str`, [`ToolOutput`], `serde_json::Value`, [`Json`],
/// `()` and `Result<T, E>` where `T` is one of these and `E: Display`. (Tools written with
/// `#[patter::tool]` may return any `Serialize` type directly; closure tools wrap such a value
/// in [`Json`].)
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be returned from a tool",
    label = "not a tool result",
    note = "return `String`, `ToolOutput`, `serde_json::Value`, `Json(value)` for any `Serialize` value, or `Result<T, E>` of these with `E: Display`"
)]
pub trait IntoToolResult {
    /// The result for the model, or the error it should see.
    fn into_tool_result(self) -> Result<ToolOutput, ToolError>;
}

/// Wraps any `Serialize` value so a closure tool hands it to the model as compact JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Json<T>(pub T);

impl IntoToolResult for String {
    fn into_tool_result(self) -> Result<ToolOutput, ToolError> {
        Ok(ToolOutput::text(self))
    }
}

impl IntoToolResult for &'static str {
    fn into_tool_result(self) -> Result<ToolOutput, ToolError> {
        Ok(ToolOutput::text(self))
    }
}

impl IntoToolResult for ToolOutput {
    fn into_tool_result(self) -> Result<ToolOutput, ToolError> {
        Ok(self)
    }
}

impl IntoToolResult for serde_json::Value {
    fn into_tool_result(self) -> Result<ToolOutput, ToolError> {
        Ok(ToolOutput::text(self.to_string()))
    }
}

impl IntoToolResult for () {
    fn into_tool_result(self) -> Result<ToolOutput, ToolError> {
        Ok(ToolOutput::text("{\"ok\":true}"))
    }
}

impl<T: Serialize> IntoToolResult for Json<T> {
    fn into_tool_result(self) -> Result<ToolOutput, ToolError> {
        ToolOutput::json(&self.0)
    }
}

impl<T, E> IntoToolResult for Result<T, E>
where
    T: IntoToolResult,
    E: ToolErrorText,
{
    fn into_tool_result(self) -> Result<ToolOutput, ToolError> {
        match self {
            Ok(value) => value.into_tool_result(),
            Err(error) => Err(error.into_tool_error()),
        }
    }
}

/// An error type a tool may return: anything with `Display`.
///
/// The model sees the `Display` text; the log gets the alternate form (`{:#}`), which for
/// `anyhow`-style errors includes the cause chain.
#[diagnostic::on_unimplemented(
    message = "the tool's error type `{Self}` does not implement `Display`",
    label = "the model is told the error's `Display` text",
    note = "implement `std::fmt::Display` for `{Self}` (thiserror's `#[error(\"…\")]` does), or map the error to a `String`"
)]
pub trait ToolErrorText {
    /// Converts into the error the model sees.
    fn into_tool_error(self) -> ToolError;
}

impl<E: fmt::Display> ToolErrorText for E {
    fn into_tool_error(self) -> ToolError {
        tracing::warn!(error = format!("{self:#}"), "tool returned an error");
        ToolError::Failed(self.to_string())
    }
}
