//! Opening files that outside hands may have planted (a dropped manifest, a file in an output
//! folder): once, without following a link at the last component, without blocking on a FIFO,
//! and only if the handle is a regular file. Nothing is checked by path and then opened again.
//!
//! May not: decide what a file means; callers read from the handle it gives them.

use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// `file` if its handle is a regular file; an error of kind `Other` for anything else (a folder,
/// a FIFO, a device). Checked on the handle, so nothing can be swapped in after the check.
pub fn only_regular(file: File) -> std::io::Result<File> {
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok(file)
}

/// Open `path` for reading: `ELOOP` for a symbolic link, an error of kind `Other` for anything
/// that is not a regular file (a folder, a FIFO, a device).
pub fn open_regular(path: &Path) -> std::io::Result<File> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    only_regular(file)
}

/// Open `rel` inside the folder `root` for reading, one component at a time from an open handle
/// of `root`, following no link at any step: a folder swapped for a link (to `/`, to
/// `/dev`) between a check and this read cannot lead it outside. Only a regular file is given.
pub fn open_beneath(root: &Path, rel: &Path) -> std::io::Result<File> {
    use rustix::fs::{Mode, OFlags};
    use std::path::Component;
    let names: Vec<&std::ffi::OsStr> = rel
        .components()
        .map(|c| match c {
            Component::Normal(name) => Ok(name),
            _ => Err(std::io::Error::other("not a plain path inside its folder")),
        })
        .collect::<Result<_, _>>()?;
    let Some((last, folders)) = names.split_last() else {
        return Err(std::io::Error::other("an empty path"));
    };
    let dir_flags = OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC;
    let mut dir = rustix::fs::open(
        root,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    for name in folders {
        dir = rustix::fs::openat(&dir, *name, dir_flags, Mode::empty())?;
    }
    let fd = rustix::fs::openat(
        &dir,
        *last,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    only_regular(File::from(fd))
}

/// Create `path` for writing only if nothing is there: not a file, not a link (dangling or not).
pub fn create_new(path: &Path, mode: u32) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Whether anything is at `path`, a dangling link included (`Path::exists` follows links).
pub fn anything_at(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

/// Write `bytes` to `path`, creating or replacing a regular file there; a link (followed by
/// nothing) or a FIFO (never waited on) at `path` is an error instead.
pub fn write_regular(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = only_regular(
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)?,
    )?;
    file.set_len(0)?;
    file.write_all(bytes)
}

/// The text of a regular file at `path`, at most `max` bytes; `None` for anything else.
pub fn read_small(path: &Path, max: u64) -> Option<String> {
    use std::io::Read;
    let mut text = String::new();
    open_regular(path)
        .ok()?
        .take(max)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_swapped_for_a_link_is_not_followed_beneath_the_root() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("team")).unwrap();
        std::fs::write(root.path().join("team/a.png"), b"inside").unwrap();
        std::fs::write(outside.path().join("a.png"), b"outside").unwrap();
        let read = |rel: &str| {
            let mut text = String::new();
            std::io::Read::read_to_string(
                &mut open_beneath(root.path(), Path::new(rel))?,
                &mut text,
            )?;
            Ok::<_, std::io::Error>(text)
        };
        assert_eq!(read("team/a.png").unwrap(), "inside");
        // The folder is swapped for a link to a place outside the root.
        std::fs::rename(root.path().join("team"), root.path().join("old")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("team")).unwrap();
        assert!(read("team/a.png").is_err());
        assert!(read("../a.png").is_err());
        // A FIFO is never waited on.
        let fifo = root.path().join("pipe.png");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        assert!(read("pipe.png").is_err());
    }
}
