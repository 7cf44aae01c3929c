//! The engine: drives every job of a run from `planned` to `done` through the provider.
//!
//! Owns: the submit, poll and download stages, the rate limits and in-flight cap (and the search
//! for the provider's real limit, remembered in the store), retries and their backoff, the
//! policy for submits whose outcome is unknown, and crash recovery at start.
//! Every stage reads its work from the store and commits each step there before the next step
//! may rely on it, so a run killed at any moment resumes from the store alone.
//!
//! May not: parse YAML, print to the terminal (it logs with `tracing`), or hold SQL (the store
//! does). It reaches the provider only through the [`Provider`] trait.
//!
//! Memory holds the jobs being worked on (bounded by the concurrency settings), never the batch:
//! each stage asks the store for at most as many jobs as it has free slots.

mod balance;
mod breaker;
mod config;
mod download;
mod fetch;
mod landing;
mod limit_search;
mod never_sent;
mod next_job;
mod outcome;
pub use landing::planned_name;
mod pacing;
mod poll;
mod poll_answer;
mod poll_queue;
mod register;
mod spec;
mod submit;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::provider::Provider;
use crate::store::{Scope, Store, StoreError, now_ms};

/// How long the event log keeps an event.
const EVENTS_KEPT: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

pub use config::{EngineConfig, PollSchedule};
pub use download::{DownloadError, clean_temp_files};
#[cfg(test)]
pub(crate) use next_job::claim_next;
pub use pacing::Pacing;
pub use register::{RegisterError, register, register_staged, staged_job};
pub use spec::{MediaPublisher, PublishError, Route, StoredMedia, StoredSpec};

/// How long a run goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// Until every job is done or needs a person.
    UntilDone,
    /// Advance every job as far as it can go right now, then return (cron, CI, timers).
    NoWait,
    /// Until shut down, picking up work as it is registered (the daemon).
    Forever,
}

/// Why the engine stopped submitting before the work was done.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", content = "message", rename_all = "snake_case")]
pub enum Halt {
    /// 401/403: nothing more can be submitted or polled with this key.
    Unauthorized(String),
    /// 402: the account is out of credits; running tasks still finish.
    OutOfCredits(String),
    /// Local media without a public URL.
    Unpublishable(String),
}

impl std::fmt::Display for Halt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Halt::Unauthorized(m) | Halt::OutOfCredits(m) | Halt::Unpublishable(m) => {
                f.write_str(m)
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot build the download client: {0}")]
    Client(String),
    #[error("an engine task panicked: {0}; the state folder is intact up to it")]
    Panicked(String),
    #[error("cannot write a clip into its output folder: {0}; fix the folder and run again")]
    OutputFolder(String),
}

/// A finished task's outcome: a panic is an error that stops the run, never dropped silently.
pub(crate) fn joined<T>(
    done: Result<Result<T, EngineError>, tokio::task::JoinError>,
) -> Result<Option<T>, EngineError> {
    match done {
        Ok(result) => result.map(Some),
        Err(e) if e.is_cancelled() => Ok(None),
        Err(e) => Err(EngineError::Panicked(panic_message(e))),
    }
}

pub(crate) fn panic_message(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_owned()),
        Err(e) => e.to_string(),
    }
}

/// What a run did, for the CLI to report.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RunReport {
    /// Submits found interrupted by a crash at start, now `unknown`.
    pub interrupted_submits: usize,
    /// Temp files of interrupted downloads removed at start.
    pub temp_files_removed: usize,
    pub halted: Option<Halt>,
    /// Stopped by a signal or a shutdown request before the work was done.
    pub interrupted: bool,
}

/// The engine for one run over some batches.
pub struct Engine<P: Provider> {
    store: Arc<Store>,
    provider: P,
    publisher: MediaPublisher,
    config: EngineConfig,
    /// The batches this run drives: those of its provider, all of them (the daemon, including
    /// ones registered while it runs) or some (a `recast run`).
    scope: Scope,
    downloads: reqwest::Client,
    /// Output folders, each opened once for this engine's life.
    folders: crate::output::OpenFolders,
    submit_pacing: Pacing,
    poll_pacing: Pacing,
    /// Rung whenever a job changes stage, so idle stages look at the store again.
    wake: Notify,
    /// Tasks that began running, for the poll stage to follow (`polls_started` rings).
    started: Mutex<Vec<poll::Started>>,
    polls_started: Notify,
    /// Why submitting stopped, and when.
    halted: Mutex<Option<(Halt, tokio::time::Instant)>>,
    /// The provider accepted a submit in this run (the key and account work).
    provider_confirmed: std::sync::atomic::AtomicBool,
    unknown_resends: Mutex<std::collections::HashMap<i64, u32>>,
    seen_status_words: Mutex<HashSet<String>>,
    /// Runs until shut down (the daemon): a problem of one output folder is logged and retried,
    /// not a reason to stop every other batch.
    forever: std::sync::atomic::AtomicBool,
}

impl<P: Provider> Engine<P> {
    pub fn new(
        store: Arc<Store>,
        provider: P,
        publisher: MediaPublisher,
        config: EngineConfig,
        scope: Scope,
    ) -> Result<Arc<Self>, EngineError> {
        let downloads = crate::netguard::client_builder(config.allow_private_networks)
            .connect_timeout(Duration::from_secs(20))
            .timeout(config.download_timeout)
            .user_agent(concat!("recast/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| EngineError::Client(e.to_string()))?;
        // One breaker for submits and polls: an outage is the provider's, probed by one call.
        let breaker = Arc::new(breaker::Breaker::default());
        let submit_pacing = Pacing::sharing(
            config.submit_per_minute,
            config.submit_burst,
            breaker.clone(),
        );
        // A limit learned in an earlier run below the configured rate: start there.
        if let Some(learned) = store.learned_limit(scope.provider_id())?
            && learned < f64::from(config.submit_per_minute)
        {
            tracing::info!(
                per_minute = learned,
                "starting at the submit rate the provider accepted last time"
            );
            submit_pacing.start_from_learned(submit_pacing.factor_for(learned));
        }
        Ok(Arc::new(Engine {
            submit_pacing,
            poll_pacing: Pacing::sharing(
                config.poll_per_minute,
                config.poll_concurrency as u32,
                breaker,
            ),
            store,
            provider,
            publisher,
            config,
            scope,
            downloads,
            folders: Default::default(),
            wake: Notify::new(),
            started: Mutex::new(Vec::new()),
            polls_started: Notify::new(),
            halted: Mutex::new(None),
            provider_confirmed: Default::default(),
            unknown_resends: Mutex::new(Default::default()),
            seen_status_words: Mutex::new(HashSet::new()),
            forever: Default::default(),
        }))
    }

    fn halt(&self, why: Halt) {
        let mut h = self.halted.lock().unwrap_or_else(|p| p.into_inner());
        if h.is_none() {
            tracing::error!("stopping submissions: {why}");
            *h = Some((why, tokio::time::Instant::now()));
        }
        self.wake.notify_waiters();
    }

    fn halted(&self) -> Option<Halt> {
        self.halted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|(why, _)| why.clone())
    }

    /// Forever mode: after a 402 has stood for `out_of_credits_pause`, let one submit try again.
    fn retry_after_out_of_credits(&self) {
        let mut h = self.halted.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((Halt::OutOfCredits(_), since)) = h.as_ref()
            && since.elapsed() >= self.config.out_of_credits_pause
        {
            tracing::warn!("trying to submit again after the account ran out of credits");
            *h = None;
            // One submit at a time until the provider accepts one again.
            self.provider_confirmed
                .store(false, std::sync::atomic::Ordering::Relaxed);
            self.wake.notify_waiters();
        }
    }

    fn scope(&self) -> &Scope {
        &self.scope
    }

    /// Drive the run's batches. Returns when the work is done (or, with [`RunMode::NoWait`], as
    /// far as it goes now), when submitting is halted and nothing is left in flight, or when
    /// `shutdown` is cancelled (in-flight requests finish; partial downloads are removed).
    pub async fn run(
        self: &Arc<Self>,
        mode: RunMode,
        shutdown: CancellationToken,
    ) -> Result<RunReport, EngineError> {
        self.forever.store(
            mode == RunMode::Forever,
            std::sync::atomic::Ordering::Relaxed,
        );
        // The event log keeps a month (pruned at each start): enough to look back on a batch.
        let month_ago = now_ms() - EVENTS_KEPT.as_millis() as i64;
        self.store.prune_events(month_ago)?;
        let interrupted = self.store.interrupted_submits()?;
        let (unknown, sent_back) = self
            .store
            .recover_interrupted_submits(&never_sent::never_sent(&interrupted))?;
        if sent_back > 0 {
            tracing::info!(
                count = sent_back,
                "submits a previous crash stopped before they were sent: submitted again"
            );
        }
        let mut report = RunReport {
            interrupted_submits: unknown,
            ..Default::default()
        };
        if report.interrupted_submits > 0 {
            tracing::warn!(
                count = report.interrupted_submits,
                "submits interrupted by a previous crash are now `unknown`"
            );
        }
        for dir in self.store.output_dirs(self.scope())? {
            report.temp_files_removed += clean_temp_files(std::path::Path::new(&dir));
        }
        if self.config.trust_idempotency {
            let n = self.store.release_unknown(self.scope())?;
            if n > 0 {
                tracing::info!(
                    count = n,
                    "re-sending unknown submits under their idempotency keys"
                );
            }
        }
        self.check_balance().await?;
        match mode {
            RunMode::UntilDone | RunMode::Forever => self.run_stages(mode, &shutdown).await?,
            RunMode::NoWait => {
                self.run_once(&shutdown).await?;
                self.check_balance().await?;
            }
        }
        report.halted = self.halted();
        report.interrupted = shutdown.is_cancelled();
        Ok(report)
    }

    async fn run_stages(
        self: &Arc<Self>,
        mode: RunMode,
        shutdown: &CancellationToken,
    ) -> Result<(), EngineError> {
        let stop = shutdown.child_token();
        let mut stages = tokio::task::JoinSet::new();
        {
            let (e, s) = (self.clone(), stop.clone());
            stages.spawn(async move { e.submit_stage(s).await });
            let (e, s) = (self.clone(), stop.clone());
            stages.spawn(async move { e.poll_stage(s).await });
            let (e, s) = (self.clone(), stop.clone());
            stages.spawn(async move { e.download_stage(s).await });
        }
        let mut outcome = Ok(());
        let mut last_balance_check = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                done = stages.join_next() => {
                    // A stage only ends by itself on a critical error (or a panic).
                    if let Some(Err(e)) = done.map(joined) {
                        outcome = Err(e);
                    }
                    stop.cancel();
                    break;
                }
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
            let submitting = self.halted().is_none();
            let unauthorized = matches!(self.halted(), Some(Halt::Unauthorized(_)));
            if unauthorized {
                stop.cancel();
                break;
            }
            if mode == RunMode::Forever {
                self.retry_after_out_of_credits();
                if last_balance_check.elapsed() >= Duration::from_secs(60)
                    && !self.store.has_active_jobs(self.scope(), true)?
                {
                    last_balance_check = tokio::time::Instant::now();
                    self.check_balance().await?;
                }
                continue;
            }
            // About to stop: a quiet account may settle unknown submits, which may send more.
            if !self.store.has_active_jobs(self.scope(), submitting)?
                && (!submitting || self.check_balance().await? == 0)
            {
                stop.cancel();
                break;
            }
        }
        while let Some(r) = stages.join_next().await {
            if let Err(e) = joined(r)
                && outcome.is_ok()
            {
                outcome = Err(e);
            }
        }
        outcome
    }

    /// One pass of each stage, in order: submit what the limits allow now, poll every running
    /// task once, fetch every finished clip.
    async fn run_once(self: &Arc<Self>, shutdown: &CancellationToken) -> Result<(), EngineError> {
        self.submit_pass(shutdown).await?;
        if !shutdown.is_cancelled() && !matches!(self.halted(), Some(Halt::Unauthorized(_))) {
            self.poll_pass(shutdown).await?;
        }
        if !shutdown.is_cancelled() {
            self.download_pass(shutdown).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests;
