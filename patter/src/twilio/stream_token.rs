//! Per-call stream tokens: the TwiML hands one to Twilio as a `<Parameter>`, and the stream
//! must present it in `start` before any engine session is opened.
//!
//! A token is `<expiry unix seconds>.<hex HMAC-SHA256(secret, "<CallSid>.<expiry>")>`: any
//! instance that shares the secret can check it, with no state between the webhook and the
//! WebSocket.

/// Why a stream token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not `<expiry>.<hex>`.
    #[error("malformed stream token")]
    Malformed,
    /// Past its expiry.
    #[error("expired stream token")]
    Expired,
    /// Not made for this call with this secret.
    #[error("stream token does not match the call")]
    Mismatch,
}

/// A token for `call_sid`, valid until `expires_at` (unix seconds).
pub fn issue(secret: &[u8], call_sid: &str, expires_at: u64) -> String {
    let mac = crate::util::hmac_sha256_hex(secret, &[signed(call_sid, expires_at).as_bytes()]);
    format!("{expires_at}.{mac}")
}

/// Checks `token` for `call_sid` at time `now`, in constant time.
pub fn verify(secret: &[u8], call_sid: &str, token: &str, now: u64) -> Result<(), TokenError> {
    let (expiry, mac) = token.split_once('.').ok_or(TokenError::Malformed)?;
    let expires_at: u64 = expiry.parse().map_err(|_| TokenError::Malformed)?;
    if mac.len() != 64 {
        return Err(TokenError::Malformed);
    }
    let given = hex::decode(mac).map_err(|_| TokenError::Malformed)?;
    if now > expires_at {
        return Err(TokenError::Expired);
    }
    let signed = signed(call_sid, expires_at);
    if crate::util::hmac_sha256_verify(secret, &[signed.as_bytes()], &given) {
        Ok(())
    } else {
        Err(TokenError::Mismatch)
    }
}

/// What a token's MAC covers.
fn signed(call_sid: &str, expires_at: u64) -> String {
    format!("{call_sid}.{expires_at}")
}
