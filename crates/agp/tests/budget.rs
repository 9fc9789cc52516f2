//! The budget every learned method shares (in calls or tokens, and its `max_training_calls`
//! alias), random search, the seeded shuffle of training users and the validation rule on a
//! lower confidence bound, against the rule-based fake model of `common`.
//!
//! The fake reranks a list as the identity when the profile (which echoes `p_gen`) mentions
//! "genre" and reversed otherwise, and user u's ground truth sits at position u % 10; random
//! search's edits give a genre prompt when the drawn change adds or sharpens an instruction.

mod common;

use std::path::Path;
use std::sync::Arc;

use agp::{
    AgpConfig, Budget, MethodConfig, MethodRun, OproConfig, ProtegiConfig, RandomSearchConfig,
    RunOptions, Selection, Stage, run_method, training_tokens,
};
use common::{FakeModel, fixture};

const BATCH: usize = 5;

fn opts(dir: Option<&Path>, seed: u64) -> RunOptions {
    RunOptions {
        jobs: 4,
        seed,
        log_dir: dir.map(Path::to_path_buf),
        ..RunOptions::default()
    }
}

async fn run_seeded(
    cfg: &MethodConfig,
    seed: u64,
    dir: Option<&Path>,
) -> (MethodRun, Arc<FakeModel>) {
    let (ds, cands) = fixture();
    cfg.validate(&cands).expect("a valid config");
    let model = Arc::new(FakeModel::default());
    let r = run_method(cfg, &ds, &cands, model.clone(), &opts(dir, seed))
        .await
        .expect("run succeeds");
    (r, model)
}

async fn run(cfg: &MethodConfig) -> MethodRun {
    run_seeded(cfg, 0, None).await.0
}

fn opro(epochs: usize, n_train: usize) -> OproConfig {
    OproConfig {
        epochs,
        batch_size: BATCH,
        n_train_users: Some(n_train),
        ..OproConfig::one_proposal()
    }
}

fn random_search(epochs: usize, n_train: usize) -> RandomSearchConfig {
    RandomSearchConfig {
        epochs,
        batch_size: BATCH,
        n_train_users: Some(n_train),
        ..RandomSearchConfig::default()
    }
}

fn events(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("events.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn edits(r: &MethodRun) -> usize {
    r.epochs
        .iter()
        .map(|e| e.accepted_edits + e.discarded_edits)
        .sum()
}

#[tokio::test]
async fn a_budget_in_calls_is_max_training_calls_under_its_own_key() {
    // OPRO: 21 calls a batch, so a budget of 30 trains two batches (the second starts at 21).
    let alias = MethodConfig::Opro(OproConfig {
        max_training_calls: Some(30),
        ..opro(2, 20)
    });
    let budget = MethodConfig::Opro(OproConfig {
        budget: Some(Budget::calls(30)),
        ..opro(2, 20)
    });
    let (a, b) = (run(&alias).await, run(&budget).await);
    assert_eq!(a.training_calls(), 42);
    assert_eq!(b.training_calls(), 42);
    assert_eq!(a.epochs, b.epochs);
    assert_eq!(a.final_prompt, b.final_prompt);
    // Each config echoes what it was given: the alias exactly as before the budget existed.
    assert_eq!(a.config["max_training_calls"], 30);
    assert!(a.config.get("budget").is_none());
    assert_eq!(b.config["budget"], serde_json::json!({ "calls": 30 }));
    assert!(b.config.get("max_training_calls").is_none());
}

#[tokio::test]
async fn a_budget_in_calls_stops_every_learned_method() {
    // One call of budget trains the first batch only, whatever the method.
    let b = Some(Budget::calls(1));
    let cfgs = [
        MethodConfig::Agp(AgpConfig {
            epochs: 2,
            batch_size: BATCH,
            n_train_users: Some(20),
            budget: b,
            ..AgpConfig::default()
        }),
        MethodConfig::AgpPointwise(AgpConfig {
            epochs: 2,
            batch_size: BATCH,
            n_train_users: Some(20),
            budget: b,
            ..AgpConfig::default()
        }),
        MethodConfig::RerankOpt(AgpConfig {
            epochs: 2,
            batch_size: BATCH,
            n_train_users: Some(20),
            budget: b,
            ..AgpConfig::default()
        }),
        MethodConfig::Opro(OproConfig {
            budget: b,
            ..opro(2, 20)
        }),
        MethodConfig::Protegi(ProtegiConfig {
            epochs: 2,
            batch_size: BATCH,
            n_train_users: Some(20),
            budget: b,
            ..ProtegiConfig::beam_one()
        }),
        MethodConfig::RandomSearch(RandomSearchConfig {
            budget: b,
            ..random_search(2, 20)
        }),
    ];
    for cfg in &cfgs {
        let r = run(cfg).await;
        let trained: Vec<_> = r.epochs.iter().map(|e| e.train.is_some()).collect();
        assert_eq!(trained, [true, false], "{}", r.label);
        assert!(r.training_calls() > 0, "{}", r.label);
    }
    // Random search: 4b + 1 calls a batch (score, one edit, verify).
    let rs = run(&cfgs[5]).await;
    assert_eq!(rs.training_calls(), 4 * BATCH as u64 + 1);
    assert_eq!(edits(&rs), 1);
}

#[tokio::test]
async fn a_budget_in_tokens_stops_where_the_first_batch_spent_it() {
    // The tokens of OPRO's first batch alone: a run over those 5 users only.
    let one_batch = run(&MethodConfig::Opro(opro(1, BATCH))).await;
    let t1 = training_tokens(&one_batch.calls);
    assert!(t1 > 0);
    let with = |tokens| {
        MethodConfig::Opro(OproConfig {
            budget: Some(Budget::tokens(tokens)),
            ..opro(1, 20)
        })
    };
    // Spent exactly by the first batch: the second does not start.
    let at = run(&with(t1)).await;
    assert_eq!(training_tokens(&at.calls), t1);
    assert_eq!(at.training_calls(), one_batch.training_calls());
    // One token more: the second batch starts under the budget and runs to its end.
    let over = run(&with(t1 + 1)).await;
    assert!(training_tokens(&over.calls) > t1 + 1);
    assert_eq!(over.training_calls(), 2 * one_batch.training_calls());
    // Evaluation is never counted against it.
    assert!(over.calls[&Stage::Test].prompt_tokens > 0);
}

#[test]
fn budget_settings_are_validated_by_name() {
    let (_, cands) = fixture();
    let parse = |t: &str| toml::from_str::<MethodConfig>(t);
    let err = |t: &str| parse(t).unwrap().validate(&cands).unwrap_err().to_string();
    for (toml, field, allowed) in [
        (
            "kind = \"agp\"\nbudget = { calls = 0 }",
            "budget.calls",
            "1..",
        ),
        (
            "kind = \"opro\"\nbudget = { tokens = 0 }",
            "budget.tokens",
            "1..",
        ),
        ("kind = \"protegi\"\nbudget = {}", "budget", "exactly one"),
        (
            "kind = \"random-search\"\nbudget = { calls = 5, tokens = 5 }",
            "budget",
            "exactly one",
        ),
        (
            "kind = \"agp\"\nbudget = { calls = 5 }\nmax_training_calls = 5",
            "budget",
            "not both",
        ),
        (
            "kind = \"random-search\"\nmax_training_calls = 0",
            "max_training_calls",
            "1..",
        ),
        (
            "kind = \"agp\"\nselect = \"best-test\"",
            "select",
            "valid-lcb",
        ),
        (
            "kind = \"random-search\"\nbatch_size = 21",
            "batch_size",
            "1..=20",
        ),
    ] {
        let e = err(toml);
        assert!(e.contains(field) && e.contains(allowed), "{toml}: {e}");
    }
    // A key that is not a budget is a parse error naming it.
    let e = parse("kind = \"agp\"\nbudget = { requests = 5 }")
        .unwrap_err()
        .to_string();
    assert!(e.contains("requests"), "{e}");
    // Valid settings parse and echo as written.
    let ok = parse(
        "kind = \"random-search\"\nbudget = { tokens = 900 }\nshuffle_train_users = true\nselect = \"valid-lcb\"",
    )
    .unwrap();
    ok.validate(&cands).unwrap();
    let MethodConfig::RandomSearch(c) = &ok else {
        panic!("{ok:?}")
    };
    assert_eq!(c.budget, Some(Budget::tokens(900)));
    assert!(c.shuffle_train_users);
    assert_eq!(c.select, Selection::ValidLcb);
    // Defaults stay out of the echo, so older configs echo as they did.
    let echo = serde_json::to_string(&parse("kind = \"opro\"").unwrap()).unwrap();
    for key in ["budget", "shuffle_train_users", "select"] {
        assert!(!echo.contains(key), "{echo}");
    }
}

#[tokio::test]
async fn random_search_repeats_itself_per_seed_and_a_seed_changes_it() {
    let cfg = MethodConfig::RandomSearch(random_search(2, 20));
    let d1 = tempfile::tempdir().unwrap();
    let d2 = tempfile::tempdir().unwrap();
    let d3 = tempfile::tempdir().unwrap();
    let (a, _) = run_seeded(&cfg, 1, Some(d1.path())).await;
    let (b, _) = run_seeded(&cfg, 1, Some(d2.path())).await;
    let (c, _) = run_seeded(&cfg, 2, Some(d3.path())).await;
    let proposals = |d: &Path| -> Vec<(String, String)> {
        events(d)
            .into_iter()
            .filter(|e| e["event"] == "prompt")
            .map(|e| {
                (
                    e["edit"].as_str().unwrap().to_string(),
                    e["prompt"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    };
    assert_eq!(a, b);
    assert_eq!(proposals(d1.path()), proposals(d2.path()));
    // 4 batches a epoch, one proposal each.
    assert_eq!(proposals(d1.path()).len(), 8);
    assert_ne!(proposals(d1.path()), proposals(d3.path()));
    assert_ne!(a, c);
    // AGP's accept rule: kept exactly when the batch's mean rank strictly improves, and the
    // prompt at the end is the last one kept.
    let mut kept = String::new();
    for e in events(d1.path())
        .into_iter()
        .filter(|e| e["event"] == "prompt")
    {
        let better =
            e["mean_rank_after"].as_f64().unwrap() < e["mean_rank_before"].as_f64().unwrap();
        assert_eq!(e["status"] == "accepted", better, "{e}");
        if better {
            kept = e["prompt"].as_str().unwrap().to_string();
        }
    }
    assert_eq!(a.final_prompt.as_deref(), Some(kept.as_str()));
    // The proposal stage is `edit` (one call a batch) and its scoring is `verify`.
    assert_eq!(a.calls[&Stage::Edit].calls, 8);
    assert_eq!(a.calls[&Stage::Verify].calls, 8 * 2 * BATCH as u64);
}

/// The training users in the order their profiles were first asked for in epoch 1.
fn first_epoch_order(model: &FakeModel, n_train: usize) -> Vec<String> {
    model
        .prompts
        .lock()
        .unwrap()
        .iter()
        .filter(|(s, _)| *s == Some(Stage::Profile))
        .map(|(_, p)| {
            p.split("[Historical Item Profiles]\n")
                .nth(1)
                .unwrap_or("")
                .to_string()
        })
        .take(n_train)
        .collect()
}

#[tokio::test]
async fn shuffled_training_users_follow_the_seed_and_unshuffled_ones_do_not() {
    // A batch of all 20 users at concurrency 1 would still be the same set, so compare batches:
    // the first batch's profiles are asked before the second batch's.
    let cfg = |shuffle| {
        MethodConfig::Opro(OproConfig {
            shuffle_train_users: shuffle,
            ..opro(1, 20)
        })
    };
    let first_batch = |m: &FakeModel| {
        let mut b = first_epoch_order(m, BATCH);
        b.sort();
        b
    };
    let (plain1, m1) = run_seeded(&cfg(false), 1, None).await;
    let (plain2, m2) = run_seeded(&cfg(false), 2, None).await;
    assert_eq!(first_batch(&m1), first_batch(&m2));
    assert_eq!(plain1.epochs, plain2.epochs);

    let (s1, m1) = run_seeded(&cfg(true), 1, None).await;
    let (s1b, m1b) = run_seeded(&cfg(true), 1, None).await;
    let (_, m2) = run_seeded(&cfg(true), 2, None).await;
    assert_eq!(first_batch(&m1), first_batch(&m1b));
    assert_eq!(s1, s1b);
    assert_ne!(first_batch(&m1), first_batch(&m2));
    assert_ne!(
        first_batch(&m1),
        first_batch(&run_seeded(&cfg(false), 1, None).await.1)
    );
    assert_eq!(s1.config["shuffle_train_users"], true);
}

#[tokio::test]
async fn a_shuffled_run_resumes_to_the_same_end() {
    let cfg = MethodConfig::RandomSearch(RandomSearchConfig {
        shuffle_train_users: true,
        ..random_search(2, 20)
    });
    let whole = run_seeded(&cfg, 3, None).await.0;
    let dir = tempfile::tempdir().unwrap();
    let (ds, cands) = fixture();
    // Stop the model part-way through epoch 2, then resume with a fresh one.
    let stopped = Arc::new(FakeModel::failing_after(150));
    let o = RunOptions {
        on_failure: agp::FailurePolicy::Stop,
        ..opts(Some(dir.path()), 3)
    };
    assert!(run_method(&cfg, &ds, &cands, stopped, &o).await.is_err());
    let resumed = run_method(&cfg, &ds, &cands, Arc::new(FakeModel::default()), &o)
        .await
        .unwrap();
    assert_eq!(resumed.epochs, whole.epochs);
    assert_eq!(resumed.final_prompt, whole.final_prompt);
}

#[tokio::test]
async fn valid_lcb_is_reported_only_when_asked_for() {
    let plain = run(&MethodConfig::RandomSearch(random_search(2, 20))).await;
    assert!(plain.valid_lcb.is_none());
    assert!(plain.selected(Selection::ValidLcb).is_none());
    let asked = run(&MethodConfig::RandomSearch(RandomSearchConfig {
        select: Selection::ValidLcb,
        ..random_search(2, 20)
    }))
    .await;
    let lcb = asked.valid_lcb.as_ref().expect("a valid-lcb epoch");
    assert_eq!(lcb.selection, Selection::ValidLcb);
    assert!(asked.best_valid.is_some(), "best-valid stays");
}

#[tokio::test]
async fn random_search_spends_what_the_plan_counts() {
    // Per batch of b users: 2b to score the prompt, one edit, 2b to verify the proposal, so an
    // epoch of N users in batches of B is 4N + ⌈N/B⌉ (a short last batch included).
    for n in [20usize, 18] {
        let r = run(&MethodConfig::RandomSearch(random_search(2, n))).await;
        let per_epoch = 4 * n as u64 + n.div_ceil(BATCH) as u64;
        assert_eq!(r.training_calls(), 2 * per_epoch, "{n} users");
    }
}
