//! The plan: a manifest's jobs probed, checked against the provider's input rules, priced and
//! compared with what the store already has. Nothing here spends anything.
//!
//! Owns: turning a [`BatchSpec`] into a [`Plan`] (per-job image facts, problems, estimate and
//! status; totals; the budget verdict) and the stable JSON shape `recast plan --json` prints;
//! and planning a manifest in chunks into a staging file ([`plan_streamed`], `recast run`).
//! Planning each job is `facts`'s, for both.
//!
//! May not: write to the store or print. A bad subject is reported and left out; a bad
//! reference video fails the whole plan.

use crate::manifest::{BatchSpec, JobSpec, MediaSource};
use crate::media::{self, ImageInfo, Orientation, VideoInfo};
use crate::pricing::{Estimate, PriceTable, usd_to_credits_floor};
use crate::store::{JobState, Store, StoreError};

mod facts;
mod json;
pub mod known;
mod prober;
pub mod stamp;
mod streamed;
use facts::{Lookups, PlanContext};
pub use json::round_usd;
pub use prober::Prober;
pub use streamed::{StreamError, StreamedPlan, plan_streamed};

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

    /// The status [`JobStatus::label`] names.
    pub fn from_label(label: &str) -> Option<JobStatus> {
        match label {
            "new" => Some(JobStatus::New),
            "changed" => Some(JobStatus::Changed),
            "invalid" => Some(JobStatus::Invalid),
            state => JobState::parse(state).map(JobStatus::Known),
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

impl JobFacts {
    /// The job `spec` with what planning found of it.
    pub fn of<'a>(&'a self, spec: &'a JobSpec) -> PlannedJob<'a> {
        PlannedJob {
            spec,
            image: self.image.as_ref(),
            problems: &self.problems,
            estimate: self.estimate,
            status: self.status,
        }
    }
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

pub(super) fn file_name_of(source: &MediaSource) -> &str {
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
    let context = PlanContext::new(&batch, provider, prices, store, prober, Lookups::Load).await?;
    let facts = context.facts_of(&batch.jobs, prober).await?;
    let committed_credits = context.committed_credits;
    let mut plan = Plan {
        batch,
        provider: provider.to_owned(),
        reference: context.reference,
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
            .map(|(spec, facts)| facts.of(spec))
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
