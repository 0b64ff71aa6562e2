//! The softphone in a real browser: headless Chromium driven over WebDriver, its microphone a
//! WAV file the test writes, the engine a fake Realtime server on loopback. The page's audio
//! goes both ways through the real worklet, and the server side is the real session over the
//! Twilio leg. The same page is then checked in headless Firefox (its fake microphone a sine
//! tone). `.ci/run` installs Chromium with ChromeDriver and Firefox ESR with geckodriver;
//! without them these tests fail.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use common::browser::Driver;
use fantoccini::{Client, Locator};
use patter::audio::codec::{mulaw_decode, mulaw_encode};
use patter::softphone::Softphone;
use patter::{ConfigBuilder, EndReason, Hooks, LocalConfig};
use patter_examples::product_specialist::ProductSpecialist;
use patter_tests::fake_openai::{self, FakeRealtime};
use serde_json::{Value, json};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(20);

/// A 16-bit mono WAV of a `freq` Hz tone.
fn tone_wav(freq: f64, rate: u32, secs: u32) -> Vec<u8> {
    let samples = rate * secs;
    let mut wav = Vec::with_capacity(44 + samples as usize * 2);
    let data_len = samples * 2;
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data_len).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // mono
    wav.extend_from_slice(&rate.to_le_bytes());
    wav.extend_from_slice(&(rate * 2).to_le_bytes());
    wav.extend_from_slice(&2u16.to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&data_len.to_le_bytes());
    for n in 0..samples {
        let t = f64::from(n) / f64::from(rate);
        let v = (2.0 * std::f64::consts::PI * freq * t).sin() * 0.5 * 32767.0;
        wav.extend_from_slice(&(v as i16).to_le_bytes());
    }
    wav
}

/// The frequency of a steady tone: zero crossings (upward), interpolated between samples.
fn pitch(samples: &[f64], rate: f64) -> f64 {
    let mut crossings = Vec::new();
    for i in 1..samples.len() {
        let (a, b) = (samples[i - 1], samples[i]);
        if a < 0.0 && b >= 0.0 {
            crossings.push((i - 1) as f64 + a / (a - b));
        }
    }
    assert!(crossings.len() > 10, "no tone in the audio: {crossings:?}");
    let span = crossings[crossings.len() - 1] - crossings[0];
    (crossings.len() - 1) as f64 * rate / span
}

/// μ-law of a `freq` Hz tone at 8 kHz, `ms` long, base64 in 100 ms chunks.
fn agent_tone(freq: f64, ms: usize) -> Vec<String> {
    let bytes: Vec<u8> = (0..ms * 8)
        .map(|n| {
            let t = n as f64 / 8000.0;
            mulaw_encode(((2.0 * std::f64::consts::PI * freq * t).sin() * 8000.0) as i16)
        })
        .collect();
    bytes
        .chunks(800)
        .map(|c| base64::engine::general_purpose::STANDARD.encode(c))
        .collect()
}

/// The page's own record (`window.patterSoftphone`).
async fn page_state(browser: &Client) -> Value {
    browser
        .execute("return window.patterSoftphone;", vec![])
        .await
        .expect("the page's state")
}

async fn wait_page(browser: &Client, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    // The page announces nothing to WebDriver; its state is read every 50 ms, up to WAIT.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let state = page_state(browser).await;
        if check(&state) {
            return state;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} did not happen within {WAIT:?}; the page: {state}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_text(browser: &Client, selector: &str, wanted: &[&str]) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let text = match browser.find(Locator::Css(selector)).await {
            Ok(element) => element.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if wanted.iter().all(|w| text.contains(w)) {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{wanted:?} not shown in {selector} within {WAIT:?}: {text:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn local(fake: &FakeRealtime) -> LocalConfig {
    ConfigBuilder::default()
        .limits(common::test_limits())
        .openai_api_key("sk-softphone")
        .openai_realtime_url(fake.url())
        .build_local()
        .expect("settings")
}

/// A softphone on a loopback port: the address to open, the address, and its stop switch.
async fn serve(softphone: Softphone) -> (String, SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let url = softphone.url(addr);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = softphone
            .serve_on(listener, async {
                let _ = stopped.await;
            })
            .await;
    });
    (url, addr, stop)
}

/// `hooks`, and a channel that gets each call's summary from `on_call_end`.
fn reporting_ends(hooks: Hooks) -> (Hooks, mpsc::UnboundedReceiver<patter::CallSummary>) {
    let (ended_tx, ended) = mpsc::unbounded_channel();
    let hooks = hooks.on_call_end(move |summary| {
        let ended_tx = ended_tx.clone();
        async move {
            let _ = ended_tx.send(summary);
        }
    });
    (hooks, ended)
}

/// Presses the page's Call / Hang up button.
async fn press_call_button(browser: &Client) {
    browser
        .find(Locator::Id("call"))
        .await
        .expect("the call button")
        .click()
        .await
        .expect("click");
}

/// The caller's audio the engine got, past its first second (capture start-up), decoded.
fn caller_pcm(appends: &[Value]) -> Vec<f64> {
    appends
        .iter()
        .skip(50)
        .filter_map(|e| e["audio"].as_str())
        .flat_map(|b64| {
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .expect("base64")
        })
        .map(|b| f64::from(mulaw_decode(b)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_firefox_too_the_call_carries_audio_both_ways_and_hangs_up() {
    let fake = FakeRealtime::start().await;
    let (hooks, mut ended) = reporting_ends(Hooks::new());
    let (url, _addr, _stop) =
        serve(Softphone::new(ProductSpecialist, local(&fake)).hooks(hooks)).await;
    let driver = Driver::firefox().await;
    let browser = driver.firefox_browser(440).await;
    browser.goto(&url).await.expect("the page loads");
    press_call_button(&browser).await;

    // Firefox's microphone runs at its own rate; the page's worklet makes 8 kHz μ-law of it.
    let conn = match fake.wait_for_conn(0, WAIT).await {
        Ok(conn) => conn,
        Err(e) => {
            let status = browser.find(Locator::Id("status")).await;
            let status = match status {
                Ok(element) => element.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            panic!(
                "{e}; the page says {status:?}: {}",
                page_state(&browser).await
            );
        }
    };
    let appends = conn
        .wait_for_count("input_audio_buffer.append", 150, WAIT)
        .await
        .expect("caller audio");
    let heard = pitch(&caller_pcm(&appends), 8000.0);
    println!("Firefox: pitch of the caller's audio at the engine: {heard:.1} Hz");
    assert!((heard - 440.0).abs() <= 440.0 * 0.02, "{heard} Hz");

    // The agent's audio plays, and every mark comes back once it has.
    let chunks = agent_tone(300.0, 1000);
    let chunk_refs: Vec<&str> = chunks.iter().map(String::as_str).collect();
    let before = page_state(&browser).await["written"]
        .as_f64()
        .unwrap_or(0.0);
    conn.send_audio_response("resp_1", "item_1", &chunk_refs, "Hello from Firefox.");
    wait_page(&browser, "the agent's audio to play out", |s| {
        s["written"].as_f64() >= Some(before + 8000.0)
            && s["played"].as_f64() >= s["written"].as_f64()
            && s["marksEchoed"] == s["marksReceived"]
            && s["marksReceived"].as_array().map_or(0, Vec::len) >= chunks.len()
    })
    .await;
    wait_text(&browser, "#transcript", &["Hello from Firefox."]).await;

    press_call_button(&browser).await;
    let summary = tokio::time::timeout(WAIT, ended.recv())
        .await
        .expect("on_call_end within the wait")
        .expect("a summary");
    assert_eq!(summary.reason, EndReason::StreamStopped);
    fake.assert_no_schema_violations();
    let _ = browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_call_carries_audio_both_ways_shows_tools_barges_in_and_hangs_up() {
    let dir = std::env::temp_dir().join(format!("patter-softphone-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let wav = dir.join("tone-440.wav");
    std::fs::write(&wav, tone_wav(440.0, 48_000, 30)).expect("wav");

    let fake = FakeRealtime::start().await;
    let keys = Arc::new(Mutex::new(String::new()));
    let pressed = Arc::clone(&keys);
    let (hooks, mut ended) =
        reporting_ends(Hooks::new().on_dtmf(move |_, key| pressed.lock().expect("keys").push(key)));
    let (url, _addr, _stop) =
        serve(Softphone::new(ProductSpecialist, local(&fake)).hooks(hooks)).await;

    let driver = Driver::start().await;
    let browser = driver.browser(&wav).await;
    browser.goto(&url).await.expect("the page loads");
    press_call_button(&browser).await;

    // 1. The microphone's tone reaches the engine as μ-law at 440 Hz.
    let conn = fake
        .wait_for_conn(0, WAIT)
        .await
        .expect("an engine session");
    let appends = conn
        .wait_for_count("input_audio_buffer.append", 150, WAIT)
        .await
        .expect("caller audio");
    let heard = pitch(&caller_pcm(&appends), 8000.0);
    println!("pitch of the caller's audio at the engine: {heard:.1} Hz");
    assert!((heard - 440.0).abs() <= 440.0 * 0.02, "{heard} Hz");
    assert_eq!(
        appends[60]["audio"].as_str().map(str::len),
        Some(216),
        "20 ms frames"
    );

    // 2. The agent's audio plays in the page, and its marks come back in order.
    let state = page_state(&browser).await;
    let echoed_before = state["marksEchoed"].as_array().map_or(0, Vec::len);
    let chunks = agent_tone(300.0, 1000);
    let chunk_refs: Vec<&str> = chunks.iter().map(String::as_str).collect();
    conn.send_audio_response("resp_1", "item_1", &chunk_refs, "Hello! I can check stock.");
    let state = wait_page(
        &browser,
        "the agent's audio to play with its marks echoed",
        |s| {
            s["written"].as_f64() >= Some(8000.0)
                && s["marksEchoed"].as_array().map_or(0, Vec::len) >= echoed_before + chunks.len()
        },
    )
    .await;
    // patter names its marks p1, p2, …: they come back in the order they were sent.
    let names = |key: &str| -> Vec<String> {
        state[key]
            .as_array()
            .expect("marks")
            .iter()
            .map(|m| m.as_str().expect("a mark name").to_owned())
            .collect()
    };
    let (received, echoed) = (names("marksReceived"), names("marksEchoed"));
    let numbers: Vec<u64> = echoed
        .iter()
        .map(|m| {
            m.strip_prefix('p')
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("mark {m:?}"))
        })
        .collect();
    assert!(numbers.len() >= chunks.len(), "{echoed:?}");
    assert!(
        numbers.windows(2).all(|w| w[0] < w[1]),
        "in order: {echoed:?}"
    );
    assert_eq!(echoed, received[..echoed.len()], "echoed as received");

    // 3. The engine calls a tool; the page shows the call and its result.
    conn.send(fake_openai::speech_stopped("item_c1", 1200));
    conn.send(fake_openai::input_transcription_completed(
        "item_c1",
        "Is SKU-1234 in stock?",
    ));
    conn.send_function_call_response(
        "resp_2",
        &[("call_1", "check_inventory", r#"{"product_id":"SKU-1234"}"#)],
    );
    let tools = wait_text(
        &browser,
        "#tool-calls",
        &["check_inventory", "SKU-1234", "in_stock", "ms"],
    )
    .await;
    assert!(tools.contains(r#""quantity""#), "{tools}");
    conn.wait_for_event("conversation.item.create", WAIT)
        .await
        .expect("the tool's result went to the engine");
    conn.send_audio_response(
        "resp_3",
        "item_3",
        &chunk_refs[..3],
        "Yes, SKU-1234 is in stock.",
    );
    wait_text(
        &browser,
        "#transcript",
        &["Is SKU-1234 in stock?", "Yes, SKU-1234 is in stock."],
    )
    .await;
    // The caller-heard response time: from the engine hearing the caller stop to the
    // answer's first audio sent to the page.
    let shown = wait_text(&browser, "#last-response", &[" ms"]).await;
    let state = page_state(&browser).await;
    assert_eq!(
        state["responseTimes"].as_array().map(Vec::len),
        Some(1),
        "{state}"
    );
    assert!(
        shown.trim_end_matches(" ms").parse::<u64>().is_ok(),
        "{shown}"
    );
    wait_text(&browser, "#transcript", &["answered in"]).await;
    let shot = browser.screenshot().await.expect("a screenshot");
    let shot_path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("softphone.png");
    std::fs::write(&shot_path, &shot).expect("screenshot saved");
    println!("screenshot of the call: {}", shot_path.display());
    // The README's picture is this screenshot: PATTER_UPDATE_SCREENSHOTS=1 refreshes it.
    if std::env::var_os("PATTER_UPDATE_SCREENSHOTS").is_some() {
        let docs = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/softphone.png");
        std::fs::write(docs, &shot).expect("docs/softphone.png written");
    }

    // 4. A barge-in: the page drops what it holds, and the truncation is no more than it
    // played of that item.
    let idle = wait_page(&browser, "the page to play out", |s| {
        s["written"].as_f64().is_some() && s["played"].as_f64() >= s["written"].as_f64()
    })
    .await;
    let start = idle["written"].as_f64().expect("written");
    let long = agent_tone(300.0, 5000);
    let long_refs: Vec<&str> = long.iter().map(String::as_str).collect();
    conn.send_all(
        fake_openai::audio_response_events("resp_4", "item_4", &long_refs, "A long answer.")
            .into_iter()
            .take(2 + long.len()),
    );
    wait_page(&browser, "half a second of the long answer to play", |s| {
        s["played"].as_f64().is_some_and(|p| p >= start + 4000.0)
    })
    .await;
    let before = page_state(&browser).await;
    let pending = before["marksReceived"].as_array().map_or(0, Vec::len)
        - before["marksEchoed"].as_array().map_or(0, Vec::len);
    assert!(pending > 0, "marks wait for their audio to play: {before}");
    conn.send(fake_openai::speech_started("item_c2", 0));
    let truncate = conn
        .wait_for_event("conversation.item.truncate", WAIT)
        .await
        .expect("a truncation");
    let state = wait_page(&browser, "the clear", |s| s["clears"].as_u64() >= Some(1)).await;
    let played_at_clear = state["playedAtClear"][0].as_f64().expect("played at clear");
    let page_heard_ms = (played_at_clear - start) / 8.0;
    let truncated_ms = truncate["audio_end_ms"].as_f64().expect("audio_end_ms");
    println!(
        "barge-in: the page played {page_heard_ms:.0} ms, patter truncated at {truncated_ms} ms"
    );
    assert_eq!(truncate["item_id"], "item_4");
    assert!(
        truncated_ms > 0.0 && truncated_ms <= page_heard_ms,
        "{truncated_ms} > {page_heard_ms}"
    );
    assert!(page_heard_ms < 5000.0, "the rest was dropped");
    // As Twilio does, the clear echoed every mark still pending (their audio never played).
    // (The page had played under 5 s of it at the clear: see above.)
    wait_page(&browser, "every pending mark echoed", |s| {
        s["marksEchoed"] == s["marksReceived"]
    })
    .await;

    // 5. Keys, then hanging up from the page ends the call with on_call_end.
    for key in ["1", "#"] {
        browser
            .find(Locator::Css(&format!("#keypad button[data-key='{key}']")))
            .await
            .expect("a key")
            .click()
            .await
            .expect("click");
    }
    wait_page(&browser, "the keys to be sent", |s| s["keys"] == "1#").await;
    press_call_button(&browser).await;
    let summary = tokio::time::timeout(WAIT, ended.recv())
        .await
        .expect("on_call_end within the wait")
        .expect("a summary");
    assert_eq!(summary.reason, EndReason::StreamStopped);
    assert_eq!(*keys.lock().expect("keys"), "1#");
    fake.assert_no_schema_violations();

    // What the page sent is Twilio's framing.
    let sent: Vec<Value> = page_state(&browser).await["sent"]
        .as_array()
        .expect("sent")
        .iter()
        .filter_map(|m| serde_json::from_str(m.as_str()?).ok())
        .collect();
    check_twilio_framing(&sent);
    browser.close().await.expect("browser closes");
}

/// Checks the page's messages against Twilio's Media Streams message shapes.
fn check_twilio_framing(sent: &[Value]) {
    let decimal = |v: &Value| {
        v.as_str()
            .is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
    };
    let sid = |v: &Value, prefix: &str| {
        v.as_str().is_some_and(|s| {
            s.len() == 34
                && s.starts_with(prefix)
                && s[2..].bytes().all(|b| b.is_ascii_alphanumeric())
        })
    };
    assert_eq!(
        sent[0],
        json!({"event": "connected", "protocol": "Call", "version": "1.0.0"})
    );
    let start = &sent[1];
    assert_eq!(start["event"], "start");
    assert!(decimal(&start["sequenceNumber"]));
    assert!(sid(&start["streamSid"], "MZ") && sid(&start["start"]["callSid"], "CA"));
    assert!(sid(&start["start"]["accountSid"], "AC"));
    assert_eq!(
        start["start"]["mediaFormat"],
        json!({"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1})
    );
    let mut sequence = 0u64;
    let mut kinds = std::collections::BTreeSet::new();
    // The page logs the first second of audio and every other message: the numbers count
    // up by one while everything is logged, and only up after that.
    for (i, message) in sent[1..].iter().enumerate() {
        let n: u64 = message["sequenceNumber"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("sequenceNumber");
        if i < 40 {
            assert_eq!(n, sequence + 1, "sequence numbers count up: {message}");
        } else {
            assert!(n > sequence, "sequence numbers count up: {message}");
        }
        sequence = n;
        assert_eq!(message["streamSid"], start["streamSid"]);
        let kind = message["event"].as_str().expect("event");
        kinds.insert(kind.to_owned());
        match kind {
            "media" => {
                let media = &message["media"];
                assert_eq!(media["track"], "inbound");
                assert!(
                    decimal(&media["chunk"]) && decimal(&media["timestamp"]),
                    "{message}"
                );
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(media["payload"].as_str().expect("payload"))
                    .expect("base64");
                assert_eq!(bytes.len(), 160);
            }
            "mark" => assert!(message["mark"]["name"].is_string()),
            "dtmf" => assert_eq!(message["dtmf"]["track"], "inbound_track"),
            "stop" => assert!(sid(&message["stop"]["callSid"], "CA")),
            "start" => {}
            other => panic!("unexpected event {other}"),
        }
    }
    let media: Vec<&Value> = sent.iter().filter(|m| m["event"] == "media").collect();
    for (i, m) in media.iter().take(20).enumerate() {
        assert_eq!(m["media"]["chunk"], (i + 1).to_string());
        assert_eq!(m["media"]["timestamp"], (i * 20).to_string());
    }
    for kind in ["start", "media", "mark", "dtmf"] {
        assert!(kinds.contains(kind), "no {kind} in {kinds:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Safe by construction: what is refused, with no engine session opened.
// ---------------------------------------------------------------------------------------

/// A raw HTTP/1.1 GET on loopback: the status line's code and the whole response.
async fn http_get(addr: SocketAddr, path: &str, host: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut response))
        .await
        .expect("a response in time")
        .expect("read");
    let text = String::from_utf8_lossy(&response).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, text)
}

/// A WebSocket upgrade with these headers: the socket, or the HTTP status of the refusal.
async fn upgrade(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, String)],
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    u16,
> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::http::HeaderValue;
    let mut request = format!("ws://{addr}{path}")
        .into_client_request()
        .expect("request");
    for (name, value) in headers {
        let name = tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes())
            .expect("header name");
        request
            .headers_mut()
            .insert(name, HeaderValue::from_str(value).expect("header value"));
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(e) => panic!("upgrade failed oddly: {e}"),
    }
}

fn token_of(url: &str) -> String {
    url.split("#token=").nth(1).expect("a token").to_owned()
}

/// Request headers, by name.
type Headers = Vec<(&'static str, String)>;

/// The headers the page's own sockets send.
fn page_headers(addr: SocketAddr, token: &str) -> Headers {
    vec![
        ("origin", format!("http://{addr}")),
        (
            "sec-websocket-protocol",
            format!("patter-softphone, token.{token}"),
        ),
    ]
}

async fn start_call(
    socket: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    n: u32,
) {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let start = json!({
        "event": "start", "sequenceNumber": "1", "streamSid": format!("MZ{n:032x}"),
        "start": {
            "streamSid": format!("MZ{n:032x}"), "accountSid": format!("AC{:032x}", 0),
            "callSid": format!("CA{n:032x}"), "tracks": ["inbound"], "customParameters": {},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
        }
    });
    socket
        .send(Message::text(start.to_string()))
        .await
        .expect("start");
}

#[tokio::test]
async fn refused_requests_never_open_an_engine_session_and_a_right_one_does() {
    let fake = FakeRealtime::start().await;
    let (url, addr, _stop) = serve(Softphone::new(ProductSpecialist, local(&fake))).await;
    let token = token_of(&url);
    assert_eq!(token.len(), 32, "a random 128-bit token");

    // The page: served with its headers to a loopback Host, refused to any other.
    let (code, page) = http_get(addr, "/softphone", &addr.to_string()).await;
    assert_eq!(code, 200);
    let lower = page.to_lowercase();
    assert!(
        lower.contains("content-security-policy: default-src 'self'"),
        "{page}"
    );
    assert!(lower.contains("cache-control: no-store"), "{page}");
    assert!(lower.contains("referrer-policy: no-referrer"), "{page}");
    assert!(!page.contains(&token), "the page does not carry the token");
    let (code, _) = http_get(
        addr,
        "/softphone/app.js",
        &format!("localhost:{}", addr.port()),
    )
    .await;
    assert_eq!(code, 200);
    let (code, _) = http_get(addr, "/softphone", &format!("evil.example:{}", addr.port())).await;
    assert_eq!(code, 403, "DNS rebinding: a foreign Host is refused");

    let right = page_headers(addr, &token);
    let cases: Vec<(&str, &str, Headers, u16)> = vec![
        (
            "media",
            "no token",
            vec![
                right[0].clone(),
                ("sec-websocket-protocol", "patter-softphone".into()),
            ],
            403,
        ),
        (
            "media",
            "wrong token",
            vec![
                right[0].clone(),
                (
                    "sec-websocket-protocol",
                    format!("patter-softphone, token.{}", "0".repeat(32)),
                ),
            ],
            403,
        ),
        (
            "media",
            "a token one character short",
            vec![
                right[0].clone(),
                (
                    "sec-websocket-protocol",
                    format!("patter-softphone, token.{}", &token[1..]),
                ),
            ],
            403,
        ),
        (
            "media",
            "wrong Origin",
            vec![("origin", "http://evil.example".into()), right[1].clone()],
            403,
        ),
        ("media", "no Origin", vec![right[1].clone()], 403),
        (
            "media",
            "foreign Host",
            vec![
                ("host", format!("evil.example:{}", addr.port())),
                ("origin", format!("http://evil.example:{}", addr.port())),
                right[1].clone(),
            ],
            403,
        ),
        (
            "events?call=CA1",
            "wrong token",
            vec![
                right[0].clone(),
                (
                    "sec-websocket-protocol",
                    "patter-softphone, token.nope".into(),
                ),
            ],
            403,
        ),
        (
            "events?call=../x",
            "a malformed call id",
            right.clone(),
            400,
        ),
    ];
    for (path, what, headers, status) in cases {
        let refused = upgrade(addr, &format!("/softphone/{path}"), &headers).await;
        assert_eq!(refused.err(), Some(status), "{what}");
    }
    assert_eq!(
        fake.tcp_accepts(),
        0,
        "no engine session for a refused request"
    );

    // The page's own request is taken, and its call dials the engine.
    let mut socket = upgrade(addr, "/softphone/media", &right)
        .await
        .expect("accepted");
    start_call(&mut socket, 1).await;
    fake.wait_for_conn(0, WAIT)
        .await
        .expect("an engine session");
}

#[tokio::test]
async fn on_shutdown_a_call_in_progress_says_goodbye_and_ends() {
    let fake = FakeRealtime::start().await;
    let mut limits = patter::Limits::default();
    limits.goodbye_wait = Duration::from_millis(200);
    let config = ConfigBuilder::default()
        .openai_api_key("sk-softphone")
        .openai_realtime_url(fake.url())
        .limits(limits)
        .build_local()
        .expect("settings");
    let (ended_tx, mut ended) = mpsc::unbounded_channel();
    let hooks = Hooks::new().on_call_end(move |summary| {
        let ended_tx = ended_tx.clone();
        async move {
            let _ = ended_tx.send(summary.reason);
        }
    });
    let (url, addr, stop) = serve(Softphone::new(ProductSpecialist, config).hooks(hooks)).await;
    let mut socket = upgrade(
        addr,
        "/softphone/media",
        &page_headers(addr, &token_of(&url)),
    )
    .await
    .expect("accepted");
    start_call(&mut socket, 1).await;
    let conn = fake
        .wait_for_conn(0, WAIT)
        .await
        .expect("an engine session");
    let _ = stop.send(());
    // The goodbye is asked for, and the call ends when its time is up.
    conn.wait_for_count("response.create", 2, WAIT)
        .await
        .expect("the first message, then the goodbye");
    let reason = tokio::time::timeout(WAIT, ended.recv())
        .await
        .expect("on_call_end in time")
        .expect("a reason");
    assert_eq!(reason, EndReason::Shutdown);
}

#[tokio::test]
async fn at_most_two_calls_at_once() {
    let fake = FakeRealtime::start().await;
    let (url, addr, _stop) = serve(Softphone::new(ProductSpecialist, local(&fake))).await;
    let headers = page_headers(addr, &token_of(&url));
    let mut first = upgrade(addr, "/softphone/media", &headers)
        .await
        .expect("first");
    start_call(&mut first, 1).await;
    let mut second = upgrade(addr, "/softphone/media", &headers)
        .await
        .expect("second");
    start_call(&mut second, 2).await;
    fake.wait_for_conn(1, WAIT)
        .await
        .expect("two engine sessions");
    assert_eq!(
        upgrade(addr, "/softphone/media", &headers).await.err(),
        Some(503)
    );
    assert_eq!(fake.connections(), 2);
    // A call that ends frees its place.
    drop(first);
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut third = loop {
        match upgrade(addr, "/softphone/media", &headers).await {
            Ok(socket) => break socket,
            Err(503) if tokio::time::Instant::now() < deadline => {
                // The first call's end announces nothing to this side; retry briefly.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(status) => panic!("refused with {status}"),
        }
    };
    start_call(&mut third, 3).await;
    fake.wait_for_conn(2, WAIT)
        .await
        .expect("a third engine session");
}

#[tokio::test]
async fn beyond_loopback_only_with_a_dev_token_and_never_on_the_production_server() {
    let fake = FakeRealtime::start().await;
    let wide = ConfigBuilder::default()
        .openai_api_key("sk-softphone")
        .openai_realtime_url(fake.url())
        .bind_address("0.0.0.0".parse().expect("ip"));
    let softphone = Softphone::new(
        ProductSpecialist,
        wide.clone().build_local().expect("settings"),
    );
    assert!(softphone.address().is_err());
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0")
        .await
        .expect("bind");
    let refused = softphone.serve_on(listener, std::future::pending()).await;
    let message = refused.expect_err("not loopback").to_string();
    assert!(message.contains("PATTER_DEV_TOKEN"), "{message}");
    let with_token = Softphone::new(
        ProductSpecialist,
        wide.dev_token("a-long-dev-token-for-the-team")
            .build_local()
            .expect("settings"),
    );
    assert_eq!(
        with_token.address().expect("allowed").to_string(),
        format!("0.0.0.0:{}", patter::config::DEFAULT_PORT)
    );
    assert!(
        with_token
            .url("10.0.0.5:8000".parse().expect("addr"))
            .ends_with("#token=a-long-dev-token-for-the-team")
    );
    assert_eq!(fake.tcp_accepts(), 0);

    // The production server has none of the softphone's routes.
    let config = patter::Patter::builder()
        .twilio_account_sid(patter_tests::twilio_sid("AC", 1))
        .twilio_auth_token("token")
        .openai_api_key("sk-test")
        .phone_number("+15550100")
        .webhook_url("agent.example.com")
        .build()
        .expect("config");
    let router = patter::Patter::new(config)
        .router(ProductSpecialist)
        .expect("router");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    for path in ["/softphone", "/softphone/app.js", "/softphone/media"] {
        let (code, _) = http_get(addr, path, &addr.to_string()).await;
        assert_eq!(code, 404, "{path}");
    }
    server.abort();
}
