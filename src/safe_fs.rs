//! Opening files that outside hands may have planted (a dropped manifest, a file in an output
//! folder): once, without following a link at the last component, without blocking on a FIFO,
//! and only if the handle is a regular file. Nothing is checked by path and then opened again.
//!
//! May not: decide what a file means; callers read from the handle it gives them.

use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Open `path` for reading: `ELOOP` for a symbolic link, an error of kind `Other` for anything
/// that is not a regular file (a folder, a FIFO, a device).
pub fn open_regular(path: &Path) -> std::io::Result<File> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok(file)
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
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
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
