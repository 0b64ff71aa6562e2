//! Phone numbers are checked before any request leaves.

/// Whether `number` is E.164: `+`, then 2 to 15 digits, the first not `0`.
pub fn is_e164(number: &str) -> bool {
    let Some(digits) = number.strip_prefix('+') else {
        return false;
    };
    (2..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164_numbers_pass_and_others_do_not() {
        for good in ["+15550123", "+442071838750", "+12", "+123456789012345"] {
            assert!(is_e164(good), "{good}");
        }
        for bad in [
            "",
            "+",
            "15550123",
            "+1",
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
