//! A prompt-prefix cache like OpenAI's automatic one: a prompt of at least `min_tokens`
//! tokens is cached in steps of `step_tokens`, and a later prompt of the same model that starts
//! with a cached prefix reports that prefix's length in `usage.prompt_tokens_details.
//! cached_tokens`. Tokens are the simulator's ≈ four characters, counted over every message
//! (role and content) in order, so a shared instruction and history at the front is what
//! hits.

use std::collections::HashSet;

use sha2::{Digest, Sha256};

/// Where the prefix cache starts and how fine it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefixCacheConfig {
    /// Prompts shorter than this are never cached (OpenAI: 1,024).
    pub min_tokens: u64,
    /// Cached prefixes grow in steps of this many tokens (OpenAI: 128).
    pub step_tokens: u64,
}

impl Default for PrefixCacheConfig {
    /// OpenAI's published behaviour.
    fn default() -> Self {
        Self {
            min_tokens: 1024,
            step_tokens: 128,
        }
    }
}

pub(crate) struct PrefixCache {
    cfg: PrefixCacheConfig,
    /// Truncated sha256 of (model, prefix) for every cached prefix.
    seen: HashSet<[u8; 16]>,
}

impl PrefixCache {
    pub(crate) fn new(cfg: PrefixCacheConfig) -> Self {
        Self {
            cfg,
            seen: HashSet::new(),
        }
    }

    /// The cached tokens of this prompt; then caches its prefixes for later prompts.
    pub(crate) fn lookup_and_insert(
        &mut self,
        model: &str,
        transcript: &str,
        prompt_tokens: u64,
    ) -> u64 {
        let step = self.cfg.step_tokens.max(1);
        if prompt_tokens < self.cfg.min_tokens.max(1) {
            return 0;
        }
        let mut h = Sha256::new();
        h.update(model.as_bytes());
        h.update([0]);
        let mut next = self.cfg.min_tokens.max(1);
        let mut chars = 0u64;
        let mut hit = 0;
        let mut buf = [0u8; 4];
        for c in transcript.chars() {
            h.update(c.encode_utf8(&mut buf).as_bytes());
            chars += 1;
            if chars == next * 4 {
                let d = h.clone().finalize();
                let mut k = [0u8; 16];
                k.copy_from_slice(&d[..16]);
                if !self.seen.insert(k) {
                    hit = next;
                }
                next += step;
                if next > prompt_tokens {
                    break;
                }
            }
        }
        hit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_front_hits_in_steps() {
        let mut c = PrefixCache::new(PrefixCacheConfig {
            min_tokens: 4,
            step_tokens: 2,
        });
        let a = "x".repeat(40);
        // 10 tokens: prefixes of 4, 6, 8, 10 tokens cached, none hit yet.
        assert_eq!(c.lookup_and_insert("m", &a, 10), 0);
        assert_eq!(c.lookup_and_insert("m", &a, 10), 10);
        // Shares the first 7 tokens (28 chars): the longest cached step within is 6.
        let b = format!("{}{}", "x".repeat(28), "y".repeat(12));
        assert_eq!(c.lookup_and_insert("m", &b, 10), 6);
        // Another model has its own cache; a short prompt is never cached.
        assert_eq!(c.lookup_and_insert("n", &a, 10), 0);
        assert_eq!(c.lookup_and_insert("m", "xxxx", 1), 0);
    }
}
