//! Which job is submitted next: the engine's policy over what the store says is ready.
//!
//! Owns: the order batches take turns in (highest priority first; among equals the one with
//! the fewest tasks in flight, so a small batch is never starved behind a large one; then the
//! oldest), and the budget rule (a job whose estimate would take its batch's committed credits
//! past the budget, or that has no price while a budget is set, is held with why). Within a
//! batch, jobs go in the order it registered them.
//!
//! May not: write the store except through its transitions (hold a job, claim it), or wait on
//! anything: the submit stage paces and sends. The choice runs inside the claim's write
//! transaction ([`crate::store::ClaimView`]): [`Engine::claim_next`] queues it on the store's
//! thread, where it joins the next batch of writes.

use std::sync::Arc;

use super::{Engine, EngineError};
use crate::provider::Provider;
use crate::store::{ClaimView, Commit, ReadyBatch, ReadyJob, Scope, SubmitIntent};
#[cfg(test)]
use crate::store::{Store, StoreError};

/// Claims in a row that found the job moved (a person's cancel or pause in another process)
/// before the stage gives up until its next turn.
const RACES: usize = 16;

/// The batch whose turn it is, among those with a job ready.
pub(crate) fn first_in_line(batches: &[ReadyBatch]) -> Option<i64> {
    batches
        .iter()
        .min_by_key(|b| (std::cmp::Reverse(b.priority), b.in_flight, b.batch_id))
        .map(|b| b.batch_id)
}

/// Why `job` must wait for its batch's budget, if it must.
pub(crate) fn over_budget(job: &ReadyJob) -> Option<String> {
    let budget = job.budget_credits?;
    let Some(estimate) = job.estimate_credits else {
        return Some("price unknown: a job without a price cannot pass a budget".to_owned());
    };
    // A resend commits nothing more: its attempt is counted already.
    let extra = if job.resend { 0 } else { estimate };
    let committed = job.committed_credits;
    (committed + extra > budget).then(|| {
        format!(
            "over budget: {committed} credits committed, this job needs up to {estimate} more, \
             budget is {budget}"
        )
    })
}

/// Choose the next job in `scope`, inside the claim's transaction: jobs the budget holds are
/// held on the way, and the chosen job's submit intent is written. `None` when nothing is
/// ready.
pub(crate) fn choose(
    view: &ClaimView<'_>,
    scope: &Scope,
) -> rusqlite::Result<Option<SubmitIntent>> {
    let mut races = 0;
    while races < RACES {
        let Some(batch) = first_in_line(&view.ready_batches(scope)?) else {
            return Ok(None);
        };
        let Some(job) = view.next_ready_job(batch)? else {
            races += 1;
            continue;
        };
        // Holding is progress (the job leaves the ready ones), however many there are.
        if let Some(why) = over_budget(&job) {
            if !view.hold(&job, &why)? {
                races += 1;
            }
            continue;
        }
        match view.claim(&job)? {
            Some(intent) => return Ok(Some(intent)),
            None => races += 1,
        }
    }
    Ok(None)
}

/// [`choose`] on the calling thread, in its own transaction; the intent is committed, not yet
/// synced (the caller waits for the commit before sending).
#[cfg(test)]
pub(crate) fn claim_next(
    store: &Store,
    scope: &Scope,
) -> Result<Option<(Box<SubmitIntent>, Commit)>, StoreError> {
    let (intent, commit) = store.claim_now(|view| choose(view, scope))?;
    Ok(intent.map(|intent| (Box::new(intent), commit)))
}

impl<P: Provider> Engine<P> {
    /// The next job in this engine's scope, chosen and claimed as one write in the store's
    /// thread's next batch (with any holds on the way); no tokio worker waits for it. The
    /// intent is committed, not yet synced.
    pub(super) async fn claim_next(
        self: &Arc<Self>,
    ) -> Result<Option<(Box<SubmitIntent>, Commit)>, EngineError> {
        let scope = self.scope().clone();
        let (intent, commit) = self
            .store
            .claim_with(move |view| choose(view, &scope))
            .await?;
        Ok(intent.map(|intent| (Box::new(intent), commit)))
    }

    /// Tasks in flight at the provider in this engine's scope. Asked inline: a count by an
    /// index on the read connection, which never waits for a writer, and asked before every
    /// submit, where a trip to the store's thread would cost more than the count.
    pub(super) async fn provider_in_flight(self: &Arc<Self>) -> Result<u64, EngineError> {
        Ok(self.store.provider_in_flight(self.scope())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(batch_id: i64, priority: i64, in_flight: u64) -> ReadyBatch {
        ReadyBatch {
            batch_id,
            priority,
            in_flight,
        }
    }

    #[test]
    fn priority_first_then_the_batch_with_fewest_in_flight_then_the_oldest() {
        assert_eq!(first_in_line(&[]), None);
        let batches = [batch(1, 0, 5), batch(2, 0, 1), batch(3, 0, 1)];
        assert_eq!(first_in_line(&batches), Some(2));
        let batches = [batch(1, 0, 0), batch(2, 5, 50)];
        assert_eq!(first_in_line(&batches), Some(2), "priority before fairness");
    }

    fn job(estimate: Option<u64>, budget: Option<u64>, committed: u64, resend: bool) -> ReadyJob {
        ReadyJob {
            job_id: 7,
            batch_id: 1,
            estimate_credits: estimate,
            budget_credits: budget,
            committed_credits: committed,
            resend,
        }
    }

    #[test]
    fn a_job_waits_when_its_estimate_would_cross_the_budget_or_it_has_no_price() {
        assert_eq!(over_budget(&job(None, None, 0, false)), None, "no budget");
        assert_eq!(over_budget(&job(Some(566), Some(1132), 566, false)), None);
        assert_eq!(
            over_budget(&job(Some(566), Some(1131), 566, false)).as_deref(),
            Some(
                "over budget: 566 credits committed, this job needs up to 566 more, budget is 1131"
            )
        );
        assert_eq!(
            over_budget(&job(Some(566), Some(566), 566, true)),
            None,
            "a resend is counted already"
        );
        assert!(
            over_budget(&job(None, Some(10_000), 0, false))
                .unwrap()
                .starts_with("price unknown")
        );
    }
}
