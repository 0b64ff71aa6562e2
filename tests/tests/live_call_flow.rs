//! Calls end to end on the GPT-Live engine, over loopback: fake Twilio ⇄ patter ⇄ a fake
//! GPT-Live peer (`/v1/live/sessions`) that checks every client event against the strict
//! schema in `tests/data/openai_live_client_events.schema.json`. The same scenarios as the
//! Realtime suites: greeting, audio both ways byte for byte, tools (alone, in parallel, with
//! bad arguments), `end_call`, engine errors and loss, the time limit, drain.

mod common;

use std::time::Duration;

use common::{Harness, Options, WAIT, mulaw_b64};
use patter::engine::EngineKind;
use patter::{AgentSpec, CallContext, EndReason, Json, Limits, ToolSet};
use patter_tests::fake_openai::{ConnHandle, live};
use serde_json::{Value, json};

#[patter::args]
struct Lookup {
    /// The order ID.
    order_id: String,
}

/// Look up an order.
#[patter::tool]
async fn lookup(args: Lookup, call: &CallContext) -> Json<Value> {
    Json(json!({ "order_id": args.order_id, "status": "shipped", "caller": call.caller() }))
}

fn agent() -> AgentSpec {
    AgentSpec::new("You help {caller} with orders.")
        .first_message("Hi! Do you have an order ID?")
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

async fn harness(limits: impl FnOnce(&mut Limits)) -> Harness {
    let mut set = common::test_limits();
    limits(&mut set);
    Harness::start_with(
        agent(),
        Options {
            limits: set,
            engine_kind: EngineKind::GptLive,
            ..Options::default()
        },
    )
    .await
}

/// The results the engine was handed, by call id.
fn outputs(conn: &ConnHandle) -> Vec<(String, Value)> {
    conn.events_of_type("response.item.create")
        .into_iter()
        .map(|e| {
            let item = &e["item"];
            let output = item["output"].as_str().unwrap_or_default();
            (
                item["call_id"].as_str().unwrap_or_default().to_owned(),
                serde_json::from_str(output).unwrap_or(Value::Null),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_session_starts_fixed_and_the_greeting_is_asked_for() {
    let mut h = harness(|_| {}).await;
    let call = h.call(1).await;
    let conn = h.live_conn(0).await;
    assert_eq!(conn.path(), "/v1/live/sessions", "no query string");
    assert_eq!(
        conn.authorization().as_deref(),
        Some(format!("Bearer {}", common::OPENAI_KEY).as_str())
    );
    let start = conn.events_of_type("session.start").remove(0);
    let session = &start["session"];
    assert_eq!(session["model"], "gpt-live-1.1");
    assert_eq!(session["instructions"], "You help +15550111 with orders.");
    assert_eq!(
        session["audio"],
        json!({ "format": { "type": "audio/pcmu", "rate": 8000 }, "output": { "voice": "cedar" } })
    );
    let delegation = &session["delegation"];
    assert_eq!(delegation["type"], "responses");
    assert_eq!(delegation["responses"]["model"], "gpt-5.6-luna");
    let tools: Vec<&str> = delegation["responses"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .map(|t| t["name"].as_str().expect("name"))
        .collect();
    assert_eq!(tools, ["lookup", "end_call", "transfer_call"]);
    // Nothing but session.start until session.started; then the greeting, as commentary.
    let greeting = conn
        .wait_for_event("session.commentary.append", WAIT)
        .await
        .expect("greeting");
    assert_eq!(greeting["delegation_id"], Value::Null);
    assert!(
        greeting["content"]
            .as_str()
            .expect("content")
            .ends_with("Hi! Do you have an order ID?"),
        "{greeting}"
    );
    call.stream.send_stop().await.expect("stop");
    assert_eq!(h.next_end().await.reason, EndReason::StreamStopped);
    conn.wait_for_event("session.close", WAIT)
        .await
        .expect("session closed");
    h.engine.assert_no_schema_violations();
}

#[tokio::test]
async fn audio_is_relayed_byte_for_byte_both_ways_and_silence_between_turns_is_not() {
    let mut h = harness(|_| {}).await;
    let call = h.call(2).await;
    let conn = h.live_conn(0).await;

    let caller_audio = mulaw_b64(160, 0x55);
    call.stream
        .send_media(20, &caller_audio)
        .await
        .expect("media");
    let append = conn
        .wait_for_event("session.input_audio.append", WAIT)
        .await
        .expect("append");
    assert_eq!(append["audio"], caller_audio);

    // Silence before the agent speaks is not relayed; a pause inside its speech is; 0.8 s
    // of silence ends its turn, and the silence after that is not relayed either.
    let speech = [mulaw_b64(800, 0x11), mulaw_b64(800, 0x22)];
    let pause = mulaw_b64(800, 0xff);
    let next = mulaw_b64(800, 0x33);
    conn.send(live::audio_delta(&mulaw_b64(800, 0xff)));
    conn.send(live::audio_delta(&speech[0]));
    conn.send(live::audio_delta(&pause));
    conn.send(live::audio_delta(&speech[1]));
    conn.send(live::audio_delta(&mulaw_b64(6400, 0xff)));
    conn.send(live::audio_delta(&mulaw_b64(800, 0xff)));
    conn.send(live::audio_delta(&next));
    call.stream.wait_for_media(4, WAIT).await.expect("media");
    assert_eq!(
        call.stream.media_payloads(),
        [speech[0].clone(), pause, speech[1].clone(), next]
    );

    call.stream.send_stop().await.expect("stop");
    h.next_end().await;
    h.engine.assert_no_schema_violations();
}

#[tokio::test]
async fn a_tool_call_is_answered_then_one_response_create_follows() {
    let mut h = harness(|_| {}).await;
    let call = h.call(3).await;
    let conn = h.live_conn(0).await;
    conn.send_all(live::function_calls(
        "dlg_1",
        &[("call_1", "lookup", r#"{"order_id":"ORD-1"}"#)],
    ));
    conn.wait_for_event("response.create", WAIT)
        .await
        .expect("continue");
    let outputs = outputs(&conn);
    assert_eq!(outputs.len(), 1, "one output for one call");
    assert_eq!(outputs[0].0, "call_1");
    assert_eq!(outputs[0].1["status"], "shipped");
    assert_eq!(outputs[0].1["caller"], "+15550111");
    // The output came first, and only one response.create.
    let types = conn.event_types();
    let output_at = types.iter().position(|t| t == "response.item.create");
    let create_at = types.iter().position(|t| t == "response.create");
    assert!(output_at < create_at, "{types:?}");
    call.stream.send_stop().await.expect("stop");
    let end = h.next_end().await;
    assert_eq!(conn.events_of_type("response.create").len(), 1);
    assert_eq!(end.tool_calls.len(), 1);
    h.engine.assert_no_schema_violations();
}

#[tokio::test]
async fn two_parallel_calls_get_two_outputs_and_one_response_create() {
    let mut h = harness(|_| {}).await;
    let call = h.call(4).await;
    let conn = h.live_conn(0).await;
    conn.send_all(live::function_calls(
        "dlg_2",
        &[
            ("call_a", "lookup", r#"{"order_id":"ORD-A"}"#),
            ("call_b", "lookup", r#"{"order_id":"ORD-B"}"#),
        ],
    ));
    conn.wait_for_event("response.create", WAIT)
        .await
        .expect("continue");
    let mut got = outputs(&conn);
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].1["order_id"], "ORD-A");
    assert_eq!(got[1].1["order_id"], "ORD-B");
    let types = conn.event_types();
    let last_output = types
        .iter()
        .rposition(|t| t == "response.item.create")
        .expect("outputs");
    let create_at = types
        .iter()
        .position(|t| t == "response.create")
        .expect("create");
    assert!(last_output < create_at, "both outputs before it: {types:?}");
    call.stream.send_stop().await.expect("stop");
    h.next_end().await;
    assert_eq!(conn.events_of_type("response.create").len(), 1);
    h.engine.assert_no_schema_violations();
}

#[tokio::test]
async fn bad_arguments_get_an_error_output_and_the_call_goes_on() {
    let mut h = harness(|_| {}).await;
    let call = h.call(5).await;
    let conn = h.live_conn(0).await;
    conn.send_all(live::function_calls(
        "dlg_3",
        &[("call_x", "lookup", r#"{"order_id": 42"#)],
    ));
    conn.wait_for_event("response.create", WAIT)
        .await
        .expect("continue");
    let got = outputs(&conn);
    assert_eq!(got[0].1["error"]["type"], "invalid_arguments");
    call.stream.send_stop().await.expect("stop");
    assert_eq!(h.next_end().await.reason, EndReason::StreamStopped);
    h.engine.assert_no_schema_violations();
}

#[tokio::test]
async fn end_call_hangs_up_once_the_goodbye_has_played() {
    // Long enough that only the end of the goodbye can end the call in time.
    let mut h = harness(|l| l.goodbye_wait = Duration::from_secs(600)).await;
    let call = h.call(6).await;
    let conn = h.live_conn(0).await;
    call.stream.set_auto_echo_marks(false);
    // The goodbye is still playing when the backend calls end_call.
    conn.send(live::audio_delta(&mulaw_b64(800, 0x21)));
    call.stream.wait_for_marks(1, WAIT).await.expect("mark");
    conn.send_all(live::function_calls(
        "dlg_bye",
        &[(
            "call_end",
            "end_call",
            r#"{"reason":"the caller said goodbye"}"#,
        )],
    ));
    // A pause within the goodbye does not end it…
    conn.send(live::audio_delta(&mulaw_b64(4000, 0xff)));
    conn.send(live::audio_delta(&mulaw_b64(800, 0x23)));
    // …0.8 s of silence does (that chunk is not relayed).
    conn.send(live::audio_delta(&mulaw_b64(6400, 0xff)));
    // Handled in order: once this later chunk reaches Twilio, all before it was handled.
    conn.send(live::audio_delta(&mulaw_b64(8, 0x22)));
    call.stream
        .wait_for_marks(4, WAIT)
        .await
        .expect("every relayed chunk's mark");
    assert!(
        h.rest.requests().is_empty(),
        "hung up before the goodbye played"
    );
    call.stream.echo_pending_marks().await.expect("played");
    // The last chunk started a new turn of speech; its silence ends it too.
    conn.send(live::audio_delta(&mulaw_b64(6400, 0xff)));
    let requests = h.rest.wait_for_request(1, WAIT).await.expect("hang-up");
    assert_eq!(requests[0].param("Status"), Some("completed"));
    let end = h.next_end().await;
    assert_eq!(
        end.reason,
        EndReason::AgentHungUp {
            reason: "the caller said goodbye".into()
        }
    );
    assert!(
        conn.events_of_type("response.create").is_empty(),
        "nothing follows a hang-up: {:?}",
        conn.event_types()
    );
    h.engine.assert_no_schema_violations();
}

#[tokio::test]
async fn a_fatal_error_and_each_closing_reason_end_the_call_over_rest() {
    // A benign error is only logged. Without reconnects, each closing reason ends the call
    // its own way (a lost connection is otherwise replaced: see below).
    let mut h = harness(|l| l.reconnect_attempts = 0).await;
    let call = h.call(7).await;
    let conn = h.live_conn(0).await;
    conn.send(live::error_event(
        "function_call_outputs_required",
        "outputs are missing",
    ));
    call.stream
        .send_media(20, &mulaw_b64(160, 1))
        .await
        .expect("media");
    conn.wait_for_event("session.input_audio.append", WAIT)
        .await
        .expect("still relaying");
    conn.send(live::error_event("invalid_api_key", "Incorrect API key."));
    let end = h.next_end().await;
    assert_eq!(
        end.reason,
        EndReason::EngineError {
            message: "Incorrect API key.".into()
        }
    );
    h.rest.wait_for_request(1, WAIT).await.expect("hung up");

    for (n, reason, expected) in [
        (
            8,
            "expired",
            EndReason::EngineError {
                message: "the engine closed the session (expired)".into(),
            },
        ),
        (
            9,
            "connection_lost",
            EndReason::EngineLost {
                detail: "the engine lost its connection (session.closed: connection_lost)".into(),
            },
        ),
    ] {
        let _call = h.call(n).await;
        let conn = h.live_conn((n - 7) as usize).await;
        conn.send(live::session_closed(reason));
        assert_eq!(h.next_end().await.reason, expected, "{reason}");
    }
    h.engine.assert_no_schema_violations();
}

#[tokio::test]
async fn a_lost_engine_is_replaced_without_a_second_greeting_and_then_ends_over_rest() {
    let mut h = harness(|_| {}).await;
    let call = h.call(10).await;
    let conn = h.live_conn(0).await;
    conn.wait_for_event("session.commentary.append", WAIT)
        .await
        .expect("the greeting");
    // The greeting is being spoken when the engine is lost.
    conn.send(live::audio_delta(&mulaw_b64(160, 0x42)));
    call.stream
        .wait_for(|r| r.iter().any(|m| m["event"] == "media"), WAIT)
        .await
        .expect("the greeting's audio");
    conn.drop_tcp();
    // A new session, told the call is resuming, and not asked to greet again.
    let next = h.live_conn(1).await;
    let start = next
        .wait_for_event("session.start", WAIT)
        .await
        .expect("session.start");
    let instructions = start["session"]["instructions"]
        .as_str()
        .unwrap_or_default();
    assert!(instructions.contains("has now resumed"), "{instructions}");
    assert!(instructions.contains("Do not greet the caller again"));
    // Lost again, with the engine unreachable: the apology, over REST.
    h.engine.refuse_all_handshakes(503);
    next.drop_tcp();
    call.stream.wait_closed(WAIT).await.expect("closed");
    let end = h.next_end().await;
    assert!(
        matches!(&end.reason, EndReason::EngineLost { detail } if detail.contains("reconnecting failed")),
        "{end:?}"
    );
    assert_eq!(end.reconnects.len(), 1, "{:?}", end.reconnects);
    assert!(
        next.events_of_type("session.commentary.append")
            .iter()
            .all(|c| !c["content"]
                .as_str()
                .unwrap_or_default()
                .contains("Do you have an order ID")),
        "no second greeting: {:?}",
        next.event_types()
    );
    let requests = h.rest.wait_for_request(1, WAIT).await.expect("hang-up");
    assert_eq!(requests[0].call_sid, call.call_sid);
}

#[tokio::test]
async fn at_the_time_limit_the_agent_says_goodbye_then_the_call_ends() {
    let mut h = harness(|l| {
        l.max_call_duration = Duration::from_millis(300);
        l.goodbye_wait = Duration::from_secs(600);
    })
    .await;
    let _call = h.call(11).await;
    let conn = h.live_conn(0).await;
    let goodbye = conn
        .wait_for_count("session.commentary.append", 2, WAIT)
        .await
        .expect("goodbye asked for")
        .remove(1);
    assert!(
        goodbye["content"]
            .as_str()
            .expect("text")
            .contains("time limit"),
        "{goodbye}"
    );
    assert!(h.rest.requests().is_empty(), "the goodbye plays first");
    // The backend finishing something meanwhile is not the goodbye.
    conn.send_all(live::function_calls("dlg_late", &[]));
    conn.send(live::audio_delta(&mulaw_b64(800, 0x31)));
    conn.send(live::audio_delta(&mulaw_b64(6400, 0xff)));
    let end = h.next_end().await;
    assert_eq!(end.reason, EndReason::MaxDuration);
    h.rest.wait_for_request(1, WAIT).await.expect("hang-up");
    h.engine.assert_no_schema_violations();
}

#[tokio::test]
async fn at_the_drain_deadline_calls_say_goodbye_and_end() {
    let mut h = harness(|l| {
        l.drain_timeout = Duration::from_millis(200);
        l.goodbye_wait = Duration::from_secs(600);
    })
    .await;
    let call = h.call(12).await;
    let conn = h.live_conn(0).await;
    h.begin_shutdown();
    let goodbye = conn
        .wait_for_count("session.commentary.append", 2, WAIT)
        .await
        .expect("goodbye asked for")
        .remove(1);
    assert!(
        goodbye["content"]
            .as_str()
            .expect("text")
            .contains("call back"),
        "{goodbye}"
    );
    conn.send(live::audio_delta(&mulaw_b64(800, 0x41)));
    conn.send(live::audio_delta(&mulaw_b64(6400, 0xff)));
    assert_eq!(h.next_end().await.reason, EndReason::Shutdown);
    call.stream.wait_closed(WAIT).await.expect("closed");
    h.stopped().await.expect("server exits cleanly");
}

#[tokio::test]
async fn transcripts_are_assembled_into_turns_and_the_caller_talking_clears_playback() {
    let mut h = harness(|_| {}).await;
    let call = h.call(13).await;
    let conn = h.live_conn(0).await;
    call.stream.set_auto_echo_marks(false);
    conn.send(live::audio_delta(&mulaw_b64(800, 0x51)));
    conn.send(live::output_transcript("Your order", 0, 200));
    conn.send(live::output_transcript(" has shipped.", 200, 400));
    call.stream
        .wait_for_media(1, WAIT)
        .await
        .expect("agent audio");
    // The caller talks over the agent: the first fragment clears what Twilio still holds.
    conn.send(live::input_transcript("Wait,", 600, 800));
    conn.send(live::input_transcript(" which one?", 800, 1000));
    call.stream.wait_for_clears(1, WAIT).await.expect("clear");
    // Each turn closes after 0.8 s without fragments.
    h.wait_for_transcripts(2).await;
    let turns: Vec<(patter::Role, String)> = h
        .transcripts
        .lock()
        .expect("lock")
        .iter()
        .map(|t| (t.role, t.text.clone()))
        .collect();
    assert!(
        turns.contains(&(patter::Role::Agent, "Your order has shipped.".into())),
        "{turns:?}"
    );
    assert!(
        turns.contains(&(patter::Role::Caller, "Wait, which one?".into())),
        "{turns:?}"
    );
    // The agent has stopped (0.8 s of silence): the caller talking then clears nothing,
    // and a turn still open when the call ends is kept.
    conn.send(live::audio_delta(&mulaw_b64(6400, 0xff)));
    conn.send(live::input_transcript("Hello?", 3000, 3200));
    // A later chunk of speech shows the fragment was handled (engine events keep order).
    conn.send(live::audio_delta(&mulaw_b64(800, 0x52)));
    call.stream
        .wait_for_media(2, WAIT)
        .await
        .expect("later audio");
    call.stream.send_stop().await.expect("stop");
    let end = h.next_end().await;
    let last = end.transcript.last().expect("turns");
    assert_eq!(
        (last.role, last.text.as_str()),
        (patter::Role::Caller, "Hello?")
    );
    assert_eq!(call.stream.clears(), 1, "one clear, while the agent spoke");
    h.engine.assert_no_schema_violations();
}

#[tokio::test]
async fn a_session_that_does_not_start_hangs_the_call_up() {
    let mut h = harness(|_| {}).await;
    h.engine.refuse_sessions(live::error_event(
        "credit_balance_exhausted",
        "Your credit balance is too low.",
    ));
    let call = h.call(14).await;
    let end = h.next_end().await;
    let EndReason::EngineLost { detail } = &end.reason else {
        panic!("{:?}", end.reason);
    };
    assert!(detail.contains("credit_balance_exhausted"), "{detail}");
    h.rest.wait_for_request(1, WAIT).await.expect("hang-up");
    call.stream.wait_closed(WAIT).await.expect("closed");
}

#[tokio::test]
async fn the_pcm_option_transcodes_both_ways_on_gpt_live() {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut h = Harness::start_with(
        agent().audio_format(patter::AudioFormat::Pcm24k),
        Options {
            engine_kind: EngineKind::GptLive,
            ..Options::default()
        },
    )
    .await;
    let call = h.call(15).await;
    let conn = h.live_conn(0).await;
    let start = conn.events_of_type("session.start").remove(0);
    assert_eq!(
        start["session"]["audio"]["format"],
        json!({ "type": "audio/pcm", "rate": 24000 })
    );
    call.stream
        .send_media(20, &mulaw_b64(160, 0x55))
        .await
        .expect("media");
    let append = conn
        .wait_for_event("session.input_audio.append", WAIT)
        .await
        .expect("append");
    let pcm = b64
        .decode(append["audio"].as_str().expect("audio"))
        .expect("base64");
    assert_eq!(pcm.len(), 160 * 3 * 2, "20 ms of PCM16 at 24 kHz");
    // 100 ms of a tone in PCM comes back as 100 ms of μ-law; PCM silence is not relayed.
    let tone: Vec<u8> = (0..2400)
        .flat_map(|i: i32| ((((i % 48) - 24) * 800) as i16).to_le_bytes())
        .collect();
    conn.send(live::audio_delta(&b64.encode(vec![0u8; 4800])));
    conn.send(live::audio_delta(&b64.encode(&tone)));
    call.stream
        .wait_for_media(1, WAIT)
        .await
        .expect("agent audio");
    let heard: usize = call
        .stream
        .media_payloads()
        .iter()
        .map(|p| b64.decode(p).expect("base64").len())
        .sum();
    assert!((790..=800).contains(&heard), "{heard} bytes of μ-law");
    call.stream.send_stop().await.expect("stop");
    h.next_end().await;
    h.engine.assert_no_schema_violations();
}

#[tokio::test]
async fn overlapping_backend_responses_get_one_response_create_after_both() {
    let mut h = harness(|_| {}).await;
    let call = h.call(16).await;
    let conn = h.live_conn(0).await;
    let mut first = live::function_calls("dlg_a", &[("call_a", "lookup", r#"{"order_id":"A"}"#)]);
    let first_done = first.pop().expect("completed");
    let mut second = live::function_calls("dlg_b", &[("call_b", "lookup", r#"{"order_id":"B"}"#)]);
    let second_done = second.pop().expect("completed");
    // Both run; the first finishes and is answered while the second still runs.
    conn.send_all(first);
    conn.send_all(second);
    conn.send(first_done);
    conn.wait_for_count("response.item.create", 2, WAIT)
        .await
        .expect("both results");
    // Caller audio shows the engine has handled everything up to here.
    call.stream
        .send_media(20, &mulaw_b64(160, 1))
        .await
        .expect("media");
    conn.wait_for_event("session.input_audio.append", WAIT)
        .await
        .expect("append");
    assert!(
        conn.events_of_type("response.create").is_empty(),
        "not while dlg_b runs: {:?}",
        conn.event_types()
    );
    conn.send(second_done);
    conn.wait_for_event("response.create", WAIT)
        .await
        .expect("one continue");
    call.stream.send_stop().await.expect("stop");
    h.next_end().await;
    assert_eq!(conn.events_of_type("response.create").len(), 1);
    h.engine.assert_no_schema_violations();
}

#[tokio::test]
async fn the_calls_of_a_failed_backend_response_get_no_result() {
    let mut h = harness(|_| {}).await;
    let call = h.call(17).await;
    let conn = h.live_conn(0).await;
    let mut events = live::function_calls("dlg_f", &[("call_f", "lookup", r#"{"order_id":"F"}"#)]);
    events.pop();
    conn.send_all(events);
    conn.send(live::response_event(
        "dlg_f",
        json!({"type": "response.failed", "response": {"id": "resp_dlg_f", "status": "failed", "output": []}}),
    ));
    // A later call of another response is answered and continued as usual.
    conn.send_all(live::function_calls(
        "dlg_g",
        &[("call_g", "lookup", r#"{"order_id":"G"}"#)],
    ));
    conn.wait_for_event("response.create", WAIT)
        .await
        .expect("continue");
    let answered: Vec<String> = outputs(&conn).into_iter().map(|(c, _)| c).collect();
    assert_eq!(
        answered,
        ["call_g"],
        "no result for the failed response's call"
    );
    call.stream.send_stop().await.expect("stop");
    let end = h.next_end().await;
    assert_eq!(end.tool_calls.len(), 2, "both tools ran");
    h.engine.assert_no_schema_violations();
}

#[tokio::test]
async fn speech_that_stops_without_silence_ends_after_a_gap() {
    let mut h = harness(|l| l.goodbye_wait = Duration::from_secs(600)).await;
    let _call = h.call(18).await;
    let conn = h.live_conn(0).await;
    // The agent speaks, then the server sends nothing at all: end_call does not wait for
    // the goodbye wait.
    conn.send(live::audio_delta(&mulaw_b64(800, 0x61)));
    conn.send_all(live::function_calls(
        "dlg_e",
        &[("call_e", "end_call", r#"{"reason":"done"}"#)],
    ));
    let end = h.next_end().await;
    assert_eq!(
        end.reason,
        EndReason::AgentHungUp {
            reason: "done".into()
        }
    );
}
