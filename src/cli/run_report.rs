//! What a `recast run` shows when it ends: the closing summary (text or `--json`) with the exit
//! code it earns (the live line is `progress.rs`). May not: drive the run (that is `run_cmd`).

use super::ExitCode;
use super::run_cmd::store_failure;
use crate::engine::{Halt, RunMode, RunReport};
use crate::store::{BatchSummary, JobState, Store};

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
    let in_flight = summary.counts.get(JobState::Submitting)
        + summary.counts.get(JobState::Running)
        + summary.counts.get(JobState::Downloading);
    // Jobs never submitted are not "in progress": they wait (for the pace, the cap, a resume).
    let waiting = summary
        .counts
        .get(JobState::Planned)
        .saturating_sub(held.len() as u64 + summary.awaiting_approval);
    let in_progress = in_flight + waiting;
    let code = if report.interrupted {
        ExitCode::Interrupted
    } else {
        match &report.halted {
            Some(Halt::Unauthorized(_) | Halt::OutOfCredits(_)) => ExitCode::ProviderRefused,
            Some(Halt::Unpublishable(_)) => ExitCode::Invalid,
            None if !attention.is_empty() || summary.awaiting_approval > 0 => ExitCode::NeedsPerson,
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
            "in_flight": in_flight,
            "waiting": waiting,
            "awaiting_approval": summary.awaiting_approval,
            "exit_code": code as u8,
        });
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        print_summary(&summary, report, (in_flight, waiting), mode);
        for job in &attention {
            eprintln!(
                "needs you: {} is {}: {}",
                job.subject_id,
                job.state,
                job.reason.as_deref().unwrap_or("no reason recorded")
            );
        }
        if summary.awaiting_approval > 0 {
            eprintln!(
                "canary: {} jobs wait until you approve the first clips: look at them in {}, then `recast approve {}`",
                summary.awaiting_approval, summary.output_dir, summary.name
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

fn print_summary(
    s: &BatchSummary,
    report: &RunReport,
    (in_flight, waiting): (u64, u64),
    mode: RunMode,
) {
    let c = &s.counts;
    let in_progress = in_flight + waiting;
    eprintln!(
        "{}: {} done, {in_flight} in flight, {waiting} not yet submitted, {} need you · {:.3} {}USD spent, {:.3} refunded{} · {}",
        s.name,
        c.get(JobState::Done),
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
