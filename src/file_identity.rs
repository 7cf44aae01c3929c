//! A file's identity as `stat` tells it: device, inode, size, modification and change times.
//!
//! Two reads of a path whose identity is the same read the same bytes: content cannot change
//! without the ctime changing, and no tool sets a ctime back. But timestamps move in ticks, so a
//! file changed within [`RACY`] of a moment (or after it) may have changed again within the
//! same tick, after being read then: such a file vouches for nothing read at that moment (a
//! "racily clean" file, as git calls it).
//!
//! Owns: the identity, its encoding, and the racy rule. May not: open or read any file.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How close to a moment a change makes a file's identity vouch for nothing read then.
pub const RACY: Duration = Duration::from_secs(2);

/// See the module's doc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileIdentity {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
}

/// Files smaller than this are simply hashed: reading them costs less than looking a recorded
/// digest up (a state-folder query), so their digests are neither looked up nor kept.
pub const DIGEST_WORTH_KEEPING: u64 = 8 * 1024;

/// The length of [`FileIdentity::to_bytes`].
pub const IDENTITY_BYTES: usize = 40;

impl FileIdentity {
    pub fn of_metadata(m: &std::fs::Metadata) -> FileIdentity {
        FileIdentity {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: m.mtime().saturating_mul(1_000_000_000) + m.mtime_nsec(),
            ctime_ns: m.ctime().saturating_mul(1_000_000_000) + m.ctime_nsec(),
        }
    }

    /// The identity of what `path` names now (links followed), if it exists.
    pub fn of_path(path: &Path) -> Option<FileIdentity> {
        std::fs::metadata(path)
            .ok()
            .map(|m| FileIdentity::of_metadata(&m))
    }

    pub fn to_bytes(&self) -> [u8; IDENTITY_BYTES] {
        let mut out = [0u8; IDENTITY_BYTES];
        let fields = [
            self.dev as i64,
            self.ino as i64,
            self.size as i64,
            self.mtime_ns,
            self.ctime_ns,
        ];
        for (chunk, field) in out.chunks_exact_mut(8).zip(fields) {
            chunk.copy_from_slice(&field.to_le_bytes());
        }
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<FileIdentity> {
        if bytes.len() != IDENTITY_BYTES {
            return None;
        }
        let field = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
            i64::from_le_bytes(b)
        };
        Some(FileIdentity {
            dev: field(0) as u64,
            ino: field(1) as u64,
            size: field(2) as u64,
            mtime_ns: field(3),
            ctime_ns: field(4),
        })
    }

    /// Whether the file last changed more than `racy` before `moment`: only then does this
    /// identity vouch for what was read of it at `moment`.
    pub fn settled_before(&self, moment: SystemTime, racy: Duration) -> bool {
        let Some(cutoff) = moment
            .checked_sub(racy)
            .and_then(|c| c.duration_since(UNIX_EPOCH).ok())
        else {
            return false;
        };
        i128::from(self.ctime_ns) < cutoff.as_nanos() as i128
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_survives_its_encoding_and_a_fresh_change_is_racy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.png");
        std::fs::write(&path, b"one").unwrap();
        let id = FileIdentity::of_path(&path).unwrap();
        assert_eq!(FileIdentity::from_bytes(&id.to_bytes()), Some(id));
        assert_eq!(FileIdentity::from_bytes(&[0; 39]), None);
        assert!(!id.settled_before(SystemTime::now(), RACY), "just written");
        assert!(id.settled_before(SystemTime::now() + RACY * 2, RACY));
        std::fs::write(&path, b"two").unwrap();
        assert_ne!(
            FileIdentity::of_path(&path),
            Some(id),
            "same size, new ctime"
        );
    }
}
