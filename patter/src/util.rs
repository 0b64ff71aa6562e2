//! Small helpers shared by several modules.

/// The WebSocket read buffer of the Twilio socket. tungstenite zeroes this much on every
/// read attempt, including each poll that finds nothing to read, so it is kept small:
/// Twilio's frames are a few hundred bytes, and a larger message just takes more reads.
pub(crate) const TWILIO_READ_BUFFER_BYTES: usize = 2 * 1024;

/// `bytes` random bytes as lower-case hex, for ids and keys.
pub(crate) fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    if getrandom::fill(&mut buf).is_err() {
        // The OS refused randomness: fall back to time and a counter, still unique per process.
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        return format!("{nanos:x}{n:x}");
    }
    hex::encode(buf)
}

/// Makes rustls use the ring provider process-wide (once; later calls do nothing).
pub(crate) fn install_crypto_provider() {
    // An error means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// `url` without user info and query, safe to log.
pub(crate) fn redact_url(url: &str) -> String {
    let without_query = url.split(['?', '#']).next().unwrap_or_default();
    match without_query.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority
                .rsplit_once('@')
                .map_or(authority, |(_, host)| host);
            format!("{scheme}://{host}{path}")
        }
        None => without_query.to_owned(),
    }
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Option<hmac::Hmac<sha2::Sha256>> {
    use hmac::Mac;
    // HMAC takes keys of any length, so this is `None` only in theory.
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).ok()?;
    for part in parts {
        mac.update(part);
    }
    Some(mac)
}

/// Lower-case hex HMAC-SHA256 of the concatenated `parts`, keyed with `key`.
pub(crate) fn hmac_sha256_hex(key: &[u8], parts: &[&[u8]]) -> String {
    use hmac::Mac;
    hmac_sha256(key, parts)
        .map(|mac| hex::encode(mac.finalize().into_bytes()))
        .unwrap_or_default()
}

/// Whether `expected` is the HMAC-SHA256 of the concatenated `parts`, compared in constant
/// time.
pub(crate) fn hmac_sha256_verify(key: &[u8], parts: &[&[u8]], expected: &[u8]) -> bool {
    use hmac::Mac;
    hmac_sha256(key, parts).is_some_and(|mac| mac.verify_slice(expected).is_ok())
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Whether `a` and `b` are equal, in time that depends only on their lengths.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
