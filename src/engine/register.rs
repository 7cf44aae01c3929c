//! Registering a plan in the store: the batch (or its reconciliation with a changed manifest)
//! and one job per subject, each carrying the request it will be submitted with.
//!
//! Shared by `recast run` and the daemon, so both register batches the same way. Before the
//! store hears of a job, the output folder is asked: a clip its results file names and that is
//! there whole makes the job `done`, whatever this state folder remembers; and the folder is
//! held for this state folder, so a second state folder cannot fill it at the same time.

use std::path::Path;

use super::StoredSpec;
use crate::manifest::{BatchSpec, MediaSource};
use crate::media::VideoInfo;
use crate::output::{self, OutputBusy};
use crate::plan::{JobStatus, Plan, PlannedJob, StreamedPlan};
use crate::pricing::usd_to_credits_floor;
use crate::store::{
    AdoptedSubmit, JobState, LandedClip, NewBatch, NewJob, ReconcileReport, StagedJob, Store,
    StoreError,
};

#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    OutputBusy(#[from] OutputBusy),
    #[error(
        "{this}: the batch name `{name}` is already taken by {other}, a different manifest in \
         this state folder; two manifests with one name would overwrite each other's batch. \
         Give one of them another `name:` (or remove the other file if this one replaces it)"
    )]
    NameTaken {
        name: String,
        this: String,
        other: String,
    },
}

/// A batch is one manifest: a second, different manifest file declaring a name already
/// registered (for this provider) is refused while the first still exists and still declares
/// it. A manifest that was renamed or moved (its old file gone or renamed inside) takes its
/// batch with it, and so does a drop into an inbox over one the inbox accepted before (a file in
/// an inbox's `accepted/` folder is history: dropping a manifest again is how it is updated).
fn check_name_is_free(
    store: &Store,
    name: &str,
    provider: &str,
    manifest: &Path,
) -> Result<(), RegisterError> {
    let Some(id) = store.batch_id(name, provider)? else {
        return Ok(());
    };
    let Some(source) = store.batch_source(id)? else {
        return Ok(());
    };
    let other = Path::new(&source.manifest_path);
    let inbox_history = other
        .parent()
        .and_then(Path::file_name)
        .is_some_and(|folder| folder == crate::daemon::ACCEPTED_FOLDER);
    if inbox_history {
        return Ok(());
    }
    let same_file = match (std::fs::metadata(other), std::fs::metadata(manifest)) {
        (Ok(a), Ok(b)) => {
            use std::os::unix::fs::MetadataExt;
            (a.dev(), a.ino()) == (b.dev(), b.ino())
        }
        // The first manifest is gone (renamed, moved, deleted): this one takes the batch.
        (Err(_), _) => return Ok(()),
        (Ok(_), Err(_)) => false,
    };
    if same_file || crate::manifest::declared_name(other).as_deref() != Some(name) {
        return Ok(());
    }
    Err(RegisterError::NameTaken {
        name: name.to_owned(),
        this: manifest.display().to_string(),
        other: other.display().to_string(),
    })
}

/// Register `plan` for `provider`, its clips landing in `output_dir`. Subjects the plan found
/// invalid are registered as `rejected` with the reason, so `recast status` shows them.
pub fn register(
    store: &Store,
    plan: &Plan,
    provider: &str,
    output_dir: &Path,
    priority: i64,
) -> Result<ReconcileReport, RegisterError> {
    let batch = &plan.batch;
    let (new_batch, made) = prepare(store, batch, provider, output_dir, priority)?;
    // Built one at a time as the store takes them: a large batch is not held twice.
    let jobs = plan.jobs().map(|j| {
        let mut job = new_job(&j, batch, plan.reference.duration_ms);
        found_in_output(&mut job, j.status, &made, output_dir, provider);
        job
    });
    let report = store.register_batch(&new_batch, jobs)?;
    conclude(store, report, &batch.name, output_dir)
}

/// [`register`] for a plan made in chunks: its jobs come from the staging file, sorted by
/// subject id as a whole plan's are, into one transaction.
pub fn register_staged(
    store: &Store,
    plan: &StreamedPlan,
    provider: &str,
    output_dir: &Path,
    priority: i64,
) -> Result<ReconcileReport, RegisterError> {
    let (new_batch, made) = prepare(store, &plan.batch, provider, output_dir, priority)?;
    let report = plan.staged.read(false, |staged| {
        let jobs = staged.map(|staged| {
            let StagedJob {
                mut job, status, ..
            } = staged?;
            let status = JobStatus::from_label(&status).unwrap_or(JobStatus::Invalid);
            found_in_output(&mut job, status, &made, output_dir, provider);
            Ok(job)
        });
        store.register_batch_from(&new_batch, jobs)
    })??;
    conclude(store, report, &plan.batch.name, output_dir)
}

/// A planned job as the store registers it (what the output folder holds of it aside).
pub fn new_job(j: &PlannedJob<'_>, batch: &BatchSpec, duration_ms: u64) -> NewJob {
    NewJob {
        key: j.spec.key.hex().as_str().to_owned(),
        subject_id: j.spec.subject_id.to_string(),
        output_name: j.spec.output_name.to_string(),
        spec_json: StoredSpec::new(&j.spec.settings, &j.spec.image, &batch.reference_video)
            .to_json(),
        duration_ms,
        estimate_credits: j.estimate.map(|e| e.credits),
        invalid_reason: (!j.problems.is_empty()).then(|| j.problems.join("; ")),
        landed: None,
        adopt: None,
    }
}

/// A planned job as a streamed plan stages it: what the store registers, and the image's file
/// and header for the stamp and the digests kept.
pub fn staged_job(j: PlannedJob<'_>, batch: &BatchSpec, reference: &VideoInfo) -> StagedJob {
    let local = match &j.spec.image {
        MediaSource::Local(local) => Some(local),
        MediaSource::Remote { .. } => None,
    };
    StagedJob {
        job: new_job(&j, batch, reference.duration_ms),
        status: j.status.label(),
        image_path: local.and_then(|l| l.path().to_str()).map(str::to_owned),
        image_sha256: local.map(|l| l.sha256()),
        image: j.image.cloned(),
    }
}

/// Before the store hears of the batch: its name is free, the output folder is held for this
/// state folder and has a results file, and what that file records is read.
fn prepare(
    store: &Store,
    batch: &BatchSpec,
    provider: &str,
    output_dir: &Path,
    priority: i64,
) -> Result<(NewBatch, output::ResultsIndex), RegisterError> {
    // Stored absolute, so a run from another working folder names the same file.
    let manifest_path =
        std::path::absolute(&batch.manifest_path).unwrap_or_else(|_| batch.manifest_path.clone());
    check_name_is_free(store, &batch.name, provider, &manifest_path)?;
    let state_dir = store.path().parent().unwrap_or(Path::new("."));
    output::hold(output_dir, state_dir)?;
    // The results file exists from the batch's first registration on, so after a crash its lack
    // of a submit's line proves the submit never left (see `engine::never_sent`).
    if let Err(e) =
        output::OutputDir::open(output_dir).and_then(|d| d.open_append(output::RESULTS_FILE))
    {
        tracing::warn!(folder = %output_dir.display(), "cannot create {}: {e}", output::RESULTS_FILE);
    }
    let new_batch = NewBatch {
        name: batch.name.clone(),
        provider: provider.to_owned(),
        manifest_path: manifest_path.display().to_string(),
        base_dir: batch.base_dir.display().to_string(),
        output_dir: output_dir.display().to_string(),
        budget_credits: batch.budget_usd.map(usd_to_credits_floor),
        retries: batch.retries,
        priority,
        canary: batch.canary,
    };
    Ok((new_batch, output::ResultsIndex::read(output_dir)))
}

/// What the output folder holds of a job the store is about to hear of: a clip its results
/// file names and that is there whole (the job is `done`), or a submit only it remembers.
fn found_in_output(
    job: &mut NewJob,
    status: JobStatus,
    made: &output::ResultsIndex,
    output_dir: &Path,
    provider: &str,
) {
    if made.is_empty() {
        return;
    }
    // Only jobs this state folder has not seen made are checked against the folder; and a
    // line is read back only for them.
    let unknown_here = matches!(status, JobStatus::New | JobStatus::Changed);
    let wanted = status != JobStatus::Known(JobState::Done) && job.invalid_reason.is_none();
    let Some(line) = (wanted || unknown_here)
        .then(|| made.get(&job.key))
        .flatten()
    else {
        return;
    };
    job.landed = Some(&line).filter(|_| wanted).and_then(|entry| {
        let path = output::verify(output_dir, entry)?;
        Some(LandedClip {
            path: path.to_string_lossy().into_owned(),
            sha256: entry.sha256.clone(),
            bytes: entry.bytes,
            credits: entry.credits,
            task_id: entry.task_id.clone(),
        })
    });
    // A submit only the output folder remembers (a lost state folder) is followed, never
    // billed again; the in-process simulator's tasks die with it, so not for it.
    job.adopt = Some(&line)
        .filter(|_| unknown_here && job.landed.is_none() && provider != "simulator")
        .filter(|line| line.provider == provider)
        .filter(|line| matches!(line.state.as_str(), "submitting" | "submitted"))
        .filter(|line| {
            line.task_id
                .as_deref()
                .is_none_or(crate::provider::is_task_id)
        })
        .and_then(|line| {
            Some(AdoptedSubmit {
                idempotency_key: line.idempotency_key.clone()?,
                task_id: line.task_id.clone().filter(|_| line.state == "submitted"),
            })
        });
}

/// After the store registered the batch: credits the output folder records for jobs this state
/// folder never knew, and the log lines.
fn conclude(
    store: &Store,
    report: ReconcileReport,
    name: &str,
    output_dir: &Path,
) -> Result<ReconcileReport, RegisterError> {
    // What the output folder records as spent on jobs this state folder never knew (versions of
    // the batch made from a state folder since lost) still counts against the budget.
    let mut failed = None;
    let outside = output::recorded_credits(output_dir, |key| {
        store.has_job_key(report.batch_id, key).unwrap_or_else(|e| {
            failed.get_or_insert(e);
            true
        })
    });
    if let Some(e) = failed {
        return Err(e.into());
    }
    store.set_outside_credits(report.batch_id, outside)?;
    if report.adopted > 0 {
        tracing::warn!(
            batch = %name,
            count = report.adopted,
            "submits recorded only by the output folder are followed (their tasks polled), not sent again"
        );
    }
    if report.found_in_output > 0 {
        tracing::warn!(
            batch = %name,
            count = report.found_in_output,
            "clips found whole in the output folder are done: not submitted again"
        );
    }
    tracing::info!(
        batch = %name,
        added = report.added,
        kept = report.kept,
        dropped = report.dropped,
        "batch registered"
    );
    Ok(report)
}
