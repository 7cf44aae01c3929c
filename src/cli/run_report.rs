//! What a `recast run` shows: the progress bar on a terminal, and the closing summary (text
//! or `--json`) with the exit code it earns. May not: drive the run (that is `run_cmd`).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::ExitCode;
use super::run_cmd::store_failure;
use crate::engine::{Halt, RunMode, RunReport};
use crate::store::{BatchSummary, JobState, Store};

pub(super) async fn show_progress(
    store: Arc<Store>,
    batch_id: i64,
    uploads: Option<Arc<crate::media_store::UploadProgress>>,
    stop: CancellationToken,
) {
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
            bar.set_message(
                format!(
                    "{} submitting · {} running · {} downloading · {} waiting · {:.3} USD spent",
                    c.get(JobState::Submitting),
                    c.get(JobState::Running),
                    c.get(JobState::Downloading),
                    c.get(JobState::Planned),
                    s.credits_spent as f64 / 1000.0
                ) + &uploads.as_deref().map(upload_text).unwrap_or_default(),
            );
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
    bar.finish_and_clear();
}

/// ` · uploading 3.1/12.0 MB` while media go up to the bucket.
fn upload_text(u: &crate::media_store::UploadProgress) -> String {
    use std::sync::atomic::Ordering::Relaxed;
    let (sent, total) = (u.bytes_sent.load(Relaxed), u.bytes_total.load(Relaxed));
    if sent >= total {
        return String::new();
    }
    format!(
        " · uploading {:.1}/{:.1} MB",
        sent as f64 / 1e6,
        total as f64 / 1e6
    )
}

/// What the media store did in this run, for the closing lines.
pub(super) fn upload_summary(u: &crate::media_store::UploadProgress) -> Option<String> {
    use std::sync::atomic::Ordering::Relaxed;
    let (uploaded, present) = (
        u.files_uploaded.load(Relaxed),
        u.files_present.load(Relaxed),
    );
    (uploaded + present > 0).then(|| {
        format!(
            "media: {uploaded} file{} uploaded ({:.1} MB), {present} use{} of files already in the bucket",
            if uploaded == 1 { "" } else { "s" },
            u.bytes_sent.load(Relaxed) as f64 / 1e6,
            if present == 1 { "" } else { "s" },
        )
    })
}

pub(super) fn finish(
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
