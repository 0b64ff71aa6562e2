//! Trust, but verify: the audio formats the engine reports in `session.updated` are checked
//! against what patter asked. One it can carry is converted to, at the right pitch, with one
//! warning; one it cannot ends the call with a clear reason and the apology, and none of its
//! audio reaches the caller.

mod common;

use base64::Engine as _;
use common::{Harness, LogCapture, WAIT, mulaw_b64};
use patter::audio::codec::mulaw_decode;
use patter::{AgentSpec, EndReason};
use patter_tests::fake_openai::audio_response_events;
use serde_json::json;

fn agent() -> AgentSpec {
    AgentSpec::new("You help.")
}

/// `ms` of a `freq` Hz tone as PCM16 LE at 24 kHz, base64 in 100 ms chunks.
fn pcm24k_tone(freq: f64, ms: usize) -> Vec<String> {
    let samples: Vec<u8> = (0..ms * 24)
        .flat_map(|n| {
            let t = n as f64 / 24_000.0;
            (((2.0 * std::f64::consts::PI * freq * t).sin() * 12_000.0) as i16).to_le_bytes()
        })
        .collect();
    samples
        .chunks(4800)
        .map(|c| base64::engine::general_purpose::STANDARD.encode(c))
        .collect()
}

/// The pitch of 8 kHz samples, from their rising zero crossings.
fn pitch(samples: &[i16]) -> f64 {
    let rising: Vec<usize> = (1..samples.len())
        .filter(|&i| samples[i - 1] < 0 && samples[i] >= 0)
        .collect();
    assert!(rising.len() > 10, "no tone: {} crossings", rising.len());
    let span = (rising[rising.len() - 1] - rising[0]) as f64;
    (rising.len() - 1) as f64 * 8000.0 / span
}

#[tokio::test]
async fn pcm_instead_of_mulaw_is_converted_at_the_right_pitch_with_one_warning() {
    let capture = LogCapture::install();
    let h = Harness::start(agent()).await;
    h.engine
        .report_audio_format(json!({"type": "audio/pcm", "rate": 24000}));
    let call = h.call(1).await;
    let conn = h.engine_conn(0).await;
    // The caller's μ-law goes to the engine as the PCM it took: 20 ms is 960 bytes.
    call.stream
        .send_media(20, &mulaw_b64(160, 0x55))
        .await
        .expect("media");
    let append = conn
        .wait_for_event("input_audio_buffer.append", WAIT)
        .await
        .expect("caller audio");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(append["audio"].as_str().expect("audio"))
        .expect("base64");
    assert_eq!(bytes.len(), 960, "PCM16 at 24 kHz");
    // The engine's PCM reaches the caller as μ-law at 8 kHz, at its pitch.
    let chunks = pcm24k_tone(440.0, 600);
    let refs: Vec<&str> = chunks.iter().map(String::as_str).collect();
    conn.send_all(audio_response_events("resp_1", "item_1", &refs, "A tone."));
    call.stream
        .wait_for_media(chunks.len(), WAIT)
        .await
        .expect("agent audio");
    let mulaw = call.stream.media_bytes();
    assert!(mulaw.len() >= 4000, "{}", mulaw.len());
    let samples: Vec<i16> = mulaw.iter().map(|&b| mulaw_decode(b)).collect();
    let heard = pitch(&samples[800..]);
    assert!((heard - 440.0).abs() <= 440.0 * 0.02, "pitch {heard:.1} Hz");
    let logs = capture.text();
    let warned = logs
        .lines()
        .filter(|l| l.contains(&call.call_sid) && l.contains("another audio format"))
        .count();
    assert_eq!(warned, 1, "{logs}");
}

#[tokio::test]
async fn a_format_patter_cannot_carry_ends_the_call_before_any_audio_plays() {
    let mut h = Harness::start(agent()).await;
    h.engine.report_audio_format(json!({"type": "audio/pcma"}));
    let call = h.call(2).await;
    let conn = h.engine_conn(0).await;
    // Audio the engine sends anyway is never forwarded.
    conn.send_all(audio_response_events(
        "resp_1",
        "item_1",
        &[&mulaw_b64(800, 3)],
        "Static.",
    ));
    let summary = h.next_end().await;
    match &summary.reason {
        EndReason::AudioFormat { asked, got } => {
            assert_eq!(asked, "pcmu");
            assert!(got.contains("audio/pcma"), "{got}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(summary.reason.kind(), "audio_format");
    call.stream.wait_closed(WAIT).await.expect("closed");
    assert!(call.stream.media_payloads().is_empty(), "nothing played");
    let apology = h.rest.wait_for_request(1, WAIT).await.expect("apology");
    assert!(
        apology[0]
            .param("Twiml")
            .unwrap_or_default()
            .contains("<Say>"),
        "{apology:?}"
    );
}
