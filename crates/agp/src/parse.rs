//! Turning an LLM's rerank answer into an ordering of candidate indices.
//!
//! The answer should hold a comma-separated permutation of `0..K` between `|beginoftext|` and
//! `|endoftext|`. Models do not always comply, so the parser takes the marked text when both
//! markers are there and otherwise the first integer list in the answer, drops duplicates and
//! out-of-range ids, and applies a named [`MissingPolicy`] to ids the answer left out. Every
//! parse reports a [`ParseOutcome`] so a run can say how often its model misbehaved.

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
    /// Append the missing ids in backbone order, so every answer becomes a full permutation.
    CompleteWithBase,
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
    /// Under [`MissingPolicy::Reference`] this may be shorter than K (even empty).
    pub order: Vec<usize>,
    pub outcome: ParseOutcome,
}

/// The text between the first `|beginoftext|` and the next `|endoftext|`, if both are there.
pub fn between_markers(text: &str) -> Option<&str> {
    let start = text.find(BOS)? + BOS.len();
    let len = text[start..].find(EOS)?;
    Some(&text[start..start + len])
}

/// The first run of integers separated only by commas, semicolons, whitespace or brackets.
///
/// Integers too large for `usize` are kept as `None` so they count as out of range instead of
/// ending the list.
fn first_integer_list(text: &str) -> Vec<Option<usize>> {
    let mut out = Vec::new();
    let mut chars = text.char_indices().peekable();
    let mut in_list = false;
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
            out.push(text[i..end].parse::<usize>().ok());
            in_list = true;
        } else if in_list && !(c.is_whitespace() || matches!(c, ',' | ';' | '[' | ']')) {
            break;
        } else {
            chars.next();
        }
    }
    out
}

/// Parse a rerank answer over `k` candidates.
pub fn parse_rerank(text: &str, k: usize, policy: MissingPolicy) -> ParsedRanking {
    let marked = between_markers(text);
    let mut raw = marked.map(first_integer_list).unwrap_or_default();
    if raw.is_empty() {
        raw = first_integer_list(text);
    }
    let mut seen = vec![false; k];
    let mut order = Vec::with_capacity(k);
    let mut irregular = false;
    for id in raw {
        match id {
            Some(i) if i < k && !seen[i] => {
                seen[i] = true;
                order.push(i);
            }
            _ => irregular = true,
        }
    }
    let outcome = if order.is_empty() {
        ParseOutcome::Unparseable
    } else if irregular || order.len() < k {
        ParseOutcome::Partial
    } else if marked.is_some() {
        ParseOutcome::Exact
    } else {
        ParseOutcome::NoMarkers
    };
    if policy == MissingPolicy::CompleteWithBase {
        order.extend((0..k).filter(|&i| !seen[i]));
    }
    ParsedRanking { order, outcome }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
