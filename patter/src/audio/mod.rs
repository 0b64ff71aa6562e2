//! Audio as both seams carry it: the engine's audio format, a chunk of audio handed to a
//! peer, and the checks and conversions the call does between a carrier (G.711 μ-law at
//! 8 kHz) and an engine.

#[doc(hidden)]
pub mod codec;

/// The audio format between patter and the engine. Carriers always speak G.711 μ-law at
/// 8 kHz; the call converts when the engine speaks something else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AudioFormat {
    /// G.711 μ-law 8 kHz, the carrier's own format, passed through untouched (the default).
    #[default]
    Pcmu,
    /// PCM16 little-endian 24 kHz mono: patter transcodes and resamples each way, for models
    /// that need it.
    Pcm24k,
}

impl AudioFormat {
    /// The name used in settings: `pcmu` or `pcm24k`.
    pub fn as_str(self) -> &'static str {
        match self {
            AudioFormat::Pcmu => "pcmu",
            AudioFormat::Pcm24k => "pcm24k",
        }
    }

    /// Reads a setting's value: `pcmu` or `pcm24k` (any case).
    pub fn parse(text: &str) -> Option<AudioFormat> {
        match text.trim().to_ascii_lowercase().as_str() {
            "pcmu" => Some(AudioFormat::Pcmu),
            "pcm24k" => Some(AudioFormat::Pcm24k),
            _ => None,
        }
    }

    /// How many bytes one millisecond of audio takes.
    pub fn bytes_per_ms(self) -> usize {
        match self {
            AudioFormat::Pcmu => 8,
            AudioFormat::Pcm24k => 48,
        }
    }
}

impl std::fmt::Display for AudioFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A chunk of audio on its way to a peer, in whichever form it is at hand: the base64 text
/// that arrived (passed through without a copy or a decode), or raw bytes a converter made
/// (base64-encoded once, straight into the outgoing message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioChunk<'a> {
    /// Canonical standard base64 (see [`is_base64`]): it needs no escaping in JSON.
    Base64(&'a str),
    /// Raw audio bytes.
    Raw(&'a [u8]),
}

impl AudioChunk<'_> {
    /// How many bytes of audio the chunk holds, without decoding it.
    pub fn len(&self) -> usize {
        match self {
            AudioChunk::Base64(text) => decoded_len(text),
            AudioChunk::Raw(bytes) => bytes.len(),
        }
    }

    /// Whether the chunk holds no audio.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The audio as bytes (decoding base64), for peers that do not speak base64.
    pub fn to_bytes(&self) -> Vec<u8> {
        use base64::Engine as _;
        match self {
            AudioChunk::Base64(text) => base64::engine::general_purpose::STANDARD
                .decode(text)
                .unwrap_or_default(),
            AudioChunk::Raw(bytes) => bytes.to_vec(),
        }
    }
}

/// Whether `text` is non-empty, canonical standard base64, checked without decoding: the
/// alphabet, a length that is a multiple of 4, at most two `=` and only at the end, and no
/// stray bits before the padding. These are exactly the non-empty texts the standard decoder
/// accepts, so nothing else is relayed as audio (nor needs escaping in JSON).
pub fn is_base64(text: &str) -> bool {
    let bytes = text.as_bytes();
    if bytes.is_empty() || !bytes.len().is_multiple_of(4) {
        return false;
    }
    let padding = bytes.iter().rev().take_while(|&&b| b == b'=').count();
    if padding > 2 {
        return false;
    }
    let data = &bytes[..bytes.len() - padding];
    let mut last = 0;
    for &b in data {
        last = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return false,
        };
    }
    // The last symbol before the padding carries bits that must be zero.
    match padding {
        1 => last & 0b11 == 0,
        2 => last & 0b1111 == 0,
        _ => true,
    }
}

/// How many bytes a base64 text decodes to, without decoding it.
pub fn decoded_len(text: &str) -> usize {
    let padding = text.bytes().rev().take_while(|&b| b == b'=').count().min(2);
    (text.len() / 4 * 3).saturating_sub(padding)
}

/// The `head` pieces, then `chunk` as base64, then `tail`, in one exactly sized string: the
/// one allocation of an outgoing audio message, which the socket then owns.
#[doc(hidden)]
pub fn audio_message(head: &[&str], chunk: AudioChunk<'_>, tail: &str) -> String {
    use base64::Engine as _;
    let encoded = match chunk {
        AudioChunk::Base64(text) => text.len(),
        AudioChunk::Raw(bytes) => base64::encoded_len(bytes.len(), true).unwrap_or(0),
    };
    let head_len: usize = head.iter().map(|piece| piece.len()).sum();
    let mut out = String::with_capacity(head_len + encoded + tail.len());
    for piece in head {
        out.push_str(piece);
    }
    match chunk {
        AudioChunk::Base64(text) => out.push_str(text),
        AudioChunk::Raw(bytes) => {
            base64::engine::general_purpose::STANDARD.encode_string(bytes, &mut out)
        }
    }
    out.push_str(tail);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_exactly_sized_in_both_forms() {
        let from_text = audio_message(&["{\"a\":\"", "x"], AudioChunk::Base64("AAAA"), "\"}");
        assert_eq!(from_text, "{\"a\":\"xAAAA\"}");
        assert_eq!(from_text.capacity(), from_text.len());
        let from_bytes = audio_message(&["<"], AudioChunk::Raw(&[0, 0, 0]), ">");
        assert_eq!(from_bytes, "<AAAA>");
        assert_eq!(from_bytes.capacity(), from_bytes.len());
    }

    #[test]
    fn formats_read_their_setting_names() {
        for format in [AudioFormat::Pcmu, AudioFormat::Pcm24k] {
            assert_eq!(AudioFormat::parse(format.as_str()), Some(format));
        }
        assert_eq!(AudioFormat::parse(" PCMU "), Some(AudioFormat::Pcmu));
        assert_eq!(AudioFormat::parse("pcm16"), None);
    }

    #[test]
    fn chunk_lengths_are_known_without_decoding() {
        assert_eq!(AudioChunk::Base64("//8=").len(), 2);
        assert_eq!(AudioChunk::Raw(&[1, 2, 3]).len(), 3);
        assert_eq!(AudioChunk::Base64("//8=").to_bytes(), vec![0xff, 0xff]);
    }
}
