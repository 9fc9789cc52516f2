//! The common shape every raw format is read into before preprocessing.

use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;
use std::collections::BTreeMap;
use std::hash::BuildHasher;

/// Maps raw string ids to compact `u32`s in order of first appearance. Names live in one arena
/// string and the table stores only ids, so a new id costs no allocation of its own: with
/// millions of distinct users this is what keeps parsing fast and memory small.
#[derive(Default)]
pub struct Interner {
    /// Each entry carries its name's position in the arena, so a lookup touches the table and
    /// the arena only: with millions of ids every extra indirection is a cache miss.
    table: HashTable<Slot>,
    arena: String,
    /// End offset of each name in `arena`; name `i` spans `ends[i-1]..ends[i]`.
    ends: Vec<usize>,
}

#[derive(Clone, Copy)]
struct Slot {
    start: usize,
    len: u32,
    id: u32,
}

impl std::fmt::Debug for Interner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interner")
            .field("len", &self.len())
            .finish()
    }
}

/// Fx is fast but its high bits are weak on ids that share long prefixes (`A0000000027CB`),
/// and hashbrown probes with the top 7 bits: without the murmur3 finaliser below, interning
/// 10 M Amazon-style ids spent half its time on false matches.
fn hash(s: &str) -> u64 {
    let mut h = FxBuildHasher.hash_one(s);
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

impl Interner {
    fn span(ends: &[usize], id: u32) -> std::ops::Range<usize> {
        let i = id as usize;
        let start = if i == 0 { 0 } else { ends[i - 1] };
        start..ends[i]
    }

    pub fn intern(&mut self, s: &str) -> u32 {
        let h = hash(s);
        let arena = &self.arena;
        let eq = |e: &Slot| e.len as usize == s.len() && &arena[e.start..e.start + s.len()] == s;
        if let Some(e) = self.table.find(h, eq) {
            return e.id;
        }
        let id = self.ends.len() as u32;
        let start = self.arena.len();
        self.arena.push_str(s);
        self.ends.push(self.arena.len());
        let arena = &self.arena;
        let slot = Slot {
            start,
            len: s.len() as u32,
            id,
        };
        self.table
            .insert_unique(h, slot, |e| hash(&arena[e.start..e.start + e.len as usize]));
        id
    }

    pub fn get(&self, s: &str) -> Option<u32> {
        let eq =
            |e: &Slot| e.len as usize == s.len() && &self.arena[e.start..e.start + s.len()] == s;
        self.table.find(hash(s), eq).map(|e| e.id)
    }

    pub fn name(&self, id: u32) -> &str {
        &self.arena[Self::span(&self.ends, id)]
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
}

/// One raw interaction. `seq` is its position across the raw files in reading order: the
/// documented tie-break when two interactions share a timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interaction {
    pub user: u32,
    pub item: u32,
    pub ts: i64,
    pub seq: u64,
}

/// Text fields a source knows about an item; the [`crate::ItemTextStyle`] decides which are shown.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ItemMeta {
    pub title: String,
    /// Brand, lead actor, author, city: whatever the source has in that slot.
    pub lead: String,
    /// Category path or genres, already joined with spaces.
    pub category: String,
}

/// Everything a loader produced: interned ids, interactions in raw order, item metadata,
/// and counts of what was skipped by documented rules (never silently).
#[derive(Debug, Default)]
pub struct RawData {
    pub users: Interner,
    pub items: Interner,
    pub interactions: Vec<Interaction>,
    /// Indexed by interned item id; `None` when the metadata file has no row for the item.
    pub meta: Vec<Option<ItemMeta>>,
    pub skipped: BTreeMap<String, u64>,
}

impl RawData {
    pub fn push(&mut self, user: &str, item: &str, ts: i64) {
        let user = self.users.intern(user);
        let item = self.items.intern(item);
        let seq = self.interactions.len() as u64;
        self.interactions.push(Interaction {
            user,
            item,
            ts,
            seq,
        });
    }

    pub fn skip(&mut self, reason: &str) {
        *self.skipped.entry(reason.to_owned()).or_insert(0) += 1;
    }

    /// Attaches metadata to an item seen in the interactions. Returns `false` (and counts it)
    /// for items nobody interacted with, which are irrelevant to every split.
    pub fn set_meta(&mut self, item: &str, meta: ItemMeta) -> MetaOutcome {
        let Some(id) = self.items.get(item) else {
            return MetaOutcome::Unused;
        };
        if self.meta.len() < self.items.len() {
            self.meta.resize(self.items.len(), None);
        }
        let slot = &mut self.meta[id as usize];
        if slot.is_some() {
            return MetaOutcome::Duplicate;
        }
        *slot = Some(meta);
        MetaOutcome::Set
    }

    pub fn meta(&self, item: u32) -> Option<&ItemMeta> {
        self.meta.get(item as usize).and_then(Option::as_ref)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaOutcome {
    Set,
    Unused,
    Duplicate,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interner_round_trips_many_names() {
        let mut i = Interner::default();
        let names: Vec<String> = (0..10_000).map(|k| format!("user-{k}")).collect();
        for (k, n) in names.iter().enumerate() {
            assert_eq!(i.intern(n), k as u32);
        }
        assert_eq!(i.intern(""), 10_000);
        for (k, n) in names.iter().enumerate() {
            assert_eq!(i.intern(n), k as u32);
            assert_eq!(i.get(n), Some(k as u32));
            assert_eq!(i.name(k as u32), n);
        }
        assert_eq!(i.name(10_000), "");
        assert_eq!(i.get("nobody"), None);
        assert_eq!(i.len(), 10_001);
    }
}
