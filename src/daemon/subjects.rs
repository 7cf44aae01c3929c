//! The subjects stage: standing performances, whose `subjects: [{watch: ./incoming}]` folder
//! turns every image that arrives there into a job of the batch.
//!
//! Owns: which batches stand (found in the store at start, and told by the inbox and schedule
//! stages as they register), watching their folders, and re-planning a batch once its folder is
//! quiet: the manifest is read again (its folder listed anew) and registered, which adds the new
//! images' jobs by key and keeps every job already made. A bad image gets `IMAGE.error.txt`
//! beside it; the rest goes on. An image removed before it was submitted is dropped from the
//! plan; nothing already submitted or made is cancelled.
//!
//! May not: decide what is valid (that is `intake` and the plan) or touch the engine.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::DaemonError;
use super::config::DaemonConfig;
use super::intake::{Intake, Outcome};
use super::watch::FolderWatch;

/// Suffix of the file written beside a bad image.
pub const ERROR_SUFFIX: &str = ".error.txt";

struct Standing {
    watch_dirs: Vec<PathBuf>,
}

pub async fn run(
    config: Arc<DaemonConfig>,
    intake: Arc<Intake>,
    mut registered: mpsc::Receiver<i64>,
    shutdown: CancellationToken,
) -> Result<(), DaemonError> {
    let mut watch = FolderWatch::new(config.watch, config.settle, config.poll_interval)?;
    let mut standing: HashMap<i64, Standing> = HashMap::new();
    let sources = intake.store().batch_sources(intake.provider_id())?;
    for source in sources {
        refresh(&intake, &mut watch, &mut standing, source.id)?;
    }
    // Folders with news, re-planned once no file in them is still settling.
    let mut dirty: BTreeSet<PathBuf> = BTreeSet::new();
    // Without inboxes or schedules nobody tells us of new batches: only those at start stand.
    let mut told = true;
    loop {
        tokio::select! {
            batch = registered.recv(), if told => match batch {
                Some(id) => refresh(&intake, &mut watch, &mut standing, id)?,
                None => told = false,
            },
            files = watch.next(&shutdown) => match files {
                Some(files) => {
                    for file in files {
                        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
                        if name.ends_with(ERROR_SUFFIX) {
                            continue;
                        }
                        if let Some(dir) = file.parent() {
                            dirty.insert(dir.to_path_buf());
                        }
                    }
                }
                None => break,
            },
        }
        let ready: Vec<PathBuf> = dirty
            .iter()
            .filter(|d| watch.is_quiet(d))
            .cloned()
            .collect();
        for dir in ready {
            dirty.remove(&dir);
            let batches: Vec<i64> = standing
                .iter()
                .filter(|(_, s)| s.watch_dirs.contains(&dir))
                .map(|(id, _)| *id)
                .collect();
            for id in batches {
                replan(&intake, id).await?;
                refresh(&intake, &mut watch, &mut standing, id)?;
            }
        }
    }
    tracing::info!("subjects stage stopped");
    Ok(())
}

/// Look at a batch's manifest again: start or stop watching its folders.
fn refresh(
    intake: &Intake,
    watch: &mut FolderWatch,
    standing: &mut HashMap<i64, Standing>,
    batch_id: i64,
) -> Result<(), DaemonError> {
    let dirs = match intake.store().batch_source(batch_id)? {
        Some(source) => intake
            .reread(
                Path::new(&source.manifest_path),
                Path::new(&source.base_dir),
            )
            .map(|b| b.watch_dirs)
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let old = standing
        .remove(&batch_id)
        .map(|s| s.watch_dirs)
        .unwrap_or_default();
    for dir in &dirs {
        if !old.contains(dir) {
            watch.add(dir)?;
            tracing::info!(batch_id, folder = ?dir, "watching for subjects");
        }
    }
    if !dirs.is_empty() {
        standing.insert(batch_id, Standing { watch_dirs: dirs });
    }
    for dir in old {
        if !standing.values().any(|s| s.watch_dirs.contains(&dir)) {
            watch.remove(&dir);
        }
    }
    Ok(())
}

/// Register the batch again from its manifest, with its folder as it is now.
async fn replan(intake: &Intake, batch_id: i64) -> Result<(), DaemonError> {
    let Some(source) = intake.store().batch_source(batch_id)? else {
        return Ok(());
    };
    let manifest = Path::new(&source.manifest_path);
    let batch = match intake.reread(manifest, Path::new(&source.base_dir)) {
        Ok(batch) => batch,
        Err(messages) => {
            tracing::error!(batch = %source.name, "cannot read the standing manifest again: {messages}");
            return Ok(());
        }
    };
    match intake.register(batch, manifest, source.priority).await? {
        Outcome::Invalid(messages) => {
            tracing::error!(batch = %source.name, "the standing manifest no longer plans: {messages}");
        }
        Outcome::Registered(r) => {
            if r.report.added > 0 || r.report.revived > 0 {
                tracing::info!(batch = %r.name, added = r.report.added, "new subjects");
            }
            for (image, problems) in &r.invalid_images {
                if r.watch_dirs
                    .iter()
                    .any(|d| image.parent() == Some(d.as_path()))
                {
                    write_error_file(image, problems);
                }
            }
        }
    }
    Ok(())
}

fn write_error_file(image: &Path, problems: &str) {
    let mut name = image.file_name().unwrap_or_default().to_os_string();
    name.push(ERROR_SUFFIX);
    let path = image.with_file_name(name);
    let text = format!("{problems}\n");
    // Never through a link or into a FIFO someone put where the error file goes.
    if crate::safe_fs::read_small(&path, 1 << 20).is_some_and(|old| old == text) {
        return;
    }
    match crate::safe_fs::write_regular(&path, text.as_bytes()) {
        Ok(()) => tracing::warn!(image = ?image, "bad subject image: {}", problems.escape_debug()),
        Err(e) => tracing::error!(file = ?path, "cannot write the error file: {e}"),
    }
}
