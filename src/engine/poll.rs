//! The poll stage: each running task is asked for its status on its own schedule, under a
//! global poll rate limit, until it finishes (its clip link goes to the download stage) or fails
//! (a new attempt while `retries` allow, since the provider refunds failed tasks).

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{Engine, EngineError, Halt};
use crate::provider::{Provider, ProviderError, TaskState, TaskStatus};
use crate::store::{JobState, PollItem, now_ms};

/// Due polls fetched per free slot at a time.
const POLLS_AHEAD: usize = 4;

impl<P: Provider> Engine<P> {
    pub(super) async fn poll_stage(
        self: Arc<Self>,
        stop: CancellationToken,
    ) -> Result<(), EngineError> {
        // Each poll in flight yields its job id back, so a job is never polled twice at once.
        let mut polls: JoinSet<(i64, Result<(), EngineError>)> = JoinSet::new();
        let mut busy = HashSet::new();
        let finished = |done: Result<(i64, Result<(), EngineError>), tokio::task::JoinError>,
                        busy: &mut HashSet<i64>|
         -> Result<(), EngineError> {
            match done {
                Ok((job_id, result)) => {
                    busy.remove(&job_id);
                    result
                }
                Err(e) if e.is_cancelled() => Ok(()),
                Err(e) => Err(EngineError::Panicked(super::panic_message(e))),
            }
        };
        // Due polls fetched ahead of the free slots: a finished poll starts the next from here
        // instead of asking the store again (it was asked once per finished poll, which on a
        // busy run cost more than the polls' own writes).
        let mut queue: VecDeque<PollItem> = VecDeque::new();
        let (mut refresh, mut more_due) = (true, false);
        loop {
            if stop.is_cancelled() {
                break;
            }
            while let Some(done) = polls.try_join_next() {
                finished(done, &mut busy)?;
            }
            let now = now_ms();
            let free = self.config.poll_concurrency.saturating_sub(polls.len());
            if free > 0 && (refresh || (queue.is_empty() && more_due)) {
                let limit = self.config.poll_concurrency * POLLS_AHEAD + busy.len();
                let due = self.store.due_polls(self.scope(), now, limit)?;
                more_due = due.len() == limit;
                queue = due
                    .into_iter()
                    .filter(|i| !busy.contains(&i.job_id))
                    .collect();
                refresh = false;
            }
            while polls.len() < self.config.poll_concurrency
                && let Some(item) = queue.pop_front()
            {
                if busy.insert(item.job_id) {
                    let engine = self.clone();
                    polls.spawn(async move { (item.job_id, engine.poll_one(item).await) });
                }
            }
            // Polls in flight are due until they finish: the store is asked again soon.
            let wait = match polls.is_empty() && queue.is_empty() && !more_due {
                true => match self.store.next_poll_at(self.scope())? {
                    Some(at) => Duration::from_millis((at - now).clamp(20, 1000) as u64),
                    None => Duration::from_millis(500),
                },
                false => Duration::from_millis(20),
            };
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = self.wake.notified() => refresh = true,
                Some(done) = polls.join_next(), if !polls.is_empty() => finished(done, &mut busy)?,
                _ = tokio::time::sleep(wait) => refresh = true,
            }
        }
        // A poll changes nothing the provider bills, so polls in flight may simply be dropped.
        polls.abort_all();
        Ok(())
    }

    /// Poll every running task once, due or not.
    pub(super) async fn poll_pass(
        self: &Arc<Self>,
        stop: &CancellationToken,
    ) -> Result<(), EngineError> {
        let items = self
            .store
            .due_polls(self.scope(), i64::MAX, usize::MAX >> 1)?;
        let mut polls = JoinSet::new();
        for item in items {
            if stop.is_cancelled() {
                break;
            }
            while polls.len() >= self.config.poll_concurrency {
                if let Some(done) = polls.join_next().await {
                    super::joined(done)?;
                }
            }
            let engine = self.clone();
            polls.spawn(async move { engine.poll_one(item).await });
        }
        while let Some(done) = polls.join_next().await {
            super::joined(done)?;
        }
        Ok(())
    }

    async fn poll_one(self: Arc<Self>, item: PollItem) -> Result<(), EngineError> {
        let on_wire = self.poll_pacing.before_send().await;
        let answer = self.provider.poll(&item.task_id).await;
        match &answer {
            // The provider is down, not the task: the breaker pauses every call.
            Err(ProviderError::NotSent(_)) => {
                self.poll_pacing.server_trouble(None);
            }
            Err(ProviderError::Unavailable { retry_after, .. }) => {
                self.poll_pacing.server_trouble(*retry_after);
            }
            // A lost or garbled answer says nothing either way.
            Err(ProviderError::RateLimited { .. } | ProviderError::Ambiguous(_)) => {}
            _ => self.poll_pacing.accepted(),
        }
        drop(on_wire);
        match answer {
            Ok(status) => self.on_status(&item, status).await,
            Err(e) => self.on_poll_error(&item, e),
        }
    }

    /// When the task should be asked again, after `polls` asks.
    fn next_poll_at(&self, polls: u32) -> i64 {
        now_ms() + self.config.poll_schedule.next_delay(polls).as_millis() as i64
    }

    /// The provider answered with the task's status.
    async fn on_status(&self, item: &PollItem, status: TaskStatus) -> Result<(), EngineError> {
        let store = &self.store;
        let later = |polls: u32| self.next_poll_at(polls);
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
            store.record_billed(item.attempt_id, credits)?;
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
                    store.record_progress(item.job_id, None, later(item.polls))?;
                }
            },
            TaskState::Failed | TaskState::Cancelled => {
                let why = status
                    .error
                    .unwrap_or_else(|| format!("the provider says `{}`", status.word));
                let state = store.record_task_failed(item, &why)?;
                if state == JobState::Failed {
                    store.note_error_reference(item.job_id, &status.reference)?;
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
                store.record_needs_person(
                    item.job_id,
                    JobState::Expired,
                    &format!(
                        "the provider says task {} has expired: its clip can no longer be had",
                        item.task_id
                    ),
                )?;
                self.note_outcome(item.job_id);
                tracing::error!(subject = %item.subject_id, task = %item.task_id, "EXPIRED: the clip can no longer be downloaded");
            }
            TaskState::Queued | TaskState::Running | TaskState::Unrecognised => {
                self.on_still_running(item, &status, billed)?;
            }
        }
        Ok(())
    }

    /// The task goes on: poll it again later, unless it has run for too long.
    fn on_still_running(
        &self,
        item: &PollItem,
        status: &TaskStatus,
        billed: Option<u64>,
    ) -> Result<(), EngineError> {
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
        if self.too_old(item)? {
            if let Some(credits) = billed {
                self.store.record_billed(item.attempt_id, credits)?;
            }
            return Ok(());
        }
        let billed = billed.map(|credits| (item.attempt_id, credits));
        let next = self.next_poll_at(item.polls);
        self.store
            .record_poll(item.job_id, status.progress, next, billed)?;
        Ok(())
    }

    /// The poll got no status: the task is unknown to the provider, or the call failed.
    fn on_poll_error(&self, item: &PollItem, error: ProviderError) -> Result<(), EngineError> {
        let store = &self.store;
        let later = |polls: u32| self.next_poll_at(polls);
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
                store.record_needs_person(item.job_id, state, &why)?;
                self.note_outcome(item.job_id);
                tracing::error!(subject = %item.subject_id, "{why}");
            }
            ProviderError::RateLimited { retry_after } => {
                self.poll_pacing.rate_limited(retry_after);
                store.record_progress(item.job_id, None, later(item.polls))?;
            }
            e @ ProviderError::Unauthorized { .. } => {
                self.halt(Halt::Unauthorized(e.to_string()));
            }
            e => {
                tracing::debug!(task = %item.task_id, "poll failed, will ask again: {e}");
                if self.too_old(item)? {
                    return Ok(());
                }
                store.record_progress(item.job_id, None, later(item.polls))?;
            }
        }
        Ok(())
    }
}

impl<P: Provider> Engine<P> {
    /// A task still not final `max_task_age` after its submit is polled no more: it becomes
    /// `failed`, for a person to look at (the provider may yet finish and bill it).
    fn too_old(&self, item: &PollItem) -> Result<bool, EngineError> {
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
            .record_needs_person(item.job_id, JobState::Failed, &why)?;
        self.note_outcome(item.job_id);
        tracing::error!(subject = %item.subject_id, "{why}");
        Ok(true)
    }
}
