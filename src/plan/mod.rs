//! The plan: a manifest's jobs probed, checked against the provider's input rules, priced and
//! compared with what the store already has. Nothing here spends anything.
//!
//! Owns: turning a [`BatchSpec`] into a [`Plan`] (per-job image facts, problems, estimate and
//! status; totals; the budget verdict) and the stable JSON shape `recast plan --json` prints.
//!
//! May not: write to the store or print. A bad subject is reported and left out; a bad
//! reference video fails the whole plan.

use std::collections::HashMap;

use futures_util::StreamExt;

use crate::manifest::{BatchSpec, JobSpec, Location, MediaSource};
use crate::media::{self, ImageInfo, Orientation, VideoInfo};
use crate::pricing::{Estimate, PriceTable, usd_to_credits_floor};
use crate::store::{JobState, Store, StoreError};

mod json;
pub mod known;
mod prober;
pub mod stamp;
pub use json::round_usd;
pub use prober::Prober;

/// Subject images probed at once.
const PROBES_AT_ONCE: usize = 16;

/// A job's standing against the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Never made; would be submitted.
    New,
    /// Made before, under a different key (something that shapes the clip changed): would be
    /// submitted again, and its clip lands beside the old one.
    Changed,
    /// Already in the store under this key, in the given state.
    Known(JobState),
    /// Breaks an input rule: left out, nothing spent.
    Invalid,
}

impl JobStatus {
    pub fn label(self) -> String {
        match self {
            JobStatus::New => "new".into(),
            JobStatus::Changed => "changed".into(),
            JobStatus::Known(s) => s.as_str().into(),
            JobStatus::Invalid => "invalid".into(),
        }
    }

    /// Whether running the plan would submit (and pay for) this job.
    pub fn would_submit(self) -> bool {
        matches!(
            self,
            JobStatus::New | JobStatus::Changed | JobStatus::Known(JobState::Planned)
        )
    }
}

/// What planning found of one job. Kept beside the specs (`Plan::batch.jobs`, same order),
/// not with a copy of each: a large batch is held once.
#[derive(Debug, Clone)]
pub struct JobFacts {
    image: Option<ImageInfo>,
    problems: Vec<String>,
    estimate: Option<Estimate>,
    status: JobStatus,
}

/// One job of the plan: its spec and what planning found of it.
#[derive(Debug, Clone, Copy)]
pub struct PlannedJob<'a> {
    pub spec: &'a JobSpec,
    pub image: Option<&'a ImageInfo>,
    /// Why the subject cannot be submitted; empty when it can.
    pub problems: &'a [String],
    pub estimate: Option<Estimate>,
    pub status: JobStatus,
}

/// The budget verdict.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum BudgetVerdict {
    NoBudget,
    Within {
        budget_credits: u64,
        committed_credits: u64,
        to_submit_credits: u64,
    },
    Over {
        budget_credits: u64,
        committed_credits: u64,
        to_submit_credits: u64,
    },
    /// Some job that would be submitted has no known price: it cannot pass a budget.
    PriceUnknown {
        budget_credits: u64,
        subjects: Vec<String>,
    },
}

impl BudgetVerdict {
    pub fn passes(&self) -> bool {
        matches!(self, BudgetVerdict::NoBudget | BudgetVerdict::Within { .. })
    }
}

#[derive(Debug, Clone)]
pub struct Plan {
    /// The manifest's batch; [`Plan::jobs`] pairs its jobs with what planning found.
    pub batch: BatchSpec,
    pub provider: String,
    pub reference: VideoInfo,
    facts: Vec<JobFacts>,
    /// Credits already committed to this batch in the store (accepted or possibly billed).
    pub committed_credits: u64,
    pub budget: BudgetVerdict,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{file}:{line}:{column}: reference.video: {message}")]
    Reference {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Read a manifest and, when it has mistakes, also check what can still be checked of its
/// reference video, so every mistake is reported at once, in file order: a too-long clip
/// together with a typo, not one run later. Used by `recast plan` and the daemon alike.
pub async fn load_manifest(
    path: &std::path::Path,
    options: &crate::manifest::LoadOptions,
    prober: &Prober,
) -> Result<BatchSpec, crate::manifest::ManifestErrors> {
    let (mut errors, hint) = match crate::manifest::load_with_hint(path, options) {
        Ok(batch) => return Ok(batch),
        Err(failure) => failure,
    };
    if let Some(hint) = hint {
        let mistake = |message: String| crate::manifest::ManifestError {
            file: path.to_path_buf(),
            location: Some(hint.location),
            field: "reference.video".to_owned(),
            message,
        };
        match prober.video(&hint.video).await {
            Err(e) => errors.0.push(mistake(e.to_string())),
            Ok(info) => {
                let orientation = if hint.image_orientation_used {
                    Orientation::Image
                } else {
                    Orientation::Video
                };
                errors.0.extend(
                    media::check_video(&info, orientation)
                        .into_iter()
                        .map(|v| mistake(v.message)),
                );
            }
        }
        errors.0.sort_by_key(|e| e.location);
    }
    Err(errors)
}

/// How a piece of media is named to a person: its path relative to the manifest, or its URL.
pub fn media_label(source: &MediaSource) -> &str {
    match source {
        MediaSource::Local(local) => local.rel(),
        MediaSource::Remote { url } => url,
    }
}

fn file_name_of(source: &MediaSource) -> &str {
    let label = media_label(source);
    let path = label.split(['?', '#']).next().unwrap_or(label);
    path.rsplit('/').next().unwrap_or(path)
}

/// Probe, check and price a batch, and compare it with the store (if one is given).
pub async fn make_plan(
    batch: BatchSpec,
    provider: &str,
    prices: &PriceTable,
    store: Option<&Store>,
    prober: &Prober,
) -> Result<Plan, PlanError> {
    let file = batch.manifest_path.display().to_string();
    let reference_error = |loc: Location, message: String| PlanError::Reference {
        file: file.clone(),
        line: loc.line,
        column: loc.column,
        message,
    };
    let reference = prober.video(&batch.reference_video).await.map_err(|e| {
        reference_error(
            batch.reference_location,
            format!("{}: {e}", media_label(&batch.reference_video)),
        )
    })?;
    // Rules that hold whatever the orientation fail the whole plan; the 10 s cap of
    // `image` orientation only fails the subjects that use it.
    let loose = media::check_video(&reference, Orientation::Video);
    if !loose.is_empty() {
        let message = loose
            .iter()
            .map(|v| v.message.clone())
            .collect::<Vec<_>>()
            .join("; ");
        return Err(reference_error(
            batch.reference_location,
            format!("{}: {message}", media_label(&batch.reference_video)),
        ));
    }
    let strict: Vec<String> = media::check_video(&reference, Orientation::Image)
        .into_iter()
        .map(|v| v.message)
        .collect();

    let known = match store {
        Some(store) => match store.batch_id(&batch.name, provider)? {
            Some(id) => Some((id, store.known_jobs(id)?)),
            None => None,
        },
        None => None,
    };
    let committed_credits = match (store, &known) {
        (Some(store), Some((id, _))) => {
            let s = store.batch_summary(*id)?;
            s.credits_spent + s.credits_uncertain
        }
        _ => 0,
    };
    let subjects_with_clips: HashMap<&str, ()> = known
        .iter()
        .flat_map(|(_, jobs)| jobs.values())
        .filter(|j| j.state == JobState::Done)
        .map(|j| (j.subject_id.as_str(), ()))
        .collect();

    // Probes overlap (most time is waiting on disk or network); results keep manifest order.
    // Each probe takes a copy of its image's source by index, not a borrow of the spec, which
    // keeps this future `Send` for the daemon's spawned tasks.
    let specs = &batch.jobs;
    let mut facts = Vec::with_capacity(specs.len());
    let headers = known::KnownHeaders::of(store);
    let mut probed = futures_util::stream::iter(0..specs.len())
        .map(|i| {
            let known = headers.get(&specs[i].image);
            let image = specs[i].image.clone();
            async move {
                match known {
                    Some(info) => Ok(info),
                    None => prober.image(&image).await,
                }
            }
        })
        .buffered(PROBES_AT_ONCE);
    let mut index = 0;
    while let Some(probe) = probed.next().await {
        let spec = &specs[index];
        index += 1;
        let mut problems = Vec::new();
        let image = match probe {
            Ok(info) => {
                problems.extend(media::check_image(&info).into_iter().map(|v| v.message));
                if let Some(v) = media::check_extension(file_name_of(&spec.image), info.format) {
                    problems.push(v.message);
                }
                Some(info)
            }
            Err(e) => {
                problems.push(format!("{}: {e}", media_label(&spec.image)));
                None
            }
        };
        if spec.settings.orientation == Orientation::Image {
            problems.extend(strict.iter().cloned());
        }
        let estimate = prices.estimate(
            &spec.settings.model,
            spec.settings.mode,
            reference.duration_ms,
        );
        let status = if !problems.is_empty() {
            JobStatus::Invalid
        } else {
            match known
                .as_ref()
                .and_then(|(_, k)| k.get(spec.key.hex().as_str()))
            {
                Some(k) => JobStatus::Known(k.state),
                None if subjects_with_clips.contains_key(&*spec.subject_id) => JobStatus::Changed,
                None => JobStatus::New,
            }
        };
        facts.push(JobFacts {
            image,
            problems,
            estimate,
            status,
        });
    }
    drop(probed);
    let mut plan = Plan {
        batch,
        provider: provider.to_owned(),
        reference,
        facts,
        committed_credits,
        budget: BudgetVerdict::NoBudget,
    };
    plan.budget = verdict(&plan, committed_credits);
    Ok(plan)
}

fn verdict(plan: &Plan, committed: u64) -> BudgetVerdict {
    let Some(max_usd) = plan.batch.budget_usd else {
        return BudgetVerdict::NoBudget;
    };
    let budget_credits = usd_to_credits_floor(max_usd);
    let submitting = plan.jobs().filter(|j| j.status.would_submit());
    let unpriced: Vec<String> = submitting
        .clone()
        .filter(|j| j.estimate.is_none())
        .map(|j| j.spec.subject_id.to_string())
        .collect();
    if !unpriced.is_empty() {
        return BudgetVerdict::PriceUnknown {
            budget_credits,
            subjects: unpriced,
        };
    }
    let to_submit_credits: u64 = submitting
        .filter_map(|j| j.estimate.map(|e| e.credits))
        .sum();
    if committed + to_submit_credits <= budget_credits {
        BudgetVerdict::Within {
            budget_credits,
            committed_credits: committed,
            to_submit_credits,
        }
    } else {
        BudgetVerdict::Over {
            budget_credits,
            committed_credits: committed,
            to_submit_credits,
        }
    }
}

impl Plan {
    /// The plan's jobs in manifest order.
    pub fn jobs(&self) -> impl ExactSizeIterator<Item = PlannedJob<'_>> + Clone {
        self.batch
            .jobs
            .iter()
            .zip(&self.facts)
            .map(|(spec, facts)| PlannedJob {
                spec,
                image: facts.image.as_ref(),
                problems: &facts.problems,
                estimate: facts.estimate,
                status: facts.status,
            })
    }

    /// Jobs that running the plan would submit, and their estimated total (`None` if any is unpriced).
    pub fn to_submit(&self) -> (usize, Option<u64>) {
        let (mut n, mut credits) = (0, Some(0));
        for job in self.jobs().filter(|j| j.status.would_submit()) {
            n += 1;
            credits = credits.zip(job.estimate).map(|(sum, e)| sum + e.credits);
        }
        (n, credits)
    }

    pub fn invalid_count(&self) -> usize {
        self.jobs()
            .filter(|j| j.status == JobStatus::Invalid)
            .count()
    }
}
