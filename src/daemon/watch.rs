//! Watched folders: which files in them are whole and ready to be taken.
//!
//! Owns: the notify watcher (native or polling), its debouncer, and the settle rule: a file is
//! handed out only once its size and mtime held still for the settle time, and never while it
//! carries a temporary name. Events only say *where to look*; the file system's own answer
//! (a `stat` now and a settle time later) decides, so editors' save-by-rename, `cp`, `rsync` and
//! slow network copies all end the same way, and a lost or coalesced event costs nothing but a
//! rescan.
//!
//! May not: read the files' content or decide what they mean (the inbox and subject stages do).
//! notify's callback never blocks: it `try_send`s into a bounded channel and, when that is full,
//! raises a flag that makes the next turn rescan every folder instead.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use notify::{PollWatcher, RecursiveMode, Watcher};
use notify_debouncer_mini::{DebounceEventResult, Debouncer, new_debouncer_opt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::DaemonError;
use super::config::WatchMode;
use crate::manifest::is_temporary_name;

/// Batches of debounced paths waiting for the settle check; past this the watcher rescans.
const EVENT_QUEUE: usize = 64;

enum Backend {
    Native(Debouncer<notify::RecommendedWatcher>),
    Poll(Debouncer<PollWatcher>),
}

impl Backend {
    fn watcher(&mut self) -> &mut dyn Watcher {
        match self {
            Backend::Native(d) => d.watcher(),
            Backend::Poll(d) => d.watcher(),
        }
    }
}

/// What was seen of a file at its last look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Look {
    size: u64,
    mtime: Option<SystemTime>,
}

#[derive(Debug)]
struct Pending {
    look: Look,
    /// When `look` was first seen unchanged.
    since: Instant,
}

/// Files of some folders (not their subfolders), handed out once whole.
pub struct FolderWatch {
    backend: Backend,
    events: mpsc::Receiver<Vec<PathBuf>>,
    overflow: Arc<AtomicBool>,
    dirs: Vec<PathBuf>,
    pending: HashMap<PathBuf, Pending>,
    /// Handed out already, with what they looked like then: taken again only once changed.
    taken: HashMap<PathBuf, Look>,
    settle: Duration,
}

impl FolderWatch {
    pub fn new(
        mode: WatchMode,
        settle: Duration,
        poll_interval: Duration,
    ) -> Result<FolderWatch, DaemonError> {
        let (tx, events) = mpsc::channel(EVENT_QUEUE);
        let overflow = Arc::new(AtomicBool::new(false));
        let flag = overflow.clone();
        let handler = move |result: DebounceEventResult| {
            let paths = match result {
                Ok(events) => events.into_iter().map(|e| e.path).collect(),
                // An error from the OS (e.g. inotify's queue overflowed): look at everything.
                Err(_) => Vec::new(),
            };
            if paths.is_empty() || tx.try_send(paths).is_err() {
                flag.store(true, Ordering::Relaxed);
            }
        };
        // Debounce well under the settle time: the settle check is what waits for quiet.
        let config = notify_debouncer_mini::Config::default()
            .with_timeout((settle / 4).clamp(Duration::from_millis(20), Duration::from_millis(500)))
            .with_notify_config(notify::Config::default().with_poll_interval(poll_interval));
        let backend = match mode {
            WatchMode::Native => Backend::Native(
                new_debouncer_opt(config, handler).map_err(|e| DaemonError::watch(None, e))?,
            ),
            WatchMode::Poll => Backend::Poll(
                new_debouncer_opt(config, handler).map_err(|e| DaemonError::watch(None, e))?,
            ),
        };
        Ok(FolderWatch {
            backend,
            events,
            overflow,
            dirs: Vec::new(),
            pending: HashMap::new(),
            taken: HashMap::new(),
            settle,
        })
    }

    /// Watch `dir` too; the files already in it are looked at like new ones.
    pub fn add(&mut self, dir: &Path) -> Result<(), DaemonError> {
        if self.dirs.iter().any(|d| d == dir) {
            return Ok(());
        }
        self.backend
            .watcher()
            .watch(dir, RecursiveMode::NonRecursive)
            .map_err(|e| DaemonError::watch(Some(dir), e))?;
        self.dirs.push(dir.to_path_buf());
        self.scan(dir);
        Ok(())
    }

    /// Stop watching `dir` (a standing performance that is gone).
    pub fn remove(&mut self, dir: &Path) {
        if let Some(i) = self.dirs.iter().position(|d| d == dir) {
            let _ = self.backend.watcher().unwatch(dir);
            self.dirs.remove(i);
            self.pending.retain(|p, _| p.parent() != Some(dir));
            self.taken.retain(|p, _| p.parent() != Some(dir));
        }
    }

    /// No file in `dir` is still settling (a copy into it is not under way, as far as we know).
    pub fn is_quiet(&self, dir: &Path) -> bool {
        !self.pending.keys().any(|p| p.parent() == Some(dir))
    }

    fn scan(&mut self, dir: &Path) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            self.consider(entry.path());
        }
    }

    fn consider(&mut self, path: PathBuf) {
        let watched = path
            .parent()
            .is_some_and(|parent| self.dirs.iter().any(|d| d == parent));
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or(".");
        if watched && !is_temporary_name(name) && !self.pending.contains_key(&path) {
            self.pending.insert(
                path,
                Pending {
                    look: Look {
                        size: u64::MAX,
                        mtime: None,
                    },
                    since: Instant::now(),
                },
            );
        }
    }

    /// The next files that are whole: waits for events and the settle time; `None` once
    /// `shutdown` is cancelled.
    pub async fn next(&mut self, shutdown: &CancellationToken) -> Option<Vec<PathBuf>> {
        let tick = (self.settle / 4).clamp(Duration::from_millis(20), Duration::from_millis(500));
        loop {
            if self.overflow.swap(false, Ordering::Relaxed) {
                tracing::debug!("watch events were dropped or failed; rescanning every folder");
                for dir in self.dirs.clone() {
                    self.scan(&dir);
                }
            }
            let ready = self.settled();
            if !ready.is_empty() {
                return Some(ready);
            }
            let wait = if self.pending.is_empty() {
                // Nothing to settle: sleep until an event (or a periodic rescan).
                Duration::from_secs(30)
            } else {
                tick
            };
            tokio::select! {
                _ = shutdown.cancelled() => return None,
                batch = self.events.recv() => match batch {
                    Some(paths) => paths.into_iter().for_each(|p| self.consider(p)),
                    None => return None,
                },
                _ = tokio::time::sleep(wait) => {
                    if self.pending.is_empty() {
                        // A safety net for file systems whose events go missing.
                        self.overflow.store(true, Ordering::Relaxed);
                    }
                }
            }
        }
    }

    /// Look at every pending file; return those that held still for the settle time.
    fn settled(&mut self) -> Vec<PathBuf> {
        let now = Instant::now();
        let mut ready = Vec::new();
        let mut gone = Vec::new();
        for (path, pending) in self.pending.iter_mut() {
            let look = match std::fs::metadata(path) {
                Ok(m) if m.is_file() => Look {
                    size: m.len(),
                    mtime: m.modified().ok(),
                },
                // Removed, renamed away, or a folder: nothing to take.
                _ => {
                    gone.push(path.clone());
                    continue;
                }
            };
            if look != pending.look {
                pending.look = look;
                pending.since = now;
            } else if now.duration_since(pending.since) >= self.settle {
                ready.push(path.clone());
            }
        }
        for path in gone {
            self.pending.remove(&path);
            self.taken.remove(&path);
        }
        ready.retain(|path| {
            let look = self.pending.remove(path).map(|p| p.look);
            let unchanged = look.is_some() && self.taken.get(path) == look.as_ref();
            if let Some(look) = look {
                self.taken.insert(path.clone(), look);
            }
            !unchanged
        });
        ready.sort();
        ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_file_is_handed_out_once_it_holds_still_and_temporary_names_never() {
        let dir = tempfile::tempdir().unwrap();
        let dir_path = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::write(dir_path.join("early.yaml"), "a").unwrap();
        std::fs::write(dir_path.join("copying.yaml.part"), "a").unwrap();
        let mut w = FolderWatch::new(
            WatchMode::Native,
            Duration::from_millis(150),
            Duration::from_millis(100),
        )
        .unwrap();
        w.add(&dir_path).unwrap();
        let stop = CancellationToken::new();
        let first = w.next(&stop).await.unwrap();
        assert_eq!(first, vec![dir_path.join("early.yaml")]);

        std::fs::write(dir_path.join("late.yaml"), "b").unwrap();
        let second = w.next(&stop).await.unwrap();
        assert_eq!(second, vec![dir_path.join("late.yaml")]);
    }
}
