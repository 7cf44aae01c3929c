//! `recast status BATCH --jobs [--follow]` and `recast batches`: looking at the work, one row
//! per job or per batch, as tables or JSON, live if asked.
//!
//! Owns: those views' columns and words. May not: change anything.

use std::io::IsTerminal;
use std::time::Duration;

use comfy_table::{Cell, CellAlignment};

use super::ExitCode;
use super::args::{BatchesArgs, StatusArgs};
use super::plan_cmd::existing_store;
use super::status_cmd::local_time;
use crate::settings::Settings;
use crate::store::{BatchSummary, JobRow, JobState, Store};

/// How often `--follow` looks again.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);

pub async fn status_views(settings: &Settings, args: StatusArgs) -> ExitCode {
    let Some(name) = args.batch.as_deref() else {
        eprintln!("error: --jobs and --follow need a batch name (`recast batches` lists them)");
        return ExitCode::Usage;
    };
    let store = match existing_store(settings) {
        Ok(Some(s)) => s,
        Ok(None) => {
            eprintln!("error: no batches yet in {}", settings.state_dir.display());
            return ExitCode::Invalid;
        }
        Err(code) => return code,
    };
    let id = match super::batch_ref::select_batch(
        &store,
        settings,
        name,
        args.simulate,
        super::batch_ref::Purpose::Look,
    ) {
        Ok(id) => id,
        Err(code) => return code,
    };
    let mut states = Vec::new();
    for word in &args.state {
        match JobState::parse(word.trim()) {
            Some(s) => states.push(s),
            None => {
                let all: Vec<&str> = JobState::ALL.iter().map(|s| s.as_str()).collect();
                eprintln!("error: --state `{word}` is not a state: {}", all.join(", "));
                return ExitCode::Usage;
            }
        }
    }
    let redraw = args.follow && !args.json && std::io::stdout().is_terminal();
    loop {
        let (summary, rows) = match (store.batch_summary(id), store.job_rows(id, &states)) {
            (Ok(s), Ok(r)) => (s, r),
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("error: {e}");
                return ExitCode::Internal;
            }
        };
        if redraw {
            // Home and clear: the view replaces itself instead of scrolling.
            print!("\x1b[H\x1b[2J");
        }
        show(&summary, &rows, &args);
        if !args.follow || settled(&store, &summary) {
            break;
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = tokio::time::sleep(FOLLOW_EVERY) => {}
        }
    }
    ExitCode::Ok
}

/// Nothing of the batch moves any more by itself: nothing in flight, and nothing that will be
/// submitted (none waiting, or the batch paused or cancelled).
fn settled(store: &Store, s: &BatchSummary) -> bool {
    let c = &s.counts;
    let in_flight =
        c.get(JobState::Submitting) + c.get(JobState::Running) + c.get(JobState::Downloading);
    let held = store.held_count(s.id).unwrap_or(0);
    let waiting = c.get(JobState::Planned).saturating_sub(held);
    in_flight == 0 && (waiting == 0 || s.paused || s.cancelled)
}

fn show(summary: &BatchSummary, rows: &[JobRow], args: &StatusArgs) {
    if args.json {
        let doc = serde_json::json!({ "batch": summary, "jobs": rows });
        // Under --follow, one document a line (JSON Lines), one line a look.
        let text = if args.follow {
            serde_json::to_string(&doc)
        } else {
            serde_json::to_string_pretty(&doc)
        };
        println!("{}", text.unwrap_or_default());
        return;
    }
    let c = &summary.counts;
    println!(
        "{} ({}) · {}/{} done · {:.3} USD{}{}",
        summary.name,
        summary.provider,
        c.get(JobState::Done),
        c.total() - c.get(JobState::Cancelled),
        summary.credits_spent as f64 / 1000.0,
        if summary.provider == "simulator" {
            " simulated"
        } else {
            " spent"
        },
        match (summary.paused, summary.cancelled) {
            (_, true) => " · CANCELLED",
            (true, _) => " · PAUSED",
            _ => "",
        }
    );
    if !args.jobs {
        return;
    }
    let mut table = super::table::new_table();
    table.set_header(vec![
        "subject", "state", "try", "task", "credits", "billed", "clip", "error", "changed",
    ]);
    for r in rows {
        let clip = r.clip.as_deref().map(|p| {
            std::path::Path::new(p)
                .file_name()
                .map_or_else(|| p.to_owned(), |f| f.to_string_lossy().into_owned())
        });
        let reference = crate::provider::ErrorRef {
            code: r.error_code.clone(),
            request_id: r.request_id.clone(),
        };
        let error = r.error.as_deref().map(|e| {
            if reference.is_empty() || e.contains(&reference.to_string()) {
                e.to_owned()
            } else {
                format!("{e}{reference}")
            }
        });
        let number = |n: Option<u64>| n.map(|n| n.to_string()).unwrap_or_default();
        table.add_row(vec![
            Cell::new(&r.subject),
            Cell::new(r.state),
            Cell::new(r.attempt.map(|a| a.to_string()).unwrap_or_default()),
            Cell::new(r.task_id.as_deref().unwrap_or_default()),
            Cell::new(number(r.credits_estimated)).set_alignment(CellAlignment::Right),
            Cell::new(number(r.credits_billed)).set_alignment(CellAlignment::Right),
            Cell::new(clip.unwrap_or_default()),
            Cell::new(error.unwrap_or_default()),
            Cell::new(local_time(r.updated_at)),
        ]);
    }
    println!("{table}");
}

pub fn batches(settings: &Settings, args: BatchesArgs) -> ExitCode {
    let store = match existing_store(settings) {
        Ok(Some(s)) => s,
        Ok(None) => {
            if args.json {
                println!("[]");
            } else {
                eprintln!("no batches yet in {}", settings.state_dir.display());
            }
            return ExitCode::Ok;
        }
        Err(code) => return code,
    };
    let summaries: Result<Vec<BatchSummary>, _> = store
        .batch_ids_named(None)
        .and_then(|ids| ids.into_iter().map(|id| store.batch_summary(id)).collect());
    let summaries = match summaries {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::Internal;
        }
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summaries).unwrap_or_default()
        );
        return ExitCode::Ok;
    }
    let mut table = super::table::new_table();
    table.set_header(vec![
        "batch",
        "provider",
        "done",
        "spent / budget (USD)",
        "states",
        "manifest",
    ]);
    for s in &summaries {
        let c = &s.counts;
        let states: Vec<String> = JobState::ALL
            .into_iter()
            .filter(|st| c.get(*st) > 0 && *st != JobState::Done)
            .map(|st| format!("{} {}", c.get(st), st.as_str()))
            .collect();
        let mut name = s.name.clone();
        if s.cancelled {
            name.push_str(" (cancelled)");
        } else if s.paused {
            name.push_str(" (paused)");
        }
        table.add_row(vec![
            Cell::new(name),
            Cell::new(&s.provider),
            Cell::new(format!(
                "{}/{}",
                c.get(JobState::Done),
                c.total() - c.get(JobState::Cancelled)
            )),
            Cell::new(format!(
                "{:.3}{}{}",
                s.credits_spent as f64 / 1000.0,
                s.budget_credits
                    .map(|b| format!(" / {:.3}", b as f64 / 1000.0))
                    .unwrap_or_default(),
                if s.provider == "simulator" {
                    " (simulated)"
                } else {
                    ""
                }
            )),
            Cell::new(states.join(", ")),
            Cell::new(&s.manifest_path),
        ]);
    }
    println!("{table}");
    ExitCode::Ok
}
