//! What the simulator reports about itself: the billing ledger and the request statistics.
//!
//! Owns: the snapshot types [`Ledger`], [`LedgerEntry`], [`Stats`], [`FaultCounts`] (served as
//! JSON at `/sim/ledger` and `/sim/stats`, and returned by the handle), and the live counters
//! behind [`Stats`].
//!
//! May not: decide anything. Bills are made in `tasks.rs` (one entry per accepted task, the
//! task is the single source of truth); this file only adds them up.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use super::faults::{FaultKind, FaultPlan};

/// One accepted submission and what it cost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub task_id: String,
    /// The `Idempotency-Key` header the submit carried, if any.
    pub idempotency_key: Option<String>,
    pub model: String,
    pub mode: String,
    /// Probed duration rounded up to whole seconds (0 when the input could not be fetched).
    pub billed_seconds: u64,
    pub credits: u64,
    /// The task failed and its credits were given back.
    pub refunded: bool,
    pub image_url: String,
    pub video_url: String,
    /// The submit's prompt: with the image, what tells one clip of a subject from another.
    #[serde(default)]
    pub prompt: Option<String>,
}

/// Sums over the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LedgerTotals {
    /// Credits charged, refunded ones included.
    pub billed_credits: u64,
    pub refunded_credits: u64,
    /// What the account really paid: billed minus refunded.
    pub net_credits: u64,
    /// Tasks charged more than zero credits, refunded ones included.
    pub billed_tasks: u64,
    /// Tasks charged and not refunded.
    pub net_tasks: u64,
}

/// A snapshot of the billing ledger.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Ledger {
    pub entries: Vec<LedgerEntry>,
    pub totals: LedgerTotals,
}

impl Ledger {
    pub fn from_entries(entries: Vec<LedgerEntry>) -> Ledger {
        let mut totals = LedgerTotals::default();
        for e in &entries {
            totals.billed_credits += e.credits;
            if e.credits > 0 {
                totals.billed_tasks += 1;
            }
            if e.refunded {
                totals.refunded_credits += e.credits;
            } else if e.credits > 0 {
                totals.net_tasks += 1;
            }
        }
        totals.net_credits = totals.billed_credits - totals.refunded_credits;
        Ledger { entries, totals }
    }

    /// Entries that carried this idempotency key.
    pub fn with_key<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a LedgerEntry> + 'a {
        self.entries
            .iter()
            .filter(move |e| e.idempotency_key.as_deref() == Some(key))
    }
}

/// How many times each fault fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FaultCounts {
    pub task_failure: u64,
    pub submit_5xx: u64,
    pub submit_reset: u64,
    pub ambiguous_submit: u64,
    pub poll_5xx: u64,
    pub poll_reset: u64,
    pub slow_answer: u64,
    pub truncated_download: u64,
    pub changed_download: u64,
    pub expired_link: u64,
    pub malformed_json: u64,
    pub unknown_status: u64,
    pub submit_429: u64,
}

/// Request statistics: what was accepted, refused, and injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Stats {
    /// Submits that created a task.
    pub submits_accepted: u64,
    /// Submits answered with an earlier task because of a repeated `Idempotency-Key`.
    pub submits_replayed: u64,
    pub rejected_400: u64,
    pub rejected_401: u64,
    pub rejected_402: u64,
    /// Submits refused by the per-minute rate limit.
    pub rate_limited_429: u64,
    /// Submits refused because too many tasks were in flight (also a 429).
    pub in_flight_refused_429: u64,
    /// Submits that arrived before the end of a `Retry-After` the simulator had given (any
    /// 429's): a client that honours `Retry-After` sends none.
    pub submits_before_retry_after: u64,
    /// Tasks that failed because an input URL could not be fetched.
    pub fetch_failures: u64,
    pub polls: u64,
    pub polls_unknown_404: u64,
    /// Clip download requests (expired ones included).
    pub downloads: u64,
    pub downloads_expired: u64,
    pub media_requests: u64,
    pub faults: FaultCounts,
    /// API calls answered 503 because they came during `--fault-outage`.
    #[serde(default)]
    pub outage_calls: u64,
    /// Of those, submits.
    #[serde(default)]
    pub outage_submits: u64,
    /// How long after the outage ended the first submit was accepted, in milliseconds.
    #[serde(default)]
    pub first_accept_after_outage_ms: Option<u64>,
}

/// Live counters; [`Counters::snapshot`] turns them into [`Stats`].
#[derive(Debug, Default)]
pub struct Counters {
    pub submits_accepted: AtomicU64,
    pub submits_replayed: AtomicU64,
    pub rejected_400: AtomicU64,
    pub rejected_401: AtomicU64,
    pub rejected_402: AtomicU64,
    pub rate_limited_429: AtomicU64,
    pub in_flight_refused_429: AtomicU64,
    pub submits_before_retry_after: AtomicU64,
    pub fetch_failures: AtomicU64,
    pub polls: AtomicU64,
    pub polls_unknown_404: AtomicU64,
    pub downloads: AtomicU64,
    pub downloads_expired: AtomicU64,
    pub media_requests: AtomicU64,
    pub outage_calls: AtomicU64,
    pub outage_submits: AtomicU64,
    /// `first_accept_after_outage_ms` plus one (0: none yet).
    pub first_accept_after_outage: AtomicU64,
}

/// Add one to a counter.
pub fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    pub fn snapshot(&self, faults: &FaultPlan) -> Stats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let f = |k| faults.fired(k);
        Stats {
            submits_accepted: get(&self.submits_accepted),
            submits_replayed: get(&self.submits_replayed),
            rejected_400: get(&self.rejected_400),
            rejected_401: get(&self.rejected_401),
            rejected_402: get(&self.rejected_402),
            rate_limited_429: get(&self.rate_limited_429),
            in_flight_refused_429: get(&self.in_flight_refused_429),
            submits_before_retry_after: get(&self.submits_before_retry_after),
            fetch_failures: get(&self.fetch_failures),
            polls: get(&self.polls),
            polls_unknown_404: get(&self.polls_unknown_404),
            downloads: get(&self.downloads),
            downloads_expired: get(&self.downloads_expired),
            media_requests: get(&self.media_requests),
            faults: FaultCounts {
                task_failure: f(FaultKind::TaskFailure),
                submit_5xx: f(FaultKind::Submit5xx),
                submit_reset: f(FaultKind::SubmitReset),
                ambiguous_submit: f(FaultKind::AmbiguousSubmit),
                poll_5xx: f(FaultKind::Poll5xx),
                poll_reset: f(FaultKind::PollReset),
                slow_answer: f(FaultKind::SlowAnswer),
                truncated_download: f(FaultKind::TruncatedDownload),
                changed_download: f(FaultKind::ChangedDownload),
                expired_link: f(FaultKind::ExpiredLink),
                malformed_json: f(FaultKind::MalformedJson),
                unknown_status: f(FaultKind::UnknownStatus),
                submit_429: f(FaultKind::Submit429),
            },
            outage_calls: get(&self.outage_calls),
            outage_submits: get(&self.outage_submits),
            first_accept_after_outage_ms: get(&self.first_accept_after_outage).checked_sub(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, credits: u64, refunded: bool) -> LedgerEntry {
        LedgerEntry {
            prompt: None,
            task_id: id.into(),
            idempotency_key: Some(format!("k-{id}")),
            model: "kling-v3-motion-control".into(),
            mode: "std".into(),
            billed_seconds: 5,
            credits,
            refunded,
            image_url: "i".into(),
            video_url: "v".into(),
        }
    }

    #[test]
    fn totals_net_out_refunds_and_skip_unbilled_tasks() {
        let ledger = Ledger::from_entries(vec![
            entry("a", 566, false),
            entry("b", 566, true),
            entry("c", 0, false),
            entry("d", 755, false),
        ]);
        assert_eq!(
            ledger.totals,
            LedgerTotals {
                billed_credits: 566 + 566 + 755,
                refunded_credits: 566,
                net_credits: 566 + 755,
                billed_tasks: 3,
                net_tasks: 2,
            }
        );
        assert_eq!(ledger.with_key("k-b").count(), 1);
    }
}
