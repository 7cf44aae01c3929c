//! Where media are probed from: local files through their confined root (no link followed),
//! URLs through a client that keeps off private addresses, each remote probe bounded in time.
//!
//! May not: decide what a probe means for a job (the plan does).

use crate::manifest::MediaSource;
use crate::media::{self, ImageInfo, MediaError, VideoInfo};

/// Where media are probed from.
pub struct Prober {
    client: reqwest::Client,
    allow_private: bool,
}

impl Default for Prober {
    /// Refuses private and local addresses (see [`crate::netguard`]).
    fn default() -> Self {
        Prober::new(false)
    }
}

impl Prober {
    /// A prober whose URLs may reach private addresses only when `allow_private`.
    pub fn new(allow_private: bool) -> Prober {
        Prober {
            client: crate::netguard::client_builder(allow_private)
                .connect_timeout(std::time::Duration::from_secs(10))
                .timeout(std::time::Duration::from_secs(60))
                .build()
                .unwrap_or_default(),
            allow_private,
        }
    }

    /// An IP literal is connected to without DNS: it is checked here, before any request.
    fn check(&self, url: &str) -> Result<(), MediaError> {
        crate::netguard::check_url(url, self.allow_private).map_err(|reason| MediaError::Http {
            url: url.to_owned(),
            reason,
        })
    }

    pub async fn video(&self, source: &MediaSource) -> Result<VideoInfo, MediaError> {
        match source {
            MediaSource::Local(local) => {
                let (path, rel) = (local.path().to_path_buf(), local.rel().to_owned());
                tokio::task::spawn_blocking(move || {
                    let file = media::open_confined(&path, &rel)?;
                    media::probe_video_handle(file, &path.display().to_string())
                })
                .await
                .map_err(|e| MediaError::Corrupt(format!("probe failed: {e}")))?
            }
            MediaSource::Remote { url } => {
                self.check(url)?;
                bounded(url, media::probe_video_url(&self.client, url)).await
            }
        }
    }

    pub async fn image(&self, source: &MediaSource) -> Result<ImageInfo, MediaError> {
        match source {
            MediaSource::Local(local) => {
                let (path, rel) = (local.path().to_path_buf(), local.rel().to_owned());
                tokio::task::spawn_blocking(move || {
                    let file = media::open_confined(&path, &rel)?;
                    media::probe_image_handle(file, &path.display().to_string())
                })
                .await
                .map_err(|e| MediaError::Corrupt(format!("probe failed: {e}")))?
            }
            MediaSource::Remote { url } => {
                self.check(url)?;
                bounded(url, media::probe_image_url(&self.client, url)).await
            }
        }
    }
}

/// How long one remote probe may take, all its requests together (a server that drips bytes
/// or answers slowly cannot hold a plan or the daemon's intake for longer).
const PROBE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(90);

async fn bounded<T>(
    url: &str,
    probe: impl std::future::Future<Output = Result<T, MediaError>>,
) -> Result<T, MediaError> {
    tokio::time::timeout(PROBE_DEADLINE, probe)
        .await
        .unwrap_or_else(|_| {
            Err(MediaError::Http {
                url: url.to_owned(),
                reason: format!("the probe took longer than {} s", PROBE_DEADLINE.as_secs()),
            })
        })
}
