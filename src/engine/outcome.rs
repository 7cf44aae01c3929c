//! Telling the output folder's results file, for a person, that a job came to need one and
//! why (an outcome line: rejected, failed, expired, lost or unknown, with the provider's code
//! and request id). Best effort: the store already holds the state; a folder that cannot be
//! written only costs the line.
//!
//! May not: write any line the folder reads back for money (`output::OUTCOME_STATES` are
//! skipped when it does).

use super::Engine;
use crate::output::ResultLine;
use crate::provider::{ErrorRef, Provider};
use crate::store::now_ms;

impl<P: Provider> Engine<P> {
    pub(super) fn note_outcome(&self, job_id: i64) {
        let Ok(Some(job)) = self.store.job_brief(job_id) else {
            return;
        };
        if !job.state.needs_a_person() {
            return;
        }
        let Ok(batch) = self.store.batch_summary(job.batch_id) else {
            return;
        };
        let reference = ErrorRef {
            code: job.error_code,
            request_id: job.request_id,
        };
        let error = job.reason.map(|r| {
            if reference.is_empty() || r.contains(&reference.to_string()) {
                r
            } else {
                format!("{r}{reference}")
            }
        });
        let line = ResultLine {
            job_key: job.job_key,
            subject: job.subject,
            batch: batch.name,
            provider: batch.provider,
            task_id: job.task_id,
            credits: job.estimate_credits,
            state: job.state.as_str().to_owned(),
            at: now_ms(),
            error,
            ..Default::default()
        };
        let folder = std::path::Path::new(&batch.output_dir);
        let appended = self
            .folders
            .get(folder)
            .and_then(|dir| crate::output::append_unsynced_in(&dir, &line));
        if let Err(e) = appended {
            tracing::warn!(folder = %batch.output_dir, "cannot note an outcome in the results file: {e}");
        }
    }
}
