//! The reference-code options of the parser (`duplicate_ids`, `unmarked_answers`), of LLM-Dir's
//! prompt (`output_constraint`) and of the edit extraction (`edit_extraction`): how each is
//! spelled in a method row, that its default keeps today's behaviour and echo, what
//! `reference_code()` sets, and both behaviours of each, in the parser and in a run.

mod common;

use std::sync::{Arc, Mutex};

use agp::methods::agp::extract_edit;
use agp::metrics::score_ordering;
use agp::{
    AgpConfig, DuplicatePolicy, EditExtraction, FeedbackListOrder, FeedbackPromptSource,
    ListwiseConfig, MethodConfig, MethodRun, MissingPolicy, OutputConstraint, ParseOptions,
    ParseOutcome, RunOptions, Stage, UnmarkedAnswers, UnparseableRule, parse_rerank, run_method,
};
use agp_llm::{
    ChatModel, ChatRequest, ChatResponse, LlmError, ModelInfo, ScoreRequest, ScoreResponse,
};
use async_trait::async_trait;
use common::{FakeModel, K};

fn parse(text: &str) -> MethodConfig {
    toml::from_str(text).unwrap()
}

fn round_trips(cfg: &MethodConfig) {
    let echo = toml::to_string(cfg).unwrap();
    assert_eq!(&parse(&echo), cfg, "{echo}");
}

// ---------------------------------------------------------------------------------------------
// Config: spellings, defaults, reference_code(), validation.

#[test]
fn option_spellings_in_a_method_row() {
    let cfg = parse(
        r#"
kind = "llm-dir"
duplicate_ids = "keep-as-reference"
unmarked_answers = "skip-enumerations"
output_constraint = "reference"
"#,
    );
    let MethodConfig::LlmDir(c) = &cfg else {
        panic!("not llm-dir")
    };
    assert_eq!(c.duplicate_ids, DuplicatePolicy::KeepAsReference);
    assert_eq!(c.unmarked_answers, UnmarkedAnswers::SkipEnumerations);
    assert_eq!(c.output_constraint, OutputConstraint::Reference);
    round_trips(&cfg);

    let cfg = parse("kind = \"llm-cot\"\nunmarked_answers = \"require-markers\"");
    let MethodConfig::LlmCot(c) = &cfg else {
        panic!("not llm-cot")
    };
    assert_eq!(c.unmarked_answers, UnmarkedAnswers::RequireMarkers);
    round_trips(&cfg);

    for kind in ["agp", "agp-pointwise", "rerank-opt"] {
        let cfg = parse(&format!(
            r#"
kind = "{kind}"
edit_extraction = "after_bos"
duplicate_ids = "keep-as-reference"
unmarked_answers = "require-markers"
"#
        ));
        let (MethodConfig::Agp(c) | MethodConfig::AgpPointwise(c) | MethodConfig::RerankOpt(c)) =
            &cfg
        else {
            panic!("not a prompt optimizer")
        };
        assert_eq!(c.edit_extraction, EditExtraction::AfterBos);
        assert_eq!(c.duplicate_ids, DuplicatePolicy::KeepAsReference);
        assert_eq!(c.unmarked_answers, UnmarkedAnswers::RequireMarkers);
        round_trips(&cfg);
    }

    // The default values spelled out are the defaults.
    let explicit = parse(
        r#"
kind = "agp"
edit_extraction = "both_markers"
duplicate_ids = "dedup"
unmarked_answers = "first-list"
"#,
    );
    assert_eq!(explicit, MethodConfig::Agp(AgpConfig::default()));
    let explicit = parse("kind = \"llm-dir\"\noutput_constraint = \"agp\"");
    assert_eq!(explicit, MethodConfig::LlmDir(ListwiseConfig::default()));
}

#[test]
fn defaults_keep_todays_behaviour_and_echo() {
    let l = ListwiseConfig::default();
    assert_eq!(l.duplicate_ids, DuplicatePolicy::Dedup);
    assert_eq!(l.unmarked_answers, UnmarkedAnswers::FirstList);
    assert_eq!(l.output_constraint, OutputConstraint::Agp);
    assert_eq!(l.parse_options(), ParseOptions::default());
    let a = AgpConfig::default();
    assert_eq!(a.edit_extraction, EditExtraction::BothMarkers);
    assert_eq!(a.duplicate_ids, DuplicatePolicy::Dedup);
    assert_eq!(a.unmarked_answers, UnmarkedAnswers::FirstList);
    assert_eq!(a.parse_options(), ParseOptions::default());

    // A config that does not set the new options echoes (and so checkpoints) as before.
    let new_keys = [
        "duplicate_ids",
        "unmarked_answers",
        "output_constraint",
        "edit_extraction",
    ];
    for cfg in [
        MethodConfig::Agp(AgpConfig::default()),
        MethodConfig::LlmDir(ListwiseConfig::default()),
        MethodConfig::LlmCot(ListwiseConfig::default()),
    ] {
        let echo = serde_json::to_value(&cfg).unwrap();
        for key in new_keys {
            assert!(echo.get(key).is_none(), "{key} in {echo}");
        }
    }
    // Set, they are echoed.
    let echo = serde_json::to_value(MethodConfig::Agp(AgpConfig::reference_code())).unwrap();
    assert_eq!(echo["edit_extraction"], "after_bos");
    assert_eq!(echo["duplicate_ids"], "keep-as-reference");
    let echo =
        serde_json::to_value(MethodConfig::LlmDir(ListwiseConfig::reference_code())).unwrap();
    assert_eq!(echo["output_constraint"], "reference");
}

#[test]
fn reference_code_turns_on_every_known_reference_behaviour() {
    let a = AgpConfig::reference_code();
    assert_eq!(
        a,
        AgpConfig {
            feedback_prompt_source: FeedbackPromptSource::RerankPrompt,
            feedback_list_order: FeedbackListOrder::Backbone,
            reference_feedback_text: true,
            edit_extraction: EditExtraction::AfterBos,
            duplicate_ids: DuplicatePolicy::KeepAsReference,
            ..AgpConfig::default()
        }
    );
    // Unknown in the reference (its `find_first_list` is missing): left at today's reading.
    assert_eq!(a.unmarked_answers, UnmarkedAnswers::FirstList);
    assert_eq!(a.missing_ids, MissingPolicy::Reference);
    let l = ListwiseConfig::reference_code();
    assert_eq!(
        l,
        ListwiseConfig {
            duplicate_ids: DuplicatePolicy::KeepAsReference,
            output_constraint: OutputConstraint::Reference,
            ..ListwiseConfig::default()
        }
    );
    let (_, cands) = common::fixture();
    MethodConfig::Agp(a).validate(&cands).unwrap();
    MethodConfig::LlmDir(l.clone()).validate(&cands).unwrap();
    MethodConfig::LlmCot(l).validate(&cands).unwrap();
}

#[test]
fn unknown_values_are_rejected_with_the_choices() {
    for (row, expected) in [
        (
            "kind = \"llm-dir\"\nduplicate_ids = \"keep\"",
            "keep-as-reference",
        ),
        (
            "kind = \"llm-cot\"\nunmarked_answers = \"markers\"",
            "require-markers",
        ),
        (
            "kind = \"llm-dir\"\noutput_constraint = \"paper\"",
            "reference",
        ),
        (
            "kind = \"agp\"\nedit_extraction = \"after-bos\"",
            "after_bos",
        ),
        // Not a setting of the pointwise baseline.
        (
            "kind = \"llm-dir-pointwise\"\nduplicate_ids = \"dedup\"",
            "duplicate_ids",
        ),
    ] {
        let e = toml::from_str::<MethodConfig>(row).unwrap_err().to_string();
        assert!(e.contains(expected), "{row}: {e}");
    }
}

#[test]
fn keep_as_reference_cannot_complete_with_base() {
    let (_, cands) = common::fixture();
    for kind in ["llm-dir", "llm-cot", "agp", "rerank-opt"] {
        let cfg = parse(&format!(
            "kind = \"{kind}\"\nduplicate_ids = \"keep-as-reference\"\n\
             missing_ids = \"complete-with-base\""
        ));
        let e = cfg.validate(&cands).unwrap_err().to_string();
        assert!(
            e.contains("`duplicate_ids`") && e.contains("complete-with-base"),
            "{kind}: {e}"
        );
        // Each alone is fine.
        parse(&format!(
            "kind = \"{kind}\"\nduplicate_ids = \"keep-as-reference\""
        ))
        .validate(&cands)
        .unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// The parser under every policy, locked by snapshots.

const COT_NO_MARKERS: &str = "1. Identify the user's preferences: Sci-Fi and Drama.\n\
2. Compare them with the candidates.\n\
3. Rank accordingly.\n\
Final ranking: 3, 1, 0, 4, 2";

/// Omits the ground truth (0) and candidate 2, and repeats 3.
const OMITS_GT: &str = "|beginoftext|3, 3, 1, 4|endoftext|";

fn name(v: impl serde::Serialize) -> String {
    serde_json::to_value(v)
        .unwrap()
        .as_str()
        .unwrap()
        .to_string()
}

/// One row per parser policy combination a config accepts: the ordering, its outcome, and the
/// ground truth's rank and NDCG@10 under both unparseable rules.
fn policy_table(answer: &str, k: usize, gt: usize) -> String {
    let mut rows = vec![format!(
        "answer: {answer:?}\nK = {k}, ground truth = {gt}\n\n\
         {:<18} {:<17} {:<17} | {:<22} | {:<11} | rank | ndcg zero | ndcg deepseek",
        "missing_ids", "duplicate_ids", "unmarked_answers", "order", "outcome"
    )];
    for missing_ids in [MissingPolicy::Reference, MissingPolicy::CompleteWithBase] {
        for duplicate_ids in [DuplicatePolicy::Dedup, DuplicatePolicy::KeepAsReference] {
            if duplicate_ids == DuplicatePolicy::KeepAsReference
                && missing_ids == MissingPolicy::CompleteWithBase
            {
                // Rejected by config validation.
                continue;
            }
            for unmarked_answers in [
                UnmarkedAnswers::FirstList,
                UnmarkedAnswers::RequireMarkers,
                UnmarkedAnswers::SkipEnumerations,
            ] {
                let opts = ParseOptions {
                    missing_ids,
                    duplicate_ids,
                    unmarked_answers,
                };
                let p = parse_rerank(answer, k, opts);
                let zero = score_ordering(0, &p.order, gt, k, p.outcome, UnparseableRule::Zero);
                let ds = score_ordering(0, &p.order, gt, k, p.outcome, UnparseableRule::Deepseek);
                assert_eq!(zero.rank, ds.rank);
                rows.push(format!(
                    "{:<18} {:<17} {:<17} | {:<22} | {:<11} | {:>4} | {:>9.4} | {:>13.4}",
                    name(missing_ids),
                    name(duplicate_ids),
                    name(unmarked_answers),
                    format!("{:?}", p.order),
                    name(p.outcome),
                    zero.rank,
                    zero.ndcg,
                    ds.ndcg
                ));
            }
        }
    }
    rows.join("\n")
}

#[test]
fn no_markers_answer_under_every_policy() {
    insta::assert_snapshot!("no_markers_answer", policy_table(COT_NO_MARKERS, 5, 0));
}

#[test]
fn answer_omitting_the_ground_truth_under_every_policy() {
    insta::assert_snapshot!("answer_omitting_ground_truth", policy_table(OMITS_GT, 5, 0));
}

// ---------------------------------------------------------------------------------------------
// Edit extraction.

#[test]
fn edit_extraction_both_rules() {
    let both = |a: &str| extract_edit(a, EditExtraction::BothMarkers);
    let after = |a: &str| extract_edit(a, EditExtraction::AfterBos);

    // Both markers: the same prompt under either rule.
    let closed = "Sure. |beginoftext| New prompt. |endoftext| Bye.";
    assert_eq!(both(closed), after(closed));
    assert_eq!(both(closed).prompt, "New prompt.");
    assert!(both(closed).markers_found);

    // Cut off before the end marker: today the whole answer, the reference the text after BOS.
    let cut = "Sure. |beginoftext| New prompt, cut";
    assert_eq!(both(cut).prompt, cut);
    assert!(!both(cut).markers_found);
    assert_eq!(after(cut).prompt, "New prompt, cut");
    assert!(after(cut).markers_found);

    // No start marker: both use the whole answer; the reference does not strip it.
    let bare = "  New prompt. |endoftext|\n";
    assert_eq!(both(bare).prompt, "New prompt. |endoftext|");
    assert_eq!(after(bare).prompt, bare);
    assert!(!both(bare).markers_found && !after(bare).markers_found);
}

// ---------------------------------------------------------------------------------------------
// In a run.

/// The shared fake, with the rerank answers (any prompt listing candidates) and/or the edit
/// answer replaced by a fixed text. Records every chat prompt with its stage.
struct Scripted {
    inner: FakeModel,
    rerank: Option<&'static str>,
    edit: Option<&'static str>,
    prompts: Mutex<Vec<(Option<Stage>, String)>>,
}

impl Scripted {
    fn new(rerank: Option<&'static str>, edit: Option<&'static str>) -> Arc<Self> {
        Arc::new(Self {
            inner: FakeModel::default(),
            rerank,
            edit,
            prompts: Mutex::default(),
        })
    }

    fn sent(&self, stage: Stage) -> Vec<String> {
        let sent = self.prompts.lock().unwrap();
        sent.iter()
            .filter(|(s, _)| *s == Some(stage))
            .map(|(_, p)| p.clone())
            .collect()
    }
}

#[async_trait]
impl ChatModel for Scripted {
    fn info(&self) -> ModelInfo {
        self.inner.info()
    }

    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, LlmError> {
        let prompt = &req.messages.last().expect("a user message").content;
        self.prompts
            .lock()
            .unwrap()
            .push((common::stage_of(req.account), prompt.clone()));
        let fixed = if prompt.starts_with("[Instruction]\nThe previous prompt had an error rate") {
            self.edit
        } else if prompt.contains("[Pretrained Item Profile List") {
            self.rerank
        } else {
            None
        };
        let mut resp = self.inner.chat(req).await?;
        if let Some(text) = fixed {
            resp.content = text.to_string();
        }
        Ok(resp)
    }

    async fn score(&self, req: &ScoreRequest) -> Result<ScoreResponse, LlmError> {
        self.inner.score(req).await
    }
}

async fn run(cfg: MethodConfig, model: Arc<Scripted>) -> MethodRun {
    let (ds, cands) = common::fixture();
    run_method(&cfg, &ds, &cands, model, &RunOptions::default())
        .await
        .unwrap()
}

/// (ground-truth index, rank, outcome) of every test user; the fixture puts user u's ground
/// truth at index u % K.
fn ranks(run: &MethodRun) -> Vec<(usize, usize, ParseOutcome)> {
    run.last
        .users
        .iter()
        .map(|r| (r.user as usize % K, r.rank, r.parse))
        .collect()
}

#[tokio::test]
async fn llm_dir_output_constraint_in_the_prompt() {
    const AGP: &str = "with the predicted target item id as the first integer.";
    const REFERENCE: &str = "of length 10. The first integer in the list represents the \
                             highest-ranked item. The output MUST start with |beginoftext| and \
                             end with |endoftext|.";
    let dir = |output_constraint| {
        MethodConfig::LlmDir(ListwiseConfig {
            output_constraint,
            ..ListwiseConfig::default()
        })
    };
    let m = Scripted::new(None, None);
    run(dir(OutputConstraint::Agp), m.clone()).await;
    let today = m.sent(Stage::Test);
    assert!(!today.is_empty());
    assert!(
        today
            .iter()
            .all(|p| p.contains(AGP) && !p.contains("highest-ranked"))
    );

    let m = Scripted::new(None, None);
    run(dir(OutputConstraint::Reference), m.clone()).await;
    let reference = m.sent(Stage::Test);
    assert_eq!(reference.len(), today.len());
    for (r, t) in reference.iter().zip(&today) {
        assert!(r.contains(REFERENCE) && !r.contains(AGP), "{r}");
        // Only the constraint differs.
        assert_eq!(
            r.replace(
                &agp::prompts::output_constraint_reference(K),
                &agp::prompts::output_constraint(K)
            ),
            *t
        );
    }

    // LLM-CoT's prompt already carries the reference's sentence: the option does not touch it.
    let cot = |output_constraint| {
        MethodConfig::LlmCot(ListwiseConfig {
            output_constraint,
            ..ListwiseConfig::default()
        })
    };
    let (a, b) = (Scripted::new(None, None), Scripted::new(None, None));
    run(cot(OutputConstraint::Agp), a.clone()).await;
    run(cot(OutputConstraint::Reference), b.clone()).await;
    assert_eq!(a.sent(Stage::Test), b.sent(Stage::Test));
}

#[tokio::test]
async fn duplicate_ids_in_a_run() {
    // Candidate 9 twice, then 0..8.
    let answer = "|beginoftext|9, 9, 0, 1, 2, 3, 4, 5, 6, 7, 8|endoftext|";
    let dir = |duplicate_ids| {
        MethodConfig::LlmDir(ListwiseConfig {
            duplicate_ids,
            ..ListwiseConfig::default()
        })
    };
    let dedup = run(
        dir(DuplicatePolicy::Dedup),
        Scripted::new(Some(answer), None),
    )
    .await;
    let keep = run(
        dir(DuplicatePolicy::KeepAsReference),
        Scripted::new(Some(answer), None),
    )
    .await;
    let (dedup, keep) = (ranks(&dedup), ranks(&keep));
    assert!(!dedup.is_empty());
    for ((gt, d, outcome), (_, r, _)) in dedup.iter().zip(&keep) {
        assert_eq!(*outcome, ParseOutcome::Partial);
        let (want_d, want_r) = if *gt == 9 { (1, 1) } else { (gt + 2, gt + 3) };
        assert_eq!((*d, *r), (want_d, want_r), "ground truth {gt}");
    }
}

#[tokio::test]
async fn unmarked_cot_answer_in_a_run() {
    let answer = "1. Identify the user's preferences.\n2. Compare them with the items.\n\
                  Final ranking: 9, 8, 7, 6, 5, 4, 3, 2, 1, 0";
    let cot = |unmarked_answers| {
        MethodConfig::LlmCot(ListwiseConfig {
            unmarked_answers,
            ..ListwiseConfig::default()
        })
    };
    let read = |u| async move { ranks(&run(cot(u), Scripted::new(Some(answer), None)).await) };
    for (gt, rank, outcome) in read(UnmarkedAnswers::FirstList).await {
        // Read as the list [1].
        assert_eq!(rank, if gt == 1 { 1 } else { K });
        assert_eq!(outcome, ParseOutcome::Partial);
    }
    for (_, rank, outcome) in read(UnmarkedAnswers::RequireMarkers).await {
        assert_eq!((rank, outcome), (K, ParseOutcome::Unparseable));
    }
    for (gt, rank, outcome) in read(UnmarkedAnswers::SkipEnumerations).await {
        assert_eq!((rank, outcome), (K - gt, ParseOutcome::NoMarkers));
    }
}

#[tokio::test]
async fn edit_extraction_in_a_run() {
    // The edit answer is cut off before its end marker.
    let cut = "Here you go: |beginoftext|List the user's favourite genre first.";
    let agp = |edit_extraction| {
        MethodConfig::Agp(AgpConfig {
            epochs: 1,
            batch_size: 5,
            n_train_users: Some(10),
            edit_extraction,
            ..AgpConfig::default()
        })
    };
    // The fake reranks well once the profile mentions "genre", so the first edit is accepted
    // under either rule; what differs is the prompt kept.
    let m = Scripted::new(None, Some(cut));
    let today = run(agp(EditExtraction::BothMarkers), m.clone()).await;
    assert_eq!(today.final_prompt.as_deref(), Some(cut));
    let m = Scripted::new(None, Some(cut));
    let reference = run(agp(EditExtraction::AfterBos), m.clone()).await;
    assert_eq!(
        reference.final_prompt.as_deref(),
        Some("List the user's favourite genre first.")
    );
    // The learned prompt is what the test users' profile prompts carry.
    let profiles: Vec<String> = m
        .sent(Stage::Test)
        .into_iter()
        .filter(|p| p.starts_with("[Task]\nYour goal is to build"))
        .collect();
    assert!(!profiles.is_empty());
    assert!(
        profiles
            .iter()
            .all(|p| p.contains("[Instructions]\nList the user's favourite genre first.\n"))
    );
}

#[tokio::test]
async fn prompt_optimizers_parse_with_their_options() {
    // Every rerank answer (training, verify, test) names candidate 9 twice, then 0..8.
    let answer = "|beginoftext|9, 9, 0, 1, 2, 3, 4, 5, 6, 7, 8|endoftext|";
    for kind in ["agp", "rerank-opt"] {
        let cfg = |dup: &str| {
            parse(&format!(
                "kind = \"{kind}\"\nepochs = 1\nbatch_size = 5\nn_train_users = 5\n\
                 duplicate_ids = \"{dup}\""
            ))
        };
        let dedup = ranks(&run(cfg("dedup"), Scripted::new(Some(answer), None)).await);
        let keep = ranks(&run(cfg("keep-as-reference"), Scripted::new(Some(answer), None)).await);
        assert!(!dedup.is_empty());
        for ((gt, d, _), (_, r, _)) in dedup.iter().zip(&keep) {
            let want = if *gt == 9 { (1, 1) } else { (gt + 2, gt + 3) };
            assert_eq!((*d, *r), want, "{kind}, ground truth {gt}");
        }
    }
    // And the unmarked-answer rule: a bare numbered answer is unparseable under
    // `require-markers`.
    let bare = "1. Think.\n2. Rank: 9, 8, 7, 6, 5, 4, 3, 2, 1, 0";
    let cfg = parse(
        "kind = \"agp\"\nepochs = 1\nbatch_size = 5\nn_train_users = 5\n\
         unmarked_answers = \"require-markers\"",
    );
    for (_, rank, outcome) in ranks(&run(cfg, Scripted::new(Some(bare), None)).await) {
        assert_eq!((rank, outcome), (K, ParseOutcome::Unparseable));
    }
}

mod props {
    use super::*;
    use proptest::prelude::*;

    fn answer() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            any::<String>(),
            "[0-9]{1,3}",
            Just(", ".to_string()),
            Just("|beginoftext|".to_string()),
            Just("|endoftext|".to_string()),
            Just("\n1. ".to_string()),
            Just("2) ".to_string()),
            "[ \\n\\t;.)*#-]{0,3}",
        ];
        prop::collection::vec(piece, 0..30).prop_map(|v| v.concat())
    }

    fn options() -> impl Strategy<Value = ParseOptions> {
        (
            prop_oneof![
                Just(DuplicatePolicy::Dedup),
                Just(DuplicatePolicy::KeepAsReference)
            ],
            prop_oneof![
                Just(UnmarkedAnswers::FirstList),
                Just(UnmarkedAnswers::RequireMarkers),
                Just(UnmarkedAnswers::SkipEnumerations),
            ],
        )
            .prop_map(|(duplicate_ids, unmarked_answers)| ParseOptions {
                missing_ids: MissingPolicy::Reference,
                duplicate_ids,
                unmarked_answers,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        /// Every entry indexes a candidate; keeping repeats only adds repeats to what dedup
        /// reads; an empty ordering is exactly the unparseable outcome.
        #[test]
        fn keep_as_reference_is_dedup_plus_repeats(
            text in answer(),
            k in 0usize..12,
            opts in options(),
        ) {
            let p = parse_rerank(&text, k, opts);
            prop_assert!(p.order.iter().all(|&i| i < k));
            prop_assert_eq!(p.order.is_empty(), p.outcome == ParseOutcome::Unparseable);
            let dedup = parse_rerank(&text, k, ParseOptions {
                duplicate_ids: DuplicatePolicy::Dedup,
                ..opts
            });
            let mut seen = vec![false; k];
            let firsts: Vec<usize> = p.order.iter().copied().filter(|&i| !std::mem::replace(&mut seen[i], true)).collect();
            prop_assert_eq!(firsts, dedup.order);
        }

        /// `require-markers` reads a list only where today's parser read it between markers.
        #[test]
        fn require_markers_is_today_or_nothing(text in answer(), k in 1usize..12) {
            let strict = parse_rerank(&text, k, ParseOptions {
                unmarked_answers: UnmarkedAnswers::RequireMarkers,
                ..ParseOptions::default()
            });
            let today = parse_rerank(&text, k, MissingPolicy::Reference);
            prop_assert!(strict.outcome == ParseOutcome::Unparseable || strict == today);
        }
    }
}
