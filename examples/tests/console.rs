//! `console` as a user runs it: the example binary with only `OPENAI_API_KEY`, its engine a
//! fake Realtime server on loopback whose scripted model answers in text, input piped in or
//! typed into a real terminal (tmux). Every client event the engine gets is checked against
//! the Realtime GA schema.

#![allow(clippy::expect_used)]

use std::process::{Output, Stdio};
use std::time::Duration;

use patter_tests::fake_model::{ModelInput, ModelReply};
use patter_tests::fake_openai::FakeRealtime;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

const WAIT: Duration = Duration::from_secs(20);

/// The model behind the fake: it checks stock when a product id is mentioned, reports the
/// tool's answer, and ends the call when asked to.
fn shop_model(input: &ModelInput) -> ModelReply {
    if let Some(output) = input.tool_output() {
        return ModelReply::text(format!("Here is what I found: {output}"));
    }
    let said = input.last_user_text().unwrap_or_default();
    if let Some(id) = said.split_whitespace().find(|w| w.starts_with("SKU-")) {
        let id = id.trim_end_matches(['?', '.', '!']);
        return ModelReply::call("check_inventory", json!({ "product_id": id }));
    }
    if said.contains("bye") {
        return ModelReply::call("end_call", json!({ "reason": "caller said goodbye" }));
    }
    ModelReply::text("Which product would you like me to check?")
}

/// The product specialist's console, as a new user starts it: a clean environment with only
/// `OPENAI_API_KEY` (and the engine's address).
fn console(realtime_url: &str, args: &[&str]) -> Command {
    console_of(env!("CARGO_BIN_EXE_product_specialist"), realtime_url, args)
}

/// An example binary's console, started the same way.
fn console_of(binary: &str, realtime_url: &str, args: &[&str]) -> Command {
    let mut command = Command::new(binary);
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .current_dir(std::env::temp_dir())
        .env("OPENAI_API_KEY", "sk-console")
        .env("OPENAI_REALTIME_URL", realtime_url)
        .arg("console")
        .args(args)
        .kill_on_drop(true);
    command
}

async fn run_piped(mut command: Command, input: &str) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the example starts");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(input.as_bytes()).await.expect("input");
    drop(stdin);
    tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .expect("the console ends once its input has been answered")
        .expect("output")
}

/// The console's output, once it has exited 0 (else its output and errors are shown).
fn succeeded(out: &Output) -> String {
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    stdout
}

/// `--jsonl` output, one object per line.
fn json_lines(bytes: &[u8]) -> Vec<Value> {
    text(bytes)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}")))
        .collect()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn piped_input_is_answered_with_the_calls_own_prompt_and_tools_then_the_console_hangs_up() {
    let fake = FakeRealtime::start_with_model(shop_model).await;
    let command = console(
        &fake.url(),
        &["--from", "+15550100", "--param", "store=north"],
    );
    let out = run_piped(command, "Hi there\nIs SKU-1234 in stock?\n/dtmf 12#\n").await;
    let stdout = succeeded(&out);

    // Everything, in order: greeting, the first answer, the tool call with its result from
    // the real tool (run with the call's `store` parameter), the answer after it, metrics.
    let expected_in_order = [
        "agent: Hello! I can check stock for any product. Which one are you after?",
        "you: Hi there",
        "agent: Which product would you like me to check?",
        "(turn 1: first text",
        "you: Is SKU-1234 in stock?",
        r#"→ check_inventory {"product_id":"SKU-1234"}"#,
        r#"← check_inventory {"product_id":"SKU-1234","in_stock":true,"quantity":"#,
        "agent: Here is what I found: {\"product_id\":\"SKU-1234\"",
        "(turn 2: first text",
        "(pressed 3 keys)",
        // The script's last keys went to the model the way a keypad's do, and were answered
        // before the console hung up.
        "agent: Which product would you like me to check?",
        "(turn 3: first text",
        "call ended: the caller hung up",
    ];
    let mut rest = stdout.as_str();
    for expected in expected_in_order {
        let at = rest
            .find(expected)
            .unwrap_or_else(|| panic!("{expected:?} missing (or out of order) in:\n{stdout}"));
        rest = &rest[at + expected.len()..];
    }

    let conn = fake.conn(0);
    fake.assert_no_schema_violations();
    let update = conn
        .wait_for_event("session.update", WAIT)
        .await
        .expect("session.update");
    let session = &update["session"];
    assert_eq!(session["output_modalities"], json!(["text"]));
    // The call's own prompt, with the console's caller filled in, and the call's tools.
    let prompt = session["instructions"].as_str().expect("instructions");
    assert!(
        prompt.contains("The caller's number is +15550100."),
        "{prompt}"
    );
    let tools: Vec<&str> = session["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(
        tools,
        ["check_inventory", "end_call"],
        "no transfer destinations: no transfer_call"
    );
    assert_eq!(session["tool_choice"], "auto");
    // The greeting is in the model's context as the agent's words, before the caller's.
    let items: Vec<Value> = conn
        .events_of_type("conversation.item.create")
        .into_iter()
        .map(|e| e["item"].clone())
        .collect();
    assert_eq!(items[0]["role"], "assistant");
    assert_eq!(
        items[0]["content"][0],
        json!({
            "type": "output_text",
            "text": "Hello! I can check stock for any product. Which one are you after?"
        })
    );
    assert_eq!(
        items[1]["content"][0],
        json!({"type": "input_text", "text": "Hi there"})
    );
    assert_eq!(items[3]["type"], "function_call_output");
    assert_eq!(
        items[4]["content"][0],
        json!({"type": "input_text", "text": "The caller pressed 1 2 #"})
    );
}

#[tokio::test]
async fn the_outbound_example_has_a_console_too_with_its_variables_from_params() {
    let fake = FakeRealtime::start_with_model(|input: &ModelInput| match input.tool_output() {
        Some(_) => ModelReply::text("Thank you, see you then."),
        None => ModelReply::call("record_reply", json!({ "confirmed": true })),
    })
    .await;
    let command = console_of(
        env!("CARGO_BIN_EXE_appointment_reminder"),
        &fake.url(),
        &["--param", "name=Ada"],
    );
    let out = run_piped(command, "Yes, I can make it.\n").await;
    let stdout = succeeded(&out);
    for expected in [
        "agent: Hello, this is Riverside Dental calling about your appointment.",
        r#"← record_reply {"recorded":true}"#,
        "agent: Thank you, see you then.",
    ] {
        assert!(
            stdout.contains(expected),
            "{expected:?} missing in:\n{stdout}"
        );
    }
    let update = fake
        .conn(0)
        .wait_for_event("session.update", WAIT)
        .await
        .expect("session.update");
    let prompt = update["session"]["instructions"].as_str().expect("prompt");
    // --param fills {name}; {when} keeps the agent's default.
    assert!(
        prompt.contains("You are calling Ada on behalf of Riverside Dental")
            && prompt.contains("appointment tomorrow at 10 a.m."),
        "{prompt}"
    );
}

#[tokio::test]
async fn jsonl_writes_one_object_per_event_and_an_agent_hang_up_ends_the_console() {
    let fake = FakeRealtime::start_with_model(shop_model).await;
    let command = console(&fake.url(), &["--jsonl"]);
    let out = run_piped(command, "Is SKU-9 in stock?\nthanks, bye\nnever sent\n").await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let events: Vec<Value> = json_lines(&out.stdout);
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(
        kinds,
        [
            "assistant",
            "user",
            "tool_call",
            "tool_result",
            "assistant",
            "turn_metrics",
            "user",
            "tool_call",
            "tool_result",
            "end"
        ],
        "{events:#?}"
    );
    assert_eq!(events[0]["greeting"], true);
    assert_eq!(events[2]["arguments"], json!({"product_id": "SKU-9"}));
    assert_eq!(events[3]["output"]["product_id"], "SKU-9");
    assert_eq!(events[3]["ok"], true);
    assert!(events[3]["duration_ms"].is_u64());
    assert_eq!(events[5]["turn"], 1);
    assert_eq!(events[5]["tool_calls"], 1);
    assert!(events[5]["first_text_ms"].is_u64(), "{:?}", events[5]);
    assert_eq!(events[7]["name"], "end_call");
    assert_eq!(events[9]["reason"], "agent_hung_up");
    assert!(
        events[9]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("caller said goodbye"))
    );
    // The call ended before the last line was sent.
    fake.assert_no_schema_violations();
    let typed: Vec<Value> = fake
        .conn(0)
        .events_of_type("conversation.item.create")
        .into_iter()
        .filter(|e| e["item"]["role"] == "user")
        .collect();
    assert_eq!(typed.len(), 2, "{typed:?}");
}

#[tokio::test]
async fn jsonl_reports_a_fatal_engine_error_and_the_console_exits_1() {
    let fake = FakeRealtime::start_with_model(shop_model).await;
    let mut child = console(&fake.url(), &["--jsonl"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the example starts");
    // Input stays open: the engine's error, not the script, ends the call.
    let stdin = child.stdin.take().expect("stdin");
    let conn = fake
        .wait_for_conn(0, WAIT)
        .await
        .expect("an engine session");
    conn.wait_for_event("session.update", WAIT)
        .await
        .expect("session.update");
    conn.send(patter_tests::fake_openai::error_event(
        "insufficient_quota",
        "You exceeded your current quota.",
    ));
    let out = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .expect("the console ends on a fatal error")
        .expect("output");
    drop(stdin);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let events: Vec<Value> = json_lines(&out.stdout);
    let error = events
        .iter()
        .find(|e| e["type"] == "error")
        .unwrap_or_else(|| panic!("no error event: {events:#?}"));
    assert_eq!(
        *error,
        json!({
            "type": "error",
            "code": "insufficient_quota",
            "message": "You exceeded your current quota.",
            "fatal": true
        })
    );
    let end = events.last().expect("events");
    assert_eq!(end["type"], "end", "{events:#?}");
    assert_eq!(end["reason"], "engine_error", "{end}");
}

#[tokio::test]
async fn a_bad_tool_argument_is_shown_as_an_error_fed_back_to_the_model() {
    let fake = FakeRealtime::start_with_model(|input: &ModelInput| match input.tool_output() {
        Some(_) => ModelReply::text("Sorry, that id does not look right."),
        None => ModelReply::call("check_inventory", json!({ "product_id": 42 })),
    })
    .await;
    let out = run_piped(console(&fake.url(), &[]), "check 42\n").await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let failed = stdout
        .lines()
        .find(|l| l.contains("✗ check_inventory"))
        .unwrap_or_else(|| panic!("no failed tool call shown:\n{stdout}"));
    assert!(failed.contains(r#""type":"invalid_arguments""#), "{failed}");
    assert!(
        stdout.contains("agent: Sorry, that id does not look right."),
        "{stdout}"
    );
}

#[tokio::test]
async fn an_unreachable_engine_exits_1_and_missing_key_exits_2_without_twilio_settings() {
    // A port with nothing listening.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("ws://{}/v1/realtime", closed.local_addr().expect("addr"));
    drop(closed);
    let out = run_piped(console(&url, &[]), "hello\n").await;
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("error: the engine could not be reached"),
        "{stdout}"
    );
    assert!(stdout.contains("call ended: the engine failed"), "{stdout}");

    let mut command = console(&url, &[]);
    command.env_remove("OPENAI_API_KEY");
    let out = run_piped(command, "").await;
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("OPENAI_API_KEY"), "{stderr}");
    assert!(!stderr.contains("TWILIO"), "{stderr}");

    let out = run_piped(console(&url, &["--bogus"]), "").await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("unknown argument \"--bogus\""));
}

/// A tmux server of its own (its own socket), killed when the test ends.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new() -> Self {
        Tmux {
            socket: format!("patter-console-{}", std::process::id()),
        }
    }

    async fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .await
            .expect("tmux runs (.ci/run installs it)");
        assert!(out.status.success(), "tmux {args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    }

    /// Waits until the pane shows `wanted`; terminal output announces nothing, so this reads
    /// the screen every 50 ms, up to `WAIT`.
    async fn wait_for(&self, wanted: &str) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let screen = self.run(&["capture-pane", "-p", "-t", "console"]).await;
            if screen.contains(wanted) {
                return screen;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{wanted:?} not on the screen within {WAIT:?}:\n{screen}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = std::process::Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

#[tokio::test]
async fn typed_into_a_real_terminal_the_console_answers_and_hangs_up() {
    let fake = FakeRealtime::start_with_model(shop_model).await;
    let tmux = Tmux::new();
    // A clean environment, as in the other tests; the shell stays to show the exit code.
    let script = format!(
        "env -i PATH=\"$PATH\" OPENAI_API_KEY=sk-console OPENAI_REALTIME_URL={} {} console \
         --param store=north; echo \"exited with $?\"; read done",
        fake.url(),
        env!("CARGO_BIN_EXE_product_specialist"),
    );
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "console",
        "-x",
        "160",
        "-y",
        "50",
        "sh",
        "-c",
        &script,
    ])
    .await;
    tmux.wait_for("agent: Hello! I can check stock").await;

    tmux.run(&[
        "send-keys",
        "-t",
        "console",
        "Is SKU-1234 in stock?",
        "Enter",
    ])
    .await;
    let screen = tmux.wait_for("(turn 1: first text").await;
    // The terminal shows what was typed; the console does not repeat it.
    assert!(screen.contains("Is SKU-1234 in stock?"), "{screen}");
    assert!(!screen.contains("you: "), "{screen}");
    assert!(
        screen.contains(r#"→ check_inventory {"product_id":"SKU-1234"}"#),
        "{screen}"
    );
    assert!(
        screen.contains("agent: Here is what I found: {\"product_id\":\"SKU-1234\""),
        "{screen}"
    );

    tmux.run(&["send-keys", "-t", "console", "/dtmf 5", "Enter"])
        .await;
    tmux.wait_for("(pressed 1 key)").await;
    tmux.run(&["send-keys", "-t", "console", "/hangup", "Enter"])
        .await;
    tmux.wait_for("call ended: the caller hung up").await;
    tmux.wait_for("exited with 0").await;
    fake.assert_no_schema_violations();
}
