//! The results file's appends: one descriptor held for the folder's life, and syncs shared by
//! the lines written while one runs (group commit, as the store's WAL has it). A line nothing
//! waits on (a task id the store also records, an outcome for a person) is only written: the
//! next line that waits, or the folder let go, syncs it with the rest. Written lines outlive a
//! killed process (they are in the kernel's cache); only a power cut could lose one, and the
//! state folder then still holds what it said.
//!
//! Owns: when the results file is opened again (it lost its name: removed while held) and
//! which syncs a line waits for. May not: decide what a line says (`output` does) or touch any
//! other file of the folder.

use std::fs::File;
use std::io::Write;
use std::sync::{Arc, Mutex};

/// The results file as held, with its lines counted: written, and made durable.
#[derive(Debug)]
struct Held {
    file: File,
    /// Lines written (one write each: a crash leaves at most a torn last line).
    written: Mutex<u64>,
    /// Lines known to be on disk.
    synced: Mutex<u64>,
}

/// Appends to one folder's results file.
#[derive(Debug, Default)]
pub(super) struct Appends {
    held: Mutex<Option<Arc<Held>>>,
}

impl Appends {
    /// Write `line` and return once it is on disk. `open` opens the file when none is held or
    /// the one held has no name any more.
    pub fn append(
        &self,
        line: &[u8],
        open: impl FnOnce() -> std::io::Result<File>,
    ) -> std::io::Result<()> {
        let (held, number) = self.write(line, open)?;
        let mut synced = held.synced.lock().unwrap_or_else(|p| p.into_inner());
        if *synced >= number {
            // A sync that began after this line was written covered it.
            return Ok(());
        }
        let upto = *held.written.lock().unwrap_or_else(|p| p.into_inner());
        held.file.sync_data()?;
        *synced = upto;
        Ok(())
    }

    /// Write `line` without waiting for the disk: it is synced with the next line that waits,
    /// or when the file is let go.
    pub fn append_unsynced(
        &self,
        line: &[u8],
        open: impl FnOnce() -> std::io::Result<File>,
    ) -> std::io::Result<()> {
        self.write(line, open).map(drop)
    }

    /// Write `line` to the held file; returns it and the line's number in it.
    fn write(
        &self,
        line: &[u8],
        open: impl FnOnce() -> std::io::Result<File>,
    ) -> std::io::Result<(Arc<Held>, u64)> {
        let mut slot = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let held = match slot.as_ref().filter(|h| still_named(&h.file)) {
            Some(held) => held.clone(),
            None => {
                let held = Arc::new(Held {
                    file: open()?,
                    written: Mutex::new(0),
                    synced: Mutex::new(0),
                });
                *slot = Some(held.clone());
                held
            }
        };
        let mut written = held.written.lock().unwrap_or_else(|p| p.into_inner());
        (&held.file).write_all(line)?;
        *written += 1;
        let number = *written;
        drop(written);
        Ok((held, number))
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let written = *self.written.get_mut().unwrap_or_else(|p| p.into_inner());
        let synced = *self.synced.get_mut().unwrap_or_else(|p| p.into_inner());
        if written > synced
            && let Err(e) = self.file.sync_data()
        {
            tracing::warn!("cannot sync the results file's last lines: {e}");
        }
    }
}

/// A file removed while held has no links left: its lines would reach no one.
fn still_named(file: &File) -> bool {
    rustix::fs::fstat(file).is_ok_and(|st| st.st_nlink > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opener(path: &std::path::Path) -> impl FnOnce() -> std::io::Result<File> + '_ {
        move || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
        }
    }

    #[test]
    fn lines_from_many_threads_all_land_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("results.jsonl");
        let appends = Arc::new(Appends::default());
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let (appends, path) = (appends.clone(), path.clone());
                std::thread::spawn(move || {
                    for i in 0..50 {
                        let line = format!("{{\"t\":{t},\"i\":{i}}}\n");
                        appends.append(line.as_bytes(), opener(&path)).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 400);
        lines.sort_unstable();
        lines.dedup();
        assert_eq!(lines.len(), 400, "every line once, none torn");
    }

    /// A line nothing waits on is in the file at once, and on disk with the next line that
    /// waits (one sync for both) or when the file is let go.
    #[test]
    fn an_unsynced_line_is_written_at_once_and_synced_with_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("results.jsonl");
        let appends = Appends::default();
        appends.append_unsynced(b"one\n", opener(&path)).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\n");
        let synced = |a: &Appends| {
            let held = a.held.lock().unwrap().clone().unwrap();
            held.synced.lock().map(|n| *n).unwrap()
        };
        assert_eq!(synced(&appends), 0, "nothing waited");
        appends.append(b"two\n", opener(&path)).unwrap();
        assert_eq!(synced(&appends), 2, "the sync for two covers one");
        appends.append_unsynced(b"three\n", opener(&path)).unwrap();
        assert_eq!(synced(&appends), 2);
        drop(appends);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\ntwo\nthree\n");
    }

    #[test]
    fn a_results_file_removed_while_held_is_made_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("results.jsonl");
        let appends = Appends::default();
        appends.append(b"one\n", opener(&path)).unwrap();
        std::fs::remove_file(&path).unwrap();
        appends.append(b"two\n", opener(&path)).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two\n");
        appends
            .append(b"three\n", || panic!("the file held still has its name"))
            .unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two\nthree\n");
    }
}
