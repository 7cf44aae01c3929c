//! Pricing: what a job may cost, as an upper bound of what the provider bills.
//!
//! Owns: the rate table (model x mode -> credits per second of source video, with the defaults
//! from `REAPI.md` and overrides from settings) and per-job and per-batch estimates.
//!
//! The provider bills per second of source video at a fractional rate and rounds the total up
//! per job. Whether it rounds the duration to whole seconds first is unknown, so an estimate
//! rounds the duration up to the next whole second, then the credits up: never below the bill.
//! Rates are kept in thousandths of a credit (1 credit = 0.001 USD) so no float rounding can
//! make an estimate come out low.

use std::collections::BTreeMap;

/// Output quality tier: `std` (720p) or `pro` (1080p).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Std,
    Pro,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Std => "std",
            Mode::Pro => "pro",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Credits are what the provider bills: 1 credit = 0.001 USD.
pub const USD_PER_CREDIT: f64 = 0.001;

/// A rate in thousandths of a credit per second (113.168 credits/s = 113_168).
pub type MilliCreditsPerSecond = u64;

/// The default rates from `REAPI.md`.
pub const DEFAULT_RATES: &[(&str, Mode, MilliCreditsPerSecond)] = &[
    ("kling-v3-motion-control", Mode::Std, 113_168),
    ("kling-v3-motion-control", Mode::Pro, 150_832),
    ("kling-v2.6-motion-control", Mode::Std, 62_832),
    ("kling-v2.6-motion-control", Mode::Pro, 100_584),
];

/// Rates by model and mode. Models missing from the table are "price unknown".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceTable {
    rates: BTreeMap<(String, Mode), MilliCreditsPerSecond>,
}

impl Default for PriceTable {
    fn default() -> Self {
        let rates = DEFAULT_RATES
            .iter()
            .map(|(model, mode, rate)| (((*model).to_owned(), *mode), *rate))
            .collect();
        PriceTable { rates }
    }
}

/// An estimate for one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Estimate {
    /// Seconds billed at most: the probed duration rounded up.
    pub billed_seconds: u64,
    pub credits: u64,
}

impl Estimate {
    pub fn usd(&self) -> f64 {
        credits_to_usd(self.credits)
    }
}

pub fn credits_to_usd(credits: u64) -> f64 {
    credits as f64 * USD_PER_CREDIT
}

/// The largest whole number of credits a budget in USD allows (rounded down: a budget is a ceiling).
pub fn usd_to_credits_floor(usd: f64) -> u64 {
    if usd <= 0.0 || !usd.is_finite() {
        return 0;
    }
    // Budgets are given with cents; round to a thousandth of a dollar first so 25.00 is 25000
    // credits and not 24999 from binary float error.
    ((usd * 1000.0) + 1e-6).floor() as u64
}

impl PriceTable {
    /// Set (or add) a rate in USD per second, as a settings file would give it.
    pub fn set_usd_per_second(&mut self, model: &str, mode: Mode, usd_per_second: f64) {
        // usd/s * 1000 credits/usd * 1000 milli = millicredits/s; round up to stay an upper bound.
        let rate = (usd_per_second * 1_000_000.0 - 1e-6).ceil().max(0.0) as u64;
        self.rates.insert((model.to_owned(), mode), rate);
    }

    pub fn rate(&self, model: &str, mode: Mode) -> Option<MilliCreditsPerSecond> {
        self.rates.get(&(model.to_owned(), mode)).copied()
    }

    pub fn knows_model(&self, model: &str) -> bool {
        self.rates.keys().any(|(m, _)| m == model)
    }

    /// Upper-bound estimate for a source video of `duration_ms`; `None` when the price is unknown.
    pub fn estimate(&self, model: &str, mode: Mode, duration_ms: u64) -> Option<Estimate> {
        let rate = self.rate(model, mode)?;
        Some(estimate_at(rate, duration_ms))
    }
}

/// Upper-bound estimate at a known rate.
pub fn estimate_at(rate: MilliCreditsPerSecond, duration_ms: u64) -> Estimate {
    let billed_seconds = duration_ms.div_ceil(1000);
    let credits = (billed_seconds * rate).div_ceil(1000);
    Estimate {
        billed_seconds,
        credits,
    }
}

/// What the provider would bill for exactly `billed_seconds` (the simulator's ledger uses this).
pub fn bill_at(rate: MilliCreditsPerSecond, billed_seconds: u64) -> u64 {
    (billed_seconds * rate).div_ceil(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_seconds_on_v3_std_is_566_credits() {
        let table = PriceTable::default();
        let e = table
            .estimate("kling-v3-motion-control", Mode::Std, 5_000)
            .unwrap();
        assert_eq!(e.billed_seconds, 5);
        assert_eq!(e.credits, 566);
        assert!((e.usd() - 0.566).abs() < 1e-9);
    }

    #[test]
    fn a_fraction_of_a_second_is_billed_as_a_whole_one() {
        let table = PriceTable::default();
        let e = table
            .estimate("kling-v3-motion-control", Mode::Std, 5_200)
            .unwrap();
        assert_eq!(e.billed_seconds, 6);
        assert_eq!(e.credits, 680); // 6 x 113.168 = 679.008, rounded up
        let e = table
            .estimate("kling-v3-motion-control", Mode::Std, 5_001)
            .unwrap();
        assert_eq!(e.billed_seconds, 6);
    }

    #[test]
    fn every_default_rate_matches_the_published_price() {
        let table = PriceTable::default();
        for (model, mode, credits_10s) in [
            ("kling-v3-motion-control", Mode::Pro, 1509), // 1508.32
            ("kling-v2.6-motion-control", Mode::Std, 629), // 628.32
            ("kling-v2.6-motion-control", Mode::Pro, 1006), // 1005.84
        ] {
            assert_eq!(
                table.estimate(model, mode, 10_000).unwrap().credits,
                credits_10s
            );
        }
    }

    #[test]
    fn unknown_models_have_no_price() {
        let table = PriceTable::default();
        assert!(table.estimate("kling-v9", Mode::Std, 5_000).is_none());
        assert!(!table.knows_model("kling-v9"));
    }

    #[test]
    fn overrides_replace_defaults_and_stay_upper_bounds() {
        let mut table = PriceTable::default();
        table.set_usd_per_second("kling-v3-motion-control", Mode::Std, 0.12);
        assert_eq!(
            table
                .estimate("kling-v3-motion-control", Mode::Std, 5_000)
                .unwrap()
                .credits,
            600
        );
        table.set_usd_per_second("kling-v9", Mode::Pro, 0.2);
        assert!(table.knows_model("kling-v9"));
    }

    #[test]
    fn budgets_round_down_to_whole_credits() {
        assert_eq!(usd_to_credits_floor(25.00), 25_000);
        assert_eq!(usd_to_credits_floor(0.57), 570);
        assert_eq!(usd_to_credits_floor(-1.0), 0);
    }

    proptest::proptest! {
        #[test]
        fn estimates_never_fall_below_the_exact_fractional_price(ms in 0u64..60_000, rate in 1u64..1_000_000) {
            let e = estimate_at(rate, ms);
            let exact = ms as f64 / 1000.0 * rate as f64 / 1000.0;
            proptest::prop_assert!(e.credits as f64 + 1e-9 >= exact);
        }
    }
}
