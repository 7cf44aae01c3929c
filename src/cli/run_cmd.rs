//! `recast run`: register (or reconcile) a manifest's batch and drive it through the engine,
//! against reAPI or an in-process simulator, with a progress bar on a terminal. A batch whose
//! stamp shows nothing changed is resumed without planning ([`super::resume`]); the batch is
//! planned (in chunks when it can be) and registered by [`super::run_plan`]; what the real
//! provider needs first is checked in [`super::real_provider`].

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::ExitCode;
use super::args::{GlobalArgs, RunArgs};
use super::plan_cmd::provider_identity;
use super::progress::show_progress;
use super::real_provider::{check_real_provider, real_publisher};
use super::run_plan::{plan_and_register, take_in};
use super::run_report::finish;
use crate::engine::{Engine, MediaPublisher, RunMode};
use crate::manifest::BatchSpec;
use crate::provider::{HttpProvider, HttpProviderConfig};
use crate::settings::Settings;
use crate::store::{Scope, StateLock, Store, StoreError};

pub async fn run(settings: &Settings, _global: &GlobalArgs, args: RunArgs) -> ExitCode {
    match run_steps(settings, args).await {
        Ok(code) | Err(code) => code,
    }
}

/// The run, step by step; `Err` is the exit code of a step that stopped it (already said why).
async fn run_steps(settings: &Settings, args: RunArgs) -> Result<ExitCode, ExitCode> {
    // Files changed from here on are not vouched for by the stamp this run may keep.
    let read_at = std::time::SystemTime::now();
    if !args.simulate
        && let Some(code) = super::resume::run_unchanged(settings, &args).await?
    {
        return Ok(code);
    }
    // A state folder that exists is held from the start, so the manifest's files are read
    // with the digests it keeps; a first run creates none before the manifest proves valid.
    let held = match settings.state_dir.join("recast.db").is_file() {
        true => Some(hold_state(settings)?),
        false => None,
    };
    let known = held.as_ref().map(|(_, store)| {
        Arc::new(crate::plan::known::DigestsInStore::new(store.clone()))
            as Arc<dyn crate::manifest::KnownDigests>
    });
    let provider_id = provider_identity(settings, args.simulate);
    let store_held = held.as_ref().map(|(_, store)| store.as_ref());
    let mut intake = take_in(&args, settings, store_held, known, &provider_id).await?;
    let inputs = &intake.batch().inputs;
    if inputs.known > 0 {
        eprintln!(
            "{} of {} local files unchanged since an earlier run: not read again",
            inputs.known,
            inputs.known + inputs.hashed
        );
    }
    if args.canary.is_some() {
        intake.batch_mut().canary = args.canary;
    }
    let media_store = if args.simulate {
        None
    } else {
        check_real_provider(intake.batch(), settings, |p| intake.unpublishable(p))?
    };
    let (_lock, store) = match held {
        Some(held) => held,
        None => hold_state(settings)?,
    };
    let simulator = match args.simulate {
        true => Some(start_simulator(intake.batch()).await.map_err(|message| {
            eprintln!("error: cannot start the simulator: {message}");
            ExitCode::Internal
        })?),
        false => None,
    };
    let settings = match &simulator {
        Some(sim) => settings.for_simulator(&sim.base_url(), sim.api_key()),
        None => settings.clone(),
    };
    let base_dir = intake.batch().base_dir.clone();
    let publisher = match &simulator {
        Some(sim) => {
            let mut p = MediaPublisher::default();
            p.publish(&base_dir, &format!("{}/media/", sim.base_url()));
            p
        }
        None => real_publisher(&base_dir, &settings, media_store),
    };
    let context = super::resume::context(&settings, &provider_id, &args);
    let registered = plan_and_register(&store, intake, &settings, &provider_id, &args).await?;
    let batch_id = registered.batch_id;
    registered.plan.remember(&store);
    let (manifest, output_dir) = (
        registered.plan.batch().manifest_path.clone(),
        registered.plan.batch().output_dir.clone(),
    );
    if !args.simulate {
        // A daemon on this state folder can then publish the batch's media as this run does.
        store
            .set_media_base_url(batch_id, settings.media_base_url.as_deref())
            .map_err(store_failure)?;
        super::resume::keep_stamp(
            &store,
            &manifest,
            batch_id,
            &provider_id,
            &output_dir,
            context,
            |stamp| registered.plan.keep_stamp(&store, stamp, read_at),
        )
        .map_err(store_failure)?;
    }
    // From here on the store drives the run: memory follows the jobs in flight, not the batch.
    drop(registered);
    give_back_freed_memory();
    let held_from = crate::output::results_extent(&output_dir);
    let engine = build_engine(&store, &settings, publisher.clone(), &provider_id, batch_id)?;
    let code = drive(
        &store,
        engine,
        &settings,
        &publisher,
        batch_id,
        &args,
        simulator.as_ref(),
    )
    .await;
    if let Some(sim) = simulator {
        sim.shutdown().await;
    } else if let Err(e) =
        super::resume::advance_after_run(&store, &manifest, &provider_id, &output_dir, held_from)
    {
        tracing::warn!("cannot note how far the results file was checked: {e}");
    }
    code
}

/// Hand the plan's freed memory back to the system: glibc keeps freed pages of a large batch
/// resident for the whole (hours-long) engine phase otherwise.
fn give_back_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap pages; it touches no memory in use.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The state folder's lock and store.
fn hold_state(settings: &Settings) -> Result<(StateLock, Arc<Store>), ExitCode> {
    let lock = StateLock::acquire(&settings.state_dir).map_err(store_failure)?;
    let store = Arc::new(Store::open(&settings.state_dir).map_err(store_failure)?);
    Ok((lock, store))
}

pub(super) fn build_engine(
    store: &Arc<Store>,
    settings: &Settings,
    publisher: MediaPublisher,
    provider_id: &str,
    batch_id: i64,
) -> Result<Arc<Engine<HttpProvider>>, ExitCode> {
    let internal = |e: &dyn std::fmt::Display| {
        eprintln!("error: {e}");
        ExitCode::Internal
    };
    let provider = HttpProvider::new(HttpProviderConfig {
        base_url: settings.api_base.clone(),
        api_key: settings
            .api_key()
            .cloned()
            .expect("checked before or set by the simulator"),
        connect_timeout: Duration::from_secs(10),
        request_timeout: settings.request_timeout,
        max_wait: settings.max_provider_wait,
    })
    .map_err(|e| internal(&e))?;
    Engine::new(
        store.clone(),
        provider,
        publisher,
        settings.engine.clone(),
        Scope::batches(provider_id, vec![batch_id]),
    )
    .map_err(|e| internal(&e))
}

/// Drive the batch: the engine, the live line, notifications; then the summary and its code.
pub(super) async fn drive(
    store: &Arc<Store>,
    engine: Arc<Engine<HttpProvider>>,
    settings: &Settings,
    publisher: &MediaPublisher,
    batch_id: i64,
    args: &RunArgs,
    simulator: Option<&crate::sim::Sim>,
) -> Result<ExitCode, ExitCode> {
    let shutdown = CancellationToken::new();
    tokio::spawn(crate::daemon::lifecycle::cancel_on_signal(shutdown.clone()));
    let notifier = match crate::notify::resolve(&settings.notifications) {
        Ok(destinations) => crate::notify::Notifier::new(store.clone(), destinations),
        Err(message) => {
            eprintln!("error: {message}");
            return Err(ExitCode::Invalid);
        }
    };
    let notifying = notifier
        .clone()
        .map(|n| tokio::spawn(n.run(shutdown.child_token())));
    let mode = if args.no_wait {
        RunMode::NoWait
    } else {
        RunMode::UntilDone
    };
    let uploads = publisher.store().map(|s| s.progress.clone());
    let progress = (!args.json && std::io::stderr().is_terminal()).then(|| {
        let limits = (
            settings.engine.max_in_flight,
            settings.engine.submit_per_minute,
        );
        tokio::spawn(show_progress(
            store.clone(),
            batch_id,
            uploads.clone(),
            limits,
            shutdown.child_token(),
        ))
    });
    let outcome = engine.run(mode, shutdown.clone()).await;
    shutdown.cancel();
    if let Some(p) = progress {
        let _ = p.await;
    }
    let report = outcome.map_err(|e| {
        eprintln!("error: {e}");
        eprintln!(
            "the state folder is intact up to the failure: run the same command again to resume"
        );
        ExitCode::Internal
    })?;
    if let Some(line) = uploads
        .as_deref()
        .and_then(super::run_report::upload_summary)
    {
        eprintln!("{line}");
    }
    if let Some(task) = notifying {
        let _ = task.await;
    }
    if let Some(n) = &notifier {
        // Webhooks and the hook for what this run finished, retries included, within a bound:
        // what is left goes out with the next run or the daemon.
        match n.flush(NOTIFY_FLUSH).await {
            Ok(0) => {}
            Ok(left) => eprintln!(
                "{left} notifications not delivered yet: the next run (or the daemon) tries again"
            ),
            Err(e) => eprintln!("warning: notifications: {e}"),
        }
    }
    Ok(finish(store, batch_id, &report, mode, args.json, simulator))
}

/// How long a run waits at its end for its notifications to be delivered.
const NOTIFY_FLUSH: Duration = Duration::from_secs(20);

async fn start_simulator(batch: &BatchSpec) -> Result<crate::sim::Sim, String> {
    let config = crate::sim::SimConfig {
        media_dir: Some(batch.base_dir.clone()),
        // Quick enough for a demo, slow enough to see the stages go by.
        generation: crate::sim::Generation::Fixed(Duration::from_millis(1500)),
        ..crate::sim::SimConfig::default()
    };
    crate::sim::Sim::start(config)
        .await
        .map_err(|e| e.to_string())
}

pub(super) fn store_failure(e: StoreError) -> ExitCode {
    eprintln!("error: {e}");
    match e {
        StoreError::Busy { .. } => {
            eprintln!(
                "hint: one recast works on a state folder at a time; use --state-dir for another"
            );
            ExitCode::Busy
        }
        _ => ExitCode::Internal,
    }
}
