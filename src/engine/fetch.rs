//! Fetching one clip: its link checked, its body streamed into a temp file in the output folder
//! under the size cap, checked whole (length promised, MP4 header, announced digest), fsynced,
//! then landed under its final name and written to the folder's results file.
//!
//! Owns: the steps of one download and the errors each gives. May not: decide what to do about
//! a failure (retry, refresh the link, give up: the download stage does), name the file
//! (`landing` does), or write the store (it is only asked who owns a file).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use super::Engine;
use super::download::{DownloadError, Landed, TEMP_SUFFIX};
use super::landing::land;
use crate::output::{OutputDir, TempName};
use crate::provider::Provider;
use crate::store::{DownloadItem, now_ms};

/// A clip's body in its temp file, synced, with its length and digest.
struct Fetched {
    temp: TempName,
    /// The temp file as written (read back through it: no second open by name).
    file: std::fs::File,
    bytes: u64,
    digest: [u8; 32],
}

fn local(path: &Path) -> impl FnOnce(std::io::Error) -> DownloadError + use<> {
    let path = path.to_path_buf();
    move |source| DownloadError::Local { path, source }
}

impl<P: Provider> Engine<P> {
    /// The clip fetched, checked and landed; `None` when `stop` came first. A stop cuts off
    /// only the fetch (its temp file goes with it): once the clip is whole, landing it and
    /// recording it run to the end, so no clip is left under its final name unrecorded.
    pub(super) async fn fetch_clip(
        &self,
        item: &DownloadItem,
        stop: &CancellationToken,
    ) -> Result<Option<Landed>, DownloadError> {
        let (out, temp, bytes, sha256) = tokio::select! {
            whole = self.fetch_whole(item) => whole?,
            _ = stop.cancelled() => return Ok(None),
        };
        let path = self
            .land_and_remember(item, out, temp, &sha256, bytes)
            .await?;
        Ok(Some(Landed {
            path,
            sha256,
            bytes,
        }))
    }

    /// The body in its temp file, synced and checked whole, with its length and digest.
    async fn fetch_whole(
        &self,
        item: &DownloadItem,
    ) -> Result<(Arc<OutputDir>, TempName, u64, String), DownloadError> {
        let dir = PathBuf::from(&item.output_dir);
        // Opened once, not through a link at its name; every file below goes through it.
        let out = self.folders.get(&dir).map_err(local(&dir))?;
        // A link from the provider's answer is foreign: it may not lead to a private address.
        crate::netguard::check_url(&item.clip_url, self.config.allow_private_networks)
            .map_err(|why| DownloadError::Retryable(format!("the clip link is refused: {why}")))?;
        let response = self
            .downloads
            .get(&item.clip_url)
            .send()
            .await
            .map_err(|e| {
                DownloadError::Retryable(format!("request failed: {}", short_error(&e)))
            })?;
        let status = response.status().as_u16();
        if matches!(status, 403 | 404 | 410) {
            return Err(DownloadError::LinkDead(status));
        }
        if !response.status().is_success() {
            return Err(DownloadError::Retryable(format!(
                "the clip server answered HTTP {status}"
            )));
        }
        let announced = response
            .headers()
            .get("repr-digest")
            .or_else(|| response.headers().get("content-digest"))
            .and_then(|v| v.to_str().ok())
            .and_then(crate::digest::parse_sha256);
        let Fetched {
            temp,
            file,
            bytes,
            digest,
        } = self.stream_to_temp(&out, response).await?;
        check_whole(&out, &temp, file, digest, announced).await?;
        Ok((out, temp, bytes, hex::encode(digest)))
    }

    /// The body into a new temp file in the folder, under `limits.max_clip_bytes`, as long as
    /// the server promised; then synced.
    async fn stream_to_temp(
        &self,
        out: &Arc<OutputDir>,
        response: reqwest::Response,
    ) -> Result<Fetched, DownloadError> {
        let promised = response.content_length();
        let cap = self.config.max_clip_bytes;
        let too_large = || {
            DownloadError::Retryable(format!(
                "the clip is larger than {cap} bytes (limits.max_clip_bytes)"
            ))
        };
        if promised.is_some_and(|n| n > cap) {
            return Err(too_large());
        }
        // An unpredictable name, created exclusively (O_EXCL, no link followed): nothing planted
        // in the output folder can make recast write through it.
        let (file, temp) = out.create_temp(TEMP_SUFFIX).map_err(local(out.path()))?;
        let temp_path = out.path().join(temp.name());
        let mut file = tokio::fs::File::from_std(file);
        let mut hasher = Sha256::new();
        let mut bytes = 0u64;
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| {
                DownloadError::Retryable(format!(
                    "cut off after {bytes} bytes: {}",
                    short_error(&e)
                ))
            })?;
            if bytes + chunk.len() as u64 > cap {
                return Err(too_large());
            }
            hasher.update(&chunk);
            bytes += chunk.len() as u64;
            file.write_all(&chunk).await.map_err(local(&temp_path))?;
        }
        if let Some(promised) = promised
            && promised != bytes
        {
            return Err(DownloadError::Retryable(format!(
                "truncated: the server promised {promised} bytes and sent {bytes}"
            )));
        }
        file.flush().await.map_err(local(&temp_path))?;
        file.sync_all().await.map_err(local(&temp_path))?;
        Ok(Fetched {
            temp,
            file: file.into_std().await,
            bytes,
            digest: hasher.finalize().into(),
        })
    }

    /// The clip under its final name, and its line in the folder's results file.
    async fn land_and_remember(
        &self,
        item: &DownloadItem,
        out: Arc<OutputDir>,
        temp: TempName,
        sha256: &str,
        bytes: u64,
    ) -> Result<PathBuf, DownloadError> {
        let (name, key, sha) = (
            item.output_name.clone(),
            item.job_key.clone(),
            sha256.to_owned(),
        );
        let (store, job_id) = (self.store.clone(), item.job_id);
        let mut line = result_line(item, sha256, bytes);
        tokio::task::spawn_blocking(move || {
            let owned_by_another = |path: &Path| {
                store
                    .output_owner(&path.to_string_lossy())
                    .map(|owner| owner.is_some_and(|o| o != job_id))
                    // When in doubt, the file is someone else's: write beside it.
                    .unwrap_or(true)
            };
            let path = land(&out, temp, &name, &key, &sha, &owned_by_another)?;
            // The folder remembers the clip before the store does: a state folder lost from
            // here on still finds it made.
            line.file = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            crate::output::append_in(&out, &line).map_err(|source| DownloadError::Local {
                path: out.path().join(crate::output::RESULTS_FILE),
                source,
            })?;
            Ok::<_, DownloadError>(path)
        })
        .await
        .map_err(|e| DownloadError::Retryable(format!("landing failed: {e}")))?
    }
}

/// The temp file is a whole MP4 (probed through the descriptor it was written with, whatever
/// happens to the folder's names meanwhile) with the digest the server announced, if any.
async fn check_whole(
    out: &OutputDir,
    temp: &TempName,
    file: std::fs::File,
    digest: [u8; 32],
    announced: Option<[u8; 32]>,
) -> Result<(), DownloadError> {
    let what = out.path().join(temp.name()).display().to_string();
    let probed = tokio::task::spawn_blocking(move || crate::media::probe_video_handle(file, &what))
        .await
        .map_err(|e| DownloadError::Retryable(format!("probe failed: {e}")))?;
    if let Err(e) = probed {
        return Err(DownloadError::Retryable(format!(
            "the clip is not a whole MP4: {e}"
        )));
    }
    if announced.is_some_and(|a| a != digest) {
        return Err(DownloadError::Retryable(
            "the body does not match the digest the server announced (changed in flight)"
                .to_owned(),
        ));
    }
    Ok(())
}

/// The results file's line for a clip of `item` (its file name is known once it landed).
fn result_line(item: &DownloadItem, sha256: &str, bytes: u64) -> crate::output::ResultLine {
    crate::output::ResultLine {
        job_key: item.job_key.clone(),
        subject: item.subject_id.clone(),
        batch: item.batch_name.clone(),
        sha256: sha256.to_owned(),
        bytes,
        task_id: item.task_id.clone(),
        credits: item.estimate_credits,
        state: "done".to_owned(),
        at: now_ms(),
        ..Default::default()
    }
}

fn short_error(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg = s.to_string();
        source = s.source();
    }
    msg
}
