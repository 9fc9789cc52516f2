//! Training batches as the reference sampler builds them: for a user with training sequence
//! `s`, input `s[..n−1]`, positive targets `s[1..]` (both the last `maxlen`), and for every
//! position one negative drawn uniformly from the items the user never trained on.

use super::SasRecError;
use super::model::Batch;
use agp_datasets::Dataset;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

pub struct Sampler {
    maxlen: usize,
    n_items: u32,
    /// Users with at least two training items (one input, one target).
    users: Vec<u32>,
    /// Training sequence per user.
    train: Vec<Vec<u32>>,
    /// Sorted, deduplicated training items per user: the negatives' exclusion set.
    seen: Vec<Vec<u32>>,
}

impl Sampler {
    pub fn new(dataset: &Dataset, maxlen: usize) -> Result<Self, SasRecError> {
        let n_items = dataset.n_items();
        let users: Vec<u32> = (0..dataset.n_users() as u32)
            .filter(|&u| dataset.train[u as usize].len() >= 2)
            .collect();
        if users.is_empty() {
            return Err(SasRecError::NoTrainingUsers {
                dataset: dataset.name.clone(),
            });
        }
        let mut seen = Vec::with_capacity(dataset.n_users());
        for (u, t) in dataset.train.iter().enumerate() {
            let mut s = t.clone();
            s.sort_unstable();
            s.dedup();
            if s.len() >= n_items && t.len() >= 2 {
                return Err(SasRecError::NoNegatives {
                    dataset: dataset.name.clone(),
                    user: u,
                });
            }
            seen.push(s);
        }
        Ok(Self {
            maxlen,
            n_items: n_items as u32,
            users,
            train: dataset.train.clone(),
            seen,
        })
    }

    pub fn n_users(&self) -> usize {
        self.users.len()
    }

    /// The trainable users in a fresh Fisher–Yates order (pmixer walks a shuffled permutation).
    pub fn permutation(&self, rng: &mut ChaCha8Rng) -> Vec<u32> {
        let mut order = self.users.clone();
        for i in (1..order.len()).rev() {
            let j = rng.random_range(0..=i);
            order.swap(i, j);
        }
        order
    }

    /// Overwrites `batch` with the sequences of `users`.
    pub fn fill(&self, users: &[u32], rng: &mut ChaCha8Rng, batch: &mut Batch) {
        batch.lens.clear();
        batch.items.clear();
        batch.pos.clear();
        batch.neg.clear();
        for &u in users {
            let s = &self.train[u as usize];
            let n = (s.len() - 1).min(self.maxlen);
            let start = s.len() - 1 - n;
            batch.lens.push(n);
            batch.items.extend_from_slice(&s[start..start + n]);
            batch.pos.extend_from_slice(&s[start + 1..start + 1 + n]);
            let seen = &self.seen[u as usize];
            for _ in 0..n {
                let neg = loop {
                    let i = rng.random_range(0..self.n_items);
                    if seen.binary_search(&i).is_err() {
                        break i;
                    }
                };
                batch.neg.push(neg);
            }
        }
    }
}
