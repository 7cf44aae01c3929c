//! `recast status`, `recast retry`, `recast approve` and `recast cancel`: reading and steering
//! batches in the state folder.

use super::ExitCode;
use super::args::{ApproveArgs, CancelArgs, RetryArgs, StatusArgs};
use super::plan_cmd::existing_store;
use crate::settings::Settings;
use crate::store::{JobState, RetrySelection, Store, StoreError};

pub fn status(settings: &Settings, args: StatusArgs) -> ExitCode {
    let store = match existing_store(settings) {
        Ok(Some(s)) => s,
        Ok(None) => {
            if args.json {
                println!("{{\"batches\": []}}");
            } else {
                eprintln!("no batches yet in {}", settings.state_dir.display());
            }
            return ExitCode::Ok;
        }
        Err(code) => return code,
    };
    let ids = match store.batch_ids_named(args.batch.as_deref()) {
        Ok(ids) => ids,
        Err(e) => return failure(e),
    };
    // A name shows every batch of that name (reading needs no choosing); --simulate only the
    // simulator's.
    let ids: Vec<i64> = ids
        .into_iter()
        .filter(|id| {
            !args.simulate
                || store
                    .batch_summary(*id)
                    .is_ok_and(|s| s.provider == "simulator")
        })
        .collect();
    let mut docs = Vec::new();
    let mut needs_person = false;
    for id in ids {
        let (summary, attention) = match (store.batch_summary(id), store.attention_jobs(id)) {
            (Ok(s), Ok(a)) => (s, a),
            (Err(e), _) | (_, Err(e)) => return failure(e),
        };
        let held = store.held_jobs(id).unwrap_or_default();
        needs_person |= !attention.is_empty();
        if args.json {
            docs.push(serde_json::json!({
                "batch": summary,
                "needs_a_person": attention,
                "held": held.iter().map(|(s, why)| serde_json::json!({"subject": s, "reason": why})).collect::<Vec<_>>(),
            }));
            continue;
        }
        print_batch(&store, &summary, &attention, &held, args.events);
    }
    let mut providers: Vec<String> = Vec::new();
    for id in store
        .batch_ids_named(args.batch.as_deref())
        .unwrap_or_default()
    {
        if let Ok(s) = store.batch_summary(id)
            && !providers.contains(&s.provider)
        {
            providers.push(s.provider);
        }
    }
    let accounts: Vec<serde_json::Value> = providers
        .iter()
        .filter_map(|p| account_view(&store, p, args.json))
        .collect();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "batches": docs, "accounts": accounts })
            )
            .unwrap_or_default()
        );
    }
    if needs_person {
        ExitCode::NeedsPerson
    } else {
        ExitCode::Ok
    }
}

/// One batch as `recast status` shows it: the line, the counts, what needs you, what is held,
/// the latest events.
fn print_batch(
    store: &Store,
    summary: &crate::store::BatchSummary,
    attention: &[crate::store::AttentionJob],
    held: &[(String, String)],
    events: Option<usize>,
) {
    let c = &summary.counts;
    println!(
        "{} ({}) · {} · spent {:.3} USD, refunded {:.3}{}{}",
        summary.name,
        summary.provider,
        subjects_and_jobs(summary),
        summary.credits_spent as f64 / 1000.0,
        summary.credits_refunded as f64 / 1000.0,
        summary
            .budget_credits
            .map(|b| format!(", budget {:.3}", b as f64 / 1000.0))
            .unwrap_or_default(),
        if summary.paused { " · PAUSED" } else { "" }
    );
    if summary.cancelled {
        println!(
            "  CANCELLED by a person: nothing of it is submitted until `recast resume {}`",
            summary.name
        );
    }
    if summary.awaiting_approval > 0 {
        println!(
            "  CANARY: {} jobs wait until you approve the first {} clips: `recast approve {}`",
            summary.awaiting_approval,
            summary.canary.unwrap_or_default(),
            summary.name
        );
    }
    let mut table = super::table::new_table();
    let present: Vec<JobState> = JobState::ALL
        .into_iter()
        .filter(|s| c.get(*s) > 0)
        .collect();
    table.set_header(present.iter().map(|s| s.as_str()).collect::<Vec<_>>());
    table.add_row(
        present
            .iter()
            .map(|s| c.get(*s).to_string())
            .collect::<Vec<_>>(),
    );
    println!("{table}");
    for job in attention {
        let reference = crate::provider::ErrorRef {
            code: job.error_code.clone(),
            request_id: job.request_id.clone(),
        };
        println!(
            "  needs you: {} [{}]{}: {}{}",
            job.subject_id,
            job.state,
            job.task_id
                .as_deref()
                .map(|t| format!(" task {t}"))
                .unwrap_or_default(),
            job.reason.as_deref().unwrap_or("no reason recorded"),
            // The request id is what the provider's support asks for.
            if reference.is_empty()
                || job
                    .reason
                    .as_deref()
                    .is_some_and(|r| r.contains(&reference.to_string()))
            {
                String::new()
            } else {
                reference.to_string()
            }
        );
    }
    for (subject, why) in held {
        println!("  held: {subject}: {why}");
    }
    if let Some(n) = events {
        for e in store.events(summary.id, n).unwrap_or_default() {
            println!("  {} {:<16} {}", local_time(e.at_ms), e.kind, e.message);
        }
    }
}

/// What the provider's account said at its last balance read, beside recast's own ledger, so a
/// leak shows at once. `None` when the balance was never read (`provider.dedicated_account`).
fn account_view(store: &Store, provider: &str, json: bool) -> Option<serde_json::Value> {
    let last = store.last_balance(provider).ok()??;
    let base = store.balance_baseline(provider).ok().flatten();
    let (went_down, explained) = match &base {
        Some(b) => (
            b.credits as i64 - last.credits as i64,
            last.ledger as i64 - b.ledger as i64,
        ),
        None => (0, 0),
    };
    let unaccounted = went_down - explained;
    if !json {
        println!(
            "account {provider}: balance {} credits ({:.3} USD) at its last read; since the \
             baseline it went down {went_down}, recast's ledger explains {explained}, \
             unaccounted {unaccounted}{}",
            last.credits,
            last.credits as f64 / 1000.0,
            if unaccounted != 0 {
                "  <-- look here"
            } else {
                ""
            }
        );
        if last.note != "baseline" {
            println!("  {}", last.note);
        }
    }
    Some(serde_json::json!({
        "provider": provider,
        "last_read": last,
        "baseline": base,
        "went_down_credits": went_down,
        "ledger_explains_credits": explained,
        "unaccounted_credits": unaccounted,
    }))
}

/// `3 subjects`, or `3 subjects, 4 jobs (1 an earlier version of a changed subject, its clip
/// kept)` when a subject was made again.
fn subjects_and_jobs(s: &crate::store::BatchSummary) -> String {
    let plural = |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let subjects = plural(s.subjects, "subject", "subjects");
    if s.earlier_versions == 0 {
        return subjects;
    }
    format!(
        "{subjects}, {} ({} an earlier version of a changed subject, its clip kept)",
        plural(s.counts.total(), "job", "jobs"),
        s.earlier_versions
    )
}

/// Unix milliseconds as the local wall-clock time a person reads (`2026-11-26 14:03:07`).
pub(super) fn local_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_else(|| ms.to_string())
}

/// The store of a state folder that must already hold batches, for a steering command.
fn steering_store(settings: &Settings) -> Result<Store, ExitCode> {
    match existing_store(settings)? {
        Some(store) => Ok(store),
        None => {
            eprintln!("error: no batches yet in {}", settings.state_dir.display());
            Err(ExitCode::Invalid)
        }
    }
}

/// The state folder's store and the batch a steering command changes (see `batch_ref`).
fn steered_batch(
    settings: &Settings,
    name: &str,
    simulate: bool,
) -> Result<(Store, i64), ExitCode> {
    let store = steering_store(settings)?;
    let id = super::batch_ref::select_batch(
        &store,
        settings,
        name,
        simulate,
        super::batch_ref::Purpose::Change,
    )?;
    Ok((store, id))
}

pub fn retry(settings: &Settings, args: RetryArgs) -> ExitCode {
    if !(args.failed || args.expired || args.unknown || args.rejected || args.lost) {
        eprintln!(
            "error: say which jobs to retry: --failed, --expired, --unknown, --rejected and/or --lost"
        );
        return ExitCode::Usage;
    }
    // Without the lock, like cancel and pause: it works while a daemon runs. Each change is one
    // transaction that only moves jobs in states the engine does not touch (failed, rejected,
    // expired, unknown, lost); the engine's own moves of unknown submits check their state too.
    let (store, id) = match steered_batch(settings, &args.batch, args.simulate) {
        Ok(found) => found,
        Err(code) => return code,
    };
    let which = RetrySelection {
        failed: args.failed,
        expired: args.expired,
        unknown: args.unknown,
        rejected: args.rejected,
        lost: args.lost,
    };
    let trust = settings.engine.trust_idempotency;
    let price = match store.retry_price(id, which, trust) {
        Ok(p) => p,
        Err(e) => return failure(e),
    };
    eprintln!(
        "{}: {} jobs to send back; {} of them submit again, at most {} credits ≈ {:.3} USD",
        args.batch,
        price.jobs,
        price.submits,
        price.credits,
        price.credits as f64 / 1000.0
    );
    if price.may_bill_twice > 0 && !args.yes {
        eprintln!(
            "{} of them may be billed a second time: their first task may exist (paid) even \
             though recast cannot reach it. Nothing was changed; add --yes to go ahead.",
            price.may_bill_twice
        );
        return ExitCode::Invalid;
    }
    match store.retry(id, which, trust) {
        Ok(n) => {
            eprintln!(
                "{n} jobs of {} sent back to work; `recast run` drives them",
                args.batch
            );
            ExitCode::Ok
        }
        Err(e) => failure(e),
    }
}

pub fn approve(settings: &Settings, args: ApproveArgs) -> ExitCode {
    // Through the database, like pause: a running daemon sees it at its next claim.
    let (store, id) = match steered_batch(settings, &args.batch, args.simulate) {
        Ok(found) => found,
        Err(code) => return code,
    };
    let summary = match store.batch_summary(id) {
        Ok(s) => s,
        Err(e) => return failure(e),
    };
    if summary.canary.is_none() {
        eprintln!("{} has no canary: nothing waits for approval", args.batch);
        return ExitCode::Ok;
    }
    if summary.approved {
        eprintln!("{} was approved already", args.batch);
        return ExitCode::Ok;
    }
    match store.approve(id) {
        Ok(n) => {
            eprintln!(
                "{} approved: {n} more jobs may be submitted; `recast run` (or a daemon) submits them",
                args.batch
            );
            ExitCode::Ok
        }
        Err(e) => failure(e),
    }
}

pub fn cancel(settings: &Settings, args: CancelArgs) -> ExitCode {
    // Like `pause`, a cancel goes through the database without the state folder's lock, so it
    // works while a daemon (or a long `recast run`) drives the batch: one transaction that only
    // moves jobs nothing is being sent for (planned, unknown), and the engine claims nothing of a
    // cancelled batch from then on.
    let (store, id) = match steered_batch(settings, &args.batch, args.simulate) {
        Ok(found) => found,
        Err(code) => return code,
    };
    match store.cancel(id, args.abandon) {
        Ok(n) => {
            eprintln!(
                "{n} jobs of {} cancelled{}",
                args.batch,
                if args.abandon {
                    ""
                } else {
                    "; tasks already running still finish and are downloaded by the next `recast run`"
                }
            );
            eprintln!(
                "nothing of {} is submitted again, by any run, schedule or daemon, until `recast resume {}`",
                args.batch, args.batch
            );
            ExitCode::Ok
        }
        Err(e) => failure(e),
    }
}

fn failure(e: StoreError) -> ExitCode {
    eprintln!("error: {e}");
    match e {
        StoreError::Busy { .. } => ExitCode::Busy,
        StoreError::NoSuchBatch(_) => ExitCode::Invalid,
        _ => ExitCode::Internal,
    }
}
