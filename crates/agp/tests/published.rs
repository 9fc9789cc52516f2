//! The published baselines at their published settings, against the rule-based fakes of
//! `common`: RankGPT's one window and its own answer format, PRP-sort's rule for pairs without a
//! preference, OPRO's 8 seeded proposals at temperature 1.0, ProTeGi's beam, gradients and
//! paraphrases (by their calls), FIRST's `[` prefill, and what each config reports as its
//! decoding and its departures from the published defaults.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use agp::{
    Decoding, FirstConfig, MethodConfig, MethodRun, OproConfig, ParseOutcome, ProtegiConfig,
    PrpConfig, PrpTies, RankGptConfig, RunOptions, Stage, run_method,
};
use agp_llm::{
    ChatModel, ChatRequest, ChatResponse, LlmError, Message, ModelInfo, Sampling, ScoreRequest,
    ScoreResponse, Usage, chat_key,
};
use async_trait::async_trait;
use common::{FakeModel, K, RankerAnswers, fixture};

fn opts() -> RunOptions {
    RunOptions {
        jobs: 4,
        ..RunOptions::default()
    }
}

async fn run(cfg: &MethodConfig, model: Arc<dyn ChatModel>) -> MethodRun {
    let (ds, cands) = fixture();
    cfg.validate(&cands).expect("a valid config");
    run_method(cfg, &ds, &cands, model, &opts())
        .await
        .expect("run succeeds")
}

fn parse(text: &str) -> MethodConfig {
    toml::from_str(text).unwrap()
}

/// Every test user's ground truth (at backbone position u % K) sits where `order` puts it.
fn assert_ranks(r: &MethodRun, order: &[usize]) {
    for res in &r.last.users {
        let gt = res.user as usize % K;
        let want = order.iter().position(|&i| i == gt).unwrap() + 1;
        assert_eq!(res.rank, want, "{}: user {}", r.label, res.user);
    }
}

/// Answers RankGPT's prompt as RankGPT's models do, `[9] > [8] > ... > [0]` (the higher
/// movie number first, which on the fixture's ascending lists is the backbone reversed), with
/// no answer markers.
#[derive(Default)]
struct RankGptFormat {
    calls: AtomicUsize,
}

#[async_trait]
impl ChatModel for RankGptFormat {
    fn info(&self) -> ModelInfo {
        ModelInfo {
            backend: "fake".into(),
            model: "rankgpt-format".into(),
            file_sha256: None,
        }
    }

    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, LlmError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let prompt = &req.messages.last().unwrap().content;
        let movies: Vec<u32> = prompt
            .lines()
            .filter(|l| l.starts_with('<'))
            .filter_map(|l| l.split("Movie ").nth(1)?.split(' ').next()?.parse().ok())
            .collect();
        let mut ids: Vec<usize> = (0..movies.len()).collect();
        ids.sort_by_key(|&i| std::cmp::Reverse(movies[i]));
        let content = ids
            .iter()
            .map(|i| format!("[{i}]"))
            .collect::<Vec<_>>()
            .join(" > ");
        Ok(ChatResponse {
            served: Default::default(),
            content,
            usage: Usage::default(),
            finish_reason: None,
        })
    }

    async fn score(&self, _: &ScoreRequest) -> Result<ScoreResponse, LlmError> {
        unreachable!("RankGPT asks no pointwise question")
    }
}

#[tokio::test]
async fn rankgpt_by_default_is_one_window_over_the_list_read_in_its_own_format() {
    let cfg = parse("kind = \"rankgpt\"");
    assert_eq!(cfg, MethodConfig::RankGpt(RankGptConfig::default()));
    let model = Arc::new(RankGptFormat::default());
    let r = run(&cfg, model.clone()).await;
    assert_eq!(r.label, "RankGPT (w20/s10)");
    // One call per user, over all K candidates; `[9] > [8] > ...` read in full.
    assert_eq!(model.calls.load(Ordering::SeqCst), r.last.users.len());
    assert_ranks(&r, &(0..K).rev().collect::<Vec<_>>());
    assert_eq!(
        r.parse_counts,
        BTreeMap::from([(ParseOutcome::NoMarkers, r.last.users.len() as u64)])
    );
}

#[tokio::test]
async fn prp_sort_keeps_the_parent_on_disagreement_unless_told_backbone() {
    // A purely position-biased judge: whichever item is shown first wins, so every pair's two
    // orders disagree.
    let sort = |ties| {
        MethodConfig::PrpSort(PrpConfig {
            ties,
            ..PrpConfig::default()
        })
    };
    let biased = || Arc::new(FakeModel::answering(RankerAnswers::FirstShown));
    let backbone = run(&sort(PrpTies::Backbone), biased()).await;
    assert_ranks(&backbone, &(0..K).collect::<Vec<_>>());
    // llm-rankers' rule: no child ever replaces its node, so each pass of the heapsort moves
    // the root to the back unchanged; the list comes out as its first item, then the rest
    // reversed. Not the backbone's order, which the backbone rule flatters PRP-sort with.
    let parent = run(&sort(PrpTies::Parent), biased()).await;
    let scrambled: Vec<usize> = std::iter::once(0).chain((1..K).rev()).collect();
    assert_ranks(&parent, &scrambled);
    let ranks = |r: &MethodRun| r.last.users.iter().map(|u| u.rank).collect::<Vec<_>>();
    assert_ne!(
        ranks(&backbone),
        ranks(&parent),
        "the two rules give different orders"
    );
    assert_eq!(parse("kind = \"prp-sort\""), sort(PrpTies::Parent));
    assert_eq!(
        parse("kind = \"prp-sort\"\nties = \"backbone\""),
        sort(PrpTies::Backbone)
    );
    // A model with a real preference sorts the same under either rule.
    for ties in [PrpTies::Parent, PrpTies::Backbone] {
        let r = run(&sort(ties), Arc::new(FakeModel::default())).await;
        assert_ranks(&r, &(0..K).rev().collect::<Vec<_>>());
    }
}

fn optimizer_fixture_loop(n_train: usize) -> (usize, usize, Option<usize>) {
    (1, 5, Some(n_train))
}

/// The chat requests a fake answered at `stage`: the prompt and its sampling.
fn requests(model: &FakeModel, stage: Stage) -> Vec<(String, Sampling)> {
    let prompts = model.prompts.lock().unwrap().clone();
    let samplings = model.samplings.lock().unwrap().clone();
    prompts
        .into_iter()
        .zip(samplings)
        .filter(|((s, _), _)| *s == Some(stage))
        .map(|((_, p), (_, sampling))| (p, sampling))
        .collect()
}

/// The record/replay key of a request as [`agp::Llm`] sends it.
fn key(prompt: &str, sampling: &Sampling) -> String {
    let req = ChatRequest {
        sampling: sampling.clone(),
        ..ChatRequest::new(vec![
            Message::system(agp::prompts::SYSTEM),
            Message::user(prompt),
        ])
    };
    chat_key(&FakeModel::default().info(), &req)
}

#[tokio::test]
async fn opro_sends_eight_distinct_proposals_at_temperature_one() {
    let (epochs, batch_size, n_train_users) = optimizer_fixture_loop(5);
    // No example users: all 8 meta-prompts of the batch are the same text.
    let cfg = MethodConfig::Opro(OproConfig {
        epochs,
        batch_size,
        n_train_users,
        n_exemplars: 0,
        ..OproConfig::default()
    });
    let model = Arc::new(FakeModel::default());
    run(&cfg, model.clone()).await;
    let proposals = requests(&model, Stage::Edit);
    assert_eq!(proposals.len(), 8);
    let texts: BTreeSet<&str> = proposals.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(texts.len(), 1, "the meta-prompts coincide");
    let seeds: BTreeSet<u64> = proposals.iter().filter_map(|(_, s)| s.seed).collect();
    assert_eq!(seeds.len(), 8, "a seed of its own for each proposal");
    let keys: BTreeSet<String> = proposals.iter().map(|(p, s)| key(p, s)).collect();
    assert_eq!(keys.len(), 8, "eight requests, recorded apart");
    for (_, s) in &proposals {
        assert_eq!(s.temperature, Some(1.0));
        assert_eq!(s.top_p, None);
    }
    // Scoring the prompts keeps the run's settings: nothing added.
    for stage in [Stage::Profile, Stage::Rerank, Stage::Test] {
        for (_, s) in requests(&model, stage) {
            assert_eq!(s, Sampling::default(), "{stage:?}");
        }
    }
    // The same run again sends the same seeds: a resumed or replayed run asks the same.
    let again = Arc::new(FakeModel::default());
    run(&cfg, again.clone()).await;
    let seeds_again: BTreeSet<u64> = requests(&again, Stage::Edit)
        .iter()
        .filter_map(|(_, s)| s.seed)
        .collect();
    assert_eq!(seeds, seeds_again);
}

#[tokio::test]
async fn opro_with_one_proposal_sends_what_it_always_sent() {
    let (epochs, batch_size, n_train_users) = optimizer_fixture_loop(10);
    let cfg = MethodConfig::Opro(OproConfig {
        epochs,
        batch_size,
        n_train_users,
        ..OproConfig::one_proposal()
    });
    let model = Arc::new(FakeModel::default());
    run(&cfg, model.clone()).await;
    let proposals = requests(&model, Stage::Edit);
    // One per batch, with no temperature and no seed: the recorded requests' keys.
    assert_eq!(proposals.len(), 2);
    for (_, s) in &proposals {
        assert_eq!(s, &Sampling::default());
    }
    // The echo of that row's settings parses back to the same config.
    let echo = toml::to_string(&cfg).unwrap();
    assert_eq!(parse(&echo), cfg);
}

#[tokio::test]
async fn protegi_at_its_published_defaults_asks_four_gradients_and_two_paraphrases() {
    let (epochs, batch_size, n_train_users) = optimizer_fixture_loop(5);
    let published = |errors_per_gradient| {
        MethodConfig::Protegi(ProtegiConfig {
            epochs,
            batch_size,
            n_train_users,
            errors_per_gradient,
            ..ProtegiConfig::default()
        })
    };
    // One batch of 5 users, all missed by the empty start (ranks 10..6); the beam is that one
    // prompt. With 4 errors per gradient the 5 misses make 2 groups: 2 gradients and 2 edits,
    // then 2 paraphrases of each of the 2 new prompts and of the start: 6 more edit-stage calls.
    let model = Arc::new(FakeModel::default());
    let r = run(&published(4), model.clone()).await;
    let gradients = requests(&model, Stage::Feedback);
    let edits = requests(&model, Stage::Edit);
    assert_eq!(gradients.len(), 2);
    assert_eq!(edits.len(), 2 + 2 * 3);
    assert_eq!(r.calls[&Stage::Feedback].calls, 2);
    assert_eq!(r.calls[&Stage::Edit].calls, 8);
    // One error per gradient: the 4 gradients the config allows, 4 edits, 2·5 paraphrases.
    let model = Arc::new(FakeModel::default());
    run(&published(1), model.clone()).await;
    assert_eq!(requests(&model, Stage::Feedback).len(), 4);
    let edits = requests(&model, Stage::Edit);
    assert_eq!(edits.len(), 4 + 2 * 5);
    // Every gradient and edit at 0.7; the paraphrases each with a seed of their own.
    for (_, s) in requests(&model, Stage::Feedback).iter().chain(&edits) {
        assert_eq!(s.temperature, Some(0.7));
    }
    let paraphrases: Vec<&(String, Sampling)> = edits
        .iter()
        .filter(|(p, _)| p.contains("Generate a variation of the following instruction"))
        .collect();
    assert_eq!(paraphrases.len(), 10);
    let keys: BTreeSet<String> = paraphrases.iter().map(|(p, s)| key(p, s)).collect();
    assert_eq!(
        keys.len(),
        10,
        "two paraphrases of one prompt are two requests"
    );

    // The beam of 1 this crate ran first: one gradient, one edit, nothing sent beyond the run's
    // settings.
    let cheap = MethodConfig::Protegi(ProtegiConfig {
        epochs,
        batch_size,
        n_train_users,
        ..ProtegiConfig::beam_one()
    });
    let model = Arc::new(FakeModel::default());
    run(&cheap, model.clone()).await;
    let gradients = requests(&model, Stage::Feedback);
    let edits = requests(&model, Stage::Edit);
    assert_eq!((gradients.len(), edits.len()), (1, 1));
    for (_, s) in gradients.iter().chain(&edits) {
        assert_eq!(s, &Sampling::default());
    }
}

#[tokio::test]
async fn first_prefills_the_answer_with_a_bracket_and_asks_for_a_bracketed_list() {
    let model = Arc::new(FakeModel::default());
    let r = run(&MethodConfig::First(FirstConfig::default()), model.clone()).await;
    let n = r.last.users.len();
    assert_eq!(*model.prefills.lock().unwrap(), vec!["[".to_string(); n]);
    for (_, p) in model.prompts.lock().unwrap().iter() {
        assert!(p.contains("inside square brackets"), "{p}");
    }
    assert_ranks(&r, &(0..K).rev().collect::<Vec<_>>());

    // `prefill = ""` is the request FIRST sent before: no prefill, the unbracketed prompt.
    let cfg = parse("kind = \"first\"\nprefill = \"\"");
    let model = Arc::new(FakeModel::default());
    run(&cfg, model.clone()).await;
    assert_eq!(*model.prefills.lock().unwrap(), vec![String::new(); n]);
    for (_, p) in model.prompts.lock().unwrap().iter() {
        assert!(!p.contains("square brackets"), "{p}");
        assert!(p.contains("comma-separated, of length 10, and MUST start with the id"));
    }
}

#[test]
fn decoding_is_validated_by_field() {
    let (_, cands) = fixture();
    let check = |text: &str| parse(text).validate(&cands).unwrap_err().to_string();
    let e = check("kind = \"opro\"\nproposal_decoding = { temperature = 2.5 }");
    assert!(
        e.contains("`proposal_decoding.temperature`") && e.contains("0.0..=2.0"),
        "{e}"
    );
    let e = check("kind = \"opro\"\nproposal_decoding = { temperature = -0.1 }");
    assert!(e.contains("`proposal_decoding.temperature`"), "{e}");
    let e = check("kind = \"protegi\"\ngradient_decoding = { top_p = 0.0 }");
    assert!(e.contains("`gradient_decoding.top_p`"), "{e}");
    let e = check("kind = \"protegi\"\nedit_decoding = { temperature = 3.0 }");
    assert!(e.contains("`edit_decoding.temperature`"), "{e}");
    let e = check("kind = \"protegi\"\nn_paraphrases = 101");
    assert!(
        e.contains("`n_paraphrases`") && e.contains("0..=100"),
        "{e}"
    );
    // Unknown keys of a decoding table are an error too.
    assert!(
        toml::from_str::<MethodConfig>("kind = \"opro\"\nproposal_decoding = { temp = 1 }")
            .is_err()
    );
    // In range, and the provider default as an empty table.
    let ok = parse("kind = \"opro\"\nproposal_decoding = { temperature = 2.0, top_p = 1.0 }");
    ok.validate(&cands).unwrap();
    let MethodConfig::Opro(c) = parse("kind = \"opro\"\nproposal_decoding = {}") else {
        unreachable!()
    };
    assert!(c.proposal_decoding.is_provider_default());
}

#[test]
fn each_config_reports_its_decoding_per_stage() {
    assert_eq!(
        parse("kind = \"opro\"").decoding(),
        [(Stage::Edit, Decoding::temperature(1.0))]
    );
    assert_eq!(
        parse("kind = \"protegi\"").decoding(),
        [
            (Stage::Feedback, Decoding::temperature(0.7)),
            (Stage::Edit, Decoding::temperature(0.7))
        ]
    );
    assert_eq!(
        MethodConfig::Opro(OproConfig::one_proposal()).decoding(),
        [(Stage::Edit, Decoding::PROVIDER_DEFAULT)]
    );
    for kind in ["agp", "llm-dir", "rankgpt", "first", "prp-sort"] {
        assert!(parse(&format!("kind = \"{kind}\"")).decoding().is_empty());
    }
    assert_eq!(Decoding::temperature(0.7).describe(), "temperature 0.7");
    assert_eq!(Decoding::PROVIDER_DEFAULT.describe(), "the run's decoding");
}

#[test]
fn departures_name_each_setting_off_the_published_defaults() {
    for kind in [
        "base",
        "llm-dir",
        "llm-cot",
        "agp",
        "rankgpt",
        "prp-sort",
        "prp-allpair",
        "setwise",
        "first",
        "opro",
    ] {
        assert_eq!(
            parse(&format!("kind = \"{kind}\"")).departures(),
            Vec::<String>::new(),
            "{kind}"
        );
    }
    // ProTeGi's beam is selected by scoring, not a bandit, whatever the settings.
    assert_eq!(
        parse("kind = \"protegi\"").departures(),
        [
            "the beam is kept by scoring every prompt on the batch instead of ProTeGi's bandit \
          selection"
        ]
    );
    assert_eq!(
        parse("kind = \"rankgpt\"\nwindow = 4\nstep = 2").departures(),
        ["window 4 / step 2 instead of RankGPT's 20 / 10"]
    );
    assert_eq!(
        parse("kind = \"prp-sort\"\nties = \"backbone\"").departures(),
        [
            "pairs without a preference go to the backbone's earlier item instead of \
          llm-rankers' keeping the heap node"
        ]
    );
    assert_eq!(
        parse("kind = \"first\"\nprefill = \"\"").departures(),
        ["no answer prefill instead of rank_llm's `[`"]
    );
    assert_eq!(
        MethodConfig::Opro(OproConfig::one_proposal()).departures(),
        [
            "1 proposal per step instead of OPRO's 8",
            "proposals at the run's decoding instead of OPRO's temperature 1"
        ]
    );
    let cheap = MethodConfig::Protegi(ProtegiConfig::beam_one()).departures();
    for want in [
        "beam 1 instead of ProTeGi's 4",
        "1 gradient per prompt instead of ProTeGi's 4",
        "no Monte-Carlo paraphrases",
        "gradient calls at the run's decoding instead of ProTeGi's temperature 0.7",
        "edit calls at the run's decoding instead of ProTeGi's temperature 0.7",
    ] {
        assert!(cheap.iter().any(|d| d == want), "{want}: {cheap:?}");
    }
    // The fixture's loop, against the paper's.
    let agp = parse("kind = \"agp\"\nepochs = 2\nbatch_size = 5\nn_train_users = 10\npbf = false");
    assert_eq!(
        agp.departures(),
        [
            "T10 instead of the paper's T100",
            "2 epochs instead of the paper's 10",
            "batches of 5 instead of the paper's 10",
            "no position-based feedback"
        ]
    );
    assert_eq!(
        parse("kind = \"llm-dir\"\nhistory_length = 3").departures(),
        ["history of 3 items instead of the paper's 5"]
    );
}

/// The cheaper rows of `experiments/baselines.toml` set every new setting to what their
/// recordings were asked with, so their requests keep their keys; the published rows are the
/// defaults.
#[test]
fn baselines_rows_are_the_published_defaults_and_the_cheaper_variants() {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments/baselines.toml"),
    )
    .unwrap();
    let exp: toml::Table = toml::from_str(&text).unwrap();
    let rows: BTreeMap<String, MethodConfig> = exp["methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let mut t = m.as_table().unwrap().clone();
            t.remove("only_at");
            let label = t["label"].as_str().unwrap().to_string();
            (label, toml::Value::Table(t).try_into().unwrap())
        })
        .collect();
    let unlabelled = |c: &MethodConfig| {
        let mut v = toml::Value::try_from(c).unwrap();
        v.as_table_mut().unwrap().remove("label");
        v
    };
    let same = |label: &str, want: MethodConfig| {
        assert_eq!(unlabelled(&rows[label]), unlabelled(&want), "{label}");
    };
    same(
        "RankGPT (w20/s10)",
        MethodConfig::RankGpt(RankGptConfig::default()),
    );
    same(
        "RankGPT (w4/s2)",
        MethodConfig::RankGpt(RankGptConfig {
            window: 4,
            step: 2,
            ..RankGptConfig::default()
        }),
    );
    same("OPRO", MethodConfig::Opro(OproConfig::default()));
    same(
        "OPRO (1 proposal)",
        MethodConfig::Opro(OproConfig::one_proposal()),
    );
    same("ProTeGi", MethodConfig::Protegi(ProtegiConfig::default()));
    same(
        "ProTeGi (beam 1)",
        MethodConfig::Protegi(ProtegiConfig::beam_one()),
    );
    same("FIRST", MethodConfig::First(FirstConfig::default()));
    same(
        "FIRST (no prefill)",
        MethodConfig::First(FirstConfig {
            prefill: String::new(),
            ..FirstConfig::default()
        }),
    );
    same("PRP-sort", MethodConfig::PrpSort(PrpConfig::default()));
}
