//! Safe transfers: `transfer_call` takes a destination's name from an `enum`, free-form
//! numbers only through allow-patterns checked after the model answers, and no tool at all
//! without anywhere to go.

use patter::testing::{Conversation, TestCall};
use patter::{ConfigBuilder, EndReason, Transfers, json};
use patter_tests::fake_model::{ModelInput, ModelReply};
use patter_tests::fake_openai::FakeRealtime;
use serde_json::Value;

#[patter::agent(
    system_prompt = "You route callers.",
    transfers(sales = "+15550111", billing = "+15550122")
)]
struct Router;

#[patter::agent(
    system_prompt = "You route callers.",
    transfers(sales = "+15550111"),
    transfer_allow = "+1555XXXXXXX, +44*"
)]
struct RouterWithNumbers;

#[patter::agent(system_prompt = "You answer questions.")]
struct NoTransfers;

fn transfer_schema(setup: &patter::engine::EngineSetup) -> Option<Value> {
    setup
        .tools
        .iter()
        .find(|t| t.name == "transfer_call")
        .map(|t| t.parameters.clone())
}

#[tokio::test(start_paused = true)]
async fn the_model_chooses_a_destination_by_name_from_an_enum() {
    let mut call = TestCall::new(Router).start().await;
    let schema = transfer_schema(&call.engine_setup()).expect("offered");
    assert_eq!(
        schema,
        json!({
            "type": "object",
            "properties": {
                "destination": {
                    "type": "string", "enum": ["billing", "sales"],
                    "description": "Who to transfer the caller to."
                }
            },
            "required": ["destination"],
            "additionalProperties": false
        })
    );
    let refused = call
        .model_calls("transfer_call", json!({ "number": "+19005550199" }))
        .await;
    assert_eq!(refused.error_type(), Some("tool_error"));
    assert!(
        refused
            .error_message()
            .is_some_and(|m| m.contains("named destinations only: billing, sales")),
        "{refused:?}"
    );
    let unknown = call
        .model_calls("transfer_call", json!({ "destination": "premium" }))
        .await;
    assert!(
        unknown
            .error_message()
            .is_some_and(|m| m.contains("no destination \"premium\"")),
        "{unknown:?}"
    );
    let extra = call
        .model_calls(
            "transfer_call",
            json!({ "destination": "sales", "then": "x" }),
        )
        .await;
    assert_eq!(extra.error_type(), Some("invalid_arguments"));
    assert!(
        call.transfers().is_empty(),
        "nothing dialled for a refused transfer"
    );

    call.model_calls("transfer_call", json!({ "destination": "sales" }))
        .await;
    assert_eq!(call.transfers(), ["+15550111"]);
    let summary = call.ended().await;
    assert_eq!(
        summary.reason,
        EndReason::Transferred {
            to: "+15550111".into()
        }
    );
}

#[tokio::test(start_paused = true)]
async fn numbers_go_only_where_an_allow_pattern_matches() {
    let mut call = TestCall::new(RouterWithNumbers).start().await;
    let schema = transfer_schema(&call.engine_setup()).expect("offered");
    assert_eq!(schema["required"], json!([]));
    assert!(
        schema["properties"]["number"]["description"]
            .as_str()
            .is_some_and(|d| d.contains("+1555XXXXXXX, +44*"))
    );
    for refused in ["+19005550199", "+1555010019", "555-0100"] {
        let reply = call
            .model_calls("transfer_call", json!({ "number": refused }))
            .await;
        assert_eq!(reply.error_type(), Some("tool_error"), "{refused}");
    }
    assert!(call.transfers().is_empty());
    call.model_calls("transfer_call", json!({ "number": "+442071234567" }))
        .await;
    assert_eq!(call.transfers(), ["+442071234567"]);
}

#[tokio::test(start_paused = true)]
async fn without_destinations_transfer_call_is_not_offered() {
    let mut call = TestCall::new(NoTransfers).start().await;
    assert_eq!(transfer_schema(&call.engine_setup()), None);
    let names: Vec<String> = call
        .engine_setup()
        .tools
        .iter()
        .map(|t| t.name.clone())
        .collect();
    assert_eq!(names, ["end_call"]);
    let reply = call
        .model_calls("transfer_call", json!({ "number": "+15550199" }))
        .await;
    assert_eq!(reply.error_type(), Some("unknown_tool"));
    assert!(call.transfers().is_empty());
}

#[tokio::test]
async fn the_deployment_can_replace_the_destinations_and_bad_settings_are_named() {
    let fake = FakeRealtime::start_with_model(|input: &ModelInput| match input.tool_output() {
        None => ModelReply::call("transfer_call", json!({ "destination": "support" })),
        Some(_) => ModelReply::text("Transferring."),
    })
    .await;
    let config = ConfigBuilder::default()
        .openai_api_key("sk-test")
        .openai_realtime_url(fake.url())
        .transfer_destinations("support=+15550133")
        .build_local()
        .expect("settings");
    let mut conv = Conversation::with_config(Router, &config);
    let turn = conv.user_says("Get me support").await;
    assert_eq!(
        turn.ended(),
        Some(&EndReason::Transferred {
            to: "+15550133".into()
        })
    );
    let update = fake.conn(0).events_of_type("session.update");
    let tools = &update[0]["session"]["tools"];
    let transfer = tools
        .as_array()
        .and_then(|t| t.iter().find(|t| t["name"] == "transfer_call"))
        .expect("offered");
    assert_eq!(
        transfer["parameters"]["properties"]["destination"]["enum"],
        json!(["support"])
    );

    let err = ConfigBuilder::default()
        .openai_api_key("sk-test")
        .transfer_destinations("sales:+15550111")
        .transfer_allow("+1-555*")
        .build_local()
        .expect_err("malformed");
    let vars: Vec<&str> = err.variables().collect();
    assert_eq!(
        vars,
        ["PATTER_TRANSFER_DESTINATIONS", "PATTER_TRANSFER_ALLOW"]
    );
    assert!(Transfers::new().destination("sales", "+1555").is_err());
}
