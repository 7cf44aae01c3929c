//! A plan made in chunks, for `recast run`: expansion, hashing, probing and checking go a few
//! thousand subjects at a time, and each planned job is staged on disk ([`StagedJobs`]) instead
//! of held, so planning a batch of 100,000 subjects holds about what planning 10,000 does.
//!
//! Owns: driving a [`ManifestStream`] through [`PlanContext::facts_of`] into the staging file,
//! and the totals a run reports. May not: register anything (the caller registers from the
//! staged jobs once the whole manifest proved valid) or print.
//!
//! A manifest with any mistake ends the stream ([`StreamError::Unstreamable`]): the caller
//! plans it whole ([`super::make_plan`]), which reports every mistake as it always did.

use super::facts::{Lookups, PlanContext};
use super::{JobStatus, PlanError, PlannedJob, Prober};
use crate::manifest::{BatchSpec, ManifestStream};
use crate::media::VideoInfo;
use crate::pricing::PriceTable;
use crate::store::{StagedJob, StagedJobs, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// Not a failure to show: plan the manifest whole, which says what is wrong.
    #[error("the manifest cannot be planned in chunks")]
    Unstreamable,
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A batch planned in chunks: its declaration, and its jobs staged on disk.
#[derive(Debug)]
pub struct StreamedPlan {
    /// The batch as declared, with what planning it read (`inputs`); `jobs` stays empty.
    pub batch: BatchSpec,
    pub reference: VideoInfo,
    pub staged: StagedJobs,
    pub subjects: usize,
    /// Jobs running the plan would submit, and their estimated total (`None` if any is
    /// unpriced), as [`super::Plan::to_submit`] counts them.
    pub to_submit: usize,
    pub to_submit_credits: Option<u64>,
    pub invalid: usize,
}

/// Plan `stream` chunk by chunk, staging each job as `stage` makes it from the job, the batch
/// and the reference video's facts.
pub async fn plan_streamed(
    mut stream: ManifestStream,
    provider: &str,
    prices: &PriceTable,
    store: Option<&Store>,
    prober: &Prober,
    mut stage: impl FnMut(PlannedJob<'_>, &BatchSpec, &VideoInfo) -> StagedJob,
) -> Result<StreamedPlan, StreamError> {
    let context = PlanContext::new(
        stream.batch(),
        provider,
        prices,
        store,
        prober,
        Lookups::Ask,
    )
    .await?;
    let mut staged = StagedJobs::new()?;
    let (mut to_submit, mut credits, mut invalid) = (0, Some(0u64), 0);
    loop {
        let chunk = match stream.next_chunk() {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(_) => return Err(StreamError::Unstreamable),
        };
        let facts = context.facts_of(&chunk, prober).await?;
        let batch = stream.batch();
        let jobs = chunk.iter().zip(&facts).map(|(spec, facts)| {
            let job = facts.of(spec);
            if job.status.would_submit() {
                to_submit += 1;
                credits = credits.zip(job.estimate).map(|(sum, e)| sum + e.credits);
            }
            invalid += usize::from(job.status == JobStatus::Invalid);
            stage(job, batch, &context.reference)
        });
        staged.add(jobs)?;
    }
    let subjects = stream.subjects();
    Ok(StreamedPlan {
        batch: stream.finish(),
        reference: context.reference,
        staged,
        subjects,
        to_submit,
        to_submit_credits: credits,
        invalid,
    })
}
