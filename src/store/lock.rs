//! One process per state folder: an exclusive lock on `recast.lock`, holding the owner's pid.
//!
//! The OS releases the lock when the process dies, however it dies, so a SIGKILLed run never
//! leaves a stale lock behind; the pid inside is only there to name the holder in the error.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::StoreError;

/// Held for as long as this process works on a state folder.
#[derive(Debug)]
pub struct StateLock {
    _file: File,
    path: PathBuf,
}

impl StateLock {
    pub fn acquire(state_dir: &Path) -> Result<StateLock, StoreError> {
        super::private_files::create_private_dir(state_dir)?;
        let path = state_dir.join("recast.lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|source| StoreError::Io {
                what: format!("open the lock file {}", path.display()),
                source,
            })?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                return Err(StoreError::Busy {
                    state_dir: state_dir.to_path_buf(),
                    holder_pid: holder.trim().parse().ok(),
                });
            }
            Err(TryLockError::Error(source)) => {
                return Err(StoreError::Io {
                    what: format!("lock {}", path.display()),
                    source,
                });
            }
        }
        let written = file
            .set_len(0)
            .and_then(|_| file.seek(SeekFrom::Start(0)))
            .and_then(|_| writeln!(file, "{}", std::process::id()))
            .and_then(|_| file.flush());
        written.map_err(|source| StoreError::Io {
            what: format!("write the lock file {}", path.display()),
            source,
        })?;
        Ok(StateLock { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid() {
        let dir = tempfile::tempdir().unwrap();
        let _first = StateLock::acquire(dir.path()).unwrap();
        match StateLock::acquire(dir.path()) {
            Err(StoreError::Busy { holder_pid, .. }) => {
                assert_eq!(holder_pid, Some(std::process::id()))
            }
            other => panic!("expected Busy, got {other:?}"),
        }
    }

    #[test]
    fn the_lock_is_free_again_once_dropped() {
        let dir = tempfile::tempdir().unwrap();
        drop(StateLock::acquire(dir.path()).unwrap());
        StateLock::acquire(dir.path()).unwrap();
    }
}
