//! The provider simulator: a real HTTP server on loopback speaking the provider's wire format.
//!
//! Owns: the simulated provider (`REAPI.md`): submit and poll endpoints with bearer-key checks,
//! request validation and media probing like the provider's, the task lifecycle, expiring clip
//! links, a folder of media served with range requests, a billing ledger, submit rate limits and
//! an in-flight cap, idempotency (honoured or ignored), and reproducible fault injection.
//!
//! May not: be used by the rest of recast except through the same HTTP API a real provider
//! offers. The only items others use are [`Sim::start`] (to boot it), its base URL, and the
//! ledger and stats (for tests and for `recast run --simulate`'s summary), and [`SimArgs`] with
//! [`run_from_args`] for `recast sim`.
//!
//! # Layout
//! - `config`: [`SimConfig`], wire-format variants, [`Fault`] specs.
//! - `args`: [`SimArgs`] (the `recast sim` flags) and [`run_from_args`].
//! - `server`: shared state, routes, auth and error answers.
//! - `submit`, `poll`, `files`: the handlers (submit; poll; clip links and `/media`).
//! - `tasks`: the task book: lifecycle, idempotency, in-flight set, bills and refunds.
//! - `ledger`: the [`Ledger`] and [`Stats`] snapshots.
//! - `faults`: seeded fault decisions. `limits`: rate limiter and `Retry-After`.
//! - `conn`: connections a handler can cut (resets and ambiguous submits).

mod args;
mod config;
mod conn;
mod faults;
mod files;
mod ledger;
mod limits;
mod poll;
mod server;
mod submit;
mod tasks;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use args::{IdempotencyMode, SimArgs, run_from_args};
pub use config::{
    Fault, FaultParseError, Faults, Generation, IdField, Outage, Phase, RetryAfterFormat,
    SimConfig, StatusWords,
};
pub use ledger::{FaultCounts, Ledger, LedgerEntry, LedgerTotals, Stats};
pub use poll::UNKNOWN_STATUS_WORD;
pub use server::UNLIMITED_BALANCE;

use conn::{Conn, CutListener};
use faults::{FaultPlan, splitmix64};
use limits::RateLimiter;
use server::App;
use tasks::Book;

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot serve the media folder {}: {source}", path.display())]
    MediaDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot build the HTTP client that fetches inputs: {0}")]
    Client(String),
    #[error("invalid simulator setting `{name}`: {why}")]
    Setting { name: &'static str, why: String },
}

/// A running simulator. Dropping it stops the server (in the background); [`Sim::shutdown`]
/// stops it and waits.
#[derive(Debug)]
pub struct Sim {
    app: Arc<App>,
    addr: SocketAddr,
    cancel: CancellationToken,
    server: Option<JoinHandle<()>>,
}

impl Sim {
    /// Start on 127.0.0.1 and a free port.
    pub async fn start(config: SimConfig) -> Result<Sim, SimError> {
        Sim::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), config).await
    }

    /// Start on `addr` (port 0 picks a free one). The server runs on a spawned task of the
    /// current tokio runtime.
    pub async fn start_on(addr: SocketAddr, config: SimConfig) -> Result<Sim, SimError> {
        let media_root = match &config.media_dir {
            Some(dir) => {
                let root =
                    tokio::fs::canonicalize(dir)
                        .await
                        .map_err(|source| SimError::MediaDir {
                            path: dir.clone(),
                            source,
                        })?;
                if !root.is_dir() {
                    return Err(SimError::MediaDir {
                        path: dir.clone(),
                        source: std::io::Error::other("not a folder"),
                    });
                }
                Some(root)
            }
            None => None,
        };
        if config.api_key.is_empty() {
            return Err(SimError::Setting {
                name: "api_key",
                why: "must not be empty".into(),
            });
        }
        let http = reqwest::Client::builder()
            .timeout(config.fetch_timeout)
            .connect_timeout(config.fetch_timeout)
            // The simulator fetches from loopback in tests: an HTTP_PROXY in the environment
            // must not reroute that.
            .no_proxy()
            .build()
            .map_err(|e| SimError::Client(e.to_string()))?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| SimError::Bind { addr, source })?;
        let mut local = listener
            .local_addr()
            .map_err(|source| SimError::Bind { addr, source })?;
        if local.ip().is_unspecified() {
            // Listening on every interface: loopback is the address that surely reaches it.
            local.set_ip(Ipv4Addr::LOCALHOST.into());
        }

        // Ids and link secrets differ per run; fault decisions depend on the seed alone.
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64;
        let run = splitmix64(nanos ^ u64::from(local.port()));
        let secret: [u8; 32] = Sha256::digest(run.to_le_bytes()).into();
        let cancel = CancellationToken::new();
        let limiter = config
            .submit_rate_per_min
            .map(|rate| Mutex::new(RateLimiter::per_minute(rate, config.submit_burst)));
        let app = Arc::new(App {
            book: Mutex::new(Book::new(run as u32)),
            limiter,
            retry_deadline: Mutex::new(None),
            faults: FaultPlan::new(&config.faults),
            counters: Default::default(),
            http,
            secret,
            link_nonce: AtomicU64::new(0),
            epoch: Instant::now(),
            base_url: format!("http://{local}"),
            media_root,
            cancel: cancel.clone(),
            cfg: config,
        });
        let router = server::router(app.clone());
        let serve = axum::serve(
            CutListener::new(listener),
            router.into_make_service_with_connect_info::<Conn>(),
        )
        .with_graceful_shutdown(cancel.clone().cancelled_owned());
        let server = tokio::spawn(async move {
            // `serve` only returns once shutdown was asked for.
            let _ = serve.await;
        });
        tracing::info!("sim: listening on http://{local}");
        Ok(Sim {
            app,
            addr: local,
            cancel,
            server: Some(server),
        })
    }

    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn base_url(&self) -> String {
        self.app.base_url.clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL of a file in the media folder (`rel` like `media/dance-5s.mp4`, relative to it).
    pub fn media_url(&self, rel: &str) -> String {
        format!(
            "{}/media/{}",
            self.app.base_url,
            rel.trim_start_matches('/')
        )
    }

    /// The accepted API key.
    pub fn api_key(&self) -> &str {
        &self.app.cfg.api_key
    }

    /// A snapshot of the billing ledger (tasks that ended are settled first).
    pub fn ledger(&self) -> Ledger {
        self.app.ledger()
    }

    /// A snapshot of the request statistics and fault counts.
    pub fn stats(&self) -> Stats {
        self.app.stats()
    }

    /// Stop accepting, let answers in progress finish (slow ones are cut short), and wait.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        if let Some(server) = self.server.take() {
            // Idle keep-alive connections close at once; a client holding a request open for
            // longer than this does not keep the simulator alive.
            let abort = server.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), server)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}
