//! A call served with the `otel` feature, exported over OTLP/HTTP to a local receiver
//! (configured by `OTEL_EXPORTER_OTLP_ENDPOINT`, as users do) and decoded with the
//! OpenTelemetry proto types: the span tree, its attributes, and no phone number anywhere.
#![cfg(feature = "otel")]
#![allow(clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use common::{WAIT, free_port, place_call, product_specialist_on, terminate, wait_until_serving};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use patter_tests::fake_openai::{FakeRealtime, audio_response_events};
use patter_tests::fake_twilio::FakeTwilioRest;
use patter_tests::twilio_sid;
use prost::Message as _;

type Bodies = Arc<Mutex<Vec<Bytes>>>;

/// `n` bytes of μ-law silence, base64.
fn audio_b64(n: usize) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(vec![0xff_u8; n])
}

async fn receive(State(bodies): State<Bodies>, body: Bytes) -> &'static str {
    bodies.lock().expect("lock").push(body);
    ""
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
        .map(|v| match v {
            Value::StringValue(s) => s.clone(),
            Value::IntValue(i) => i.to_string(),
            Value::BoolValue(b) => b.to_string(),
            Value::DoubleValue(d) => d.to_string(),
            other => format!("{other:?}"),
        })
}

#[tokio::test]
async fn a_call_is_one_trace_from_the_voice_webhook_down_to_its_tools() {
    let bodies: Bodies = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let receiver = format!("http://{}", listener.local_addr().expect("addr"));
    let app = axum::Router::new()
        .route("/v1/traces", post(receive))
        .with_state(Arc::clone(&bodies));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let engine = FakeRealtime::start().await;
    let rest = FakeTwilioRest::start().await;
    let port = free_port();
    let mut child = product_specialist_on(port, &rest.base_url())
        .env("OPENAI_REALTIME_URL", engine.url())
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver)
        .env("OTEL_SERVICE_NAME", "patter-example")
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .spawn()
        .expect("starts");
    let drain = wait_until_serving(&mut child).await;

    let stream = place_call(port, 5).await;
    let conn = engine.wait_for_conn(0, WAIT).await.expect("engine");
    conn.wait_for_event("session.update", WAIT)
        .await
        .expect("configured");
    conn.send(serde_json::json!({
        "type": "input_audio_buffer.speech_stopped", "event_id": "e1",
        "audio_end_ms": 900, "item_id": "item_in"
    }));
    conn.send_function_call_response(
        "resp_1",
        &[("call_1", "check_inventory", r#"{"product_id":"SKU-1234"}"#)],
    );
    conn.wait_for_count("response.create", 2, WAIT)
        .await
        .expect("the answer after the tool");
    // The answer, spoken: its first audio is what the caller waited for.
    conn.send_all(audio_response_events(
        "resp_2",
        "item_2",
        &[&audio_b64(800)],
        "Yes, 12 in stock.",
    ));
    stream.wait_for_media(1, WAIT).await.expect("agent audio");
    stream.echo_pending_marks().await.expect("marks played");
    stream.send_stop().await.expect("stop");
    conn.wait_closed(WAIT).await.expect("engine closed");
    // The same call's caller-heard latency on /metrics (the example has both features).
    let (status, _, metrics) = patter_tests::fake_twilio::http_request(
        "GET",
        &format!("http://127.0.0.1:{port}/metrics"),
        &[],
        b"",
    )
    .await;
    assert_eq!(status, 200, "{metrics}");
    assert!(
        metrics.contains("patter_turn_response_seconds_count 1"),
        "{metrics}"
    );
    // SIGTERM: the server drains and exits; the exporter flushes on the way out.
    assert_eq!(terminate(&mut child).await, Some(0));
    let _ = drain.await;

    let bodies = bodies.lock().expect("lock").clone();
    assert!(!bodies.is_empty(), "nothing exported");
    for body in &bodies {
        let raw = String::from_utf8_lossy(body);
        for number in ["+15550111", "+15550100", "15550111"] {
            assert!(!raw.contains(number), "a phone number was exported: {raw}");
        }
    }
    let mut spans: Vec<Span> = Vec::new();
    let mut services = Vec::new();
    for body in &bodies {
        let request = ExportTraceServiceRequest::decode(body.as_ref()).expect("OTLP protobuf");
        for resource in request.resource_spans {
            if let Some(r) = &resource.resource {
                for kv in &r.attributes {
                    if kv.key == "service.name" {
                        services.push(format!("{:?}", kv.value));
                    }
                }
            }
            for scope in resource.scope_spans {
                spans.extend(scope.spans);
            }
        }
    }
    assert!(
        services.iter().all(|s| s.contains("patter-example")),
        "{services:?}"
    );
    let by_id: HashMap<Vec<u8>, &Span> = spans.iter().map(|s| (s.span_id.clone(), s)).collect();
    let named = |name: &str| -> Vec<&Span> { spans.iter().filter(|s| s.name == name).collect() };
    let parent = |span: &Span| by_id.get(&span.parent_span_id).copied();

    let call_sid = twilio_sid("CA", 5);
    let calls = named("call");
    assert_eq!(
        calls.len(),
        1,
        "{:?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    let call = calls[0];
    assert_eq!(
        attribute(call, "call.id").as_deref(),
        Some(call_sid.as_str())
    );
    assert_eq!(
        attribute(call, "call.direction").as_deref(),
        Some("inbound")
    );
    assert_eq!(
        attribute(call, "call.end_reason").as_deref(),
        Some("stream_stopped")
    );
    assert!(attribute(call, "gen_ai.request.model").is_some());
    assert!(
        attribute(call, "call.caller_hash").is_none(),
        "off by default"
    );

    // The call continues the voice webhook's trace, under the carrier's stream span.
    let carrier = parent(call).expect("the call has a parent");
    assert_eq!(carrier.name, "carrier.stream");
    let webhook = parent(carrier).expect("the stream continues the webhook's trace");
    assert_eq!(webhook.name, "http.request");
    assert_eq!(attribute(webhook, "http.route").as_deref(), Some("voice"));
    assert_eq!(
        attribute(webhook, "http.response.status_code").as_deref(),
        Some("200")
    );
    assert!(webhook.start_time_unix_nano <= call.start_time_unix_nano);
    assert_eq!(webhook.trace_id, call.trace_id);

    let engine_span = named("engine.session");
    assert_eq!(engine_span.len(), 1);
    assert_eq!(
        parent(engine_span[0]).map(|p| p.span_id.clone()),
        Some(call.span_id.clone())
    );
    assert_eq!(
        attribute(engine_span[0], "gen_ai.system").as_deref(),
        Some("openai")
    );

    let tools = named("tool");
    assert_eq!(tools.len(), 1);
    let tool = tools[0];
    assert_eq!(
        attribute(tool, "tool.name").as_deref(),
        Some("check_inventory")
    );
    assert_eq!(
        attribute(tool, "gen_ai.tool.name").as_deref(),
        Some("check_inventory")
    );
    assert_eq!(attribute(tool, "tool.outcome").as_deref(), Some("ok"));
    assert!(attribute(tool, "gen_ai.tool.call.id").is_some());
    let turn = parent(tool).expect("the tool runs in a turn");
    assert_eq!(turn.name, "turn");
    assert_eq!(attribute(turn, "turn.by_caller").as_deref(), Some("true"));
    let waited: u64 = attribute(turn, "turn.response_time_ms")
        .expect("the caller-heard latency on the turn's span")
        .parse()
        .expect("ms");
    assert!(waited < 10_000, "{waited}");
    assert!(attribute(turn, "turn.played_after_ms").is_some());
    assert!(attribute(turn, "turn.index").is_some());
    assert_eq!(
        parent(turn).map(|p| p.span_id.clone()),
        Some(call.span_id.clone())
    );
    // Nothing the model sent as arguments is in the trace.
    for span in &spans {
        for kv in &span.attributes {
            assert!(!format!("{:?}", kv.value).contains("SKU-1234"), "{span:?}");
        }
    }
}
