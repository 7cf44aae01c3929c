//! A person's steering: retry, cancel and resume, and what each would cost before it is done.
//! Nothing here runs unless a person asked; the engine never calls it.

use rusqlite::{Transaction, params};

use super::Cached;
use super::jobs::{RetrySelection, event};
use super::{Store, StoreError, now_ms};

/// What a retry or resume would send to the provider, counted before anything changes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RetryPrice {
    /// Jobs that go back to work.
    pub jobs: u64,
    /// Of those, jobs that will be submitted (a new paid task, or a re-send of an unknown one).
    pub submits: u64,
    /// Upper bound of what those submits cost, in credits.
    pub credits: u64,
    /// Of the submits, those that may bill a second time: an unknown submit re-sent to a
    /// provider that does not de-duplicate, or a lost task made again.
    pub may_bill_twice: u64,
}

/// The job states a selection sends back, as an SQL list.
fn states(which: RetrySelection) -> String {
    let mut s = Vec::new();
    for (on, state) in [
        (which.failed, "'failed'"),
        (which.rejected, "'rejected'"),
        (which.expired, "'expired'"),
        (which.unknown, "'unknown'"),
        (which.lost, "'lost'"),
    ] {
        if on {
            s.push(state);
        }
    }
    if s.is_empty() {
        "('none')".to_owned()
    } else {
        format!("({})", s.join(", "))
    }
}

impl Store {
    /// A person approved the canary's clips: the rest of the batch may be submitted. Returns
    /// how many jobs it releases.
    pub fn approve(&self, batch_id: i64) -> Result<u64, StoreError> {
        let waiting = self.batch_summary(batch_id)?.awaiting_approval;
        self.write("approve a canary", |tx| {
            tx.exec(
                "UPDATE batches SET approved = 1, updated_at = ?2 WHERE id = ?1",
                rusqlite::params![batch_id, now_ms()],
            )?;
            event(
                tx,
                Some(batch_id),
                None,
                "approved",
                &format!("a person approved the canary: {waiting} jobs may be submitted"),
            )
        })?;
        Ok(waiting)
    }

    /// What [`Store::retry`] would do, without doing it. `trust_idempotency`: the provider
    /// de-duplicates, so an unknown submit re-sent under its key cannot bill twice.
    pub fn retry_price(
        &self,
        batch_id: i64,
        which: RetrySelection,
        trust_idempotency: bool,
    ) -> Result<RetryPrice, StoreError> {
        let conn = self.conn();
        conn.row(
            &format!(
                "SELECT count(*),
                     coalesce(sum(state != 'expired' OR task_id IS NULL), 0),
                     coalesce(sum(CASE WHEN state != 'expired' OR task_id IS NULL
                         THEN coalesce(estimate_credits, 0) END), 0),
                     coalesce(sum(state = 'lost' OR (state = 'unknown' AND ?2 = 0)), 0)
                 FROM jobs WHERE batch_id = ?1 AND state IN {}",
                states(which)
            ),
            params![batch_id, trust_idempotency],
            |r| {
                Ok(RetryPrice {
                    jobs: r.get::<_, i64>(0)? as u64,
                    submits: r.get::<_, i64>(1)? as u64,
                    credits: r.get::<_, i64>(2)? as u64,
                    may_bill_twice: r.get::<_, i64>(3)? as u64,
                })
            },
        )
        .map_err(self.sql_error("price a retry"))
    }

    /// Send held jobs of a batch back to work: `failed`, `rejected` and `lost` ones as new
    /// attempts, `expired` ones to be polled for a fresh link, `unknown` ones under their same
    /// idempotency key when the provider honours keys, else as new attempts (the old one stays
    /// counted against the budget: it may have been billed).
    pub fn retry(
        &self,
        batch_id: i64,
        which: RetrySelection,
        trust_idempotency: bool,
    ) -> Result<usize, StoreError> {
        self.write("retry jobs", |tx| {
            let mut n = 0;
            let now = now_ms();
            let fresh = RetrySelection {
                failed: which.failed,
                rejected: which.rejected,
                lost: which.lost,
                ..Default::default()
            };
            // Retrying a failed job grants it a fresh set of retries: its old failed attempts
            // stay in the record but no longer count. A lost task's attempt stays `accepted`:
            // it was billed, and the budget keeps counting it.
            tx.exec(
                &format!(
                    "UPDATE attempts SET state = 'abandoned', updated_at = ?2
                     WHERE state = 'failed' AND job_id IN
                         (SELECT id FROM jobs WHERE batch_id = ?1 AND state IN {})",
                    states(fresh)
                ),
                params![batch_id, now],
            )?;
            n += tx.exec(
                &format!(
                    "UPDATE jobs SET state = 'planned', held = NULL, attempt_id = NULL,
                         task_id = NULL, clip_url = NULL, link_refreshes = 0, updated_at = ?2
                     WHERE batch_id = ?1 AND state IN {}",
                    states(fresh)
                ),
                params![batch_id, now],
            )?;
            if which.expired {
                // The task finished and was billed; only its link is gone. Ask for it again.
                n += tx.exec(
                    "UPDATE jobs SET state = 'running', next_poll_at = ?2, link_refreshes = 0,
                         updated_at = ?2 WHERE batch_id = ?1 AND state = 'expired'
                         AND task_id IS NOT NULL",
                    params![batch_id, now],
                )?;
            }
            if which.unknown {
                // Without de-duplication the old key protects nothing: the job gets a new
                // attempt, and its unknown one stays committed against the budget.
                let detach = if trust_idempotency {
                    ""
                } else {
                    ", attempt_id = NULL"
                };
                n += tx.exec(
                    &format!(
                        "UPDATE jobs SET state = 'planned', held = NULL{detach}, updated_at = ?2
                         WHERE batch_id = ?1 AND state = 'unknown'"
                    ),
                    params![batch_id, now],
                )?;
            }
            event(
                tx,
                Some(batch_id),
                None,
                "retry",
                &format!("{n} jobs sent back to work by a person"),
            )?;
            Ok(n)
        })
    }

    /// Cancel a batch: planned and unknown jobs are cancelled, and so is every job the batch
    /// gains later, until a person resumes it. Tasks already running are left to finish and
    /// their clips still downloaded, unless `abandon`, which also cancels those (their clips are
    /// never fetched; what the provider bills for them is not refunded).
    pub fn cancel(&self, batch_id: i64, abandon: bool) -> Result<usize, StoreError> {
        self.write("cancel a batch", |tx| {
            let now = now_ms();
            tx.exec(
                "UPDATE batches SET cancelled = 1, updated_at = ?2 WHERE id = ?1",
                params![batch_id, now],
            )?;
            let mut n = tx.exec(
                "UPDATE jobs SET state = 'cancelled', cancelled_by = 'person',
                     reason = 'cancelled by a person', updated_at = ?2
                 WHERE batch_id = ?1 AND state IN ('planned', 'unknown')",
                params![batch_id, now],
            )?;
            // Jobs the manifest had dropped stay the manifest's: a resume must not revive subjects
            // no manifest asks for (the batch's own flag keeps them from coming back meanwhile).
            if abandon {
                // Their attempts stay `accepted`: the provider bills them, so the budget counts them.
                n += tx.exec(
                    "UPDATE jobs SET state = 'cancelled', cancelled_by = 'person',
                         reason = 'abandoned by a person', updated_at = ?2
                     WHERE batch_id = ?1 AND state IN ('running', 'downloading')",
                    params![batch_id, now],
                )?;
            }
            event(
                tx,
                Some(batch_id),
                None,
                "cancel",
                &format!("{n} jobs cancelled by a person"),
            )?;
            Ok(n)
        })
    }

    /// What [`Store::uncancel`] would submit: the cancelled jobs that never had a task.
    pub fn uncancel_price(&self, batch_id: i64) -> Result<RetryPrice, StoreError> {
        let conn = self.conn();
        conn.row(
            "SELECT count(*), coalesce(sum(j.task_id IS NULL AND a.id IS NULL), 0),
                 coalesce(sum(CASE WHEN j.task_id IS NULL AND a.id IS NULL
                     THEN coalesce(j.estimate_credits, 0) END), 0)
             FROM jobs j LEFT JOIN attempts a ON a.id = j.attempt_id AND a.state = 'unknown'
             WHERE j.batch_id = ?1 AND j.state = 'cancelled'
                 AND coalesce(j.cancelled_by, 'person') = 'person'",
            [batch_id],
            |r| {
                Ok(RetryPrice {
                    jobs: r.get::<_, i64>(0)? as u64,
                    submits: r.get::<_, i64>(1)? as u64,
                    credits: r.get::<_, i64>(2)? as u64,
                    may_bill_twice: 0,
                })
            },
        )
        .map_err(self.sql_error("price a resume"))
    }

    /// A person resumes a cancelled batch: it may gain jobs again, and its cancelled jobs go
    /// back where they were: a task that exists is followed again (free), an unknown submit is
    /// held as unknown again (never re-sent here), and the rest are planned.
    pub fn uncancel(&self, batch_id: i64) -> Result<usize, StoreError> {
        self.write("resume a cancelled batch", |tx| uncancel(tx, batch_id))
    }
}

fn uncancel(tx: &Transaction<'_>, batch_id: i64) -> rusqlite::Result<usize> {
    let now = now_ms();
    tx.exec(
        "UPDATE batches SET cancelled = 0, updated_at = ?2 WHERE id = ?1",
        params![batch_id, now],
    )?;
    let back = "cancelled_by = NULL, reason = 'resumed by a person', updated_at = ?2";
    // Jobs the manifest dropped (subjects taken out of it) stay cancelled: a person resumes
    // what a person cancelled, never subjects no manifest asks for any more.
    let by_person = "coalesce(cancelled_by, 'person') = 'person'";
    let mut n = tx.exec(
        &format!(
            "UPDATE jobs SET state = CASE WHEN clip_url IS NOT NULL THEN 'downloading'
                 ELSE 'running' END, next_poll_at = ?2, {back}
             WHERE batch_id = ?1 AND state = 'cancelled' AND {by_person} AND task_id IS NOT NULL"
        ),
        params![batch_id, now],
    )?;
    n += tx.exec(
        &format!(
            "UPDATE jobs SET state = 'unknown', {back}
             WHERE batch_id = ?1 AND state = 'cancelled' AND {by_person} AND attempt_id IN
                 (SELECT id FROM attempts WHERE state = 'unknown')"
        ),
        params![batch_id, now],
    )?;
    n += tx.exec(
        &format!(
            "UPDATE jobs SET state = 'planned', held = NULL, attempt_id = NULL, {back}
             WHERE batch_id = ?1 AND state = 'cancelled' AND {by_person}"
        ),
        params![batch_id, now],
    )?;
    event(
        tx,
        Some(batch_id),
        None,
        "resume",
        &format!("{n} cancelled jobs resumed by a person"),
    )?;
    Ok(n)
}
