//! The notification outbox: notices to deliver (webhooks, command hooks), each recorded with
//! its attempts, and the notifier's cursor over the event log.
//!
//! Owns: the `notices` and `notify_cursor` tables and their typed operations. May not: decide
//! what to notify or when to try again (the `notify` module does).

use rusqlite::{OptionalExtension, params};

use super::Cached;
use super::{Store, StoreError, now_ms};

/// A notice due for delivery.
#[derive(Debug, Clone)]
pub struct DueNotice {
    pub id: i64,
    pub message_id: String,
    pub destination: String,
    pub event: String,
    pub payload: String,
    pub attempts: u32,
    pub created_at: i64,
}

/// A notice as recorded, for a view.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NoticeRecord {
    pub message_id: String,
    pub destination: String,
    pub event: String,
    pub attempts: u32,
    pub delivered_at: Option<i64>,
    pub gave_up_at: Option<i64>,
    pub last_error: Option<String>,
}

/// An entry of the event log the notifier reads.
#[derive(Debug, Clone)]
pub struct LoggedEvent {
    pub id: i64,
    pub batch_id: Option<i64>,
    pub job_id: Option<i64>,
}

impl Store {
    /// Queue a notice for a destination; a message already queued for it is not queued again.
    /// Returns whether it was new.
    pub fn enqueue_notice(
        &self,
        message_id: &str,
        destination: &str,
        event: &str,
        payload: &str,
    ) -> Result<bool, StoreError> {
        self.write("queue a notice", |tx| {
            let now = now_ms();
            let n = tx.exec(
                "INSERT OR IGNORE INTO notices (message_id, destination, event, payload, next_at,
                     created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                params![message_id, destination, event, payload, now],
            )?;
            Ok(n == 1)
        })
    }

    /// Notices whose next try is due.
    pub fn due_notices(&self, now: i64, limit: usize) -> Result<Vec<DueNotice>, StoreError> {
        let conn = self.conn();
        let mut s = conn
            .prepare_cached(
                "SELECT id, message_id, destination, event, payload, attempts, created_at
                 FROM notices WHERE delivered_at IS NULL AND gave_up_at IS NULL AND next_at <= ?1
                 ORDER BY next_at LIMIT ?2",
            )
            .map_err(self.sql_error("find due notices"))?;
        s.query_map(params![now, limit as i64], |r| {
            Ok(DueNotice {
                id: r.get(0)?,
                message_id: r.get(1)?,
                destination: r.get(2)?,
                event: r.get(3)?,
                payload: r.get(4)?,
                attempts: r.get(5)?,
                created_at: r.get(6)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(self.sql_error("find due notices"))
    }

    /// When the next undelivered notice is due, if any.
    pub fn next_notice_at(&self) -> Result<Option<i64>, StoreError> {
        let conn = self.conn();
        conn.row(
            "SELECT min(next_at) FROM notices WHERE delivered_at IS NULL AND gave_up_at IS NULL",
            [],
            |r| r.get(0),
        )
        .map_err(self.sql_error("find the next notice"))
    }

    pub fn notice_delivered(&self, id: i64) -> Result<(), StoreError> {
        self.write("record a delivered notice", |tx| {
            tx.exec(
                "UPDATE notices SET delivered_at = ?2, attempts = attempts + 1, last_error = NULL
                 WHERE id = ?1",
                params![id, now_ms()],
            )?;
            Ok(())
        })
    }

    /// A try failed: try again at `next_at`, or (`None`) give up.
    pub fn notice_failed(
        &self,
        id: i64,
        error: &str,
        next_at: Option<i64>,
    ) -> Result<(), StoreError> {
        self.write("record a failed notice", |tx| {
            tx.exec(
                "UPDATE notices SET attempts = attempts + 1, last_error = ?2,
                     next_at = coalesce(?3, next_at),
                     gave_up_at = CASE WHEN ?3 IS NULL THEN ?4 END
                 WHERE id = ?1",
                params![id, error, next_at, now_ms()],
            )?;
            Ok(())
        })
    }

    /// Every notice recorded, newest first.
    pub fn notices(&self, limit: usize) -> Result<Vec<NoticeRecord>, StoreError> {
        let conn = self.conn();
        let mut s = conn
            .prepare_cached(
                "SELECT message_id, destination, event, attempts, delivered_at, gave_up_at,
                     last_error FROM notices ORDER BY id DESC LIMIT ?1",
            )
            .map_err(self.sql_error("list notices"))?;
        s.query_map([limit as i64], |r| {
            Ok(NoticeRecord {
                message_id: r.get(0)?,
                destination: r.get(1)?,
                event: r.get(2)?,
                attempts: r.get(3)?,
                delivered_at: r.get(4)?,
                gave_up_at: r.get(5)?,
                last_error: r.get(6)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(self.sql_error("list notices"))
    }

    /// How far the notifier has read the event log; `None` before it ever read it.
    pub fn notify_cursor(&self) -> Result<Option<i64>, StoreError> {
        let conn = self.conn();
        conn.row(
            "SELECT value FROM notify_cursor WHERE name = 'events'",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(self.sql_error("read the notifier's cursor"))
    }

    /// The newest event's id (0 when there is none).
    pub fn last_event_id(&self) -> Result<i64, StoreError> {
        let conn = self.conn();
        conn.row("SELECT coalesce(max(id), 0) FROM events", [], |r| r.get(0))
            .map_err(self.sql_error("read the event log"))
    }

    /// Forget events older than `before` (Unix milliseconds): the log is for a person looking
    /// back days, not for ever. Returns how many went. Events are numbered in the order they
    /// happen, so the old ones are those before the first recent one: found by reading from the
    /// oldest, not by reading the whole log (400,000 events at 100,000 jobs) at every start.
    pub fn prune_events(&self, before: i64) -> Result<usize, StoreError> {
        self.write("prune old events", |tx| {
            tx.exec(
                "DELETE FROM events WHERE id < coalesce(
                     (SELECT id FROM events WHERE at >= ?1 ORDER BY id LIMIT 1),
                     (SELECT max(id) + 1 FROM events))",
                [before],
            )
        })
    }

    pub fn set_notify_cursor(&self, value: i64) -> Result<(), StoreError> {
        self.write("move the notifier's cursor", |tx| {
            tx.exec(
                "INSERT INTO notify_cursor (name, value) VALUES ('events', ?1)
                 ON CONFLICT (name) DO UPDATE SET value = max(value, ?1)",
                [value],
            )?;
            Ok(())
        })
    }

    /// Events after `cursor`, oldest first.
    pub fn events_after(&self, cursor: i64, limit: usize) -> Result<Vec<LoggedEvent>, StoreError> {
        let conn = self.conn();
        let mut s = conn
            .prepare_cached(
                "SELECT id, batch_id, job_id FROM events WHERE id > ?1 ORDER BY id LIMIT ?2",
            )
            .map_err(self.sql_error("read the event log"))?;
        s.query_map(params![cursor, limit as i64], |r| {
            Ok(LoggedEvent {
                id: r.get(0)?,
                batch_id: r.get(1)?,
                job_id: r.get(2)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(self.sql_error("read the event log"))
    }

    /// The id of the latest event of one of a batch's jobs: what a "batch finished" notice is
    /// keyed by, so a batch that settles again after new work is announced again (and one that
    /// is only registered again is not).
    pub fn batch_last_event(&self, batch_id: i64) -> Result<i64, StoreError> {
        let conn = self.conn();
        conn.row(
            "SELECT coalesce(max(id), 0) FROM events WHERE batch_id = ?1 AND job_id IS NOT NULL",
            [batch_id],
            |r| r.get(0),
        )
        .map_err(self.sql_error("read a batch's latest event"))
    }

    /// The job's batch, subject, state, reason, error code, request id and attempt.
    pub fn job_brief(&self, job_id: i64) -> Result<Option<JobBrief>, StoreError> {
        let conn = self.conn();
        conn.row(
            "SELECT j.batch_id, j.subject_id, j.state, j.reason, j.error_code, j.request_id,
                 coalesce(j.attempt_id, 0), j.task_id, j.job_key, j.estimate_credits
             FROM jobs j WHERE j.id = ?1",
            [job_id],
            |r| {
                let state: String = r.get(2)?;
                Ok(JobBrief {
                    batch_id: r.get(0)?,
                    subject: r.get(1)?,
                    state: super::JobState::parse(&state).unwrap_or(super::JobState::Unknown),
                    reason: r.get(3)?,
                    error_code: r.get(4)?,
                    request_id: r.get(5)?,
                    attempt_id: r.get(6)?,
                    task_id: r.get(7)?,
                    job_key: r.get(8)?,
                    estimate_credits: r.get::<_, Option<i64>>(9)?.map(|c| c as u64),
                })
            },
        )
        .optional()
        .map_err(self.sql_error("read a job"))
    }
}

/// A job, briefly, for a notice.
#[derive(Debug, Clone)]
pub struct JobBrief {
    pub batch_id: i64,
    pub subject: String,
    pub state: super::JobState,
    pub reason: Option<String>,
    pub error_code: Option<String>,
    pub request_id: Option<String>,
    pub attempt_id: i64,
    pub task_id: Option<String>,
    pub job_key: String,
    pub estimate_credits: Option<u64>,
}
