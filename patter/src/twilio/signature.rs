//! X-Twilio-Signature: checks that a request really comes from Twilio.
//!
//! The signed string is the URL Twilio requested (as configured in Twilio, so rebuilt from
//! the public URL, never from what a proxy passes on) followed, for form posts, by every
//! parameter's name and value sorted by name. Requests with a JSON body carry
//! `bodySHA256=<hex>` in the query instead; then only the URL is signed and the body must
//! hash to that value. The HMAC-SHA1 key is the auth token.

use std::collections::BTreeMap;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// The header Twilio signs with.
pub const HEADER: &str = "X-Twilio-Signature";

/// The string Twilio signs for a form POST to `url` with `params`.
pub fn signed_string(url: &str, params: &[(String, String)]) -> String {
    let mut by_name: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, value) in params {
        by_name.entry(name).or_default().push(value);
    }
    let mut out = url.to_owned();
    for (name, mut values) in by_name {
        values.sort_unstable();
        values.dedup();
        for value in values {
            out.push_str(name);
            out.push_str(value);
        }
    }
    out
}

/// The signature of `data` with `auth_token`, base64, as Twilio computes it.
pub fn sign(auth_token: &str, data: &str) -> String {
    mac(auth_token, data)
        .map(|m| base64::engine::general_purpose::STANDARD.encode(m.finalize().into_bytes()))
        .unwrap_or_default()
}

/// HMAC accepts keys of any length, so this is `None` only in theory.
fn mac(auth_token: &str, data: &str) -> Option<Hmac<Sha1>> {
    let mut mac = Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()).ok()?;
    mac.update(data.as_bytes());
    Some(mac)
}

/// Checks `signature` for a request to `url` with form `params`, or with a JSON `body` when
/// the URL carries `bodySHA256`. Accepts the URL as given, with its port removed, or with the
/// default port added, as Twilio's own libraries do; compares in constant time.
pub fn validate(
    auth_token: &str,
    url: &str,
    params: &[(String, String)],
    body: Option<&[u8]>,
    signature: &str,
) -> bool {
    let Ok(expected) = base64::engine::general_purpose::STANDARD.decode(signature.trim()) else {
        return false;
    };
    let body_hash = query_value(url, "bodySHA256");
    if let Some(declared) = &body_hash {
        let actual = hex::encode(Sha256::digest(body.unwrap_or_default()));
        if !actual.eq_ignore_ascii_case(declared) {
            return false;
        }
    }
    let mut ok = false;
    for candidate in url_variants(url) {
        let data = if body_hash.is_some() {
            candidate
        } else {
            signed_string(&candidate, params)
        };
        // Every variant is checked, so timing does not tell which one matched.
        ok |= mac(auth_token, &data).is_some_and(|m| m.verify_slice(&expected).is_ok());
    }
    ok
}

/// The raw value of query parameter `name`, if present.
fn query_value(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then(|| value.to_owned())
    })
}

/// `url` as given, without its port, and with the scheme's default port; each also with its
/// query normalised the way WHATWG URL parsers (twilio-node) re-serialise it (`'` → `%27`).
fn url_variants(url: &str) -> Vec<String> {
    let mut variants = port_variants(url);
    if let Some((_, query)) = url.split_once('?')
        && query.contains('\'')
    {
        let normalised: Vec<String> = variants
            .iter()
            .map(|v| match v.split_once('?') {
                Some((base, query)) => format!("{base}?{}", query.replace('\'', "%27")),
                None => v.clone(),
            })
            .collect();
        variants.extend(normalised);
    }
    variants
}

fn port_variants(url: &str) -> Vec<String> {
    let mut variants = vec![url.to_owned()];
    let Some((scheme, rest)) = url.split_once("://") else {
        return variants;
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((user, host)) => (format!("{user}@"), host),
        None => (String::new(), authority),
    };
    // An IPv6 literal keeps its colons inside brackets.
    let (host, port) = match hostport.rfind(':') {
        Some(i) if !hostport[i..].contains(']') => (&hostport[..i], Some(&hostport[i + 1..])),
        _ => (hostport, None),
    };
    let default_port = match scheme {
        "https" | "wss" => "443",
        "http" | "ws" => "80",
        _ => return variants,
    };
    let stripped = format!("{scheme}://{userinfo}{host}{tail}");
    let with_default = format!("{scheme}://{userinfo}{host}:{default_port}{tail}");
    match port {
        Some(_) => variants.push(stripped),
        None => variants.push(with_default),
    }
    variants
}
