//! Planning jobs: each subject probed, checked against the provider's input rules, priced and
//! compared with the store, given what the whole batch shares (the reference video's facts and
//! what the store knows of the batch).
//!
//! Owns: [`PlanContext`] (made once a plan) and [`PlanContext::facts_of`] (any slice of jobs:
//! the whole batch for `recast plan`, one chunk at a time for a streamed plan). May not: write
//! the store or print.

use std::collections::{HashMap, HashSet};

use futures_util::StreamExt;

use super::known::KnownHeaders;
use super::{JobFacts, JobStatus, PlanError, Prober, file_name_of, media_label};
use crate::manifest::{BatchSpec, JobSpec, Location};
use crate::media::{self, Orientation, VideoInfo};
use crate::pricing::PriceTable;
use crate::store::{JobState, KnownJob, Store, StoreError};

/// Subject images probed at once.
const PROBES_AT_ONCE: usize = 16;

/// How a plan learns what the store knows of the batch's jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lookups {
    /// Every job of the batch read at once (a plan that holds the whole batch anyway).
    Load,
    /// One key (and subject) at a time: memory stays with the chunk being planned.
    Ask,
}

enum KnownJobs<'a> {
    Nothing,
    Loaded {
        by_key: HashMap<String, KnownJob>,
        with_clips: HashSet<String>,
    },
    Asked {
        store: &'a Store,
        batch_id: i64,
    },
}

impl KnownJobs<'_> {
    fn status(&self, spec: &JobSpec) -> Result<JobStatus, StoreError> {
        let key = spec.key.hex();
        Ok(match self {
            KnownJobs::Nothing => JobStatus::New,
            KnownJobs::Loaded { by_key, with_clips } => match by_key.get(key.as_str()) {
                Some(k) => JobStatus::Known(k.state),
                None if with_clips.contains(&*spec.subject_id) => JobStatus::Changed,
                None => JobStatus::New,
            },
            KnownJobs::Asked { store, batch_id } => {
                match store.known_job_state(*batch_id, key.as_str())? {
                    Some(state) => JobStatus::Known(state),
                    None if store.subject_has_clip(*batch_id, &spec.subject_id)? => {
                        JobStatus::Changed
                    }
                    None => JobStatus::New,
                }
            }
        })
    }
}

/// What planning any job of one batch needs.
pub(crate) struct PlanContext<'a> {
    pub(super) reference: VideoInfo,
    /// What the reference breaks under `character_orientation: image` (fails those subjects).
    strict: Vec<String>,
    prices: &'a PriceTable,
    known: KnownJobs<'a>,
    headers: KnownHeaders<'a>,
    /// Credits already committed to this batch in the store (accepted or possibly billed).
    pub(super) committed_credits: u64,
}

impl<'a> PlanContext<'a> {
    /// Probe and check the batch's reference video (a bad one fails the whole plan), and read
    /// what the store has of the batch.
    pub(super) async fn new(
        batch: &BatchSpec,
        provider: &str,
        prices: &'a PriceTable,
        store: Option<&'a Store>,
        prober: &Prober,
        lookups: Lookups,
    ) -> Result<PlanContext<'a>, PlanError> {
        let file = batch.manifest_path.display().to_string();
        let reference_error = |loc: Location, message: String| PlanError::Reference {
            file: file.clone(),
            line: loc.line,
            column: loc.column,
            message,
        };
        let label = media_label(&batch.reference_video);
        let reference = prober
            .video(&batch.reference_video)
            .await
            .map_err(|e| reference_error(batch.reference_location, format!("{label}: {e}")))?;
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
                format!("{label}: {message}"),
            ));
        }
        let strict = media::check_video(&reference, Orientation::Image)
            .into_iter()
            .map(|v| v.message)
            .collect();
        let batch_id = match store {
            Some(store) => store.batch_id(&batch.name, provider)?,
            None => None,
        };
        let (known, committed_credits) = match (store, batch_id) {
            (Some(store), Some(batch_id)) => {
                let s = store.batch_summary(batch_id)?;
                (
                    known_jobs(store, batch_id, lookups)?,
                    s.credits_spent + s.credits_uncertain,
                )
            }
            _ => (KnownJobs::Nothing, 0),
        };
        Ok(PlanContext {
            reference,
            strict,
            prices,
            known,
            headers: KnownHeaders::of(store),
            committed_credits,
        })
    }

    /// What planning finds of each of `specs`, in their order. Probes overlap (most time is
    /// waiting on disk or network).
    pub(super) async fn facts_of(
        &self,
        specs: &[JobSpec],
        prober: &Prober,
    ) -> Result<Vec<JobFacts>, StoreError> {
        let mut facts = Vec::with_capacity(specs.len());
        // Each probe takes a copy of its image's source by index, not a borrow of the spec,
        // which keeps this future `Send` for the daemon's spawned tasks.
        let mut probed = futures_util::stream::iter(0..specs.len())
            .map(|i| {
                let known = self.headers.get(&specs[i].image);
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
            facts.push(self.facts(spec, probe)?);
        }
        Ok(facts)
    }

    fn facts(
        &self,
        spec: &JobSpec,
        probe: Result<media::ImageInfo, media::MediaError>,
    ) -> Result<JobFacts, StoreError> {
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
            problems.extend(self.strict.iter().cloned());
        }
        let estimate = self.prices.estimate(
            &spec.settings.model,
            spec.settings.mode,
            self.reference.duration_ms,
        );
        let status = match problems.is_empty() {
            false => JobStatus::Invalid,
            true => self.known.status(spec)?,
        };
        Ok(JobFacts {
            image,
            problems,
            estimate,
            status,
        })
    }
}

fn known_jobs(store: &Store, batch_id: i64, lookups: Lookups) -> Result<KnownJobs<'_>, StoreError> {
    Ok(match lookups {
        Lookups::Ask => KnownJobs::Asked { store, batch_id },
        Lookups::Load => {
            let by_key = store.known_jobs(batch_id)?;
            let with_clips = by_key
                .values()
                .filter(|j| j.state == JobState::Done)
                .map(|j| j.subject_id.clone())
                .collect();
            KnownJobs::Loaded { by_key, with_clips }
        }
    })
}
