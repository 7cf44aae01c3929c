//! What a poll's answer does to its job: a finished task's link goes to the download stage, a
//! failed one becomes a new attempt or `failed`, one the provider forgot becomes `lost`, and one
//! that goes on is asked again (its progress written at most every [`PROGRESS_EVERY`]).
//!
//! May not: schedule the next poll (the stage does, on tokio's clock) or send anything.

use std::time::Duration;

use tokio::time::Instant;

use super::poll::{PROGRESS_EVERY, Polled, ProgressWrite};
use super::{Engine, EngineError, Halt};
use crate::provider::{Provider, ProviderError, TaskState, TaskStatus};
use crate::store::{AfterFailure, JobState, PollItem, now_ms};

impl<P: Provider> Engine<P> {
    /// When the task should be asked again, after `polls` asks (Unix milliseconds, as the
    /// store keeps it for a restart).
    fn next_poll_at(&self, polls: u32) -> i64 {
        now_ms() + self.config.poll_schedule.next_delay(polls).as_millis() as i64
    }

    /// Ask again later, noting that in the store only when `write` says every answer is.
    async fn again(&self, item: &PollItem, write: ProgressWrite) -> Result<Polled, EngineError> {
        if let ProgressWrite::Always = write {
            let next = self.next_poll_at(item.polls);
            self.store
                .record_poll(item.job_id, None, next, None)
                .await?;
        }
        Ok(Polled::Again {
            wrote: None,
            billed: None,
        })
    }

    /// The provider answered with the task's status.
    pub(super) async fn on_status(
        &self,
        item: &PollItem,
        status: TaskStatus,
        write: ProgressWrite,
    ) -> Result<Polled, EngineError> {
        let store = &self.store;
        // Said again on every poll: written only when it changed, and with the poll's
        // progress when the task goes on (one transaction).
        let billed = status
            .billed_credits
            .filter(|b| item.billed_credits != Some(*b));
        let still_running = matches!(
            status.state,
            TaskState::Queued | TaskState::Running | TaskState::Unrecognised
        );
        if let Some(credits) = billed
            && !still_running
        {
            store.record_billed(item.attempt_id, credits).await?;
        }
        match status.state {
            TaskState::Completed => match status.video_url {
                Some(url) => {
                    let expires = now_ms() + self.config.assumed_link_ttl.as_millis() as i64;
                    store.record_clip_ready(item, &url, expires).await?;
                    tracing::info!(subject = %item.subject_id, task = %item.task_id, "finished");
                    self.wake.notify_waiters();
                }
                None => {
                    tracing::warn!(task = %item.task_id, "completed without a clip URL; asking again");
                    return self.again(item, write).await;
                }
            },
            TaskState::Failed | TaskState::Cancelled => {
                let why = status
                    .error
                    .unwrap_or_else(|| format!("the provider says `{}`", status.word));
                let (next, reason) = after_failure(item, &why);
                store.record_task_failed(item, next, &why, &reason).await?;
                let state = match next {
                    AfterFailure::Retry => JobState::Planned,
                    AfterFailure::GiveUp => JobState::Failed,
                };
                if state == JobState::Failed {
                    store
                        .note_error_reference(item.job_id, &status.reference)
                        .await?;
                    self.note_outcome(item.job_id);
                }
                let why = format!("{why}{}", status.reference);
                if state == JobState::Failed {
                    tracing::error!(subject = %item.subject_id, "failed for good: {why}");
                } else {
                    tracing::warn!(subject = %item.subject_id, "task failed ({why}); retrying as a new attempt");
                }
                self.wake.notify_waiters();
            }
            TaskState::Expired => {
                store
                    .record_needs_person(
                        item.job_id,
                        JobState::Expired,
                        &format!(
                            "the provider says task {} has expired: its clip can no longer be had",
                            item.task_id
                        ),
                    )
                    .await?;
                self.note_outcome(item.job_id);
                tracing::error!(subject = %item.subject_id, task = %item.task_id, "EXPIRED: the clip can no longer be downloaded");
            }
            TaskState::Queued | TaskState::Running | TaskState::Unrecognised => {
                return self.on_still_running(item, &status, billed, write).await;
            }
        }
        Ok(Polled::Left)
    }

    /// The task goes on: poll it again later, unless it has run for too long. What it billed
    /// is written when it changed; its progress when it changed and `write` allows.
    async fn on_still_running(
        &self,
        item: &PollItem,
        status: &TaskStatus,
        billed: Option<u64>,
        write: ProgressWrite,
    ) -> Result<Polled, EngineError> {
        if status.state == TaskState::Unrecognised {
            let first = self
                .seen_status_words
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(status.word.clone());
            if first {
                tracing::warn!(word = %status.word, "unknown status word; treating it as still running");
            }
        }
        if self.too_old(item).await? {
            if let Some(credits) = billed {
                self.store.record_billed(item.attempt_id, credits).await?;
            }
            return Ok(Polled::Left);
        }
        let now = Instant::now();
        let progress_due = match write {
            ProgressWrite::Always => true,
            ProgressWrite::Since(None) => status.progress.is_some(),
            ProgressWrite::Since(Some(at)) => {
                status.progress.is_some() && now.duration_since(at) >= PROGRESS_EVERY
            }
        };
        if !progress_due && billed.is_none() {
            return Ok(Polled::Again {
                wrote: None,
                billed: None,
            });
        }
        let next = self.next_poll_at(item.polls);
        let billed_now = billed.map(|credits| (item.attempt_id, credits));
        self.store
            .record_poll(item.job_id, status.progress, next, billed_now)
            .await?;
        Ok(Polled::Again {
            wrote: progress_due.then_some(now),
            billed,
        })
    }

    /// The poll got no status: the task is unknown to the provider, or the call failed.
    pub(super) async fn on_poll_error(
        &self,
        item: &PollItem,
        error: ProviderError,
        write: ProgressWrite,
    ) -> Result<Polled, EngineError> {
        let store = &self.store;
        match error {
            ProviderError::TaskNotFound { task_id } => {
                let refreshing = store.link_refreshes(item.job_id)? > 0;
                let (state, why) = if refreshing {
                    (
                        JobState::Expired,
                        format!(
                            "the provider no longer knows task {task_id}: its clip can no longer be had"
                        ),
                    )
                } else {
                    // A task the provider accepted was billed: "not found" now is no evidence
                    // that nothing was spent, so nothing is re-sent by itself.
                    (
                        JobState::Lost,
                        format!(
                            "the provider accepted task {task_id} and now says it does not know it \
                             (404): it may have been billed; `recast retry --lost` makes the clip \
                             again as a new, paid task"
                        ),
                    )
                };
                store.record_needs_person(item.job_id, state, &why).await?;
                self.note_outcome(item.job_id);
                tracing::error!(subject = %item.subject_id, "{why}");
                Ok(Polled::Left)
            }
            // The pause was set when the answer came (`poll.rs`).
            ProviderError::RateLimited { .. } => self.again(item, write).await,
            e @ ProviderError::Unauthorized { .. } => {
                self.halt(Halt::Unauthorized(e.to_string()));
                self.again(item, ProgressWrite::Since(None)).await
            }
            e => {
                tracing::debug!(task = %item.task_id, "poll failed, will ask again: {e}");
                if self.too_old(item).await? {
                    return Ok(Polled::Left);
                }
                self.again(item, write).await
            }
        }
    }
}

impl<P: Provider> Engine<P> {
    /// A task still not final `max_task_age` after its submit is polled no more: it becomes
    /// `failed`, for a person to look at (the provider may yet finish and bill it).
    async fn too_old(&self, item: &PollItem) -> Result<bool, EngineError> {
        let age = Duration::from_millis((now_ms() - item.submitted_at_ms).max(0) as u64);
        if age <= self.config.max_task_age {
            return Ok(false);
        }
        let why = format!(
            "task {} did not finish within {} h of its submit: polled no more (limits.max_task_age_secs). \
             The provider may still finish and bill it; `recast retry --failed` makes the clip \
             again as a new, paid task",
            item.task_id,
            self.config.max_task_age.as_secs_f64() / 3600.0
        );
        self.store
            .record_needs_person(item.job_id, JobState::Failed, &why)
            .await?;
        self.note_outcome(item.job_id);
        tracing::error!(subject = %item.subject_id, "{why}");
        Ok(true)
    }
}

/// A failed task is refunded: the job gets a new attempt while its batch's `retries` allow,
/// else it is `failed` for good. Returns that, and the reason the job shows.
fn after_failure(item: &PollItem, why: &str) -> (AfterFailure, String) {
    let failures = item.failed_attempts + 1;
    if failures > item.retries {
        let reason = format!("the provider's task failed {failures} times; last: {why}");
        (AfterFailure::GiveUp, reason)
    } else {
        let reason = format!("attempt {failures} failed ({why}); retrying");
        (AfterFailure::Retry, reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_task_is_retried_while_the_batch_allows_then_given_up() {
        let item = |failed_attempts, retries| PollItem {
            job_id: 1,
            attempt_id: 1,
            batch_id: 1,
            subject_id: "fox".into(),
            task_id: "t".into(),
            polls: 0,
            duration_ms: 5000,
            submitted_at_ms: 0,
            billed_credits: None,
            due_at_ms: 0,
            failed_attempts,
            retries,
        };
        assert_eq!(
            after_failure(&item(0, 1), "boom"),
            (
                AfterFailure::Retry,
                "attempt 1 failed (boom); retrying".to_owned()
            )
        );
        assert_eq!(after_failure(&item(1, 1), "boom").0, AfterFailure::GiveUp);
        let (next, reason) = after_failure(&item(0, 0), "boom");
        assert_eq!(next, AfterFailure::GiveUp);
        assert_eq!(reason, "the provider's task failed 1 times; last: boom");
    }
}
