//! What the store keeps of a job's request, and how local media become public URLs.
//!
//! The store keeps media as they were declared (a local file or a URL), never as the URL they
//! were last published at: the simulator's port changes from run to run, and a user may move
//! where they publish media. The URL is made at submit time by a [`MediaPublisher`].

use std::path::{Path, PathBuf};

use crate::manifest::{ClipSettings, MediaSource};
use crate::provider::SubmitRequest;

/// One piece of media as stored: a local file (absolute path) or a URL.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoredMedia {
    Local(PathBuf),
    Url(String),
}

impl From<&MediaSource> for StoredMedia {
    fn from(m: &MediaSource) -> Self {
        match m {
            MediaSource::Local { path, .. } => StoredMedia::Local(path.clone()),
            MediaSource::Remote { url } => StoredMedia::Url(url.clone()),
        }
    }
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
         Set `media_base_url` (or --media-base-url) to where you publish the manifest's folder, \
         use https:// URLs in the manifest, or try it with --simulate"
    )]
    NoPublicUrl(PathBuf),
    #[error("the stored request of this job is unreadable: {0}")]
    BadSpec(String),
}

/// Maps local folders to the URLs where their files are published.
#[derive(Debug, Clone, Default)]
pub struct MediaPublisher {
    roots: Vec<(PathBuf, String)>,
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

    pub fn url_for(&self, media: &StoredMedia) -> Result<String, PublishError> {
        match media {
            StoredMedia::Url(u) => Ok(u.clone()),
            StoredMedia::Local(path) => {
                // The longest matching root wins, so a nested folder can be published elsewhere.
                self.roots
                    .iter()
                    .filter_map(|(root, base)| {
                        path.strip_prefix(root).ok().map(|rel| (root, base, rel))
                    })
                    .max_by_key(|(root, _, _)| root.as_os_str().len())
                    .map(|(_, base, rel)| {
                        let encoded: Vec<String> = rel
                            .components()
                            .map(|c| percent_encode(&c.as_os_str().to_string_lossy()))
                            .collect();
                        format!("{base}{}", encoded.join("/"))
                    })
                    .ok_or_else(|| PublishError::NoPublicUrl(path.clone()))
            }
        }
    }

    pub fn request_for(&self, spec_json: &str) -> Result<SubmitRequest, PublishError> {
        let spec: StoredSpec =
            serde_json::from_str(spec_json).map_err(|e| PublishError::BadSpec(e.to_string()))?;
        Ok(SubmitRequest {
            image_url: self.url_for(&spec.image)?,
            video_url: self.url_for(&spec.video)?,
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

    #[test]
    fn local_files_are_published_under_their_folder_url() {
        let mut p = MediaPublisher::default();
        p.publish(Path::new("/srv/campaign"), "https://cdn.example.com/c");
        let url = p
            .url_for(&StoredMedia::Local(
                "/srv/campaign/subjects/my fox.png".into(),
            ))
            .unwrap();
        assert_eq!(url, "https://cdn.example.com/c/subjects/my%20fox.png");
    }

    #[test]
    fn a_file_outside_every_published_folder_has_no_url() {
        let p = MediaPublisher::default();
        let err = p
            .url_for(&StoredMedia::Local("/srv/x.png".into()))
            .unwrap_err();
        assert!(err.to_string().contains("media_base_url"), "{err}");
    }
}
