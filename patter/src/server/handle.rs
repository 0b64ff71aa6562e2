//! [`Server`]: a running server as a value, to place calls from and to stop.

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::App;
use crate::error::{Error, Result};
use crate::outbound::{Dial, DialError, OutboundCall};

/// A server that is running: it takes calls, places them ([`Server::call`],
/// [`Server::dial`]), and stops on [`Server::shutdown`] (or, when started with
/// [`Patter::start`](crate::Patter::start), on Ctrl-C or SIGTERM).
pub struct Server {
    app: Arc<App>,
    addr: SocketAddr,
    stop: Mutex<Option<oneshot::Sender<()>>>,
    task: JoinHandle<Result<()>>,
}

impl Server {
    pub(crate) fn spawn(
        app: Arc<App>,
        listener: tokio::net::TcpListener,
        signals: bool,
    ) -> Result<Server> {
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            if signals {
                tokio::select! {
                    _ = stopped => {}
                    () = super::termination_signal() => {}
                }
            } else {
                let _ = stopped.await;
            }
        };
        let task = tokio::spawn(super::serve_app(Arc::clone(&app), listener, shutdown));
        Ok(Server {
            app,
            addr,
            stop: Mutex::new(Some(stop)),
            task,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Calls `to` (an E.164 number) with the agent's settings.
    pub async fn call(&self, to: &str) -> Result<OutboundCall, DialError> {
        self.dial(Dial::to(to)).await
    }

    /// Places `dial`. It counts against `max_concurrent_calls` from now until its outcome;
    /// a draining server places none.
    pub async fn dial(&self, dial: Dial) -> Result<OutboundCall, DialError> {
        super::outbound::dial(&self.app, dial).await
    }

    /// How many calls are in progress or being dialled.
    pub fn active_calls(&self) -> usize {
        self.app.calls.active()
    }

    /// Starts draining without waiting: no new calls in or out; calls in progress may
    /// finish until the drain deadline, then end, and dialled calls not yet answered are
    /// cancelled.
    pub fn begin_shutdown(&self) {
        // Refuse dials from now on, not from when the drain task next runs.
        self.app
            .draining
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let stop = self
            .stop
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(stop) = stop {
            let _ = stop.send(());
        }
    }

    /// Drains (see [`Server::begin_shutdown`]) and stops.
    pub async fn shutdown(mut self) -> Result<()> {
        self.begin_shutdown();
        self.wait_task().await
    }

    /// Runs until the server stops by itself (Ctrl-C or SIGTERM, when it listens for them).
    pub async fn wait(mut self) -> Result<()> {
        self.wait_task().await
    }

    async fn wait_task(&mut self) -> Result<()> {
        match (&mut self.task).await {
            Ok(done) => done,
            Err(e) => Err(Error::Io(std::io::Error::other(e.to_string()))),
        }
    }
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}
