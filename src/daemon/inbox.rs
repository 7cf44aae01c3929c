//! The inbox stage: manifests dropped into inbox folders become batches.
//!
//! Owns: what happens to a dropped file once it is whole (see `watch`): a valid manifest is
//! registered and moved to `accepted/`; an invalid one is moved to `rejected/` with
//! `NAME.error.txt` beside it holding the same messages `recast plan` prints. Moves never
//! overwrite: a second drop of `jobs.yaml` lands as `jobs-2.yaml`.
//!
//! May not: plan or register by itself (that is `intake`), or watch subjects folders (that is
//! `subjects`, told about each standing performance through a channel).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::DaemonError;
use super::config::{DaemonConfig, Inbox};
use super::intake::{Intake, Outcome};
use super::watch::FolderWatch;

pub const ACCEPTED: &str = "accepted";
pub const REJECTED: &str = "rejected";

/// Run until `shutdown`; files present at start are taken like new ones.
pub async fn run(
    config: Arc<DaemonConfig>,
    intake: Arc<Intake>,
    standing: mpsc::Sender<i64>,
    shutdown: CancellationToken,
) -> Result<(), DaemonError> {
    if config.inboxes.is_empty() {
        return Ok(());
    }
    let mut watch = FolderWatch::new(config.watch, config.settle, config.poll_interval)?;
    for inbox in &config.inboxes {
        watch.add(&inbox.path)?;
        tracing::info!(inbox = %inbox.path.display(), "watching for manifests");
    }
    // Each drop is planned on its own task (a few at a time): one slow or hostile drop (a
    // remote probe that drips) cannot hold the others back.
    let mut takes: tokio::task::JoinSet<(PathBuf, Result<Option<i64>, DaemonError>)> =
        tokio::task::JoinSet::new();
    // A file seen again while its take runs (a rescan, a second event) is not taken twice.
    let mut in_progress: HashSet<PathBuf> = HashSet::new();
    loop {
        let files = tokio::select! {
            files = watch.next(&shutdown) => match files {
                Some(files) => files,
                None => break,
            },
            Some(done) = takes.join_next(), if !takes.is_empty() => {
                taken(done, &mut in_progress, &standing).await?;
                continue;
            }
        };
        for file in files {
            let Some(inbox) = config
                .inboxes
                .iter()
                .find(|i| file.parent() == Some(i.path.as_path()))
                .cloned()
            else {
                continue;
            };
            if !is_manifest_name(&file) {
                tracing::debug!(file = ?file, "not a manifest (.yaml/.yml); left alone");
                continue;
            }
            if !in_progress.insert(file.clone()) {
                continue;
            }
            while takes.len() >= CONCURRENT_TAKES {
                if let Some(done) = takes.join_next().await {
                    taken(done, &mut in_progress, &standing).await?;
                }
            }
            let intake = intake.clone();
            takes.spawn(async move {
                let outcome = take(&intake, &inbox, &file).await;
                (file, outcome)
            });
        }
    }
    takes.abort_all();
    while let Some(done) = takes.join_next().await {
        if !matches!(&done, Err(e) if e.is_cancelled()) {
            taken(done, &mut in_progress, &standing).await?;
        }
    }
    tracing::info!("inbox stage stopped");
    Ok(())
}

/// Drops planned at once.
const CONCURRENT_TAKES: usize = 4;

/// A take ended: a registered batch goes to the subjects stage (which decides whether it stands;
/// it may be gone when shutting down); a store failure is critical.
async fn taken(
    done: Result<(PathBuf, Result<Option<i64>, DaemonError>), tokio::task::JoinError>,
    in_progress: &mut HashSet<PathBuf>,
    standing: &mpsc::Sender<i64>,
) -> Result<(), DaemonError> {
    let outcome = match done {
        Ok((file, outcome)) => {
            in_progress.remove(&file);
            outcome
        }
        Err(e) if e.is_cancelled() => return Ok(()),
        Err(e) => return Err(DaemonError::Panicked(e.to_string())),
    };
    match outcome {
        Ok(Some(batch_id)) => {
            let _ = standing.send(batch_id).await;
            Ok(())
        }
        Ok(None) => Ok(()),
        Err(e) => Err(e),
    }
}

fn is_manifest_name(path: &Path) -> bool {
    matches!(
        path.extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some("yaml" | "yml")
    )
}

/// Take one whole manifest file. A store failure is critical; everything else about the file
/// is the file's problem, reported beside it.
async fn take(intake: &Intake, inbox: &Inbox, file: &Path) -> Result<Option<i64>, DaemonError> {
    let batch = match intake.check(file).await {
        Ok(batch) => batch,
        Err(messages) => {
            reject(inbox, file, &messages);
            return Ok(None);
        }
    };
    // Registered under where it will live, so a standing performance can be read again later.
    let accepted = match unique_target(&inbox.path.join(ACCEPTED), file) {
        Ok(target) => target,
        Err(e) => {
            tracing::error!(file = ?file, "cannot make the accepted/ folder: {e}");
            return Ok(None);
        }
    };
    match intake.register(batch, &accepted, inbox.priority).await? {
        Outcome::Invalid(messages) => {
            reject(inbox, file, &messages);
            Ok(None)
        }
        Outcome::Registered(r) => {
            if let Err(e) = std::fs::rename(file, &accepted) {
                tracing::error!(file = ?file, "registered, but cannot move it to accepted/: {e}");
            }
            tracing::info!(
                batch = %r.name,
                file = ?file,
                added = r.report.added,
                kept = r.report.kept,
                "manifest accepted"
            );
            Ok(Some(r.batch_id))
        }
    }
}

fn reject(inbox: &Inbox, file: &Path, messages: &str) {
    let target = match unique_target(&inbox.path.join(REJECTED), file) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(file = ?file, "cannot make the rejected/ folder: {e}");
            return;
        }
    };
    // The error file first: whoever sees the manifest in rejected/ finds the reason beside it.
    // Created only where nothing is (a link planted there, even a dangling one, is not written
    // through).
    let error_file = error_file_for(&target);
    let text = format!("{messages}\n");
    let written = crate::safe_fs::create_new(&error_file, 0o644)
        .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()));
    if let Err(e) = written {
        tracing::error!(file = ?error_file, "cannot write the error file: {e}");
    }
    if let Err(e) = std::fs::rename(file, &target) {
        tracing::error!(file = ?file, "cannot move it to rejected/: {e}");
    }
    tracing::warn!(file = ?file, "manifest rejected: {}", messages.lines().next().unwrap_or("").escape_debug());
}

/// `rejected/jobs.yaml` -> `rejected/jobs.error.txt`.
pub fn error_file_for(manifest: &Path) -> PathBuf {
    let stem = manifest
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    manifest.with_file_name(format!("{stem}.error.txt"))
}

/// A name in `folder` for `file` that no file has yet: `jobs.yaml`, else `jobs-2.yaml`, ...
fn unique_target(folder: &Path, file: &Path) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(folder)?;
    let name = file.file_name().unwrap_or_default().to_string_lossy();
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 => (&name[..i], &name[i..]),
        _ => (&name[..], ""),
    };
    let mut n = 1;
    loop {
        let candidate = if n == 1 {
            folder.join(name.as_ref())
        } else {
            folder.join(format!("{stem}-{n}{ext}"))
        };
        if !crate::safe_fs::anything_at(&candidate)
            && !crate::safe_fs::anything_at(&error_file_for(&candidate))
        {
            return Ok(candidate);
        }
        n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_never_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let first = unique_target(dir.path(), Path::new("/x/jobs.yaml")).unwrap();
        assert_eq!(first, dir.path().join("jobs.yaml"));
        std::fs::write(&first, "").unwrap();
        let second = unique_target(dir.path(), Path::new("/x/jobs.yaml")).unwrap();
        assert_eq!(second, dir.path().join("jobs-2.yaml"));
        assert_eq!(error_file_for(&second), dir.path().join("jobs-2.error.txt"));
    }
}
