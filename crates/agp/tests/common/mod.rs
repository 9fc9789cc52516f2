//! A small dataset, candidate file and deterministic fake chat model shared by the tests.
//! The fake's answers are rules written here, never recorded outputs of a real model.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use agp::Stage;
use agp_datasets::Dataset;
use agp_datasets::candidates::{CandidateFile, FORMAT_VERSION, RankedList, UserSampling};
use agp_llm::{
    ChatModel, ChatRequest, ChatResponse, FailureReason, LabelRequest, LabelResponse, LlmError,
    ModelInfo, Sampling, ScoreRequest, ScoreResponse, Usage,
};
use async_trait::async_trait;

pub const K: usize = 10;

/// The stage a request is booked under.
pub fn stage_of(account: Option<&str>) -> Option<Stage> {
    account.and_then(Stage::from_account)
}
const GENRES: [&str; 4] = ["Comedy", "Drama", "Horror", "Sci-Fi"];

/// 40 users, 120 items. User u's test item sits at position u % 10 of its list.
pub fn fixture() -> (Dataset, CandidateFile) {
    let n_users = 40u32;
    let n_items = 120u32;
    let item_text = (0..n_items)
        .map(|i| format!("Movie {i} ({})", GENRES[i as usize % 4]))
        .collect();
    let mut train = Vec::new();
    let mut valid = Vec::new();
    let mut test = Vec::new();
    let mut lists = Vec::new();
    for u in 0..n_users {
        // History: 7 items from the first 40, test and candidates from the rest.
        let hist: Vec<u32> = (0..7).map(|j| (u * 3 + j * 5) % 40).collect();
        train.push(hist[..6].to_vec());
        valid.push(hist[6]);
        let mut items: Vec<u32> = (0..K as u32).map(|j| 40 + (u * 7 + j * 11) % 80).collect();
        items.sort_unstable();
        items.dedup();
        let mut extra = 40;
        while items.len() < K {
            if !items.contains(&extra) {
                items.push(extra);
            }
            extra += 1;
        }
        let gt_pos = u as usize % K;
        test.push(items[gt_pos]);
        lists.push(RankedList {
            user: u,
            scores: (0..K).map(|j| 1.0 - j as f32 * 0.05).collect(),
            items,
        });
    }
    let ds = Dataset {
        name: "fixture".into(),
        checksum: "fixture-checksum".into(),
        user_ids: (0..n_users).map(|u| format!("u{u}")).collect(),
        item_ids: (0..n_items).map(|i| format!("i{i}")).collect(),
        item_text,
        train,
        valid,
        test,
    };
    let cands = CandidateFile {
        format_version: FORMAT_VERSION,
        dataset: "fixture".into(),
        dataset_checksum: "fixture-checksum".into(),
        model: "fixture-backbone".into(),
        seed: 0,
        hyperparameters: BTreeMap::new(),
        k: K,
        sampling: UserSampling {
            seed: 0,
            requested_test: 12,
            requested_train: 20,
            requested_valid: 8,
            eligible: n_users as usize,
            total_users: n_users as usize,
            took_available: false,
        },
        lists,
        train_users: (0..20).collect(),
        test_users: (20..32).collect(),
        valid_users: (32..40).collect(),
    };
    (ds, cands)
}

/// Which calls a [`FakeModel`] fails, and why. A call matches when its prompt (a score request's
/// prefix and suffixes) contains `contains` and its stage is `stage`, where given.
#[derive(Debug, Clone)]
pub struct FailRule {
    pub contains: Option<String>,
    pub stage: Option<Stage>,
    /// Fail only the n-th matching call (0-based); `None` fails every match.
    pub nth: Option<usize>,
    pub reason: FailureReason,
}

impl FailRule {
    /// Every call whose prompt contains `text`.
    pub fn containing(text: impl Into<String>, reason: FailureReason) -> Self {
        Self {
            contains: Some(text.into()),
            stage: None,
            nth: None,
            reason,
        }
    }

    /// The n-th call of the run (0-based), whatever it is.
    pub fn nth_call(n: usize, reason: FailureReason) -> Self {
        Self {
            contains: None,
            stage: None,
            nth: Some(n),
            reason,
        }
    }

    pub fn at_stage(self, stage: Stage) -> Self {
        Self {
            stage: Some(stage),
            ..self
        }
    }

    /// Only the n-th (0-based) of the calls this rule matches.
    pub fn nth(self, n: usize) -> Self {
        Self {
            nth: Some(n),
            ..self
        }
    }
}

/// The error a provider's client would return for `reason` once its retries are spent.
pub fn failure(reason: FailureReason, request_id: String) -> LlmError {
    let status = match reason {
        FailureReason::RateLimited => 429,
        FailureReason::ServerError => 503,
        FailureReason::ClientError => 400,
        FailureReason::Timeout | FailureReason::Transport => 0,
        FailureReason::Setup => return LlmError::Other(format!("{request_id}: setup")),
        _ => 200,
    };
    LlmError::Http {
        request_id,
        status,
        reason,
        message: format!("fake {reason}"),
    }
}

/// How a [`FakeModel`] answers the prompts of RankGPT, PRP and Setwise (which it tells apart
/// from the other rerank prompts by their opening words), and FIRST's label requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RankerAnswers {
    /// Prefers the candidate with the higher movie number: a list sorted that way, or its
    /// first. The fixture's lists hold their items in ascending order, so the model's ranking
    /// is the backbone's reversed.
    #[default]
    PreferHigherIds,
    /// Keeps the order shown (a list) or picks the first shown: pure position bias.
    FirstShown,
    /// "I do not understand."; no label seen (every label −∞).
    Unreadable,
}

/// Rules: a profile echoes the instructions and the first history line; a listwise rerank
/// answers the identity when the prompt mentions "genre" and the reversed order otherwise;
/// feedback, summaries and edits are fixed sentences; OPRO's and ProTeGi's proposals alternate
/// between a prompt with "genre" and one without (see [`opro_proposal`], [`protegi_edit`]); random
/// search's edits follow the change asked for (see [`random_edit`]); a pointwise score prefers
/// candidates whose genre matches the first history item; RankGPT, PRP and Setwise prompts as
/// [`RankerAnswers`] says. Answers arrive after a delay derived from the prompt so concurrent
/// calls complete out of order.
#[derive(Default)]
pub struct FakeModel {
    pub calls: AtomicUsize,
    /// Fail every call after this many (simulates a killed run).
    pub fail_after: Option<usize>,
    /// Every chat prompt answered, with its stage.
    pub prompts: Mutex<Vec<(Option<Stage>, String)>>,
    /// Every chat request's sampling settings, with its stage, in the order answered.
    pub samplings: Mutex<Vec<(Option<Stage>, Sampling)>>,
    /// Every label request's assistant prefill, in the order answered.
    pub prefills: Mutex<Vec<String>>,
    /// Calls to fail, each with the number of calls it has matched so far.
    fail_rules: Mutex<Vec<(FailRule, usize)>>,
    pub ranker_answers: RankerAnswers,
}

impl FakeModel {
    pub fn failing_after(n: usize) -> Self {
        Self {
            fail_after: Some(n),
            ..Self::default()
        }
    }

    pub fn answering(ranker_answers: RankerAnswers) -> Self {
        Self {
            ranker_answers,
            ..Self::default()
        }
    }

    pub fn failing(rules: Vec<FailRule>) -> Self {
        Self {
            fail_rules: Mutex::new(rules.into_iter().map(|r| (r, 0)).collect()),
            ..Self::default()
        }
    }

    /// Counts the call, then fails it if the model is stopped or a rule picks it.
    fn tick(&self, stage: Option<Stage>, text: &str) -> Result<(), LlmError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if let Some(limit) = self.fail_after
            && n >= limit
        {
            return Err(LlmError::Http {
                request_id: format!("fake-{n}"),
                status: 503,
                reason: FailureReason::ServerError,
                message: "fake model stopped".into(),
            });
        }
        let mut rules = self.fail_rules.lock().unwrap();
        let mut fail = None;
        for (rule, seen) in rules.iter_mut() {
            let matches = rule.contains.as_deref().is_none_or(|t| text.contains(t))
                && rule.stage.is_none_or(|s| stage == Some(s));
            if matches {
                if rule.nth.is_none_or(|k| k == *seen) && fail.is_none() {
                    fail = Some(rule.reason);
                }
                *seen += 1;
            }
        }
        match fail {
            Some(reason) => Err(failure(reason, format!("fake-{n}"))),
            None => Ok(()),
        }
    }
}

fn delay(text: &str) -> Duration {
    let h = text
        .bytes()
        .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
    Duration::from_micros(h % 3000)
}

/// Movie numbers of the `<id: Movie N (genre)>` candidate lines, in the order shown.
fn shown_movies(prompt: &str) -> Vec<u32> {
    prompt
        .lines()
        .filter(|l| l.starts_with('<'))
        .filter_map(|l| l.split("Movie ").nth(1))
        .filter_map(|rest| rest.split(' ').next()?.parse().ok())
        .collect()
}

/// The ids of the prompt's candidates in the order the fake prefers them; `None` when it does
/// not answer.
fn preferred(prompt: &str, ranker: RankerAnswers) -> Option<Vec<usize>> {
    let shown = shown_movies(prompt);
    let mut ids: Vec<usize> = (0..shown.len()).collect();
    match ranker {
        RankerAnswers::PreferHigherIds => ids.sort_by_key(|&i| std::cmp::Reverse(shown[i])),
        RankerAnswers::FirstShown => {}
        RankerAnswers::Unreadable => return None,
    }
    Some(ids)
}

fn answer(prompt: &str, ranker: RankerAnswers) -> String {
    let head = prompt
        .split("[Pretrained Item Profile List")
        .next()
        .unwrap_or("");
    let choose = head.contains("which of the following");
    if choose || head.starts_with("[Instruction]\nI will provide you with") {
        let Some(ids) = preferred(prompt, ranker) else {
            return "I do not understand.".into();
        };
        let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
        let body = if choose {
            ids.first().cloned().unwrap_or_default()
        } else {
            ids.join(", ")
        };
        return format!("|beginoftext|{body}|endoftext|");
    }
    if prompt.starts_with("[Task]\nYour goal is to build") {
        let instr = prompt
            .split("[Instructions]\n")
            .nth(1)
            .and_then(|s| s.lines().next());
        let first = prompt
            .split("[Historical Item Profiles]\n")
            .nth(1)
            .and_then(|s| s.lines().next());
        return format!(
            "Profile. Instructions: {}. Likes {}.",
            instr.unwrap_or(""),
            first.unwrap_or("")
        );
    }
    if prompt.starts_with("[Task]\nRewrite a user profile generation prompt") {
        return random_edit(prompt);
    }
    if prompt.starts_with("[Task]\nYour task is to write the instructions") {
        return opro_proposal(prompt);
    }
    if prompt.starts_with("[Task]\nI'm trying to write a user profile generation prompt") {
        if prompt.contains("[Reasons the Prompt Failed]") {
            return protegi_edit(prompt);
        }
        return "The prompt ignores the users' genres.".into();
    }
    if prompt.starts_with("[Task]\nEvaluate the generated user profile") {
        return "Emphasize genre in the profile.".into();
    }
    if prompt.starts_with("[Generalized Instruction]") {
        return "Generalized: describe genre preferences.".into();
    }
    if prompt.starts_with("[Instruction]\nThe previous prompt had an error rate") {
        return "Here you go: |beginoftext|List the user's favourite genre first.|endoftext|"
            .into();
    }
    if prompt.starts_with("[Instruction]\nYou are given a Predicted Item List") {
        return "The ground truth matches the user's genre.".into();
    }
    if prompt.contains("[Pretrained Item Profile List") {
        let head = prompt
            .split("[Pretrained Item Profile List")
            .next()
            .unwrap_or("");
        let ids: Vec<String> = if head.to_lowercase().contains("genre") {
            (0..K).map(|i| i.to_string()).collect()
        } else {
            (0..K).rev().map(|i| i.to_string()).collect()
        };
        return format!("|beginoftext|{}|endoftext|", ids.join(", "));
    }
    "I do not understand.".into()
}

/// OPRO's meta-prompt: the genre prompt while no shown instruction mentions a genre, else a
/// prompt named after the number of instructions shown (so it is new while the history grows)
/// and the first example user's next item (so proposals with other examples differ).
fn opro_proposal(prompt: &str) -> String {
    let shown: Vec<&str> = prompt
        .split("text:\n")
        .skip(1)
        .filter_map(|t| t.split("\nscore:").next())
        .collect();
    let example = prompt
        .split("Item the user interacted with next: ")
        .nth(1)
        .and_then(|t| t.lines().next())
        .unwrap_or("nobody");
    let new = if shown.iter().any(|t| t.contains("genre")) {
        format!(
            "Summarize the user's tastes (after {} prompts, like {example}).",
            shown.len()
        )
    } else {
        format!("List the user's favourite genre first, like {example}.")
    };
    format!("A better one: |beginoftext|{new}|endoftext|")
}

/// Random search's edit: a genre prompt when the drawn change adds or sharpens an instruction,
/// another prompt otherwise, each named after the change's first word so that different draws
/// give different prompts.
fn random_edit(prompt: &str) -> String {
    let change = prompt
        .split("[Instruction]\n")
        .nth(1)
        .and_then(|t| t.lines().next())
        .unwrap_or("");
    let word = change.split_whitespace().next().unwrap_or("none");
    let new = if change.contains("Add") || change.contains("specific") {
        format!("Describe the user's favourite genre ({word}).")
    } else {
        format!("Summarize the user's tastes ({word}).")
    };
    format!("|beginoftext|{new}|endoftext|")
}

/// ProTeGi's edit: the genre prompt's opposite (a prompt without "genre" if the current one has
/// it, and the other way round), as many as asked, the second and later marked as variants.
fn protegi_edit(prompt: &str) -> String {
    let current = prompt
        .split("[Current User Generation Prompt]\n")
        .nth(1)
        .and_then(|t| t.split("\n\n[Failed Cases]").next())
        .unwrap_or("");
    let n = prompt
        .split("Based on the above information, write ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|w| w.parse::<usize>().ok())
        .unwrap_or(1);
    let base = if current.contains("genre") {
        "Summarize the user's tastes"
    } else {
        "List the user's favourite genre first"
    };
    (0..n)
        .map(|i| match i {
            0 => format!("{}. |beginoftext|{base}.|endoftext|", i + 1),
            _ => format!(
                "{}. |beginoftext|{base} (variant {}).|endoftext|",
                i + 1,
                i + 1
            ),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[async_trait]
impl ChatModel for FakeModel {
    fn info(&self) -> ModelInfo {
        ModelInfo {
            backend: "fake".into(),
            model: "rule-based-test-fake".into(),
            file_sha256: None,
        }
    }

    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, LlmError> {
        let prompt = &req.messages.last().expect("a user message").content;
        self.tick(stage_of(req.account), prompt)?;
        self.prompts
            .lock()
            .unwrap()
            .push((stage_of(req.account), prompt.clone()));
        self.samplings
            .lock()
            .unwrap()
            .push((stage_of(req.account), req.sampling.clone()));
        tokio::time::sleep(delay(prompt)).await;
        let content = answer(prompt, self.ranker_answers);
        Ok(ChatResponse {
            served: Default::default(),
            usage: Usage {
                prompt_tokens: prompt.len() as u64 / 4,
                completion_tokens: content.len() as u64 / 4,
                ..Usage::default()
            },
            content,
            finish_reason: None,
        })
    }

    /// A label (a candidate id) gets minus its place in the fake's preferred order: the
    /// preferred candidate 0, the next -1, ...; an id it does not answer with, −∞.
    async fn label_logprobs(&self, req: &LabelRequest) -> Result<LabelResponse, LlmError> {
        let prompt = &req.messages.last().expect("a user message").content;
        self.tick(stage_of(req.account), prompt)?;
        self.prompts
            .lock()
            .unwrap()
            .push((stage_of(req.account), prompt.clone()));
        self.prefills.lock().unwrap().push(req.prefill.clone());
        tokio::time::sleep(delay(prompt)).await;
        let mut place = vec![f32::NEG_INFINITY; shown_movies(prompt).len()];
        for (p, id) in preferred(prompt, self.ranker_answers)
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            place[id] = -(p as f32);
        }
        let logprobs = req
            .labels
            .iter()
            .map(|l| {
                l.parse::<usize>()
                    .ok()
                    .and_then(|i| place.get(i).copied())
                    .unwrap_or(f32::NEG_INFINITY)
            })
            .collect();
        Ok(LabelResponse {
            logprobs,
            usage: Usage {
                prompt_tokens: prompt.len() as u64 / 4,
                completion_tokens: 1,
                ..Usage::default()
            },
        })
    }

    async fn score(&self, req: &ScoreRequest) -> Result<ScoreResponse, LlmError> {
        self.tick(
            stage_of(req.account),
            &format!("{}{}", req.prefix, req.suffixes.concat()),
        )?;
        tokio::time::sleep(delay(&req.prefix)).await;
        let liked = GENRES.iter().find(|g| req.prefix.contains(*g));
        let scores = req
            .suffixes
            .iter()
            .map(|s| match liked {
                Some(g) if s.contains(g) => 1.0,
                _ => -1.0,
            })
            .collect();
        Ok(ScoreResponse {
            scores,
            usage: Usage {
                prompt_tokens: 10,
                ..Usage::default()
            },
        })
    }
}
