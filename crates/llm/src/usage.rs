//! Usage accounting: the one ledger every LLM call is booked in, with totals by the caller's
//! account label and a cost estimate from a per-model price table.
//!
//! The caller that sees every call books it (in this workspace `agp::Llm`, which adds what
//! happened to the call: an answer, a truncated answer or a failure); the [`crate::Recorder`]
//! marks what it replayed in the answer's [`Usage::replayed`]. A run of one method books in a
//! [`UsageLedger::scope`] of the model's ledger, so the same booking counts for the method and
//! for the model's total.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::{CallMode, FailureReason, LlmError, Usage};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallKind {
    Chat,
    Score,
    /// First-token label log-probabilities (one request).
    Labels,
}

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallOutcome {
    /// `truncated`: cut at `max_tokens` (`finish_reason = length`) and kept as it is.
    Answered {
        truncated: bool,
    },
    Failed(FailureReason),
}

/// One booked call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallUsage {
    pub account: &'static str,
    pub model: String,
    pub kind: CallKind,
    /// Requests the call was answered in: one, or one per candidate of a pointwise score
    /// (each candidate is its own request). Not counted for a failed call.
    pub requests: u64,
    pub outcome: CallOutcome,
    pub usage: Usage,
}

/// Sums over a set of calls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Totals {
    /// Requests answered (live or replayed).
    pub calls: u64,
    pub replayed_calls: u64,
    /// Candidates scored by pointwise requests.
    pub scored_items: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub latency_ms: u64,
    pub retries: u64,
    /// Calls that ended without a usable answer (not in `calls`; a failed pointwise request
    /// counts once, since how many of its candidates were answered first is not known).
    pub failed: u64,
    /// Answers cut at `max_tokens`.
    pub truncated: u64,
    /// Labels asked of log-probability calls, and those the provider did not return.
    #[serde(default)]
    pub labels_asked: u64,
    #[serde(default)]
    pub labels_missing: u64,
    /// Of `prompt_tokens`, those read from a prompt cache.
    #[serde(default)]
    pub cached_tokens: u64,
    /// Tokens of the calls answered live in this run (not replayed): prompt tokens, those of
    /// them a prompt cache served (a provider's, or an in-process model's slots), and
    /// generated tokens.
    #[serde(default)]
    pub live_prompt_tokens: u64,
    #[serde(default)]
    pub live_cached_tokens: u64,
    #[serde(default)]
    pub live_completion_tokens: u64,
    /// What all these calls cost (or cost when recorded) at list price.
    pub est_cost_usd: f64,
    /// What the live (not replayed) calls cost in this run.
    pub spent_usd: f64,
    /// Requests whose model has no price in the table (counted as free above).
    pub unpriced_calls: u64,
}

impl Totals {
    fn add(&mut self, c: &CallUsage, prices: &PriceTable) {
        let truncated = match c.outcome {
            CallOutcome::Answered { truncated } => truncated,
            CallOutcome::Failed(_) => {
                self.failed += 1;
                return;
            }
        };
        let u = &c.usage;
        self.calls += c.requests;
        self.replayed_calls += u.replayed.requests;
        if c.kind == CallKind::Score {
            self.scored_items += c.requests;
        }
        self.prompt_tokens += u.prompt_tokens;
        self.completion_tokens += u.completion_tokens;
        self.latency_ms += u.latency_ms;
        self.retries += u64::from(u.retries);
        self.truncated += u64::from(truncated);
        self.labels_asked += u.labels_asked;
        self.labels_missing += u.labels_missing;
        self.cached_tokens += u.cached_tokens;
        self.live_prompt_tokens += u.prompt_tokens.saturating_sub(u.replayed.prompt_tokens);
        self.live_cached_tokens += u.cached_tokens.saturating_sub(u.replayed.cached_tokens);
        self.live_completion_tokens += u
            .completion_tokens
            .saturating_sub(u.replayed.completion_tokens);
        match prices.get(&c.model) {
            Some(p) => {
                let billed = p.billed_usd(u);
                let replayed = Usage {
                    prompt_tokens: u.replayed.prompt_tokens,
                    completion_tokens: u.replayed.completion_tokens,
                    cached_tokens: u.replayed.cached_tokens,
                    mode: u.mode,
                    ..Usage::default()
                };
                self.est_cost_usd += billed;
                self.spent_usd += (billed - p.billed_usd(&replayed)).max(0.0);
            }
            None => self.unpriced_calls += c.requests,
        }
    }
}

/// Thread-safe list of booked calls; clones share the same list.
#[derive(Debug, Clone, Default)]
pub struct UsageLedger {
    calls: Arc<Mutex<Vec<CallUsage>>>,
    /// The ledger this one is a scope of: every booking here is one there too.
    parent: Option<Box<UsageLedger>>,
}

/// Ledgers are equal when they hold the same calls.
impl PartialEq for UsageLedger {
    fn eq(&self, other: &Self) -> bool {
        self.calls() == other.calls()
    }
}

impl UsageLedger {
    /// A new, empty ledger whose bookings also go to this one: the calls of one part of the
    /// work (e.g. one method run), counted within the whole.
    pub fn scope(&self) -> UsageLedger {
        UsageLedger {
            calls: Arc::default(),
            parent: Some(Box::new(self.clone())),
        }
    }

    pub fn book(&self, call: CallUsage) {
        if let Some(p) = &self.parent {
            p.book(call.clone());
        }
        self.lock().push(call);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<CallUsage>> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn calls(&self) -> Vec<CallUsage> {
        self.lock().clone()
    }

    pub fn totals_by_account(&self, prices: &PriceTable) -> BTreeMap<&'static str, Totals> {
        let mut out: BTreeMap<&'static str, Totals> = BTreeMap::new();
        for c in self.lock().iter() {
            out.entry(c.account).or_default().add(c, prices);
        }
        out
    }

    /// Failed calls by reason.
    pub fn failures(&self) -> BTreeMap<FailureReason, u64> {
        let mut out = BTreeMap::new();
        for c in self.lock().iter() {
            if let CallOutcome::Failed(r) = c.outcome {
                *out.entry(r).or_default() += 1;
            }
        }
        out
    }

    /// A Markdown table of the totals by account plus an overall row, for reports.
    pub fn markdown(&self, prices: &PriceTable) -> String {
        let mut out = String::from(
            "| account | calls | replayed | prompt tokens | completion tokens | retries | latency s | est. cost USD | spent USD |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        let row = |name: &str, t: &Totals| {
            format!(
                "| {name} | {} | {} | {} | {} | {} | {:.1} | {:.4} | {:.4} |\n",
                t.calls,
                t.replayed_calls,
                t.prompt_tokens,
                t.completion_tokens,
                t.retries,
                t.latency_ms as f64 / 1000.0,
                t.est_cost_usd,
                t.spent_usd
            )
        };
        for (account, t) in self.totals_by_account(prices) {
            out.push_str(&row(account, &t));
        }
        let all = self.total(prices);
        out.push_str(&row("**total**", &all));
        if all.unpriced_calls > 0 {
            out.push_str(&format!(
                "\n{} calls used a model with no price (counted as free).\n",
                all.unpriced_calls
            ));
        }
        out
    }

    pub fn total(&self, prices: &PriceTable) -> Totals {
        let mut t = Totals::default();
        for c in self.lock().iter() {
            t.add(c, prices);
        }
        t
    }
}

/// Which prices [`PriceTable::builtin`] holds: named in the plan, and to be bumped with them.
pub const PRICE_TABLE_VERSION: &str = "builtin-2025-06";

/// List prices in USD per million tokens. The cached and batch prices are optional (and
/// absent from price tables written before them): without a cached price, cached input costs
/// as much as any input; without batch prices the provider has no Batch API.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Price {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
    /// Input read from the provider's prompt cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input_per_mtok: Option<f64>,
    /// Input of a batch line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_input_per_mtok: Option<f64>,
    /// Output of a batch line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_output_per_mtok: Option<f64>,
    /// Cached input of a batch line; without it, cached batch input costs the batch input
    /// price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_cached_input_per_mtok: Option<f64>,
}

impl Price {
    /// A price with no cache or batch discount.
    pub fn list(input_per_mtok: f64, output_per_mtok: f64) -> Self {
        Self {
            input_per_mtok,
            output_per_mtok,
            cached_input_per_mtok: None,
            batch_input_per_mtok: None,
            batch_output_per_mtok: None,
            batch_cached_input_per_mtok: None,
        }
    }

    /// Every token at the synchronous, uncached price.
    pub fn cost_usd(&self, prompt_tokens: u64, completion_tokens: u64) -> f64 {
        (prompt_tokens as f64 * self.input_per_mtok
            + completion_tokens as f64 * self.output_per_mtok)
            / 1e6
    }

    /// (uncached input, cached input, output) prices per million tokens in `mode`.
    pub fn rates(&self, mode: CallMode) -> (f64, f64, f64) {
        match mode {
            CallMode::Sync => (
                self.input_per_mtok,
                self.cached_input_per_mtok.unwrap_or(self.input_per_mtok),
                self.output_per_mtok,
            ),
            CallMode::Batch => {
                let input = self.batch_input_per_mtok.unwrap_or(self.input_per_mtok);
                (
                    input,
                    self.batch_cached_input_per_mtok.unwrap_or(input),
                    self.batch_output_per_mtok.unwrap_or(self.output_per_mtok),
                )
            }
        }
    }

    /// What the provider bills for `u`: uncached and cached input and output (reasoning
    /// included) at the prices of its mode.
    pub fn billed_usd(&self, u: &Usage) -> f64 {
        let (input, cached, output) = self.rates(u.mode);
        let hit = u.cached_tokens.min(u.prompt_tokens);
        ((u.prompt_tokens - hit) as f64 * input
            + hit as f64 * cached
            + u.completion_tokens as f64 * output)
            / 1e6
    }

    /// Whether the provider has a Batch API at a price of its own.
    pub fn has_batch(&self) -> bool {
        self.batch_input_per_mtok.is_some() || self.batch_output_per_mtok.is_some()
    }
}

/// Prices by model id. A lookup tries the exact id, then the longest table entry that
/// prefixes it (so `gpt-4o-2024-08-06` prices as `gpt-4o`, `gpt-4o-mini-…` as `gpt-4o-mini`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct PriceTable(pub HashMap<String, Price>);

impl PriceTable {
    /// Public list prices as published by the providers in mid-2025 ([`PRICE_TABLE_VERSION`]):
    /// standard tier, with the prompt-cache price and, for OpenAI, the Batch API's half price
    /// (its cached batch input is left at the batch input price, the conservative reading).
    /// DeepSeek bills cache hits lower and has no Batch API. Override with
    /// [`PriceTable::from_json`] when they change. In-process models cost 0.
    pub fn builtin() -> Self {
        let openai = |i: f64, cached: f64, o: f64| Price {
            cached_input_per_mtok: Some(cached),
            batch_input_per_mtok: Some(i / 2.0),
            batch_output_per_mtok: Some(o / 2.0),
            ..Price::list(i, o)
        };
        let mut m = HashMap::new();
        m.insert("gpt-4o".to_string(), openai(2.50, 1.25, 10.00));
        m.insert("gpt-4o-mini".to_string(), openai(0.15, 0.075, 0.60));
        m.insert("o3-mini".to_string(), openai(1.10, 0.55, 4.40));
        m.insert(
            "deepseek-chat".to_string(),
            Price {
                cached_input_per_mtok: Some(0.07),
                ..Price::list(0.27, 1.10)
            },
        );
        for local in ["smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"] {
            m.insert(local.to_string(), Price::list(0.0, 0.0));
        }
        Self(m)
    }

    /// `{"model": {"input_per_mtok": 2.5, "output_per_mtok": 10.0}, ...}`
    pub fn from_json(text: &str) -> Result<Self, LlmError> {
        serde_json::from_str(text).map_err(|source| LlmError::Json {
            what: "price table".into(),
            source,
        })
    }

    pub fn get(&self, model: &str) -> Option<Price> {
        if let Some(p) = self.0.get(model) {
            return Some(*p);
        }
        self.0
            .iter()
            .filter(|(k, _)| model.starts_with(k.as_str()))
            .max_by_key(|(k, _)| k.len())
            .map(|(_, p)| *p)
    }

    /// What the provider bills for `usage` (see [`Price::billed_usd`]).
    pub fn cost_usd(&self, model: &str, usage: &Usage) -> Option<f64> {
        self.get(model).map(|p| p.billed_usd(usage))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(p: u64, c: u64) -> Usage {
        Usage {
            prompt_tokens: p,
            completion_tokens: c,
            latency_ms: 10,
            retries: 1,
            ..Usage::default()
        }
    }

    #[test]
    fn prefix_lookup_prefers_longest_entry() {
        let t = PriceTable::builtin();
        assert_eq!(
            t.get("gpt-4o-mini-2024-07-18").unwrap().input_per_mtok,
            0.15
        );
        assert_eq!(t.get("gpt-4o-2024-08-06").unwrap().input_per_mtok, 2.50);
        assert!(t.get("claude").is_none());
    }

    fn call(account: &'static str, model: &str, kind: CallKind, usage: Usage) -> CallUsage {
        CallUsage {
            account,
            model: model.to_string(),
            kind,
            requests: 1,
            outcome: CallOutcome::Answered { truncated: false },
            usage,
        }
    }

    #[test]
    fn totals_split_by_account_and_separate_replayed_spend() {
        let l = UsageLedger::default();
        l.book(call("rerank", "gpt-4o", CallKind::Chat, u(1_000_000, 0)));
        l.book(call(
            "rerank",
            "gpt-4o",
            CallKind::Chat,
            u(0, 1_000_000).replayed(1),
        ));
        l.book(CallUsage {
            requests: 2,
            outcome: CallOutcome::Answered { truncated: true },
            ..call("other", "mystery", CallKind::Score, u(5, 5))
        });
        l.book(CallUsage {
            requests: 0,
            outcome: CallOutcome::Failed(FailureReason::Refusal),
            ..call("other", "mystery", CallKind::Chat, Usage::default())
        });
        let t = l.totals_by_account(&PriceTable::builtin());
        let r = &t["rerank"];
        assert_eq!(r.calls, 2);
        assert_eq!(r.replayed_calls, 1);
        assert!((r.est_cost_usd - 12.5).abs() < 1e-9);
        assert!((r.spent_usd - 2.5).abs() < 1e-9);
        let o = &t["other"];
        assert_eq!(
            (
                o.calls,
                o.scored_items,
                o.unpriced_calls,
                o.failed,
                o.truncated
            ),
            (2, 2, 2, 1, 1)
        );
        let all = l.total(&PriceTable::builtin());
        assert_eq!(all.calls, 4);
        assert_eq!(all.retries, 3);
        assert_eq!(all.prompt_tokens, 1_000_005);
        assert_eq!(l.failures(), BTreeMap::from([(FailureReason::Refusal, 1)]));
        let md = l.markdown(&PriceTable::builtin());
        assert!(
            md.contains("| rerank | 2 | 1 | 1000000 | 1000000 | 2 | 0.0 | 12.5000 | 2.5000 |"),
            "{md}"
        );
        assert!(
            md.contains("| **total** | 4 |") && md.contains("2 calls used a model with no price"),
            "{md}"
        );
    }

    #[test]
    fn a_scope_books_once_and_counts_in_the_whole() {
        let whole = UsageLedger::default();
        let (a, b) = (whole.scope(), whole.scope());
        a.book(call("x", "m", CallKind::Chat, u(1, 1)));
        b.book(call("y", "m", CallKind::Chat, u(1, 1)));
        b.scope().book(call("y", "m", CallKind::Chat, u(1, 1)));
        let none = PriceTable::default();
        assert_eq!(a.total(&none).calls, 1);
        assert_eq!(b.total(&none).calls, 2);
        assert_eq!(whole.total(&none).calls, 3);
        assert_eq!(whole.totals_by_account(&none)["y"].calls, 2);
    }

    #[test]
    fn cached_and_batch_tokens_are_billed_at_their_prices() {
        let p = PriceTable::builtin().get("gpt-4o").unwrap();
        let sync = Usage {
            prompt_tokens: 1_000_000,
            completion_tokens: 1_000_000,
            ..Usage::default()
        };
        assert!((p.billed_usd(&sync) - 12.5).abs() < 1e-9);
        let cached = Usage {
            cached_tokens: 400_000,
            ..sync.clone()
        };
        assert!((p.billed_usd(&cached) - (1.5 + 0.5 + 10.0)).abs() < 1e-9);
        let batch = Usage {
            mode: CallMode::Batch,
            ..sync.clone()
        };
        assert!((p.billed_usd(&batch) - 6.25).abs() < 1e-9);
        // A replayed batch call spends nothing now, and was worth its batch price.
        let l = UsageLedger::default();
        l.book(call(
            "x",
            "gpt-4o",
            CallKind::Chat,
            batch.clone().replayed(1),
        ));
        let t = l.total(&PriceTable::builtin());
        assert!((t.est_cost_usd - 6.25).abs() < 1e-9 && t.spent_usd.abs() < 1e-9);
        // A table written before cached and batch prices reads, and bills every token in full.
        let old =
            PriceTable::from_json(r#"{"m": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}}"#)
                .unwrap();
        assert!(!old.get("m").unwrap().has_batch());
        assert_eq!(old.cost_usd("m", &batch), Some(3.0));
    }

    #[test]
    fn a_recording_without_the_new_usage_fields_reads_and_writes_back_the_same() {
        let line = r#"{"prompt_tokens":5,"completion_tokens":2,"latency_ms":3,"retries":0}"#;
        let u: Usage = serde_json::from_str(line).unwrap();
        assert_eq!((u.cached_tokens, u.mode), (0, CallMode::Sync));
        assert_eq!(serde_json::to_string(&u).unwrap(), line);
    }

    #[test]
    fn price_table_reads_json_and_names_the_problem() {
        let t = PriceTable::from_json(
            r#"{"my-model": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}}"#,
        )
        .unwrap();
        let u = Usage {
            prompt_tokens: 500_000,
            completion_tokens: 250_000,
            ..Default::default()
        };
        assert_eq!(t.cost_usd("my-model", &u), Some(1.0));
        let e = PriceTable::from_json(r#"{"m": {"input_per_mtok": "cheap"}}"#)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("price table:"), "{e}");
    }
}
