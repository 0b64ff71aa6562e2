//! The crate's error type for setting up and serving.

use std::fmt;

use crate::tool::ToolSetError;

/// Setting up or serving failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is incomplete or malformed.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The agent's tools are invalid.
    #[error("the agent's tools are invalid: {0}")]
    Agent(#[from] ToolSetError),
    /// The server could not bind or serve.
    #[error("the server failed: {0}")]
    Io(#[from] std::io::Error),
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every missing or malformed setting at once, each naming its variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    problems: Vec<(String, String)>,
}

impl ConfigError {
    pub(crate) fn new() -> Self {
        ConfigError {
            problems: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, variable: &str, problem: impl Into<String>) {
        self.problems.push((variable.to_owned(), problem.into()));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.problems.is_empty()
    }

    /// The variables with a problem, in the order checked.
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.problems.iter().map(|(v, _)| v.as_str())
    }

    /// The variables that are not set at all.
    pub fn missing(&self) -> impl Iterator<Item = &str> {
        self.problems
            .iter()
            .filter(|(_, p)| p == "is not set")
            .map(|(v, _)| v.as_str())
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("configuration problem: ")?;
        for (i, (variable, problem)) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{variable} {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}
