//! The task book: every task the simulator accepted, its lifecycle, and its bill.
//!
//! Owns: [`Book`] (tasks by id and by idempotency key, the in-flight set, the account's spend,
//! the generated clips deduplicated by content), admission of a new task (idempotency replay,
//! in-flight cap, balance), the lifecycle computed from the simulator's clock, and refunds.
//!
//! May not: do I/O or hold anything across an `.await`: the server keeps the book behind a
//! `std::sync::Mutex` and every method here is quick.
//!
//! The lifecycle is not driven by timers: a task knows when it was created and when it ends,
//! and its phase is read off the clock (`tokio::time::Instant`, so tests may pause it). Tasks
//! that have ended are settled lazily (a failed one is refunded) each time the book is used.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::config::Phase;
use super::ledger::{Ledger, LedgerEntry};
use crate::media::Orientation;
use crate::pricing::Mode;

/// Why a task ended `failed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: &'static str,
    pub message: String,
}

/// Everything needed to create a task, checked and measured by the submit handler.
#[derive(Debug, Clone)]
pub struct NewTask {
    pub model: String,
    pub mode: Mode,
    pub orientation: Orientation,
    pub sound: bool,
    pub prompt: Option<String>,
    pub image_url: String,
    pub video_url: String,
    pub idempotency_key: Option<String>,
    pub billed_seconds: u64,
    pub credits: u64,
    /// The generated clip (the reference video's own bytes); `None` when it could not be fetched.
    pub clip: Option<Bytes>,
    pub generation: Duration,
    /// Known at submission (an input could not be fetched): the task ends failed with this.
    pub failure: Option<Failure>,
}

#[derive(Debug)]
pub struct Task {
    pub id: String,
    pub model: String,
    pub mode: Mode,
    pub orientation: Orientation,
    pub sound: bool,
    pub prompt: Option<String>,
    pub image_url: String,
    pub video_url: String,
    pub idempotency_key: Option<String>,
    pub billed_seconds: u64,
    pub credits: u64,
    pub refunded: bool,
    pub created: Instant,
    pub ends: Instant,
    pub failure: Option<Failure>,
    clip: Option<[u8; 32]>,
    /// Download attempts so far (a changed body differs on each one).
    pub downloads: u64,
}

impl Task {
    /// The phase and progress (0-100) at `now`.
    pub fn phase(&self, now: Instant) -> (Phase, u8) {
        if now >= self.ends {
            return match self.failure {
                Some(_) => (Phase::Failed, 100),
                None => (Phase::Completed, 100),
            };
        }
        let total = (self.ends - self.created).as_secs_f64();
        let done = (now.saturating_duration_since(self.created)).as_secs_f64() / total;
        // The first fifth of the time is spent queued, like a gateway waiting for a worker.
        if done < 0.2 {
            (Phase::Pending, 0)
        } else {
            (Phase::Processing, ((done * 100.0) as u8).clamp(1, 99))
        }
    }
}

/// The answer to an admission request.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    /// A new task was created and billed: its index.
    Created(usize),
    /// The idempotency key was seen before: the first task's index, nothing billed.
    Replayed(usize),
    /// Too many tasks in flight; the earliest one ends after this long.
    InFlightFull(Duration),
    /// The account cannot pay for it.
    NoCredit { needed: u64, left: u64 },
}

/// Every task, in order of creation.
#[derive(Debug)]
pub struct Book {
    tag: u32,
    tasks: Vec<Task>,
    by_id: HashMap<String, usize>,
    by_key: HashMap<String, usize>,
    /// Tasks not yet ended, by end time: the in-flight count and the refund queue.
    in_flight: BTreeSet<(Instant, usize)>,
    clips: HashMap<[u8; 32], Bytes>,
    /// Net credits spent (billed minus refunded), for the balance check.
    spent: u64,
}

/// Limits that apply at admission.
#[derive(Debug, Clone, Copy)]
pub struct AdmitRules {
    pub honour_idempotency: bool,
    pub max_in_flight: Option<u32>,
    pub credit_balance: Option<u64>,
}

impl Book {
    /// `tag` makes ids differ between simulator runs, so a clip from one run is never
    /// mistaken for a task of another.
    pub fn new(tag: u32) -> Book {
        Book {
            tag,
            tasks: Vec::new(),
            by_id: HashMap::new(),
            by_key: HashMap::new(),
            in_flight: BTreeSet::new(),
            clips: HashMap::new(),
            spent: 0,
        }
    }

    /// Settle every task that has ended by `now`: failed ones are refunded.
    /// Net credits spent so far (billed minus refunded), refunds due by `now` applied.
    pub fn spent(&mut self, now: Instant) -> u64 {
        self.settle(now);
        self.spent
    }

    pub fn settle(&mut self, now: Instant) {
        while let Some(&(ends, idx)) = self.in_flight.first() {
            if ends > now {
                break;
            }
            self.in_flight.pop_first();
            let task = &mut self.tasks[idx];
            if task.failure.is_some() && task.credits > 0 && !task.refunded {
                task.refunded = true;
                self.spent -= task.credits;
            }
        }
    }

    /// The task an idempotency key already names, if keys are honoured.
    pub fn replay(&self, key: Option<&str>, honour: bool) -> Option<usize> {
        if !honour {
            return None;
        }
        self.by_key.get(key?).copied()
    }

    /// Tasks pending or processing at `now`, and how long until the earliest one ends.
    pub fn in_flight(&mut self, now: Instant) -> (usize, Duration) {
        self.settle(now);
        let next = self
            .in_flight
            .first()
            .map_or(Duration::ZERO, |(ends, _)| *ends - now);
        (self.in_flight.len(), next)
    }

    /// Create and bill a task if the rules allow it.
    pub fn admit(&mut self, now: Instant, new: NewTask, rules: AdmitRules) -> Admit {
        self.settle(now);
        if let Some(idx) = self.replay(new.idempotency_key.as_deref(), rules.honour_idempotency) {
            return Admit::Replayed(idx);
        }
        if let Some(cap) = rules.max_in_flight
            && self.in_flight.len() >= cap as usize
        {
            let (_, wait) = self.in_flight(now);
            return Admit::InFlightFull(wait);
        }
        if let Some(balance) = rules.credit_balance
            && self.spent + new.credits > balance
        {
            return Admit::NoCredit {
                needed: new.credits,
                left: balance.saturating_sub(self.spent),
            };
        }
        let idx = self.tasks.len();
        let id = format!("sim-{:08x}-{:06}", self.tag, idx + 1);
        let clip = new.clip.map(|bytes| {
            let hash: [u8; 32] = Sha256::digest(&bytes).into();
            self.clips.entry(hash).or_insert(bytes);
            hash
        });
        let ends = now + new.generation;
        if let Some(key) = &new.idempotency_key {
            // Only the first task under a key is remembered: with keys ignored, repeats bill again.
            self.by_key.entry(key.clone()).or_insert(idx);
        }
        self.by_id.insert(id.clone(), idx);
        self.spent += new.credits;
        self.tasks.push(Task {
            id,
            model: new.model,
            mode: new.mode,
            orientation: new.orientation,
            sound: new.sound,
            prompt: new.prompt,
            image_url: new.image_url,
            video_url: new.video_url,
            idempotency_key: new.idempotency_key,
            billed_seconds: new.billed_seconds,
            credits: new.credits,
            refunded: false,
            created: now,
            ends,
            failure: new.failure,
            clip,
            downloads: 0,
        });
        self.in_flight.insert((ends, idx));
        self.settle(now);
        Admit::Created(idx)
    }

    /// Make a task end failed (an injected provider failure). A task that already ended is
    /// refunded at once; one still running is refunded when it ends.
    pub fn fail(&mut self, idx: usize, failure: Failure, now: Instant) {
        let task = &mut self.tasks[idx];
        task.failure = Some(failure);
        if task.ends <= now && task.credits > 0 && !task.refunded {
            task.refunded = true;
            self.spent -= task.credits;
        }
    }

    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.by_id.get(id).copied()
    }

    pub fn task(&self, idx: usize) -> &Task {
        &self.tasks[idx]
    }

    /// The clip of a task and its download attempt number (counted).
    pub fn download(&mut self, idx: usize) -> Option<(Bytes, u64)> {
        let task = &mut self.tasks[idx];
        let hash = task.clip?;
        task.downloads += 1;
        let attempt = task.downloads;
        self.clips.get(&hash).map(|b| (b.clone(), attempt))
    }

    pub fn ledger(&mut self, now: Instant) -> Ledger {
        self.settle(now);
        Ledger::from_entries(
            self.tasks
                .iter()
                .map(|t| LedgerEntry {
                    task_id: t.id.clone(),
                    idempotency_key: t.idempotency_key.clone(),
                    model: t.model.clone(),
                    mode: t.mode.as_str().to_owned(),
                    billed_seconds: t.billed_seconds,
                    credits: t.credits,
                    refunded: t.refunded,
                    image_url: t.image_url.clone(),
                    video_url: t.video_url.clone(),
                    prompt: t.prompt.clone(),
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_task(key: Option<&str>, credits: u64, fail: bool) -> NewTask {
        NewTask {
            model: "kling-v3-motion-control".into(),
            mode: Mode::Std,
            orientation: Orientation::Video,
            sound: true,
            prompt: None,
            image_url: "http://x/i.png".into(),
            video_url: "http://x/v.mp4".into(),
            idempotency_key: key.map(str::to_owned),
            billed_seconds: 5,
            credits,
            clip: Some(Bytes::from_static(b"clip")),
            generation: Duration::from_secs(10),
            failure: fail.then(|| Failure {
                code: "GENERATION_FAILED",
                message: "boom".into(),
            }),
        }
    }

    const OPEN: AdmitRules = AdmitRules {
        honour_idempotency: true,
        max_in_flight: None,
        credit_balance: None,
    };

    #[test]
    fn lifecycle_runs_pending_processing_completed_and_failed_tasks_are_refunded() {
        let mut book = Book::new(1);
        let now = Instant::now();
        let Admit::Created(ok) = book.admit(now, new_task(None, 566, false), OPEN) else {
            panic!()
        };
        let Admit::Created(bad) = book.admit(now, new_task(None, 566, true), OPEN) else {
            panic!()
        };
        assert_eq!(book.task(ok).phase(now), (Phase::Pending, 0));
        let mid = now + Duration::from_secs(5);
        assert_eq!(book.task(ok).phase(mid), (Phase::Processing, 50));
        assert_eq!(book.ledger(mid).totals.refunded_credits, 0);
        let end = now + Duration::from_secs(10);
        assert_eq!(book.task(ok).phase(end).0, Phase::Completed);
        assert_eq!(book.task(bad).phase(end).0, Phase::Failed);
        let ledger = book.ledger(end);
        assert_eq!(ledger.totals.billed_credits, 1132);
        assert_eq!(ledger.totals.net_credits, 566);
        assert!(ledger.entries[1].refunded);
    }

    #[test]
    fn keys_replay_when_honoured_and_bill_again_when_ignored() {
        let mut book = Book::new(1);
        let now = Instant::now();
        let first = book.admit(now, new_task(Some("k"), 566, false), OPEN);
        assert_eq!(first, Admit::Created(0));
        assert_eq!(
            book.admit(now, new_task(Some("k"), 566, false), OPEN),
            Admit::Replayed(0)
        );
        let ignore = AdmitRules {
            honour_idempotency: false,
            ..OPEN
        };
        assert_eq!(
            book.admit(now, new_task(Some("k"), 566, false), ignore),
            Admit::Created(1)
        );
        assert_eq!(book.ledger(now).totals.billed_tasks, 2);
        assert_eq!(book.clips.len(), 1, "same clip bytes are stored once");
    }

    #[test]
    fn the_in_flight_cap_and_the_balance_refuse_without_billing() {
        let mut book = Book::new(1);
        let now = Instant::now();
        let rules = AdmitRules {
            max_in_flight: Some(1),
            credit_balance: Some(1000),
            ..OPEN
        };
        assert_eq!(
            book.admit(now, new_task(None, 566, false), rules),
            Admit::Created(0)
        );
        assert_eq!(
            book.admit(now, new_task(None, 566, false), rules),
            Admit::InFlightFull(Duration::from_secs(10))
        );
        let later = now + Duration::from_secs(10);
        assert_eq!(
            book.admit(later, new_task(None, 566, false), rules),
            Admit::NoCredit {
                needed: 566,
                left: 434
            }
        );
        assert_eq!(book.ledger(later).totals.billed_tasks, 1);
    }

    #[test]
    fn a_failure_decided_after_creation_is_refunded_even_if_the_task_already_ended() {
        let mut book = Book::new(1);
        let now = Instant::now();
        let mut instant = new_task(None, 566, false);
        instant.generation = Duration::ZERO;
        let Admit::Created(idx) = book.admit(now, instant, OPEN) else {
            panic!()
        };
        let boom = Failure {
            code: "GENERATION_FAILED",
            message: "boom".into(),
        };
        book.fail(idx, boom, now);
        assert_eq!(book.task(idx).phase(now).0, Phase::Failed);
        assert_eq!(book.ledger(now).totals.net_credits, 0);
    }
}
