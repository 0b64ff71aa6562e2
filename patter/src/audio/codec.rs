//! G.711 μ-law ⇄ PCM16 24 kHz, for engines that want PCM while the carrier speaks μ-law at
//! 8 kHz. The resamplers are polyphase windowed-sinc FIR filters whose state carries across
//! chunks, so chunk boundaries add no clicks.

use std::f64::consts::PI;

/// Taps per polyphase branch; 3 branches, so 48 taps in all.
const TAPS_PER_PHASE: usize = 16;
const FACTOR: usize = 3;

/// μ-law byte → linear 16-bit sample (ITU-T G.711).
pub fn mulaw_decode(byte: u8) -> i16 {
    MULAW_TABLE[byte as usize]
}

const MULAW_TABLE: [i16; 256] = {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        let u = !(i as u8);
        let sign = u & 0x80;
        let exponent = (u >> 4) & 0x07;
        let mantissa = (u & 0x0F) as i32;
        let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
        table[i] = if sign != 0 {
            -magnitude as i16
        } else {
            magnitude as i16
        };
        i += 1;
    }
    table
};

/// Linear 16-bit sample → μ-law byte (ITU-T G.711).
pub fn mulaw_encode(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32635;
    let mut pcm = sample as i32;
    let sign = if pcm < 0 {
        pcm = -pcm;
        0x80
    } else {
        0
    };
    pcm = pcm.min(CLIP) + BIAS;
    let exponent = (31 - (pcm as u32).leading_zeros() as i32 - 7).clamp(0, 7);
    let mantissa = (pcm >> (exponent + 3)) & 0x0F;
    !(sign | (exponent << 4) as u8 as i32 | mantissa) as u8
}

/// A low-pass windowed-sinc filter for the 24 kHz rate, cut off just below 4 kHz.
fn lowpass_taps() -> Vec<f32> {
    let n = TAPS_PER_PHASE * FACTOR;
    let cutoff = 3600.0 / 24000.0; // normalised to the sample rate
    let mid = (n - 1) as f64 / 2.0;
    let mut taps: Vec<f64> = (0..n)
        .map(|i| {
            let x = i as f64 - mid;
            let sinc = if x == 0.0 {
                2.0 * cutoff
            } else {
                (2.0 * PI * cutoff * x).sin() / (PI * x)
            };
            let window = 0.54 - 0.46 * (2.0 * PI * i as f64 / (n - 1) as f64).cos();
            sinc * window
        })
        .collect();
    let sum: f64 = taps.iter().sum();
    taps.iter_mut().for_each(|t| *t /= sum);
    taps.into_iter().map(|t| t as f32).collect()
}

/// Rounds to nearest (half away from zero, give or take the last bit of a value a hair
/// under one half) and saturates at the i16 range (a float-to-int `as` saturates); cheaper
/// than `f32::round`, which is a library call on baseline x86-64.
fn clamp_i16(x: f32) -> i16 {
    (x + 0.5f32.copysign(x)) as i16
}

/// Past this, a buffer grown for an unusually large chunk is given back instead of being
/// kept for the rest of the call.
const KEEP_BYTES: usize = 64 * 1024;

/// Shrinks `buf` to its contents if its capacity went past [`KEEP_BYTES`].
pub(crate) fn release_if_large<T>(buf: &mut Vec<T>) {
    if buf.capacity() * size_of::<T>() > KEEP_BYTES {
        buf.shrink_to(buf.len());
    }
}

/// `taps · window`, in eight independent lanes so that the compiler can vectorise it (a
/// single running sum would have to add in order). Both lengths are known at compile time,
/// so the loop is fully unrolled.
#[inline]
fn dot<const N: usize>(taps: &[f32; N], window: &[f32; N]) -> f32 {
    const { assert!(N.is_multiple_of(8), "filter lengths are multiples of 8") };
    let (taps, _) = taps.as_chunks::<8>();
    let (window, _) = window.as_chunks::<8>();
    let mut lanes = [0f32; 8];
    for (t, w) in taps.iter().zip(window) {
        lanes = std::array::from_fn(|i| lanes[i] + t[i] * w[i]);
    }
    let [a, b, c, d, e, f, g, h] = lanes;
    ((a + e) + (b + f)) + ((c + g) + (d + h))
}

/// μ-law 8 kHz → PCM16 24 kHz, streaming.
#[derive(Debug, Clone)]
pub struct Upsampler {
    /// Branch `p` holds taps `p, p+3, p+6, …` in reverse (oldest sample first), scaled by 3
    /// for the zero-stuffing loss.
    phases: [[f32; TAPS_PER_PHASE]; FACTOR],
    /// The last `TAPS_PER_PHASE - 1` input samples, then the chunk being converted, so that
    /// every output is one dot product over a contiguous window.
    work: Vec<f32>,
}

impl Default for Upsampler {
    fn default() -> Self {
        let taps = lowpass_taps();
        let mut phases = [[0f32; TAPS_PER_PHASE]; FACTOR];
        for (p, phase) in phases.iter_mut().enumerate() {
            let branch = taps.iter().skip(p).step_by(FACTOR).rev();
            for (slot, tap) in phase.iter_mut().zip(branch) {
                *slot = tap * FACTOR as f32;
            }
        }
        Upsampler {
            phases,
            work: vec![0.0; TAPS_PER_PHASE - 1],
        }
    }
}

impl Upsampler {
    /// Converts μ-law bytes to little-endian PCM16 at three times the rate.
    pub fn process(&mut self, mulaw: &[u8], out: &mut Vec<u8>) {
        self.work
            .extend(mulaw.iter().map(|&b| f32::from(mulaw_decode(b))));
        // One branch at a time over the whole chunk, each output written to its place in
        // the interleaved result: the compiler vectorises a single dot product per window
        // far better than three at once.
        let start = out.len();
        out.resize(start + mulaw.len() * FACTOR * 2, 0);
        let frames = out[start..].as_chunks_mut::<{ FACTOR * 2 }>().0;
        for (p, phase) in self.phases.iter().enumerate() {
            let windows = self.work.array_windows::<TAPS_PER_PHASE>();
            for (frame, window) in frames.iter_mut().zip(windows) {
                let sample = clamp_i16(dot(phase, window)).to_le_bytes();
                frame[2 * p..2 * p + 2].copy_from_slice(&sample);
            }
        }
        let done = self.work.len() - (TAPS_PER_PHASE - 1);
        self.work.drain(..done);
        release_if_large(&mut self.work);
    }
}

/// PCM16 24 kHz → μ-law 8 kHz, streaming. Only every third output is computed: the
/// filter runs at the output rate.
#[derive(Debug, Clone)]
pub struct Downsampler {
    /// The low-pass, reversed (oldest sample first).
    taps: [f32; TAPS],
    /// The last `TAPS - 1` input samples, then the chunk being converted.
    work: Vec<f32>,
    /// Input samples seen modulo 3: an output is due every third one.
    phase: usize,
    /// An odd trailing byte of the previous chunk.
    carry: Option<u8>,
}

const TAPS: usize = TAPS_PER_PHASE * FACTOR;

impl Default for Downsampler {
    fn default() -> Self {
        let mut taps = [0f32; TAPS];
        for (slot, tap) in taps.iter_mut().zip(lowpass_taps().into_iter().rev()) {
            *slot = tap;
        }
        Downsampler {
            taps,
            work: vec![0.0; TAPS - 1],
            phase: 0,
            carry: None,
        }
    }
}

impl Downsampler {
    /// Converts little-endian PCM16 bytes to μ-law at a third of the rate.
    pub fn process(&mut self, pcm: &[u8], out: &mut Vec<u8>) {
        out.reserve(pcm.len() / (2 * FACTOR) + 1);
        let mut bytes = pcm;
        if let Some(low) = self.carry.take() {
            if let Some((&high, rest)) = bytes.split_first() {
                self.work.push(f32::from(i16::from_le_bytes([low, high])));
                bytes = rest;
            } else {
                self.carry = Some(low);
                return;
            }
        }
        let pairs = bytes.chunks_exact(2);
        self.carry = pairs.remainder().first().copied();
        self.work
            .extend(pairs.map(|pair| f32::from(i16::from_le_bytes([pair[0], pair[1]]))));
        // Window `k` ends at the `k`-th new sample.
        for window in self.work.array_windows::<TAPS>() {
            self.phase += 1;
            if self.phase == FACTOR {
                self.phase = 0;
                out.push(mulaw_encode(clamp_i16(dot(&self.taps, window))));
            }
        }
        let done = self.work.len() - (TAPS - 1);
        self.work.drain(..done);
        release_if_large(&mut self.work);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine_mulaw(freq: f64, samples: usize) -> Vec<u8> {
        (0..samples)
            .map(|n| {
                let x = (2.0 * PI * freq * n as f64 / 8000.0).sin() * 12000.0;
                mulaw_encode(x as i16)
            })
            .collect()
    }

    #[test]
    fn mulaw_round_trips_every_code() {
        for byte in 0..=255u8 {
            let decoded = mulaw_decode(byte);
            let again = mulaw_decode(mulaw_encode(decoded));
            assert_eq!(again, decoded, "byte {byte:#04x}");
        }
        assert_eq!(mulaw_decode(0xFF), 0);
        assert_eq!(mulaw_decode(0x00), -32124);
        assert_eq!(mulaw_decode(0x80), 32124);
    }

    #[test]
    fn up_then_down_keeps_a_voice_band_tone() {
        let input = sine_mulaw(1000.0, 8000);
        let mut pcm = Vec::new();
        Upsampler::default().process(&input, &mut pcm);
        assert_eq!(pcm.len(), input.len() * 3 * 2);
        let mut back = Vec::new();
        Downsampler::default().process(&pcm, &mut back);
        assert_eq!(back.len(), input.len());
        // Compare after the filters' combined delay, by correlation of the decoded signals.
        let a: Vec<f64> = input.iter().map(|&b| f64::from(mulaw_decode(b))).collect();
        let b: Vec<f64> = back.iter().map(|&b| f64::from(mulaw_decode(b))).collect();
        let best = (0..40)
            .map(|lag| {
                let n = a.len() - 100;
                let num: f64 = (100..n).map(|i| a[i - lag.min(i)] * b[i]).sum();
                let den = ((100..n).map(|i| a[i - lag.min(i)].powi(2)).sum::<f64>()
                    * (100..n).map(|i| b[i].powi(2)).sum::<f64>())
                .sqrt();
                num / den
            })
            .fold(f64::MIN, f64::max);
        assert!(best > 0.99, "correlation {best}");
    }

    #[test]
    fn chunking_does_not_change_the_output() {
        let input = sine_mulaw(440.0, 1600);
        let mut whole = Vec::new();
        Upsampler::default().process(&input, &mut whole);
        let mut chunked = Vec::new();
        let mut up = Upsampler::default();
        for chunk in input.chunks(37) {
            up.process(chunk, &mut chunked);
        }
        assert_eq!(whole, chunked);

        let mut down_whole = Vec::new();
        Downsampler::default().process(&whole, &mut down_whole);
        let mut down_chunked = Vec::new();
        let mut down = Downsampler::default();
        for chunk in whole.chunks(101) {
            down.process(chunk, &mut down_chunked);
        }
        assert_eq!(down_whole, down_chunked);
    }

    #[test]
    fn a_tone_above_the_phone_band_is_filtered_out() {
        // 10 kHz at 24 kHz would alias to 2 kHz at 8 kHz without the low-pass.
        let pcm: Vec<u8> = (0..24000)
            .flat_map(|n| {
                let x = (2.0 * PI * 10000.0 * n as f64 / 24000.0).sin() * 12000.0;
                (x as i16).to_le_bytes()
            })
            .collect();
        let mut out = Vec::new();
        Downsampler::default().process(&pcm, &mut out);
        let rms = (out[100..]
            .iter()
            .map(|&b| f64::from(mulaw_decode(b)).powi(2))
            .sum::<f64>()
            / (out.len() - 100) as f64)
            .sqrt();
        assert!(rms < 12000.0 * 0.05, "aliased energy {rms}");
    }
}
