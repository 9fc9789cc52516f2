//! A method added in this one file: it implements `Method` and `MethodKind`, is registered, and
//! runs through `reproduce` (checked settings, the shared candidate lists and users), the plan
//! and every report beside Base, with nothing else in the workspace knowing about it.

use std::sync::Arc;

use agp::{CallsPerUser, Env, ParseOutcome, Ranking, RerankInput, Reranker};
use agp_harness::{Method, MethodKind, Methods, ReproduceOptions, Scale, Workspace};

/// The backbone's list, reversed from position `keep` on (the first `keep` stay put).
#[derive(Debug)]
struct ReverseTail {
    keep: usize,
}

#[async_trait::async_trait]
impl Reranker for ReverseTail {
    async fn rerank(&self, input: &RerankInput, _env: &Env) -> Result<Ranking, agp::AgpError> {
        let k = input.candidates.len();
        let keep = self.keep.min(k);
        let order = (0..keep).chain((keep..k).rev()).collect();
        Ok(Ranking {
            order,
            outcome: ParseOutcome::Exact,
        })
    }
}

#[derive(Debug)]
struct ReverseTailMethod {
    keep: usize,
}

impl Method for ReverseTailMethod {
    fn settings(&self) -> serde_json::Value {
        serde_json::json!({ "keep": self.keep })
    }
    fn check_data(&self, cands: &agp_datasets::candidates::CandidateFile) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.keep < cands.k,
            "keep: {} is outside the allowed range 0..{} (K)",
            self.keep,
            cands.k
        );
        Ok(())
    }
    fn calls_per_user(&self, _k: usize) -> CallsPerUser {
        CallsPerUser { min: 0, max: 0 }
    }
    fn uses_llm(&self) -> bool {
        false
    }
    fn reranker(&self) -> Box<dyn Reranker> {
        Box::new(ReverseTail { keep: self.keep })
    }
}

struct ReverseTailKind;

impl MethodKind for ReverseTailKind {
    fn kind(&self) -> &'static str {
        "reverse-tail"
    }
    fn resolve(&self, settings: &toml::Table) -> anyhow::Result<Arc<dyn Method>> {
        let keep = match settings.get("keep") {
            None => 0,
            Some(v) => v
                .as_integer()
                .filter(|&n| (0..1000).contains(&n))
                .ok_or_else(|| anyhow::anyhow!("keep = {v}: allowed 0..1000"))?
                as usize,
        };
        if let Some(other) = settings.keys().find(|k| *k != "keep") {
            anyhow::bail!("unknown setting {other:?} (known: keep)");
        }
        Ok(Arc::new(ReverseTailMethod { keep }))
    }
}

const SCALES: &str = r#"
[small]
datasets = ["ml-latest-small"]
backbones = ["lightgcn"]
llms = ["replay"]
test_users = 10
train_users = 5
valid_users = 5
take_available_users = true
backbone_epochs = { lightgcn = 20 }
"#;

const EXPERIMENT: &str = r#"
name = "toy"
title = "A registered method beside Base"
layout = "table1"
[[methods]]
label = "Base"
kind = "base"
[[methods]]
label = "Reverse tail"
kind = "reverse-tail"
keep = 3
"#;

/// A workspace of its own holding only what the run reads.
fn workspace(experiment: &str) -> (tempfile::TempDir, Workspace) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    std::fs::create_dir_all(root.join("experiments")).unwrap();
    std::fs::write(root.join("experiments/scales.toml"), SCALES).unwrap();
    std::fs::write(root.join("experiments/toy.toml"), experiment).unwrap();
    let raw = Workspace::discover().fixtures().join("ml-latest-small");
    let copy = root.join("fixtures/ml-latest-small");
    std::fs::create_dir_all(&copy).unwrap();
    for e in std::fs::read_dir(&raw).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), copy.join(e.file_name())).unwrap();
        }
    }
    std::fs::create_dir_all(root.join("fixtures/llm")).unwrap();
    // No row asks the model, but a replayed LLM is built from its recordings.
    std::fs::copy(
        Workspace::discover().recordings(),
        root.join("fixtures/llm/recordings.jsonl"),
    )
    .unwrap();
    let ws = Workspace::at(root);
    (tmp, ws)
}

fn kinds() -> Methods {
    let mut m = Methods::default();
    m.register(ReverseTailKind).unwrap();
    m
}

#[test]
fn a_method_registered_in_one_file_runs_through_reproduce_plan_and_report() {
    let (tmp, ws) = workspace(EXPERIMENT);
    let opts = ReproduceOptions {
        scale: Scale::Small,
        out: Some(tmp.path().join("out")),
        progress: false,
        kinds: kinds(),
        ..ReproduceOptions::default()
    };
    let runs = agp_harness::run_experiments(&ws, &["toy".into()], &opts).unwrap();
    let run = &runs[0];
    let base = run.cells.iter().find(|c| c.is_base()).unwrap();
    let toy = run
        .cells
        .iter()
        .find(|c| c.label == "Reverse tail")
        .unwrap();
    // The same users, each scored from the reversed tail of its backbone list.
    let users =
        |c: &agp_harness::report::Cell| c.run.last.users.iter().map(|u| u.user).collect::<Vec<_>>();
    assert_eq!(users(base), users(toy));
    for (b, t) in base.run.last.users.iter().zip(&toy.run.last.users) {
        let want = if b.rank <= 3 { b.rank } else { 10 + 4 - b.rank };
        assert_eq!(t.rank, want, "user {}", b.user);
    }
    let readme = std::fs::read_to_string(tmp.path().join("out/toy/README.md")).unwrap();
    assert!(readme.contains("Reverse tail"), "{readme}");
    let cells = std::fs::read_to_string(tmp.path().join("out/toy/cells.json")).unwrap();
    assert!(
        cells.contains("\"registered\": \"reverse-tail\""),
        "{cells}"
    );

    let exp =
        agp_harness::Experiment::load_with(&ws.experiment_path("toy"), Scale::Small, &kinds())
            .unwrap();
    let plan = agp_harness::plan::plan(&exp, &["openai:gpt-4o-mini".into()], 1).unwrap();
    assert!(plan.render().contains("Reverse tail"), "{}", plan.render());

    // Read back (as `compare` does) without the kind registered, the row keeps its settings.
    let report: serde_json::Value = serde_json::from_str(&cells).unwrap();
    let toy_json = report["cells"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["label"] == "Reverse tail")
        .unwrap();
    let spec: agp_harness::experiment::MethodSpec =
        serde_json::from_value(toy_json["method"].clone()).unwrap();
    assert!(matches!(
        spec,
        agp_harness::experiment::MethodSpec::Registered(ref r) if r.settings["keep"] == 3
    ));
}

#[test]
fn a_registered_kinds_bad_setting_fails_as_the_experiment_loads() {
    let (_tmp, ws) = workspace(&EXPERIMENT.replace("keep = 3", "keep = -1"));
    let e = agp_harness::Experiment::load_with(&ws.experiment_path("toy"), Scale::Small, &kinds())
        .unwrap_err();
    let msg = format!("{e:#}");
    assert!(
        msg.contains("methods[1] \"Reverse tail\" (kind reverse-tail)") && msg.contains("keep"),
        "{msg}"
    );
    // Unknown to a run that did not register it, the kind is refused by name.
    let e = agp_harness::Experiment::load(&ws.experiment_path("toy"), Scale::Small).unwrap_err();
    assert!(format!("{e:#}").contains("reverse-tail"), "{e:#}");
    // A kind cannot take a built-in's name.
    struct Named(&'static str);
    impl MethodKind for Named {
        fn kind(&self) -> &'static str {
            self.0
        }
        fn resolve(&self, _: &toml::Table) -> anyhow::Result<Arc<dyn Method>> {
            unreachable!()
        }
    }
    assert!(Methods::default().register(Named("agp")).is_err());
    assert!(Methods::default().register(Named("external")).is_err());
}
