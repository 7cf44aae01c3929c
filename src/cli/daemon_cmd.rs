//! `recast daemon`, `recast pause` and `recast resume`: thin layers over [`crate::daemon`].

use tokio_util::sync::CancellationToken;

use super::ExitCode;
use super::args::PauseArgs;
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
    match daemon::lifecycle::set_paused(&settings.state_dir, args.batch.as_deref(), paused) {
        Ok(n) => {
            eprintln!(
                "{n} batch{} {word}{}",
                if n == 1 { "" } else { "es" },
                if paused {
                    "; tasks already running still finish and are downloaded"
                } else {
                    ""
                }
            );
            match (&args.batch, paused) {
                (Some(name), false) => uncancel(settings, name),
                _ => ExitCode::Ok,
            }
        }
        Err(StoreError::NoSuchBatch(name)) => {
            eprintln!(
                "error: no batch named `{name}` in {}",
                settings.state_dir.display()
            );
            ExitCode::Invalid
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::Internal
        }
    }
}

/// `recast resume BATCH` also undoes a person's `recast cancel BATCH`, saying what it submits.
fn uncancel(settings: &Settings, name: &str) -> ExitCode {
    match daemon::lifecycle::uncancel(&settings.state_dir, name) {
        Ok(resumed) => {
            for (provider, price, n) in resumed {
                eprintln!(
                    "{name} ({provider}) was cancelled: {n} jobs resumed; {} will be submitted, \
                     at most {} credits ≈ {:.3} USD",
                    price.submits,
                    price.credits,
                    price.credits as f64 / 1000.0
                );
            }
            ExitCode::Ok
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::Internal
        }
    }
}
