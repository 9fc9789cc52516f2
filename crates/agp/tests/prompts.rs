//! Every prompt template rendered for a fixture user and locked by an insta snapshot: a changed
//! prompt is a visible diff. Text that an LLM would produce (profiles, feedback) is a bracketed
//! placeholder here, never an invented answer.

mod common;

use agp::prompts::{self, Position};
use agp::reranker::shown_history;

struct User {
    history: String,
    candidates: String,
    texts: Vec<String>,
    k: usize,
    gt_index: usize,
    gt_text: String,
}

fn user(u: u32) -> User {
    let (ds, cands) = common::fixture();
    let hist: Vec<String> = ds
        .history_before_test(u)
        .iter()
        .map(|&i| ds.item_text[i as usize].clone())
        .collect();
    let texts: Vec<String> = cands.lists[u as usize]
        .items
        .iter()
        .map(|&i| ds.item_text[i as usize].clone())
        .collect();
    let gt_index = cands.target_position(u, ds.test[u as usize]).unwrap();
    User {
        history: prompts::history_lines(&shown_history(&hist, 5, 0.0, 0, u)),
        candidates: prompts::candidate_list(&texts),
        k: texts.len(),
        gt_text: texts[gt_index].clone(),
        gt_index,
        texts,
    }
}

const PROFILE: &str = "<profile generated for this user>";

#[test]
fn profile_generation() {
    let u = user(23);
    insta::assert_snapshot!(
        "profile_initial",
        prompts::profile(prompts::INITIAL_PROFILE_PROMPT, &u.history)
    );
    insta::assert_snapshot!(
        "profile_learned",
        prompts::profile("<learned p_gen>", &u.history)
    );
}

#[test]
fn rerank_by_profile() {
    let u = user(23);
    insta::assert_snapshot!(
        "rerank_by_profile",
        prompts::rerank_by_profile(PROFILE, &u.candidates, u.k)
    );
}

#[test]
fn profile_feedback() {
    let u = user(23);
    let pos = Position {
        actual: 7,
        target: 1,
    };
    insta::assert_snapshot!(
        "profile_feedback_pbf",
        prompts::profile_feedback(
            &u.gt_text,
            &u.candidates,
            PROFILE,
            "<learned p_gen>",
            Some(pos)
        )
    );
    insta::assert_snapshot!(
        "profile_feedback_reference",
        prompts::profile_feedback(&u.gt_text, &u.candidates, PROFILE, "<rerank prompt>", None)
    );
}

#[test]
fn summarize_and_edit() {
    let losses = vec![
        (0, "<feedback for user 0>".to_string()),
        (3, "<feedback for user 3>".to_string()),
    ];
    insta::assert_snapshot!("summarize", prompts::summarize(&losses));
    insta::assert_snapshot!(
        "edit_pbf",
        prompts::edit(
            "<learned p_gen>",
            2,
            10,
            Some(3.4),
            "<summarized instruction>"
        )
    );
    insta::assert_snapshot!(
        "edit_no_pbf",
        prompts::edit("", 2, 10, None, &prompts::failed_cases(&losses))
    );
}

/// LLM-Dir with the reference code's output constraint (`output_constraint = "reference"`);
/// the default rendering is `llm_dir`, unchanged.
#[test]
fn llm_dir_reference_constraint() {
    let u = user(23);
    assert_eq!(
        prompts::rerank_direct_with(
            &u.history,
            &u.candidates,
            u.k,
            prompts::OutputConstraint::Agp
        ),
        prompts::rerank_direct(&u.history, &u.candidates, u.k)
    );
    insta::assert_snapshot!(
        "llm_dir_reference",
        prompts::rerank_direct_with(
            &u.history,
            &u.candidates,
            u.k,
            prompts::OutputConstraint::Reference
        )
    );
}

#[test]
fn baselines() {
    let u = user(23);
    insta::assert_snapshot!(
        "llm_dir",
        prompts::rerank_direct(&u.history, &u.candidates, u.k)
    );
    insta::assert_snapshot!(
        "llm_cot",
        prompts::rerank_cot(&u.history, &u.candidates, u.k)
    );
    insta::assert_snapshot!(
        "rerank_learned_initial",
        prompts::rerank_learned(
            prompts::INITIAL_RERANK_PROMPT,
            &u.history,
            &u.candidates,
            u.k
        )
    );
    insta::assert_snapshot!(
        "rerank_feedback",
        prompts::rerank_feedback(
            &[9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
            u.gt_index,
            &u.gt_text,
            &u.candidates,
            &u.history
        )
    );
}

#[test]
fn pointwise() {
    let u = user(23);
    insta::assert_snapshot!(
        "pointwise_history",
        format!(
            "{}{}",
            prompts::pointwise_prefix_history(&u.history),
            prompts::pointwise_suffix(&u.gt_text)
        )
    );
    insta::assert_snapshot!(
        "pointwise_profile",
        format!(
            "{}{}",
            prompts::pointwise_prefix_profile(PROFILE),
            prompts::pointwise_suffix(&u.gt_text)
        )
    );
}

/// RankGPT's first window (the last four candidates), a PRP pair and a Setwise set (a heap
/// node and its three children), each numbered within the prompt, and FIRST's whole list.
#[test]
fn rankers() {
    let u = user(23);
    let some = |idx: &[usize]| {
        let texts: Vec<&str> = idx.iter().map(|&i| u.texts[i].as_str()).collect();
        prompts::candidate_list(&texts)
    };
    insta::assert_snapshot!(
        "rankgpt_window",
        prompts::rankgpt_window(&u.history, &some(&[6, 7, 8, 9]), 4)
    );
    insta::assert_snapshot!("prp_pair", prompts::prp_pair(&u.history, &some(&[3, 7])));
    insta::assert_snapshot!(
        "setwise_choose",
        prompts::setwise_choose(&u.history, &some(&[2, 7, 8, 9]), 4)
    );
    insta::assert_snapshot!(
        "first_listwise",
        prompts::first_listwise(&u.history, &u.candidates, u.k)
    );
    insta::assert_snapshot!(
        "first_listwise_bracketed",
        prompts::first_listwise_bracketed(&u.history, &u.candidates, u.k)
    );
}

/// OPRO's meta-prompt (two scored prompts, best last, and an example user) and ProTeGi's
/// gradient and edit prompts (one error, one and two edits asked) and its paraphrase.
#[test]
fn prompt_optimizers() {
    let u = user(23);
    let scored = [("", 0.2531), ("<learned p_gen>", 0.41)];
    let example = prompts::opro_example(1, &u.history, &u.gt_text);
    insta::assert_snapshot!(
        "opro_meta",
        prompts::opro_meta(&scored, std::slice::from_ref(&example))
    );
    insta::assert_snapshot!("opro_meta_no_examples", prompts::opro_meta(&scored, &[]));
    let top = [
        u.texts[9].as_str(),
        u.texts[8].as_str(),
        u.texts[7].as_str(),
    ];
    let errors = [prompts::protegi_error(
        1, &u.history, PROFILE, &top, 3, &u.gt_text,
    )];
    insta::assert_snapshot!(
        "protegi_gradient",
        prompts::protegi_gradient("<learned p_gen>", &errors, 3)
    );
    insta::assert_snapshot!(
        "protegi_edit",
        prompts::protegi_edit("<learned p_gen>", &errors, 3, "<gradient>", 1)
    );
    let unread: [&str; 0] = [];
    let unreadable = prompts::protegi_error(2, &u.history, PROFILE, &unread, 3, &u.gt_text);
    insta::assert_snapshot!(
        "protegi_edit_two",
        prompts::protegi_edit("", &[unreadable], 3, "<gradient>", 2)
    );
    insta::assert_snapshot!(
        "protegi_paraphrase",
        prompts::protegi_paraphrase("<learned p_gen>")
    );
    insta::assert_snapshot!("protegi_paraphrase_empty", prompts::protegi_paraphrase(""));
}

/// Random search's proposal: the drawn change applied to the current prompt (an empty one shows
/// as `(empty)`).
#[test]
fn random_search_edit() {
    insta::assert_snapshot!(
        "random_edit",
        prompts::random_edit("<learned p_gen>", prompts::RANDOM_EDITS[1])
    );
    insta::assert_snapshot!(
        "random_edit_empty",
        prompts::random_edit("", prompts::RANDOM_EDITS[0])
    );
}

#[test]
fn system_message() {
    insta::assert_snapshot!("system", prompts::SYSTEM);
}
