//! TwiML built from caller-supplied values: whatever the values, the document keeps exactly
//! its own markup (no injected tags, attributes or quotes) and carries no control character.
#![no_main]

use libfuzzer_sys::fuzz_target;
use patter::twilio::twiml;

const ENTITIES: &[&str] = &[
    "&amp;", "&lt;", "&gt;", "&quot;", "&apos;", "&#9;", "&#10;", "&#13;",
];

fn count(text: &str, c: char) -> usize {
    text.matches(c).count()
}

/// Only known entities, no control characters, no U+FFFE/U+FFFF.
fn clean(xml: &str) {
    assert!(!xml.chars().any(char::is_control), "{xml:?}");
    assert!(!xml.contains(['\u{FFFE}', '\u{FFFF}']), "{xml:?}");
    for (i, _) in xml.match_indices('&') {
        assert!(ENTITIES.iter().any(|e| xml[i..].starts_with(e)), "{xml:?}");
    }
}

fuzz_target!(|input: (String, Vec<(String, String)>, String)| {
    let (url, parameters, text) = input;
    let pairs: Vec<(&str, &str)> = parameters
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let xml = twiml::connect_stream(&url, &pairs);
    clean(&xml);
    // The XML declaration, Response, Connect, Stream (with its url), the closing tags, and
    // one <Parameter name value/> per pair: nothing else may add markup.
    let n = pairs.len();
    assert_eq!(count(&xml, '<'), 7 + n, "{xml:?}");
    assert_eq!(count(&xml, '>'), 7 + n, "{xml:?}");
    assert_eq!(count(&xml, '"'), 6 + 4 * n, "{xml:?}");

    let busy = twiml::busy(&text);
    clean(&busy);
    assert_eq!(count(&busy, '<'), 6, "{busy:?}");
    let dial = twiml::dial(&text);
    clean(&dial);
    assert_eq!(count(&dial, '<'), 4, "{dial:?}");
});
