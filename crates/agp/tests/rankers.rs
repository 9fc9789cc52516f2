//! RankGPT, PRP, Setwise and FIRST end to end against the rule-based fake model of `common`: the
//! ranking the fake's preferences imply, the calls each method's formula gives, and what
//! position bias, unreadable answers and failed calls do.
//!
//! The fixture's lists hold their items in ascending movie number, so a fake that prefers
//! higher numbers ranks every list as the backbone reversed, and a method's expected order is
//! the same for every user.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use agp::Stage;
use agp::methods::rankers::{heapsort_calls, prp_calls_per_node, rankgpt_windows};
use agp::{
    CallsPerUser, FirstConfig, MethodConfig, MethodRun, ParseOutcome, PrpConfig, PrpTies,
    RankGptConfig, RunOptions, SetwiseConfig, run_method,
};
use agp_llm::FailureReason;
use common::{FailRule, FakeModel, K, RankerAnswers, fixture};

const N_TEST: usize = 12;

fn opts() -> RunOptions {
    RunOptions {
        jobs: 4,
        ..RunOptions::default()
    }
}

async fn run(cfg: &MethodConfig, model: Arc<FakeModel>) -> MethodRun {
    let (ds, cands) = fixture();
    cfg.validate(&cands).expect("a valid config");
    run_method(cfg, &ds, &cands, model, &opts())
        .await
        .expect("run succeeds")
}

/// The calls one test user costs, measured alone.
async fn calls_for_one_user(cfg: &MethodConfig, answers: RankerAnswers) -> u64 {
    let (ds, mut cands) = fixture();
    cands.test_users = vec![23];
    let model = Arc::new(FakeModel::answering(answers));
    run_method(cfg, &ds, &cands, model.clone(), &opts())
        .await
        .expect("run succeeds");
    model.calls.load(Ordering::SeqCst) as u64
}

/// Every test user's ground truth (at backbone position u % K) sits where `order` puts it.
fn assert_ranks(r: &MethodRun, order: &[usize]) {
    assert_eq!(r.last.users.len(), N_TEST);
    for res in &r.last.users {
        let gt = res.user as usize % K;
        let want = order.iter().position(|&i| i == gt).unwrap() + 1;
        assert_eq!(res.rank, want, "{}: user {}", r.label, res.user);
    }
}

fn assert_outcomes(r: &MethodRun, outcome: ParseOutcome) {
    assert_eq!(
        r.parse_counts,
        BTreeMap::from([(outcome, N_TEST as u64)]),
        "{}",
        r.label
    );
}

fn reversed() -> Vec<usize> {
    (0..K).rev().collect()
}

fn backbone() -> Vec<usize> {
    (0..K).collect()
}

/// RankGPT's result when every window is sorted by higher backbone position first.
fn rankgpt_expected(window: usize, step: usize) -> Vec<usize> {
    let mut order = backbone();
    for w in rankgpt_windows(K, window, step) {
        order[w].sort_by(|a, b| b.cmp(a));
    }
    order
}

fn rankgpt(window: usize, step: usize) -> MethodConfig {
    MethodConfig::RankGpt(RankGptConfig {
        window,
        step,
        ..RankGptConfig::default()
    })
}

fn setwise(num_child: usize) -> MethodConfig {
    MethodConfig::Setwise(SetwiseConfig {
        num_child,
        ..SetwiseConfig::default()
    })
}

/// PRP-sort settling pairs without a preference by backbone order, so that a model with none
/// leaves the backbone's list (the default, llm-rankers' rule, is in `tests/published.rs`).
fn prp_sort_backbone_ties() -> MethodConfig {
    MethodConfig::PrpSort(PrpConfig {
        ties: PrpTies::Backbone,
        ..PrpConfig::default()
    })
}

fn all_methods() -> Vec<MethodConfig> {
    vec![
        rankgpt(4, 2),
        MethodConfig::PrpAllpair(PrpConfig::default()),
        prp_sort_backbone_ties(),
        MethodConfig::Setwise(SetwiseConfig::default()),
        MethodConfig::First(FirstConfig::default()),
    ]
}

fn exact(cfg: &MethodConfig) -> u64 {
    cfg.calls_per_user(K).exact().expect("an exact count")
}

#[tokio::test]
async fn rankgpt_slides_a_window_from_the_back_to_the_front() {
    let cfg = rankgpt(4, 2);
    let model = Arc::new(FakeModel::default());
    let r = run(&cfg, model.clone()).await;
    assert_eq!(r.label, "RankGPT (w4/s2)");
    // Windows 6..10, 4..8, 2..6, 0..4: the two best travel to the front, the rest is sorted
    // only in pairs.
    let want = [9, 8, 1, 0, 3, 2, 5, 4, 7, 6];
    assert_eq!(rankgpt_expected(4, 2), want);
    assert_ranks(&r, &want);
    assert_outcomes(&r, ParseOutcome::Exact);
    assert_eq!(exact(&cfg), 4);
    assert_eq!(model.calls.load(Ordering::SeqCst), N_TEST * 4);
    assert_eq!(r.calls[&Stage::Test].calls, (N_TEST * 4) as u64);
    // Every call shows one window of 4 candidates, numbered within the window.
    for (stage, p) in model.prompts.lock().unwrap().iter() {
        assert_eq!(*stage, Some(Stage::Test));
        let lines: Vec<&str> = p.lines().filter(|l| l.starts_with('<')).collect();
        assert_eq!(lines.len(), 4, "{p}");
        for (i, l) in lines.iter().enumerate() {
            assert!(l.starts_with(&format!("<{i}: Movie ")), "{l}");
        }
    }
}

#[tokio::test]
async fn rankgpt_window_and_step_edge_cases() {
    // (window, step, calls per user): a whole-list window is one LLM-Dir-like call; a window
    // of 2 with step 1 is one bubble pass; steps that do not divide K − window end with a
    // window moved to the front.
    for (window, step, calls) in [(K, 1, 1), (K, 5, 1), (2, 1, 9), (4, 3, 3), (5, 2, 4)] {
        let cfg = rankgpt(window, step);
        let model = Arc::new(FakeModel::default());
        let r = run(&cfg, model.clone()).await;
        assert_eq!(exact(&cfg), calls);
        assert_eq!(calls, 1 + (K - window).div_ceil(step) as u64);
        assert_eq!(
            model.calls.load(Ordering::SeqCst) as u64,
            N_TEST as u64 * calls
        );
        assert_ranks(&r, &rankgpt_expected(window, step));
    }
    assert_eq!(rankgpt_expected(K, 1), reversed());
    assert_eq!(rankgpt_expected(2, 1), [9, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
    // The last window of (5, 2) is 0..5, where RankGPT's own loop would stop after 1..6 and
    // leave the best item second.
    assert_eq!(rankgpt_expected(5, 2), [9, 8, 7, 2, 0, 1, 4, 3, 6, 5]);
}

#[tokio::test]
async fn prp_allpair_asks_every_pair_in_both_orders() {
    let cfg = MethodConfig::PrpAllpair(PrpConfig::default());
    let model = Arc::new(FakeModel::default());
    let r = run(&cfg, model.clone()).await;
    assert_eq!(r.label, "PRP-allpair");
    assert_ranks(&r, &reversed());
    assert_outcomes(&r, ParseOutcome::Exact);
    assert_eq!(exact(&cfg), (K * (K - 1)) as u64);
    assert_eq!(model.calls.load(Ordering::SeqCst), N_TEST * K * (K - 1));
    // One user's pairs, each shown both ways round, one after the other.
    let (ds, mut cands) = fixture();
    cands.test_users = vec![23];
    let model = Arc::new(FakeModel::default());
    run_method(&cfg, &ds, &cands, model.clone(), &opts())
        .await
        .unwrap();
    let prompts = model.prompts.lock().unwrap();
    assert_eq!(prompts.len(), K * (K - 1));
    let pair = |p: &str| -> Vec<String> {
        p.lines()
            .filter(|l| l.starts_with('<'))
            .map(|l| l[4..].to_string())
            .collect()
    };
    for w in prompts.chunks(2) {
        let (a, b) = (pair(&w[0].1), pair(&w[1].1));
        assert_eq!((a.len(), b.len()), (2, 2));
        assert_eq!((&a[0], &a[1]), (&b[1], &b[0]));
    }
}

#[tokio::test]
async fn prp_sort_and_setwise_sort_the_whole_list_within_their_bounds() {
    let mut cfgs = vec![MethodConfig::PrpSort(PrpConfig::default())];
    cfgs.extend([1, 2, 3, 9].map(setwise));
    for cfg in cfgs {
        let model = Arc::new(FakeModel::default());
        let r = run(&cfg, model.clone()).await;
        assert_ranks(&r, &reversed());
        assert_outcomes(&r, ParseOutcome::Exact);
        let CallsPerUser { min, max } = cfg.calls_per_user(K);
        let one = calls_for_one_user(&cfg, RankerAnswers::PreferHigherIds).await;
        assert!(
            (min..=max).contains(&one),
            "{}: {min} <= {one} <= {max}",
            r.label
        );
        let all = model.calls.load(Ordering::SeqCst) as u64;
        let n = N_TEST as u64;
        assert!((n * min..=n * max).contains(&all), "{}", r.label);
    }
    assert_eq!(
        MethodConfig::PrpSort(PrpConfig::default()).calls_per_user(K),
        CallsPerUser { min: 48, max: 88 }
    );
    assert_eq!(
        setwise(3).calls_per_user(K),
        CallsPerUser { min: 11, max: 17 }
    );
    // With K − 1 children the heap is one level deep: a selection sort, one call per place.
    assert_eq!(setwise(9).calls_per_user(K).exact(), Some(9));
    assert_eq!(setwise(3).label(&fixture().1), "Setwise (c3)");
    assert_eq!(
        MethodConfig::PrpSort(PrpConfig::default()).label(&fixture().1),
        "PRP-sort"
    );
}

#[tokio::test]
async fn setwise_prompts_show_a_node_and_its_children() {
    let model = Arc::new(FakeModel::default());
    let (ds, mut cands) = fixture();
    cands.test_users = vec![23];
    run_method(&setwise(3), &ds, &cands, model.clone(), &opts())
        .await
        .unwrap();
    let prompts = model.prompts.lock().unwrap();
    let sizes: Vec<usize> = prompts
        .iter()
        .map(|(_, p)| p.lines().filter(|l| l.starts_with('<')).count())
        .collect();
    // The first call is the last internal node, 2, with children 7, 8 and 9.
    assert_eq!(sizes[0], 4);
    assert!(sizes.iter().all(|&s| (2..=4).contains(&s)), "{sizes:?}");
    let texts: Vec<&str> = cands.lists[23]
        .items
        .iter()
        .map(|&i| ds.item_text[i as usize].as_str())
        .collect();
    let want = agp::prompts::candidate_list(&[texts[2], texts[7], texts[8], texts[9]]);
    assert!(prompts[0].1.contains(&want), "{}", prompts[0].1);
    assert!(prompts[0].1.contains("which of the following 4 items"));
}

#[tokio::test]
async fn first_ranks_by_the_first_tokens_log_probabilities() {
    let cfg = MethodConfig::First(FirstConfig::default());
    let model = Arc::new(FakeModel::default());
    let r = run(&cfg, model.clone()).await;
    assert_eq!(r.label, "FIRST");
    assert_ranks(&r, &reversed());
    assert_outcomes(&r, ParseOutcome::Pointwise);
    assert_eq!(exact(&cfg), 1);
    assert_eq!(model.calls.load(Ordering::SeqCst), N_TEST);
    assert_eq!(r.calls[&Stage::Test].calls, N_TEST as u64);
    // One prompt over the whole list, asking for an answer that starts with an id.
    for (_, p) in model.prompts.lock().unwrap().iter() {
        assert_eq!(p.lines().filter(|l| l.starts_with('<')).count(), K, "{p}");
        assert!(!p.contains(agp::parse::BOS), "{p}");
    }
    // A position-biased model ranks the list as shown.
    let r = run(
        &cfg,
        Arc::new(FakeModel::answering(RankerAnswers::FirstShown)),
    )
    .await;
    assert_ranks(&r, &backbone());
}

#[tokio::test]
async fn position_bias_gives_no_preference() {
    // A list kept as shown; pairs whose two orders disagree tie, and ties go to the backbone.
    for cfg in [
        rankgpt(4, 2),
        MethodConfig::PrpAllpair(PrpConfig::default()),
        prp_sort_backbone_ties(),
    ] {
        let r = run(
            &cfg,
            Arc::new(FakeModel::answering(RankerAnswers::FirstShown)),
        )
        .await;
        assert_ranks(&r, &backbone());
        assert_outcomes(&r, ParseOutcome::Exact);
    }
    // Setwise shows the node first: it always stays, so every sift-down stops after one call,
    // the formula's minimum.
    let cfg = setwise(3);
    let model = Arc::new(FakeModel::answering(RankerAnswers::FirstShown));
    run(&cfg, model.clone()).await;
    let min = cfg.calls_per_user(K).min;
    assert_eq!(
        model.calls.load(Ordering::SeqCst) as u64,
        N_TEST as u64 * min
    );
    assert_eq!(
        calls_for_one_user(&cfg, RankerAnswers::FirstShown).await,
        min
    );
}

#[tokio::test]
async fn unreadable_answers_keep_the_backbone_order() {
    // The method's own fallback leaves the backbone's list; the experiment's rule decides what
    // that scores: the backbone's ranks under `backbone`, rank K under `rank-k` (the default).
    let (ds, cands) = fixture();
    for cfg in all_methods() {
        let model = Arc::new(FakeModel::answering(RankerAnswers::Unreadable));
        let opts = RunOptions {
            scoring: agp::AnswerScoring::Backbone,
            ..opts()
        };
        let r = run_method(&cfg, &ds, &cands, model.clone(), &opts)
            .await
            .unwrap();
        assert_ranks(&r, &backbone());
        assert_outcomes(&r, ParseOutcome::Unparseable);
        assert!(
            r.last.users.iter().all(|u| u.other_rule.unwrap().rank == K),
            "{}: rank K under rank-k",
            r.label
        );
        let calls = model.calls.load(Ordering::SeqCst) as u64;
        let CallsPerUser { min, max } = cfg.calls_per_user(K);
        let n = N_TEST as u64;
        assert!((n * min..=n * max).contains(&calls), "{}", r.label);
    }
}

/// The 5-item history block every prompt of user `u` shows.
fn history_block(u: u32) -> String {
    let (ds, _) = fixture();
    let h = ds.history_before_test(u);
    let texts: Vec<&str> = h[h.len() - 5..]
        .iter()
        .map(|&i| ds.item_text[i as usize].as_str())
        .collect();
    agp::prompts::history_lines(&texts)
}

#[tokio::test]
async fn a_failed_call_fails_its_user_only() {
    const USER: u32 = 25;
    let expected = [
        rankgpt_expected(4, 2),
        reversed(),
        reversed(),
        reversed(),
        reversed(),
    ];
    for (cfg, want) in all_methods().into_iter().zip(expected) {
        // The user's third call, where there is one: the sort is under way when it fails.
        let nth = if cfg.calls_per_user(K).max == 1 { 0 } else { 2 };
        let rule = FailRule::containing(history_block(USER), FailureReason::Refusal).nth(nth);
        let model = Arc::new(FakeModel::failing(vec![rule]));
        let r = run(&cfg, model).await;
        for u in &r.last.users {
            if u.user == USER {
                assert_eq!((u.rank, u.ndcg), (K, 0.0));
                assert_eq!(u.parse, ParseOutcome::CallFailed);
                assert_eq!(u.failure, Some(FailureReason::Refusal));
            } else {
                let gt = u.user as usize % K;
                assert_eq!(u.rank, want.iter().position(|&i| i == gt).unwrap() + 1);
                assert!(
                    matches!(u.parse, ParseOutcome::Exact | ParseOutcome::Pointwise),
                    "{:?}",
                    u.parse
                );
            }
        }
        assert_eq!(r.failures, BTreeMap::from([(FailureReason::Refusal, 1)]));
        assert_eq!(r.calls[&Stage::Test].failed, 1);
        assert_eq!(r.parse_counts[&ParseOutcome::CallFailed], 1);
    }
}

#[test]
fn calls_per_user_formulas() {
    let (_, cands) = fixture();
    let parse = |t: &str| toml::from_str::<MethodConfig>(t).unwrap();
    let exact_for = |t: &str| parse(t).calls_per_user(K).exact();
    assert_eq!(exact_for("kind = \"base\""), Some(0));
    assert_eq!(exact_for("kind = \"llm-dir\""), Some(1));
    assert_eq!(exact_for("kind = \"llm-cot\""), Some(1));
    assert_eq!(exact_for("kind = \"llm-dir-pointwise\""), Some(10));
    assert_eq!(exact_for("kind = \"agp\""), Some(2));
    assert_eq!(exact_for("kind = \"agp-pointwise\""), Some(11));
    assert_eq!(exact_for("kind = \"rerank-opt\""), Some(1));
    assert_eq!(exact_for("kind = \"rankgpt\""), Some(1));
    assert_eq!(
        exact_for("kind = \"rankgpt\"\nwindow = 4\nstep = 2"),
        Some(4)
    );
    assert_eq!(exact_for("kind = \"prp-allpair\""), Some(90));
    assert_eq!(exact_for("kind = \"prp-sort\""), None);
    assert_eq!(exact_for("kind = \"setwise\""), None);
    assert_eq!(exact_for("kind = \"first\""), Some(1));
    for k in 2..=20usize {
        let all = MethodConfig::PrpAllpair(PrpConfig::default()).calls_per_user(k);
        assert_eq!(all.exact(), Some((k * (k - 1)) as u64));
        let sort = MethodConfig::PrpSort(PrpConfig::default()).calls_per_user(k);
        assert_eq!(
            (sort.min, sort.max),
            heapsort_calls(k, 2, prp_calls_per_node)
        );
    }
    // At K = 10 even heapsort's worst case asks fewer than all pairs (it does not for small K).
    assert!(heapsort_calls(K, 2, prp_calls_per_node).1 < (K * (K - 1)) as u64);
    for cfg in all_methods() {
        cfg.validate(&cands).unwrap();
    }
}

#[tokio::test]
async fn results_do_not_depend_on_concurrency() {
    let (ds, cands) = fixture();
    for cfg in [setwise(3), MethodConfig::PrpSort(PrpConfig::default())] {
        let mut runs = Vec::new();
        for concurrency in [1, 16] {
            let o = RunOptions {
                jobs: concurrency,
                ..opts()
            };
            let r = run_method(&cfg, &ds, &cands, Arc::new(FakeModel::default()), &o)
                .await
                .unwrap();
            runs.push(serde_json::to_value(&r).unwrap());
        }
        assert_eq!(runs[0], runs[1]);
    }
}
