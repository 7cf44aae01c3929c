//! The store's own thread: store calls made from async code, and group commit of writes.
//!
//! Owns: the one thread that runs the engine's store calls (`Store::off_runtime`: also the
//! daemon's registrations and a dashboard's changes, so one thread writes in a daemon), its
//! transitions made from async code (`Store::write_async`, `Store::note_async`) and its
//! claims (`Store::claim_with`); when the store is let go, the thread finishes its queue first.
//! A call may wait on the connection's lock, on SQLite's busy timeout (another process
//! writing) or on the disk; a tokio worker that waited would stall every task scheduled on it
//! (the pacing's timers, the provider's answers).
//! Writes that queue up while the thread is busy are applied together, in one transaction,
//! each in its own savepoint (one write's failure undoes only that write): many transitions,
//! one commit, and one sync for all of them (`durable.rs`). Every caller of a batch hears back
//! once it is over (committed, or undone), and one whose write must be on disk first waits for
//! the sync itself, so nothing acts before its write is on disk.
//!
//! May not: add SQL or decide anything: it runs what it is given. One thread, not tokio's
//! blocking pool: SQLite's allocations spread over many threads cost each its own malloc arena.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex, OnceLock};

use rusqlite::{Connection, Transaction, TransactionBehavior};
use tokio::sync::oneshot;

use super::durable::{Commit, Numbering};
use super::{Store, StoreError};

type Value = Box<dyn Any + Send>;
type Panic = Box<dyn Any + Send>;
/// A write's SQL, with its answer boxed so one batch can hold writes of any type.
type Run = Box<dyn FnOnce(&Transaction<'_>) -> rusqlite::Result<Value> + Send>;

/// A transition waiting for the next batch: its SQL, and where its caller waits.
struct Write {
    what: &'static str,
    run: Run,
    reply: oneshot::Sender<Outcome>,
}

/// What became of one write in its batch.
enum Outcome {
    Committed(Value, Commit),
    Failed(StoreError),
    /// It panicked (and was undone): the caller panics, as if it had run inline.
    Panicked(Panic),
}

enum Work {
    Call(Box<dyn FnOnce() + Send>),
    Write(Write),
}

/// The thread, started by the first call that needs it (most commands never do).
#[derive(Debug, Default)]
pub(super) struct CallThread {
    queue: OnceLock<Sender<Work>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// What the thread needs to commit a batch: the write connection, and the commits' numbering.
struct Writer {
    conn: Arc<Mutex<Connection>>,
    numbering: Numbering,
    path: PathBuf,
}

impl CallThread {
    fn send(&self, store: &Store, work: Work) -> Result<(), StoreError> {
        let queue = self.queue.get_or_init(|| self.start(store));
        queue.send(work).map_err(|_| gone(store))
    }

    fn start(&self, store: &Store) -> Sender<Work> {
        let (tx, rx) = std::sync::mpsc::channel();
        let writer = Writer {
            conn: Arc::clone(&store.writer),
            numbering: store.durability.numbering(),
            path: store.path.clone(),
        };
        // If the thread cannot start, the sender's receiver is gone and every call says so.
        let thread = std::thread::Builder::new()
            .name("recast-store".into())
            .spawn(move || run(&rx, &writer));
        *self.thread.lock().unwrap_or_else(|p| p.into_inner()) = thread.ok();
        tx
    }

    /// Let the thread finish what is queued, then stop. A write whose caller stopped waiting
    /// (a run shut down, a note not waited for) is still committed before the store is gone,
    /// not lost with the process.
    pub(super) fn close(&mut self) {
        drop(self.queue.take());
        let thread = self
            .thread
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        // The last handle to a store may be let go on its own thread (an `off_runtime` call
        // whose caller went away): that thread ends by itself once the queue is empty.
        if let Some(thread) = thread
            && thread.thread().id() != std::thread::current().id()
        {
            let _ = thread.join();
        }
    }
}

fn gone(store: &Store) -> StoreError {
    StoreError::Io {
        what: format!(
            "reach the thread of the state database {}",
            store.path.display()
        ),
        source: std::io::Error::other("the store's thread has stopped"),
    }
}

/// Calls in order; writes that arrive together go in one batch (a call that comes after them
/// waits for it, so it sees them).
fn run(queue: &Receiver<Work>, writer: &Writer) {
    while let Ok(first) = queue.recv() {
        let mut batch = Vec::new();
        let mut next = Some(first);
        while let Some(work) = next.take() {
            match work {
                Work::Write(w) => {
                    batch.push(w);
                    next = queue.try_recv().ok();
                }
                Work::Call(call) => {
                    writer.commit(std::mem::take(&mut batch));
                    call();
                }
            }
        }
        writer.commit(batch);
    }
}

impl Writer {
    fn commit(&self, batch: Vec<Write>) {
        if batch.is_empty() {
            return;
        }
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
            Ok(tx) => tx,
            Err(e) => return self.fail_all(batch.into_iter().map(|w| (w.what, w.reply)), &e),
        };
        let mut kept = Vec::with_capacity(batch.len());
        // Undone writes are answered with the batch, not before: every caller of a batch hears
        // once it is over, so what a caller does next never races the batch's commit.
        let mut undone = Vec::new();
        for w in batch {
            match savepoint(&tx, w.run) {
                Ok(Ok(value)) => kept.push((value, w.what, w.reply)),
                Ok(Err(e)) => undone.push((w.reply, Outcome::Failed(self.error(w.what, e)))),
                Err(Undo::Panicked(panic)) => undone.push((w.reply, Outcome::Panicked(panic))),
                Err(Undo::Failed(e)) => {
                    // The savepoint itself failed: the transaction cannot be trusted.
                    drop(tx);
                    answer(undone);
                    let replies = kept.into_iter().map(|(_, what, r)| (what, r));
                    return self.fail_all(replies.chain([(w.what, w.reply)]), &e);
                }
            }
        }
        match tx.commit() {
            Ok(()) => {
                // Numbered while the connection is held, so numbers follow the WAL's order.
                let commit = self.numbering.committed();
                drop(conn);
                answer(undone);
                for (value, _, reply) in kept {
                    let _ = reply.send(Outcome::Committed(value, commit));
                }
            }
            Err(e) => {
                drop(conn);
                answer(undone);
                self.fail_all(kept.into_iter().map(|(_, what, r)| (what, r)), &e);
            }
        }
    }

    fn fail_all(
        &self,
        replies: impl Iterator<Item = (&'static str, oneshot::Sender<Outcome>)>,
        e: &rusqlite::Error,
    ) {
        for (what, reply) in replies {
            // rusqlite's errors are not `Clone`; each caller gets its own copy.
            let copy = match e {
                rusqlite::Error::SqliteFailure(code, message) => {
                    self.error(what, rusqlite::Error::SqliteFailure(*code, message.clone()))
                }
                other => StoreError::Io {
                    what: format!("commit to the state database {}", self.path.display()),
                    source: std::io::Error::other(other.to_string()),
                },
            };
            let _ = reply.send(Outcome::Failed(copy));
        }
    }

    fn error(&self, what: &'static str, source: rusqlite::Error) -> StoreError {
        StoreError::Sql {
            path: self.path.clone(),
            what,
            source,
        }
    }
}

fn answer(undone: Vec<(oneshot::Sender<Outcome>, Outcome)>) {
    for (reply, outcome) in undone {
        let _ = reply.send(outcome);
    }
}

/// Why a write's savepoint was rolled back other than by the write's own error.
enum Undo {
    Panicked(Panic),
    Failed(rusqlite::Error),
}

/// Run one write in its own savepoint: undone alone when it fails or panics, kept with the
/// batch when not.
fn savepoint(tx: &Transaction<'_>, run: Run) -> Result<rusqlite::Result<Value>, Undo> {
    // Cached: parsing these three statements for every write was a visible part of a batch.
    let step = |sql: &str| {
        tx.prepare_cached(sql)
            .and_then(|mut s| s.execute([]))
            .map(drop)
    };
    step("SAVEPOINT write").map_err(Undo::Failed)?;
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| run(tx)));
    if !matches!(outcome, Ok(Ok(_))) {
        step("ROLLBACK TO write").map_err(Undo::Failed)?;
    }
    step("RELEASE write").map_err(Undo::Failed)?;
    outcome.map_err(Undo::Panicked)
}

impl Store {
    /// Run `call` with this store on the store's thread and wait for it without holding a
    /// worker. A panic in `call` is the caller's panic, as if it had run inline.
    pub async fn off_runtime<T, F>(self: &Arc<Self>, call: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        if !self.durability.on_disk() {
            // In memory nothing waits on a disk, and tests drive it on tokio's paused clock,
            // which would jump ahead while a thread tokio does not know about works.
            return call(self);
        }
        let (tx, rx) = oneshot::channel::<Result<Result<T, StoreError>, Panic>>();
        let store = Arc::clone(self);
        let work = Work::Call(Box::new(move || {
            let answer = std::panic::catch_unwind(AssertUnwindSafe(|| call(&store)));
            // The store is let go before the answer, so the caller may drop the last handle.
            drop(store);
            let _ = tx.send(answer);
        }));
        self.calls.send(self, work)?;
        match rx.await {
            Ok(Ok(answer)) => answer,
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(_) => Err(gone(self)),
        }
    }

    /// One transition from async code: committed with whatever other writes queue up beside
    /// it, and on disk when the returned future is (without holding a thread).
    pub(super) async fn write_async<T, F>(&self, what: &'static str, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Transaction<'_>) -> rusqlite::Result<T> + Send + 'static,
        T: Send + 'static,
    {
        if !self.durability.on_disk() {
            // In memory there is nothing to group or sync, and tests drive it without a runtime
            // or on tokio's paused clock (see `off_runtime`).
            return self.write(what, f);
        }
        let (value, commit) = self.batched(what, f).await?;
        self.durability.settled(commit).await?;
        Ok(value)
    }

    /// An observation from async code (`Store::note`): committed with its batch, on disk with
    /// the next sync anyone waits for.
    pub(super) async fn note_async<T, F>(&self, what: &'static str, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Transaction<'_>) -> rusqlite::Result<T> + Send + 'static,
        T: Send + 'static,
    {
        if !self.durability.on_disk() {
            return self.note(what, f);
        }
        Ok(self.batched(what, f).await?.0)
    }

    /// Queue `f` for the store's thread's next batch; its answer once the batch is committed.
    pub(super) async fn batched<T, F>(
        &self,
        what: &'static str,
        f: F,
    ) -> Result<(T, Commit), StoreError>
    where
        F: FnOnce(&Transaction<'_>) -> rusqlite::Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let run = Box::new(move |tx: &Transaction<'_>| f(tx).map(|v| Box::new(v) as Value));
        self.calls
            .send(self, Work::Write(Write { what, run, reply }))?;
        match answer.await.map_err(|_| gone(self))? {
            // The value is the one `run` boxed from this very `f`.
            Outcome::Committed(value, commit) => match value.downcast::<T>() {
                Ok(value) => Ok((*value, commit)),
                Err(_) => unreachable!("a write answers with its own type"),
            },
            Outcome::Failed(e) => Err(e),
            Outcome::Panicked(panic) => std::panic::resume_unwind(panic),
        }
    }
}

#[cfg(test)]
mod tests;
