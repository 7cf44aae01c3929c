//! The store on disk: private files, and group commit's syncs.

use super::*;
use crate::media::{ImageFormat, ImageInfo};
use crate::store::KnownFile;
use crate::store::known_files::DIGESTS_KEPT;

#[test]
fn the_database_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let _store = Store::open(dir.path()).unwrap();
    for name in ["recast.db", "recast.db-wal", "recast.db-shm"] {
        let mode = std::fs::metadata(dir.path().join(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name}");
    }
}

#[test]
fn a_state_folder_opened_up_by_someone_is_made_private_again() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    drop(Store::open(&state).unwrap());
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).unwrap();
    let db = state.join("recast.db");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let _store = Store::open(&state).unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&db), 0o600);
}

#[test]
fn commits_made_while_a_sync_runs_share_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let r = store
        .register_batch(&batch("b", None, 0), jobs("k", 5))
        .unwrap();
    let (_, syncs_before) = store.commit_counts();
    store.hold_syncs(true);
    // Observations: committed without waiting for their sync.
    for n in 0..5 {
        store.record_progress(1, Some(n), 0).unwrap();
    }
    store.hold_syncs(false);
    store.set_paused(Some(r.batch_id), false).unwrap();
    let (committed, syncs) = store.commit_counts();
    assert!(committed >= 7, "{committed}");
    assert!(
        syncs - syncs_before <= 2,
        "six commits made durable by {} syncs",
        syncs - syncs_before
    );
}

#[test]
fn an_observation_nobody_waits_for_is_synced_lazily_all_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .register_batch(&batch("b", None, 0), jobs("k", 1))
        .unwrap();
    let (_, syncs_before) = store.commit_counts();
    store.record_progress(1, Some(5), 0).unwrap();
    // Bounded: the lazy sync comes `LAZY_SYNC` after the commit, whatever the machine.
    let deadline = std::time::Instant::now() + super::super::durable::LAZY_SYNC * 20;
    while store.commit_counts().1 == syncs_before {
        assert!(
            std::time::Instant::now() < deadline,
            "an observation was never synced"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn digests_no_plan_read_for_a_month_are_dropped_and_those_in_use_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let row = |path: &str, digit: &str| KnownFile {
        path: path.to_owned(),
        identity: vec![1u8; 8],
        sha256: digit.repeat(64),
        image: Some(ImageInfo {
            format: ImageFormat::Png,
            width: 640,
            height: 480,
            size_bytes: 9000,
        }),
    };
    let (in_use, gone) = (row("/in/use.png", "1"), row("/gone.png", "2"));
    assert_eq!(
        store
            .remember_files([in_use.clone(), gone.clone()].into_iter())
            .unwrap(),
        2
    );
    assert_eq!(store.image_probe(&gone.sha256).unwrap(), gone.image);
    // Both were last read 31 days ago; a plan now reads only the one still in use.
    let month_ago = now_ms() - DIGESTS_KEPT.as_millis() as i64 - 24 * 3600 * 1000;
    let conn = store.writer();
    conn.execute("UPDATE file_digests SET seen_at = ?1", [month_ago])
        .unwrap();
    conn.execute("UPDATE image_probes SET seen_at = ?1", [month_ago])
        .unwrap();
    drop(conn);
    assert_eq!(
        store.remember_files([in_use.clone()].into_iter()).unwrap(),
        1,
        "a digest in use is stamped as read"
    );
    assert!(store.file_digest("/in/use.png").unwrap().is_some());
    assert_eq!(store.image_probe(&in_use.sha256).unwrap(), in_use.image);
    assert_eq!(store.file_digest("/gone.png").unwrap(), None);
    assert_eq!(store.image_probe(&gone.sha256).unwrap(), None);
    // Read again the same day: nothing to write.
    assert_eq!(
        store.remember_files([in_use.clone()].into_iter()).unwrap(),
        0
    );
}

#[test]
fn a_header_read_by_other_header_readers_is_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert!(!store.has_image_probes().unwrap());
    let image = ImageInfo {
        format: ImageFormat::Webp,
        width: 300,
        height: 400,
        size_bytes: 10_000,
    };
    let file = KnownFile {
        path: "/a.webp".into(),
        identity: vec![2u8; 8],
        sha256: "cd".repeat(32),
        image: Some(image.clone()),
    };
    store.remember_files([file.clone()].into_iter()).unwrap();
    assert!(store.has_image_probes().unwrap());
    assert_eq!(store.image_probe(&file.sha256).unwrap(), Some(image));
    store
        .writer()
        .execute("UPDATE image_probes SET prober = prober - 1", [])
        .unwrap();
    assert_eq!(store.image_probe(&file.sha256).unwrap(), None);
    // Probed again by these readers, it is kept again.
    store.remember_files([file.clone()].into_iter()).unwrap();
    assert_eq!(store.image_probe(&file.sha256).unwrap(), file.image);
}

/// A daemon's claims beside a person's `recast pause` on another connection (another process
/// in real life): a write that finds the other's commit waits its turn instead of failing with
/// "database is locked". A deferred transaction that has read cannot wait (SQLite refuses the
/// upgrade at once), so every write transaction takes the write lock at its start.
#[test]
fn writes_from_two_connections_wait_for_each_other_instead_of_failing() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Store::open(dir.path()).unwrap();
    let person = Store::open(dir.path()).unwrap();
    daemon
        .register_batch(&batch("b", None, 0), jobs("k", 300))
        .unwrap();
    let other = daemon
        .register_batch(&batch("other", None, 0), jobs("o", 1))
        .unwrap()
        .batch_id;
    person.set_paused(Some(other), true).unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let pauser = s.spawn(|| {
            let mut writes = 0u32;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                // Paused throughout: each write is real (a WAL frame) but changes no claim.
                person.set_paused(Some(other), true).unwrap();
                writes += 1;
            }
            writes
        });
        let only_b = Scope::provider("test");
        let claims = (|| {
            let mut claimed = 0;
            while let Some((_, commit)) = crate::engine::claim_next(&daemon, &only_b)? {
                daemon.durability.wait(commit)?;
                claimed += 1;
            }
            Ok::<_, StoreError>(claimed)
        })();
        // Stop the person before judging, so a failure cannot leave their thread running.
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let writes = pauser.join().unwrap();
        let claimed = claims.unwrap();
        assert!(writes > 0, "the person's writes ran beside the claims");
        assert_eq!(claimed, 300);
    });
}

/// A long read (a dashboard's page of a large batch) holds a read connection; the engine's
/// quick reads beside it take the spare one instead of waiting for it to end.
#[test]
fn a_read_beside_a_long_read_does_not_wait_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .register_batch(&batch("b", None, 0), jobs("k", 2))
        .unwrap();
    std::thread::scope(|scope| {
        let long_read = store.conn();
        let (tx, rx) = std::sync::mpsc::channel();
        let store = &store;
        scope.spawn(move || tx.send(store.batch_counts(1).map(|c| c.total())));
        let answered = rx.recv_timeout(std::time::Duration::from_secs(20));
        // Let go before asserting: a read waiting on it would keep the scope from ending.
        drop(long_read);
        assert_eq!(
            answered
                .expect("answered while the long read went on")
                .unwrap(),
            2
        );
    });
}
