//! Input stamps: the identity (`stat`: device, inode, size, mtime, ctime) of every file and
//! folder a plan read, so that a later run of the same manifest can tell from a `stat` of each,
//! without reading, hashing or probing any, that planning it again would give the same batch.
//!
//! Owns: which paths a stamp covers, their encoding, when a plan cannot be stamped, and the
//! check that a stamp still holds on disk.
//!
//! May not: write the store (the caller keeps the encoded stamp), or open any file it stats:
//! a stamp check reads no byte of a subject, so a FIFO or a huge file dropped in costs nothing.
//!
//! Why the ctime: a file's content cannot change without its ctime changing, and no tool sets a
//! ctime back. A file changed within [`RACY`] of the moment its manifest was read (or after it)
//! may have changed within one timestamp tick of being read: such a plan is not stamped, as git
//! treats a "racily clean" file. Paths that went through a symlink, watched folders (whose
//! failed files are in no stamp) and a reference video behind a URL are never stamped: what
//! they name can change with no stamped file changing.

use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use super::Plan;
pub use crate::file_identity::RACY;
use crate::file_identity::{FileIdentity, IDENTITY_BYTES};
use crate::manifest::{BatchSpec, MediaSource};

/// Hashed into every context: bump it when what a stamp covers changes, so old ones never hold.
const SCHEME: &str = "recast-stamp-v1";

/// A digest of what a batch is planned under besides its files: the provider, prices, roots,
/// publishing and flags, as `parts` describes them (with recast's version and the scheme).
pub fn context(parts: &str) -> String {
    let mut hasher = Sha256::new();
    for part in [SCHEME, env!("CARGO_PKG_VERSION"), parts] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// The paths planning `batch` read besides its subject images: the manifest, the folders its
/// globs listed and the reference video (if it is a local file).
pub fn batch_paths(batch: &BatchSpec) -> impl Iterator<Item = &Path> {
    std::iter::once(batch.manifest_path.as_path())
        .chain(batch.inputs.listed_dirs.iter().map(PathBuf::as_path))
        .chain(local(&batch.reference_video))
}

fn local(m: &MediaSource) -> Option<&Path> {
    match m {
        MediaSource::Local(local) => Some(local.path()),
        MediaSource::Remote { .. } => None,
    }
}

/// Whether a stamp can vouch for `batch` at all: not through a symlink, not a watched folder
/// (whose failed files are in no stamp), and not a reference video behind a URL (which may
/// have changed length, and so every estimate, with no file here changing).
pub fn stampable(batch: &BatchSpec) -> bool {
    let remote_reference = matches!(batch.reference_video, MediaSource::Remote { .. });
    !(batch.inputs.through_links || !batch.watch_dirs.is_empty() || remote_reference)
}

/// The stamp of `plan`, whose manifest was read at `read_at`; `None` if it cannot be stamped
/// (a symlink on the way, a watched folder, a file changed within `racy` of the reading, or
/// after it, or gone).
pub fn encode(plan: &Plan, read_at: SystemTime, racy: Duration) -> Option<Vec<u8>> {
    let batch = &plan.batch;
    if !stampable(batch) {
        return None;
    }
    let images = batch.jobs.iter().filter_map(|j| local(&j.image));
    encode_paths(batch_paths(batch).chain(images), read_at, racy)
}

/// The stamp of `paths` (see [`encode`]), whole.
fn encode_paths(
    paths: impl Iterator<Item = impl AsRef<Path>>,
    read_at: SystemTime,
    racy: Duration,
) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for path in paths {
        out.extend(record(path.as_ref(), read_at, racy)?);
    }
    Some(out)
}

/// The stamp of `paths`, one record a path, each made (its file `stat`ed) when it is taken;
/// `None` for a path that cannot vouch (see [`encode`]): the stamp is then not kept.
pub fn records(
    paths: impl Iterator<Item = Option<PathBuf>>,
    read_at: SystemTime,
    racy: Duration,
) -> impl Iterator<Item = Option<Vec<u8>>> {
    paths.map(move |path| record(&path?, read_at, racy))
}

/// One path's record: its length, its absolute bytes and its identity.
fn record(path: &Path, read_at: SystemTime, racy: Duration) -> Option<Vec<u8>> {
    let path = std::path::absolute(path).ok()?;
    let id = FileIdentity::of_path(&path)?;
    if !id.settled_before(read_at, racy) {
        return None;
    }
    let bytes = path.as_os_str().as_bytes();
    let mut out = Vec::with_capacity(4 + bytes.len() + IDENTITY_BYTES);
    out.extend_from_slice(&u32::try_from(bytes.len()).ok()?.to_le_bytes());
    out.extend_from_slice(bytes);
    out.extend_from_slice(&id.to_bytes());
    Some(out)
}

/// Whether every file and folder a stamp names is still what it was, its encoding read as it
/// goes. Anything unreadable in the stamp, or on disk, is "changed".
pub fn unchanged(stamp: &mut dyn Read) -> bool {
    let mut named = 0;
    loop {
        let mut len = [0u8; 4];
        match read_full(stamp, &mut len) {
            // Every stamp names the manifest at least: an empty one is damaged.
            Some(0) => return named > 0,
            Some(4) => {}
            _ => return false,
        }
        let mut path = vec![0; u32::from_le_bytes(len) as usize];
        let mut id = [0; IDENTITY_BYTES];
        let whole = read_full(stamp, &mut path) == Some(path.len())
            && read_full(stamp, &mut id) == Some(IDENTITY_BYTES);
        let Some(id) = whole.then(|| FileIdentity::from_bytes(&id)).flatten() else {
            return false;
        };
        if FileIdentity::of_path(Path::new(OsStr::from_bytes(&path))) != Some(id) {
            return false;
        }
        named += 1;
    }
}

/// Read until `buf` is full or the stamp ends: how many bytes came (`None` on an error).
fn read_full(stamp: &mut dyn Read, buf: &mut [u8]) -> Option<usize> {
    let mut got = 0;
    while got < buf.len() {
        match stamp.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    Some(got)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp_of(paths: &[&Path], racy: Duration) -> Option<Vec<u8>> {
        encode_paths(paths.iter().copied(), SystemTime::now(), racy)
    }

    #[test]
    fn a_stamp_holds_until_a_file_or_a_folder_listing_changes() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.png"), dir.path().join("b.png"));
        std::fs::write(&a, b"one").unwrap();
        std::fs::write(&b, b"two").unwrap();
        let paths = [dir.path(), a.as_path(), b.as_path()];
        let stamp = stamp_of(&paths, Duration::ZERO).unwrap();
        assert!(unchanged(&mut &stamp[..]));
        // Same length, other bytes.
        std::fs::write(&a, b"eno").unwrap();
        assert!(!unchanged(&mut &stamp[..]));
        let stamp = stamp_of(&paths, Duration::ZERO).unwrap();
        std::fs::write(dir.path().join("c.png"), b"new").unwrap();
        assert!(
            !unchanged(&mut &stamp[..]),
            "a file added to a listed folder"
        );
        let stamp = stamp_of(&paths, Duration::ZERO).unwrap();
        std::fs::remove_file(&b).unwrap();
        assert!(!unchanged(&mut &stamp[..]), "a file gone");
    }

    #[test]
    fn a_file_changed_too_close_to_the_reading_is_not_vouched_for() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.png");
        std::fs::write(&a, b"one").unwrap();
        assert!(stamp_of(&[a.as_path()], RACY).is_none());
        assert!(stamp_of(&[dir.path().join("gone.png").as_path()], Duration::ZERO).is_none());
    }

    #[test]
    fn a_damaged_stamp_is_never_taken_as_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.png");
        std::fs::write(&a, b"one").unwrap();
        let stamp = stamp_of(&[a.as_path()], Duration::ZERO).unwrap();
        for cut in 1..stamp.len() {
            assert!(!unchanged(&mut &stamp[..cut]), "cut at {cut}");
        }
        assert!(unchanged(&mut &stamp[..]));
    }
}
