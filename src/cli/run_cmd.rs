//! `recast run`: register (or reconcile) a manifest's batch and drive it through the engine,
//! against reAPI or an in-process simulator, with a progress bar on a terminal.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::ExitCode;
use super::args::{GlobalArgs, RunArgs};
use super::plan_cmd::{load_manifest, provider_identity};
use super::progress::show_progress;
use super::run_report::finish;
use crate::engine::{Engine, MediaPublisher, RegisterError, RunMode, register};
use crate::manifest::{BatchSpec, MediaSource};
use crate::plan::{JobStatus, Prober, make_plan};
use crate::provider::{HttpProvider, HttpProviderConfig};
use crate::settings::Settings;
use crate::store::{Scope, StateLock, Store, StoreError};

pub async fn run(settings: &Settings, _global: &GlobalArgs, args: RunArgs) -> ExitCode {
    let mut batch = match load_manifest(&args.manifest, settings).await {
        Ok(b) => b,
        Err(code) => return code,
    };
    if args.canary.is_some() {
        batch.canary = args.canary;
    }
    let media_store = if args.simulate {
        None
    } else {
        match settings.open_media_store() {
            Ok(m) => m,
            Err(message) => {
                eprintln!("error: {message}");
                return ExitCode::Invalid;
            }
        }
    };
    if !args.simulate {
        let publisher = real_publisher(&batch, settings, media_store.clone());
        if let Some(message) = unpublishable_media(&batch, &publisher) {
            eprintln!("error: {message}");
            return ExitCode::Invalid;
        }
        if let Some(ttl) = media_store.as_ref().and_then(|s| s.url_lifetime())
            && ttl < SHORT_URL_TTL
        {
            eprintln!(
                "warning: presigned media URLs live {} s (media_store.s3.url_ttl_secs): a task \
                 that waits longer in the provider's queue before fetching its media fails",
                ttl.as_secs()
            );
        }
        if settings.api_key().is_none() {
            eprintln!(
                "error: no API key: set REAPI_API_KEY (or `provider.api_key_file` in a settings file), \
                 or try the manifest first with --simulate"
            );
            return ExitCode::Invalid;
        }
    }
    let _lock = match StateLock::acquire(&settings.state_dir) {
        Ok(l) => l,
        Err(e) => return store_failure(e),
    };
    let store = match Store::open(&settings.state_dir) {
        Ok(s) => Arc::new(s),
        Err(e) => return store_failure(e),
    };

    // The manifest's own URLs follow the user's setting, even in a --simulate trial (which only
    // lets recast reach its own loopback simulator).
    let prober = Prober::new(settings.engine.allow_private_networks);
    let simulator = if args.simulate {
        match start_simulator(&batch).await {
            Ok(sim) => Some(sim),
            Err(message) => {
                eprintln!("error: cannot start the simulator: {message}");
                return ExitCode::Internal;
            }
        }
    } else {
        None
    };
    let settings = match &simulator {
        Some(sim) => settings.for_simulator(&sim.base_url(), sim.api_key()),
        None => settings.clone(),
    };
    let provider_id = provider_identity(&settings, args.simulate);
    let publisher = match &simulator {
        Some(sim) => {
            let mut p = MediaPublisher::default();
            p.publish(&batch.base_dir, &format!("{}/media/", sim.base_url()));
            p
        }
        None => real_publisher(&batch, &settings, media_store.clone()),
    };

    let plan = match make_plan(batch, &provider_id, &settings.prices, Some(&store), &prober).await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::Invalid;
        }
    };
    let output_dir = if args.simulate {
        plan.batch.output_dir.join("simulated")
    } else {
        plan.batch.output_dir.clone()
    };
    let found_in_output;
    let batch_id = match register(&store, &plan, &provider_id, &output_dir, 0) {
        Ok(report) => {
            found_in_output = report.found_in_output;
            if report.found_in_output > 0 {
                eprintln!(
                    "{} clips found whole in {} (its {}): done, not submitted again",
                    report.found_in_output,
                    output_dir.display(),
                    crate::output::RESULTS_FILE
                );
            }
            report.batch_id
        }
        Err(RegisterError::Store(e)) => return store_failure(e),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::Invalid;
        }
    };
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
        match store.restart_lost_tasks(batch_id) {
            Ok(0) => {}
            Ok(n) => eprintln!(
                "{n} jobs were in flight with a simulator that has stopped: submitted again"
            ),
            Err(e) => return store_failure(e),
        }
    }
    let (to_submit, credits) = plan.to_submit();
    let to_submit = to_submit.saturating_sub(found_in_output);
    eprintln!(
        "{}: {} subjects, {} to submit{}; clips go to {}{}",
        plan.batch.name,
        plan.jobs.len(),
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
    let account = match credits {
        Some(needed) if to_submit > 0 => super::reach::account_check(&settings, needed).await,
        _ => Ok(None),
    };
    let account = match account {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            eprintln!("nothing was submitted");
            return ExitCode::ProviderRefused;
        }
    };
    if let Some(account) = account {
        eprintln!("{}", account.describe());
        if !account.enough() && !args.spend_available {
            eprintln!(
                "error: stopped before the first submit: the balance cannot pay for this run. Top \
                 the account up, or run with --spend-available to submit what the balance pays \
                 for (the provider refuses the rest with 402)"
            );
            return ExitCode::Invalid;
        }
    }
    for job in plan.jobs.iter().filter(|j| j.status == JobStatus::Invalid) {
        eprintln!(
            "left out: {}: {}",
            job.spec.subject_id,
            job.problems.join("; ")
        );
    }
    // From here on the store drives the run: memory follows the jobs in flight, not the batch.
    drop(plan);

    let provider = match HttpProvider::new(HttpProviderConfig {
        base_url: settings.api_base.clone(),
        api_key: settings
            .api_key()
            .cloned()
            .expect("checked above or set by the simulator"),
        connect_timeout: Duration::from_secs(10),
        request_timeout: settings.request_timeout,
        max_wait: settings.max_provider_wait,
    }) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::Internal;
        }
    };
    let engine = match Engine::new(
        store.clone(),
        provider,
        publisher.clone(),
        settings.engine.clone(),
        Scope::batches(&provider_id, vec![batch_id]),
    ) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::Internal;
        }
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(crate::daemon::lifecycle::cancel_on_signal(shutdown.clone()));
    let notifier = match crate::notify::resolve(&settings.notifications) {
        Ok(destinations) => crate::notify::Notifier::new(store.clone(), destinations),
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::Invalid;
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
        tokio::spawn(show_progress(
            store.clone(),
            batch_id,
            uploads.clone(),
            (
                settings.engine.max_in_flight,
                settings.engine.submit_per_minute,
            ),
            shutdown.child_token(),
        ))
    });
    let outcome = engine.run(mode, shutdown.clone()).await;
    shutdown.cancel();
    if let Some(p) = progress {
        let _ = p.await;
    }
    let report = match outcome {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            eprintln!(
                "the state folder is intact up to the failure: run the same command again to resume"
            );
            return ExitCode::Internal;
        }
    };
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
    let code = finish(
        &store,
        batch_id,
        &report,
        mode,
        args.json,
        simulator.as_ref(),
    );
    if let Some(sim) = simulator {
        sim.shutdown().await;
    }
    code
}

/// How long a run waits at its end for its notifications to be delivered.
const NOTIFY_FLUSH: Duration = Duration::from_secs(20);

/// Presigned URLs shorter-lived than this are warned about: a provider's queue can hold a task
/// about this long before it fetches the media.
const SHORT_URL_TTL: Duration = Duration::from_secs(3600);

/// How local media reach the real provider: under `media_base_url`, else through the media store.
pub(super) fn real_publisher(
    batch: &BatchSpec,
    settings: &Settings,
    store: Option<Arc<crate::media_store::MediaStore>>,
) -> MediaPublisher {
    let mut publisher = MediaPublisher::default().with_store(store);
    if let Some(url) = &settings.media_base_url {
        publisher.publish(&batch.base_dir, url);
    }
    publisher
}

/// Local media need a public URL for the real provider; say so before anything is spent.
pub(super) fn unpublishable_media(batch: &BatchSpec, publisher: &MediaPublisher) -> Option<String> {
    let local = std::iter::once(&batch.reference_video)
        .chain(batch.jobs.iter().map(|j| &j.image))
        .filter(|m| matches!(m, MediaSource::Local { .. }))
        .filter(|m| !publisher.can_publish(&crate::engine::StoredMedia::from(*m)))
        .count();
    (local > 0).then(|| {
        format!(
            "{}: {local} local media file{} need a public URL: the provider fetches media by URL. \
             Set `media_store.s3` in a settings file (recast uploads them to your bucket: see the \
             README's \"Against reAPI\"), publish the manifest's folder and set --media-base-url \
             (or `provider.media_base_url`), use https:// URLs in the manifest, or try it with \
             --simulate. Nothing was submitted.",
            batch.manifest_path.display(),
            if local == 1 { "" } else { "s" }
        )
    })
}

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
