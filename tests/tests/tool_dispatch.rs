//! Every outcome of `ToolSet::dispatch` is a string for the model, with real JSON in and out.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use patter::{
    Agent, CallAction, CallContext, FnTool, Json, ToolError, ToolOutput, ToolSet, ToolSetError,
    WebhookTool,
};
use serde_json::{Value, json};

fn ctx() -> CallContext {
    CallContext::builder("CA0123456789abcdef0123456789abcdef")
        .caller("+15550100")
        .callee("+15550199")
        .stream_id("MZ0123456789abcdef0123456789abcdef")
        .parameter("store", "north")
        .build()
}

fn error_of(output: &str) -> (String, String) {
    let v: Value = serde_json::from_str(output).expect("error output is JSON");
    (
        v["error"]["type"].as_str().unwrap_or_default().to_owned(),
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

#[patter::args]
struct Greeting {
    /// Who to greet.
    name: String,
    /// How many times.
    times: Option<u8>,
}

/// Greet someone.
#[patter::tool]
async fn greet(args: Greeting) -> String {
    format!("Hello, {}!", args.name).repeat(usize::from(args.times.unwrap_or(1)))
}

#[patter::data]
struct Caller {
    call_id: String,
    caller: String,
    callee: String,
    store: Option<String>,
    asked: String,
}

#[patter::args]
struct WhoAmI {
    /// Anything.
    question: String,
}

/// Tell the caller who they are.
#[patter::tool]
async fn who_am_i(call: CallContext, args: WhoAmI) -> Caller {
    Caller {
        call_id: call.call_id().to_owned(),
        caller: call.caller().to_owned(),
        callee: call.callee().to_owned(),
        store: call.parameter("store").map(str::to_owned),
        asked: args.question,
    }
}

#[derive(Debug)]
struct OutOfStock(String);

impl std::fmt::Display for OutOfStock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} is out of stock", self.0)
    }
}

type StockResult<T> = Result<T, OutOfStock>;

#[patter::args]
struct Reserve {
    /// The product.
    sku: String,
}

/// Reserve a product.
#[patter::tool]
async fn reserve(args: Reserve, _call: &CallContext) -> StockResult<Json<Value>> {
    if args.sku == "SKU-0" {
        Err(OutOfStock(args.sku))
    } else {
        Ok(Json(json!({ "reserved": args.sku })))
    }
}

/// Always panics.
#[patter::tool]
async fn explode() -> String {
    panic!("the sensor caught fire")
}

/// Never finishes.
#[patter::tool]
async fn hang() -> String {
    std::future::pending::<String>().await
}

/// Hang up politely.
#[patter::tool]
async fn goodbye() -> ToolOutput {
    ToolOutput::text("Goodbye!").then_hang_up("caller is done")
}

fn tools() -> ToolSet {
    ToolSet::builder()
        .tool(greet::tool())
        .tool(who_am_i::tool())
        .tool(reserve::tool())
        .tool(explode::tool())
        .tool(hang::tool())
        .tool(goodbye::tool())
        .build()
        .expect("valid tool set")
}

#[tokio::test]
async fn a_string_result_passes_through_as_is() {
    let out = tools()
        .dispatch("greet", r#"{"name":"Ada","times":2}"#, &ctx())
        .await;
    assert_eq!(out.output, "Hello, Ada!Hello, Ada!");
    assert!(out.is_ok());
}

#[tokio::test]
async fn a_struct_result_is_compact_json_and_sees_the_real_call() {
    let out = tools()
        .dispatch("who_am_i", r#"{"question":"who?"}"#, &ctx())
        .await;
    assert_eq!(
        out.output,
        r#"{"call_id":"CA0123456789abcdef0123456789abcdef","caller":"+15550100","callee":"+15550199","store":"north","asked":"who?"}"#
    );
}

#[tokio::test]
async fn ok_of_a_result_alias_is_not_wrapped() {
    let out = tools()
        .dispatch("reserve", r#"{"sku":"SKU-9"}"#, &ctx())
        .await;
    assert_eq!(out.output, r#"{"reserved":"SKU-9"}"#);
}

#[tokio::test]
async fn err_is_its_display_text_in_an_error_json() {
    let out = tools()
        .dispatch("reserve", r#"{"sku":"SKU-0"}"#, &ctx())
        .await;
    assert_eq!(
        error_of(&out.output),
        ("tool_error".into(), "SKU-0 is out of stock".into())
    );
    assert_eq!(
        out.error,
        Some(ToolError::Failed("SKU-0 is out of stock".into()))
    );
}

#[tokio::test]
async fn an_unknown_tool_is_named_in_the_error() {
    let out = tools().dispatch("launch_rocket", "{}", &ctx()).await;
    let (kind, message) = error_of(&out.output);
    assert_eq!(kind, "unknown_tool");
    assert!(message.contains("launch_rocket"), "{message}");
}

#[tokio::test]
async fn a_missing_field_is_named() {
    let out = tools().dispatch("greet", r#"{"times":1}"#, &ctx()).await;
    assert_eq!(
        error_of(&out.output),
        (
            "invalid_arguments".into(),
            "invalid arguments: missing field `name`".into()
        )
    );
}

#[tokio::test]
async fn a_wrong_type_names_the_field_and_why() {
    let out = tools()
        .dispatch("greet", r#"{"name":"Ada","times":"lots"}"#, &ctx())
        .await;
    assert_eq!(
        error_of(&out.output),
        (
            "invalid_arguments".into(),
            "invalid arguments: times: invalid type: string \"lots\", expected u8".into()
        )
    );
}

#[tokio::test]
async fn arguments_that_are_not_json_are_an_error_not_a_crash() {
    for bad in [
        r#"{"name":"Ada""#,
        "[1,2]",
        "null",
        r#"{"name":"Ada"} trailing"#,
    ] {
        let out = tools().dispatch("greet", bad, &ctx()).await;
        let (kind, _) = error_of(&out.output);
        assert_eq!(kind, "invalid_arguments", "for {bad}");
    }
}

#[tokio::test]
async fn a_panic_is_caught_and_reported_generically() {
    let out = tools().dispatch("explode", "{}", &ctx()).await;
    let (kind, message) = error_of(&out.output);
    assert_eq!(kind, "tool_panicked");
    assert!(
        !message.contains("fire"),
        "panic text leaked to the model: {message}"
    );
    // The set still works afterwards.
    let again = tools().dispatch("greet", r#"{"name":"Bo"}"#, &ctx()).await;
    assert_eq!(again.output, "Hello, Bo!");
}

#[tokio::test(start_paused = true)]
async fn the_default_timeout_is_ten_seconds() {
    let started = tokio::time::Instant::now();
    let out = tools().dispatch("hang", "", &ctx()).await;
    assert_eq!(
        error_of(&out.output),
        (
            "timeout".into(),
            "the tool did not finish within 10000 ms".into()
        )
    );
    assert_eq!(started.elapsed(), Duration::from_secs(10));
}

/// Slow, with its own timeout.
#[patter::tool(timeout_secs = 2)]
async fn slow() -> String {
    tokio::time::sleep(Duration::from_secs(3)).await;
    "done".into()
}

#[tokio::test(start_paused = true)]
async fn a_tool_sets_its_own_timeout() {
    let set = ToolSet::builder()
        .tool(slow::tool())
        .tool(
            FnTool::new("quick", "Quick.", |_: patter::NoArgs, _| async {
                tokio::time::sleep(Duration::from_millis(80)).await;
                "late"
            })
            .with_timeout(Duration::from_millis(50)),
        )
        .build()
        .expect("valid");
    let out = set.dispatch("slow", "{}", &ctx()).await;
    assert_eq!(
        error_of(&out.output).1,
        "the tool did not finish within 2000 ms"
    );
    let out = set.dispatch("quick", "{}", &ctx()).await;
    assert_eq!(
        error_of(&out.output).1,
        "the tool did not finish within 50 ms"
    );
}

#[tokio::test]
async fn a_tool_output_carries_its_actions() {
    let out = tools().dispatch("goodbye", "", &ctx()).await;
    assert_eq!(out.output, "Goodbye!");
    assert_eq!(
        out.actions,
        vec![CallAction::HangUp {
            reason: "caller is done".into()
        }]
    );
}

#[tokio::test]
async fn closure_tools_need_no_macros() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let set = ToolSet::builder()
        .tool(FnTool::new(
            "count",
            "Count calls.",
            move |args: Greeting, call: CallContext| {
                let counter = Arc::clone(&counter);
                async move {
                    let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
                    Ok::<_, std::io::Error>(Json(
                        json!({ "n": n, "name": args.name, "caller": call.caller() }),
                    ))
                }
            },
        ))
        .build()
        .expect("valid");
    let out = set.dispatch("count", r#"{"name":"Cy"}"#, &ctx()).await;
    assert_eq!(out.output, r#"{"caller":"+15550100","n":1,"name":"Cy"}"#);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn the_set_keeps_registration_order() {
    let names: Vec<_> = tools().definitions().map(|d| d.name.clone()).collect();
    assert_eq!(
        names,
        ["greet", "who_am_i", "reserve", "explode", "hang", "goodbye"]
    );
}

#[test]
fn duplicate_names_are_refused() {
    let err = ToolSet::builder()
        .tool(greet::tool())
        .tool(FnTool::new(
            "greet",
            "Again.",
            |_: patter::NoArgs, _| async { "x" },
        ))
        .build()
        .expect_err("duplicate");
    assert_eq!(err, ToolSetError::DuplicateName("greet".into()));
}

#[test]
fn invalid_names_are_refused() {
    for name in ["", "has space", "emoji_☎", &"x".repeat(65)] {
        let err = ToolSet::builder()
            .tool(FnTool::new(name, "Bad.", |_: patter::NoArgs, _| async {
                "x"
            }))
            .build()
            .expect_err(name);
        assert_eq!(err, ToolSetError::InvalidName(name.to_owned()));
    }
    assert!(
        ToolSet::builder()
            .tool(FnTool::new(
                "a-Z_09".repeat(10) + "abcd",
                "Ok.",
                |_: patter::NoArgs, _| async { "x" }
            ))
            .build()
            .is_ok()
    );
}

#[test]
fn a_schema_whose_root_is_not_an_object_is_refused() {
    let err = ToolSet::builder()
        .tool(WebhookTool::with_schema(
            "lookup",
            "Look up.",
            json!({ "type": "string" }),
            "https://example.com/hook",
        ))
        .build()
        .expect_err("not an object");
    assert_eq!(err, ToolSetError::SchemaNotObject("lookup".into()));
}

#[test]
fn a_missing_url_variable_is_refused_when_built() {
    let err = ToolSet::builder()
        .tool(WebhookTool::from_env::<patter::NoArgs>(
            "lookup",
            "Look up.",
            "PATTER_TEST_SURELY_UNSET_URL",
        ))
        .build()
        .expect_err("unset variable");
    assert!(
        err.to_string().contains("PATTER_TEST_SURELY_UNSET_URL"),
        "{err}"
    );
}

/// An agent whose tools share state.
struct Shop {
    visits: AtomicUsize,
}

#[patter::agent(
    system_prompt = "You sell {product}.",
    variables(product = "tea"),
    voice = "cedar"
)]
impl Shop {
    /// Count this visit.
    #[tool]
    async fn visit(&self, _call: &CallContext) -> String {
        let n = self.visits.fetch_add(1, Ordering::SeqCst) + 1;
        format!("visit {n}")
    }

    /// Greet by name.
    #[tool(name = "greet_customer")]
    async fn greet(&self, args: Greeting) -> String {
        format!("Welcome, {}", args.name)
    }
}

#[tokio::test]
async fn method_tools_share_the_agent_state() {
    let shop = Arc::new(Shop {
        visits: AtomicUsize::new(0),
    });
    let spec = Arc::clone(&shop).spec().expect("valid agent");
    assert_eq!(spec.system_prompt, "You sell {product}.");
    assert_eq!(
        spec.variables.get("product").map(String::as_str),
        Some("tea")
    );
    assert_eq!(spec.voice, "cedar");
    let names: Vec<_> = spec.tools.definitions().map(|d| d.name.clone()).collect();
    assert_eq!(names, ["visit", "greet_customer"]);
    assert_eq!(
        spec.tools.dispatch("visit", "", &ctx()).await.output,
        "visit 1"
    );
    assert_eq!(
        spec.tools.dispatch("visit", "", &ctx()).await.output,
        "visit 2"
    );
    assert_eq!(shop.visits.load(Ordering::SeqCst), 2);
    assert_eq!(
        spec.tools
            .dispatch("greet_customer", r#"{"name":"Di"}"#, &ctx())
            .await
            .output,
        "Welcome, Di"
    );
}

#[patter::agent(
    system_prompt = "Greeter.",
    first_message = "Hi there!",
    model = "gpt-realtime-mini",
    tools(greet, reserve)
)]
struct Greeter;

#[test]
fn struct_agents_list_free_function_tools() {
    let spec = Arc::new(Greeter).spec().expect("valid agent");
    assert_eq!(spec.first_message.as_deref(), Some("Hi there!"));
    assert_eq!(spec.model.as_deref(), Some("gpt-realtime-mini"));
    let names: Vec<_> = spec.tools.definitions().map(|d| d.name.clone()).collect();
    assert_eq!(names, ["greet", "reserve"]);
}

#[tokio::test]
async fn the_example_inventory_tool_uses_the_call_context() {
    let tool = patter_examples::product_specialist::check_inventory::tool();
    let set = ToolSet::builder().tool(tool).build().expect("valid");
    let north = set
        .dispatch("check_inventory", r#"{"product_id":"SKU-1234"}"#, &ctx())
        .await;
    let main = set
        .dispatch(
            "check_inventory",
            r#"{"product_id":"SKU-1234"}"#,
            &CallContext::builder("CA1").build(),
        )
        .await;
    let north: Value = serde_json::from_str(&north.output).expect("json");
    let main: Value = serde_json::from_str(&main.output).expect("json");
    assert_eq!(north["product_id"], "SKU-1234");
    assert_ne!(
        north["quantity"], main["quantity"],
        "stock should depend on the call's store"
    );
    assert_eq!(
        north["in_stock"],
        north["quantity"].as_u64().map(|q| q > 0).unwrap_or(false)
    );
}

#[tokio::test]
async fn dispatch_cuts_a_huge_result_exactly_as_a_call_does() {
    let huge = FnTool::new(
        "huge",
        "A lot.",
        |_: patter::NoArgs, _: CallContext| async { "é".repeat(3 * 1024 * 1024) },
    );
    let tools = ToolSet::builder().tool(huge).build().expect("tools");
    assert_eq!(
        tools.max_result_bytes(),
        patter::Limits::default().max_tool_result_bytes
    );
    let out = tools.dispatch("huge", "{}", &ctx()).await;
    // 16 KiB of text, cut at a character boundary, and a note for the model.
    let (kept, note) = out.output.split_once('…').expect("cut");
    assert_eq!(kept.len(), 16 * 1024);
    assert_eq!(
        note,
        " [result cut: it was 6291456 bytes, the limit is 16384]"
    );
    assert!(out.is_ok());

    let small = tools.clone().with_max_result_bytes(5);
    let out = small.dispatch("huge", "{}", &ctx()).await;
    assert!(out.output.starts_with("éé…"), "{}", &out.output[..20]);
}

#[patter::agent(system_prompt = "You answer on GPT-Live.", engine = "gpt-live")]
struct LiveAgent;

#[test]
fn an_agent_chooses_its_engine() {
    use patter::engine::EngineKind;
    let live = Arc::new(LiveAgent).spec().expect("spec");
    assert_eq!(live.engine, EngineKind::GptLive);
    assert_eq!(patter::AgentSpec::new("p").engine, EngineKind::Realtime);
}
