//! Dataset statistics, raw and after preprocessing (`cargo xtask data stats`).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Size and shape of one side (raw or processed) of a dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    pub users: usize,
    pub items: usize,
    pub interactions: usize,
    /// Share of items whose source has a non-empty title.
    pub titled_items_fraction: f64,
    /// Interactions per user (for processed data: train + valid + test).
    pub mean_history_length: f64,
    /// interactions / (users × items).
    pub density: f64,
}

impl Counts {
    pub fn new(users: usize, items: usize, interactions: usize, titled: usize) -> Self {
        let ratio = |a: usize, b: f64| if b > 0.0 { a as f64 / b } else { 0.0 };
        Self {
            users,
            items,
            interactions,
            titled_items_fraction: ratio(titled, items as f64),
            mean_history_length: ratio(interactions, users as f64),
            density: ratio(interactions, users as f64 * items as f64),
        }
    }
}

/// Everything `stats` reports. `skipped` counts rows dropped by documented rules (for example
/// ratings below `min_rating`, metadata rows for items nobody rated), so nothing vanishes silently.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetStats {
    pub name: String,
    pub checksum: String,
    pub k_core: u32,
    pub raw: Counts,
    pub processed: Counts,
    /// Repeated (user, item) pairs dropped, keeping the earliest.
    pub duplicates_removed: u64,
    /// Interactions removed by the iterative k-core, and the number of passes it took.
    pub kcore_removed: u64,
    pub kcore_passes: u32,
    pub skipped: BTreeMap<String, u64>,
}

/// The table `cargo xtask data stats` prints: raw beside processed, then what was dropped.
impl std::fmt::Display for DatasetStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sum = self.checksum.get(..16).unwrap_or(&self.checksum);
        writeln!(f, "{} (k-core {}, checksum {sum})", self.name, self.k_core)?;
        writeln!(
            f,
            "{:<10} {:>9} {:>9} {:>13} {:>7} {:>9} {:>9}",
            "", "users", "items", "interactions", "titled", "mean len", "density"
        )?;
        for (label, c) in [("raw", &self.raw), ("processed", &self.processed)] {
            writeln!(
                f,
                "{:<10} {:>9} {:>9} {:>13} {:>6.1}% {:>9.1} {:>9.5}",
                label,
                c.users,
                c.items,
                c.interactions,
                100.0 * c.titled_items_fraction,
                c.mean_history_length,
                c.density
            )?;
        }
        write!(
            f,
            "duplicates removed {}, k-core removed {} in {} passes",
            self.duplicates_removed, self.kcore_removed, self.kcore_passes
        )?;
        for (why, n) in &self.skipped {
            write!(f, "\nskipped {why}: {n}")?;
        }
        Ok(())
    }
}
