//! An `Option` field is an optional parameter: absent from `required`, and typed without
//! `null`.

use patter::{CallContext, Tool, ToolSet};

#[patter::args]
struct Greeting {
    /// The caller's name.
    name: String,
    /// What the caller likes to be called, if they said.
    nickname: Option<String>,
}

/// Greets the caller.
#[patter::tool]
async fn greet(args: Greeting) -> String {
    format!("Hello, {}!", args.nickname.unwrap_or(args.name))
}

#[tokio::main]
async fn main() {
    let tool = greet::tool();
    let params = &tool.definition().parameters;
    assert_eq!(params["type"], "object");
    let required = params["required"].as_array().unwrap();
    assert_eq!(required.len(), 1);
    assert_eq!(required[0], "name");
    assert_eq!(params["properties"]["nickname"]["type"], "string");
    assert_eq!(
        params["properties"]["nickname"]["description"],
        "What the caller likes to be called, if they said."
    );

    let tools = ToolSet::builder().tool(tool).build().unwrap();
    let ctx = CallContext::builder("CA1").build();
    let out = tools
        .dispatch("greet", r#"{"name":"Margaret"}"#, &ctx)
        .await;
    assert_eq!(out.output, "Hello, Margaret!");
    let out = tools
        .dispatch("greet", r#"{"name":"Margaret","nickname":"Peggy"}"#, &ctx)
        .await;
    assert_eq!(out.output, "Hello, Peggy!");
}
