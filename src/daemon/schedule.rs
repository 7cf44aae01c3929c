//! The schedule stage: cron expressions that reconcile folders of manifests (for example a git
//! checkout that another job pulls).
//!
//! Owns: when each schedule fires, and what one tick does: every `*.yaml`/`*.yml` in the folder
//! is read and registered (new batches added, changed ones reconciled by job key; nothing
//! already made is made again). Files stay where they are: the folder belongs to its owner.
//! An invalid manifest is logged and skipped; the others go on.
//!
//! May not: move or write files, or hold SQL.

use std::sync::Arc;

use chrono::Local;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::DaemonError;
use super::config::{DaemonConfig, Schedule};
use super::intake::{Intake, Outcome};

pub async fn run(
    config: Arc<DaemonConfig>,
    intake: Arc<Intake>,
    standing: mpsc::Sender<i64>,
    shutdown: CancellationToken,
) -> Result<(), DaemonError> {
    let mut ticks = tokio::task::JoinSet::new();
    for (i, schedule) in config.schedules.iter().cloned().enumerate() {
        let (intake, standing, stop) = (intake.clone(), standing.clone(), shutdown.clone());
        ticks.spawn(async move { one(i, schedule, intake, standing, stop).await });
    }
    while let Some(done) = ticks.join_next().await {
        if let Ok(Err(e)) = done {
            shutdown.cancel();
            return Err(e);
        }
    }
    Ok(())
}

async fn one(
    index: usize,
    schedule: Schedule,
    intake: Arc<Intake>,
    standing: mpsc::Sender<i64>,
    shutdown: CancellationToken,
) -> Result<(), DaemonError> {
    tracing::info!(
        schedule = index,
        cron = %schedule.cron.pattern,
        folder = %schedule.folder.display(),
        "schedule set"
    );
    loop {
        let now = Local::now();
        let next = match schedule.cron.find_next_occurrence(&now, false) {
            Ok(next) => next,
            Err(e) => {
                tracing::error!(
                    schedule = index,
                    "the cron expression never fires again: {e}"
                );
                return Ok(());
            }
        };
        let wait = (next - now).to_std().unwrap_or_default();
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(wait) => {}
        }
        tick(index, &schedule, &intake, &standing).await?;
    }
}

/// Register every manifest of the folder as it is now.
pub async fn tick(
    index: usize,
    schedule: &Schedule,
    intake: &Intake,
    standing: &mpsc::Sender<i64>,
) -> Result<(), DaemonError> {
    let mut files: Vec<_> = match std::fs::read_dir(&schedule.folder) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or(".");
                !crate::manifest::is_temporary_name(name)
                    && (name.ends_with(".yaml") || name.ends_with(".yml"))
                    && p.is_file()
            })
            .collect(),
        Err(e) => {
            tracing::error!(schedule = index, folder = %schedule.folder.display(), "cannot list: {e}");
            return Ok(());
        }
    };
    files.sort();
    for file in files {
        let batch = match intake.check(&file).await {
            Ok(b) => b,
            Err(messages) => {
                tracing::error!(schedule = index, file = ?file, "invalid manifest, skipped:\n{messages}");
                continue;
            }
        };
        match intake.register(batch, &file, schedule.priority).await? {
            Outcome::Invalid(messages) => {
                tracing::error!(schedule = index, file = ?file, "cannot plan, skipped:\n{messages}");
            }
            Outcome::Registered(r) => {
                tracing::info!(
                    schedule = index,
                    batch = %r.name,
                    added = r.report.added,
                    kept = r.report.kept,
                    dropped = r.report.dropped,
                    "reconciled"
                );
                let _ = standing.send(r.batch_id).await;
            }
        }
    }
    Ok(())
}
