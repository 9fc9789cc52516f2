//! Raw interactions → implicit feedback, de-duplicated, k-core filtered, split leave-one-out.
//!
//! Every step is deterministic: interactions are ordered by `(user, timestamp, seq)` where `seq`
//! is the position in the raw files, so equal timestamps keep their order in the download.

use crate::raw::{Interaction, RawData};

/// The leave-one-out split in interned-id space plus what each step removed.
#[derive(Debug)]
pub struct Split {
    /// Interned user ids, in dense-id order.
    pub users: Vec<u32>,
    /// Interned item ids, in dense-id order.
    pub items: Vec<u32>,
    pub train: Vec<Vec<u32>>,
    pub valid: Vec<u32>,
    pub test: Vec<u32>,
    pub duplicates_removed: u64,
    pub kcore_removed: u64,
    pub kcore_passes: u32,
}

/// Users need at least this many interactions: one to train on, one to validate, one to test.
pub const MIN_USER_INTERACTIONS: u32 = 3;

/// Sorts interactions chronologically per user with the stable tie-break `(timestamp, seq)`.
pub fn sort_chronologically(inters: &mut [Interaction]) {
    // `seq` is unique, so the key is total and an unstable sort is still deterministic.
    inters.sort_unstable_by_key(|x| (x.user, x.ts, x.seq));
}

/// Keeps the earliest interaction of every (user, item) pair. Expects chronological order.
/// Returns how many repeats were dropped.
pub fn dedup_keep_earliest(inters: &mut Vec<Interaction>, n_items: usize) -> u64 {
    let before = inters.len();
    let mut last_user = vec![u32::MAX; n_items];
    inters.retain(|x| {
        let seen = &mut last_user[x.item as usize];
        if *seen == x.user {
            false
        } else {
            *seen = x.user;
            true
        }
    });
    (before - inters.len()) as u64
}

/// Iterative k-core: repeatedly drops users with fewer than `max(k, 3)` interactions and items
/// with fewer than `k`, until every remaining user and item meets its threshold.
/// Returns (interactions removed, passes run).
pub fn k_core(inters: &mut Vec<Interaction>, n_users: usize, n_items: usize, k: u32) -> (u64, u32) {
    let user_min = k.max(MIN_USER_INTERACTIONS);
    let before = inters.len();
    let mut passes = 0;
    let mut du = vec![0u32; n_users];
    let mut di = vec![0u32; n_items];
    loop {
        passes += 1;
        du.iter_mut().for_each(|d| *d = 0);
        di.iter_mut().for_each(|d| *d = 0);
        for x in inters.iter() {
            du[x.user as usize] += 1;
            di[x.item as usize] += 1;
        }
        let ok = |x: &Interaction| du[x.user as usize] >= user_min && di[x.item as usize] >= k;
        if inters.iter().all(ok) {
            break;
        }
        inters.retain(ok);
    }
    ((before - inters.len()) as u64, passes)
}

/// Chronological leave-one-out over interactions already sorted by user then time:
/// the last item is the test item, the second-to-last the validation item, the rest train.
///
/// Dense user ids follow the order of first appearance in the raw files. Dense item ids follow
/// the order of first appearance when reading users in dense order, each chronologically; this
/// depends only on the split itself, so writing it out (e.g. as RecBole files) and reading it
/// back gives the same ids.
pub fn leave_one_out(inters: &[Interaction], n_users: usize, n_items: usize) -> Split {
    let mut user_dense = vec![u32::MAX; n_users];
    for x in inters {
        user_dense[x.user as usize] = 0;
    }
    let users = assign_dense(&mut user_dense);
    // Sorted by interned user, and dense user ids ascend with interned ids: this walk visits
    // users in dense order.
    let mut item_dense = vec![u32::MAX; n_items];
    let mut items = Vec::new();
    for x in inters {
        let slot = &mut item_dense[x.item as usize];
        if *slot == u32::MAX {
            *slot = items.len() as u32;
            items.push(x.item);
        }
    }

    let mut train = vec![Vec::new(); users.len()];
    let mut valid = vec![0; users.len()];
    let mut test = vec![0; users.len()];
    for run in inters.chunk_by(|a, b| a.user == b.user) {
        let u = user_dense[run[0].user as usize] as usize;
        let seq: Vec<u32> = run.iter().map(|x| item_dense[x.item as usize]).collect();
        let n = seq.len();
        debug_assert!(n >= MIN_USER_INTERACTIONS as usize);
        test[u] = seq[n - 1];
        valid[u] = seq[n - 2];
        train[u] = seq[..n - 2].to_vec();
    }
    Split {
        users,
        items,
        train,
        valid,
        test,
        duplicates_removed: 0,
        kcore_removed: 0,
        kcore_passes: 0,
    }
}

/// Marks (`0`) become dense ids in ascending interned order; returns dense → interned.
fn assign_dense(map: &mut [u32]) -> Vec<u32> {
    let mut order = Vec::new();
    for (interned, slot) in map.iter_mut().enumerate() {
        if *slot == 0 {
            *slot = order.len() as u32;
            order.push(interned as u32);
        }
    }
    order
}

/// The whole pipeline on a loaded source. Consumes the interactions (sorted in place) to keep
/// peak memory at one copy of the raw data.
pub fn run(raw: &mut RawData, k: u32) -> Split {
    let n_users = raw.users.len();
    let n_items = raw.items.len();
    let inters = &mut raw.interactions;
    sort_chronologically(inters);
    let dups = dedup_keep_earliest(inters, n_items);
    let (removed, passes) = k_core(inters, n_users, n_items, k);
    let mut split = leave_one_out(inters, n_users, n_items);
    split.duplicates_removed = dups;
    split.kcore_removed = removed;
    split.kcore_passes = passes;
    split
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(rows: &[(&str, &str, i64)]) -> RawData {
        let mut r = RawData::default();
        for &(u, i, t) in rows {
            r.push(u, i, t);
        }
        r
    }

    #[test]
    fn ties_keep_file_order_and_duplicates_keep_earliest() {
        let mut r = raw(&[
            ("u", "c", 5),
            ("u", "a", 1),
            ("u", "b", 5), // same time as c, later in the file: after c
            ("u", "a", 9), // repeat of a: dropped, a stays at t=1
            ("u", "d", 7),
        ]);
        let s = run(&mut r, 1);
        assert_eq!(s.duplicates_removed, 1);
        let names: Vec<&str> = s.items.iter().map(|&i| r.items.name(i)).collect();
        // Dense item ids in the user's chronological order.
        assert_eq!(names, ["a", "c", "b", "d"]);
        assert_eq!(s.train[0], [0, 1]); // a(1), c(5)
        assert_eq!(s.valid[0], 2); // b(5)
        assert_eq!(s.test[0], 3); // d(7)
    }

    #[test]
    fn k_core_is_iterative() {
        // Item z has 2 users; with k=2 it survives the first pass, but user v drops
        // (only 2 interactions < 3), which leaves z with 1 user and removes it next pass.
        let mut rows = vec![("v", "z", 1), ("v", "x", 2)];
        for u in ["a", "b"] {
            rows.extend([(u, "x", 1), (u, "y", 2), (u, "w", 3)]);
        }
        rows.push(("a", "z", 4));
        let mut r = raw(&rows);
        let s = run(&mut r, 2);
        let users: Vec<&str> = s.users.iter().map(|&u| r.users.name(u)).collect();
        assert_eq!(users, ["a", "b"]);
        assert!(s.items.iter().all(|&i| r.items.name(i) != "z"));
        assert!(s.kcore_passes >= 2);
        for u in 0..2 {
            assert_eq!(s.train[u].len() + 2, 3);
        }
    }
}
