//! `recast run`: register (or reconcile) a manifest's batch and drive it through the engine,
//! against reAPI or an in-process simulator, with a progress bar on a terminal.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::ExitCode;
use super::args::{GlobalArgs, RunArgs};
use super::plan_cmd::{load_manifest, provider_identity};
use crate::engine::{Engine, Halt, MediaPublisher, RegisterError, RunMode, RunReport, register};
use crate::manifest::{BatchSpec, MediaSource};
use crate::plan::{JobStatus, Prober, make_plan};
use crate::provider::{HttpProvider, HttpProviderConfig};
use crate::settings::Settings;
use crate::store::{BatchSummary, JobState, Scope, StateLock, Store, StoreError};

pub async fn run(settings: &Settings, _global: &GlobalArgs, args: RunArgs) -> ExitCode {
    let batch = match load_manifest(&args.manifest, settings).await {
        Ok(b) => b,
        Err(code) => return code,
    };
    if !args.simulate {
        if let Some(message) = unpublishable_media(&batch, settings) {
            eprintln!("error: {message}");
            return ExitCode::Invalid;
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
    let mut publisher = MediaPublisher::default();
    match (&simulator, &settings.media_base_url) {
        (Some(sim), _) => publisher.publish(&batch.base_dir, &format!("{}/media/", sim.base_url())),
        (None, Some(url)) => publisher.publish(&batch.base_dir, url),
        (None, None) => {}
    }

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
        publisher,
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
    let mode = if args.no_wait {
        RunMode::NoWait
    } else {
        RunMode::UntilDone
    };
    let progress = (!args.json && std::io::stderr().is_terminal()).then(|| {
        tokio::spawn(show_progress(
            store.clone(),
            batch_id,
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

/// Local media need a public URL for the real provider; say so before anything is spent.
fn unpublishable_media(batch: &BatchSpec, settings: &Settings) -> Option<String> {
    if settings.media_base_url.is_some() {
        return None;
    }
    let local = std::iter::once(&batch.reference_video)
        .chain(batch.jobs.iter().map(|j| &j.image))
        .filter(|m| matches!(m, MediaSource::Local { .. }))
        .count();
    (local > 0).then(|| {
        format!(
            "{}: {local} local media file{} need a public URL: the provider fetches media by URL. \
             Publish the manifest's folder and set --media-base-url (or `provider.media_base_url`), \
             use https:// URLs in the manifest, or try it with --simulate. Nothing was submitted.",
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

async fn show_progress(store: Arc<Store>, batch_id: i64, stop: CancellationToken) {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} done · {msg} · ETA {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    loop {
        if let Ok(s) = store.batch_summary(batch_id) {
            let c = &s.counts;
            bar.set_length(c.total() - c.get(JobState::Cancelled));
            bar.set_position(c.get(JobState::Done));
            bar.set_message(format!(
                "{} submitting · {} running · {} downloading · {} waiting · {:.3} USD spent",
                c.get(JobState::Submitting),
                c.get(JobState::Running),
                c.get(JobState::Downloading),
                c.get(JobState::Planned),
                s.credits_spent as f64 / 1000.0
            ));
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
    bar.finish_and_clear();
}

fn finish(
    store: &Store,
    batch_id: i64,
    report: &RunReport,
    mode: RunMode,
    json: bool,
    simulator: Option<&crate::sim::Sim>,
) -> ExitCode {
    let (summary, attention, held) = match (
        store.batch_summary(batch_id),
        store.attention_jobs(batch_id),
        store.held_jobs(batch_id),
    ) {
        (Ok(s), Ok(a), Ok(h)) => (s, a, h),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return store_failure(e),
    };
    let in_progress = summary.counts.get(JobState::Submitting)
        + summary.counts.get(JobState::Running)
        + summary.counts.get(JobState::Downloading)
        + summary.counts.get(JobState::Planned)
        - held.len() as u64;
    let code = if report.interrupted {
        ExitCode::Interrupted
    } else {
        match &report.halted {
            Some(Halt::Unauthorized(_) | Halt::OutOfCredits(_)) => ExitCode::ProviderRefused,
            Some(Halt::Unpublishable(_)) => ExitCode::Invalid,
            None if !attention.is_empty() => ExitCode::NeedsPerson,
            None if !held.is_empty() => ExitCode::Invalid,
            None => ExitCode::Ok,
        }
    };
    if json {
        let doc = serde_json::json!({
            "batch": summary.name,
            "provider": summary.provider,
            "output_dir": summary.output_dir,
            "counts": summary.counts.by_state,
            "credits_spent": summary.credits_spent,
            "credits_refunded": summary.credits_refunded,
            "credits_uncertain": summary.credits_uncertain,
            "needs_a_person": attention,
            "held": held.iter().map(|(s, why)| serde_json::json!({"subject": s, "reason": why})).collect::<Vec<_>>(),
            "halted": report.halted,
            "interrupted": report.interrupted,
            "in_progress": in_progress,
            "exit_code": code as u8,
        });
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        print_summary(&summary, report, in_progress, mode);
        for job in &attention {
            eprintln!(
                "needs you: {} is {}: {}",
                job.subject_id,
                job.state,
                job.reason.as_deref().unwrap_or("no reason recorded")
            );
        }
        if !held.is_empty() {
            eprintln!(
                "stopped by the budget: {} job{} not submitted: {}",
                held.len(),
                if held.len() == 1 { "" } else { "s" },
                held[0].1
            );
        }
        if let Some(sim) = simulator {
            let t = sim.ledger().totals;
            eprintln!(
                "simulator ledger (this run): {} billed tasks, {} credits billed, {} refunded",
                t.billed_tasks, t.billed_credits, t.refunded_credits
            );
        }
    }
    code
}

fn print_summary(s: &BatchSummary, report: &RunReport, in_progress: u64, mode: RunMode) {
    let c = &s.counts;
    eprintln!(
        "{}: {} done, {} in progress, {} need you · {:.3} {}USD spent, {:.3} refunded{} · {}",
        s.name,
        c.get(JobState::Done),
        in_progress,
        c.get(JobState::Rejected)
            + c.get(JobState::Failed)
            + c.get(JobState::Expired)
            + c.get(JobState::Unknown)
            + c.get(JobState::Lost),
        s.credits_spent as f64 / 1000.0,
        if s.provider == "simulator" {
            "simulated "
        } else {
            ""
        },
        s.credits_refunded as f64 / 1000.0,
        if s.credits_uncertain > 0 {
            format!(", {:.3} uncertain", s.credits_uncertain as f64 / 1000.0)
        } else {
            String::new()
        },
        s.output_dir
    );
    if let Some(h) = &report.halted {
        eprintln!("submissions stopped: {h}");
    }
    if report.interrupted {
        eprintln!("interrupted: run the same command again to resume");
    } else if mode == RunMode::NoWait && in_progress > 0 {
        eprintln!(
            "{in_progress} jobs still in progress: run the same command again later to continue"
        );
    }
}

fn store_failure(e: StoreError) -> ExitCode {
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
