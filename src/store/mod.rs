//! The state store: SQLite in the state folder, the only module holding SQL.
//!
//! Owns: the schema and its numbered migrations, every SQL statement, and the typed transitions
//! of a job (`planned -> submitting -> running -> downloading -> done`, and the side states).
//! Each transition is one transaction, or one savepoint of a batch: async callers' calls run on
//! the store's own thread (`call_thread.rs`), not on a tokio worker, and their transitions that
//! queue up together commit as one transaction. What the engine is told has happened is on
//! disk (group commit, `durable.rs`): writes that must precede a side effect wait for their
//! commit's sync, and many share one. Reads go through their own connection, never the
//! writer's, and a second one is opened when a read finds the first busy (a long read beside
//! quick ones). A store let go finishes the writes queued on its thread first.
//!
//! May not: contain business rules beyond the transitions (when to retry, what to submit next
//! is the engine's), talk to the network, or print.
//!
//! Every transition is made durable before its caller goes on, except observations the engine
//! can make again after a crash (a poll's progress, a billed amount read back): those ride
//! along with the next sync (`Store::note`).

mod account;
mod call_thread;
mod claims;
mod durable;
mod jobs;
mod known_files;
mod known_jobs;
mod lock;
mod migrations;
mod notices;
mod plans;
mod polls;
mod private_files;
mod readers;
mod recovery;
mod register;
mod register_found;
mod reports;
mod scope;
mod stages;
mod staging;
mod stamps;
mod steer;
mod submits;
mod views;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use private_files::{create_private_dir, keep_private};
use rusqlite::Connection;

pub use account::{AccountLedger, BalanceRead};
#[cfg(test)]
pub use claims::Claim;
pub use claims::{ClaimView, ReadyBatch, ReadyJob};
pub use durable::Commit;
pub use jobs::{
    AdoptedSubmit, AfterFailure, DownloadItem, InterruptedSubmit, JobStateCounts, LandedClip,
    NewBatch, NewJob, PollItem, ReconcileReport, RetrySelection, SubmitIntent,
};
pub use known_files::KnownFile;
pub use known_jobs::KnownJob;
pub use lock::StateLock;
pub use notices::{DueNotice, JobBrief, LoggedEvent, NoticeRecord};
pub use reports::{AttentionJob, BatchSource, BatchSummary, EventLine, SubmitCounts};
pub use scope::Scope;
pub use staging::{StagedJob, StagedJobs};
pub use stamps::InputStamp;
pub use steer::RetryPrice;
pub use views::JobRow;

/// A job's state. Stored as its lowercase name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Planned,
    Submitting,
    Running,
    Downloading,
    Done,
    Rejected,
    Failed,
    Expired,
    Unknown,
    /// Billed (or proven created) but unreachable: paid, no clip. Only a priced retry remakes it.
    Lost,
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 11] = [
        JobState::Planned,
        JobState::Submitting,
        JobState::Running,
        JobState::Downloading,
        JobState::Done,
        JobState::Rejected,
        JobState::Failed,
        JobState::Expired,
        JobState::Unknown,
        JobState::Lost,
        JobState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Planned => "planned",
            JobState::Submitting => "submitting",
            JobState::Running => "running",
            JobState::Downloading => "downloading",
            JobState::Done => "done",
            JobState::Rejected => "rejected",
            JobState::Failed => "failed",
            JobState::Expired => "expired",
            JobState::Unknown => "unknown",
            JobState::Lost => "lost",
            JobState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// States a person has to look at before the job can go on.
    pub fn needs_a_person(self) -> bool {
        matches!(
            self,
            JobState::Rejected
                | JobState::Failed
                | JobState::Expired
                | JobState::Unknown
                | JobState::Lost
        )
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the state database {path} failed while trying to {what}: {source}")]
    Sql {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "the state folder {state_dir} is in use by another recast{}",
        holder_pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    Busy {
        state_dir: PathBuf,
        holder_pid: Option<u32>,
    },
    #[error(
        "the state database {path} was written by a newer recast (schema {found}, this one knows up to {known})"
    )]
    TooNew {
        path: PathBuf,
        found: u32,
        known: u32,
    },
    #[error("no batch named `{0}` in this state folder")]
    NoSuchBatch(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Reader,
    Writer,
}

/// Statements run through the connection's statement cache (`prepare_cached`): on the hot path
/// parsing and planning a statement cost more than running it. `prepare` turns on SQLite's
/// query planner stability guarantee so that a cached statement stays planned.
pub(super) trait Cached {
    fn exec<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize>;
    fn row<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>;
}

impl Cached for Connection {
    fn exec<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    fn row<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    {
        self.prepare_cached(sql)?.query_row(params, f)
    }
}

/// The SQLite state of one state folder.
#[derive(Debug)]
pub struct Store {
    /// Reads: their own connections, so a read never waits behind a write's transaction.
    readers: readers::Readers,
    /// The one connection that writes; commits are numbered and synced by `durability`.
    writer: Arc<Mutex<Connection>>,
    durability: durable::Durability,
    /// Where async callers' store calls and writes run (`call_thread.rs`).
    calls: call_thread::CallThread,
    path: PathBuf,
}

impl Drop for Store {
    fn drop(&mut self) {
        // Before `durability` (a field, dropped after this) makes its last sync.
        self.calls.close();
    }
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Store {
    /// Open (creating if needed) `recast.db` in `state_dir`, and bring its schema up to date.
    pub fn open(state_dir: &Path) -> Result<Store, StoreError> {
        create_private_dir(state_dir)?;
        let path = state_dir.join("recast.db");
        // Create the file ourselves so it is 0600 from its first byte; SQLite would use the umask.
        for p in [
            path.clone(),
            state_dir.join("recast.db-wal"),
            state_dir.join("recast.db-shm"),
        ] {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&p)
                .map_err(|source| StoreError::Io {
                    what: format!("create {}", p.display()),
                    source,
                })?;
            keep_private(&p, 0o600);
        }
        let open = || {
            Connection::open(&path).map_err(|source| StoreError::Sql {
                path: path.clone(),
                what: "open",
                source,
            })
        };
        let writer = Store::prepare(open()?, &path, Role::Writer)?;
        let reader = Store::prepare(open()?, &path, Role::Reader)?;
        let durability = durable::Durability::start(Some(&state_dir.join("recast.db-wal")), &path)?;
        Ok(Store {
            readers: readers::Readers::on_disk(reader, &path),
            writer: Arc::new(Mutex::new(writer)),
            durability,
            calls: call_thread::CallThread::default(),
            path,
        })
    }

    /// An in-memory store, for tests of the schema and transitions.
    pub fn open_in_memory() -> Result<Store, StoreError> {
        let conn = Connection::open_in_memory().map_err(|source| StoreError::Sql {
            path: PathBuf::from(":memory:"),
            what: "open",
            source,
        })?;
        let path = PathBuf::from(":memory:");
        // One connection is the whole database: reads and writes share it.
        let conn = Arc::new(Mutex::new(Store::prepare(conn, &path, Role::Writer)?));
        Ok(Store {
            readers: readers::Readers::shared(Arc::clone(&conn)),
            writer: conn,
            durability: durable::Durability::start(None, &path)?,
            calls: call_thread::CallThread::default(),
            path,
        })
    }

    fn prepare(mut conn: Connection, path: &Path, role: Role) -> Result<Connection, StoreError> {
        let sql = |what, source| StoreError::Sql {
            path: path.to_path_buf(),
            what,
            source,
        };
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(|e| sql("set a busy timeout", e))?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(|e| sql("enable foreign keys", e))?;
        // Statements go through the cache (`Cached`): parsing and planning one costs more
        // than running it.
        conn.set_prepared_statement_cache_capacity(256);
        // Without the guarantee SQLite plans a statement again whenever a value bound to it
        // might change its plan: a bound `LIMIT`, a comparison a partial index's `IS NOT NULL`
        // might follow from, an integer bound as 0 or 1 (the first batch's id). The stages bind
        // the time on every tick, so their questions were planned every tick (14% of a run's
        // CPU). The plans are the ones `plans.rs` checks, whatever the values.
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
            true,
        )
        .map_err(|e| sql("turn on the query planner stability guarantee", e))?;
        if role == Role::Reader {
            conn.pragma_update(None, "query_only", "ON")
                .map_err(|e| sql("make the read connection read-only", e))?;
            return Ok(conn);
        }
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| sql("switch to WAL", e))?;
        // Commits reach the WAL file; `durable.rs` syncs it, once for many commits.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| sql("set synchronous=NORMAL", e))?;
        migrations::migrate(&mut conn, path)?;
        Ok(conn)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A read connection: the first free one.
    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.readers.get()
    }

    fn writer(&self) -> MutexGuard<'_, Connection> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wait, without holding a thread, until a commit made without waiting is on disk.
    pub async fn settled(&self, commit: Commit) -> Result<(), StoreError> {
        self.durability.settled(commit).await
    }

    /// Keep commits from being synced (they stay committed, not durable) until released: for
    /// tests that check nothing acts on a commit before it is on disk.
    #[cfg(test)]
    pub(crate) fn hold_syncs(&self, hold: bool) {
        self.durability.hold(hold);
    }

    /// Commits so far and the syncs that made them durable (group commit's grouping).
    pub fn commit_counts(&self) -> (u64, u64) {
        self.durability.counts()
    }

    fn sql_error(&self, what: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError + '_ {
        move |source| StoreError::Sql {
            path: self.path.clone(),
            what,
            source,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
