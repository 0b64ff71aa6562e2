//! Webhook tools against a real HTTP server on 127.0.0.1.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use patter::tool::webhook::{self, IDEMPOTENCY_HEADER, SIGNATURE_HEADER};
use patter::{CallContext, ToolSet, WebhookTool};
use serde_json::{Value, json};

#[patter::args]
struct OrderQuery {
    /// The order ID.
    order_id: String,
}

/// One scripted answer of the fake endpoint.
#[derive(Clone)]
enum Reply {
    Status(u16, &'static str),
    Big(usize),
    /// A body sent in chunks, with no Content-Length.
    Chunked(usize),
    Hang,
}

#[derive(Default)]
struct Endpoint {
    script: Mutex<VecDeque<Reply>>,
    seen: Mutex<Vec<(HeaderMap, Bytes)>>,
}

async fn handle(State(ep): State<Arc<Endpoint>>, headers: HeaderMap, body: Bytes) -> Response {
    ep.seen.lock().expect("lock").push((headers, body));
    let reply = ep.script.lock().expect("lock").pop_front();
    match reply.unwrap_or(Reply::Status(500, "script ran out")) {
        Reply::Status(code, text) => {
            (StatusCode::from_u16(code).expect("status"), text.to_owned()).into_response()
        }
        Reply::Big(len) => (StatusCode::OK, vec![b' '; len]).into_response(),
        Reply::Chunked(chunks) => {
            let chunk = Bytes::from(vec![b' '; 64 * 1024]);
            let stream = futures_util::stream::iter(
                (0..chunks).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
            );
            Body::from_stream(stream).into_response()
        }
        Reply::Hang => std::future::pending().await,
    }
}

/// Starts the endpoint; returns its URL and state.
async fn endpoint(script: Vec<Reply>) -> (String, Arc<Endpoint>) {
    let ep = Arc::new(Endpoint {
        script: Mutex::new(script.into()),
        seen: Mutex::default(),
    });
    let app = Router::new()
        .route("/hook", post(handle))
        .with_state(Arc::clone(&ep));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/hook"), ep)
}

fn ctx() -> CallContext {
    CallContext::builder("CA0123456789abcdef0123456789abcdef")
        .caller("+15550100")
        .callee("+15550199")
        .build()
}

fn set(tool: WebhookTool) -> ToolSet {
    ToolSet::builder()
        .tool(tool)
        .build()
        .expect("valid tool set")
}

fn tool(url: &str) -> WebhookTool {
    WebhookTool::new::<OrderQuery>("get_order_status", "Look up an order.", url)
}

fn error_message(output: &str) -> String {
    let v: Value = serde_json::from_str(output).expect("json");
    assert_eq!(v["error"]["type"], "webhook_error", "{output}");
    v["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn the_request_body_has_the_documented_shape_and_the_response_reaches_the_model() {
    let (url, ep) = endpoint(vec![Reply::Status(
        200,
        r#"{ "status": "shipped",  "eta": "Tuesday" }"#,
    )])
    .await;
    let out = set(tool(&url))
        .dispatch_with_id(
            "get_order_status",
            r#"{"order_id":"ORD-123456"}"#,
            &ctx(),
            "call_abc",
        )
        .await;
    assert_eq!(out.output, r#"{"eta":"Tuesday","status":"shipped"}"#);
    let seen = ep.seen.lock().expect("lock");
    assert_eq!(seen.len(), 1);
    let (headers, body) = &seen[0];
    let body: Value = serde_json::from_slice(body).expect("json body");
    assert_eq!(
        body,
        json!({
            "tool": "get_order_status",
            "arguments": { "order_id": "ORD-123456" },
            "call_id": "CA0123456789abcdef0123456789abcdef",
            "caller": "+15550100",
            "callee": "+15550199",
            "attempt": 1
        })
    );
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers[IDEMPOTENCY_HEADER], "call_abc");
    assert!(
        headers.get(SIGNATURE_HEADER).is_none(),
        "unsigned without a secret"
    );
}

#[tokio::test]
async fn a_503_is_retried_with_the_same_idempotency_key_until_success() {
    let (url, ep) = endpoint(vec![
        Reply::Status(503, "busy"),
        Reply::Status(503, "busy"),
        Reply::Status(200, r#"{"ok":true}"#),
    ])
    .await;
    let started = std::time::Instant::now();
    let out = set(tool(&url))
        .dispatch("get_order_status", r#"{"order_id":"ORD-1"}"#, &ctx())
        .await;
    assert_eq!(out.output, r#"{"ok":true}"#);
    let seen = ep.seen.lock().expect("lock");
    assert_eq!(seen.len(), 3, "three attempts");
    let keys: Vec<_> = seen
        .iter()
        .map(|(h, _)| h[IDEMPOTENCY_HEADER].clone())
        .collect();
    assert!(keys.iter().all(|k| *k == keys[0]), "{keys:?}");
    let attempts: Vec<_> = seen
        .iter()
        .map(|(_, b)| serde_json::from_slice::<Value>(b).expect("json")["attempt"].clone())
        .collect();
    assert_eq!(attempts, [json!(1), json!(2), json!(3)]);
    // Two default pauses of 0.5 s lie between the attempts.
    assert!(started.elapsed() >= Duration::from_millis(1000));
}

#[tokio::test]
async fn a_429_is_retried_and_the_final_failure_reaches_the_model() {
    let (url, ep) = endpoint(vec![Reply::Status(429, ""); 3]).await;
    let out = set(tool(&url).with_retry_delay(Duration::from_millis(10)))
        .dispatch("get_order_status", r#"{"order_id":"ORD-1"}"#, &ctx())
        .await;
    assert_eq!(
        error_message(&out.output),
        "the endpoint answered HTTP 429 (after 3 attempts)"
    );
    assert_eq!(ep.seen.lock().expect("lock").len(), 3);
}

#[tokio::test]
async fn a_400_is_not_retried() {
    let (url, ep) = endpoint(vec![
        Reply::Status(400, "order_id is malformed"),
        Reply::Status(200, "{}"),
    ])
    .await;
    let out = set(tool(&url))
        .dispatch("get_order_status", r#"{"order_id":"??"}"#, &ctx())
        .await;
    assert_eq!(
        error_message(&out.output),
        "the endpoint answered HTTP 400: order_id is malformed"
    );
    assert_eq!(ep.seen.lock().expect("lock").len(), 1);
}

#[tokio::test]
async fn an_endpoint_that_never_answers_times_out() {
    let (url, ep) = endpoint(vec![Reply::Hang, Reply::Hang]).await;
    let out = set(tool(&url)
        .with_timeout(Duration::from_millis(200))
        .with_max_attempts(2)
        .with_retry_delay(Duration::from_millis(10)))
    .dispatch("get_order_status", r#"{"order_id":"ORD-1"}"#, &ctx())
    .await;
    assert_eq!(
        error_message(&out.output),
        "the endpoint did not answer within 200 ms (after 2 attempts)"
    );
    assert_eq!(ep.seen.lock().expect("lock").len(), 2);
}

#[tokio::test]
async fn a_2_mib_response_is_refused() {
    let (url, ep) = endpoint(vec![Reply::Big(2 * 1024 * 1024)]).await;
    let out = set(tool(&url))
        .dispatch("get_order_status", r#"{"order_id":"ORD-1"}"#, &ctx())
        .await;
    assert_eq!(
        error_message(&out.output),
        "the endpoint's response is larger than 1048576 bytes"
    );
    assert_eq!(ep.seen.lock().expect("lock").len(), 1, "not retried");
}

#[tokio::test]
async fn a_chunked_response_is_cut_off_at_1_mib_while_reading() {
    // 32 chunks of 64 KiB: 2 MiB with no Content-Length to refuse it up front.
    let (url, _ep) = endpoint(vec![Reply::Chunked(32)]).await;
    let out = set(tool(&url))
        .dispatch("get_order_status", r#"{"order_id":"ORD-1"}"#, &ctx())
        .await;
    assert_eq!(
        error_message(&out.output),
        "the endpoint's response is larger than 1048576 bytes"
    );
}

#[tokio::test]
async fn an_unreachable_endpoint_is_a_model_visible_error() {
    // Bind then drop a listener so the port is closed.
    let port = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        l.local_addr().expect("addr").port()
    };
    let out =
        set(tool(&format!("http://127.0.0.1:{port}/hook"))
            .with_retry_delay(Duration::from_millis(5)))
        .dispatch("get_order_status", r#"{"order_id":"ORD-1"}"#, &ctx())
        .await;
    let message = error_message(&out.output);
    assert!(
        message.starts_with("the endpoint could not be reached"),
        "{message}"
    );
    assert!(message.ends_with("(after 3 attempts)"), "{message}");
    assert!(
        !message.contains("127.0.0.1"),
        "the URL stays out of the message: {message}"
    );
}

#[tokio::test]
async fn bad_arguments_never_reach_the_endpoint() {
    let (url, ep) = endpoint(vec![Reply::Status(200, "{}")]).await;
    let out = set(tool(&url))
        .dispatch("get_order_status", r#"{"order":"ORD-1"}"#, &ctx())
        .await;
    let v: Value = serde_json::from_str(&out.output).expect("json");
    assert_eq!(v["error"]["type"], "invalid_arguments");
    assert_eq!(
        v["error"]["message"],
        "invalid arguments: missing field `order_id`"
    );
    assert!(ep.seen.lock().expect("lock").is_empty());
}

#[tokio::test]
async fn the_signature_is_verifiable_by_the_receiver() {
    let (url, ep) = endpoint(vec![
        Reply::Status(500, ""),
        Reply::Status(200, r#"{"ok":1}"#),
    ])
    .await;
    let secret = "whsec_test_secret";
    let out = set(tool(&url)
        .with_signing_secret(secret)
        .with_retry_delay(Duration::from_millis(10)))
    .dispatch("get_order_status", r#"{"order_id":"ORD-7"}"#, &ctx())
    .await;
    assert_eq!(out.output, r#"{"ok":1}"#);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let seen = ep.seen.lock().expect("lock");
    assert_eq!(seen.len(), 2);
    for (headers, body) in seen.iter() {
        let header = headers[SIGNATURE_HEADER].to_str().expect("ascii");
        // With the library's verifier…
        webhook::verify_signature(
            secret.as_bytes(),
            header,
            body,
            now,
            Duration::from_secs(300),
        )
        .expect("valid signature");
        // …and by hand, as a receiver in any language would.
        use hmac::{Hmac, Mac};
        let (t, v1) = header
            .split_once(",v1=")
            .map(|(t, v)| (t.trim_start_matches("t="), v))
            .expect("t=…,v1=…");
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("key");
        mac.update(format!("{t}.").as_bytes());
        mac.update(body);
        assert_eq!(hex::encode(mac.finalize().into_bytes()), v1);
        // A tampered body or the wrong secret is refused.
        let mut tampered = body.to_vec();
        tampered[0] ^= 1;
        assert!(
            webhook::verify_signature(
                secret.as_bytes(),
                header,
                &tampered,
                now,
                Duration::from_secs(300)
            )
            .is_err()
        );
        assert!(
            webhook::verify_signature(b"other", header, body, now, Duration::from_secs(300))
                .is_err()
        );
        assert!(
            webhook::verify_signature(
                secret.as_bytes(),
                header,
                body,
                now + 3600,
                Duration::from_secs(300)
            )
            .is_err()
        );
    }
}

#[test]
fn debug_output_hides_the_signing_secret_and_url_credentials() {
    let tool =
        WebhookTool::new::<OrderQuery>("t", "T.", "https://user:pw@api.example.com/h?token=abc")
            .with_signing_secret("whsec_hidden");
    let debug = format!("{tool:?}");
    for secret in ["whsec_hidden", "pw", "token=abc"] {
        assert!(!debug.contains(secret), "{debug}");
    }
    assert!(debug.contains("api.example.com/h"), "{debug}");
}
