//! An output folder opened once: every file recast makes there is created, linked, checked and
//! synced relative to that handle (`openat`-style, with rustix), so a folder swapped for a link
//! after it was opened, or a link planted at a file's name, cannot send a write anywhere else.
//!
//! Owns: temp files (unpredictable names, created exclusively, removed unless kept), the hard
//! link that never replaces a file, reading only regular files, the folder's fsync, and the
//! results file's appends (through `appends`). May not: decide names or what a clip is (the engine's `landing`).

use std::fs::File;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{AtFlags, Mode, OFlags};
use sha2::{Digest, Sha256};

/// An open output folder.
#[derive(Debug)]
pub struct OutputDir {
    fd: OwnedFd,
    path: PathBuf,
    results: super::appends::Appends,
}

/// A temp file in an [`OutputDir`], removed when dropped (linking it under a final name keeps
/// the clip: the temp name is only one of its names).
#[derive(Debug)]
pub struct TempName {
    dir: Arc<OutputDir>,
    name: String,
}

impl TempName {
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TempName {
    fn drop(&mut self) {
        let _ = rustix::fs::unlinkat(&self.dir.fd, self.name.as_str(), AtFlags::empty());
    }
}

/// Output folders opened once for a run: each line and clip of a batch goes through its
/// folder's handle, instead of creating and opening the folder again for every one (a dozen
/// system calls per job). A folder removed while open is created and opened again.
#[derive(Debug, Default)]
pub struct OpenFolders {
    open: std::sync::Mutex<std::collections::HashMap<PathBuf, Arc<OutputDir>>>,
}

impl OpenFolders {
    pub fn get(&self, path: &Path) -> std::io::Result<Arc<OutputDir>> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(dir) = open.get(path)
            && dir.still_there()
        {
            return Ok(dir.clone());
        }
        let dir = OutputDir::open(path)?;
        open.insert(path.to_path_buf(), dir.clone());
        Ok(dir)
    }
}

impl OutputDir {
    /// Whether the folder still has a name (a removed folder has no links left).
    fn still_there(&self) -> bool {
        rustix::fs::fstat(&self.fd).is_ok_and(|st| st.st_nlink > 0)
    }

    /// Create the folder if needed, then open it without following a link at its name.
    pub fn open(path: &Path) -> std::io::Result<Arc<OutputDir>> {
        std::fs::create_dir_all(path)?;
        let fd = rustix::fs::open(
            path,
            OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Arc::new(OutputDir {
            fd,
            path: path.to_path_buf(),
            results: Default::default(),
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A new temp file `.recast-RANDOM{suffix}`, created exclusively (nothing planted there is
    /// opened), mode 0644, open for writing and reading back.
    pub fn create_temp(self: &Arc<Self>, suffix: &str) -> std::io::Result<(File, TempName)> {
        loop {
            let name = format!(".recast-{:016x}{suffix}", rand::random::<u64>());
            match rustix::fs::openat(
                &self.fd,
                name.as_str(),
                OFlags::CREATE | OFlags::EXCL | OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o644),
            ) {
                Ok(fd) => {
                    let temp = TempName {
                        dir: self.clone(),
                        name,
                    };
                    return Ok((File::from(fd), temp));
                }
                Err(rustix::io::Errno::EXIST) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Give the file `from` a second name `to`; fails with `AlreadyExists` rather than replace
    /// anything at `to` (a file, a link, a dangling link).
    pub fn link(&self, from: &str, to: &str) -> std::io::Result<()> {
        rustix::fs::linkat(&self.fd, from, &self.fd, to, AtFlags::empty())?;
        Ok(())
    }

    /// Open `name` for reading if it is a regular file (no link followed, no FIFO waited on).
    pub fn open_regular(&self, name: &str) -> std::io::Result<File> {
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        crate::safe_fs::only_regular(File::from(fd))
    }

    /// The sha256 of the regular file `name`; `None` for anything else.
    pub fn sha256_of(&self, name: &str) -> Option<String> {
        let mut file = self.open_regular(name).ok()?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match file.read(&mut buf).ok()? {
                0 => return Some(hex::encode(hasher.finalize())),
                n => hasher.update(&buf[..n]),
            }
        }
    }

    /// Flush the folder's entries to disk (after a link).
    pub fn sync(&self) -> std::io::Result<()> {
        rustix::fs::fsync(&self.fd)?;
        Ok(())
    }

    /// Append one line to the folder's results file, returning once it is on disk. The file
    /// is opened once and held; lines written while a sync runs share the next one.
    pub fn append_result(&self, line: &[u8]) -> std::io::Result<()> {
        self.results
            .append(line, || self.open_append(super::RESULTS_FILE))
    }

    /// Append one line to the folder's results file without waiting for the disk: it is synced
    /// with the next line appended with [`OutputDir::append_result`], or when the folder is let go.
    pub fn append_result_unsynced(&self, line: &[u8]) -> std::io::Result<()> {
        self.results
            .append_unsynced(line, || self.open_append(super::RESULTS_FILE))
    }

    /// Open `name` for appending, creating it (0644) if needed; never through a link.
    pub fn open_append(&self, name: &str) -> std::io::Result<File> {
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::WRONLY
                | OFlags::APPEND
                | OFlags::CREATE
                | OFlags::NOFOLLOW
                | OFlags::NONBLOCK
                | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )?;
        crate::safe_fs::only_regular(File::from(fd))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_swapped_for_a_link_after_opening_gets_nothing() {
        let root = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let out = root.path().join("out");
        let dir = OutputDir::open(&out).unwrap();
        // The folder is moved away and a link to another folder takes its name.
        std::fs::rename(&out, root.path().join("moved")).unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), &out).unwrap();
        let (mut file, temp) = dir.create_temp(".part").unwrap();
        std::io::Write::write_all(&mut file, b"clip").unwrap();
        dir.link(temp.name(), "fox.mp4").unwrap();
        drop(temp);
        assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 0);
        assert_eq!(
            std::fs::read(root.path().join("moved/fox.mp4")).unwrap(),
            b"clip"
        );
        // And a folder that is a link at opening is refused outright.
        assert!(OutputDir::open(&out).is_err());
    }

    #[test]
    fn links_and_fifos_are_not_read_and_names_are_never_replaced() {
        let root = tempfile::tempdir().unwrap();
        let dir = OutputDir::open(root.path()).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.path().join("a.mp4")).unwrap();
        assert!(dir.sha256_of("a.mp4").is_none());
        let (_, temp) = dir.create_temp(".part").unwrap();
        let taken = dir.link(temp.name(), "a.mp4").unwrap_err();
        assert_eq!(taken.kind(), std::io::ErrorKind::AlreadyExists);
        assert!(dir.open_append("a.mp4").is_err());
    }
}
