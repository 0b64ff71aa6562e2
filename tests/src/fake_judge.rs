//! A fake of the OpenAI Responses API (`POST /v1/responses`) on `127.0.0.1`, for
//! `patter::testing::Judge`: each request is recorded (its `Authorization` header and JSON
//! body), and answered by a function of the body with a verdict in the Responses shape (a
//! `message` item whose `output_text` is the verdict's JSON), or with an error status.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// How the fake answers one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JudgeAnswer {
    /// A verdict.
    Verdict {
        /// Pass or fail.
        pass: bool,
        /// Why.
        reason: String,
    },
    /// An error status with this body.
    Status(u16, String),
}

type AnswerFn = dyn Fn(&Value) -> JudgeAnswer + Send + Sync;

struct Shared {
    answer: Box<AnswerFn>,
    requests: Mutex<Vec<(Option<String>, Value)>>,
}

/// The fake; dropping it stops the server.
pub struct FakeJudge {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for FakeJudge {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeJudge {
    /// Starts the fake with `answer` deciding each verdict.
    pub async fn start(answer: impl Fn(&Value) -> JudgeAnswer + Send + Sync + 'static) -> Self {
        let shared = Arc::new(Shared {
            answer: Box::new(answer),
            requests: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/v1/responses", post(respond))
            .with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("FakeJudge: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("FakeJudge: local address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeJudge { addr, shared, task }
    }

    /// The API base to give the judge: `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Every request so far: its `Authorization` header and JSON body.
    pub fn requests(&self) -> Vec<(Option<String>, Value)> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

async fn respond(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: String) -> Response {
    let body: Value = match serde_json::from_str(&body) {
        Ok(body) => body,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    shared
        .requests
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((auth, body.clone()));
    match (shared.answer)(&body) {
        JudgeAnswer::Status(status, text) => (
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            text,
        )
            .into_response(),
        JudgeAnswer::Verdict { pass, reason } => {
            let verdict = json!({ "pass": pass, "reason": reason }).to_string();
            axum::Json(json!({
                "id": "resp_judge1",
                "object": "response",
                "status": "completed",
                "model": body["model"],
                "output": [{
                    "type": "message", "id": "msg_judge1", "status": "completed",
                    "role": "assistant",
                    "content": [{ "type": "output_text", "text": verdict, "annotations": [] }]
                }]
            }))
            .into_response()
        }
    }
}
