//! What the example-binary tests share: starting the product specialist as a new user
//! does, and placing a call on it as Twilio does.

#![allow(dead_code, clippy::expect_used)]

use std::time::Duration;

use patter_tests::fake_twilio::{self, MediaStream};
use patter_tests::twilio_sid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

pub const WAIT: Duration = Duration::from_secs(20);
pub const TOKEN: &str = "example_auth_token";

/// The product specialist as a new user starts it: a clean environment, in a folder without a
/// `.env`, with the required settings.
pub fn product_specialist() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_product_specialist"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .current_dir(std::env::temp_dir())
        .env("TWILIO_ACCOUNT_SID", twilio_sid("AC", 1))
        .env("TWILIO_AUTH_TOKEN", TOKEN)
        .env("OPENAI_API_KEY", "sk-example")
        .env("PHONE_NUMBER", "+15550100")
        .env("WEBHOOK_URL", "agent.example.com");
    command
}

/// A free loopback port, for the example to serve on.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// The product specialist serving on `port` (loopback), against the fake Twilio REST API at
/// `rest_url`, logging at `info` to its stdout.
pub fn product_specialist_on(port: u16, rest_url: &str) -> Command {
    let mut command = product_specialist();
    command
        .env("PORT", port.to_string())
        .env("BIND_ADDRESS", "127.0.0.1")
        .env("TWILIO_API_URL", rest_url)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true);
    command
}

/// Places call `n` on the example serving on `port`, as Twilio does: the signed voice
/// webhook, then the signed stream with `connected` and `start` carrying the TwiML's token.
pub async fn place_call(port: u16, n: u128) -> MediaStream {
    let base = format!("http://127.0.0.1:{port}");
    let call_sid = twilio_sid("CA", n);
    let (status, _, twiml) = fake_twilio::post_voice_webhook(
        &base,
        "https://agent.example.com",
        TOKEN,
        &[
            ("CallSid", &call_sid),
            ("From", "+15550111"),
            ("To", "+15550100"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{twiml}");
    stream_of(&port.to_string(), &call_sid, n, &twiml).await
}

/// Connects the stream a `<Connect><Stream>` answer asks for, as Twilio does: the signed
/// upgrade, `connected`, then `start` with every `<Parameter>` of the TwiML.
pub async fn stream_of(port: &str, call_sid: &str, n: u128, twiml: &str) -> MediaStream {
    let params: Vec<(String, String)> = twiml
        .split("<Parameter ")
        .skip(1)
        .map(|tag| {
            let attr = |name: &str| {
                let at = tag.find(&format!("{name}=\"")).expect("attribute") + name.len() + 2;
                tag[at..at + tag[at..].find('"').expect("end")]
                    .replace("&quot;", "\"")
                    .replace("&apos;", "'")
                    .replace("&lt;", "<")
                    .replace("&gt;", ">")
                    .replace("&amp;", "&")
            };
            (attr("name"), attr("value"))
        })
        .collect();
    assert!(params.iter().any(|(k, _)| k == "call_token"), "{twiml}");
    let stream = MediaStream::connect_signed_as(
        &format!("ws://127.0.0.1:{port}/twilio/stream"),
        "wss://agent.example.com/twilio/stream",
        TOKEN,
    )
    .await
    .expect("stream");
    stream.send_connected().await.expect("connected");
    stream
        .send_start(
            &twilio_sid("MZ", n),
            call_sid,
            &twilio_sid("AC", 1),
            &params
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect::<Vec<_>>(),
        )
        .await
        .expect("start");
    stream
}

/// Waits until the example logs that it is serving, then keeps reading its output in the
/// background (so it never blocks on a full pipe) until it exits.
pub async fn wait_until_serving(child: &mut tokio::process::Child) -> tokio::task::JoinHandle<()> {
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.next_line().await.expect("read") {
            if line.contains("serving") {
                return;
            }
        }
        panic!("the example exited before serving");
    })
    .await
    .expect("serving in time");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} })
}

/// Sends SIGTERM to `child` and waits for it to exit; its exit code.
pub async fn terminate(child: &mut tokio::process::Child) -> Option<i32> {
    let pid = child.id().expect("pid").to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("kill");
    assert!(killed.success());
    tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("exits in time")
        .expect("status")
        .code()
}
