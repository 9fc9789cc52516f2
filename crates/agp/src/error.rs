//! One error type for the crate: every variant says where the problem is (config field,
//! data file, user and stage of an LLM call, checkpoint path).

use agp_llm::{FailureReason, LlmError};

use crate::Stage;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum AgpError {
    /// A config value outside its allowed range.
    #[error("config field `{field}`: {got} is outside the allowed range {allowed}")]
    Config {
        field: &'static str,
        allowed: String,
        got: String,
    },

    /// Dataset and candidate file do not fit together (or one is malformed).
    #[error("data: {0}")]
    Data(String),

    /// An LLM call failed; the source keeps the request id and HTTP status where there is one.
    #[error("LLM call failed at stage {stage:?}{}: {source}", user.map(|u| format!(" for user {u}")).unwrap_or_default())]
    Llm {
        stage: Stage,
        user: Option<u32>,
        #[source]
        source: LlmError,
    },

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("checkpoint {path}: {message}")]
    Checkpoint { path: PathBuf, message: String },

    /// A method from outside this crate (another process, a user's `Reranker`) failed or broke
    /// its protocol; the message names the method and what it did.
    #[error("{0}")]
    Method(String),
}

impl AgpError {
    /// Why the LLM call failed; `None` for errors that are not an LLM call's.
    pub fn failure_reason(&self) -> Option<FailureReason> {
        match self {
            AgpError::Llm { source, .. } => Some(source.reason()),
            _ => None,
        }
    }

    pub(crate) fn config(
        field: &'static str,
        allowed: impl Into<String>,
        got: impl ToString,
    ) -> Self {
        AgpError::Config {
            field,
            allowed: allowed.into(),
            got: got.to_string(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        AgpError::Io {
            path: path.into(),
            source,
        }
    }
}
