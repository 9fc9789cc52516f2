//! Turning an LLM's rerank answer into an ordering of candidate indices.
//!
//! The answer should hold a comma-separated permutation of `0..K` between `|beginoftext|` and
//! `|endoftext|`. Models do not always comply, so the parser takes the marked text when both
//! markers are there and otherwise the first integer list in the answer, drops out-of-range ids
//! and (by default) duplicates, and applies a named [`MissingPolicy`] to ids the answer left
//! out. Every parse reports a [`ParseOutcome`] so a run can say how often its model misbehaved.
//!
//! Two more named choices, [`DuplicatePolicy`] and [`UnmarkedAnswers`], make the parser's own
//! departures from the reference code selectable; [`ParseOptions`] bundles the three. Their
//! defaults are the parser's original behaviour, which the committed recordings and reports
//! were scored with.

use serde::{Deserialize, Serialize};

/// Start marker of a structured answer (written literally, no angle brackets).
pub const BOS: &str = "|beginoftext|";
/// End marker of a structured answer.
pub const EOS: &str = "|endoftext|";

/// What to do with candidates the answer did not mention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MissingPolicy {
    /// As the reference code: keep only the parsed ids; a ground truth that is not among them
    /// gets rank K and NDCG 0, as does an unparseable answer.
    #[default]
    Reference,
    /// Append the missing ids in backbone order, so every answer becomes a full permutation
    /// (with [`DuplicatePolicy::Dedup`]; method configs reject it beside `keep-as-reference`).
    CompleteWithBase,
}

/// What to do with an id the answer repeats.
///
/// The default, [`DuplicatePolicy::Dedup`], keeps every committed report's scores: an answer's
/// repeats cannot push the ground truth down, so a rank is a position among distinct
/// candidates, which is what a reranking is. The reference code ranks on the raw list (its
/// `find_first_list` is missing from the repository, but the trainer scores
/// `list.index(gt) + 1` on whatever it returns), so a repeat ahead of the ground truth costs it
/// a position; [`DuplicatePolicy::KeepAsReference`] reproduces that.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DuplicatePolicy {
    /// Keep the first occurrence of each id: `1,1,0` puts item 0 at rank 2.
    #[default]
    Dedup,
    /// Keep repeats where the answer put them, as the reference code's `list.index(gt) + 1`
    /// on the raw list: `1,1,0` puts item 0 at rank 3. The ordering may then repeat ids and be
    /// longer than K (a rank beyond K is possible, and beyond 10 scores NDCG 0, where the
    /// reference's uncapped `ndcg_score` would not). Out-of-range ids are still dropped, so
    /// every entry indexes a candidate.
    KeepAsReference,
}

/// How an answer without a marked list is read: one with no `|beginoftext|`…`|endoftext|`
/// pair, or whose marked text holds no integer.
///
/// The default, [`UnmarkedAnswers::FirstList`], keeps every committed report's scores. What the
/// reference code does is not known: its trainer calls `find_first_list`, which is missing
/// from the repository; its name says "the first list in the answer", which is what
/// `first-list` reads. The one parser the repository does contain, `parse_rerank_output` in
/// `utils/tools.py` (never called), rejects any answer that is not wrapped in both markers;
/// [`UnmarkedAnswers::RequireMarkers`] is the core of that rule (it requires the markers, not
/// that they open and close the answer). A chain-of-thought answer that opens with
/// a numbered step ("1. Identify…") and gives no markers is read as the list `[1]` under
/// `first-list`; [`UnmarkedAnswers::SkipEnumerations`] reads past such step labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnmarkedAnswers {
    /// The first run of integers anywhere in the answer.
    #[default]
    FirstList,
    /// Nothing: the answer is unparseable, as the reference's `parse_rerank_output` rules.
    RequireMarkers,
    /// The first run of integers, not counting an enumeration label at the start of a line
    /// (`1.` or `2)` followed by a blank or the end, after only blanks or Markdown `*#>_-`):
    /// such a label neither starts nor ends a list.
    SkipEnumerations,
}

/// Every parser choice together; `MissingPolicy` converts into it with the other two at their
/// defaults, so `parse_rerank(text, k, MissingPolicy::Reference)` keeps working.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct ParseOptions {
    pub missing_ids: MissingPolicy,
    pub duplicate_ids: DuplicatePolicy,
    pub unmarked_answers: UnmarkedAnswers,
}

impl From<MissingPolicy> for ParseOptions {
    fn from(missing_ids: MissingPolicy) -> Self {
        Self {
            missing_ids,
            ..Self::default()
        }
    }
}

/// How an ordering came about; counted per run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParseOutcome {
    /// Both markers present and a full permutation between them.
    Exact,
    /// A full permutation, found without the markers.
    NoMarkers,
    /// Some valid ids, but duplicates, out-of-range ids or missing ids had to be handled.
    Partial,
    /// No valid id at all.
    Unparseable,
    /// Ranked by pointwise scores; nothing to parse.
    Pointwise,
    /// The backbone's order; nothing to parse.
    Backbone,
    /// The call failed (e.g. a refusal, or an outage that outlasted the client's retries) and
    /// the run went on; scored as an unusable answer. Appended last so serialized data keeps
    /// its meaning.
    CallFailed,
}

/// The parser's result: `order` holds candidate indices, best first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParsedRanking {
    /// Under [`MissingPolicy::Reference`] this may be shorter than K (even empty); under
    /// [`DuplicatePolicy::KeepAsReference`] it may repeat ids and be longer than K.
    pub order: Vec<usize>,
    pub outcome: ParseOutcome,
}

/// The text between the first `|beginoftext|` and the next `|endoftext|`, if both are there.
pub fn between_markers(text: &str) -> Option<&str> {
    let start = text.find(BOS)? + BOS.len();
    let len = text[start..].find(EOS)?;
    Some(&text[start..start + len])
}

/// The text after the first `|beginoftext|`, up to the next `|endoftext|` if there is one: the
/// reference code's `text.split(BOS, 1)[1].split(EOS, 1)[0]`. `None` without the start marker.
pub fn after_bos(text: &str) -> Option<&str> {
    let start = text.find(BOS)? + BOS.len();
    let rest = &text[start..];
    Some(rest.find(EOS).map_or(rest, |len| &rest[..len]))
}

/// The first run of integers separated only by commas, semicolons, whitespace or brackets.
///
/// Integers too large for `usize` are kept as `None` so they count as out of range instead of
/// ending the list. With `skip_labels`, an enumeration label at a line start (see
/// [`UnmarkedAnswers::SkipEnumerations`]) is passed over.
fn first_integer_list(text: &str, skip_labels: bool) -> Vec<Option<usize>> {
    let mut out = Vec::new();
    let mut chars = text.char_indices().peekable();
    let mut in_list = false;
    // Only blanks and Markdown marks since the last line break (or the start).
    let mut line_start = true;
    while let Some(&(i, c)) = chars.peek() {
        if c.is_ascii_digit() {
            let mut end = i;
            while let Some(&(j, d)) = chars.peek() {
                if d.is_ascii_digit() {
                    end = j + d.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            if skip_labels && line_start && is_label_end(&text[end..]) {
                // The label's `.` or `)`.
                chars.next();
                line_start = false;
                continue;
            }
            line_start = false;
            out.push(text[i..end].parse::<usize>().ok());
            in_list = true;
        } else if in_list && !(c.is_whitespace() || matches!(c, ',' | ';' | '[' | ']')) {
            break;
        } else {
            chars.next();
            if matches!(c, '\n' | '\r') {
                line_start = true;
            } else if !(c.is_whitespace() || matches!(c, '*' | '#' | '>' | '_' | '-')) {
                line_start = false;
            }
        }
    }
    out
}

/// Whether the text after a line-start number makes it an enumeration label: `.` or `)`, then a
/// blank or the end.
fn is_label_end(rest: &str) -> bool {
    let mut it = rest.chars();
    matches!(it.next(), Some('.' | ')')) && it.next().is_none_or(char::is_whitespace)
}

/// Parse a rerank answer over `k` candidates. `opts` is a [`ParseOptions`] or, for the other
/// choices at their defaults, a [`MissingPolicy`].
pub fn parse_rerank(text: &str, k: usize, opts: impl Into<ParseOptions>) -> ParsedRanking {
    let opts = opts.into();
    let marked = between_markers(text);
    let mut raw = marked
        .map(|m| first_integer_list(m, false))
        .unwrap_or_default();
    if raw.is_empty() {
        raw = match opts.unmarked_answers {
            UnmarkedAnswers::FirstList => first_integer_list(text, false),
            UnmarkedAnswers::RequireMarkers => Vec::new(),
            UnmarkedAnswers::SkipEnumerations => first_integer_list(text, true),
        };
    }
    let keep_repeats = opts.duplicate_ids == DuplicatePolicy::KeepAsReference;
    let mut seen = vec![false; k];
    let mut distinct = 0;
    let mut order = Vec::with_capacity(k);
    let mut irregular = false;
    for id in raw {
        match id {
            Some(i) if i < k && !seen[i] => {
                seen[i] = true;
                distinct += 1;
                order.push(i);
            }
            Some(i) if i < k && keep_repeats => {
                irregular = true;
                order.push(i);
            }
            _ => irregular = true,
        }
    }
    let outcome = if order.is_empty() {
        ParseOutcome::Unparseable
    } else if irregular || distinct < k {
        ParseOutcome::Partial
    } else if marked.is_some() {
        ParseOutcome::Exact
    } else {
        ParseOutcome::NoMarkers
    };
    if opts.missing_ids == MissingPolicy::CompleteWithBase {
        order.extend((0..k).filter(|&i| !seen[i]));
    }
    ParsedRanking { order, outcome }
}

/// Parse a one-id answer ("which of these `n` items?"): the first integer of the marked text,
/// else the first of the whole answer. `order` holds that id, or nothing when the answer has no
/// integer or its integer is not below `n` (outcome `Unparseable`); the outcome is `Exact` for a
/// marked answer and `NoMarkers` otherwise. Read as leniently as a list: "Item 2 fits best"
/// gives 2.
pub fn parse_choice(text: &str, n: usize) -> ParsedRanking {
    let first = |t: &str| first_integer_list(t, false).first().copied();
    let (id, outcome) = match between_markers(text).and_then(first) {
        Some(id) => (id, ParseOutcome::Exact),
        None => (first(text).flatten(), ParseOutcome::NoMarkers),
    };
    match id {
        Some(i) if i < n => ParsedRanking {
            order: vec![i],
            outcome,
        },
        _ => ParsedRanking {
            order: Vec::new(),
            outcome: ParseOutcome::Unparseable,
        },
    }
}

/// Parse a RankGPT answer over a window of `n` candidates as RankGPT's `receive_permutation`
/// reads one: every run of digits is an id and everything else separates them, so
/// `[2] > [0] > [1] > [3]` and `2, 0, 1, 3` read alike; repeats keep their first place,
/// out-of-range ids are dropped, and the ids the answer left out follow in window order, so
/// `order` is always a full permutation of `0..n`. (RankGPT numbers from 1; our prompts number
/// from 0.) The text between the answer markers is read when both are there, else the whole
/// answer.
///
/// The outcome says how much of the answer made the order: `Exact` (marked) or `NoMarkers` when
/// every id came from the answer, `Partial` when some were appended, `Unparseable` when none
/// was read and the window keeps its order.
pub fn parse_rankgpt(text: &str, n: usize) -> ParsedRanking {
    let marked = between_markers(text);
    let body = marked.unwrap_or(text);
    let mut seen = vec![false; n];
    let mut order = Vec::with_capacity(n);
    for id in body
        .split(|c: char| !c.is_ascii_digit())
        .filter(|t| !t.is_empty())
    {
        // Too large for usize is out of range too.
        if let Ok(i) = id.parse::<usize>()
            && i < n
            && !seen[i]
        {
            seen[i] = true;
            order.push(i);
        }
    }
    let read = order.len();
    order.extend((0..n).filter(|&i| !seen[i]));
    let outcome = if read == 0 {
        ParseOutcome::Unparseable
    } else if read < n {
        ParseOutcome::Partial
    } else if marked.is_some() {
        ParseOutcome::Exact
    } else {
        ParseOutcome::NoMarkers
    };
    ParsedRanking { order, outcome }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rankgpt_answers_read_as_receive_permutation_reads_them() {
        let p = parse_rankgpt("[2] > [0] > [1] > [3]", 4);
        assert_eq!(p.order, [2, 0, 1, 3]);
        assert_eq!(p.outcome, ParseOutcome::NoMarkers);
        let p = parse_rankgpt("Sure! |beginoftext|[3] > [1] > [0] > [2]|endoftext| 7", 4);
        assert_eq!(p.order, [3, 1, 0, 2]);
        assert_eq!(p.outcome, ParseOutcome::Exact);
        // Commas, or no separator but a word, read the same.
        assert_eq!(
            parse_rankgpt("|beginoftext|1, 0, 2|endoftext|", 3).order,
            [1, 0, 2]
        );
        assert_eq!(parse_rankgpt("1then0and2", 3).order, [1, 0, 2]);
    }

    #[test]
    fn rankgpt_answers_drop_repeats_and_out_of_range_and_append_the_rest() {
        let p = parse_rankgpt("[2] > [2] > [9] > [0] > [99999999999999999999999]", 4);
        assert_eq!(p.order, [2, 0, 1, 3]);
        assert_eq!(p.outcome, ParseOutcome::Partial);
        // Every id came, repeats and junk aside.
        let p = parse_rankgpt("[1] > [1] > [0] > [5] > [2]", 3);
        assert_eq!(p.order, [1, 0, 2]);
        assert_eq!(p.outcome, ParseOutcome::NoMarkers);
        // Nothing readable keeps the window's order.
        for junk in ["I do not understand.", "", "[a] > [b]", "[7] > [8]"] {
            let p = parse_rankgpt(junk, 4);
            assert_eq!(p.order, [0, 1, 2, 3], "{junk:?}");
            assert_eq!(p.outcome, ParseOutcome::Unparseable, "{junk:?}");
        }
        assert!(parse_rankgpt("[0]", 0).order.is_empty());
        // parse_rerank stops at the first separator it does not know.
        assert_eq!(
            parse_rerank("[2] > [0] > [1] > [3]", 4, MissingPolicy::Reference).order,
            [2]
        );
    }

    #[test]
    fn marked_permutation_is_exact() {
        let p = parse_rerank(
            "sure |beginoftext|2, 0, 1|endoftext| done",
            3,
            MissingPolicy::Reference,
        );
        assert_eq!(p.order, vec![2, 0, 1]);
        assert_eq!(p.outcome, ParseOutcome::Exact);
    }

    #[test]
    fn markers_take_precedence_over_earlier_numbers() {
        let p = parse_rerank(
            "Top 3 picks: |beginoftext|1,2,0|endoftext|",
            3,
            MissingPolicy::Reference,
        );
        assert_eq!(p.order, vec![1, 2, 0]);
    }

    #[test]
    fn first_list_without_markers() {
        let p = parse_rerank(
            "Ranking: [3, 1, 0, 2]. Then 7 8 9",
            4,
            MissingPolicy::Reference,
        );
        assert_eq!(p.order, vec![3, 1, 0, 2]);
        assert_eq!(p.outcome, ParseOutcome::NoMarkers);
    }

    #[test]
    fn duplicates_and_out_of_range_dropped() {
        let p = parse_rerank(
            "|beginoftext|1, 1, 12, 0|endoftext|",
            3,
            MissingPolicy::Reference,
        );
        assert_eq!(p.order, vec![1, 0]);
        assert_eq!(p.outcome, ParseOutcome::Partial);
        let c = parse_rerank(
            "|beginoftext|1, 1, 12, 0|endoftext|",
            3,
            MissingPolicy::CompleteWithBase,
        );
        assert_eq!(c.order, vec![1, 0, 2]);
    }

    #[test]
    fn unparseable_answer() {
        let p = parse_rerank("I cannot rank these.", 3, MissingPolicy::Reference);
        assert!(p.order.is_empty());
        assert_eq!(p.outcome, ParseOutcome::Unparseable);
        let c = parse_rerank("I cannot rank these.", 3, MissingPolicy::CompleteWithBase);
        assert_eq!(c.order, vec![0, 1, 2]);
        assert_eq!(c.outcome, ParseOutcome::Unparseable);
    }

    #[test]
    fn huge_integer_is_out_of_range_not_a_panic() {
        let p = parse_rerank("99999999999999999999999, 0", 2, MissingPolicy::Reference);
        assert_eq!(p.order, vec![0]);
        assert_eq!(p.outcome, ParseOutcome::Partial);
    }

    fn opts(duplicate_ids: DuplicatePolicy, unmarked_answers: UnmarkedAnswers) -> ParseOptions {
        ParseOptions {
            missing_ids: MissingPolicy::Reference,
            duplicate_ids,
            unmarked_answers,
        }
    }

    /// 1-based rank of `gt` as the metrics compute it (first occurrence).
    fn rank(p: &ParsedRanking, gt: usize) -> Option<usize> {
        p.order.iter().position(|&i| i == gt).map(|i| i + 1)
    }

    #[test]
    fn a_missing_policy_is_the_default_options() {
        let o: ParseOptions = MissingPolicy::CompleteWithBase.into();
        assert_eq!(o.duplicate_ids, DuplicatePolicy::Dedup);
        assert_eq!(o.unmarked_answers, UnmarkedAnswers::FirstList);
        assert_eq!(
            ParseOptions::default().missing_ids,
            MissingPolicy::Reference
        );
    }

    #[test]
    fn duplicates_dedup_by_default() {
        let text = "|beginoftext|1,1,0|endoftext|";
        let p = parse_rerank(text, 3, MissingPolicy::Reference);
        assert_eq!(p, parse_rerank(text, 3, ParseOptions::default()));
        assert_eq!(p.order, vec![1, 0]);
        assert_eq!(rank(&p, 0), Some(2));
        assert_eq!(p.outcome, ParseOutcome::Partial);
    }

    #[test]
    fn duplicates_kept_as_the_reference_ranks_them() {
        let keep = opts(DuplicatePolicy::KeepAsReference, UnmarkedAnswers::FirstList);
        let p = parse_rerank("|beginoftext|1,1,0|endoftext|", 3, keep);
        assert_eq!(p.order, vec![1, 1, 0]);
        assert_eq!(rank(&p, 0), Some(3), "list.index(0) + 1 on the raw list");
        assert_eq!(rank(&p, 1), Some(1));
        assert_eq!(p.outcome, ParseOutcome::Partial);
        // Out-of-range ids are still dropped; repeats may make the order longer than K.
        let p = parse_rerank("2, 2, 7, 2, 0, 1", 3, keep);
        assert_eq!(p.order, vec![2, 2, 2, 0, 1]);
        assert_eq!(rank(&p, 0), Some(4));
        assert_eq!(p.outcome, ParseOutcome::Partial);
        // A full permutation has no repeats: both policies agree.
        let exact = "|beginoftext|2,0,1|endoftext|";
        assert_eq!(
            parse_rerank(exact, 3, keep),
            parse_rerank(exact, 3, ParseOptions::default())
        );
        // Completion appends what was never named, after the repeats.
        let c = parse_rerank(
            "1, 1, 0",
            4,
            ParseOptions {
                missing_ids: MissingPolicy::CompleteWithBase,
                ..keep
            },
        );
        assert_eq!(c.order, vec![1, 1, 0, 2, 3]);
    }

    const COT: &str = "1. Identify the user's preferences: Sci-Fi and Drama.\n\
2. Compare them with the candidates.\n\
3) Rank accordingly.\n\
Final ranking: 3, 1, 0, 2";

    #[test]
    fn cot_answer_without_markers_under_each_rule() {
        let read = |u| parse_rerank(COT, 4, opts(DuplicatePolicy::Dedup, u));
        let first = read(UnmarkedAnswers::FirstList);
        assert_eq!(first, parse_rerank(COT, 4, MissingPolicy::Reference));
        assert_eq!(first.order, vec![1]);
        assert_eq!(first.outcome, ParseOutcome::Partial);
        let strict = read(UnmarkedAnswers::RequireMarkers);
        assert!(strict.order.is_empty());
        assert_eq!(strict.outcome, ParseOutcome::Unparseable);
        let skip = read(UnmarkedAnswers::SkipEnumerations);
        assert_eq!(skip.order, vec![3, 1, 0, 2]);
        assert_eq!(skip.outcome, ParseOutcome::NoMarkers);
    }

    #[test]
    fn marked_answers_read_the_same_under_every_rule() {
        let text = "1. Think.\n2. Rank.\n|beginoftext|3, 1, 0, 2|endoftext|";
        for u in [
            UnmarkedAnswers::FirstList,
            UnmarkedAnswers::RequireMarkers,
            UnmarkedAnswers::SkipEnumerations,
        ] {
            let p = parse_rerank(text, 4, opts(DuplicatePolicy::Dedup, u));
            assert_eq!(p.order, vec![3, 1, 0, 2], "{u:?}");
            assert_eq!(p.outcome, ParseOutcome::Exact, "{u:?}");
        }
    }

    #[test]
    fn require_markers_needs_both_and_a_list_between() {
        let strict = opts(DuplicatePolicy::Dedup, UnmarkedAnswers::RequireMarkers);
        for text in [
            "|beginoftext|3, 1, 0, 2",
            "3, 1, 0, 2|endoftext|",
            "|beginoftext|none fit|endoftext| 3, 1, 0, 2",
        ] {
            let p = parse_rerank(text, 4, strict);
            assert_eq!(p.outcome, ParseOutcome::Unparseable, "{text}");
            // Today's reading finds the list outside the markers.
            assert_eq!(
                parse_rerank(text, 4, MissingPolicy::Reference).order,
                vec![3, 1, 0, 2],
                "{text}"
            );
        }
    }

    #[test]
    fn skip_enumerations_only_skips_line_start_labels() {
        let skip = opts(DuplicatePolicy::Dedup, UnmarkedAnswers::SkipEnumerations);
        let read = |t: &str| parse_rerank(t, 4, skip).order;
        // Labels as separators of a numbered answer.
        assert_eq!(read("1. 3\n2. 1\n3. 0\n4. 2"), vec![3, 1, 0, 2]);
        // Markdown before the label, `)` labels, a label that ends the text.
        assert_eq!(
            read("**1. Think**\n  - 2) Rank: 2, 0, 3, 1"),
            vec![2, 0, 3, 1]
        );
        assert_eq!(read("Done 1, 2\n3."), vec![1, 2]);
        // Not labels: a decimal, a number inside a line, a number without punctuation.
        assert_eq!(read("1.5 stars"), vec![1]);
        assert_eq!(read("Step 1. Think"), vec![1]);
        assert_eq!(read("3 1 0 2"), vec![3, 1, 0, 2]);
        // A label in a list's line break does not end it.
        assert_eq!(read("3, 1,\n2. 0"), vec![3, 1, 0]);
    }

    #[test]
    fn after_bos_is_the_reference_split() {
        assert_eq!(after_bos("x |beginoftext| p |endoftext| y"), Some(" p "));
        assert_eq!(after_bos("x |beginoftext| p"), Some(" p"));
        assert_eq!(
            after_bos("|beginoftext|a|beginoftext|b|endoftext|"),
            Some("a|beginoftext|b")
        );
        assert_eq!(after_bos("p |endoftext|"), None);
        assert_eq!(between_markers("x |beginoftext| p"), None);
    }

    #[test]
    fn one_id_answers() {
        let c = |t: &str| {
            let p = parse_choice(t, 3);
            (p.order.first().copied(), p.outcome)
        };
        assert_eq!(
            c("|beginoftext|2|endoftext|"),
            (Some(2), ParseOutcome::Exact)
        );
        assert_eq!(c("Item 1 fits best."), (Some(1), ParseOutcome::NoMarkers));
        assert_eq!(c("<0: Heat (1995)>"), (Some(0), ParseOutcome::NoMarkers));
        // A marked answer wins over earlier numbers; an out-of-range id is no answer.
        assert_eq!(
            c("Of 3 items: |beginoftext| 1 |endoftext|"),
            (Some(1), ParseOutcome::Exact)
        );
        assert_eq!(
            c("|beginoftext|7|endoftext|"),
            (None, ParseOutcome::Unparseable)
        );
        assert_eq!(c("Movie 45 (1995)"), (None, ParseOutcome::Unparseable));
        assert_eq!(c("I cannot choose."), (None, ParseOutcome::Unparseable));
        assert_eq!(
            c("99999999999999999999999"),
            (None, ParseOutcome::Unparseable)
        );
    }
}
