//! One Media Streams text frame from Twilio: parsing never panics, and whatever patter would
//! relay or echo from it is well-formed.
#![no_main]

use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use patter::engine::openai_realtime::wire::append_audio;
use patter::twilio::media::{self, Inbound, Outbound};

fn is_json(text: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(text).is_ok()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match media::parse(text) {
        Ok(Inbound::Media { media: m }) => {
            let _ = m.timestamp_ms();
            if media::looks_like_base64(&m.payload) {
                // Accepted payloads are real base64 and go into JSON unescaped.
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(m.payload.as_bytes())
                    .expect("accepted payloads decode");
                assert_eq!(media::decoded_len(&m.payload), decoded.len());
                assert!(is_json(&append_audio(patter::audio::AudioChunk::Base64(
                    &m.payload
                ))));
            }
        }
        Ok(Inbound::Start { start }) => {
            // Ids from `start` end up in every message patter sends back.
            let out = Outbound::new(&start.stream_sid);
            assert!(is_json(&out.clear()));
            assert!(is_json(&out.mark(&start.call_sid)));
            assert!(is_json(
                &out.media(patter::audio::AudioChunk::Base64("AAAA"))
            ));
        }
        _ => {}
    }
});
