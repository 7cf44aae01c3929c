//! What the store keeps of a job's request, and how local media become public URLs.
//!
//! The store keeps media as they were declared (a local file with the sha256 its job key holds,
//! or a URL), never as the URL they were last published at: the simulator's port changes from
//! run to run, a user may move where they publish media, and a presigned URL expires. The URL is
//! made at submit time by a [`MediaPublisher`]: under a folder's `media_base_url`, or from the
//! media store (uploaded once, content-addressed, signed now).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::manifest::{ClipSettings, MediaSource};
use crate::media_store::{MediaStore, PublishFailure};
use crate::provider::SubmitRequest;

/// One piece of media as stored: a local file (absolute path) or a URL.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoredMedia {
    /// A local file, as jobs registered before the media store kept it (no hash).
    Local(PathBuf),
    /// A local file and the sha256 of the bytes its job was planned with.
    File {
        path: PathBuf,
        sha256: String,
    },
    Url(String),
}

impl StoredMedia {
    fn local_path(&self) -> Option<&Path> {
        match self {
            StoredMedia::Local(path) | StoredMedia::File { path, .. } => Some(path),
            StoredMedia::Url(_) => None,
        }
    }
}

impl From<&MediaSource> for StoredMedia {
    fn from(m: &MediaSource) -> Self {
        match m {
            MediaSource::Local(local) => StoredMedia::File {
                path: local.path().to_path_buf(),
                sha256: local.sha256(),
            },
            MediaSource::Remote { url } => StoredMedia::Url(url.clone()),
        }
    }
}

/// How a piece of media reaches the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// The manifest's own URL.
    Url(String),
    /// Under a published folder (`media_base_url`, or the simulator's `/media/`).
    BaseUrl(String),
    /// Through the media store (uploaded unless there already).
    Store,
    /// No way: the run would stop at this file.
    None,
}

/// A job's request, as the store keeps it (`jobs.spec_json`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredSpec {
    pub model: String,
    pub mode: crate::pricing::Mode,
    pub character_orientation: crate::media::Orientation,
    pub keep_original_sound: bool,
    pub prompt: Option<String>,
    pub image: StoredMedia,
    pub video: StoredMedia,
}

impl StoredSpec {
    pub fn new(settings: &ClipSettings, image: &MediaSource, video: &MediaSource) -> StoredSpec {
        StoredSpec {
            model: settings.model.to_string(),
            mode: settings.mode,
            character_orientation: settings.orientation,
            keep_original_sound: settings.keep_original_sound,
            prompt: settings.prompt.as_deref().map(str::to_owned),
            image: image.into(),
            video: video.into(),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a StoredSpec always serialises")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    #[error(
        "{0} is a local file and no public URL is known for it: the provider fetches media by URL. \
         Set `media_store.s3` in the settings file (recast uploads it to your bucket), set \
         `media_base_url` (or --media-base-url) to where you publish the manifest's folder, use \
         https:// URLs in the manifest, or try it with --simulate"
    )]
    NoPublicUrl(PathBuf),
    #[error("the stored request of this job is unreadable: {0}")]
    BadSpec(String),
    #[error(transparent)]
    Store(#[from] PublishFailure),
}

impl PublishError {
    /// A failure that may pass by itself (the bucket or the network): retry the submit later.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            PublishError::Store(PublishFailure::Unavailable { .. })
        )
    }
}

/// Maps local folders to the URLs where their files are published, and hands the rest of the
/// local files to the media store when there is one.
#[derive(Debug, Clone, Default)]
pub struct MediaPublisher {
    roots: Vec<(PathBuf, String)>,
    store: Option<Arc<MediaStore>>,
}

impl MediaPublisher {
    /// Files under `folder` are published at `base_url` + their path relative to `folder`.
    pub fn publish(&mut self, folder: &Path, base_url: &str) {
        let base = if base_url.ends_with('/') {
            base_url.to_owned()
        } else {
            format!("{base_url}/")
        };
        self.roots.push((folder.to_path_buf(), base));
    }

    /// Local files no folder publishes go to `store`.
    pub fn with_store(mut self, store: Option<Arc<MediaStore>>) -> MediaPublisher {
        self.store = store;
        self
    }

    pub fn store(&self) -> Option<&Arc<MediaStore>> {
        self.store.as_ref()
    }

    /// How `media` would reach the provider; nothing is uploaded or asked.
    pub fn route(&self, media: &StoredMedia) -> Route {
        let Some(path) = media.local_path() else {
            let StoredMedia::Url(u) = media else {
                unreachable!("only URLs have no local path")
            };
            return Route::Url(u.clone());
        };
        // The longest matching root wins, so a nested folder can be published elsewhere.
        let published = self
            .roots
            .iter()
            .filter_map(|(root, base)| path.strip_prefix(root).ok().map(|rel| (root, base, rel)))
            .max_by_key(|(root, _, _)| root.as_os_str().len())
            .map(|(_, base, rel)| {
                let encoded: Vec<String> = rel
                    .components()
                    .map(|c| percent_encode(&c.as_os_str().to_string_lossy()))
                    .collect();
                format!("{base}{}", encoded.join("/"))
            });
        match (published, &self.store) {
            (Some(url), _) => Route::BaseUrl(url),
            (None, Some(_)) => Route::Store,
            (None, None) => Route::None,
        }
    }

    /// Whether the provider could be given a URL for `media`.
    pub fn can_publish(&self, media: &StoredMedia) -> bool {
        self.route(media) != Route::None
    }

    /// The URL the provider fetches `media` at; a file for the media store is uploaded first
    /// unless the bucket holds its bytes already.
    pub async fn url_for(&self, media: &StoredMedia) -> Result<String, PublishError> {
        match (self.route(media), &self.store) {
            (Route::Url(u) | Route::BaseUrl(u), _) => Ok(u),
            (Route::Store, Some(store)) => {
                let (path, sha256) = match media {
                    StoredMedia::File { path, sha256 } => (path, Some(sha256.as_str())),
                    StoredMedia::Local(path) => (path, None),
                    StoredMedia::Url(_) => unreachable!("a URL has the Url route"),
                };
                Ok(store.url_for(path, sha256).await?)
            }
            _ => Err(PublishError::NoPublicUrl(
                media.local_path().unwrap_or(Path::new("?")).to_path_buf(),
            )),
        }
    }

    pub async fn request_for(&self, spec_json: &str) -> Result<SubmitRequest, PublishError> {
        let spec: StoredSpec =
            serde_json::from_str(spec_json).map_err(|e| PublishError::BadSpec(e.to_string()))?;
        // The video first: shared by every job, it is uploaded once and then known.
        let video_url = self.url_for(&spec.video).await?;
        Ok(SubmitRequest {
            image_url: self.url_for(&spec.image).await?,
            video_url,
            model: spec.model,
            character_orientation: spec.character_orientation,
            mode: spec.mode,
            keep_original_sound: spec.keep_original_sound,
            prompt: spec.prompt,
        })
    }
}

/// RFC 3986 percent-encoding of one path segment (unreserved characters stay).
fn percent_encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_files_are_published_under_their_folder_url() {
        let mut p = MediaPublisher::default();
        p.publish(Path::new("/srv/campaign"), "https://cdn.example.com/c");
        let url = p
            .url_for(&StoredMedia::Local(
                "/srv/campaign/subjects/my fox.png".into(),
            ))
            .await
            .unwrap();
        assert_eq!(url, "https://cdn.example.com/c/subjects/my%20fox.png");
    }

    #[tokio::test]
    async fn a_file_outside_every_published_folder_has_no_url() {
        let p = MediaPublisher::default();
        let media = StoredMedia::File {
            path: "/srv/x.png".into(),
            sha256: "00".repeat(32),
        };
        assert_eq!(p.route(&media), Route::None);
        let err = p.url_for(&media).await.unwrap_err();
        assert!(err.to_string().contains("media_store.s3"), "{err}");
        assert!(err.to_string().contains("media_base_url"), "{err}");
    }
}
