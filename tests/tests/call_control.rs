//! The system tools (`end_call`, `transfer_call`) and the REST requests they make, over
//! loopback: what Twilio receives, and what its errors become. How a call ends (time limits,
//! goodbyes, a lost engine) is covered in memory by `session.rs`.

mod common;

use common::{Harness, Options, WAIT, mulaw_b64};
use patter::{AgentSpec, EndReason};
use patter_tests::fake_openai::{audio_delta, error_event, response_created, response_done};
use serde_json::Value;

fn agent() -> AgentSpec {
    AgentSpec::new("You are a receptionist.").transfers(
        patter::Transfers::new()
            .destination("front_desk", "+15550100")
            .and_then(|t| t.allow("+1555*"))
            .expect("transfers"),
    )
}

fn output_of(conn: &patter_tests::fake_openai::ConnHandle, call_id: &str) -> Option<Value> {
    conn.events_of_type("conversation.item.create")
        .into_iter()
        .find(|e| e["item"]["call_id"] == call_id)
        .map(|e| e["item"]["output"].clone())
}

#[tokio::test]
async fn end_call_waits_for_the_goodbye_then_hangs_up_over_rest() {
    let mut h = Harness::start(agent()).await;
    let call = h.call(11).await;
    let conn = h.engine_conn(0).await;
    call.stream.set_auto_echo_marks(false);

    // The goodbye is still playing when the model calls end_call.
    conn.send(response_created("resp_bye"));
    conn.send(audio_delta("resp_bye", "item_bye", &mulaw_b64(800, 1)));
    call.stream
        .wait_for_marks(1, WAIT)
        .await
        .expect("goodbye mark");
    conn.send_all(patter_tests::fake_openai::function_call_events(
        "resp_bye",
        "item_fc",
        "call_end",
        "end_call",
        r#"{"reason":"the caller said goodbye"}"#,
    ));
    conn.send(response_done(
        "resp_bye",
        "completed",
        vec![patter_tests::fake_openai::function_call_item(
            "item_fc",
            "call_end",
            "end_call",
            r#"{"reason":"the caller said goodbye"}"#,
        )],
    ));
    // Nothing is hung up while the goodbye's mark is unplayed. A later engine event that
    // produces Twilio output proves the loop has handled response.done by now.
    conn.send(audio_delta("resp_x", "item_x", &mulaw_b64(8, 2)));
    call.stream
        .wait_for_marks(2, WAIT)
        .await
        .expect("second mark");
    assert!(
        h.rest.requests().is_empty(),
        "hung up before the goodbye played"
    );

    call.stream.echo_pending_marks().await.expect("played");
    let requests = h
        .rest
        .wait_for_request(1, WAIT)
        .await
        .expect("hang-up request");
    let request = &requests[0];
    assert_eq!(
        request.path,
        format!(
            "/2010-04-01/Accounts/{}/Calls/{}.json",
            common::account_sid(),
            call.call_sid
        )
    );
    assert_eq!(request.param("Status"), Some("completed"));
    assert_eq!(
        request.basic_auth(),
        Some((common::account_sid(), common::AUTH_TOKEN.to_owned()))
    );
    let end = h.next_end().await;
    assert_eq!(
        end.reason,
        EndReason::AgentHungUp {
            reason: "the caller said goodbye".into()
        }
    );
    assert!(
        conn.events_of_type("response.create").is_empty(),
        "no new response after a hang-up: {:?}",
        conn.event_types()
    );
    call.stream.wait_closed(WAIT).await.expect("stream closed");
    conn.wait_closed(WAIT).await.expect("engine closed");
    h.engine.assert_no_schema_violations();
    assert_eq!(h.active_calls().await, 0);
}

#[tokio::test]
async fn a_failed_hang_up_is_told_to_the_model_and_the_call_goes_on() {
    let mut h = Harness::start(agent()).await;
    let call = h.call(12).await;
    let conn = h.engine_conn(0).await;
    h.rest.set_status(500);
    conn.send_function_call_response("resp_e", &[("call_e", "end_call", r#"{"reason":"done"}"#)]);
    conn.wait_for_count("response.create", 1, WAIT)
        .await
        .expect("the model is asked to respond");
    let output = output_of(&conn, "call_e").expect("output");
    let output: Value = serde_json::from_str(output.as_str().expect("string")).expect("json");
    assert_eq!(output["error"]["type"], "tool_error");
    assert!(
        output["error"]["message"]
            .as_str()
            .expect("message")
            .contains("HTTP 500"),
        "{output}"
    );
    // Still a live call.
    call.stream
        .send_media(20, &mulaw_b64(160, 1))
        .await
        .expect("media");
    conn.wait_for_event("input_audio_buffer.append", WAIT)
        .await
        .expect("relayed");
    call.stream.send_stop().await.expect("stop");
    assert_eq!(h.next_end().await.reason, EndReason::StreamStopped);
}

#[tokio::test]
async fn transfer_call_dials_the_number_with_twiml() {
    let mut h = Harness::start(agent()).await;
    let call = h.call(13).await;
    let conn = h.engine_conn(0).await;
    conn.send_function_call_response(
        "resp_t",
        &[("call_t", "transfer_call", r#"{"number":"+15550199"}"#)],
    );
    let requests = h
        .rest
        .wait_for_request(1, WAIT)
        .await
        .expect("transfer request");
    assert_eq!(
        requests[0].param("Twiml"),
        Some("<Response><Dial>+15550199</Dial></Response>")
    );
    assert_eq!(requests[0].call_sid, call.call_sid);
    let end = h.next_end().await;
    assert_eq!(
        end.reason,
        EndReason::Transferred {
            to: "+15550199".into()
        }
    );
}

#[tokio::test]
async fn a_refused_transfer_is_told_to_the_model() {
    let mut h = Harness::start(agent()).await;
    let call = h.call(15).await;
    let conn = h.engine_conn(0).await;
    h.rest.set_status(404);
    conn.send_function_call_response(
        "resp_t",
        &[("call_t", "transfer_call", r#"{"number":"+15550199"}"#)],
    );
    conn.wait_for_count("response.create", 1, WAIT)
        .await
        .expect("model asked to respond");
    let output = output_of(&conn, "call_t").expect("output");
    assert!(
        output.as_str().expect("string").contains("HTTP 404"),
        "{output}"
    );
    call.stream.send_stop().await.expect("stop");
    assert_eq!(h.next_end().await.reason, EndReason::StreamStopped);
}

#[tokio::test]
async fn system_tools_can_be_turned_off() {
    let mut h = Harness::start_with(
        agent(),
        Options {
            system_tools: false,
            ..Options::default()
        },
    )
    .await;
    let call = h.call(16).await;
    let conn = h.engine_conn(0).await;
    let update = conn.events_of_type("session.update").remove(0);
    assert_eq!(update["session"]["tools"], serde_json::json!([]));
    call.stream.send_stop().await.expect("stop");
    h.next_end().await;
}

#[tokio::test]
async fn a_fatal_engine_error_ends_the_call_and_a_benign_one_does_not() {
    let mut h = Harness::start(agent()).await;
    let call = h.call(18).await;
    let conn = h.engine_conn(0).await;
    conn.send(error_event(
        "conversation_already_has_active_response",
        "Conversation already has an active response in progress",
    ));
    call.stream
        .send_media(20, &mulaw_b64(160, 1))
        .await
        .expect("media");
    conn.wait_for_event("input_audio_buffer.append", WAIT)
        .await
        .expect("still relaying");
    conn.send(error_event(
        "insufficient_quota",
        "Your session hit the maximum duration.",
    ));
    call.stream.wait_closed(WAIT).await.expect("closed");
    h.rest.wait_for_request(1, WAIT).await.expect("hung up");
    let end = h.next_end().await;
    assert_eq!(
        end.reason,
        EndReason::EngineError {
            message: "Your session hit the maximum duration.".into()
        }
    );
}

#[tokio::test]
async fn a_number_outside_the_allow_patterns_makes_no_rest_request() {
    let mut h = Harness::start(agent()).await;
    let call = h.call(16).await;
    let conn = h.engine_conn(0).await;
    // A premium-rate number the caller talked the model into: refused after the model
    // answered, told to the model, and Twilio is never asked.
    conn.send_function_call_response(
        "resp_t",
        &[("call_t", "transfer_call", r#"{"number":"+19005550199"}"#)],
    );
    conn.wait_for_count("response.create", 1, WAIT)
        .await
        .expect("model asked to respond");
    let output = output_of(&conn, "call_t").expect("output");
    assert!(
        output
            .as_str()
            .expect("string")
            .contains("may not transfer calls to that number"),
        "{output}"
    );
    call.stream.send_stop().await.expect("stop");
    assert_eq!(h.next_end().await.reason, EndReason::StreamStopped);
    assert_eq!(h.rest.requests().len(), 0, "no REST request at all");
}
