//! Finding the provider's real submit limit from its 429s.
//!
//! Owns: the search for the slowest spacing factor that stays under the provider's limit (a
//! factor of the configured spacing: 1.0 is the configured rate, 2.0 half of it), and telling a
//! limit being crossed from refusals that come whatever the rate (noise).
//!
//! May not: pause calls (a 429's `Retry-After` is honoured by [`super::pacing`]), or read the
//! clock itself: callers pass `now`, so it runs on tokio's clock with the rest of the pacing.
//!
//! How: a 429 that follows too many others in the recent answers marks the current factor as
//! crossing, and the stage slows to twice it, or to the middle (geometric) of the crossing
//! factor and the fastest factor seen safe. A factor is safe after [`SAFE_RUN`] accepted answers
//! with no more 429s than the noise. Between a crossing and a safe factor the search halves the
//! gap each step until they are within [`MARGIN`], then stays on the safe side. After
//! [`REPROBE_AFTER`] without a 429 it tries one step faster, and keeps stepping while those
//! steps stay safe, so a limit the provider raised is found again; a 429 ends the probe. (The
//! crossing bound used to drift faster with every accepted call: on a second run, which starts
//! at the limit the first learned, that cost one or two one-second pauses a minute.) Noise: if the
//! doublings reach the slowest factor and the 429s still come, slowing down is not what ends
//! them: their share is learned as noise and the factor goes back to where the doublings began.

use std::collections::VecDeque;

use tokio::time::Instant;

/// The slowest the search goes, relative to the configured rate.
pub const MAX_FACTOR: f64 = 64.0;
/// How many answers the share of 429s is taken over.
const WINDOW: usize = 40;
/// Answers needed before a share of 429s can mark a crossing.
const MIN_ANSWERS: usize = 4;
/// Answers at a factor (with no more 429s among them than the noise) that make it safe.
pub const SAFE_RUN: u32 = 20;
/// A share of 429s this much above the noise is a limit being crossed.
const OVER_NOISE: f64 = 0.08;
/// The search stops when the safe factor is within this of the crossing one.
const MARGIN: f64 = 1.04;
/// How far a factor that was safe and then crossed steps back.
const STEP_BACK: f64 = 1.08;
/// How long the search stays on a safe factor without a 429 before it tries one step faster.
pub const REPROBE_AFTER: std::time::Duration = std::time::Duration::from_secs(600);

#[derive(Debug)]
pub struct LimitSearch {
    factor: f64,
    /// The slowest factor seen crossing the limit.
    crossing: Option<f64>,
    /// The fastest factor seen safe.
    safe: Option<f64>,
    recent: VecDeque<bool>,
    /// Answers since the factor last changed.
    clean: u32,
    noise: f64,
    /// Where a run of slowdowns with no safe factor in between began.
    doubling_from: Option<f64>,
    /// 429s before this answer calls sent before the last change.
    calm_until: Option<Instant>,
    learned: Option<f64>,
    /// The factor the provider's own headers named: never searched faster than.
    told: Option<f64>,
    /// Since when no 429 (or change of the crossing bound) has come.
    quiet_since: Option<Instant>,
    /// A step faster than the crossing bound is being tried (after [`REPROBE_AFTER`]).
    reprobing: bool,
}

impl Default for LimitSearch {
    fn default() -> Self {
        LimitSearch {
            factor: 1.0,
            crossing: None,
            safe: None,
            recent: VecDeque::with_capacity(WINDOW),
            clean: 0,
            noise: 0.0,
            doubling_from: None,
            calm_until: None,
            learned: None,
            told: None,
            quiet_since: None,
            reprobing: false,
        }
    }
}

impl LimitSearch {
    pub fn factor(&self) -> f64 {
        self.factor
    }

    /// Start at a factor learned in an earlier run (as safe; faster is tried in time).
    pub fn start_from(&mut self, factor: f64) {
        self.factor = factor.clamp(1.0, MAX_FACTOR);
        self.safe = Some(self.factor);
        self.crossing = Some(self.factor / MARGIN);
    }

    /// The provider named its limit (rate-limit headers): go there at once, and search no faster
    /// (its 429s may still slow the stage down, if the headers said too much).
    pub fn told(&mut self, factor: f64) {
        let factor = factor.clamp(1.0, MAX_FACTOR);
        if self.told == Some(factor) {
            return;
        }
        self.told = Some(factor);
        self.factor = factor;
        self.safe = Some(factor);
        self.crossing = None;
        self.learned = Some(factor);
    }

    /// A safe factor found since last asked, to be remembered.
    pub fn take_learned(&mut self) -> Option<f64> {
        self.learned.take()
    }

    fn share(&self) -> f64 {
        let refused = self.recent.iter().filter(|r| **r).count();
        refused as f64 / self.recent.len().max(1) as f64
    }

    fn note(&mut self, refused: bool) {
        if self.recent.len() == WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(refused);
    }

    fn set(&mut self, factor: f64, calm_until: Instant) {
        self.factor = factor.clamp(1.0, MAX_FACTOR);
        self.recent.clear();
        self.clean = 0;
        self.calm_until = Some(calm_until);
    }

    /// A 429 came; calls sent before `calm_until` went out at the old factor.
    pub fn refused(&mut self, now: Instant, calm_until: Instant) {
        self.note(true);
        self.clean += 1;
        self.quiet_since = Some(now);
        self.reprobing = false;
        if self.calm_until.is_some_and(|c| c > now) {
            return;
        }
        let refusals = self.recent.iter().filter(|r| **r).count();
        let share = self.share();
        // Known noise is judged over a fuller window: a few answers say little about a share.
        let needed = if self.noise > 0.0 {
            WINDOW / 2
        } else {
            MIN_ANSWERS
        };
        if self.recent.len() < needed || refusals < 2 || share <= self.noise + OVER_NOISE {
            return;
        }
        let from = *self.doubling_from.get_or_insert(self.factor);
        if self.factor >= MAX_FACTOR {
            // The slowest rate did not end them: the provider refuses this share anyway.
            self.noise = share.min(0.9);
            self.doubling_from = None;
            self.crossing = None;
            self.safe = None;
            self.set(from, calm_until);
            return;
        }
        self.crossing = Some(self.crossing.map_or(self.factor, |c| c.max(self.factor)));
        let next = match self.safe {
            // Between this crossing and the safe factor: halve the gap.
            Some(safe) if safe > self.factor * MARGIN => (self.factor * safe).sqrt(),
            // A factor once safe crossed: the limit moved a little, step back a little.
            Some(safe) => safe.max(self.factor) * STEP_BACK,
            None => self.factor * 2.0,
        };
        if self.safe.is_some_and(|s| s <= self.factor * MARGIN) {
            self.safe = None;
        }
        self.set(next, calm_until);
    }

    /// A call was accepted.
    pub fn accepted(&mut self, now: Instant) {
        self.note(false);
        self.clean += 1;
        let quiet_since = *self.quiet_since.get_or_insert(now);
        if self.clean < SAFE_RUN || self.share() > self.noise + OVER_NOISE {
            return;
        }
        // Long quiet, or a step faster just found safe: one more step faster.
        let step_held = self.reprobing && self.clean == SAFE_RUN;
        if let Some(c) = self.crossing
            && (step_held || now.duration_since(quiet_since) >= REPROBE_AFTER)
            && self.told.is_none()
        {
            self.crossing = Some(c / MARGIN);
            self.quiet_since = Some(now);
            self.reprobing = true;
        }
        // This factor is safe: the slowdowns (if any) ended the 429s.
        self.doubling_from = None;
        if self.safe.is_none_or(|s| self.factor < s) {
            self.safe = Some(self.factor);
            if self.factor > 1.0 {
                self.learned = Some(self.factor);
            }
        }
        let next = match self.crossing {
            Some(c) if self.factor > c * MARGIN => (self.factor * c).sqrt().max(c * MARGIN),
            Some(_) => return,
            // Nothing crossed: the configured rate (or the one named) is not over the limit.
            None => 1.0,
        }
        .max(self.told.unwrap_or(1.0));
        if next < self.factor {
            self.set(next, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The provider refuses a call sent faster than `limit` (a factor), with `noise` refused
    /// anyway every `1/noise` calls; answers `calls` calls at the search's current factor.
    fn provider(search: &mut LimitSearch, limit: f64, noise: u32, calls: u32) -> (u32, u32) {
        let now = Instant::now();
        let (mut accepted, mut refused) = (0, 0);
        for i in 0..calls {
            let noisy = noise > 0 && i % noise == 0;
            if search.factor() < limit || noisy {
                refused += 1;
                search.refused(now, now);
            } else {
                accepted += 1;
                search.accepted(now);
            }
        }
        (accepted, refused)
    }

    #[test]
    fn ten_times_over_the_limit_converges_just_under_it() {
        let mut search = LimitSearch::default();
        let (_, refused) = provider(&mut search, 10.0, 0, 2000);
        let f = search.factor();
        assert!((10.0..10.0 * MARGIN * MARGIN).contains(&f), "{f}");
        // A few per step of the search (each step is judged on four answers).
        assert!(refused < 80, "{refused} refused while searching");
        assert!(search.take_learned().is_some());
        // Settled: few 429s from here on (the bound drifts, so one now and then).
        let (_, refused) = provider(&mut search, 10.0, 0, 2000);
        assert!(refused <= 20, "{refused} refused once settled");
    }

    #[test]
    fn a_second_run_at_the_learned_limit_pays_no_429_and_a_raised_limit_is_found_again() {
        let mut search = LimitSearch::default();
        provider(&mut search, 10.0, 0, 2000);
        let learned = search.take_learned().unwrap();
        // A second run starts where the first settled, and stays there.
        let mut again = LimitSearch::default();
        again.start_from(learned);
        let (_, refused) = provider(&mut again, 10.0, 0, 3000);
        assert_eq!(refused, 0, "a second run within minutes probes nothing");
        // The provider raises its limit (a factor of 5 is twice as fast as 10); after a long
        // quiet the search steps faster while the steps stay safe.
        let mut now = Instant::now();
        let mut refused = 0;
        for _ in 0..2000 {
            now += std::time::Duration::from_secs(1);
            if again.factor() < 5.0 {
                refused += 1;
                again.refused(now, now);
            } else {
                again.accepted(now);
            }
        }
        let f = again.factor();
        assert!((5.0..5.0 * MARGIN * MARGIN).contains(&f), "{f}");
        assert!(
            refused <= 10,
            "{refused} refused while finding the raised limit"
        );
    }

    #[test]
    fn a_limit_the_provider_names_is_taken_at_once_and_not_searched_past() {
        let mut search = LimitSearch::default();
        search.told(2.0);
        assert_eq!(search.factor(), 2.0);
        assert_eq!(search.take_learned(), Some(2.0));
        let (_, refused) = provider(&mut search, 2.0, 0, 2000);
        assert_eq!(refused, 0, "never faster than named");
        assert_eq!(search.factor(), 2.0);
    }

    #[test]
    fn a_configured_rate_under_the_limit_is_never_slowed() {
        let mut search = LimitSearch::default();
        provider(&mut search, 0.5, 0, 1000);
        assert_eq!(search.factor(), 1.0);
        assert!(search.take_learned().is_none());
    }

    #[test]
    fn refusals_whatever_the_rate_are_learned_as_noise_and_do_not_slow() {
        let mut search = LimitSearch::default();
        // Three in ten refused, at any factor.
        let noisy = |search: &mut LimitSearch, calls| {
            let now = Instant::now();
            for i in 0..calls {
                if i % 10 < 3 {
                    search.refused(now, now);
                } else {
                    search.accepted(now);
                }
            }
        };
        noisy(&mut search, 300);
        noisy(&mut search, 2000);
        assert_eq!(search.factor(), 1.0, "back at the configured rate");
        assert!(search.noise >= 0.25, "{}", search.noise);
    }
}
