//! The README's "Without macros" example, in a crate that depends on `patter` and `tokio`
//! alone: `patter::json!` stands in for `serde_json::json!`.

use patter::{CallContext, FnTool, Json, NoArgs, ToolSet};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let tools = ToolSet::builder()
        .tool(FnTool::new("ping", "Check the line.", |_: NoArgs, call: CallContext| async move {
            Json(patter::json!({ "pong": call.caller() }))
        }))
        .build()
        .unwrap();
    let ctx = CallContext::builder("CA123").caller("+15550100").build();
    assert_eq!(tools.dispatch("ping", "{}", &ctx).await.output, r#"{"pong":"+15550100"}"#);
    let value: patter::JsonValue = patter::json!([1, 2]);
    assert_eq!(value[1], 2);
}
