//! The JSON Lines protocol between the harness and an external method (version
//! [`PROTOCOL_VERSION`]); documented for method authors in `docs/external-methods.md`.
//!
//! One JSON object per line, UTF-8, in both directions. Every request the harness sends after
//! `hello` carries an `id`; the method answers each with the same `id`, in any order, so a
//! method may answer users concurrently.

use serde::{Deserialize, Serialize};

pub const PROTOCOL_VERSION: u32 = 1;

/// One item as the method sees it: the dataset's raw id and its prompt text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub id: String,
    pub text: String,
}

/// Which user set a user belongs to: `train` users come with feedback, `valid` users pick the
/// reported epoch, `test` users are the reported ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Train,
    Valid,
    Test,
}

/// One user to rank.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserInput {
    /// The dataset's raw user id.
    pub user: String,
    pub role: Role,
    /// Everything before the held-out item, oldest first (the method cuts it).
    pub history: Vec<Item>,
    /// The backbone's top-K, best first; a ranking refers to these by index.
    pub candidates: Vec<Item>,
}

/// Where the ground truth of a training user landed in the method's ranking: what AGP's
/// position-based feedback is built from, and nothing more.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Feedback {
    pub user: String,
    /// The method's ranking (candidate indices, best first), as it answered.
    pub ranking: Vec<usize>,
    /// Index of the ground truth among the candidates.
    pub ground_truth: usize,
    /// Its 1-based rank in `ranking` (K when the ranking left it out).
    pub rank: usize,
}

/// Harness → method.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToMethod {
    /// First line. `llm_base_url` is an OpenAI-compatible endpoint that forwards to the run's
    /// model (recorded, replayed, rate-limited and counted by the harness); the same URL is in
    /// the environment as `OPENAI_BASE_URL`.
    Hello {
        protocol: u32,
        method: String,
        k: usize,
        seed: u64,
        epochs: usize,
        llm_base_url: String,
        llm_model: String,
    },
    /// Rank one user's candidates. `epoch` is 0 before any training.
    Rank {
        id: u64,
        epoch: usize,
        #[serde(flatten)]
        input: UserInput,
    },
    /// Rank a training batch (answer with `rankings`, one per user, in order).
    TrainBatch {
        id: u64,
        epoch: usize,
        batch: usize,
        users: Vec<UserInput>,
    },
    /// The batch's feedback: update yourself, then answer `ok` (with your state, to checkpoint).
    Feedback {
        id: u64,
        epoch: usize,
        batch: usize,
        users: Vec<Feedback>,
    },
    /// Resume from a state you sent earlier (after a restart).
    Restore { id: u64, state: serde_json::Value },
}

/// Method → harness.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum FromMethod {
    /// Answer to `hello`.
    Ready { protocol: u32 },
    /// Answer to `rank`: candidate indices, best first. `failed` instead says that the model
    /// call this user needed failed for good (the `reason` of the loopback endpoint's 502
    /// answer, e.g. `refusal`): the user is scored as a failed call, as a built-in method's
    /// would be, and the run goes on.
    Ranking {
        id: u64,
        #[serde(default)]
        ranking: Vec<usize>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        failed: Option<String>,
    },
    /// Answer to `train_batch`.
    Rankings { id: u64, rankings: Vec<Vec<usize>> },
    /// Answer to `feedback` and `restore`. `state` is whatever the method needs to resume
    /// (stored in the harness's checkpoint); `prompt`, if the method learns one, is reported.
    Ok {
        id: u64,
        #[serde(default)]
        state: serde_json::Value,
        #[serde(default)]
        prompt: Option<String>,
    },
    /// The method could not answer this request; the run stops with this message.
    Error { id: Option<u64>, message: String },
}

impl FromMethod {
    pub fn id(&self) -> Option<u64> {
        match self {
            FromMethod::Ready { .. } => None,
            FromMethod::Ranking { id, .. }
            | FromMethod::Rankings { id, .. }
            | FromMethod::Ok { id, .. } => Some(*id),
            FromMethod::Error { id, .. } => *id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_with_their_type_tags() {
        let r = ToMethod::Rank {
            id: 3,
            epoch: 0,
            input: UserInput {
                user: "u1".into(),
                role: Role::Test,
                history: vec![Item {
                    id: "i1".into(),
                    text: "Heat (1995)".into(),
                }],
                candidates: vec![],
            },
        };
        let line = serde_json::to_string(&r).unwrap();
        assert!(line.starts_with(r#"{"type":"rank","id":3,"epoch":0,"user":"u1","role":"test""#));
        assert_eq!(serde_json::from_str::<ToMethod>(&line).unwrap(), r);
        let a: FromMethod =
            serde_json::from_str(r#"{"type":"ranking","id":3,"ranking":[2,0,1]}"#).unwrap();
        assert_eq!(a.id(), Some(3));
        assert!(serde_json::from_str::<FromMethod>(r#"{"type":"rankings","id":3}"#).is_err());
        assert!(
            serde_json::from_str::<FromMethod>(r#"{"type":"ranking","id":3,"rank":[]}"#).is_err()
        );
    }
}
