//! `appointment_reminder` as a user runs it: it places the call through the configured
//! Twilio API (the fake one here), reaches the agent when a person answers, leaves the
//! voicemail when a machine does, and prints the outcome.

// Helpers state their expectations with `expect`, as the tests do.
#![allow(clippy::expect_used)]

mod common;

use std::process::Stdio;

use common::{TOKEN, WAIT, stream_of};
use patter_tests::fake_openai::FakeRealtime;
use patter_tests::fake_twilio::{self, FakeTwilioRest, RestRequest};
use patter_tests::{twilio_calls_spec, twilio_sid};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

const PUBLIC: &str = "https://agent.example.com";

/// The example as a user starts it, in a clean environment with the required settings.
fn reminder(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_appointment_reminder"));
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .current_dir(std::env::temp_dir())
        .env("TWILIO_ACCOUNT_SID", twilio_sid("AC", 1))
        .env("TWILIO_AUTH_TOKEN", TOKEN)
        .env("OPENAI_API_KEY", "sk-example")
        .env("PHONE_NUMBER", "+15550100")
        .env("WEBHOOK_URL", "agent.example.com")
        .env("BIND_ADDRESS", "127.0.0.1");
    command
}

struct Run {
    child: Child,
    stdout: Lines<BufReader<ChildStdout>>,
    base: String,
    create: RestRequest,
}

async fn start(engine: &FakeRealtime, rest: &FakeTwilioRest, args: &[&str]) -> Run {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let mut child = reminder(args)
        .env("PORT", port.to_string())
        .env("OPENAI_REALTIME_URL", engine.url())
        .env("TWILIO_API_URL", rest.base_url())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("starts");
    let stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let create = rest
        .wait_for_request(1, WAIT)
        .await
        .expect("the call is created")
        .remove(0);
    assert!(create.created, "{create:?}");
    let problems = twilio_calls_spec::violations("CreateCall", &create.form);
    assert!(problems.is_empty(), "{problems:?}");
    Run {
        child,
        stdout,
        base: format!("http://127.0.0.1:{port}"),
        create,
    }
}

impl Run {
    async fn post(&self, url: &str, extra: &[(&str, &str)]) -> (u16, String) {
        let path = url.strip_prefix(PUBLIC).expect("our public URL");
        let mut params = vec![
            ("CallSid", self.create.call_sid.as_str()),
            ("From", "+15550100"),
            ("To", "+15550123"),
            ("Direction", "outbound-api"),
        ];
        params.extend_from_slice(extra);
        let (status, _, body) =
            fake_twilio::post_signed(&self.base, PUBLIC, path, TOKEN, &params).await;
        (status, body)
    }

    fn url(&self, name: &str) -> String {
        self.create.param(name).expect(name).to_owned()
    }

    async fn status(&self, status: &str) {
        let (code, _) = self
            .post(&self.url("StatusCallback"), &[("CallStatus", status)])
            .await;
        assert_eq!(code, 200);
    }

    /// Reads stdout until the process exits; returns every line and the exit code.
    async fn output(mut self) -> (Vec<String>, Option<i32>) {
        let mut lines = Vec::new();
        tokio::time::timeout(WAIT, async {
            while let Some(line) = self.stdout.next_line().await.expect("read") {
                lines.push(line);
            }
        })
        .await
        .expect("the example finishes");
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("exits")
            .expect("status");
        (lines, status.code())
    }
}

#[tokio::test]
async fn a_person_answers_and_talks_to_the_agent() {
    let engine = FakeRealtime::start().await;
    let rest = FakeTwilioRest::start().await;
    let run = start(
        &engine,
        &rest,
        &["+15550123", "--name", "Ada", "--when", "on Friday"],
    )
    .await;
    assert_eq!(run.create.param("To"), Some("+15550123"));
    assert_eq!(run.create.param("From"), Some("+15550100"));
    assert_eq!(
        run.create.param("MachineDetection"),
        Some("DetectMessageEnd")
    );
    assert_eq!(run.create.param("AsyncAmd"), Some("true"));
    run.status("ringing").await;
    run.status("in-progress").await;
    let (code, twiml) = run
        .post(&run.url("Url"), &[("CallStatus", "in-progress")])
        .await;
    assert_eq!(code, 200, "{twiml}");
    let port = run.base.rsplit(':').next().expect("port");
    let stream = stream_of(port, &run.create.call_sid, 1, &twiml).await;
    let conn = engine.wait_for_conn(0, WAIT).await.expect("engine");
    let update = conn
        .wait_for_event("session.update", WAIT)
        .await
        .expect("update");
    let instructions = update["session"]["instructions"].as_str().expect("text");
    assert!(
        instructions.contains("calling Ada") && instructions.contains("on Friday"),
        "{instructions}"
    );
    conn.wait_for_event("response.create", WAIT)
        .await
        .expect("greets at once");
    let (code, _) = run
        .post(
            &run.url("AsyncAmdStatusCallback"),
            &[("AnsweredBy", "human")],
        )
        .await;
    assert_eq!(code, 204);
    conn.send_function_call_response(
        "resp_1",
        &[(
            "call_1",
            "record_reply",
            r#"{"confirmed":true,"request":null}"#,
        )],
    );
    conn.wait_for_count("response.create", 2, WAIT)
        .await
        .expect("answer after the tool");
    stream.send_stop().await.expect("stop");
    conn.wait_closed(WAIT).await.expect("engine closed");
    run.status("completed").await;
    let (lines, code) = run.output().await;
    assert_eq!(code, Some(0), "{lines:?}");
    for expected in [
        "status: ringing",
        "status: in-progress",
        "answered by: human",
        "status: completed",
        "outcome: answered; the caller hung up",
        "conversation: 0 transcript entries, 1 tool calls",
    ] {
        assert!(
            lines.iter().any(|l| l == expected),
            "{expected}: {lines:#?}"
        );
    }
    engine.assert_no_schema_violations();
}

#[tokio::test]
async fn a_machine_gets_the_voicemail() {
    let engine = FakeRealtime::start().await;
    let rest = FakeTwilioRest::start().await;
    let run = start(&engine, &rest, &["+15550123", "--name", "Ada"]).await;
    run.status("in-progress").await;
    let (code, _) = run
        .post(
            &run.url("AsyncAmdStatusCallback"),
            &[("AnsweredBy", "machine_end_beep")],
        )
        .await;
    assert_eq!(code, 204);
    let update = rest
        .wait_for_request(2, WAIT)
        .await
        .expect("update")
        .remove(1);
    assert_eq!(update.call_sid, run.create.call_sid);
    let twiml = update.param("Twiml").expect("twiml").to_owned();
    assert!(
        twiml.contains("<Say>Hello Ada, this is Riverside Dental reminding you of your appointment tomorrow at 10 a.m."),
        "{twiml}"
    );
    let start = twiml.find("<Redirect method=\"POST\">").expect("redirect") + 24;
    let done = twiml[start..start + twiml[start..].find('<').expect("end")].replace("&amp;", "&");
    let (code, hangup) = run.post(&done, &[]).await;
    assert_eq!(code, 200);
    assert!(hangup.contains("<Hangup/>"), "{hangup}");
    run.status("completed").await;
    let (lines, code) = run.output().await;
    assert_eq!(code, Some(0), "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l == "outcome: voicemail left (machine_end_beep)"),
        "{lines:#?}"
    );
    assert_eq!(engine.connections(), 0, "no engine session for a machine");
}

#[tokio::test]
async fn a_bad_number_is_refused_before_any_request() {
    let rest = FakeTwilioRest::start().await;
    let out = reminder(&["5550123"])
        .env("PORT", "0")
        .env("TWILIO_API_URL", rest.base_url())
        .output()
        .await
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is not E.164"), "{stderr}");
    assert!(rest.requests().is_empty());
}
