//! The local side of publishing: opening a media file without following links, reading it
//! part by part off the async runtime, hashing it, and naming its content type.

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::PublishFailure;

/// The largest local media file published (the provider takes videos up to 100 MB).
pub(super) const MAX_MEDIA_BYTES: u64 = 1 << 30;

pub(super) fn open(path: &Path) -> Result<std::fs::File, PublishFailure> {
    crate::safe_fs::open_regular(path).map_err(|e| unreadable(path, &e.to_string()))
}

pub(super) fn unreadable(path: &Path, why: &str) -> PublishFailure {
    PublishFailure::Unreadable {
        file: path.display().to_string(),
        why: why.to_owned(),
    }
}

pub(super) fn changed(path: &Path, sha256: &str) -> PublishFailure {
    PublishFailure::Changed {
        file: path.display().to_string(),
        planned: sha256.to_owned(),
    }
}

/// Read up to `max` bytes from `file` off the async runtime; the file handle comes back for the
/// next part.
pub(super) async fn read_part(
    mut file: std::fs::File,
    max: u64,
) -> Result<(std::fs::File, Vec<u8>), String> {
    tokio::task::spawn_blocking(move || {
        let mut buf = Vec::new();
        (&mut file)
            .take(max)
            .read_to_end(&mut buf)
            .map_err(|e| e.to_string())?;
        Ok((file, buf))
    })
    .await
    .map_err(|e| e.to_string())?
}

/// The sha256 of a file, read without following links.
pub(super) async fn hash_file(path: &Path) -> Result<String, PublishFailure> {
    let mut file = open(path)?;
    let p = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut limited = (&mut file).take(MAX_MEDIA_BYTES);
        loop {
            let n = limited
                .read(&mut buf)
                .map_err(|e| unreadable(&p, &e.to_string()))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        Ok(hex::encode(hasher.finalize()))
    })
    .await
    .map_err(|e| unreadable(path, &e.to_string()))?
}

pub(super) fn content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("webp") => "image/webp",
        Some("mp4" | "m4v") => "video/mp4",
        Some("mov") => "video/quicktime",
        _ => "application/octet-stream",
    }
}
