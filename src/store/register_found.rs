//! Registration's part from the output folder: a job whose submit only the results file
//! remembers (followed, never sent again), and a clip found whole there (`done`, its cost
//! counted against the budget as if paid here).
//!
//! Owns: those two transitions, inside registration's transaction. May not: read the output
//! folder (the engine's registration did, and hands over what it found).

use rusqlite::{Transaction, params};

use super::Cached;
use super::jobs::{AdoptedSubmit, LandedClip, NewJob, event};
use super::register::insert_job;
use super::{JobState, now_ms};

/// A job whose submit only the output folder remembers: `running` on its task (polling is
/// free), or `unknown` when the submit's answer never came.
pub(super) fn insert_adopted(
    tx: &Transaction<'_>,
    batch_id: i64,
    job: &NewJob,
    adopted: &AdoptedSubmit,
) -> rusqlite::Result<i64> {
    let now = now_ms();
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
    let job_id = insert_job(tx, batch_id, job, job_state, Some(reason), None)?;
    tx.exec(
        "UPDATE jobs SET task_id = ?2, next_poll_at = ?3 WHERE id = ?1",
        params![job_id, adopted.task_id, now],
    )?;
    tx.exec(
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
    tx.exec(
        "UPDATE jobs SET attempt_id = ?2 WHERE id = ?1",
        params![job_id, attempt_id],
    )?;
    event(tx, Some(batch_id), Some(job_id), job_state.as_str(), reason)?;
    Ok(job_id)
}

/// A clip the output folder holds makes its job `done`, unless a task of it is in flight (that
/// one lands on its own, free). Returns whether the job changed.
pub(super) fn mark_found_done(
    tx: &Transaction<'_>,
    job_id: i64,
    clip: &LandedClip,
) -> rusqlite::Result<bool> {
    let n = tx.exec(
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
    let paid_here: bool = tx.row(
        "SELECT EXISTS (SELECT 1 FROM attempts WHERE job_id = ?1 AND state = 'completed')",
        [job_id],
        |r| r.get(0),
    )?;
    if !paid_here {
        let number: i64 = tx.row(
            "SELECT coalesce(max(number), 0) + 1 FROM attempts WHERE job_id = ?1",
            [job_id],
            |r| r.get(0),
        )?;
        tx.exec(
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
        tx.exec(
            "UPDATE jobs SET attempt_id = ?2, task_id = coalesce(task_id, ?3) WHERE id = ?1",
            params![job_id, attempt_id, clip.task_id],
        )?;
    }
    Ok(true)
}
