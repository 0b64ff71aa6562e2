//! X-Twilio-Signature: every vector of Twilio's own libraries' tests (tests/data), plus the
//! stream token.

use patter::twilio::{signature, stream_token};
use serde_json::Value;

fn vectors() -> Vec<Value> {
    let data: Value = serde_json::from_str(include_str!("../data/twilio_signature_vectors.json"))
        .expect("vectors parse");
    data["vectors"].as_array().expect("vectors").clone()
}

fn params(vector: &Value) -> Vec<(String, String)> {
    vector["params"]
        .as_array()
        .map(|pairs| {
            pairs
                .iter()
                .map(|p| {
                    (
                        p[0].as_str().expect("name").to_owned(),
                        p[1].as_str().expect("value").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn every_vector_gives_the_expected_verdict() {
    let vectors = vectors();
    assert!(vectors.len() >= 19, "all vectors present");
    let mut checked = 0;
    for v in &vectors {
        let id = v["id"].as_str().expect("id");
        let body = v["body"].as_str().map(str::as_bytes);
        let valid = signature::validate(
            v["auth_token"].as_str().expect("token"),
            v["request_url"].as_str().expect("url"),
            &params(v),
            body,
            v["signature"].as_str().expect("signature"),
        );
        let expected = v["expect_valid"].as_bool().expect("expect_valid");
        assert_eq!(valid, expected, "vector {id}");
        checked += 1;
    }
    assert_eq!(checked, vectors.len());
}

#[test]
fn the_signed_string_matches_the_vectors() {
    for v in vectors() {
        let (Some(url), Some(expected)) =
            (v["signed_string_url"].as_str(), v["expect_valid"].as_bool())
        else {
            continue;
        };
        if !expected || v["body"].is_string() {
            continue;
        }
        let data = signature::signed_string(url, &params(&v));
        assert_eq!(
            signature::sign(v["auth_token"].as_str().expect("token"), &data),
            v["signature"].as_str().expect("signature"),
            "vector {}",
            v["id"]
        );
    }
}

#[test]
fn garbage_signatures_are_refused_without_panicking() {
    let p = vec![("CallSid".to_owned(), "CA1".to_owned())];
    for sig in [
        "",
        "not base64!!",
        "====",
        "RSOYDt4T1cUTdK1PDd93/VVr8B8",
        "\u{0}\u{1}",
    ] {
        assert!(!signature::validate(
            "12345",
            "https://x.example/a",
            &p,
            None,
            sig
        ));
    }
    for url in [
        "",
        "no-scheme",
        "https://",
        "https://[::1]:8443/x?bodySHA256=zz",
        "wss://h:99999/x",
    ] {
        assert!(!signature::validate(
            "12345",
            url,
            &p,
            Some(b"{}"),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        ));
    }
}

#[test]
fn websocket_upgrades_are_signed_over_the_wss_url() {
    let url = "wss://agent.example.com/twilio/stream";
    let sig = signature::sign("token", url);
    assert!(signature::validate("token", url, &[], None, &sig));
    assert!(signature::validate(
        "token",
        "wss://agent.example.com:443/twilio/stream",
        &[],
        None,
        &sig
    ));
    assert!(!signature::validate(
        "token",
        "https://agent.example.com/twilio/stream",
        &[],
        None,
        &sig
    ));
}

#[test]
fn stream_tokens_bind_the_call_and_expire() {
    let secret = b"server secret";
    let token = stream_token::issue(secret, "CA123", 1_000);
    assert_eq!(stream_token::verify(secret, "CA123", &token, 999), Ok(()));
    assert_eq!(stream_token::verify(secret, "CA123", &token, 1_000), Ok(()));
    assert_eq!(
        stream_token::verify(secret, "CA123", &token, 1_001),
        Err(stream_token::TokenError::Expired)
    );
    assert_eq!(
        stream_token::verify(secret, "CA999", &token, 999),
        Err(stream_token::TokenError::Mismatch)
    );
    assert_eq!(
        stream_token::verify(b"other secret", "CA123", &token, 999),
        Err(stream_token::TokenError::Mismatch)
    );
    // A later expiry cannot be grafted onto the MAC.
    let forged = token.replacen("1000", "9999", 1);
    assert_eq!(
        stream_token::verify(secret, "CA123", &forged, 999),
        Err(stream_token::TokenError::Mismatch)
    );
    for junk in [
        "",
        ".",
        "abc",
        "1000.",
        "1000.zz",
        "-1.00",
        "99999999999999999999999.00",
    ] {
        assert_eq!(
            stream_token::verify(secret, "CA123", junk, 0),
            Err(stream_token::TokenError::Malformed),
            "{junk:?}"
        );
    }
}
