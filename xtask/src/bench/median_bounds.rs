//! Distribution-free confidence bounds on a median (the sign test's interval).
//!
//! Why: the slowdown is the median of per-round ratios. How far the untraced runs spread from
//! one round to the next (minutes apart, on a VM whose host speed drifts) says how noisy one
//! run is, not how uncertain the median of paired ratios is, and it does not shrink with more
//! rounds. The sign test's bounds do: with n independent rounds, the true median lies above
//! the k-th smallest value unless at least n − k + 1 of the n values fall above it, which for
//! a median happens with probability P(Binomial(n, ½) ≤ k − 1). No normality is assumed, and
//! one freak round moves the bound by one rank, not by its size.

/// One-sided confidence of each bound.
pub const CONFIDENCE: f64 = 0.95;

/// Bounds on the median of `values`, each holding with [`CONFIDENCE`]: the median is at least
/// `lower`, and (separately) at most `upper`.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Bounds {
    pub lower: f64,
    pub upper: f64,
}

impl Bounds {
    /// To a tenth, as the tables print them (judge on the bounds themselves, not on these).
    pub fn to_tenth(self) -> Bounds {
        let tenth = |v: f64| (v * 10.0).round() / 10.0;
        Bounds {
            lower: tenth(self.lower),
            upper: tenth(self.upper),
        }
    }
}

/// P(Binomial(n, ½) ≤ k).
fn binomial_half_cdf(n: usize, k: usize) -> f64 {
    let mut term = 0.5f64.powi(n as i32); // C(n, 0) / 2^n
    let mut sum = term;
    for i in 1..=k.min(n) {
        term *= (n - i + 1) as f64 / i as f64;
        sum += term;
    }
    sum
}

/// The bounds, or None when there are too few values for any bound at this confidence (four
/// or fewer at 95%: even the smallest of four is above the median with probability 1/16).
pub fn median_bounds(values: &[f64]) -> Option<Bounds> {
    let n = values.len();
    let alpha = 1.0 - CONFIDENCE;
    // The largest rank k (1-based) with P(Bin(n, ½) ≤ k − 1) ≤ alpha.
    let k = (1..=n)
        .take_while(|k| binomial_half_cdf(n, k - 1) <= alpha)
        .last()?;
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    Some(Bounds {
        lower: sorted[k - 1],
        upper: sorted[n - k],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binomial_tail() {
        assert_eq!(binomial_half_cdf(5, 0), 1.0 / 32.0);
        assert_eq!(binomial_half_cdf(8, 1), 9.0 / 256.0);
        assert!((binomial_half_cdf(10, 10) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn four_rounds_bound_nothing() {
        assert_eq!(median_bounds(&[1.0, 2.0, 3.0, 4.0]), None);
        assert_eq!(median_bounds(&[]), None);
    }

    #[test]
    fn five_to_seven_rounds_bound_by_the_extremes() {
        // 1/32 = 3.1% ≤ 5%: the smallest and largest of five are the bounds.
        let b = median_bounds(&[0.99, 0.862, 1.025, 0.963, 0.977]).unwrap();
        assert_eq!((b.lower, b.upper), (0.862, 1.025));
        // Seven: P(≤1) = 8/128 = 6.25% > 5%, still the extremes.
        let seven = [7.0, 1.0, 6.0, 2.0, 5.0, 3.0, 4.0];
        let b = median_bounds(&seven).unwrap();
        assert_eq!((b.lower, b.upper), (1.0, 7.0));
    }

    #[test]
    fn eight_rounds_drop_one_freak_round_each_side() {
        // P(Bin(8, ½) ≤ 1) = 9/256 = 3.5% ≤ 5%: the second smallest and second largest.
        let v = [0.5, 0.97, 0.98, 0.99, 1.0, 1.01, 1.02, 9.0];
        let b = median_bounds(&v).unwrap();
        assert_eq!((b.lower, b.upper), (0.97, 1.02));
    }

    #[test]
    fn twenty_rounds() {
        // P(Bin(20, ½) ≤ 5) = 2.07%, ≤ 6 = 5.77%: the 6th value from each end.
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        let b = median_bounds(&v).unwrap();
        assert_eq!((b.lower, b.upper), (6.0, 15.0));
    }
}
