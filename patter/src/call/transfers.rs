//! Where `transfer_call` may send a caller: named destinations (`sales`, `billing`), and,
//! only when explicitly allowed, numbers matching allow-patterns.
//!
//! The model picks a destination by name from an `enum` in the tool's schema, so a caller
//! cannot talk it into dialling a premium-rate number: the numbers are configuration, not
//! conversation. A free-form number is checked against the patterns after the model
//! answers; refused, it reaches the model as an error and no transfer is requested.
//! Without destinations or patterns the tool is not offered at all.

use std::collections::BTreeMap;

use futures_util::future::BoxFuture;
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::warn;

use crate::config::is_e164;
use crate::tool::{Invocation, Tool, ToolDefinition, ToolError, ToolOutput};

/// A rule for numbers a transfer may dial: `+`, then digits or `X` (any one digit), and
/// optionally a final `*` (any further digits). `+1555XXXXXXX` or `+44*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberPattern(String);

impl NumberPattern {
    /// Reads a pattern; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Self, TransferError> {
        let text = text.trim();
        let body = text.strip_prefix('+').unwrap_or("");
        let body = body.strip_suffix('*').unwrap_or(body);
        if !text.starts_with('+')
            || body.is_empty()
            || !body
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'X' || b == b'x')
        {
            return Err(TransferError(format!(
                "{text:?} is not a number pattern: write + then digits or X (any digit), \
                 optionally ending in * (any further digits), like +1555XXXXXXX or +44*"
            )));
        }
        Ok(NumberPattern(text.to_ascii_uppercase()))
    }

    /// Whether `number` (E.164) matches.
    pub fn matches(&self, number: &str) -> bool {
        if !is_e164(number) {
            return false;
        }
        let pattern = self.0.as_bytes();
        let (pattern, open) = match pattern.split_last() {
            Some((b'*', rest)) => (rest, true),
            _ => (pattern, false),
        };
        let number = number.as_bytes();
        let fits = if open {
            number.len() >= pattern.len()
        } else {
            number.len() == pattern.len()
        };
        fits && pattern
            .iter()
            .zip(number)
            .all(|(p, n)| *p == b'X' || p == n)
    }
}

impl std::fmt::Display for NumberPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A transfer setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TransferError(String);

/// Where `transfer_call` may send a caller: a name from a list (the tool's schema is their
/// `enum`), and numbers only through explicit allow-patterns (see "Safe transfers" in the
/// crate docs).
///
/// ```
/// use patter::Transfers;
///
/// let transfers = Transfers::new()
///     .destination("sales", "+15550111")?
///     .destination("billing", "+15550122")?
///     .allow("+1555*")?;
/// assert_eq!(transfers.number_of("sales"), Some("+15550111"));
/// assert!(transfers.allows("+15550199"));
/// assert!(!transfers.allows("+19005550199"));
/// # Ok::<(), patter::TransferError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transfers {
    destinations: BTreeMap<String, String>,
    allowed: Vec<NumberPattern>,
}

impl Transfers {
    /// No destinations: `transfer_call` is not offered.
    pub fn new() -> Self {
        Transfers::default()
    }

    /// Adds a destination: a name the model chooses (`[A-Za-z0-9_-]`, up to 32) and the
    /// E.164 number it dials.
    pub fn destination(
        mut self,
        name: impl Into<String>,
        number: impl Into<String>,
    ) -> Result<Self, TransferError> {
        let (name, number) = (name.into(), number.into().trim().to_owned());
        if name.is_empty()
            || name.len() > 32
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(TransferError(format!(
                "{name:?} is not a destination name: use up to 32 of A-Z, a-z, 0-9, _ and -"
            )));
        }
        if !is_e164(&number) {
            return Err(TransferError(format!(
                "the number of destination {name:?} must be E.164, like +15550100"
            )));
        }
        self.destinations.insert(name, number);
        Ok(self)
    }

    /// Allows transfers to numbers the model gives, when they match `pattern` (see
    /// [`NumberPattern`]).
    pub fn allow(mut self, pattern: &str) -> Result<Self, TransferError> {
        self.allowed.push(NumberPattern::parse(pattern)?);
        Ok(self)
    }

    /// Reads `name=+number` pairs separated by commas (`PATTER_TRANSFER_DESTINATIONS`).
    pub fn with_destinations_from(mut self, text: &str) -> Result<Self, TransferError> {
        for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((name, number)) = pair.split_once('=') else {
                return Err(TransferError(format!(
                    "{pair:?} is not name=+number (like sales=+15550111)"
                )));
            };
            self = self.destination(name.trim(), number.trim())?;
        }
        Ok(self)
    }

    /// Reads patterns separated by commas (`PATTER_TRANSFER_ALLOW`).
    pub fn with_allowed_from(mut self, text: &str) -> Result<Self, TransferError> {
        for pattern in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            self = self.allow(pattern)?;
        }
        Ok(self)
    }

    /// Destinations and patterns `#[patter::agent]` checked when it compiled.
    #[doc(hidden)]
    pub fn __checked(destinations: &[(&str, &str)], allowed: &[&str]) -> Self {
        let mut transfers = Transfers::new();
        for (name, number) in destinations {
            transfers = transfers
                .clone()
                .destination(*name, *number)
                .unwrap_or(transfers);
        }
        transfers
            .clone()
            .with_allowed_from(&allowed.join(","))
            .unwrap_or(transfers)
    }

    /// Whether `transfer_call` has nowhere to go (it is then not offered).
    pub fn is_empty(&self) -> bool {
        self.destinations.is_empty() && self.allowed.is_empty()
    }

    /// The number of a destination.
    pub fn number_of(&self, name: &str) -> Option<&str> {
        self.destinations.get(name).map(String::as_str)
    }

    /// Whether a number the model gives may be dialled.
    pub fn allows(&self, number: &str) -> bool {
        self.allowed.iter().any(|p| p.matches(number))
    }

    /// The destinations, then the patterns, taken from `other` where it has any.
    pub(crate) fn overridden_by(&self, other: &Transfers) -> Transfers {
        Transfers {
            destinations: if other.destinations.is_empty() {
                self.destinations.clone()
            } else {
                other.destinations.clone()
            },
            allowed: if other.allowed.is_empty() {
                self.allowed.clone()
            } else {
                other.allowed.clone()
            },
        }
    }

    /// The `transfer_call` tool, if there is anywhere to go.
    pub(crate) fn tool(&self) -> Option<TransferTool> {
        (!self.is_empty()).then(|| TransferTool::new(self.clone()))
    }
}

/// `transfer_call` for one agent's [`Transfers`].
pub(crate) struct TransferTool {
    definition: ToolDefinition,
    transfers: Transfers,
}

/// The model's arguments.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Arguments {
    #[serde(default)]
    destination: Option<String>,
    #[serde(default)]
    number: Option<String>,
}

impl TransferTool {
    fn new(transfers: Transfers) -> Self {
        let names: Vec<&str> = transfers.destinations.keys().map(String::as_str).collect();
        let mut properties = serde_json::Map::new();
        let mut required = Vec::new();
        if !names.is_empty() {
            properties.insert(
                "destination".to_owned(),
                json!({
                    "type": "string",
                    "enum": names,
                    "description": "Who to transfer the caller to."
                }),
            );
        }
        if !transfers.allowed.is_empty() {
            let patterns: Vec<String> = transfers.allowed.iter().map(|p| p.to_string()).collect();
            properties.insert(
                "number".to_owned(),
                json!({
                    "type": "string",
                    "description": format!(
                        "Only when the caller asks for a particular number: it in E.164 format. \
                         Numbers matching {} may be dialled; X is any digit, * any further digits.",
                        patterns.join(", ")
                    )
                }),
            );
        }
        if transfers.allowed.is_empty() {
            required.push("destination");
        } else if names.is_empty() {
            required.push("number");
        }
        let description = if names.is_empty() {
            "Transfer the caller to another phone number. Tell the caller first.".to_owned()
        } else {
            format!(
                "Transfer the caller to {}. Tell the caller first.",
                names.join(", ")
            )
        };
        TransferTool {
            definition: ToolDefinition {
                name: "transfer_call".to_owned(),
                description,
                parameters: json!({
                    "type": "object",
                    "properties": Value::Object(properties),
                    "required": required,
                    "additionalProperties": false
                }),
            },
            transfers,
        }
    }

    fn arguments(arguments: &str) -> Result<Arguments, ToolError> {
        serde_json::from_str(arguments)
            .map_err(|e| ToolError::InvalidArguments(format!("transfer_call: {e}")))
    }

    /// The number to dial, or why not.
    fn number(&self, args: Arguments) -> Result<String, ToolError> {
        let names = || {
            self.transfers
                .destinations
                .keys()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        };
        match (args.destination, args.number) {
            (Some(name), _) => self
                .transfers
                .number_of(name.trim())
                .map(str::to_owned)
                .ok_or_else(|| {
                    ToolError::msg(format!(
                        "there is no destination {name:?}; the destinations are: {}",
                        names()
                    ))
                }),
            (None, Some(number)) => {
                let number = number.trim().to_owned();
                if self.transfers.allowed.is_empty() {
                    return Err(ToolError::msg(format!(
                        "transfers go to named destinations only: {}",
                        names()
                    )));
                }
                if !is_e164(&number) {
                    return Err(ToolError::msg(format!(
                        "{number:?} is not a phone number in E.164 format (like +15550199); ask \
                         the caller for the full number with its country code"
                    )));
                }
                if !self.transfers.allows(&number) {
                    // The number is the caller's words, not the agent's: not logged.
                    warn!("transfer to a number outside the allow-patterns refused");
                    return Err(ToolError::msg(
                        "this agent may not transfer calls to that number; tell the caller \
                         and offer what you can do instead",
                    ));
                }
                Ok(number)
            }
            (None, None) => Err(ToolError::InvalidArguments(
                "transfer_call: give a destination".to_owned(),
            )),
        }
    }
}

impl Tool for TransferTool {
    fn definition(&self) -> &ToolDefinition {
        &self.definition
    }

    fn check_arguments(&self, arguments: &str) -> Result<(), ToolError> {
        TransferTool::arguments(arguments).map(|_| ())
    }

    fn call<'a>(
        &'a self,
        invocation: Invocation<'a>,
    ) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            let number = self.number(TransferTool::arguments(invocation.arguments)?)?;
            Ok(ToolOutput::text(r#"{"ok":true,"status":"transferring"}"#).then_transfer(number))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_digit_by_digit_with_an_open_end() {
        let exact = NumberPattern::parse("+1555XXXXXXX").expect("valid");
        assert!(exact.matches("+15550100199"));
        assert!(!exact.matches("+155501001990"), "one digit too many");
        assert!(!exact.matches("+19005550100"));
        let open = NumberPattern::parse("+44*").expect("valid");
        assert!(open.matches("+442071234567"));
        assert!(!open.matches("+4"), "not E.164");
        assert!(!open.matches("+14155550100"));
        for bad in ["44*", "+", "+*", "+1-555", "+1555 0100", "+1*5"] {
            assert!(NumberPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn destinations_and_patterns_are_checked_when_set() {
        assert!(Transfers::new().destination("sales", "5550100").is_err());
        assert!(
            Transfers::new()
                .destination("sales desk", "+15550100")
                .is_err()
        );
        let from_env = Transfers::new()
            .with_destinations_from("sales=+15550111, billing = +15550122")
            .and_then(|t| t.with_allowed_from("+1555*"))
            .expect("valid");
        assert_eq!(from_env.number_of("billing"), Some("+15550122"));
        assert!(from_env.allows("+15550199"));
        assert!(
            Transfers::new()
                .with_destinations_from("sales:+15550111")
                .is_err()
        );
    }
}
