//! `GET /metrics` (feature `prometheus`): the Prometheus text format, behind
//! `Authorization: Bearer <PATTER_METRICS_TOKEN>` when a token is set; on the main port, or
//! on `PATTER_METRICS_PORT` of its own.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::task::JoinHandle;
use tracing::info;

use super::App;
use crate::telemetry::prometheus;

pub(super) async fn scrape(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Some(token) = &app.config.metrics_token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !crate::util::constant_time_eq(given.as_bytes(), token.expose().as_bytes()) {
            return (StatusCode::UNAUTHORIZED, "a bearer token is needed").into_response();
        }
    }
    match prometheus::render() {
        Some(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no Prometheus recorder").into_response(),
    }
}

/// Serves `/metrics` alone on `PATTER_METRICS_PORT`, if set, until the task is aborted.
pub(super) async fn serve_own_port(app: &Arc<App>) -> std::io::Result<Option<JoinHandle<()>>> {
    let Some(port) = app.config.metrics_port else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind((app.config.bind, port)).await?;
    info!(addr = %listener.local_addr()?, "serving /metrics");
    let router = Router::new()
        .route("/metrics", get(scrape))
        .with_state(Arc::clone(app));
    Ok(Some(tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    })))
}
