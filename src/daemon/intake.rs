//! Intake: one manifest -> a registered batch, the same way for inbox drops, schedules and
//! standing performances (and the same way `recast run` registers: [`crate::engine::register`]).
//!
//! Owns: reading and validating a manifest, probing and pricing it (the plan), refusing local
//! media that have no public URL, and registering it. A manifest already registered is
//! reconciled by job key, so the same content twice creates no new work.
//!
//! May not: move or write files (the inbox and subject stages do), or print.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::engine::{MediaPublisher, RegisterError, StoredMedia, register};
use crate::manifest::{self, BatchSpec, LoadOptions, MediaSource};
use crate::plan::{JobStatus, Prober, make_plan};
use crate::settings::Settings;
use crate::store::{ReconcileReport, Store, StoreError};

/// A manifest that was registered.
#[derive(Debug, Clone)]
pub struct Registered {
    pub batch_id: i64,
    pub name: String,
    pub report: ReconcileReport,
    pub watch_dirs: Vec<PathBuf>,
    /// Subjects left out, by image file (local ones only), with what is wrong with them.
    pub invalid_images: Vec<(PathBuf, String)>,
}

/// What became of a manifest.
#[derive(Debug)]
pub enum Outcome {
    Registered(Registered),
    /// The manifest cannot be planned: every message, one a line, as `recast plan` prints them.
    Invalid(String),
}

pub struct Intake {
    store: Arc<Store>,
    settings: Settings,
    provider_id: String,
    publisher: MediaPublisher,
    prober: Prober,
}

impl Intake {
    pub fn new(
        store: Arc<Store>,
        settings: Settings,
        provider_id: String,
        publisher: MediaPublisher,
    ) -> Intake {
        let prober = Prober::new(settings.engine.allow_private_networks);
        Intake {
            store,
            settings,
            provider_id,
            publisher,
            prober,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn provider_id(&self) -> &str {
        &self.provider_id
    }

    fn options(&self) -> LoadOptions {
        LoadOptions {
            allowed_roots: self.settings.allowed_roots.clone(),
            known: Some(std::sync::Arc::new(
                crate::plan::known::DigestsInStore::new(self.store.clone()),
            )),
        }
    }

    /// Validate the manifest at `path` (relative paths against its folder); nothing registered.
    /// On failure, every mistake as `recast plan` reports them, one a line.
    pub async fn check(&self, path: &Path) -> Result<BatchSpec, String> {
        crate::plan::load_manifest(path, &self.options(), &self.prober)
            .await
            .map_err(|errors| errors.to_string())
    }

    /// Read `stored_at` again as if it sat in `base_dir` (a manifest moved to `accepted/` keeps
    /// resolving its paths against the inbox it was dropped in).
    pub fn reread(&self, stored_at: &Path, base_dir: &Path) -> Result<BatchSpec, String> {
        let text = std::fs::read_to_string(stored_at)
            .map_err(|e| format!("{}: cannot read the manifest: {e}", stored_at.display()))?;
        manifest::parse_str(&text, stored_at, base_dir, &self.options())
            .map_err(|errors| errors.to_string())
    }

    /// Plan and register `batch`, recorded as read from `manifest_path`.
    pub async fn register(
        &self,
        mut batch: BatchSpec,
        manifest_path: &Path,
        priority: i64,
    ) -> Result<Outcome, StoreError> {
        if let Some(message) = self.unpublishable(&batch) {
            return Ok(Outcome::Invalid(message));
        }
        batch.manifest_path = manifest_path.to_path_buf();
        let plan = match make_plan(
            batch,
            &self.provider_id,
            &self.settings.prices,
            Some(&self.store),
            &self.prober,
        )
        .await
        {
            Ok(plan) => plan,
            Err(crate::plan::PlanError::Store(e)) => return Err(e),
            Err(e) => return Ok(Outcome::Invalid(e.to_string())),
        };
        // On the store's thread: a large batch's registration is one long write, which would
        // hold a worker, and beside the engine's batches it is the daemon's one writer.
        let provider_id = self.provider_id.clone();
        let (registered, plan) = self
            .store
            .off_runtime(move |store| {
                let out = plan.batch.output_dir.clone();
                let registered = register(store, &plan, &provider_id, &out, priority);
                if registered.is_ok()
                    && let Err(e) =
                        crate::plan::known::remember(store, &plan, crate::file_identity::RACY)
                {
                    tracing::warn!("cannot keep the digests of the files read: {e}");
                }
                Ok((registered, plan))
            })
            .await?;
        let report = match registered {
            Ok(report) => report,
            Err(RegisterError::Store(e)) => return Err(e),
            Err(e) => return Ok(Outcome::Invalid(e.to_string())),
        };
        let invalid_images = plan
            .jobs()
            .filter(|j| j.status == JobStatus::Invalid)
            .filter_map(|j| match &j.spec.image {
                MediaSource::Local(local) => {
                    Some((local.path().to_path_buf(), j.problems.join("\n")))
                }
                MediaSource::Remote { .. } => None,
            })
            .collect();
        Ok(Outcome::Registered(Registered {
            batch_id: report.batch_id,
            name: plan.batch.name.clone(),
            report,
            watch_dirs: plan.batch.watch_dirs.clone(),
            invalid_images,
        }))
    }

    /// Local media the provider could not fetch: said before anything is registered or spent.
    fn unpublishable(&self, batch: &BatchSpec) -> Option<String> {
        let missing: Vec<String> = std::iter::once(&batch.reference_video)
            .chain(batch.jobs.iter().map(|j| &j.image))
            .filter(|m| !self.publisher.can_publish(&StoredMedia::from(*m)))
            .map(|m| crate::plan::media_label(m).to_owned())
            .collect();
        let first = missing.first()?;
        Some(format!(
            "{}: {} local media file{} ({first}{}) have no public URL: the provider fetches media \
             by URL. Set `media_store.s3` in the settings file, drop the manifest into an inbox \
             with a `media_base_url`, or use https:// URLs in the manifest. Nothing was \
             registered.",
            batch.manifest_path.display(),
            missing.len(),
            if missing.len() == 1 { "" } else { "s" },
            if missing.len() > 1 { ", ..." } else { "" },
        ))
    }
}
