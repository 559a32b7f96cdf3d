//! Stratified k-fold splits identical to scikit-learn's
//! `StratifiedKFold(n_splits, shuffle=True, random_state=seed)`, which SentEval uses: the same
//! per-class fold sizes (round robin over the sorted classes) shuffled by numpy's legacy
//! `RandomState(seed)` (MT19937). Equal splits matter: accuracies are averaged over folds, and
//! another split of the same data moves them by tenths of a point.
//!
//! Mirrors `sklearn/model_selection/_split.py` (`StratifiedKFold._make_test_folds`, 1.x) and
//! numpy's `RandomState.shuffle` / `random_interval` (`numpy/random/mtrand.pyx`,
//! `_legacy_seeding`, `distributions.c`).

/// The Mersenne Twister MT19937, seeded as numpy's `RandomState(seed)` (Matsumoto–Nishimura
/// `init_genrand`).
#[derive(Debug, Clone)]
pub(crate) struct Mt19937 {
    state: Box<[u32; 624]>,
    next: usize,
}

impl Mt19937 {
    pub(crate) fn new(seed: u32) -> Self {
        let mut state = Box::new([0u32; 624]);
        state[0] = seed;
        for i in 1..624 {
            let prev = state[i - 1];
            state[i] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(i as u32);
        }
        Self { state, next: 624 }
    }

    fn twist(&mut self) {
        let s = &mut self.state;
        for i in 0..624 {
            let y = (s[i] & 0x8000_0000) | (s[(i + 1) % 624] & 0x7fff_ffff);
            let mut v = s[(i + 397) % 624] ^ (y >> 1);
            if y & 1 == 1 {
                v ^= 0x9908_b0df;
            }
            s[i] = v;
        }
        self.next = 0;
    }

    pub(crate) fn next_u32(&mut self) -> u32 {
        if self.next >= 624 {
            self.twist();
        }
        let mut y = self.state[self.next];
        self.next += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// A uniform integer in `0..=max` by masked rejection (numpy's legacy `random_interval`).
    fn interval(&mut self, max: u32) -> u32 {
        if max == 0 {
            return 0;
        }
        let mask = u32::MAX >> max.leading_zeros();
        loop {
            let v = self.next_u32() & mask;
            if v <= max {
                return v;
            }
        }
    }

    /// Fisher–Yates from the back, as `RandomState.shuffle` on a 1-D array.
    pub(crate) fn shuffle<T>(&mut self, xs: &mut [T]) {
        for i in (1..xs.len()).rev() {
            let j =
                self.interval(u32::try_from(i).expect("fold arrays are far below 2^32")) as usize;
            xs.swap(i, j);
        }
    }
}

/// The test fold of every sample under stratified k-fold with shuffling: sample `i` is in the
/// test set of fold `folds[i]`. `labels` in data order; `k ≥ 2`.
///
/// # Errors
/// [`FoldError`] when a class has fewer than `k` samples (scikit-learn refuses only when every
/// class has; a fold without a class skews both the penalty search and the score).
pub(crate) fn stratified_folds(
    labels: &[u32],
    k: usize,
    seed: u32,
) -> Result<Vec<usize>, FoldError> {
    // Classes numbered by first appearance, as scikit-learn's `y_encoded`.
    let mut first_seen: Vec<u32> = Vec::new();
    let encoded: Vec<usize> = labels
        .iter()
        .map(|y| match first_seen.iter().position(|c| c == y) {
            Some(i) => i,
            None => {
                first_seen.push(*y);
                first_seen.len() - 1
            }
        })
        .collect();
    let classes = first_seen.len();
    let mut counts = vec![0usize; classes];
    for &c in &encoded {
        counts[c] += 1;
    }
    if let Some((c, &n)) = counts.iter().enumerate().find(|(_, &n)| n < k) {
        return Err(FoldError {
            label: first_seen[c],
            count: n,
            folds: k,
        });
    }
    // allocation[f][c]: how many of class c fold f tests — round robin over the classes sorted.
    let mut sorted = encoded.clone();
    sorted.sort_unstable();
    let mut allocation = vec![vec![0usize; classes]; k];
    for (pos, &c) in sorted.iter().enumerate() {
        allocation[pos % k][c] += 1;
    }
    let mut rng = Mt19937::new(seed);
    let mut folds = vec![0usize; labels.len()];
    for c in 0..classes {
        let mut of_class: Vec<usize> = allocation
            .iter()
            .enumerate()
            .flat_map(|(f, per_class)| std::iter::repeat_n(f, per_class[c]))
            .collect();
        rng.shuffle(&mut of_class);
        let members = encoded.iter().enumerate().filter(|(_, &e)| e == c);
        for ((i, _), f) in members.zip(of_class) {
            folds[i] = f;
        }
    }
    Ok(folds)
}

/// A class too small for the folds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FoldError {
    pub(crate) label: u32,
    pub(crate) count: usize,
    pub(crate) folds: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mt19937_matches_the_reference_generator() {
        // The reference implementation's (and C++ std::mt19937's) 10000th output for seed 5489.
        let mut rng = Mt19937::new(5489);
        let v = (0..10_000).map(|_| rng.next_u32()).last();
        assert_eq!(v, Some(4_123_659_995));
    }

    #[test]
    fn shuffle_matches_numpy_random_state() {
        // np.random.RandomState(1111).shuffle(np.arange(20)), numpy 2.4.
        let mut xs: Vec<usize> = (0..20).collect();
        Mt19937::new(1111).shuffle(&mut xs);
        assert_eq!(
            xs,
            [19, 18, 7, 10, 3, 1, 0, 9, 16, 13, 14, 11, 15, 6, 8, 4, 2, 12, 17, 5]
        );
    }

    #[test]
    fn folds_match_scikit_learn() {
        // StratifiedKFold(3, shuffle=True, random_state=1111)._make_test_folds(X, y),
        // scikit-learn 1.9.1.
        let y = [
            1, 0, 0, 1, 2, 1, 0, 0, 1, 1, 1, 0, 2, 2, 0, 1, 0, 1, 0, 0, 1, 2, 2, 2, 1, 0, 1,
        ];
        let expected = [
            0, 2, 1, 2, 0, 2, 1, 0, 1, 0, 2, 0, 2, 2, 0, 0, 2, 1, 1, 2, 0, 0, 1, 1, 1, 2, 1,
        ];
        assert_eq!(stratified_folds(&y, 3, 1111).expect("folds"), expected);
    }

    #[test]
    fn folds_are_stratified_and_small_classes_refused() {
        let y: Vec<u32> = (0..103).map(|i| u32::from(i % 3 == 0)).collect();
        let folds = stratified_folds(&y, 10, 7).expect("folds");
        for f in 0..10 {
            let pos = (0..103).filter(|&i| folds[i] == f && y[i] == 1).count();
            let all = folds.iter().filter(|&&g| g == f).count();
            assert!(
                (3..=4).contains(&pos) && (10..=11).contains(&all),
                "fold {f}: {pos}/{all}"
            );
        }
        let err = stratified_folds(&[0, 0, 0, 1, 1], 3, 1).expect_err("class 1 has 2 < 3");
        assert_eq!(
            err,
            FoldError {
                label: 1,
                count: 2,
                folds: 3
            }
        );
    }
}
