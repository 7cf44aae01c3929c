//! A running task's end, and its clip landing (what a poll that goes on writes is `polls`').
//!
//! Each public function is one transaction, and each transition names the state it leaves
//! (`WHERE state = ...`), so a late answer can never revive a job that was expired, cancelled or
//! done.

use rusqlite::params;

use super::Cached;
use super::jobs::{
    DownloadItem, JobStateCounts, PollItem, event, job_batch, release_budget_holds,
    set_attempt_state,
};
use super::{AfterFailure, JobState, Scope, Store, StoreError, now_ms};

impl Store {
    /// Keep the provider's error code and request id beside the job's current reason.
    pub async fn note_error_reference(
        &self,
        job_id: i64,
        reference: &crate::provider::ErrorRef,
    ) -> Result<(), StoreError> {
        if reference.is_empty() {
            return Ok(());
        }
        let reference = reference.clone();
        self.write_async("keep an error's code and request id", move |tx| {
            let reference = &reference;
            tx.exec(
                "UPDATE jobs SET error_code = ?2, request_id = ?3 WHERE id = ?1",
                rusqlite::params![job_id, reference.code, reference.request_id],
            )?;
            Ok(())
        })
        .await
    }

    /// The task finished: its clip link is recorded and the job waits for its download.
    /// Committed, and on disk with the next sync a write waits for (at most
    /// [`super::durable::LAZY_SYNC`] later): only a power loss before then could take it, and
    /// then the next poll of the task finds it finished again, at no cost.
    pub async fn record_clip_ready(
        &self,
        item: &PollItem,
        clip_url: &str,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let (job_id, attempt_id, batch_id) = (item.job_id, item.attempt_id, item.batch_id);
        let message = format!("{}: task {} finished", item.subject_id, item.task_id);
        let clip_url = clip_url.to_owned();
        self.note_async("record a finished task", move |tx| {
            set_attempt_state(tx, attempt_id, "completed", None)?;
            tx.exec(
                "UPDATE jobs SET state = 'downloading', progress = 100, clip_url = ?2,
                     clip_expires_at = ?3, not_before = NULL, reason = NULL, updated_at = ?4
                 WHERE id = ?1 AND state = 'running' AND attempt_id = ?5",
                params![job_id, clip_url, expires_at, now_ms(), attempt_id],
            )?;
            event(tx, Some(batch_id), Some(job_id), "completed", &message)
        })
        .await
    }

    /// The provider's task failed (it refunds): the attempt is closed with `why`, and the job
    /// is planned again or `failed`, as the engine decided (`next`), with `reason`.
    pub async fn record_task_failed(
        &self,
        item: &PollItem,
        next: AfterFailure,
        why: &str,
        reason: &str,
    ) -> Result<(), StoreError> {
        let state = match next {
            AfterFailure::Retry => JobState::Planned,
            AfterFailure::GiveUp => JobState::Failed,
        };
        let (item, why, reason) = (item.clone(), why.to_owned(), reason.to_owned());
        self.write_async("record a failed task", move |tx| {
            let (item, why, reason) = (&item, why.as_str(), reason.as_str());
            set_attempt_state(tx, item.attempt_id, "failed", Some(why))?;
            tx.exec(
                "UPDATE jobs SET state = ?2, reason = ?3, attempt_id = NULL, task_id = NULL,
                     updated_at = ?4 WHERE id = ?1 AND state = 'running' AND attempt_id = ?5",
                params![
                    item.job_id,
                    state.as_str(),
                    reason,
                    now_ms(),
                    item.attempt_id
                ],
            )?;
            release_budget_holds(tx, item.batch_id)?;
            event(
                tx,
                Some(item.batch_id),
                Some(item.job_id),
                "task-failed",
                reason,
            )?;
            Ok(())
        })
        .await
    }

    /// Move a running job to a state that needs a person (`expired`, `lost`), with the reason.
    /// Only from `running`: a late poll answer cannot move a job that has moved on.
    pub async fn record_needs_person(
        &self,
        job_id: i64,
        state: JobState,
        why: &str,
    ) -> Result<(), StoreError> {
        debug_assert!(state.needs_a_person());
        let why = why.to_owned();
        self.write_async("record a job that needs a person", move |tx| {
            let why = why.as_str();
            let batch_id = job_batch(tx, job_id)?;
            let moved = tx.exec(
                "UPDATE jobs SET state = ?2, reason = ?3, updated_at = ?4
                 WHERE id = ?1 AND state = 'running'",
                params![job_id, state.as_str(), why, now_ms()],
            )?;
            if moved == 1 {
                event(tx, Some(batch_id), Some(job_id), state.as_str(), why)?;
            }
            Ok(())
        })
        .await
    }

    /// Clips waiting to be fetched, the ones whose links expire soonest first.
    pub fn due_downloads(
        &self,
        scope: &Scope,
        now: i64,
        limit: usize,
        skip: &[i64],
    ) -> Result<Vec<DownloadItem>, StoreError> {
        let conn = self.conn();
        let mut s = conn
            .prepare_cached(&format!(
                "SELECT j.id, j.batch_id, j.subject_id, j.job_key, j.clip_url, j.clip_expires_at,
                     b.output_dir, j.output_name, j.download_failures, b.name, j.task_id,
                     j.estimate_credits
                 FROM jobs j INDEXED BY jobs_downloads_due JOIN batches b ON b.id = j.batch_id
                 WHERE j.state = 'downloading' AND j.clip_url IS NOT NULL
                     AND coalesce(j.not_before, 0) <= ?1 {}
                 ORDER BY coalesce(j.clip_expires_at, 9223372036854775807), j.id LIMIT ?2",
                scope.filter("j.batch_id")
            ))
            .map_err(self.sql_error("find due downloads"))?;
        // The ones to skip are left out here, not in the SQL: a statement per list would be
        // parsed and planned on every tick.
        let wanted = limit.saturating_add(skip.len());
        let rows = s
            .query_map(params![now, wanted as i64], |r| {
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
                    batch_name: r.get(9)?,
                    task_id: r.get(10)?,
                    estimate_credits: r.get::<_, Option<i64>>(11)?.map(|c| c as u64),
                })
            })
            .map_err(self.sql_error("find due downloads"))?;
        let mut due = Vec::new();
        for row in rows {
            let item = row.map_err(self.sql_error("find due downloads"))?;
            if !skip.contains(&item.job_id) {
                due.push(item);
            }
            if due.len() == limit {
                break;
            }
        }
        Ok(due)
    }

    /// The clip is on disk under its final name: the job is done. Committed, and on disk with
    /// the next sync a write waits for: the folder's results file already holds the clip's
    /// line, synced, and a job a power loss took back to `downloading` finds its own clip under
    /// its name (same bytes) and is done again without a new file.
    pub async fn record_downloaded(
        &self,
        item: &DownloadItem,
        path: &str,
        sha256: &str,
        bytes: u64,
    ) -> Result<(), StoreError> {
        let (job_id, batch_id) = (item.job_id, item.batch_id);
        let message = format!("{}: {path} ({bytes} bytes)", item.subject_id);
        let (path, sha256) = (path.to_owned(), sha256.to_owned());
        self.note_async("record a finished clip", move |tx| {
            tx.exec(
                "UPDATE jobs SET state = 'done', output_path = ?2, output_sha256 = ?3,
                     output_bytes = ?4, reason = NULL, clip_url = NULL, updated_at = ?5
                 WHERE id = ?1 AND state = 'downloading'",
                params![job_id, path, sha256, bytes as i64, now_ms()],
            )?;
            event(tx, Some(batch_id), Some(job_id), "done", &message)
        })
        .await
    }

    /// A download went wrong in a way worth trying again later. Returns the failure count.
    pub async fn record_download_failed(
        &self,
        item: &DownloadItem,
        why: &str,
        not_before: i64,
    ) -> Result<u32, StoreError> {
        let (item, why) = (item.clone(), why.to_owned());
        self.write_async("record a failed download", move |tx| {
            let (item, why) = (&item, why.as_str());
            tx.exec(
                "UPDATE jobs SET download_failures = download_failures + 1, not_before = ?2,
                     reason = ?3, updated_at = ?4 WHERE id = ?1 AND state = 'downloading'",
                params![item.job_id, not_before, why, now_ms()],
            )?;
            event(
                tx,
                Some(item.batch_id),
                Some(item.job_id),
                "download-failed",
                &format!("{}: {why}", item.subject_id),
            )?;
            tx.row(
                "SELECT download_failures FROM jobs WHERE id = ?1",
                [item.job_id],
                |r| r.get(0),
            )
        })
        .await
    }

    /// The clip link is dead: ask the provider for a fresh one by polling the task again.
    /// Returns how many times the link has been refreshed for this job.
    pub async fn record_link_dead(
        &self,
        item: &DownloadItem,
        why: &str,
    ) -> Result<u32, StoreError> {
        let (item, why) = (item.clone(), why.to_owned());
        self.write_async("record a dead link", move |tx| {
            let (item, why) = (&item, why.as_str());
            tx.exec(
                "UPDATE jobs SET state = 'running', clip_url = NULL, next_poll_at = ?2,
                     link_refreshes = link_refreshes + 1, reason = ?3, updated_at = ?2
                 WHERE id = ?1 AND state = 'downloading'",
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
            tx.row(
                "SELECT link_refreshes FROM jobs WHERE id = ?1",
                [item.job_id],
                |r| r.get(0),
            )
        })
        .await
    }

    pub fn link_refreshes(&self, job_id: i64) -> Result<u32, StoreError> {
        let conn = self.conn();
        conn.row(
            "SELECT link_refreshes FROM jobs WHERE id = ?1",
            [job_id],
            |r| r.get(0),
        )
        .map_err(self.sql_error("read link refreshes"))
    }

    /// Counts of a batch's jobs by state, read from the counters triggers keep (no scan).
    pub fn batch_counts(&self, batch_id: i64) -> Result<JobStateCounts, StoreError> {
        let conn = self.conn();
        let mut s = conn
            .prepare_cached("SELECT state, n FROM batch_state_counts WHERE batch_id = ?1 AND n > 0")
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

    /// How many planned jobs are held back: what the progress bar shows every tick, counted by
    /// the `jobs_held` index rather than listed.
    pub fn held_count(&self, batch_id: i64) -> Result<u64, StoreError> {
        self.conn()
            .row(
                "SELECT count(*) FROM jobs WHERE batch_id = ?1 AND state = 'planned'
                 AND held IS NOT NULL",
                [batch_id],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n.max(0) as u64)
            .map_err(self.sql_error("count held jobs"))
    }

    /// Planned jobs held back, with why (over budget, price unknown).
    pub fn held_jobs(&self, batch_id: i64) -> Result<Vec<(String, String)>, StoreError> {
        let conn = self.conn();
        let mut s = conn
            .prepare_cached(
                "SELECT subject_id, held FROM jobs WHERE batch_id = ?1 AND state = 'planned'
                 AND held IS NOT NULL ORDER BY subject_id",
            )
            .map_err(self.sql_error("list held jobs"))?;
        s.query_map([batch_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect())
            .map_err(self.sql_error("list held jobs"))
    }
}
