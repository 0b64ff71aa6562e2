//! A scripted model inside [`FakeRealtime`](crate::fake_openai::FakeRealtime): with one set
//! ([`FakeRealtime::start_with_model`](crate::fake_openai::FakeRealtime::start_with_model)),
//! every `response.create` is answered by a whole GA response, text or a tool call, decided
//! by a function of the conversation so far. It stands in for the real model in text-mode
//! tests (the console, `patter::testing::Conversation`), which drive the engine turn by turn
//! and cannot push events themselves.
//!
//! The conversation the function sees is what the client put in (`conversation.item.create`
//! items) and what the model produced, in order, as Realtime items.

use serde_json::{Value, json};

use crate::fake_openai::{
    function_call_events, next_event_id, output_item_added, output_item_done, response_done,
};

/// What the model sees when asked to respond.
#[derive(Debug, Clone)]
pub struct ModelInput {
    /// The conversation's items, oldest first.
    pub items: Vec<Value>,
    /// The session as configured (instructions, tools, `output_modalities`).
    pub session: Value,
}

impl ModelInput {
    /// The text of the caller's last message.
    pub fn last_user_text(&self) -> Option<&str> {
        self.items
            .iter()
            .rev()
            .find(|i| i["type"] == "message" && i["role"] == "user")
            .and_then(|i| i["content"][0]["text"].as_str())
    }

    /// The last item's tool output, if the last item is one.
    pub fn tool_output(&self) -> Option<&str> {
        self.items
            .last()
            .filter(|i| i["type"] == "function_call_output")
            .and_then(|i| i["output"].as_str())
    }

    /// Whether the session offers a tool of this name.
    pub fn has_tool(&self, name: &str) -> bool {
        self.session["tools"]
            .as_array()
            .is_some_and(|tools| tools.iter().any(|t| t["name"] == name))
    }
}

/// How the model responds.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelReply {
    /// A text message, streamed in a few deltas.
    Text(String),
    /// A call of this tool with these arguments.
    Call {
        /// The tool.
        name: String,
        /// Its arguments.
        arguments: Value,
    },
    /// A response that starts and never finishes.
    Stall,
    /// An `error` event instead of a response (what a refused `response.create` gets).
    Error {
        /// The code.
        code: String,
        /// The message.
        message: String,
    },
}

impl ModelReply {
    /// A text reply.
    pub fn text(text: impl Into<String>) -> Self {
        ModelReply::Text(text.into())
    }

    /// A tool call.
    pub fn call(name: &str, arguments: Value) -> Self {
        ModelReply::Call {
            name: name.to_owned(),
            arguments,
        }
    }
}

/// A scripted model.
pub type ModelFn = dyn Fn(&ModelInput) -> ModelReply + Send + Sync;

/// The server events of `reply` as response number `n`, and the items it adds to the
/// conversation.
pub fn reply_events(n: u64, reply: &ModelReply) -> (Vec<Value>, Vec<Value>) {
    let response_id = format!("resp_model{n:04}");
    let item_id = format!("item_model{n:04}");
    match reply {
        ModelReply::Stall => (vec![text_response_created(&response_id)], Vec::new()),
        ModelReply::Error { code, message } => (
            vec![json!({
                "type": "error", "event_id": next_event_id(),
                "error": {"type": "invalid_request_error", "code": code, "message": message}
            })],
            Vec::new(),
        ),
        ModelReply::Call { name, arguments } => {
            let call_id = format!("call_model{n:04}");
            let arguments = arguments.to_string();
            let mut events = vec![text_response_created(&response_id)];
            events.extend(function_call_events(
                &response_id,
                &item_id,
                &call_id,
                name,
                &arguments,
            ));
            let item = json!({
                "id": item_id, "object": "realtime.item", "type": "function_call",
                "status": "completed", "call_id": call_id, "name": name, "arguments": arguments
            });
            events.push(response_done(&response_id, "completed", vec![item.clone()]));
            (events, vec![item])
        }
        ModelReply::Text(text) => {
            let item = |status: &str, text: &str| {
                json!({
                    "id": item_id, "object": "realtime.item", "type": "message",
                    "status": status, "role": "assistant",
                    "content": [{"type": "output_text", "text": text}]
                })
            };
            let mut events = vec![
                text_response_created(&response_id),
                output_item_added(&response_id, 0, item("in_progress", "")),
            ];
            for delta in pieces(text) {
                events.push(json!({
                    "type": "response.output_text.delta", "event_id": next_event_id(),
                    "response_id": response_id, "item_id": item_id,
                    "output_index": 0, "content_index": 0, "delta": delta
                }));
            }
            events.push(json!({
                "type": "response.output_text.done", "event_id": next_event_id(),
                "response_id": response_id, "item_id": item_id,
                "output_index": 0, "content_index": 0, "text": text
            }));
            let done = item("completed", text);
            events.push(output_item_done(&response_id, 0, done.clone()));
            events.push(response_done(&response_id, "completed", vec![done.clone()]));
            (events, vec![done])
        }
    }
}

fn text_response_created(response_id: &str) -> Value {
    let mut created = crate::fake_openai::response_created(response_id);
    created["response"]["output_modalities"] = json!(["text"]);
    created
}

/// Splits `text` into up to three deltas at word boundaries.
fn pieces(text: &str) -> Vec<String> {
    let words: Vec<&str> = text.split_inclusive(' ').collect();
    let size = words.len().div_ceil(3).max(1);
    words.chunks(size).map(|c| c.concat()).collect()
}
