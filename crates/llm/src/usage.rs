//! Usage accounting: one entry per call, totals by the caller's account label, and a cost
//! estimate from a per-model price table.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::{LlmError, Usage};

/// Where a call that names no account is booked.
pub const UNACCOUNTED: &str = "other";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallKind {
    Chat,
    Score,
    /// First-token label log-probabilities (one request).
    Labels,
}

/// One booked call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallUsage {
    pub account: &'static str,
    pub model: String,
    pub kind: CallKind,
    /// Answered from a recording: nothing was spent now.
    pub replayed: bool,
    pub usage: Usage,
}

/// Sums over a set of calls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct StageTotals {
    pub calls: u64,
    pub replayed_calls: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub latency_ms: u64,
    pub retries: u64,
    /// What all these calls cost (or cost when recorded) at list price.
    pub est_cost_usd: f64,
    /// What the live (not replayed) calls cost in this run.
    pub spent_usd: f64,
    /// Calls whose model has no price in the table (counted as free above).
    pub unpriced_calls: u64,
}

impl StageTotals {
    fn add(&mut self, c: &CallUsage, prices: &PriceTable) {
        self.calls += 1;
        self.replayed_calls += u64::from(c.replayed);
        self.prompt_tokens += c.usage.prompt_tokens;
        self.completion_tokens += c.usage.completion_tokens;
        self.latency_ms += c.usage.latency_ms;
        self.retries += u64::from(c.usage.retries);
        match prices.cost_usd(&c.model, &c.usage) {
            Some(cost) => {
                self.est_cost_usd += cost;
                if !c.replayed {
                    self.spent_usd += cost;
                }
            }
            None => self.unpriced_calls += 1,
        }
    }
}

/// Thread-safe list of booked calls; clones share the same list.
#[derive(Debug, Clone, Default)]
pub struct UsageLedger(Arc<Mutex<Vec<CallUsage>>>);

impl UsageLedger {
    pub fn book(
        &self,
        account: Option<&'static str>,
        model: &str,
        kind: CallKind,
        replayed: bool,
        usage: &Usage,
    ) {
        let c = CallUsage {
            account: account.unwrap_or(UNACCOUNTED),
            model: model.to_string(),
            kind,
            replayed,
            usage: usage.clone(),
        };
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(c);
    }

    pub fn calls(&self) -> Vec<CallUsage> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn totals_by_account(&self, prices: &PriceTable) -> BTreeMap<&'static str, StageTotals> {
        let mut out: BTreeMap<&'static str, StageTotals> = BTreeMap::new();
        for c in self.0.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            out.entry(c.account).or_default().add(c, prices);
        }
        out
    }

    /// A Markdown table of the totals by account plus an overall row, for reports.
    pub fn markdown(&self, prices: &PriceTable) -> String {
        let mut out = String::from(
            "| account | calls | replayed | prompt tokens | completion tokens | retries | latency s | est. cost USD | spent USD |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        let row = |name: &str, t: &StageTotals| {
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

    pub fn total(&self, prices: &PriceTable) -> StageTotals {
        let mut t = StageTotals::default();
        for c in self.0.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            t.add(c, prices);
        }
        t
    }
}

/// List price in USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Price {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
}

/// Prices by model id. A lookup tries the exact id, then the longest table entry that
/// prefixes it (so `gpt-4o-2024-08-06` prices as `gpt-4o`, `gpt-4o-mini-…` as `gpt-4o-mini`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct PriceTable(pub HashMap<String, Price>);

impl PriceTable {
    /// Public list prices (standard tier, uncached input) as published by the providers in
    /// 2025; override with [`PriceTable::from_json`] when they change. In-process models cost 0.
    pub fn builtin() -> Self {
        let p = |i, o| Price {
            input_per_mtok: i,
            output_per_mtok: o,
        };
        let mut m = HashMap::new();
        m.insert("gpt-4o".to_string(), p(2.50, 10.00));
        m.insert("gpt-4o-mini".to_string(), p(0.15, 0.60));
        m.insert("o3-mini".to_string(), p(1.10, 4.40));
        m.insert("deepseek-chat".to_string(), p(0.27, 1.10));
        for local in ["smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"] {
            m.insert(local.to_string(), p(0.0, 0.0));
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

    pub fn cost_usd(&self, model: &str, usage: &Usage) -> Option<f64> {
        self.get(model).map(|p| {
            (usage.prompt_tokens as f64 * p.input_per_mtok
                + usage.completion_tokens as f64 * p.output_per_mtok)
                / 1e6
        })
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

    #[test]
    fn totals_split_by_account_and_separate_replayed_spend() {
        let l = UsageLedger::default();
        l.book(
            Some("rerank"),
            "gpt-4o",
            CallKind::Chat,
            false,
            &u(1_000_000, 0),
        );
        l.book(
            Some("rerank"),
            "gpt-4o",
            CallKind::Chat,
            true,
            &u(0, 1_000_000),
        );
        l.book(None, "mystery", CallKind::Score, false, &u(5, 5));
        let t = l.totals_by_account(&PriceTable::builtin());
        let r = &t["rerank"];
        assert_eq!(r.calls, 2);
        assert_eq!(r.replayed_calls, 1);
        assert!((r.est_cost_usd - 12.5).abs() < 1e-9);
        assert!((r.spent_usd - 2.5).abs() < 1e-9);
        assert_eq!(t[UNACCOUNTED].unpriced_calls, 1);
        let all = l.total(&PriceTable::builtin());
        assert_eq!(all.calls, 3);
        assert_eq!(all.retries, 3);
        assert_eq!(all.prompt_tokens, 1_000_005);
        let md = l.markdown(&PriceTable::builtin());
        assert!(
            md.contains("| rerank | 2 | 1 | 1000000 | 1000000 | 2 | 0.0 | 12.5000 | 2.5000 |"),
            "{md}"
        );
        assert!(
            md.contains("| **total** | 3 |") && md.contains("1 calls used a model with no price"),
            "{md}"
        );
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
