//! Pearson and Spearman correlation, as scipy computes them.

/// Pearson's r of two equal-length samples, accumulated in f64.
///
/// `None` when the lengths differ, there are fewer than 2 points, a value is NaN or infinite,
/// or either sample is constant (scipy returns NaN there; we make the caller decide).
pub fn pearson(x: &[f64], y: &[f64]) -> Option<f64> {
    if x.len() != y.len() || x.len() < 2 || !x.iter().chain(y).all(|v| v.is_finite()) {
        return None;
    }
    let n = x.len() as f64;
    let mx = x.iter().sum::<f64>() / n;
    let my = y.iter().sum::<f64>() / n;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        let (dx, dy) = (a - mx, b - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx == 0.0 || syy == 0.0 {
        return None;
    }
    Some((sxy / (sxx.sqrt() * syy.sqrt())).clamp(-1.0, 1.0))
}

/// Ranks from 1, ties sharing the average of their ranks (scipy's `rankdata(method="average")`).
/// NaN values are ranked last, like the largest values.
pub fn average_ranks(x: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut ranks = vec![0.0; x.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && x[order[j + 1]] == x[order[i]] {
            j += 1;
        }
        // Positions i..=j (0-based) hold equal values: each gets the mean rank (i+1 + j+1) / 2.
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = rank;
        }
        i = j + 1;
    }
    ranks
}

/// Spearman's ρ: Pearson's r of the average ranks. `None` as for [`pearson`].
pub fn spearman(x: &[f64], y: &[f64]) -> Option<f64> {
    // Ranks would turn a NaN into a plausible rank: refuse it here.
    if x.len() != y.len() || !x.iter().chain(y).all(|v| v.is_finite()) {
        return None;
    }
    pearson(&average_ranks(x), &average_ranks(y))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn pearson_by_hand() {
        // x = 1..5, y = 2, 4, 5, 4, 5: mean 4, Σdxdy = 6, Σdx² = 10, Σdy² = 6 → 6/√60.
        let r = pearson(&[1., 2., 3., 4., 5.], &[2., 4., 5., 4., 5.]).expect("r");
        assert!(close(r, 6.0 / 60f64.sqrt()), "{r}");
        assert!(close(
            pearson(&[1., 2., 3.], &[3., 2., 1.]).expect("r"),
            -1.0
        ));
    }

    #[test]
    fn ranks_average_ties() {
        assert_eq!(
            average_ranks(&[10., 20., 20., 5., 20.]),
            vec![2., 4., 4., 1., 4.]
        );
        assert_eq!(average_ranks(&[1., 1.]), vec![1.5, 1.5]);
    }

    #[test]
    fn spearman_by_hand_with_ties() {
        // x ranks: 1, 2.5, 2.5, 4; y ranks: 1, 2, 3, 4.
        // dx = -1.5, 0, 0, 1.5; dy = -1.5, -0.5, 0.5, 1.5 → Σdxdy = 4.5, Σdx² = 4.5, Σdy² = 5.
        let rho = spearman(&[1., 2., 2., 3.], &[10., 20., 30., 40.]).expect("rho");
        assert!(close(rho, 4.5 / (4.5f64 * 5.0).sqrt()), "{rho}");
        // Monotone but nonlinear: ρ = 1 while r < 1.
        let x = [1., 2., 3., 4., 5.];
        let y = [1., 8., 27., 64., 125.];
        assert!(close(spearman(&x, &y).expect("rho"), 1.0));
        assert!(pearson(&x, &y).expect("r") < 0.99);
    }

    #[test]
    fn degenerate_inputs_are_none_not_nan() {
        assert!(pearson(&[1.], &[2.]).is_none());
        assert!(pearson(&[1., 1., 1.], &[1., 2., 3.]).is_none());
        assert!(spearman(&[1., 2.], &[1.]).is_none());
        assert!(spearman(&[], &[]).is_none());
        assert!(spearman(&[1., f64::NAN, 3.], &[1., 2., 3.]).is_none());
        assert!(pearson(&[1., 2., f64::INFINITY], &[1., 2., 3.]).is_none());
    }
}
