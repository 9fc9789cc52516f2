//! Property tests of the rerank parser: no input panics; under `complete-with-base` the output
//! is always a permutation of 0..K; under `reference` it is duplicate-free and in range.

use agp::{MissingPolicy, ParseOutcome, parse_rerank};
use proptest::prelude::*;

fn answer() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        any::<String>(),
        "[0-9]{1,25}",
        Just(", ".to_string()),
        Just("|beginoftext|".to_string()),
        Just("|endoftext|".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        "[ \\n\\t;]{0,3}",
    ];
    prop::collection::vec(piece, 0..30).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn complete_with_base_is_a_permutation(text in answer(), k in 0usize..25) {
        let p = parse_rerank(&text, k, MissingPolicy::CompleteWithBase);
        let mut sorted = p.order.clone();
        sorted.sort_unstable();
        prop_assert_eq!(sorted, (0..k).collect::<Vec<_>>());
    }

    #[test]
    fn reference_is_duplicate_free_and_in_range(text in answer(), k in 0usize..25) {
        let p = parse_rerank(&text, k, MissingPolicy::Reference);
        let mut seen = vec![false; k];
        for &i in &p.order {
            prop_assert!(i < k);
            prop_assert!(!seen[i]);
            seen[i] = true;
        }
        prop_assert_eq!(p.order.is_empty(), p.outcome == ParseOutcome::Unparseable);
    }

    #[test]
    fn a_marked_permutation_round_trips(perm in Just((0..10usize).collect::<Vec<_>>()).prop_shuffle(), noise in any::<String>()) {
        let body = perm.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        let text = format!("{noise}|beginoftext|{body}|endoftext|{noise}");
        let p = parse_rerank(&text, 10, MissingPolicy::Reference);
        prop_assert_eq!(p.order, perm);
        prop_assert_eq!(p.outcome, ParseOutcome::Exact);
    }
}
