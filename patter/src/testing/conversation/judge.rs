//! [`Judge`]: a small text model that says whether a conversation does what was intended.
//!
//! It asks the OpenAI Responses API (`POST {base}/responses`) for a structured verdict,
//! `{"pass": bool, "reason": "…"}`, with a JSON schema it must follow.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use crate::secret::Secret;

/// The judge's model when none is set (`PATTER_JUDGE_MODEL`).
pub const DEFAULT_JUDGE_MODEL: &str = "gpt-5-mini";
/// OpenAI's API when no base URL is set (`OPENAI_BASE_URL`).
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
/// How long one verdict may take.
const JUDGE_TIMEOUT: Duration = Duration::from_secs(60);

const INSTRUCTIONS: &str = "You check phone conversations between a caller and an AI agent. \
You are given the conversation so far (messages, and the agent's tool calls with their \
results) and an intent. Decide whether the agent's side of the conversation does what the \
intent says. Judge only the intent; do not judge style. Answer with pass and a one-sentence \
reason.";

/// What the judge decided.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct Verdict {
    /// Whether the conversation does what was intended.
    pub pass: bool,
    /// Why, in a sentence.
    pub reason: String,
}

/// Why the judge could not give a verdict.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JudgeError {
    /// No judge is set (no `OPENAI_API_KEY`, or none given with `judge_with`).
    #[error("no judge is set: set OPENAI_API_KEY, or give one with Conversation::judge_with")]
    NotSet,
    /// The request failed or timed out.
    #[error("the judge's request failed: {0}")]
    Request(String),
    /// The API answered with an error status.
    #[error("the judge's API answered {status}: {body}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// The answer held no verdict.
    #[error("the judge's answer held no verdict: {0}")]
    Answer(String),
}

/// A judge: a text model behind the Responses API.
#[derive(Clone)]
pub struct Judge {
    base_url: String,
    model: String,
    api_key: Secret,
}

impl fmt::Debug for Judge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Judge")
            .field("base_url", &crate::util::redact_url(&self.base_url))
            .field("model", &self.model)
            .field("api_key", &self.api_key)
            .finish()
    }
}

impl Judge {
    /// A judge at OpenAI with this key and the default model.
    pub fn new(api_key: impl Into<String>) -> Self {
        Judge {
            base_url: DEFAULT_BASE_URL.to_owned(),
            model: DEFAULT_JUDGE_MODEL.to_owned(),
            api_key: Secret::new(api_key),
        }
    }

    /// From the environment: `OPENAI_API_KEY`, and optionally `OPENAI_BASE_URL` and
    /// `PATTER_JUDGE_MODEL`. `None` without a key.
    pub fn from_env() -> Option<Self> {
        let key = std::env::var("OPENAI_API_KEY").ok()?;
        if key.trim().is_empty() {
            return None;
        }
        let mut judge = Judge::new(key.trim());
        if let Ok(url) = std::env::var("OPENAI_BASE_URL")
            && !url.trim().is_empty()
        {
            judge = judge.base_url(url.trim());
        }
        if let Ok(model) = std::env::var("PATTER_JUDGE_MODEL")
            && !model.trim().is_empty()
        {
            judge = judge.model(model.trim());
        }
        Some(judge)
    }

    /// Another API base (default `https://api.openai.com/v1`): a proxy, or a local fake.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into().trim_end_matches('/').to_owned();
        self
    }

    /// Another model (default `gpt-5-mini`).
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = model.into();
        self
    }

    /// The judge's verdict on whether `conversation` does what `intent` says.
    pub async fn verdict(&self, conversation: &str, intent: &str) -> Result<Verdict, JudgeError> {
        let client =
            crate::tool::webhook::http_client().map_err(|e| JudgeError::Request(e.to_string()))?;
        let body = json!({
            "model": self.model,
            "instructions": INSTRUCTIONS,
            "input": format!("The conversation:\n{conversation}\nThe intent: {intent}"),
            "text": {
                "format": {
                    "type": "json_schema",
                    "name": "verdict",
                    "strict": true,
                    "schema": {
                        "type": "object",
                        "properties": {
                            "pass": { "type": "boolean" },
                            "reason": { "type": "string" }
                        },
                        "required": ["pass", "reason"],
                        "additionalProperties": false
                    }
                }
            }
        });
        let request = client
            .post(format!("{}/responses", self.base_url))
            .bearer_auth(self.api_key.expose())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .timeout(JUDGE_TIMEOUT)
            .send();
        let response = request
            .await
            .map_err(|e| JudgeError::Request(e.without_url().to_string()))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| JudgeError::Request(e.without_url().to_string()))?;
        if !status.is_success() {
            return Err(JudgeError::Status {
                status: status.as_u16(),
                body: text.chars().take(300).collect(),
            });
        }
        read_verdict(&text)
    }
}

/// The verdict in a Responses API answer: the JSON text of its first `output_text`.
fn read_verdict(body: &str) -> Result<Verdict, JudgeError> {
    #[derive(Deserialize)]
    struct Answer {
        #[serde(default)]
        output: Vec<Item>,
    }
    #[derive(Deserialize)]
    struct Item {
        #[serde(default)]
        content: Vec<Part>,
    }
    #[derive(Deserialize)]
    struct Part {
        #[serde(rename = "type")]
        kind: String,
        #[serde(default)]
        text: String,
    }
    let answer: Answer =
        serde_json::from_str(body).map_err(|e| JudgeError::Answer(e.to_string()))?;
    let text = answer
        .output
        .iter()
        .flat_map(|item| &item.content)
        .find(|part| part.kind == "output_text")
        .map(|part| part.text.as_str())
        .ok_or_else(|| JudgeError::Answer("no output_text in the answer".to_owned()))?;
    serde_json::from_str(text).map_err(|e| JudgeError::Answer(format!("{e}: {text}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verdict_is_read_from_the_first_output_text() {
        let body = r#"{"id":"resp_1","output":[
            {"type":"reasoning","summary":[]},
            {"type":"message","role":"assistant","content":[
                {"type":"output_text","text":"{\"pass\":false,\"reason\":\"It never said.\"}"}]}]}"#;
        assert_eq!(
            read_verdict(body),
            Ok(Verdict {
                pass: false,
                reason: "It never said.".to_owned()
            })
        );
        assert!(matches!(
            read_verdict(r#"{"output":[]}"#),
            Err(JudgeError::Answer(_))
        ));
        assert!(matches!(
            read_verdict(r#"{"output":[{"content":[{"type":"output_text","text":"yes"}]}]}"#),
            Err(JudgeError::Answer(_))
        ));
    }
}
