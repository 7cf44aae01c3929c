//! The download stage: a finished task's clip lands in its output folder, whole or not at all.
//!
//! The clip is streamed to a temp file inside the output folder (same filesystem, so the final
//! step is atomic), its length checked against what the server promised and its MP4 header
//! probed, then fsynced, linked under its final name (a hard link fails rather than replace an
//! existing file, so a finished clip is never overwritten) and the folder fsynced; those steps
//! are [`super::fetch`]'s. This stage owns the order and the outcome: links expire, so the ones
//! expiring soonest are fetched first, and a dead link is refreshed by polling again (at most
//! `max_link_refreshes` times, then the clip is given up as `expired`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{Engine, EngineError};
use crate::provider::Provider;
use crate::store::{DownloadItem, JobState, now_ms};

/// Temp files carry this suffix; anything with it in an output folder is a leftover.
pub(super) const TEMP_SUFFIX: &str = ".recast-part";

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The link no longer works (403, 404, 410): ask the provider for a fresh one.
    #[error("the clip link is dead (HTTP {0})")]
    LinkDead(u16),
    /// Worth trying again: cut off, corrupt, a server error.
    #[error("{0}")]
    Retryable(String),
    /// The output folder cannot be written: no retry will help until a person fixes it.
    #[error("cannot write {path}: {source}")]
    Local {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A clip on disk under its final name.
#[derive(Debug)]
pub(super) struct Landed {
    pub(super) path: PathBuf,
    pub(super) sha256: String,
    pub(super) bytes: u64,
}

/// Remove temp files that interrupted downloads left in `dir`. Returns how many.
pub fn clean_temp_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(TEMP_SUFFIX))
        .filter(|e| std::fs::remove_file(e.path()).is_ok())
        .count()
}

/// A download task ended: its job is free again; its error (or panic) stops the stage.
fn finished(
    done: Result<(i64, Result<(), EngineError>), tokio::task::JoinError>,
    busy: &mut std::collections::HashSet<i64>,
) -> Result<(), EngineError> {
    match done {
        Ok((id, r)) => {
            busy.remove(&id);
            r
        }
        Err(e) if e.is_cancelled() => Ok(()),
        Err(e) => Err(EngineError::Panicked(super::panic_message(e))),
    }
}

impl<P: Provider> Engine<P> {
    pub(super) async fn download_stage(
        self: Arc<Self>,
        stop: CancellationToken,
    ) -> Result<(), EngineError> {
        let mut running: JoinSet<(i64, Result<(), EngineError>)> = JoinSet::new();
        let mut busy = std::collections::HashSet::new();
        loop {
            while let Some(done) = running.try_join_next() {
                finished(done, &mut busy)?;
            }
            if stop.is_cancelled() {
                break;
            }
            let free = self
                .config
                .download_concurrency
                .saturating_sub(running.len());
            if free > 0 {
                let skip: Vec<i64> = busy.iter().copied().collect();
                for item in self
                    .store
                    .due_downloads(self.scope(), now_ms(), free, &skip)?
                {
                    busy.insert(item.job_id);
                    let (engine, stop) = (self.clone(), stop.clone());
                    running.spawn(async move {
                        let id = item.job_id;
                        (id, engine.download_one(item, &stop).await)
                    });
                }
            }
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = self.wake.notified() => {}
                Some(done) = running.join_next(), if !running.is_empty() => {
                    finished(done, &mut busy)?;
                }
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
        while let Some(done) = running.join_next().await {
            finished(done, &mut busy)?;
        }
        Ok(())
    }

    /// Fetch every clip that is ready now.
    pub(super) async fn download_pass(
        self: &Arc<Self>,
        stop: &CancellationToken,
    ) -> Result<(), EngineError> {
        let mut tried = Vec::new();
        loop {
            let (scope, most, asked) = (
                self.scope().clone(),
                self.config.download_concurrency,
                tried.clone(),
            );
            let items = self
                .store
                .off_runtime(move |store| store.due_downloads(&scope, now_ms(), most, &asked))
                .await?;
            if items.is_empty() || stop.is_cancelled() {
                return Ok(());
            }
            let mut batch = JoinSet::new();
            for item in items {
                tried.push(item.job_id);
                let (engine, stop) = (self.clone(), stop.clone());
                batch.spawn(async move { engine.download_one(item, &stop).await });
            }
            while let Some(done) = batch.join_next().await {
                super::joined(done)?;
            }
        }
    }

    async fn download_one(
        self: Arc<Self>,
        item: DownloadItem,
        stop: &CancellationToken,
    ) -> Result<(), EngineError> {
        let store = &self.store;
        match self.fetch_clip(&item, stop).await {
            Ok(None) => {}
            Ok(Some(landed)) => {
                store
                    .record_downloaded(
                        &item,
                        &landed.path.to_string_lossy(),
                        &landed.sha256,
                        landed.bytes,
                    )
                    .await?;
                tracing::info!(subject = %item.subject_id, path = ?landed.path, "clip saved");
            }
            Err(DownloadError::LinkDead(status)) => {
                let why = format!("the clip link answered HTTP {status}");
                self.refresh_or_give_up(&item, &why).await?;
            }
            Err(DownloadError::Retryable(why)) => {
                let backoff = Duration::from_millis(500) * 2u32.pow(item.download_failures.min(8));
                let failures = store
                    .record_download_failed(
                        &item,
                        &why,
                        now_ms() + backoff.min(Duration::from_secs(60)).as_millis() as i64,
                    )
                    .await?;
                tracing::warn!(subject = %item.subject_id, failures, "download failed, will retry: {why}");
                if failures >= self.config.max_download_failures {
                    // The body keeps coming out wrong: a fresh link is the last thing to try,
                    // a bounded number of times.
                    self.refresh_or_give_up(
                        &item,
                        &format!("{failures} failed downloads; last: {why}"),
                    )
                    .await?;
                }
            }
            Err(e @ DownloadError::Local { .. }) => {
                // Disk full, a read-only folder, a name too long: no retry helps until a person
                // fixes it, so the run stops and says so (the clip's link is kept).
                let why = e.to_string();
                store
                    .record_download_failed(&item, &why, now_ms() + 30_000)
                    .await?;
                if self.forever.load(std::sync::atomic::Ordering::Relaxed) {
                    tracing::error!(subject = %item.subject_id, "{why}; trying again in 30 s");
                    return Ok(());
                }
                return Err(EngineError::OutputFolder(format!(
                    "{}: {why}",
                    item.subject_id
                )));
            }
        }
        Ok(())
    }

    /// Ask the provider for a fresh link (by polling again), or, after
    /// `max_link_refreshes` of them, give the clip up as `expired` with the reason.
    async fn refresh_or_give_up(&self, item: &DownloadItem, why: &str) -> Result<(), EngineError> {
        let refreshes = self.store.record_link_dead(item, why).await?;
        if refreshes > self.config.max_link_refreshes {
            let why = format!(
                "the clip could not be fetched after {} fresh links (last: {why}); it is lost \
                 unless the provider still has it (`recast retry --expired`)",
                refreshes - 1
            );
            self.store
                .record_needs_person(item.job_id, JobState::Expired, &why)
                .await?;
            self.note_outcome(item.job_id);
            tracing::error!(subject = %item.subject_id, "EXPIRED: {why}");
        } else {
            self.started_running(super::poll::Started::Look(item.job_id));
            tracing::warn!(subject = %item.subject_id, "{why}; asking the provider for a fresh link");
        }
        self.wake.notify_waiters();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftover_temp_files_are_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".a.mp4.3.recast-part"), b"x").unwrap();
        std::fs::write(dir.path().join("a.mp4"), b"x").unwrap();
        assert_eq!(clean_temp_files(dir.path()), 1);
        assert!(dir.path().join("a.mp4").exists());
    }
}
