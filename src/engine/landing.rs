//! Landing a downloaded clip: giving its temp file a final name in the output folder without
//! ever replacing a file there, and recognising a name already holding this very clip.
//!
//! Owns: the choice of name (`NAME`, else `STEM.KEY12.EXT` beside it) and when a name taken by
//! the same bytes is this clip's own. The folder is an open [`OutputDir`]: the hard link, the
//! reading of what is there (regular files only) and the fsync all go through its handle. May
//! not: fetch, or touch the store (who owns a file is asked through a callback).

use std::path::{Path, PathBuf};

use super::download::DownloadError;
use crate::output::{OutputDir, TempName};

/// Give the temp file its final name without ever replacing a file. Returns the final path.
///
/// If the wanted name is taken by this very clip (a crash after linking, before the store heard
/// of it: same bytes, and no other job owns the file), that file is the result. If it is taken by
/// another clip (an earlier version of the job, a file of the user's, a link, a FIFO), the clip
/// goes beside it as `STEM.KEY12.mp4`.
pub(super) fn land(
    dir: &OutputDir,
    temp: TempName,
    name: &str,
    key: &str,
    sha256: &str,
    owned_by_another: &dyn Fn(&Path) -> bool,
) -> Result<PathBuf, DownloadError> {
    let local = |path: PathBuf| move |source| DownloadError::Local { path, source };
    for candidate in candidates(name, key) {
        let target = dir.path().join(&candidate);
        match dir.link(temp.name(), &candidate) {
            Ok(()) => {
                // The temp name goes with `temp`; the clip keeps its final name.
                drop(temp);
                dir.sync().map_err(local(dir.path().to_path_buf()))?;
                return Ok(target);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if !owned_by_another(&target)
                    && dir.sha256_of(&candidate).as_deref() == Some(sha256)
                {
                    return Ok(target);
                }
            }
            Err(source) => return Err(local(target)(source)),
        }
    }
    Err(DownloadError::Local {
        path: dir.path().join(name),
        source: std::io::Error::other("every name beside it is taken"),
    })
}

/// The names a clip may land under, in order: `NAME`, then `STEM.KEY12.EXT`, then numbered.
fn candidates(name: &str, key: &str) -> impl Iterator<Item = String> {
    let (stem, ext) = match name.rsplit_once('.') {
        Some((s, e)) => (s.to_owned(), format!(".{e}")),
        None => (name.to_owned(), String::new()),
    };
    let short = key[..key.len().min(12)].to_owned();
    std::iter::once(name.to_owned())
        .chain(std::iter::once(format!("{stem}.{short}{ext}")))
        .chain((2..1000).map(move |n| format!("{stem}.{short}-{n}{ext}")))
}

/// The name a clip not yet made would land under in `dir` today: the first name nothing holds
/// (a changed subject's new clip goes beside the old one). What a plan shows.
pub fn planned_name(dir: &Path, name: &str, key: &str) -> String {
    candidates(name, key)
        .find(|c| std::fs::symlink_metadata(dir.join(c)).is_err())
        .unwrap_or_else(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `fox.mp4` holding `existing` beside a downloaded temp file holding `new`, landed.
    fn land_beside(
        existing: &[u8],
        new: &[u8],
        owned_by_another: bool,
    ) -> (tempfile::TempDir, PathBuf) {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("fox.mp4"), existing).unwrap();
        let dir = OutputDir::open(root.path()).unwrap();
        let (mut file, temp) = dir.create_temp(".recast-part").unwrap();
        std::io::Write::write_all(&mut file, new).unwrap();
        let sha = dir.sha256_of(temp.name()).unwrap();
        let landed = land(&dir, temp, "fox.mp4", "abcdef0123456789", &sha, &|_| {
            owned_by_another
        })
        .unwrap();
        (root, landed)
    }

    #[test]
    fn a_finished_clip_is_never_overwritten() {
        let (root, landed) = land_beside(b"old clip", b"new clip", false);
        assert_eq!(landed, root.path().join("fox.abcdef012345.mp4"));
        assert_eq!(
            std::fs::read(root.path().join("fox.mp4")).unwrap(),
            b"old clip"
        );
        assert_eq!(std::fs::read(&landed).unwrap(), b"new clip");
        assert_eq!(
            std::fs::read_dir(root.path()).unwrap().count(),
            2,
            "no temp file left"
        );
    }

    #[test]
    fn landing_the_same_clip_twice_keeps_one_file() {
        let (root, landed) = land_beside(b"clip", b"clip", false);
        assert_eq!(landed, root.path().join("fox.mp4"));
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 1);
    }

    #[test]
    fn the_same_bytes_under_another_jobs_name_are_not_taken_over() {
        let (root, landed) = land_beside(b"clip", b"clip", true);
        assert_eq!(landed, root.path().join("fox.abcdef012345.mp4"));
    }
}
