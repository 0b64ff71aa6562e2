//! The per-frame work of a call, in one place: caller audio from Twilio into the engine's
//! `input_audio_buffer.append`, and engine audio into Twilio's `media`, in either audio mode.
//! The call session does the socket I/O around it; the benchmarks measure exactly this.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::audio::{Downsampler, Upsampler, release_if_large};
use crate::engine::AudioFormat;
use crate::engine::openai_realtime as realtime;
use crate::twilio::media::{self, Outbound};

/// One call's audio relay: its format, its outbound message builder, and, for PCM, its
/// resamplers' state and reused buffers.
#[derive(Debug, Clone)]
pub struct AudioRelay {
    format: AudioFormat,
    out: Outbound,
    upsampler: Upsampler,
    downsampler: Downsampler,
    /// Decoded audio, reused from frame to frame.
    scratch: Vec<u8>,
    /// Audio in the other format, reused from frame to frame.
    converted: Vec<u8>,
}

impl AudioRelay {
    /// The relay of the stream `stream_sid`, with the engine speaking `format`.
    pub fn new(format: AudioFormat, stream_sid: &str) -> Self {
        AudioRelay {
            format,
            out: Outbound::new(stream_sid),
            upsampler: Upsampler::default(),
            downsampler: Downsampler::default(),
            scratch: Vec::new(),
            converted: Vec::new(),
        }
    }

    /// The builder of this stream's other messages to Twilio (marks, `clear`).
    pub fn outbound(&self) -> &Outbound {
        &self.out
    }

    /// A Twilio `media` payload as the engine's append message, or `None` if the payload is
    /// not canonical base64 (then nothing is relayed). In `Pcmu` mode the very string goes
    /// on, neither decoded nor re-encoded.
    pub fn caller_audio(&mut self, payload: &str) -> Option<String> {
        if !media::looks_like_base64(payload) {
            return None;
        }
        match self.format {
            AudioFormat::Pcmu => Some(realtime::append_audio(payload)),
            AudioFormat::Pcm24k => {
                self.scratch.clear();
                BASE64.decode_vec(payload, &mut self.scratch).ok()?;
                self.converted.clear();
                self.upsampler.process(&self.scratch, &mut self.converted);
                let message = realtime::append_audio_encoded(&self.converted);
                self.release_buffers();
                Some(message)
            }
        }
    }

    /// An engine audio delta as Twilio's `media` message. In `Pcmu` mode the very string
    /// goes on.
    pub fn agent_audio(&mut self, audio: &str) -> AgentAudio {
        if !media::looks_like_base64(audio) {
            return AgentAudio::Refused;
        }
        match self.format {
            AudioFormat::Pcmu => AgentAudio::Media {
                message: self.out.media(audio),
                mulaw_bytes: media::decoded_len(audio),
            },
            AudioFormat::Pcm24k => {
                self.scratch.clear();
                if BASE64.decode_vec(audio, &mut self.scratch).is_err() {
                    return AgentAudio::Refused;
                }
                self.converted.clear();
                self.downsampler.process(&self.scratch, &mut self.converted);
                let mulaw_bytes = self.converted.len();
                let outcome = if mulaw_bytes == 0 {
                    // Twilio refuses an empty payload; the samples wait in the resampler.
                    AgentAudio::Held
                } else {
                    AgentAudio::Media {
                        message: self.out.media_encoded(&self.converted),
                        mulaw_bytes,
                    }
                };
                self.release_buffers();
                outcome
            }
        }
    }

    fn release_buffers(&mut self) {
        self.scratch.clear();
        self.converted.clear();
        release_if_large(&mut self.scratch);
        release_if_large(&mut self.converted);
    }
}

/// What becomes of a chunk of agent audio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentAudio {
    /// Twilio's `media` message, carrying `mulaw_bytes` of audio (what the caller will hear).
    Media {
        /// The message.
        message: String,
        /// The μ-law bytes in it.
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
        let mut relay = AudioRelay::new(AudioFormat::Pcm24k, "MZ1");
        // One 24 kHz sample (2 bytes), then two more: the third completes an 8 kHz sample.
        assert_eq!(relay.agent_audio("AAA="), AgentAudio::Held);
        let AgentAudio::Media { mulaw_bytes, .. } = relay.agent_audio("AAAAAA==") else {
            panic!("the held samples were not completed");
        };
        assert_eq!(mulaw_bytes, 1);
    }

    #[test]
    fn a_huge_chunk_does_not_keep_its_buffers_for_the_rest_of_the_call() {
        let mut relay = AudioRelay::new(AudioFormat::Pcm24k, "MZ1");
        let huge = BASE64.encode(vec![0u8; 512 * 1024]);
        assert!(matches!(relay.agent_audio(&huge), AgentAudio::Media { .. }));
        assert!(relay.scratch.capacity() <= 64 * 1024);
        assert!(relay.converted.capacity() <= 64 * 1024);
    }

    #[test]
    fn pcmu_passes_the_same_base64_through_both_ways() {
        let mut relay = AudioRelay::new(AudioFormat::Pcmu, "MZ1");
        let append = relay.caller_audio("AAAA").expect("relayed");
        assert_eq!(
            append,
            r#"{"type":"input_audio_buffer.append","audio":"AAAA"}"#
        );
        assert_eq!(
            relay.agent_audio("//8="),
            AgentAudio::Media {
                message: r#"{"event":"media","streamSid":"MZ1","media":{"payload":"//8="}}"#
                    .to_owned(),
                mulaw_bytes: 2
            }
        );
    }

    #[test]
    fn pcm24k_triples_the_rate_in_and_divides_it_out() {
        let mut relay = AudioRelay::new(AudioFormat::Pcm24k, "MZ1");
        let frame = BASE64.encode([0xffu8; 160]);
        let append: serde_json::Value =
            serde_json::from_str(&relay.caller_audio(&frame).expect("relayed")).expect("json");
        let pcm = BASE64
            .decode(append["audio"].as_str().expect("audio"))
            .expect("base64");
        assert_eq!(pcm.len(), 160 * 3 * 2);
        let AgentAudio::Media {
            message,
            mulaw_bytes,
        } = relay.agent_audio(&BASE64.encode(&pcm))
        else {
            panic!("not relayed");
        };
        assert_eq!(mulaw_bytes, 160);
        let media: serde_json::Value = serde_json::from_str(&message).expect("json");
        let mulaw = BASE64
            .decode(media["media"]["payload"].as_str().expect("payload"))
            .expect("base64");
        assert_eq!(mulaw.len(), 160);
    }

    #[test]
    fn audio_that_is_not_base64_is_refused_in_both_modes() {
        for format in [AudioFormat::Pcmu, AudioFormat::Pcm24k] {
            let mut relay = AudioRelay::new(format, "MZ1");
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
