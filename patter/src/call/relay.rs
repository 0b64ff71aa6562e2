//! The per-frame work of a call, in one place: caller audio from Twilio into the engine's
//! `input_audio_buffer.append`, and engine audio into Twilio's `media`, in either audio mode.
//! The call session does the socket I/O around it; the benchmarks measure exactly this.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::audio::{Downsampler, Upsampler};
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
                Some(realtime::append_audio_encoded(&self.converted))
            }
        }
    }

    /// An engine audio delta as Twilio's `media` message, with how many μ-law bytes it
    /// carries (what the caller will hear of it); `None` if the delta is not canonical
    /// base64. In `Pcmu` mode the very string goes on.
    pub fn agent_audio(&mut self, audio: &str) -> Option<(String, usize)> {
        if !media::looks_like_base64(audio) {
            return None;
        }
        match self.format {
            AudioFormat::Pcmu => Some((self.out.media(audio), media::decoded_len(audio))),
            AudioFormat::Pcm24k => {
                self.scratch.clear();
                BASE64.decode_vec(audio, &mut self.scratch).ok()?;
                self.converted.clear();
                self.downsampler.process(&self.scratch, &mut self.converted);
                Some((
                    self.out.media_encoded(&self.converted),
                    self.converted.len(),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcmu_passes_the_same_base64_through_both_ways() {
        let mut relay = AudioRelay::new(AudioFormat::Pcmu, "MZ1");
        let append = relay.caller_audio("AAAA").expect("relayed");
        assert_eq!(
            append,
            r#"{"type":"input_audio_buffer.append","audio":"AAAA"}"#
        );
        let (media, bytes) = relay.agent_audio("//8=").expect("relayed");
        assert_eq!(
            media,
            r#"{"event":"media","streamSid":"MZ1","media":{"payload":"//8="}}"#
        );
        assert_eq!(bytes, 2);
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
        let (media, bytes) = relay.agent_audio(&BASE64.encode(&pcm)).expect("relayed");
        assert_eq!(bytes, 160);
        let media: serde_json::Value = serde_json::from_str(&media).expect("json");
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
                assert_eq!(relay.agent_audio(bad), None, "{format:?} {bad:?}");
            }
        }
    }
}
