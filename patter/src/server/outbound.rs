//! Dialled calls on the server: placing one (`Calls.json`), and the routes Twilio calls back
//! for it: the voice webhook's outbound branch, call status, async machine detection and the
//! voicemail's end. Each reads the dial's signed state from its own URL, so any instance
//! can take it; the dialling process's handle hears what reaches its own instance.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tokio::sync::{mpsc, oneshot};
use tracing::{Instrument, info, warn};

use super::{App, Signed, param, xml};
use crate::call::CallSetup;
use crate::outbound::state::{self, DialState};
use crate::outbound::tracker::{self, Signal};
use crate::outbound::{
    AnsweredBy, CallStatus, Dial, DialError, MachineDetection, OutboundCall, is_e164,
};
use crate::twilio::rest::RestError;
use crate::twilio::twiml;

/// Twilio's ring timeout when none is given.
const DEFAULT_RING_TIMEOUT: Duration = Duration::from_secs(60);
/// Room after ringing for machine detection to answer and the webhook to come.
const ANSWER_MARGIN: Duration = Duration::from_secs(120);
/// The longest TwiML Twilio takes inline (`Twiml=`): the voicemail must fit in it.
const MAX_INLINE_TWIML: usize = 4000;
/// The longest time limit asked for: Twilio's own ceiling is 24 hours.
const MAX_TIME_LIMIT: Duration = Duration::from_secs(24 * 3600);

/// The dial's state from a callback URL's query (`?outbound=…`), if it has one.
fn state_text(uri: &Uri) -> Option<String> {
    url::form_urlencoded::parse(uri.query()?.as_bytes())
        .find(|(k, _)| k == state::PARAMETER)
        .map(|(_, v)| v.into_owned())
}

/// Reads and checks a dial's signed state.
pub(super) fn read_state(app: &App, text: &str) -> Option<DialState> {
    match DialState::decode(app.config.stream_secret.expose().as_bytes(), text) {
        Ok(state) => Some(state),
        Err(e) => {
            warn!(error = %e, "dial state refused");
            None
        }
    }
}

/// `?outbound=<state>` for a route Twilio calls back.
fn callback_url(app: &App, path: &str, state: &str) -> String {
    format!(
        "{}?{}={state}",
        app.config.public_url.http(path),
        state::PARAMETER
    )
}

/// Places `dial`: checks it, takes a call slot, asks Twilio to create the call, and
/// follows it until its outcome.
pub(crate) async fn dial(app: &Arc<App>, dial: Dial) -> Result<OutboundCall, DialError> {
    if !is_e164(&dial.to) {
        return Err(DialError::InvalidNumber {
            which: "to",
            number: dial.to,
        });
    }
    let from = app.config.phone_number.clone();
    if !is_e164(&from) {
        return Err(DialError::InvalidNumber {
            which: "from",
            number: from,
        });
    }
    if let Some(name) = &dial.agent
        && !app.named.contains_key(name)
    {
        return Err(DialError::UnknownAgent(name.clone()));
    }
    if let Some(message) = &dial.voicemail {
        if dial.machine_detection == MachineDetection::Off {
            return Err(DialError::VoicemailWithoutDetection);
        }
        if !message
            .chars()
            .any(|c| !c.is_whitespace() && !c.is_control())
        {
            return Err(DialError::Invalid(
                "a voicemail message needs words to say".to_owned(),
            ));
        }
    }
    let ring = dial.ring_timeout.unwrap_or(DEFAULT_RING_TIMEOUT);
    if !(5..=600).contains(&ring.as_secs()) {
        return Err(DialError::Invalid(
            "the ring timeout is 5 to 600 seconds".to_owned(),
        ));
    }
    if dial
        .time_limit
        .is_some_and(|t| t.as_secs() == 0 || t > MAX_TIME_LIMIT)
    {
        return Err(DialError::Invalid(
            "the time limit is 1 second to 24 hours".to_owned(),
        ));
    }
    if app.draining.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(DialError::Draining);
    }
    let slot = app.calls.enter_owned().ok_or(DialError::AtCapacity)?;

    let id = crate::util::random_hex(16);
    let dial_state = DialState {
        id: id.clone(),
        agent: dial.agent.clone(),
        first_message: dial.first_message.clone().flatten(),
        silent: dial.first_message == Some(None),
        variables: dial.variables.clone(),
        amd: dial.machine_detection,
        voicemail: dial.voicemail.clone(),
        answer_by: crate::util::unix_now() + (ring + ANSWER_MARGIN).as_secs(),
    };
    let signed = dial_state.encode(app.config.stream_secret.expose().as_bytes());
    if signed.len() > state::MAX_ENCODED_BYTES {
        return Err(DialError::Invalid(
            "the call's variables and messages are too long to travel with it".to_owned(),
        ));
    }
    if let Some(message) = &dial.voicemail {
        let twiml = voicemail_twiml(app, &dial_state, message);
        if twiml.len() > MAX_INLINE_TWIML {
            return Err(DialError::Invalid(format!(
                "the voicemail is too long: Twilio takes {MAX_INLINE_TWIML} characters of TwiML"
            )));
        }
    }
    let voice_url = callback_url(app, "/twilio/voice", &signed);
    let status_url = callback_url(app, "/twilio/status", &signed);
    let amd_url = callback_url(app, "/twilio/amd", &signed);
    let ring_secs = ring.as_secs().to_string();
    let limit_secs = dial.time_limit.map(|t| t.as_secs().to_string());
    let mut form: Vec<(&str, &str)> = vec![
        ("To", &dial.to),
        ("From", &from),
        ("Url", &voice_url),
        ("Method", "POST"),
        ("StatusCallback", &status_url),
        ("StatusCallbackMethod", "POST"),
        ("StatusCallbackEvent", "initiated"),
        ("StatusCallbackEvent", "ringing"),
        ("StatusCallbackEvent", "answered"),
        ("StatusCallbackEvent", "completed"),
        ("Timeout", &ring_secs),
    ];
    if let Some(limit) = &limit_secs {
        form.push(("TimeLimit", limit));
    }
    // DetectMessageEnd waits for the beep, which only a voicemail needs; Enable is quicker.
    let detection = if dial.voicemail.is_some() {
        "DetectMessageEnd"
    } else {
        "Enable"
    };
    match dial.machine_detection {
        MachineDetection::Off => {}
        MachineDetection::Wait => form.push(("MachineDetection", detection)),
        MachineDetection::HumanFirst => {
            form.push(("MachineDetection", detection));
            form.push(("AsyncAmd", "true"));
            form.push(("AsyncAmdStatusCallback", &amd_url));
            form.push(("AsyncAmdStatusCallbackMethod", "POST"));
        }
    }

    // Followed before Twilio is asked, so a callback that beats the answer is not lost; the
    // guard stops following if this future is dropped or fails before the follower runs.
    let signals = app.dials.open(&id);
    let guard = tracker::Opened::new(&app.dials, &id);
    let sid = match app.rest.create_call(&form).await {
        Ok(sid) => sid,
        Err(e) => {
            // Twilio's message may quote the number: only its status and code are logged.
            match &e {
                RestError::Status { status, code, .. } => {
                    warn!(status, code, "Twilio did not create the call");
                }
                _ => warn!(error = %e, "Twilio could not be reached to create the call"),
            }
            return Err(match e {
                RestError::Status {
                    status,
                    code,
                    message,
                } => DialError::Rejected {
                    status,
                    code,
                    message,
                },
                other => DialError::Network(other.to_string()),
            });
        }
    };
    info!(call_sid = %sid, "call placed");
    let (events_tx, events) = mpsc::channel(32);
    let (outcome_tx, outcome) = oneshot::channel();
    let deadline = ring
        .saturating_add(ANSWER_MARGIN)
        .saturating_add(
            dial.time_limit
                .unwrap_or(app.config.local.limits.max_call_duration),
        )
        .saturating_add(tracker::SETTLE);
    guard.hand_over();
    let span = tracing::info_span!("dial", call_sid = %sid);
    tokio::spawn(
        tracker::follow(
            Arc::clone(&app.dials),
            id,
            sid.clone(),
            signals,
            events_tx,
            outcome_tx,
            slot,
            deadline,
            app.shutdown_tx.subscribe(),
            app.rest.clone(),
        )
        .instrument(span),
    );
    Ok(OutboundCall {
        sid,
        to: dial.to,
        events,
        outcome,
    })
}

/// The voice webhook of a dialled call: with synchronous detection (`Wait`), `AnsweredBy`
/// decides between the agent, the voicemail and hanging up; otherwise the stream connects.
/// `None` means: connect the stream as for any call.
pub(super) fn answer(
    app: &App,
    call_sid: &str,
    params: &[(String, String)],
    dial: &DialState,
) -> Option<Response> {
    if crate::util::unix_now() > dial.answer_by {
        warn!(
            call_sid,
            "dialled call answered after its state expired; hung up"
        );
        return Some(xml(twiml::hang_up()));
    }
    let answered_by = param(params, "AnsweredBy");
    if dial.amd != MachineDetection::Wait || answered_by.is_empty() {
        return None;
    }
    let answered_by = AnsweredBy::parse(answered_by);
    info!(call_sid, %answered_by, "machine detection answered");
    app.dials.tell(&dial.id, Signal::AnsweredBy(answered_by));
    if answered_by.is_person() {
        return None;
    }
    let (twiml, voicemail) = machine_twiml(app, dial, answered_by);
    if voicemail {
        app.dials.tell(&dial.id, Signal::VoicemailStarted);
    }
    Some(xml(twiml))
}

/// What a machine hears: the voicemail after its greeting (`true`), or nothing: hang up.
fn machine_twiml(app: &App, dial: &DialState, answered_by: AnsweredBy) -> (String, bool) {
    match &dial.voicemail {
        Some(message) if answered_by.is_end_of_greeting() => {
            (voicemail_twiml(app, dial, message), true)
        }
        _ => (twiml::hang_up(), false),
    }
}

/// The voicemail, then a `<Redirect>` whose URL carries only the dial's id (signed), so
/// the TwiML stays within what Twilio takes inline.
fn voicemail_twiml(app: &App, dial: &DialState, message: &str) -> String {
    let done = DialState {
        id: dial.id.clone(),
        agent: None,
        first_message: None,
        silent: false,
        variables: Default::default(),
        amd: dial.amd,
        voicemail: None,
        answer_by: dial.answer_by,
    };
    let signed = done.encode(app.config.stream_secret.expose().as_bytes());
    twiml::voicemail(message, &callback_url(app, "/twilio/voicemail", &signed))
}

/// Twilio's call status callback. A dialled call's reaches its handle; an inbound call's,
/// or one for a dial not followed here, is only logged.
pub(super) async fn status(
    State(app): State<Arc<App>>,
    uri: Uri,
    Signed(params): Signed,
) -> Response {
    let call_sid = param(&params, "CallSid");
    let value = param(&params, "CallStatus");
    info!(call_sid, status = value, "call status");
    if let Some(dial) = state_text(&uri).and_then(|text| read_state(&app, &text)) {
        // Under synchronous detection the status carries who answered too, which matters
        // when the voice webhook went to another instance.
        let answered_by = param(&params, "AnsweredBy");
        if !answered_by.is_empty() {
            let answered_by = AnsweredBy::parse(answered_by);
            app.dials.tell(&dial.id, Signal::AnsweredBy(answered_by));
        }
        match CallStatus::parse(value) {
            Some(status) => {
                let reason = failure_reason(&params);
                app.dials.tell(&dial.id, Signal::Status { status, reason });
            }
            None => warn!(call_sid, "unknown call status ignored"),
        }
    }
    xml(twiml::empty())
}

/// Why a call failed, from what Twilio sent with the status.
fn failure_reason(params: &[(String, String)]) -> Option<String> {
    let code = param(params, "ErrorCode");
    let message = param(params, "ErrorMessage");
    let sip = param(params, "SipResponseCode");
    let mut parts = Vec::new();
    if !code.is_empty() {
        parts.push(format!("error {code}"));
    }
    if !message.is_empty() {
        parts.push(message.chars().take(200).collect());
    }
    if !sip.is_empty() {
        parts.push(format!("SIP {sip}"));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// Async machine detection's answer for a `HumanFirst` call. On a machine or a fax the
/// agent stops: the call's TwiML is replaced by the voicemail, or the call hangs up.
pub(super) async fn amd(State(app): State<Arc<App>>, uri: Uri, Signed(params): Signed) -> Response {
    let Some(dial) = state_text(&uri).and_then(|text| read_state(&app, &text)) else {
        return NotDialledHere.into_response();
    };
    let call_sid = param(&params, "CallSid");
    if call_sid.is_empty() {
        return (StatusCode::BAD_REQUEST, "missing CallSid").into_response();
    }
    let answered_by = AnsweredBy::parse(param(&params, "AnsweredBy"));
    info!(call_sid, %answered_by, "machine detection answered");
    app.dials.tell(&dial.id, Signal::AnsweredBy(answered_by));
    if !answered_by.is_person() {
        let (twiml, voicemail) = machine_twiml(&app, &dial, answered_by);
        match app.rest.redirect(call_sid, &twiml).await {
            Ok(()) if voicemail => app.dials.tell(&dial.id, Signal::VoicemailStarted),
            Ok(()) => {}
            Err(e) => {
                warn!(call_sid, error = %e, "could not stop the agent for the machine; hanging up");
                if let Err(e) = app.rest.hang_up(call_sid).await {
                    warn!(call_sid, error = %e, "could not hang up");
                }
            }
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

/// The voicemail's `<Redirect>`: it played to its end. Hangs up.
pub(super) async fn voicemail_done(
    State(app): State<Arc<App>>,
    uri: Uri,
    Signed(params): Signed,
) -> Response {
    if let Some(dial) = state_text(&uri).and_then(|text| read_state(&app, &text)) {
        info!(call_sid = param(&params, "CallSid"), "voicemail left");
        app.dials.tell(&dial.id, Signal::VoicemailLeft);
    }
    xml(twiml::hang_up())
}

/// A dial state this deployment did not sign: answered with 403.
pub(super) struct NotDialledHere;

impl IntoResponse for NotDialledHere {
    fn into_response(self) -> Response {
        (StatusCode::FORBIDDEN, "not a call this deployment dialled").into_response()
    }
}

/// The voice webhook's dial state, if the call was dialled.
pub(super) fn voice_state(app: &App, uri: &Uri) -> Result<Option<DialState>, NotDialledHere> {
    match state_text(uri) {
        None => Ok(None),
        Some(text) => read_state(app, &text).map(Some).ok_or(NotDialledHere),
    }
}

/// What a dialled call's stream runs with: its agent and its preset settings.
pub(super) fn preset(dial: &DialState) -> CallSetup {
    let mut setup = CallSetup::new();
    setup.first_message = dial.greeting();
    setup.variables.clone_from(&dial.variables);
    setup
}
