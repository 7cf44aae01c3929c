//! `recast run` of a manifest whose batch is registered and unchanged: resumed from the store
//! without reading, hashing and probing every subject again (a restart of a large batch, a cron
//! tick). What "unchanged" means is [`crate::plan::stamp`]'s, plus the output folder: every line
//! added to its results file since the stamp must be one this state folder wrote for the batch
//! (another state folder's clip there would make a job `done` on a full registration).
//!
//! Owns: when a run may skip planning, the context a stamp is taken under, and keeping stamps
//! up to date after a registration and at the end of a run.
//!
//! May not: register or change jobs: the batch is driven as the store has it, or planned in full.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::ExitCode;
use super::args::RunArgs;
use super::plan_cmd::provider_identity;
use super::real_provider::{check_balance, open_real_provider, real_publisher};
use super::run_cmd::{build_engine, drive, store_failure};
use crate::output;
use crate::plan::stamp;
use crate::settings::Settings;
use crate::store::{InputStamp, StateLock, Store, StoreError};

/// A registered batch the manifest's stamp found unchanged.
pub(super) struct Unchanged {
    pub batch_id: i64,
    pub base_dir: PathBuf,
    pub output_dir: PathBuf,
}

/// Where a manifest's stamp is kept: its absolute path, as the batch keeps it.
fn key_of(manifest: &Path) -> String {
    std::path::absolute(manifest)
        .unwrap_or_else(|_| manifest.to_path_buf())
        .display()
        .to_string()
}

/// The digest of everything besides its files a plan depends on: a run under other prices,
/// roots, publishing or flags plans in full.
pub(super) fn context(settings: &Settings, provider: &str, args: &RunArgs) -> String {
    stamp::context(&format!(
        "{provider}\n{:?}\n{:?}\n{}\n{:?}\n{:?}\n{:?}",
        settings.prices,
        settings.allowed_roots,
        settings.engine.allow_private_networks,
        settings.media_base_url,
        settings.media_store,
        args.canary,
    ))
}

/// The batch `manifest` registered, if nothing it was planned from has changed since.
pub(super) fn unchanged_batch(
    store: &Store,
    manifest: &Path,
    provider: &str,
    context: &str,
) -> Result<Option<Unchanged>, StoreError> {
    let key = key_of(manifest);
    let Some(kept) = store.stamp(&key, provider)? else {
        return Ok(None);
    };
    if kept.context != context || !store.check_stamp_files(&kept, stamp::unchanged)? {
        return Ok(None);
    }
    let output_dir = PathBuf::from(&kept.output_dir);
    let Some((ino, len)) = output::results_extent(&output_dir) else {
        return Ok(None);
    };
    if ino != kept.results_ino || len < kept.results_len {
        return Ok(None);
    }
    let mut failed = None;
    let all_ours = output::each_line_between(&output_dir, kept.results_len, len, |line| {
        let Some(line) = line else {
            return false;
        };
        match store.results_line_is_ours(kept.batch_id, &line) {
            Ok(ours) => ours,
            Err(e) => {
                failed = Some(e);
                false
            }
        }
    });
    if let Some(e) = failed {
        return Err(e);
    }
    if !all_ours {
        return Ok(None);
    }
    store.advance_stamp(&key, provider, ino, len)?;
    Ok(Some(Unchanged {
        batch_id: kept.batch_id,
        base_dir: PathBuf::from(kept.base_dir),
        output_dir,
    }))
}

/// How recent a change keeps a file from being vouched for: [`stamp::RACY`], or
/// `RECAST_STAMP_RACY_MS` (tests, whose files are all seconds old, set it to 0).
pub(super) fn racy_window() -> std::time::Duration {
    std::env::var("RECAST_STAMP_RACY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(stamp::RACY, std::time::Duration::from_millis)
}

/// After a registration: keep the stamp of what the plan of `manifest` read, as `write` makes
/// it (`false`: it could not be stamped), or forget the manifest's stamp.
pub(super) fn keep_stamp(
    store: &Store,
    manifest: &Path,
    batch_id: i64,
    provider: &str,
    output_dir: &Path,
    context: String,
    write: impl FnOnce(&InputStamp) -> Result<bool, StoreError>,
) -> Result<(), StoreError> {
    let key = key_of(manifest);
    let extent = output::results_extent(output_dir);
    let registered_at = store.registered_at(batch_id)?;
    let (Some((results_ino, results_len)), Some(registered_at)) = (extent, registered_at) else {
        return store.forget_stamp(&key, provider);
    };
    let stamp = InputStamp {
        manifest_path: key.clone(),
        provider: provider.to_owned(),
        batch_id,
        context,
        registered_at,
        results_ino,
        results_len,
        base_dir: String::new(),
        output_dir: String::new(),
    };
    match write(&stamp)? {
        true => Ok(()),
        false => store.forget_stamp(&key, provider),
    }
}

/// At the end of a run: every line added to the results file while this process held the
/// output folder is its own, so the stamp's mark moves past them (the next run checks less).
pub(super) fn advance_after_run(
    store: &Store,
    manifest: &Path,
    provider: &str,
    output_dir: &Path,
    held_from: Option<(u64, u64)>,
) -> Result<(), StoreError> {
    let (Some((ino, from)), Some((now_ino, len))) = (held_from, output::results_extent(output_dir))
    else {
        return Ok(());
    };
    let key = key_of(manifest);
    match store.stamp(&key, provider)? {
        Some(kept) if kept.results_ino == ino && now_ino == ino && kept.results_len == from => {
            store.advance_stamp(&key, provider, ino, len)
        }
        _ => Ok(()),
    }
}

/// `recast run` of an unchanged batch: its stamp checked, the output folder held, the balance
/// checked against what is left to submit, and the batch driven as the store has it. `None`
/// when the manifest must be planned in full.
pub(super) async fn run_unchanged(
    settings: &Settings,
    args: &RunArgs,
) -> Result<Option<ExitCode>, ExitCode> {
    // A first run, or one without a key, plans in full (and says what is missing there).
    if settings.api_key().is_none() || !settings.state_dir.join("recast.db").is_file() {
        return Ok(None);
    }
    let provider = provider_identity(settings, false);
    let context = context(settings, &provider, args);
    let media_store = open_real_provider(settings)?;
    let _lock = StateLock::acquire(&settings.state_dir).map_err(store_failure)?;
    let store = Arc::new(Store::open(&settings.state_dir).map_err(store_failure)?);
    let found =
        unchanged_batch(&store, &args.manifest, &provider, &context).map_err(store_failure)?;
    let Some(found) = found else {
        return Ok(None);
    };
    let state_dir = store.path().parent().unwrap_or(Path::new("."));
    if let Err(e) = output::hold(&found.output_dir, state_dir) {
        eprintln!("error: {e}");
        return Err(ExitCode::Invalid);
    }
    let summary = store.batch_summary(found.batch_id).map_err(store_failure)?;
    let (to_submit, credits) = store
        .planned_credits(found.batch_id)
        .map_err(store_failure)?;
    eprintln!(
        "{}: unchanged since it was registered, not planned again; {} subjects, {} to \
         submit{}; clips go to {}",
        summary.name,
        summary.subjects,
        to_submit,
        credits
            .map(|c| format!(" (at most {c} credits ≈ {:.3} USD)", c as f64 / 1000.0))
            .unwrap_or_default(),
        found.output_dir.display(),
    );
    if summary.cancelled {
        eprintln!(
            "{} was cancelled by a person: nothing of it is submitted until `recast resume {}`",
            summary.name, summary.name
        );
    }
    if let Some(needed) = credits.filter(|_| to_submit > 0) {
        check_balance(settings, needed, args.spend_available).await?;
    }
    let publisher = real_publisher(&found.base_dir, settings, media_store);
    let held_from = output::results_extent(&found.output_dir);
    let engine = build_engine(
        &store,
        settings,
        publisher.clone(),
        &provider,
        found.batch_id,
    )?;
    let code = drive(
        &store,
        engine,
        settings,
        &publisher,
        found.batch_id,
        args,
        None,
    )
    .await;
    if let Err(e) = advance_after_run(
        &store,
        &args.manifest,
        &provider,
        &found.output_dir,
        held_from,
    ) {
        tracing::warn!("cannot note how far the results file was checked: {e}");
    }
    Ok(Some(code.unwrap_or_else(|code| code)))
}
