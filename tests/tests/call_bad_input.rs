//! One test per bad input on a live call: from Twilio (malformed, unknown, out of order,
//! binary, oversized frames) and from the engine (bad tool calls, silence, closes, errors,
//! audio that is not base64).
//!
//! Each proves three things: nothing panics (a panicking session never reaches
//! `on_call_end`, so `next_end` would time out), the call gets its defined outcome, and no
//! session is left behind (`/health` counts zero calls, and `on_call_end` fired exactly once
//! where a call existed). `/health` counts a call until its task has returned, after
//! `on_call_end`, so once it reads zero no second `on_call_end` can come.

mod common;

use std::time::{Duration, Instant};

use common::{AUTH_TOKEN, Call, Harness, Options, WAIT, account_sid, mulaw_b64};
use patter::{AgentSpec, CallContext, CallSummary, EndReason, Json, Limits, ToolSet};
use patter_tests::fake_openai::{ConnHandle, FakeRealtime, audio_delta, error_event};
use patter_tests::fake_twilio::MediaStream;
use patter_tests::twilio_sid;
use serde_json::{Value, json};

#[patter::args]
struct Lookup {
    /// The order ID.
    order_id: String,
}

/// Look up an order.
#[patter::tool]
async fn lookup(args: Lookup, _call: &CallContext) -> Json<Value> {
    Json(json!({ "order_id": args.order_id, "status": "shipped" }))
}

/// No first message: every `response.create` the engine sees comes after a tool.
fn agent() -> AgentSpec {
    AgentSpec::new("You help callers with orders.").tools(
        ToolSet::builder()
            .tool(lookup::tool())
            .build()
            .expect("tools"),
    )
}

fn limits(configure: impl FnOnce(&mut Limits)) -> Limits {
    let mut l = Limits::default();
    configure(&mut l);
    l
}

/// Caller audio sent now reaches the engine as the same base64: the call is alive.
async fn assert_relays(call: &Call, conn: &ConnHandle, timestamp_ms: u64, seed: u8) {
    let audio = mulaw_b64(160, seed);
    call.stream
        .send_media(timestamp_ms, &audio)
        .await
        .expect("media");
    wait_for_append(conn, &audio)
        .await
        .expect("a later media frame is still relayed to the engine");
}

/// Waits until the engine has been sent `audio` in an `input_audio_buffer.append`.
async fn wait_for_append(conn: &ConnHandle, audio: &str) -> Result<(), String> {
    conn.wait_for_events(
        |events| {
            events
                .iter()
                .any(|e| e["type"] == "input_audio_buffer.append" && e["audio"] == audio)
        },
        WAIT,
    )
    .await
}

/// No session left, and no second `on_call_end`.
async fn assert_no_leak(h: &mut Harness) {
    assert_eq!(h.active_calls().await, 0, "a session was left behind");
    assert!(
        h.ends.try_recv().is_err(),
        "on_call_end fired more than once"
    );
}

/// The caller hangs up: the call ends once, cleanly, with no REST call.
async fn hang_up(h: &mut Harness, call: &Call, conn: &ConnHandle) -> CallSummary {
    call.stream.send_stop().await.expect("stop");
    let end = h.next_end().await;
    assert_eq!(end.reason, EndReason::StreamStopped);
    assert_eq!(end.context.call_id(), call.call_sid);
    conn.wait_closed(WAIT).await.expect("engine socket closed");
    assert_no_leak(h).await;
    assert!(h.rest.requests().is_empty(), "{:?}", h.rest.requests());
    h.engine.assert_no_schema_violations();
    assert!(
        call.stream.violations().is_empty(),
        "{:?}",
        call.stream.violations()
    );
    end
}

/// The engine went away or failed: the call's TwiML is replaced over REST by an apology in
/// Twilio's voice and a hang-up, Twilio's socket is closed, and `on_call_end` fires once.
async fn assert_hung_up_over_rest(h: &mut Harness, call: &Call) -> CallSummary {
    call.stream
        .wait_closed(WAIT)
        .await
        .expect("Twilio socket closed");
    let requests = h.rest.wait_for_request(1, WAIT).await.expect("apology");
    assert_eq!(requests.len(), 1, "{requests:?}");
    let hang_up = &requests[0];
    assert_eq!(hang_up.method, "POST");
    assert_eq!(
        hang_up.path,
        format!(
            "/2010-04-01/Accounts/{}/Calls/{}.json",
            account_sid(),
            call.call_sid
        )
    );
    let twiml = hang_up.param("Twiml").unwrap_or_default();
    assert!(
        twiml.contains("<Say>Sorry, we can&apos;t take your call right now.")
            && twiml.ends_with("<Hangup/></Response>"),
        "{twiml}"
    );
    let end = h.next_end().await;
    assert_eq!(end.context.call_id(), call.call_sid);
    assert_no_leak(h).await;
    end
}

/// A stream opened as Twilio would (voice webhook, signed upgrade), before any `start`.
struct Opening {
    stream: MediaStream,
    call_sid: String,
    stream_sid: String,
    params: Vec<(String, String)>,
}

impl Opening {
    async fn new(h: &Harness, n: u128) -> Opening {
        let call_sid = twilio_sid("CA", n);
        let (status, _, twiml) = h.voice_webhook(&call_sid).await;
        assert_eq!(status, 200, "{twiml}");
        let (url, params) = common::parse_twiml(&twiml);
        let stream = MediaStream::connect_signed_as(
            &format!("{}/twilio/stream", h.base.replace("http", "ws")),
            &url,
            AUTH_TOKEN,
        )
        .await
        .expect("stream connects");
        Opening {
            stream,
            call_sid,
            stream_sid: twilio_sid("MZ", n),
            params,
        }
    }

    async fn start(self) -> Call {
        let pairs: Vec<(&str, &str)> = self
            .params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.stream
            .send_start(&self.stream_sid, &self.call_sid, &account_sid(), &pairs)
            .await
            .expect("start");
        Call {
            stream: self.stream,
            call_sid: self.call_sid,
            stream_sid: self.stream_sid,
            params: self.params,
        }
    }
}

/// The `function_call_output` for `call_id`, parsed.
fn tool_output(conn: &ConnHandle, call_id: &str) -> Value {
    let item = conn
        .events_of_type("conversation.item.create")
        .into_iter()
        .find(|e| e["item"]["type"] == "function_call_output" && e["item"]["call_id"] == call_id)
        .expect("function_call_output");
    serde_json::from_str(item["item"]["output"].as_str().expect("output string"))
        .expect("output is JSON")
}

// ---------------------------------------------------------------------------------------
// Bad frames from Twilio
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_malformed_json_frame_is_ignored_and_the_call_continues() {
    let mut h = Harness::start(agent()).await;
    let call = h.call(101).await;
    let conn = h.engine_conn(0).await;
    for raw in [
        r#"{"event":"media","media":{"payload":"AAAA""#,
        "not json at all",
        "",
        r#"{"event":"media","media":{"payload":"AAAA","timestamp":20}}"#,
    ] {
        call.stream.send_text(raw).await.expect("frame");
    }
    assert_relays(&call, &conn, 20, 1).await;
    assert_eq!(
        conn.events_of_type("input_audio_buffer.append").len(),
        1,
        "only the well-formed frame was relayed"
    );
    hang_up(&mut h, &call, &conn).await;
}

#[tokio::test]
async fn an_unknown_event_is_ignored_and_the_call_continues() {
    let mut h = Harness::start(agent()).await;
    let call = h.call(102).await;
    let conn = h.engine_conn(0).await;
    let unknown = json!({
        "event": "transcription",
        "sequenceNumber": "2",
        "streamSid": call.stream_sid,
        "transcription": {"text": "hello", "media": {"payload": "AAAA"}}
    });
    call.stream
        .send_text(&unknown.to_string())
        .await
        .expect("unknown event");
    assert_relays(&call, &conn, 20, 2).await;
    assert_eq!(conn.events_of_type("input_audio_buffer.append").len(), 1);
    hang_up(&mut h, &call, &conn).await;
}

#[tokio::test]
async fn media_before_start_is_ignored_and_the_call_then_works() {
    let mut h = Harness::start(agent()).await;
    let opening = Opening::new(&h, 103).await;
    let early = mulaw_b64(160, 0x77);
    opening.stream.send_connected().await.expect("connected");
    opening
        .stream
        .send_media(0, &early)
        .await
        .expect("early media");
    let call = opening.start().await;
    let conn = h.engine_conn(0).await;
    assert_relays(&call, &conn, 20, 3).await;
    let appends = conn.events_of_type("input_audio_buffer.append");
    assert_eq!(appends.len(), 1, "{appends:?}");
    assert_ne!(
        appends[0]["audio"], early,
        "audio from before start relayed"
    );
    hang_up(&mut h, &call, &conn).await;
}

#[tokio::test]
async fn an_invalid_base64_payload_is_not_forwarded_and_the_call_continues() {
    let mut h = Harness::start(agent()).await;
    let call = h.call(104).await;
    let conn = h.engine_conn(0).await;
    let bad = ["not base64!!", "AB=C", "====", "AAAAA", "AA\"A", "", "-_-_"];
    for (i, payload) in bad.iter().enumerate() {
        call.stream
            .send_media(20 * i as u64, payload)
            .await
            .expect("media");
    }
    // The engine socket keeps order: once the good frame is there, the bad ones are not.
    assert_relays(&call, &conn, 500, 4).await;
    let appends = conn.events_of_type("input_audio_buffer.append");
    assert_eq!(
        appends.len(),
        1,
        "invalid payloads were forwarded: {appends:?}"
    );
    hang_up(&mut h, &call, &conn).await;
}

#[tokio::test]
async fn a_binary_frame_is_ignored_and_the_call_continues() {
    let mut h = Harness::start(agent()).await;
    let call = h.call(105).await;
    let conn = h.engine_conn(0).await;
    call.stream
        .send_binary(&[0xff; 160])
        .await
        .expect("binary frame");
    let media_as_binary =
        json!({"event": "media", "streamSid": call.stream_sid, "media": {"payload": "AAAA"}});
    call.stream
        .send_binary(media_as_binary.to_string().as_bytes())
        .await
        .expect("binary frame");
    assert_relays(&call, &conn, 20, 5).await;
    assert_eq!(conn.events_of_type("input_audio_buffer.append").len(), 1);
    hang_up(&mut h, &call, &conn).await;
}

#[tokio::test]
async fn a_frame_over_the_message_limit_closes_the_stream_and_ends_the_call() {
    let options = Options {
        limits: limits(|l| l.max_ws_message_bytes = 64 * 1024),
        ..Default::default()
    };
    let mut h = Harness::start_with(agent(), options).await;
    let call = h.call(106).await;
    let conn = h.engine_conn(0).await;
    assert_relays(&call, &conn, 20, 6).await;
    // 96 KiB of valid base64 in an otherwise well-formed frame.
    let huge = json!({
        "event": "media",
        "streamSid": call.stream_sid,
        "media": {"track": "inbound", "timestamp": "40", "payload": mulaw_b64(72 * 1024, 7)}
    })
    .to_string();
    assert!(huge.len() > 64 * 1024);
    // The server may drop the connection while the frame is still being written.
    let _ = call.stream.send_text(&huge).await;
    call.stream
        .wait_closed(WAIT)
        .await
        .expect("Twilio socket closed");
    conn.wait_closed(WAIT).await.expect("engine socket closed");
    assert!(conn.closed_by_client(), "{:?}", conn.end());
    let end = h.next_end().await;
    assert_eq!(end.reason, EndReason::StreamClosed);
    assert_eq!(end.context.call_id(), call.call_sid);
    assert_no_leak(&mut h).await;
    assert_eq!(
        conn.events_of_type("input_audio_buffer.append").len(),
        1,
        "the oversized frame was not relayed"
    );
}

#[tokio::test]
async fn messages_far_larger_than_the_socket_read_buffers_are_relayed_whole() {
    // The sockets read a few KiB at a time; a message of tens of KiB (within the message
    // limit) arrives over many reads and is still relayed as one, byte for byte.
    let mut h = Harness::start(agent()).await;
    let call = h.call(110).await;
    let conn = h.engine_conn(0).await;
    let caller_audio = mulaw_b64(48 * 1024, 21);
    call.stream
        .send_media(20, &caller_audio)
        .await
        .expect("large media frame");
    wait_for_append(&conn, &caller_audio)
        .await
        .expect("the large caller frame reaches the engine whole");
    let agent_audio = mulaw_b64(96 * 1024, 22);
    conn.send(audio_delta("resp_big", "item_big", &agent_audio));
    call.stream
        .wait_for_media(1, WAIT)
        .await
        .expect("the large agent chunk reaches Twilio");
    assert_eq!(call.stream.media_payloads(), [agent_audio]);
    assert_relays(&call, &conn, 40, 23).await;
    hang_up(&mut h, &call, &conn).await;
}

#[tokio::test]
async fn stop_before_start_ends_cleanly_without_an_engine_session() {
    let mut h = Harness::start(agent()).await;
    let opening = Opening::new(&h, 107).await;
    opening.stream.send_connected().await.expect("connected");
    opening.stream.send_stop().await.expect("stop");
    opening
        .stream
        .wait_closed(WAIT)
        .await
        .expect("stream closed by the server");
    assert_eq!(h.engine.connections(), 0);
    assert_eq!(h.active_calls().await, 0);
    assert!(h.ends.try_recv().is_err(), "no call, so no on_call_end");
    assert!(h.rest.requests().is_empty());
    assert!(opening.stream.received().is_empty());
}

#[tokio::test]
async fn a_socket_closed_before_start_ends_cleanly_with_zero_engine_connections() {
    let mut h = Harness::start(agent()).await;
    let opening = Opening::new(&h, 108).await;
    opening.stream.send_connected().await.expect("connected");
    opening.stream.close().await.expect("close");
    opening
        .stream
        .wait_closed(WAIT)
        .await
        .expect("close handshake done");
    assert_eq!(h.engine.connections(), 0);
    assert_eq!(h.active_calls().await, 0);
    assert!(h.ends.try_recv().is_err(), "no call, so no on_call_end");
    assert!(h.rest.requests().is_empty());
    // The server still takes calls.
    let call = h.call(109).await;
    let conn = h.engine_conn(0).await;
    assert_relays(&call, &conn, 20, 8).await;
    hang_up(&mut h, &call, &conn).await;
}

#[tokio::test]
async fn a_stream_that_never_sends_start_is_closed_after_the_start_timeout() {
    let mut h = Harness::with_limits(agent(), |l| {
        l.stream_start_timeout = Duration::from_millis(300);
    })
    .await;
    let opening = Opening::new(&h, 110).await;
    let opened = Instant::now();
    opening.stream.send_connected().await.expect("connected");
    opening
        .stream
        .wait_closed(WAIT)
        .await
        .expect("the server closes a stream without start");
    assert!(
        opened.elapsed() >= Duration::from_millis(300),
        "closed after {:?}, before the start timeout",
        opened.elapsed()
    );
    assert_eq!(h.engine.connections(), 0);
    assert_eq!(h.active_calls().await, 0);
    assert!(h.ends.try_recv().is_err(), "no call, so no on_call_end");
}

// ---------------------------------------------------------------------------------------
// Bad tool calls from the engine
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn bad_tool_argument_json_gets_an_invalid_arguments_error_then_response_create() {
    let mut h = Harness::start(agent()).await;
    let call = h.call(111).await;
    let conn = h.engine_conn(0).await;
    conn.send_function_call_response("resp_bad", &[("call_bad", "lookup", "{not json")]);
    conn.wait_for_count("response.create", 1, WAIT)
        .await
        .expect("response.create after the error");
    let output = tool_output(&conn, "call_bad");
    assert_eq!(output["error"]["type"], "invalid_arguments", "{output}");
    assert!(output["error"]["message"].is_string(), "{output}");
    let order = conn.event_types();
    let output_at = order
        .iter()
        .position(|t| t == "conversation.item.create")
        .expect("output");
    let create_at = order
        .iter()
        .position(|t| t == "response.create")
        .expect("create");
    assert!(output_at < create_at, "{order:?}");
    assert_relays(&call, &conn, 20, 9).await;
    let end = hang_up(&mut h, &call, &conn).await;
    assert_eq!(end.tool_calls.len(), 1);
    assert!(!end.tool_calls[0].ok);
    assert_eq!(end.tool_calls[0].arguments, "{not json");
}

#[tokio::test]
async fn an_unknown_tool_name_gets_an_unknown_tool_error_then_response_create() {
    let mut h = Harness::start(agent()).await;
    let call = h.call(112).await;
    let conn = h.engine_conn(0).await;
    conn.send_function_call_response(
        "resp_unknown",
        &[("call_unknown", "delete_everything", "{}")],
    );
    conn.wait_for_count("response.create", 1, WAIT)
        .await
        .expect("response.create after the error");
    let output = tool_output(&conn, "call_unknown");
    assert_eq!(output["error"]["type"], "unknown_tool", "{output}");
    assert_eq!(conn.events_of_type("conversation.item.create").len(), 1);
    assert_relays(&call, &conn, 20, 10).await;
    let end = hang_up(&mut h, &call, &conn).await;
    assert_eq!(end.tool_calls.len(), 1);
    assert!(!end.tool_calls[0].ok);
}

// ---------------------------------------------------------------------------------------
// An engine that fails
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn an_engine_that_never_answers_the_handshake_ends_the_call_over_rest() {
    let options = Options {
        limits: limits(|l| l.engine_handshake_timeout = Duration::from_millis(300)),
        engine: Some(std::sync::Arc::new(FakeRealtime::start_silent().await)),
        ..Default::default()
    };
    let mut h = Harness::start_with(agent(), options).await;
    let call = h.call(113).await;
    let end = assert_hung_up_over_rest(&mut h, &call).await;
    assert!(
        matches!(end.reason, EndReason::EngineLost { .. }),
        "{:?}",
        end.reason
    );
    assert_eq!(h.engine.connections(), 1, "one TCP connection was tried");
    assert!(call.stream.violations().is_empty());
}

#[tokio::test]
async fn an_engine_that_closes_mid_call_is_replaced_and_the_call_goes_on() {
    let mut h = Harness::start(agent()).await;
    let call = h.call(114).await;
    let conn = h.engine_conn(0).await;
    assert_relays(&call, &conn, 20, 11).await;
    conn.close();
    // A new session takes over; the caller's audio reaches it.
    let next = h.engine_conn(1).await;
    assert_relays(&call, &next, 40, 21).await;
    conn.wait_closed(WAIT).await.expect("engine socket over");
    let end = hang_up(&mut h, &call, &next).await;
    assert_eq!(end.reconnects.len(), 1, "{:?}", end.reconnects);
    assert_eq!(end.reconnects[0].cause, patter::call::ReconnectCause::Lost);
    assert_eq!(end.reconnects[0].attempts, 1);
}

#[tokio::test]
async fn an_engine_that_drops_tcp_mid_call_and_cannot_be_reached_again_ends_the_call_over_rest() {
    let mut h = Harness::start(agent()).await;
    let call = h.call(115).await;
    let conn = h.engine_conn(0).await;
    assert_relays(&call, &conn, 20, 12).await;
    h.engine.refuse_all_handshakes(503);
    conn.drop_tcp();
    let end = assert_hung_up_over_rest(&mut h, &call).await;
    match &end.reason {
        EndReason::EngineLost { detail } => {
            assert!(detail.contains("reconnecting failed"), "{detail}")
        }
        other => panic!("{other:?}"),
    }
    assert!(end.reconnects.is_empty());
    assert!(h.engine.refused_handshakes() >= 1);
    h.engine.assert_no_schema_violations();
}

#[tokio::test]
async fn a_fatal_engine_error_ends_the_call_over_rest() {
    let mut h = Harness::start(agent()).await;
    let call = h.call(116).await;
    let conn = h.engine_conn(0).await;
    assert_relays(&call, &conn, 20, 13).await;
    let message = "Your session hit the maximum duration of 60 minutes.";
    conn.send(error_event("insufficient_quota", message));
    let end = assert_hung_up_over_rest(&mut h, &call).await;
    assert_eq!(
        end.reason,
        EndReason::EngineError {
            message: message.to_owned()
        }
    );
    conn.wait_closed(WAIT).await.expect("engine socket closed");
    assert!(conn.closed_by_client(), "{:?}", conn.end());
    h.engine.assert_no_schema_violations();
}

#[tokio::test]
async fn a_non_fatal_engine_error_is_logged_and_the_call_continues() {
    let mut h = Harness::start(agent()).await;
    let call = h.call(117).await;
    let conn = h.engine_conn(0).await;
    conn.send(error_event(
        "conversation_already_has_active_response",
        "Conversation already has an active response in progress.",
    ));
    // Events on one socket are handled in order: the later audio proves the error was seen.
    conn.send(audio_delta("resp_n", "item_n", &mulaw_b64(160, 14)));
    call.stream
        .wait_for_media(1, WAIT)
        .await
        .expect("agent audio still relayed");
    assert_relays(&call, &conn, 20, 15).await;
    assert!(!call.stream.is_closed());
    hang_up(&mut h, &call, &conn).await;
}

#[tokio::test]
async fn engine_audio_that_is_not_base64_is_not_forwarded_to_twilio() {
    let mut h = Harness::start(agent()).await;
    let call = h.call(118).await;
    let conn = h.engine_conn(0).await;
    for bad in [
        "not base64!!",
        "AB=C",
        "====",
        "AAAAA",
        "AB==",
        "",
        "\"},\"event\":\"clear",
    ] {
        conn.send(audio_delta("resp_x", "item_x", bad));
    }
    let good = mulaw_b64(160, 16);
    conn.send(audio_delta("resp_x", "item_x", &good));
    call.stream
        .wait_for_marks(1, WAIT)
        .await
        .expect("the good chunk and its mark");
    assert_eq!(call.stream.media_payloads(), [good]);
    assert_eq!(call.stream.clears(), 0);
    assert!(
        call.stream.violations().is_empty(),
        "{:?}",
        call.stream.violations()
    );
    hang_up(&mut h, &call, &conn).await;
}
