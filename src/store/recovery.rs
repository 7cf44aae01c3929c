//! Recovery: what a crash or a stopped provider left half done, put back on its way.
//!
//! Owns: finding submits a crash interrupted (intent committed, answer never recorded) and
//! settling them, releasing `unknown` submits a person or the balance check cleared, and
//! restarting tasks a stopped simulator forgot. Each function is one transaction.
//!
//! May not: decide which interrupted submit certainly never left (the engine reads the output
//! folder for that and passes the answer in).

use rusqlite::params;

use super::Cached;
use super::jobs::{
    InterruptedSubmit, event, release_budget_holds, set_attempt_state, set_job_state,
};
use super::{JobState, Scope, Store, StoreError, now_ms};

impl Store {
    /// Submits a crash interrupted: intents committed, answers never recorded.
    pub fn interrupted_submits(&self) -> Result<Vec<InterruptedSubmit>, StoreError> {
        let conn = self.conn();
        let mut s = conn
            .prepare_cached(
                "SELECT j.id, j.attempt_id, j.job_key, a.idempotency_key, b.output_dir
                 FROM jobs j JOIN batches b ON b.id = j.batch_id
                 LEFT JOIN attempts a ON a.id = j.attempt_id
                 WHERE j.state = 'submitting'",
            )
            .map_err(self.sql_error("list interrupted submits"))?;
        s.query_map([], |r| {
            Ok(InterruptedSubmit {
                job_id: r.get(0)?,
                attempt_id: r.get(1)?,
                job_key: r.get(2)?,
                idempotency_key: r.get(3)?,
                output_dir: r.get(4)?,
            })
        })
        .and_then(|rows| rows.collect())
        .map_err(self.sql_error("list interrupted submits"))
    }

    /// After a crash: interrupted submits whose attempts are in `never_sent` (the output folder
    /// shows they never left) go back to be submitted; the others become `unknown`. Returns
    /// (unknown, sent back).
    pub fn recover_interrupted_submits(
        &self,
        never_sent: &std::collections::HashSet<i64>,
    ) -> Result<(usize, usize), StoreError> {
        self.write("recover interrupted submits", |tx| {
            let why = "recast stopped between sending a submit and recording its answer";
            let unsent = "recast stopped before this submit was sent (its output folder never \
                          recorded it): submitted again";
            let ids: Vec<(i64, i64, Option<i64>)> = {
                let mut s = tx.prepare_cached(
                    "SELECT id, batch_id, attempt_id FROM jobs WHERE state = 'submitting'",
                )?;
                s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect::<Result<_, _>>()?
            };
            let (mut unknown, mut released) = (0, 0);
            for (job_id, batch_id, attempt_id) in &ids {
                match attempt_id {
                    Some(a) if never_sent.contains(a) => {
                        set_attempt_state(tx, *a, "not_sent", Some(unsent))?;
                        tx.exec(
                            "UPDATE jobs SET state = 'planned', attempt_id = NULL, reason = ?2,
                                 updated_at = ?3 WHERE id = ?1",
                            params![job_id, unsent, now_ms()],
                        )?;
                        release_budget_holds(tx, *batch_id)?;
                        event(tx, Some(*batch_id), Some(*job_id), "not-sent", unsent)?;
                        released += 1;
                    }
                    _ => {
                        if let Some(a) = attempt_id {
                            set_attempt_state(tx, *a, "unknown", Some(why))?;
                        }
                        set_job_state(tx, *job_id, JobState::Unknown, Some(why))?;
                        event(tx, Some(*batch_id), Some(*job_id), "unknown", why)?;
                        unknown += 1;
                    }
                }
            }
            Ok((unknown, released))
        })
    }

    /// Send `unknown` jobs back to be submitted again under their same idempotency key.
    pub fn release_unknown(&self, scope: &Scope) -> Result<usize, StoreError> {
        let scope = scope.filter("batch_id");
        self.write("release unknown submits", |tx| {
            let n = tx.exec(
                &format!(
                    "UPDATE jobs SET state = 'planned', held = NULL, updated_at = ?1
                     WHERE state = 'unknown' {scope}"
                ),
                [now_ms()],
            )?;
            if n > 0 {
                event(
                    tx,
                    None,
                    None,
                    "resubmit-unknown",
                    &format!("{n} unknown submits sent again under their idempotency keys"),
                )?;
            }
            Ok(n)
        })
    }

    /// A batch's tasks were held by a provider that is gone for good (the simulator of an
    /// earlier `recast run --simulate`, which lived and died with that process): its jobs in
    /// flight go back to `planned`, their attempts closed (nothing real was billed). Returns how
    /// many jobs.
    pub fn restart_lost_tasks(&self, batch_id: i64) -> Result<usize, StoreError> {
        self.write("restart tasks of a stopped simulator", |tx| {
            let in_flight = "('submitting', 'running', 'downloading', 'unknown')";
            tx.exec(
                &format!(
                    "UPDATE attempts SET state = 'abandoned', updated_at = ?2
                     WHERE state IN ('submitting', 'accepted', 'completed', 'unknown')
                     AND job_id IN (SELECT id FROM jobs WHERE batch_id = ?1 AND state IN {in_flight})"
                ),
                params![batch_id, now_ms()],
            )?;
            let n = tx.exec(
                &format!(
                    "UPDATE jobs SET state = 'planned', attempt_id = NULL, task_id = NULL,
                         clip_url = NULL, progress = NULL, polls = 0, link_refreshes = 0,
                         download_failures = 0, not_before = NULL,
                         reason = 'its simulator stopped before the clip landed; submitted again',
                         updated_at = ?2
                     WHERE batch_id = ?1 AND state IN {in_flight}"
                ),
                params![batch_id, now_ms()],
            )?;
            if n > 0 {
                event(
                    tx,
                    Some(batch_id),
                    None,
                    "restarted",
                    &format!("{n} jobs whose simulator stopped go back to planned"),
                )?;
            }
            Ok(n)
        })
    }
}
