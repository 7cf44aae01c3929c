//! Submits: the intent committed before anything is sent, and every answer a submit can get.
//!
//! Each public function is one transaction, and each transition names the state it leaves
//! (`WHERE state = ...`), so a late answer can never move a job that has moved on.

use rusqlite::params;

use super::Cached;
use super::jobs::{PollItem, SubmitIntent, event, release_budget_holds, set_attempt_state};
use super::{JobState, Store, StoreError, now_ms};

impl Store {
    /// Send one `unknown` job back to be submitted under its same idempotency key.
    pub async fn release_unknown_job(&self, job_id: i64) -> Result<(), StoreError> {
        self.write_async("release an unknown submit", move |tx| {
            tx.exec(
                "UPDATE jobs SET state = 'planned', updated_at = ?2 WHERE id = ?1 AND state = 'unknown'",
                params![job_id, now_ms()],
            )?;
            Ok(())
        })
        .await
    }

    /// Credits committed to a batch: attempts possibly billed (the budget counts these).
    pub fn committed_credits(&self, batch_id: i64) -> Result<u64, StoreError> {
        let conn = self.conn();
        conn.row(
            "SELECT committed_credits FROM batches WHERE id = ?1",
            [batch_id],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| n.max(0) as u64)
        .map_err(self.sql_error("read committed credits"))
    }

    /// The provider accepted the submit: the task id is committed before anything uses it.
    /// The attempt records it whatever became of the job meanwhile (the task is billed); the job
    /// moves on only from `submitting` under this same attempt. Returns the task as the poll
    /// stage follows it, read in the same transaction: `None` if the job had moved on.
    pub async fn record_submitted(
        &self,
        intent: &SubmitIntent,
        task_id: &str,
        next_poll_at: i64,
    ) -> Result<Option<PollItem>, StoreError> {
        let (job_id, attempt_id, batch_id) = (intent.job_id, intent.attempt_id, intent.batch_id);
        let (subject_id, task_id) = (intent.subject_id.clone(), task_id.to_owned());
        self.write_async("record a task id", move |tx| {
            tx.exec(
                "UPDATE attempts SET state = 'accepted', task_id = ?2, updated_at = ?3 WHERE id = ?1",
                params![attempt_id, task_id, now_ms()],
            )?;
            let moved = tx.exec(
                "UPDATE jobs SET state = 'running', task_id = ?2, next_poll_at = ?3, reason = NULL,
                     updated_at = ?4 WHERE id = ?1 AND state = 'submitting' AND attempt_id = ?5",
                params![job_id, task_id, next_poll_at, now_ms(), attempt_id],
            )?;
            let message = if moved == 1 {
                format!("{subject_id}: task {task_id}")
            } else {
                format!(
                    "{subject_id}: task {task_id} answered after the job had moved on; kept on its attempt"
                )
            };
            event(tx, Some(batch_id), Some(job_id), "submitted", &message)?;
            super::polls::running_task(tx, job_id)
        })
        .await
    }

    /// The submit certainly did not create a task (never sent, refused with 429/402): the job
    /// goes back to `planned` and the attempt is closed.
    pub async fn record_not_sent(
        &self,
        intent: &SubmitIntent,
        why: &str,
    ) -> Result<(), StoreError> {
        let (intent, why) = (intent.clone(), why.to_owned());
        self.write_async("record an unsent submit", move |tx| {
            let (intent, why) = (&intent, why.as_str());
            if intent.resend {
                // An earlier send of this attempt may have created a task: it stays `unknown`,
                // and the job waits to be sent again under the same key, never a new one.
                set_attempt_state(tx, intent.attempt_id, "unknown", Some(why))?;
                tx.exec(
                    "UPDATE jobs SET state = 'planned', reason = ?2, updated_at = ?3
                     WHERE id = ?1 AND state = 'submitting' AND attempt_id = ?4",
                    params![intent.job_id, why, now_ms(), intent.attempt_id],
                )?;
            } else {
                set_attempt_state(tx, intent.attempt_id, "not_sent", Some(why))?;
                tx.exec(
                    "UPDATE jobs SET state = 'planned', attempt_id = NULL, reason = ?2,
                         updated_at = ?3
                     WHERE id = ?1 AND state = 'submitting' AND attempt_id = ?4",
                    params![intent.job_id, why, now_ms(), intent.attempt_id],
                )?;
            }
            release_budget_holds(tx, intent.batch_id)?;
            event(
                tx,
                Some(intent.batch_id),
                Some(intent.job_id),
                "not-sent",
                why,
            )
        })
        .await
    }

    /// The provider refused the request (400/422): nothing billed, the job needs a person.
    pub async fn record_rejected(
        &self,
        intent: &SubmitIntent,
        why: &str,
    ) -> Result<(), StoreError> {
        let (intent, why) = (intent.clone(), why.to_owned());
        self.write_async("record a rejected submit", move |tx| {
            let (intent, why) = (&intent, why.as_str());
            set_attempt_state(tx, intent.attempt_id, "rejected", Some(why))?;
            leave_submitting(tx, intent, JobState::Rejected, why)?;
            release_budget_holds(tx, intent.batch_id)?;
            event(
                tx,
                Some(intent.batch_id),
                Some(intent.job_id),
                "rejected",
                why,
            )
        })
        .await
    }

    /// The submit may or may not have created a task: held as `unknown`, never re-sent silently.
    pub async fn record_unknown(&self, intent: &SubmitIntent, why: &str) -> Result<(), StoreError> {
        let (intent, why) = (intent.clone(), why.to_owned());
        self.write_async("record an unknown submit", move |tx| {
            let (intent, why) = (&intent, why.as_str());
            set_attempt_state(tx, intent.attempt_id, "unknown", Some(why))?;
            leave_submitting(tx, intent, JobState::Unknown, why)?;
            event(
                tx,
                Some(intent.batch_id),
                Some(intent.job_id),
                "unknown",
                why,
            )
        })
        .await
    }
}

/// Move a job out of `submitting`, only if it is still there under the intent's attempt.
fn leave_submitting(
    tx: &rusqlite::Transaction<'_>,
    intent: &SubmitIntent,
    to: JobState,
    why: &str,
) -> rusqlite::Result<usize> {
    tx.exec(
        "UPDATE jobs SET state = ?2, reason = ?3, updated_at = ?4
         WHERE id = ?1 AND state = 'submitting' AND attempt_id = ?5",
        params![intent.job_id, to.as_str(), why, now_ms(), intent.attempt_id],
    )
}
