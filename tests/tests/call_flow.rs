//! Calls end to end over loopback: fake Twilio ⇄ patter ⇄ fake OpenAI Realtime (GA).

mod common;

use std::sync::Arc;

use common::{Harness, Options, WAIT, mulaw_b64};
use patter::{AgentSpec, CallContext, EndReason, FnTool, Json, Role, ToolSet, WebhookTool};
use serde_json::{Value, json};
use tokio::sync::Notify;

#[patter::args]
struct Lookup {
    /// The order ID.
    order_id: String,
}

/// Look up an order.
#[patter::tool]
async fn lookup(args: Lookup, call: &CallContext) -> Json<Value> {
    Json(json!({
        "order_id": args.order_id,
        "status": "shipped",
        "call_id": call.call_id(),
        "caller": call.caller(),
        "callee": call.callee(),
    }))
}

fn agent() -> AgentSpec {
    AgentSpec::new("You help {caller} for {company}. Call id {call_id}.")
        .first_message(
            "Hi! I'm here to help with your order. Do you have an order ID I can look up?",
        )
        .variable("company", "Acme")
        .voice("cedar")
        .tools(
            ToolSet::builder()
                .tool(lookup::tool())
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

fn types(conn: &patter_tests::fake_openai::ConnHandle) -> Vec<String> {
    conn.event_types()
}

#[tokio::test]
async fn an_inbound_call_is_configured_greets_and_relays_audio_both_ways() {
    let mut h = Harness::start(agent()).await;
    let call = h.call(1).await;
    let conn = h.engine_conn(0).await;

    // The engine socket: GA, with the model in the query and the key as a bearer token.
    assert_eq!(
        conn.query_param("model").as_deref(),
        Some(patter::engine::openai_realtime::DEFAULT_MODEL)
    );
    assert_eq!(
        patter::engine::openai_realtime::DEFAULT_MODEL,
        "gpt-realtime-2.1"
    );
    assert_eq!(
        conn.authorization().as_deref(),
        Some(format!("Bearer {}", common::OPENAI_KEY).as_str())
    );
    assert!(!conn.has_openai_beta_header());

    // session.update: GA shape, μ-law both ways, prompt variables filled, tools + system tools.
    let update = conn.events_of_type("session.update").remove(0);
    let session = &update["session"];
    assert_eq!(session["type"], "realtime");
    assert_eq!(
        session["audio"]["input"]["format"],
        json!({"type": "audio/pcmu"})
    );
    assert_eq!(
        session["audio"]["output"]["format"],
        json!({"type": "audio/pcmu"})
    );
    assert_eq!(session["audio"]["output"]["voice"], "cedar");
    assert_eq!(
        session["audio"]["input"]["turn_detection"]["type"],
        "server_vad"
    );
    assert!(session["audio"]["input"]["transcription"].is_object());
    assert_eq!(
        session["instructions"],
        format!("You help +15550111 for Acme. Call id {}.", call.call_sid)
    );
    let tools: Vec<&str> = session["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .map(|t| t["name"].as_str().expect("name"))
        .collect();
    assert_eq!(tools, ["lookup", "end_call", "transfer_call"]);

    // The first message goes after session.updated, word for word.
    let greeting = conn
        .wait_for_event("response.create", WAIT)
        .await
        .expect("greeting");
    let instructions = greeting["response"]["instructions"]
        .as_str()
        .expect("instructions");
    assert!(
        instructions.ends_with(
            "Hi! I'm here to help with your order. Do you have an order ID I can look up?"
        ),
        "{instructions}"
    );
    assert_eq!(conn.events_of_type("response.create").len(), 1);

    // Caller audio reaches the engine as the very same base64 text.
    let caller_audio = mulaw_b64(160, 0x55);
    call.stream
        .send_media(20, &caller_audio)
        .await
        .expect("media");
    let append = conn
        .wait_for_event("input_audio_buffer.append", WAIT)
        .await
        .expect("append");
    assert_eq!(append["audio"], caller_audio);

    // Agent audio reaches Twilio unchanged, each chunk followed by a mark.
    let agent_audio = [mulaw_b64(480, 0x11), mulaw_b64(320, 0x22)];
    conn.send_audio_response(
        "resp_1",
        "item_1",
        &[&agent_audio[0], &agent_audio[1]],
        "Hi! I'm here to help with your order.",
    );
    call.stream.wait_for_marks(2, WAIT).await.expect("marks");
    assert_eq!(call.stream.media_payloads(), agent_audio);
    let kinds: Vec<String> = call
        .stream
        .received()
        .iter()
        .map(|m| m["event"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(kinds, ["media", "mark", "media", "mark"]);
    for message in call.stream.received() {
        assert_eq!(message["streamSid"], call.stream_sid);
    }

    // The caller hangs up: the engine socket is closed, on_call_end fires once.
    conn.send(patter_tests::fake_openai::input_transcription_completed(
        "item_u",
        "Where is my order?",
    ));
    // Events on one socket are handled in order: once this later chunk reaches Twilio, both
    // transcripts before it have been recorded.
    conn.send(patter_tests::fake_openai::audio_delta(
        "resp_2",
        "item_2",
        &mulaw_b64(160, 0x33),
    ));
    call.stream
        .wait_for_media(3, WAIT)
        .await
        .expect("third chunk");
    call.stream.send_stop().await.expect("stop");
    conn.wait_closed(WAIT).await.expect("engine closed");
    let end = h.next_end().await;
    assert_eq!(end.reason, EndReason::StreamStopped);
    assert_eq!(end.context.call_id(), call.call_sid);
    assert_eq!(end.context.caller(), "+15550111");
    let roles: Vec<Role> = end.transcript.iter().map(|t| t.role).collect();
    assert!(
        roles.contains(&Role::Agent) && roles.contains(&Role::Caller),
        "{:?}",
        end.transcript
    );
    assert!(
        h.rest.requests().is_empty(),
        "no REST call when Twilio ended the call"
    );
    h.engine.assert_no_schema_violations();
    assert!(
        call.stream.violations().is_empty(),
        "{:?}",
        call.stream.violations()
    );
    assert_eq!(h.active_calls().await, 0);
}

#[tokio::test]
async fn an_in_process_tool_round_trip_answers_then_asks_for_one_response() {
    let mut h = Harness::start(agent()).await;
    let call = h.call(2).await;
    let conn = h.engine_conn(0).await;
    conn.wait_for_event("response.create", WAIT)
        .await
        .expect("greeting");

    conn.send_function_call_response(
        "resp_t",
        &[("call_abc", "lookup", r#"{"order_id":"ORD-123456"}"#)],
    );
    conn.wait_for_count("response.create", 2, WAIT)
        .await
        .expect("response.create after the tool");
    let outputs: Vec<Value> = conn
        .events_of_type("conversation.item.create")
        .into_iter()
        .filter(|e| e["item"]["type"] == "function_call_output")
        .collect();
    assert_eq!(outputs.len(), 1);
    assert_eq!(outputs[0]["item"]["call_id"], "call_abc");
    let output: Value =
        serde_json::from_str(outputs[0]["item"]["output"].as_str().expect("string")).expect("json");
    assert_eq!(
        output,
        json!({
            "order_id": "ORD-123456",
            "status": "shipped",
            "call_id": call.call_sid,
            "caller": "+15550111",
            "callee": "+15550100",
        })
    );
    // The output comes before the response.create that follows it.
    let order = types(&conn);
    let output_at = order
        .iter()
        .position(|t| t == "conversation.item.create")
        .expect("output");
    let create_at = order
        .iter()
        .rposition(|t| t == "response.create")
        .expect("create");
    assert!(output_at < create_at, "{order:?}");

    call.stream.send_stop().await.expect("stop");
    let end = h.next_end().await;
    assert_eq!(end.tool_calls.len(), 1);
    assert!(end.tool_calls[0].ok);
    h.engine.assert_no_schema_violations();
}

#[tokio::test]
async fn response_create_waits_for_response_done() {
    let quick = FnTool::new(
        "quick",
        "Quick.",
        |_: patter::NoArgs, _: CallContext| async { "fast" },
    );
    let spec = AgentSpec::new("p").tools(ToolSet::builder().tool(quick).build().expect("tools"));
    let mut h = Harness::start(spec).await;
    let call = h.call(3).await;
    let conn = h.engine_conn(0).await;
    // The function call arrives, but its response is not done yet.
    conn.send(patter_tests::fake_openai::response_created("resp_q"));
    conn.send_all(patter_tests::fake_openai::function_call_events(
        "resp_q", "item_q", "call_q", "quick", "{}",
    ));
    conn.wait_for_event("conversation.item.create", WAIT)
        .await
        .expect("output sent as soon as the tool answers");
    assert!(
        conn.events_of_type("response.create").is_empty(),
        "no response.create before response.done"
    );
    conn.send(patter_tests::fake_openai::response_done(
        "resp_q",
        "completed",
        vec![patter_tests::fake_openai::function_call_item(
            "item_q", "call_q", "quick", "{}",
        )],
    ));
    conn.wait_for_count("response.create", 1, WAIT)
        .await
        .expect("then response.create");
    call.stream.send_stop().await.expect("stop");
    h.next_end().await;
    h.engine.assert_no_schema_violations();
}

#[tokio::test]
async fn audio_keeps_flowing_both_ways_while_a_slow_tool_runs() {
    let release = Arc::new(Notify::new());
    let started = Arc::new(Notify::new());
    let (gate, began) = (Arc::clone(&release), Arc::clone(&started));
    let slow = FnTool::new("slow", "Slow.", move |_: patter::NoArgs, _: CallContext| {
        let (gate, began) = (Arc::clone(&gate), Arc::clone(&began));
        async move {
            began.notify_one();
            gate.notified().await;
            "finally"
        }
    });
    let spec = AgentSpec::new("p").tools(ToolSet::builder().tool(slow).build().expect("tools"));
    let mut h = Harness::start(spec).await;
    let call = h.call(5).await;
    let conn = h.engine_conn(0).await;
    conn.send_function_call_response("resp_s", &[("call_s", "slow", "{}")]);
    tokio::time::timeout(WAIT, started.notified())
        .await
        .expect("tool started");

    // While the tool waits: caller frames reach the engine, agent frames reach Twilio.
    for i in 0..5u64 {
        call.stream
            .send_media(100 + i * 20, &mulaw_b64(160, i as u8))
            .await
            .expect("media");
    }
    conn.wait_for_count("input_audio_buffer.append", 5, WAIT)
        .await
        .expect("caller audio relayed during the tool");
    conn.send_audio_response("resp_a", "item_a", &[&mulaw_b64(160, 9)], "");
    call.stream
        .wait_for_media(1, WAIT)
        .await
        .expect("agent audio relayed during the tool");
    assert!(conn.events_of_type("conversation.item.create").is_empty());

    release.notify_one();
    let output = conn
        .wait_for_event("conversation.item.create", WAIT)
        .await
        .expect("output after release");
    assert_eq!(output["item"]["output"], "finally");
    call.stream.send_stop().await.expect("stop");
    h.next_end().await;
    h.engine.assert_no_schema_violations();
}

#[tokio::test]
async fn barge_in_clears_twilio_and_truncates_at_what_was_heard() {
    let mut h = Harness::start(agent()).await;
    let call = h.call(6).await;
    let conn = h.engine_conn(0).await;
    call.stream.set_auto_echo_marks(false);

    // The inbound clock is at 1000 ms when the agent's first audio of item_b goes out.
    call.stream
        .send_media(1000, &mulaw_b64(160, 1))
        .await
        .expect("media");
    conn.wait_for_count("input_audio_buffer.append", 1, WAIT)
        .await
        .expect("append");
    // 3 chunks of 100 ms each (800 μ-law bytes).
    let chunks = [mulaw_b64(800, 2), mulaw_b64(800, 3), mulaw_b64(800, 4)];
    conn.send(patter_tests::fake_openai::response_created("resp_b"));
    for chunk in &chunks {
        conn.send(patter_tests::fake_openai::audio_delta(
            "resp_b", "item_b", chunk,
        ));
    }
    call.stream.wait_for_marks(3, WAIT).await.expect("marks");
    // The first 100 ms played: its mark comes back when the inbound clock reads 1100 ms.
    // The caller talks at 1170 ms: 100 ms heard, plus 70 ms of clock less one 20 ms frame.
    call.stream
        .send_media(1100, &mulaw_b64(160, 5))
        .await
        .expect("media");
    let first = call.stream.marks_received()[0].clone();
    call.stream.send_mark(&first).await.expect("echo");
    call.stream
        .send_media(1170, &mulaw_b64(160, 5))
        .await
        .expect("media");
    conn.wait_for_count("input_audio_buffer.append", 3, WAIT)
        .await
        .expect("append");
    conn.send(patter_tests::fake_openai::speech_started("item_u", 1170));

    let truncate = conn
        .wait_for_event("conversation.item.truncate", WAIT)
        .await
        .expect("truncate");
    assert_eq!(
        truncate,
        json!({"type": "conversation.item.truncate", "item_id": "item_b", "content_index": 0, "audio_end_ms": 150})
    );
    call.stream.wait_for_clears(1, WAIT).await.expect("clear");

    // A second barge-in with nothing unplayed truncates nothing.
    conn.send(patter_tests::fake_openai::speech_started("item_u2", 1300));
    call.stream
        .wait_for_clears(2, WAIT)
        .await
        .expect("clear again");
    assert_eq!(conn.events_of_type("conversation.item.truncate").len(), 1);

    // Elapsed time beyond what was sent is clamped to the audio sent (40 ms here).
    conn.send(patter_tests::fake_openai::audio_delta(
        "resp_c",
        "item_c",
        &mulaw_b64(320, 6),
    ));
    call.stream.wait_for_marks(4, WAIT).await.expect("mark");
    call.stream
        .send_media(9000, &mulaw_b64(160, 7))
        .await
        .expect("media");
    conn.wait_for_count("input_audio_buffer.append", 4, WAIT)
        .await
        .expect("append");
    conn.send(patter_tests::fake_openai::speech_started("item_u3", 9000));
    conn.wait_for_count("conversation.item.truncate", 2, WAIT)
        .await
        .expect("truncate");
    let second = conn.events_of_type("conversation.item.truncate").remove(1);
    assert_eq!(second["item_id"], "item_c");
    assert_eq!(second["audio_end_ms"], 40);

    call.stream.send_stop().await.expect("stop");
    h.next_end().await;
    h.engine.assert_no_schema_violations();
}

#[tokio::test]
async fn a_webhook_tool_round_trip() {
    use axum::routing::post;
    let app = axum::Router::new().route(
        "/orders",
        post(|body: axum::Json<Value>| async move {
            axum::Json(json!({ "status": "delivered", "echo": body.0["arguments"]["order_id"], "caller": body.0["caller"] }))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/orders", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let spec = AgentSpec::new("p").tools(
        ToolSet::builder()
            .tool(WebhookTool::new::<Lookup>(
                "get_order_status",
                "Look up.",
                url,
            ))
            .build()
            .expect("tools"),
    );
    let mut h = Harness::start(spec).await;
    let call = h.call(7).await;
    let conn = h.engine_conn(0).await;
    conn.send_function_call_response(
        "resp_w",
        &[("call_w", "get_order_status", r#"{"order_id":"ORD-9"}"#)],
    );
    conn.wait_for_count("response.create", 1, WAIT)
        .await
        .expect("response.create");
    let output = conn.events_of_type("conversation.item.create").remove(0);
    assert_eq!(
        output["item"]["output"],
        r#"{"caller":"+15550111","echo":"ORD-9","status":"delivered"}"#
    );
    call.stream.send_stop().await.expect("stop");
    h.next_end().await;
    h.engine.assert_no_schema_violations();
}

#[tokio::test]
async fn a_second_instance_can_take_the_stream() {
    // Both instances share the auth token and stream secret; nothing else passes between them.
    let h_webhook = Harness::start(agent()).await;
    let mut h_stream = Harness::start_with(agent(), Options::default()).await;
    let call = h_webhook.call_via(8, &h_stream.base).await;
    let conn = h_stream.engine_conn(0).await;
    assert_eq!(h_webhook.engine.connections(), 0);
    call.stream
        .send_media(20, &mulaw_b64(160, 1))
        .await
        .expect("media");
    conn.wait_for_event("input_audio_buffer.append", WAIT)
        .await
        .expect("relayed");
    call.stream.send_stop().await.expect("stop");
    let end = h_stream.next_end().await;
    assert_eq!(end.context.call_id(), call.call_sid);
    assert_eq!(end.context.caller(), "+15550111");
}

#[tokio::test]
async fn the_pcm_option_transcodes_both_ways() {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let spec = AgentSpec::new("p").audio_format(patter::AudioFormat::Pcm24k);
    let mut h = Harness::start(spec).await;
    let call = h.call(9).await;
    let conn = h.engine_conn(0).await;
    let session = conn.events_of_type("session.update").remove(0)["session"].clone();
    let pcm = json!({"type": "audio/pcm", "rate": 24000});
    assert_eq!(session["audio"]["input"]["format"], pcm);
    assert_eq!(session["audio"]["output"]["format"], pcm);

    // 20 ms of μ-law in: 20 ms of 24 kHz PCM16 (960 bytes) out to the engine.
    call.stream
        .send_media(20, &mulaw_b64(160, 0x80))
        .await
        .expect("media");
    let append = conn
        .wait_for_event("input_audio_buffer.append", WAIT)
        .await
        .expect("append");
    let pcm_in = b64
        .decode(append["audio"].as_str().expect("audio"))
        .expect("base64");
    assert_eq!(pcm_in.len(), 960);

    // 20 ms of PCM16 from the engine: 160 bytes of μ-law to Twilio.
    let tone: Vec<u8> = (0..480)
        .flat_map(|n| (((n as f64 * 0.26).sin() * 8000.0) as i16).to_le_bytes())
        .collect();
    conn.send(patter_tests::fake_openai::audio_delta(
        "resp_p",
        "item_p",
        &b64.encode(&tone),
    ));
    call.stream.wait_for_media(1, WAIT).await.expect("media");
    assert_eq!(call.stream.media_bytes().len(), 160);
    assert!(
        call.stream.violations().is_empty(),
        "{:?}",
        call.stream.violations()
    );
    call.stream.send_stop().await.expect("stop");
    h.next_end().await;
    h.engine.assert_no_schema_violations();
}
