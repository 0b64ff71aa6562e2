//! The agents behind the example binaries, as a library so the test suite can pin their
//! tool schemas, and the few lines every example binary shares.

pub mod appointment_reminder;
pub mod customer_service;
pub mod product_specialist;

use std::process::ExitCode;
use std::sync::Arc;

use patter::{Agent, AgentSpec, Patter};
use tracing_subscriber::Layer as _;

/// Loads `.env`, sets up logging, reads the configuration and serves `agent` until Ctrl-C;
/// or tries it locally instead ([`try_locally`]: `console`, `--softphone`).
///
/// A missing or malformed variable is one message naming each, and exit code 2.
pub async fn serve(agent: impl Agent) -> ExitCode {
    // A missing .env file is fine: the variables may come from the environment.
    let _ = dotenvy::dotenv();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let agent = match try_locally(agent, &args).await {
        Ok(code) => return code,
        Err(agent) => agent,
    };
    // Kept to the end: with traces exported, dropping it flushes them.
    let _telemetry = logging(false, "info,patter=debug");
    let (phone, agent) = match settings(agent) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    let port = phone.config().port();
    let phone = phone.on_call_end(|summary| async move {
        println!(
            "call {} ended ({:?}) after {:.0?}: {} turns, {} tool calls",
            summary.context.call_id(),
            summary.reason,
            summary.duration,
            summary.transcript.len(),
            summary.tool_calls.len()
        );
    });
    match phone.serve(agent, port).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// With the argument `console`, talks to `agent` in text (see `patter::console`); with
/// `--softphone` (or `PATTER_SOFTPHONE=1`), serves the browser softphone
/// (`patter::softphone`). Either needs only `OPENAI_API_KEY`. The agent comes back when
/// neither was asked for.
pub async fn try_locally<A: Agent>(agent: A, args: &[String]) -> Result<ExitCode, A> {
    let console = args.first().map(String::as_str) == Some("console");
    if !console && !patter::softphone::requested(args) {
        return Err(agent);
    }
    // stdout is the conversation, or the one line with the softphone's address; only
    // warnings and errors go to stderr.
    let _telemetry = logging(true, "warn");
    Ok(if console {
        patter::console::Console::new(agent)
            .run_from_env(args.to_vec())
            .await
    } else {
        patter::softphone::Softphone::run_from_env(agent).await
    })
}

/// Reads the configuration from the environment and checks `agent`'s tools. A missing or
/// malformed variable, or an invalid tool, is printed (each one, with what to set) and
/// gives exit code 2.
pub fn settings(agent: impl Agent) -> Result<(Patter, AgentSpec), ExitCode> {
    // Both checks run first, so one message names every missing variable.
    let agent = Arc::new(agent).spec();
    let phone = Patter::from_env();
    match (phone, agent) {
        (Ok(phone), Ok(agent)) => Ok((phone, agent)),
        (phone, agent) => {
            if let Err(e) = &phone {
                eprintln!("error: {e}");
            }
            if let Err(e) = &agent {
                eprintln!("error: {e}");
            }
            let missing: Vec<_> = phone
                .err()
                .iter()
                .flat_map(|e| e.missing().map(str::to_owned).collect::<Vec<_>>())
                .collect();
            if !missing.is_empty() {
                eprintln!(
                    "set {} in the environment or in a .env file (see README.md)",
                    missing.join(", ")
                );
            }
            Err(ExitCode::from(2))
        }
    }
}

/// What keeps telemetry running: with the `otel` feature, the exporter's guard (dropping it
/// flushes the spans still queued).
pub struct Telemetry {
    #[cfg(feature = "otel")]
    _otel: Option<patter::telemetry::otel::OtelGuard>,
}

/// Sets up logging (to stderr when `to_stderr`, filtered by `RUST_LOG`, else `default`)
/// and, with the `otel` feature, trace export configured by the `OTEL_*` variables.
pub fn logging(to_stderr: bool, default: &str) -> Telemetry {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into());
    let fmt = tracing_subscriber::fmt::layer();
    let fmt = if to_stderr {
        fmt.with_writer(std::io::stderr).boxed()
    } else {
        fmt.boxed()
    };
    let registry = tracing_subscriber::registry().with(filter).with(fmt);
    #[cfg(feature = "otel")]
    {
        match patter::telemetry::otel::Otel::from_env().install() {
            Ok((otel, guard)) => {
                registry.with(otel).init();
                Telemetry { _otel: Some(guard) }
            }
            Err(e) => {
                registry.init();
                tracing::warn!(error = %e, "traces are not exported");
                Telemetry { _otel: None }
            }
        }
    }
    #[cfg(not(feature = "otel"))]
    {
        registry.init();
        Telemetry {}
    }
}
