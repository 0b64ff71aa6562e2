//! What every 20 ms of every call costs: the per-frame work between Twilio Media Streams and
//! the OpenAI Realtime API, on realistic messages.
//!
//! ```sh
//! cargo bench -p patter --bench hot_path
//! cargo bench -p patter --bench hot_path -- relay/   # only the benchmarks matching a filter
//! ```
//!
//! Measured, each on one message as it arrives on the wire:
//!
//! - `twilio/parse_media`: reading a Twilio `media` frame (160 μ-law bytes, 216 base64 chars).
//! - `twilio/build_media_and_mark`: writing an outbound `media` frame and the `mark` after it.
//! - `realtime/parse_audio_delta`, `realtime/parse_response_done`: reading a
//!   `response.output_audio.delta` (one 20 ms μ-law chunk) and a full `response.done` event.
//! - `realtime/build_append`: writing an `input_audio_buffer.append` message.
//! - `relay/caller_to_engine_*`, `relay/engine_to_caller_*`: one 20 ms frame relayed the way a
//!   call session does it: the message is parsed, then converted by the session's own
//!   `patter::call::relay::AudioRelay` (which checks the base64 and, for `pcm24k`, decodes
//!   and resamples with its reused buffers and resampler state), then written as the peer's
//!   message (base64-encoding converted audio straight into it), and agent audio gets its
//!   mark. `pcmu` passes the base64 through untouched.
//! - `signature/validate_webhook`: checking `X-Twilio-Signature` on a voice webhook with the
//!   form parameters Twilio posts for an inbound call; `signature/validate_stream_upgrade`:
//!   the same for the `wss://` Media Streams upgrade, which has no parameters.
//! - `resample/up_and_down_20ms`: the resamplers alone, one 20 ms frame each way.
//!
//! Reading the results: `time: [low estimate high]` is the time per iteration (one message, or
//! one frame relayed), the middle figure being criterion's estimate and the outer two the
//! bounds of its 95 % confidence interval. A later run also prints `change:` against the
//! previous one (kept under `target/criterion`); `--save-baseline NAME` and `--baseline NAME`
//! compare against a named run instead. `resample/up_and_down_20ms` reports a throughput in
//! `elem/s` where one element is one millisecond of audio converted in both directions, so
//! `elem/s ÷ 1000` is how many times faster than real time one core transcodes a call.
//! The run ends with one line giving that figure directly, from a short plain timing.

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use criterion::{Criterion, Throughput, criterion_group};
use patter::audio::AudioChunk;
use patter::audio::codec::{Downsampler, Upsampler, mulaw_encode};
use patter::call::relay::{AgentAudio, AudioRelay};
use patter::engine::openai_realtime::wire::{self as realtime, parse_event};
use patter::engine::{AudioFormat, EngineEvent};
use patter::twilio::media::{self, Inbound, Outbound};
use patter::twilio::signature;

const STREAM_SID: &str = "MZ18ad3ab5a668481ce02b83e7395059f0";
const RESPONSE_ID: &str = "resp_CDvtJ9BhCqxTjmkaCWYd1";
const ITEM_ID: &str = "item_CDvtJfmwQ3xK8sPZ1Ny2R";
const AUTH_TOKEN: &str = "12345678901234567890123456789012";
const WEBHOOK_URL: &str = "https://agent.example.com/twilio/voice";
const STREAM_URL: &str = "wss://agent.example.com/twilio/stream";

/// `samples` of a voice-like signal (a 140 Hz fundamental with two harmonics) at `rate`, so
/// that the resamplers and the μ-law encoder see real audio rather than silence.
fn voice(rate: u32, samples: usize) -> impl Iterator<Item = i16> {
    (0..samples).map(move |n| {
        let t = n as f64 / f64::from(rate);
        let w = 2.0 * std::f64::consts::PI * 140.0 * t;
        (w.sin() * 7000.0 + (2.0 * w).sin() * 3000.0 + (3.0 * w).sin() * 1500.0) as i16
    })
}

/// One Twilio frame of caller audio: 160 μ-law bytes (20 ms at 8 kHz).
fn mulaw_frame() -> Vec<u8> {
    voice(8000, 160).map(mulaw_encode).collect()
}

/// One 20 ms chunk of agent audio as PCM16 24 kHz little-endian: 960 bytes.
fn pcm24k_frame() -> Vec<u8> {
    voice(24000, 480).flat_map(i16::to_le_bytes).collect()
}

/// A `media` frame as Twilio sends it.
fn twilio_media_frame(payload: &str) -> String {
    format!(
        r#"{{"event":"media","sequenceNumber":"252","media":{{"track":"inbound","chunk":"251","timestamp":"5020","payload":"{payload}"}},"streamSid":"{STREAM_SID}"}}"#
    )
}

/// A GA `response.output_audio.delta` carrying `delta`.
fn audio_delta_event(delta: &str) -> String {
    format!(
        r#"{{"type":"response.output_audio.delta","event_id":"event_CDvtKbHq2Jm6oTqQWvRxk","response_id":"{RESPONSE_ID}","item_id":"{ITEM_ID}","output_index":0,"content_index":0,"delta":"{delta}"}}"#
    )
}

/// A GA `response.done` for a completed spoken answer, with its output item and usage, which
/// the parser must skip over to find the id and status.
fn response_done_event() -> String {
    format!(
        r#"{{"type":"response.done","event_id":"event_CDvtPq7Xr0aN2bYzW3kLm","response":{{"object":"realtime.response","id":"{RESPONSE_ID}","status":"completed","status_details":null,"output":[{{"id":"{ITEM_ID}","type":"message","status":"completed","role":"assistant","content":[{{"type":"output_audio","transcript":"Sure, I have booked you in for Tuesday at three in the afternoon. You will get a text message to confirm it. Is there anything else I can help you with?"}}]}}],"conversation_id":"conv_CDvsz1yGq8fWbXn4TtEhP","output_modalities":["audio"],"max_output_tokens":"inf","audio":{{"output":{{"format":{{"type":"audio/pcmu"}},"voice":"marin"}}}},"usage":{{"total_tokens":1873,"input_tokens":1544,"output_tokens":329,"input_token_details":{{"text_tokens":1180,"audio_tokens":364,"image_tokens":0,"cached_tokens":1088,"cached_tokens_details":{{"text_tokens":1024,"audio_tokens":64,"image_tokens":0}}}},"output_token_details":{{"text_tokens":61,"audio_tokens":268}}}},"metadata":null}}}}"#
    )
}

/// The form parameters Twilio posts to the voice webhook for an inbound call.
fn voice_webhook_params() -> Vec<(String, String)> {
    [
        ("Called", "+14155550100"),
        ("ToState", "CA"),
        ("CallerCountry", "US"),
        ("Direction", "inbound"),
        ("CallerState", "NY"),
        ("ToZip", "94105"),
        ("CallSid", "CA5f3a9e4b2c7d8e1f0a6b9c3d2e4f5a6b"),
        ("To", "+14155550100"),
        ("CallerZip", "10001"),
        ("ToCountry", "US"),
        ("StirVerstat", "TN-Validation-Passed-A"),
        ("CalledZip", "94105"),
        ("ApiVersion", "2010-04-01"),
        ("CalledCity", "SAN FRANCISCO"),
        ("CallStatus", "ringing"),
        ("From", "+12125550123"),
        ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
        ("CalledCountry", "US"),
        ("CallerCity", "NEW YORK"),
        ("ToCity", "SAN FRANCISCO"),
        ("FromCountry", "US"),
        ("Caller", "+12125550123"),
        ("FromCity", "NEW YORK"),
        ("CalledState", "CA"),
        ("FromZip", "10001"),
        ("FromState", "NY"),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value.to_owned()))
    .collect()
}

fn twilio(c: &mut Criterion) {
    let payload = BASE64.encode(mulaw_frame());
    assert_eq!(payload.len(), 216);
    let frame = twilio_media_frame(&payload);
    assert!(matches!(media::parse(&frame), Ok(Inbound::Media { .. })));
    let out = Outbound::new(STREAM_SID);

    let mut group = c.benchmark_group("twilio");
    group.bench_function("parse_media", |b| {
        b.iter(|| media::parse(black_box(&frame)))
    });
    group.bench_function("build_media_and_mark", |b| {
        b.iter(|| {
            (
                out.media(AudioChunk::Base64(black_box(&payload))),
                out.mark(black_box("p123")),
            )
        })
    });
    group.finish();
}

fn realtime(c: &mut Criterion) {
    let delta = audio_delta_event(&BASE64.encode(mulaw_frame()));
    assert!(matches!(parse_event(&delta), Ok(EngineEvent::Audio { .. })));
    let done = response_done_event();
    assert!(matches!(
        parse_event(&done),
        Ok(EngineEvent::ResponseDone { ref status, .. }) if status == "completed"
    ));
    let payload = BASE64.encode(mulaw_frame());

    let mut group = c.benchmark_group("realtime");
    group.bench_function("parse_audio_delta", |b| {
        b.iter(|| parse_event(black_box(&delta)))
    });
    group.bench_function("parse_response_done", |b| {
        b.iter(|| parse_event(black_box(&done)))
    });
    group.bench_function("build_append", |b| {
        b.iter(|| realtime::append_audio(AudioChunk::Base64(black_box(&payload))))
    });
    group.finish();
}

/// One 20 ms frame each way, relayed as the call session does it: the frame is parsed,
/// converted by the session's own `AudioRelay` and written as the peer's message, and agent
/// audio is followed by its mark. `None` stands for a frame the session would drop, which
/// these inputs never are.
fn relay(c: &mut Criterion) {
    let caller_frame = twilio_media_frame(&BASE64.encode(mulaw_frame()));
    let agent_pcmu = audio_delta_event(&BASE64.encode(mulaw_frame()));
    let agent_pcm24k = audio_delta_event(&BASE64.encode(pcm24k_frame()));

    let mut group = c.benchmark_group("relay");
    for (format, name, agent_event) in [
        (AudioFormat::Pcmu, "pcmu", &agent_pcmu),
        (AudioFormat::Pcm24k, "pcm24k", &agent_pcm24k),
    ] {
        group.bench_function(format!("caller_to_engine_{name}"), |b| {
            let mut relay = AudioRelay::new(format);
            b.iter(|| {
                let Ok(Inbound::Media { media }) = media::parse(black_box(&caller_frame)) else {
                    return None;
                };
                relay
                    .caller_audio(&media.payload)
                    .map(realtime::append_audio)
            })
        });
        group.bench_function(format!("engine_to_caller_{name}"), |b| {
            let mut relay = AudioRelay::new(format);
            let out = Outbound::new(STREAM_SID);
            let mut mark_name = String::new();
            let mut next_mark = 0u64;
            b.iter(|| {
                let Ok(EngineEvent::Audio { item_id, audio, .. }) =
                    parse_event(black_box(agent_event))
                else {
                    return None;
                };
                let AgentAudio::Media { audio, mulaw_bytes } = relay.agent_audio(&audio) else {
                    return None;
                };
                next_mark += 1;
                mark_name.clear();
                let _ = write!(mark_name, "p{next_mark}");
                Some((out.media(audio), out.mark(&mark_name), item_id, mulaw_bytes))
            })
        });
    }
    group.finish();
}

fn signature(c: &mut Criterion) {
    let params = voice_webhook_params();
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&params)
        .finish();
    let webhook_signature =
        signature::sign(AUTH_TOKEN, &signature::signed_string(WEBHOOK_URL, &params));
    let stream_signature = signature::sign(AUTH_TOKEN, STREAM_URL);
    // Both must take the accepting path, which checks every URL variant.
    assert!(signature::validate(
        AUTH_TOKEN,
        WEBHOOK_URL,
        &params,
        Some(body.as_bytes()),
        &webhook_signature
    ));
    assert!(signature::validate(
        AUTH_TOKEN,
        STREAM_URL,
        &[],
        None,
        &stream_signature
    ));

    let mut group = c.benchmark_group("signature");
    group.bench_function("validate_webhook", |b| {
        b.iter(|| {
            signature::validate(
                black_box(AUTH_TOKEN),
                black_box(WEBHOOK_URL),
                black_box(&params),
                black_box(Some(body.as_bytes())),
                black_box(&webhook_signature),
            )
        })
    });
    group.bench_function("validate_stream_upgrade", |b| {
        b.iter(|| {
            signature::validate(
                black_box(AUTH_TOKEN),
                black_box(STREAM_URL),
                black_box(&[]),
                black_box(None),
                black_box(&stream_signature),
            )
        })
    });
    group.finish();
}

/// Milliseconds of audio in one frame, in each direction.
const FRAME_MS: u64 = 20;

/// One 20 ms frame each way through resamplers that keep their state, as during a call.
struct Transcoder {
    up: Upsampler,
    down: Downsampler,
    pcm: Vec<u8>,
    mulaw: Vec<u8>,
}

impl Transcoder {
    fn new() -> Self {
        Transcoder {
            up: Upsampler::default(),
            down: Downsampler::default(),
            pcm: Vec::with_capacity(960),
            mulaw: Vec::with_capacity(160),
        }
    }

    fn frame_pair(&mut self, caller: &[u8], agent: &[u8]) -> (usize, usize) {
        self.pcm.clear();
        self.up.process(caller, &mut self.pcm);
        self.mulaw.clear();
        self.down.process(agent, &mut self.mulaw);
        black_box((&self.pcm, &self.mulaw));
        (self.pcm.len(), self.mulaw.len())
    }
}

fn resample(c: &mut Criterion) {
    let caller = mulaw_frame();
    let agent = pcm24k_frame();
    let mut transcoder = Transcoder::new();

    let mut group = c.benchmark_group("resample");
    // One element per millisecond of audio: elem/s ÷ 1000 = × real time.
    group.throughput(Throughput::Elements(FRAME_MS));
    group.bench_function("up_and_down_20ms", |b| {
        b.iter(|| transcoder.frame_pair(black_box(&caller), black_box(&agent)))
    });
    group.finish();
}

/// Whether criterion is measuring (rather than listing benchmarks or running each once as a
/// test), decided from the arguments the way criterion decides it.
fn benchmarking() -> bool {
    let args: Vec<String> = std::env::args().collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    has("--bench") && !has("--test") && !has("--list") && !has("--profile-time")
}

/// The resamplers' speed as one plain figure, for quoting: a short direct timing rather
/// than criterion's statistics, so it is a single run on a possibly busy machine.
fn print_real_time() {
    const FRAMES: u32 = 10_000;
    let caller = mulaw_frame();
    let agent = pcm24k_frame();
    let mut transcoder = Transcoder::new();
    for _ in 0..FRAMES / 10 {
        transcoder.frame_pair(black_box(&caller), black_box(&agent));
    }
    let started = Instant::now();
    for _ in 0..FRAMES {
        transcoder.frame_pair(black_box(&caller), black_box(&agent));
    }
    let elapsed = started.elapsed();
    let audio = Duration::from_millis(FRAME_MS * u64::from(FRAMES));
    let speed = audio.as_secs_f64() / elapsed.as_secs_f64();
    println!(
        "resample/up_and_down_20ms: {speed:.0}× real time on one core, both directions of a \
         call ({:.2} µs per pair of 20 ms frames, one each way; {FRAMES} pairs timed directly)",
        elapsed.as_secs_f64() * 1e6 / f64::from(FRAMES),
    );
}

criterion_group! {
    name = hot_path;
    // Short runs: the whole binary finishes in well under a minute. No plots are drawn.
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
        .without_plots();
    targets = twilio, realtime, relay, signature, resample
}

// `criterion_main!`, plus the direct × real time line once criterion's groups have run.
fn main() {
    hot_path();
    Criterion::default().configure_from_args().final_summary();
    if benchmarking() {
        print_real_time();
    }
}
