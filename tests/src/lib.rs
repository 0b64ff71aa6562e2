//! Test support for patter's integration tests: fakes of both ends of a call, on loopback.
//!
//! * [`realtime_schema`]: strict validation of OpenAI Realtime GA events against the
//!   official schemas in `tests/data/`.
//! * [`fake_openai`]: [`FakeRealtime`](fake_openai::FakeRealtime), a fake OpenAI Realtime GA
//!   WebSocket server that records and validates every client event, plus builders of GA
//!   server events; with a scripted model ([`fake_model`]) it answers text conversations.
//! * [`fake_twilio`]: Twilio's side — request signatures, signed webhook POSTs, a fake Media
//!   Streams client ([`MediaStream`](fake_twilio::MediaStream)) and a fake Calls REST API
//!   ([`FakeTwilioRest`](fake_twilio::FakeTwilioRest)).
//! * [`load`]: what the load benchmarks (`soak`, `loadgen`) share: Twilio-style call
//!   placement, stamped caller frames, lean message shapes, process figures from `/proc`.
//!
//! Everything listens on or connects to `127.0.0.1` only. Every wait takes a `Duration` (or
//! uses [`DEFAULT_TIMEOUT`]) and is woken by the event it waits for; only
//! [`load::wait_until`] polls, for states that announce no event (another process's figures).

pub mod fake_judge;
pub mod fake_model;
pub mod fake_openai;
pub mod fake_twilio;
pub mod load;
pub mod realtime_schema;
mod signal;
pub mod twilio_calls_spec;

use std::time::Duration;

/// The bound used where a helper does not take a timeout (connects, handshakes, writes,
/// HTTP exchanges): 5 seconds.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// A Twilio-style SID: `prefix` followed by 32 lower-case hex digits of `n`
/// (`twilio_sid("CA", 1)` = `CA00000000000000000000000000000001`).
pub fn twilio_sid(prefix: &str, n: u128) -> String {
    format!("{prefix}{n:032x}")
}
