//! Metrics and traces of the calls a server runs.
//!
//! Traces: each call is a span tree, `carrier.stream` → `call` → `turn` → `tool`, with
//! `engine.session` under the call, and `http.request` for every route. Field names are
//! stable: `call.id`, `call.direction`, `turn.index`, `tool.name`, and the OpenTelemetry
//! GenAI conventions' `gen_ai.system`, `gen_ai.request.model`, `gen_ai.operation.name`,
//! `gen_ai.tool.name`, `gen_ai.tool.call.id`, `gen_ai.usage.input_tokens`,
//! `gen_ai.usage.output_tokens`. No phone number, transcript, tool argument or secret is
//! put in a span by default; `PATTER_CALLER_HASH_KEY` adds `call.caller_hash` (a keyed
//! hash of the caller's number), and `PATTER_TRACE_TRANSCRIPTS=1` adds each turn's words
//! as events. The `otel` feature exports them ([`otel`]).
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
//! | `patter_engine_reconnects_total` | counter | `engine`, `cause` (`lost`, `stalled`), `outcome` (`ok`, `failed`) |
//! | `patter_barge_ins_total` | counter | |
//! | `patter_frames_total` | counter | `direction` (`in`, `out`, `malformed`) |
//! | `patter_engine_tokens_total` | counter | `kind` |
//! | `patter_cost_microdollars_total` | counter | `part` (`engine`, `carrier`) |
//! | `patter_signature_rejections_total` | counter | `route` |
//! | `patter_calls_busy_total` | counter | |

pub(crate) mod meters;
#[cfg(feature = "otel")]
pub mod otel;
#[cfg(feature = "prometheus")]
pub mod prometheus;

/// The `<Parameter>` that carries the voice webhook's trace context to the stream.
pub(crate) const TRACEPARENT: &str = "traceparent";

/// The current span's W3C `traceparent`, when traces are exported (feature `otel`).
pub(crate) fn current_traceparent() -> Option<String> {
    #[cfg(feature = "otel")]
    {
        otel::traceparent(&tracing::Span::current())
    }
    #[cfg(not(feature = "otel"))]
    {
        None
    }
}

/// Makes `span` continue the trace `traceparent` names (feature `otel`; otherwise nothing).
pub(crate) fn continue_trace(span: &tracing::Span, traceparent: &str) {
    #[cfg(feature = "otel")]
    otel::continue_trace(span, traceparent);
    #[cfg(not(feature = "otel"))]
    let _ = (span, traceparent);
}
