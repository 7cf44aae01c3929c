//! Fetching one clip: its link checked, its body streamed under the size cap into a temp file in
//! the output folder, checked whole (length promised, MP4 header, announced digest), fsynced,
//! then landed under its final name and written to the folder's results file. The file work
//! runs off the runtime in as few trips as the body allows: a clip under [`SPOOL_CHUNK`] is
//! written, synced, probed, landed and remembered in one.
//!
//! Owns: the steps of one download and the errors each gives. May not: decide what to do about
//! a failure (retry, refresh the link, give up: the download stage does), name the file
//! (`landing` does), or write the store (it is only asked who owns a file).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::Engine;
use super::download::{DownloadError, Landed, TEMP_SUFFIX};
use super::landing::land;
use crate::output::{OutputDir, TempName};
use crate::provider::Provider;
use crate::store::{DownloadItem, now_ms};

/// How much of a body is gathered before it is written: a clip under this size reaches the
/// disk in the one trip off the runtime that also checks and lands it.
const SPOOL_CHUNK: usize = 64 * 1024;

/// A clip's body on its way to its temp file: gathered in memory up to [`SPOOL_CHUNK`], then
/// written off the runtime; the temp file is made by the first write.
struct Spool {
    out: Arc<OutputDir>,
    temp: Option<(std::fs::File, TempName)>,
    pending: Vec<u8>,
    bytes: u64,
    hasher: Sha256,
}

/// A whole body, not yet written out to the last byte, and the digest its server announced.
struct Body {
    spool: Spool,
    announced: Option<[u8; 32]>,
}

fn local(path: &Path) -> impl FnOnce(std::io::Error) -> DownloadError + use<> {
    let path = path.to_path_buf();
    move |source| DownloadError::Local { path, source }
}

impl Spool {
    fn new(out: Arc<OutputDir>) -> Spool {
        Spool {
            out,
            temp: None,
            pending: Vec::new(),
            bytes: 0,
            hasher: Sha256::new(),
        }
    }

    fn push(&mut self, chunk: &[u8]) {
        self.hasher.update(chunk);
        self.bytes += chunk.len() as u64;
        self.pending.extend_from_slice(chunk);
    }

    /// What is gathered, written to the temp file (made first if need be). Blocking.
    fn write_pending(&mut self) -> Result<(), DownloadError> {
        let (file, temp) = match &mut self.temp {
            Some(made) => made,
            // An unpredictable name, created exclusively (O_EXCL, no link followed): nothing
            // planted in the output folder can make recast write through it.
            empty @ None => empty.insert(
                self.out
                    .create_temp(TEMP_SUFFIX)
                    .map_err(local(self.out.path()))?,
            ),
        };
        file.write_all(&self.pending)
            .map_err(local(&self.out.path().join(temp.name())))?;
        self.pending.clear();
        Ok(())
    }

    /// Write what is gathered off the runtime, once there is enough of it.
    async fn spill(self) -> Result<Spool, DownloadError> {
        if self.pending.len() < SPOOL_CHUNK {
            return Ok(self);
        }
        let mut spool = self;
        tokio::task::spawn_blocking(move || spool.write_pending().map(|()| spool))
            .await
            .map_err(|e| DownloadError::Retryable(format!("writing failed: {e}")))?
    }

    /// The rest written, the file synced, then probed through the descriptor it was written
    /// with (whatever happens to the folder's names meanwhile) and its digest compared with the
    /// one announced. Blocking.
    fn finish(mut self, announced: Option<[u8; 32]>) -> Result<Whole, DownloadError> {
        self.write_pending()?;
        let Some((file, temp)) = self.temp.take() else {
            unreachable!("written above");
        };
        let what = self.out.path().join(temp.name());
        file.sync_all().map_err(local(&what))?;
        let probed = crate::media::probe_video_handle(file, &what.display().to_string());
        if let Err(e) = probed {
            return Err(DownloadError::Retryable(format!(
                "the clip is not a whole MP4: {e}"
            )));
        }
        let digest: [u8; 32] = self.hasher.finalize().into();
        if announced.is_some_and(|a| a != digest) {
            return Err(DownloadError::Retryable(
                "the body does not match the digest the server announced (changed in flight)"
                    .to_owned(),
            ));
        }
        Ok(Whole {
            out: self.out,
            temp,
            sha256: hex::encode(digest),
            bytes: self.bytes,
        })
    }
}

/// A clip in its temp file, synced and checked whole.
struct Whole {
    out: Arc<OutputDir>,
    temp: TempName,
    sha256: String,
    bytes: u64,
}

impl<P: Provider> Engine<P> {
    /// The clip fetched, checked and landed; `None` when `stop` came first. A stop cuts off
    /// only the fetch (its temp file goes with it): once the body is whole, writing, checking,
    /// landing and recording it run to the end, so no clip is left under its final name
    /// unrecorded.
    pub(super) async fn fetch_clip(
        &self,
        item: &DownloadItem,
        stop: &CancellationToken,
    ) -> Result<Option<Landed>, DownloadError> {
        let body = tokio::select! {
            body = self.fetch_body(item) => body?,
            _ = stop.cancelled() => return Ok(None),
        };
        self.settle(item, body).await.map(Some)
    }

    /// The whole body, under the size cap and as long as the server promised.
    async fn fetch_body(&self, item: &DownloadItem) -> Result<Body, DownloadError> {
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
        let spool = self.stream(Spool::new(out), response).await?;
        Ok(Body { spool, announced })
    }

    /// The body into `spool`, under `limits.max_clip_bytes`, as long as the server promised.
    async fn stream(
        &self,
        mut spool: Spool,
        response: reqwest::Response,
    ) -> Result<Spool, DownloadError> {
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
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| {
                DownloadError::Retryable(format!(
                    "cut off after {} bytes: {}",
                    spool.bytes,
                    short_error(&e)
                ))
            })?;
            if spool.bytes + chunk.len() as u64 > cap {
                return Err(too_large());
            }
            spool.push(&chunk);
            spool = spool.spill().await?;
        }
        if let Some(promised) = promised
            && promised != spool.bytes
        {
            return Err(DownloadError::Retryable(format!(
                "truncated: the server promised {promised} bytes and sent {}",
                spool.bytes
            )));
        }
        Ok(spool)
    }

    /// In one trip off the runtime: the body written out and checked whole, the clip under its
    /// final name, and its line in the folder's results file.
    async fn settle(&self, item: &DownloadItem, body: Body) -> Result<Landed, DownloadError> {
        let (name, key) = (item.output_name.clone(), item.job_key.clone());
        let (store, job_id) = (self.store.clone(), item.job_id);
        let mut line = result_line(item);
        tokio::task::spawn_blocking(move || {
            let Whole {
                out,
                temp,
                sha256,
                bytes,
            } = body.spool.finish(body.announced)?;
            let owned_by_another = |path: &Path| {
                store
                    .output_owner(&path.to_string_lossy())
                    .map(|owner| owner.is_some_and(|o| o != job_id))
                    // When in doubt, the file is someone else's: write beside it.
                    .unwrap_or(true)
            };
            let path = land(&out, temp, &name, &key, &sha256, &owned_by_another)?;
            // The folder remembers the clip before the store does: a state folder lost from
            // here on still finds it made.
            line.file = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            line.sha256.clone_from(&sha256);
            line.bytes = bytes;
            crate::output::append_in(&out, &line).map_err(|source| DownloadError::Local {
                path: out.path().join(crate::output::RESULTS_FILE),
                source,
            })?;
            Ok(Landed {
                path,
                sha256,
                bytes,
            })
        })
        .await
        .map_err(|e| DownloadError::Retryable(format!("landing failed: {e}")))?
    }
}

/// The results file's line for a clip of `item` (its file, digest and length are filled in once
/// it landed).
fn result_line(item: &DownloadItem) -> crate::output::ResultLine {
    crate::output::ResultLine {
        job_key: item.job_key.clone(),
        subject: item.subject_id.clone(),
        batch: item.batch_name.clone(),
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
