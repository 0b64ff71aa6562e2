//! The example binaries as a new user runs them: without settings they name what is missing;
//! with settings they serve, answer a (simulated) call that calls a typed tool, and exit 0 on
//! SIGTERM.

// Helpers state their expectations with `expect`, as the tests do.
#![allow(clippy::expect_used)]

mod common;

use common::{
    WAIT, free_port, place_call, product_specialist, product_specialist_on, terminate,
    wait_until_serving,
};
use patter_tests::fake_openai::FakeRealtime;
use patter_tests::fake_twilio::FakeTwilioRest;
use tokio::process::Command;

#[tokio::test]
async fn without_settings_each_example_names_the_missing_variables_and_exits_2() {
    for bin in [
        env!("CARGO_BIN_EXE_product_specialist"),
        env!("CARGO_BIN_EXE_customer_service"),
    ] {
        let out = Command::new(bin)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .current_dir(std::env::temp_dir())
            .output()
            .await
            .expect("runs");
        assert_eq!(out.status.code(), Some(2), "{bin}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        for var in [
            "TWILIO_ACCOUNT_SID",
            "TWILIO_AUTH_TOKEN",
            "OPENAI_API_KEY",
            "PHONE_NUMBER",
            "WEBHOOK_URL",
        ] {
            assert!(stderr.contains(var), "{bin}: {stderr}");
        }
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[tokio::test]
async fn malformed_deployment_settings_are_named_and_exit_2() {
    let out = product_specialist()
        .env("PATTER_MAX_CONCURRENT_CALLS", "lots")
        .env("PATTER_AUDIO_FORMAT", "pcm16")
        .env("PATTER_DRAIN_TIMEOUT_SECS", "-1")
        .env("PATTER_ENGINE", "gpt-5")
        .output()
        .await
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for named in [
        "PATTER_MAX_CONCURRENT_CALLS must be a whole number",
        "PATTER_AUDIO_FORMAT must be pcmu or pcm24k",
        "PATTER_DRAIN_TIMEOUT_SECS must be a whole number",
        "PATTER_ENGINE must be realtime or gpt-live",
    ] {
        assert!(stderr.contains(named), "{stderr}");
    }
}

#[tokio::test]
async fn the_product_specialist_answers_a_call_that_uses_its_tool() {
    let engine = FakeRealtime::start().await;
    let rest = FakeTwilioRest::start().await;
    let port = free_port();
    let mut child = product_specialist_on(port, &rest.base_url())
        .env("OPENAI_REALTIME_URL", engine.url())
        // Deployment settings, read from the environment.
        .env("PATTER_MODEL", "gpt-realtime-mini")
        .env("PATTER_VOICE", "cedar")
        .env("PATTER_AUDIO_FORMAT", "pcm24k")
        .env("PATTER_MAX_CONCURRENT_CALLS", "250")
        .spawn()
        .expect("starts");
    let drain = wait_until_serving(&mut child).await;

    let stream = place_call(port, 77).await;
    let conn = engine.wait_for_conn(0, WAIT).await.expect("engine");
    let update = conn
        .wait_for_event("session.update", WAIT)
        .await
        .expect("update");
    assert!(
        update["session"]["instructions"]
            .as_str()
            .expect("instructions")
            .contains("+15550111")
    );
    assert_eq!(
        conn.query_param("model").as_deref(),
        Some("gpt-realtime-mini")
    );
    assert_eq!(update["session"]["audio"]["output"]["voice"], "cedar");
    assert_eq!(
        update["session"]["audio"]["input"]["format"],
        serde_json::json!({ "type": "audio/pcm", "rate": 24000 })
    );
    conn.send_function_call_response(
        "resp_1",
        &[("call_1", "check_inventory", r#"{"product_id":"SKU-1234"}"#)],
    );
    conn.wait_for_count("response.create", 2, WAIT)
        .await
        .expect("greeting, then the answer after the tool");
    let output = conn.events_of_type("conversation.item.create").remove(0);
    let stock: serde_json::Value =
        serde_json::from_str(output["item"]["output"].as_str().expect("output")).expect("json");
    assert_eq!(stock["product_id"], "SKU-1234");
    assert!(
        stock["quantity"].is_u64() && stock["in_stock"].is_boolean(),
        "{stock}"
    );
    stream.send_stop().await.expect("stop");
    conn.wait_closed(WAIT).await.expect("engine closed");

    // SIGTERM: drains (no call left) and exits 0.
    assert_eq!(terminate(&mut child).await, Some(0));
    let _ = drain.await;
    engine.assert_no_schema_violations();
}

/// One setting switches the product specialist to GPT-Live: the same tool answers through
/// the backend delegation.
#[tokio::test]
async fn the_product_specialist_runs_on_gpt_live_with_one_setting() {
    let engine = FakeRealtime::start_live().await;
    let rest = FakeTwilioRest::start().await;
    let port = free_port();
    let mut child = product_specialist_on(port, &rest.base_url())
        .env("OPENAI_LIVE_URL", engine.url())
        .env("PATTER_ENGINE", "gpt-live")
        .spawn()
        .expect("starts");
    let drain = wait_until_serving(&mut child).await;
    let stream = place_call(port, 78).await;
    let conn = engine.wait_for_conn(0, WAIT).await.expect("engine");
    let start = conn
        .wait_for_event("session.start", WAIT)
        .await
        .expect("session.start");
    assert_eq!(start["session"]["model"], "gpt-live-1.1");
    conn.send_all(patter_tests::fake_openai::live::function_calls(
        "dlg_1",
        &[("call_1", "check_inventory", r#"{"product_id":"SKU-1234"}"#)],
    ));
    conn.wait_for_event("response.create", WAIT)
        .await
        .expect("the answer, then the go-ahead");
    let output = conn.events_of_type("response.item.create").remove(0);
    let stock: serde_json::Value =
        serde_json::from_str(output["item"]["output"].as_str().expect("output")).expect("json");
    assert_eq!(stock["product_id"], "SKU-1234");
    stream.send_stop().await.expect("stop");
    conn.wait_for_event("session.close", WAIT)
        .await
        .expect("session closed");
    let _ = child.kill().await;
    let _ = drain.await;
    engine.assert_no_schema_violations();
}
