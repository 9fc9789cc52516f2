//! Every prompt the crate sends, in one place (close paraphrases of the reference code's
//! `prompts/prompt_bank.py`; section tags and output-format constraints kept exactly because
//! they carry meaning). Each template is locked by an insta snapshot in `tests/prompts.rs`, so
//! a changed prompt shows up as a visible diff.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::parse::{BOS, EOS};

/// The system message of every chat call (the reference code sends it for every task).
pub const SYSTEM: &str =
    "You are a reranking system to reranking items according user preferences from high to low.";

/// The reference code's initial profile-generation prompt `p_gen`: empty.
pub const INITIAL_PROFILE_PROMPT: &str = "";

/// The reference code's initial learnable rerank instruction (`generate_user_profile=0`,
/// `cot=0`), used by direct rerank-prompt optimization.
pub const INITIAL_RERANK_PROMPT: &str = "First priority: the user's favourite movie genres.\n\
Second priority: the user's favourite movie years.\n\
Third priority: the user's favourite directors and actors.";

/// The section tags the prompts below open their sections with (`[Task]` on a line of its
/// own). [`neutralise_item_text`] defangs them at the start of an item text in any letter case;
/// `tests/prompt_injection.rs` checks the list against every rendered prompt.
pub const SECTION_TAGS: &[&str] = &[
    "Task",
    "Instruction",
    "Instructions",
    "Historical Item Profiles",
    "User Profile",
    "Pretrained Item Profile List in format of <item id: item profile>",
    "Ground-truth Item Position",
    "Ground-truth Item Profile",
    "Current Reranked Item Profile List",
    "Generated User Profile",
    "Current User Generation Prompt",
    "Expected Output",
    "Generalized Instruction",
    "Failed Cases",
    "Previous Rerank Prompt",
    "Actionable Instructions for Optimization",
    "Update Strength",
    "User Historical Item Profiles",
    "Step-by-Step Rationale",
    "Predicted Item List",
    "Ground-truth Item Id",
    "All Item Profiles in format of <item id: item profile>",
    "Candidate Item",
    "Previous Instructions and Scores",
    "Example Users",
    "Reasons the Prompt Failed",
];

/// The placeholder `methods::agp` renders pointwise templates with; [`pointwise_suffix`] leaves
/// it as it is, since it is template text and not an item's.
pub const CANDIDATE_PLACEHOLDER: &str = "<candidate>";

/// An item text made safe to embed in a prompt. Item text comes from dataset dumps, so a title
/// may carry the prompts' own syntax and forge parts of a prompt or of the expected answer:
///
/// - the answer markers `|beginoftext|` / `|endoftext|` (any letter case) become
///   `¦beginoftext¦` / `¦endoftext¦`, so an echoed title cannot be parsed as the answer;
/// - `<` and `>` become `‹` and `›`, so a title cannot close its `<idx: text>` candidate line
///   and open a forged one;
/// - line breaks become spaces, so a title stays on its own line and cannot start a section;
/// - a leading `[Tag]` becomes `(Tag)` when it could pass for a section tag: one of
///   [`SECTION_TAGS`] in any case, or any tag with a lower-case letter (the prompts' tags are
///   Title Case). All-capital tags stay: the history's `[MASK]` placeholder is one, and so is
///   the real title `[REC] (2007)` of the bundled MovieLens data.
///
/// Text with none of these comes back unchanged (borrowed); that holds for every title of the
/// bundled MovieLens data, whose exact prompts key the committed LLM recordings.
pub fn neutralise_item_text(text: &str) -> Cow<'_, str> {
    let needs_work = text.contains(['<', '>', '|'])
        || text.contains(is_line_break)
        || leading_section_tag(text).is_some();
    if !needs_work {
        return Cow::Borrowed(text);
    }
    let mut out: String = text
        .chars()
        .map(|c| match c {
            '<' => '‹',
            '>' => '›',
            c if is_line_break(c) => ' ',
            c => c,
        })
        .collect();
    if out.contains('|') {
        out = defang_markers(&out);
    }
    let mut rest = 0;
    while let Some((open, close)) = leading_section_tag(&out[rest..]) {
        let (open, close) = (rest + open, rest + close);
        out.replace_range(close..close + 1, ")");
        out.replace_range(open..open + 1, "(");
        rest = close + 1;
    }
    if out == text {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(out)
    }
}

fn is_line_break(c: char) -> bool {
    matches!(
        c,
        '\n' | '\r' | '\u{0B}' | '\u{0C}' | '\u{85}' | '\u{2028}' | '\u{2029}'
    )
}

/// Rewrites every `|beginoftext|` / `|endoftext|` (ASCII case-insensitive) with `¦` for its
/// pipes, in one left-to-right pass. Overlapping markers share a pipe (`|endoftext|beginoftext|`):
/// defanging the first removes the second's opening pipe, and since pipes are only ever
/// removed, the result holds no marker.
fn defang_markers(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    let mut rest = text;
    while let Some(i) = rest.find('|') {
        let (before, from) = rest.split_at(i);
        out.push_str(before);
        let marker = [BOS, EOS].into_iter().find(|m| {
            from.as_bytes()
                .get(..m.len())
                .is_some_and(|b| b.eq_ignore_ascii_case(m.as_bytes()))
        });
        match marker {
            // The matched bytes are ASCII, so these slices fall on char boundaries.
            Some(m) => {
                out.push('¦');
                out.push_str(&from[1..m.len() - 1]);
                out.push('¦');
                rest = &from[m.len()..];
            }
            None => {
                out.push('|');
                rest = &from[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Byte offsets of `[` and `]` of a tag at the start of `text` (after blanks and invisible
/// characters a model would skip) that could pass for a section tag; see
/// [`neutralise_item_text`].
fn leading_section_tag(text: &str) -> Option<(usize, usize)> {
    let invisible = |c: char| {
        c.is_whitespace() || matches!(c, '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}')
    };
    let open = text.len() - text.trim_start_matches(invisible).len();
    let inner = text[open..].strip_prefix('[')?;
    let len = inner.find([']', '['])?;
    if inner.as_bytes()[len] != b']' {
        return None;
    }
    let tag = &inner[..len];
    let words = tag.split_whitespace().collect::<Vec<_>>().join(" ");
    let section = SECTION_TAGS.iter().any(|t| t.eq_ignore_ascii_case(&words))
        || tag.chars().any(|c| c.is_lowercase());
    section.then_some((open, open + 1 + len))
}

/// One candidate line, `<idx: text>`, with the text neutralised.
pub fn candidate_line(idx: usize, text: &str) -> String {
    format!("<{idx}: {}>", neutralise_item_text(text))
}

/// Candidates as the reranker sees them: `<idx: text>` lines, idx = 0..K-1 in backbone order.
pub fn candidate_list(texts: &[impl AsRef<str>]) -> String {
    texts
        .iter()
        .enumerate()
        .map(|(i, t)| candidate_line(i, t.as_ref()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// History item texts, one per line (the caller has already cut it to the last L items),
/// each neutralised.
pub fn history_lines(texts: &[impl AsRef<str>]) -> String {
    texts
        .iter()
        .map(|t| neutralise_item_text(t.as_ref()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The output-format sentence of LLM-Dir's prompt.
///
/// The default, [`OutputConstraint::Agp`], is the sentence of AGP's own rerank prompt (§7.2),
/// so that LLM-Dir and AGP's rerank step ask for their list in the same words and differ only
/// in what they rank from (history vs profile); it is also what every committed LLM-Dir
/// recording was asked. The reference code's `rerank_directly_prompt` instead says that the
/// first integer is the highest-ranked item ([`OutputConstraint::Reference`]), as its CoT
/// prompt does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutputConstraint {
    /// "… with the predicted target item id as the first integer." ([`output_constraint`]).
    #[default]
    Agp,
    /// "… The first integer in the list represents the highest-ranked item."
    /// ([`output_constraint_reference`]).
    Reference,
}

/// The output constraint of AGP's rerank prompts (§7.2 and the optimizable rerank prompt).
pub fn output_constraint(k: usize) -> String {
    format!(
        "The output MUST be a list of integers from 0 to {}, comma-separated, of length {k}, with the \
predicted target item id as the first integer. The output MUST start with {BOS} and end with {EOS}.",
        k.saturating_sub(1)
    )
}

/// The output constraint of the reference code's `rerank_directly_prompt` (§7.6, the same
/// constraint as its CoT prompt): the first integer is the highest-ranked item, not the
/// predicted target.
pub fn output_constraint_reference(k: usize) -> String {
    format!(
        "The output MUST be a list of integers from 0 to {}, comma-separated, of length {k}. The first \
integer in the list represents the highest-ranked item. The output MUST start with {BOS} and end with \
{EOS}.",
        k.saturating_sub(1)
    )
}

/// §7.1 `create_user_profile_prompt`: the prompt of Eq. 2.
pub fn profile(p_gen: &str, history: &str) -> String {
    format!(
        "[Task]\n\
Your goal is to build a comprehensive user profile from the user's historical item interactions.\n\
The profile describes the user's preferences and supplies information that helps rerank recommendations.\n\
\n\
[Instructions]\n\
{p_gen}\n\
Use the historical item profiles below as the basis of the user profile. Output the user profile ONLY.\n\
\n\
[Historical Item Profiles]\n\
{history}"
    )
}

/// §7.2 `rerank_by_user_profile_prompt`: the prompt of Eq. 3.
pub fn rerank_by_profile(user_profile: &str, candidates: &str, k: usize) -> String {
    format!(
        "[Instruction]\n\
Rerank the item ids in the Pretrained Item Profile List according to the User Profile. {}\n\
\n\
[User Profile]\n\
{user_profile}\n\
\n\
[Pretrained Item Profile List in format of <item id: item profile>]\n\
{candidates}",
        output_constraint(k)
    )
}

/// Where the ground truth landed and where it should be (Eq. 4), for the feedback prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// 1-based rank after reranking.
    pub actual: usize,
    /// 1-based target rank (1: the held-out item should come first).
    pub target: usize,
}

/// §7.3 `user_profile_evaluation_reason`: per-user feedback of Eq. 4.
///
/// `position` adds the paper's position statement (actual vs target rank); the reference code
/// sends none. `prompt_shown` is what goes under "[Current User Generation Prompt]": `p_gen`
/// as intended, or the rerank prompt as the reference code passes.
pub fn profile_feedback(
    gt_text: &str,
    candidates: &str,
    user_profile: &str,
    prompt_shown: &str,
    position: Option<Position>,
) -> String {
    let gt_text = neutralise_item_text(gt_text);
    let position = position
        .map(|p| {
            format!(
                "\n[Ground-truth Item Position]\n\
The Ground-truth Item is ranked at position {} of the reranked list; its target position is {}.\n",
                p.actual, p.target
            )
        })
        .unwrap_or_default();
    format!(
        "[Task]\n\
Evaluate the generated user profile and give actionable instructions for optimizing the user profile \
generation prompt. The aim is better alignment between the Ground-truth Item and the predicted reranked results.\n\
\n\
[Instructions]\n\
1. Analyze the Ground-truth Item Profile and the Current Reranked Item Profile List:\n\
\x20\x20\x20- Identify why the Ground-truth Item is not ranked first (if applicable).\n\
\x20\x20\x20- Point out alignment or misalignment between the Ground-truth Item and the Generated User Profile.\n\
2. Review the Generated User Profile:\n\
\x20\x20\x20- Identify features that correctly represent the user's preferences.\n\
\x20\x20\x20- Pinpoint missing or irrelevant features that may have caused the misalignment.\n\
3. Review the Current User Generation Prompt:\n\
\x20\x20\x20- Suggest modifications that capture the user's preferences better in future optimization.\n\
\x20\x20\x20- Keep any elements that represent user preferences well.\n\
4. Give actionable instructions for optimizing the user profile generation prompt:\n\
\x20\x20\x20- State the changes that would improve the Generated User Profile.\n\
\x20\x20\x20- Explain how these changes improve alignment with the Ground-truth Item.\n\
\n\
[Ground-truth Item Profile]\n\
{gt_text}\n\
[Current Reranked Item Profile List]\n\
{candidates}\n\
[Generated User Profile]\n\
{user_profile}\n\
[Current User Generation Prompt]\n\
{prompt_shown}\n\
{position}\n\
[Expected Output]\n\
Actionable instructions for optimizing the user profile generation prompt, with:\n\
1. The key issues of the Generated User Profile, given the Ground-truth Item and the reranked results.\n\
2. Specific changes to the User Generation Prompt that improve alignment with the user's preferences.\n\
3. Features of the current prompt and user profile to keep for future optimization."
    )
}

/// The `"Instruction {i}: {feedback}"` lines of the failed cases; `i` is the user's index in
/// the batch.
pub fn failed_cases(losses: &[(usize, String)]) -> String {
    losses
        .iter()
        .map(|(i, l)| format!("Instruction {i}: {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// §7.4 `generalize_failed_cases_prompt`: LLM-Summarize of Eq. 5.
pub fn summarize(losses: &[(usize, String)]) -> String {
    format!(
        "[Generalized Instruction]\n\
To improve the user profile generation prompt, write instructions that are flexible and adaptive to varied \
scenarios. The optimization should strengthen the system's ability to generalize to unseen users and contexts, \
handling limitations such as incomplete data, ambiguous preferences, or diverse user behaviours. Avoid \
overfitting to specific cases; emphasize robustness, clarity and adaptability.\n\
Below are specific failed cases to inform the optimization. Use them as examples from which to derive broader \
patterns for improving the prompt.\n\
\n\
[Failed Cases]\n\
{}",
        failed_cases(losses)
    )
}

/// §7.5 `generate_optimization_prompt`: the Edit of Eq. 6.
///
/// `n_failed` of `batch_len` users had a loss; `update_strength` (the batch's mean ground-truth
/// rank) is given when position-based feedback is on.
pub fn edit(
    prompt: &str,
    n_failed: usize,
    batch_len: usize,
    update_strength: Option<f64>,
    instructions: &str,
) -> String {
    let strength_note = if update_strength.is_some() {
        "\nThe 'Update Strength' ranges from 1 to 10 and indicates how much the new prompt should differ from \
the original. Higher values mean a larger modification; lower values mean minor adjustments."
    } else {
        ""
    };
    let strength = update_strength
        .map(|s| format!("\n\n[Update Strength]\n{}", update_strength_text(s)))
        .unwrap_or_default();
    format!(
        "[Instruction]\n\
The previous prompt had an error rate of {n_failed} out of {batch_len} and needs improvement, based on \
actionable instructions produced by the evaluation process. Your task is to optimize the prompt by \
incorporating the lessons in the instructions listed below. Your output MUST contain only the optimized \
prompt, formatted as follows:\n\
- Begin with {BOS}\n\
- End with {EOS}\n\
Your output will replace the current prompt for the rerank system.{strength_note}\n\
\n\
[Previous Rerank Prompt]\n\
{prompt}\n\
\n\
[Actionable Instructions for Optimization]\n\
{instructions}{strength}"
    )
}

/// The batch's mean rank as Python prints a float (the reference code formats it with `str`):
/// `3.4`, `5.0`, `3.45`.
fn update_strength_text(s: f64) -> String {
    if s.fract() == 0.0 {
        format!("{s:.1}")
    } else {
        format!("{s}")
    }
}

/// §7.6 `rerank_by_cot_prompt` (LLM-CoT).
pub fn rerank_cot(history: &str, candidates: &str, k: usize) -> String {
    format!(
        "[Instruction]\n\
Think step by step from the user's historical item interactions to determine item preferences, then rerank \
the given Pretrained Item Profile List accordingly. The output MUST be a comma-separated list of integers 0..{} \
of length {k}; the first integer is the highest-ranked item. The output MUST start with {BOS} and end with {EOS}.\n\
[User Historical Item Profiles]\n\
{history}\n\
[Pretrained Item Profile List in format of <item id: item profile>]\n\
{candidates}\n\
[Step-by-Step Rationale]\n\
- Identify user preferences from the historical interactions.\n\
- Compare these preferences with the given item profiles.\n\
- Rank the items accordingly.\n\
- Ensure the output strictly follows the required format.",
        k.saturating_sub(1)
    )
}

/// §7.6 `rerank_directly_prompt` (LLM-Dir), with AGP's output constraint (the default of
/// [`OutputConstraint`]).
pub fn rerank_direct(history: &str, candidates: &str, k: usize) -> String {
    rerank_direct_with(history, candidates, k, OutputConstraint::Agp)
}

/// §7.6 `rerank_directly_prompt` (LLM-Dir) with the chosen output constraint.
pub fn rerank_direct_with(
    history: &str,
    candidates: &str,
    k: usize,
    constraint: OutputConstraint,
) -> String {
    let constraint = match constraint {
        OutputConstraint::Agp => output_constraint(k),
        OutputConstraint::Reference => output_constraint_reference(k),
    };
    format!(
        "[Instruction]\n\
Rerank the item ids in the Pretrained Item Profile List based on the user's Historical Item Profiles. {constraint}\n\
[User Historical Item Profiles]\n\
{history}\n\
[Pretrained Item Profile List in format of <item id: item profile>]\n\
{candidates}"
    )
}

/// §7.6 `inject_item_profile_generation_prompt_recall_single`: the optimizable rerank prompt of
/// direct rerank-prompt optimization.
pub fn rerank_learned(instruction: &str, history: &str, candidates: &str, k: usize) -> String {
    format!(
        "[Instruction]\n\
{instruction}\n\
{}\n\
[Historical Item Profiles]\n\
{history}\n\
[Pretrained Item Profile List in format of <item id: item profile>]\n\
{candidates}",
        output_constraint(k)
    )
}

/// §7.7 `reranking_evaluation_reason`: feedback in direct-rerank mode.
pub fn rerank_feedback(
    predicted: &[usize],
    gt_index: usize,
    gt_text: &str,
    candidates: &str,
    history: &str,
) -> String {
    let gt_text = neutralise_item_text(gt_text);
    let predicted = predicted
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "[Instruction]\n\
You are given a Predicted Item List reranked for a user, to be evaluated against the Ground-truth Item Id, \
which should be first in the list. Compare the Ground-truth Item Profile, all item profiles in the Predicted \
Item List, and the Historical Item Profiles of the items the user interacted with. Use 3 sentences to explain \
(1) why the Ground-truth Item is not first in the Predicted Item List, and (2) why the user likes the \
Ground-truth Item.\n\
[Predicted Item List]\n\
[{predicted}]\n\
[Ground-truth Item Id]\n\
{gt_index}\n\
[Ground-truth Item Profile]\n\
{gt_text}\n\
[All Item Profiles in format of <item id: item profile>]\n\
{candidates}\n\
[Historical Item Profiles]\n\
{history}"
    )
}

/// Pointwise scoring, from the history (LLM-Dir pointwise): the shared prefix. The candidate
/// text and question follow in [`pointwise_suffix`].
pub fn pointwise_prefix_history(history: &str) -> String {
    format!("[User Historical Item Profiles]\n{history}\n\n[Candidate Item]\n")
}

/// Pointwise scoring, from a generated profile (AGP pointwise): the shared prefix.
pub fn pointwise_prefix_profile(user_profile: &str) -> String {
    format!("[User Profile]\n{user_profile}\n\n[Candidate Item]\n")
}

/// Pointwise scoring: one candidate and the yes/no question whose answer logits are compared.
pub fn pointwise_suffix(candidate: &str) -> String {
    let candidate = if candidate == CANDIDATE_PLACEHOLDER {
        Cow::Borrowed(candidate)
    } else {
        neutralise_item_text(candidate)
    };
    format!("{candidate}\n\nWould this user choose this item next? Answer Yes or No.")
}

/// RankGPT (Sun et al. 2023) over one window of `m` candidates: LLM-Dir's sections, RankGPT's
/// instruction before the list and again after it (RankGPT repeats it after the passages, where
/// a model reads it last), and the output constraint that puts the most likely item first.
/// The ids are the window's own, 0..m-1.
pub fn rankgpt_window(history: &str, candidates: &str, m: usize) -> String {
    format!(
        "[Instruction]\n\
I will provide you with {m} items, each indicated by an item id. Rank the items by how likely the user is to \
interact with each of them next, based on the user's Historical Item Profiles.\n\
[User Historical Item Profiles]\n\
{history}\n\
[Pretrained Item Profile List in format of <item id: item profile>]\n\
{candidates}\n\
[Expected Output]\n\
Rank the {m} items above by how likely the user is to interact with each of them next, the most likely first. {} \
Only respond with the ranking; do not explain.",
        output_constraint_reference(m)
    )
}

/// PRP (Qin et al. 2023): which of two candidates, `<0: …>` and `<1: …>`, the user prefers. The
/// caller asks each pair in both orders.
pub fn prp_pair(history: &str, candidates: &str) -> String {
    format!(
        "[Instruction]\n\
Based on the user's Historical Item Profiles, which of the following two items is the user more likely to \
interact with next? The output MUST be the id of that item, 0 or 1, and nothing else. The output MUST start \
with {BOS} and end with {EOS}.\n\
[User Historical Item Profiles]\n\
{history}\n\
[Pretrained Item Profile List in format of <item id: item profile>]\n\
{candidates}"
    )
}

/// Setwise (Zhuang et al. 2024): which one of `m` candidates, ids 0..m-1, the user is most
/// likely to interact with next.
pub fn setwise_choose(history: &str, candidates: &str, m: usize) -> String {
    format!(
        "[Instruction]\n\
Based on the user's Historical Item Profiles, which of the following {m} items is the one the user is most \
likely to interact with next? The output MUST be the id of that item, an integer from 0 to {}, and nothing \
else. The output MUST start with {BOS} and end with {EOS}.\n\
[User Historical Item Profiles]\n\
{history}\n\
[Pretrained Item Profile List in format of <item id: item profile>]\n\
{candidates}",
        m.saturating_sub(1)
    )
}

/// FIRST (Reddy et al. 2024): RankGPT's listwise prompt over all `k` candidates, asking for an
/// answer that starts with the most likely item's id and nothing before it (no answer markers),
/// because FIRST ranks by the log-probability of each id as the answer's first token.
pub fn first_listwise(history: &str, candidates: &str, k: usize) -> String {
    first_prompt(
        history,
        candidates,
        k,
        "and MUST start with the id of the most likely item, with nothing before it.",
    )
}

/// FIRST's prompt for an answer prefilled with `[` (rank_llm's FIRST): the same request as
/// [`first_listwise`], but the ranking is asked for in square brackets, so that the prefill is
/// the answer's own start and the token after it is the most likely item's id.
pub fn first_listwise_bracketed(history: &str, candidates: &str, k: usize) -> String {
    first_prompt(
        history,
        candidates,
        k,
        "inside square brackets, and MUST start with `[` followed at once by the id of the most \
         likely item.",
    )
}

/// The FIRST prompt around `answer_start`, the words that say how the answer opens.
fn first_prompt(history: &str, candidates: &str, k: usize, answer_start: &str) -> String {
    format!(
        "[Instruction]\n\
I will provide you with {k} items, each indicated by an item id. Rank the items by how likely the user is to \
interact with each of them next, based on the user's Historical Item Profiles.\n\
[User Historical Item Profiles]\n\
{history}\n\
[Pretrained Item Profile List in format of <item id: item profile>]\n\
{candidates}\n\
[Expected Output]\n\
Rank the {k} items above by how likely the user is to interact with each of them next, the most likely first. \
The output MUST be a list of integers from 0 to {}, comma-separated, of length {k}, {answer_start} Only respond \
with the ranking; do not explain.",
        k.saturating_sub(1)
    )
}

/// What the optimizers' prompts say the optimized prompt does, so an OPRO or ProTeGi proposal
/// is written for the same job as AGP's Edit.
const PROFILE_PROMPT_JOB: &str = "A language model follows the prompt to write a profile of a user from \
the user's historical item interactions; a second call reranks the user's candidate items from that profile \
alone.";

/// A prompt as the optimizers' prompts show it: AGP's empty start as `(empty)`, so the section
/// does not read as missing.
fn shown_prompt(p: &str) -> &str {
    if p.trim().is_empty() { "(empty)" } else { p }
}

/// OPRO's example user: the items the user interacted with (the history block the profile is
/// written from) and the one it interacted with next, the task's input and answer, and nothing
/// about where a ranking put it.
pub fn opro_example(i: usize, history: &str, gt_text: &str) -> String {
    format!(
        "User {i}\n\
Historical items, oldest first:\n\
{history}\n\
Item the user interacted with next: {}",
        neutralise_item_text(gt_text)
    )
}

/// OPRO's meta-prompt (Yang et al. 2023): the scored prompts in ascending
/// order of score, so the best come last, nearest the request for a better one; then example
/// users; then the request. A score is a mean NDCG@10 shown from 0 to 100 with one decimal; an
/// empty prompt (AGP's start) shows as `(empty)`.
pub fn opro_meta(scored: &[(&str, f64)], examples: &[String]) -> String {
    let history = scored
        .iter()
        .map(|(p, score)| format!("text:\n{}\nscore:\n{:.1}", shown_prompt(p), score * 100.0))
        .collect::<Vec<_>>()
        .join("\n\n");
    let examples = if examples.is_empty() {
        String::new()
    } else {
        format!(
            "[Example Users]\n\
Below are some users, each with the items they interacted with and the item they interacted with next.\n\
\n\
{}\n\
\n",
            examples.join("\n\n")
        )
    };
    format!(
        "[Task]\n\
Your task is to write the instructions of a user profile generation prompt. {PROFILE_PROMPT_JOB}\n\
\n\
[Previous Instructions and Scores]\n\
Below are previous instructions with their scores, in ascending order of score. The score is the mean \
NDCG@10 of the reranked lists, from 0 to 100; higher is better.\n\
\n\
{history}\n\
\n\
{examples}\
[Expected Output]\n\
Write new instructions that are different from all the instructions above and have a higher score than all \
of them. The instructions should be concise, effective and generally applicable to all users. The output MUST \
contain only the new instructions, starting with {BOS} and ending with {EOS}."
    )
}

/// One of ProTeGi's errors: the input (history), what the prompt made of it (the profile and the
/// top `hit_at` items of the rerank, fewer if the answer named fewer) and the answer. It says
/// the answer missed the top, never where it landed: ProTeGi's signal is hit or miss.
pub fn protegi_error(
    i: usize,
    history: &str,
    user_profile: &str,
    top: &[impl AsRef<str>],
    hit_at: usize,
    gt_text: &str,
) -> String {
    let top = if top.is_empty() {
        "(none: the rerank answer could not be read)".to_string()
    } else {
        history_lines(top)
    };
    format!(
        "## User {i}\n\
Historical items, oldest first:\n\
{history}\n\
Generated user profile:\n\
{user_profile}\n\
Top {hit_at} reranked items:\n\
{top}\n\
Item the user interacted with next (not among them): {}",
        neutralise_item_text(gt_text)
    )
}

/// The opening that ProTeGi's gradient and edit prompts share, and their failed cases.
fn protegi_case(prompt: &str, errors: &[String], hit_at: usize) -> String {
    format!(
        "[Task]\n\
I'm trying to write a user profile generation prompt. {PROFILE_PROMPT_JOB}\n\
\n\
[Current User Generation Prompt]\n\
{}\n\
\n\
[Failed Cases]\n\
But this prompt gets the following users wrong: the item each user interacted with next is not among the \
top {hit_at} reranked items.\n\
\n\
{}",
        shown_prompt(prompt),
        errors.join("\n\n")
    )
}

/// ProTeGi's gradient prompt (Pryzant et al. 2023): why the prompt got these users wrong, one
/// reason per group of errors, as ProTeGi's released code asks.
pub fn protegi_gradient(prompt: &str, errors: &[String], hit_at: usize) -> String {
    format!(
        "{}\n\
\n\
[Expected Output]\n\
Give one reason why the prompt could have gotten these users wrong.",
        protegi_case(prompt, errors, hit_at)
    )
}

/// ProTeGi's edit prompt: the same users and the gradient, and `n` new prompts that fix it, each
/// between the answer markers.
pub fn protegi_edit(
    prompt: &str,
    errors: &[String],
    hit_at: usize,
    gradient: &str,
    n: usize,
) -> String {
    let ask = if n == 1 {
        format!("write one improved prompt. It MUST start with {BOS} and end with {EOS}.")
    } else {
        format!(
            "write {n} different improved prompts. Each prompt MUST start with {BOS} and end with \
{EOS}."
        )
    };
    format!(
        "{}\n\
\n\
[Reasons the Prompt Failed]\n\
Based on these users, the problem with this prompt is:\n\
{gradient}\n\
\n\
[Expected Output]\n\
Based on the above information, {ask}",
        protegi_case(prompt, errors, hit_at)
    )
}

/// Every prompt template rendered with placeholder arguments (`{history}`, `{candidates}`, ...
/// and K = 10), by the name of the function that builds it. A report hashes these, so a reader
/// can tell whether two runs asked with the same wording without diffing prompts; a template
/// whose text changes changes its hash.
pub fn templates() -> Vec<(&'static str, String)> {
    let (h, c, p, u, g) = (
        "{history}",
        "{candidates}",
        "{prompt}",
        "{user_profile}",
        "{ground_truth}",
    );
    let losses = [(1, "{feedback}".to_string())];
    let errors = ["{error}".to_string()];
    let position = Some(Position {
        actual: 5,
        target: 1,
    });
    vec![
        ("system", SYSTEM.to_string()),
        ("profile", profile(p, h)),
        ("rerank_by_profile", rerank_by_profile(u, c, 10)),
        ("profile_feedback", profile_feedback(g, c, u, p, position)),
        ("summarize", summarize(&losses)),
        ("edit", edit(p, 1, 10, Some(5.0), "{instructions}")),
        ("rerank_direct", rerank_direct(h, c, 10)),
        ("rerank_cot", rerank_cot(h, c, 10)),
        ("rerank_learned", rerank_learned(p, h, c, 10)),
        ("rerank_feedback", rerank_feedback(&[0, 1], 1, g, c, h)),
        (
            "pointwise_history",
            pointwise_prefix_history(h) + &pointwise_suffix("{candidate}"),
        ),
        (
            "pointwise_profile",
            pointwise_prefix_profile(u) + &pointwise_suffix("{candidate}"),
        ),
        ("rankgpt_window", rankgpt_window(h, c, 10)),
        ("prp_pair", prp_pair(h, c)),
        ("setwise_choose", setwise_choose(h, c, 4)),
        ("first_listwise", first_listwise(h, c, 10)),
        (
            "opro_meta",
            opro_meta(&[(p, 0.5)], &[opro_example(1, h, g)]),
        ),
        ("protegi_gradient", protegi_gradient(p, &errors, 3)),
        ("protegi_edit", protegi_edit(p, &errors, 3, "{gradient}", 1)),
        ("protegi_paraphrase", protegi_paraphrase(p)),
        (
            "first_listwise_bracketed",
            first_listwise_bracketed(h, c, 10),
        ),
        ("random_edit", random_edit(p, RANDOM_EDITS[0])),
    ]
}

/// ProTeGi's Monte-Carlo successor (its `generate_synonyms`: "Generate a variation of the
/// following instruction while keeping the semantic meaning."), asking for the answer between
/// the markers the other prompts use.
pub fn protegi_paraphrase(prompt: &str) -> String {
    format!(
        "[Task]\n\
Generate a variation of the following instruction while keeping the semantic meaning. \
{PROFILE_PROMPT_JOB}\n\
\n\
[Instruction]\n\
{}\n\
\n\
[Expected Output]\n\
The variation. It MUST start with {BOS} and end with {EOS}.",
        shown_prompt(prompt)
    )
}

/// The edits random search draws from, one per proposal: generic changes to a prompt's text
/// that carry no information about users, scores or errors.
pub const RANDOM_EDITS: [&str; 6] = [
    "Rephrase the prompt: say the same in other words.",
    "Add one instruction the prompt does not have yet.",
    "Remove one of the prompt's instructions, or merge two of them.",
    "Make one of the prompt's instructions more specific.",
    "Make the prompt shorter.",
    "Change the order of the prompt's instructions.",
];

/// Random search's proposal: `prompt` with the drawn `change` (one of [`RANDOM_EDITS`]) applied,
/// between the answer markers. The request shows neither scores nor users, so what it returns
/// is a blind perturbation of the text.
pub fn random_edit(prompt: &str, change: &str) -> String {
    format!(
        "[Task]\n\
Rewrite a user profile generation prompt by making one change to it. {PROFILE_PROMPT_JOB}\n\
\n\
[Current User Generation Prompt]\n\
{}\n\
\n\
[Instruction]\n\
{change}\n\
\n\
[Expected Output]\n\
Write only the new prompt. It MUST start with {BOS} and end with {EOS}.",
        shown_prompt(prompt)
    )
}
