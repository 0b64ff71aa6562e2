//! How a call behaves, through `patter::testing`: the real session, tools, hooks and limits,
//! with a scripted engine and a simulated phone in memory, in test time. The suites over
//! loopback sockets (`call_flow`, `call_control`, `call_bad_input`, …) cover the wire.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use patter::testing::{SentCommand, TestCall};
use patter::{
    AgentSpec, AudioFormat, CallContext, CallSetup, EndReason, FnTool, Hooks, Json, Limits, NoArgs,
    Role, ToolOutput, ToolSet, WebhookTool, json,
};

#[patter::args]
struct Lookup {
    /// The order ID.
    order_id: String,
}

/// Look up an order.
#[patter::tool]
async fn lookup(args: Lookup, call: &CallContext) -> Json<patter::JsonValue> {
    Json(json!({
        "order_id": args.order_id,
        "status": "shipped",
        "caller": call.caller(),
        "tier": call.parameter("tier"),
    }))
}

/// Waits forever, until its timeout.
#[patter::tool(timeout_secs = 10)]
async fn stuck() -> String {
    std::future::pending::<()>().await;
    unreachable!()
}

/// Transfers to sales, or hangs up if that fails.
#[patter::tool]
async fn sales_or_goodbye() -> ToolOutput {
    ToolOutput::text("connecting")
        .then_transfer("+15550199")
        .then_hang_up("no one in sales")
}

fn agent() -> AgentSpec {
    AgentSpec::new("You help {caller} with orders for {company}.")
        .first_message("Hi! Do you have an order ID?")
        .variable("company", "Acme")
        .tools(
            ToolSet::builder()
                .tool(lookup::tool())
                .tool(stuck::tool())
                .tool(sales_or_goodbye::tool())
                .build()
                .expect("tools"),
        )
        .transfers(
            patter::Transfers::new()
                .destination("front_desk", "+15550100")
                .and_then(|t| t.allow("+1555*"))
                .expect("transfers"),
        )
}

fn limits(set: impl FnOnce(&mut Limits)) -> Limits {
    let mut limits = Limits::default();
    set(&mut limits);
    limits
}

#[tokio::test(start_paused = true)]
async fn the_greeting_is_verbatim_and_the_prompt_has_its_variables() {
    let mut call = TestCall::new(agent()).caller("+15550111").start().await;
    call.expect_greeting("Hi! Do you have an order ID?").await;
    let setup = call.engine_setup();
    assert_eq!(
        setup.instructions,
        "You help +15550111 with orders for Acme."
    );
    let tools: Vec<&str> = setup.tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        tools,
        [
            "lookup",
            "stuck",
            "sales_or_goodbye",
            "end_call",
            "transfer_call"
        ]
    );
    assert_eq!(
        setup.model, "gpt-realtime-2.1",
        "the engine's default model"
    );
    call.caller_hangs_up().await;
    let summary = call.ended().await;
    assert_eq!(summary.reason, EndReason::StreamStopped);
    assert_eq!(call.hang_ups(), 0, "the caller hung up: nothing to hang up");
}

#[tokio::test(start_paused = true)]
async fn a_tool_runs_with_the_calls_context_and_the_model_goes_on_once() {
    let mut call = TestCall::new(agent())
        .parameter("tier", "gold")
        .start()
        .await;
    let reply = call
        .model_calls("lookup", json!({ "order_id": "ORD-1" }))
        .await;
    assert_eq!(reply.json()["status"], "shipped");
    assert_eq!(reply.json()["tier"], "gold");
    assert_eq!(reply.json()["caller"], "+15550100");
    assert!(reply.continued());
    assert_eq!(call.continues(), 1);
    call.caller_hangs_up().await;
    let summary = call.ended().await;
    assert_eq!(summary.tool_calls.len(), 1);
    assert!(summary.tool_calls[0].ok);
}

#[tokio::test(start_paused = true)]
async fn bad_arguments_and_unknown_tools_are_errors_the_model_sees() {
    let mut call = TestCall::new(agent()).start().await;
    let wrong_type = call.model_calls("lookup", json!({ "order_id": 42 })).await;
    assert_eq!(wrong_type.error_type(), Some("invalid_arguments"));
    assert!(
        wrong_type
            .error_message()
            .unwrap_or_default()
            .contains("order_id"),
        "{wrong_type:?}"
    );
    let not_json = call.model_calls_raw("lookup", "{order_id: ").await;
    assert_eq!(not_json.error_type(), Some("invalid_arguments"));
    let unknown = call.model_calls("refund", json!({})).await;
    assert_eq!(unknown.error_type(), Some("unknown_tool"));
    assert_eq!(
        call.continues(),
        3,
        "each got its answer and the model went on"
    );
    assert!(!call.is_ended());
}

#[tokio::test(start_paused = true)]
async fn two_calls_in_one_response_get_two_results_and_one_go_ahead() {
    let mut call = TestCall::new(agent()).start().await;
    let replies = call
        .model_calls_together(&[
            ("lookup", json!({ "order_id": "ORD-1" })),
            ("lookup", json!({ "order_id": "ORD-2" })),
        ])
        .await;
    assert_eq!(replies[0].json()["order_id"], "ORD-1");
    assert_eq!(replies[1].json()["order_id"], "ORD-2");
    call.settle().await;
    assert_eq!(call.continues(), 1);
    let commands = call.engine_commands();
    let last = commands.last().expect("commands");
    assert_eq!(*last, SentCommand::ContinueAfterTools, "{commands:?}");
}

#[tokio::test(start_paused = true)]
async fn a_tool_timeout_is_an_error_the_model_sees_in_test_time() {
    let wall = Instant::now();
    let mut call = TestCall::new(agent()).start().await;
    let reply = call.model_calls("stuck", json!({})).await;
    assert_eq!(reply.error_type(), Some("timeout"));
    assert!(reply.continued());
    // Ten seconds of test time; the wall-clock time is reported, not asserted.
    eprintln!("a 10 s tool timeout took {:?} of wall time", wall.elapsed());
}

#[tokio::test(start_paused = true)]
async fn a_result_over_the_limit_is_cut_for_the_model() {
    let huge = FnTool::new("huge", "A lot.", |_: NoArgs, _: CallContext| async {
        "x".repeat(5 * 1024 * 1024)
    });
    let agent = AgentSpec::new("p").tools(ToolSet::builder().tool(huge).build().expect("tools"));
    let mut call = TestCall::new(agent)
        .limits(limits(|l| l.max_tool_result_bytes = 100))
        .start()
        .await;
    let reply = call.model_calls("huge", json!({})).await;
    assert!(reply.text().starts_with(&"x".repeat(100)));
    assert!(
        reply
            .text()
            .ends_with("[result cut: it was 5242880 bytes, the limit is 100]"),
        "{}",
        &reply.text()[100..]
    );
}

#[tokio::test(start_paused = true)]
async fn barge_in_clears_the_phone_and_truncates_at_what_was_heard() {
    let mut call = TestCall::new(agent()).start().await;
    call.model_says("We have twelve of those in stock.").await;
    assert_eq!(call.agent_audio_ms(), 2200);
    call.caller_interrupts_after(Duration::from_millis(300))
        .await;
    assert_eq!(call.clears(), 1);
    assert_eq!(call.last_truncation_ms(), Some(300));
    // What played in full is not truncated.
    call.model_says("Sure.").await;
    call.wait_until_played().await;
    call.caller_interrupts_after(Duration::from_millis(40))
        .await;
    assert_eq!(call.clears(), 2);
    let truncations = call
        .engine_commands()
        .iter()
        .filter(|c| matches!(c, SentCommand::Truncate { .. }))
        .count();
    assert_eq!(truncations, 1);
}

#[tokio::test(start_paused = true)]
async fn pcm_engines_get_converted_audio_both_ways() {
    let mut call = TestCall::new(agent().audio_format(AudioFormat::Pcm24k))
        .start()
        .await;
    call.caller_sends_audio(&[0x55; 1600]).await;
    // 200 ms of μ-law at 8 kHz is 200 ms of PCM16 at 24 kHz.
    assert_eq!(call.caller_audio_bytes(), 1600 * 3 * 2);
    call.model_says("Hello there.").await;
    assert_eq!(call.agent_audio_ms(), 800);
}

#[tokio::test(start_paused = true)]
async fn the_callers_words_and_the_agents_reach_the_transcript_and_its_hook() {
    let heard = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&heard);
    let mut call = TestCall::new(agent())
        .hooks(
            Hooks::new()
                .on_transcript(move |_, entry| seen.lock().unwrap().push(entry.text.clone())),
        )
        .start()
        .await;
    call.model_says("Hi! Do you have an order ID?").await;
    call.caller_says("Yes, it is ORD-1.").await;
    call.caller_hangs_up().await;
    let summary = call.ended().await;
    let turns: Vec<(Role, &str)> = summary
        .transcript
        .iter()
        .map(|t| (t.role, t.text.as_str()))
        .collect();
    assert_eq!(
        turns,
        [
            (Role::Agent, "Hi! Do you have an order ID?"),
            (Role::Caller, "Yes, it is ORD-1.")
        ]
    );
    assert_eq!(
        *heard.lock().unwrap(),
        ["Hi! Do you have an order ID?", "Yes, it is ORD-1."]
    );
}

#[tokio::test(start_paused = true)]
async fn keypad_presses_reach_the_dtmf_hook_and_the_call_goes_on() {
    let keys = Arc::new(Mutex::new(String::new()));
    let seen = Arc::clone(&keys);
    let mut call = TestCall::new(agent())
        .hooks(Hooks::new().on_dtmf(move |_, key| seen.lock().unwrap().push(key)))
        .start()
        .await;
    call.caller_presses("12#").await;
    assert_eq!(*keys.lock().unwrap(), "12#");
    let reply = call.model_calls("lookup", json!({ "order_id": "1" })).await;
    assert!(reply.error_type().is_none());
}

#[tokio::test(start_paused = true)]
async fn malformed_frames_from_either_side_are_ignored() {
    let mut call = TestCall::new(agent()).start().await;
    call.caller_sends_garbage().await;
    call.engine_sends_garbage().await;
    let reply = call.model_calls("lookup", json!({ "order_id": "1" })).await;
    assert!(reply.error_type().is_none());
    assert!(!call.is_ended());
}

#[tokio::test(start_paused = true)]
async fn a_caller_who_disconnects_ends_the_call_without_a_hang_up() {
    let mut call = TestCall::new(agent()).start().await;
    call.caller_disconnects().await;
    assert_eq!(call.ended().await.reason, EndReason::StreamClosed);
    assert_eq!(call.hang_ups(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_benign_engine_error_is_logged_and_a_fatal_one_ends_the_call() {
    let mut call = TestCall::new(agent()).start().await;
    call.engine_error("conversation_already_has_active_response", "busy")
        .await;
    let reply = call.model_calls("lookup", json!({ "order_id": "1" })).await;
    assert!(reply.continued(), "the call went on");
    call.engine_fails("insufficient_quota", "Your session expired.")
        .await;
    let summary = call.ended().await;
    assert_eq!(
        summary.reason,
        EndReason::EngineError {
            message: "Your session expired.".into()
        }
    );
    assert_eq!(call.hang_ups(), 1, "never left in silence on an open line");
}

#[tokio::test(start_paused = true)]
async fn losing_the_engine_hangs_the_call_up_once() {
    let ends = Arc::new(Mutex::new(0));
    let counted = Arc::clone(&ends);
    let mut call = TestCall::new(agent())
        .hooks(Hooks::new().on_call_end(move |_| {
            *counted.lock().unwrap() += 1;
            async {}
        }))
        .start()
        .await;
    call.engine_drops().await;
    let summary = call.ended().await;
    assert!(matches!(summary.reason, EndReason::EngineLost { .. }));
    assert_eq!(call.hang_ups(), 1);
    assert_eq!(*ends.lock().unwrap(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_engine_hangs_up_and_still_reports_the_call() {
    let reported = Arc::new(Mutex::new(None));
    let seen = Arc::clone(&reported);
    let mut call = TestCall::new(agent())
        .engine_unavailable("429 Too Many Requests")
        .hooks(Hooks::new().on_call_end(move |summary| {
            *seen.lock().unwrap() = Some(summary.reason);
            async {}
        }))
        .start()
        .await;
    let summary = call.ended().await;
    assert_eq!(
        summary.reason,
        EndReason::EngineLost {
            detail: "the engine could not be reached: 429 Too Many Requests".into()
        }
    );
    assert_eq!(call.hang_ups(), 1);
    assert_eq!(*reported.lock().unwrap(), Some(summary.reason));
}

#[tokio::test(start_paused = true)]
async fn on_call_start_overrides_the_prompt_first_message_variables_and_tools() {
    let mut call = TestCall::new(agent())
        .hooks(Hooks::new().on_call_start(|call| async move {
            let vip = FnTool::new("vip", "VIP desk.", |_: NoArgs, _: CallContext| async {
                "ok"
            });
            CallSetup::new()
                .system_prompt("You serve {caller} at {desk}.")
                .variable("desk", "the VIP desk")
                .first_message(format!("Welcome back, {}!", call.caller()))
                .tools(ToolSet::builder().tool(vip).build().expect("tools"))
        }))
        .start()
        .await;
    call.expect_greeting("Welcome back, +15550100!").await;
    let setup = call.engine_setup();
    assert_eq!(setup.instructions, "You serve +15550100 at the VIP desk.");
    let tools: Vec<&str> = setup.tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(tools, ["vip", "end_call", "transfer_call"]);
    assert_eq!(
        call.model_calls("lookup", json!({ "order_id": "1" }))
            .await
            .error_type(),
        Some("unknown_tool")
    );
}

#[tokio::test(start_paused = true)]
async fn without_a_first_message_the_caller_speaks_first() {
    let mut call = TestCall::new(AgentSpec::new("Listen.")).start().await;
    call.settle().await;
    assert_eq!(call.greeting(), None);
}

#[tokio::test(start_paused = true)]
async fn end_call_hangs_up_once_the_goodbye_has_played() {
    let mut call = TestCall::new(agent()).start().await;
    call.model_says("Thanks for calling, goodbye!").await;
    let reply = call
        .model_calls("end_call", json!({ "reason": "the caller said goodbye" }))
        .await;
    assert!(reply.ended_call(), "no result: the call ended");
    let summary = call.ended().await;
    assert_eq!(
        summary.reason,
        EndReason::AgentHungUp {
            reason: "the caller said goodbye".into()
        }
    );
    assert_eq!(call.hang_ups(), 1);
    // The hang-up waited for the goodbye's audio to play: every mark came back first.
    let events = call.events();
    let hung_up = events
        .iter()
        .position(|e| e == "call control: hung up")
        .expect("hung up");
    // 28 characters take 1,820 ms to say: 19 chunks of 100 ms, each with a mark.
    let played = events
        .iter()
        .position(|e| e == "caller: played up to a mark (19 in a row)")
        .expect("all 19 chunks played");
    assert!(played < hung_up, "{events:#?}");
    assert_eq!(call.continues(), 0, "nothing is said after a hang-up");
}

#[tokio::test(start_paused = true)]
async fn transfer_call_transfers_and_a_refused_transfer_is_told_to_the_model() {
    let mut call = TestCall::new(agent()).start().await;
    let bad = call
        .model_calls("transfer_call", json!({ "number": "555-0199" }))
        .await;
    assert_eq!(bad.error_type(), Some("tool_error"));
    assert!(call.transfers().is_empty(), "refused before any request");
    call.model_calls("transfer_call", json!({ "number": "+15550199" }))
        .await;
    let summary = call.ended().await;
    assert_eq!(
        summary.reason,
        EndReason::Transferred {
            to: "+15550199".into()
        }
    );
    assert_eq!(call.transfers(), ["+15550199"]);

    let mut refused = TestCall::new(agent())
        .refuse_transfer("Twilio answered HTTP 400: not allowed")
        .start()
        .await;
    let reply = refused
        .model_calls("transfer_call", json!({ "number": "+15550199" }))
        .await;
    assert_eq!(reply.error_type(), Some("tool_error"));
    assert_eq!(
        reply.error_message(),
        Some("Twilio answered HTTP 400: not allowed")
    );
    assert!(reply.continued());
    assert!(!refused.is_ended());
}

#[tokio::test(start_paused = true)]
async fn a_failed_hang_up_is_told_to_the_model_and_the_call_goes_on() {
    let mut call = TestCall::new(agent())
        .refuse_hang_up("Twilio could not be reached")
        .start()
        .await;
    let reply = call
        .model_calls("end_call", json!({ "reason": "done" }))
        .await;
    assert_eq!(reply.error_message(), Some("Twilio could not be reached"));
    assert!(!call.is_ended());
}

#[tokio::test(start_paused = true)]
async fn every_action_of_a_tool_is_carried_out_in_order() {
    let mut call = TestCall::new(agent()).refuse_transfer("busy").start().await;
    call.model_calls("sales_or_goodbye", json!({})).await;
    let summary = call.ended().await;
    // The transfer was tried first and refused; the hang-up after it went through.
    assert_eq!(
        summary.reason,
        EndReason::AgentHungUp {
            reason: "no one in sales".into()
        }
    );
    assert_eq!(call.hang_ups(), 1);
    let events = call.events();
    let refused = events
        .iter()
        .position(|e| e.contains("transfer to +15550199 refused"))
        .expect("transfer tried");
    let hung_up = events
        .iter()
        .position(|e| e == "call control: hung up")
        .expect("hung up");
    assert!(refused < hung_up);
}

#[tokio::test(start_paused = true)]
async fn an_hour_long_call_ends_with_a_goodbye_in_test_time() {
    let wall = Instant::now();
    let mut call = TestCall::new(agent())
        .limits(limits(|l| l.max_call_duration = Duration::from_secs(3600)))
        .start()
        .await;
    call.advance(Duration::from_secs(3599)).await;
    assert!(
        call.engine_commands()
            .iter()
            .all(|c| !matches!(c, SentCommand::Respond { .. }))
    );
    call.advance(Duration::from_secs(1)).await;
    let goodbye = call.expect_response_request().await;
    assert!(goodbye.contains("time limit"), "{goodbye}");
    assert_eq!(call.hang_ups(), 0, "the goodbye plays first");
    call.model_says("I'm sorry, I have to end the call now. Goodbye!")
        .await;
    let summary = call.ended().await;
    assert_eq!(summary.reason, EndReason::MaxDuration);
    assert_eq!(call.hang_ups(), 1);
    assert!(summary.duration >= Duration::from_secs(3600));
    eprintln!("a one-hour call took {:?} of wall time", wall.elapsed());
}

#[tokio::test(start_paused = true)]
async fn a_goodbye_that_never_comes_is_cut_off_after_the_wait() {
    let mut call = TestCall::new(agent())
        .limits(limits(|l| {
            l.max_call_duration = Duration::from_secs(60);
            l.goodbye_wait = Duration::from_secs(10);
        }))
        .start()
        .await;
    call.advance(Duration::from_secs(60)).await;
    call.expect_response_request().await;
    // The model never answers: after the goodbye wait the line is cut.
    let summary = call.ended().await;
    assert_eq!(summary.reason, EndReason::MaxDuration);
    assert_eq!(call.hang_ups(), 1);
    assert!(summary.duration >= Duration::from_secs(70));
}

#[tokio::test(start_paused = true)]
async fn a_shutdown_asks_for_a_goodbye_then_ends_the_call() {
    let mut call = TestCall::new(agent()).start().await;
    call.server_shuts_down().await;
    let goodbye = call.expect_response_request().await;
    assert!(goodbye.contains("call back"), "{goodbye}");
    call.model_says("We're restarting, please call back. Goodbye!")
        .await;
    assert_eq!(call.ended().await.reason, EndReason::Shutdown);
}

#[tokio::test(start_paused = true)]
async fn a_stub_replaces_a_webhook_tool_keeping_its_schema() {
    let agent = patter_examples::customer_service::CustomerService;
    let mut call = TestCall::new(agent)
        .env("ORDER_STATUS_URL", "https://api.example.com/orders/status")
        .env("RETURNS_URL", "https://api.example.com/returns")
        .env("WEBHOOK_SECRET", "whsec_test")
        .stub_tool(
            "get_order_status",
            |args| json!({ "order_id": args["order_id"], "status": "delivered" }),
        )
        .start()
        .await;
    let status = call
        .model_calls("get_order_status", json!({ "order_id": "ORD-123456" }))
        .await;
    assert_eq!(
        *status.json(),
        json!({ "order_id": "ORD-123456", "status": "delivered" })
    );
    let schema = &call.engine_setup().tools[0];
    assert_eq!(schema.name, "get_order_status");
    assert!(schema.description.starts_with("Look up an order"));
    assert_eq!(schema.parameters["required"], json!(["order_id"]));
}

/// A webhook tool pointed at a local endpoint makes real HTTP requests, so this test runs in
/// real time.
#[tokio::test]
async fn a_webhook_tool_can_point_at_a_local_endpoint() {
    use axum::routing::post;
    let app = axum::Router::new().route(
        "/returns",
        post(|body: axum::Json<patter::JsonValue>| async move {
            axum::Json(json!({ "return_id": "RET-1", "order": body.0["arguments"]["order_id"] }))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/returns", listener.local_addr().expect("addr"));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let local = WebhookTool::new::<patter_examples::customer_service::ReturnRequest>(
        "initiate_return",
        "Start a return.",
        &url,
    );
    let mut call = TestCall::new(patter_examples::customer_service::CustomerService)
        .env("ORDER_STATUS_URL", "https://api.example.com/orders/status")
        .env("RETURNS_URL", "https://api.example.com/returns")
        .env("WEBHOOK_SECRET", "whsec_test")
        .replace_tool(local)
        .start()
        .await;
    let reply = call
        .model_calls(
            "initiate_return",
            json!({ "order_id": "ORD-123456", "item_id": "I-1", "reason": "defective" }),
        )
        .await;
    assert_eq!(
        *reply.json(),
        json!({ "return_id": "RET-1", "order": "ORD-123456" })
    );
    server.abort();
}

#[tokio::test(start_paused = true)]
async fn a_failed_expectation_shows_what_happened_instead() {
    use futures_util::FutureExt;
    let mut call = TestCall::new(agent())
        .expect_within(Duration::from_secs(1))
        .start()
        .await;
    let failed = std::panic::AssertUnwindSafe(call.expect_greeting("Hello!"))
        .catch_unwind()
        .await
        .expect_err("a different greeting must fail");
    let message = failed.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        message.contains(r#"expected the greeting "Hello!", but the engine was asked to say "Hi! Do you have an order ID?""#),
        "{message}"
    );
    assert!(message.contains("call → engine: open"), "{message}");

    let waited = std::panic::AssertUnwindSafe(call.expect_response_request())
        .catch_unwind()
        .await
        .expect_err("nothing asks for a response");
    let message = waited.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("within 1s of test time"), "{message}");
    assert!(message.contains("say verbatim"), "{message}");
}

#[tokio::test(start_paused = true)]
async fn a_hook_that_panics_is_logged_and_the_call_goes_on() {
    let mut call = TestCall::new(agent())
        .hooks(
            Hooks::new()
                .on_call_start(|_| async { panic!("the CRM is down") })
                .on_dtmf(|_, _| panic!("bad key handler"))
                .on_transcript(|_, _| panic!("bad transcript handler")),
        )
        .start()
        .await;
    // The agent's own settings stand in for the failed on_call_start.
    call.expect_greeting("Hi! Do you have an order ID?").await;
    call.caller_presses("1").await;
    call.caller_says("Hello?").await;
    let reply = call.model_calls("lookup", json!({ "order_id": "1" })).await;
    assert!(reply.continued());
    call.caller_hangs_up().await;
    let summary = call.ended().await;
    assert_eq!(summary.reason, EndReason::StreamStopped);
    assert_eq!(
        summary.transcript.len(),
        1,
        "the turn is kept though its hook failed"
    );
}

#[tokio::test(start_paused = true)]
async fn an_error_result_is_cut_to_the_limit_too() {
    let noisy = FnTool::new(
        "noisy",
        "Fails loudly.",
        |_: NoArgs, _: CallContext| async { Err::<String, _>("e".repeat(100_000)) },
    );
    let agent = AgentSpec::new("p").tools(ToolSet::builder().tool(noisy).build().expect("tools"));
    let mut call = TestCall::new(agent)
        .limits(limits(|l| l.max_tool_result_bytes = 200))
        .start()
        .await;
    let reply = call.model_calls("noisy", json!({})).await;
    assert!(reply.text().len() < 300, "{}", reply.text().len());
    assert!(
        reply.text().ends_with("the limit is 200]"),
        "{}",
        reply.text()
    );
    let unknown = call.model_calls(&"x".repeat(5000), json!({})).await;
    assert!(unknown.text().len() < 300);
}

#[tokio::test(start_paused = true)]
async fn a_gpt_live_agent_is_scripted_the_same_way() {
    let agent = agent().engine(patter::engine::EngineKind::GptLive);
    let mut call = TestCall::new(agent).start().await;
    call.expect_greeting("Hi! Do you have an order ID?").await;
    assert_eq!(call.engine_setup().model, "gpt-live-1.1");
    let reply = call
        .model_calls("lookup", json!({ "order_id": "ORD-9" }))
        .await;
    assert_eq!(reply.json()["order_id"], "ORD-9");
    call.model_says("It shipped yesterday.").await;
    call.caller_hangs_up().await;
    assert_eq!(call.ended().await.reason, EndReason::StreamStopped);
}

#[tokio::test(start_paused = true)]
async fn on_event_reports_transcript_tools_and_the_wait_for_each_answer() {
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let log = Arc::clone(&seen);
    let hooks = Hooks::new().on_event(move |_, event| {
        let line = match event {
            patter::CallEvent::Transcript(entry) => format!("{:?}: {}", entry.role, entry.text),
            patter::CallEvent::ToolCalled { name, arguments } => format!("call {name} {arguments}"),
            patter::CallEvent::ToolFinished { name, ok, .. } => format!("done {name} ok={ok}"),
            patter::CallEvent::AgentAnswered { after_speech } => {
                format!("answered after {} ms", after_speech.as_millis())
            }
            other => format!("{other:?}"),
        };
        log.lock().expect("log").push(line);
    });
    let mut call = TestCall::new(agent()).hooks(hooks).start().await;
    call.caller_says("Where is my order?").await;
    call.advance(Duration::from_millis(180)).await;
    call.model_says("Let me check.").await;
    call.model_calls("get_order_status", json!({ "order_id": "ORD-1" }))
        .await;
    // Audio of an answer already given is not timed again.
    call.model_says("It has shipped.").await;
    let seen = seen.lock().expect("log").clone();
    assert_eq!(
        seen.iter()
            .filter(|l| l.starts_with("answered"))
            .collect::<Vec<_>>(),
        ["answered after 180 ms"],
        "{seen:?}"
    );
    assert!(
        seen.contains(&"Caller: Where is my order?".to_owned()),
        "{seen:?}"
    );
    assert!(
        seen.contains(&r#"call get_order_status {"order_id":"ORD-1"}"#.to_owned()),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|l| l.starts_with("done get_order_status ok=")),
        "{seen:?}"
    );
}
