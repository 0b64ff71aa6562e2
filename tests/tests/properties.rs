//! Property tests of the parsers and builders that see untrusted input: the Media Streams
//! parser, the Realtime event parser, the base64 checks, TwiML escaping, Twilio signatures,
//! stream tokens and prompt placeholders. 256 cases each, so the suite stays fast.

use std::collections::BTreeMap;

use base64::Engine as _;
use patter::engine::openai_realtime::wire::parse_event;
use patter::twilio::media::{self, Inbound, Media};
use patter::twilio::{signature, stream_token, twiml};
use proptest::prelude::*;
use serde_json::Value;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        // Failures are reported with their minimal input; nothing is written to the tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Any string, control characters and astral planes included (`any::<String>()` leaves
/// control characters out).
fn text(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), 0..max).prop_map(String::from_iter)
}

const EVENTS: &[&str] = &["connected", "start", "media", "mark", "dtmf", "stop"];

const KEYS: &[&str] = &[
    "event",
    "type",
    "sequenceNumber",
    "streamSid",
    "start",
    "callSid",
    "accountSid",
    "customParameters",
    "media",
    "track",
    "chunk",
    "timestamp",
    "payload",
    "mark",
    "name",
    "dtmf",
    "digit",
    "stop",
    "response",
    "id",
    "status",
    "delta",
    "item_id",
    "response_id",
    "call_id",
    "arguments",
    "error",
    "code",
    "message",
    "transcript",
];

const WORDS: &[&str] = &[
    "connected",
    "start",
    "media",
    "mark",
    "dtmf",
    "stop",
    "inbound",
    "outbound",
    "AAAA",
    "//8A",
    "AA==",
    "AB=C",
    "5",
    "-5",
    "1e3",
    "99999999999999999999",
    "session.updated",
    "response.created",
    "response.output_audio.delta",
    "input_audio_buffer.speech_started",
    "response.function_call_arguments.done",
    "response.done",
    "conversation.item.input_audio_transcription.completed",
    "response.output_audio_transcript.done",
    "error",
    "session_expired",
    "{\"a\":1}",
];

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop::sample::select(WORDS).prop_map(Value::from),
        text(24).prop_map(Value::from),
    ]
}

/// JSON values built from the keys and words the parsers look for.
fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..6).prop_map(|kv| {
                Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            }),
        ]
    })
}

/// A JSON object tagged with `tag_key` (a known tag or any string), with JSON-ish fields.
fn tagged_object(tag_key: &'static str) -> impl Strategy<Value = Value> {
    let tag = prop_oneof![
        prop::sample::select(WORDS).prop_map(Value::from),
        text(12).prop_map(Value::from),
        json_leaf(),
    ];
    (
        tag,
        prop::collection::vec((prop::sample::select(KEYS), json_value()), 0..6),
    )
        .prop_map(move |(tag, fields)| {
            let mut object: serde_json::Map<String, Value> =
                fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            object.insert(tag_key.to_owned(), tag);
            Value::Object(object)
        })
}

// ---------------------------------------------------------------------------------------
// Media Streams parser
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    #[test]
    fn media_parse_never_panics_on_any_string(s in text(256)) {
        let _ = media::parse(&s);
    }

    #[test]
    fn media_parse_never_panics_on_json_objects_and_ignores_layout(v in tagged_object("event")) {
        let compact_text = v.to_string();
        let compact = media::parse(&compact_text).ok();
        let pretty = serde_json::to_string_pretty(&v).expect("serialise");
        prop_assert_eq!(&compact, &media::parse(&pretty).ok());
        if let Some(Inbound::Media { media }) = compact {
            let _ = media.timestamp_ms();
            let _ = media::looks_like_base64(&media.payload);
            let _ = media::decoded_len(&media.payload);
        }
    }

    #[test]
    fn an_unknown_event_name_parses_as_unknown(
        name in text(16).prop_filter("not a known event", |n| !EVENTS.contains(&n.as_str())),
        extra in json_value(),
    ) {
        let frame = serde_json::json!({ "event": name, "extra": extra });
        let frame = frame.to_string();
        prop_assert_eq!(media::parse(&frame).ok(), Some(Inbound::Unknown));
    }

    #[test]
    fn timestamps_are_parsed_exactly_or_not_at_all(n in any::<u64>(), junk in text(8)) {
        let media = |t: String| Media { track: None, timestamp: Some(t.into()), payload: "".into() };
        prop_assert_eq!(media(n.to_string()).timestamp_ms(), Some(n));
        prop_assert_eq!(media(format!(" {n}\t")).timestamp_ms(), Some(n));
        let with_junk = format!("{n}{junk}");
        let expected = with_junk.trim().parse::<u64>().ok();
        prop_assert_eq!(media(with_junk).timestamp_ms(), expected);
        prop_assert_eq!(media(format!("-{n}")).timestamp_ms(), None);
    }
}

// ---------------------------------------------------------------------------------------
// Realtime event parser
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    #[test]
    fn parse_event_never_panics_on_any_string(s in text(256)) {
        let _ = parse_event(&s);
    }

    #[test]
    fn parse_event_accepts_every_json_value(v in json_value()) {
        prop_assert!(parse_event(&v.to_string()).is_ok(), "{}", v);
    }

    #[test]
    fn parse_event_accepts_every_typed_object(v in tagged_object("type")) {
        prop_assert!(parse_event(&v.to_string()).is_ok(), "{}", v);
    }
}

// ---------------------------------------------------------------------------------------
// Base64
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_base64_check_agrees_with_the_decoder(s in "[A-Za-z0-9+/=]{0,12}|[A-Za-z0-9+/]{2,10}={0,3}") {
        let decoded = base64::engine::general_purpose::STANDARD.decode(&s);
        prop_assert_eq!(media::looks_like_base64(&s), !s.is_empty() && decoded.is_ok(), "{:?}", s);
        if let Ok(bytes) = decoded
            && !s.is_empty()
        {
            prop_assert_eq!(media::decoded_len(&s), bytes.len());
        }
    }

    #[test]
    fn encoded_audio_is_accepted_with_its_length(bytes in prop::collection::vec(any::<u8>(), 1..400)) {
        let encoded = base64::engine::general_purpose::STANDARD.encode(&bytes);
        prop_assert!(media::looks_like_base64(&encoded));
        prop_assert_eq!(media::decoded_len(&encoded), bytes.len());
    }

    #[test]
    fn the_base64_check_refuses_any_text_the_decoder_refuses(s in text(16)) {
        let decodes = base64::engine::general_purpose::STANDARD.decode(&s).is_ok();
        prop_assert_eq!(media::looks_like_base64(&s), !s.is_empty() && decodes);
    }
}

// ---------------------------------------------------------------------------------------
// TwiML
// ---------------------------------------------------------------------------------------

/// What an XML parser reads back: the text without the characters XML cannot carry.
fn xml_safe(text: &str) -> String {
    text.chars()
        .filter(|&c| {
            matches!(c, '\t' | '\n' | '\r')
                || !(c.is_control() || c == '\u{FFFE}' || c == '\u{FFFF}')
        })
        .collect()
}

const ENTITIES: &[&str] = &[
    "&amp;", "&lt;", "&gt;", "&quot;", "&apos;", "&#9;", "&#10;", "&#13;",
];

proptest! {
    #![proptest_config(config())]

    #[test]
    fn escape_leaves_no_raw_metacharacter(s in text(64)) {
        let out = twiml::escape(&s);
        for bad in ['<', '>', '"', '\''] {
            prop_assert!(!out.contains(bad), "raw {:?} in {:?}", bad, out);
        }
        prop_assert!(!out.chars().any(char::is_control), "control character in {:?}", out);
        for (i, _) in out.match_indices('&') {
            prop_assert!(
                ENTITIES.iter().any(|e| out[i..].starts_with(e)),
                "bare & at {} in {:?}", i, out
            );
        }
    }

    #[test]
    fn connect_stream_is_well_formed_and_round_trips(
        url in text(32),
        parameters in prop::collection::vec((text(16), text(32)), 0..6),
    ) {
        let pairs: Vec<(&str, &str)> =
            parameters.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let xml = twiml::connect_stream(&url, &pairs);
        let doc = match roxmltree::Document::parse(&xml) {
            Ok(doc) => doc,
            Err(e) => return Err(TestCaseError::fail(format!("not well-formed ({e}): {xml:?}"))),
        };
        let response = doc.root_element();
        let elements: Vec<&str> =
            response.descendants().map(|n| n.tag_name().name()).collect();
        let mut expected = vec!["Response", "Connect", "Stream"];
        expected.extend(std::iter::repeat_n("Parameter", parameters.len()));
        prop_assert_eq!(elements, expected);
        let stream = response.descendants().find(|n| n.has_tag_name("Stream")).expect("Stream");
        let expected_url = xml_safe(&url);
        prop_assert_eq!(stream.attribute("url"), Some(expected_url.as_str()));
        let read: Vec<(String, String)> = stream
            .children()
            .map(|p| {
                (
                    p.attribute("name").unwrap_or("<none>").to_owned(),
                    p.attribute("value").unwrap_or("<none>").to_owned(),
                )
            })
            .collect();
        let sent: Vec<(String, String)> =
            parameters.iter().map(|(k, v)| (xml_safe(k), xml_safe(v))).collect();
        prop_assert_eq!(read, sent);
    }
}

// ---------------------------------------------------------------------------------------
// Signatures and stream tokens
// ---------------------------------------------------------------------------------------

fn url() -> impl Strategy<Value = String> {
    prop_oneof![
        "(https?|wss?)://[a-z]{1,10}(\\.[a-z]{2,5})?(:[0-9]{1,5})?(/[A-Za-z0-9._~'-]{0,8}){0,3}(\\?[a-z]{1,5}=[A-Za-z0-9']{0,5}(&[a-z]{1,5}=[A-Za-z0-9']{0,5}){0,3})?",
        text(48).prop_filter("no bodySHA256", |u| !u.contains("bodySHA256")),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn validate_never_panics(
        token in text(16),
        url in text(64),
        params in prop::collection::vec((text(8), text(16)), 0..4),
        body in prop::option::of(prop::collection::vec(any::<u8>(), 0..32)),
        sig in prop_oneof![text(40), "[A-Za-z0-9+/=]{0,40}"],
    ) {
        let _ = signature::validate(&token, &url, &params, body.as_deref(), &sig);
    }

    #[test]
    fn a_signed_request_validates_and_any_changed_byte_fails(
        token in text(16),
        url in url(),
        params in prop::collection::btree_map(text(8), "[ -~]{1,12}", 1..5),
        pick in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        delta in 1u8..95,
    ) {
        let params: Vec<(String, String)> = params.into_iter().collect();
        let sig = signature::sign(&token, &signature::signed_string(&url, &params));
        prop_assert!(signature::validate(&token, &url, &params, None, &sig));

        let mut changed = params.clone();
        let value = &mut changed[pick.index(params.len())].1;
        let mut bytes = value.clone().into_bytes();
        let i = at.index(bytes.len());
        // Another printable ASCII byte, so the value stays a string.
        bytes[i] = b' ' + (bytes[i] - b' ' + delta) % 95;
        *value = String::from_utf8(bytes).expect("ASCII");
        prop_assert!(!signature::validate(&token, &url, &changed, None, &sig));
    }

    #[test]
    fn stream_tokens_round_trip_and_bind_the_call(
        secret in prop::collection::vec(any::<u8>(), 0..48),
        call_sid in text(40),
        other_sid in text(40),
        expires_at in any::<u64>(),
        before in any::<u64>(),
    ) {
        let token = stream_token::issue(&secret, &call_sid, expires_at);
        let now = expires_at.saturating_sub(before);
        prop_assert_eq!(stream_token::verify(&secret, &call_sid, &token, now), Ok(()));
        prop_assert_eq!(stream_token::verify(&secret, &call_sid, &token, expires_at), Ok(()));
        if other_sid != call_sid {
            prop_assert_eq!(
                stream_token::verify(&secret, &other_sid, &token, now),
                Err(stream_token::TokenError::Mismatch)
            );
        }
        if let Some(later) = expires_at.checked_add(1) {
            prop_assert_eq!(
                stream_token::verify(&secret, &call_sid, &token, later),
                Err(stream_token::TokenError::Expired)
            );
        }
    }

    #[test]
    fn stream_token_verify_never_panics(token in text(80), call_sid in text(16), now in any::<u64>()) {
        let _ = stream_token::verify(b"secret", &call_sid, &token, now);
    }
}

// ---------------------------------------------------------------------------------------
// Prompt placeholders
// ---------------------------------------------------------------------------------------

fn values() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(prop_oneof!["[a-z_]{1,4}", text(4)], text(16), 0..6)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fill_placeholders_never_panics(
        template in prop_oneof![text(64), "[a-z_{} ]{0,48}"],
        values in values(),
    ) {
        let _ = patter::call::fill_placeholders(&template, &values);
    }

    #[test]
    fn fill_placeholders_is_identity_without_braces(
        template in text(64).prop_map(|t| t.replace('{', "")),
        values in values(),
    ) {
        prop_assert_eq!(patter::call::fill_placeholders(&template, &values), template);
    }

    #[test]
    fn a_value_is_inserted_literally(name in "[A-Za-z0-9_]{1,8}", value in text(32), other in text(16)) {
        let values: BTreeMap<String, String> =
            [(name.clone(), value.clone()), ("other".to_owned(), other)].into();
        let template = format!("<{{{name}}}>");
        prop_assert_eq!(
            patter::call::fill_placeholders(&template, &values),
            format!("<{value}>")
        );
    }
}
