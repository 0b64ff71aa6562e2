//! No credential, signing secret or per-call token appears in the logs of a full call (with
//! a tool call and an error), nor in any `Debug` output.

mod common;

use common::{Harness, LogCapture, Options, WAIT, mulaw_b64};
use patter::{AgentSpec, ToolSet, WebhookTool};
use patter_tests::fake_openai::error_event;

const WEBHOOK_SECRET: &str = "whsec_super_secret_signing_value";

#[patter::args]
struct Query {
    /// The order.
    order_id: String,
}

#[tokio::test]
async fn a_full_call_logs_no_secret() {
    let capture = LogCapture::install();

    // A webhook tool whose endpoint is down: retries and a failure are logged.
    let closed_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let tool = WebhookTool::new::<Query>(
        "lookup",
        "Look up.",
        format!("http://user:urlpassword@127.0.0.1:{closed_port}/hook?key=urlkey"),
    )
    .with_signing_secret(WEBHOOK_SECRET)
    .with_retry_delay(std::time::Duration::from_millis(5));
    let spec = AgentSpec::new("p").tools(ToolSet::builder().tool(tool).build().expect("tools"));
    let mut h = Harness::start_with(spec, Options::default()).await;
    let call = h.call(71).await;
    let token = call
        .params
        .iter()
        .find(|(k, _)| k == "call_token")
        .map(|(_, v)| v.clone())
        .expect("token");
    let conn = h.engine_conn(0).await;
    call.stream
        .send_media(20, &mulaw_b64(160, 1))
        .await
        .expect("media");
    conn.send_function_call_response("resp_1", &[("call_1", "lookup", r#"{"order_id":"ORD-1"}"#)]);
    conn.wait_for_count("response.create", 1, WAIT)
        .await
        .expect("tool answered");
    conn.send(error_event("invalid_value", "Something was wrong"));
    call.stream.send_text("{not json").await.expect("garbage");
    conn.send_audio_response("resp_2", "item_2", &[&mulaw_b64(160, 2)], "Sorry.");
    call.stream.wait_for_media(1, WAIT).await.expect("audio");
    call.stream.send_stop().await.expect("stop");
    let summary = h.next_end().await;

    let logs = capture.text();
    assert!(
        logs.contains("tool failed"),
        "the logs did record the call:\n{logs}"
    );
    assert!(logs.contains(&call.call_sid));
    let debug = format!("{summary:?}");
    let secrets = [
        common::AUTH_TOKEN,
        common::OPENAI_KEY,
        "shared stream secret",
        WEBHOOK_SECRET,
        token.as_str(),
        "urlpassword",
        "urlkey",
    ];
    for secret in secrets {
        assert!(
            !logs.contains(secret),
            "{secret:?} found in the logs:\n{logs}"
        );
        assert!(!debug.contains(secret), "{secret:?} found in Debug output");
    }
}

#[test]
fn debug_output_of_the_configuration_hides_credentials() {
    let config = patter::Patter::builder()
        .twilio_account_sid(common::account_sid())
        .twilio_auth_token("tok_visible_would_be_bad")
        .openai_api_key("sk-visible-would-be-bad")
        .phone_number("+15550100")
        .webhook_url("agent.example.com")
        .stream_secret("stream_secret_visible_would_be_bad")
        .openai_realtime_url(
            "wss://user:pw_visible@proxy.example.com/v1/realtime?api-key=key_visible",
        )
        .build()
        .expect("config");
    let phone = patter::Patter::new(config.clone());
    for text in [format!("{config:?}"), format!("{phone:?}")] {
        for secret in [
            "tok_visible",
            "sk-visible",
            "stream_secret_visible",
            "pw_visible",
            "key_visible",
        ] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(text.contains(&common::account_sid()), "{text}");
    }
}
