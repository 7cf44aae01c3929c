//! Finding the provider's real submit limit from its 429s.
//!
//! Owns: the search for the slowest spacing factor that stays under the provider's limit (a
//! factor of the configured spacing: 1.0 is the configured rate, 2.0 half of it), and telling a
//! limit being crossed from refusals that come whatever the rate (noise).
//!
//! May not: pause calls (a 429's `Retry-After` is honoured by [`super::pacing`]), or read the
//! clock itself: callers pass `now`, so it runs on tokio's clock with the rest of the pacing.
//!
//! How: the first 429 of a search that knows nothing yet slows the stage by [`FIRST_SLOWDOWN`]
//! and descends from there (below). Later, a 429 that follows too many others in the recent
//! answers marks the current factor as crossing. With no factor known safe, the stage slows to [`SLOWDOWN`] times it and descends
//! from there (a chirp): every accepted answer brings the next call [`CHIRP_STEP`] closer,
//! until one is refused. The limit then lies near that call (one call's timing on a loaded
//! machine says only so much), so the stage settles [`STEP_BACK`] slower and comes closer
//! again as answers there stay accepted. One 429 ends the descent, where a bisection from the
//! first crossing paid two per step, each a `Retry-After` pause of every submit. Crossings
//! near a limit a descent found step back by [`STEP_BACK`], twice as far each time in a row.
//! With a factor known safe, a crossing is bisected towards it (the middle, geometric, of the
//! two), and a factor once safe that crosses steps back by [`STEP_BACK`]. A factor is safe
//! after [`SAFE_RUN`] accepted answers with no more 429s than the noise. After
//! [`REPROBE_AFTER`] without a 429 it tries one step faster, and keeps stepping while those
//! steps stay safe, so a limit the provider raised is found again; a 429 ends the probe.
//! Noise: if slowdowns in a row reach [`NOISE_AFTER`] times slower and the 429s still come,
//! slowing down is not what ends them: their share is learned as noise and the factor goes
//! back to where the slowdowns began. While noise is known, and from the third slowdown in a
//! row, a descent is not tried (any call may end it, and it would look like a limit found).

use std::collections::VecDeque;

use tokio::time::Instant;

/// The slowest the search goes, relative to the configured rate.
pub const MAX_FACTOR: f64 = 256.0;
/// How much a crossing with no safe factor known slows the stage, before it descends again.
const SLOWDOWN: f64 = 4.0;
/// How much the first 429 of a search that knows nothing yet slows the stage, which descends
/// from there at once: a limit within this of the configured rate is then found with two 429s
/// (this one and the one that ends the descent), where judging a share first cost a second
/// `Retry-After` pause and a descent from [`SLOWDOWN`]. A first 429 that was noise costs only
/// the descent back.
const FIRST_SLOWDOWN: f64 = 3.0;
/// Calls the descent that follows the first 429 must have had accepted for the 429 that ends
/// it to place the limit: refusals that come whatever the rate (a storm) end it sooner, and
/// are then judged as any 429.
const FIRST_FOUND_AFTER: u32 = 4;
/// Slowdowns in a row that reach this much slower without ending the 429s make them noise.
const NOISE_AFTER: f64 = 32.0;
/// Slowdowns in a row after which the stage no longer descends from the next one: a third in a
/// row is likely a storm, and a descent it ends early would look like a limit found.
const DESCENTS_IN_A_ROW: u32 = 2;
/// How much faster each accepted answer makes the next call, while descending.
const CHIRP_STEP: f64 = 1.02;
/// How many answers the share of 429s is taken over.
const WINDOW: usize = 40;
/// Answers needed before a share of 429s can mark a crossing.
const MIN_ANSWERS: usize = 4;
/// Answers at a factor (with no more 429s among them than the noise) that make it safe.
pub const SAFE_RUN: u32 = 20;
/// A share of 429s this much above the noise is a limit being crossed.
const OVER_NOISE: f64 = 0.08;
/// The search stops when the safe factor is within this of the crossing one.
const MARGIN: f64 = 1.03;
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
    /// Where a run of slowdowns with no safe factor in between began, and how many so far.
    doubling_from: Option<f64>,
    /// The factor before the first 429's slowdown: slowdowns that follow it count from there.
    first_from: Option<f64>,
    /// The descent under way is the one the first 429 began.
    first_chirp: bool,
    in_a_row: u32,
    /// A descent ended at the limit: crossings near it step back, in growing steps.
    near: bool,
    /// When the factor last changed: a 429 for a call sent before it says nothing new.
    changed_at: Option<Instant>,
    learned: Option<f64>,
    /// The factor the provider's own headers named: never searched faster than.
    told: Option<f64>,
    /// Since when no 429 (or change of the crossing bound) has come.
    quiet_since: Option<Instant>,
    /// A step faster than the crossing bound is being tried (after [`REPROBE_AFTER`]).
    reprobing: bool,
    /// Descending towards the limit (a chirp): the calls accepted since it began.
    chirp: Option<u32>,
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
            first_from: None,
            first_chirp: false,
            in_a_row: 0,
            near: false,
            changed_at: None,
            learned: None,
            told: None,
            quiet_since: None,
            reprobing: false,
            chirp: None,
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
        self.chirp = None;
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

    fn set(&mut self, factor: f64, now: Instant) {
        self.recent.clear();
        self.move_to(factor, now);
    }

    /// Change the factor and keep the recent answers: a descent that begins here may end at
    /// its first call, and that call's 429 is judged with the ones that began it.
    fn move_to(&mut self, factor: f64, now: Instant) {
        self.factor = factor.clamp(1.0, MAX_FACTOR);
        self.clean = 0;
        self.changed_at = Some(now);
    }

    /// A 429 came for a call sent at `sent`.
    pub fn refused(&mut self, now: Instant, sent: Instant) {
        self.note(true);
        self.clean += 1;
        self.quiet_since = Some(now);
        self.reprobing = false;
        if self.changed_at.is_some_and(|c| sent < c) {
            // It went out at the old factor.
            return;
        }
        // The first call after a `Retry-After` pause finds the provider's allowance refilled:
        // a descent ended by the call after it found nothing.
        let least = if std::mem::take(&mut self.first_chirp) {
            FIRST_FOUND_AFTER
        } else {
            1
        };
        if self.chirp.take().is_some_and(|accepted| accepted > least) {
            // The descent reached the limit: it lies between this call and the one before, as
            // far as the timing of calls on a loaded machine lets one call tell (a call sent on
            // time arrives a few milliseconds early or late, so the one before is not known
            // safe either). Settle back from it; answers there bring the stage closer again,
            // no closer than `MARGIN` from the one before (see `accepted`).
            self.crossing = Some(self.factor * CHIRP_STEP);
            self.safe = None;
            self.near = true;
            self.set(self.factor * CHIRP_STEP * STEP_BACK, now);
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
            if refusals == 1 && self.knows_nothing() {
                self.first_from = Some(self.factor);
                self.move_to(self.factor * FIRST_SLOWDOWN, now);
                self.chirp = Some(0);
                self.first_chirp = true;
            }
            return;
        }
        self.crossed(share, now);
    }

    /// Nothing learned yet: no factor seen safe or crossing, no noise, nothing named, and
    /// still at the configured rate (a run that starts from a learned limit knows it safe).
    fn knows_nothing(&self) -> bool {
        self.factor == 1.0
            && self.safe.is_none()
            && self.crossing.is_none()
            && self.told.is_none()
            && self.noise == 0.0
            && self.doubling_from.is_none()
            && self.first_from.is_none()
            && self.chirp.is_none()
    }

    /// The 429s say a limit is being crossed at this factor (or, slowed as far as it goes,
    /// that they are noise).
    fn crossed(&mut self, share: f64, now: Instant) {
        let first = self.first_from.take();
        let from = *self
            .doubling_from
            .get_or_insert(first.unwrap_or(self.factor));
        let in_a_row = self.in_a_row;
        self.in_a_row += 1;
        if self.factor >= (from * NOISE_AFTER).min(MAX_FACTOR) {
            // Slowing down this far did not end them: the provider refuses this share anyway.
            self.noise = share.min(0.9);
            self.doubling_from = None;
            self.in_a_row = 0;
            self.near = false;
            self.crossing = None;
            self.safe = None;
            self.set(from, now);
            return;
        }
        self.crossing = Some(self.crossing.map_or(self.factor, |c| c.max(self.factor)));
        match self.safe {
            // Between this crossing and the safe factor: halve the gap.
            Some(safe) if safe > self.factor * MARGIN => self.set((self.factor * safe).sqrt(), now),
            // A factor once safe crossed: the limit moved a little, step back a little.
            Some(safe) => {
                if safe <= self.factor * MARGIN {
                    self.safe = None;
                }
                self.set(safe.max(self.factor) * STEP_BACK, now);
            }
            // Near a limit a descent found: step back, twice as far each time in a row (a
            // storm's 429s keep coming, and the steps soon reach the noise).
            None if self.near => self.set(self.factor * STEP_BACK.powi(1 << in_a_row.min(6)), now),
            // Nothing known: well under the limit, then descend to it.
            None => {
                self.move_to(self.factor * SLOWDOWN, now);
                self.chirp = (self.noise == 0.0 && in_a_row < DESCENTS_IN_A_ROW).then_some(0);
            }
        }
    }

    /// While descending, an accepted call brings the next one closer; the descent stops at the
    /// crossing bound (or the rate configured or named), which is then judged as any factor.
    /// Whether a descent took the answer.
    fn descend(&mut self) -> bool {
        let Some(accepted) = self.chirp.as_mut() else {
            return false;
        };
        *accepted += 1;
        let floor = self
            .crossing
            .map_or(1.0, |c| c * MARGIN)
            .max(self.told.unwrap_or(1.0));
        self.factor = (self.factor / CHIRP_STEP).max(floor);
        if self.factor <= floor {
            self.chirp = None;
            self.first_chirp = false;
            self.recent.clear();
            self.clean = 0;
        }
        true
    }

    /// A call was accepted.
    pub fn accepted(&mut self, now: Instant) {
        self.note(false);
        self.clean += 1;
        let quiet_since = *self.quiet_since.get_or_insert(now);
        if self.descend() {
            return;
        }
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
        self.first_from = None;
        self.in_a_row = 0;
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
mod tests;
