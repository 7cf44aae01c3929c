//! The daemon: how teams leave recast running, fed by people dropping files and by manifests
//! kept in git.
//!
//! Owns: the long-lived workers and their order of start and stop. One engine
//! ([`RunMode::Forever`], every batch) serves all batches under one shared rate limit, fairly
//! and by priority (the store's claim order). Around it:
//!
//! ```text
//! inbox (manifest drops) ──┐                        ┌── subjects (standing performances)
//! schedule (cron folders) ─┴─> intake ─> store <────┘
//!                                        store ──> engine ──> clips
//!                                        store ──> http (/healthz, /metrics)
//! balance (the account, every 5 min) ───────────────> http
//! ```
//!
//! - `config`: the settings file's `daemon:` section, resolved.
//! - `watch`: notify + debouncer + the settle rule: which files are whole.
//! - `intake`: one manifest -> a registered batch.
//! - `inbox`, `subjects`, `schedule`: the three ways work comes in.
//! - `http`: health and Prometheus metrics, read from the store.
//! - `balance`: the account's balance as a metric, and a warning (and a `balance.low` notice)
//!   under a threshold.
//! - `notify` (the crate's module) runs beside them: webhooks and the `on_batch_done` hook.
//! - `lifecycle`: signals, pause and resume.
//!
//! Every worker has the same shape (`async fn(.., shutdown) -> Result<(), DaemonError>`) and runs
//! in one named `JoinSet`. A file's problem is logged (or written beside the file) and work goes
//! on; a store failure is critical and stops the daemon in order. May not: hold SQL (the store
//! does), print (it logs), or parse arguments (the CLI calls [`run`]).

mod balance;
mod config;
mod http;
mod inbox;
mod intake;
pub mod lifecycle;
mod schedule;
mod subjects;
mod watch;

pub use config::{DaemonConfig, DaemonSection, InboxSection, ScheduleSection, WatchMode};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::engine::{Engine, EngineError, MediaPublisher, RunMode};
use crate::provider::{HttpProvider, HttpProviderConfig};
use crate::store::{Scope, StateLock, Store, StoreError};

/// Where the daemon writes the address its HTTP endpoint listens on (useful with port 0).
pub const ADDR_FILE: &str = "daemon.addr";
/// The folder inside an inbox where accepted manifests are kept.
pub const ACCEPTED_FOLDER: &str = inbox::ACCEPTED;
/// After a shutdown request, workers get this long to drain before they are abandoned.
const DRAIN_DEADLINE: Duration = Duration::from_secs(8);

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("no API key: set REAPI_API_KEY or `provider.api_key_file` in the settings file")]
    NoApiKey,
    #[error("cannot set up the provider client: {0}")]
    Provider(String),
    #[error("{0}")]
    MediaStore(String),
    #[error("cannot watch {}: {source}{}", path.as_ref().map_or("folders".to_owned(), |p| p.display().to_string()), watch_hint(source))]
    Watch {
        path: Option<PathBuf>,
        #[source]
        source: notify::Error,
    },
    #[error("cannot listen on {addr}: {source} (set `daemon.listen` to a free address)")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the HTTP endpoint failed: {source}")]
    Serve {
        #[source]
        source: std::io::Error,
    },
    #[error("submissions stopped: {0}")]
    Halted(String),
    #[error("a daemon worker panicked: {0}")]
    Panicked(String),
}

impl DaemonError {
    fn watch(path: Option<&Path>, source: notify::Error) -> DaemonError {
        DaemonError::Watch {
            path: path.map(Path::to_path_buf),
            source,
        }
    }
}

/// inotify runs out of watches or instances on busy machines; say how to raise the limit.
fn watch_hint(e: &notify::Error) -> &'static str {
    match e.kind {
        notify::ErrorKind::MaxFilesWatch => {
            " (the inotify limit is reached: raise fs.inotify.max_user_watches and \
             fs.inotify.max_user_instances with sysctl, or set `daemon.watch: poll`)"
        }
        _ => "",
    }
}

/// Run the daemon until `shutdown` is cancelled (or a critical error). Holds the state folder's
/// lock the whole time: one daemon (or `recast run`) per state folder.
pub async fn run(config: DaemonConfig, shutdown: CancellationToken) -> Result<(), DaemonError> {
    let settings = &config.settings;
    let _lock = StateLock::acquire(&settings.state_dir)?;
    let store = Arc::new(Store::open(&settings.state_dir)?);
    let api_key = settings.api_key().cloned().ok_or(DaemonError::NoApiKey)?;
    let provider = HttpProvider::new(HttpProviderConfig {
        base_url: settings.api_base.clone(),
        api_key,
        connect_timeout: Duration::from_secs(10),
        request_timeout: settings.request_timeout,
        max_wait: settings.max_provider_wait,
    })
    .map_err(|e| DaemonError::Provider(e.to_string()))?;
    // Same identity as `recast run` against this base URL: a batch is the same batch either way.
    let provider_id = settings.provider_identity(false);

    let media_store = settings
        .open_media_store()
        .map_err(DaemonError::MediaStore)?;
    let mut publisher = MediaPublisher::default().with_store(media_store.clone());
    // Folders a `recast run --media-base-url` published, first: a folder this daemon's own
    // settings publish too is published as they say.
    for (folder, url) in store.published_folders(&provider_id)? {
        publisher.publish(std::path::Path::new(&folder), &url);
    }
    for inbox in &config.inboxes {
        match &inbox.media_base_url {
            Some(url) => publisher.publish(&inbox.path, url),
            None if media_store.is_none() => tracing::warn!(
                inbox = %inbox.path.display(),
                "this inbox has no media_base_url and no media_store.s3 is set: manifests dropped \
                 here with local images will be refused (the provider fetches media by URL)"
            ),
            None => {}
        }
    }
    for schedule in &config.schedules {
        if let Some(url) = &schedule.media_base_url {
            publisher.publish(&schedule.folder, url);
        }
    }

    // Beyond loopback without a token, /healthz and /metrics are served and the dashboard,
    // which can act on batches, is not.
    let dashboard = crate::dashboard::Dashboard::new(
        store.clone(),
        config.listen,
        std::env::var("RECAST_DASHBOARD_TOKEN").ok(),
        settings.engine.trust_idempotency,
    )
    .inspect_err(|e| tracing::warn!("no dashboard: {e}"))
    .ok();
    let listener = http::bind(config.listen).await?;
    let local = listener
        .local_addr()
        .map_err(|source| DaemonError::Listen {
            addr: config.listen,
            source,
        })?;
    let addr_file = settings.state_dir.join(ADDR_FILE);
    if let Err(e) = std::fs::write(&addr_file, format!("{local}\n")) {
        tracing::warn!(file = %addr_file.display(), "cannot write the address file: {e}");
    }
    tracing::info!(http = %format!("http://{local}"), state = %settings.state_dir.display(), "daemon started");

    let notifier = crate::notify::Notifier::new(
        store.clone(),
        crate::notify::resolve(&settings.notifications).map_err(DaemonError::Config)?,
    );
    let balance = balance::BalanceGauge::default();
    let balance_provider = provider.clone();
    let balance_warn = settings.balance_warn_credits;
    let engine = Engine::new(
        store.clone(),
        provider,
        publisher.clone(),
        settings.engine.clone(),
        Scope::provider(&provider_id),
    )?;
    let intake = Arc::new(intake::Intake::new(
        store.clone(),
        settings.clone(),
        provider_id,
        publisher,
    ));
    let config = Arc::new(config);
    let stop = shutdown.child_token();
    let (standing_tx, standing_rx) = mpsc::channel(64);

    let mut workers = tokio::task::JoinSet::new();
    {
        let (stop, engine) = (stop.clone(), engine.clone());
        workers.spawn(named("engine", async move {
            let report = engine.run(RunMode::Forever, stop.clone()).await?;
            match report.halted {
                // Forever mode only ends by itself when the key is refused: nothing can be done.
                Some(halt) if !stop.is_cancelled() => Err(DaemonError::Halted(halt.to_string())),
                _ => Ok(()),
            }
        }));
    }
    workers.spawn(named(
        "inbox",
        inbox::run(
            config.clone(),
            intake.clone(),
            standing_tx.clone(),
            stop.clone(),
        ),
    ));
    workers.spawn(named(
        "schedule",
        schedule::run(config.clone(), intake.clone(), standing_tx, stop.clone()),
    ));
    workers.spawn(named(
        "subjects",
        subjects::run(config.clone(), intake.clone(), standing_rx, stop.clone()),
    ));
    workers.spawn(named(
        "http",
        http::serve(
            listener,
            store.clone(),
            balance.clone(),
            dashboard,
            stop.clone(),
        ),
    ));
    workers.spawn(named(
        "balance",
        balance::watch(
            balance_provider,
            balance,
            balance_warn,
            notifier.clone(),
            stop.clone(),
        ),
    ));
    if let Some(notifier) = notifier {
        let stop = stop.clone();
        workers.spawn(named("notify", async move {
            notifier.run(stop).await.map_err(DaemonError::Store)
        }));
    }

    let mut outcome = Ok(());
    let mut deadline = None;
    loop {
        let next = match deadline {
            None => tokio::select! {
                _ = stop.cancelled() => {
                    tracing::info!("stopping: no new submits; finishing requests on the wire");
                    deadline = Some(tokio::time::Instant::now() + DRAIN_DEADLINE);
                    continue;
                }
                next = workers.join_next() => next,
            },
            Some(at) => match tokio::time::timeout_at(at, workers.join_next()).await {
                Ok(next) => next,
                Err(_) => {
                    tracing::warn!(
                        "workers did not drain in time; abandoning them (state is intact)"
                    );
                    workers.abort_all();
                    break;
                }
            },
        };
        let Some(done) = next else { break };
        let (name, result) = match done {
            Ok(named) => named,
            Err(e) if e.is_cancelled() => continue,
            Err(e) => ("unknown", Err(DaemonError::Panicked(e.to_string()))),
        };
        match result {
            Ok(()) => tracing::debug!(worker = name, "worker finished"),
            Err(e) => {
                tracing::error!(worker = name, "critical: {e}; stopping the daemon");
                if outcome.is_ok() {
                    outcome = Err(e);
                }
                stop.cancel();
            }
        }
    }
    let _ = std::fs::remove_file(&addr_file);
    tracing::info!("daemon stopped");
    outcome
}

async fn named<F>(name: &'static str, work: F) -> (&'static str, Result<(), DaemonError>)
where
    F: std::future::Future<Output = Result<(), DaemonError>>,
{
    (name, work.await)
}
