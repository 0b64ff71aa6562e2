//! Webhook tools: the tool's body is an HTTP endpoint that patter POSTs the call to.
//!
//! # The request
//!
//! `POST <url>` with `Content-Type: application/json` and the body
//!
//! ```json
//! {"tool":"get_order_status","arguments":{"order_id":"ORD-123456"},
//!  "call_id":"CA…","caller":"+15550100","callee":"+15550199","attempt":1}
//! ```
//!
//! Headers:
//! - `Idempotency-Key`: the same on every attempt of one model tool call, so an endpoint can
//!   drop repeats;
//! - `X-Patter-Signature: t=<unix seconds>,v1=<hex>` when a signing secret is set, where
//!   `<hex>` is the lower-case hex HMAC-SHA256, keyed with the secret, of the string
//!   `"<t>.<raw body>"`.
//!
//! # Verifying the signature
//!
//! Take `t` and `v1` from the header, recompute the HMAC over `t`, a `.`, and the raw request
//! body bytes, compare in constant time, and reject timestamps far from your clock (five
//! minutes is usual). In Rust, [`verify_signature`] does all of it; in Python:
//!
//! ```python
//! import hmac, hashlib, time
//! parts = dict(p.split("=", 1) for p in request.headers["X-Patter-Signature"].split(","))
//! expected = hmac.new(SECRET, parts["t"].encode() + b"." + raw_body, hashlib.sha256).hexdigest()
//! ok = hmac.compare_digest(expected, parts["v1"]) and abs(time.time() - int(parts["t"])) < 300
//! ```
//!
//! # The response
//!
//! A `2xx` body (JSON, or text) is handed to the model as the tool's result. Network errors,
//! `5xx` and `429` are retried (3 attempts in all, 0.5 s apart by default); any other status is
//! final. A body over 1 MiB is refused while it is read. The final failure is an error the
//! model sees.

use std::fmt;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::future::BoxFuture;
use serde_json::Value;

use super::function::parse_arguments;
use super::{Invocation, Tool, ToolArgs, ToolDefinition, ToolError, ToolOutput};
use crate::secret::Secret;

/// Header carrying the per-invocation idempotency key.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";
/// Header carrying the HMAC-SHA256 signature of the body.
pub const SIGNATURE_HEADER: &str = "X-Patter-Signature";
/// Default time one attempt may take.
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default number of attempts.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// Default pause between attempts.
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_millis(500);
/// Largest response body read.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

type Check = fn(&str) -> Result<(), ToolError>;

/// Where the endpoint's URL comes from.
#[derive(Clone)]
enum UrlSource {
    Fixed(String),
    /// Read when the tool is made; the error names the variable.
    Env {
        var: String,
        value: Result<String, String>,
    },
}

/// A tool that POSTs the model's arguments to an HTTP endpoint; see the [module
/// docs](self) for the request, the retries and the signature.
///
/// ```
/// use patter::{ToolSet, WebhookTool};
///
/// #[patter::args]
/// struct OrderQuery {
///     /// The order ID, e.g. "ORD-123456".
///     order_id: String,
/// }
///
/// let tool = WebhookTool::new::<OrderQuery>(
///     "get_order_status",
///     "Look up an order by ID.",
///     "https://api.example.com/orders/status",
/// )
/// .with_signing_secret("whsec_example");
/// let tools = ToolSet::builder().tool(tool).build().unwrap();
/// assert_eq!(tools.len(), 1);
/// ```
#[derive(Clone)]
pub struct WebhookTool {
    definition: ToolDefinition,
    url: UrlSource,
    attempt_timeout: Duration,
    max_attempts: u32,
    retry_delay: Duration,
    signing_secret: Option<Result<Secret, String>>,
    check_arguments: Check,
    check_response: Option<Check>,
}

impl WebhookTool {
    /// A webhook tool whose arguments are `A`, POSTed to `url`.
    pub fn new<A: ToolArgs>(
        name: impl Into<String>,
        description: impl Into<String>,
        url: impl Into<String>,
    ) -> Self {
        Self::build::<A>(
            name.into(),
            description.into(),
            UrlSource::Fixed(url.into()),
        )
    }

    /// A webhook tool whose URL is read from the environment variable `var` now; a missing
    /// variable is reported when the tool set is built.
    pub fn from_env<A: ToolArgs>(
        name: impl Into<String>,
        description: impl Into<String>,
        var: impl Into<String>,
    ) -> Self {
        let var = var.into();
        let value = match env_var(&var) {
            Ok(v) if !v.trim().is_empty() => Ok(v),
            Ok(_) => Err(format!("environment variable {var} is empty")),
            Err(_) => Err(format!("environment variable {var} is not set")),
        };
        Self::build::<A>(
            name.into(),
            description.into(),
            UrlSource::Env { var, value },
        )
    }

    /// A webhook tool with a hand-written argument schema (for tools defined at run time).
    /// The arguments must be a JSON object; they are not otherwise checked.
    pub fn with_schema(
        name: impl Into<String>,
        description: impl Into<String>,
        parameters: Value,
        url: impl Into<String>,
    ) -> Self {
        let mut tool = Self::build::<super::NoArgs>(
            name.into(),
            description.into(),
            UrlSource::Fixed(url.into()),
        );
        tool.definition.parameters = parameters;
        tool
    }

    fn build<A: ToolArgs>(name: String, description: String, url: UrlSource) -> Self {
        WebhookTool {
            definition: ToolDefinition {
                name,
                description,
                parameters: A::parameters_schema(),
            },
            url,
            attempt_timeout: DEFAULT_ATTEMPT_TIMEOUT,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            retry_delay: DEFAULT_RETRY_DELAY,
            signing_secret: None,
            check_arguments: |raw| parse_arguments::<A>(raw).map(drop),
            check_response: None,
        }
    }

    /// Requires the endpoint's JSON response to deserialise into `R`; otherwise the model is
    /// told the endpoint answered with something unexpected.
    pub fn expect_response<R: serde::de::DeserializeOwned>(mut self) -> Self {
        self.check_response = Some(|body| {
            serde_json::from_str::<R>(body).map(drop).map_err(|e| {
                ToolError::Webhook(format!("the endpoint's response has the wrong shape: {e}"))
            })
        });
        self
    }

    /// Sets the time one attempt may take (default 10 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = timeout;
        self
    }

    /// Sets how many attempts are made in all (default 3, at least 1).
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Sets the pause between attempts (default 0.5 s).
    pub fn with_retry_delay(mut self, delay: Duration) -> Self {
        self.retry_delay = delay;
        self
    }

    /// Signs every request with this secret (see the module docs).
    pub fn with_signing_secret(mut self, secret: impl Into<String>) -> Self {
        self.signing_secret = Some(Ok(Secret::new(secret.into())));
        self
    }

    /// Signs every request with the secret in environment variable `var`, read now; a
    /// missing variable is reported when the tool set is built.
    pub fn with_signing_secret_from_env(mut self, var: &str) -> Self {
        self.signing_secret = Some(match env_var(var) {
            Ok(v) if !v.is_empty() => Ok(Secret::new(v)),
            _ => Err(format!(
                "environment variable {var} (the webhook signing secret) is not set"
            )),
        });
        self
    }

    fn url(&self) -> Result<&str, ToolError> {
        match &self.url {
            UrlSource::Fixed(url) => Ok(url),
            UrlSource::Env { value, .. } => {
                value.as_deref().map_err(|e| ToolError::Webhook(e.clone()))
            }
        }
    }

    async fn run(&self, invocation: Invocation<'_>) -> Result<ToolOutput, ToolError> {
        (self.check_arguments)(invocation.arguments)?;
        let arguments: Value = if invocation.arguments.trim().is_empty() {
            Value::Object(Default::default())
        } else {
            serde_json::from_str(invocation.arguments)
                .map_err(|e| ToolError::InvalidArguments(e.to_string()))?
        };
        if !arguments.is_object() {
            return Err(ToolError::InvalidArguments(
                "arguments must be a JSON object".into(),
            ));
        }
        let url = self.url()?;
        let client = http_client()?;
        let ctx = invocation.context;
        let mut last_error = String::new();
        for attempt in 1..=self.max_attempts {
            if attempt > 1 {
                tokio::time::sleep(self.retry_delay).await;
            }
            let body = serde_json::json!({
                "tool": self.definition.name,
                "arguments": arguments,
                "call_id": ctx.call_id(),
                "caller": ctx.caller(),
                "callee": ctx.callee(),
                "attempt": attempt,
            })
            .to_string();
            match self.attempt(client, url, body, invocation.id).await {
                Attempt::Done(text) => {
                    if let Some(check) = self.check_response {
                        check(&text)?;
                    }
                    return Ok(ToolOutput::text(text));
                }
                Attempt::Final(message) => return Err(ToolError::Webhook(message)),
                Attempt::Retry(message) => {
                    tracing::warn!(attempt, error = %message, "webhook attempt failed");
                    last_error = message;
                }
            }
        }
        Err(ToolError::Webhook(format!(
            "{last_error} (after {} attempts)",
            self.max_attempts
        )))
    }

    async fn attempt(
        &self,
        client: &reqwest::Client,
        url: &str,
        body: String,
        idempotency_key: &str,
    ) -> Attempt {
        let mut request = client
            .post(url)
            .timeout(self.attempt_timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(IDEMPOTENCY_HEADER, idempotency_key);
        if let Some(Ok(secret)) = &self.signing_secret {
            let timestamp = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            request = request.header(
                SIGNATURE_HEADER,
                sign(secret.expose().as_bytes(), timestamp, body.as_bytes()),
            );
        }
        let response = match request.body(body).send().await {
            Ok(response) => response,
            Err(e) if e.is_timeout() => {
                return Attempt::Retry(format!(
                    "the endpoint did not answer within {} ms",
                    self.attempt_timeout.as_millis()
                ));
            }
            Err(e) => {
                // The URL may carry credentials: keep it out of the model's and the log's text.
                let e = e.without_url();
                return Attempt::Retry(format!("the endpoint could not be reached: {e}"));
            }
        };
        let status = response.status();
        let body = read_capped(response, MAX_RESPONSE_BYTES).await;
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Attempt::Retry(format!("the endpoint answered HTTP {}", status.as_u16()));
        }
        if !status.is_success() {
            let detail = body.ok().map(|b| excerpt(&b)).unwrap_or_default();
            return Attempt::Final(format!(
                "the endpoint answered HTTP {}{detail}",
                status.as_u16()
            ));
        }
        match body {
            Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
                // Compact JSON: one shape for the model whatever the endpoint's whitespace.
                Ok(json) => Attempt::Done(json.to_string()),
                Err(_) => match String::from_utf8(bytes) {
                    Ok(text) => Attempt::Done(text),
                    Err(_) => Attempt::Final("the endpoint answered with binary data".into()),
                },
            },
            Err(ReadError::TooLarge) => Attempt::Final(format!(
                "the endpoint's response is larger than {MAX_RESPONSE_BYTES} bytes"
            )),
            Err(ReadError::Network(e)) => {
                let e = e.without_url();
                Attempt::Retry(format!("reading the endpoint's response failed: {e}"))
            }
        }
    }
}

enum Attempt {
    Done(String),
    Retry(String),
    Final(String),
}

enum ReadError {
    TooLarge,
    Network(reqwest::Error),
}

/// Reads at most `cap` bytes; a longer body is an error before it is buffered.
async fn read_capped(mut response: reqwest::Response, cap: usize) -> Result<Vec<u8>, ReadError> {
    if response.content_length().is_some_and(|n| n > cap as u64) {
        return Err(ReadError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(ReadError::Network)? {
        if body.len() + chunk.len() > cap {
            return Err(ReadError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A short, one-line excerpt of an error body for the model.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return String::new();
    }
    let cut: String = text.chars().take(300).collect();
    format!(": {}", cut.replace(['\n', '\r'], " "))
}

/// The value of [`SIGNATURE_HEADER`] for `body` signed at `timestamp` (unix seconds).
pub fn sign(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    format!(
        "t={timestamp},v1={}",
        crate::util::hmac_sha256_hex(secret, &signed_parts(&timestamp.to_string(), body))
    )
}

/// What the signature covers: `"<t>.<body>"`.
fn signed_parts<'a>(timestamp: &'a str, body: &'a [u8]) -> [&'a [u8]; 3] {
    [timestamp.as_bytes(), b".", body]
}

/// Why a webhook signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The header is not `t=<unix seconds>,v1=<hex>`.
    #[error("malformed signature header")]
    Malformed,
    /// The timestamp is further from now than the tolerance.
    #[error("signature timestamp outside the tolerance")]
    Expired,
    /// The signature does not match the body.
    #[error("signature does not match")]
    Mismatch,
}

/// Checks a [`SIGNATURE_HEADER`] value against the raw body, in constant time, accepting
/// timestamps within `tolerance` of `now` (unix seconds).
pub fn verify_signature(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now: u64,
    tolerance: Duration,
) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut signature = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => timestamp = v.parse::<u64>().ok(),
            Some(("v1", v)) => signature = hex::decode(v).ok(),
            _ => {}
        }
    }
    let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
        return Err(SignatureError::Malformed);
    };
    if now.abs_diff(timestamp) > tolerance.as_secs() {
        return Err(SignatureError::Expired);
    }
    let timestamp = timestamp.to_string();
    if crate::util::hmac_sha256_verify(secret, &signed_parts(&timestamp, body), &signature) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

std::thread_local! {
    /// Environment variables that [`env_var`] answers before the process environment, for
    /// as long as [`with_env`] runs on this thread.
    static ENV_OVERRIDES: std::cell::RefCell<Vec<(String, String)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// An environment variable as a webhook tool reads it when it is made: from the values
/// [`with_env`] set on this thread, else from the process environment.
fn env_var(name: &str) -> Result<String, std::env::VarError> {
    let overridden = ENV_OVERRIDES.with(|vars| {
        vars.borrow()
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    });
    match overridden {
        Some(value) => Ok(value),
        None => std::env::var(name),
    }
}

/// Runs `make` with `vars` as the environment variables webhook tools made inside it read
/// (`url_env`, `secret_env`, [`WebhookTool::from_env`]), on this thread only: nothing
/// process-wide changes, so tests running side by side never see each other's values.
///
/// ```
/// use patter::tool::webhook::with_env;
/// use patter::{NoArgs, ToolSet, WebhookTool};
///
/// let tools = with_env(&[("ORDERS_URL", "http://127.0.0.1:9000/orders")], || {
///     ToolSet::builder()
///         .tool(WebhookTool::from_env::<NoArgs>("orders", "List orders.", "ORDERS_URL"))
///         .build()
/// });
/// assert!(tools.is_ok());
/// ```
pub fn with_env<T>(vars: &[(&str, &str)], make: impl FnOnce() -> T) -> T {
    /// Takes this call's values off again, even if `make` panics.
    struct Restore(usize);
    impl Drop for Restore {
        fn drop(&mut self) {
            ENV_OVERRIDES.with(|v| v.borrow_mut().truncate(self.0));
        }
    }
    let _restore = Restore(ENV_OVERRIDES.with(|v| {
        let mut v = v.borrow_mut();
        let before = v.len();
        v.extend(
            vars.iter()
                .map(|(k, val)| ((*k).to_owned(), (*val).to_owned())),
        );
        before
    }));
    make()
}

/// The process-wide HTTP client (rustls with the ring provider; no system OpenSSL).
pub(crate) fn http_client() -> Result<&'static reqwest::Client, ToolError> {
    static CLIENT: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            crate::util::install_crypto_provider();
            reqwest::Client::builder()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| ToolError::Webhook(format!("the HTTP client could not start: {e}")))
}

impl Tool for WebhookTool {
    fn definition(&self) -> &ToolDefinition {
        &self.definition
    }

    /// The whole run: every attempt and the pauses between them, plus a second of slack so
    /// the endpoint's own error, not a bare timeout, reaches the model.
    fn timeout(&self) -> Duration {
        self.attempt_timeout * self.max_attempts
            + self.retry_delay * (self.max_attempts - 1)
            + Duration::from_secs(1)
    }

    fn validate(&self) -> Result<(), String> {
        if let Some(Err(e)) = &self.signing_secret {
            return Err(e.clone());
        }
        match &self.url {
            UrlSource::Env { value: Err(e), .. } => Err(e.clone()),
            UrlSource::Env { value: Ok(url), .. } | UrlSource::Fixed(url) => {
                if url.starts_with("http://") || url.starts_with("https://") {
                    Ok(())
                } else {
                    Err("the webhook URL must start with http:// or https://".into())
                }
            }
        }
    }

    fn check_arguments(&self, arguments: &str) -> Result<(), ToolError> {
        (self.check_arguments)(arguments)
    }

    fn call<'a>(
        &'a self,
        invocation: Invocation<'a>,
    ) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(self.run(invocation))
    }
}

impl fmt::Debug for WebhookTool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = match &self.url {
            UrlSource::Fixed(url) => crate::util::redact_url(url),
            UrlSource::Env { var, .. } => format!("${var}"),
        };
        f.debug_struct("WebhookTool")
            .field("name", &self.definition.name)
            .field("url", &url)
            .field("attempt_timeout", &self.attempt_timeout)
            .field("max_attempts", &self.max_attempts)
            .field("signed", &self.signing_secret.is_some())
            .finish()
    }
}
