//! The example agents tested as their authors would test them: whole calls with
//! `patter::testing`, in memory and in test time.

use std::time::Duration;

use patter::testing::TestCall;
use patter::{EndReason, json};
use patter_examples::customer_service::CustomerService;
use patter_examples::product_specialist::ProductSpecialist;

#[tokio::test(start_paused = true)]
async fn the_specialist_checks_stock_in_the_callers_store() {
    let mut call = TestCall::new(ProductSpecialist)
        .caller("+15550123")
        .parameter("store", "north")
        .start()
        .await;
    call.expect_greeting("Hello! I can check stock for any product. Which one are you after?")
        .await;
    assert!(
        call.engine_setup()
            .instructions
            .ends_with("The caller's number is +15550123."),
        "the prompt names the caller"
    );

    let stock = call
        .model_calls("check_inventory", json!({ "product_id": "SKU-1234" }))
        .await;
    assert_eq!(stock.json()["product_id"], "SKU-1234");
    let quantity = stock.json()["quantity"].as_u64().expect("a quantity");
    assert_eq!(stock.json()["in_stock"], quantity > 0);

    // Another store has other stock.
    let mut elsewhere = TestCall::new(ProductSpecialist)
        .parameter("store", "south")
        .start()
        .await;
    let other = elsewhere
        .model_calls("check_inventory", json!({ "product_id": "SKU-1234" }))
        .await;
    assert_ne!(other.json()["quantity"], stock.json()["quantity"]);
}

#[tokio::test(start_paused = true)]
async fn the_specialist_tells_the_model_what_a_product_id_looks_like() {
    let mut call = TestCall::new(ProductSpecialist).start().await;
    let unknown = call
        .model_calls("check_inventory", json!({ "product_id": "1234" }))
        .await;
    assert_eq!(unknown.error_type(), Some("tool_error"));
    assert!(
        unknown
            .error_message()
            .is_some_and(|m| m.contains("SKU-1234")),
        "{unknown:?}"
    );
    let missing = call.model_calls("check_inventory", json!({})).await;
    assert_eq!(missing.error_type(), Some("invalid_arguments"));
}

#[tokio::test(start_paused = true)]
async fn the_specialist_stops_talking_when_interrupted_and_hangs_up_after_goodbye() {
    let mut call = TestCall::new(ProductSpecialist).start().await;
    call.model_says("We have twelve of those in the north store.")
        .await;
    call.caller_interrupts_after(Duration::from_millis(500))
        .await;
    assert_eq!(call.last_truncation_ms(), Some(500));
    call.caller_says("Great, thanks, bye!").await;
    call.model_says("Goodbye!").await;
    call.model_calls("end_call", json!({ "reason": "the caller is done" }))
        .await;
    let summary = call.ended().await;
    assert_eq!(
        summary.reason,
        EndReason::AgentHungUp {
            reason: "the caller is done".into()
        }
    );
    assert_eq!(summary.transcript.len(), 3);
}

/// The customer-service agent's tools are webhooks whose URLs come from the environment:
/// the test gives them for this call only, and stubs the store's API.
#[tokio::test(start_paused = true)]
async fn customer_service_starts_a_return_through_the_stores_api() {
    let mut call = TestCall::new(CustomerService)
        .env("ORDER_STATUS_URL", "https://api.example.com/orders/status")
        .env("RETURNS_URL", "https://api.example.com/returns")
        .env("WEBHOOK_SECRET", "whsec_test")
        .stub_tool(
            "get_order_status",
            |args| json!({ "order_id": args["order_id"], "items": [{ "item_id": "I-1" }] }),
        )
        .stub_tool(
            "initiate_return",
            |args| json!({ "return_id": "RET-9", "reason": args["reason"] }),
        )
        .start()
        .await;
    call.expect_greeting(
        "Hi! I'm here to help with your order. Do you have an order ID I can look up?",
    )
    .await;
    let order = call
        .model_calls("get_order_status", json!({ "order_id": "ORD-123456" }))
        .await;
    assert_eq!(order.json()["items"][0]["item_id"], "I-1");
    let started = call
        .model_calls(
            "initiate_return",
            json!({ "order_id": "ORD-123456", "item_id": "I-1", "reason": "wrong_item" }),
        )
        .await;
    assert_eq!(started.json()["return_id"], "RET-9");
    // A reason outside the enum never reaches the store's API.
    let bad = call
        .model_calls(
            "initiate_return",
            json!({ "order_id": "ORD-123456", "item_id": "I-1", "reason": "bored" }),
        )
        .await;
    assert_eq!(bad.error_type(), Some("invalid_arguments"));
}
