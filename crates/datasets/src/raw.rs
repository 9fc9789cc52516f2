//! The common shape every raw format is read into before preprocessing.

use rustc_hash::FxHashMap;
use std::collections::BTreeMap;

/// Maps raw string ids to compact `u32`s in order of first appearance, so ten million
/// interactions cost 24 bytes each instead of two heap strings.
#[derive(Debug, Default)]
pub struct Interner {
    map: FxHashMap<Box<str>, u32>,
    names: Vec<Box<str>>,
}

impl Interner {
    pub fn intern(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.map.get(s) {
            return id;
        }
        let id = self.names.len() as u32;
        let boxed: Box<str> = s.into();
        self.names.push(boxed.clone());
        self.map.insert(boxed, id);
        id
    }

    pub fn get(&self, s: &str) -> Option<u32> {
        self.map.get(s).copied()
    }

    pub fn name(&self, id: u32) -> &str {
        &self.names[id as usize]
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
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
