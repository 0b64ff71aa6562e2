//! A fake of Twilio's Calls REST API (twilio.com/docs/voice/api/call-resource) on loopback.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::form::form_decode;
use crate::signal::Signal;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One request received by [`FakeTwilioRest`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestRequest {
    /// HTTP method (`POST` for the Calls endpoints).
    pub method: String,
    /// Request path, e.g. `/2010-04-01/Accounts/AC…/Calls/CA….json`.
    pub path: String,
    /// The `{AccountSid}` path segment (empty if the path did not match a Calls endpoint).
    pub account_sid: String,
    /// The `{CallSid}` of an update; for a create (`Calls.json`), the sid the fake assigned.
    pub call_sid: String,
    /// Whether this was a create (`POST …/Calls.json`) rather than an update.
    pub created: bool,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The form body's `(name, value)` pairs in order (repeated names kept).
    pub form: Vec<(String, String)>,
}

impl RestRequest {
    /// The first value of form parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of form parameter `name`, in order.
    pub fn params(&self, name: &str) -> Vec<&str> {
        self.form
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The `(user, password)` of a `Basic` `Authorization` header.
    pub fn basic_auth(&self) -> Option<(String, String)> {
        let encoded = self.authorization.as_deref()?.strip_prefix("Basic ")?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (user, pass) = text.split_once(':')?;
        Some((user.to_owned(), pass.to_owned()))
    }
}

struct RestState {
    requests: Mutex<Vec<RestRequest>>,
    status_override: Mutex<Option<u16>>,
    next_sid: AtomicU64,
    signal: Signal,
}

/// An HTTP server on `127.0.0.1` emulating Twilio's Calls endpoints:
///
/// * `POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json` (update: `Twiml`, `Url`,
///   `Status`, …) answers `200` with a JSON Call resource `{"sid", "account_sid", "status",
///   …}`; `status` is the posted `Status` if any, else `in-progress`.
/// * `POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}/Recordings.json` (start a call
///   recording) answers `201` with a recording resource;
/// * `POST /2010-04-01/Accounts/{AccountSid}/Calls.json` (create) answers `201` with a new
///   `CA…` sid and status `queued`.
/// * A request without an `Authorization` header gets Twilio's `401` (code 20003); any other
///   path gets `404` (code 20404). [`FakeTwilioRest::set_status`] forces a status for the
///   following responses (an error status gets Twilio's error JSON).
///
/// Every request is recorded, answered or not. Dropping the fake stops the server.
pub struct FakeTwilioRest {
    addr: SocketAddr,
    state: Arc<RestState>,
    task: JoinHandle<()>,
}

impl Drop for FakeTwilioRest {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeTwilioRest {
    /// Starts the fake on `127.0.0.1:0`. Panics if it cannot bind (an environment problem).
    pub async fn start() -> FakeTwilioRest {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("FakeTwilioRest: bind 127.0.0.1:0");
        let addr = listener
            .local_addr()
            .expect("FakeTwilioRest: local address of the listener");
        let state = Arc::new(RestState {
            requests: Mutex::new(Vec::new()),
            status_override: Mutex::new(None),
            next_sid: AtomicU64::new(1),
            signal: Signal::new(),
        });
        let app = Router::new().fallback(handle).with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeTwilioRest { addr, state, task }
    }

    /// `http://127.0.0.1:PORT`: use it as the Twilio API base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RestRequest> {
        lock(&self.state.requests).clone()
    }

    /// Waits until at least `n` requests have been received; returns all of them.
    pub async fn wait_for_request(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<RestRequest>, String> {
        self.state
            .signal
            .wait_for(timeout, || {
                let reqs = self.requests();
                (reqs.len() >= n).then_some(reqs)
            })
            .await
            .ok_or_else(|| {
                format!(
                    "FakeTwilioRest: expected {n} request(s) within {timeout:?}, got {}: {:?}",
                    self.requests().len(),
                    self.requests()
                        .iter()
                        .map(|r| format!("{} {}", r.method, r.path))
                        .collect::<Vec<_>>()
                )
            })
    }

    /// Forces the HTTP status of the following responses (e.g. `500`, `404`, `429`); a
    /// 2xx status keeps the normal Call JSON body.
    pub fn set_status(&self, status: u16) {
        *lock(&self.state.status_override) = Some(status);
    }

    /// Back to the default statuses (200 update, 201 create).
    pub fn reset_status(&self) {
        *lock(&self.state.status_override) = None;
    }
}

/// Parses `/2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}/Recordings.json` (start a
/// call recording).
fn parse_recordings_path(path: &str) -> Option<(String, String)> {
    let rest = path.strip_prefix("/2010-04-01/Accounts/")?;
    let (account, rest) = rest.split_once('/')?;
    let call = rest
        .strip_prefix("Calls/")?
        .strip_suffix("/Recordings.json")?;
    if account.is_empty() || call.is_empty() || call.contains('/') {
        return None;
    }
    Some((account.to_owned(), call.to_owned()))
}

/// Parses `/2010-04-01/Accounts/{AccountSid}/Calls.json` or
/// `/2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json`.
fn parse_calls_path(path: &str) -> Option<(String, Option<String>)> {
    let rest = path.strip_prefix("/2010-04-01/Accounts/")?;
    let (account, rest) = rest.split_once('/')?;
    if account.is_empty() {
        return None;
    }
    if rest == "Calls.json" {
        return Some((account.to_owned(), None));
    }
    let call = rest.strip_prefix("Calls/")?.strip_suffix(".json")?;
    if call.is_empty() || call.contains('/') {
        return None;
    }
    Some((account.to_owned(), Some(call.to_owned())))
}

fn twilio_error(status: u16, message: &str) -> Response {
    let code = match status {
        401 => 20003,
        404 => 20404,
        429 => 20429,
        500..=599 => 20500,
        _ => 21200 + u32::from(status % 100),
    };
    let body = json!({
        "code": code,
        "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": status
    });
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(body)).into_response()
}

fn call_resource(
    account_sid: &str,
    call_sid: &str,
    status: &str,
    form: &[(String, String)],
) -> Value {
    let get = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    json!({
        "sid": call_sid,
        "account_sid": account_sid,
        "status": status,
        "to": get("To"),
        "from": get("From"),
        "direction": "outbound-api",
        "api_version": "2010-04-01",
        "uri": format!("/2010-04-01/Accounts/{account_sid}/Calls/{call_sid}.json")
    })
}

async fn handle(
    State(state): State<Arc<RestState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header_text = |name: header::HeaderName| {
        headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let path = uri.path().to_owned();
    let recording = parse_recordings_path(&path);
    let parsed = parse_calls_path(&path).or_else(|| {
        recording
            .as_ref()
            .map(|(account, call)| (account.clone(), Some(call.clone())))
    });
    let (account_sid, call_sid, created) = match &parsed {
        Some((account, Some(call))) => (account.clone(), call.clone(), false),
        Some((account, None)) => (
            account.clone(),
            format!("CA{:032x}", state.next_sid.fetch_add(1, Ordering::Relaxed)),
            true,
        ),
        None => (String::new(), String::new(), false),
    };
    let request = RestRequest {
        method: method.as_str().to_owned(),
        path: path.clone(),
        account_sid: account_sid.clone(),
        call_sid: call_sid.clone(),
        created,
        authorization: header_text(header::AUTHORIZATION),
        content_type: header_text(header::CONTENT_TYPE),
        form: form_decode(&String::from_utf8_lossy(&body)),
    };
    let has_auth = request.authorization.is_some();
    let form = request.form.clone();
    lock(&state.requests).push(request);
    state.signal.bump();

    if parsed.is_none() || method != Method::POST {
        return twilio_error(404, &format!("The requested resource {path} was not found"));
    }
    if !has_auth {
        return twilio_error(401, "Authenticate");
    }
    let forced = *lock(&state.status_override);
    if let Some(status) = forced
        && !(200..300).contains(&status)
    {
        return twilio_error(status, "Error forced by FakeTwilioRest::set_status");
    }
    if recording.is_some() {
        let status = StatusCode::from_u16(forced.unwrap_or(201)).unwrap_or(StatusCode::CREATED);
        let body = json!({
            "sid": format!("RE{:032x}", state.next_sid.fetch_add(1, Ordering::Relaxed)),
            "account_sid": account_sid, "call_sid": call_sid, "status": "in-progress",
            "channels": 2, "source": "StartCallRecordingAPI", "api_version": "2010-04-01"
        });
        return (status, axum::Json(body)).into_response();
    }
    let (default_status, call_status) = if created {
        (201, "queued".to_owned())
    } else {
        let status = form
            .iter()
            .find(|(k, _)| k == "Status")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| "in-progress".to_owned());
        (200, status)
    };
    let status = StatusCode::from_u16(forced.unwrap_or(default_status)).unwrap_or(StatusCode::OK);
    let body = call_resource(&account_sid, &call_sid, &call_status, &form);
    (status, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DEFAULT_TIMEOUT;
    use crate::fake_twilio::post_form;

    const ACC: &str = "AC0123456789abcdef0123456789abcdef";
    const CALL: &str = "CA0123456789abcdef0123456789abcdef";

    #[test]
    fn paths() {
        assert_eq!(
            parse_calls_path(&format!("/2010-04-01/Accounts/{ACC}/Calls/{CALL}.json")),
            Some((ACC.to_owned(), Some(CALL.to_owned())))
        );
        assert_eq!(
            parse_calls_path(&format!("/2010-04-01/Accounts/{ACC}/Calls.json")),
            Some((ACC.to_owned(), None))
        );
        assert_eq!(parse_calls_path("/2010-04-01/Accounts/AC1/Calls/CA1"), None);
        assert_eq!(parse_calls_path("/v1/Calls/CA1.json"), None);
    }

    #[tokio::test]
    async fn update_create_and_errors() {
        let rest = FakeTwilioRest::start().await;
        let auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{ACC}:secret"))
        );
        let url = format!(
            "{}/2010-04-01/Accounts/{ACC}/Calls/{CALL}.json",
            rest.base_url()
        );
        let (status, ctype, body) = post_form(
            &url,
            &[("Authorization", &auth)],
            &[("Status", "completed")],
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert!(ctype.starts_with("application/json"), "{ctype}");
        let v: Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(v["sid"], CALL);
        assert_eq!(v["status"], "completed");

        let create = format!("{}/2010-04-01/Accounts/{ACC}/Calls.json", rest.base_url());
        let (status, _, body) = post_form(
            &create,
            &[("Authorization", &auth)],
            &[
                ("To", "+15550111"),
                ("From", "+15550100"),
                ("StatusCallbackEvent", "initiated"),
                ("StatusCallbackEvent", "answered"),
            ],
        )
        .await;
        assert_eq!(status, 201, "{body}");
        let v: Value = serde_json::from_str(&body).expect("JSON");
        let sid = v["sid"].as_str().expect("sid");
        assert!(sid.starts_with("CA") && sid.len() == 34, "{sid}");

        let (status, _, _) = post_form(&url, &[], &[("Status", "completed")]).await;
        assert_eq!(status, 401);
        rest.set_status(500);
        let (status, _, body) = post_form(&url, &[("Authorization", &auth)], &[]).await;
        assert_eq!(status, 500);
        assert!(body.contains("20500"), "{body}");
        rest.reset_status();

        let reqs = rest
            .wait_for_request(4, DEFAULT_TIMEOUT)
            .await
            .expect("4 requests");
        assert_eq!(reqs[0].call_sid, CALL);
        assert_eq!(reqs[0].account_sid, ACC);
        assert_eq!(reqs[0].param("Status"), Some("completed"));
        assert_eq!(
            reqs[0].basic_auth(),
            Some((ACC.to_owned(), "secret".to_owned()))
        );
        assert_eq!(
            reqs[0].content_type.as_deref(),
            Some("application/x-www-form-urlencoded")
        );
        assert!(reqs[1].created);
        assert_eq!(reqs[1].call_sid, sid);
        assert_eq!(
            reqs[1].params("StatusCallbackEvent"),
            ["initiated", "answered"]
        );
        assert_eq!(reqs[2].authorization, None);
        assert!(
            rest.wait_for_request(5, Duration::from_millis(20))
                .await
                .is_err()
        );
    }
}
