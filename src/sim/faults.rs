//! Fault decisions: whether the n-th opportunity of a fault fires, reproducibly from the seed.
//!
//! Owns: [`FaultKind`], the per-kind opportunity and fire counters, and the draw.
//!
//! May not: act on a decision (the handlers do) or keep any other state.
//!
//! Each kind has its own stream: opportunity n of kind k fires when n < `first`, or when a hash
//! of (seed, k, n) falls below `rate`, as long as `max` is not reached. No shared RNG state means
//! turning one fault on never shifts another's sequence, and no lock is needed; for a client that
//! sends requests one at a time the whole run is reproducible from the seed.

use std::sync::atomic::{AtomicU64, Ordering};

use super::config::{Fault, Faults};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    TaskFailure,
    Submit5xx,
    SubmitReset,
    AmbiguousSubmit,
    Poll5xx,
    PollReset,
    SlowAnswer,
    TruncatedDownload,
    ChangedDownload,
    ExpiredLink,
    MalformedJson,
    UnknownStatus,
    Submit429,
}

impl FaultKind {
    pub const ALL: [FaultKind; 13] = [
        FaultKind::TaskFailure,
        FaultKind::Submit5xx,
        FaultKind::SubmitReset,
        FaultKind::AmbiguousSubmit,
        FaultKind::Poll5xx,
        FaultKind::PollReset,
        FaultKind::SlowAnswer,
        FaultKind::TruncatedDownload,
        FaultKind::ChangedDownload,
        FaultKind::ExpiredLink,
        FaultKind::MalformedJson,
        FaultKind::UnknownStatus,
        FaultKind::Submit429,
    ];

    fn index(self) -> usize {
        self as usize
    }

    fn spec(self, faults: &Faults) -> Fault {
        match self {
            FaultKind::TaskFailure => faults.task_failure,
            FaultKind::Submit5xx => faults.submit_5xx,
            FaultKind::SubmitReset => faults.submit_reset,
            FaultKind::AmbiguousSubmit => faults.ambiguous_submit,
            FaultKind::Poll5xx => faults.poll_5xx,
            FaultKind::PollReset => faults.poll_reset,
            FaultKind::SlowAnswer => faults.slow_answer,
            FaultKind::TruncatedDownload => faults.truncated_download,
            FaultKind::ChangedDownload => faults.changed_download,
            FaultKind::ExpiredLink => faults.expired_link,
            FaultKind::MalformedJson => faults.malformed_json,
            FaultKind::UnknownStatus => faults.unknown_status,
            FaultKind::Submit429 => faults.submit_429,
        }
    }
}

/// The decisions for one simulator run.
#[derive(Debug)]
pub struct FaultPlan {
    seed: u64,
    specs: [Fault; FaultKind::ALL.len()],
    seen: [AtomicU64; FaultKind::ALL.len()],
    fired: [AtomicU64; FaultKind::ALL.len()],
}

impl FaultPlan {
    pub fn new(faults: &Faults) -> FaultPlan {
        FaultPlan {
            seed: faults.seed,
            specs: FaultKind::ALL.map(|k| k.spec(faults)),
            seen: Default::default(),
            fired: Default::default(),
        }
    }

    /// One opportunity for `kind`: does it fire? A fire is counted at once.
    pub fn roll(&self, kind: FaultKind) -> bool {
        let i = kind.index();
        let spec = self.specs[i];
        if spec.is_never() {
            return false;
        }
        let n = self.seen[i].fetch_add(1, Ordering::Relaxed);
        let fire = n < u64::from(spec.first) || unit(self.seed, i as u64, n) < spec.rate;
        if !fire {
            return false;
        }
        let max = spec.max.map_or(u64::MAX, u64::from);
        self.fired[i]
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |f| {
                (f < max).then_some(f + 1)
            })
            .is_ok()
    }

    /// How many times `kind` fired so far.
    pub fn fired(&self, kind: FaultKind) -> u64 {
        self.fired[kind.index()].load(Ordering::Relaxed)
    }
}

/// A uniform number in [0, 1) from (seed, stream, n): splitmix64 over the mixed inputs.
fn unit(seed: u64, stream: u64, n: u64) -> f64 {
    let x = splitmix64(seed ^ splitmix64(stream.wrapping_add(0x5157_u64 << 32) ^ splitmix64(n)));
    (x >> 11) as f64 / (1u64 << 53) as f64
}

pub(crate) fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(f: impl FnOnce(&mut Faults)) -> FaultPlan {
        let mut faults = Faults {
            seed: 7,
            ..Faults::default()
        };
        f(&mut faults);
        FaultPlan::new(&faults)
    }

    fn draws(plan: &FaultPlan, kind: FaultKind, n: usize) -> Vec<bool> {
        (0..n).map(|_| plan.roll(kind)).collect()
    }

    #[test]
    fn first_n_fire_then_never() {
        let p = plan(|f| f.submit_reset = Fault::first(2));
        assert_eq!(
            draws(&p, FaultKind::SubmitReset, 5),
            [true, true, false, false, false]
        );
        assert_eq!(p.fired(FaultKind::SubmitReset), 2);
        assert!(!p.roll(FaultKind::Poll5xx));
    }

    #[test]
    fn the_same_seed_gives_the_same_sequence_and_other_faults_do_not_shift_it() {
        let a = plan(|f| f.task_failure = Fault::rate(0.3));
        let b = plan(|f| {
            f.task_failure = Fault::rate(0.3);
            f.poll_5xx = Fault::rate(0.5);
        });
        let mut seq_a = Vec::new();
        let mut seq_b = Vec::new();
        for _ in 0..200 {
            seq_a.push(a.roll(FaultKind::TaskFailure));
            b.roll(FaultKind::Poll5xx);
            seq_b.push(b.roll(FaultKind::TaskFailure));
        }
        assert_eq!(seq_a, seq_b);
        let fired = seq_a.iter().filter(|x| **x).count();
        assert!((30..90).contains(&fired), "about 30% of 200, got {fired}");
    }

    #[test]
    fn max_caps_the_fires() {
        let p = plan(|f| f.expired_link = Fault::always().at_most(3));
        assert_eq!(
            draws(&p, FaultKind::ExpiredLink, 6)
                .iter()
                .filter(|x| **x)
                .count(),
            3
        );
        assert_eq!(p.fired(FaultKind::ExpiredLink), 3);
    }
}
