//! Group commit: when a committed transaction is on disk.
//!
//! Owns: the one thread that makes commits durable, and the numbering callers wait on. Every
//! write commits with `synchronous=NORMAL` (its frames reach the WAL file, not yet the disk) and
//! takes the next commit number; when a caller waits for a number, this thread `fdatasync`s the
//! WAL file once for every commit made since its last sync, however many there were, and
//! announces the highest number now durable. A caller that must not act before its transaction
//! is on disk (a submit intent) waits for its number; many transitions share one sync, and no
//! caller holds the connection while the disk works. Commits nobody waits for (observations
//! the engine can make again) do not ask for a sync: they ride on the next one, or one made
//! [`LAZY_SYNC`] after them.
//!
//! May not: run SQL (the writer does), or decide which writes need to wait (the store's
//! transitions do).
//!
//! Why this is as safe as `synchronous=FULL`: SQLite appends a transaction's frames to the WAL
//! before its commit returns, and WAL frames are only appended (or, after a checkpoint that
//! SQLite synced itself under `NORMAL`, written again from the start), so one `fdatasync` of
//! the WAL file after commit *n* makes every commit up to *n* durable. A process killed between
//! commit and sync loses nothing (the frames are in the kernel's page cache); only a power loss
//! in that window can, and no caller was told its commit was durable.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use super::StoreError;

/// A commit's number: durable once [`Durability::wait`] or [`Durability::settled`] says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Commit(u64);

/// How long a commit nobody waits for may stay unsynced (it is in the kernel's page cache, so
/// only a power loss could take it).
pub const LAZY_SYNC: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
struct Progress {
    committed: u64,
    synced: u64,
    /// The highest commit a caller waits for: the thread syncs only up to what is wanted, so
    /// observations alone cost no sync each.
    wanted: u64,
    /// How many syncs covered more than one commit, and the commits they covered (for tests
    /// and the benchmarks: does group commit group?).
    syncs: u64,
    /// A failed sync: after one, nothing written later can be trusted durable (fsync errors
    /// are not retried; the kernel may have dropped the dirty pages).
    failed: Option<String>,
    stop: bool,
    /// Tests hold syncs to see what happens between a commit and its sync.
    held: bool,
}

#[derive(Debug)]
struct Shared {
    progress: Mutex<Progress>,
    changed: Condvar,
    synced: tokio::sync::watch::Sender<u64>,
    path: PathBuf,
}

/// The group-commit syncer of one database, or nothing to sync (an in-memory database).
#[derive(Debug)]
pub struct Durability {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn failure(&self, p: &Progress) -> Option<StoreError> {
        p.failed.as_ref().map(|why| StoreError::Io {
            what: format!("make the state database {} durable", self.path.display()),
            source: std::io::Error::other(why.clone()),
        })
    }
}

/// Numbers commits of an on-disk database, like [`Durability::committed`].
#[derive(Debug, Clone)]
pub struct Numbering {
    shared: Arc<Shared>,
    on_disk: bool,
}

impl Numbering {
    pub fn committed(&self) -> Commit {
        let mut p = self.shared.lock();
        p.committed += 1;
        if !self.on_disk {
            // Nothing on disk to wait for.
            p.synced = p.committed;
            self.shared.synced.send_replace(p.synced);
        } else if p.committed == p.synced + 1 {
            // The first commit not on disk starts the lazy clock.
            self.shared.changed.notify_all();
        }
        Commit(p.committed)
    }
}

impl Durability {
    /// Sync `wal` (the database's `-wal` file) after commits; `None` when nothing is on disk.
    pub fn start(wal: Option<&Path>, db: &Path) -> Result<Durability, StoreError> {
        let file = match wal {
            Some(path) => Some(File::open(path).map_err(|source| StoreError::Io {
                what: format!("open {} to sync it", path.display()),
                source,
            })?),
            None => None,
        };
        let shared = Arc::new(Shared {
            progress: Mutex::new(Progress::default()),
            changed: Condvar::new(),
            synced: tokio::sync::watch::Sender::new(0),
            path: db.to_path_buf(),
        });
        let thread = match file {
            Some(file) => {
                let s = Arc::clone(&shared);
                let spawned = std::thread::Builder::new()
                    .name("recast-store-sync".into())
                    .spawn(move || sync_loop(&s, &file))
                    .map_err(|source| StoreError::Io {
                        what: "start the store's sync thread".into(),
                        source,
                    })?;
                Some(spawned)
            }
            None => None,
        };
        Ok(Durability { shared, thread })
    }

    /// Number the commit that just happened. Called with the write connection still held, so
    /// numbers follow the order of commits in the WAL.
    pub fn committed(&self) -> Commit {
        self.numbering().committed()
    }

    /// What numbers commits from another thread: the store's call thread, which commits
    /// batches of writes.
    pub fn numbering(&self) -> Numbering {
        Numbering {
            shared: Arc::clone(&self.shared),
            on_disk: self.on_disk(),
        }
    }

    /// Whether commits reach a disk (and so wait for a sync).
    pub fn on_disk(&self) -> bool {
        self.thread.is_some()
    }

    /// Ask the thread to sync up to `commit`, if it is not already on disk.
    fn want(&self, p: &mut Progress, commit: Commit) {
        if commit.0 > p.wanted {
            p.wanted = commit.0;
            self.shared.changed.notify_all();
        }
    }

    /// Block the calling thread until `commit` is on disk.
    pub fn wait(&self, commit: Commit) -> Result<(), StoreError> {
        let mut p = self.shared.lock();
        self.want(&mut p, commit);
        loop {
            if p.synced >= commit.0 {
                return Ok(());
            }
            if let Some(e) = self.shared.failure(&p) {
                return Err(e);
            }
            p = self
                .shared
                .changed
                .wait(p)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Wait, without holding a thread, until `commit` is on disk.
    pub async fn settled(&self, commit: Commit) -> Result<(), StoreError> {
        let mut rx = self.shared.synced.subscribe();
        self.want(&mut self.shared.lock(), commit);
        loop {
            if *rx.borrow_and_update() >= commit.0 {
                return Ok(());
            }
            if let Some(e) = self.shared.failure(&self.shared.lock()) {
                return Err(e);
            }
            if rx.changed().await.is_err() {
                return self.wait(commit);
            }
        }
    }

    #[cfg(test)]
    pub fn hold(&self, held: bool) {
        self.shared.lock().held = held;
        self.shared.changed.notify_all();
    }

    /// Commits made so far and syncs that made them durable (commits / syncs is the grouping).
    pub fn counts(&self) -> (u64, u64) {
        let p = self.shared.lock();
        (p.committed, p.syncs)
    }
}

fn sync_loop(shared: &Shared, wal: &File) {
    loop {
        let target = {
            let mut p = shared.lock();
            loop {
                if p.stop {
                    if p.committed == p.synced {
                        return; // stopping, and everything is durable
                    }
                    break;
                }
                if p.held {
                    p = shared.changed.wait(p).unwrap_or_else(|e| e.into_inner());
                } else if p.wanted > p.synced {
                    break;
                } else if p.committed > p.synced {
                    // Only observations: sync them lazily, sooner if someone waits.
                    let (next, timeout) = shared
                        .changed
                        .wait_timeout(p, LAZY_SYNC)
                        .unwrap_or_else(|e| e.into_inner());
                    p = next;
                    if timeout.timed_out() && !p.held && p.committed > p.synced {
                        break;
                    }
                } else {
                    p = shared.changed.wait(p).unwrap_or_else(|e| e.into_inner());
                }
            }
            p.committed
        };
        let result = wal.sync_data();
        let mut p = shared.lock();
        match result {
            Ok(()) => {
                p.synced = target;
                p.syncs += 1;
                shared.synced.send_replace(target);
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot sync the state database's WAL");
                p.failed = Some(e.to_string());
                p.stop = true;
            }
        }
        drop(p);
        shared.changed.notify_all();
        if shared.lock().failed.is_some() {
            // Wake async waiters too, so they read the failure.
            shared.synced.send_modify(|_| {});
            return;
        }
    }
}

impl Drop for Durability {
    fn drop(&mut self) {
        {
            let mut p = self.shared.lock();
            // For `bench cpu`: how well commits and syncs were grouped over the whole run.
            tracing::debug!(
                commits = p.committed,
                syncs = p.syncs,
                "state database closed"
            );
            p.stop = true;
        }
        self.shared.changed.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
