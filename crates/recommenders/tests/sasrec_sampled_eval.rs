//! The 100-sampled-negatives protocol on scorers whose answer is known.

use agp_recommenders::Scorer;
use agp_recommenders::eval::Split;
use agp_recommenders::sasrec::sampled_eval;
use agp_recommenders::synthetic;

/// Puts the test item of each user at a fixed score and every other item at `others`.
struct Fixed {
    targets: Vec<u32>,
    n_items: usize,
    others: f32,
}

impl Scorer for Fixed {
    fn n_items(&self) -> usize {
        self.n_items
    }
    fn score_user(&self, user: u32, _: &[u32], out: &mut [f32]) {
        out.fill(self.others);
        out[self.targets[user as usize] as usize] = 1.0;
    }
}

#[test]
fn oracle_scores_one_and_loser_scores_zero() {
    let ds = synthetic::clustered(40, 60, 2, 8, 9);
    let n = ds.n_items();
    let oracle = Fixed {
        targets: ds.test.clone(),
        n_items: n,
        others: 0.0,
    };
    let m = sampled_eval(&oracle, &ds, Split::Test, 100, 3).unwrap();
    assert_eq!((m.hr10, m.ndcg10, m.users), (1.0, 1.0, 40));
    let loser = Fixed {
        targets: ds.test.clone(),
        n_items: n,
        others: 2.0,
    };
    let m = sampled_eval(&loser, &ds, Split::Test, 100, 3).unwrap();
    // Negatives exclude only the training items, so with 100 draws the target is beaten by
    // at least 10 of them for every user.
    assert_eq!((m.hr10, m.ndcg10), (0.0, 0.0));
}

#[test]
fn same_seed_same_numbers() {
    struct ById(usize);
    impl Scorer for ById {
        fn n_items(&self) -> usize {
            self.0
        }
        fn score_user(&self, _: u32, _: &[u32], out: &mut [f32]) {
            for (i, s) in out.iter_mut().enumerate() {
                *s = -(i as f32);
            }
        }
    }
    let ds = synthetic::clustered(60, 60, 2, 8, 4);
    let m = ById(ds.n_items());
    let a = sampled_eval(&m, &ds, Split::Test, 100, 5).unwrap();
    assert_eq!(a, sampled_eval(&m, &ds, Split::Test, 100, 5).unwrap());
    assert!(a.hr10 > 0.0 && a.hr10 < 1.0, "{a:?}");
}
