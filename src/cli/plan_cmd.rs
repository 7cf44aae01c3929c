//! `recast plan`: the manifest validated, probed and priced, as a table or a JSON document.

use comfy_table::{Cell, CellAlignment};

use super::ExitCode;
use super::args::PlanArgs;
use crate::manifest::{BatchSpec, LoadOptions};
use crate::plan::{BudgetVerdict, JobStatus, Plan, Prober, make_plan, round_usd};
use crate::pricing::credits_to_usd;
use crate::settings::Settings;
use crate::store::Store;

/// The provider a batch's clips are made for: a clip from the simulator never counts for reAPI.
pub fn provider_identity(settings: &Settings, simulate: bool) -> String {
    settings.provider_identity(simulate)
}

/// Read a manifest, printing every mistake in it on failure.
pub async fn load_manifest(
    path: &std::path::Path,
    settings: &Settings,
    known: Option<std::sync::Arc<dyn crate::manifest::KnownDigests>>,
) -> Result<BatchSpec, ExitCode> {
    let options = LoadOptions {
        allowed_roots: settings.allowed_roots.clone(),
        known,
    };
    let errors = match crate::plan::load_manifest(
        path,
        &options,
        &Prober::new(settings.engine.allow_private_networks),
    )
    .await
    {
        Ok(batch) => return Ok(batch),
        Err(errors) => errors,
    };
    for e in &errors.0 {
        eprintln!("error: {e}");
    }
    eprintln!(
        "{}: {} mistake{}; nothing was planned",
        path.display(),
        errors.0.len(),
        if errors.0.len() == 1 { "" } else { "s" }
    );
    Err(ExitCode::Invalid)
}

/// Open the state folder's store if it has one (a plan never creates state).
pub fn existing_store(settings: &Settings) -> Result<Option<Store>, ExitCode> {
    if !settings.state_dir.join("recast.db").exists() {
        return Ok(None);
    }
    Store::open(&settings.state_dir).map(Some).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::Internal
    })
}

pub async fn plan(settings: &Settings, args: PlanArgs) -> ExitCode {
    let batch = match load_manifest(&args.manifest, settings, None).await {
        Ok(b) => b,
        Err(code) => return code,
    };
    let store = match existing_store(settings) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let provider = provider_identity(settings, args.simulate);
    // How local media would reach the real provider: looked at before probing, and never
    // uploaded by a plan.
    let reach = if args.simulate {
        Vec::new()
    } else {
        let store = match settings.open_media_store() {
            Ok(s) => s,
            Err(message) => {
                eprintln!("error: {message}");
                return ExitCode::Invalid;
            }
        };
        let publisher = super::real_provider::real_publisher(&batch.base_dir, settings, store);
        super::reach::media_reach(&batch, &publisher).await
    };
    let plan = match make_plan(
        batch,
        &provider,
        &settings.prices,
        store.as_ref(),
        &Prober::new(settings.engine.allow_private_networks),
    )
    .await
    {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            eprintln!("nothing was planned: every clip follows the reference video");
            return ExitCode::Invalid;
        }
    };
    let account = match (args.simulate, plan.to_submit()) {
        (false, (n, Some(credits))) if n > 0 => {
            super::reach::account_check(settings, credits).await
        }
        _ => Ok(None),
    };
    let account = match account {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::ProviderRefused;
        }
    };
    let mut code = plan_exit_code(&plan);
    if args.json {
        let mut doc = plan.to_json();
        let folder = clip_folder(&plan, args.simulate);
        if let Some(jobs) = doc["jobs"].as_array_mut() {
            for (entry, job) in jobs.iter_mut().zip(plan.jobs()) {
                entry["lands_as"] = serde_json::json!(lands_as(&job, &folder));
            }
        }
        doc["media"] = serde_json::json!(reach);
        doc["canary"] = serde_json::json!(plan.batch.canary);
        doc["account"] = serde_json::json!(account);
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        if reach.iter().any(|r| r.how == "none") || account.as_ref().is_some_and(|a| !a.enough()) {
            code = ExitCode::Invalid;
        }
        return code;
    }
    if args.markdown {
        let folder = clip_folder(&plan, args.simulate);
        print!(
            "{}",
            super::plan_markdown::render(&plan, &|j| lands_as(j, &folder))
        );
        if let Some(account) = &account {
            println!("- {}", account.describe());
        }
        if reach.iter().any(|r| r.how == "none") {
            code = ExitCode::Invalid;
            println!("- **Local media cannot reach the provider**: set `media_store.s3`");
        }
        return code;
    }
    print_plan(&plan, args.simulate);
    if let Err(message) = super::reach::print_media(&reach) {
        eprintln!("error: {message}");
        code = ExitCode::Invalid;
    }
    if let Some(account) = &account {
        println!("{}", account.describe());
        if !account.enough() {
            code = ExitCode::Invalid;
        }
    }
    code
}

pub fn plan_exit_code(plan: &Plan) -> ExitCode {
    if plan.budget.passes() && plan.invalid_count() == 0 {
        ExitCode::Ok
    } else {
        ExitCode::Invalid
    }
}

fn usd(credits: u64) -> String {
    format!("{:.3}", round_usd(credits_to_usd(credits)))
}

/// Where the plan's clips land: a `--simulate` run keeps its own under `simulated/`.
fn clip_folder(plan: &Plan, simulate: bool) -> std::path::PathBuf {
    if simulate {
        plan.batch.output_dir.join("simulated")
    } else {
        plan.batch.output_dir.clone()
    }
}

/// The name a job's clip lands under: for one still to make, the first free name (a changed
/// subject's new clip goes beside its old one).
fn lands_as(job: &crate::plan::PlannedJob, folder: &std::path::Path) -> String {
    if job.status.would_submit() {
        crate::engine::planned_name(folder, &job.spec.output_name, job.spec.key.hex().as_str())
    } else {
        job.spec.output_name.to_string()
    }
}

pub fn print_plan(plan: &Plan, simulate: bool) {
    let folder = clip_folder(plan, simulate);
    let r = &plan.reference;
    println!(
        "batch {} · reference {} ({:?}, {:.1} s, {}x{}) · provider {}",
        plan.batch.name,
        crate::plan::media_label(&plan.batch.reference_video),
        r.container,
        r.duration_ms as f64 / 1000.0,
        r.width,
        r.height,
        plan.provider
    );
    let mut table = super::table::new_table();
    table.set_header(vec![
        "subject", "image", "mode", "status", "credits", "USD", "notes",
    ]);
    for job in plan.jobs() {
        let image = match &job.image {
            Some(i) => format!("{:?} {}x{}", i.format, i.width, i.height).to_lowercase(),
            None => "unreadable".to_owned(),
        };
        let (credits, dollars) = match job.estimate {
            Some(e) => (e.credits.to_string(), usd(e.credits)),
            None => ("?".to_owned(), "price unknown".to_owned()),
        };
        table.add_row(vec![
            Cell::new(&job.spec.subject_id),
            Cell::new(image),
            Cell::new(job.spec.settings.mode),
            Cell::new(job.status.label()),
            Cell::new(credits).set_alignment(CellAlignment::Right),
            Cell::new(dollars).set_alignment(CellAlignment::Right),
            Cell::new(if job.status == JobStatus::Invalid {
                job.problems.join("; ")
            } else {
                lands_as(&job, &folder)
            }),
        ]);
    }
    println!("{table}");
    let (n, credits) = plan.to_submit();
    match credits {
        Some(c) => println!(
            "{} subjects · {} to submit · estimated {} credits ≈ {} USD (upper bound)",
            plan.batch.jobs.len(),
            n,
            c,
            usd(c)
        ),
        None => println!(
            "{} subjects · {} to submit · price unknown for some (their model is not in the price table)",
            plan.batch.jobs.len(),
            n
        ),
    }
    if let Some(n) = plan.batch.canary {
        print_canary(plan, n);
    }
    if plan.invalid_count() > 0 {
        println!(
            "{} subject{} left out: they break the provider's input rules (see notes)",
            plan.invalid_count(),
            if plan.invalid_count() == 1 { "" } else { "s" }
        );
    }
    match &plan.budget {
        BudgetVerdict::NoBudget => println!("budget: none set"),
        BudgetVerdict::Within {
            budget_credits,
            committed_credits,
            to_submit_credits,
        } => println!(
            "budget: within ({} + {} of {} USD)",
            usd(*committed_credits),
            usd(*to_submit_credits),
            usd(*budget_credits)
        ),
        BudgetVerdict::Over {
            budget_credits,
            committed_credits,
            to_submit_credits,
        } => println!(
            "budget: OVER: {} USD already committed + {} USD to submit exceeds {} USD; `recast run` submits only what fits",
            usd(*committed_credits),
            usd(*to_submit_credits),
            usd(*budget_credits)
        ),
        BudgetVerdict::PriceUnknown { subjects, .. } => println!(
            "budget: cannot be checked: no price for {} (add it under `prices:` in the settings file)",
            subjects.join(", ")
        ),
    }
}

/// The canary's first subjects and the fan-out that waits for approval, with their costs.
fn print_canary(plan: &Plan, n: u32) {
    let to_submit: Vec<_> = plan.jobs().filter(|j| j.status.would_submit()).collect();
    let (first, rest) = to_submit.split_at(to_submit.len().min(n as usize));
    let credits = |jobs: &[crate::plan::PlannedJob]| -> u64 {
        jobs.iter()
            .filter_map(|j| j.estimate.map(|e| e.credits))
            .sum()
    };
    println!(
        "canary: {} subject{} first ({} USD), then {} more ({} USD) wait for `recast approve {}`",
        first.len(),
        if first.len() == 1 { "" } else { "s" },
        usd(credits(first)),
        rest.len(),
        usd(credits(rest)),
        plan.batch.name
    );
}
