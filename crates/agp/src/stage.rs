//! The steps of a method run that its LLM calls are counted under.

use serde::{Deserialize, Serialize};

/// Pipeline stage a call belongs to; accounting and scheduling only, never part of a cache key.
/// The serde names are what reports, checkpoints and the external-method protocol's
/// `x-agp-stage` header use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Profile,
    Rerank,
    Feedback,
    Summarize,
    Edit,
    Verify,
    Test,
    Other,
}

impl Stage {
    pub const ALL: [Stage; 8] = [
        Stage::Profile,
        Stage::Rerank,
        Stage::Feedback,
        Stage::Summarize,
        Stage::Edit,
        Stage::Verify,
        Stage::Test,
        Stage::Other,
    ];

    /// The serde name, which is also the account label an LLM call is booked under.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Profile => "profile",
            Stage::Rerank => "rerank",
            Stage::Feedback => "feedback",
            Stage::Summarize => "summarize",
            Stage::Edit => "edit",
            Stage::Verify => "verify",
            Stage::Test => "test",
            Stage::Other => "other",
        }
    }

    /// The stage an account label names, if it names one.
    pub fn from_account(account: &str) -> Option<Stage> {
        Self::ALL.into_iter().find(|s| s.as_str() == account)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_labels_are_the_serde_names() {
        for s in Stage::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
            assert_eq!(Stage::from_account(s.as_str()), Some(s));
        }
        assert_eq!(Stage::from_account("Rerank"), None);
    }
}
