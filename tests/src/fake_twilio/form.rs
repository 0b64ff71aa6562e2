//! `application/x-www-form-urlencoded` encoding and decoding.

/// Percent-encodes `s` for a form body or query (WHATWG urlencoded serializer): ASCII
/// alphanumerics and `*-._` stay, space becomes `+`, every other byte becomes `%XX`.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Decodes one form component: `+` becomes space, `%XX` becomes the byte (malformed escapes
/// are kept as they are), then the bytes are read as UTF-8 (lossily).
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Encodes `params` as a form body, in the given order (`a=1&b=x+y`).
pub fn form_encode(params: &[(&str, &str)]) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Decodes a form body into its `(name, value)` pairs, in order (repeated names kept).
pub fn form_decode(body: &str) -> Vec<(String, String)> {
    body.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let params = [
            ("Twiml", "<Response><Dial>+15550199</Dial></Response>"),
            ("Name", "Zoë & co = 100%"),
            ("StatusCallbackEvent", "initiated"),
            ("StatusCallbackEvent", "answered"),
        ];
        let body = form_encode(&params);
        assert!(
            body.contains("Twiml=%3CResponse%3E%3CDial%3E%2B15550199"),
            "{body}"
        );
        assert!(body.contains("Name=Zo%C3%AB+%26+co+%3D+100%25"), "{body}");
        let decoded = form_decode(&body);
        let expected: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        assert_eq!(decoded, expected);
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
