//! Checking the customer-service agent's prompt and tools with the real model.
//!
//! These tests talk to OpenAI (the model real calls use, in text): set `OPENAI_API_KEY` to
//! run them. Without it each prints a line saying it was skipped and passes, so a CI
//! without a key stays green.
//!
//! ```sh
//! OPENAI_API_KEY=sk-… cargo test -p patter-examples --test conversation -- --nocapture
//! ```

use patter::json;
use patter::testing::{Conversation, repeat};
use patter_examples::customer_service::CustomerService;

/// The agent on the real model, its webhooks mocked (they still need their settings to be
/// made). `None` without `OPENAI_API_KEY`.
async fn customer_service() -> Option<Conversation> {
    let mut conv = Conversation::openai_from_env(CustomerService).await?;
    conv.env("ORDER_STATUS_URL", "https://api.example.com/orders/status")
        .env("RETURNS_URL", "https://api.example.com/returns")
        .env("WEBHOOK_SECRET", "whsec_example")
        .mock_tool("get_order_status", |_args| json!({ "status": "shipped" }));
    Some(conv)
}

#[tokio::test]
async fn asks_for_the_order_id_then_looks_it_up() {
    let Some(mut conv) = customer_service().await else {
        return;
    };
    let turn = conv.user_says("Where is my order?").await;
    turn.expect()
        .no_tool_call()
        .reply_matches(|text| text.to_lowercase().contains("order"));

    let turn = conv.user_says("It's ORD-123456").await;
    turn.expect()
        .tool_called("get_order_status")
        .with_args_subset(json!({ "order_id": "ORD-123456" }))
        .succeeded();
    turn.judge("tells the caller the order has shipped").await;
}

#[tokio::test]
async fn never_starts_a_return_without_an_item() {
    // Models vary from run to run: this must hold in at least two runs of three.
    let report = repeat(3, || async {
        let Some(mut conv) = customer_service().await else {
            return;
        };
        let turn = conv
            .user_says("I want to return something from order ORD-123456.")
            .await;
        turn.expect().no_tool_call();
    })
    .await;
    report.assert_pass_rate(0.66);
}

// ---------------------------------------------------------------------------------------
// How this repository checks the tests above: it runs them (this same test binary) against
// a fake Realtime server with a scripted model and a fake judge, then once more without a
// key, where they must skip.
// ---------------------------------------------------------------------------------------

mod against_fakes {
    #![allow(clippy::expect_used)]

    use std::time::Duration;

    use patter::json;
    use patter_tests::fake_judge::{FakeJudge, JudgeAnswer};
    use patter_tests::fake_model::{ModelInput, ModelReply};
    use patter_tests::fake_openai::FakeRealtime;
    use tokio::process::Command;

    const SCENARIOS: [&str; 2] = [
        "asks_for_the_order_id_then_looks_it_up",
        "never_starts_a_return_without_an_item",
    ];

    /// Asks for the order id, looks it up when given one, asks which item to return.
    fn model(input: &ModelInput) -> ModelReply {
        if let Some(output) = input.tool_output() {
            return ModelReply::text(format!("Your order status: {output}."));
        }
        let said = input.last_user_text().unwrap_or_default();
        if said.contains("return") {
            return ModelReply::text("Which item would you like to return, and why?");
        }
        match said.split_whitespace().find(|w| w.starts_with("ORD-")) {
            Some(id) => ModelReply::call("get_order_status", json!({ "order_id": id })),
            None => ModelReply::text("Sure. What is your order number?"),
        }
    }

    /// This test binary, running only the scenarios, with only these variables.
    fn scenarios(vars: &[(&str, String)]) -> Command {
        let mut command = Command::new(std::env::current_exe().expect("test binary"));
        command
            .args(["--exact", "--nocapture", "--test-threads=1"])
            .args(SCENARIOS)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .kill_on_drop(true);
        for (name, value) in vars {
            command.env(name, value);
        }
        command
    }

    #[tokio::test]
    async fn the_scenarios_pass_against_the_fake_model_and_skip_without_a_key() {
        let fake = FakeRealtime::start_with_model(model).await;
        let judge = FakeJudge::start(|body| {
            let input = body["input"].as_str().unwrap_or_default();
            JudgeAnswer::Verdict {
                pass: input.contains(r#"agent: Your order status: {"status":"shipped"}."#),
                reason: "The agent read out the status.".to_owned(),
            }
        })
        .await;
        let run = scenarios(&[
            ("OPENAI_API_KEY", "sk-fake".to_owned()),
            ("OPENAI_REALTIME_URL", fake.url()),
            ("OPENAI_BASE_URL", judge.base_url()),
        ])
        .output();
        let out = tokio::time::timeout(Duration::from_secs(60), run)
            .await
            .expect("the scenarios finish")
            .expect("they run");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}");
        assert!(stdout.contains("test result: ok. 2 passed"), "{stdout}");
        assert!(stdout.contains("3/3 runs passed"), "{stdout}");
        assert!(!stdout.contains("skipped"), "{stdout}");
        // One conversation for the first scenario, three for the repeated one, one verdict.
        assert_eq!(fake.connections(), 4);
        assert_eq!(judge.requests().len(), 1);
        fake.assert_no_schema_violations();

        let out = scenarios(&[]).output().await.expect("they run");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}");
        assert!(
            stdout.contains("all 3 runs skipped (no OPENAI_API_KEY)"),
            "{stdout}"
        );
        assert!(stdout.contains("test result: ok. 2 passed"), "{stdout}");
        assert_eq!(
            stdout
                .matches("skipped: OPENAI_API_KEY is not set (this test talks to the real model; set it to run it)")
                .count(),
            4,
            "{stdout}"
        );
        assert_eq!(fake.connections(), 4, "nothing is dialled without a key");
    }
}
