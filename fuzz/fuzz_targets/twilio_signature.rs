//! X-Twilio-Signature checks and stream tokens on arbitrary input: no panic, a genuine
//! signature always validates, and a token is bound to its call.
#![no_main]

use libfuzzer_sys::fuzz_target;
use patter::twilio::{signature, stream_token};

type Input = (
    String,
    String,
    Vec<(String, String)>,
    Option<Vec<u8>>,
    String,
    String,
    u64,
);

fuzz_target!(|input: Input| {
    let (token, url, params, body, given, call_sid, expires_at) = input;
    let _ = signature::validate(&token, &url, &params, body.as_deref(), &given);
    if !url.contains("bodySHA256") {
        let genuine = signature::sign(&token, &signature::signed_string(&url, &params));
        assert!(signature::validate(&token, &url, &params, None, &genuine));
    }

    let _ = stream_token::verify(token.as_bytes(), &call_sid, &given, expires_at);
    let issued = stream_token::issue(token.as_bytes(), &call_sid, expires_at);
    assert_eq!(
        stream_token::verify(token.as_bytes(), &call_sid, &issued, expires_at),
        Ok(())
    );
    if given != call_sid {
        assert!(stream_token::verify(token.as_bytes(), &given, &issued, expires_at).is_err());
    }
});
