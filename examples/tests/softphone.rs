//! `--softphone` as a new user runs it: one command with only `OPENAI_API_KEY`, one line
//! with the address to open, the page served there; and the settings it refuses.

#![allow(clippy::expect_used)]

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

const WAIT: Duration = Duration::from_secs(20);

const PRODUCT_SPECIALIST: &str = env!("CARGO_BIN_EXE_product_specialist");

fn product_specialist(vars: &[(&str, &str)]) -> Command {
    example(PRODUCT_SPECIALIST, vars)
}

fn example(binary: &str, vars: &[(&str, &str)]) -> Command {
    let mut command = Command::new(binary);
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .current_dir(std::env::temp_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (name, value) in vars {
        command.env(name, value);
    }
    command
}

type Lines = tokio::io::Lines<BufReader<tokio::process::ChildStdout>>;

/// Starts the softphone and returns the line it printed, the rest of its output, and the
/// process.
async fn started(mut command: Command) -> (String, Lines, tokio::process::Child) {
    let mut child = command.spawn().expect("starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("a line in time")
        .expect("read")
        .expect("one line");
    (line, lines, child)
}

async fn get(url: &str) -> String {
    let rest = url.strip_prefix("http://").expect("http");
    let (host, path) = rest.split_once('/').expect("path");
    let path = path.split('#').next().unwrap_or_default();
    let mut stream = tokio::net::TcpStream::connect(host).await.expect("connect");
    let request = format!("GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    tokio::time::timeout(WAIT, stream.read_to_string(&mut response))
        .await
        .expect("in time")
        .expect("read");
    response
}

#[tokio::test]
async fn one_command_prints_one_address_whose_page_is_served() {
    let only_the_key = vec![("OPENAI_API_KEY", "sk-try"), ("PORT", "0")];
    for (binary, flag, vars) in [
        (
            PRODUCT_SPECIALIST,
            Some("--softphone"),
            only_the_key.clone(),
        ),
        (
            PRODUCT_SPECIALIST,
            None,
            vec![
                ("OPENAI_API_KEY", "sk-try"),
                ("PORT", "0"),
                ("PATTER_SOFTPHONE", "1"),
            ],
        ),
        // The outbound example too: its agent can be tried before it dials anyone.
        (
            env!("CARGO_BIN_EXE_appointment_reminder"),
            Some("--softphone"),
            only_the_key,
        ),
    ] {
        let mut command = example(binary, &vars);
        command.args(flag);
        let (line, mut rest, mut child) = started(command).await;
        let url = line
            .strip_prefix("softphone: open ")
            .and_then(|rest| rest.strip_suffix(" to talk to your agent"))
            .unwrap_or_else(|| panic!("unexpected line: {line:?}"));
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        let token = url
            .split_once("/softphone#token=")
            .expect("the token in the fragment")
            .1;
        assert!(
            token.len() == 32 && token.bytes().all(|b| b.is_ascii_hexdigit()),
            "{token}"
        );
        let page = get(url).await;
        assert!(page.starts_with("HTTP/1.1 200"), "{page}");
        assert!(page.contains("<button id=\"call\""), "{page}");
        child.start_kill().expect("stops");
        let more = tokio::time::timeout(WAIT, rest.next_line())
            .await
            .expect("the output ends")
            .expect("read");
        assert_eq!(more, None, "one line only");
    }
}

#[tokio::test]
async fn refuses_a_wide_bind_without_a_dev_token_and_needs_only_the_openai_key() {
    let out = product_specialist(&[("OPENAI_API_KEY", "sk-try"), ("BIND_ADDRESS", "0.0.0.0")])
        .arg("--softphone")
        .output()
        .await
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("PATTER_DEV_TOKEN"), "{stderr}");

    let out = product_specialist(&[])
        .arg("--softphone")
        .output()
        .await
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("OPENAI_API_KEY"), "{stderr}");
    assert!(!stderr.contains("TWILIO"), "{stderr}");
}
