//! Metrics and traces of the calls a server runs.
//!
//! Measurements go through the [`metrics`](https://docs.rs/metrics) facade, so they cost an
//! atomic load when no recorder is installed, and reach whatever recorder the application
//! installs. With the `prometheus` feature, the server installs a Prometheus recorder and
//! serves `/metrics` ([`prometheus`]). Labels never carry a phone number, transcript text,
//! tool argument or secret: only tool names, engine names, end reasons and routes.
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `patter_calls_active` | gauge | |
//! | `patter_calls_total` | counter | `direction`, `end_reason` |
//! | `patter_call_duration_seconds` | histogram | `direction` |
//! | `patter_turn_response_seconds` | histogram | |
//! | `patter_turn_played_seconds` | histogram | |
//! | `patter_engine_first_audio_seconds` | histogram | |
//! | `patter_tool_duration_seconds` | histogram | `tool`, `outcome` |
//! | `patter_tool_errors_total` | counter | `tool`, `type` |
//! | `patter_engine_connect_seconds` | histogram | `engine`, `outcome` |
//! | `patter_engine_errors_total` | counter | `engine`, `fatal` |
//! | `patter_barge_ins_total` | counter | |
//! | `patter_frames_total` | counter | `direction` (`in`, `out`, `malformed`) |
//! | `patter_engine_tokens_total` | counter | `kind` |
//! | `patter_cost_microdollars_total` | counter | `part` (`engine`, `carrier`) |
//! | `patter_signature_rejections_total` | counter | `route` |
//! | `patter_calls_busy_total` | counter | |

pub(crate) mod meters;
#[cfg(feature = "prometheus")]
pub mod prometheus;
