//! `end_call` and `transfer_call`, added to every agent unless turned off (`transfer_call`
//! only where the agent has somewhere to transfer to: see [`Transfers`]). They only ask; the
//! session carries the request out once the goodbye has played, and tells the model if
//! Twilio refuses.

use super::Transfers;
use crate::tool::{ToolOutput, ToolSet, ToolSetError};

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

/// `tools` followed by `end_call`, and by `transfer_call` when `transfers` has anywhere to
/// go.
pub fn system_tools(tools: &ToolSet, transfers: &Transfers) -> Result<ToolSet, ToolSetError> {
    let builder = ToolSet::builder().extend(tools).tool(end_call::tool());
    match transfers.tool() {
        Some(transfer) => builder.tool(transfer).build(),
        None => builder.build(),
    }
}
