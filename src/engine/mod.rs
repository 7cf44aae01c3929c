//! The engine: drives every job of a run from `planned` to `done` through the provider.
//!
//! Owns: the submit, poll and download stages, the rate limits and in-flight cap, retries and
//! their backoff, the policy for submits whose outcome is unknown, and crash recovery at start.
//! Every stage reads its work from the store and commits each step there before the next step
//! may rely on it, so a run killed at any moment resumes from the store alone.
//!
//! May not: parse YAML, print to the terminal (it logs with `tracing`), or hold SQL (the store
//! does). It reaches the provider only through the [`Provider`] trait.
//!
//! Memory holds the jobs being worked on (bounded by the concurrency settings), never the batch:
//! each stage asks the store for at most as many jobs as it has free slots.

mod balance;
mod download;
mod pacing;
mod poll;
mod register;
mod spec;
mod submit;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::provider::Provider;
use crate::store::{Scope, Store, StoreError};

pub use download::{DownloadError, clean_temp_files};
pub use pacing::Pacing;
pub use register::{RegisterError, register};
pub use spec::{MediaPublisher, PublishError, StoredMedia, StoredSpec};

/// When to poll a running task.
#[derive(Debug, Clone)]
pub struct PollSchedule {
    /// First poll after `first_base + first_per_clip_second x clip seconds`, at most `first_max`:
    /// generation takes longer for longer clips, and early polls only cost rate limit.
    pub first_base: Duration,
    pub first_per_clip_second: Duration,
    pub first_max: Duration,
    /// Then every `interval_min`, growing by half each poll up to `interval_max`, with jitter.
    pub interval_min: Duration,
    pub interval_max: Duration,
}

impl PollSchedule {
    /// For the real provider: generation takes one to several minutes.
    pub fn for_provider() -> PollSchedule {
        PollSchedule {
            first_base: Duration::from_secs(20),
            first_per_clip_second: Duration::from_secs(4),
            first_max: Duration::from_secs(120),
            interval_min: Duration::from_secs(5),
            interval_max: Duration::from_secs(60),
        }
    }

    /// For the simulator, whose generation takes a second or two.
    pub fn for_simulator() -> PollSchedule {
        PollSchedule {
            first_base: Duration::from_millis(150),
            first_per_clip_second: Duration::ZERO,
            first_max: Duration::from_secs(1),
            interval_min: Duration::from_millis(100),
            interval_max: Duration::from_millis(800),
        }
    }

    pub fn first_delay(&self, clip_ms: u64) -> Duration {
        let secs = clip_ms.div_ceil(1000) as u32;
        (self.first_base + self.first_per_clip_second * secs).min(self.first_max)
    }

    pub fn next_delay(&self, polls: u32) -> Duration {
        let grown = self
            .interval_min
            .mul_f64(1.5f64.powi(polls.min(30) as i32))
            .min(self.interval_max);
        grown.mul_f64(rand::random_range(0.8..1.2))
    }
}

/// Settings of the engine; every limit the provider may impose is one of them.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub submit_per_minute: u32,
    pub submit_burst: u32,
    /// Tasks submitted and not yet finished, at most.
    pub max_in_flight: u32,
    /// Submits on the wire at once.
    pub submit_concurrency: usize,
    pub poll_per_minute: u32,
    pub poll_concurrency: usize,
    pub poll_schedule: PollSchedule,
    pub download_concurrency: usize,
    pub download_timeout: Duration,
    /// The largest clip downloaded, in bytes: the body is cut off at the first byte past it.
    pub max_clip_bytes: u64,
    /// Clip links (and their redirects) may lead to private and local addresses.
    pub allow_private_networks: bool,
    /// After this many failed downloads of a clip (cut, corrupt), each further failure asks the
    /// provider for a fresh link, as a dead link (403/404/410) does at once.
    pub max_download_failures: u32,
    /// Fresh links asked for one clip before it is given up as `expired`.
    pub max_link_refreshes: u32,
    /// How long a clip link is assumed to live when the provider does not say (about 24 h).
    pub assumed_link_ttl: Duration,
    /// The provider honours `Idempotency-Key`: a submit whose outcome is unknown is sent again
    /// under its same key. Off: it is held as `unknown` for a person.
    pub trust_idempotency: bool,
    /// How many times one unknown submit is re-sent automatically before it is held.
    pub max_unknown_resends: u32,
    /// The provider's account is used by recast alone (and by this state folder alone): its
    /// balance then proves whether unknown submits created billed tasks (see `balance.rs`).
    pub dedicated_account: bool,
    /// With [`RunMode::Forever`] (the daemon): how long submitting stays stopped after a 402
    /// before one submit tries again (someone may have topped the account up). A one-shot run
    /// stops submitting instead, and says so.
    pub out_of_credits_pause: Duration,
}

impl Default for EngineConfig {
    /// Safe for a new account.
    fn default() -> Self {
        EngineConfig {
            submit_per_minute: 30,
            submit_burst: 5,
            max_in_flight: 20,
            submit_concurrency: 4,
            poll_per_minute: 120,
            poll_concurrency: 8,
            poll_schedule: PollSchedule::for_provider(),
            download_concurrency: 4,
            download_timeout: Duration::from_secs(300),
            // The provider takes reference videos up to 100 MB; a clip of the same length fits.
            max_clip_bytes: 100 << 20,
            allow_private_networks: false,
            max_download_failures: 5,
            max_link_refreshes: 3,
            assumed_link_ttl: Duration::from_secs(23 * 3600),
            trust_idempotency: false,
            max_unknown_resends: 5,
            dedicated_account: false,
            out_of_credits_pause: Duration::from_secs(300),
        }
    }
}

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
    submit_pacing: Pacing,
    poll_pacing: Pacing,
    /// Rung whenever a job changes stage, so idle stages look at the store again.
    wake: Notify,
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
        Ok(Arc::new(Engine {
            submit_pacing: Pacing::new(config.submit_per_minute, config.submit_burst),
            poll_pacing: Pacing::new(config.poll_per_minute, config.poll_concurrency as u32),
            store,
            provider,
            publisher,
            config,
            scope,
            downloads,
            wake: Notify::new(),
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
        let mut report = RunReport {
            interrupted_submits: self.store.recover_interrupted_submits()?,
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
mod tests;
