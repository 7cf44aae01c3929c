//! Lifecycle: signals that stop the daemon, and pausing or resuming batches while it runs.
//!
//! Owns: turning SIGINT/SIGTERM into the shutdown token, and the pause switch. Pausing goes
//! through the state folder's database (WAL lets another process write while the daemon runs),
//! so `recast pause` works whether or not a daemon is running, and the engine sees it at its
//! next claim: a paused batch submits nothing new, while tasks already submitted still finish
//! and are downloaded.
//!
//! May not: print (the CLI reports), or take the state folder's lock (the daemon holds it).

use std::path::Path;

use tokio_util::sync::CancellationToken;

use crate::store::{Store, StoreError};

/// Cancel `token` on the first SIGINT or SIGTERM; return early if it is cancelled otherwise.
pub async fn cancel_on_signal(token: CancellationToken) {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
        _ = token.cancelled() => return,
    }
    // A warning, so a person at a terminal (where info lines are hidden) sees it too.
    tracing::warn!(
        "signal received: stopping; requests on the wire finish, partial downloads are removed, \
         and running the same command again resumes"
    );
    token.cancel();
}

/// Pause (or resume) the batches named `batch` (one per provider), or every batch with `None`.
/// Returns how many batches changed.
pub fn set_paused(
    state_dir: &Path,
    batch: Option<&str>,
    paused: bool,
) -> Result<usize, StoreError> {
    if !state_dir.join("recast.db").exists() {
        return match batch {
            Some(name) => Err(StoreError::NoSuchBatch(name.to_owned())),
            None => Ok(0),
        };
    }
    let store = Store::open(state_dir)?;
    match batch {
        None => store.set_paused(None, paused),
        Some(name) => {
            let mut n = 0;
            for id in store.batch_ids_named(Some(name))? {
                n += store.set_paused(Some(id), paused)?;
            }
            Ok(n)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pausing_an_unknown_batch_says_so_and_pausing_nothing_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(set_paused(dir.path(), None, true).unwrap(), 0);
        assert!(matches!(
            set_paused(dir.path(), Some("nope"), true),
            Err(StoreError::NoSuchBatch(_))
        ));
    }
}
