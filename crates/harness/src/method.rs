//! Reranking methods a program adds to the harness in one place: implement [`Method`] (what a
//! row of that kind is: its settings, checked before any work, its cost per user and its
//! reranker) and [`MethodKind`] (how a row's TOML table becomes one), register the kind in a
//! [`Methods`] and pass it in [`crate::ReproduceOptions::methods`]. Experiments then name it
//! with `kind = "..."` like a built-in, and `reproduce`, the plan, every report and `compare`
//! treat its rows as they treat the built-in ones: same data, backbones, candidate lists,
//! users, LLM recorder, ledger, scoring rule and candidate-order controls.
//!
//! Built-in methods are `agp::MethodConfig`; a method in another language is `external`.

use std::collections::BTreeMap;
use std::sync::Arc;

use agp_datasets::candidates::CandidateFile;
use anyhow::Result;

/// One resolved row of a registered kind.
pub trait Method: Send + Sync + std::fmt::Debug {
    /// The settings the row resolved to, as `cells.json` keeps them.
    fn settings(&self) -> serde_json::Value;
    /// The checks that need the candidate lists (every other range is checked in
    /// [`MethodKind::resolve`], as the experiment loads).
    fn check_data(&self, _cands: &CandidateFile) -> Result<()> {
        Ok(())
    }
    /// LLM requests per evaluated user for lists of `k` candidates: what the plan prices and
    /// the report compares the run's count with.
    fn calls_per_user(&self, k: usize) -> agp::CallsPerUser;
    /// Whether it calls the LLM at all (a row that does not runs once per dataset and
    /// backbone, not once per LLM).
    fn uses_llm(&self) -> bool {
        true
    }
    /// The reranker that runs the row; called once per cell.
    fn reranker(&self) -> Box<dyn agp::Reranker>;
}

/// How a row's table (its keys other than `label`, `kind` and `item_text`) becomes a
/// [`Method`]: every range that needs no data is checked here, before anything trains.
pub trait MethodKind: Send + Sync {
    /// What `kind = "..."` names it; must not be a built-in kind or `external`.
    fn kind(&self) -> &'static str;
    fn resolve(&self, settings: &toml::Table) -> Result<Arc<dyn Method>>;
}

/// The kinds a run knows beyond the built-in ones.
#[derive(Clone, Default)]
pub struct Methods {
    kinds: BTreeMap<&'static str, Arc<dyn MethodKind>>,
}

impl std::fmt::Debug for Methods {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.kinds.keys()).finish()
    }
}

impl Methods {
    /// Adds a kind; an error when its name is taken (by a built-in or another registration).
    pub fn register(&mut self, kind: impl MethodKind + 'static) -> Result<&mut Self> {
        let name = kind.kind();
        let builtin = name == "external"
            || serde_json::from_value::<agp::MethodConfig>(serde_json::json!({ "kind": name }))
                .is_ok();
        if builtin || self.kinds.contains_key(name) {
            anyhow::bail!("method kind {name:?} is already taken");
        }
        self.kinds.insert(name, Arc::new(kind));
        Ok(self)
    }

    pub fn get(&self, kind: &str) -> Option<&Arc<dyn MethodKind>> {
        self.kinds.get(kind)
    }
}

/// A row of a registered kind: the kind's name and the resolved method. In `cells.json` it is
/// `{"kind": ..., "settings": ...}`; read back without its kind registered (by `compare`, say)
/// it keeps both and cannot run.
#[derive(Clone, Debug)]
pub struct Registered {
    pub kind: String,
    pub settings: serde_json::Value,
    pub method: Option<Arc<dyn Method>>,
}

impl PartialEq for Registered {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.settings == other.settings
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Written {
    registered: String,
    settings: serde_json::Value,
}

impl serde::Serialize for Registered {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Written {
            registered: self.kind.clone(),
            settings: self.settings.clone(),
        }
        .serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for Registered {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = Written::deserialize(d)?;
        Ok(Self {
            kind: w.registered,
            settings: w.settings,
            method: None,
        })
    }
}

impl Registered {
    /// The method that runs the row; an error for one read back from a report.
    pub fn method(&self) -> Result<&Arc<dyn Method>> {
        self.method.as_ref().ok_or_else(|| {
            anyhow::anyhow!(
                "method kind {:?} was read from a report and is not registered in this run",
                self.kind
            )
        })
    }
}
