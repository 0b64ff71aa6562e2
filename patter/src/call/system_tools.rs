//! `end_call` and `transfer_call`, added to every agent unless turned off. They only ask; the
//! session carries the request out once the goodbye has played, and tells the model if
//! Twilio refuses.

use crate::config::is_e164;
use crate::tool::{ToolError, ToolOutput, ToolSet, ToolSetError};

/// Arguments of `end_call`.
#[crate::args]
struct EndCall {
    /// Why the call is ending, e.g. "the caller's question was answered".
    reason: String,
}

/// End the phone call. Say goodbye first; the call ends once your goodbye has played.
#[crate::tool]
async fn end_call(args: EndCall) -> ToolOutput {
    ToolOutput::text(r#"{"ok":true,"status":"ending the call"}"#).then_hang_up(args.reason)
}

/// Arguments of `transfer_call`.
#[crate::args]
struct TransferCall {
    /// The phone number to transfer to, in E.164 format, e.g. "+15550199".
    number: String,
}

/// Transfer the caller to another phone number. Tell the caller first.
#[crate::tool]
async fn transfer_call(args: TransferCall) -> Result<ToolOutput, ToolError> {
    let number = args.number.trim().to_owned();
    if !is_e164(&number) {
        return Err(ToolError::msg(format!(
            "{number:?} is not a phone number in E.164 format (like +15550199); ask the caller \
             for the full number with its country code"
        )));
    }
    Ok(ToolOutput::text(r#"{"ok":true,"status":"transferring"}"#).then_transfer(number))
}

/// `tools` followed by `end_call` and `transfer_call`.
pub fn system_tools(tools: &ToolSet) -> Result<ToolSet, ToolSetError> {
    ToolSet::builder()
        .extend(tools)
        .tool(end_call::tool())
        .tool(transfer_call::tool())
        .build()
}
