//! OpenTelemetry traces over OTLP/HTTP (feature `otel`).
//!
//! [`Otel::install`] gives a `tracing` layer that exports patter's spans (and the
//! application's) through `opentelemetry-otlp`, configured by the standard variables:
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`),
//! `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT`, `OTEL_SERVICE_NAME`,
//! `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_BSP_SCHEDULE_DELAY`, …
//!
//! ```no_run
//! use tracing_subscriber::layer::SubscriberExt;
//! use tracing_subscriber::util::SubscriberInitExt;
//!
//! let (otel, _guard) = patter::telemetry::otel::Otel::from_env().install()?;
//! tracing_subscriber::registry().with(otel).init();
//! // … serve; dropping the guard flushes the spans still queued.
//! # Ok::<(), patter::telemetry::otel::OtelError>(())
//! ```
//!
//! Each call is one trace, from the voice webhook's request span: the stream's
//! `carrier.stream` span continues it (the webhook passes its context in the TwiML), and
//! holds `call` → `turn` → `tool`, with `engine.session` beside the turns.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use tracing_opentelemetry::{OpenTelemetryLayer, OpenTelemetrySpanExt};
use tracing_subscriber::registry::LookupSpan;

/// The exporter could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("OpenTelemetry export could not be set up: {0}")]
pub struct OtelError(String);

/// How traces are exported; see the module documentation.
#[derive(Debug, Clone, Default)]
pub struct Otel {
    endpoint: Option<String>,
}

impl Otel {
    /// Configured by the `OTEL_*` variables only.
    pub fn from_env() -> Self {
        Otel::default()
    }

    /// Sends traces to this URL (`http://collector:4318/v1/traces`), whatever the
    /// variables say.
    pub fn traces_endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// Builds the exporter and its batch processor; returns the layer to add to your
    /// subscriber and the guard that flushes on drop.
    pub fn install<S>(self) -> Result<(OpenTelemetryLayer<S, SdkTracer>, OtelGuard), OtelError>
    where
        S: tracing::Subscriber + for<'span> LookupSpan<'span>,
    {
        crate::util::install_crypto_provider();
        let mut builder = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary);
        if let Some(endpoint) = self.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        let exporter = builder.build().map_err(|e| OtelError(e.to_string()))?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(opentelemetry_sdk::Resource::builder().build())
            .build();
        let tracer = provider.tracer("patter");
        let layer = tracing_opentelemetry::layer().with_tracer(tracer);
        Ok((layer, OtelGuard(provider)))
    }
}

/// Flushes and stops the exporter when dropped.
#[derive(Debug)]
pub struct OtelGuard(SdkTracerProvider);

impl OtelGuard {
    /// Exports every span finished so far, now.
    pub fn flush(&self) {
        let _ = self.0.force_flush();
    }
}

impl Drop for OtelGuard {
    fn drop(&mut self) {
        let _ = self.0.shutdown();
    }
}

/// The W3C `traceparent` of `span`, if it is being exported.
pub(crate) fn traceparent(span: &tracing::Span) -> Option<String> {
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    carrier.remove("traceparent")
}

/// Makes `span` continue the trace of `traceparent`.
pub(crate) fn continue_trace(span: &tracing::Span, traceparent: &str) {
    let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let cx = TraceContextPropagator::new().extract(&carrier);
    let _ = span.set_parent(cx);
}
