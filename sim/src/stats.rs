//! Small statistics for summarising replications: the mean, the sample standard deviation, Student's
//! t confidence interval for a mean, and the Wilson score interval for a proportion.
//!
//! All intervals are two-sided at 95 %. Depends on nothing.

/// The 0.975 quantile of the standard normal distribution.
pub const Z_975: f64 = 1.959_963_984_540_054;

/// The 0.975 quantile of Student's t distribution for 1 to 30 degrees of freedom (index 0 is df 1).
const T_975_TABLE: [f64; 30] = [
    12.706_204_736,
    4.302_652_730,
    3.182_446_305,
    2.776_445_105,
    2.570_581_836,
    2.446_911_851,
    2.364_624_252,
    2.306_004_135,
    2.262_157_163,
    2.228_138_852,
    2.200_985_160,
    2.178_812_830,
    2.160_368_656,
    2.144_786_688,
    2.131_449_546,
    2.119_905_299,
    2.109_815_578,
    2.100_922_040,
    2.093_024_054,
    2.085_963_447,
    2.079_613_845,
    2.073_873_068,
    2.068_657_610,
    2.063_898_562,
    2.059_538_553,
    2.055_529_439,
    2.051_830_516,
    2.048_407_142,
    2.045_229_642,
    2.042_272_456,
];

/// The arithmetic mean. Panics on an empty slice: a mean of nothing is a programming error.
pub fn mean(samples: &[f64]) -> f64 {
    assert!(!samples.is_empty(), "the mean of no samples is undefined");
    samples.iter().sum::<f64>() / samples.len() as f64
}

/// The sample standard deviation (divisor n - 1). Needs at least two samples.
pub fn sample_sd(samples: &[f64]) -> f64 {
    assert!(
        samples.len() >= 2,
        "a sample standard deviation needs two samples"
    );
    let centre = mean(samples);
    let squares: f64 = samples.iter().map(|x| (x - centre) * (x - centre)).sum();
    let variance = squares / (samples.len() - 1) as f64;
    assert!(variance >= 0.0);
    variance.sqrt()
}

/// The 0.975 quantile of Student's t with `degrees_of_freedom` degrees of freedom: exact to nine
/// decimals up to 30 from a table, and from the Cornish-Fisher expansion (Abramowitz and Stegun
/// 26.7.5, four terms) beyond, which is within 1e-6 there.
pub fn t_975(degrees_of_freedom: u64) -> f64 {
    assert!(
        degrees_of_freedom >= 1,
        "Student's t needs at least one degree of freedom"
    );
    if degrees_of_freedom <= T_975_TABLE.len() as u64 {
        return T_975_TABLE[degrees_of_freedom as usize - 1];
    }
    let nu = degrees_of_freedom as f64;
    let z = Z_975;
    let z3 = z.powi(3);
    let z5 = z.powi(5);
    let z7 = z.powi(7);
    let z9 = z.powi(9);
    let g1 = (z3 + z) / 4.0;
    let g2 = (5.0 * z5 + 16.0 * z3 + 3.0 * z) / 96.0;
    let g3 = (3.0 * z7 + 19.0 * z5 + 17.0 * z3 - 15.0 * z) / 384.0;
    let g4 = (79.0 * z9 + 776.0 * z7 + 1482.0 * z5 - 1920.0 * z3 - 945.0 * z) / 92_160.0;
    let quantile = z + g1 / nu + g2 / nu.powi(2) + g3 / nu.powi(3) + g4 / nu.powi(4);
    assert!(quantile > z);
    quantile
}

/// The mean of `samples` and its 95 % Student's t confidence interval `[low, high]`.
///
/// With a single sample the interval is unbounded (`[-inf, inf]`): one replication says nothing about
/// its own spread. Panics on an empty slice.
pub fn mean_ci95(samples: &[f64]) -> (f64, [f64; 2]) {
    let centre = mean(samples);
    if samples.len() == 1 {
        return (centre, [f64::NEG_INFINITY, f64::INFINITY]);
    }
    let count = samples.len() as u64;
    let standard_error = sample_sd(samples) / (count as f64).sqrt();
    let half_width = t_975(count - 1) * standard_error;
    assert!(half_width >= 0.0 || half_width.is_nan());
    (centre, [centre - half_width, centre + half_width])
}

/// The 95 % Wilson score interval for a proportion of `successes` out of `trials`.
///
/// Unlike the normal approximation it stays inside [0, 1] and is sensible at 0 or `trials`
/// successes. With no trials nothing is known and the interval is `[0, 1]`.
pub fn wilson_ci95(successes: u64, trials: u64) -> [f64; 2] {
    assert!(
        successes <= trials,
        "{successes} successes out of {trials} trials"
    );
    if trials == 0 {
        return [0.0, 1.0];
    }
    let n = trials as f64;
    let proportion = successes as f64 / n;
    let z2 = Z_975 * Z_975;
    let denominator = 1.0 + z2 / n;
    let centre = (proportion + z2 / (2.0 * n)) / denominator;
    let spread = (proportion * (1.0 - proportion) / n + z2 / (4.0 * n * n)).sqrt();
    let half_width = Z_975 * spread / denominator;
    // At 0 or `trials` successes the exact endpoint is 0 or 1; pin it against rounding.
    let low = if successes == 0 {
        0.0
    } else {
        (centre - half_width).max(0.0)
    };
    let high = if successes == trials {
        1.0
    } else {
        (centre + half_width).min(1.0)
    };
    assert!(low <= proportion && proportion <= high);
    [low, high]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(actual: f64, expected: f64, tolerance: f64) -> bool {
        (actual - expected).abs() <= tolerance
    }

    #[test]
    fn mean_and_sd_of_known_samples() {
        let samples = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0];
        assert_eq!(mean(&samples), 5.0);
        // Sum of squared deviations is 32, so the n - 1 variance is 32 / 7.
        assert!(close(sample_sd(&samples), (32.0f64 / 7.0).sqrt(), 1e-12));
    }

    #[test]
    #[should_panic(expected = "undefined")]
    fn mean_of_nothing_is_a_bug() {
        mean(&[]);
    }

    #[test]
    fn t_table_and_expansion_agree_with_published_quantiles() {
        let published = [
            (1, 12.706_205),
            (4, 2.776_445),
            (19, 2.093_024),
            (30, 2.042_272),
            (31, 2.039_513),
            (40, 2.021_075),
            (60, 2.000_298),
            (120, 1.979_930),
            (1000, 1.962_339),
        ];
        for (df, quantile) in published {
            assert!(
                close(t_975(df), quantile, 2e-6),
                "df {df}: {} vs {quantile}",
                t_975(df)
            );
        }
        // The expansion joins the table smoothly and decreases towards the normal quantile.
        let table_30 = t_975(30);
        let expansion_30 = {
            let nu = 30.0;
            let z = Z_975;
            z + (z.powi(3) + z) / (4.0 * nu)
                + (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / (96.0 * nu * nu)
        };
        assert!(close(table_30, expansion_30, 1e-4));
        assert!(t_975(1_000_000) > Z_975);
        assert!(close(t_975(1_000_000), Z_975, 1e-5));
    }

    #[test]
    fn mean_ci95_of_one_to_five() {
        let (centre, [low, high]) = mean_ci95(&[1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(centre, 3.0);
        // sd = sqrt(2.5), standard error = sqrt(0.5), t(4) = 2.776445105.
        let half_width = 2.776_445_105 * 0.5f64.sqrt();
        assert!(close(low, 3.0 - half_width, 1e-9), "{low}");
        assert!(close(high, 3.0 + half_width, 1e-9), "{high}");
    }

    #[test]
    fn mean_ci95_of_constant_samples_is_a_point() {
        let (centre, interval) = mean_ci95(&[1.5; 10]);
        assert_eq!(centre, 1.5);
        assert_eq!(interval, [1.5, 1.5]);
    }

    #[test]
    fn mean_ci95_of_one_sample_is_unbounded() {
        let (centre, [low, high]) = mean_ci95(&[4.0]);
        assert_eq!(centre, 4.0);
        assert_eq!(low, f64::NEG_INFINITY);
        assert_eq!(high, f64::INFINITY);
    }

    #[test]
    fn wilson_interval_known_values() {
        let [low, high] = wilson_ci95(5, 10);
        assert!(close(low, 0.236_593, 1e-6), "{low}");
        assert!(close(high, 0.763_407, 1e-6), "{high}");
        let [low, high] = wilson_ci95(0, 10);
        assert_eq!(low, 0.0);
        assert!(close(high, 0.277_533, 1e-6), "{high}");
        let [low, high] = wilson_ci95(10, 10);
        assert!(close(low, 0.722_467, 1e-6), "{low}");
        assert_eq!(high, 1.0);
        assert_eq!(wilson_ci95(0, 0), [0.0, 1.0]);
    }

    #[test]
    fn wilson_interval_narrows_with_more_trials() {
        let [low_small, high_small] = wilson_ci95(30, 100);
        let [low_large, high_large] = wilson_ci95(3000, 10_000);
        assert!(high_large - low_large < high_small - low_small);
        assert!(low_large < 0.3 && 0.3 < high_large);
    }
}
