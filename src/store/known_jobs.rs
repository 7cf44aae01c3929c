//! What the store knows of a batch's jobs by key and subject, for planning a manifest again
//! and for reading its output folder.
//!
//! Owns: those read-only queries (the whole batch at once, for `recast plan`; one key or
//! subject at a time, for a streamed plan that must not hold the batch). May not: write.

use std::collections::HashMap;

use rusqlite::{OptionalExtension, params};

use super::{Cached, JobState, Store, StoreError};

/// What the store knows of a job key, for planning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownJob {
    pub subject_id: String,
    pub state: JobState,
}

impl Store {
    /// Every job key the store has for a batch, with its state.
    pub fn known_jobs(&self, batch_id: i64) -> Result<HashMap<String, KnownJob>, StoreError> {
        let conn = self.conn();
        let mut s = conn
            .prepare_cached("SELECT job_key, subject_id, state FROM jobs WHERE batch_id = ?1")
            .map_err(self.sql_error("list known jobs"))?;
        s.query_map([batch_id], |r| {
            let state: String = r.get(2)?;
            Ok((
                r.get::<_, String>(0)?,
                KnownJob {
                    subject_id: r.get(1)?,
                    state: JobState::parse(&state).unwrap_or(JobState::Planned),
                },
            ))
        })
        .and_then(|rows| rows.collect())
        .map_err(self.sql_error("list known jobs"))
    }

    /// Whether a batch has a job of this key, whatever its state.
    pub fn has_job_key(&self, batch_id: i64, key: &str) -> Result<bool, StoreError> {
        let conn = self.conn();
        let mut s = conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM jobs WHERE batch_id = ?1 AND job_key = ?2)",
            )
            .map_err(self.sql_error("look up a job key"))?;
        s.query_row(params![batch_id, key], |r| r.get(0))
            .map_err(self.sql_error("look up a job key"))
    }

    /// The state of the batch's job of this key, if the store has one.
    pub fn known_job_state(
        &self,
        batch_id: i64,
        key: &str,
    ) -> Result<Option<JobState>, StoreError> {
        let conn = self.conn();
        conn.row(
            "SELECT state FROM jobs WHERE batch_id = ?1 AND job_key = ?2",
            params![batch_id, key],
            |r| r.get::<_, String>(0),
        )
        .optional()
        .map(|state| state.map(|s| JobState::parse(&s).unwrap_or(JobState::Planned)))
        .map_err(self.sql_error("look up a job key"))
    }

    /// Whether a job of this subject was made (`done`), under any key.
    pub fn subject_has_clip(&self, batch_id: i64, subject_id: &str) -> Result<bool, StoreError> {
        let conn = self.conn();
        conn.row(
            "SELECT EXISTS (SELECT 1 FROM jobs
             WHERE batch_id = ?1 AND subject_id = ?2 AND state = 'done')",
            params![batch_id, subject_id],
            |r| r.get(0),
        )
        .map_err(self.sql_error("look up a subject's clip"))
    }
}
