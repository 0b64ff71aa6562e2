//! `name`, `description` and `timeout_secs`, and the context parameter in any position.

use std::time::Duration;

use patter::{CallContext, Tool, ToolSet};

#[patter::args]
struct Lookup {
    /// The order ID.
    order_id: String,
}

/// Developer docs: the `description` below is what the model reads.
#[patter::tool(
    name = "get-order",
    description = "Look up an order.",
    timeout_secs = 2
)]
async fn lookup_order(call: &CallContext, args: Lookup) -> String {
    format!("{} for {}", args.order_id, call.call_id())
}

/// Says which call this is.
///
/// Multi-line doc comments are kept.
#[patter::tool]
async fn which_call(call: CallContext) -> String {
    call.call_id().to_owned()
}

#[tokio::main]
async fn main() {
    assert_eq!(lookup_order::NAME, "get-order");
    let tool = lookup_order::tool();
    assert_eq!(tool.definition().name, "get-order");
    assert_eq!(tool.definition().description, "Look up an order.");
    assert_eq!(tool.timeout(), Duration::from_secs(2));

    let which = which_call::tool();
    assert_eq!(which.definition().name, "which_call");
    assert_eq!(
        which.definition().description,
        "Says which call this is.\n\nMulti-line doc comments are kept."
    );
    assert_eq!(
        which.definition().parameters["required"]
            .as_array()
            .map(Vec::len),
        Some(0)
    );

    let tools = ToolSet::builder().tool(tool).tool(which).build().unwrap();
    let ctx = CallContext::builder("CA9").build();
    let out = tools
        .dispatch("get-order", r#"{"order_id":"A1"}"#, &ctx)
        .await;
    assert_eq!(out.output, "A1 for CA9");
    assert_eq!(tools.dispatch("which_call", "", &ctx).await.output, "CA9");
}
