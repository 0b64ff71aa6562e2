//! How much faster than real time the μ-law ⇄ PCM 24 kHz path runs, per call and per core.
//!
//! ```sh
//! cargo bench -p patter --bench resample
//! ```

use std::hint::black_box;
use std::time::Instant;

use patter::call::audio::{Downsampler, Upsampler, mulaw_encode};

fn main() {
    // One minute of a voice-band tone, in 20 ms Twilio frames (160 μ-law bytes).
    let seconds = 60;
    let mulaw: Vec<u8> = (0..8000 * seconds)
        .map(|n| mulaw_encode(((n as f64 * 0.3).sin() * 9000.0) as i16))
        .collect();
    let frames: Vec<&[u8]> = mulaw.chunks(160).collect();

    let mut up = Upsampler::default();
    let mut down = Downsampler::default();
    let mut pcm = Vec::with_capacity(960);
    let mut back = Vec::with_capacity(160);
    let rounds = 5;
    let started = Instant::now();
    for _ in 0..rounds {
        for frame in &frames {
            pcm.clear();
            up.process(frame, &mut pcm);
            back.clear();
            down.process(black_box(&pcm), &mut back);
            black_box(&back);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let audio = (seconds * rounds) as f64;
    println!(
        "μ-law→PCM24k→μ-law, both directions of one call: {:.0}× real time on one core \
         ({:.1} µs per 20 ms frame pair); about {:.0} calls per core",
        audio / elapsed,
        elapsed / (frames.len() * rounds) as f64 * 1e6,
        audio / elapsed
    );
}
