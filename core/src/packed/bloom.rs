//! A Bloom filter over the raw keys of one run, kept in memory so that a lookup skips a
//! run without reading it. Keys are keccak256 digests (uniform), so the probe positions
//! come straight from the hash bytes (Kirsch–Mitzenmacher double hashing); no extra
//! hashing is needed.

use super::codec::{put_u32, put_u64, RawKey, Reader};
use crate::store::StoreError;

/// A fixed-size Bloom filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bloom {
    /// The bit array, 64 bits a word.
    words: Vec<u64>,
    /// Probes per key.
    k: u32,
}

impl Bloom {
    /// A filter sized for `n` keys at `bits_per_key` bits each (false-positive rate about
    /// 0.6^bits_per_key: ~1 % at 10 bits).
    pub fn with_capacity(n: usize, bits_per_key: usize) -> Self {
        let bits = (n.max(1) * bits_per_key.max(1)).max(64);
        let k = ((bits_per_key as f64) * std::f64::consts::LN_2)
            .round()
            .clamp(1.0, 16.0) as u32;
        Bloom {
            words: vec![0; bits.div_ceil(64)],
            k,
        }
    }

    /// The two base hashes of a key: two words of its digest, the kind folded in.
    fn base(key: &RawKey) -> (u64, u64) {
        let word = |i: usize| u64::from_le_bytes(key[i..i + 8].try_into().expect("8 bytes"));
        let h1 = word(1) ^ u64::from(key[0]).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let h2 = word(9).rotate_left(u32::from(key[0]) * 7) | 1;
        (h1, h2)
    }

    /// The bit positions probed for `key`.
    fn probes(key: &RawKey, k: u32, words: usize) -> impl Iterator<Item = usize> {
        let (h1, h2) = Self::base(key);
        let bits = (words * 64) as u64;
        (0..u64::from(k)).map(move |i| (h1.wrapping_add(i.wrapping_mul(h2)) % bits) as usize)
    }

    /// Adds `key`.
    pub fn insert(&mut self, key: &RawKey) {
        for bit in Self::probes(key, self.k, self.words.len()) {
            self.words[bit / 64] |= 1 << (bit % 64);
        }
    }

    /// False when `key` is certainly absent.
    pub fn may_contain(&self, key: &RawKey) -> bool {
        Self::probes(key, self.k, self.words.len())
            .all(|bit| self.words[bit / 64] & (1 << (bit % 64)) != 0)
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.words.len() * 8
    }

    /// Appends the filter: probes (u32), words (u32), then the words.
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_u32(out, self.k);
        put_u32(out, self.words.len() as u32);
        for w in &self.words {
            put_u64(out, *w);
        }
    }

    /// Reads a filter written by [`Bloom::encode`].
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, StoreError> {
        let k = r.u32()?;
        let n = r.u32()? as usize;
        if k == 0 || k > 64 || n == 0 {
            return Err(super::codec::malformed("bloom filter"));
        }
        let words = r.bytes(
            n.checked_mul(8)
                .ok_or_else(|| super::codec::malformed("bloom filter"))?,
        )?;
        let words = words
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect();
        Ok(Bloom { words, k })
    }
}
