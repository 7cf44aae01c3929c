//! The shapes of batches, jobs and attempts as the store hands them out, and the small steps
//! every transition shares (an event line, a job's or attempt's state, budget holds released).
//! The transitions themselves live beside their stage: `register`, `submits`, `stages`, `steer`,
//! `account`. Each public function there is one transaction and writes an event line a person
//! can read.

use rusqlite::{Transaction, params};

use super::Cached;
use super::{JobState, Store, StoreError, now_ms};

/// A batch as the manifest declares it, for [`Store::register_batch`].
#[derive(Debug, Clone)]
pub struct NewBatch {
    pub name: String,
    pub provider: String,
    pub manifest_path: String,
    pub base_dir: String,
    pub output_dir: String,
    pub budget_credits: Option<u64>,
    pub retries: u32,
    pub priority: i64,
    /// Subjects submitted before a person approves the rest (`None`: no canary).
    pub canary: Option<u32>,
}

/// A job as planned, for [`Store::register_batch`].
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    pub key: String,
    pub subject_id: String,
    pub output_name: String,
    pub spec_json: String,
    pub duration_ms: u64,
    pub estimate_credits: Option<u64>,
    /// Set when the plan found the subject invalid: registered as `rejected`, never submitted.
    pub invalid_reason: Option<String>,
    /// The clip is already in the output folder, verified (its results file says so): `done`.
    pub landed: Option<LandedClip>,
    /// The output folder says a submit of this job went out from a state folder this one does
    /// not know: followed (its task polled) or held `unknown`, never sent again silently.
    pub adopt: Option<AdoptedSubmit>,
}

/// A submit the output folder remembers: its key, and its task when the provider answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdoptedSubmit {
    pub idempotency_key: String,
    pub task_id: Option<String>,
}

/// A clip found whole in the output folder under the job's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LandedClip {
    pub path: String,
    pub sha256: String,
    pub bytes: u64,
    /// What the clip cost, as the output folder recorded it: the budget keeps counting it.
    pub credits: Option<u64>,
    pub task_id: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReconcileReport {
    pub batch_id: i64,
    pub added: usize,
    pub kept: usize,
    /// Planned jobs no longer in the manifest: cancelled before anything was spent on them.
    pub dropped: usize,
    /// Jobs that were cancelled or invalid before and are back and valid now.
    pub revived: usize,
    /// Jobs found made in the output folder (its results file), whatever this state folder knew.
    pub found_in_output: usize,
    /// Jobs whose submit the output folder remembers and this state folder did not: followed.
    pub adopted: usize,
}

/// A job about to be submitted: its intent row is committed.
#[derive(Debug, Clone)]
pub struct SubmitIntent {
    pub job_id: i64,
    pub batch_id: i64,
    pub batch_name: String,
    pub subject_id: String,
    pub base_dir: String,
    pub attempt_id: i64,
    pub attempt_number: u32,
    pub idempotency_key: String,
    pub spec_json: String,
    pub duration_ms: u64,
    pub estimate_credits: Option<u64>,
    pub job_key: String,
    /// Where its clip will land: the output folder also remembers the submit.
    pub output_dir: String,
    /// The attempt was sent before (its outcome unknown) and goes again under its key: an
    /// answer saying this send created nothing says nothing of the earlier one.
    pub resend: bool,
}

/// A running task due for a poll.
#[derive(Debug, Clone)]
pub struct PollItem {
    pub job_id: i64,
    pub attempt_id: i64,
    pub batch_id: i64,
    pub subject_id: String,
    pub task_id: String,
    pub polls: u32,
    pub duration_ms: u64,
    /// When its attempt was committed, just before the submit (Unix milliseconds).
    pub submitted_at_ms: i64,
    /// What the provider last said it billed for the attempt, as recorded.
    pub billed_credits: Option<u64>,
    /// When the store last said its next poll is due (Unix milliseconds).
    pub due_at_ms: i64,
    /// The job's attempts whose task failed before this one, and how many its batch retries.
    pub failed_attempts: u32,
    pub retries: u32,
}

/// What becomes of a job whose task failed (the engine decides, from its batch's `retries`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Planned again: a new attempt (the provider refunded the failed one).
    Retry,
    /// `failed` for good.
    GiveUp,
}

/// A submit a crash interrupted: its intent was committed, its answer never recorded.
#[derive(Debug, Clone)]
pub struct InterruptedSubmit {
    pub job_id: i64,
    pub attempt_id: Option<i64>,
    pub job_key: String,
    pub idempotency_key: Option<String>,
    pub output_dir: String,
}

/// A finished task whose clip is to be fetched.
#[derive(Debug, Clone)]
pub struct DownloadItem {
    pub job_id: i64,
    pub batch_id: i64,
    pub batch_name: String,
    pub task_id: Option<String>,
    pub estimate_credits: Option<u64>,
    pub subject_id: String,
    pub job_key: String,
    pub clip_url: String,
    pub clip_expires_at: Option<i64>,
    pub output_dir: String,
    pub output_name: String,
    pub download_failures: u32,
}

/// Which held jobs `recast retry` sends back to work.
#[derive(Debug, Clone, Copy, Default)]
pub struct RetrySelection {
    pub failed: bool,
    pub expired: bool,
    pub unknown: bool,
    pub rejected: bool,
    /// Tasks billed but unreachable: made again as new, paid attempts.
    pub lost: bool,
}

/// Count of a batch's jobs in each state.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct JobStateCounts {
    pub by_state: std::collections::BTreeMap<JobState, u64>,
}

impl JobStateCounts {
    pub fn get(&self, s: JobState) -> u64 {
        self.by_state.get(&s).copied().unwrap_or(0)
    }
    pub fn total(&self) -> u64 {
        self.by_state.values().sum()
    }
}

pub(super) fn event(
    tx: &Transaction<'_>,
    batch_id: Option<i64>,
    job_id: Option<i64>,
    kind: &str,
    message: &str,
) -> rusqlite::Result<()> {
    tx.exec(
        "INSERT INTO events (at, batch_id, job_id, kind, message) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![now_ms(), batch_id, job_id, kind, message],
    )?;
    Ok(())
}

pub(super) fn job_batch(tx: &Transaction<'_>, job_id: i64) -> rusqlite::Result<i64> {
    tx.row("SELECT batch_id FROM jobs WHERE id = ?1", [job_id], |r| {
        r.get(0)
    })
}

pub(super) fn set_job_state(
    tx: &Transaction<'_>,
    job_id: i64,
    state: JobState,
    reason: Option<&str>,
) -> rusqlite::Result<()> {
    tx.exec(
        // A new reason is not the old error's: its code and request id go with it.
        "UPDATE jobs SET state = ?2, reason = ?3, updated_at = ?4, error_code = NULL,
             request_id = NULL WHERE id = ?1",
        params![job_id, state.as_str(), reason, now_ms()],
    )?;
    Ok(())
}

/// Credits came back to a batch (a refund, a submit that never went out): jobs held by its
/// budget are looked at again.
pub(super) fn release_budget_holds(tx: &Transaction<'_>, batch_id: i64) -> rusqlite::Result<()> {
    tx.exec(
        "UPDATE jobs SET held = NULL WHERE batch_id = ?1 AND state = 'planned' AND held IS NOT NULL",
        [batch_id],
    )?;
    Ok(())
}

pub(super) fn set_attempt_state(
    tx: &Transaction<'_>,
    attempt_id: i64,
    state: &str,
    error: Option<&str>,
) -> rusqlite::Result<()> {
    tx.exec(
        "UPDATE attempts SET state = ?2, error = coalesce(?3, error), updated_at = ?4 WHERE id = ?1",
        params![attempt_id, state, error, now_ms()],
    )?;
    Ok(())
}

impl Store {
    /// One transaction, on disk when this returns.
    pub(super) fn write<T>(
        &self,
        what: &'static str,
        f: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let (out, commit) = self.apply(what, f)?;
        self.durability.wait(commit)?;
        Ok(out)
    }

    /// One transaction, committed but not waited for: an observation the engine can make
    /// again after a crash. It is on disk with the next sync any other write waits for.
    pub(super) fn note<T>(
        &self,
        what: &'static str,
        f: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        self.apply(what, f).map(|(out, _)| out)
    }

    pub(super) fn apply<T>(
        &self,
        what: &'static str,
        f: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<(T, super::Commit), StoreError> {
        let mut conn = self.writer();
        // IMMEDIATE: the write lock is taken at the start, where SQLite waits out the busy
        // timeout. A deferred transaction that has read is refused at once ("database is
        // locked") when another connection (`recast pause` beside a daemon) wrote meanwhile.
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(self.sql_error(what))?;
        let out = f(&tx).map_err(self.sql_error(what))?;
        tx.commit().map_err(self.sql_error(what))?;
        // Numbered while the connection is held, so numbers follow the WAL's order.
        Ok((out, self.durability.committed()))
    }
}
