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
}

#[derive(Debug, Clone)]
pub enum ClaimOutcome {
    Intent(SubmitIntent),
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

fn job_batch(tx: &Transaction<'_>, job_id: i64) -> rusqlite::Result<i64> {
    tx.query_row("SELECT batch_id FROM jobs WHERE id = ?1", [job_id], |r| {
        r.get(0)
    })
}

fn set_job_state(
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
fn release_budget_holds(tx: &Transaction<'_>, batch_id: i64) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE jobs SET held = NULL WHERE batch_id = ?1 AND state = 'planned' AND held IS NOT NULL",
        [batch_id],
    )?;
    Ok(())
}

fn set_attempt_state(
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

impl Store {
    fn write<T>(
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
            let batch_id: i64 = tx.query_row(
                "SELECT id FROM batches WHERE name = ?1 AND provider = ?2",
                params![batch.name, batch.provider],
                |r| r.get(0),
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
                "SELECT id, state, attempt_id IS NOT NULL FROM jobs WHERE batch_id = ?1 AND job_key = ?2",
            )?;
            let mut insert = tx.prepare(
                "INSERT INTO jobs (batch_id, job_key, subject_id, output_name, spec_json,
                     duration_ms, estimate_credits, state, reason, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)",
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
                let found: Option<(i64, String, bool)> = find
                    .query_row(params![batch_id, job.key], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })
                    .optional()?;
                match found {
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
                            now
                        ])?;
                        report.added += 1;
                    }
                    Some((id, old_state, submitted_before)) => {
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
                        // Only jobs nothing was ever spent on follow the manifest's verdict.
                        let pre_flight = !submitted_before
                            && matches!(
                                old,
                                JobState::Cancelled | JobState::Rejected | JobState::Planned
                            );
                        if pre_flight && old != state {
                            set_job_state(tx, id, state, job.invalid_reason.as_deref())?;
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
            }
            report.dropped = stale.len();
            event(
                tx,
                Some(batch_id),
                None,
                "registered",
                &format!(
                    "manifest {}: {} new, {} kept, {} dropped, {} back",
                    batch.manifest_path, report.added, report.kept, report.dropped, report.revived
                ),
            )?;
            Ok(report)
        })
    }

    /// Whether any job of these batches will still move by itself: submitting, running,
    /// downloading, or (when `with_planned`) planned and not held back. Asked often by a running
    /// engine, so it stops at the first such job instead of counting them all.
    pub fn has_active_jobs(
        &self,
        batch_ids: Option<&[i64]>,
        with_planned: bool,
    ) -> Result<bool, StoreError> {
        let conn = self.conn();
        let scope = batch_scope(batch_ids).replace("b.id", "batch_id");
        let planned = if with_planned {
            format!(
                "OR EXISTS (SELECT 1 FROM jobs WHERE state = 'planned' AND held IS NULL {scope})"
            )
        } else {
            String::new()
        };
        conn.query_row(
            &format!(
                "SELECT EXISTS (SELECT 1 FROM jobs
                     WHERE state IN ('submitting', 'running', 'downloading') {scope}) {planned}"
            ),
            [],
            |r| r.get(0),
        )
        .map_err(self.sql_error("look for active jobs"))
    }

    /// Output folders of these batches.
    pub fn output_dirs(&self, batch_ids: Option<&[i64]>) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let mut s = conn
            .prepare(&format!(
                "SELECT DISTINCT output_dir FROM batches b WHERE 1 = 1 {}",
                batch_scope(batch_ids)
            ))
            .map_err(self.sql_error("list output folders"))?;
        s.query_map([], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .map_err(self.sql_error("list output folders"))
    }

    /// Send one `unknown` job back to be submitted under its same idempotency key.
    pub fn release_unknown_job(&self, job_id: i64) -> Result<(), StoreError> {
        self.write("release an unknown submit", |tx| {
            tx.execute(
                "UPDATE jobs SET state = 'planned', updated_at = ?2 WHERE id = ?1 AND state = 'unknown'",
                params![job_id, now_ms()],
            )?;
            Ok(())
        })
    }

    /// Credits committed to a batch: attempts possibly billed (the budget counts these).
    pub fn committed_credits(&self, batch_id: i64) -> Result<u64, StoreError> {
        let conn = self.conn();
        conn.query_row(
            "SELECT committed_credits FROM batches WHERE id = ?1",
            [batch_id],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| n.max(0) as u64)
        .map_err(self.sql_error("read committed credits"))
    }

    /// Tasks the provider is working on for us (or might be): what the in-flight cap counts.
    pub fn provider_in_flight(&self) -> Result<u64, StoreError> {
        let conn = self.conn();
        conn.query_row(
            "SELECT count(*) FROM jobs WHERE state IN ('submitting', 'running')",
            [],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| n as u64)
        .map_err(self.sql_error("count tasks in flight"))
    }

    /// Pick the next job to submit and commit its intent (attempt row, idempotency key, state
    /// `submitting`) before anything is sent. Jobs whose estimate would cross their batch's
    /// budget are held (with the reason) instead.
    pub fn claim_next(&self, batch_ids: Option<&[i64]>) -> Result<ClaimOutcome, StoreError> {
        let scope = batch_scope(batch_ids);
        self.write("commit a submit intent", |tx| loop {
            // The batch first: highest priority, then the one with the fewest tasks in flight,
            // so a small batch is never starved behind a large one of the same priority.
            let batch: Option<i64> = tx
                .query_row(
                    &format!(
                        "SELECT b.id FROM batches b
                         WHERE b.paused = 0 {scope} AND EXISTS (SELECT 1 FROM jobs j
                             WHERE j.batch_id = b.id AND j.state = 'planned' AND j.held IS NULL)
                         ORDER BY b.priority DESC,
                             (SELECT count(*) FROM jobs x WHERE x.batch_id = b.id
                                 AND x.state IN ('submitting', 'running')) ASC,
                             b.id
                         LIMIT 1"
                    ),
                    [],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(batch) = batch else {
                return Ok(ClaimOutcome::Idle);
            };
            let next = tx
                .query_row(
                    "SELECT j.id, j.batch_id, b.name, j.subject_id, b.base_dir, j.spec_json,
                         j.duration_ms, j.estimate_credits, b.budget_credits, j.attempt_id,
                         j.job_key
                     FROM jobs j JOIN batches b ON b.id = j.batch_id
                     WHERE j.batch_id = ?1 AND j.state = 'planned' AND j.held IS NULL
                     ORDER BY j.id LIMIT 1",
                    [batch],
                    |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, i64>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, String>(3)?,
                            r.get::<_, String>(4)?,
                            r.get::<_, String>(5)?,
                            r.get::<_, i64>(6)?,
                            r.get::<_, Option<i64>>(7)?,
                            r.get::<_, Option<i64>>(8)?,
                            r.get::<_, Option<i64>>(9)?,
                            r.get::<_, String>(10)?,
                        ))
                    },
                )
                .optional()?;
            let Some((job_id, batch_id, batch_name, subject_id, base_dir, spec_json, duration_ms, estimate, budget, attempt_id, job_key)) =
                next
            else {
                return Ok(ClaimOutcome::Idle);
            };
            // An attempt whose outcome was unknown is sent again under the same idempotency key,
            // so a provider that honours keys answers with the first task instead of a second bill.
            let reusable: Option<(i64, u32, String)> = match attempt_id {
                Some(a) => tx
                    .query_row(
                        "SELECT id, number, idempotency_key FROM attempts WHERE id = ?1 AND state = 'unknown'",
                        [a],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                    )
                    .optional()?,
                None => None,
            };
            if let Some(budget) = budget {
                let held = match estimate {
                    None => Some("price unknown: a job without a price cannot pass a budget".to_owned()),
                    Some(est) => {
                        let committed: i64 = tx.query_row(
                            "SELECT committed_credits FROM batches WHERE id = ?1",
                            [batch_id],
                            |r| r.get(0),
                        )?;
                        let extra = if reusable.is_some() { 0 } else { est };
                        (committed + extra > budget).then(|| {
                            format!(
                                "over budget: {} credits committed, this job needs up to {est} more, budget is {budget}",
                                committed
                            )
                        })
                    }
                };
                if let Some(why) = held {
                    tx.execute(
                        "UPDATE jobs SET held = ?2, updated_at = ?3 WHERE id = ?1",
                        params![job_id, why, now_ms()],
                    )?;
                    event(tx, Some(batch_id), Some(job_id), "held", &why)?;
                    continue;
                }
            }
            let (attempt_id, attempt_number, idempotency_key) = match reusable {
                Some((id, number, key)) => {
                    set_attempt_state(tx, id, "submitting", None)?;
                    (id, number, key)
                }
                None => {
                    let number: u32 = tx.query_row(
                        "SELECT coalesce(max(number), 0) + 1 FROM attempts WHERE job_id = ?1",
                        [job_id],
                        |r| r.get(0),
                    )?;
                    let key = format!(
                        "recast-{batch_id}-{}-a{number}",
                        &job_key[..job_key.len().min(20)]
                    );
                    tx.execute(
                        "INSERT INTO attempts (job_id, number, idempotency_key, state,
                             credits_estimate, created_at, updated_at)
                         VALUES (?1, ?2, ?3, 'submitting', ?4, ?5, ?5)",
                        params![job_id, number, key, estimate, now_ms()],
                    )?;
                    (tx.last_insert_rowid(), number, key)
                }
            };
            tx.execute(
                "UPDATE jobs SET state = 'submitting', attempt_id = ?2, task_id = NULL,
                     progress = NULL, polls = 0, reason = NULL, updated_at = ?3 WHERE id = ?1",
                params![job_id, attempt_id, now_ms()],
            )?;
            event(
                tx,
                Some(batch_id),
                Some(job_id),
                "submitting",
                &format!("{subject_id}: attempt {attempt_number} ({idempotency_key})"),
            )?;
            return Ok(ClaimOutcome::Intent(SubmitIntent {
                job_id,
                batch_id,
                batch_name,
                subject_id,
                base_dir,
                attempt_id,
                attempt_number,
                idempotency_key,
                spec_json,
                duration_ms: duration_ms as u64,
                estimate_credits: estimate.map(|e| e as u64),
            }));
        })
    }

    /// The provider accepted the submit: the task id is committed before anything uses it.
    pub fn record_submitted(
        &self,
        intent: &SubmitIntent,
        task_id: &str,
        next_poll_at: i64,
    ) -> Result<(), StoreError> {
        self.write("record a task id", |tx| {
            tx.execute(
                "UPDATE attempts SET state = 'accepted', task_id = ?2, updated_at = ?3 WHERE id = ?1",
                params![intent.attempt_id, task_id, now_ms()],
            )?;
            tx.execute(
                "UPDATE jobs SET state = 'running', task_id = ?2, next_poll_at = ?3, reason = NULL,
                     updated_at = ?4 WHERE id = ?1",
                params![intent.job_id, task_id, next_poll_at, now_ms()],
            )?;
            event(
                tx,
                Some(intent.batch_id),
                Some(intent.job_id),
                "submitted",
                &format!("{}: task {task_id}", intent.subject_id),
            )
        })
    }

    /// The submit certainly did not create a task (never sent, refused with 429/402): the job
    /// goes back to `planned` and the attempt is closed.
    pub fn record_not_sent(&self, intent: &SubmitIntent, why: &str) -> Result<(), StoreError> {
        self.write("record an unsent submit", |tx| {
            set_attempt_state(tx, intent.attempt_id, "not_sent", Some(why))?;
            tx.execute(
                "UPDATE jobs SET state = 'planned', attempt_id = NULL, reason = ?2, updated_at = ?3
                 WHERE id = ?1",
                params![intent.job_id, why, now_ms()],
            )?;
            release_budget_holds(tx, intent.batch_id)?;
            event(
                tx,
                Some(intent.batch_id),
                Some(intent.job_id),
                "not-sent",
                why,
            )
        })
    }

    /// The provider refused the request (400/422): nothing billed, the job needs a person.
    pub fn record_rejected(&self, intent: &SubmitIntent, why: &str) -> Result<(), StoreError> {
        self.write("record a rejected submit", |tx| {
            set_attempt_state(tx, intent.attempt_id, "rejected", Some(why))?;
            set_job_state(tx, intent.job_id, JobState::Rejected, Some(why))?;
            release_budget_holds(tx, intent.batch_id)?;
            event(
                tx,
                Some(intent.batch_id),
                Some(intent.job_id),
                "rejected",
                why,
            )
        })
    }

    /// The submit may or may not have created a task: held as `unknown`, never re-sent silently.
    pub fn record_unknown(&self, intent: &SubmitIntent, why: &str) -> Result<(), StoreError> {
        self.write("record an unknown submit", |tx| {
            set_attempt_state(tx, intent.attempt_id, "unknown", Some(why))?;
            set_job_state(tx, intent.job_id, JobState::Unknown, Some(why))?;
            event(
                tx,
                Some(intent.batch_id),
                Some(intent.job_id),
                "unknown",
                why,
            )
        })
    }

    /// After a crash: intents that were committed but whose answers were not become `unknown`.
    pub fn recover_interrupted_submits(&self) -> Result<usize, StoreError> {
        self.write("recover interrupted submits", |tx| {
            let why = "recast stopped between sending a submit and recording its answer";
            let ids: Vec<(i64, i64, Option<i64>)> = {
                let mut s = tx.prepare(
                    "SELECT id, batch_id, attempt_id FROM jobs WHERE state = 'submitting'",
                )?;
                s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect::<Result<_, _>>()?
            };
            for (job_id, batch_id, attempt_id) in &ids {
                if let Some(a) = attempt_id {
                    set_attempt_state(tx, *a, "unknown", Some(why))?;
                }
                set_job_state(tx, *job_id, JobState::Unknown, Some(why))?;
                event(tx, Some(*batch_id), Some(*job_id), "unknown", why)?;
            }
            Ok(ids.len())
        })
    }

    /// Send `unknown` jobs back to be submitted again under their same idempotency key.
    pub fn release_unknown(&self, batch_ids: Option<&[i64]>) -> Result<usize, StoreError> {
        let scope = batch_scope(batch_ids).replace("b.id", "batch_id");
        self.write("release unknown submits", |tx| {
            let n = tx.execute(
                &format!(
                    "UPDATE jobs SET state = 'planned', held = NULL, updated_at = ?1
                     WHERE state = 'unknown' {scope}"
                ),
                [now_ms()],
            )?;
            if n > 0 {
                event(
                    tx,
                    None,
                    None,
                    "resubmit-unknown",
                    &format!("{n} unknown submits sent again under their idempotency keys"),
                )?;
            }
            Ok(n)
        })
    }

    /// A batch's tasks were held by a provider that is gone for good (the simulator of an
    /// earlier `recast run --simulate`, which lived and died with that process): its jobs in
    /// flight go back to `planned`, their attempts closed (nothing real was billed). Returns how
    /// many jobs.
    pub fn restart_lost_tasks(&self, batch_id: i64) -> Result<usize, StoreError> {
        self.write("restart tasks of a stopped simulator", |tx| {
            let in_flight = "('submitting', 'running', 'downloading', 'unknown')";
            tx.execute(
                &format!(
                    "UPDATE attempts SET state = 'abandoned', updated_at = ?2
                     WHERE state IN ('submitting', 'accepted', 'completed', 'unknown')
                     AND job_id IN (SELECT id FROM jobs WHERE batch_id = ?1 AND state IN {in_flight})"
                ),
                params![batch_id, now_ms()],
            )?;
            let n = tx.execute(
                &format!(
                    "UPDATE jobs SET state = 'planned', attempt_id = NULL, task_id = NULL,
                         clip_url = NULL, progress = NULL, polls = 0, link_refreshes = 0,
                         download_failures = 0, not_before = NULL,
                         reason = 'its simulator stopped before the clip landed; submitted again',
                         updated_at = ?2
                     WHERE batch_id = ?1 AND state IN {in_flight}"
                ),
                params![batch_id, now_ms()],
            )?;
            if n > 0 {
                event(
                    tx,
                    Some(batch_id),
                    None,
                    "restarted",
                    &format!("{n} jobs whose simulator stopped go back to planned"),
                )?;
            }
            Ok(n)
        })
    }

    /// Running tasks whose next poll is due, soonest first.
    pub fn due_polls(&self, now: i64, limit: usize) -> Result<Vec<PollItem>, StoreError> {
        let conn = self.conn();
        let mut s = conn
            .prepare_cached(
                "SELECT id, attempt_id, batch_id, subject_id, task_id, polls, duration_ms FROM jobs
                 WHERE state = 'running' AND next_poll_at <= ?1 AND task_id IS NOT NULL
                 ORDER BY next_poll_at LIMIT ?2",
            )
            .map_err(self.sql_error("find due polls"))?;
        let rows = s
            .query_map(params![now, limit as i64], |r| {
                Ok(PollItem {
                    job_id: r.get(0)?,
                    attempt_id: r.get(1)?,
                    batch_id: r.get(2)?,
                    subject_id: r.get(3)?,
                    task_id: r.get(4)?,
                    polls: r.get(5)?,
                    duration_ms: r.get::<_, i64>(6)? as u64,
                })
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(self.sql_error("find due polls"))?;
        Ok(rows)
    }

    /// When the next poll of any running task is due, if any is running.
    pub fn next_poll_at(&self) -> Result<Option<i64>, StoreError> {
        let conn = self.conn();
        conn.query_row(
            "SELECT min(next_poll_at) FROM jobs WHERE state = 'running'",
            [],
            |r| r.get(0),
        )
        .map_err(self.sql_error("find the next poll"))
    }

    pub fn record_progress(
        &self,
        job_id: i64,
        progress: Option<u8>,
        next_poll_at: i64,
    ) -> Result<(), StoreError> {
        let conn = self.conn();
        conn.execute(
            "UPDATE jobs SET progress = coalesce(?2, progress), polls = polls + 1,
                 next_poll_at = ?3, updated_at = ?4 WHERE id = ?1 AND state = 'running'",
            params![job_id, progress, next_poll_at, now_ms()],
        )
        .map_err(self.sql_error("record progress"))?;
        Ok(())
    }

    /// The task finished: its clip link is recorded and the job waits for its download.
    pub fn record_clip_ready(
        &self,
        item: &PollItem,
        clip_url: &str,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        self.write("record a finished task", |tx| {
            set_attempt_state(tx, item.attempt_id, "completed", None)?;
            tx.execute(
                "UPDATE jobs SET state = 'downloading', progress = 100, clip_url = ?2,
                     clip_expires_at = ?3, not_before = NULL, reason = NULL, updated_at = ?4
                 WHERE id = ?1",
                params![item.job_id, clip_url, expires_at, now_ms()],
            )?;
            event(
                tx,
                Some(item.batch_id),
                Some(item.job_id),
                "completed",
                &format!("{}: task {} finished", item.subject_id, item.task_id),
            )
        })
    }

    /// The provider's task failed (it refunds): a new attempt while the batch's `retries`
    /// allow, else `failed`. Returns the job's new state.
    pub fn record_task_failed(&self, item: &PollItem, why: &str) -> Result<JobState, StoreError> {
        self.write("record a failed task", |tx| {
            set_attempt_state(tx, item.attempt_id, "failed", Some(why))?;
            let (failures, retries): (u32, u32) = tx.query_row(
                "SELECT (SELECT count(*) FROM attempts WHERE job_id = ?1 AND state = 'failed'),
                        b.retries FROM jobs j JOIN batches b ON b.id = j.batch_id WHERE j.id = ?1",
                [item.job_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let state = if failures > retries {
                JobState::Failed
            } else {
                JobState::Planned
            };
            let reason = if state == JobState::Failed {
                format!("the provider's task failed {failures} times; last: {why}")
            } else {
                format!("attempt {failures} failed ({why}); retrying")
            };
            tx.execute(
                "UPDATE jobs SET state = ?2, reason = ?3, attempt_id = NULL, task_id = NULL,
                     updated_at = ?4 WHERE id = ?1",
                params![item.job_id, state.as_str(), reason, now_ms()],
            )?;
            release_budget_holds(tx, item.batch_id)?;
            event(
                tx,
                Some(item.batch_id),
                Some(item.job_id),
                "task-failed",
                &reason,
            )?;
            Ok(state)
        })
    }

    /// Move a job to a state that needs a person (`unknown`, `expired`), with the reason.
    pub fn record_needs_person(
        &self,
        job_id: i64,
        state: JobState,
        why: &str,
    ) -> Result<(), StoreError> {
        debug_assert!(state.needs_a_person());
        self.write("record a job that needs a person", |tx| {
            let batch_id = job_batch(tx, job_id)?;
            set_job_state(tx, job_id, state, Some(why))?;
            event(tx, Some(batch_id), Some(job_id), state.as_str(), why)
        })
    }

    /// Clips waiting to be fetched, the ones whose links expire soonest first.
    pub fn due_downloads(
        &self,
        now: i64,
        limit: usize,
        skip: &[i64],
    ) -> Result<Vec<DownloadItem>, StoreError> {
        let conn = self.conn();
        let skip_list = skip
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let mut s = conn
            .prepare(&format!(
                "SELECT j.id, j.batch_id, j.subject_id, j.job_key, j.clip_url, j.clip_expires_at,
                     b.output_dir, j.output_name, j.download_failures
                 FROM jobs j JOIN batches b ON b.id = j.batch_id
                 WHERE j.state = 'downloading' AND j.clip_url IS NOT NULL
                     AND coalesce(j.not_before, 0) <= ?1 AND j.id NOT IN ({skip_list})
                 ORDER BY coalesce(j.clip_expires_at, 9223372036854775807), j.id LIMIT ?2"
            ))
            .map_err(self.sql_error("find due downloads"))?;
        s.query_map(params![now, limit as i64], |r| {
            Ok(DownloadItem {
                job_id: r.get(0)?,
                batch_id: r.get(1)?,
                subject_id: r.get(2)?,
                job_key: r.get(3)?,
                clip_url: r.get(4)?,
                clip_expires_at: r.get(5)?,
                output_dir: r.get(6)?,
                output_name: r.get(7)?,
                download_failures: r.get(8)?,
            })
        })
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(self.sql_error("find due downloads"))
    }

    /// The clip is on disk under its final name: the job is done.
    pub fn record_downloaded(
        &self,
        item: &DownloadItem,
        path: &str,
        sha256: &str,
        bytes: u64,
    ) -> Result<(), StoreError> {
        self.write("record a finished clip", |tx| {
            tx.execute(
                "UPDATE jobs SET state = 'done', output_path = ?2, output_sha256 = ?3,
                     output_bytes = ?4, reason = NULL, clip_url = NULL, updated_at = ?5
                 WHERE id = ?1",
                params![item.job_id, path, sha256, bytes as i64, now_ms()],
            )?;
            event(
                tx,
                Some(item.batch_id),
                Some(item.job_id),
                "done",
                &format!("{}: {path} ({bytes} bytes)", item.subject_id),
            )
        })
    }

    /// A download went wrong in a way worth trying again later. Returns the failure count.
    pub fn record_download_failed(
        &self,
        item: &DownloadItem,
        why: &str,
        not_before: i64,
    ) -> Result<u32, StoreError> {
        self.write("record a failed download", |tx| {
            tx.execute(
                "UPDATE jobs SET download_failures = download_failures + 1, not_before = ?2,
                     reason = ?3, updated_at = ?4 WHERE id = ?1",
                params![item.job_id, not_before, why, now_ms()],
            )?;
            event(
                tx,
                Some(item.batch_id),
                Some(item.job_id),
                "download-failed",
                &format!("{}: {why}", item.subject_id),
            )?;
            tx.query_row(
                "SELECT download_failures FROM jobs WHERE id = ?1",
                [item.job_id],
                |r| r.get(0),
            )
        })
    }

    /// The clip link is dead: ask the provider for a fresh one by polling the task again.
    /// Returns how many times the link has been refreshed for this job.
    pub fn record_link_dead(&self, item: &DownloadItem, why: &str) -> Result<u32, StoreError> {
        self.write("record a dead link", |tx| {
            tx.execute(
                "UPDATE jobs SET state = 'running', clip_url = NULL, next_poll_at = ?2,
                     link_refreshes = link_refreshes + 1, reason = ?3, updated_at = ?2
                 WHERE id = ?1",
                params![item.job_id, now_ms(), why],
            )?;
            event(
                tx,
                Some(item.batch_id),
                Some(item.job_id),
                "link-dead",
                &format!(
                    "{}: {why}; asking the provider for a fresh link",
                    item.subject_id
                ),
            )?;
            tx.query_row(
                "SELECT link_refreshes FROM jobs WHERE id = ?1",
                [item.job_id],
                |r| r.get(0),
            )
        })
    }

    pub fn link_refreshes(&self, job_id: i64) -> Result<u32, StoreError> {
        let conn = self.conn();
        conn.query_row(
            "SELECT link_refreshes FROM jobs WHERE id = ?1",
            [job_id],
            |r| r.get(0),
        )
        .map_err(self.sql_error("read link refreshes"))
    }

    /// Counts of a batch's jobs by state.
    pub fn batch_counts(&self, batch_id: i64) -> Result<JobStateCounts, StoreError> {
        let conn = self.conn();
        let mut s = conn
            .prepare_cached("SELECT state, count(*) FROM jobs WHERE batch_id = ?1 GROUP BY state")
            .map_err(self.sql_error("count jobs"))?;
        let mut counts = JobStateCounts::default();
        let rows = s
            .query_map([batch_id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })
            .map_err(self.sql_error("count jobs"))?;
        for row in rows {
            let (state, n) = row.map_err(self.sql_error("count jobs"))?;
            if let Some(st) = JobState::parse(&state) {
                counts.by_state.insert(st, n as u64);
            }
        }
        Ok(counts)
    }

    /// Planned jobs held back, with why (over budget, price unknown).
    pub fn held_jobs(&self, batch_id: i64) -> Result<Vec<(String, String)>, StoreError> {
        let conn = self.conn();
        let mut s = conn
            .prepare(
                "SELECT subject_id, held FROM jobs WHERE batch_id = ?1 AND state = 'planned'
                 AND held IS NOT NULL ORDER BY subject_id",
            )
            .map_err(self.sql_error("list held jobs"))?;
        s.query_map([batch_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect())
            .map_err(self.sql_error("list held jobs"))
    }

    /// Send held jobs of a batch back to work: `failed`, `expired` and `rejected` ones as new
    /// attempts, `unknown` ones under their same idempotency key.
    pub fn retry(&self, batch_id: i64, which: RetrySelection) -> Result<usize, StoreError> {
        self.write("retry jobs", |tx| {
            let mut n = 0;
            let now = now_ms();
            if which.failed || which.rejected {
                let states = match (which.failed, which.rejected) {
                    (true, true) => "('failed', 'rejected')",
                    (true, false) => "('failed')",
                    _ => "('rejected')",
                };
                // Retrying a failed job grants it a fresh set of retries: its old failed
                // attempts stay in the record but no longer count.
                tx.execute(
                    &format!(
                        "UPDATE attempts SET state = 'abandoned', updated_at = ?2
                         WHERE state = 'failed' AND job_id IN
                             (SELECT id FROM jobs WHERE batch_id = ?1 AND state IN {states})"
                    ),
                    params![batch_id, now],
                )?;
                n += tx.execute(
                    &format!(
                        "UPDATE jobs SET state = 'planned', held = NULL, attempt_id = NULL,
                             task_id = NULL, updated_at = ?2
                         WHERE batch_id = ?1 AND state IN {states}"
                    ),
                    params![batch_id, now],
                )?;
            }
            if which.expired {
                // The task finished and was billed; only its link is gone. Ask for it again.
                n += tx.execute(
                    "UPDATE jobs SET state = 'running', next_poll_at = ?2, link_refreshes = 0,
                         updated_at = ?2 WHERE batch_id = ?1 AND state = 'expired'
                         AND task_id IS NOT NULL",
                    params![batch_id, now],
                )?;
            }
            if which.unknown {
                n += tx.execute(
                    "UPDATE jobs SET state = 'planned', held = NULL, updated_at = ?2
                     WHERE batch_id = ?1 AND state = 'unknown'",
                    params![batch_id, now],
                )?;
            }
            event(
                tx,
                Some(batch_id),
                None,
                "retry",
                &format!("{n} jobs sent back to work"),
            )?;
            Ok(n)
        })
    }

    /// Cancel a batch: planned jobs are cancelled; tasks already running are left to finish and
    /// their clips still downloaded, unless `abandon`, which also cancels those (their clips are
    /// never fetched; what the provider bills for them is not refunded).
    pub fn cancel(&self, batch_id: i64, abandon: bool) -> Result<usize, StoreError> {
        self.write("cancel a batch", |tx| {
            let now = now_ms();
            let mut n = tx.execute(
                "UPDATE jobs SET state = 'cancelled', reason = 'cancelled by the user',
                     updated_at = ?2 WHERE batch_id = ?1 AND state IN ('planned', 'unknown')",
                params![batch_id, now],
            )?;
            if abandon {
                // Their attempts stay `accepted`: the provider bills them, so the budget counts them.
                n += tx.execute(
                    "UPDATE jobs SET state = 'cancelled', reason = 'abandoned by the user',
                         updated_at = ?2 WHERE batch_id = ?1 AND state IN ('running', 'downloading')",
                    params![batch_id, now],
                )?;
            }
            event(tx, Some(batch_id), None, "cancel", &format!("{n} jobs cancelled"))?;
            Ok(n)
        })
    }
}

fn id_list(ids: &[i64]) -> String {
    if ids.is_empty() {
        // `IN ()` is a syntax error in SQLite; no id matches -1.
        return "-1".to_owned();
    }
    ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
}

fn batch_scope(batch_ids: Option<&[i64]>) -> String {
    match batch_ids {
        None => String::new(),
        Some(ids) => format!("AND b.id IN ({})", id_list(ids)),
    }
}
