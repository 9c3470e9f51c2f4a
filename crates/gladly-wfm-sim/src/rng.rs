//! A tiny deterministic PRNG (SplitMix64) and id helpers: same seed, same bytes, on any machine.

use base64::Engine;
use sha2::{Digest, Sha256};

#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator derived from a seed and a path of labels, so each agent-day has its own stream
    /// and adding agents never changes another agent's data.
    pub fn derive(seed: u64, parts: &[&str]) -> Rng {
        let mut h = Sha256::new();
        h.update(seed.to_le_bytes());
        for p in parts {
            h.update(p.as_bytes());
            h.update([0u8]);
        }
        let d = h.finalize();
        Rng(u64::from_le_bytes(d[..8].try_into().unwrap()))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }

    /// Uniform in [lo, hi] (inclusive).
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            return lo;
        }
        lo + (self.next_u64() % ((hi - lo + 1) as u64)) as i64
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next_u64() % items.len() as u64) as usize]
    }

    /// A Gladly-shaped id: 22 characters of URL-safe base64 (16 random bytes).
    pub fn id(&mut self) -> String {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.next_u64().to_le_bytes());
        b[8..].copy_from_slice(&self.next_u64().to_le_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    }
}
