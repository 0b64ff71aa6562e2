//! `/metrics` (feature `prometheus`), scraped during and after real calls over loopback and
//! read with a Prometheus text-format parser: the values match what happened, and no label
//! carries a phone number.
#![cfg(feature = "prometheus")]

mod common;

use common::{Harness, Options, WAIT};
use patter::{AgentSpec, CallContext, ToolSet};
use patter_tests::fake_twilio;
use prometheus_parse::{Scrape, Value};

/// Looks an order up.
#[patter::tool]
async fn lookup(_call: &CallContext) -> String {
    "shipped".to_owned()
}

fn agent() -> AgentSpec {
    AgentSpec::new("You help {caller}.")
        .model("gpt-realtime")
        .first_message("Hi!")
        .tools(
            ToolSet::builder()
                .tool(lookup::tool())
                .build()
                .expect("tools"),
        )
}

async fn scrape_at(url: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let (status, _, body) = fake_twilio::http_request("GET", url, headers, b"").await;
    (status, body)
}

/// The parsed scrape.
fn parse(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("valid Prometheus text")
}

/// The value of `metric` with every label in `labels` (0 if absent); a histogram's count.
fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
            Value::Summary(_) => f64::NAN,
        })
        .sum()
}

#[tokio::test]
async fn metrics_follow_calls_and_carry_no_phone_numbers() {
    let mut h = Harness::with_limits(agent(), |l| l.max_concurrent_calls = 1).await;
    let url = format!("{}/metrics", h.base);
    let (status, text) = scrape_at(&url, &[]).await;
    assert_eq!(status, 200, "{text}");
    let before = parse(&text);
    let calls_before = value(
        &before,
        "patter_calls_total",
        &[("end_reason", "stream_stopped")],
    );
    let tools_before = value(
        &before,
        "patter_tool_duration_seconds",
        &[("tool", "lookup")],
    );
    let rejections_before = value(
        &before,
        "patter_signature_rejections_total",
        &[("route", "voice")],
    );

    // A request Twilio did not sign.
    let (status, _, _) = fake_twilio::post_form(
        &format!("{}/twilio/voice", h.base),
        &[],
        &[("CallSid", "CA1")],
    )
    .await;
    assert_eq!(status, 403);

    let call = h.call(1).await;
    let conn = h.engine_conn(0).await;
    // During the call: one active call.
    let during = parse(&scrape_at(&url, &[]).await.1);
    assert_eq!(
        value(&during, "patter_calls_active", &[]),
        1.0,
        "{during:?}"
    );
    assert_eq!(
        value(
            &during,
            "patter_signature_rejections_total",
            &[("route", "voice")]
        ) - rejections_before,
        1.0
    );
    // A second caller while the one slot is taken hears the busy message.
    let (status, _, busy) = h.voice_webhook(&patter_tests::twilio_sid("CA", 2)).await;
    assert_eq!(status, 200);
    assert!(busy.contains("busy"), "{busy}");
    // A benign engine error (counted, the call goes on).
    conn.send(serde_json::json!({
        "type": "error", "event_id": "e0",
        "error": {"type": "invalid_request_error", "code": "conversation_already_has_active_response",
                  "message": "Conversation already has an active response"}
    }));
    // The model calls a tool that does not exist: an error the model is told of.
    conn.send_function_call_response("resp_0", &[("call_0", "no_such_tool", "{}")]);
    conn.wait_for_event("conversation.item.create", WAIT)
        .await
        .expect("the error answered");
    // The caller speaks; the agent calls a tool, then answers with audio.
    conn.send(serde_json::json!({
        "type": "input_audio_buffer.speech_stopped", "event_id": "e1",
        "audio_end_ms": 1000, "item_id": "item_in"
    }));
    conn.send_function_call_response("resp_1", &[("call_1", "lookup", "{}")]);
    conn.wait_for_count("conversation.item.create", 2, WAIT)
        .await
        .expect("tool answered");
    conn.send_audio_response(
        "resp_2",
        "item_2",
        &[&common::mulaw_b64(160, 1)],
        "It shipped.",
    );
    call.stream
        .wait_for_media(1, WAIT)
        .await
        .expect("agent audio");
    call.stream.echo_pending_marks().await.expect("marks");
    call.stream.send_stop().await.expect("stop");
    let summary = h.next_end().await;
    assert_eq!(
        summary.metrics.turns.iter().filter(|t| t.by_caller).count(),
        1
    );

    let (_, text) = scrape_at(&url, &[]).await;
    assert!(
        !text.contains("+1555"),
        "a phone number in the metrics:\n{text}"
    );
    let after = parse(&text);
    assert_eq!(value(&after, "patter_calls_active", &[]), 0.0);
    assert_eq!(
        value(
            &after,
            "patter_calls_total",
            &[("end_reason", "stream_stopped"), ("direction", "inbound")]
        ) - calls_before,
        1.0
    );
    assert_eq!(
        value(
            &after,
            "patter_tool_duration_seconds",
            &[("tool", "lookup"), ("outcome", "ok")]
        ) - tools_before,
        1.0
    );
    assert!(
        value(&after, "patter_turn_response_seconds", &[]) >= 1.0,
        "{text}"
    );
    assert!(
        value(
            &after,
            "patter_engine_connect_seconds",
            &[("engine", "openai_realtime")]
        ) >= 1.0
    );
    assert!(value(&after, "patter_frames_total", &[("direction", "out")]) >= 1.0);
    assert!(
        value(
            &after,
            "patter_engine_tokens_total",
            &[("kind", "audio_out")]
        ) >= 5.0
    );
    assert!(value(&after, "patter_calls_busy_total", &[]) >= 1.0);
    assert!(value(&after, "patter_engine_errors_total", &[("fatal", "false")]) >= 1.0);
    assert!(
        value(
            &after,
            "patter_tool_errors_total",
            &[("tool", "no_such_tool"), ("type", "unknown_tool")]
        ) >= 1.0
    );
    assert!(
        value(
            &after,
            "patter_cost_microdollars_total",
            &[("part", "engine")]
        ) > 0.0
    );

    // Every metric the Grafana dashboard queries is one the server exports.
    let names: std::collections::BTreeSet<String> = after
        .samples
        .iter()
        .map(|s| {
            let m = s.metric.as_str();
            m.strip_suffix("_bucket")
                .or_else(|| m.strip_suffix("_count"))
                .or_else(|| m.strip_suffix("_sum"))
                .unwrap_or(m)
                .to_owned()
        })
        .collect();
    let dashboard: serde_json::Value =
        serde_json::from_str(include_str!("../../docs/grafana/patter.json")).expect("JSON");
    let mut queried = 0;
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("patter_") {
                    let base = word.strip_suffix("_bucket").unwrap_or(word);
                    assert!(
                        names.contains(base),
                        "the dashboard queries {word}, not exported: {names:?}"
                    );
                    queried += 1;
                }
            }
        }
    }
    assert!(queried >= 12, "{queried}");
}

#[tokio::test]
async fn a_token_guards_metrics_and_a_port_of_their_own_moves_them() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let h = Harness::start_with(
        agent(),
        Options {
            config: Box::new(move |c| {
                c.bind_address(std::net::IpAddr::from([127, 0, 0, 1]))
                    .metrics_token("scrape-token-1")
                    .metrics_port(port)
            }),
            ..Options::default()
        },
    )
    .await;
    // The main port answers only once the metrics port is bound (it is bound first).
    let main = format!("{}/metrics", h.base);
    assert_eq!(scrape_at(&main, &[]).await.0, 404, "not on the main port");
    let own = format!("http://127.0.0.1:{port}/metrics");
    assert_eq!(scrape_at(&own, &[]).await.0, 401, "a token is asked for");
    let (status, _) = scrape_at(&own, &[("Authorization", "Bearer wrong")]).await;
    assert_eq!(status, 401);
    let (status, text) = scrape_at(&own, &[("Authorization", "Bearer scrape-token-1")]).await;
    assert_eq!(status, 200, "{text}");
    parse(&text);
}
