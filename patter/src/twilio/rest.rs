//! The Twilio REST calls a live call needs (hang up and transfer), as the call's
//! [`CallControl`].

use std::fmt;

use futures_util::future::BoxFuture;

use crate::carrier::{CallControl, ControlError};
use crate::secret::Secret;
use crate::tool::webhook;

/// Why a REST call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestError {
    /// Twilio could not be reached.
    #[error("Twilio could not be reached: {0}")]
    Network(String),
    /// Twilio answered with an error status.
    #[error("Twilio answered HTTP {status}: {message}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// Twilio's error code (`code` in its error JSON), if any.
        code: Option<u32>,
        /// Twilio's error message, if any.
        message: String,
    },
    /// Twilio answered a create without a call id.
    #[error("Twilio's answer has no call sid")]
    NoSid,
}

/// A client for one account's Calls resource.
#[derive(Clone)]
pub struct TwilioRest {
    base: String,
    account_sid: String,
    auth_token: Secret,
    /// Where Twilio reports finished recordings.
    recording_callback: Option<String>,
}

impl TwilioRest {
    /// A client for `base` (e.g. `https://api.twilio.com`).
    pub fn new(base: &str, account_sid: &str, auth_token: Secret) -> Self {
        TwilioRest {
            base: base.trim_end_matches('/').to_owned(),
            account_sid: account_sid.to_owned(),
            auth_token,
            recording_callback: None,
        }
    }

    /// Where Twilio reports finished recordings (the server's `/twilio/recording`).
    pub fn recording_callback(mut self, url: impl Into<String>) -> Self {
        self.recording_callback = Some(url.into());
        self
    }

    /// Starts a dual-channel recording of the call (caller and agent apart):
    /// `POST …/Calls/{call_sid}/Recordings.json`, reported when done to the recording
    /// callback.
    pub async fn start_recording(&self, call_sid: &str) -> Result<(), RestError> {
        let mut form = vec![("RecordingChannels", "dual"), ("RecordingTrack", "both")];
        if let Some(callback) = &self.recording_callback {
            form.push(("RecordingStatusCallback", callback));
            form.push(("RecordingStatusCallbackMethod", "POST"));
            form.push(("RecordingStatusCallbackEvent", "completed"));
            form.push(("RecordingStatusCallbackEvent", "absent"));
        }
        self.post(
            &format!("Calls/{}/Recordings.json", encode_segment(call_sid)),
            &form,
        )
        .await
        .map(drop)
    }

    /// Creates a call (`POST …/Calls.json` with `form`) and returns its sid.
    pub async fn create_call(&self, form: &[(&str, &str)]) -> Result<String, RestError> {
        let body = self.post("Calls.json", form).await?;
        serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("sid").and_then(|s| s.as_str()).map(str::to_owned))
            .filter(|sid| !sid.is_empty())
            .ok_or(RestError::NoSid)
    }

    /// Cancels a call that is queued or ringing (`Status=canceled`).
    pub async fn cancel(&self, call_sid: &str) -> Result<(), RestError> {
        self.update(call_sid, &[("Status", "canceled")]).await
    }

    /// Replaces the call's TwiML with `twiml`.
    pub async fn redirect(&self, call_sid: &str, twiml: &str) -> Result<(), RestError> {
        self.update(call_sid, &[("Twiml", twiml)]).await
    }

    /// Ends an in-progress call (`Status=completed`).
    pub async fn hang_up(&self, call_sid: &str) -> Result<(), RestError> {
        self.update(call_sid, &[("Status", "completed")]).await
    }

    /// Replaces the call's TwiML with a `<Dial>` to `number`.
    pub async fn transfer(&self, call_sid: &str, number: &str) -> Result<(), RestError> {
        let twiml = crate::twilio::twiml::dial(number);
        self.redirect(call_sid, &twiml).await
    }

    /// `POST /2010-04-01/Accounts/{sid}/Calls/{call_sid}.json` with `form`.
    pub async fn update(&self, call_sid: &str, form: &[(&str, &str)]) -> Result<(), RestError> {
        self.post(&format!("Calls/{}.json", encode_segment(call_sid)), form)
            .await
            .map(drop)
    }

    /// `POST /2010-04-01/Accounts/{sid}/{path}` with `form`, authenticated; the answer's
    /// body.
    async fn post(&self, path: &str, form: &[(&str, &str)]) -> Result<String, RestError> {
        let url = format!(
            "{}/2010-04-01/Accounts/{}/{path}",
            self.base,
            encode_segment(&self.account_sid),
        );
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let client = webhook::http_client().map_err(|e| RestError::Network(e.to_string()))?;
        let response = client
            .post(&url)
            .basic_auth(&self.account_sid, Some(self.auth_token.expose()))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .timeout(std::time::Duration::from_secs(10))
            .body(body)
            .send()
            .await
            .map_err(|e| RestError::Network(e.without_url().to_string()))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if status.is_success() {
            return Ok(text);
        }
        let json = serde_json::from_str::<serde_json::Value>(&text).ok();
        let message = json
            .as_ref()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
            .unwrap_or_else(|| text.chars().take(200).collect());
        let code = json
            .as_ref()
            .and_then(|v| v.get("code").and_then(serde_json::Value::as_u64))
            .and_then(|c| u32::try_from(c).ok());
        Err(RestError::Status {
            status: status.as_u16(),
            code,
            message,
        })
    }
}

/// Ids come from Twilio, but a hostile stream could send anything: keep them in one segment.
fn encode_segment(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

impl fmt::Debug for TwilioRest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioRest")
            .field("base", &self.base)
            .field("account_sid", &self.account_sid)
            .field("auth_token", &self.auth_token)
            .field("recording_callback", &self.recording_callback)
            .finish()
    }
}

impl CallControl for TwilioRest {
    fn hang_up<'a>(&'a self, call_id: &'a str) -> BoxFuture<'a, Result<(), ControlError>> {
        Box::pin(async move {
            TwilioRest::hang_up(self, call_id)
                .await
                .map_err(|e| ControlError::new(e.to_string()))
        })
    }

    fn transfer<'a>(
        &'a self,
        call_id: &'a str,
        number: &'a str,
    ) -> BoxFuture<'a, Result<(), ControlError>> {
        Box::pin(async move {
            TwilioRest::transfer(self, call_id, number)
                .await
                .map_err(|e| ControlError::new(e.to_string()))
        })
    }

    fn start_recording<'a>(&'a self, call_id: &'a str) -> BoxFuture<'a, Result<(), ControlError>> {
        Box::pin(async move {
            TwilioRest::start_recording(self, call_id)
                .await
                .map_err(|e| ControlError::new(e.to_string()))
        })
    }

    fn apologise<'a>(
        &'a self,
        call_id: &'a str,
        outage: &'a crate::carrier::Outage,
    ) -> BoxFuture<'a, Result<(), ControlError>> {
        Box::pin(async move {
            let twiml = crate::twilio::twiml::apology(
                &outage.message,
                outage.voice.as_deref(),
                outage.fallback.as_deref(),
            );
            self.redirect(call_id, &twiml)
                .await
                .map_err(|e| ControlError::new(e.to_string()))
        })
    }
}

impl crate::outbound::tracker::Cancel for TwilioRest {
    fn cancel(&self, call_sid: &str) -> BoxFuture<'_, ()> {
        let call_sid = call_sid.to_owned();
        Box::pin(async move {
            // `canceled` ends a call still queued or ringing and does nothing to one just
            // answered, which `completed` ends: both, so neither case is missed.
            let cancelled = TwilioRest::cancel(self, &call_sid).await;
            let hung_up = self.hang_up(&call_sid).await;
            if let (Err(e), Err(_)) = (cancelled, hung_up) {
                tracing::warn!(call_sid, error = %e, "could not end the dialled call");
            }
        })
    }
}
