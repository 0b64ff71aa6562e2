//! Call recording: `record` starts a dual-channel Twilio recording over REST when the call
//! starts, and the signed recording status callback reaches `on_recording`. Over loopback
//! against the fake Twilio REST API.

mod common;

use std::time::Duration;

use common::{AUTH_TOKEN, Harness, Options, PUBLIC_URL, WAIT};
use patter::{AgentSpec, CallSetup, EndReason, Recording};
use patter_tests::fake_twilio::{post_form, post_signed};
use tokio::sync::mpsc;

#[patter::agent(system_prompt = "You take messages.", record = true)]
struct Recorded;

/// A harness whose `on_recording` reports on a channel.
async fn harness(agent: impl patter::Agent) -> (Harness, mpsc::UnboundedReceiver<Recording>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let options = Options {
        configure: Box::new(move |phone| {
            phone.on_recording(move |recording| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(recording);
                }
            })
        }),
        ..Options::default()
    };
    (Harness::start_with(agent, options).await, rx)
}

#[tokio::test]
async fn a_recorded_call_asks_twilio_for_a_dual_channel_recording_and_reports_it() {
    let (mut h, mut recordings) = harness(Recorded).await;
    let call = h.call(91).await;
    let requests = h
        .rest
        .wait_for_request(1, WAIT)
        .await
        .expect("a REST request");
    let start = &requests[0];
    assert_eq!(
        start.path,
        format!(
            "/2010-04-01/Accounts/{}/Calls/{}/Recordings.json",
            common::account_sid(),
            call.call_sid
        )
    );
    assert!(start.basic_auth().is_some(), "authenticated");
    assert_eq!(start.param("RecordingChannels"), Some("dual"));
    assert_eq!(start.param("RecordingTrack"), Some("both"));
    assert_eq!(
        start.param("RecordingStatusCallback"),
        Some(format!("{PUBLIC_URL}/twilio/recording").as_str())
    );
    assert_eq!(
        start.params("RecordingStatusCallbackEvent"),
        ["completed", "absent"]
    );
    let callback = [
        ("AccountSid", common::account_sid()),
        ("CallSid", call.call_sid.clone()),
        (
            "RecordingSid",
            "RE00000000000000000000000000000001".to_owned(),
        ),
        (
            "RecordingUrl",
            "https://api.twilio.com/2010-04-01/Accounts/AC/Recordings/RE1".to_owned(),
        ),
        ("RecordingStatus", "completed".to_owned()),
        ("RecordingDuration", "42".to_owned()),
        ("RecordingChannels", "2".to_owned()),
        ("RecordingSource", "StartCallRecordingAPI".to_owned()),
    ];
    let params: Vec<(&str, &str)> = callback.iter().map(|(k, v)| (*k, v.as_str())).collect();

    // Unsigned or signed with another key: refused, and the hook never runs.
    let (status, _, _) = post_form(&format!("{}/twilio/recording", h.base), &[], &params).await;
    assert_eq!(status, 403);
    let (status, _, _) = post_signed(
        &h.base,
        PUBLIC_URL,
        "/twilio/recording",
        "not-the-token",
        &params,
    )
    .await;
    assert_eq!(status, 403);
    // Signed: the hook gets the recording.
    let (status, _, _) = post_signed(
        &h.base,
        PUBLIC_URL,
        "/twilio/recording",
        AUTH_TOKEN,
        &params,
    )
    .await;
    assert_eq!(status, 204);
    let recording = tokio::time::timeout(WAIT, recordings.recv())
        .await
        .expect("on_recording in time")
        .expect("a recording");
    assert_eq!(recording.call_id, call.call_sid);
    assert_eq!(recording.recording_id, "RE00000000000000000000000000000001");
    assert_eq!(recording.status, "completed");
    assert_eq!(recording.duration, Some(Duration::from_secs(42)));
    assert_eq!(recording.channels, Some(2));
    assert!(
        recordings.try_recv().is_err(),
        "refused callbacks ran no hook"
    );

    // A callback without its ids is a 400.
    let (status, _, _) = post_signed(
        &h.base,
        PUBLIC_URL,
        "/twilio/recording",
        AUTH_TOKEN,
        &[("CallSid", "CA1")],
    )
    .await;
    assert_eq!(status, 400);
    call.stream.send_stop().await.expect("stop");
    assert_eq!(h.next_end().await.reason, EndReason::StreamStopped);
}

#[tokio::test]
async fn a_refused_recording_leaves_the_call_going_and_unrecorded_calls_ask_nothing() {
    let (mut h, _recordings) = harness(Recorded).await;
    h.rest.set_status(400);
    let call = h.call(92).await;
    h.rest.wait_for_request(1, WAIT).await.expect("asked");
    // The call goes on: the engine session stays, audio still flows.
    let conn = h.engine_conn(0).await;
    call.stream
        .send_media(20, &common::mulaw_b64(160, 1))
        .await
        .expect("media");
    conn.wait_for_count("input_audio_buffer.append", 1, WAIT)
        .await
        .expect("audio still relayed");
    call.stream.send_stop().await.expect("stop");
    assert_eq!(h.next_end().await.reason, EndReason::StreamStopped);

    // An agent that does not record, with one call recorded by on_call_start.
    let options = Options {
        configure: Box::new(|phone| {
            phone.on_call_start(|_| async { CallSetup::new().record(true) })
        }),
        ..Options::default()
    };
    let mut h = Harness::start_with(AgentSpec::new("You take messages."), options).await;
    let call = h.call(93).await;
    let requests = h.rest.wait_for_request(1, WAIT).await.expect("asked");
    assert!(
        requests[0]
            .path
            .ends_with(&format!("{}/Recordings.json", call.call_sid))
    );
    call.stream.send_stop().await.expect("stop");
    h.next_end().await;

    // Not recorded at all: Twilio is asked nothing.
    let mut h = Harness::start(AgentSpec::new("You take messages.")).await;
    let call = h.call(94).await;
    h.engine_conn(0).await;
    call.stream.send_stop().await.expect("stop");
    h.next_end().await;
    assert!(h.rest.requests().is_empty(), "{:?}", h.rest.requests());
}
