//! Read-only views for people: batch summaries, jobs that need a person, the event log, and
//! what the store already knows about a manifest's jobs (for `recast plan`).

use rusqlite::{OptionalExtension, params};

use super::Cached;
use super::{JobState, Store, StoreError};
use crate::store::JobStateCounts;

/// One batch, as `recast status` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BatchSummary {
    pub id: i64,
    pub name: String,
    pub provider: String,
    pub manifest_path: String,
    pub output_dir: String,
    pub budget_credits: Option<u64>,
    pub paused: bool,
    /// A person cancelled it: nothing of it is submitted until `recast resume BATCH`.
    pub cancelled: bool,
    pub counts: JobStateCounts,
    /// Upper-bound estimates of what accepted tasks cost (the provider bills at most this).
    pub credits_spent: u64,
    /// Estimates of tasks the provider failed, which it refunds.
    pub credits_refunded: u64,
    /// Submits whose outcome is unknown: possibly billed.
    pub credits_uncertain: u64,
    /// Subjects of the batch (a subject whose clip changed has more than one job).
    pub subjects: u64,
    /// Jobs that are an earlier version of a subject made again under a new key: their clips
    /// stay beside the new ones, and they count among the jobs, not the subjects.
    pub earlier_versions: u64,
    /// `canary: N` of the manifest, and whether a person approved the rest.
    pub canary: Option<u32>,
    pub approved: bool,
    /// Planned jobs held until a person approves the canary (`recast approve`).
    pub awaiting_approval: u64,
}

/// A job that needs a person, with why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AttentionJob {
    pub batch: String,
    pub subject_id: String,
    pub state: JobState,
    pub reason: Option<String>,
    pub task_id: Option<String>,
    /// The provider's error code and request id for `reason`, when it gave them.
    pub error_code: Option<String>,
    pub request_id: Option<String>,
}

/// One line of the event log.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EventLine {
    pub at_ms: i64,
    pub kind: String,
    pub message: String,
}

/// Where a batch's manifest is, for the daemon to read it again (standing performances).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchSource {
    pub id: i64,
    pub name: String,
    pub manifest_path: String,
    pub base_dir: String,
    pub priority: i64,
}

/// What the submit stage did for one batch, counted from its attempts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SubmitCounts {
    /// Submit requests sent (every attempt but those refused before the provider took them).
    pub sent: u64,
    /// Submits the provider refused with 429.
    pub rate_limited: u64,
    /// Submits that were not the job's first try (after a failed task or a refused submit).
    pub retries: u64,
}

impl Store {
    /// Every batch made for `provider`, with where its manifest is.
    pub fn batch_sources(&self, provider: &str) -> Result<Vec<BatchSource>, StoreError> {
        let conn = self.conn();
        let mut s = conn
            .prepare_cached(
                "SELECT id, name, manifest_path, base_dir, priority FROM batches
                 WHERE provider = ?1 ORDER BY id",
            )
            .map_err(self.sql_error("list batch manifests"))?;
        s.query_map([provider], |r| {
            Ok(BatchSource {
                id: r.get(0)?,
                name: r.get(1)?,
                manifest_path: r.get(2)?,
                base_dir: r.get(3)?,
                priority: r.get(4)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(self.sql_error("list batch manifests"))
    }

    pub fn batch_source(&self, batch_id: i64) -> Result<Option<BatchSource>, StoreError> {
        let conn = self.conn();
        conn.row(
            "SELECT id, name, manifest_path, base_dir, priority FROM batches WHERE id = ?1",
            [batch_id],
            |r| {
                Ok(BatchSource {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    manifest_path: r.get(2)?,
                    base_dir: r.get(3)?,
                    priority: r.get(4)?,
                })
            },
        )
        .optional()
        .map_err(self.sql_error("read a batch's manifest"))
    }

    pub fn submit_counts(&self, batch_id: i64) -> Result<SubmitCounts, StoreError> {
        let conn = self.conn();
        conn.row(
            "SELECT coalesce(sum(a.state != 'not_sent'), 0),
                 coalesce(sum(a.state = 'not_sent' AND a.error LIKE '%(429)%'), 0),
                 coalesce(sum(a.state != 'not_sent' AND a.number > 1), 0)
             FROM attempts a JOIN jobs j ON j.id = a.job_id WHERE j.batch_id = ?1",
            [batch_id],
            |r| {
                Ok(SubmitCounts {
                    sent: r.get::<_, i64>(0)? as u64,
                    rate_limited: r.get::<_, i64>(1)? as u64,
                    retries: r.get::<_, i64>(2)? as u64,
                })
            },
        )
        .map_err(self.sql_error("count submits"))
    }

    /// When the oldest job still waiting to be submitted (planned, not held) was registered,
    /// in Unix milliseconds; `None` when nothing waits.
    pub fn oldest_pending_since(&self) -> Result<Option<i64>, StoreError> {
        let conn = self.conn();
        conn.row(
            "SELECT min(j.created_at) FROM jobs j JOIN batches b ON b.id = j.batch_id
             WHERE j.state = 'planned' AND j.held IS NULL AND b.paused = 0",
            [],
            |r| r.get(0),
        )
        .map_err(self.sql_error("find the oldest waiting job"))
    }

    /// Finished clips not yet downloaded whose links expire before `deadline_ms`.
    pub fn links_expiring_before(&self, deadline_ms: i64) -> Result<u64, StoreError> {
        let conn = self.conn();
        conn.row(
            "SELECT count(*) FROM jobs WHERE state = 'downloading'
             AND clip_expires_at IS NOT NULL AND clip_expires_at < ?1",
            [deadline_ms],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| n as u64)
        .map_err(self.sql_error("count links about to expire"))
    }

    pub fn batch_id(&self, name: &str, provider: &str) -> Result<Option<i64>, StoreError> {
        let conn = self.conn();
        conn.row(
            "SELECT id FROM batches WHERE name = ?1 AND provider = ?2",
            params![name, provider],
            |r| r.get(0),
        )
        .optional()
        .map_err(self.sql_error("find a batch"))
    }

    /// The batches named `name` with their providers (one per provider).
    pub fn batches_named(&self, name: &str) -> Result<Vec<(i64, String)>, StoreError> {
        let conn = self.conn();
        let mut s = conn
            .prepare_cached("SELECT id, provider FROM batches WHERE name = ?1 ORDER BY provider")
            .map_err(self.sql_error("find batches by name"))?;
        s.query_map([name], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect())
            .map_err(self.sql_error("find batches by name"))
    }

    /// Batches named `name` (one per provider), or every batch.
    pub fn batch_ids_named(&self, name: Option<&str>) -> Result<Vec<i64>, StoreError> {
        let conn = self.conn();
        let mut s = conn
            .prepare_cached(
                "SELECT id FROM batches WHERE ?1 IS NULL OR name = ?1 ORDER BY name, provider",
            )
            .map_err(self.sql_error("list batches"))?;
        let ids: Vec<i64> = s
            .query_map([name], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .map_err(self.sql_error("list batches"))?;
        match name {
            Some(n) if ids.is_empty() => Err(StoreError::NoSuchBatch(n.to_owned())),
            _ => Ok(ids),
        }
    }

    pub fn batch_summary(&self, batch_id: i64) -> Result<BatchSummary, StoreError> {
        let counts = self.batch_counts(batch_id)?;
        let conn = self.conn();
        let sum = |states: &str| -> Result<u64, StoreError> {
            conn.row(
                &format!(
                    "SELECT coalesce(sum(credits), 0) FROM batch_attempt_credits
                     WHERE batch_id = ?1 AND state IN {states}"
                ),
                [batch_id],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(self.sql_error("sum credits"))
        };
        let credits_spent = sum("('accepted', 'completed')")?;
        let credits_refunded = sum("('failed', 'abandoned')")?;
        let credits_uncertain = sum("('unknown', 'submitting')")?;
        let canary_open: bool = conn
            .row(
                &format!(
                    "SELECT {} FROM batches b WHERE b.id = ?1",
                    super::scope::CANARY_OPEN
                ),
                [batch_id],
                |r| r.get(0),
            )
            .map_err(self.sql_error("read a batch's canary"))?;
        let awaiting_approval = if canary_open {
            0
        } else {
            counts.get(JobState::Planned)
        };
        conn.row(
            "SELECT id, name, provider, manifest_path, output_dir, budget_credits, paused,
                 cancelled, canary, approved, subjects, earlier_versions
             FROM batches WHERE id = ?1",
            [batch_id],
            |r| {
                Ok(BatchSummary {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    provider: r.get(2)?,
                    manifest_path: r.get(3)?,
                    output_dir: r.get(4)?,
                    budget_credits: r.get::<_, Option<i64>>(5)?.map(|b| b as u64),
                    paused: r.get(6)?,
                    cancelled: r.get(7)?,
                    counts: counts.clone(),
                    credits_spent,
                    credits_refunded,
                    credits_uncertain,
                    subjects: r.get::<_, i64>(10)? as u64,
                    earlier_versions: r.get::<_, i64>(11)? as u64,
                    canary: r.get(8)?,
                    approved: r.get(9)?,
                    awaiting_approval,
                })
            },
        )
        .map_err(self.sql_error("read a batch"))
    }

    /// Jobs that need a person (unknown, failed, expired, rejected), by subject.
    pub fn attention_jobs(&self, batch_id: i64) -> Result<Vec<AttentionJob>, StoreError> {
        let conn = self.conn();
        let mut s = conn
            .prepare_cached(
                "SELECT b.name, j.subject_id, j.state, j.reason, j.task_id, j.error_code, j.request_id
                 FROM jobs j
                 JOIN batches b ON b.id = j.batch_id
                 WHERE j.batch_id = ?1 AND j.state IN ('unknown', 'lost', 'failed', 'expired', 'rejected')
                 ORDER BY j.subject_id",
            )
            .map_err(self.sql_error("list jobs that need a person"))?;
        s.query_map([batch_id], |r| {
            let state: String = r.get(2)?;
            Ok(AttentionJob {
                batch: r.get(0)?,
                subject_id: r.get(1)?,
                state: JobState::parse(&state).unwrap_or(JobState::Unknown),
                reason: r.get(3)?,
                task_id: r.get(4)?,
                error_code: r.get(5)?,
                request_id: r.get(6)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(self.sql_error("list jobs that need a person"))
    }

    /// The newest `limit` events of a batch, oldest first.
    pub fn events(&self, batch_id: i64, limit: usize) -> Result<Vec<EventLine>, StoreError> {
        let conn = self.conn();
        let mut s = conn
            .prepare_cached(
                "SELECT at, kind, message FROM (SELECT id, at, kind, message FROM events
                 WHERE batch_id = ?1 ORDER BY id DESC LIMIT ?2) ORDER BY id",
            )
            .map_err(self.sql_error("read events"))?;
        s.query_map(params![batch_id, limit as i64], |r| {
            Ok(EventLine {
                at_ms: r.get(0)?,
                kind: r.get(1)?,
                message: r.get(2)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(self.sql_error("read events"))
    }

    /// What the batch's output folder records as spent on jobs this state folder does not know.
    pub fn set_outside_credits(&self, batch_id: i64, credits: u64) -> Result<(), StoreError> {
        self.write("record credits spent outside this state folder", |tx| {
            tx.exec(
                "UPDATE batches SET outside_credits = ?2 WHERE id = ?1",
                params![batch_id, credits as i64],
            )
        })?;
        Ok(())
    }

    /// The job whose finished clip is at `path`, if any.
    pub fn output_owner(&self, path: &str) -> Result<Option<i64>, StoreError> {
        let conn = self.conn();
        conn.row(
            "SELECT id FROM jobs WHERE output_path = ?1 AND state = 'done' LIMIT 1",
            [path],
            |r| r.get(0),
        )
        .optional()
        .map_err(self.sql_error("find a clip's owner"))
    }

    /// Pause or resume one batch (or all with `None`); paused batches submit nothing new.
    pub fn set_paused(&self, batch_id: Option<i64>, paused: bool) -> Result<usize, StoreError> {
        self.write("pause a batch", |tx| {
            tx.exec(
                "UPDATE batches SET paused = ?2 WHERE ?1 IS NULL OR id = ?1",
                params![batch_id, paused],
            )
        })
    }
}
