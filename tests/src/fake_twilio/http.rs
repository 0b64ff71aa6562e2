//! A minimal HTTP/1.1 client over loopback, for Twilio's webhook POSTs.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::form::form_encode;
use super::signature::signature;
use crate::DEFAULT_TIMEOUT;

/// What a failed exchange returns: status 0, no content type, the reason as the body.
fn failure(reason: String) -> (u16, String, String) {
    (0, String::new(), reason)
}

/// Splits `http://host:port/path?query` into (authority, request target).
fn split_http_url(url: &str) -> Result<(String, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("only http:// URLs are supported here, got {url}"))?;
    let (authority, target) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_owned()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_owned()),
    };
    let host = match authority.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => authority,
    };
    if !is_loopback_host(host) {
        return Err(format!(
            "refusing non-loopback host {host} (tests stay on 127.0.0.1)"
        ));
    }
    Ok((authority.to_owned(), target))
}

/// Whether `host` (as written in a URL authority) is a loopback address or `localhost`.
pub(crate) fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

/// Sends one HTTP/1.1 request (`Connection: close`) to a loopback `http://` URL and reads
/// the whole response, all within 5 s.
///
/// Returns `(status, content type, body)`. On a transport or parse failure (refused
/// connection, timeout, malformed response) returns status `0` with the reason as the
/// body, so a test's status assertion fails with a readable message.
pub async fn http_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, String) {
    match tokio::time::timeout(DEFAULT_TIMEOUT, exchange(method, url, headers, body)).await {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) => failure(format!("{method} {url}: {e}")),
        Err(_) => failure(format!(
            "{method} {url}: no complete response within {DEFAULT_TIMEOUT:?}"
        )),
    }
}

async fn exchange(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(u16, String, String), String> {
    let (authority, target) = split_http_url(url)?;
    let mut stream = TcpStream::connect(&authority)
        .await
        .map_err(|e| format!("connect to {authority}: {e}"))?;
    let mut head =
        format!("{method} {target} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
    let mut has_length = false;
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("content-length") {
            has_length = true;
        }
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !has_length {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    stream
        .write_all(&request)
        .await
        .map_err(|e| format!("write request: {e}"))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .await
        .map_err(|e| format!("read response: {e}"))?;
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Result<(u16, String, String), String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("response has no header end ({} bytes)", raw.len()))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let rest = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut content_type = String::new();
    let mut content_length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-type" => content_type = value.to_owned(),
            "content-length" => content_length = value.parse::<usize>().ok(),
            "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
            _ => {}
        }
    }
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(n) = content_length {
        rest.get(..n)
            .ok_or_else(|| format!("body shorter than Content-Length {n}"))?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok((
        status,
        content_type,
        String::from_utf8_lossy(&body).into_owned(),
    ))
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunk size line")?;
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size_hex = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| format!("bad chunk size {size_hex:?}"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = rest.get(..size).ok_or("truncated chunk")?;
        out.extend_from_slice(chunk);
        rest = rest.get(size + 2..).ok_or("truncated chunk end")?;
    }
}

/// POSTs `params` form-encoded (`application/x-www-form-urlencoded`) to a loopback
/// `http://` `url` with the extra `headers`. Returns `(status, content type, body)`; see
/// [`http_request`] for failures (status 0).
pub async fn post_form(
    url: &str,
    headers: &[(&str, &str)],
    params: &[(&str, &str)],
) -> (u16, String, String) {
    let body = form_encode(params);
    let mut all: Vec<(&str, &str)> = vec![
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("User-Agent", "TwilioProxy/1.1"),
    ];
    all.extend_from_slice(headers);
    http_request("POST", url, &all, body.as_bytes()).await
}

/// POSTs a Twilio-signed form webhook: sends to `{server_base}{path}`, with
/// `X-Twilio-Signature` computed over `{public_base}{path}` and `params` (the public URL is
/// what Twilio signs, §7.1). `path` starts with `/`.
pub async fn post_signed(
    server_base: &str,
    public_base: &str,
    path: &str,
    auth_token: &str,
    params: &[(&str, &str)],
) -> (u16, String, String) {
    let url = format!("{}{path}", server_base.trim_end_matches('/'));
    let public_url = format!("{}{path}", public_base.trim_end_matches('/'));
    let sig = signature(auth_token, &public_url, params);
    post_form(&url, &[("X-Twilio-Signature", &sig)], params).await
}

/// The voice webhook: [`post_signed`] to `/twilio/voice`.
pub async fn post_voice_webhook(
    server_base: &str,
    public_base: &str,
    auth_token: &str,
    params: &[(&str, &str)],
) -> (u16, String, String) {
    post_signed(
        server_base,
        public_base,
        "/twilio/voice",
        auth_token,
        params,
    )
    .await
}

/// The call status callback: [`post_signed`] to `/twilio/status`.
pub async fn post_status_callback(
    server_base: &str,
    public_base: &str,
    auth_token: &str,
    params: &[(&str, &str)],
) -> (u16, String, String) {
    post_signed(
        server_base,
        public_base,
        "/twilio/status",
        auth_token,
        params,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            split_http_url("http://127.0.0.1:8080/twilio/voice?x=1").expect("ok"),
            ("127.0.0.1:8080".to_owned(), "/twilio/voice?x=1".to_owned())
        );
        assert_eq!(
            split_http_url("http://localhost:1").expect("ok"),
            ("localhost:1".to_owned(), "/".to_owned())
        );
        assert!(split_http_url("http://example.com/x").is_err());
        assert!(split_http_url("https://127.0.0.1/x").is_err());
        assert!(is_loopback_host("[::1]"));
    }

    #[test]
    fn responses() {
        let raw = b"HTTP/1.1 200 OK\r\ncontent-type: text/xml\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
        assert_eq!(
            parse_response(raw).expect("parse"),
            (200, "text/xml".to_owned(), "hello world".to_owned())
        );
        let raw = b"HTTP/1.1 403 Forbidden\r\ncontent-length: 2\r\n\r\nno";
        assert_eq!(
            parse_response(raw).expect("parse"),
            (403, String::new(), "no".to_owned())
        );
    }

    #[tokio::test]
    async fn refused_connection_is_status_zero() {
        // Bind then drop to get a port nobody listens on.
        let port = {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            l.local_addr().expect("addr").port()
        };
        let (status, _, body) = post_form(&format!("http://127.0.0.1:{port}/x"), &[], &[]).await;
        assert_eq!(status, 0, "{body}");
    }
}
