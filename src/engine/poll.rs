//! The poll stage: each running task is asked for its status on its own schedule, under a
//! global poll rate limit, until it finishes (its clip link goes to the download stage) or fails
//! (a new attempt while `retries` allow, since the provider refunds failed tasks).
//!
//! The schedule is kept here, on tokio's clock ([`super::poll_queue`]), not in the store: an
//! answer that says a task goes on writes nothing but its progress, at most every
//! [`PROGRESS_EVERY`] (none for a task that ends sooner). The store is asked for running tasks when the stage starts, for each
//! task the submit stage saw accepted, and every [`RESYNC_EVERY`] for any other way a job
//! started or stopped running.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::poll_queue::{DuePoll, PollQueue};
use super::{Engine, EngineError};
use crate::provider::{Provider, ProviderError};
use crate::store::{PollItem, now_ms};

/// How often the store's running tasks are compared with the stage's own.
const RESYNC_EVERY: Duration = Duration::from_secs(1);
/// A running task's progress is written at most this often (it is only shown).
pub const PROGRESS_EVERY: Duration = Duration::from_secs(30);
/// Running tasks read from the store at once: more than can be in flight.
const RESYNC_LIMIT: usize = 100_000;

/// What became of a task once asked.
pub(super) enum Polled {
    /// It goes on: ask again later. `wrote` is when its progress was written, if it was, and
    /// `billed` what the provider said it billed, if that changed.
    Again {
        wrote: Option<Instant>,
        billed: Option<u64>,
    },
    /// The job left `running`: nothing more to ask.
    Left,
}

/// Whether a poll may write the task's progress.
#[derive(Clone, Copy)]
pub(super) enum ProgressWrite {
    /// Every answer (a pass of a `--no-wait` run, which keeps no schedule).
    Always,
    /// When it was last written, if ever: again after [`PROGRESS_EVERY`].
    Since(Option<Instant>),
}

type PollJoin = JoinSet<(i64, Result<Polled, EngineError>)>;

/// A task that began running, for the poll stage to follow.
#[derive(Debug)]
pub(super) enum Started {
    /// As the transaction that started it read it.
    Known(PollItem),
    /// To be read from the store.
    Look(i64),
}

impl<P: Provider> Engine<P> {
    pub(super) async fn poll_stage(
        self: Arc<Self>,
        stop: CancellationToken,
    ) -> Result<(), EngineError> {
        let mut polls: PollJoin = JoinSet::new();
        let mut queue = PollQueue::default();
        let mut resync_at = Instant::now();
        loop {
            if stop.is_cancelled() {
                break;
            }
            while let Some(done) = polls.try_join_next() {
                self.finished(done, &mut queue)?;
            }
            let now = Instant::now();
            if now >= resync_at {
                self.resync(&mut queue, now).await?;
                resync_at = now + RESYNC_EVERY;
            }
            let started = self.take_started();
            if !started.is_empty() {
                for item in self.started_tasks(started).await? {
                    queue.follow(item.clone(), due_at(&item, now), now);
                }
            }
            while polls.len() < self.config.poll_concurrency
                && let Some(due) = queue.take_due(now)
            {
                let engine = self.clone();
                let job_id = due.item.job_id;
                polls.spawn(async move { (job_id, engine.poll_one(due).await) });
            }
            let wake_at = queue.next_due().map_or(resync_at, |at| at.min(resync_at));
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = self.polls_started.notified() => {}
                Some(done) = polls.join_next(), if !polls.is_empty() => {
                    self.finished(done, &mut queue)?;
                }
                _ = tokio::time::sleep_until(wake_at.max(now + Duration::from_millis(1))) => {}
            }
        }
        // A poll changes nothing the provider bills, so polls in flight may simply be dropped.
        polls.abort_all();
        Ok(())
    }

    /// A poll finished: schedule the task's next one, or forget it.
    fn finished(
        &self,
        done: Result<(i64, Result<Polled, EngineError>), tokio::task::JoinError>,
        queue: &mut PollQueue,
    ) -> Result<(), EngineError> {
        let (job_id, polled) = match done {
            Ok(done) => done,
            Err(e) if e.is_cancelled() => return Ok(()),
            Err(e) => return Err(EngineError::Panicked(super::panic_message(e))),
        };
        match polled? {
            Polled::Again { wrote, billed } => {
                let polls = queue.polls_of(job_id).unwrap_or(0);
                let after = self.config.poll_schedule.next_delay(polls);
                queue.again(job_id, Instant::now() + after, wrote, billed);
            }
            Polled::Left => queue.forget(job_id),
        }
        Ok(())
    }

    /// Take in running tasks the stage does not follow, and drop those no longer running.
    async fn resync(&self, queue: &mut PollQueue, now: Instant) -> Result<(), EngineError> {
        let scope = self.scope().clone();
        let running = self
            .store
            .off_runtime(move |store| store.due_polls(&scope, i64::MAX, RESYNC_LIMIT))
            .await?;
        if running.len() < RESYNC_LIMIT {
            queue.keep_only(&running.iter().map(|i| i.job_id).collect::<HashSet<_>>());
        }
        for item in running {
            if !queue.contains(item.job_id) {
                let at = due_at(&item, now);
                queue.follow(item, at, now);
            }
        }
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
            polls.spawn(async move { engine.ask(&item, ProgressWrite::Always).await.map(|_| ()) });
        }
        while let Some(done) = polls.join_next().await {
            super::joined(done)?;
        }
        Ok(())
    }

    async fn poll_one(self: Arc<Self>, due: DuePoll) -> Result<Polled, EngineError> {
        let write = ProgressWrite::Since(due.progress_written);
        self.ask(&due.item, write).await
    }

    /// Ask the provider for the task's status and record what it says.
    async fn ask(&self, item: &PollItem, write: ProgressWrite) -> Result<Polled, EngineError> {
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
            // Before anything is recorded, judged at the rate the poll went out at.
            Err(ProviderError::RateLimited { retry_after }) => {
                self.poll_pacing.rate_limited(*retry_after, on_wire.sent());
            }
            // A lost or garbled answer says nothing either way.
            Err(ProviderError::Ambiguous(_)) => {}
            _ => self.poll_pacing.accepted(),
        }
        drop(on_wire);
        match answer {
            Ok(status) => self.on_status(item, status, write).await,
            Err(e) => self.on_poll_error(item, e, write).await,
        }
    }

    /// Tasks other stages saw start running since the last call.
    fn take_started(&self) -> Vec<Started> {
        std::mem::take(&mut *self.started.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Tell the poll stage a job's task is running (its submit was accepted, or its clip's
    /// link is to be asked for again).
    pub(super) fn started_running(&self, task: Started) {
        self.started
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(task);
        self.polls_started.notify_one();
    }

    /// The tasks `started` names, as the poll stage follows them: the ones known as they are,
    /// the others read from the store in one trip.
    async fn started_tasks(&self, started: Vec<Started>) -> Result<Vec<PollItem>, EngineError> {
        let (mut items, mut ids) = (Vec::new(), Vec::new());
        for task in started {
            match task {
                Started::Known(item) => items.push(item),
                Started::Look(id) => ids.push(id),
            }
        }
        if !ids.is_empty() {
            let read = self
                .store
                .off_runtime(move |store| {
                    let read = ids.into_iter().map(|id| store.poll_item(id));
                    read.filter_map(Result::transpose)
                        .collect::<Result<Vec<_>, _>>()
                })
                .await?;
            items.extend(read);
        }
        Ok(items)
    }
}

/// When a task the store says is running is due, on tokio's clock.
fn due_at(item: &PollItem, now: Instant) -> Instant {
    now + Duration::from_millis((item.due_at_ms - now_ms()).max(0) as u64)
}
