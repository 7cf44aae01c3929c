//! Media probing: what a reference video or subject image is, read from its header.
//!
//! Owns: reading MP4/MOV box headers (duration, width, height, container) and image headers
//! (format, width, height), from a local file, from bytes in memory, or from an `http(s)` URL
//! with range requests (the `moov` box may sit at the end of the file); and the provider's input
//! rules (`REAPI.md`) as [`check_video`] and [`check_image`].
//!
//! May not: know about jobs, batches, the store or the provider client. It never reads a whole
//! file to probe it, and it never panics or hangs on malformed, truncated, empty, huge or lying
//! input: every such case is a [`MediaError`].
//!
//! # Layout
//! - `mp4`: the MP4/MOV box walk (a state machine fed by whoever holds the bytes) and `moov`.
//! - `image`: JPEG/PNG/WebP from a file's head and tail.
//! - `http`: range requests (and capped streams) feeding those two.
//! - `rules`: the provider's input rules and the extension check.
//! - `sniff`: naming what a file is from its magic bytes, for errors.

mod http;
mod image;
mod mp4;
mod rules;
mod sniff;

pub use rules::{
    IMAGE_MAX_ASPECT_DEN, IMAGE_MAX_ASPECT_NUM, IMAGE_MAX_BYTES, IMAGE_MIN_SIDE_PX,
    VIDEO_MAX_BYTES, VIDEO_MAX_DURATION_IMAGE_ORIENTATION_MS, VIDEO_MAX_DURATION_MS,
    VIDEO_MAX_SIDE_PX, VIDEO_MIN_DURATION_MS, VIDEO_MIN_SIDE_PX, check_extension,
    check_video_extension,
};

use std::path::Path;

/// Open a local file to probe and give its size: opened once, no link at its name followed, a
/// FIFO never waited on, and anything but a regular file (a device may never end) refused on
/// the open handle, so nothing can be swapped in between a check and the read.
fn open_regular(path: &Path) -> Result<(std::fs::File, u64), MediaError> {
    let io = |source| MediaError::Io {
        what: path.display().to_string(),
        source,
    };
    let file = crate::safe_fs::open_regular(path).map_err(io)?;
    let len = size_of(&file, &path.display().to_string())?;
    Ok((file, len))
}

/// The container of a reference video, from its `ftyp` brand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Container {
    Mp4,
    Mov,
}

/// What a reference video's header says.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VideoInfo {
    pub container: Container,
    /// Duration from the movie header, in milliseconds, rounded *up* (estimates are upper bounds).
    pub duration_ms: u64,
    /// Width and height of the first video track (after its track header's size).
    pub width: u32,
    pub height: u32,
    pub size_bytes: u64,
}

/// Image formats the provider accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    Jpeg,
    Png,
    Webp,
}

impl ImageFormat {
    /// The lowercase name (as in `recast plan --json`).
    pub fn as_str(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "jpeg",
            ImageFormat::Png => "png",
            ImageFormat::Webp => "webp",
        }
    }

    pub fn from_name(name: &str) -> Option<ImageFormat> {
        [ImageFormat::Jpeg, ImageFormat::Png, ImageFormat::Webp]
            .into_iter()
            .find(|f| f.as_str() == name)
    }
}

/// The version of what the image header readers report. An [`ImageInfo`] kept by an earlier
/// run is trusted only under the same version: bump it when a reader changes what it finds
/// (a format added, a size read differently), so every image is probed again once.
pub const IMAGE_PROBE_VERSION: i64 = 1;

/// What a subject image's header says.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ImageInfo {
    pub format: ImageFormat,
    pub width: u32,
    pub height: u32,
    pub size_bytes: u64,
}

/// Facing rule that changes the video duration cap (`image`: at most 10 s, `video`: 30 s).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Orientation {
    Image,
    Video,
}

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("cannot read {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot fetch {url}: {reason}")]
    Http { url: String, reason: String },
    #[error("the file is empty")]
    Empty,
    #[error("not a video this tool can read: {0}")]
    NotAVideo(String),
    #[error("not an image this tool can read: {0}")]
    NotAnImage(String),
    #[error("the file is truncated or corrupt: {0}")]
    Corrupt(String),
}

/// One broken input rule, in words a user can act on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RuleViolation {
    /// Short stable name of the rule (`duration`, `width`, `aspect_ratio`, ...).
    pub rule: &'static str,
    /// What is wrong and what is allowed, e.g. "video is 12.0 s; orientation `image` allows at most 10 s".
    pub message: String,
}

/// Probe a local video, reading only its top-level box headers, `ftyp` and `moov`.
pub fn probe_video_file(path: &Path) -> Result<VideoInfo, MediaError> {
    let (file, len) = open_regular(path)?;
    mp4::probe_open(file, len, &path.display().to_string())
}

/// Probe a video already open (a clip just downloaded, read through its own handle); `what`
/// names it in errors.
pub fn probe_video_handle(file: std::fs::File, what: &str) -> Result<VideoInfo, MediaError> {
    let len = size_of(&file, what)?;
    mp4::probe_open(file, len, what)
}

/// The size of an open file, from its handle.
fn size_of(file: &std::fs::File, what: &str) -> Result<u64, MediaError> {
    file.metadata()
        .map(|m| m.len())
        .map_err(|source| MediaError::Io {
            what: what.to_owned(),
            source,
        })
}

/// Probe a video whose bytes are all in memory (the simulator fetches whole inputs, as the provider does).
pub fn probe_video_bytes(bytes: &[u8]) -> Result<VideoInfo, MediaError> {
    mp4::probe_bytes(bytes)
}

/// Probe a video at an `http(s)` URL with range requests: box headers, then `moov` wherever it
/// sits. A server that ignores ranges is read as a capped stream.
pub async fn probe_video_url(client: &reqwest::Client, url: &str) -> Result<VideoInfo, MediaError> {
    http::probe_video(client, url).await
}

/// Probe a local image from its first bytes (header) and last bytes (is it whole?).
pub fn probe_image_file(path: &Path) -> Result<ImageInfo, MediaError> {
    let (file, size) = open_regular(path)?;
    image::probe_open(file, size, &path.display().to_string())
}

/// Probe an image already open; `what` names it in errors.
pub fn probe_image_handle(file: std::fs::File, what: &str) -> Result<ImageInfo, MediaError> {
    let size = size_of(&file, what)?;
    image::probe_open(file, size, what)
}

/// Open a local medium the manifest confined: `path` is its canonical path and `rel` the part
/// of it below its root, walked from the root's handle without following any link, so a folder
/// swapped for a link since the manifest was read cannot lead the probe outside.
pub fn open_confined(path: &Path, rel: &str) -> Result<std::fs::File, MediaError> {
    let rel = Path::new(rel);
    let io = |source| MediaError::Io {
        what: path.display().to_string(),
        source,
    };
    let root = path
        .ancestors()
        .nth(rel.components().count())
        .filter(|root| path.strip_prefix(root).is_ok_and(|r| r == rel))
        .ok_or_else(|| io(std::io::Error::other("not inside its folder")))?;
    crate::safe_fs::open_beneath(root, rel).map_err(io)
}

pub fn probe_image_bytes(bytes: &[u8]) -> Result<ImageInfo, MediaError> {
    image::probe_bytes(bytes)
}

/// Probe an image at an `http(s)` URL: one range request for the head, one for the tail.
pub async fn probe_image_url(client: &reqwest::Client, url: &str) -> Result<ImageInfo, MediaError> {
    http::probe_image(client, url).await
}

/// The provider's rules for a reference video under an orientation; empty when it passes.
pub fn check_video(info: &VideoInfo, orientation: Orientation) -> Vec<RuleViolation> {
    rules::check_video(info, orientation)
}

/// The provider's rules for a subject image; empty when it passes.
pub fn check_image(info: &ImageInfo) -> Vec<RuleViolation> {
    rules::check_image(info)
}
