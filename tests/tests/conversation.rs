//! `patter::testing::Conversation` against a fake Realtime server whose scripted model
//! answers in text, over loopback: the turn's events, mocks, hooks, each expectation passing
//! and failing (with its message), the judge against a fake Responses API, and `repeat`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use patter::testing::{Conversation, Judge, JudgeError, Turn, repeat};
use patter::{ConfigBuilder, EndReason, Hooks, json};
use patter_examples::customer_service::CustomerService;
use patter_examples::product_specialist::ProductSpecialist;
use patter_tests::fake_judge::{FakeJudge, JudgeAnswer};
use patter_tests::fake_model::{ModelInput, ModelReply};
use patter_tests::fake_openai::FakeRealtime;
use serde_json::Value;

/// The model: asks for the order id, looks it up when given one, reports the result, and
/// hangs up on goodbye.
fn order_model(input: &ModelInput) -> ModelReply {
    if let Some(output) = input.tool_output() {
        let status: Value = serde_json::from_str(output).unwrap_or_default();
        return match status["status"].as_str() {
            Some(status) => ModelReply::text(format!("Your order has {status}.")),
            None => ModelReply::text("Sorry, I could not look that up."),
        };
    }
    let said = input.last_user_text().unwrap_or_default();
    if let Some(id) = said.split_whitespace().find(|w| w.starts_with("ORD-")) {
        let id = id.trim_end_matches(['?', '.', '!']);
        return ModelReply::call("get_order_status", json!({ "order_id": id }));
    }
    if said.contains("bye") {
        return ModelReply::call("end_call", json!({ "reason": "the caller is done" }));
    }
    ModelReply::text("Could you give me your order ID?")
}

/// A conversation of the customer-service example on `fake`, its webhook tools' settings
/// given (they are mocked or never reached).
fn customer_service(fake: &FakeRealtime) -> Conversation {
    let config = ConfigBuilder::default()
        .openai_api_key("sk-conversation")
        .openai_realtime_url(fake.url())
        .build_local()
        .expect("settings");
    let mut conv = Conversation::with_config(CustomerService, &config);
    conv.env("ORDER_STATUS_URL", "http://127.0.0.1:9/orders")
        .env("RETURNS_URL", "http://127.0.0.1:9/returns")
        .env("WEBHOOK_SECRET", "whsec_test")
        .turn_timeout(Duration::from_secs(10));
    conv
}

/// The two turns of the order scenario, the lookup mocked.
async fn order_turns(fake: &FakeRealtime) -> (Conversation, Turn, Turn) {
    let mut conv = customer_service(fake);
    conv.mock_tool("get_order_status", |_| json!({ "status": "shipped" }));
    let first = conv.user_says("Where is my order?").await;
    let second = conv.user_says("It's ORD-123456").await;
    (conv, first, second)
}

/// The panic message of `check`.
fn failure(check: impl FnOnce()) -> String {
    let payload = std::panic::catch_unwind(std::panic::AssertUnwindSafe(check))
        .expect_err("the expectation must fail");
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}

#[tokio::test]
async fn asks_for_the_order_id_then_looks_it_up_with_the_mock() {
    let fake = FakeRealtime::start_with_model(order_model).await;
    let (conv, first, second) = order_turns(&fake).await;
    assert_eq!(
        conv.greeting(),
        Some("Hi! I'm here to help with your order. Do you have an order ID I can look up?")
    );
    let _ = first
        .expect()
        .no_tool_call()
        .reply_matches(|t| t.contains("order ID"));
    let _ = second
        .expect()
        .tool_called("get_order_status")
        .with_args_subset(json!({ "order_id": "ORD-123456" }))
        .with_args(json!({ "order_id": "ORD-123456" }))
        .succeeded()
        .reply_contains("SHIPPED");
    assert_eq!(second.reply(), "Your order has shipped.");
    let metrics = second.metrics().expect("the turn ended");
    assert_eq!((metrics.index, metrics.tool_calls), (2, 1));
    assert!(metrics.first_text.is_some());
    assert!(conv.transcript().contains("caller: It's ORD-123456"));

    let summary = conv.end().await;
    assert_eq!(summary.reason, EndReason::StreamStopped);
    assert_eq!(summary.tool_calls.len(), 1);
    assert_eq!(summary.tool_calls[0].output, r#"{"status":"shipped"}"#);
    // What the engine got is valid GA, in text modality, with the call's own tools.
    fake.assert_no_schema_violations();
    let update = fake.conn(0).events_of_type("session.update");
    assert_eq!(update[0]["session"]["output_modalities"], json!(["text"]));
    assert_eq!(
        update[0]["session"]["tools"].as_array().map(Vec::len),
        Some(4)
    );
}

#[tokio::test]
async fn a_real_tool_runs_with_the_calls_context_and_bad_arguments_become_an_error() {
    let fake = FakeRealtime::start_with_model(|input: &ModelInput| {
        match (input.tool_output(), input.last_user_text()) {
            (Some(_), _) => ModelReply::text("Done."),
            (None, Some(said)) if said.contains("42") => {
                ModelReply::call("check_inventory", json!({ "product_id": 42 }))
            }
            (None, _) => ModelReply::call("check_inventory", json!({ "product_id": "SKU-7" })),
        }
    })
    .await;
    let mut conv = Conversation::with_engine(
        ProductSpecialist,
        patter::engine::openai_realtime::OpenAiRealtime::new("sk-test").url(fake.url()),
    );
    conv.parameter("store", "north");
    let turn = conv.user_says("Is SKU-7 in stock?").await;
    let _ = turn.expect().tool_called("check_inventory").succeeded();
    assert!(
        turn.events().iter().any(|e| matches!(e,
            patter::call::TextEvent::ToolResult { output, .. } if output.contains(r#""product_id":"SKU-7""#))),
        "{:?}",
        turn.events()
    );
    let turn = conv.user_says("What about 42?").await;
    let _ = turn
        .expect()
        .tool_called("check_inventory")
        .failed_with("invalid_arguments")
        .reply_matches(|t| t == "Done.");
}

#[tokio::test]
async fn keys_reach_on_dtmf_and_end_call_ends_the_conversation() {
    let fake = FakeRealtime::start_with_model(order_model).await;
    let keys = Arc::new(Mutex::new(String::new()));
    let seen = Arc::clone(&keys);
    let mut conv = customer_service(&fake);
    conv.hooks(Hooks::new().on_dtmf(move |_, key| seen.lock().expect("keys").push(key)));
    conv.press("12#");
    let turn = conv.user_says("That's all, bye").await;
    let _ = turn.expect().tool_called("end_call").call_ended();
    assert!(matches!(turn.ended(), Some(EndReason::AgentHungUp { .. })));
    assert_eq!(*keys.lock().expect("keys"), "12#");
    // The keys went to the model first, in a turn of their own: not this turn's events.
    let transcript = conv.transcript();
    let (keys_at, bye_at) = (
        transcript.find("caller: The caller pressed 1 2 #"),
        transcript.find("caller: That's all, bye"),
    );
    assert!(keys_at.is_some() && keys_at < bye_at, "{transcript}");
    assert_eq!(
        turn.events()
            .iter()
            .filter(|e| matches!(e, patter::call::TextEvent::ToolCall { .. }))
            .count(),
        1,
        "{:?}",
        turn.events()
    );
    let after = std::panic::AssertUnwindSafe(conv.user_says("hello?"))
        .catch_unwind()
        .await
        .expect_err("the conversation is over");
    let message = after.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("the conversation ended"), "{message}");
}

#[tokio::test]
async fn every_expectation_fails_with_what_the_turn_did_instead() {
    let fake = FakeRealtime::start_with_model(order_model).await;
    let (_conv, first, second) = order_turns(&fake).await;
    let cases: Vec<(String, &str)> = vec![
        (
            failure(|| {
                let _ = second.expect().tool_called("initiate_return");
            }),
            "expected a call to initiate_return, but the next tool call was get_order_status",
        ),
        (
            failure(|| {
                let _ = first.expect().tool_called("get_order_status");
            }),
            "expected a call to get_order_status, but no tool was called after that point",
        ),
        (
            failure(|| {
                let _ = second.expect().no_tool_call();
            }),
            "expected no tool call, but get_order_status was called",
        ),
        (
            failure(|| {
                let _ = second
                    .expect()
                    .tool_called("get_order_status")
                    .with_args_subset(json!({ "order_id": "ORD-999" }));
            }),
            r#"expected arguments including {"order_id":"ORD-999"}, but get_order_status was called with {"order_id":"ORD-123456"}"#,
        ),
        (
            failure(|| {
                let _ = second
                    .expect()
                    .tool_called("get_order_status")
                    .with_args(json!({}));
            }),
            r#"expected the arguments {}, but get_order_status was called with {"order_id":"ORD-123456"}"#,
        ),
        (
            failure(|| {
                let _ = second
                    .expect()
                    .tool_called("get_order_status")
                    .failed_with("timeout");
            }),
            r#"expected the tool call to fail with timeout, but get_order_status returned {"status":"shipped"}"#,
        ),
        (
            failure(|| {
                let _ = second.expect().succeeded();
            }),
            "expected the tool call to succeed, but no tool call was expected before it",
        ),
        (
            failure(|| {
                let _ = first.expect().reply_matches(|t| t.contains("refund"));
            }),
            r#"expected a reply that matches, but the agent said "Could you give me your order ID?""#,
        ),
        (
            failure(|| {
                let _ = first
                    .expect()
                    .reply_contains("order ID")
                    .reply_contains("again");
            }),
            r#"expected a reply containing "again", but the agent said nothing after that point"#,
        ),
        (
            failure(|| {
                let _ = first.expect().call_ended();
            }),
            "expected the call to end, but it went on",
        ),
    ];
    for (message, says) in cases {
        assert!(message.contains(says), "wanted {says:?} in:\n{message}");
        // Each message shows the turn as it went.
        assert!(message.contains("the turn went:\n    1. "), "{message}");
    }
    let message = failure(|| {
        let _ = second.expect().tool_called("initiate_return");
    });
    assert!(
        message.contains(r#"after the caller said "It's ORD-123456" the turn went:"#),
        "{message}"
    );
    assert!(
        message.contains(r#"1. tool call get_order_status {"order_id":"ORD-123456"}"#),
        "{message}"
    );
    assert!(
        message.contains(r#"2. get_order_status returned {"status":"shipped"}"#),
        "{message}"
    );
    assert!(
        message.contains(r#"3. the agent said "Your order has shipped.""#),
        "{message}"
    );
}

#[tokio::test]
async fn a_turn_that_never_ends_fails_with_what_happened() {
    // The model calls a tool, then its next response never finishes.
    let fake = FakeRealtime::start_with_model(|input: &ModelInput| match input.tool_output() {
        None => ModelReply::call("get_order_status", json!({ "order_id": "ORD-1" })),
        Some(_) => ModelReply::Stall,
    })
    .await;
    let mut conv = customer_service(&fake);
    conv.turn_timeout(Duration::from_millis(300));
    conv.mock_tool("get_order_status", |_| json!({ "status": "lost" }));
    let failed = std::panic::AssertUnwindSafe(conv.user_says("Where is ORD-1?"))
        .catch_unwind()
        .await
        .expect_err("the turn cannot end in time");
    let message = failed.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("did not end within 300ms"), "{message}");
    assert!(
        message.contains("1. tool call get_order_status"),
        "{message}"
    );
}

#[tokio::test]
async fn the_judge_gets_the_conversation_and_the_intent_and_its_verdict_decides() {
    let fake = FakeRealtime::start_with_model(order_model).await;
    let judge = FakeJudge::start(|body: &Value| {
        let input = body["input"].as_str().unwrap_or_default();
        let shipped = input.contains("agent: Your order has shipped.");
        JudgeAnswer::Verdict {
            pass: shipped && input.contains("The intent: tells the caller"),
            reason: if shipped {
                "The agent said it shipped.".to_owned()
            } else {
                "The agent never said so.".to_owned()
            },
        }
    })
    .await;
    // A conversation with no judge set.
    let (_conv, _first, second) = order_turns(&fake).await;
    let mut judged = customer_service(&fake);
    judged.judge_with(
        Judge::new("sk-judge")
            .base_url(judge.base_url())
            .model("judge-mini"),
    );
    judged.mock_tool("get_order_status", |_| json!({ "status": "shipped" }));
    let _ = judged.user_says("Where is my order?").await;
    let before = judged.user_says("hmm").await;
    let after = judged.user_says("It's ORD-123456").await;

    let verdict = after.judge("tells the caller the order has shipped").await;
    assert_eq!(verdict.reason, "The agent said it shipped.");
    let failed =
        std::panic::AssertUnwindSafe(before.judge("tells the caller the order has shipped"))
            .catch_unwind()
            .await
            .expect_err("the judge says no");
    let message = failed.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        message.contains(r#"the judge found the agent did not "tells the caller the order has shipped": The agent never said so."#),
        "{message}"
    );
    assert!(message.contains("caller: hmm"), "{message}");

    let requests = judge.requests();
    assert_eq!(requests.len(), 2);
    let (auth, body) = &requests[0];
    assert_eq!(auth.as_deref(), Some("Bearer sk-judge"));
    assert_eq!(body["model"], "judge-mini");
    assert_eq!(body["text"]["format"]["type"], "json_schema");
    assert_eq!(body["text"]["format"]["strict"], true);
    assert_eq!(
        body["text"]["format"]["schema"]["required"],
        json!(["pass", "reason"])
    );
    let input = body["input"].as_str().expect("input");
    assert!(input.contains("caller: Where is my order?"), "{input}");
    assert!(
        input.contains(r#"(the agent called get_order_status with {"order_id":"ORD-123456"})"#),
        "{input}"
    );

    // Without a judge, and with a failing one, the test is told why.
    assert_eq!(second.try_judge("anything").await, Err(JudgeError::NotSet));
    let broken = FakeJudge::start(|_: &Value| JudgeAnswer::Status(429, "slow down".into())).await;
    let mut conv = customer_service(&fake);
    conv.judge_with(Judge::new("sk-judge").base_url(broken.base_url()));
    let turn = conv.user_says("hi").await;
    assert_eq!(
        turn.try_judge("greets").await,
        Err(JudgeError::Status {
            status: 429,
            body: "slow down".into()
        })
    );
}

#[tokio::test]
async fn repeat_reports_the_pass_rate_and_fails_below_the_minimum() {
    let fake = Arc::new(FakeRealtime::start_with_model(order_model).await);
    let runs = Arc::new(AtomicUsize::new(0));
    let report = repeat(4, || {
        let fake = Arc::clone(&fake);
        let run = runs.fetch_add(1, Ordering::SeqCst);
        async move {
            let mut conv = customer_service(&fake);
            conv.mock_tool("get_order_status", |_| json!({ "status": "shipped" }));
            // Odd runs expect what the model does not do.
            let wanted = if run.is_multiple_of(2) {
                "order ID"
            } else {
                "refund"
            };
            let turn = conv.user_says("Where is my order?").await;
            let _ = turn.expect().reply_contains(wanted);
        }
    })
    .await;
    assert_eq!((report.runs, report.passed), (4, 2));
    assert_eq!(report.pass_rate(), 0.5);
    assert_eq!(
        report
            .failures
            .iter()
            .map(|(run, _)| *run)
            .collect::<Vec<_>>(),
        [2, 4]
    );
    assert!(
        report.failures[0]
            .1
            .contains(r#"a reply containing "refund""#)
    );
    assert!(report.to_string().starts_with("2/4 runs passed (50 %)"));
    report.assert_pass_rate(0.5);
    let message = failure(|| report.assert_pass_rate(0.75));
    assert!(
        message.contains("wanted a pass rate of at least 75 %"),
        "{message}"
    );
    assert_eq!(fake.connections(), 4);
}

#[tokio::test]
async fn a_transfer_ends_the_conversation_and_says_where_to() {
    let fake = FakeRealtime::start_with_model(|_: &ModelInput| {
        ModelReply::call("transfer_call", json!({ "destination": "human_agent" }))
    })
    .await;
    let mut conv = customer_service(&fake);
    let turn = conv.user_says("Put me through to a person").await;
    let _ = turn.expect().tool_called("transfer_call").call_ended();
    assert_eq!(
        turn.ended(),
        Some(&EndReason::Transferred {
            to: "+15550142".to_owned()
        })
    );
}
