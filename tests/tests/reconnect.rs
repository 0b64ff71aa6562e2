//! Calls that survive their engine: a session lost or stalled mid-call is replaced by a new
//! one, configured the same way and given the conversation so far; tools still running
//! answer in it, once; the caller's longest silence is measured on the Twilio side. Each
//! misbehaviour of the fake engine has its test and its outcome.

mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{Call, Harness, WAIT};
use patter::call::ReconnectCause;
use patter::{AgentSpec, EndReason, Limits, ToolSet};
use patter_tests::fake_openai::{self, ConnHandle};
use serde_json::{Value, json};

#[patter::args]
struct Order {
    /// The order ID.
    order_id: String,
}

/// The orders looked up, each time: a tool must never run twice for one call (each test
/// asks for its own order).
static LOOKUPS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// How often `order` was looked up.
fn lookups(order: &str) -> usize {
    LOOKUPS
        .lock()
        .expect("lookups")
        .iter()
        .filter(|o| *o == order)
        .count()
}

/// Looks an order up, in 250 ms.
#[patter::tool]
async fn slow_lookup(args: Order) -> String {
    LOOKUPS.lock().expect("lookups").push(args.order_id.clone());
    tokio::time::sleep(Duration::from_millis(250)).await;
    format!("{} has shipped", args.order_id)
}

fn agent() -> AgentSpec {
    AgentSpec::new("You help with orders.")
        .first_message("Hello!")
        .tools(
            ToolSet::builder()
                .tool(slow_lookup::tool())
                .build()
                .expect("tools"),
        )
}

/// A harness whose stall detection is `stall` (the test limits otherwise turn it off).
async fn harness(stall: Duration) -> Harness {
    Harness::with_limits(agent(), |l| l.engine_stall = stall).await
}

/// 20 ms of μ-law at a speaking level.
fn loud() -> String {
    use base64::Engine as _;
    let bytes: Vec<u8> = (0..160)
        .map(|i| {
            let sample = (f64::from(i) * 0.25).sin() * 9000.0;
            patter::audio::codec::mulaw_encode(sample as i16)
        })
        .collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// 20 ms chunks of agent audio (μ-law, a tone).
fn agent_audio(chunks: usize) -> Vec<String> {
    (0..chunks).map(|_| loud()).collect()
}

fn refs(chunks: &[String]) -> Vec<&str> {
    chunks.iter().map(String::as_str).collect()
}

/// The greeting is asked for on `conn` and played.
async fn greeted(call: &Call, conn: &ConnHandle) {
    conn.wait_for_event("response.create", WAIT)
        .await
        .expect("the greeting");
    let audio = agent_audio(3);
    conn.send_audio_response("resp_g", "item_g", &refs(&audio), "Hello!");
    wait_media(call, 3).await;
}

/// A call on a harness with stall limit `stall`, its first engine session, greeting played.
async fn greeted_call(n: u128, stall: Duration) -> (Harness, Call, ConnHandle) {
    let h = harness(stall).await;
    let call = h.call(n).await;
    let conn = h.engine_conn(0).await;
    greeted(&call, &conn).await;
    (h, call, conn)
}

/// Waits until the lookup of `order` has started.
async fn lookup_started(order: &str) {
    tokio::time::timeout(WAIT, async {
        while lookups(order) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the tool starts");
}

/// The caller hangs up; what `on_call_end` got.
async fn hung_up(h: &mut Harness, call: &Call) -> patter::CallSummary {
    call.stream.send_stop().await.expect("stop");
    h.next_end().await
}

/// Waits until Twilio has received `n` media messages.
async fn wait_media(call: &Call, n: usize) {
    call.stream
        .wait_for(
            |received| received.iter().filter(|m| m["event"] == "media").count() >= n,
            WAIT,
        )
        .await
        .expect("agent audio at Twilio");
}

/// The longest gap between two media messages Twilio received after `since`, or from
/// `since` to the first: the longest silence the caller heard in that stretch.
fn longest_silence(call: &Call, since: Instant) -> Duration {
    let mut last = since;
    let mut longest = Duration::ZERO;
    for at in call.stream.media_arrivals() {
        if at < since {
            continue;
        }
        longest = longest.max(at - last);
        last = at;
    }
    longest
}

/// The items a session was given with `conversation.item.create`, in order.
fn items(conn: &ConnHandle) -> Vec<Value> {
    conn.events_of_type("conversation.item.create")
        .into_iter()
        .map(|e| e["item"].clone())
        .collect()
}

/// The function results a session was given, by call id.
fn outputs(conn: &ConnHandle) -> Vec<String> {
    items(conn)
        .into_iter()
        .filter(|i| i["type"] == "function_call_output")
        .filter_map(|i| i["call_id"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn an_engine_dropped_mid_sentence_goes_on_in_a_new_session_with_the_conversation() {
    let (mut h, call, conn) = greeted_call(1, Duration::from_secs(3600)).await;

    // The caller asks; the model looks the order up and starts to answer.
    conn.send(fake_openai::speech_stopped("item_c1", 1200));
    conn.send(fake_openai::input_transcription_completed(
        "item_c1",
        "Where is order 42?",
    ));
    conn.send_function_call_response(
        "resp_1",
        &[("call_1", "slow_lookup", r#"{"order_id":"42"}"#)],
    );
    conn.wait_for_count("response.create", 2, WAIT)
        .await
        .expect("the model goes on after the tool");
    let answer = agent_audio(5);
    conn.send_all(
        fake_openai::audio_response_events("resp_2", "item_2", &refs(&answer), "")
            .into_iter()
            .take(2 + 3),
    );
    wait_media(&call, 6).await;

    // Mid-sentence, the engine is gone.
    let dropped = Instant::now();
    conn.drop_tcp();
    let next = h.engine_conn(1).await;
    let update = next
        .wait_for_event("session.update", WAIT)
        .await
        .expect("configured like the first");
    let first = conn.events_of_type("session.update").remove(0);
    let instructions = update["session"]["instructions"]
        .as_str()
        .unwrap_or_default();
    assert!(
        instructions.starts_with(first["session"]["instructions"].as_str().unwrap_or("?")),
        "{instructions}"
    );
    assert!(instructions.contains("Do not greet the caller again"));
    assert_eq!(update["session"]["tools"], first["session"]["tools"]);
    assert_eq!(update["session"]["audio"], first["session"]["audio"]);

    // The conversation so far, in order, then the answer it owed, and no second greeting.
    let resumed = next
        .wait_for_event("response.create", WAIT)
        .await
        .expect("the unfinished answer is asked for again");
    assert!(
        resumed.get("response").is_none(),
        "not a greeting: {resumed}"
    );
    let replayed = items(&next);
    let kinds: Vec<(String, String)> = replayed
        .iter()
        .map(|i| {
            let text = i["content"][0]["text"]
                .as_str()
                .or_else(|| i["call_id"].as_str())
                .unwrap_or_default();
            (
                i["type"].as_str().unwrap_or_default().to_owned(),
                text.to_owned(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("message".to_owned(), "Hello!".to_owned()),
            ("message".to_owned(), "Where is order 42?".to_owned()),
            ("function_call".to_owned(), "call_1".to_owned()),
            ("function_call_output".to_owned(), "call_1".to_owned()),
        ],
        "{replayed:#?}"
    );
    assert_eq!(replayed[0]["role"], "assistant");
    assert_eq!(replayed[1]["role"], "user");
    assert_eq!(replayed[3]["output"], json!("42 has shipped"));

    // The new session's answer reaches the caller.
    let rest = agent_audio(3);
    next.send_audio_response("resp_3", "item_3", &refs(&rest), "Order 42 has shipped.");
    wait_media(&call, 9).await;
    let silence = longest_silence(&call, dropped);
    println!("the caller's longest silence across the reconnect: {silence:?}");
    assert!(silence <= Duration::from_secs(3), "{silence:?}");

    let end = hung_up(&mut h, &call).await;
    assert_eq!(end.reason, EndReason::StreamStopped);
    assert_eq!(end.reconnects.len(), 1, "{:?}", end.reconnects);
    let reconnect = &end.reconnects[0];
    assert_eq!(reconnect.cause, ReconnectCause::Lost);
    assert_eq!((reconnect.attempts, reconnect.replayed), (1, 4));
    assert!(reconnect.took < Duration::from_secs(3), "{reconnect:?}");
    assert_eq!(lookups("42"), 1, "the tool ran once");
    assert_eq!(end.tool_calls.len(), 1);
    assert_eq!(outputs(&conn), ["call_1"]);
    h.engine.assert_no_schema_violations();
}

#[tokio::test]
async fn a_tool_running_when_the_engine_closes_answers_in_the_new_session_once() {
    let (mut h, call, conn) = greeted_call(2, Duration::from_secs(3600)).await;
    conn.send(fake_openai::speech_stopped("item_c1", 900));
    conn.send_function_call_response(
        "resp_1",
        &[("call_7", "slow_lookup", r#"{"order_id":"7"}"#)],
    );
    // The tool has started (it takes 250 ms); the engine closes meanwhile.
    lookup_started("7").await;
    conn.close();
    let next = h.engine_conn(1).await;
    // The call is in the new session's context without a result; the result follows, once,
    // and the model goes on.
    next.wait_for_count("response.create", 1, WAIT)
        .await
        .expect("the model goes on in the new session");
    let replayed = items(&next);
    let call_at = replayed
        .iter()
        .position(|i| i["type"] == "function_call" && i["call_id"] == "call_7")
        .unwrap_or_else(|| panic!("the running call is replayed: {replayed:#?}"));
    let output_at = replayed
        .iter()
        .position(|i| i["type"] == "function_call_output")
        .unwrap_or_else(|| panic!("the result is sent: {replayed:#?}"));
    assert!(call_at < output_at);
    assert_eq!(replayed[output_at]["output"], json!("7 has shipped"));
    assert!(outputs(&conn).is_empty(), "the lost session got no result");
    assert_eq!(outputs(&next), ["call_7"]);

    let end = hung_up(&mut h, &call).await;
    assert_eq!(lookups("7"), 1, "the tool ran once");
    assert_eq!(end.reconnects.len(), 1);
    assert_eq!(end.tool_calls.len(), 1);
    h.engine.assert_no_schema_violations();
}

#[tokio::test]
async fn an_engine_that_goes_silent_while_the_caller_waits_is_replaced_within_the_default_limit() {
    let stall = Limits::default().engine_stall;
    let (mut h, call, conn) = greeted_call(3, stall).await;
    // The caller stops speaking; then the engine says nothing more.
    let asked = Instant::now();
    conn.send(fake_openai::speech_stopped("item_c1", 1500));
    conn.send(fake_openai::input_transcription_completed(
        "item_c1",
        "Are you there?",
    ));
    conn.go_silent();
    let next = h.engine_conn(1).await;
    next.wait_for_event("response.create", WAIT)
        .await
        .expect("the answer is asked of the new session");
    let answer = agent_audio(3);
    next.send_audio_response("resp_1", "item_1", &refs(&answer), "Yes, I'm here.");
    wait_media(&call, 6).await;
    let silence = longest_silence(&call, asked);
    println!("stalled engine: the caller waited {silence:?} (stall limit {stall:?})");
    assert!(silence <= Duration::from_secs(3), "{silence:?}");
    let end = hung_up(&mut h, &call).await;
    assert_eq!(end.reconnects.len(), 1);
    assert_eq!(end.reconnects[0].cause, ReconnectCause::Stalled);
}

#[tokio::test]
async fn an_engine_that_never_confirms_its_configuration_is_replaced_and_the_greeting_goes_once() {
    let mut h = harness(Duration::from_millis(500)).await;
    h.engine.stall_next_sessions(1);
    let call = h.call(4).await;
    let mute = h.engine_conn(0).await;
    mute.wait_for_event("session.update", WAIT)
        .await
        .expect("asked");
    let next = h.engine_conn(1).await;
    greeted(&call, &next).await;
    let update = next
        .wait_for_event("session.update", WAIT)
        .await
        .expect("configured");
    let instructions = update["session"]["instructions"]
        .as_str()
        .unwrap_or_default();
    assert!(
        !instructions.contains("resumed"),
        "nothing to resume yet: {instructions}"
    );
    let greeting = next.events_of_type("response.create").remove(0);
    assert!(
        greeting["response"]["instructions"]
            .as_str()
            .is_some_and(|i| i.contains("Hello!")),
        "{greeting}"
    );
    assert!(
        mute.events_of_type("response.create").is_empty(),
        "the greeting was asked of the session that answered only"
    );
    let end = hung_up(&mut h, &call).await;
    assert_eq!(end.reconnects.len(), 1);
    assert_eq!(end.reconnects[0].cause, ReconnectCause::Stalled);
}

#[tokio::test]
async fn speech_a_silent_engine_does_not_notice_is_a_stall_and_the_new_session_hears_the_caller() {
    let (mut h, call, conn) = greeted_call(5, Duration::from_secs(1)).await;
    conn.go_silent();
    // The caller talks; the engine says nothing (no speech_started).
    let talking = loud();
    let mut timestamp = 1000;
    let next = loop {
        call.stream
            .send_media(timestamp, &talking)
            .await
            .expect("media");
        timestamp += 20;
        if let Some(next) = h.engine.try_conn(1) {
            break next;
        }
        assert!(
            timestamp < 1000 + 10_000,
            "no new session after 10 s of speech"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    for _ in 0..5 {
        call.stream
            .send_media(timestamp, &talking)
            .await
            .expect("media");
        timestamp += 20;
    }
    next.wait_for_event("input_audio_buffer.append", WAIT)
        .await
        .expect("the caller's audio reaches the new session");
    let end = hung_up(&mut h, &call).await;
    assert_eq!(end.reconnects.len(), 1);
    assert_eq!(end.reconnects[0].cause, ReconnectCause::Stalled);
}

#[tokio::test]
async fn a_slow_engine_is_slow_not_stalled() {
    let mut h = harness(Limits::default().engine_stall).await;
    h.engine.slow_down(Duration::from_millis(500));
    let call = h.call(6).await;
    let conn = h.engine_conn(0).await;
    conn.wait_for_event("response.create", WAIT)
        .await
        .expect("the greeting, once configured (late)");
    let audio = agent_audio(3);
    conn.send_audio_response("resp_g", "item_g", &refs(&audio), "Hello!");
    // 500 ms per event: the audio arrives, late.
    wait_media(&call, 3).await;
    let end = hung_up(&mut h, &call).await;
    assert_eq!(end.reason, EndReason::StreamStopped);
    assert!(end.reconnects.is_empty(), "{:?}", end.reconnects);
    assert_eq!(h.engine.connections(), 1);
}

#[tokio::test]
async fn a_non_fatal_error_mid_response_is_logged_and_the_call_goes_on() {
    let mut h = harness(Duration::from_secs(3600)).await;
    let call = h.call(7).await;
    let conn = h.engine_conn(0).await;
    conn.wait_for_event("response.create", WAIT)
        .await
        .expect("the greeting");
    let audio = agent_audio(4);
    let events = fake_openai::audio_response_events("resp_g", "item_g", &refs(&audio), "Hello!");
    let (head, tail) = events.split_at(4);
    conn.send_all(head.iter().cloned());
    conn.send(fake_openai::error_event(
        "invalid_value",
        "Invalid value for audio_end_ms.",
    ));
    conn.send_all(tail.iter().cloned());
    wait_media(&call, 4).await;
    let talking = loud();
    call.stream.send_media(2000, &talking).await.expect("media");
    conn.wait_for_event("input_audio_buffer.append", WAIT)
        .await
        .expect("still relayed");
    let end = hung_up(&mut h, &call).await;
    assert_eq!(end.reason, EndReason::StreamStopped);
    assert!(end.reconnects.is_empty());
}

#[tokio::test]
async fn reconnects_are_capped_per_call_then_the_caller_hears_the_apology() {
    let mut h = Harness::with_limits(agent(), |l| l.reconnect_attempts = 2).await;
    let call = h.call(8).await;
    for i in 0..2 {
        let conn = h.engine_conn(i).await;
        conn.wait_for_event("session.update", WAIT)
            .await
            .expect("configured");
        conn.drop_tcp();
    }
    let last = h.engine_conn(2).await;
    last.wait_for_event("session.update", WAIT)
        .await
        .expect("configured");
    last.drop_tcp();
    let end = h.next_end().await;
    assert!(end.reason.is_engine_failure(), "{:?}", end.reason);
    assert_eq!(end.reconnects.len(), 2);
    assert_eq!(h.engine.connections(), 3, "no fourth session");
    let updates: Vec<_> = h
        .rest
        .requests()
        .into_iter()
        .filter(|r| r.call_sid == call.call_sid)
        .collect();
    assert_eq!(updates.len(), 1, "{updates:?}");
    assert!(
        updates[0]
            .param("Twiml")
            .is_some_and(|t| t.contains("<Say>")),
        "{updates:?}"
    );
}

#[tokio::test]
async fn a_burst_of_malformed_json_is_counted_and_the_call_goes_on() {
    let mut h = harness(Limits::default().engine_stall).await;
    let call = h.call(9).await;
    let conn = h.engine_conn(0).await;
    conn.wait_for_event("response.create", WAIT)
        .await
        .expect("the greeting");
    for i in 0..50 {
        conn.send_raw(format!(
            "{{\"type\":\"response.output_audio.delta\",\"delta\":{i}"
        ));
    }
    let audio = agent_audio(3);
    conn.send_audio_response("resp_g", "item_g", &refs(&audio), "Hello!");
    wait_media(&call, 3).await;
    let end = hung_up(&mut h, &call).await;
    assert_eq!(end.reason, EndReason::StreamStopped);
    assert_eq!(end.metrics.malformed_frames, 50);
    assert!(end.reconnects.is_empty());
}

#[tokio::test]
async fn an_engine_lost_before_its_tool_calling_response_ended_is_resumed_by_the_result() {
    let (mut h, call, conn) = greeted_call(10, Duration::from_secs(3600)).await;
    conn.send(fake_openai::speech_stopped("item_c1", 900));
    // The response calls the tool, and the engine is gone before it ends.
    conn.send(fake_openai::response_created("resp_1"));
    conn.send_all(fake_openai::function_call_events_at(
        "resp_1",
        0,
        "item_call_8",
        "call_8",
        "slow_lookup",
        r#"{"order_id":"8"}"#,
    ));
    lookup_started("8").await;
    conn.drop_tcp();
    let next = h.engine_conn(1).await;
    next.wait_for_event("response.create", WAIT)
        .await
        .expect("the model goes on");
    // Not before the result: the model would see its call unanswered.
    let events = next.events();
    let result_at = events
        .iter()
        .position(|e| e["item"]["type"] == "function_call_output")
        .unwrap_or_else(|| panic!("no result: {events:#?}"));
    let resumed_at = events
        .iter()
        .position(|e| e["type"] == "response.create")
        .unwrap_or_default();
    assert!(result_at < resumed_at, "{events:#?}");
    assert_eq!(
        next.events_of_type("response.create").len(),
        1,
        "one response"
    );
    let end = hung_up(&mut h, &call).await;
    assert_eq!(lookups("8"), 1, "the tool ran once");
    assert_eq!(end.reconnects.len(), 1);
}

#[tokio::test]
async fn an_expired_engine_session_is_replaced_and_the_call_goes_on() {
    let (mut h, call, conn) = greeted_call(11, Duration::from_secs(3600)).await;
    conn.send(fake_openai::error_event(
        "session_expired",
        "Your session hit the maximum duration of 60 minutes.",
    ));
    let next = h.engine_conn(1).await;
    next.wait_for_event("session.update", WAIT)
        .await
        .expect("a new session");
    let end = hung_up(&mut h, &call).await;
    assert_eq!(end.reason, EndReason::StreamStopped);
    assert_eq!(end.reconnects.len(), 1);
}
