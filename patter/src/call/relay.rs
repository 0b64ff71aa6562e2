//! The per-frame conversion of a call, in one place: caller audio (μ-law 8 kHz, as the
//! carrier sends it) into the engine's format, and the engine's audio back into μ-law. The
//! session does the I/O around it; the benchmarks measure exactly this.
//!
//! In `Pcmu` mode nothing is converted: the very base64 text that arrived goes on, checked
//! but neither decoded nor copied. In `Pcm24k` mode the audio is decoded, resampled and
//! handed on as raw bytes, which the peer's message builder base64-encodes once.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::audio::codec::{Downsampler, Upsampler, release_if_large};
use crate::audio::{AudioChunk, AudioFormat, decoded_len, is_base64};

/// One call's audio conversion: the engine's format, and for PCM the resamplers' state and
/// reused buffers.
#[derive(Debug, Clone)]
pub struct AudioRelay {
    format: AudioFormat,
    upsampler: Upsampler,
    downsampler: Downsampler,
    /// Decoded audio, reused from frame to frame.
    scratch: Vec<u8>,
    /// Audio in the other format, reused from frame to frame.
    converted: Vec<u8>,
}

impl AudioRelay {
    /// The relay of a call whose engine speaks `format`.
    pub fn new(format: AudioFormat) -> Self {
        AudioRelay {
            format,
            upsampler: Upsampler::default(),
            downsampler: Downsampler::default(),
            scratch: Vec::new(),
            converted: Vec::new(),
        }
    }

    /// The engine's format it converts to and from.
    pub fn format(&self) -> AudioFormat {
        self.format
    }

    /// Caller audio (base64 μ-law) as the engine's audio, or `None` if the payload is not
    /// canonical base64 (then nothing is relayed).
    pub fn caller_audio<'a>(&'a mut self, payload: &'a str) -> Option<AudioChunk<'a>> {
        if !is_base64(payload) {
            return None;
        }
        match self.format {
            AudioFormat::Pcmu => Some(AudioChunk::Base64(payload)),
            AudioFormat::Pcm24k => {
                self.reset_buffers();
                BASE64.decode_vec(payload, &mut self.scratch).ok()?;
                self.upsampler.process(&self.scratch, &mut self.converted);
                Some(AudioChunk::Raw(&self.converted))
            }
        }
    }

    /// An engine audio delta (base64, in the engine's format) as μ-law for the carrier.
    pub fn agent_audio<'a>(&'a mut self, audio: &'a str) -> AgentAudio<'a> {
        if !is_base64(audio) {
            return AgentAudio::Refused;
        }
        match self.format {
            AudioFormat::Pcmu => AgentAudio::Media {
                audio: AudioChunk::Base64(audio),
                mulaw_bytes: decoded_len(audio),
            },
            AudioFormat::Pcm24k => {
                self.reset_buffers();
                if BASE64.decode_vec(audio, &mut self.scratch).is_err() {
                    return AgentAudio::Refused;
                }
                self.downsampler.process(&self.scratch, &mut self.converted);
                if self.converted.is_empty() {
                    // A carrier refuses an empty payload; the samples wait in the resampler.
                    return AgentAudio::Held;
                }
                AgentAudio::Media {
                    mulaw_bytes: self.converted.len(),
                    audio: AudioChunk::Raw(&self.converted),
                }
            }
        }
    }

    /// Empties the buffers before a conversion, giving back what an oversized chunk took.
    fn reset_buffers(&mut self) {
        self.scratch.clear();
        self.converted.clear();
        release_if_large(&mut self.scratch);
        release_if_large(&mut self.converted);
    }
}

/// What becomes of a chunk of agent audio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentAudio<'a> {
    /// μ-law audio for the carrier, `mulaw_bytes` long (what the caller will hear).
    Media {
        /// The audio.
        audio: AudioChunk<'a>,
        /// Its length in μ-law bytes.
        mulaw_bytes: usize,
    },
    /// Too short to make a single 8 kHz sample yet: kept in the resampler, nothing to send.
    Held,
    /// Not canonical base64: dropped.
    Refused,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pcm_chunk_too_short_for_one_sample_is_held_not_sent_empty() {
        let mut relay = AudioRelay::new(AudioFormat::Pcm24k);
        // One 24 kHz sample (2 bytes), then two more: the third completes an 8 kHz sample.
        assert_eq!(relay.agent_audio("AAA="), AgentAudio::Held);
        let AgentAudio::Media { mulaw_bytes, .. } = relay.agent_audio("AAAAAA==") else {
            panic!("the held samples were not completed");
        };
        assert_eq!(mulaw_bytes, 1);
    }

    #[test]
    fn a_huge_chunk_does_not_keep_its_buffers_for_the_rest_of_the_call() {
        let mut relay = AudioRelay::new(AudioFormat::Pcm24k);
        let huge = BASE64.encode(vec![0u8; 512 * 1024]);
        assert!(matches!(relay.agent_audio(&huge), AgentAudio::Media { .. }));
        let frame = BASE64.encode([0u8; 960]);
        assert!(matches!(
            relay.agent_audio(&frame),
            AgentAudio::Media { .. }
        ));
        assert!(relay.scratch.capacity() <= 64 * 1024);
        assert!(relay.converted.capacity() <= 64 * 1024);
    }

    #[test]
    fn pcmu_passes_the_same_base64_through_both_ways() {
        let mut relay = AudioRelay::new(AudioFormat::Pcmu);
        let payload = String::from("AAAA");
        let Some(AudioChunk::Base64(forwarded)) = relay.caller_audio(&payload) else {
            panic!("not passed through");
        };
        assert!(std::ptr::eq(forwarded, payload.as_str()), "copied");
        assert_eq!(
            relay.agent_audio("//8="),
            AgentAudio::Media {
                audio: AudioChunk::Base64("//8="),
                mulaw_bytes: 2
            }
        );
    }

    #[test]
    fn pcm24k_triples_the_rate_in_and_divides_it_out() {
        let mut relay = AudioRelay::new(AudioFormat::Pcm24k);
        let frame = BASE64.encode([0xffu8; 160]);
        let Some(AudioChunk::Raw(pcm)) = relay.caller_audio(&frame) else {
            panic!("not converted");
        };
        assert_eq!(pcm.len(), 160 * 3 * 2);
        let pcm = BASE64.encode(pcm);
        let AgentAudio::Media {
            audio: AudioChunk::Raw(mulaw),
            mulaw_bytes,
        } = relay.agent_audio(&pcm)
        else {
            panic!("not relayed");
        };
        assert_eq!(mulaw_bytes, 160);
        assert_eq!(mulaw.len(), 160);
    }

    #[test]
    fn audio_that_is_not_base64_is_refused_in_both_modes() {
        for format in [AudioFormat::Pcmu, AudioFormat::Pcm24k] {
            let mut relay = AudioRelay::new(format);
            for bad in ["", "AAA", "AA\"A", "AAA=A===", "AB=="] {
                assert_eq!(relay.caller_audio(bad), None, "{format:?} {bad:?}");
                assert_eq!(
                    relay.agent_audio(bad),
                    AgentAudio::Refused,
                    "{format:?} {bad:?}"
                );
            }
        }
    }
}
