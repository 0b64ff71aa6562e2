//! Nothing gets in without Twilio's signature, no stream opens an engine session without its
//! call token, and the limits hold.

mod common;

use std::time::Duration;

use common::{AUTH_TOKEN, Harness, PUBLIC_URL, WAIT, account_sid, mulaw_b64};
use patter::{AgentSpec, EndReason, FnTool, NoArgs, ToolSet};
use patter_tests::fake_twilio::{self, MediaStream};
use patter_tests::twilio_sid;

fn agent() -> AgentSpec {
    AgentSpec::new("p")
}

fn voice_params(call_sid: &str) -> Vec<(&str, &str)> {
    vec![
        ("CallSid", call_sid),
        ("From", "+15550111"),
        ("To", "+15550100"),
    ]
}

#[tokio::test]
async fn twilio_routes_refuse_missing_and_wrong_signatures() {
    let h = Harness::start(agent()).await;
    let sid = twilio_sid("CA", 1);
    for path in ["/twilio/voice", "/twilio/status"] {
        let url = format!("{}{path}", h.base);
        // No signature.
        let (status, _, body) = fake_twilio::post_form(&url, &[], &voice_params(&sid)).await;
        assert_eq!(status, 403, "{path} unsigned: {body}");
        // Signed with the wrong token.
        let (status, _, _) = fake_twilio::post_signed(
            &h.base,
            PUBLIC_URL,
            path,
            "wrong token",
            &voice_params(&sid),
        )
        .await;
        assert_eq!(status, 403, "{path} wrong token");
        // Signed over the URL the server sees behind the proxy, not the public one.
        let (status, _, _) =
            fake_twilio::post_signed(&h.base, &h.base, path, AUTH_TOKEN, &voice_params(&sid)).await;
        assert_eq!(status, 403, "{path} signed over the internal URL");
        // A parameter changed after signing.
        let public = format!("{PUBLIC_URL}{path}");
        let sig = fake_twilio::signature(AUTH_TOKEN, &public, &voice_params(&sid));
        let mut tampered = voice_params(&sid);
        tampered[1].1 = "+19990000000";
        let (status, _, _) =
            fake_twilio::post_form(&url, &[("X-Twilio-Signature", &sig)], &tampered).await;
        assert_eq!(status, 403, "{path} tampered");
        // The real thing passes.
        let (status, _, _) =
            fake_twilio::post_signed(&h.base, PUBLIC_URL, path, AUTH_TOKEN, &voice_params(&sid))
                .await;
        assert_eq!(status, 200, "{path} signed");
    }
    // The public URL with the default port spelled out is accepted too, as Twilio's libraries do.
    let (status, _, _) = fake_twilio::post_signed(
        &h.base,
        "https://agent.example.com:443",
        "/twilio/voice",
        AUTH_TOKEN,
        &voice_params(&sid),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(h.engine.connections(), 0);
}

#[tokio::test]
async fn a_json_callback_is_checked_with_its_body_hash() {
    use sha2::Digest;
    let h = Harness::start(agent()).await;
    let body = br#"{"CallSid":"CA1","CallStatus":"completed"}"#;
    let hash = hex::encode(sha2::Sha256::digest(body));
    let path = format!("/twilio/status?bodySHA256={hash}");
    let sig = fake_twilio::signature(AUTH_TOKEN, &format!("{PUBLIC_URL}{path}"), &[]);
    let headers = [
        ("Content-Type", "application/json"),
        ("X-Twilio-Signature", sig.as_str()),
    ];
    let url = format!("{}{path}", h.base);
    let (status, _, _) = fake_twilio::http_request("POST", &url, &headers, body).await;
    assert_eq!(status, 200);
    let (status, _, _) =
        fake_twilio::http_request("POST", &url, &headers, br#"{"CallSid":"CA2"}"#).await;
    assert_eq!(status, 403, "a body that does not match its hash");
}

#[tokio::test]
async fn an_unsigned_stream_upgrade_is_refused() {
    let h = Harness::start(agent()).await;
    let ws = format!("{}/twilio/stream", h.base.replace("http", "ws"));
    let err = MediaStream::connect(&ws, &[]).await.expect_err("refused");
    assert!(err.starts_with("HTTP 403"), "{err}");
    // Signed over ws://127.0.0.1…, not the public wss:// URL.
    let err = MediaStream::connect_signed(&ws, AUTH_TOKEN)
        .await
        .expect_err("refused");
    assert!(err.starts_with("HTTP 403"), "{err}");
    // Signed over the https:// URL instead of wss://.
    let err =
        MediaStream::connect_signed_as(&ws, &format!("{PUBLIC_URL}/twilio/stream"), AUTH_TOKEN)
            .await
            .expect_err("refused");
    assert!(err.starts_with("HTTP 403"), "{err}");
    assert_eq!(h.engine.tcp_accepts(), 0);
}

/// Opens a correctly signed stream and sends `start` with these parameters.
async fn stream_with(h: &Harness, call_sid: &str, params: &[(&str, &str)]) -> MediaStream {
    let ws = format!("{}/twilio/stream", h.base.replace("http", "ws"));
    let stream =
        MediaStream::connect_signed_as(&ws, "wss://agent.example.com/twilio/stream", AUTH_TOKEN)
            .await
            .expect("signed upgrade accepted");
    stream.send_connected().await.expect("connected");
    stream
        .send_start(&twilio_sid("MZ", 9), call_sid, &account_sid(), params)
        .await
        .expect("start");
    stream
}

#[tokio::test]
async fn a_stream_without_a_valid_call_token_opens_no_engine_session() {
    let h = Harness::start(agent()).await;
    let sid = twilio_sid("CA", 21);
    // A real token, but for another call.
    let (_, _, twiml) = h.voice_webhook(&twilio_sid("CA", 22)).await;
    let (_, params) = common::parse_twiml(&twiml);
    let other_token = params
        .iter()
        .find(|(k, _)| k == "call_token")
        .map(|(_, v)| v.clone())
        .expect("token");
    let cases: Vec<Vec<(&str, &str)>> = vec![
        vec![("caller", "+15550111")],
        vec![("call_token", "")],
        vec![("call_token", "4102444800.deadbeef")],
        vec![("call_token", &other_token)],
        vec![(
            "call_token",
            "1.0000000000000000000000000000000000000000000000000000000000000000",
        )],
    ];
    for params in cases {
        let stream = stream_with(&h, &sid, &params).await;
        stream
            .wait_closed(WAIT)
            .await
            .expect("closed by the server");
        assert!(stream.media_payloads().is_empty());
    }
    assert_eq!(h.engine.tcp_accepts(), 0, "no engine connection was opened");
    assert_eq!(h.active_calls().await, 0);
}

#[tokio::test]
async fn beyond_the_call_limit_callers_hear_a_busy_message() {
    let mut h = Harness::with_limits(agent(), |l| {
        l.max_concurrent_calls = 1;
    })
    .await;
    let call = h.call(31).await;
    let _conn = h.engine_conn(0).await;
    let (status, content_type, twiml) = h.voice_webhook(&twilio_sid("CA", 32)).await;
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/xml"));
    assert!(
        twiml.contains("<Say>") && twiml.contains("<Hangup/>"),
        "{twiml}"
    );
    assert!(!twiml.contains("<Stream"), "{twiml}");
    call.stream.send_stop().await.expect("stop");
    h.next_end().await;
    // The slot is free again.
    let (_, _, twiml) = h.voice_webhook(&twilio_sid("CA", 33)).await;
    assert!(twiml.contains("<Stream"), "{twiml}");
}

#[tokio::test]
async fn an_oversized_webhook_body_is_refused() {
    let h = Harness::with_limits(agent(), |l| {
        l.max_http_body_bytes = 4 * 1024;
    })
    .await;
    let big = "x".repeat(8 * 1024);
    let sid = twilio_sid("CA", 41);
    let params = [("CallSid", sid.as_str()), ("Junk", big.as_str())];
    let (status, _, _) =
        fake_twilio::post_signed(&h.base, PUBLIC_URL, "/twilio/voice", AUTH_TOKEN, &params).await;
    assert_eq!(status, 413);
    assert_eq!(h.engine.connections(), 0);
}

#[tokio::test]
async fn a_huge_tool_result_is_cut_for_the_model() {
    let huge = FnTool::new("dump", "Dump.", |_: NoArgs, _| async { "é".repeat(5000) });
    let spec = AgentSpec::new("p").tools(ToolSet::builder().tool(huge).build().expect("tools"));
    let mut h = Harness::with_limits(spec, |l| l.max_tool_result_bytes = 1000).await;
    let call = h.call(42).await;
    let conn = h.engine_conn(0).await;
    conn.send_function_call_response("resp_d", &[("call_d", "dump", "{}")]);
    let event = conn
        .wait_for_event("conversation.item.create", WAIT)
        .await
        .expect("output");
    let output = event["item"]["output"].as_str().expect("string");
    assert!(output.starts_with("éé"));
    assert!(
        output.ends_with("[result cut: it was 10000 bytes, the limit is 1000]"),
        "{output}"
    );
    assert!(output.len() < 1100, "{}", output.len());
    call.stream.send_stop().await.expect("stop");
    let end = h.next_end().await;
    assert_eq!(end.tool_calls[0].output, output);
}

#[tokio::test]
async fn drain_lets_a_call_finish_while_new_calls_are_turned_away() {
    let mut h = Harness::with_limits(agent(), |l| {
        l.drain_timeout = Duration::from_secs(30);
    })
    .await;
    let call = h.call(51).await;
    let conn = h.engine_conn(0).await;
    h.begin_shutdown();
    // The drain has begun once the health check says so.
    let health_url = format!("{}/health", h.base);
    let mut draining = false;
    for _ in 0..200 {
        let (_, _, body) = fake_twilio::http_request("GET", &health_url, &[], b"").await;
        if body.contains("draining") {
            draining = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(draining, "server reports draining");
    let (status, _, twiml) = h.voice_webhook(&twilio_sid("CA", 52)).await;
    assert_eq!(status, 200);
    assert!(
        twiml.contains("<Hangup/>") && !twiml.contains("<Stream"),
        "{twiml}"
    );
    // The call in progress goes on normally.
    call.stream
        .send_media(20, &mulaw_b64(160, 1))
        .await
        .expect("media");
    conn.wait_for_event("input_audio_buffer.append", WAIT)
        .await
        .expect("still relayed during the drain");
    call.stream.send_stop().await.expect("stop");
    assert_eq!(h.next_end().await.reason, EndReason::StreamStopped);
    assert!(h.rest.requests().is_empty(), "the call was not cut");
    h.stopped().await.expect("server exits cleanly");
}

#[tokio::test]
async fn at_the_drain_deadline_remaining_calls_end_cleanly() {
    let mut h = Harness::with_limits(agent(), |l| {
        l.drain_timeout = Duration::from_millis(200);
    })
    .await;
    let call = h.call(61).await;
    let conn = h.engine_conn(0).await;
    h.begin_shutdown();
    // The agent is asked to say goodbye, does, and the call is hung up.
    let goodbye = conn
        .wait_for_event("response.create", WAIT)
        .await
        .expect("goodbye requested");
    assert!(
        goodbye["response"]["instructions"]
            .as_str()
            .expect("text")
            .contains("call back")
    );
    conn.send_audio_response(
        "resp_s",
        "item_s",
        &[&mulaw_b64(160, 1)],
        "Sorry, please call back.",
    );
    let end = h.next_end().await;
    assert_eq!(end.reason, EndReason::Shutdown);
    let requests = h.rest.wait_for_request(1, WAIT).await.expect("hang-up");
    assert_eq!(requests[0].param("Status"), Some("completed"));
    call.stream.wait_closed(WAIT).await.expect("closed");
    h.stopped().await.expect("server exits cleanly");
}
