//! `recast run`'s planning: the manifest read and planned in chunks, its jobs staged on disk
//! ([`crate::plan::plan_streamed`]), so a run holds the jobs in flight rather than the batch;
//! or, when the manifest has any mistake, read whole, which reports every mistake as `recast
//! plan` does. Then the batch registered, and what the run will do said.
//!
//! Owns: choosing between the two, the words a run says about its plan, and what a run keeps
//! of it (digests, stamp). May not: drive the engine (`run_cmd` does).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use super::ExitCode;
use super::args::RunArgs;
use super::plan_cmd::load_manifest;
use super::real_provider::{check_balance, unpublishable_subjects};
use super::run_cmd::store_failure;
use crate::engine::{MediaPublisher, RegisterError, StoredSpec, register, register_staged};
use crate::manifest::{BatchSpec, KnownDigests, LoadOptions, ManifestStream};
use crate::plan::{JobStatus, Plan, Prober, StreamError, StreamedPlan, make_plan, plan_streamed};
use crate::settings::Settings;
use crate::store::{InputStamp, ReconcileReport, StagedJob, Store, StoreError};

/// Subjects expanded, probed and staged at a time (a manifest entry is never cut: a glob
/// brings up to 10,000 at once).
const CHUNK: usize = 2_000;

/// [`CHUNK`], or `RECAST_PLAN_CHUNK` (tests plan a few subjects in several chunks with it).
fn chunk_size() -> usize {
    std::env::var("RECAST_PLAN_CHUNK")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CHUNK)
}

/// A manifest as a run takes it in: planned in chunks, or read whole and planned later.
pub(super) enum Intake {
    Streamed(Box<StreamedPlan>),
    Whole(Box<BatchSpec>),
}

impl Intake {
    pub(super) fn batch(&self) -> &BatchSpec {
        match self {
            Intake::Streamed(plan) => &plan.batch,
            Intake::Whole(batch) => batch,
        }
    }

    pub(super) fn batch_mut(&mut self) -> &mut BatchSpec {
        match self {
            Intake::Streamed(plan) => &mut plan.batch,
            Intake::Whole(batch) => batch,
        }
    }

    /// The subject images the publisher cannot publish (for the real provider).
    pub(super) fn unpublishable(&self, publisher: &MediaPublisher) -> usize {
        let Intake::Streamed(plan) = self else {
            return unpublishable_subjects(self.batch(), publisher);
        };
        let unpublishable = |row: Result<crate::store::StagedJob, _>| match row {
            Ok(row) => serde_json::from_str::<StoredSpec>(&row.job.spec_json)
                .map_or(true, |spec| !publisher.can_publish(&spec.image)),
            // A job that cannot be read back cannot be sent either: the run stops, saying so.
            Err(_) => true,
        };
        plan.staged
            .read(false, |rows| rows.map(unpublishable).filter(|&u| u).count())
            .unwrap_or(1)
    }
}

/// Read the manifest: planned in chunks when it has no mistake, else whole (which prints every
/// mistake, and fails the run).
pub(super) async fn take_in(
    args: &RunArgs,
    settings: &Settings,
    store: Option<&Store>,
    known: Option<Arc<dyn KnownDigests>>,
    provider_id: &str,
) -> Result<Intake, ExitCode> {
    let options = LoadOptions {
        allowed_roots: settings.allowed_roots.clone(),
        known: known.clone(),
    };
    if let Ok(stream) = ManifestStream::open(&args.manifest, &options, chunk_size()) {
        let prober = Prober::new(settings.engine.allow_private_networks);
        let planned = plan_streamed(
            stream,
            provider_id,
            &settings.prices,
            store,
            &prober,
            crate::engine::staged_job,
        )
        .await;
        match planned {
            Ok(plan) => return Ok(Intake::Streamed(Box::new(plan))),
            // No staging file (a full or read-only `$TMPDIR`), or a store that failed a read:
            // the whole path needs neither the one nor more of the other.
            Err(StreamError::Store(e)) => {
                eprintln!("warning: cannot plan the manifest in chunks ({e}); planning it whole");
            }
            // Planned whole below, which says what is wrong in the words `recast plan` uses.
            Err(StreamError::Unstreamable | StreamError::Plan(_)) => {}
        }
    }
    load_manifest(&args.manifest, settings, known)
        .await
        .map(|batch| Intake::Whole(Box::new(batch)))
}

/// A batch registered: its id, and its plan (for the stamp and the digests kept).
pub(super) struct Registered {
    pub batch_id: i64,
    pub plan: Planned,
}

pub(super) enum Planned {
    Streamed(Box<StreamedPlan>),
    Whole(Box<Plan>),
}

impl Planned {
    pub(super) fn batch(&self) -> &BatchSpec {
        match self {
            Planned::Streamed(plan) => &plan.batch,
            Planned::Whole(plan) => &plan.batch,
        }
    }

    /// Keep the digests (and image headers) of the files the plan read.
    pub(super) fn remember(&self, store: &Store) {
        let racy = super::resume::racy_window();
        let kept = match self {
            Planned::Streamed(plan) => crate::plan::known::remember_staged(store, plan, racy),
            Planned::Whole(plan) => crate::plan::known::remember(store, plan, racy),
        };
        if let Err(e) = kept {
            tracing::warn!("cannot keep the digests of the files read: {e}");
        }
    }

    /// Keep the stamp of what the plan read (see `plan::stamp`) as `stamp` describes it;
    /// `false` if it cannot be stamped. A plan made in chunks writes it as it makes it, a
    /// record a file read back from the staging file, never whole.
    pub(super) fn keep_stamp(
        &self,
        store: &Store,
        stamp: &InputStamp,
        read_at: SystemTime,
    ) -> Result<bool, StoreError> {
        let racy = super::resume::racy_window();
        let plan = match self {
            Planned::Whole(plan) => {
                return match crate::plan::stamp::encode(plan, read_at, racy) {
                    Some(files) => store.keep_stamp(stamp, std::iter::once(Some(files))),
                    None => Ok(false),
                };
            }
            Planned::Streamed(plan) => plan,
        };
        if !crate::plan::stamp::stampable(&plan.batch) {
            return Ok(false);
        }
        plan.staged.read(false, |rows| {
            let records =
                crate::plan::stamp::records(stamp_paths(&plan.batch, rows), read_at, racy);
            store.keep_stamp(stamp, records)
        })?
    }
}

/// What a plan made in chunks read: the manifest, listed folders and reference video, then
/// each staged image (`None` for a staged row that cannot be read back).
fn stamp_paths<'a>(
    batch: &'a BatchSpec,
    rows: &'a mut dyn Iterator<Item = Result<StagedJob, StoreError>>,
) -> impl Iterator<Item = Option<PathBuf>> + 'a {
    let images = rows.filter_map(|row| match row {
        Ok(row) => row.image_path.map(|p| Some(PathBuf::from(p))),
        Err(_) => Some(None),
    });
    crate::plan::stamp::batch_paths(batch)
        .map(|p| Some(p.to_path_buf()))
        .chain(images)
}

/// Plan the batch (unless it was planned in chunks), register it, say what the run will do,
/// and stop before spending what the account cannot pay.
pub(super) async fn plan_and_register(
    store: &Arc<Store>,
    intake: Intake,
    settings: &Settings,
    provider_id: &str,
    args: &RunArgs,
) -> Result<Registered, ExitCode> {
    let output_dir = match args.simulate {
        true => intake.batch().output_dir.join("simulated"),
        false => intake.batch().output_dir.clone(),
    };
    let registered = match intake {
        Intake::Streamed(plan) => register_staged(store, &plan, provider_id, &output_dir, 0)
            .map(|report| (report, Planned::Streamed(plan))),
        Intake::Whole(batch) => {
            // The manifest's own URLs follow the user's setting, even in a --simulate trial
            // (which only lets recast reach its own loopback simulator).
            let prober = Prober::new(settings.engine.allow_private_networks);
            let plan = make_plan(*batch, provider_id, &settings.prices, Some(store), &prober)
                .await
                .map_err(|e| {
                    eprintln!("error: {e}");
                    ExitCode::Invalid
                })?;
            register(store, &plan, provider_id, &output_dir, 0)
                .map(|report| (report, Planned::Whole(Box::new(plan))))
        }
    };
    let (report, plan) = registered.map_err(|e| match e {
        RegisterError::Store(e) => store_failure(e),
        e => {
            eprintln!("error: {e}");
            ExitCode::Invalid
        }
    })?;
    say_what_runs(store, &plan, &report, &output_dir, settings, args).await?;
    Ok(Registered {
        batch_id: report.batch_id,
        plan,
    })
}

/// What the run found and will do: clips already made, a cancel, tasks lost with a simulator,
/// what it submits and at what cost (checked against the balance), subjects left out.
async fn say_what_runs(
    store: &Store,
    plan: &Planned,
    report: &ReconcileReport,
    output_dir: &std::path::Path,
    settings: &Settings,
    args: &RunArgs,
) -> Result<(), ExitCode> {
    if report.found_in_output > 0 {
        eprintln!(
            "{} clips found whole in {} (its {}): done, not submitted again",
            report.found_in_output,
            output_dir.display(),
            crate::output::RESULTS_FILE
        );
    }
    let batch_id = report.batch_id;
    if let Ok(summary) = store.batch_summary(batch_id)
        && summary.cancelled
    {
        eprintln!(
            "{} was cancelled by a person: nothing of it is submitted until `recast resume {}`",
            summary.name, summary.name
        );
    }
    // The simulator lives and dies with this process: tasks a previous one held are gone.
    if args.simulate {
        match store.restart_lost_tasks(batch_id).map_err(store_failure)? {
            0 => {}
            n => eprintln!(
                "{n} jobs were in flight with a simulator that has stopped: submitted again"
            ),
        }
    }
    let (subjects, to_submit, credits) = match plan {
        Planned::Streamed(p) => (p.subjects, p.to_submit, p.to_submit_credits),
        Planned::Whole(p) => {
            let (n, credits) = p.to_submit();
            (p.batch.jobs.len(), n, credits)
        }
    };
    let to_submit = to_submit.saturating_sub(report.found_in_output);
    eprintln!(
        "{}: {} subjects, {} to submit{}; clips go to {}{}",
        plan.batch().name,
        subjects,
        to_submit,
        credits
            .map(|c| format!(" (at most {c} credits ≈ {:.3} USD)", c as f64 / 1000.0))
            .unwrap_or_default(),
        output_dir.display(),
        if args.simulate {
            " (simulated: nothing is billed)"
        } else {
            ""
        },
    );
    if let Some(needed) = credits.filter(|_| to_submit > 0) {
        check_balance(settings, needed, args.spend_available).await?;
    }
    say_left_out(plan);
    Ok(())
}

/// One line for each subject the plan found invalid, sorted by subject id.
fn say_left_out(plan: &Planned) {
    match plan {
        Planned::Whole(plan) => {
            for job in plan.jobs().filter(|j| j.status == JobStatus::Invalid) {
                eprintln!(
                    "left out: {}: {}",
                    job.spec.subject_id,
                    job.problems.join("; ")
                );
            }
        }
        Planned::Streamed(plan) if plan.invalid > 0 => {
            let said = plan.staged.read(true, |rows| {
                for row in rows.map_while(Result::ok) {
                    let why = row.job.invalid_reason.unwrap_or_default();
                    eprintln!("left out: {}: {why}", row.job.subject_id);
                }
            });
            if let Err(e) = said {
                eprintln!("warning: cannot list the subjects left out: {e}");
            }
        }
        Planned::Streamed(_) => {}
    }
}
