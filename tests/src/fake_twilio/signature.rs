//! `X-Twilio-Signature` computation (twilio.com/docs/usage/webhooks/webhooks-security; the
//! vectors in `tests/data/twilio_signature_vectors.json`).

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;

/// The exact string Twilio signs for a form POST: `url` as given (not re-encoded), then for
/// every parameter name in byte order, `name + value` for each **distinct** value of that
/// name in byte order, with no separators. With no params (GET, WebSocket upgrade, JSON
/// body) it is the URL alone.
pub fn signed_string(url: &str, params: &[(&str, &str)]) -> String {
    let mut by_name: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (name, value) in params {
        by_name.entry(name).or_default().insert(value);
    }
    let mut out = String::from(url);
    for (name, values) in by_name {
        for value in values {
            out.push_str(name);
            out.push_str(value);
        }
    }
    out
}

/// `X-Twilio-Signature` = base64(HMAC-SHA1(key = `auth_token`, msg = [`signed_string`])).
pub fn signature(auth_token: &str, url: &str, params: &[(&str, &str)]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(auth_token.as_bytes())
        .expect("HMAC-SHA1 takes keys of any length");
    mac.update(signed_string(url, params).as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn canonical_vector() {
        let params = [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675309"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
        ];
        assert_eq!(
            signature(
                "12345",
                "https://mycompany.com/myapp.php?foo=1&bar=2",
                &params
            ),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        );
        // Order of the given params does not matter.
        let mut reversed = params;
        reversed.reverse();
        assert_eq!(
            signature(
                "12345",
                "https://mycompany.com/myapp.php?foo=1&bar=2",
                &reversed
            ),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        );
    }

    fn vectors() -> Vec<Value> {
        let raw = include_str!("../../data/twilio_signature_vectors.json");
        let doc: Value = serde_json::from_str(raw).expect("vectors file is JSON");
        doc["vectors"].as_array().expect("vectors array").clone()
    }

    fn params_of(v: &Value) -> Option<Vec<(String, String)>> {
        let list = v.get("params")?.as_array()?;
        Some(
            list.iter()
                .map(|pair| {
                    (
                        pair[0].as_str().expect("param name").to_owned(),
                        pair[1].as_str().expect("param value").to_owned(),
                    )
                })
                .collect(),
        )
    }

    #[test]
    fn form_vectors() {
        let mut positives = 0;
        let mut negatives = 0;
        for v in vectors() {
            let Some(params) = params_of(&v) else {
                continue;
            };
            let pairs: Vec<(&str, &str)> = params
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let id = v["id"].as_str().expect("id");
            let token = v["auth_token"].as_str().expect("auth_token");
            let expected = v["signature"].as_str().expect("signature");
            if v["expect_valid"].as_bool() == Some(true) {
                let url = v["signed_string_url"].as_str().expect("signed_string_url");
                assert_eq!(signature(token, url, &pairs), expected, "vector {id}");
                positives += 1;
            } else {
                let url = v["request_url"].as_str().expect("request_url");
                assert_ne!(signature(token, url, &pairs), expected, "vector {id}");
                negatives += 1;
            }
        }
        assert!(positives >= 10, "only {positives} positive form vectors");
        assert!(negatives >= 4, "only {negatives} negative form vectors");
    }

    #[test]
    fn json_body_vectors_sign_url_alone() {
        for v in vectors() {
            if v.get("body").is_none() || v["expect_valid"].as_bool() != Some(true) {
                continue;
            }
            let url = v["signed_string_url"].as_str().expect("signed_string_url");
            let token = v["auth_token"].as_str().expect("auth_token");
            assert_eq!(
                signature(token, url, &[]),
                v["signature"],
                "vector {}",
                v["id"]
            );
        }
    }

    #[test]
    fn duplicate_values_are_deduplicated_and_sorted() {
        assert_eq!(
            signed_string("u", &[("b", "2"), ("a", "y"), ("a", "x"), ("a", "y")]),
            "uaxayb2"
        );
    }
}
