//! What each kind of return value reaches the model as.

use patter::{CallAction, CallContext, ToolError, ToolOutput, ToolSet};

#[patter::data]
struct Stock {
    product_id: String,
    quantity: u32,
}

/// Returns a `String`.
#[patter::tool]
async fn owned_text() -> String {
    "plain text".to_owned()
}

/// Returns a `&'static str`.
#[patter::tool]
async fn static_text() -> &'static str {
    "static text"
}

/// Returns a `#[patter::data]` struct.
#[patter::tool]
async fn stock() -> Stock {
    Stock {
        product_id: "SKU-1".to_owned(),
        quantity: 7,
    }
}

/// Returns a list of `#[patter::data]` structs.
#[patter::tool]
async fn all_stock() -> Vec<Stock> {
    vec![Stock {
        product_id: "SKU-2".to_owned(),
        quantity: 0,
    }]
}

/// Returns a number.
#[patter::tool]
async fn count() -> u32 {
    42
}

/// Returns a `ToolOutput` that also ends the call.
#[patter::tool]
async fn goodbye() -> ToolOutput {
    ToolOutput::text("Goodbye!").then_hang_up("caller is done")
}

/// Returns nothing.
#[patter::tool]
async fn nothing() {}

/// Returns `Result<ToolOutput, ToolError>`.
#[patter::tool]
async fn transfer(call: CallContext) -> Result<ToolOutput, ToolError> {
    match call.parameter("desk") {
        Some(desk) => Ok(ToolOutput::text("Transferring you now.").then_transfer(desk)),
        None => Err(ToolError::msg("no desk to transfer to")),
    }
}

/// Returns `Result<Stock, String>`.
#[patter::tool]
async fn maybe_stock(call: &CallContext) -> Result<Stock, String> {
    match call.parameter("store") {
        Some(store) => Ok(Stock {
            product_id: store.to_owned(),
            quantity: 1,
        }),
        None => Err("which store?".to_owned()),
    }
}

/// Returns `Result<(), ToolError>`.
#[patter::tool]
async fn unit_result() -> Result<(), ToolError> {
    Ok(())
}

#[tokio::main]
async fn main() {
    let tools = ToolSet::builder()
        .tool(owned_text::tool())
        .tool(static_text::tool())
        .tool(stock::tool())
        .tool(all_stock::tool())
        .tool(count::tool())
        .tool(goodbye::tool())
        .tool(nothing::tool())
        .tool(transfer::tool())
        .tool(maybe_stock::tool())
        .tool(unit_result::tool())
        .build()
        .unwrap();
    let plain = CallContext::builder("CA1").build();
    let routed = CallContext::builder("CA2")
        .parameter("desk", "+15550199")
        .parameter("store", "north")
        .build();

    let output = |name: &'static str, ctx: &'static str| {
        let ctx = if ctx == "routed" { &routed } else { &plain };
        tools.dispatch(name, "{}", ctx)
    };

    assert_eq!(output("owned_text", "plain").await.output, "plain text");
    assert_eq!(output("static_text", "plain").await.output, "static text");
    assert_eq!(
        output("stock", "plain").await.output,
        r#"{"product_id":"SKU-1","quantity":7}"#
    );
    assert_eq!(
        output("all_stock", "plain").await.output,
        r#"[{"product_id":"SKU-2","quantity":0}]"#
    );
    assert_eq!(output("count", "plain").await.output, "42");

    let out = output("goodbye", "plain").await;
    assert_eq!(out.output, "Goodbye!");
    assert_eq!(
        out.actions,
        [CallAction::HangUp {
            reason: "caller is done".to_owned()
        }]
    );

    assert_eq!(output("nothing", "plain").await.output, r#"{"ok":true}"#);

    let out = output("transfer", "routed").await;
    assert_eq!(out.output, "Transferring you now.");
    assert_eq!(
        out.actions,
        [CallAction::Transfer {
            to: "+15550199".to_owned()
        }]
    );
    let out = output("transfer", "plain").await;
    assert_eq!(
        out.output,
        r#"{"error":{"message":"no desk to transfer to","type":"tool_error"}}"#
    );
    assert!(out.actions.is_empty());

    assert_eq!(
        output("maybe_stock", "routed").await.output,
        r#"{"product_id":"north","quantity":1}"#
    );
    assert_eq!(
        output("maybe_stock", "plain").await.output,
        r#"{"error":{"message":"which store?","type":"tool_error"}}"#
    );

    assert_eq!(
        output("unit_result", "plain").await.output,
        r#"{"ok":true}"#
    );
}
