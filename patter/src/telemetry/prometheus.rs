//! The Prometheus exporter (feature `prometheus`): a recorder installed once per process,
//! rendered on `GET /metrics` of the server (or on a port of its own with
//! `PATTER_METRICS_PORT`), behind a bearer token when `PATTER_METRICS_TOKEN` is set.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Histogram buckets for every `*_seconds` metric: voice latencies live between 50 ms and a
/// few seconds; call durations reach the last buckets.
const BUCKETS: &[f64] = &[
    0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process's Prometheus recorder, installed on first use. `None` if the application
/// installed another recorder first (its metrics then go there; `/metrics` is not served).
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), BUCKETS);
            match builder.and_then(PrometheusBuilder::install_recorder) {
                Ok(handle) => Some(handle),
                Err(e) => {
                    tracing::warn!(error = %e, "Prometheus recorder not installed; /metrics is off");
                    None
                }
            }
        })
        .as_ref()
}

/// The current metrics in Prometheus's text format.
pub fn render() -> Option<String> {
    let handle = handle()?;
    handle.run_upkeep();
    Some(handle.render())
}
