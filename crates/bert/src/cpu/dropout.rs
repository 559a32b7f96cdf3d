//! Inverted dropout whose mask is a pure function of a seed and the element index, so a
//! backward pass recomputes it instead of storing it, and a seed replays the same masks.

use rayon::prelude::*;

/// SplitMix64's finalizer: a well-mixed 64-bit hash of `x`.
#[inline(always)]
pub(crate) const fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The mask of inverted dropout with probability `p`: element `i` is kept when the top 32 bits
/// of `mix(mix(seed) ^ i)` reach `p · 2³²`, and kept elements are scaled by `1/(1−p)`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DropoutMask {
    key: u64,
    threshold: u64,
    scale: f32,
    active: bool,
}

impl DropoutMask {
    /// The mask of probability `p` (0: keeps everything) under `seed`.
    pub(crate) fn new(p: f32, seed: u64) -> Self {
        Self {
            key: mix(seed),
            threshold: (f64::from(p) * (1u64 << 32) as f64) as u64,
            scale: 1.0 / (1.0 - p),
            active: p > 0.0,
        }
    }

    /// No dropout.
    pub(crate) const NONE: Self = Self {
        key: 0,
        threshold: 0,
        scale: 1.0,
        active: false,
    };

    /// Whether the mask drops anything at all.
    #[inline(always)]
    pub(crate) fn is_active(&self) -> bool {
        self.active
    }

    /// The factor element `index` is multiplied by: 0 or 1/(1−p) (1 when inactive).
    #[inline(always)]
    pub(crate) fn factor(&self, index: usize) -> f32 {
        if !self.active {
            1.0
        } else if (mix(self.key ^ index as u64) >> 32) >= self.threshold {
            self.scale
        } else {
            0.0
        }
    }

    /// `x ← x ⊙ mask` for a buffer whose first element has index 0.
    pub(crate) fn apply(&self, x: &mut [f32]) {
        if !self.active {
            return;
        }
        const CHUNK: usize = 1 << 14;
        x.par_chunks_mut(CHUNK).enumerate().for_each(|(c, x)| {
            for (i, v) in x.iter_mut().enumerate() {
                *v *= self.factor(c * CHUNK + i);
            }
        });
    }

    /// The factors of elements `0..len`.
    pub(crate) fn factors(&self, len: usize) -> Vec<f32> {
        let mut out = vec![1f32; len];
        self.apply(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mask_drops_p_of_the_values_scales_the_rest_and_replays_from_its_seed() {
        let mask = DropoutMask::new(0.1, 7);
        let f = mask.factors(100_000);
        let dropped = f.iter().filter(|&&v| v == 0.0).count() as f64 / f.len() as f64;
        assert!((dropped - 0.1).abs() < 0.01, "dropped {dropped}");
        assert!(f.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.9).abs() < 1e-6));
        assert_eq!(f, DropoutMask::new(0.1, 7).factors(100_000));
        assert_ne!(f, DropoutMask::new(0.1, 8).factors(100_000));
        assert!(DropoutMask::NONE.factors(10).iter().all(|&v| v == 1.0));
    }
}
