//! Batches, jobs and attempts: registration and every transition the engine makes.
//!
//! Each public function is one transaction and writes an event line a person can read.

use std::collections::HashSet;

use rusqlite::{OptionalExtension, Transaction, params};

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
}

/// A job as planned, for [`Store::register_batch`].
#[derive(Debug, Clone)]
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
}

#[derive(Debug, Clone)]
pub enum ClaimOutcome {
    Intent(Box<SubmitIntent>),
    /// Nothing is waiting to be submitted.
    Idle,
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
    tx.execute(
        "INSERT INTO events (at, batch_id, job_id, kind, message) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![now_ms(), batch_id, job_id, kind, message],
    )?;
    Ok(())
}

pub(super) fn job_batch(tx: &Transaction<'_>, job_id: i64) -> rusqlite::Result<i64> {
    tx.query_row("SELECT batch_id FROM jobs WHERE id = ?1", [job_id], |r| {
        r.get(0)
    })
}

pub(super) fn set_job_state(
    tx: &Transaction<'_>,
    job_id: i64,
    state: JobState,
    reason: Option<&str>,
) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE jobs SET state = ?2, reason = ?3, updated_at = ?4 WHERE id = ?1",
        params![job_id, state.as_str(), reason, now_ms()],
    )?;
    Ok(())
}

/// Credits came back to a batch (a refund, a submit that never went out): jobs held by its
/// budget are looked at again.
pub(super) fn release_budget_holds(tx: &Transaction<'_>, batch_id: i64) -> rusqlite::Result<()> {
    tx.execute(
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
    tx.execute(
        "UPDATE attempts SET state = ?2, error = coalesce(?3, error), updated_at = ?4 WHERE id = ?1",
        params![attempt_id, state, error, now_ms()],
    )?;
    Ok(())
}

/// A job whose submit only the output folder remembers: `running` on its task (polling is
/// free), or `unknown` when the submit's answer never came.
fn insert_adopted(
    tx: &Transaction<'_>,
    batch_id: i64,
    job: &NewJob,
    adopted: &AdoptedSubmit,
    now: i64,
) -> rusqlite::Result<()> {
    let (job_state, attempt_state, reason) = match &adopted.task_id {
        Some(_) => (
            JobState::Running,
            "accepted",
            "followed from the output folder's record of its task",
        ),
        None => (
            JobState::Unknown,
            "unknown",
            "the output folder records a submit whose answer was never recorded",
        ),
    };
    tx.execute(
        "INSERT INTO jobs (batch_id, job_key, subject_id, output_name, spec_json, duration_ms,
             estimate_credits, state, reason, task_id, next_poll_at, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11, ?11)",
        params![
            batch_id,
            job.key,
            job.subject_id,
            job.output_name,
            job.spec_json,
            job.duration_ms as i64,
            job.estimate_credits.map(|c| c as i64),
            job_state.as_str(),
            reason,
            adopted.task_id,
            now
        ],
    )?;
    let job_id = tx.last_insert_rowid();
    tx.execute(
        "INSERT INTO attempts (job_id, number, idempotency_key, state, task_id, credits_estimate,
             created_at, updated_at)
         VALUES (?1, 1, ?2, ?3, ?4, ?5, ?6, ?6)",
        params![
            job_id,
            adopted.idempotency_key,
            attempt_state,
            adopted.task_id,
            job.estimate_credits.map(|c| c as i64),
            now
        ],
    )?;
    let attempt_id = tx.last_insert_rowid();
    tx.execute(
        "UPDATE jobs SET attempt_id = ?2 WHERE id = ?1",
        params![job_id, attempt_id],
    )?;
    event(tx, Some(batch_id), Some(job_id), job_state.as_str(), reason)
}

/// A clip the output folder holds makes its job `done`, unless a task of it is in flight (that
/// one lands on its own, free). Returns whether the job changed.
fn mark_found_done(tx: &Transaction<'_>, job_id: i64, clip: &LandedClip) -> rusqlite::Result<bool> {
    let n = tx.execute(
        "UPDATE jobs SET state = 'done', output_path = ?2, output_sha256 = ?3, output_bytes = ?4,
             held = NULL, cancelled_by = NULL,
             reason = 'found whole in the output folder (its results file)', updated_at = ?5
         WHERE id = ?1 AND state NOT IN ('done', 'submitting', 'running', 'downloading')",
        params![job_id, clip.path, clip.sha256, clip.bytes as i64, now_ms()],
    )?;
    if n == 0 {
        return Ok(false);
    }
    // A clip this state folder never paid for was paid all the same: the budget counts it.
    let paid_here: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM attempts WHERE job_id = ?1 AND state = 'completed')",
        [job_id],
        |r| r.get(0),
    )?;
    if !paid_here {
        let number: i64 = tx.query_row(
            "SELECT coalesce(max(number), 0) + 1 FROM attempts WHERE job_id = ?1",
            [job_id],
            |r| r.get(0),
        )?;
        tx.execute(
            "INSERT INTO attempts (job_id, number, idempotency_key, state, task_id,
                 credits_estimate, created_at, updated_at)
             VALUES (?1, ?2, ?3, 'completed', ?4, ?5, ?6, ?6)",
            params![
                job_id,
                number,
                format!("found-{job_id}-a{number}"),
                clip.task_id,
                clip.credits.map(|c| c as i64),
                now_ms()
            ],
        )?;
        let attempt_id = tx.last_insert_rowid();
        tx.execute(
            "UPDATE jobs SET attempt_id = ?2, task_id = coalesce(task_id, ?3) WHERE id = ?1",
            params![job_id, attempt_id, clip.task_id],
        )?;
    }
    Ok(true)
}

impl Store {
    pub(super) fn write<T>(
        &self,
        what: &'static str,
        f: impl FnOnce(&Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(self.sql_error(what))?;
        let out = f(&tx).map_err(self.sql_error(what))?;
        tx.commit().map_err(self.sql_error(what))?;
        Ok(out)
    }

    /// Register a batch or reconcile it with its manifest, in one transaction: new keys are added
    /// as planned, known keys kept as they are, planned jobs whose keys left the manifest dropped.
    pub fn register_batch(
        &self,
        batch: &NewBatch,
        jobs: impl IntoIterator<Item = NewJob>,
    ) -> Result<ReconcileReport, StoreError> {
        self.write("register the batch", |tx| {
            let now = now_ms();
            tx.execute(
                "INSERT INTO batches (name, provider, manifest_path, base_dir, output_dir,
                     budget_credits, retries, priority, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)
                 ON CONFLICT (name, provider) DO UPDATE SET manifest_path = ?3, base_dir = ?4,
                     output_dir = ?5, budget_credits = ?6, retries = ?7, priority = ?8,
                     updated_at = ?9",
                params![
                    batch.name,
                    batch.provider,
                    batch.manifest_path,
                    batch.base_dir,
                    batch.output_dir,
                    batch.budget_credits.map(|c| c as i64),
                    batch.retries,
                    batch.priority,
                    now
                ],
            )?;
            let (batch_id, batch_cancelled): (i64, bool) = tx.query_row(
                "SELECT id, cancelled FROM batches WHERE name = ?1 AND provider = ?2",
                params![batch.name, batch.provider],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            // The budget may have changed: held jobs are looked at again.
            tx.execute(
                "UPDATE jobs SET held = NULL WHERE batch_id = ?1 AND state = 'planned'",
                [batch_id],
            )?;
            let mut report = ReconcileReport {
                batch_id,
                ..Default::default()
            };
            let mut find = tx.prepare(
                "SELECT id, state, attempt_id IS NOT NULL OR task_id IS NOT NULL,
                     coalesce(cancelled_by, '') FROM jobs WHERE batch_id = ?1 AND job_key = ?2",
            )?;
            let mut insert = tx.prepare(
                "INSERT INTO jobs (batch_id, job_key, subject_id, output_name, spec_json,
                     duration_ms, estimate_credits, state, reason, created_at, updated_at,
                     cancelled_by)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?11)",
            )?;
            let mut refresh = tx.prepare(
                "UPDATE jobs SET subject_id = ?2, output_name = ?3, spec_json = ?4,
                     duration_ms = ?5, estimate_credits = ?6, updated_at = ?7 WHERE id = ?1",
            )?;
            let mut keys = HashSet::new();
            for job in jobs {
                let state = if job.invalid_reason.is_some() {
                    JobState::Rejected
                } else {
                    JobState::Planned
                };
                let found: Option<(i64, String, bool, String)> = find
                    .query_row(params![batch_id, job.key], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                    })
                    .optional()?;
                if let Some(clip) = &job.landed {
                    let id = match &found {
                        Some((id, ..)) => *id,
                        None => {
                            insert.execute(params![
                                batch_id,
                                job.key,
                                job.subject_id,
                                job.output_name,
                                job.spec_json,
                                job.duration_ms as i64,
                                job.estimate_credits.map(|c| c as i64),
                                JobState::Planned.as_str(),
                                None::<&str>,
                                now,
                                None::<&str>
                            ])?;
                            tx.last_insert_rowid()
                        }
                    };
                    if mark_found_done(tx, id, clip)? {
                        report.found_in_output += 1;
                        keys.insert(job.key);
                        continue;
                    }
                }
                if let (None, Some(adopted), JobState::Planned) = (&found, &job.adopt, state) {
                    insert_adopted(tx, batch_id, &job, adopted, now)?;
                    report.added += 1;
                    report.adopted += 1;
                    keys.insert(job.key);
                    continue;
                }
                match found {
                    // A person cancelled the batch: what it gains waits for their resume.
                    None if batch_cancelled && state == JobState::Planned => {
                        insert.execute(params![
                            batch_id,
                            job.key,
                            job.subject_id,
                            job.output_name,
                            job.spec_json,
                            job.duration_ms as i64,
                            job.estimate_credits.map(|c| c as i64),
                            JobState::Cancelled.as_str(),
                            "the batch was cancelled by a person; `recast resume` submits it",
                            now,
                            "person"
                        ])?;
                        report.added += 1;
                    }
                    None => {
                        insert.execute(params![
                            batch_id,
                            job.key,
                            job.subject_id,
                            job.output_name,
                            job.spec_json,
                            job.duration_ms as i64,
                            job.estimate_credits.map(|c| c as i64),
                            state.as_str(),
                            job.invalid_reason,
                            now,
                            None::<&str>
                        ])?;
                        report.added += 1;
                    }
                    Some((id, old_state, submitted_before, cancelled_by)) => {
                        refresh.execute(params![
                            id,
                            job.subject_id,
                            job.output_name,
                            job.spec_json,
                            job.duration_ms as i64,
                            job.estimate_credits.map(|c| c as i64),
                            now
                        ])?;
                        let old = JobState::parse(&old_state).unwrap_or(JobState::Planned);
                        // Only jobs nothing was ever spent on follow the manifest's verdict, and a
                        // job a person cancelled stays cancelled until a person says otherwise.
                        let dropped_by_manifest = old == JobState::Cancelled
                            && cancelled_by == "manifest"
                            && !batch_cancelled;
                        let pre_flight = !submitted_before
                            && (dropped_by_manifest
                                || matches!(old, JobState::Rejected | JobState::Planned));
                        if pre_flight && old != state {
                            set_job_state(tx, id, state, job.invalid_reason.as_deref())?;
                            tx.execute("UPDATE jobs SET cancelled_by = NULL WHERE id = ?1", [id])?;
                            report.revived += usize::from(state == JobState::Planned);
                        } else {
                            report.kept += 1;
                        }
                    }
                }
                keys.insert(job.key);
            }
            drop((find, insert, refresh));
            let mut stale = Vec::new();
            {
                let mut planned =
                    tx.prepare("SELECT id, job_key FROM jobs WHERE batch_id = ?1 AND state = 'planned'")?;
                let rows = planned.query_map([batch_id], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
                })?;
                for row in rows {
                    let (id, key) = row?;
                    if !keys.contains(&key) {
                        stale.push(id);
                    }
                }
            }
            for id in &stale {
                set_job_state(tx, *id, JobState::Cancelled, Some("no longer in the manifest"))?;
                tx.execute(
                    "UPDATE jobs SET cancelled_by = 'manifest' WHERE id = ?1",
                    [id],
                )?;
            }
            report.dropped = stale.len();
            event(
                tx,
                Some(batch_id),
                None,
                "registered",
                &format!(
                    "manifest {}: {} new, {} kept, {} dropped, {} back, {} found in the output folder, {} followed from it",
                    batch.manifest_path,
                    report.added,
                    report.kept,
                    report.dropped,
                    report.revived,
                    report.found_in_output,
                    report.adopted
                ),
            )?;
            Ok(report)
        })
    }
}
