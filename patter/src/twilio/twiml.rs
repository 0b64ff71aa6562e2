//! TwiML answers. Every value that reaches the XML is escaped here, in one place.

/// Escapes text for an XML attribute or element. Tab, newline and carriage return become
/// character references, so that an XML parser's attribute-value and end-of-line
/// normalisation cannot turn them into spaces; other control characters, and U+FFFE and
/// U+FFFF, cannot appear in XML at all, so they are dropped.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\u{FFFE}' | '\u{FFFF}' => {}
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

const HEADER: &str = r#"<?xml version="1.0" encoding="UTF-8"?>"#;

/// `<Connect><Stream url="…">` with one `<Parameter>` per pair: the bidirectional stream.
pub fn connect_stream(stream_url: &str, parameters: &[(&str, &str)]) -> String {
    let mut xml = format!(
        "{HEADER}<Response><Connect><Stream url=\"{}\">",
        escape(stream_url)
    );
    for (name, value) in parameters {
        xml.push_str(&format!(
            "<Parameter name=\"{}\" value=\"{}\"/>",
            escape(name),
            escape(value)
        ));
    }
    xml.push_str("</Stream></Connect></Response>");
    xml
}

/// Turns a call away politely: a short message, then hang up.
pub fn busy(message: &str) -> String {
    format!(
        "{HEADER}<Response><Say>{}</Say><Hangup/></Response>",
        escape(message)
    )
}

/// An empty answer (for status callbacks).
pub fn empty() -> String {
    format!("{HEADER}<Response/>")
}

/// `<Response><Dial>number</Dial></Response>`, for a transfer.
pub fn dial(number: &str) -> String {
    format!("<Response><Dial>{}</Dial></Response>", escape(number))
}

/// A voicemail: `message` spoken once, then a fetch of `done_url` (which hangs up), so the
/// server learns the message was played to its end.
pub fn voicemail(message: &str, done_url: &str) -> String {
    format!(
        "{HEADER}<Response><Say>{}</Say><Redirect method=\"POST\">{}</Redirect></Response>",
        escape(message),
        escape(done_url)
    )
}

/// Hang up now.
pub fn hang_up() -> String {
    format!("{HEADER}<Response><Hangup/></Response>")
}

/// An apology in Twilio's own voice, then a hang-up or a `<Dial>` to the fallback.
pub fn apology(message: &str, voice: Option<&str>, fallback: Option<&str>) -> String {
    let voice = voice
        .map(|v| format!(" voice=\"{}\"", escape(v)))
        .unwrap_or_default();
    let then = match fallback {
        Some(number) => format!("<Dial>{}</Dial>", escape(number)),
        None => "<Hangup/>".to_owned(),
    };
    format!(
        "{HEADER}<Response><Say{voice}>{}</Say>{then}</Response>",
        escape(message)
    )
}
