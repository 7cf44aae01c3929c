//! Registration: a batch and its jobs as a manifest declares them, reconciled with what this
//! state folder and the output folder already know, in one transaction.
//!
//! New keys are added as planned; known keys are kept as they are; planned jobs whose keys left
//! the manifest are dropped (cancelled by the manifest, and back if the subject comes back). A
//! person's cancel is never undone here: jobs a cancelled batch gains are registered cancelled.
//! A clip the output folder holds whole makes its job `done`; a submit only the output folder
//! remembers is followed (`running`) or held (`unknown`), never sent again silently.

use rusqlite::{OptionalExtension, Transaction, params};

use super::Cached;
use super::jobs::{NewBatch, NewJob, ReconcileReport, event, set_job_state};
use super::register_found::{insert_adopted, mark_found_done};
use super::{JobState, Store, StoreError, now_ms};

/// What this state folder already knows of a job key.
struct Known {
    id: i64,
    state: JobState,
    /// An attempt or a task exists: something may have been spent on it.
    submitted_before: bool,
    cancelled_by: String,
}

impl Store {
    /// Register a batch or reconcile it with its manifest, in one transaction.
    pub fn register_batch(
        &self,
        batch: &NewBatch,
        jobs: impl IntoIterator<Item = NewJob>,
    ) -> Result<ReconcileReport, StoreError> {
        self.register_batch_from(batch, jobs.into_iter().map(Ok))
    }

    /// [`Store::register_batch`] from jobs read as they go (a staged plan): one that cannot be
    /// read rolls the whole registration back, with its error.
    pub fn register_batch_from(
        &self,
        batch: &NewBatch,
        jobs: impl IntoIterator<Item = Result<NewJob, StoreError>>,
    ) -> Result<ReconcileReport, StoreError> {
        let mut unreadable = None;
        let registered = self.write("register the batch", |tx| {
            let (batch_id, batch_cancelled) = upsert_batch(tx, batch)?;
            let mut report = ReconcileReport {
                batch_id,
                ..Default::default()
            };
            // The rows this manifest names, by id (8 bytes a job, not a copy of every key):
            // a large batch is registered without holding it twice.
            let mut named = Vec::new();
            for job in jobs {
                let job = job.map_err(|e| {
                    unreadable = Some(e);
                    rusqlite::Error::InvalidQuery
                })?;
                named.push(reconcile_job(
                    tx,
                    batch_id,
                    batch_cancelled,
                    &job,
                    &mut report,
                )?);
            }
            named.sort_unstable();
            report.dropped = drop_stale(tx, batch_id, &named)?;
            count_subjects(tx, batch_id)?;
            event(
                tx,
                Some(batch_id),
                None,
                "registered",
                &format!(
                    "manifest {}: {} new, {} kept, {} dropped, {} back, {} found in the output \
                     folder, {} followed from it",
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
        });
        match unreadable {
            Some(e) => Err(e),
            None => registered,
        }
    }
}

/// The batch row, created or brought up to date. Returns its id and whether a person cancelled it.
fn upsert_batch(tx: &Transaction<'_>, batch: &NewBatch) -> rusqlite::Result<(i64, bool)> {
    tx.exec(
        "INSERT INTO batches (name, provider, manifest_path, base_dir, output_dir,
             budget_credits, retries, priority, created_at, updated_at, canary)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?10)
         ON CONFLICT (name, provider) DO UPDATE SET manifest_path = ?3, base_dir = ?4,
             output_dir = ?5, budget_credits = ?6, retries = ?7, priority = ?8, updated_at = ?9,
             canary = coalesce(?10, canary)",
        params![
            batch.name,
            batch.provider,
            batch.manifest_path,
            batch.base_dir,
            batch.output_dir,
            batch.budget_credits.map(|c| c as i64),
            batch.retries,
            batch.priority,
            now_ms(),
            batch.canary
        ],
    )?;
    let (batch_id, cancelled): (i64, bool) = tx.row(
        "SELECT id, cancelled FROM batches WHERE name = ?1 AND provider = ?2",
        params![batch.name, batch.provider],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    // The budget may have changed: held jobs are looked at again.
    tx.exec(
        "UPDATE jobs SET held = NULL WHERE batch_id = ?1 AND state = 'planned'",
        [batch_id],
    )?;
    Ok((batch_id, cancelled))
}

fn find(tx: &Transaction<'_>, batch_id: i64, key: &str) -> rusqlite::Result<Option<Known>> {
    tx.prepare_cached(
        "SELECT id, state, attempt_id IS NOT NULL OR task_id IS NOT NULL,
             coalesce(cancelled_by, '') FROM jobs WHERE batch_id = ?1 AND job_key = ?2",
    )?
    .query_row(params![batch_id, key], |r| {
        Ok(Known {
            id: r.get(0)?,
            state: JobState::parse(&r.get::<_, String>(1)?).unwrap_or(JobState::Planned),
            submitted_before: r.get(2)?,
            cancelled_by: r.get(3)?,
        })
    })
    .optional()
}

pub(super) fn insert_job(
    tx: &Transaction<'_>,
    batch_id: i64,
    job: &NewJob,
    state: JobState,
    reason: Option<&str>,
    cancelled_by: Option<&str>,
) -> rusqlite::Result<i64> {
    tx.prepare_cached(
        "INSERT INTO jobs (batch_id, job_key, subject_id, output_name, spec_json, duration_ms,
             estimate_credits, state, reason, created_at, updated_at, cancelled_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?11)",
    )?
    .execute(params![
        batch_id,
        job.key,
        job.subject_id,
        job.output_name,
        job.spec_json,
        job.duration_ms as i64,
        job.estimate_credits.map(|c| c as i64),
        state.as_str(),
        reason,
        now_ms(),
        cancelled_by
    ])?;
    Ok(tx.last_insert_rowid())
}

/// One job of the manifest against what is known of its key.
fn reconcile_job(
    tx: &Transaction<'_>,
    batch_id: i64,
    batch_cancelled: bool,
    job: &NewJob,
    report: &mut ReconcileReport,
) -> rusqlite::Result<i64> {
    let state = if job.invalid_reason.is_some() {
        JobState::Rejected
    } else {
        JobState::Planned
    };
    let known = find(tx, batch_id, &job.key)?;
    if let Some(clip) = &job.landed {
        let id = match &known {
            Some(k) => k.id,
            None => insert_job(tx, batch_id, job, JobState::Planned, None, None)?,
        };
        if mark_found_done(tx, id, clip)? {
            report.found_in_output += 1;
            return Ok(id);
        }
    }
    let Some(known) = known else {
        let id = match (&job.adopt, state) {
            (Some(adopted), JobState::Planned) => {
                report.adopted += 1;
                insert_adopted(tx, batch_id, job, adopted)?
            }
            // A person cancelled the batch: what it gains waits for their resume.
            (_, JobState::Planned) if batch_cancelled => {
                let why = "the batch was cancelled by a person; `recast resume` submits it";
                insert_job(
                    tx,
                    batch_id,
                    job,
                    JobState::Cancelled,
                    Some(why),
                    Some("person"),
                )?
            }
            _ => insert_job(
                tx,
                batch_id,
                job,
                state,
                job.invalid_reason.as_deref(),
                None,
            )?,
        };
        report.added += 1;
        return Ok(id);
    };
    tx.prepare_cached(
        "UPDATE jobs SET subject_id = ?2, output_name = ?3, spec_json = ?4, duration_ms = ?5,
             estimate_credits = ?6, updated_at = ?7 WHERE id = ?1",
    )?
    .execute(params![
        known.id,
        job.subject_id,
        job.output_name,
        job.spec_json,
        job.duration_ms as i64,
        job.estimate_credits.map(|c| c as i64),
        now_ms()
    ])?;
    // Only jobs nothing was ever spent on follow the manifest's verdict, and a job a person
    // cancelled stays cancelled until a person says otherwise.
    let dropped_by_manifest =
        known.state == JobState::Cancelled && known.cancelled_by == "manifest" && !batch_cancelled;
    let pre_flight = !known.submitted_before
        && (dropped_by_manifest || matches!(known.state, JobState::Rejected | JobState::Planned));
    if pre_flight && known.state != state {
        set_job_state(tx, known.id, state, job.invalid_reason.as_deref())?;
        tx.exec(
            "UPDATE jobs SET cancelled_by = NULL WHERE id = ?1",
            [known.id],
        )?;
        report.revived += usize::from(state == JobState::Planned);
    } else {
        report.kept += 1;
    }
    Ok(known.id)
}

/// Planned jobs whose keys left the manifest: cancelled by the manifest (nothing was spent on
/// them; they come back with their subject). Returns how many.
fn drop_stale(tx: &Transaction<'_>, batch_id: i64, named: &[i64]) -> rusqlite::Result<usize> {
    // Only the stale ids are collected (usually none), not every planned row.
    let mut stale = Vec::new();
    let mut planned =
        tx.prepare_cached("SELECT id FROM jobs WHERE batch_id = ?1 AND state = 'planned'")?;
    let mut rows = planned.query([batch_id])?;
    while let Some(row) = rows.next()? {
        let id: i64 = row.get(0)?;
        if named.binary_search(&id).is_err() {
            stale.push(id);
        }
    }
    drop(rows);
    drop(planned);
    let mut dropped = 0;
    for id in stale {
        set_job_state(
            tx,
            id,
            JobState::Cancelled,
            Some("no longer in the manifest"),
        )?;
        tx.exec(
            "UPDATE jobs SET cancelled_by = 'manifest' WHERE id = ?1",
            [id],
        )?;
        dropped += 1;
    }
    Ok(dropped)
}

/// The batch's subjects and the earlier versions kept beside them, counted once per
/// registration (the only time they change) so that views read them from the batch row.
fn count_subjects(tx: &Transaction<'_>, batch_id: i64) -> rusqlite::Result<()> {
    let current = "(cancelled_by IS NULL OR cancelled_by != 'manifest')";
    tx.exec(
        &format!(
            "UPDATE batches SET
                 subjects = (SELECT count(DISTINCT subject_id) FROM jobs
                     WHERE batch_id = ?1 AND {current}),
                 earlier_versions = (SELECT count(*) FROM jobs j WHERE j.batch_id = ?1
                     AND EXISTS (SELECT 1 FROM jobs n WHERE n.batch_id = j.batch_id
                         AND n.subject_id = j.subject_id AND n.id > j.id AND {current}))
             WHERE id = ?1"
        ),
        [batch_id],
    )?;
    Ok(())
}
