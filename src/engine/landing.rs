//! Landing a downloaded clip: giving its temp file a final name in the output folder without
//! ever replacing a file there, and recognising a name already holding this very clip.
//!
//! Owns: the choice of name (`NAME`, else `STEM.KEY12.EXT` beside it), the hard link that
//! cannot overwrite, the folder's fsync, and hashing only regular files. May not: fetch, or
//! touch the store (who owns a file is asked through a callback).

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::download::DownloadError;

/// Give the temp file its final name without ever replacing a file. Returns the final path.
///
/// If the wanted name is taken by this very clip (a crash after linking, before the store heard
/// of it: same bytes, and no other job owns the file), that file is the result. If it is taken by
/// another clip (an earlier version of the job, a file of the user's), the clip goes beside it as
/// `STEM.KEY12.mp4`.
pub(super) fn land(
    temp: &Path,
    dir: &Path,
    name: &str,
    key: &str,
    sha256: &str,
    owned_by_another: &dyn Fn(&Path) -> bool,
) -> Result<PathBuf, DownloadError> {
    let (stem, ext) = match name.rsplit_once('.') {
        Some((s, e)) => (s.to_owned(), format!(".{e}")),
        None => (name.to_owned(), String::new()),
    };
    let short = &key[..key.len().min(12)];
    let candidates = std::iter::once(name.to_owned())
        .chain(std::iter::once(format!("{stem}.{short}{ext}")))
        .chain((2..1000).map(|n| format!("{stem}.{short}-{n}{ext}")));
    for candidate in candidates {
        let target = dir.join(&candidate);
        match std::fs::hard_link(temp, &target) {
            Ok(()) => {
                let _ = std::fs::remove_file(temp);
                sync_dir(dir).map_err(|source| DownloadError::Local {
                    path: dir.to_path_buf(),
                    source,
                })?;
                return Ok(target);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if !owned_by_another(&target) && file_sha256(&target).as_deref() == Some(sha256) {
                    let _ = std::fs::remove_file(temp);
                    return Ok(target);
                }
            }
            Err(source) => {
                return Err(DownloadError::Local {
                    path: target,
                    source,
                });
            }
        }
    }
    Err(DownloadError::Local {
        path: dir.join(name),
        source: std::io::Error::other("every name beside it is taken"),
    })
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// The sha256 of a regular file; `None` for anything else (a link, a FIFO, a device is never
/// read: it could point anywhere or never end).
pub(super) fn file_sha256(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut file = crate::output::open_regular(path).ok()?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match file.read(&mut buf).ok()? {
            0 => return Some(hex::encode(hasher.finalize())),
            n => hasher.update(&buf[..n]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `fox.mp4` holding `existing` beside a downloaded temp file holding `new`, landed.
    fn land_beside(
        existing: &[u8],
        new: &[u8],
        owned_by_another: bool,
    ) -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("fox.mp4"), existing).unwrap();
        let temp = dir.path().join(".fox.mp4.1.recast-part");
        std::fs::write(&temp, new).unwrap();
        let sha = file_sha256(&temp).unwrap();
        let landed = land(
            &temp,
            dir.path(),
            "fox.mp4",
            "abcdef0123456789",
            &sha,
            &|_| owned_by_another,
        )
        .unwrap();
        (dir, temp, landed)
    }

    #[test]
    fn a_finished_clip_is_never_overwritten() {
        let (dir, temp, landed) = land_beside(b"old clip", b"new clip", false);
        assert_eq!(landed, dir.path().join("fox.abcdef012345.mp4"));
        assert_eq!(
            std::fs::read(dir.path().join("fox.mp4")).unwrap(),
            b"old clip"
        );
        assert_eq!(std::fs::read(&landed).unwrap(), b"new clip");
        assert!(!temp.exists());
    }

    #[test]
    fn landing_the_same_clip_twice_keeps_one_file() {
        let (dir, _temp, landed) = land_beside(b"clip", b"clip", false);
        assert_eq!(landed, dir.path().join("fox.mp4"));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn the_same_bytes_under_another_jobs_name_are_not_taken_over() {
        let (dir, _temp, landed) = land_beside(b"clip", b"clip", true);
        assert_eq!(landed, dir.path().join("fox.abcdef012345.mp4"));
    }
}
