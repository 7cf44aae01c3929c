//! Spotting what to notify, from what the engine wrote: the event log (read from a cursor kept
//! in the store) for jobs that came to need a person and batches that finished, and each
//! batch's holds for a budget that holds jobs back. Every notice has a message id made from what it
//! is about, so looking twice queues it once.

use super::{Event, Notifier};
use crate::store::{BatchSummary, JobState, StoreError};

/// Events read per look.
const EVENTS_PER_LOOK: usize = 1000;

impl Notifier {
    /// Queue what happened since the last look. Returns how many events were read.
    pub(super) fn detect(&self) -> Result<usize, StoreError> {
        // Notifications set up on a state folder with a past start from now: its history is
        // not sent as a flood of old news.
        let cursor = match self.store.notify_cursor()? {
            Some(c) => c,
            None => {
                let now = self.store.last_event_id()?;
                self.store.set_notify_cursor(now)?;
                now
            }
        };
        let events = self.store.events_after(cursor, EVENTS_PER_LOOK)?;
        let mut jobs: Vec<i64> = events.iter().filter_map(|e| e.job_id).collect();
        jobs.sort_unstable();
        jobs.dedup();
        let mut touched: Vec<i64> = events.iter().filter_map(|e| e.batch_id).collect();
        for job_id in jobs {
            if let Some(batch) = self.job_needs_person(job_id)? {
                touched.push(batch);
            }
        }
        touched.sort_unstable();
        touched.dedup();
        // A batch finishes with an event of one of its jobs: only batches something happened
        // to are looked at.
        for id in touched {
            self.batch_finished(&self.store.batch_summary(id)?)?;
        }
        for id in self.store.batch_ids_named(None)? {
            self.budget_reached(&self.store.batch_summary(id)?)?;
        }
        if let Some(last) = events.last() {
            self.store.set_notify_cursor(last.id)?;
        }
        Ok(events.len())
    }

    /// Queue the job's notice if it needs a person. Returns its batch.
    fn job_needs_person(&self, job_id: i64) -> Result<Option<i64>, StoreError> {
        let Some(job) = self.store.job_brief(job_id)? else {
            return Ok(None);
        };
        if !job.state.needs_a_person() {
            return Ok(Some(job.batch_id));
        }
        let batch = self.store.batch_summary(job.batch_id)?;
        self.enqueue(
            Event::JobNeedsPerson,
            &format!(
                "job.needs_person:{job_id}:{}:{}",
                job.attempt_id,
                job.state.as_str()
            ),
            serde_json::json!({
                "batch": batch.name,
                "provider": batch.provider,
                "subject": job.subject,
                "state": job.state,
                "reason": job.reason,
                "error_code": job.error_code,
                "request_id": job.request_id,
                "task_id": job.task_id,
            }),
        )?;
        Ok(Some(job.batch_id))
    }

    fn batch_finished(&self, s: &BatchSummary) -> Result<(), StoreError> {
        let c = &s.counts;
        let in_flight =
            c.get(JobState::Submitting) + c.get(JobState::Running) + c.get(JobState::Downloading);
        let held = self.store.held_count(s.id)?;
        let waiting = c.get(JobState::Planned).saturating_sub(held);
        let needs_person: u64 = JobState::ALL
            .into_iter()
            .filter(|st| st.needs_a_person())
            .map(|st| c.get(st))
            .sum();
        let settled = in_flight == 0 && waiting == 0;
        if !settled || c.get(JobState::Done) + needs_person == 0 {
            return Ok(());
        }
        let generation = self.store.batch_last_event(s.id)?;
        let results = std::path::Path::new(&s.output_dir).join(crate::output::RESULTS_FILE);
        self.enqueue(
            Event::BatchFinished,
            &format!("batch.finished:{}:{generation}", s.id),
            serde_json::json!({
                "batch": s.name,
                "provider": s.provider,
                "done": c.get(JobState::Done),
                "needs_person": needs_person,
                "held_by_budget": held,
                "credits_spent": s.credits_spent,
                "output_dir": s.output_dir,
                "results_file": results,
            }),
        )
    }

    fn budget_reached(&self, s: &BatchSummary) -> Result<(), StoreError> {
        let held = self.store.held_jobs(s.id)?;
        let Some(budget) = s.budget_credits else {
            return Ok(());
        };
        if held.is_empty() {
            return Ok(());
        }
        self.enqueue(
            Event::BudgetReached,
            &format!("budget.reached:{}:{budget}", s.id),
            serde_json::json!({
                "batch": s.name,
                "provider": s.provider,
                "budget_credits": budget,
                "credits_spent": s.credits_spent,
                "held_jobs": held.len(),
            }),
        )
    }
}
