//! Deterministic answers to the harness's prompts.
//!
//! An answer depends only on the model id and the last user message (and an assistant prefill
//! after it, see [`answer_labels`]), so a run against the simulator gives the same answers
//! whatever the timing, concurrency or number of retries.
//! Each prompt kind is recognised by the section tags of `agp::prompts` and answered in the
//! exact format its parser expects.

use std::collections::{HashMap, HashSet};

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};

/// Start marker of a structured answer (must equal `agp::parse::BOS`; a test checks it).
pub const BOS: &str = "|beginoftext|";
/// End marker of a structured answer (must equal `agp::parse::EOS`).
pub const EOS: &str = "|endoftext|";

/// The tag above the `<idx: text>` candidate lines of every listwise rerank prompt.
const CANDIDATE_TAG: &str = "[Pretrained Item Profile List in format of <item id: item profile>]";
const POINTWISE_QUESTION: &str = "Would this user choose this item next? Answer Yes or No.";

/// What a prompt asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptKind {
    /// Profile generation (Eq. 2): a short profile text.
    Profile,
    /// A listwise rerank (by profile, direct, learned instruction): a marked permutation.
    Rerank,
    /// LLM-CoT: a reasoning sentence, then a marked permutation.
    RerankCot,
    /// Feedback on a generated profile (Eq. 4).
    ProfileFeedback,
    /// Feedback in direct-rerank mode.
    RerankFeedback,
    /// LLM-Summarize (Eq. 5).
    Summarize,
    /// The Edit (Eq. 6): a new prompt between the markers.
    Edit,
    /// Yes/no scoring with logprobs.
    Pointwise,
    /// A listwise prompt with logprobs whose answer the request prefilled (FIRST's `[`): the
    /// first token after the prefill is a candidate id.
    Labels,
    /// Anything else.
    Generic,
}

/// Which prompt this is. Checks run from the most specific template opening to the loosest
/// tag, because later prompts embed earlier outputs (feedback text inside the edit prompt, a
/// learned instruction inside a rerank prompt) that may repeat any wording.
pub fn classify(prompt: &str, logprobs: bool) -> PromptKind {
    let p = prompt.trim_start();
    if logprobs || p.trim_end().ends_with(POINTWISE_QUESTION) {
        PromptKind::Pointwise
    } else if p.starts_with("[Generalized Instruction]") && p.contains("[Failed Cases]") {
        PromptKind::Summarize
    } else if p.starts_with("[Task]") && p.contains("[Generated User Profile]") {
        PromptKind::ProfileFeedback
    } else if p.starts_with("[Task]") && p.contains("[Historical Item Profiles]") {
        PromptKind::Profile
    } else if p.starts_with("[Instruction]") && p.contains("[Previous Rerank Prompt]") {
        PromptKind::Edit
    } else if p.starts_with("[Instruction]")
        && p.contains("[Predicted Item List]")
        && p.contains("[Ground-truth Item Id]")
    {
        PromptKind::RerankFeedback
    } else if p.starts_with("[Instruction]\nThink step by step") {
        PromptKind::RerankCot
    } else if !parse_candidates(p).is_empty() {
        PromptKind::Rerank
    } else {
        PromptKind::Generic
    }
}

/// The candidate texts of a listwise prompt: what follows `<i: ` up to the closing `>` on
/// the lines `<0: ...>`, `<1: ...>`, ... under the candidate tag (or, failing the tag, from
/// the first `<0: ` line). A text that spans lines is joined back with `\n`.
pub fn parse_candidates(prompt: &str) -> Vec<String> {
    let section = match prompt.find(CANDIDATE_TAG) {
        Some(i) => &prompt[i + CANDIDATE_TAG.len()..],
        None => match prompt
            .match_indices("<0: ")
            .find(|(i, _)| *i == 0 || prompt.as_bytes()[i - 1] == b'\n')
        {
            Some((i, _)) => &prompt[i..],
            None => return Vec::new(),
        },
    };
    let mut out: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    for line in section.lines() {
        let opener = format!("<{}: ", out.len() + usize::from(current.is_some()));
        if let Some(rest) = line.strip_prefix(&opener) {
            if let Some(done) = current.take() {
                out.push(done);
            }
            current = Some(rest.to_string());
        } else if let Some(cur) = current.as_mut() {
            // The last candidate has no following `<i+1: ` line to end it, so a closed
            // text (one that ends with `>`) ends it; earlier ones run to the next opener.
            if cur.ends_with('>') && !line.starts_with('<') {
                out.push(current.take().unwrap_or_default());
                break;
            }
            cur.push('\n');
            cur.push_str(line);
        } else if !out.is_empty() || !line.trim().is_empty() {
            break;
        }
    }
    if let Some(done) = current {
        out.push(done);
    }
    out.into_iter()
        .map(|t| t.strip_suffix('>').map(str::to_string).unwrap_or(t))
        .collect()
}

/// The key of the truth map: sha256 of the candidate texts joined by `\n`, in hex.
pub fn candidates_fingerprint(texts: &[&str]) -> String {
    hex::encode(Sha256::digest(texts.join("\n").as_bytes()))
}

/// What the simulator knows about the held-out items, and how often it uses that.
#[derive(Debug, Clone, Copy)]
pub struct Signal<'a> {
    /// Probability (decided from the prompt hash) of favouring the held-out item.
    pub p: f64,
    /// Candidate-list fingerprint → index of the held-out item.
    pub truth: &'a HashMap<String, usize>,
    /// Texts of held-out items, for pointwise prompts that show a single candidate.
    pub held_out_texts: &'a HashSet<String>,
}

/// One answer: the content and, for pointwise prompts, the `logprobs` object.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub kind: PromptKind,
    pub content: String,
    pub logprobs: Option<serde_json::Value>,
    /// Whether the held-out item was favoured (for tests and the log).
    pub used_signal: bool,
}

/// sha256 of the model id and the prompt: the only inputs an answer may depend on.
pub fn prompt_hash(model: &str, prompt: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(model.as_bytes());
    h.update([0u8]);
    h.update(prompt.as_bytes());
    h.finalize().into()
}

/// A uniform draw in [0, 1) derived from `hash` under `label`, independent across labels.
pub(crate) fn unit(hash: &[u8], label: &str) -> f64 {
    let mut h = Sha256::new();
    h.update(label.as_bytes());
    h.update(hash);
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

/// Fisher–Yates written out rather than `rand`'s shuffle, so answers stay the same if that
/// crate ever changes its algorithm.
fn permutation(k: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
    let mut v: Vec<usize> = (0..k).collect();
    for i in (1..k).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
    v
}

fn pick<'a>(bank: &[&'a str], rng: &mut ChaCha8Rng) -> &'a str {
    bank[(rng.next_u64() % bank.len() as u64) as usize]
}

/// `n` distinct entries of `bank` in a hash-chosen order.
fn pick_distinct<'a>(bank: &[&'a str], n: usize, rng: &mut ChaCha8Rng) -> Vec<&'a str> {
    permutation(bank.len(), rng)
        .into_iter()
        .take(n)
        .map(|i| bank[i])
        .collect()
}

fn short(text: &str, max_chars: usize) -> String {
    let t = text.trim();
    if t.chars().count() <= max_chars {
        t.to_string()
    } else {
        format!("{}...", t.chars().take(max_chars).collect::<String>())
    }
}

/// The text after `tag` up to the next line that opens a `[Section]`, trimmed. The first
/// line is always kept, so a text that itself starts with `[` is not lost.
fn section<'a>(prompt: &'a str, tag: &str) -> Option<&'a str> {
    let start = prompt.find(tag)? + tag.len();
    let rest = prompt[start..].trim_start_matches('\n');
    let end = rest.find("\n[").unwrap_or(rest.len());
    Some(rest[..end].trim())
}

/// Everything after `tag`, for the section a template puts last. The last occurrence counts: earlier sections may quote the tag.
fn tail<'a>(prompt: &'a str, tag: &str) -> Option<&'a str> {
    let start = prompt.rfind(tag)? + tag.len();
    Some(prompt[start..].trim())
}

const TRAITS: &[&str] = &[
    "well-reviewed dramas",
    "fast-paced action",
    "light comedies",
    "thoughtful science fiction",
    "recent releases",
    "older classics",
    "character-driven stories",
    "titles from familiar franchises",
];

const EDIT_SENTENCES: &[&str] = &[
    "Summarise the genres the user returns to most often.",
    "Note the release years the user prefers.",
    "Name recurring directors, actors or creators.",
    "Weigh the most recent interactions more than older ones.",
    "Describe what the user avoids as well as what they like.",
    "Keep the profile short and concrete.",
    "Mention the tone the user prefers (light, dark, tense, playful).",
    "Point out any series or franchises the user follows.",
    "Separate long-standing tastes from one-off interactions.",
    "Prefer specific attributes over generic praise.",
];

const FEEDBACK_ISSUES: &[&str] = &[
    "the profile lists genres but not the era the user prefers",
    "the profile is too generic to separate similar candidates",
    "the profile over-weights a single early interaction",
    "the profile ignores the creators the user follows",
    "the profile misses the tone of the user's recent choices",
];

/// The answer for `prompt` sent to `model`; `logprobs`/`top_logprobs` are the request's.
pub fn answer(
    model: &str,
    prompt: &str,
    logprobs: bool,
    top_logprobs: u8,
    signal: &Signal<'_>,
) -> Answer {
    let hash = prompt_hash(model, prompt);
    let mut rng = ChaCha8Rng::from_seed(hash);
    let kind = classify(prompt, logprobs);
    let lucky = unit(&hash, "signal") < signal.p;
    let mut used_signal = false;
    let mut logprob_obj = None;
    let content = match kind {
        PromptKind::Rerank | PromptKind::RerankCot => {
            let cands = parse_candidates(prompt);
            let k = if cands.is_empty() {
                stated_length(prompt).unwrap_or(10)
            } else {
                cands.len()
            };
            let mut order = permutation(k, &mut rng);
            let refs: Vec<&str> = cands.iter().map(String::as_str).collect();
            if lucky
                && let Some(&gt) = signal.truth.get(&candidates_fingerprint(&refs))
                && let Some(pos) = order.iter().position(|&i| i == gt)
            {
                let g = order.remove(pos);
                order.insert(0, g);
                used_signal = true;
            }
            let list = order
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            if kind == PromptKind::RerankCot {
                let first = order.first().copied().unwrap_or(0);
                format!(
                    "The user's history suggests a taste for {}, which item {first} matches best, \
                     so the ranking is: {BOS}{list}{EOS}",
                    pick(TRAITS, &mut rng)
                )
            } else {
                format!("{BOS}{list}{EOS}")
            }
        }
        PromptKind::Profile => {
            let history: Vec<&str> = tail(prompt, "[Historical Item Profiles]")
                .unwrap_or("")
                .lines()
                .filter(|l| !l.trim().is_empty())
                .collect();
            let liked = pick_distinct(&history, history.len().min(3), &mut rng)
                .into_iter()
                .map(|t| short(t, 60))
                .collect::<Vec<_>>();
            let likes = if liked.is_empty() {
                "a broad range of items".to_string()
            } else {
                liked.join("; ")
            };
            format!(
                "The user enjoys {likes}. They favour {} and {}, and rank familiar creators highly.",
                pick(&TRAITS[..4], &mut rng),
                pick(&TRAITS[4..], &mut rng)
            )
        }
        PromptKind::ProfileFeedback => {
            let gt = section(prompt, "[Ground-truth Item Profile]").unwrap_or("the item");
            let issues = pick_distinct(FEEDBACK_ISSUES, 2, &mut rng);
            let change = pick_distinct(EDIT_SENTENCES, 2, &mut rng);
            format!(
                "1. Key issues: {}, and {}, so the Ground-truth Item ({}) is not ranked first.\n\
                 2. Changes to the User Generation Prompt: {} {}\n\
                 3. Keep: the focus on the user's favourite genres.",
                issues[0],
                issues[1],
                short(gt, 60),
                change[0],
                change[1]
            )
        }
        PromptKind::RerankFeedback => {
            let gt_id = section(prompt, "[Ground-truth Item Id]").unwrap_or("?");
            let gt = section(prompt, "[Ground-truth Item Profile]").unwrap_or("the item");
            format!(
                "Item {gt_id} is not first because the ranking favoured {} over the user's recent \
                 interests. The user likely chose {} because it matches {} in the history. \
                 The ranking should weigh {} more heavily.",
                pick(TRAITS, &mut rng),
                short(gt, 60),
                pick(TRAITS, &mut rng),
                pick(TRAITS, &mut rng)
            )
        }
        PromptKind::Summarize => {
            let s = pick_distinct(EDIT_SENTENCES, 3, &mut rng);
            format!(
                "Generalized instruction: {} {} {} Apply these to every user, including those \
                 with short or mixed histories.",
                s[0], s[1], s[2]
            )
        }
        PromptKind::Edit => {
            // Picked from a fixed bank rather than grown from the previous prompt, so the
            // learned prompt stays bounded however many epochs a rehearsal runs.
            let s = pick_distinct(EDIT_SENTENCES, 3, &mut rng);
            format!("{BOS}{} {} {}{EOS}", s[0], s[1], s[2])
        }
        PromptKind::Pointwise => {
            let cand = pointwise_candidate(prompt);
            let mut score = unit(&hash, "score") * 6.0 - 3.0;
            if lucky && signal.held_out_texts.contains(cand) {
                score = 6.0;
                used_signal = true;
            }
            let (content, lp) = yes_no_logprobs(score, top_logprobs);
            if logprobs {
                logprob_obj = Some(lp);
            }
            content
        }
        // `classify` never gives `Labels`: only a prefilled request is one (`answer_labels`).
        PromptKind::Generic | PromptKind::Labels => {
            format!("This is a simulated answer ({}).", hex::encode(&hash[..4]))
        }
    };
    Answer {
        kind,
        content,
        logprobs: logprob_obj,
        used_signal,
    }
}

/// The answer to a listwise prompt asked for first-token logprobs after an assistant
/// `prefill` (FIRST, as rank_llm sends it with `[`): the simulated ranking (the same draw as a
/// listwise answer, the signal moving the held-out item first) read off one token, each id's
/// probability halving down the ranking. Without candidates it is the yes/no answer, as any
/// request with logprobs is. The prefill enters the draw, so asking with and without one are
/// two requests.
pub fn answer_labels(
    model: &str,
    prompt: &str,
    prefill: &str,
    top_logprobs: u8,
    signal: &Signal<'_>,
) -> Answer {
    let cands = parse_candidates(prompt);
    if cands.is_empty() {
        return answer(model, prompt, true, top_logprobs, signal);
    }
    let hash = prompt_hash(model, &format!("{prompt}\u{0}{prefill}"));
    let mut rng = ChaCha8Rng::from_seed(hash);
    let mut order = permutation(cands.len(), &mut rng);
    let mut used_signal = false;
    let refs: Vec<&str> = cands.iter().map(String::as_str).collect();
    if unit(&hash, "signal") < signal.p
        && let Some(&gt) = signal.truth.get(&candidates_fingerprint(&refs))
        && let Some(pos) = order.iter().position(|&i| i == gt)
    {
        let g = order.remove(pos);
        order.insert(0, g);
        used_signal = true;
    }
    // p_r ∝ 2^-r over the ranking: a distribution whose order is the ranking's.
    let z: f64 = (0..order.len()).map(|r| 0.5f64.powi(r as i32)).sum();
    let entry = |id: usize, r: usize| {
        let t = id.to_string();
        json!({"token": t, "logprob": (0.5f64.powi(r as i32) / z).ln(), "bytes": t.as_bytes()})
    };
    let top: Vec<serde_json::Value> = order
        .iter()
        .enumerate()
        .take(usize::from(top_logprobs))
        .map(|(r, &id)| entry(id, r))
        .collect();
    let mut first = entry(order[0], 0);
    first["top_logprobs"] = json!(top);
    Answer {
        kind: PromptKind::Labels,
        content: order[0].to_string(),
        logprobs: Some(json!({"content": [first], "refusal": null})),
        used_signal,
    }
}

/// K from "... of length K" when no candidate lines could be parsed.
fn stated_length(prompt: &str) -> Option<usize> {
    let i = prompt.find("of length ")? + "of length ".len();
    let digits: String = prompt[i..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok().filter(|&k| k > 0 && k <= 1000)
}

/// The one candidate of a pointwise prompt, or the whole prompt if the template is not found.
fn pointwise_candidate(prompt: &str) -> &str {
    let start = prompt
        .rfind("[Candidate Item]\n")
        .map_or(0, |i| i + "[Candidate Item]\n".len());
    let rest = &prompt[start..];
    let end = rest.rfind(POINTWISE_QUESTION).unwrap_or(rest.len());
    rest[..end].trim()
}

/// The first-token answer and its `logprobs` object for a score of logit(Yes) − logit(No).
///
/// Yes and No share 98% of the mass and four filler tokens the rest, so the harness's
/// log p(Yes) − log p(No) recovers `score` exactly. The fillers are words that do not trim
/// to yes or no, which the harness would otherwise pool into them.
fn yes_no_logprobs(score: f64, top_logprobs: u8) -> (String, serde_json::Value) {
    let p_yes = 1.0 / (1.0 + (-score).exp());
    let mut tokens = [
        ("Yes", 0.98 * p_yes),
        ("No", 0.98 * (1.0 - p_yes)),
        ("Maybe", 0.008),
        ("The", 0.006),
        ("I", 0.004),
        ("Based", 0.002),
    ];
    tokens.sort_by(|a, b| b.1.total_cmp(&a.1));
    let entry = |t: &str, p: f64| json!({"token": t, "logprob": p.ln(), "bytes": t.as_bytes()});
    let answer = if score >= 0.0 { "Yes" } else { "No" };
    let p_answer = tokens
        .iter()
        .find(|(t, _)| *t == answer)
        .map_or(0.5, |(_, p)| *p);
    let top: Vec<serde_json::Value> = tokens
        .iter()
        .take(usize::from(top_logprobs))
        .map(|(t, p)| entry(t, *p))
        .collect();
    let mut first = entry(answer, p_answer);
    first["top_logprobs"] = json!(top);
    (
        answer.to_string(),
        json!({"content": [first], "refusal": null}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_parse_line_by_line_with_odd_texts() {
        let p = format!(
            "[Instruction]\nx\n{CANDIDATE_TAG}\n<0: a <b> c>\n<1: 2, 3: >x>\n<2: multi\nline>\n<3: last>"
        );
        assert_eq!(
            parse_candidates(&p),
            vec!["a <b> c", "2, 3: >x", "multi\nline", "last"]
        );
    }

    #[test]
    fn last_candidate_stops_at_the_next_section() {
        let p = format!("{CANDIDATE_TAG}\n<0: a>\n<1: b>\n[Step-by-Step Rationale]\n- x");
        assert_eq!(parse_candidates(&p), vec!["a", "b"]);
    }

    #[test]
    fn candidates_without_the_tag() {
        assert_eq!(parse_candidates("head\n<0: a>\n<1: b>"), vec!["a", "b"]);
        assert!(parse_candidates("no list here <0: a>").is_empty());
    }

    #[test]
    fn yes_no_score_is_recoverable() {
        let (c, lp) = yes_no_logprobs(1.5, 20);
        assert_eq!(c, "Yes");
        let top = lp["content"][0]["top_logprobs"].as_array().unwrap();
        let get = |w: &str| {
            top.iter().find(|t| t["token"] == w).unwrap()["logprob"]
                .as_f64()
                .unwrap()
        };
        assert!((get("Yes") - get("No") - 1.5).abs() < 1e-9);
        assert_eq!(top.len(), 6);
        let (_, lp) = yes_no_logprobs(-1.0, 2);
        assert_eq!(lp["content"][0]["token"], "No");
        assert_eq!(
            lp["content"][0]["top_logprobs"].as_array().unwrap().len(),
            2
        );
    }

    #[test]
    fn unit_draws_are_in_range_and_label_dependent() {
        let h = prompt_hash("m", "p");
        let (a, b) = (unit(&h, "a"), unit(&h, "b"));
        assert!((0.0..1.0).contains(&a) && (0.0..1.0).contains(&b));
        assert_ne!(a, b);
    }
}
