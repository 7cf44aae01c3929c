//! What reading a manifest depended on besides the bytes it hashed, and the digests it may
//! take instead of hashing: the input of `plan::stamp` (is a batch unchanged?) and of
//! `plan::known` (which files must be read again?).
//!
//! Owns: [`InputTrail`] and the [`KnownDigests`] a loader may be given. May not: stat, open or
//! read any file (`paths` and `listing` do, and fill the trail).

use std::path::{Path, PathBuf};

/// The folders whose listing chose subjects, and whether any path went through a symlink: with
/// the manifest and every media file, what `plan::stamp` stats to tell a batch unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InputTrail {
    pub listed_dirs: Vec<PathBuf>,
    pub through_links: bool,
    /// Local files read and hashed, and files whose recorded digest was taken instead.
    pub hashed: usize,
    pub known: usize,
    /// When the reading began: a file changed since (or just before) vouches for nothing read.
    pub read_at: Option<std::time::SystemTime>,
}

/// Digests of local files computed by earlier runs, by the file's identity (`stat`): a file
/// whose identity is what it was then has the same bytes (see [`crate::file_identity`]).
pub trait KnownDigests: Send + Sync + std::fmt::Debug {
    /// The sha256 (lowercase hex) of the file at the canonical `path`, if one was recorded
    /// while its identity was `identity`.
    fn sha256(&self, path: &Path, identity: &crate::file_identity::FileIdentity) -> Option<String>;
}
