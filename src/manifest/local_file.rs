//! Local media files: a confined path opened without following links, checked and hashed.
//!
//! Owns: opening a local file beneath its root (never a link, never a FIFO), the size cap on
//! media read at all, its sha256 (taken from an earlier run's record of the same identity when
//! there is one), and which digests are kept for files named twice.
//!
//! May not: decide what may be reached (`paths` confines), list folders (`listing`), or put a
//! resolved absolute path into an error message.

use std::fs;
use std::io::{self, Read};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::MediaSource;
use super::paths::Roots;
use super::yaml::quote_for_message;

impl Roots {
    /// A local media file: confined, checked to be a regular file, hashed.
    pub(super) fn local_file(&mut self, raw: &str, path: &Path) -> Result<MediaSource, String> {
        self.confined_file(raw, path, true)
    }

    /// A file a glob or a watched folder listed: as [`Roots::local_file`], but its digest is not
    /// kept for later references. A listing names each file once, and keeping every listed
    /// file's path and digest would hold a large batch twice; a file also named elsewhere is
    /// at worst read twice.
    pub(super) fn listed_file(&mut self, raw: &str, path: &Path) -> Result<MediaSource, String> {
        self.confined_file(raw, path, false)
    }

    fn confined_file(
        &mut self,
        raw: &str,
        path: &Path,
        remember: bool,
    ) -> Result<MediaSource, String> {
        let (canonical, root) = self.confine_canonically(raw, path)?;
        let rel = relative_with_slashes(&canonical, root);
        // Opened once (no link at its name, never a FIFO) and checked on the handle; the size
        // rule comes before hashing, so a huge (or sparse) file is not read in full.
        let beneath = canonical.strip_prefix(root).unwrap_or(&canonical);
        let file = crate::safe_fs::open_beneath(root, beneath).map_err(|err| match err.kind() {
            io::ErrorKind::Other => format!("`{}` is not a regular file", quote_for_message(raw)),
            _ => format!("cannot open `{}`: {err}", quote_for_message(raw)),
        })?;
        let meta = file
            .metadata()
            .map_err(|err| format!("cannot open `{}`: {err}", quote_for_message(raw)))?;
        let size = meta.len();
        if size > MAX_LOCAL_MEDIA_BYTES {
            return Err(format!(
                "`{}` is {size} bytes; the provider takes media of at most 100 MB (a video) \
                 or 10 MB (an image)",
                quote_for_message(raw)
            ));
        }
        let sha256 = match self.hashes.get(&canonical) {
            Some(sha) => sha.clone(),
            None => {
                let sha = self
                    .digest(file, &meta, &canonical)
                    .map_err(|err| format!("cannot read `{}`: {err}", quote_for_message(raw)))?;
                if remember {
                    self.hashes.insert(canonical.clone(), sha.clone());
                }
                sha
            }
        };
        super::LocalMedia::new(canonical, &rel, &sha256)
            .map(MediaSource::Local)
            .map_err(|err| format!("`{}`: {err}", quote_for_message(raw)))
    }

    /// The file's sha256: recorded by an earlier run for this identity, or read now. Identified
    /// on the open handle: the bytes a recorded digest vouches for are this file's, whatever
    /// was at its name before.
    fn digest(
        &mut self,
        file: fs::File,
        meta: &fs::Metadata,
        canonical: &Path,
    ) -> io::Result<String> {
        let identity = crate::file_identity::FileIdentity::of_metadata(meta);
        let recorded = self
            .known
            .as_ref()
            .filter(|_| meta.len() >= crate::file_identity::DIGEST_WORTH_KEEPING)
            .and_then(|k| k.sha256(canonical, &identity));
        match recorded {
            Some(sha) => {
                self.reused += 1;
                Ok(sha)
            }
            None => {
                self.hashed += 1;
                sha256_of(file)
            }
        }
    }
}

fn relative_with_slashes(path: &Path, root: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// The largest local media file read at all: the provider's cap for a reference video.
const MAX_LOCAL_MEDIA_BYTES: u64 = 100_000_000;

/// sha256 of an open file, streamed: media can be large and memory stays bounded.
fn sha256_of(mut file: fs::File) -> io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}
