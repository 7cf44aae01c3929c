//! Numbered schema migrations, embedded in the binary and applied in order at open.
//!
//! `PRAGMA user_version` records how many have run. A migration, once shipped, is never edited:
//! old databases are kept as fixtures and must still open.

use std::path::Path;

use rusqlite::Connection;

use super::StoreError;

/// Every migration, in order; index + 1 is the schema version it brings the database to.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_init.sql"),
    include_str!("migrations/0002_committed_credits.sql"),
    include_str!("migrations/0003_exactly_once.sql"),
    include_str!("migrations/0004_error_reference.sql"),
    include_str!("migrations/0005_canary.sql"),
    include_str!("migrations/0006_notifications.sql"),
    include_str!("migrations/0007_counters.sql"),
    include_str!("migrations/0008_learned_limits.sql"),
    include_str!("migrations/0009_input_stamps.sql"),
    include_str!("migrations/0010_batch_media_url.sql"),
    include_str!("migrations/0011_status_indexes.sql"),
    include_str!("migrations/0012_file_digests.sql"),
    include_str!("migrations/0013_tick_indexes.sql"),
    include_str!("migrations/0014_digest_retention.sql"),
    include_str!("migrations/0015_image_probes.sql"),
    include_str!("migrations/0016_stamp_chunks.sql"),
    include_str!("migrations/0017_state_folder_id.sql"),
];

pub fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let sql = |what, source| StoreError::Sql {
        path: path.to_path_buf(),
        what,
        source,
    };
    let version: u32 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|e| sql("read the schema version", e))?;
    let known = MIGRATIONS.len() as u32;
    if version > known {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found: version,
            known,
        });
    }
    if version == known {
        return Ok(());
    }
    // A migration may rebuild a table that others reference; foreign keys are checked once at
    // the end instead (SQLite's documented procedure; the pragma is a no-op in a transaction).
    conn.pragma_update(None, "foreign_keys", "OFF")
        .map_err(|e| sql("pause foreign keys", e))?;
    // Each step reads the version again inside a write transaction taken at once (IMMEDIATE):
    // another process opening the same fresh state folder (a `recast status` beside the first
    // `recast run`) may have applied it meanwhile, and it must not be applied twice.
    loop {
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| sql("start a migration", e))?;
        let current: u32 = tx
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| sql("read the schema version", e))?;
        let Some(migration) = MIGRATIONS.get(current as usize) else {
            tx.commit().map_err(|e| sql("commit a migration", e))?;
            break;
        };
        tx.execute_batch(migration)
            .map_err(|e| sql("apply a migration", e))?;
        tx.pragma_update(None, "user_version", current + 1)
            .map_err(|e| sql("record the schema version", e))?;
        tx.commit().map_err(|e| sql("commit a migration", e))?;
    }
    let broken: i64 = conn
        .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
            r.get(0)
        })
        .map_err(|e| sql("check foreign keys after a migration", e))?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(|e| sql("enable foreign keys", e))?;
    if broken > 0 {
        return Err(sql(
            "keep its references whole while migrating",
            rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT),
                Some(format!("{broken} broken references")),
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processes_opening_one_fresh_state_folder_at_once_apply_each_migration_once() {
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("recast.db");
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
            let racers: Vec<_> = (0..4)
                .map(|_| {
                    let (path, barrier) = (path.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        let mut conn = Connection::open(&path).unwrap();
                        conn.busy_timeout(std::time::Duration::from_secs(10))
                            .unwrap();
                        barrier.wait();
                        migrate(&mut conn, &path)
                    })
                })
                .collect();
            for racer in racers {
                racer.join().unwrap().unwrap();
            }
        }
    }

    #[test]
    fn migrations_apply_from_empty_and_are_idempotent() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn, Path::new(":memory:")).unwrap();
        migrate(&mut conn, Path::new(":memory:")).unwrap();
        let v: u32 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, MIGRATIONS.len() as u32);
        for table in ["batches", "jobs", "attempts", "events"] {
            let n: i64 = conn
                .query_row(
                    "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                    [table],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(n, 1, "{table}");
        }
    }

    #[test]
    fn a_version_1_database_still_opens_and_keeps_its_batches() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/state/v1/recast.db"
            ),
            dir.path().join("recast.db"),
        )
        .unwrap();
        let store = crate::store::Store::open(dir.path()).unwrap();
        let ids = store.batch_ids_named(Some("example-batch")).unwrap();
        let summary = store.batch_summary(ids[0]).unwrap();
        assert_eq!(summary.counts.get(crate::store::JobState::Done), 3);
        assert_eq!(summary.credits_spent, 3 * 566);
        // The running total was computed from the old attempts.
        assert_eq!(store.committed_credits(ids[0]).unwrap(), 3 * 566);
    }

    #[test]
    fn a_newer_database_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        assert!(matches!(
            migrate(&mut conn, Path::new(":memory:")),
            Err(StoreError::TooNew { found: 99, .. })
        ));
    }
}
