//! A dialled call's settings, signed, in the URLs Twilio calls back (`?outbound=…`) and in
//! the stream's parameters: any instance that shares the stream secret can read and trust
//! them, with no state kept between dialling and the callbacks.
//!
//! The form is `<base64url(JSON)>.<hex HMAC-SHA256(secret, "outbound." + base64url)>`.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use super::MachineDetection;

/// The query parameter (and stream parameter) that carries the state.
pub(crate) const PARAMETER: &str = "outbound";
/// The most a state may take once encoded: it rides in URLs Twilio fetches.
pub(crate) const MAX_ENCODED_BYTES: usize = 3000;
const DOMAIN: &[u8] = b"outbound.";

/// What a dialled call carries with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DialState {
    /// Which dial this is: the dialling process's handle is found by it.
    pub(crate) id: String,
    /// A named agent, instead of the server's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) agent: Option<String>,
    /// The first message for this call, if it has its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) first_message: Option<String>,
    /// No first message on this call (JSON has no `Some(None)`, hence a flag).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) silent: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) variables: BTreeMap<String, String>,
    pub(crate) amd: MachineDetection,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) voicemail: Option<String>,
    /// Until when (unix seconds) the voice webhook may start the call.
    pub(crate) answer_by: u64,
}

/// Why a state was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum StateError {
    #[error("malformed dial state")]
    Malformed,
    #[error("dial state not signed by this deployment")]
    Mismatch,
}

impl DialState {
    /// The first message as `CallSetup` holds it: `Some(None)` for none at all.
    pub(crate) fn greeting(&self) -> Option<Option<String>> {
        if self.silent {
            Some(None)
        } else {
            self.first_message.clone().map(Some)
        }
    }

    /// The signed text.
    pub(crate) fn encode(&self, secret: &[u8]) -> String {
        // Serialising plain strings and maps cannot fail.
        let json = serde_json::to_vec(self).unwrap_or_default();
        let payload = URL_SAFE_NO_PAD.encode(json);
        let mac = crate::util::hmac_sha256_hex(secret, &[DOMAIN, payload.as_bytes()]);
        format!("{payload}.{mac}")
    }

    /// Checks the signature (in constant time), then reads the state.
    pub(crate) fn decode(secret: &[u8], text: &str) -> Result<DialState, StateError> {
        if text.len() > MAX_ENCODED_BYTES {
            return Err(StateError::Malformed);
        }
        let (payload, mac) = text.rsplit_once('.').ok_or(StateError::Malformed)?;
        let given = hex::decode(mac).map_err(|_| StateError::Malformed)?;
        if !crate::util::hmac_sha256_verify(secret, &[DOMAIN, payload.as_bytes()], &given) {
            return Err(StateError::Mismatch);
        }
        let json = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| StateError::Malformed)?;
        serde_json::from_slice(&json).map_err(|_| StateError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> DialState {
        DialState {
            id: "d1".into(),
            agent: Some("reminder".into()),
            first_message: None,
            silent: true,
            variables: BTreeMap::from([("name".into(), "Ada & \"Bob\"".into())]),
            amd: MachineDetection::HumanFirst,
            voicemail: Some("Call us back.".into()),
            answer_by: 1_900_000_000,
        }
    }

    #[test]
    fn a_state_round_trips_and_is_url_safe() {
        let text = state().encode(b"secret");
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
            "{text}"
        );
        assert_eq!(DialState::decode(b"secret", &text), Ok(state()));
    }

    #[test]
    fn a_state_signed_with_another_secret_or_changed_is_refused() {
        let text = state().encode(b"secret");
        assert_eq!(
            DialState::decode(b"other", &text),
            Err(StateError::Mismatch)
        );
        let (payload, mac) = text.rsplit_once('.').unwrap_or_default();
        let mut other = state();
        other.agent = Some("admin".into());
        let forged = other.encode(b"x");
        let forged_payload = forged.split('.').next().unwrap_or_default();
        assert_eq!(
            DialState::decode(b"secret", &format!("{forged_payload}.{mac}")),
            Err(StateError::Mismatch)
        );
        for bad in ["", "abc", &format!("{payload}.zz"), &"a".repeat(4000)] {
            assert!(DialState::decode(b"secret", bad).is_err(), "{bad}");
        }
    }
}
