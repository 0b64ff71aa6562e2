//! Keypad input: keys reach the model as one message after a short gap, and a tool can
//! collect digits (a PIN) that reach the tool alone: not the model, the transcript or the
//! logs. Over loopback with Twilio `dtmf` frames, and in memory with paused time.

mod common;

use std::time::Duration;

use common::{Harness, LogCapture, WAIT};
use patter::testing::{SentCommand, TestCall};
use patter::tool::Digits;
use patter::{CallContext, EndReason, ToolError};

/// Check the caller's PIN: ask them to type it on the keypad and press #.
#[patter::tool(timeout_secs = 30)]
async fn check_pin(call: &CallContext) -> Result<String, ToolError> {
    let pin = call
        .collect_digits(
            Digits::up_to(6)
                .ending_with('#')
                .within(Duration::from_secs(20)),
        )
        .await?;
    Ok(if pin == "4321" {
        "verified"
    } else {
        "wrong PIN"
    }
    .to_owned())
}

#[patter::agent(system_prompt = "You check PINs.", tools(check_pin))]
struct PinDesk;

fn caller_texts(commands: &[SentCommand]) -> Vec<String> {
    commands
        .iter()
        .filter_map(|c| match c {
            SentCommand::CallerText { text } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn keys_reach_the_model_as_one_message_per_burst() {
    let mut call = TestCall::new(PinDesk).start().await;
    call.caller_presses("12#").await;
    call.advance(Duration::from_millis(1400)).await;
    assert!(
        caller_texts(&call.engine_commands()).is_empty(),
        "not before the gap"
    );
    call.advance(Duration::from_millis(200)).await;
    assert_eq!(
        caller_texts(&call.engine_commands()),
        ["The caller pressed 1 2 #"]
    );
    call.caller_presses("9").await;
    call.advance(Duration::from_millis(1000)).await;
    call.caller_presses("*").await; // within the gap: the same burst
    call.advance(Duration::from_millis(1600)).await;
    assert_eq!(
        caller_texts(&call.engine_commands()),
        ["The caller pressed 1 2 #", "The caller pressed 9 *"]
    );
}

#[tokio::test]
async fn a_tool_collects_a_pin_that_reaches_neither_the_model_the_transcript_nor_the_logs() {
    let capture = LogCapture::install();
    let mut h = Harness::start(PinDesk).await;
    let call = h.call(81).await;
    let conn = h.engine_conn(0).await;
    // The caller starts typing before the agent has even asked: that key waits, and goes
    // to the tool, first, once it collects.
    call.stream.send_dtmf("4").await.expect("dtmf");
    conn.send_function_call_response("resp_1", &[("call_1", "check_pin", "{}")]);
    for key in ["3", "2", "1", "#"] {
        call.stream.send_dtmf(key).await.expect("dtmf");
    }
    let output = conn
        .wait_for_event("conversation.item.create", WAIT)
        .await
        .expect("the tool's result");
    assert_eq!(output["item"]["output"], "verified");
    // Keys after the tool is done go to the model, batched.
    call.stream.send_dtmf("7").await.expect("dtmf");
    let typed = conn
        .wait_for_count("conversation.item.create", 2, Duration::from_secs(5))
        .await
        .expect("the key as text");
    assert_eq!(
        typed[1]["item"]["content"][0]["text"],
        "The caller pressed 7"
    );
    call.stream.send_stop().await.expect("stop");
    let summary = h.next_end().await;
    assert_eq!(summary.reason, EndReason::StreamStopped);
    assert!(
        summary.transcript.iter().all(|t| !t.text.contains("4321")),
        "{:?}",
        summary.transcript
    );
    let sent: Vec<String> = conn.events().iter().map(|e| e.to_string()).collect();
    assert!(
        sent.iter()
            .all(|e| !e.contains("4321") && !e.contains("4 3 2 1")),
        "{sent:?}"
    );
    let logs = capture.text();
    assert!(
        logs.contains("keypad press"),
        "the presses are logged, without their keys"
    );
    assert!(!logs.contains("4321"), "the PIN is not logged");
    h.engine.assert_no_schema_violations();
}

#[tokio::test(start_paused = true)]
async fn keys_wait_while_an_answer_is_due_and_go_once_it_is_given() {
    let mut call = TestCall::new(PinDesk).start().await;
    call.caller_says("I'll type it.").await; // the engine heard the caller stop
    call.caller_presses("5").await;
    call.advance(Duration::from_millis(1600)).await;
    assert!(
        caller_texts(&call.engine_commands()).is_empty(),
        "a second response would be refused while the first is due"
    );
    call.model_says("Go ahead.").await;
    call.advance(Duration::from_millis(1600)).await;
    assert_eq!(
        caller_texts(&call.engine_commands()),
        ["The caller pressed 5"]
    );
}
