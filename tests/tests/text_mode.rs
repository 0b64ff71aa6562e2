//! The engines in text modality: what the Realtime engine sends and reads (checked against
//! the GA schemas), GPT-Live refusing text, and a text call's defined outcomes when the
//! engine refuses a response, fails, or drops.

use std::time::Duration;

use patter::call::{CallEnv, TextEvent};
use patter::engine::openai_live::OpenAiLive;
use patter::engine::openai_realtime::OpenAiRealtime;
use patter::engine::openai_realtime::wire;
use patter::engine::{Engine, EngineError, EngineEvent, EngineSetup, Modality};
use patter::{Agent, AudioFormat, CallContext, EndReason, json};
use patter_examples::product_specialist::ProductSpecialist;
use patter_tests::fake_model::{ModelInput, ModelReply, reply_events};
use patter_tests::fake_openai::FakeRealtime;
use patter_tests::realtime_schema::{validate_client_event, validate_server_event};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(10);

fn text_setup() -> EngineSetup {
    EngineSetup::new("gpt-realtime-2.1", "Be brief.", "marin", AudioFormat::Pcmu)
        .modality(Modality::Text)
}

#[test]
fn text_modality_changes_only_the_output_modality_and_every_message_is_valid_ga() {
    let vad = patter::engine::openai_realtime::ServerVad::default();
    let audio: Value = serde_json::from_str(&wire::session_update(
        &text_setup().modality(Modality::Audio),
        &vad,
        Some("gpt-4o-mini-transcribe"),
    ))
    .expect("json");
    let text: Value = serde_json::from_str(&wire::session_update(
        &text_setup(),
        &vad,
        Some("gpt-4o-mini-transcribe"),
    ))
    .expect("json");
    assert_eq!(text["session"]["output_modalities"], json!(["text"]));
    let mut same = text.clone();
    same["session"]["output_modalities"] = json!(["audio"]);
    assert_eq!(same, audio, "only the output modality differs");
    for message in [
        text,
        serde_json::from_str(&wire::message_item("user", "Is it in stock?")).expect("json"),
        serde_json::from_str(&wire::message_item("assistant", "Hello!")).expect("json"),
    ] {
        validate_client_event(&message).unwrap_or_else(|e| panic!("{e}: {message}"));
    }
    let greeting: Value =
        serde_json::from_str(&wire::message_item("assistant", "Hello!")).expect("json");
    assert_eq!(
        greeting["item"]["content"],
        json!([{ "type": "output_text", "text": "Hello!" }])
    );
}

#[test]
fn text_deltas_and_the_whole_text_are_read_from_valid_server_events() {
    let (events, _) = reply_events(1, &ModelReply::text("It is in stock."));
    let mut deltas = String::new();
    let mut whole = None;
    for event in &events {
        validate_server_event(event).unwrap_or_else(|e| panic!("{e}: {event}"));
        let raw = event.to_string();
        match wire::parse_event(&raw).expect("parses") {
            EngineEvent::TextDelta { response_id, delta } => {
                assert_eq!(response_id, "resp_model0001");
                deltas.push_str(&delta);
            }
            EngineEvent::AgentTranscript { text } => whole = Some(text.into_owned()),
            _ => {}
        }
    }
    assert_eq!(deltas, "It is in stock.");
    assert_eq!(whole.as_deref(), Some("It is in stock."));
}

#[tokio::test]
async fn gpt_live_refuses_a_text_session_without_connecting() {
    let fake = FakeRealtime::start_live().await;
    let live = OpenAiLive::new("sk-test").url(fake.url());
    let refused = live.open(&text_setup()).await.expect_err("no text mode");
    assert!(
        matches!(refused, EngineError::Unsupported(_)),
        "{refused:?}"
    );
    assert!(refused.to_string().contains("PATTER_ENGINE=realtime"));
    assert_eq!(fake.tcp_accepts(), 0);
}

async fn events_until_end(call: &mut patter::call::TextCall) -> Vec<TextEvent> {
    let mut events = Vec::new();
    for _ in 0..200 {
        match tokio::time::timeout(WAIT, call.next_event()).await {
            Ok(Some(TextEvent::AssistantDelta { .. })) => {}
            Ok(Some(event)) => {
                let end = matches!(event, TextEvent::Ended { .. });
                events.push(event);
                if end {
                    break;
                }
            }
            Ok(None) => break,
            Err(_) => panic!("no event within {WAIT:?}; so far: {events:?}"),
        }
    }
    events
}

fn start(fake: &FakeRealtime) -> patter::call::TextCall {
    let env = CallEnv::new(
        std::sync::Arc::new(ProductSpecialist)
            .spec()
            .expect("agent"),
    );
    env.start_text(
        OpenAiRealtime::new("sk-test").url(fake.url()),
        CallContext::builder("text-1").build(),
    )
}

#[tokio::test]
async fn a_refused_response_ends_the_turn_with_an_error_and_the_conversation_goes_on() {
    let fake = FakeRealtime::start_with_model(|input: &ModelInput| match input.last_user_text() {
        Some("first") => ModelReply::Error {
            code: "conversation_already_has_active_response".into(),
            message: "busy".into(),
        },
        _ => ModelReply::text("Second answer."),
    })
    .await;
    let mut call = start(&fake);
    call.say("first");
    call.say("second");
    let mut seen = Vec::new();
    while !seen
        .iter()
        .any(|e| matches!(e, TextEvent::TurnEnded(m) if m.index == 2))
    {
        let event = tokio::time::timeout(WAIT, call.next_event())
            .await
            .unwrap_or_else(|_| panic!("stuck after {seen:?}"))
            .expect("events");
        if !matches!(event, TextEvent::AssistantDelta { .. }) {
            seen.push(event);
        }
    }
    let kinds: Vec<String> = seen
        .iter()
        .map(|e| {
            format!("{e:?}")
                .split([' ', '(', '{'])
                .next()
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "Assistant",
            "Caller",
            "Error",
            "TurnEnded",
            "Caller",
            "Assistant",
            "TurnEnded"
        ]
    );
    assert!(matches!(&seen[2], TextEvent::Error { fatal: false, .. }));
    call.hang_up();
    assert_eq!(call.finish().await.reason, EndReason::StreamStopped);
}

/// A text call whose engine has been asked for a response that never starts.
async fn stalled_call() -> (
    FakeRealtime,
    patter::call::TextCall,
    patter_tests::fake_openai::ConnHandle,
) {
    let fake = FakeRealtime::start_with_model(|_: &ModelInput| ModelReply::Stall).await;
    let call = start(&fake);
    call.say("hello");
    let conn = fake.wait_for_conn(0, WAIT).await.expect("connects");
    conn.wait_for_event("response.create", WAIT)
        .await
        .expect("asks for a response");
    (fake, call, conn)
}

#[tokio::test]
async fn a_fatal_error_or_a_dropped_engine_ends_the_conversation_with_its_reason() {
    let (_fake, mut call, conn) = stalled_call().await;
    conn.send(json!({
        "type": "error", "event_id": "event_1",
        "error": { "type": "invalid_request_error", "code": "invalid_api_key", "message": "bad key" }
    }));
    let events = events_until_end(&mut call).await;
    assert!(events.iter().any(
        |e| matches!(e, TextEvent::Error { fatal: true, message, .. } if message == "bad key")
    ));
    assert!(matches!(
        events.last(),
        Some(TextEvent::Ended {
            reason: EndReason::EngineError { .. }
        })
    ));

    let (_fake, mut call, conn) = stalled_call().await;
    conn.drop_tcp();
    let events = events_until_end(&mut call).await;
    assert!(matches!(
        events.last(),
        Some(TextEvent::Ended {
            reason: EndReason::EngineLost { .. }
        })
    ));
    let summary = call.finish().await;
    assert!(matches!(summary.reason, EndReason::EngineLost { .. }));
    assert_eq!(summary.transcript.len(), 2, "{:?}", summary.transcript);
}

#[tokio::test]
async fn the_console_runs_the_calls_hooks_and_keys_take_the_keypad_path() {
    use std::sync::{Arc, Mutex};

    use patter::console::{Console, ConsoleOptions};
    use patter::{CallSetup, ConfigBuilder, Hooks};

    let fake = FakeRealtime::start_with_model(|_: &ModelInput| ModelReply::text("Sure.")).await;
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let (keys, transcript, ended) = (Arc::clone(&seen), Arc::clone(&seen), Arc::clone(&seen));
    let hooks = Hooks::new()
        .on_call_start(|ctx| async move {
            // The console's --to and --param reach the call's context.
            let (to, store) = (ctx.callee(), ctx.parameter("store").unwrap_or_default());
            CallSetup::default().first_message(format!("Hi {}! ({to}, {store})", ctx.caller()))
        })
        .on_dtmf(move |_, key| keys.lock().expect("seen").push(format!("key {key}")))
        .on_transcript(move |_, entry| {
            transcript
                .lock()
                .expect("seen")
                .push(format!("{:?}: {}", entry.role, entry.text))
        })
        .on_call_end(move |summary| {
            let ended = Arc::clone(&ended);
            async move {
                ended
                    .lock()
                    .expect("seen")
                    .push(format!("ended {:?}", summary.reason))
            }
        });
    let config = ConfigBuilder::default()
        .openai_api_key("sk-console")
        .openai_realtime_url(fake.url())
        .build_local()
        .expect("settings");
    let args = "--from +15550142 --to +15550199 --param store=north";
    let options = ConsoleOptions::parse(args.split(' ').map(str::to_owned))
        .expect("valid")
        .expect("not help");
    let mut output = Vec::new();
    let reason = Console::new(ProductSpecialist)
        .hooks(hooks)
        .run(
            config,
            options,
            &b"/dtmf 4#\nhello\n/dtmf Z\n"[..],
            &mut output,
            true,
        )
        .await
        .expect("runs");
    assert_eq!(reason, EndReason::StreamStopped);
    let output = String::from_utf8(output).expect("utf-8");
    assert!(
        output.contains("agent: Hi +15550142! (+15550199, north)"),
        "{output}"
    );
    assert!(output.contains("('Z' is not a phone key"), "{output}");
    // The keys pressed before the words reach the model first, as one message, the way a
    // keypad's do; the script's end waits for both answers.
    assert_eq!(
        *seen.lock().expect("seen"),
        [
            "key 4",
            "key #",
            "Agent: Hi +15550142! (+15550199, north)",
            "Caller: The caller pressed 4 #",
            "Agent: Sure.",
            "Caller: hello",
            "Agent: Sure.",
            "ended StreamStopped"
        ]
    );
    let typed: Vec<serde_json::Value> = fake
        .conn(0)
        .events_of_type("conversation.item.create")
        .into_iter()
        .filter(|e| e["item"]["role"] == "user")
        .map(|e| e["item"]["content"][0]["text"].clone())
        .collect();
    assert_eq!(typed, ["The caller pressed 4 #", "hello"]);
}
