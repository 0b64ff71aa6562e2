//! What a call leaves in logs and spans (every level, span fields included): by default no
//! phone number, tool argument or word of the conversation; with the opt-ins, a keyed hash
//! of the caller and the turns' words.

mod common;

use common::{Harness, LogCapture, Options, WAIT, mulaw_b64};
use patter::{AgentSpec, CallContext, ToolSet};
use patter_tests::fake_openai::audio_response_events;

#[patter::args]
struct Order {
    /// The order.
    order_id: String,
}

/// Looks an order up.
#[patter::tool]
async fn lookup(args: Order, _call: &CallContext) -> String {
    format!("{} shipped", args.order_id.len())
}

fn agent() -> AgentSpec {
    AgentSpec::new("You help {caller}.")
        .first_message("Hello there.")
        .tools(
            ToolSet::builder()
                .tool(lookup::tool())
                .build()
                .expect("tools"),
        )
}

/// One call: a tool call with an order number, the caller's words and the agent's.
async fn a_call(h: &mut Harness, n: u128) {
    let call = h.call(n).await;
    let conn = h.engine_conn(0).await;
    call.stream
        .send_media(20, &mulaw_b64(160, 1))
        .await
        .expect("media");
    conn.send(serde_json::json!({
        "type": "conversation.item.input_audio_transcription.completed", "event_id": "t1",
        "item_id": "item_in", "content_index": 0,
        "transcript": "My order is ORD-7731, my card ends 4242"
    }));
    conn.send_function_call_response(
        "resp_1",
        &[("call_1", "lookup", r#"{"order_id":"ORD-7731"}"#)],
    );
    conn.wait_for_count("response.create", 2, WAIT)
        .await
        .expect("answered after the tool");
    conn.send_all(audio_response_events(
        "resp_2",
        "item_2",
        &[&mulaw_b64(160, 2)],
        "Your parcel left the depot today",
    ));
    call.stream
        .wait_for_media(1, WAIT)
        .await
        .expect("agent audio");
    call.stream.send_stop().await.expect("stop");
    let summary = h.next_end().await;
    assert_eq!(summary.transcript.len(), 2, "{:?}", summary.transcript);
}

#[tokio::test]
async fn logs_and_spans_hold_nothing_personal_unless_asked() {
    let capture = LogCapture::install();
    let mut h = Harness::start(agent()).await;
    a_call(&mut h, 1).await;
    let text = capture.text();
    assert!(text.contains("call started"), "the capture works");
    for personal in [
        "+15550111",
        "+15550100",
        "ORD-7731",
        "4242",
        "left the depot",
        "caller_hash",
    ] {
        assert!(
            !text.contains(personal),
            "{personal:?} in the logs:\n{text}"
        );
    }

    // Opted in: the caller as a keyed hash, and the words.
    let mut h = Harness::start_with(
        agent(),
        Options {
            config: Box::new(|c| c.caller_hash_key("hash key").trace_transcripts(true)),
            ..Options::default()
        },
    )
    .await;
    let before = capture.text().len();
    a_call(&mut h, 2).await;
    let text = capture.text()[before..].to_owned();
    let expected = {
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"hash key").expect("key");
        mac.update(b"+15550111");
        hex::encode(mac.finalize().into_bytes())[..16].to_owned()
    };
    assert!(
        text.contains(&format!("call.caller_hash=\"{expected}\""))
            || text.contains(&format!("call.caller_hash={expected}")),
        "{text}"
    );
    assert!(text.contains("left the depot"), "{text}");
    assert!(
        !text.contains("+15550111"),
        "the number itself never: {text}"
    );
}
