//! One OpenAI Realtime server event: parsing never panics, never rejects valid JSON, and
//! agent audio patter would forward to Twilio is real base64 inside well-formed JSON.
#![no_main]

use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use patter::engine::EngineEvent;
use patter::engine::openai_realtime::wire::parse_event;
use patter::twilio::media::{self, Outbound};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = parse_event(text);
    if serde_json::from_str::<serde_json::Value>(text).is_ok() {
        assert!(parsed.is_ok(), "valid JSON rejected");
    }
    if let Ok(EngineEvent::Audio { item_id, audio, .. }) = parsed
        && media::looks_like_base64(&audio)
    {
        base64::engine::general_purpose::STANDARD
            .decode(audio.as_bytes())
            .expect("accepted audio decodes");
        let out = Outbound::new(&item_id);
        assert!(
            serde_json::from_str::<serde_json::Value>(
                &out.media(patter::audio::AudioChunk::Base64(&audio))
            )
            .is_ok()
        );
    }
});
