//! The store's read connections: the one every read takes first, and a spare one opened the
//! first time a read finds it busy (a dashboard page of a large batch beside the engine's quick
//! questions), so a quick read does not wait for a long one to end.
//!
//! Owns: which connection a read gets. May not: write (both connections are `query_only`) or
//! hold SQL of its own.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, TryLockError};

use rusqlite::Connection;

use super::{Role, Store, StoreError};

#[derive(Debug)]
pub(super) struct Readers {
    first: Arc<Mutex<Connection>>,
    /// Opened on first need; `None` when it could not be (reads then wait for the first).
    spare: OnceLock<Option<Mutex<Connection>>>,
    /// Where the spare is opened from; `None` in memory, where one connection is the whole
    /// database and is shared with the writer.
    path: Option<PathBuf>,
}

impl Readers {
    pub(super) fn on_disk(first: Connection, path: &Path) -> Readers {
        Readers {
            first: Arc::new(Mutex::new(first)),
            spare: OnceLock::new(),
            path: Some(path.to_path_buf()),
        }
    }

    pub(super) fn shared(only: Arc<Mutex<Connection>>) -> Readers {
        Readers {
            first: only,
            spare: OnceLock::new(),
            path: None,
        }
    }

    /// The first free connection; when both are busy, the first once it is free. A panic while
    /// holding one leaves SQLite consistent (the transaction rolls back).
    pub(super) fn get(&self) -> MutexGuard<'_, Connection> {
        match self.first.try_lock() {
            Ok(conn) => return conn,
            Err(TryLockError::Poisoned(p)) => return p.into_inner(),
            Err(TryLockError::WouldBlock) => {}
        }
        if let Some(spare) = self.spare() {
            match spare.try_lock() {
                Ok(conn) => return conn,
                Err(TryLockError::Poisoned(p)) => return p.into_inner(),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        self.first.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn spare(&self) -> Option<&Mutex<Connection>> {
        let path = self.path.as_ref()?;
        let open = || {
            let conn = Connection::open(path).map_err(|source| StoreError::Sql {
                path: path.clone(),
                what: "open",
                source,
            })?;
            Store::prepare(conn, path, Role::Reader)
        };
        self.spare
            .get_or_init(|| match open() {
                Ok(conn) => Some(Mutex::new(conn)),
                Err(e) => {
                    tracing::warn!("cannot open a second read connection: {e}");
                    None
                }
            })
            .as_ref()
    }
}
