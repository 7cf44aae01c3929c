//! Per-job views: one row per job of a batch, for `recast status BATCH --jobs` and its JSON,
//! and a page of them for the dashboard's grid.
//!
//! Owns: the query and the row's shape. May not: change anything.

use super::Cached;
use super::{JobState, Store, StoreError};

/// One job as a person looks at it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct JobRow {
    pub subject: String,
    pub job_key: String,
    pub state: JobState,
    /// The current (or last) attempt's number; `None` before the first submit.
    pub attempt: Option<u32>,
    pub task_id: Option<String>,
    /// The upper-bound estimate of one attempt.
    pub credits_estimated: Option<u64>,
    /// What the provider said it billed, over every attempt, when it said.
    pub credits_billed: Option<u64>,
    /// The clip's path, once it landed.
    pub clip: Option<String>,
    pub sha256: Option<String>,
    /// Why the job needs a person, or why it waits (budget).
    pub error: Option<String>,
    pub error_code: Option<String>,
    pub request_id: Option<String>,
    /// Unix milliseconds.
    pub created_at: i64,
    pub updated_at: i64,
}

impl Store {
    /// The jobs of a batch, by subject, only those in `states` when it is not empty.
    pub fn job_rows(&self, batch_id: i64, states: &[JobState]) -> Result<Vec<JobRow>, StoreError> {
        let rows = self.rows_of(batch_id, i64::MAX, 0)?;
        Ok(rows
            .into_iter()
            .filter(|r| states.is_empty() || states.contains(&r.state))
            .collect())
    }

    /// At most `limit` jobs of a batch, by subject, after the first `skip`: one page of the
    /// dashboard's grid, read along the batch's subject index (a page deep in a large batch
    /// steps over the index entries before it, never sorts the batch).
    pub fn job_rows_page(
        &self,
        batch_id: i64,
        skip: u64,
        limit: u64,
    ) -> Result<Vec<JobRow>, StoreError> {
        let (limit, skip) = (limit.min(i64::MAX as u64), skip.min(i64::MAX as u64));
        self.rows_of(batch_id, limit as i64, skip as i64)
    }

    fn rows_of(&self, batch_id: i64, limit: i64, skip: i64) -> Result<Vec<JobRow>, StoreError> {
        let conn = self.conn();
        let mut s = conn
            .prepare_cached(
                "SELECT j.subject_id, j.job_key, j.state, a.number, j.task_id, j.estimate_credits,
                     (SELECT sum(x.billed_credits) FROM attempts x WHERE x.job_id = j.id),
                     j.output_path, j.output_sha256, coalesce(j.reason, j.held), j.error_code,
                     j.request_id, j.created_at, j.updated_at
                 FROM jobs j INDEXED BY jobs_by_subject
                 LEFT JOIN attempts a ON a.id = coalesce(j.attempt_id,
                     (SELECT max(y.id) FROM attempts y WHERE y.job_id = j.id))
                 WHERE j.batch_id = ?1
                 ORDER BY j.subject_id, j.id LIMIT ?2 OFFSET ?3",
            )
            .map_err(self.sql_error("list a batch's jobs"))?;
        s.query_map(rusqlite::params![batch_id, limit, skip], job_row)
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(self.sql_error("list a batch's jobs"))
    }

    /// A job's stored request (with its subject image) and its landed clip, by key.
    pub fn job_files(
        &self,
        batch_id: i64,
        job_key: &str,
    ) -> Result<Option<(String, Option<String>)>, StoreError> {
        use rusqlite::OptionalExtension;
        let conn = self.conn();
        conn.row(
            "SELECT spec_json, output_path FROM jobs WHERE batch_id = ?1 AND job_key = ?2",
            rusqlite::params![batch_id, job_key],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(self.sql_error("find a job's files"))
    }
}

fn job_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<JobRow> {
    let state: String = r.get(2)?;
    Ok(JobRow {
        subject: r.get(0)?,
        job_key: r.get(1)?,
        state: JobState::parse(&state).unwrap_or(JobState::Unknown),
        attempt: r.get(3)?,
        task_id: r.get(4)?,
        credits_estimated: r.get::<_, Option<i64>>(5)?.map(|c| c as u64),
        credits_billed: r.get::<_, Option<i64>>(6)?.map(|c| c as u64),
        clip: r.get(7)?,
        sha256: r.get(8)?,
        error: r.get(9)?,
        error_code: r.get(10)?,
        request_id: r.get(11)?,
        created_at: r.get(12)?,
        updated_at: r.get(13)?,
    })
}
