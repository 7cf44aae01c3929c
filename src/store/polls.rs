//! Running tasks as the poll stage reads them, and what a poll that goes on writes.
//!
//! Owns: the [`PollItem`] query (due, one job, the next due time) and the progress of a task
//! that goes on. May not: decide when a task is polled next (the engine's schedule does; the
//! store keeps the due time a restart starts from).

use rusqlite::{OptionalExtension, Transaction, params};

use super::Cached;
use super::jobs::PollItem;
use super::{Scope, Store, StoreError, now_ms};

/// The columns of a [`PollItem`], in [`poll_item`]'s order.
const POLL_ITEM: &str = "SELECT id, attempt_id, batch_id, subject_id, task_id, polls, duration_ms,
     (SELECT a.created_at FROM attempts a WHERE a.id = jobs.attempt_id),
     (SELECT a.billed_credits FROM attempts a WHERE a.id = jobs.attempt_id),
     next_poll_at,
     (SELECT count(*) FROM attempts f WHERE f.job_id = jobs.id AND f.state = 'failed'),
     (SELECT b.retries FROM batches b WHERE b.id = jobs.batch_id)";

/// The job's task, if it is running, read through `conn` (a transaction sees its own writes).
pub(super) fn running_task(
    conn: &rusqlite::Connection,
    job_id: i64,
) -> rusqlite::Result<Option<PollItem>> {
    conn.row(
        &format!(
            "{POLL_ITEM} FROM jobs WHERE id = ?1 AND state = 'running' AND task_id IS NOT NULL"
        ),
        [job_id],
        poll_item,
    )
    .optional()
}

fn poll_item(r: &rusqlite::Row<'_>) -> rusqlite::Result<PollItem> {
    let now = now_ms();
    Ok(PollItem {
        job_id: r.get(0)?,
        attempt_id: r.get(1)?,
        batch_id: r.get(2)?,
        subject_id: r.get(3)?,
        task_id: r.get(4)?,
        polls: r.get(5)?,
        duration_ms: r.get::<_, i64>(6)? as u64,
        submitted_at_ms: r.get::<_, Option<i64>>(7)?.unwrap_or(now),
        billed_credits: r.get::<_, Option<i64>>(8)?.map(|c| c as u64),
        due_at_ms: r.get::<_, Option<i64>>(9)?.unwrap_or(now),
        failed_attempts: r.get(10)?,
        retries: r.get::<_, Option<u32>>(11)?.unwrap_or(0),
    })
}

impl Store {
    /// Running tasks whose next poll is due by `now`, soonest first.
    pub fn due_polls(
        &self,
        scope: &Scope,
        now: i64,
        limit: usize,
    ) -> Result<Vec<PollItem>, StoreError> {
        let conn = self.conn();
        let mut s = conn
            .prepare_cached(&format!(
                "{POLL_ITEM} FROM jobs INDEXED BY jobs_polls_due
                 WHERE state = 'running' AND next_poll_at <= ?1 AND task_id IS NOT NULL {}
                 ORDER BY next_poll_at LIMIT ?2",
                scope.filter("batch_id")
            ))
            .map_err(self.sql_error("find due polls"))?;
        s.query_map(params![now, limit as i64], poll_item)
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(self.sql_error("find due polls"))
    }

    /// The job's task, if it is running.
    pub fn poll_item(&self, job_id: i64) -> Result<Option<PollItem>, StoreError> {
        running_task(&self.conn(), job_id).map_err(self.sql_error("read a running task"))
    }

    /// When the next poll of any running task is due, if any is running.
    pub fn next_poll_at(&self, scope: &Scope) -> Result<Option<i64>, StoreError> {
        let conn = self.conn();
        conn.row(
            &format!(
                "SELECT next_poll_at FROM jobs INDEXED BY jobs_polls_due
                 WHERE state = 'running' {} ORDER BY next_poll_at LIMIT 1",
                scope.filter("batch_id")
            ),
            [],
            |r| r.get(0),
        )
        .optional()
        .map(Option::flatten)
        .map_err(self.sql_error("find the next poll"))
    }

    #[cfg(test)]
    pub fn record_progress(
        &self,
        job_id: i64,
        progress: Option<u8>,
        next_poll_at: i64,
    ) -> Result<(), StoreError> {
        self.note("record progress", move |tx| {
            poll_noted(tx, job_id, progress, next_poll_at)
        })
    }

    /// A poll's answer for a task that goes on, with what the provider said it billed for its
    /// attempt if that changed (`(attempt, credits)`).
    pub async fn record_poll(
        &self,
        job_id: i64,
        progress: Option<u8>,
        next_poll_at: i64,
        billed: Option<(i64, u64)>,
    ) -> Result<(), StoreError> {
        self.note_async("record progress", move |tx| {
            if let Some((attempt_id, credits)) = billed {
                super::account::set_billed(tx, attempt_id, credits)?;
            }
            poll_noted(tx, job_id, progress, next_poll_at)
        })
        .await
    }
}

fn poll_noted(
    tx: &Transaction<'_>,
    job_id: i64,
    progress: Option<u8>,
    next_poll_at: i64,
) -> rusqlite::Result<()> {
    tx.exec(
        "UPDATE jobs SET progress = coalesce(?2, progress), polls = polls + 1,
         next_poll_at = ?3, updated_at = ?4 WHERE id = ?1 AND state = 'running'",
        params![job_id, progress, next_poll_at, now_ms()],
    )?;
    Ok(())
}
