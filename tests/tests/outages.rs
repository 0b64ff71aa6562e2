//! When the engine cannot be reached or fails, the caller hears an apology in Twilio's own
//! voice (a REST update of the live call with `<Say>`), then a hang-up or a transfer; never
//! silence. Credentials refused are not retried; a busy or failing engine is, within the
//! handshake budget.

mod common;

use std::time::Duration;

use common::{Harness, LogCapture, Options, WAIT};
use patter::{AgentSpec, EndReason, Limits};
use patter_tests::fake_twilio::RestRequest;

fn agent() -> AgentSpec {
    AgentSpec::new("You help.").first_message("Hello!")
}

/// The REST updates of `call_sid`.
fn updates(h: &Harness, call_sid: &str) -> Vec<RestRequest> {
    h.rest
        .requests()
        .into_iter()
        .filter(|r| !r.created && r.call_sid == call_sid)
        .collect()
}

const APOLOGY: &str = "<Say>Sorry, we can&apos;t take your call right now. Please try again in a few minutes. Goodbye.</Say><Hangup/>";

#[tokio::test]
async fn refused_credentials_are_not_retried_and_the_caller_hears_an_apology() {
    let capture = LogCapture::install();
    let mut h = Harness::start(agent()).await;
    h.engine.refuse_handshakes(&[401]);
    let call = h.call(1).await;
    let summary = h.next_end().await;
    match &summary.reason {
        EndReason::EngineLost { detail } => assert!(detail.contains("401"), "{detail}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(h.engine.refused_handshakes(), 1, "no retry storm");
    assert_eq!(h.engine.connections(), 0);
    let updates = updates(&h, &call.call_sid);
    assert_eq!(updates.len(), 1, "{updates:?}");
    let twiml = updates[0].param("Twiml").expect("TwiML");
    assert!(twiml.contains(APOLOGY), "{twiml}");
    assert!(
        updates[0].param("Status").is_none(),
        "an apology, not a bare hang-up"
    );
    call.stream.wait_closed(WAIT).await.expect("stream closed");
    let logs = capture.text();
    let said: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains(&call.call_sid) && l.contains("OPENAI_API_KEY"))
        .collect();
    assert_eq!(said.len(), 1, "one line names the setting:\n{logs}");
    assert!(said[0].contains("ERROR"), "{}", said[0]);
}

#[tokio::test]
async fn a_busy_then_failing_engine_is_retried_and_the_call_goes_on() {
    let h = Harness::start(agent()).await;
    h.engine.refuse_handshakes(&[429, 503]);
    let call = h.call(2).await;
    let conn = h.engine_conn(0).await;
    conn.wait_for_event("response.create", WAIT)
        .await
        .expect("the greeting, once connected");
    assert_eq!(h.engine.refused_handshakes(), 2);
    assert!(updates(&h, &call.call_sid).is_empty(), "no apology needed");
}

#[tokio::test]
async fn an_outage_past_the_budget_apologises_with_the_configured_words_then_transfers() {
    let mut limits = Limits::default();
    limits.engine_handshake_timeout = Duration::from_millis(1500);
    let mut h = Harness::start_with(
        agent(),
        Options {
            limits,
            config: Box::new(|c| {
                c.outage_message("We are closed for maintenance & will be back soon.")
                    .outage_voice("Polly.Amy")
                    .outage_transfer("+15550199")
            }),
            ..Options::default()
        },
    )
    .await;
    h.engine.refuse_all_handshakes(500);
    let call = h.call(3).await;
    let summary = h.next_end().await;
    assert!(matches!(summary.reason, EndReason::EngineLost { .. }));
    let tries = h.engine.refused_handshakes();
    assert!((2..=4).contains(&tries), "bounded retries, got {tries}");
    let updates = updates(&h, &call.call_sid);
    assert_eq!(updates.len(), 1);
    assert!(
        updates[0].param("Twiml").expect("TwiML").contains(
            "<Say voice=\"Polly.Amy\">We are closed for maintenance &amp; will be back soon.</Say><Dial>+15550199</Dial>"
        ),
        "{:?}",
        updates[0].param("Twiml")
    );
}

#[tokio::test]
async fn an_engine_lost_mid_call_and_not_reached_again_ends_with_the_apology_not_silence() {
    let mut h = Harness::start(agent()).await;
    let call = h.call(4).await;
    let conn = h.engine_conn(0).await;
    // Lost, and every reconnect refused (a lost engine that can be reached again is
    // replaced: see reconnect.rs).
    h.engine.refuse_all_handshakes(503);
    conn.drop_tcp();
    let summary = h.next_end().await;
    assert!(summary.reason.is_engine_failure(), "{:?}", summary.reason);
    let updates = updates(&h, &call.call_sid);
    assert_eq!(updates.len(), 1, "{updates:?}");
    assert!(
        updates[0].param("Twiml").expect("TwiML").contains(APOLOGY),
        "{:?}",
        updates[0].param("Twiml")
    );
}

#[tokio::test]
async fn if_the_carrier_cannot_apologise_the_call_is_still_hung_up() {
    let mut h = Harness::start(agent()).await;
    h.engine.refuse_handshakes(&[403]);
    // Twilio refuses the TwiML update: the plain hang-up is still tried.
    h.rest.set_status(500);
    let call = h.call(5).await;
    let summary = h.next_end().await;
    assert!(matches!(summary.reason, EndReason::EngineLost { .. }));
    let updates = updates(&h, &call.call_sid);
    assert_eq!(updates.len(), 2, "{updates:?}");
    assert!(updates[0].param("Twiml").is_some());
    assert_eq!(updates[1].param("Status"), Some("completed"));
}
