//! Phone numbers are checked before any request leaves.

/// Whether `number` is E.164: `+`, then 8 to 15 digits, the first not `0` (the same rule
/// as `PHONE_NUMBER`).
pub fn is_e164(number: &str) -> bool {
    crate::config::is_e164(number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164_numbers_pass_and_others_do_not() {
        for good in ["+15550123", "+442071838750", "+123456789012345"] {
            assert!(is_e164(good), "{good}");
        }
        for bad in [
            "",
            "+",
            "15550123",
            "+1",
            "+12",
            "+1555012",
            "+05550123",
            "+1234567890123456",
            "+1 555 0123",
            "+1555-0123",
            "+1555012a",
            "tel:+15550123",
            "+١٢٣٤٥",
        ] {
            assert!(!is_e164(bad), "{bad}");
        }
    }
}
