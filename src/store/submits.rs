//! Submits: the intent committed before anything is sent, and every answer a submit can get.
//!
//! Each public function is one transaction, and each transition names the state it leaves
//! (`WHERE state = ...`), so a late answer can never move a job that has moved on.

use rusqlite::{OptionalExtension, params};

use super::Cached;
use super::jobs::{ClaimOutcome, SubmitIntent, event, release_budget_holds, set_attempt_state};
use super::scope::CANARY_OPEN;
use super::{JobState, Scope, Store, StoreError, now_ms};

impl Store {
    /// Send one `unknown` job back to be submitted under its same idempotency key.
    pub fn release_unknown_job(&self, job_id: i64) -> Result<(), StoreError> {
        self.write("release an unknown submit", |tx| {
            tx.exec(
                "UPDATE jobs SET state = 'planned', updated_at = ?2 WHERE id = ?1 AND state = 'unknown'",
                params![job_id, now_ms()],
            )?;
            Ok(())
        })
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

    /// Pick the next job to submit and commit its intent (attempt row, idempotency key, state
    /// `submitting`) before anything is sent. Jobs whose estimate would cross their batch's
    /// budget are held (with the reason) instead.
    pub fn claim_next(&self, scope: &Scope) -> Result<ClaimOutcome, StoreError> {
        let (outcome, commit) = self.claim_next_grouped(scope)?;
        self.durability.wait(commit)?;
        Ok(outcome)
    }

    /// [`Store::claim_next`] without waiting for the intent to be on disk: the caller must
    /// [`Store::settled`] the commit before anything of the submit leaves (group commit: many
    /// intents claimed in a row share one sync).
    pub fn claim_next_grouped(
        &self,
        scope: &Scope,
    ) -> Result<(ClaimOutcome, super::Commit), StoreError> {
        let scope = scope.filter("b.id");
        self.apply("commit a submit intent", |tx| loop {
            // The batch first: highest priority, then the one with the fewest tasks in flight,
            // so a small batch is never starved behind a large one of the same priority.
            let batch: Option<i64> = tx
                .row(
                    &format!(
                        "SELECT b.id FROM batches b
                         WHERE b.paused = 0 AND b.cancelled = 0 {scope} AND {CANARY_OPEN}
                             AND EXISTS (SELECT 1 FROM jobs j INDEXED BY jobs_ready
                             WHERE j.batch_id = b.id AND j.state = 'planned' AND j.held IS NULL)
                         ORDER BY b.priority DESC,
                             (SELECT coalesce(sum(c.n), 0) FROM batch_state_counts c
                                 WHERE c.batch_id = b.id
                                 AND c.state IN ('submitting', 'running')) ASC,
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
            let Some(Candidate {
                job_id,
                batch_id,
                batch_name,
                subject_id,
                base_dir,
                output_dir,
                spec_json,
                duration_ms,
                estimate,
                budget,
                attempt_id,
                job_key,
            }) = next_candidate(tx, batch)?
            else {
                return Ok(ClaimOutcome::Idle);
            };
            // An attempt whose outcome was unknown is sent again under the same idempotency key,
            // so a provider that honours keys answers with the first task instead of a second bill.
            let reusable: Option<(i64, u32, String)> = match attempt_id {
                Some(a) => tx
                    .row(
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
                        let committed: i64 = tx.row(
                            "SELECT committed_credits + outside_credits FROM batches WHERE id = ?1",
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
                    tx.exec(
                        "UPDATE jobs SET held = ?2, updated_at = ?3 WHERE id = ?1",
                        params![job_id, why, now_ms()],
                    )?;
                    event(tx, Some(batch_id), Some(job_id), "held", &why)?;
                    continue;
                }
            }
            let resend = reusable.is_some();
            let (attempt_id, attempt_number, idempotency_key) = match reusable {
                Some((id, number, key)) => {
                    set_attempt_state(tx, id, "submitting", None)?;
                    (id, number, key)
                }
                None => {
                    let number: u32 = tx.row(
                        "SELECT coalesce(max(number), 0) + 1 FROM attempts WHERE job_id = ?1",
                        [job_id],
                        |r| r.get(0),
                    )?;
                    let key = format!(
                        "recast-{batch_id}-{}-a{number}",
                        &job_key[..job_key.len().min(20)]
                    );
                    tx.exec(
                        "INSERT INTO attempts (job_id, number, idempotency_key, state,
                             credits_estimate, created_at, updated_at)
                         VALUES (?1, ?2, ?3, 'submitting', ?4, ?5, ?5)",
                        params![job_id, number, key, estimate, now_ms()],
                    )?;
                    (tx.last_insert_rowid(), number, key)
                }
            };
            tx.exec(
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
            return Ok(ClaimOutcome::Intent(Box::new(SubmitIntent {
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
                job_key,
                output_dir,
                resend,
            })));
        })
    }

    /// The provider accepted the submit: the task id is committed before anything uses it.
    /// The attempt records it whatever became of the job meanwhile (the task is billed); the job
    /// moves on only from `submitting` under this same attempt.
    pub async fn record_submitted(
        &self,
        intent: &SubmitIntent,
        task_id: &str,
        next_poll_at: i64,
    ) -> Result<(), StoreError> {
        self.write_async("record a task id", |tx| {
            tx.exec(
                "UPDATE attempts SET state = 'accepted', task_id = ?2, updated_at = ?3 WHERE id = ?1",
                params![intent.attempt_id, task_id, now_ms()],
            )?;
            let moved = tx.exec(
                "UPDATE jobs SET state = 'running', task_id = ?2, next_poll_at = ?3, reason = NULL,
                     updated_at = ?4 WHERE id = ?1 AND state = 'submitting' AND attempt_id = ?5",
                params![intent.job_id, task_id, next_poll_at, now_ms(), intent.attempt_id],
            )?;
            let message = if moved == 1 {
                format!("{}: task {task_id}", intent.subject_id)
            } else {
                format!(
                    "{}: task {task_id} answered after the job had moved on; kept on its attempt",
                    intent.subject_id
                )
            };
            event(tx, Some(intent.batch_id), Some(intent.job_id), "submitted", &message)
        })
        .await
    }

    /// The submit certainly did not create a task (never sent, refused with 429/402): the job
    /// goes back to `planned` and the attempt is closed.
    pub fn record_not_sent(&self, intent: &SubmitIntent, why: &str) -> Result<(), StoreError> {
        self.write("record an unsent submit", |tx| {
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
    }

    /// The provider refused the request (400/422): nothing billed, the job needs a person.
    pub fn record_rejected(&self, intent: &SubmitIntent, why: &str) -> Result<(), StoreError> {
        self.write("record a rejected submit", |tx| {
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
    }

    /// The submit may or may not have created a task: held as `unknown`, never re-sent silently.
    pub fn record_unknown(&self, intent: &SubmitIntent, why: &str) -> Result<(), StoreError> {
        self.write("record an unknown submit", |tx| {
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
    }
}

/// The next planned job of a batch, with what its intent needs.
struct Candidate {
    job_id: i64,
    batch_id: i64,
    batch_name: String,
    subject_id: String,
    base_dir: String,
    output_dir: String,
    spec_json: String,
    duration_ms: i64,
    estimate: Option<i64>,
    budget: Option<i64>,
    attempt_id: Option<i64>,
    job_key: String,
}

fn next_candidate(
    tx: &rusqlite::Transaction<'_>,
    batch: i64,
) -> rusqlite::Result<Option<Candidate>> {
    tx.row(
        "SELECT j.id, j.batch_id, b.name, j.subject_id, b.base_dir, b.output_dir, j.spec_json,
             j.duration_ms, j.estimate_credits, b.budget_credits, j.attempt_id, j.job_key
         FROM jobs j INDEXED BY jobs_ready JOIN batches b ON b.id = j.batch_id
         WHERE j.batch_id = ?1 AND j.state = 'planned' AND j.held IS NULL
         ORDER BY j.id LIMIT 1",
        [batch],
        |r| {
            Ok(Candidate {
                job_id: r.get(0)?,
                batch_id: r.get(1)?,
                batch_name: r.get(2)?,
                subject_id: r.get(3)?,
                base_dir: r.get(4)?,
                output_dir: r.get(5)?,
                spec_json: r.get(6)?,
                duration_ms: r.get(7)?,
                estimate: r.get(8)?,
                budget: r.get(9)?,
                attempt_id: r.get(10)?,
                job_key: r.get(11)?,
            })
        },
    )
    .optional()
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
