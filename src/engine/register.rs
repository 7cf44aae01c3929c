//! Registering a plan in the store: the batch (or its reconciliation with a changed manifest)
//! and one job per subject, each carrying the request it will be submitted with.
//!
//! Shared by `recast run` and the daemon, so both register batches the same way.

use std::path::Path;

use super::StoredSpec;
use crate::plan::Plan;
use crate::pricing::usd_to_credits_floor;
use crate::store::{NewBatch, NewJob, ReconcileReport, Store, StoreError};

/// Register `plan` for `provider`, its clips landing in `output_dir`. Subjects the plan found
/// invalid are registered as `rejected` with the reason, so `recast status` shows them.
pub fn register(
    store: &Store,
    plan: &Plan,
    provider: &str,
    output_dir: &Path,
    priority: i64,
) -> Result<ReconcileReport, StoreError> {
    let batch = &plan.batch;
    // Built one at a time as the store takes them: a large batch is not held twice.
    let jobs = plan.jobs.iter().map(|j| NewJob {
        key: j.spec.key.0.clone(),
        subject_id: j.spec.subject_id.clone(),
        output_name: j.spec.output_name.clone(),
        spec_json: StoredSpec::new(&j.spec.settings, &j.spec.image, &batch.reference_video)
            .to_json(),
        duration_ms: plan.reference.duration_ms,
        estimate_credits: j.estimate.map(|e| e.credits),
        invalid_reason: (!j.problems.is_empty()).then(|| j.problems.join("; ")),
    });
    let report = store.register_batch(
        &NewBatch {
            name: batch.name.clone(),
            provider: provider.to_owned(),
            manifest_path: batch.manifest_path.display().to_string(),
            base_dir: batch.base_dir.display().to_string(),
            output_dir: output_dir.display().to_string(),
            budget_credits: batch.budget_usd.map(usd_to_credits_floor),
            retries: batch.retries,
            priority,
        },
        jobs,
    )?;
    tracing::info!(
        batch = %batch.name,
        added = report.added,
        kept = report.kept,
        dropped = report.dropped,
        "batch registered"
    );
    Ok(report)
}
