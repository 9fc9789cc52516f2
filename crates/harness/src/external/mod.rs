//! Methods in any language: a row `kind = "external"` names a command; the harness runs it as
//! a child process and speaks the JSON Lines protocol of [`protocol`] with it, under the same
//! protocol as every built-in method (users, candidate lists, history, metrics, checkpoints,
//! paired statistics). While it runs, [`proxy`] serves an OpenAI-compatible endpoint on
//! 127.0.0.1 that forwards to the run's `--llm`, so its calls are recorded, replayed offline,
//! rate-limited, costed and counted per stage like AGP's.

pub mod child;
pub mod protocol;
pub mod proxy;

use agp::{AgpError, BatchOutcome, Env, ParseOutcome, Ranking, RerankInput, Reranker, TrainStep};
use agp_datasets::Dataset;
use agp_datasets::candidates::CandidateFile;
use protocol::{Feedback, FromMethod, Item, PROTOCOL_VERSION, Role, ToMethod, UserInput};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

fn one() -> usize {
    1
}

fn default_timeout() -> u64 {
    600
}

/// An experiment row `kind = "external"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalConfig {
    pub label: String,
    /// Program and arguments, run from the workspace root, e.g. `["python3", "my_method.py"]`.
    pub command: Vec<String>,
    /// Training epochs over the training users (0: the method does not learn).
    #[serde(default)]
    pub epochs: usize,
    #[serde(default = "one")]
    pub batch_size: usize,
    /// Training users (default: every training user of the candidate file when `epochs > 0`).
    #[serde(default)]
    pub n_train_users: Option<usize>,
    /// Seconds to wait for any one answer.
    #[serde(default = "default_timeout")]
    pub timeout_s: u64,
    /// Extra environment for the method. It is part of the run's identity and is written to
    /// the report: never put a secret here.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

impl ExternalConfig {
    pub fn train_users(&self, cands: &CandidateFile) -> usize {
        if self.epochs == 0 {
            0
        } else {
            self.n_train_users.unwrap_or(cands.train_users.len())
        }
    }

    /// Every setting checked against its allowed range.
    pub fn validate(&self, cands: &CandidateFile) -> Result<(), String> {
        self.validate_settings()?;
        let n = self.train_users(cands);
        if n > cands.train_users.len() {
            return Err(format!(
                "n_train_users: {n} is outside the allowed range 0..={}",
                cands.train_users.len()
            ));
        }
        if self.epochs > 0 && n == 0 {
            return Err("epochs > 0 needs training users (n_train_users)".into());
        }
        Ok(())
    }
}

impl ExternalConfig {
    /// The checks that need no candidate file (see `agp::MethodConfig::validate_settings`).
    pub fn validate_settings(&self) -> Result<(), String> {
        if self.command.is_empty() || self.command[0].trim().is_empty() {
            return Err("command: must name a program, e.g. [\"python3\", \"method.py\"]".into());
        }
        if self.batch_size == 0 {
            return Err("batch_size: 0 is outside the allowed range 1..".into());
        }
        if self.timeout_s == 0 {
            return Err("timeout_s: 0 is outside the allowed range 1..".into());
        }
        Ok(())
    }
}

struct Started {
    child: child::Child,
    proxy: proxy::Proxy,
}

/// The [`Reranker`] that forwards to an external method.
pub struct ExternalReranker<'a> {
    cfg: ExternalConfig,
    cwd: PathBuf,
    ds: &'a Dataset,
    cands: &'a CandidateFile,
    roles: HashMap<u32, Role>,
    started: tokio::sync::OnceCell<Started>,
    /// The last epoch trained (0 before training): evaluation after epoch e says `epoch: e`.
    epoch: std::sync::atomic::AtomicUsize,
    state: serde_json::Value,
    prompt: Option<String>,
    restore: Option<serde_json::Value>,
}

/// The reason a method passes back from the endpoint's 502 answer, by its serialised name;
/// anything else, and the fatal reasons the endpoint never answers with 502, is a server
/// error, which a resumed run asks again.
fn failure_reason(name: &str) -> agp_llm::FailureReason {
    serde_json::from_value::<agp_llm::FailureReason>(serde_json::Value::from(name))
        .ok()
        .filter(|r| !r.is_fatal())
        .unwrap_or(agp_llm::FailureReason::ServerError)
}

fn method_error(e: String) -> AgpError {
    AgpError::Method(e)
}

impl<'a> ExternalReranker<'a> {
    pub fn new(
        cfg: ExternalConfig,
        cwd: PathBuf,
        ds: &'a Dataset,
        cands: &'a CandidateFile,
    ) -> Self {
        let mut roles = HashMap::new();
        for (users, role) in [
            (&cands.test_users, Role::Test),
            (&cands.valid_users, Role::Valid),
            (&cands.train_users, Role::Train),
        ] {
            for &u in users {
                roles.insert(u, role);
            }
        }
        Self {
            cfg,
            cwd,
            ds,
            cands,
            roles,
            started: tokio::sync::OnceCell::new(),
            epoch: std::sync::atomic::AtomicUsize::new(0),
            state: serde_json::Value::Null,
            prompt: None,
            restore: None,
        }
    }

    async fn start(&self, env: &Env) -> Result<&Started, AgpError> {
        self.started
            .get_or_try_init(|| async {
                let proxy = proxy::Proxy::start(env.llm.clone()).await.map_err(|e| {
                    method_error(format!("starting the loopback LLM endpoint: {e}"))
                })?;
                let mut vars = vec![
                    ("OPENAI_BASE_URL".to_string(), proxy.base_url.clone()),
                    // The method reaches the model only through the harness (recorded, counted);
                    // it never sees the user's key.
                    (
                        "OPENAI_API_KEY".to_string(),
                        "agp-harness-loopback".to_string(),
                    ),
                    ("DEEPSEEK_API_KEY".to_string(), String::new()),
                    ("AGP_PROTOCOL".to_string(), PROTOCOL_VERSION.to_string()),
                    ("AGP_LLM_MODEL".to_string(), proxy.model().to_string()),
                ];
                vars.extend(self.cfg.env.iter().map(|(k, v)| (k.clone(), v.clone())));
                let hello = ToMethod::Hello {
                    protocol: PROTOCOL_VERSION,
                    method: self.cfg.label.clone(),
                    k: self.cands.k,
                    seed: env.seed,
                    epochs: self.cfg.epochs,
                    llm_base_url: proxy.base_url.clone(),
                    llm_model: proxy.model().to_string(),
                };
                let child = child::Child::spawn(
                    &self.cfg.label,
                    &self.cfg.command,
                    &self.cwd,
                    &vars,
                    &hello,
                    Duration::from_secs(self.cfg.timeout_s),
                )
                .await
                .map_err(method_error)?;
                if let Some(state) = &self.restore {
                    let state = state.clone();
                    match child.request(|id| ToMethod::Restore { id, state }).await {
                        Ok(FromMethod::Ok { .. }) => {}
                        Ok(other) => {
                            return Err(method_error(format!(
                                "external method {:?}: answered `restore` with {other:?}",
                                self.cfg.label
                            )));
                        }
                        Err(e) => return Err(method_error(e)),
                    }
                }
                Ok(Started { child, proxy })
            })
            .await
    }

    fn user_input(&self, input: &RerankInput) -> UserInput {
        let u = input.user as usize;
        let ids = |items: &mut dyn Iterator<Item = u32>| -> Vec<String> {
            items
                .map(|i| self.ds.item_ids[i as usize].clone())
                .collect()
        };
        let history_ids = ids(&mut self.ds.history_before_test(input.user).into_iter());
        let cand_ids = ids(&mut self.cands.lists[u].items.iter().copied());
        let zip = |ids: Vec<String>, texts: &[String]| -> Vec<Item> {
            ids.into_iter()
                .zip(texts)
                .map(|(id, text)| Item {
                    id,
                    text: text.clone(),
                })
                .collect()
        };
        UserInput {
            user: self.ds.user_ids[u].clone(),
            role: self.roles.get(&input.user).copied().unwrap_or(Role::Test),
            history: zip(history_ids, &input.history),
            candidates: zip(cand_ids, &input.candidates),
        }
    }

    /// A ranking as the driver scores it; an index out of range is a protocol error.
    fn ranking(&self, request: &str, order: Vec<usize>, k: usize) -> Result<Ranking, AgpError> {
        if let Some(bad) = order.iter().find(|&&i| i >= k) {
            return Err(method_error(format!(
                "external method {:?}: {request}: ranking holds index {bad}; candidates are \
                 indexed 0..{}",
                self.cfg.label,
                k.saturating_sub(1)
            )));
        }
        let mut seen = vec![false; k];
        let unique: Vec<usize> = order
            .iter()
            .copied()
            .filter(|&i| !std::mem::replace(&mut seen[i], true))
            .collect();
        let outcome = if unique.is_empty() && k > 0 {
            // Nothing placed: the experiment's rule for unusable answers decides.
            ParseOutcome::Unparseable
        } else if unique.len() == k && order.len() == k {
            ParseOutcome::Exact
        } else {
            ParseOutcome::Partial
        };
        Ok(Ranking {
            order: unique,
            outcome,
        })
    }

    /// Reports the model failure behind a method's error when there was one: "replay miss"
    /// says more than whatever the method made of its HTTP 500.
    fn explain(&self, st: &Started, e: String) -> AgpError {
        match st.proxy.fatal() {
            Some(f) => method_error(format!(
                "external method {:?}: a model call failed: {f} (the method then said: {e})",
                self.cfg.label
            )),
            None => method_error(e),
        }
    }
}

#[async_trait::async_trait]
impl Reranker for ExternalReranker<'_> {
    fn epochs(&self) -> usize {
        self.cfg.epochs
    }

    fn batch_size(&self) -> usize {
        self.cfg.batch_size
    }

    fn n_train_users(&self) -> usize {
        self.cfg.train_users(self.cands)
    }

    async fn train_batch(
        &mut self,
        step: TrainStep,
        batch: &[agp::UserCase],
        env: &Env,
    ) -> Result<BatchOutcome, AgpError> {
        let users: Vec<UserInput> = batch.iter().map(|c| self.user_input(&c.input)).collect();
        let st = self.start(env).await?;
        st.proxy.set_training(true);
        let answer = st
            .child
            .request(|id| ToMethod::TrainBatch {
                id,
                epoch: step.epoch,
                batch: step.batch,
                users: users.clone(),
            })
            .await;
        let rankings = match answer {
            Ok(FromMethod::Rankings { rankings, .. }) if rankings.len() == batch.len() => rankings,
            Ok(other) => {
                return Err(method_error(format!(
                    "external method {:?}: `train_batch` of {} users needs `rankings` with {} \
                     lists, got {other:?}",
                    self.cfg.label,
                    batch.len(),
                    batch.len()
                )));
            }
            Err(e) => return Err(self.explain(st, e)),
        };
        let mut results = Vec::with_capacity(batch.len());
        let mut feedback = Vec::with_capacity(batch.len());
        for ((case, order), input) in batch.iter().zip(rankings).zip(&users) {
            let k = case.input.candidates.len();
            let ranking = self.ranking("train_batch", order.clone(), k)?;
            let r = agp::metrics::score_ordering(
                case.input.user,
                &ranking.order,
                case.gt_index,
                k,
                ranking.outcome,
                agp::UnparseableRule::Zero,
            );
            feedback.push(Feedback {
                user: input.user.clone(),
                ranking: order,
                ground_truth: case.gt_index,
                rank: r.rank,
            });
            results.push(r);
        }
        let answer = st
            .child
            .request(|id| ToMethod::Feedback {
                id,
                epoch: step.epoch,
                batch: step.batch,
                users: feedback,
            })
            .await;
        st.proxy.set_training(false);
        let (state, prompt) = match answer {
            Ok(FromMethod::Ok { state, prompt, .. }) => (state, prompt),
            Ok(other) => {
                return Err(method_error(format!(
                    "external method {:?}: answered `feedback` with {other:?}; expected `ok`",
                    self.cfg.label
                )));
            }
            Err(e) => return Err(self.explain(st, e)),
        };
        self.state = state;
        self.prompt = prompt;
        self.epoch
            .store(step.epoch, std::sync::atomic::Ordering::Relaxed);
        Ok(BatchOutcome {
            results,
            accepted: 0,
            discarded: 0,
        })
    }

    async fn rerank(&self, input: &RerankInput, env: &Env) -> Result<Ranking, AgpError> {
        let user = self.user_input(input);
        let st = self.start(env).await?;
        let epoch = self.epoch.load(std::sync::atomic::Ordering::Relaxed);
        match st
            .child
            .request(|id| ToMethod::Rank {
                id,
                epoch,
                input: user,
            })
            .await
        {
            Ok(FromMethod::Ranking {
                failed: Some(reason),
                id,
                ..
            }) => Err(AgpError::Llm {
                stage: agp::Stage::Test,
                user: Some(input.user),
                source: agp_llm::LlmError::Http {
                    request_id: format!("external request {id}"),
                    status: 502,
                    reason: failure_reason(&reason),
                    message: format!("the method reports its model call failed: {reason}"),
                },
            }),
            Ok(FromMethod::Ranking { ranking, id, .. }) => {
                self.ranking(&format!("request {id}"), ranking, input.candidates.len())
            }
            Ok(other) => Err(method_error(format!(
                "external method {:?}: answered `rank` with {other:?}; expected `ranking`",
                self.cfg.label
            ))),
            Err(e) => Err(self.explain(st, e)),
        }
    }

    fn state(&self) -> serde_json::Value {
        serde_json::json!({
            "epoch": self.epoch.load(std::sync::atomic::Ordering::Relaxed),
            "state": self.state,
            "prompt": self.prompt,
        })
    }

    fn restore(&mut self, state: serde_json::Value) -> Result<(), AgpError> {
        if state.is_null() {
            return Ok(());
        }
        let epoch = state["epoch"].as_u64().unwrap_or(0) as usize;
        self.epoch
            .store(epoch, std::sync::atomic::Ordering::Relaxed);
        self.prompt = state["prompt"].as_str().map(str::to_string);
        self.state = state["state"].clone();
        if !self.state.is_null() {
            self.restore = Some(self.state.clone());
        }
        Ok(())
    }

    fn learned_prompt(&self) -> Option<String> {
        self.prompt.clone()
    }
}
