//! The poll stage's schedule: when each running task is asked next, on tokio's clock.
//!
//! Owns: the running tasks the stage follows (as many as are in flight, not the batch), when
//! each is due, which are being asked now, and when each one's progress was last written.
//!
//! May not: talk to the store or the provider, or decide how long to wait between polls (the
//! stage does, from [`super::config::PollSchedule`]). Held in memory only: after a restart the
//! store's running jobs are taken in again, each at the time the store last noted for it.

use std::collections::{BTreeSet, HashMap};

use tokio::time::Instant;

use crate::store::PollItem;

#[derive(Debug)]
struct Entry {
    item: PollItem,
    /// When it is due; `None` while it is being asked.
    due: Option<Instant>,
    /// When its progress was last written to the store, or else when the stage took it in:
    /// a task that ends within [`super::poll::PROGRESS_EVERY`] never writes its progress.
    progress_written: Option<Instant>,
}

/// A running task taken off the schedule to be asked now.
#[derive(Debug, Clone)]
pub struct DuePoll {
    pub item: PollItem,
    pub progress_written: Option<Instant>,
}

#[derive(Debug, Default)]
pub struct PollQueue {
    entries: HashMap<i64, Entry>,
    due: BTreeSet<(Instant, i64)>,
}

impl PollQueue {
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn contains(&self, job_id: i64) -> bool {
        self.entries.contains_key(&job_id)
    }

    /// Follow a task the stage did not know, due `at`, from `now`. One it knows is left as it
    /// is: its own schedule (or the poll asking it now) is newer than what the store says.
    pub fn follow(&mut self, item: PollItem, at: Instant, now: Instant) {
        let job_id = item.job_id;
        if self.entries.contains_key(&job_id) {
            return;
        }
        self.due.insert((at, job_id));
        self.entries.insert(
            job_id,
            Entry {
                item,
                due: Some(at),
                progress_written: Some(now),
            },
        );
    }

    /// The earliest task due by `now`, taken off the schedule until [`PollQueue::again`] or
    /// [`PollQueue::forget`] says what became of it.
    pub fn take_due(&mut self, now: Instant) -> Option<DuePoll> {
        let &(at, job_id) = self.due.first().filter(|(at, _)| *at <= now)?;
        self.due.remove(&(at, job_id));
        let entry = self.entries.get_mut(&job_id)?;
        entry.due = None;
        Some(DuePoll {
            item: entry.item.clone(),
            progress_written: entry.progress_written,
        })
    }

    /// How many times the task was asked (as the store counted them, and since).
    pub fn polls_of(&self, job_id: i64) -> Option<u32> {
        self.entries.get(&job_id).map(|e| e.item.polls)
    }

    /// The task asked goes on: due again `at`, one poll more, with when its progress was
    /// written and what it billed, if either changed.
    pub fn again(
        &mut self,
        job_id: i64,
        at: Instant,
        progress_written: Option<Instant>,
        billed: Option<u64>,
    ) {
        let Some(entry) = self.entries.get_mut(&job_id) else {
            return;
        };
        if billed.is_some() {
            entry.item.billed_credits = billed;
        }
        if let Some(old) = entry.due.replace(at) {
            self.due.remove(&(old, job_id));
        }
        entry.item.polls = entry.item.polls.saturating_add(1);
        entry.progress_written = progress_written.or(entry.progress_written);
        self.due.insert((at, job_id));
    }

    /// The task left `running` (finished, failed, or handed to a person): followed no more.
    pub fn forget(&mut self, job_id: i64) {
        if let Some(Entry { due: Some(at), .. }) = self.entries.remove(&job_id) {
            self.due.remove(&(at, job_id));
        }
    }

    /// Forget every task not being asked now that `running` (the store's running jobs, all of
    /// them) does not name: it left `running` by another way.
    pub fn keep_only(&mut self, running: &std::collections::HashSet<i64>) {
        let gone: Vec<i64> = self
            .entries
            .iter()
            .filter(|(id, e)| e.due.is_some() && !running.contains(id))
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            self.forget(id);
        }
    }

    /// When the next task is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.due.first().map(|(at, _)| *at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn item(job_id: i64) -> PollItem {
        PollItem {
            job_id,
            attempt_id: job_id,
            batch_id: 1,
            subject_id: format!("s{job_id}"),
            task_id: format!("t{job_id}"),
            polls: 0,
            duration_ms: 5000,
            submitted_at_ms: 0,
            billed_credits: None,
            due_at_ms: 0,
            failed_attempts: 0,
            retries: 0,
        }
    }

    #[test]
    fn tasks_come_due_in_time_order_and_one_being_asked_is_not_taken_twice() {
        let t0 = Instant::now();
        let mut q = PollQueue::default();
        q.follow(item(1), t0 + Duration::from_secs(2), t0);
        q.follow(item(2), t0 + Duration::from_secs(1), t0);
        assert!(q.take_due(t0).is_none(), "nothing due yet");
        assert_eq!(q.next_due(), Some(t0 + Duration::from_secs(1)));
        let first = q.take_due(t0 + Duration::from_secs(5)).unwrap();
        assert_eq!(first.item.job_id, 2);
        // Told again about a task being asked (the store still says it runs): left alone.
        q.follow(item(2), t0, t0);
        assert_eq!(
            q.take_due(t0 + Duration::from_secs(5)).unwrap().item.job_id,
            1
        );
        assert!(q.take_due(t0 + Duration::from_secs(5)).is_none());
        q.again(
            2,
            t0 + Duration::from_secs(9),
            Some(t0 + Duration::from_secs(7)),
            None,
        );
        let again = q.take_due(t0 + Duration::from_secs(9)).unwrap();
        assert_eq!(
            (again.item.polls, again.progress_written),
            (1, Some(t0 + Duration::from_secs(7)))
        );
        q.forget(2);
        q.forget(1);
        assert_eq!((q.len(), q.next_due()), (0, None));
    }

    #[test]
    fn tasks_the_store_no_longer_runs_are_forgotten_unless_being_asked() {
        let t0 = Instant::now();
        let mut q = PollQueue::default();
        for id in 1..=3 {
            q.follow(item(id), t0, t0);
        }
        let asked = q.take_due(t0).unwrap().item.job_id;
        q.keep_only(&[2].into_iter().collect());
        assert!(
            q.contains(asked),
            "a task being asked stays until its answer"
        );
        assert!(q.contains(2));
        assert_eq!(q.len(), if asked == 2 { 1 } else { 2 });
    }
}
