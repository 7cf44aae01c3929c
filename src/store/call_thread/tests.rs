use std::sync::Arc;
use std::time::Duration;

use super::Store;
use crate::engine::tests::wait_until;
use crate::store::StoreError;

/// One worker thread: a call run on it would keep the sender below from ever running.
#[tokio::test(flavor = "current_thread")]
async fn a_store_call_that_waits_leaves_the_runtime_running() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let call = tokio::spawn(async move {
        store
            .off_runtime(move |store| {
                // Bounded: inline on the worker it would wait out the whole timeout.
                let heard = rx.recv_timeout(Duration::from_secs(20)).is_ok();
                Ok((heard, store.held_count(1)?))
            })
            .await
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    tx.send(()).unwrap();
    let (heard, held) = call.await.unwrap().unwrap();
    assert!(heard, "the call held the runtime's only worker");
    assert_eq!(held, 0);
}

/// Keep the store's thread busy until the returned sender says go: writes sent meanwhile
/// queue up for one batch.
async fn hold_busy(store: &Arc<Store>) -> std::sync::mpsc::Sender<()> {
    let (go, wait) = std::sync::mpsc::channel::<()>();
    let (started, running) = tokio::sync::oneshot::channel();
    let blocker = Arc::clone(store);
    tokio::spawn(async move {
        blocker
            .off_runtime(move |_| {
                let _ = started.send(());
                let _ = wait.recv_timeout(Duration::from_secs(30));
                Ok(())
            })
            .await
    });
    tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("the store's thread takes the blocking call")
        .unwrap();
    go
}

/// An on-disk store with `n` planned jobs (ids 1..=n), and its thread kept busy until the
/// returned sender says go: writes sent meanwhile queue up for one batch.
async fn busy_store(n: usize) -> (tempfile::TempDir, Arc<Store>, std::sync::mpsc::Sender<()>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    store
        .register_batch(
            &crate::store::tests::batch("b", None, 0),
            crate::store::tests::jobs("k", n),
        )
        .unwrap();
    let go = hold_busy(&store).await;
    (dir, store, go)
}

fn mark(
    store: &Arc<Store>,
    job_id: i64,
    fail: bool,
) -> impl Future<Output = Result<(), StoreError>> + use<> {
    let store = Arc::clone(store);
    async move {
        store
            .write_async("mark a job", move |tx| {
                tx.execute("UPDATE jobs SET reason = 'marked' WHERE id = ?1", [job_id])?;
                if fail {
                    tx.execute("UPDATE no_such_table SET x = 1", [])?;
                }
                Ok(())
            })
            .await
    }
}

fn marked(store: &Store) -> Vec<i64> {
    let conn = store.conn();
    let mut stmt = conn
        .prepare("SELECT id FROM jobs WHERE reason = 'marked' ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Group commit: writes that queue up while the thread is busy are one transaction; a write
/// that fails is undone alone, and its caller hears why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_that_queue_up_share_one_commit_and_a_failed_one_is_undone_alone() {
    let (_dir, store, go) = busy_store(6).await;
    let (commits_before, _) = store.commit_counts();
    let writes = futures_util::future::join_all((1..=6).map(|id| mark(&store, id, id == 4)));
    let release = async {
        tokio::task::yield_now().await;
        go.send(()).unwrap();
    };
    let (answers, ()) = tokio::join!(writes, release);
    for (i, answer) in answers.iter().enumerate() {
        let id = i + 1;
        match answer {
            Err(e) if id == 4 => assert!(e.to_string().contains("mark a job"), "{e}"),
            Ok(()) if id != 4 => {}
            other => panic!("write {id}: {other:?}"),
        }
    }
    assert_eq!(
        marked(&store),
        vec![1, 2, 3, 5, 6],
        "the failed write's change is undone"
    );
    let (commits_after, _) = store.commit_counts();
    assert_eq!(commits_after - commits_before, 1, "six writes, one commit");
}

/// A write's caller hears back only once its batch is on disk, not when it is committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_is_answered_only_when_its_batch_is_on_disk() {
    use futures_util::FutureExt;
    let (_dir, store, go) = busy_store(1).await;
    store.hold_syncs(true);
    let (commits_before, _) = store.commit_counts();
    let mut write = Box::pin(mark(&store, 1, false));
    assert!((&mut write).now_or_never().is_none());
    go.send(()).unwrap();
    wait_until("the write's batch commits", || {
        store.commit_counts().0 > commits_before
    })
    .await;
    assert_eq!(marked(&store), vec![1], "committed");
    assert!(
        (&mut write).now_or_never().is_none(),
        "answered before its commit was synced"
    );
    store.hold_syncs(false);
    tokio::time::timeout(Duration::from_secs(30), write)
        .await
        .expect("answered once synced")
        .unwrap();
}

/// A run that shuts down lets go of writes it no longer waits for: they are committed before
/// the store is gone (a daemon's last transitions are not lost with its process).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_no_one_waits_for_are_committed_before_the_store_is_let_go() {
    use futures_util::FutureExt;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let jobs = crate::store::tests::jobs("k", 3);
    let batch = crate::store::tests::batch("b", None, 0);
    store.register_batch(&batch, jobs).unwrap();
    // Busy with a call that holds no handle to the store (`off_runtime`'s would): the test's
    // is the last.
    let (go, wait) = std::sync::mpsc::channel::<()>();
    let (started, running) = std::sync::mpsc::channel::<()>();
    let block = super::Work::Call(Box::new(move || {
        let _ = started.send(());
        let _ = wait.recv_timeout(Duration::from_secs(30));
    }));
    store.calls.send(&store, block).unwrap();
    running.recv_timeout(Duration::from_secs(30)).unwrap();
    for id in 1..=3 {
        // Queued at its first poll, then dropped: its caller is gone.
        assert!(Box::pin(mark(&store, id, false)).now_or_never().is_none());
    }
    // The thread is let go a little after the store is: a drop that did not wait for it would
    // be over before the writes are committed.
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        let _ = go.send(());
    });
    drop(store);
    let reopened = Store::open(dir.path()).unwrap();
    assert_eq!(marked(&reopened), vec![1, 2, 3]);
    release.join().unwrap();
}

/// What one write in a round does after adding 1 to its job's `polls`: keep it, fail, or panic.
#[derive(Debug, Clone, Copy)]
enum Ending {
    Keep,
    Fail,
    Panic,
}

fn ending() -> impl proptest::strategy::Strategy<Value = Ending> {
    use proptest::prelude::*;
    prop_oneof![6 => Just(Ending::Keep), 2 => Just(Ending::Fail), 1 => Just(Ending::Panic)]
}

/// Rounds of writes: each round's writes go out together, with the store's thread busy (so they
/// queue into one batch) or not.
fn rounds() -> impl proptest::strategy::Strategy<Value = Vec<(bool, Vec<(i64, Ending)>)>> {
    use proptest::prelude::*;
    let write = (1i64..=6, ending());
    prop::collection::vec((any::<bool>(), prop::collection::vec(write, 1..12)), 1..8)
}

async fn round(store: &Arc<Store>, busy: bool, writes: &[(i64, Ending)]) -> Vec<Option<bool>> {
    let release = match busy {
        true => Some(hold_busy(store).await),
        false => None,
    };
    use futures_util::FutureExt;
    // One task polls them all: each is queued at its first poll, before the thread is let go.
    let writes = futures_util::future::join_all(writes.iter().map(|&(job_id, end)| {
        let store = Arc::clone(store);
        std::panic::AssertUnwindSafe(async move {
            store
                .write_async("count a poll", move |tx| {
                    tx.execute("UPDATE jobs SET polls = polls + 1 WHERE id = ?1", [job_id])?;
                    match end {
                        Ending::Keep => Ok(()),
                        Ending::Fail => tx.execute("UPDATE no_such_table SET x = 1", []).map(drop),
                        Ending::Panic => panic!("a write that panics (expected by the test)"),
                    }
                })
                .await
        })
        .catch_unwind()
    }));
    let release = async {
        tokio::task::yield_now().await;
        if let Some(go) = release {
            go.send(()).unwrap();
        }
    };
    let (answers, ()) = tokio::join!(writes, release);
    answers
        .into_iter()
        .map(|answer| answer.ok().map(|written| written.is_ok()))
        .collect()
}

fn polls(store: &Store) -> Vec<i64> {
    let conn = store.conn();
    let mut stmt = conn.prepare("SELECT polls FROM jobs ORDER BY id").unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

    /// Whatever mix of writes that keep, fail and panic, batched or not: after every round the
    /// database holds exactly the kept ones, each caller heard what became of its write, and
    /// writes let go together shared one commit. A failing case is printed by proptest and
    /// kept in `proptest-regressions/`, so `cargo test --lib batches_keep` replays it.
    #[test]
    fn batches_keep_exactly_the_writes_that_succeeded(rounds in rounds()) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let store = Arc::new(Store::open(dir.path()).unwrap());
            store
                .register_batch(
                    &crate::store::tests::batch("b", None, 0),
                    crate::store::tests::jobs("k", 6),
                )
                .unwrap();
            let mut expected = vec![0i64; 6];
            for (busy, writes) in &rounds {
                let (commits_before, _) = store.commit_counts();
                let heard = round(&store, *busy, writes).await;
                for (&(job_id, end), heard) in writes.iter().zip(&heard) {
                    let want = match end {
                        Ending::Keep => Some(true),
                        Ending::Fail => Some(false),
                        Ending::Panic => None,
                    };
                    assert_eq!(*heard, want, "job {job_id}: {end:?}");
                    if let Ending::Keep = end {
                        expected[job_id as usize - 1] += 1;
                    }
                }
                assert_eq!(polls(&store), expected, "after a round of {writes:?}");
                let commits = store.commit_counts().0 - commits_before;
                if *busy {
                    assert_eq!(commits, 1, "writes let go together: one commit");
                } else {
                    assert!(
                        commits >= 1 && commits as usize <= writes.len(),
                        "{commits} commits for {} writes",
                        writes.len()
                    );
                }
            }
        });
    }
}
