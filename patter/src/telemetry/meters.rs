//! Where each metric is recorded: one function per event, called by the session and the
//! server, so names and labels live in one place.

use std::time::Duration;

use metrics::{counter, gauge, histogram};

use crate::call::{CallSummary, ToolTiming, TurnMetrics};
use crate::tool::Direction;

fn direction(direction: Direction) -> &'static str {
    match direction {
        Direction::Inbound => "inbound",
        Direction::Outbound => "outbound",
    }
}

/// A call's session started.
pub(crate) fn call_started() {
    gauge!("patter_calls_active").increment(1.0);
}

/// A call ended: its totals.
pub(crate) fn call_ended(summary: &CallSummary) {
    gauge!("patter_calls_active").decrement(1.0);
    let dir = direction(summary.context.direction());
    counter!("patter_calls_total", "direction" => dir, "end_reason" => summary.reason.kind())
        .increment(1);
    histogram!("patter_call_duration_seconds", "direction" => dir)
        .record(summary.duration.as_secs_f64());
    let m = &summary.metrics;
    counter!("patter_barge_ins_total").increment(u64::from(m.barge_ins));
    counter!("patter_frames_total", "direction" => "in").increment(m.frames_in);
    counter!("patter_frames_total", "direction" => "out").increment(m.frames_out);
    counter!("patter_frames_total", "direction" => "malformed").increment(m.malformed_frames);
    let u = &m.usage;
    for (kind, n) in [
        ("text_in", u.text_in),
        ("audio_in", u.audio_in),
        ("cached_text_in", u.cached_text_in),
        ("cached_audio_in", u.cached_audio_in),
        ("text_out", u.text_out),
        ("audio_out", u.audio_out),
    ] {
        counter!("patter_engine_tokens_total", "kind" => kind).increment(n);
    }
    if let Some(cost) = &m.cost {
        let micro =
            |money: crate::call::Money| u64::try_from(money.0 / 1_000_000).unwrap_or(u64::MAX);
        counter!("patter_cost_microdollars_total", "part" => "engine")
            .increment(micro(cost.engine));
        counter!("patter_cost_microdollars_total", "part" => "carrier")
            .increment(micro(cost.carrier));
    }
}

/// A turn ended.
pub(crate) fn turn_ended(turn: &TurnMetrics) {
    if let Some(wait) = turn.response_time {
        histogram!("patter_turn_response_seconds").record(wait.as_secs_f64());
    }
    if let Some(played) = turn.played_after {
        histogram!("patter_turn_played_seconds").record(played.as_secs_f64());
    }
    if let Some(first) = turn.first_audio {
        histogram!("patter_engine_first_audio_seconds").record(first.as_secs_f64());
    }
}

/// A tool call finished. Tool names come from code, never from a caller.
pub(crate) fn tool_finished(timing: &ToolTiming) {
    histogram!(
        "patter_tool_duration_seconds",
        "tool" => timing.name.clone(),
        "outcome" => if timing.outcome == "ok" { "ok" } else { "error" }
    )
    .record(timing.duration.as_secs_f64());
    if timing.outcome != "ok" {
        counter!("patter_tool_errors_total", "tool" => timing.name.clone(), "type" => timing.outcome)
            .increment(1);
    }
}

/// The engine's session opened (or failed to) after `took`.
pub(crate) fn engine_connected(engine: &'static str, took: Duration, ok: bool) {
    histogram!(
        "patter_engine_connect_seconds",
        "engine" => engine,
        "outcome" => if ok { "ok" } else { "error" }
    )
    .record(took.as_secs_f64());
}

/// A lost or stalled engine session was replaced, or could not be.
pub(crate) fn engine_reconnected(engine: &'static str, cause: &'static str, ok: bool) {
    counter!(
        "patter_engine_reconnects_total",
        "engine" => engine,
        "cause" => cause,
        "outcome" => if ok { "ok" } else { "failed" }
    )
    .increment(1);
}

/// The engine reported an error.
pub(crate) fn engine_error(engine: &'static str, fatal: bool) {
    counter!("patter_engine_errors_total", "engine" => engine, "fatal" => if fatal { "true" } else { "false" })
        .increment(1);
}

/// A request without a valid Twilio signature was refused.
pub(crate) fn signature_rejected(route: &'static str) {
    counter!("patter_signature_rejections_total", "route" => route).increment(1);
}

/// A call was turned away (draining, or at the call limit).
pub(crate) fn turned_away() {
    counter!("patter_calls_busy_total").increment(1);
}
