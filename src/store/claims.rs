//! Claims: what is ready to be submitted, for the engine to choose from, and the transitions a
//! choice leads to: a job held by its batch's budget, or its submit intent committed (attempt
//! row, idempotency key, state `submitting`) before anything is sent.
//!
//! Owns: those queries and transitions, and [`ClaimView`], which offers them on one write
//! transaction so the engine's choice and its claim are one step. May not: choose (which
//! batch goes first, whether a job fits its budget: `engine::next_job` decides). A claim re-checks, in its transaction, that
//! what the engine decided on still holds (the job still ready, its batch still open, the
//! credits committed to the batch unchanged) and otherwise claims nothing ([`Claim::Raced`]).

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::Cached;
use super::jobs::{SubmitIntent, event, set_attempt_state};
use super::scope::CANARY_OPEN;
use super::{Commit, Scope, Store, StoreError, now_ms};

/// A batch with a job ready to submit (planned, not held; the batch not paused, cancelled or
/// waiting on its canary's approval).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadyBatch {
    pub batch_id: i64,
    pub priority: i64,
    /// Its tasks being submitted or running.
    pub in_flight: u64,
}

/// A batch's next ready job (in the order the batch registered them), with what its budget
/// check needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadyJob {
    pub job_id: i64,
    pub batch_id: i64,
    pub estimate_credits: Option<u64>,
    pub budget_credits: Option<u64>,
    /// Credits committed to the batch (possibly billed), here or by other state folders.
    pub committed_credits: u64,
    /// Its last attempt's outcome is unknown: it is sent again under the same key, and
    /// commits nothing more.
    pub resend: bool,
}

/// What a claim came to ([`Store::claim`], for tests of its re-checks).
#[cfg(test)]
#[derive(Debug)]
pub enum Claim {
    /// The intent is committed (not yet synced: wait for the commit before sending).
    Intent(Box<SubmitIntent>, Commit),
    /// The job or its batch moved since it was read: choose again.
    Raced,
}

/// The claim's questions and transitions on one write transaction. The engine's choice of the
/// next job runs inside it ([`Store::claim_with`]), so what it read is what it claims: no
/// other writer can move a job between the two, and on disk the whole choice is one write in a
/// batch of the store's thread.
pub struct ClaimView<'a> {
    tx: &'a Transaction<'a>,
}

impl ClaimView<'_> {
    /// The batches in `scope` with a job ready to submit.
    pub fn ready_batches(&self, scope: &Scope) -> rusqlite::Result<Vec<ReadyBatch>> {
        ready_batches(self.tx, scope)
    }

    /// The batch's next ready job, if it has one.
    pub fn next_ready_job(&self, batch_id: i64) -> rusqlite::Result<Option<ReadyJob>> {
        next_ready_job(self.tx, batch_id)
    }

    /// Hold `job` with why (see [`Store::hold_job`]); whether it was held.
    pub fn hold(&self, job: &ReadyJob, why: &str) -> rusqlite::Result<bool> {
        hold_in(self.tx, job, why)
    }

    /// Commit `job`'s submit intent (see [`Store::claim`]); `None` if it moved.
    pub fn claim(&self, job: &ReadyJob) -> rusqlite::Result<Option<SubmitIntent>> {
        claim_in(self.tx, job)
    }
}

/// The engine claims through [`Store::claim_with`]; the single steps below (`cfg(test)`) let
/// tests read, hold and claim one at a time to check each step's re-checks.
impl Store {
    /// Run the engine's choice `choose` in one transaction of the store's thread's next batch
    /// (in memory: its own); what it returns, and the commit a submit must wait for.
    pub async fn claim_with<T, F>(&self, choose: F) -> Result<(T, Commit), StoreError>
    where
        F: FnOnce(&ClaimView<'_>) -> rusqlite::Result<T> + Send + 'static,
        T: Send + 'static,
    {
        if !self.durability.on_disk() {
            return self.claim_now(choose);
        }
        let what = "commit a submit intent";
        self.batched(what, move |tx| choose(&ClaimView { tx }))
            .await
    }

    /// [`Store::claim_with`] on the calling thread, in its own transaction.
    pub fn claim_now<T>(
        &self,
        choose: impl FnOnce(&ClaimView<'_>) -> rusqlite::Result<T>,
    ) -> Result<(T, Commit), StoreError> {
        self.apply("commit a submit intent", |tx| choose(&ClaimView { tx }))
    }

    /// The batches in `scope` with a job ready to submit.
    #[cfg(test)]
    pub fn ready_batches(&self, scope: &Scope) -> Result<Vec<ReadyBatch>, StoreError> {
        ready_batches(&self.conn(), scope).map_err(self.sql_error("list batches ready to submit"))
    }

    /// The batch's next ready job, if it has one.
    #[cfg(test)]
    pub fn next_ready_job(&self, batch_id: i64) -> Result<Option<ReadyJob>, StoreError> {
        next_ready_job(&self.conn(), batch_id)
            .map_err(self.sql_error("find the next job to submit"))
    }

    /// [`ClaimView::hold`] in its own transaction (a note, not waited for: the engine holds it
    /// again if a crash loses it).
    #[cfg(test)]
    pub fn hold_job(&self, job: &ReadyJob, why: &str) -> Result<bool, StoreError> {
        self.note("hold a job", |tx| hold_in(tx, job, why))
    }

    /// Commit the submit intent of `job`, as the engine read it. Not waited for: the caller
    /// must [`Store::settled`] the commit before anything of the submit leaves (group commit:
    /// many intents claimed in a row share one sync).
    #[cfg(test)]
    pub fn claim(&self, job: &ReadyJob) -> Result<Claim, StoreError> {
        let (intent, commit) = self.apply("commit a submit intent", |tx| claim_in(tx, job))?;
        Ok(match intent {
            Some(intent) => Claim::Intent(Box::new(intent), commit),
            None => Claim::Raced,
        })
    }
}

fn ready_batches(conn: &Connection, scope: &Scope) -> rusqlite::Result<Vec<ReadyBatch>> {
    let mut s = conn.prepare_cached(&format!(
        "SELECT b.id, b.priority,
             (SELECT coalesce(sum(c.n), 0) FROM batch_state_counts c
                 WHERE c.batch_id = b.id AND c.state IN ('submitting', 'running'))
         FROM batches b
         WHERE b.paused = 0 AND b.cancelled = 0 {} AND {CANARY_OPEN}
             AND EXISTS (SELECT 1 FROM jobs j INDEXED BY jobs_ready
                 WHERE j.batch_id = b.id AND j.state = 'planned' AND j.held IS NULL)",
        scope.filter("b.id")
    ))?;
    s.query_map([], |r| {
        Ok(ReadyBatch {
            batch_id: r.get(0)?,
            priority: r.get(1)?,
            in_flight: r.get::<_, i64>(2)?.max(0) as u64,
        })
    })
    .and_then(|rows| rows.collect())
}

fn next_ready_job(conn: &Connection, batch_id: i64) -> rusqlite::Result<Option<ReadyJob>> {
    conn.row(
        "SELECT j.id, j.estimate_credits, b.budget_credits,
             b.committed_credits + b.outside_credits,
             EXISTS (SELECT 1 FROM attempts a WHERE a.id = j.attempt_id AND a.state = 'unknown')
         FROM jobs j INDEXED BY jobs_ready JOIN batches b ON b.id = j.batch_id
         WHERE j.batch_id = ?1 AND j.state = 'planned' AND j.held IS NULL
         ORDER BY j.id LIMIT 1",
        [batch_id],
        |r| {
            Ok(ReadyJob {
                job_id: r.get(0)?,
                batch_id,
                estimate_credits: r.get::<_, Option<i64>>(1)?.map(|c| c.max(0) as u64),
                budget_credits: r.get::<_, Option<i64>>(2)?.map(|c| c.max(0) as u64),
                committed_credits: r.get::<_, i64>(3)?.max(0) as u64,
                resend: r.get(4)?,
            })
        },
    )
    .optional()
}

/// Hold a ready job, with why (its batch's budget): it waits until what its batch has
/// committed changes. Only while the credits committed are still those the engine read: a
/// refund in between would otherwise leave it held for a budget that fits. Whether it was held.
fn hold_in(tx: &Transaction<'_>, job: &ReadyJob, why: &str) -> rusqlite::Result<bool> {
    let held = tx.exec(
        "UPDATE jobs SET held = ?2, updated_at = ?3
         WHERE id = ?1 AND state = 'planned' AND held IS NULL
             AND (SELECT committed_credits + outside_credits FROM batches
                 WHERE id = ?4) = ?5",
        params![
            job.job_id,
            why,
            now_ms(),
            job.batch_id,
            job.committed_credits as i64
        ],
    )?;
    if held == 1 {
        event(tx, Some(job.batch_id), Some(job.job_id), "held", why)?;
    }
    Ok(held == 1)
}

/// A ready job as its claim's transaction finds it.
struct Found {
    batch_name: String,
    subject_id: String,
    base_dir: String,
    output_dir: String,
    spec_json: String,
    duration_ms: i64,
    job_key: String,
    estimate_credits: Option<u64>,
    committed_credits: u64,
    /// Its attempt whose outcome is unknown: id, number, idempotency key.
    reusable: Option<(i64, u32, String)>,
}

fn find_ready(tx: &rusqlite::Transaction<'_>, job: &ReadyJob) -> rusqlite::Result<Option<Found>> {
    tx.row(
        &format!(
            "SELECT b.name, j.subject_id, b.base_dir, b.output_dir, j.spec_json, j.duration_ms,
                 j.job_key, j.estimate_credits, b.committed_credits + b.outside_credits,
                 a.id, a.number, a.idempotency_key
             FROM jobs j JOIN batches b ON b.id = j.batch_id
                 LEFT JOIN attempts a ON a.id = j.attempt_id AND a.state = 'unknown'
             WHERE j.id = ?1 AND j.batch_id = ?2 AND j.state = 'planned' AND j.held IS NULL
                 AND b.paused = 0 AND b.cancelled = 0 AND {CANARY_OPEN}"
        ),
        params![job.job_id, job.batch_id],
        |r| {
            Ok(Found {
                batch_name: r.get(0)?,
                subject_id: r.get(1)?,
                base_dir: r.get(2)?,
                output_dir: r.get(3)?,
                spec_json: r.get(4)?,
                duration_ms: r.get(5)?,
                job_key: r.get(6)?,
                estimate_credits: r.get::<_, Option<i64>>(7)?.map(|c| c.max(0) as u64),
                committed_credits: r.get::<_, i64>(8)?.max(0) as u64,
                reusable: match r.get::<_, Option<i64>>(9)? {
                    Some(id) => Some((id, r.get(10)?, r.get(11)?)),
                    None => None,
                },
            })
        },
    )
    .optional()
}

/// The claim's transaction: `None` if the job is no longer what the engine chose.
fn claim_in(
    tx: &rusqlite::Transaction<'_>,
    job: &ReadyJob,
) -> rusqlite::Result<Option<SubmitIntent>> {
    let Some(found) = find_ready(tx, job)? else {
        return Ok(None);
    };
    // The engine's budget check read these: if they moved, it must look again.
    let as_read = found.committed_credits == job.committed_credits
        && found.estimate_credits == job.estimate_credits
        && found.reusable.is_some() == job.resend;
    if !as_read {
        return Ok(None);
    }
    let Found {
        batch_name,
        subject_id,
        base_dir,
        output_dir,
        spec_json,
        duration_ms,
        job_key,
        reusable,
        ..
    } = found;
    let resend = reusable.is_some();
    let (attempt_id, attempt_number, idempotency_key) = match reusable {
        // An attempt whose outcome was unknown is sent again under the same idempotency key,
        // so a provider that honours keys answers with the first task instead of a second bill.
        Some((id, number, key)) => {
            set_attempt_state(tx, id, "submitting", None)?;
            (id, number, key)
        }
        None => {
            let number: u32 = tx.row(
                "SELECT coalesce(max(number), 0) + 1 FROM attempts WHERE job_id = ?1",
                [job.job_id],
                |r| r.get(0),
            )?;
            // The state folder's tag makes the key this database's alone: batch numbers start
            // again in a new state folder, and the results file may hold a lost one's keys.
            let tag: String = tx.row("SELECT tag FROM state_folder WHERE id = 1", [], |r| {
                r.get(0)
            })?;
            let key = format!(
                "recast-{tag}-{}-{}-a{number}",
                job.batch_id,
                &job_key[..job_key.len().min(20)]
            );
            tx.exec(
                "INSERT INTO attempts (job_id, number, idempotency_key, state,
                     credits_estimate, created_at, updated_at)
                 VALUES (?1, ?2, ?3, 'submitting', ?4, ?5, ?5)",
                params![
                    job.job_id,
                    number,
                    key,
                    job.estimate_credits.map(|c| c as i64),
                    now_ms()
                ],
            )?;
            (tx.last_insert_rowid(), number, key)
        }
    };
    tx.exec(
        "UPDATE jobs SET state = 'submitting', attempt_id = ?2, task_id = NULL,
             progress = NULL, polls = 0, reason = NULL, updated_at = ?3 WHERE id = ?1",
        params![job.job_id, attempt_id, now_ms()],
    )?;
    event(
        tx,
        Some(job.batch_id),
        Some(job.job_id),
        "submitting",
        &format!("{subject_id}: attempt {attempt_number} ({idempotency_key})"),
    )?;
    Ok(Some(SubmitIntent {
        job_id: job.job_id,
        batch_id: job.batch_id,
        batch_name,
        subject_id,
        base_dir,
        attempt_id,
        attempt_number,
        idempotency_key,
        spec_json,
        duration_ms: duration_ms as u64,
        estimate_credits: job.estimate_credits,
        job_key,
        output_dir,
        resend,
    }))
}
