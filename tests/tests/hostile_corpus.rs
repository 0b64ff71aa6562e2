//! A table-driven corpus of malformed and hostile inputs, each with its expected outcome:
//! the Media Streams parser, the Realtime event parser, the base64 checks, TwiML building,
//! prompt placeholders, signatures and stream tokens, and end-to-end inputs through a live
//! call (frames for another stream, events out of order, a flood of marks, hostile caller
//! ids and custom parameters).
//!
//! Each table row is one input; `CORPUS_SIZE` adds them up and is checked by
//! `the_corpus_has_at_least_forty_inputs`.

mod common;

use std::collections::{BTreeMap, HashMap};

use common::{AUTH_TOKEN, Call, Harness, PUBLIC_URL, WAIT, account_sid, mulaw_b64};
use patter::engine::EngineEvent;
use patter::engine::openai_realtime::wire::parse_event;
use patter::twilio::media::{self, Dtmf, Inbound, Mark, Media, Start};
use patter::twilio::{signature, stream_token, twiml};
use patter::{AgentSpec, EndReason};
use patter_tests::fake_openai::ConnHandle;
use patter_tests::fake_twilio::{self, MediaStream};
use patter_tests::twilio_sid;
use serde_json::json;

// ---------------------------------------------------------------------------------------
// Media Streams parser
// ---------------------------------------------------------------------------------------

fn media(payload: &str, timestamp: Option<&str>, track: Option<&str>) -> Option<Inbound<'static>> {
    Some(Inbound::Media {
        media: Media {
            track: track.map(|t| t.to_owned().into()),
            timestamp: timestamp.map(|t| t.to_owned().into()),
            payload: payload.to_owned().into(),
        },
    })
}

fn start(stream_sid: &str, call_sid: &str, params: &[(&str, &str)]) -> Option<Inbound<'static>> {
    Some(Inbound::Start {
        start: Start {
            stream_sid: stream_sid.to_owned(),
            call_sid: call_sid.to_owned(),
            account_sid: String::new(),
            custom_parameters: params
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        },
    })
}

/// `(what, frame, parse result)`; `None` means the frame is rejected (and then ignored by a
/// call, see `call_bad_input.rs`).
fn media_stream_corpus() -> Vec<(&'static str, String, Option<Inbound<'static>>)> {
    let deep = format!(
        r#"{{"event":"stop","x":{}{}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let big_payload = "A".repeat(1 << 20);
    vec![
        ("empty frame", String::new(), None),
        ("whitespace", " \n\t ".into(), None),
        (
            "truncated JSON",
            r#"{"event":"media","media":{"payload":"AAAA""#.into(),
            None,
        ),
        ("truncated mid-key", r#"{"eve"#.into(), None),
        ("JSON null", "null".into(), None),
        ("JSON array", r#"["media"]"#.into(), None),
        ("JSON string", r#""media""#.into(), None),
        ("object without event", r#"{"media":{"payload":"AAAA"}}"#.into(), None),
        ("empty object", "{}".into(), None),
        (
            "numeric timestamp (Twilio sends strings)",
            r#"{"event":"media","media":{"payload":"AAAA","timestamp":5}}"#.into(),
            None,
        ),
        (
            "numeric payload",
            r#"{"event":"media","media":{"payload":5}}"#.into(),
            None,
        ),
        ("media without body", r#"{"event":"media"}"#.into(), None),
        (
            "media without payload",
            r#"{"event":"media","media":{"timestamp":"5"}}"#.into(),
            None,
        ),
        (
            "media body is a string",
            r#"{"event":"media","media":"AAAA"}"#.into(),
            None,
        ),
        (
            "extra keys and huge counters are accepted",
            r#"{"event":"media","sequenceNumber":"99999999999999999999999999","streamSid":"MZx","extra":{"deep":[1,2,{"a":null}]},"media":{"track":"inbound","chunk":"18446744073709551616","timestamp":"5","payload":"AAAA","more":true}}"#.into(),
            media("AAAA", Some("5"), Some("inbound")),
        ),
        (
            "huge integer in an unknown key",
            r#"{"event":"media","n":123456789012345678901234567890,"media":{"payload":"AAAA"}}"#.into(),
            media("AAAA", None, None),
        ),
        (
            "float out of f64 range in an unknown key (skipped, never converted)",
            r#"{"event":"media","n":1e400,"media":{"payload":"AAAA"}}"#.into(),
            media("AAAA", None, None),
        ),
        (
            "float out of f64 range in a known body",
            r#"{"event":"media","media":{"payload":"AAAA","timestamp":1e400}}"#.into(),
            None,
        ),
        (
            "timestamp beyond u64 (kept as text)",
            r#"{"event":"media","media":{"payload":"AAAA","timestamp":"18446744073709551616"}}"#
                .into(),
            media("AAAA", Some("18446744073709551616"), None),
        ),
        (
            "payload with an escaped quote (parsed; refused later as not base64)",
            r#"{"event":"media","media":{"payload":"AA\"A"}}"#.into(),
            media("AA\"A", None, None),
        ),
        (
            "NUL in the payload",
            r#"{"event":"media","media":{"payload":"AA\u0000A"}}"#.into(),
            media("AA\0A", None, None),
        ),
        (
            "lone surrogate escape",
            r#"{"event":"media","media":{"payload":"\ud800"}}"#.into(),
            None,
        ),
        (
            "1 MiB payload",
            format!(r#"{{"event":"media","media":{{"payload":"{big_payload}"}}}}"#),
            media(&big_payload, None, None),
        ),
        (
            "deep nesting in an unknown key (skipped without recursion)",
            deep,
            Some(Inbound::Stop {}),
        ),
        (
            "a known body key with the wrong shape, whatever the event",
            r#"{"event":"stop","media":"AAAA"}"#.into(),
            None,
        ),
        (
            "unknown event",
            r#"{"event":"transcription","transcription":{"text":"hi"}}"#.into(),
            Some(Inbound::Unknown),
        ),
        (
            "event names are case-sensitive",
            r#"{"event":"START","start":{"streamSid":"MZ1","callSid":"CA1"}}"#.into(),
            Some(Inbound::Unknown),
        ),
        ("empty event name", r#"{"event":""}"#.into(), Some(Inbound::Unknown)),
        ("event is null", r#"{"event":null}"#.into(), None),
        ("numeric event (not a variant index)", r#"{"event":5}"#.into(), None),
        (
            "numeric event with a media body",
            r#"{"event":2,"media":{"payload":"AAAA"}}"#.into(),
            None,
        ),
        ("boolean event", r#"{"event":true}"#.into(), None),
        ("event is an object", r#"{"event":{"a":1}}"#.into(), None),
        (
            "event given twice",
            r#"{"event":"stop","event":"media","media":{"payload":"AAAA"}}"#.into(),
            None,
        ),
        (
            "start without callSid",
            r#"{"event":"start","start":{"streamSid":"MZ1"}}"#.into(),
            None,
        ),
        (
            "start with a non-string custom parameter",
            r#"{"event":"start","start":{"streamSid":"MZ1","callSid":"CA1","customParameters":{"a":1}}}"#.into(),
            None,
        ),
        (
            "start with null customParameters",
            r#"{"event":"start","start":{"streamSid":"MZ1","callSid":"CA1","customParameters":null}}"#.into(),
            None,
        ),
        (
            "start with hostile parameter values",
            r#"{"event":"start","start":{"streamSid":"MZ1","callSid":"CA1","customParameters":{"caller":"<\"&>\u0007\n","":""}}}"#.into(),
            start("MZ1", "CA1", &[("caller", "<\"&>\u{7}\n"), ("", "")]),
        ),
        ("mark without body", r#"{"event":"mark"}"#.into(), None),
        (
            "mark without name",
            r#"{"event":"mark","mark":{}}"#.into(),
            None,
        ),
        (
            "mark with a null name",
            r#"{"event":"mark","mark":{"name":null}}"#.into(),
            None,
        ),
        (
            "mark with an empty name",
            r#"{"event":"mark","mark":{"name":""}}"#.into(),
            Some(Inbound::Mark {
                mark: Mark { name: "".into() },
            }),
        ),
        (
            "dtmf with a multi-character digit",
            r#"{"event":"dtmf","dtmf":{"digit":"12#"}}"#.into(),
            Some(Inbound::Dtmf {
                dtmf: Dtmf {
                    digit: "12#".into(),
                },
            }),
        ),
        ("stop without body", r#"{"event":"stop"}"#.into(), Some(Inbound::Stop {})),
        (
            "stop with a garbage body",
            r#"{"event":"stop","stop":"garbage"}"#.into(),
            Some(Inbound::Stop {}),
        ),
        (
            "connected with odd fields",
            r#"{"event":"connected","protocol":7,"version":null}"#.into(),
            Some(Inbound::Connected {}),
        ),
        ("byte-order mark", "\u{feff}{\"event\":\"stop\"}".into(), None),
        (
            "trailing garbage",
            r#"{"event":"stop"} {"event":"stop"}"#.into(),
            None,
        ),
    ]
}

#[test]
fn media_stream_frames_parse_to_their_expected_outcome() {
    for (what, frame, expected) in media_stream_corpus() {
        let got = media::parse(&frame).ok();
        assert_eq!(got, expected, "{what}: {}", shown(&frame));
    }
}

/// `(timestamp text, timestamp_ms)`.
const TIMESTAMPS: &[(&str, Option<u64>)] = &[
    ("-5", None),
    ("1e3", None),
    ("99999999999999999999", None),
    ("18446744073709551615", Some(u64::MAX)),
    ("", None),
    ("   ", None),
    (" 42 ", Some(42)),
    ("+7", Some(7)),
    ("5.0", None),
    ("0x10", None),
    ("NaN", None),
    ("\u{663}", None),
    ("007", Some(7)),
];

#[test]
fn media_timestamps_are_numbers_or_nothing() {
    for &(text, expected) in TIMESTAMPS {
        let m = Media {
            track: None,
            timestamp: Some(text.into()),
            payload: "".into(),
        };
        assert_eq!(m.timestamp_ms(), expected, "timestamp {text:?}");
    }
    let none = Media {
        track: None,
        timestamp: None,
        payload: "".into(),
    };
    assert_eq!(none.timestamp_ms(), None);
}

// ---------------------------------------------------------------------------------------
// Realtime event parser
// ---------------------------------------------------------------------------------------

fn realtime_corpus() -> Vec<(&'static str, String, Option<EngineEvent<'static>>)> {
    let audio = |delta: &str| EngineEvent::Audio {
        response_id: "".into(),
        item_id: "".into(),
        audio: delta.to_owned().into(),
    };
    vec![
        ("empty", "".into(), None),
        ("truncated", r#"{"type":"session.updated""#.into(), None),
        ("JSON null", "null".into(), Some(EngineEvent::Ignored)),
        ("JSON array", "[1,2]".into(), Some(EngineEvent::Ignored)),
        ("no type", r#"{"event_id":"e"}"#.into(), Some(EngineEvent::Ignored)),
        ("numeric type", r#"{"type":5}"#.into(), Some(EngineEvent::Ignored)),
        (
            "type with trailing space",
            r#"{"type":"session.updated "}"#.into(),
            Some(EngineEvent::Ignored),
        ),
        (
            "beta event name",
            r#"{"type":"response.audio.delta","delta":"AAAA"}"#.into(),
            Some(EngineEvent::Ignored),
        ),
        (
            "audio delta that is not a string",
            r#"{"type":"response.output_audio.delta","delta":[1,2,3]}"#.into(),
            Some(EngineEvent::Ignored),
        ),
        (
            "audio delta without ids",
            r#"{"type":"response.output_audio.delta","delta":"AAAA"}"#.into(),
            Some(audio("AAAA")),
        ),
        (
            "audio delta that is not base64 (refused later by the session)",
            r#"{"type":"response.output_audio.delta","delta":"\"},{\"x"}"#.into(),
            Some(audio("\"},{\"x")),
        ),
        (
            "error without body",
            r#"{"type":"error"}"#.into(),
            Some(EngineEvent::Error {
                code: None,
                message: "".into(),
                fatal: false,
            }),
        ),
        (
            "error body is a string",
            r#"{"type":"error","error":"boom"}"#.into(),
            Some(EngineEvent::Error {
                code: None,
                message: "".into(),
                fatal: false,
            }),
        ),
        (
            "fatal code in an array is not fatal",
            r#"{"type":"error","error":{"code":["session_expired"],"message":"m"}}"#.into(),
            Some(EngineEvent::Error {
                code: None,
                message: "m".into(),
                fatal: false,
            }),
        ),
        (
            "fatal code",
            r#"{"type":"error","error":{"code":"session_expired","message":"m"}}"#.into(),
            Some(EngineEvent::Error {
                code: Some("session_expired".into()),
                message: "m".into(),
                fatal: true,
            }),
        ),
        (
            "fatal codes are case-sensitive",
            r#"{"type":"error","error":{"code":"SESSION_EXPIRED"}}"#.into(),
            Some(EngineEvent::Error {
                code: Some("SESSION_EXPIRED".into()),
                message: "".into(),
                fatal: false,
            }),
        ),
        (
            "response.done with a null response",
            r#"{"type":"response.done","response":null}"#.into(),
            Some(EngineEvent::ResponseDone {
                response_id: "".into(),
                status: "".into(),
                usage: None,
            }),
        ),
        (
            "response.done whose usage has fields of the wrong type (counted 0)",
            r#"{"type":"response.done","response":{"id":"r","usage":{"input_token_details":"lots","output_token_details":{"audio_tokens":-3,"text_tokens":1.5}}}}"#.into(),
            Some(EngineEvent::ResponseDone {
                response_id: "r".into(),
                status: "".into(),
                usage: Some(patter::engine::Usage::default()),
            }),
        ),
        (
            "function call with object arguments (dispatched as invalid arguments)",
            r#"{"type":"response.function_call_arguments.done","call_id":"c","name":"t","arguments":{"a":1}}"#.into(),
            Some(EngineEvent::FunctionCall {
                response_id: "".into(),
                call_id: "c".into(),
                name: "t".into(),
                arguments: "".into(),
            }),
        ),
        (
            "response.created without a response",
            r#"{"type":"response.created"}"#.into(),
            Some(EngineEvent::ResponseStarted {
                response_id: "".into(),
            }),
        ),
        (
            "lone surrogate",
            r#"{"type":"response.output_audio_transcript.done","transcript":"\udc00"}"#.into(),
            None,
        ),
        (
            "deep nesting (skipped without recursion)",
            format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)),
            Some(EngineEvent::Ignored),
        ),
        (
            "unbalanced deep nesting",
            format!("{}{}", "[".repeat(100_000), "]".repeat(99_999)),
            None,
        ),
        (
            "float out of f64 range in a key patter does not read",
            r#"{"type":"session.updated","x":1e999}"#.into(),
            Some(EngineEvent::Ready),
        ),
        (
            "float out of f64 range where patter reads a string",
            r#"{"type":"response.output_audio.delta","delta":1e999}"#.into(),
            None,
        ),
    ]
}

#[test]
fn realtime_events_parse_to_their_expected_outcome() {
    for (what, raw, expected) in realtime_corpus() {
        let got = parse_event(&raw).ok();
        assert_eq!(got, expected, "{what}: {}", shown(&raw));
    }
}

// ---------------------------------------------------------------------------------------
// Base64 checks
// ---------------------------------------------------------------------------------------

/// `(text, looks_like_base64, decoded_len when it does)`.
const BASE64: &[(&str, bool, usize)] = &[
    ("AAAA", true, 3),
    ("//8A", true, 3),
    ("AA==", true, 1),
    ("AAA=", true, 2),
    ("", false, 0),
    ("A", false, 0),
    ("AAAAA", false, 0),
    ("A===", false, 0),
    ("====", false, 0),
    ("AB=C", false, 0),
    ("=AAA", false, 0),
    ("AB==", false, 0),
    ("AAB=", false, 0),
    ("AA A", false, 0),
    ("AA\"A", false, 0),
    ("AA\nA", false, 0),
    ("-_-_", false, 0),
    ("\u{c0}\u{c0}", false, 0),
    ("AAAA====", false, 0),
];

#[test]
fn base64_checks_agree_with_a_real_decoder() {
    use base64::Engine as _;
    for &(text, plausible, len) in BASE64 {
        assert_eq!(media::looks_like_base64(text), plausible, "{text:?}");
        let decoded = base64::engine::general_purpose::STANDARD.decode(text);
        assert_eq!(
            plausible,
            !text.is_empty() && decoded.is_ok(),
            "{text:?}: the check and the decoder disagree"
        );
        if plausible {
            assert_eq!(media::decoded_len(text), len, "{text:?}");
            assert_eq!(decoded.expect("decodes").len(), len, "{text:?}");
        }
    }
    let frame = mulaw_b64(160, 0x7f);
    assert!(media::looks_like_base64(&frame));
    assert_eq!(media::decoded_len(&frame), 160);
}

// ---------------------------------------------------------------------------------------
// TwiML
// ---------------------------------------------------------------------------------------

/// What an XML parser reads back from an escaped value: the value without the characters
/// XML cannot carry.
fn xml_safe(text: &str) -> String {
    text.chars()
        .filter(|&c| {
            matches!(c, '\t' | '\n' | '\r')
                || !(c.is_control() || c == '\u{FFFE}' || c == '\u{FFFF}')
        })
        .collect()
}

const HOSTILE_VALUES: &[&str] = &[
    r#"+1555"/><Parameter name="call_token" value="forged"#,
    "</Parameter></Stream></Connect><Say>pwned</Say><Connect><Stream url=\"wss://evil\">",
    "&amp; &lt; &#60; &unknown; &",
    "]]><![CDATA[x]]>",
    "<!-- comment --><?pi x?>",
    "<!DOCTYPE x [<!ENTITY e \"boom\">]>&e;",
    "'single' \"double\"",
    "\u{0}\u{1}\u{8}\u{b}\u{c}\u{1b}[31m\u{7f}\u{85}\u{9f}",
    "tab\there\nnewline\r\ncrlf\rcr",
    "\u{FFFE}\u{FFFF}\u{FFFD}",
    "\u{202E}evil\u{200B}\u{FEFF}",
    "emoji \u{1F4DE} and \u{10FFFF}",
    "",
];

/// The `<Stream>` url and `(name, value)` of each `<Parameter>`, read by a real XML parser,
/// after checking that the document has exactly the expected elements.
fn read_connect_stream(xml: &str, parameters: usize) -> (String, Vec<(String, String)>) {
    let doc = roxmltree::Document::parse(xml)
        .unwrap_or_else(|e| panic!("not well-formed XML ({e}): {xml}"));
    let response = doc.root_element();
    assert_eq!(response.tag_name().name(), "Response", "{xml}");
    let elements: Vec<&str> = response
        .descendants()
        .filter(|n| n.is_element())
        .map(|n| n.tag_name().name())
        .collect();
    let mut expected = vec!["Response", "Connect", "Stream"];
    expected.extend(std::iter::repeat_n("Parameter", parameters));
    assert_eq!(elements, expected, "injected elements: {xml}");
    assert!(
        response.descendants().all(|n| n.is_element()),
        "injected text, comments or processing instructions: {xml}"
    );
    let stream = response
        .descendants()
        .find(|n| n.has_tag_name("Stream"))
        .expect("Stream");
    assert_eq!(stream.attributes().len(), 1, "{xml}");
    let url = stream.attribute("url").expect("url").to_owned();
    let params = stream
        .children()
        .filter(|n| n.is_element())
        .map(|p| {
            assert_eq!(p.attributes().len(), 2, "injected attributes: {xml}");
            (
                p.attribute("name").expect("name").to_owned(),
                p.attribute("value").expect("value").to_owned(),
            )
        })
        .collect();
    (url, params)
}

#[test]
fn twiml_with_hostile_values_stays_well_formed_and_values_round_trip() {
    for value in HOSTILE_VALUES {
        let xml = twiml::connect_stream(
            "wss://agent.example.com/twilio/stream",
            &[("caller", value), (value, "v"), ("call_token", "t")],
        );
        let (url, params) = read_connect_stream(&xml, 3);
        assert_eq!(url, "wss://agent.example.com/twilio/stream");
        assert_eq!(
            params,
            [
                ("caller".to_owned(), xml_safe(value)),
                (xml_safe(value), "v".to_owned()),
                ("call_token".to_owned(), "t".to_owned())
            ],
            "value {value:?}"
        );
        // A hostile stream URL cannot break out of its attribute either.
        let xml = twiml::connect_stream(value, &[]);
        let (url, _) = read_connect_stream(&xml, 0);
        assert_eq!(url, xml_safe(value));
    }
}

#[test]
fn busy_and_dial_escape_their_text() {
    for value in HOSTILE_VALUES {
        for xml in [twiml::busy(value), twiml::dial(value)] {
            let doc = roxmltree::Document::parse(&xml)
                .unwrap_or_else(|e| panic!("not well-formed XML ({e}): {xml}"));
            let elements: Vec<&str> = doc
                .root_element()
                .descendants()
                .filter(|n| n.is_element())
                .map(|n| n.tag_name().name())
                .collect();
            assert!(
                elements == ["Response", "Say", "Hangup"] || elements == ["Response", "Dial"],
                "{elements:?}: {xml}"
            );
            let text_node = doc
                .root_element()
                .first_element_child()
                .expect("Say or Dial");
            assert_eq!(
                text_node.text().unwrap_or_default(),
                xml_safe(value),
                "{xml}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Prompt placeholders
// ---------------------------------------------------------------------------------------

/// `(template, expected)` with `caller` = `{callee}}{` and `callee` = `$0 \{x}`.
const PLACEHOLDERS: &[(&str, &str)] = &[
    ("{caller}", "{callee}}{"),
    ("{callee}", "$0 \\{x}"),
    ("{caller}{callee}", "{callee}}{$0 \\{x}"),
    ("{{caller}}", "{{callee}}{}"),
    ("{", "{"),
    ("}", "}"),
    ("{}", "{}"),
    ("{caller", "{caller"),
    ("caller}", "caller}"),
    ("{ caller }", "{ caller }"),
    ("{call er}", "{call er}"),
    ("{unknown}", "{unknown}"),
    ("{\u{e9}}", "{\u{e9}}"),
    ("\u{e9}{caller}\u{fc}", "\u{e9}{callee}}{\u{fc}"),
    ("{{{", "{{{"),
    ("{caller}}}", "{callee}}{}}"),
    ("{caller-x}", "{caller-x}"),
];

#[test]
fn placeholders_fill_once_and_never_expand_values() {
    let values: BTreeMap<String, String> = [
        ("caller".to_owned(), "{callee}}{".to_owned()),
        ("callee".to_owned(), "$0 \\{x}".to_owned()),
    ]
    .into();
    for &(template, expected) in PLACEHOLDERS {
        assert_eq!(
            patter::call::fill_placeholders(template, &values),
            expected,
            "template {template:?}"
        );
    }
    // Long runs of braces stay linear enough to finish and are left as they are.
    let braces = "{".repeat(20_000);
    assert_eq!(patter::call::fill_placeholders(&braces, &values), braces);
}

// ---------------------------------------------------------------------------------------
// Signatures and stream tokens
// ---------------------------------------------------------------------------------------

const TOKEN: &str = "12345";
const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";

fn params() -> Vec<(String, String)> {
    [
        ("CallSid", "CA1234567890ABCDE"),
        ("Caller", "+12349013030"),
        ("Digits", "1234"),
        ("From", "+12349013030"),
        ("To", "+18005551212"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect()
}

fn good_signature() -> String {
    signature::sign(TOKEN, &signature::signed_string(URL, &params()))
}

/// `(what, url, signature, body, valid)`.
type SignatureCase = (
    &'static str,
    &'static str,
    String,
    Option<&'static [u8]>,
    bool,
);

fn signature_corpus() -> Vec<SignatureCase> {
    let good = good_signature();
    let long_sig = "A".repeat(10_000);
    vec![
        ("the genuine signature", URL, good.clone(), None, true),
        (
            "surrounding whitespace is trimmed",
            URL,
            format!(" {good}\n"),
            None,
            true,
        ),
        ("empty signature", URL, String::new(), None, false),
        ("not base64", URL, "not base64!!".into(), None, false),
        (
            "base64 of the wrong length",
            URL,
            "AAAA".into(),
            None,
            false,
        ),
        ("a huge signature", URL, long_sig, None, false),
        (
            "signature with a flipped bit",
            URL,
            flip_first_char(&good),
            None,
            false,
        ),
        (
            "another URL",
            "https://mycompany.com/myapp.php",
            good.clone(),
            None,
            false,
        ),
        ("empty URL", "", good.clone(), None, false),
        (
            "unterminated IPv6 host",
            "https://[::1",
            good.clone(),
            None,
            false,
        ),
        (
            "colons everywhere",
            "https://a:b@c:d:e/::?:=:",
            good.clone(),
            None,
            false,
        ),
        (
            "multibyte authority",
            "https://\u{fc}:\u{fc}/\u{fc}",
            good.clone(),
            None,
            false,
        ),
        (
            "bodySHA256 without a body",
            "https://mycompany.com/x?bodySHA256=abc",
            good.clone(),
            None,
            false,
        ),
        (
            "empty bodySHA256",
            "https://mycompany.com/x?bodySHA256=",
            good.clone(),
            Some(b"{}"),
            false,
        ),
    ]
}

#[test]
fn signature_checks_refuse_junk_without_panicking() {
    let good = good_signature();
    for (what, url, sig, body, expected) in signature_corpus() {
        assert_eq!(
            signature::validate(TOKEN, url, &params(), body, &sig),
            expected,
            "{what}"
        );
    }
    // Junk parameters: validated as given, no panic.
    let junk: Vec<(String, String)> = vec![
        ("\0".into(), "\u{feff}".into()),
        (String::new(), String::new()),
        ("a".into(), "\u{10FFFF}".repeat(100)),
    ];
    assert!(!signature::validate(TOKEN, URL, &junk, None, &good));
    let junk_sig = signature::sign(TOKEN, &signature::signed_string(URL, &junk));
    assert!(signature::validate(TOKEN, URL, &junk, None, &junk_sig));
    // An empty auth token is a key like any other.
    let empty_key = signature::sign("", &signature::signed_string(URL, &params()));
    assert!(signature::validate("", URL, &params(), None, &empty_key));
    assert!(!signature::validate(
        TOKEN,
        URL,
        &params(),
        None,
        &empty_key
    ));
}

fn flip_first_char(sig: &str) -> String {
    let mut chars: Vec<char> = sig.chars().collect();
    chars[0] = if chars[0] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

const SECRET: &[u8] = b"secret";

/// `(what, token, verify's answer for CA1 at time 500)`.
fn token_corpus() -> Vec<(&'static str, String, Result<(), stream_token::TokenError>)> {
    use stream_token::TokenError::{Malformed, Mismatch};
    let good = stream_token::issue(SECRET, "CA1", 1000);
    let (_, mac) = good.split_once('.').expect("token");
    vec![
        ("genuine", good.clone(), Ok(())),
        ("empty", String::new(), Err(Malformed)),
        ("just a dot", ".".into(), Err(Malformed)),
        ("no dot", "1000".into(), Err(Malformed)),
        ("words", "abc.def".into(), Err(Malformed)),
        ("negative expiry", format!("-1.{mac}"), Err(Malformed)),
        (
            "expiry beyond u64",
            format!("18446744073709551616.{mac}"),
            Err(Malformed),
        ),
        ("short MAC", format!("1000.{}", &mac[..62]), Err(Malformed)),
        (
            "non-hex MAC",
            format!("1000.{}", "z".repeat(64)),
            Err(Malformed),
        ),
        (
            "multibyte MAC of 64 bytes",
            format!("1000.{}", "\u{e9}".repeat(32)),
            Err(Malformed),
        ),
        (
            "MAC for another expiry",
            format!("2000.{mac}"),
            Err(Mismatch),
        ),
        ("two dots", format!("1000.{mac}.x"), Err(Malformed)),
    ]
}

#[test]
fn stream_tokens_refuse_junk() {
    use stream_token::TokenError::{Expired, Mismatch};
    let secret = SECRET;
    let good = stream_token::issue(secret, "CA1", 1000);
    for (what, token, expected) in token_corpus() {
        assert_eq!(
            stream_token::verify(secret, "CA1", &token, 500),
            expected,
            "{what}"
        );
    }
    assert_eq!(
        stream_token::verify(secret, "CA2", &good, 500),
        Err(Mismatch)
    );
    assert_eq!(
        stream_token::verify(b"other", "CA1", &good, 500),
        Err(Mismatch)
    );
    assert_eq!(
        stream_token::verify(secret, "CA1", &good, 1001),
        Err(Expired)
    );
}

// ---------------------------------------------------------------------------------------
// End to end, through a live call
// ---------------------------------------------------------------------------------------

fn agent() -> AgentSpec {
    AgentSpec::new("Caller {caller}. Note {note}.")
}

async fn assert_relays(call: &Call, conn: &ConnHandle, timestamp_ms: u64, seed: u8) {
    let audio = mulaw_b64(160, seed);
    call.stream
        .send_media(timestamp_ms, &audio)
        .await
        .expect("media");
    conn.wait_for_events(
        |events| {
            events
                .iter()
                .any(|e| e["type"] == "input_audio_buffer.append" && e["audio"] == audio)
        },
        WAIT,
    )
    .await
    .expect("caller audio relayed");
}

/// The caller hangs up; the call ends exactly once and leaves no session.
async fn hang_up(h: &mut Harness, call: &Call, conn: &ConnHandle) -> patter::CallSummary {
    call.stream.send_stop().await.expect("stop");
    let end = h.next_end().await;
    assert_eq!(end.reason, EndReason::StreamStopped);
    conn.wait_closed(WAIT).await.expect("engine closed");
    assert_eq!(h.active_calls().await, 0);
    assert!(h.ends.try_recv().is_err(), "on_call_end fired twice");
    assert!(
        call.stream.violations().is_empty(),
        "{:?}",
        call.stream.violations()
    );
    h.engine.assert_no_schema_violations();
    end
}

/// patter reads `streamSid` only from `start`: frames naming another stream are handled as
/// this stream's, and everything patter sends names this stream.
#[tokio::test]
async fn frames_for_another_stream_sid_are_handled_as_this_streams() {
    let mut h = Harness::start(agent()).await;
    let call = h.call(201).await;
    let conn = h.engine_conn(0).await;
    let audio = mulaw_b64(160, 0x42);
    let foreign = json!({
        "event": "media",
        "sequenceNumber": "2",
        "streamSid": "MZ-someone-else",
        "media": {"track": "inbound", "chunk": "1", "timestamp": "20", "payload": audio}
    });
    call.stream
        .send_text(&foreign.to_string())
        .await
        .expect("foreign");
    let append = conn
        .wait_for_event("input_audio_buffer.append", WAIT)
        .await
        .expect("relayed");
    assert_eq!(append["audio"], audio);
    conn.send(patter_tests::fake_openai::audio_delta(
        "resp_f",
        "item_f",
        &mulaw_b64(160, 1),
    ));
    call.stream.wait_for_marks(1, WAIT).await.expect("mark");
    for message in call.stream.received() {
        assert_eq!(message["streamSid"], call.stream_sid);
    }
    hang_up(&mut h, &call, &conn).await;
}

#[tokio::test]
async fn a_mark_before_any_audio_is_ignored() {
    let mut h = Harness::start(agent()).await;
    let call = h.call(202).await;
    let conn = h.engine_conn(0).await;
    call.stream.send_mark("p1").await.expect("mark");
    call.stream.send_mark("").await.expect("mark");
    assert_relays(&call, &conn, 20, 2).await;
    assert!(call.stream.received().is_empty());
    hang_up(&mut h, &call, &conn).await;
}

#[tokio::test]
async fn a_second_stop_changes_nothing() {
    let mut h = Harness::start(agent()).await;
    let call = h.call(203).await;
    let conn = h.engine_conn(0).await;
    call.stream.send_stop().await.expect("stop");
    // The server may already be closing: the second stop may or may not be written.
    let _ = call.stream.send_stop().await;
    let end = h.next_end().await;
    assert_eq!(end.reason, EndReason::StreamStopped);
    conn.wait_closed(WAIT).await.expect("engine closed");
    call.stream.wait_closed(WAIT).await.expect("stream closed");
    assert_eq!(h.active_calls().await, 0);
    assert!(h.ends.try_recv().is_err(), "on_call_end fired twice");
    assert_eq!(h.engine.connections(), 1);
}

#[tokio::test]
async fn a_second_start_is_ignored() {
    let mut h = Harness::start(agent()).await;
    let call = h.call(204).await;
    let conn = h.engine_conn(0).await;
    let other_sid = twilio_sid("CA", 999);
    call.stream
        .send_start(
            &twilio_sid("MZ", 999),
            &other_sid,
            &account_sid(),
            &[("caller", "+19995550000")],
        )
        .await
        .expect("second start");
    assert_relays(&call, &conn, 20, 4).await;
    assert_eq!(h.engine.connections(), 1, "no second engine session");
    let end = hang_up(&mut h, &call, &conn).await;
    assert_eq!(end.context.call_id(), call.call_sid);
    assert_eq!(end.context.caller(), "+15550111");
}

#[tokio::test]
async fn a_flood_of_unknown_marks_is_survived() {
    let mut h = Harness::start(agent()).await;
    let call = h.call(205).await;
    let conn = h.engine_conn(0).await;
    for i in 0..10_000u32 {
        call.stream
            .send_mark(&format!("bogus-{i}"))
            .await
            .expect("mark");
    }
    assert_relays(&call, &conn, 20, 5).await;
    // Real marks still work after the flood.
    conn.send(patter_tests::fake_openai::audio_delta(
        "resp_m",
        "item_m",
        &mulaw_b64(160, 6),
    ));
    call.stream.wait_for_marks(1, WAIT).await.expect("mark");
    hang_up(&mut h, &call, &conn).await;
}

/// The voice webhook for `from`, then the stream with the TwiML's parameters (read by a
/// real XML parser) plus `extra` custom parameters.
async fn call_from(h: &Harness, n: u128, from: &str, extra: &[(&str, &str)]) -> Call {
    let call_sid = twilio_sid("CA", n);
    let account = account_sid();
    let (status, _, xml) = fake_twilio::post_voice_webhook(
        &h.base,
        PUBLIC_URL,
        AUTH_TOKEN,
        &[
            ("CallSid", &call_sid),
            ("AccountSid", &account),
            ("From", from),
            ("To", "+15550100"),
            ("Direction", "inbound"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{xml}");
    let (url, params) = read_connect_stream(&xml, 4);
    let by_name: HashMap<&str, &str> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        by_name.get("caller").copied(),
        Some(xml_safe(from).as_str())
    );
    let stream = MediaStream::connect_signed_as(
        &format!("{}/twilio/stream", h.base.replace("http", "ws")),
        &url,
        AUTH_TOKEN,
    )
    .await
    .expect("stream connects");
    let stream_sid = twilio_sid("MZ", n);
    let mut pairs: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    pairs.extend_from_slice(extra);
    stream.send_connected().await.expect("connected");
    stream
        .send_start(&stream_sid, &call_sid, &account, &pairs)
        .await
        .expect("start");
    Call {
        stream,
        call_sid,
        stream_sid,
        params,
    }
}

#[tokio::test]
async fn a_caller_id_with_xml_metacharacters_is_escaped_and_arrives_intact() {
    let mut h = Harness::start(agent()).await;
    let from = r#"+1555<Say>"hi"</Say>&amp;'"#;
    let call = call_from(&h, 206, from, &[("note", "none")]).await;
    let conn = h.engine_conn(0).await;
    let instructions = conn.events_of_type("session.update")[0]["session"]["instructions"]
        .as_str()
        .expect("instructions")
        .to_owned();
    assert_eq!(instructions, format!("Caller {from}. Note none."));
    let end = hang_up(&mut h, &call, &conn).await;
    assert_eq!(end.context.caller(), from);
    assert_eq!(end.context.parameter("caller"), Some(from));
}

#[tokio::test]
async fn control_characters_never_reach_the_prompt() {
    let mut h = Harness::start(agent()).await;
    let from = "+1555\t0111\r\n\u{7}";
    let note = "line1\nline2\u{0}\u{1b}[31m\u{7f}\u{85}\u{2028}end";
    let call = call_from(&h, 207, from, &[("note", note)]).await;
    let conn = h.engine_conn(0).await;
    let instructions = conn.events_of_type("session.update")[0]["session"]["instructions"]
        .as_str()
        .expect("instructions")
        .to_owned();
    assert!(
        !instructions.chars().any(char::is_control),
        "{instructions:?}"
    );
    assert_eq!(
        instructions,
        "Caller +15550111. Note line1line2[31m\u{2028}end."
    );
    // The call's context keeps what Twilio sent (the TwiML dropped only BEL).
    let end = hang_up(&mut h, &call, &conn).await;
    assert_eq!(end.context.caller(), "+1555\t0111\r\n");
    assert_eq!(end.context.parameter("note"), Some(note));
}

#[tokio::test]
async fn a_huge_custom_parameter_is_cut_in_the_prompt() {
    let mut h = Harness::start(agent()).await;
    let note = "n".repeat(50_000);
    let call = call_from(&h, 208, "+15550111", &[("note", &note)]).await;
    let conn = h.engine_conn(0).await;
    let instructions = conn.events_of_type("session.update")[0]["session"]["instructions"]
        .as_str()
        .expect("instructions")
        .to_owned();
    assert_eq!(
        instructions,
        format!("Caller +15550111. Note {}.", "n".repeat(256))
    );
    hang_up(&mut h, &call, &conn).await;
}

// ---------------------------------------------------------------------------------------

fn shown(text: &str) -> String {
    let head: String = text.chars().take(120).collect();
    format!("{head:?}{}", if text.len() > 120 { "…" } else { "" })
}

/// End-to-end inputs above: foreign streamSid, mark before audio, stop twice, start twice,
/// the mark flood, the hostile caller id, control characters, a huge parameter.
const END_TO_END_INPUTS: usize = 8;

#[test]
fn the_corpus_has_at_least_forty_inputs() {
    let size = media_stream_corpus().len()
        + TIMESTAMPS.len()
        + realtime_corpus().len()
        + BASE64.len()
        + HOSTILE_VALUES.len()
        + PLACEHOLDERS.len()
        + signature_corpus().len()
        + token_corpus().len()
        + END_TO_END_INPUTS;
    assert!(size >= 40, "{size}");
    println!("hostile corpus: {size} inputs");
}
