//! `recast plan --markdown`: the plan as a Markdown comment for a pull request that touches a
//! manifest (the way Atlantis and Infracost comment): what it would submit and cost, the budget
//! verdict, the canary, and what changed since the state folder's last run.
//!
//! Owns: the comment's wording. May not: read anything the plan does not hold.

use std::fmt::Write;

use crate::plan::{BudgetVerdict, JobStatus, Plan};
use crate::store::JobState;

fn usd(credits: u64) -> String {
    format!("{:.3}", credits as f64 / 1000.0)
}

/// A cell's text with what would break a table row (`|`, newlines) made harmless.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\n', '\r'], " ")
}

pub fn render(plan: &Plan, lands_as: &dyn Fn(&crate::plan::PlannedJob) -> String) -> String {
    let mut md = String::new();
    let (n, credits) = plan.to_submit();
    let _ = writeln!(md, "### recast plan: `{}`\n", cell(&plan.batch.name));
    let _ = writeln!(
        md,
        "**{n} to submit** of {} subjects · {} · provider `{}`\n",
        plan.batch.jobs.len(),
        match credits {
            Some(c) => format!("at most **{} USD** ({c} credits)", usd(c)),
            None => "price unknown for some subjects".to_owned(),
        },
        cell(&plan.provider)
    );
    let changes: Vec<crate::plan::PlannedJob> = plan
        .jobs()
        .filter(|j| !matches!(j.status, JobStatus::Known(JobState::Done)))
        .collect();
    let unchanged = plan.batch.jobs.len() - changes.len();
    if changes.is_empty() {
        let _ = writeln!(
            md,
            "Nothing changed since the last run: every clip is made.\n"
        );
    } else {
        let _ = writeln!(md, "| subject | status | credits | USD | clip | notes |");
        let _ = writeln!(md, "| --- | --- | ---: | ---: | --- | --- |");
        for j in &changes {
            let (c, d) = match j.estimate {
                Some(e) => (e.credits.to_string(), usd(e.credits)),
                None => ("?".to_owned(), "price unknown".to_owned()),
            };
            let _ = writeln!(
                md,
                "| {} | {} | {c} | {d} | {} | {} |",
                cell(&j.spec.subject_id),
                j.status.label(),
                cell(&lands_as(j)),
                cell(&j.problems.join("; "))
            );
        }
        if unchanged > 0 {
            let _ = writeln!(
                md,
                "\n{unchanged} more subjects are made already: unchanged."
            );
        }
        md.push('\n');
    }
    let verdict = match &plan.budget {
        BudgetVerdict::NoBudget => "none set".to_owned(),
        BudgetVerdict::Within {
            budget_credits,
            committed_credits,
            to_submit_credits,
        } => format!(
            "within ({} spent + {} to submit of {} USD)",
            usd(*committed_credits),
            usd(*to_submit_credits),
            usd(*budget_credits)
        ),
        BudgetVerdict::Over {
            budget_credits,
            committed_credits,
            to_submit_credits,
        } => format!(
            "**OVER**: {} spent + {} to submit exceeds {} USD; a run submits only what fits",
            usd(*committed_credits),
            usd(*to_submit_credits),
            usd(*budget_credits)
        ),
        BudgetVerdict::PriceUnknown { subjects, .. } => {
            format!(
                "cannot be checked: no price for {}",
                cell(&subjects.join(", "))
            )
        }
    };
    let _ = writeln!(md, "- Budget: {verdict}");
    if let Some(canary) = plan.batch.canary {
        let _ = writeln!(
            md,
            "- Canary: {canary} subjects first; the rest wait for `recast approve {}`",
            cell(&plan.batch.name)
        );
    }
    if plan.invalid_count() > 0 {
        let _ = writeln!(
            md,
            "- **{} subjects left out**: they break the provider's input rules (see notes)",
            plan.invalid_count()
        );
    }
    md
}
