//! A tool may return its own `Result` alias: the macro cannot see through the alias, so the
//! type checker decides, and `Ok` must reach the model as the value itself, never as
//! `{"Ok":…}`.

use std::fmt;

use patter::{CallContext, ToolSet};

#[derive(Debug)]
struct StoreError(String);

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

type Res<T> = Result<T, StoreError>;
type TextResult = std::result::Result<String, StoreError>;

#[patter::args]
struct OrderQuery {
    /// The order ID.
    order_id: String,
}

#[patter::data]
struct Order {
    id: String,
    status: String,
}

/// Looks up an order.
#[patter::tool]
async fn lookup_order(args: OrderQuery) -> Res<Order> {
    if args.order_id == "missing" {
        return Err(StoreError("no such order".to_owned()));
    }
    Ok(Order {
        id: args.order_id,
        status: "shipped".to_owned(),
    })
}

/// Says where an order is.
#[patter::tool]
async fn order_status(args: OrderQuery) -> Res<String> {
    Ok(format!("{} has shipped", args.order_id))
}

/// Says whether the store is open.
#[patter::tool]
async fn store_open() -> TextResult {
    Ok("open until 6pm".to_owned())
}

#[tokio::main]
async fn main() {
    let tools = ToolSet::builder()
        .tool(lookup_order::tool())
        .tool(order_status::tool())
        .tool(store_open::tool())
        .build()
        .unwrap();
    let ctx = CallContext::builder("CA1").build();

    let out = tools
        .dispatch("lookup_order", r#"{"order_id":"A1"}"#, &ctx)
        .await;
    assert!(out.is_ok());
    assert_eq!(out.output, r#"{"id":"A1","status":"shipped"}"#);

    let out = tools
        .dispatch("lookup_order", r#"{"order_id":"missing"}"#, &ctx)
        .await;
    assert!(!out.is_ok());
    assert_eq!(
        out.output,
        r#"{"error":{"message":"no such order","type":"tool_error"}}"#
    );

    let out = tools
        .dispatch("order_status", r#"{"order_id":"A1"}"#, &ctx)
        .await;
    assert_eq!(out.output, "A1 has shipped");

    let out = tools.dispatch("store_open", "", &ctx).await;
    assert_eq!(out.output, "open until 6pm");
}
