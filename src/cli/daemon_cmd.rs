//! `recast daemon`, `recast pause` and `recast resume`: thin layers over [`crate::daemon`].

use tokio_util::sync::CancellationToken;

use super::ExitCode;
use super::args::{DashboardArgs, PauseArgs};
use crate::daemon::{self, DaemonConfig, DaemonError};
use crate::settings::Settings;
use crate::store::StoreError;

pub async fn daemon(settings: Settings) -> ExitCode {
    let config = match DaemonConfig::resolve(settings) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::Invalid;
        }
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(daemon::lifecycle::cancel_on_signal(shutdown.clone()));
    match daemon::run(config, shutdown).await {
        Ok(()) => ExitCode::Ok,
        Err(e) => {
            eprintln!("error: {e}");
            match e {
                DaemonError::Store(StoreError::Busy { .. }) => {
                    eprintln!(
                        "hint: one daemon (or `recast run`) works on a state folder at a time; \
                         use --state-dir for another"
                    );
                    ExitCode::Busy
                }
                DaemonError::Config(_) | DaemonError::NoApiKey | DaemonError::Listen { .. } => {
                    ExitCode::Invalid
                }
                DaemonError::Halted(_) => ExitCode::ProviderRefused,
                _ => ExitCode::Internal,
            }
        }
    }
}

pub fn pause(settings: &Settings, args: PauseArgs, paused: bool) -> ExitCode {
    let word = if paused { "paused" } else { "resumed" };
    let Some(name) = &args.batch else {
        // Every batch: nothing to name.
        return match daemon::lifecycle::set_paused(&settings.state_dir, None, paused) {
            Ok(n) => {
                eprintln!("{n} batch{} {word}", if n == 1 { "" } else { "es" });
                ExitCode::Ok
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::Internal
            }
        };
    };
    let store = match super::plan_cmd::existing_store(settings) {
        Ok(Some(s)) => s,
        Ok(None) => {
            eprintln!(
                "error: no batch named `{name}` in {} (it has no batches yet)",
                settings.state_dir.display()
            );
            return ExitCode::Invalid;
        }
        Err(code) => return code,
    };
    let id = match super::batch_ref::select_batch(
        &store,
        settings,
        name,
        args.simulate,
        super::batch_ref::Purpose::Change,
    ) {
        Ok(id) => id,
        Err(code) => return code,
    };
    if let Err(e) = store.set_paused(Some(id), paused) {
        eprintln!("error: {e}");
        return ExitCode::Internal;
    }
    eprintln!(
        "{name} {word}{}",
        if paused {
            "; tasks already running still finish and are downloaded"
        } else {
            ""
        }
    );
    if paused {
        return ExitCode::Ok;
    }
    // `recast resume BATCH` also undoes a person's `recast cancel BATCH`, saying what it submits.
    let resumed = store.batch_summary(id).and_then(|s| {
        if !s.cancelled {
            return Ok(None);
        }
        let price = store.uncancel_price(id)?;
        Ok(Some((s.provider, price, store.uncancel(id)?)))
    });
    match resumed {
        Ok(Some((provider, price, n))) => {
            eprintln!(
                "{name} ({provider}) was cancelled: {n} jobs resumed; {} will be submitted, \
                 at most {} credits ≈ {:.3} USD",
                price.submits,
                price.credits,
                price.credits as f64 / 1000.0
            );
            ExitCode::Ok
        }
        Ok(None) => ExitCode::Ok,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::Internal
        }
    }
}

/// `recast dashboard`: the daemon's dashboard for a state folder, without a daemon.
pub async fn dashboard(settings: &Settings, args: DashboardArgs) -> ExitCode {
    let store = match super::plan_cmd::existing_store(settings) {
        Ok(Some(s)) => std::sync::Arc::new(s),
        Ok(None) => {
            eprintln!("error: no batches yet in {}", settings.state_dir.display());
            return ExitCode::Invalid;
        }
        Err(code) => return code,
    };
    let token = std::env::var("RECAST_DASHBOARD_TOKEN").ok();
    let state = match crate::dashboard::Dashboard::new(
        store,
        args.listen,
        token,
        settings.engine.trust_idempotency,
    ) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::Invalid;
        }
    };
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {}: {e}", args.listen);
            return ExitCode::Invalid;
        }
    };
    let addr = listener.local_addr().map_or(args.listen, |a| a);
    eprintln!("dashboard on http://{addr}/ (Ctrl-C stops it)");
    let shutdown = CancellationToken::new();
    tokio::spawn(daemon::lifecycle::cancel_on_signal(shutdown.clone()));
    match crate::dashboard::serve(listener, state, shutdown).await {
        Ok(()) => ExitCode::Ok,
        Err(e) => {
            eprintln!("error: the dashboard failed: {e}");
            ExitCode::Internal
        }
    }
}
