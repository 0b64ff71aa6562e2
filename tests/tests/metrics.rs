//! What a call measures: each turn's caller-heard response time, confirmed playback, engine
//! and tool timings and interruptions, and per call the totals, frames and barge-ins; the
//! real session in test time (`patter::testing`), so known delays give exact values.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use patter::testing::TestCall;
use patter::{AgentSpec, Hooks, ToolSet, json};

#[patter::args]
struct Order {
    /// The order ID.
    order_id: String,
}

/// Looks an order up, slowly.
#[patter::tool]
async fn slow_lookup(args: Order) -> String {
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

const MS: fn(u64) -> Duration = Duration::from_millis;

fn within(actual: Option<Duration>, expected: Duration) -> bool {
    actual.is_some_and(|a| a.abs_diff(expected) <= MS(5))
}

#[tokio::test(start_paused = true)]
async fn each_turn_measures_what_the_caller_waited_and_heard() {
    let turns = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&turns);
    let hooks = Hooks::new().on_turn(move |_, turn| seen.lock().expect("lock").push(turn.clone()));
    let mut call = TestCall::new(agent()).hooks(hooks).start().await;
    call.expect_greeting("Hello!").await;
    call.model_says("Hello!").await;
    call.wait_until_played().await;

    // The engine hears the caller stop; its first audio comes 180 ms later.
    call.caller_says("Where is my order?").await;
    call.advance(MS(180)).await;
    call.model_says("Let me check that for you.").await;
    call.wait_until_played().await;

    // A tool that takes 250 ms, then the answer 40 ms after its result.
    call.caller_says("It's ORD-1.").await;
    let reply = call
        .model_calls("slow_lookup", json!({"order_id": "ORD-1"}))
        .await;
    assert!(reply.output().is_some());
    call.advance(MS(40)).await;
    call.model_says("It has shipped.").await;
    call.wait_until_played().await;

    // The caller talks over a long answer after 300 ms of it.
    call.caller_says("Thanks, and another thing.").await;
    call.model_says("Of course, I can help with another order, just give me its ID and I will look it up right away.").await;
    call.caller_interrupts_after(MS(300)).await;
    call.caller_hangs_up().await;
    let summary = call.ended().await;

    let turns = turns.lock().expect("lock").clone();
    assert_eq!(turns, summary.metrics.turns, "on_turn saw every turn");
    // The greeting, then three caller turns: the tool's result and the answer after it
    // are one turn.
    assert_eq!(turns.len(), 4, "{turns:#?}");
    let [greeting, first, tool, cut] = &turns[..] else {
        unreachable!()
    };
    assert!(!greeting.by_caller && greeting.response_time.is_none());
    assert_eq!(greeting.index, 1);

    assert!(first.by_caller);
    assert!(within(first.response_time, MS(180)), "{first:#?}");
    assert!(within(first.first_audio, MS(180)), "{first:#?}");
    // The first chunk (100 ms of audio) has played when its mark comes back.
    assert!(within(first.played_after, MS(280)), "{first:#?}");
    assert!(!first.interrupted && first.tools.is_empty());

    // The turn with the tool: its call took 250 ms; its audio came 40 ms after.
    assert_eq!(tool.tool_calls, 1);
    assert_eq!(tool.tools.len(), 1);
    assert!(within(Some(tool.tools[0].duration), MS(250)), "{tool:#?}");
    assert_eq!(tool.tools[0].outcome, "ok");
    assert!(within(tool.response_time, MS(290)), "{tool:#?}");
    assert_eq!(tool.index, 3);

    assert!(cut.interrupted, "{cut:#?}");
    // Heard: three 100 ms chunks had played (their marks echoed): what the engine's
    // truncation was told too.
    assert!(within(cut.heard, MS(300)), "{cut:#?}");
    assert_eq!(
        cut.heard.map(|h| h.as_millis() as u64),
        call.last_truncation_ms()
    );

    let m = &summary.metrics;
    assert_eq!(m.barge_ins, 1);
    assert!(m.frames_in > 0 && m.frames_out > 0, "{m:#?}");
    let response = m.response_time.expect("percentiles");
    assert_eq!(response.count, 3);
    assert!(within(Some(response.max), MS(290)), "{response:?}");
    assert_eq!(m.tool_time.expect("tool time").count, 1);
    assert_eq!(m.tool_errors, 0);
}

mod common;

use common::{Harness, Options, WAIT};
use patter::call::{Money, Prices};
use patter_tests::fake_openai::response_done;

/// `response.done` of `id` reporting `usage`.
fn done_with_usage(id: &str, usage: serde_json::Value) -> serde_json::Value {
    let mut done = response_done(id, "completed", Vec::new());
    done["response"]["usage"] = usage;
    done
}

/// The engine's usage over the wire, summed over responses, and the cost at the dated
/// default prices, exact to the token.
#[tokio::test]
async fn usage_from_the_engine_gives_the_exact_cost() {
    let agent = AgentSpec::new("You help.").model("gpt-realtime");
    let mut h = Harness::start_with(
        agent,
        Options {
            configure: Box::new(|p| p.prices(Prices::defaults())),
            ..Options::default()
        },
    )
    .await;
    let call = h.call(1).await;
    let conn = h.engine_conn(0).await;
    conn.send(done_with_usage(
        "resp_1",
        json!({
            "total_tokens": 2100, "input_tokens": 1500, "output_tokens": 600,
            "input_token_details": {
                "cached_tokens": 300, "text_tokens": 700, "audio_tokens": 800, "image_tokens": 0,
                "cached_tokens_details": {"text_tokens": 100, "audio_tokens": 200, "image_tokens": 0}
            },
            "output_token_details": {"text_tokens": 150, "audio_tokens": 450}
        }),
    ));
    conn.send(done_with_usage(
        "resp_2",
        json!({
            "total_tokens": 333, "input_tokens": 222, "output_tokens": 111,
            "input_token_details": {
                "cached_tokens": 22, "text_tokens": 122, "audio_tokens": 100, "image_tokens": 0,
                "cached_tokens_details": {"text_tokens": 22, "audio_tokens": 0, "image_tokens": 0}
            },
            "output_token_details": {"text_tokens": 11, "audio_tokens": 100}
        }),
    ));
    // A response without usage counts nothing.
    let mut bare = response_done("resp_3", "completed", Vec::new());
    if let Some(response) = bare["response"].as_object_mut() {
        response.remove("usage");
    }
    conn.send(bare);
    // The engine's events are read in order: once the tool call after them is answered,
    // all of them have been. (Its own response.done reports the fake's usage: 10 text and
    // 10 audio tokens in, 5 and 5 out.)
    conn.send_function_call_response("resp_4", &[("call_1", "no_such_tool", "{}")]);
    conn.wait_for_event("conversation.item.create", WAIT)
        .await
        .expect("the tool call answered");
    call.stream
        .send_media(20, &common::mulaw_b64(160, 0xff))
        .await
        .expect("media");
    conn.wait_for_event("input_audio_buffer.append", WAIT)
        .await
        .expect("audio relayed");
    call.stream.send_stop().await.expect("stop");
    let summary = h.next_end().await;
    let usage = summary.metrics.usage;
    assert_eq!(
        (
            usage.text_in,
            usage.audio_in,
            usage.cached_text_in,
            usage.cached_audio_in
        ),
        (832, 910, 122, 200)
    );
    assert_eq!((usage.text_out, usage.audio_out), (166, 555));
    assert_eq!(usage.input_tokens(), 1742);
    assert_eq!(summary.metrics.model, "gpt-realtime");
    // gpt-realtime per million: text in $4, cached text $0.40, audio in $32, cached audio
    // $0.40, text out $16, audio out $64; in µ$ per token: 4, 0.4, 32, 0.4, 16, 64.
    let pico = (832 - 122) * 4_000_000u128
        + 122 * 400_000
        + (910 - 200) * 32_000_000
        + 200 * 400_000
        + 166 * 16_000_000
        + 555 * 64_000_000;
    let cost = summary.metrics.cost.expect("priced");
    assert_eq!(cost.engine, Money(pico));
    // Under a minute of an inbound call: one started minute at $0.0085.
    assert_eq!(summary.metrics.carrier_minutes, 1);
    assert_eq!(cost.carrier, Money(8_500_000_000));
    assert_eq!(cost.total, Money(pico + 8_500_000_000));
    assert_eq!(cost.prices_as_of, patter::call::DEFAULT_PRICES_AS_OF);
    assert_eq!(summary.metrics.frames_in, 1);
    h.engine.assert_no_schema_violations();
}
