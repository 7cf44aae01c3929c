//! The queries the engine runs on every tick, checked against SQLite's own query plans: none
//! may read the whole `jobs`, `attempts` or `events` table, whatever the batch's size
//! (`EXPLAIN QUERY PLAN` of each statement as it ran, traced). A test only: the indexes
//! themselves are in the migrations.

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::super::tests::{all, batch, jobs};
    use super::super::*;
    use futures_util::FutureExt;

    static TRACED: Mutex<Vec<String>> = Mutex::new(Vec::new());

    fn trace(event: rusqlite::trace::TraceEvent<'_>) {
        // The statement with its parameters bound, so its plan can be asked for as it ran.
        if let rusqlite::trace::TraceEvent::Stmt(stmt, _) = event
            && let Some(sql) = stmt.expanded_sql()
        {
            TRACED.lock().unwrap().push(sql);
        }
    }

    fn tracing(store: &Store, on: bool) {
        let mask = rusqlite::trace::TraceEventCodes::SQLITE_TRACE_STMT;
        let f: Option<fn(rusqlite::trace::TraceEvent<'_>)> = on.then_some(trace);
        store.conn().trace_v2(mask, f).unwrap();
    }

    /// Claim the next job and record it submitted: a task in flight.
    fn submit_one(store: &Store) {
        let Some(intent) = super::super::tests::claim(store) else {
            panic!("nothing to claim")
        };
        store
            .record_submitted(&intent, &format!("task-{}", intent.job_id), 0)
            .now_or_never()
            .unwrap()
            .unwrap();
    }

    /// Tables that grow with the batch: reading one whole is a scan per tick.
    const BIG: [&str; 3] = ["jobs", "attempts", "events"];

    /// The steps of `sql`'s plan that read a whole big table (`SCAN jobs`, `SCAN j` for an
    /// alias of it) rather than search an index.
    fn full_scans(conn: &rusqlite::Connection, sql: &str) -> Vec<String> {
        let mut plan = conn
            .prepare_cached(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap();
        let details: Vec<String> = plan
            .query_map([], |row| row.get::<_, String>(3))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let flat = sql.split_whitespace().collect::<Vec<_>>().join(" ");
        details
            .into_iter()
            .filter(|d| {
                let Some(rest) = d.strip_prefix("SCAN ") else {
                    return false;
                };
                let name = rest.split_whitespace().next().unwrap_or_default();
                !d.contains(" USING ")
                    && BIG.iter().any(|t| {
                        name == *t
                            || flat.contains(&format!("{t} {name} "))
                            || flat.ends_with(&format!("{t} {name}"))
                    })
            })
            .map(|d| format!("{d}\n    in: {flat}"))
            .collect()
    }

    #[test]
    fn no_tick_query_reads_a_whole_table_of_jobs() {
        let store = Store::open_in_memory().unwrap();
        let r = store
            .register_batch(
                &NewBatch {
                    canary: Some(5),
                    ..batch("b", Some(100_000), 0)
                },
                jobs("k", 40),
            )
            .unwrap();
        // A job in flight, so each query has something to find.
        submit_one(&store);
        tracing(&store, true);
        TRACED.lock().unwrap().clear();

        // What the engine's stages ask each tick, and what progress, status and metrics read.
        let scope = all();
        let _ = super::super::tests::claim_next(&store, &scope);
        let _ = store.due_polls(&scope, i64::MAX, 10).unwrap();
        let _ = store.next_poll_at(&scope).unwrap();
        let _ = store.due_downloads(&scope, i64::MAX, 10, &[]).unwrap();
        let _ = store.provider_in_flight(&scope).unwrap();
        let _ = store.has_active_jobs(&scope, true).unwrap();
        let _ = store.all_in_flight().unwrap();
        let _ = store.batch_counts(r.batch_id).unwrap();
        let _ = store.batch_summary(r.batch_id).unwrap();
        let _ = store.attention_jobs(r.batch_id).unwrap();
        let _ = store.held_jobs(r.batch_id).unwrap();
        let _ = store.held_count(r.batch_id).unwrap();
        tracing(&store, false);

        let statements = std::mem::take(&mut *TRACED.lock().unwrap());
        assert!(statements.len() >= 8, "{statements:#?}");
        let conn = store.conn();
        // The check itself can fail: a query by a column without an index is caught.
        assert_eq!(
            full_scans(&conn, "SELECT count(*) FROM jobs WHERE reason = 'x'").len(),
            1
        );
        let scans: Vec<String> = statements
            .iter()
            .filter(|s| {
                let s = s.trim_start().to_ascii_uppercase();
                s.starts_with("SELECT") || s.starts_with("UPDATE") || s.starts_with("WITH")
            })
            .flat_map(|sql| full_scans(&conn, sql))
            .collect();
        assert!(
            scans.is_empty(),
            "full scans on a tick:\n{}",
            scans.join("\n")
        );
        // Status's lists of the jobs that need a person, and of held ones, read those jobs
        // only, not every job of the batch (which an index by batch alone would); the stages'
        // questions read the jobs due, in the order they want them, not every job in the state.
        for (marker, index) in [
            ("j.state IN ('unknown'", "jobs_needing_a_person"),
            ("held IS NOT NULL", "jobs_held"),
            ("next_poll_at <= ", "jobs_polls_due"),
            ("SELECT next_poll_at FROM", "jobs_polls_due"),
            ("j.state = 'downloading'", "jobs_downloads_due"),
            ("ORDER BY j.id LIMIT 1", "jobs_ready"),
        ] {
            let sql = statements
                .iter()
                .find(|s| s.contains(marker))
                .unwrap_or_else(|| panic!("no statement with {marker}: {statements:#?}"));
            let plan: Vec<String> = conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap()
                .query_map([], |row| row.get::<_, String>(3))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            assert!(plan.iter().any(|d| d.contains(index)), "{sql}\n{plan:#?}");
        }
    }

    static REPREPARED: Mutex<Vec<(String, i32)>> = Mutex::new(Vec::new());

    fn count_reprepares(event: rusqlite::trace::TraceEvent<'_>) {
        if let rusqlite::trace::TraceEvent::Profile(stmt, _) = event {
            let n = stmt.get_status(rusqlite::StatementStatus::RePrepare);
            REPREPARED
                .lock()
                .unwrap()
                .push((stmt.sql().into_owned(), n));
        }
    }

    /// SQLite plans a statement again when a bound value can change its plan (a bound
    /// `LIMIT`, a comparison against a partial index's `IS NOT NULL`, a 0 or 1), and the
    /// stages bind the time on every tick and the first batch's id is 1: planned again on
    /// every tick, their questions cost more than running them (14% of a run's CPU). With the
    /// planner stability guarantee each is planned once, then only run.
    #[test]
    fn no_tick_query_is_planned_again_when_the_time_changes() {
        let store = Store::open_in_memory().unwrap();
        store
            .register_batch(&batch("b", None, 0), jobs("k", 10))
            .unwrap();
        submit_one(&store);
        let mask = rusqlite::trace::TraceEventCodes::SQLITE_TRACE_PROFILE;
        let f: fn(rusqlite::trace::TraceEvent<'_>) = count_reprepares;
        store.conn().trace_v2(mask, Some(f)).unwrap();
        let scope = all();
        for _ in 0..3 {
            submit_one(&store);
        }
        for now in [1_000, 2_000, i64::MAX] {
            let _ = store.due_polls(&scope, now, 10).unwrap();
            let _ = store.next_poll_at(&scope).unwrap();
            let _ = store.due_downloads(&scope, now, 10, &[now]).unwrap();
            let _ = store.provider_in_flight(&scope).unwrap();
            let _ = store.has_active_jobs(&scope, true).unwrap();
        }
        store
            .conn()
            .trace_v2(mask, None::<fn(rusqlite::trace::TraceEvent<'_>)>)
            .unwrap();
        let seen = std::mem::take(&mut *REPREPARED.lock().unwrap());
        assert!(seen.len() >= 12, "{seen:#?}");
        let again: Vec<_> = seen.iter().filter(|(_, n)| *n > 0).collect();
        assert!(again.is_empty(), "planned again:\n{again:#?}");
    }
}
