//! Outbound calls against the fake Twilio REST API and signed callbacks: every way a
//! dialled call can go maps to its outcome, every request body follows Twilio's Calls API,
//! and bad input (numbers, states, signatures, REST errors) has a defined answer.

mod common;

use std::sync::Arc;

use common::{AUTH_TOKEN, OPENAI_KEY, PUBLIC_URL, WAIT, account_sid, parse_twiml};
use patter::outbound::{
    AnsweredBy, CallOutcome, CallStatus, Dial, DialError, DialEvent, MachineDetection, OutboundCall,
};
use patter::{CallSummary, ConfigBuilder, EndReason, Limits, Patter, Server};
use patter_tests::fake_openai::{ConnHandle, FakeRealtime};
use patter_tests::fake_twilio::{self, FakeTwilioRest, MediaStream, RestRequest};
use patter_tests::{twilio_calls_spec, twilio_sid};
use tokio::sync::mpsc;

#[patter::agent(
    system_prompt = "You remind {name} of an appointment on {day}.",
    first_message = "Hello, this is the clinic calling."
)]
struct Reminder;

#[patter::agent(
    system_prompt = "You run surveys.",
    first_message = "Hi, a quick survey."
)]
struct Survey;

const VOICEMAIL: &str =
    "Hi, this is the clinic: your appointment is tomorrow at 10 & we'll see you <soon>.";

/// A server started as an application does (`Patter::start_on`), with its fake peers.
struct Line {
    server: Server,
    base: String,
    engine: Arc<FakeRealtime>,
    rest: Arc<FakeTwilioRest>,
    ends: mpsc::UnboundedReceiver<CallSummary>,
    /// Engine connections opened so far, as counted by the scenarios.
    engine_conns: usize,
}

async fn line(limits: Limits) -> Line {
    let engine = Arc::new(FakeRealtime::start().await);
    let rest = Arc::new(FakeTwilioRest::start().await);
    line_with(engine, rest, limits).await
}

async fn line_with(engine: Arc<FakeRealtime>, rest: Arc<FakeTwilioRest>, limits: Limits) -> Line {
    line_signed(engine, rest, limits, "shared stream secret", true).await
}

async fn line_signed(
    engine: Arc<FakeRealtime>,
    rest: Arc<FakeTwilioRest>,
    limits: Limits,
    secret: &str,
    survey: bool,
) -> Line {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let config = ConfigBuilder::default()
        .twilio_account_sid(account_sid())
        .twilio_auth_token(AUTH_TOKEN)
        .openai_api_key(OPENAI_KEY)
        .phone_number("+15550100")
        .webhook_url(PUBLIC_URL)
        .openai_realtime_url(engine.url())
        .twilio_api_url(rest.base_url())
        .stream_secret(secret)
        .limits(limits)
        .build()
        .expect("config");
    let (end_tx, ends) = mpsc::unbounded_channel();
    let mut phone = Patter::new(config).on_call_end(move |summary| {
        let end_tx = end_tx.clone();
        async move {
            let _ = end_tx.send(summary);
        }
    });
    if survey {
        phone = phone.agent("survey", Survey).expect("survey agent");
    }
    let server = phone.start_on(listener, Reminder).await.expect("starts");
    Line {
        server,
        base,
        engine,
        rest,
        ends,
        engine_conns: 0,
    }
}

impl Line {
    /// Dials and returns the handle with Twilio's side of the call.
    async fn dial(&self, dial: Dial) -> (OutboundCall, Dialled) {
        let before = self.creates().len();
        let call = self.server.dial(dial).await.expect("dialled");
        let creates = self.creates();
        assert_eq!(creates.len(), before + 1, "one Calls.json create per dial");
        let create = creates.last().cloned().expect("create");
        assert_eq!(create.call_sid, call.sid());
        let problems = twilio_calls_spec::violations("CreateCall", &create.form);
        assert!(problems.is_empty(), "{problems:#?}");
        (
            call,
            Dialled {
                create,
                base: self.base.clone(),
                sequence: 0,
            },
        )
    }

    fn creates(&self) -> Vec<RestRequest> {
        self.rest
            .requests()
            .into_iter()
            .filter(|r| r.created)
            .collect()
    }

    /// The REST updates of `call_sid` so far, each checked against Twilio's UpdateCall.
    fn updates(&self, call_sid: &str) -> Vec<RestRequest> {
        let updates: Vec<RestRequest> = self
            .rest
            .requests()
            .into_iter()
            .filter(|r| !r.created && r.call_sid == call_sid && !r.path.contains("Recordings"))
            .collect();
        for update in &updates {
            let problems = twilio_calls_spec::violations("UpdateCall", &update.form);
            assert!(problems.is_empty(), "{problems:#?}");
        }
        updates
    }

    async fn wait_for_update(&self, call_sid: &str, n: usize) -> RestRequest {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let updates = self.updates(call_sid);
            if updates.len() >= n {
                return updates[n - 1].clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "REST update {n} of {call_sid} never came"
            );
            let seen = self.rest.requests().len();
            let _ = self
                .rest
                .wait_for_request(seen + 1, std::time::Duration::from_millis(200))
                .await;
        }
    }

    /// The next engine connection, once configured.
    async fn next_engine(&mut self) -> ConnHandle {
        let conn = self
            .engine
            .wait_for_conn(self.engine_conns, WAIT)
            .await
            .expect("engine connection");
        self.engine_conns += 1;
        conn.wait_for_event("session.update", WAIT)
            .await
            .expect("session.update");
        conn
    }
}

/// Twilio's side of one dialled call: the URLs it was given, called back as Twilio does.
struct Dialled {
    create: RestRequest,
    base: String,
    sequence: u32,
}

/// The path and query of one of our public URLs.
fn path_of(url: &str) -> String {
    url.strip_prefix(PUBLIC_URL)
        .unwrap_or_else(|| panic!("{url} is not under {PUBLIC_URL}"))
        .to_owned()
}

impl Dialled {
    fn sid(&self) -> &str {
        &self.create.call_sid
    }

    fn param(&self, name: &str) -> &str {
        self.create
            .param(name)
            .unwrap_or_else(|| panic!("create has no {name}"))
    }

    async fn post(&self, url: &str, extra: &[(&str, &str)]) -> (u16, String) {
        let mut params = vec![
            ("CallSid", self.sid()),
            ("AccountSid", "AC00000000000000000000000000000acc"),
            ("From", "+15550100"),
            ("To", self.create.param("To").unwrap_or_default()),
            ("Direction", "outbound-api"),
            ("ApiVersion", "2010-04-01"),
        ];
        let account = account_sid();
        params[1].1 = &account;
        params.extend_from_slice(extra);
        let (status, _, body) =
            fake_twilio::post_signed(&self.base, PUBLIC_URL, &path_of(url), AUTH_TOKEN, &params)
                .await;
        (status, body)
    }

    async fn status(&mut self, status: &str, extra: &[(&str, &str)]) -> u16 {
        self.sequence += 1;
        let sequence = self.sequence.to_string();
        let url = self.param("StatusCallback").to_owned();
        let mut params = vec![
            ("CallStatus", status),
            ("SequenceNumber", sequence.as_str()),
        ];
        params.extend_from_slice(extra);
        self.post(&url, &params).await.0
    }

    async fn voice(&self, answered_by: Option<&str>) -> String {
        let url = self.param("Url").to_owned();
        let mut params = vec![("CallStatus", "in-progress")];
        if let Some(by) = answered_by {
            params.push(("AnsweredBy", by));
            params.push(("MachineDetectionDuration", "2400"));
        }
        let (status, twiml) = self.post(&url, &params).await;
        assert_eq!(status, 200, "{twiml}");
        twiml
    }

    async fn amd(&self, answered_by: &str) -> u16 {
        let url = self.param("AsyncAmdStatusCallback").to_owned();
        self.post(
            &url,
            &[
                ("AnsweredBy", answered_by),
                ("MachineDetectionDuration", "3100"),
            ],
        )
        .await
        .0
    }

    /// Connects the stream a `<Connect><Stream>` TwiML asks for.
    async fn stream(&self, twiml: &str, n: u128) -> MediaStream {
        let (url, params) = parse_twiml(twiml);
        let stream = MediaStream::connect_signed_as(
            &format!("{}/twilio/stream", self.base.replace("http", "ws")),
            &url,
            AUTH_TOKEN,
        )
        .await
        .expect("stream connects");
        stream.send_connected().await.expect("connected");
        let pairs: Vec<(&str, &str)> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        stream
            .send_start(&twilio_sid("MZ", n), self.sid(), &account_sid(), &pairs)
            .await
            .expect("start");
        stream
    }

    /// Twilio reached the voicemail TwiML's `<Redirect>`: the message played in full.
    async fn voicemail_played(&self, twiml: &str) -> String {
        let start = twiml.find("<Redirect method=\"POST\">").expect("redirect") + 24;
        let end = start + twiml[start..].find("</Redirect>").expect("end");
        let url = twiml[start..end].replace("&amp;", "&");
        let (status, body) = self.post(&url, &[("CallStatus", "in-progress")]).await;
        assert_eq!(status, 200, "{body}");
        body
    }
}

/// Every event of the call until it is over, then its outcome.
async fn finish(mut call: OutboundCall) -> (Vec<DialEvent>, CallOutcome) {
    let mut events = Vec::new();
    let read = async {
        while let Some(event) = call.next_event().await {
            events.push(event);
        }
    };
    tokio::time::timeout(WAIT, read)
        .await
        .expect("the call's events end in time");
    let outcome = tokio::time::timeout(WAIT, call.outcome())
        .await
        .expect("outcome in time");
    (events, outcome)
}

/// One step of Twilio's side of a scenario.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// A status callback.
    Status(&'static str),
    /// A failed status with Twilio's error code and SIP response.
    Failed,
    /// The voice webhook (with `AnsweredBy` under synchronous detection); a stream answer
    /// is connected and its engine session awaited.
    Voice(Option<&'static str>),
    /// Async detection's callback.
    Amd(&'static str),
    /// Twilio ends the stream (the call moved on, or hung up).
    StopStream,
    /// The voicemail's `<Say>` finished and Twilio followed its `<Redirect>`.
    VoicemailPlayed,
}

struct Scenario {
    name: &'static str,
    detection: MachineDetection,
    voicemail: bool,
    steps: &'static [Step],
    expect: fn(&CallOutcome) -> bool,
}

fn scenarios() -> Vec<Scenario> {
    use Step::*;
    vec![
        Scenario {
            name: "a person answers, no detection",
            detection: MachineDetection::Off,
            voicemail: false,
            steps: &[
                Status("initiated"),
                Status("ringing"),
                Status("in-progress"),
                Voice(None),
                StopStream,
                Status("completed"),
            ],
            expect: |o| {
                matches!(o, CallOutcome::Answered { answered_by: None, summary: Some(s) }
                    if s.reason == EndReason::StreamStopped)
            },
        },
        Scenario {
            name: "a person answers, detection in the background",
            detection: MachineDetection::HumanFirst,
            voicemail: true,
            steps: &[
                Status("ringing"),
                Status("in-progress"),
                Voice(None),
                Amd("human"),
                StopStream,
                Status("completed"),
            ],
            expect: |o| {
                matches!(
                    o,
                    CallOutcome::Answered {
                        answered_by: Some(AnsweredBy::Human),
                        summary: Some(_)
                    }
                )
            },
        },
        Scenario {
            name: "machine (beep) detected after the greeting started",
            detection: MachineDetection::HumanFirst,
            voicemail: true,
            steps: &[
                Status("in-progress"),
                Voice(None),
                Amd("machine_end_beep"),
                StopStream,
                VoicemailPlayed,
                Status("completed"),
            ],
            expect: |o| {
                matches!(
                    o,
                    CallOutcome::VoicemailLeft {
                        answered_by: AnsweredBy::MachineEndBeep
                    }
                )
            },
        },
        Scenario {
            name: "machine (silence), waiting for detection",
            detection: MachineDetection::Wait,
            voicemail: true,
            steps: &[
                Status("ringing"),
                Status("in-progress"),
                Voice(Some("machine_end_silence")),
                VoicemailPlayed,
                Status("completed"),
            ],
            expect: |o| {
                matches!(
                    o,
                    CallOutcome::VoicemailLeft {
                        answered_by: AnsweredBy::MachineEndSilence
                    }
                )
            },
        },
        Scenario {
            name: "machine (other), waiting for detection",
            detection: MachineDetection::Wait,
            voicemail: true,
            steps: &[
                Status("in-progress"),
                Voice(Some("machine_end_other")),
                VoicemailPlayed,
                Status("completed"),
            ],
            expect: |o| {
                matches!(
                    o,
                    CallOutcome::VoicemailLeft {
                        answered_by: AnsweredBy::MachineEndOther
                    }
                )
            },
        },
        Scenario {
            name: "machine without a voicemail, waiting: hung up",
            detection: MachineDetection::Wait,
            voicemail: false,
            steps: &[
                Status("in-progress"),
                Voice(Some("machine_start")),
                Status("completed"),
            ],
            expect: |o| {
                matches!(
                    o,
                    CallOutcome::Machine {
                        answered_by: AnsweredBy::MachineStart
                    }
                )
            },
        },
        Scenario {
            name: "machine without a voicemail, in the background: the agent stops",
            detection: MachineDetection::HumanFirst,
            voicemail: false,
            steps: &[
                Status("in-progress"),
                Voice(None),
                Amd("machine_start"),
                StopStream,
                Status("completed"),
            ],
            expect: |o| {
                matches!(
                    o,
                    CallOutcome::Machine {
                        answered_by: AnsweredBy::MachineStart
                    }
                )
            },
        },
        Scenario {
            name: "fax, in the background",
            detection: MachineDetection::HumanFirst,
            voicemail: true,
            steps: &[
                Status("in-progress"),
                Voice(None),
                Amd("fax"),
                StopStream,
                Status("completed"),
            ],
            expect: |o| matches!(o, CallOutcome::Fax),
        },
        Scenario {
            name: "fax, waiting",
            detection: MachineDetection::Wait,
            voicemail: true,
            steps: &[
                Status("in-progress"),
                Voice(Some("fax")),
                Status("completed"),
            ],
            expect: |o| matches!(o, CallOutcome::Fax),
        },
        Scenario {
            name: "detection cannot tell: the agent talks",
            detection: MachineDetection::Wait,
            voicemail: true,
            steps: &[
                Status("in-progress"),
                Voice(Some("unknown")),
                StopStream,
                Status("completed"),
            ],
            expect: |o| {
                matches!(
                    o,
                    CallOutcome::Answered {
                        answered_by: Some(AnsweredBy::Unknown),
                        summary: Some(_)
                    }
                )
            },
        },
        Scenario {
            name: "no answer",
            detection: MachineDetection::HumanFirst,
            voicemail: true,
            steps: &[Status("initiated"), Status("ringing"), Status("no-answer")],
            expect: |o| matches!(o, CallOutcome::NoAnswer),
        },
        Scenario {
            name: "busy",
            detection: MachineDetection::Off,
            voicemail: false,
            steps: &[Status("initiated"), Status("busy")],
            expect: |o| matches!(o, CallOutcome::Busy),
        },
        Scenario {
            name: "failed, with Twilio's reason",
            detection: MachineDetection::Off,
            voicemail: false,
            steps: &[Status("initiated"), Failed],
            expect: |o| {
                matches!(o, CallOutcome::Failed { reason }
                    if reason.contains("13224") && reason.contains("SIP 404"))
            },
        },
        Scenario {
            name: "cancelled while ringing",
            detection: MachineDetection::Off,
            voicemail: false,
            steps: &[Status("ringing"), Status("canceled")],
            expect: |o| matches!(o, CallOutcome::Canceled),
        },
        Scenario {
            name: "hung up during the voicemail",
            detection: MachineDetection::Wait,
            voicemail: true,
            steps: &[
                Status("in-progress"),
                Voice(Some("machine_end_beep")),
                Status("completed"),
            ],
            expect: |o| {
                matches!(
                    o,
                    CallOutcome::VoicemailInterrupted {
                        answered_by: AnsweredBy::MachineEndBeep
                    }
                )
            },
        },
        Scenario {
            name: "status callbacks before the stream, replayed and out of order",
            detection: MachineDetection::Off,
            voicemail: false,
            steps: &[
                Status("in-progress"),
                Status("ringing"),
                Status("in-progress"),
                Voice(None),
                StopStream,
                Status("completed"),
                Status("completed"),
                Status("busy"),
            ],
            expect: |o| {
                matches!(
                    o,
                    CallOutcome::Answered {
                        summary: Some(_),
                        ..
                    }
                )
            },
        },
        Scenario {
            name: "the final status before the stream ends",
            detection: MachineDetection::Off,
            voicemail: false,
            steps: &[
                Status("in-progress"),
                Voice(None),
                Status("completed"),
                StopStream,
            ],
            expect: |o| {
                matches!(
                    o,
                    CallOutcome::Answered {
                        summary: Some(_),
                        ..
                    }
                )
            },
        },
    ]
}

#[tokio::test]
async fn every_scenario_maps_to_its_outcome() {
    let mut line = line(Limits::default()).await;
    let table = scenarios();
    assert!(table.len() >= 14);
    for (n, scenario) in table.iter().enumerate() {
        let mut dial = Dial::to("+15550123")
            .variable("name", "Ada")
            .variable("day", "Friday")
            .machine_detection(scenario.detection);
        if scenario.voicemail {
            dial = dial.voicemail(VOICEMAIL);
        }
        let (call, mut twilio) = line.dial(dial).await;
        let mut stream: Option<MediaStream> = None;
        let mut conn: Option<ConnHandle> = None;
        let mut say_twiml: Option<String> = None;
        let mut statuses = Vec::new();
        for step in scenario.steps {
            match *step {
                Step::Status(s) => {
                    assert_eq!(twilio.status(s, &[]).await, 200, "{}", scenario.name);
                    if let Some(status) = CallStatus::parse(s) {
                        statuses.push(status);
                    }
                }
                Step::Failed => {
                    let code = twilio
                        .status(
                            "failed",
                            &[("ErrorCode", "13224"), ("SipResponseCode", "404")],
                        )
                        .await;
                    assert_eq!(code, 200);
                    statuses.push(CallStatus::Failed);
                }
                Step::Voice(answered_by) => {
                    let twiml = twilio.voice(answered_by).await;
                    if twiml.contains("<Connect>") {
                        stream = Some(twilio.stream(&twiml, n as u128).await);
                        let engine = line.next_engine().await;
                        // The agent greets at once, before any detection result.
                        engine
                            .wait_for_event("response.create", WAIT)
                            .await
                            .unwrap_or_else(|e| panic!("{}: greeting: {e}", scenario.name));
                        conn = Some(engine);
                    } else if twiml.contains("<Say>") {
                        say_twiml = Some(twiml);
                    } else {
                        assert!(twiml.contains("<Hangup/>"), "{}: {twiml}", scenario.name);
                    }
                }
                Step::Amd(answered_by) => {
                    let before = line.updates(twilio.sid()).len();
                    assert_eq!(twilio.amd(answered_by).await, 204, "{}", scenario.name);
                    if answered_by != "human" {
                        let update = line.wait_for_update(twilio.sid(), before + 1).await;
                        let twiml = update.param("Twiml").expect("TwiML replaces the stream");
                        assert!(twiml.len() <= 4000, "Twilio's inline TwiML limit: {twiml}");
                        if twiml.contains("<Say>") {
                            say_twiml = Some(twiml.to_owned());
                        } else {
                            assert!(twiml.contains("<Hangup/>"), "{twiml}");
                        }
                    } else {
                        assert_eq!(line.updates(twilio.sid()).len(), before);
                    }
                }
                Step::StopStream => {
                    let s = stream.as_ref().expect("a stream to stop");
                    s.send_stop().await.expect("stop");
                    let summary = tokio::time::timeout(WAIT, line.ends.recv())
                        .await
                        .expect("on_call_end")
                        .expect("open");
                    assert_eq!(summary.context.call_id(), twilio.sid());
                }
                Step::VoicemailPlayed => {
                    let twiml = say_twiml.as_deref().expect("a voicemail was started");
                    let answer = twilio.voicemail_played(twiml).await;
                    assert!(answer.contains("<Hangup/>"), "{answer}");
                }
            }
        }
        if let Some(twiml) = &say_twiml {
            // Verbatim, escaped once, then the redirect that reports it played.
            assert!(
                twiml.contains(
                    "<Say>Hi, this is the clinic: your appointment is tomorrow at 10 &amp; we&apos;ll see you &lt;soon&gt;.</Say>"
                ),
                "{}: {twiml}",
                scenario.name
            );
        }
        let (events, outcome) = finish(call).await;
        assert!(
            (scenario.expect)(&outcome),
            "{}: got {outcome:?}",
            scenario.name
        );
        // Each status once, in the order calls move, whatever Twilio replays.
        let seen: Vec<CallStatus> = events
            .iter()
            .filter_map(|e| match e {
                DialEvent::Status(s) => Some(*s),
                _ => None,
            })
            .collect();
        let mut expected: Vec<CallStatus> = Vec::new();
        for s in statuses {
            let last = expected.last().copied();
            let fresh = last.is_none_or(|l: CallStatus| !l.is_final() && stage(s) > stage(l));
            if fresh {
                expected.push(s);
            }
        }
        assert_eq!(seen, expected, "{}", scenario.name);
        if let Some(conn) = conn {
            conn.wait_closed(WAIT).await.expect("engine session closed");
        }
        assert_eq!(
            line.server.active_calls(),
            0,
            "{}: slot freed",
            scenario.name
        );
    }
    // A machine under synchronous detection never opened an engine session.
    assert_eq!(line.engine.connections(), line.engine_conns);
    line.engine.assert_no_schema_violations();
}

fn stage(s: CallStatus) -> u8 {
    match s {
        CallStatus::Queued => 0,
        CallStatus::Initiated => 1,
        CallStatus::Ringing => 2,
        CallStatus::InProgress => 3,
        _ => 4,
    }
}

#[tokio::test]
async fn numbers_that_are_not_e164_are_refused_before_any_request() {
    let line = line(Limits::default()).await;
    for bad in [
        "5550123",
        "+0123",
        "+1 555 0123",
        "tel:+15550123",
        "+1234567890123456",
        "",
    ] {
        let refused = line.server.call(bad).await.expect_err(bad);
        assert!(
            matches!(&refused, DialError::InvalidNumber { which: "to", number } if number == bad),
            "{refused:?}"
        );
    }
    let refused = line
        .server
        .dial(Dial::to("+15550123").voicemail("Call us back."))
        .await
        .expect_err("a voicemail needs detection");
    assert_eq!(refused, DialError::VoicemailWithoutDetection);
    let refused = line
        .server
        .dial(Dial::to("+15550123").agent("nobody"))
        .await
        .expect_err("unknown agent");
    assert_eq!(refused, DialError::UnknownAgent("nobody".into()));
    let refused = line
        .server
        .dial(Dial::to("+15550123").ring_timeout(std::time::Duration::from_secs(2)))
        .await
        .expect_err("ring timeout out of range");
    assert!(matches!(refused, DialError::Invalid(_)), "{refused:?}");
    assert!(
        line.rest.requests().is_empty(),
        "{:?}",
        line.rest.requests()
    );
    assert_eq!(line.server.active_calls(), 0);
}

#[tokio::test]
async fn a_rest_error_on_create_is_a_typed_error_and_frees_the_slot() {
    let line = line(Limits::default()).await;
    line.rest.set_status(400);
    let refused = line
        .server
        .call("+15550123")
        .await
        .expect_err("Twilio refuses");
    match &refused {
        DialError::Rejected {
            status,
            code,
            message,
        } => {
            assert_eq!(*status, 400);
            assert_eq!(*code, Some(21200), "Twilio's error code is kept");
            assert!(message.contains("forced"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(refused.to_string().contains("error 21200"), "{refused}");
    assert_eq!(line.server.active_calls(), 0);
    line.rest.set_status(503);
    assert!(matches!(
        line.server.call("+15550123").await,
        Err(DialError::Rejected { status: 503, .. })
    ));
    line.rest.reset_status();
    let call = line
        .server
        .call("+15550123")
        .await
        .expect("dials once Twilio is back");
    assert_eq!(line.server.active_calls(), 1);
    drop(call);
}

#[tokio::test]
async fn dialled_calls_count_against_the_limit_from_dialling() {
    let mut limits = Limits::default();
    limits.max_concurrent_calls = 1;
    let mut line = line(limits).await;
    let (call, mut twilio) = line.dial(Dial::to("+15550123")).await;
    assert_eq!(line.server.active_calls(), 1, "counted while ringing");
    assert_eq!(
        line.server.call("+15550124").await.expect_err("full"),
        DialError::AtCapacity
    );
    // An inbound call meanwhile hears the busy message.
    let (status, _, twiml) = fake_twilio::post_voice_webhook(
        &line.base,
        PUBLIC_URL,
        AUTH_TOKEN,
        &[
            ("CallSid", &twilio_sid("CA", 0xbeef)),
            ("From", "+15550111"),
            ("To", "+15550100"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert!(twiml.contains("<Say>") && twiml.contains("busy"), "{twiml}");
    // The dialled call itself is not turned away: it holds its slot.
    let voice = twilio.voice(None).await;
    assert!(voice.contains("<Connect>"), "{voice}");
    let stream = twilio.stream(&voice, 1).await;
    let conn = line.next_engine().await;
    assert_eq!(line.server.active_calls(), 1, "one slot for the whole call");
    stream.send_stop().await.expect("stop");
    conn.wait_closed(WAIT).await.expect("closed");
    twilio.status("completed", &[]).await;
    let (_, outcome) = finish(call).await;
    assert!(
        matches!(outcome, CallOutcome::Answered { .. }),
        "{outcome:?}"
    );
    assert_eq!(line.server.active_calls(), 0);
    let again = line.server.call("+15550124").await.expect("a slot again");
    drop(again);
}

#[tokio::test]
async fn draining_stops_new_dials_and_cancels_calls_still_ringing() {
    let mut limits = Limits::default();
    limits.drain_timeout = std::time::Duration::from_millis(300);
    let line = line(limits).await;
    let (call, mut twilio) = line.dial(Dial::to("+15550123")).await;
    twilio.status("ringing", &[]).await;
    line.server.begin_shutdown();
    let refused = line.server.call("+15550124").await.expect_err("draining");
    assert_eq!(refused, DialError::Draining);
    // At the drain deadline the unanswered call is cancelled over REST.
    let cancel = line.wait_for_update(twilio.sid(), 1).await;
    assert_eq!(cancel.param("Status"), Some("canceled"));
    twilio.status("canceled", &[]).await;
    let (_, outcome) = finish(call).await;
    assert!(matches!(outcome, CallOutcome::Canceled), "{outcome:?}");
    tokio::time::timeout(WAIT, line.server.shutdown())
        .await
        .expect("stops in time")
        .expect("stops cleanly");
}

#[tokio::test]
async fn callbacks_refuse_bad_signatures_and_states_not_signed_here() {
    let mut line = line(Limits::default()).await;
    let (call, twilio) = line
        .dial(
            Dial::to("+15550123")
                .machine_detection(MachineDetection::HumanFirst)
                .voicemail(VOICEMAIL),
        )
        .await;
    // No signature, or a wrong one: 403 on every callback route.
    for url in [
        twilio.param("StatusCallback"),
        twilio.param("AsyncAmdStatusCallback"),
        twilio.param("Url"),
    ] {
        let target = format!("{}{}", line.base, path_of(url));
        let (status, _, _) = fake_twilio::post_form(
            &target,
            &[],
            &[("CallSid", twilio.sid()), ("AnsweredBy", "fax")],
        )
        .await;
        assert_eq!(status, 403, "{url}");
        let (status, _, _) = fake_twilio::post_form(
            &target,
            &[("X-Twilio-Signature", "bm90IGEgc2lnbmF0dXJl")],
            &[("CallSid", twilio.sid()), ("AnsweredBy", "fax")],
        )
        .await;
        assert_eq!(status, 403, "{url}");
    }
    let voicemail_path = format!(
        "/twilio/voicemail?outbound={}",
        twilio
            .param("Url")
            .split("outbound=")
            .nth(1)
            .unwrap_or_default()
    );
    let (status, _, _) =
        fake_twilio::post_form(&format!("{}{voicemail_path}", line.base), &[], &[]).await;
    assert_eq!(status, 403);
    assert!(line.updates(twilio.sid()).is_empty(), "nothing acted on");

    // Signed by Twilio, but the dial state was made with another secret: refused.
    let other_rest = Arc::new(FakeTwilioRest::start().await);
    let other = line_signed(
        Arc::new(FakeRealtime::start().await),
        other_rest.clone(),
        Limits::default(),
        "another deployment's secret",
        true,
    )
    .await;
    let foreign = other.server.call("+15550123").await.expect("dials");
    let foreign_create = other_rest.requests().remove(0);
    let foreign_url = foreign_create.param("Url").expect("url").to_owned();
    let (status, body) = twilio.post(&foreign_url, &[]).await;
    assert_eq!(status, 403, "{body}");
    let foreign_state = foreign_url
        .split("outbound=")
        .nth(1)
        .expect("state")
        .to_owned();
    let amd = format!("{PUBLIC_URL}/twilio/amd?outbound={foreign_state}");
    assert_eq!(twilio.post(&amd, &[("AnsweredBy", "fax")]).await.0, 403);
    assert!(line.updates(twilio.sid()).is_empty());
    // A stream presenting a foreign state opens no engine session.
    let voice = twilio.voice(None).await;
    let tampered = voice.replace(
        voice
            .split("name=\"outbound\" value=\"")
            .nth(1)
            .and_then(|v| v.split('"').next())
            .expect("outbound parameter"),
        &foreign_state,
    );
    let stream = twilio.stream(&tampered, 9).await;
    stream
        .wait_closed(WAIT)
        .await
        .expect("refused stream closed");
    assert_eq!(line.engine.connections(), 0);
    line.engine_conns = 0;

    // A status for a dial this server no longer follows is answered and changes nothing
    // here; machine detection's answer still acts on the call (any instance may take it).
    let mut twilio = twilio;
    twilio.status("busy", &[]).await;
    let (_, outcome) = finish(call).await;
    assert!(matches!(outcome, CallOutcome::Busy));
    assert_eq!(twilio.status("completed", &[]).await, 200);
    assert_eq!(twilio.amd("machine_end_beep").await, 204);
    drop(foreign);
}

#[tokio::test]
async fn a_dialled_call_brings_its_variables_first_message_and_agent() {
    let mut line = line(Limits::default()).await;
    let (call, mut twilio) = line
        .dial(
            Dial::to("+15550123")
                .variable("name", "Ada")
                .variable("day", "Friday")
                .first_message("Hi Ada, it's the clinic about Friday.")
                .ring_timeout(std::time::Duration::from_secs(25))
                .time_limit(std::time::Duration::from_secs(600)),
        )
        .await;
    assert_eq!(twilio.param("Timeout"), "25");
    assert_eq!(twilio.param("TimeLimit"), "600");
    assert_eq!(twilio.param("From"), "+15550100");
    assert_eq!(twilio.param("To"), "+15550123");
    assert_eq!(
        twilio.create.params("StatusCallbackEvent"),
        ["initiated", "ringing", "answered", "completed"]
    );
    assert!(twilio.create.param("MachineDetection").is_none());
    let voice = twilio.voice(None).await;
    let stream = twilio.stream(&voice, 1).await;
    let conn = line.next_engine().await;
    let update = conn.events_of_type("session.update").remove(0);
    let instructions = update["session"]["instructions"]
        .as_str()
        .expect("instructions");
    assert_eq!(instructions, "You remind Ada of an appointment on Friday.");
    assert!(!instructions.contains("outbound"), "{instructions}");
    let greeting = conn
        .wait_for_event("response.create", WAIT)
        .await
        .expect("greeting");
    assert!(
        greeting
            .to_string()
            .contains("Hi Ada, it's the clinic about Friday."),
        "{greeting}"
    );
    stream.send_stop().await.expect("stop");
    twilio.status("completed", &[]).await;
    let (_, outcome) = finish(call).await;
    let CallOutcome::Answered {
        summary: Some(summary),
        ..
    } = outcome
    else {
        panic!("{outcome:?}");
    };
    assert!(summary.context.parameters().get("outbound").is_none());
    assert_eq!(summary.context.direction(), patter::Direction::Outbound);

    // A named agent.
    let (call, mut twilio) = line.dial(Dial::to("+15550123").agent("survey")).await;
    let voice = twilio.voice(None).await;
    let stream = twilio.stream(&voice, 2).await;
    let conn = line.next_engine().await;
    let update = conn.events_of_type("session.update").remove(0);
    assert_eq!(update["session"]["instructions"], "You run surveys.");
    stream.send_stop().await.expect("stop");
    twilio.status("completed", &[]).await;
    assert!(matches!(finish(call).await.1, CallOutcome::Answered { .. }));
    line.engine.assert_no_schema_violations();
}

/// Behind a load balancer: the dialling instance places the call, another one takes its
/// webhook and stream, with no state shared but the secret.
#[tokio::test]
async fn another_instance_takes_the_webhook_and_the_stream() {
    let engine = Arc::new(FakeRealtime::start().await);
    let rest = Arc::new(FakeTwilioRest::start().await);
    let mut first = line_with(engine.clone(), rest.clone(), Limits::default()).await;
    let mut second = line_with(engine.clone(), rest.clone(), Limits::default()).await;
    let (call, mut twilio) = first
        .dial(
            Dial::to("+15550123")
                .variable("name", "Ada")
                .variable("day", "Monday"),
        )
        .await;
    twilio.status("in-progress", &[]).await;
    twilio.base = second.base.clone();
    let voice = twilio.voice(None).await;
    let stream = twilio.stream(&voice, 3).await;
    let conn = second.next_engine().await;
    first.engine_conns += 1;
    let update = conn.events_of_type("session.update").remove(0);
    assert_eq!(
        update["session"]["instructions"],
        "You remind Ada of an appointment on Monday."
    );
    assert_eq!(second.server.active_calls(), 1);
    stream.send_stop().await.expect("stop");
    let summary = tokio::time::timeout(WAIT, second.ends.recv())
        .await
        .expect("ended on the second instance")
        .expect("open");
    assert_eq!(summary.context.call_id(), twilio.sid());
    twilio.base = first.base.clone();
    twilio.status("completed", &[]).await;
    let (_, outcome) = finish(call).await;
    assert!(
        matches!(outcome, CallOutcome::Answered { summary: None, .. }),
        "the conversation ran elsewhere: {outcome:?}"
    );
    assert_eq!(first.server.active_calls(), 0);
    assert_eq!(second.server.active_calls(), 0);
    assert!(first.ends.try_recv().is_err());
}

#[tokio::test]
async fn a_dialled_call_without_a_first_message_waits_for_the_callee() {
    let mut line = line(Limits::default()).await;
    let (call, mut twilio) = line
        .dial(
            Dial::to("+15550123")
                .variable("name", "Ada")
                .variable("day", "Friday")
                .no_first_message(),
        )
        .await;
    let voice = twilio.voice(None).await;
    let stream = twilio.stream(&voice, 4).await;
    let conn = line.next_engine().await;
    stream.send_stop().await.expect("stop");
    conn.wait_closed(WAIT).await.expect("closed");
    assert!(
        conn.events_of_type("response.create").is_empty(),
        "no greeting: {:?}",
        conn.event_types()
    );
    twilio.status("completed", &[]).await;
    assert!(matches!(finish(call).await.1, CallOutcome::Answered { .. }));
}

/// During a rolling update an instance may not know the agent a dial names: it refuses
/// the stream rather than run another agent's prompt and tools.
#[tokio::test]
async fn a_stream_naming_an_agent_not_registered_here_is_refused() {
    let engine = Arc::new(FakeRealtime::start().await);
    let rest = Arc::new(FakeTwilioRest::start().await);
    let first = line_with(engine.clone(), rest.clone(), Limits::default()).await;
    let older = line_signed(
        engine.clone(),
        rest.clone(),
        Limits::default(),
        "shared stream secret",
        false,
    )
    .await;
    let (call, mut twilio) = first.dial(Dial::to("+15550123").agent("survey")).await;
    twilio.base = older.base.clone();
    let voice = twilio.voice(None).await;
    let stream = twilio.stream(&voice, 5).await;
    stream.wait_closed(WAIT).await.expect("refused");
    assert_eq!(engine.connections(), 0, "no engine session opened");
    assert_eq!(older.server.active_calls(), 0);
    twilio.base = first.base.clone();
    twilio.status("completed", &[]).await;
    drop(call);
}
