//! One way to name a batch in every command that steers or shows one (`retry`, `cancel`,
//! `pause`, `resume`, `approve`, `status NAME --jobs`): the configured provider's batch of that
//! name (the one `recast run` without `--simulate` drives), or the simulator's with
//! `--simulate`. A command that only shows also takes the name alone when only one batch has
//! it; a change never does: a `recast cancel NAME` that landed on the only batch of that name,
//! a `--simulate` trial or another provider's, said nothing of NAME would be submitted again,
//! and the next `recast run` registered the configured provider's batch of that name, not
//! cancelled, and paid for it.
//! A miss says which batches of that name exist and the flag that reaches each.
//!
//! May not: change anything; it only finds.

use super::ExitCode;
use crate::settings::Settings;
use crate::store::Store;

/// What the command does with the batch it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Shows it: the only batch of a name is the one meant, whichever provider's.
    Look,
    /// Changes it: the configured provider's, or with `--simulate` the simulator's; no other.
    Change,
}

/// The batch `name` names, or the exit code after saying why there is none.
pub fn select_batch(
    store: &Store,
    settings: &Settings,
    name: &str,
    simulate: bool,
    purpose: Purpose,
) -> Result<i64, ExitCode> {
    let found = store.batches_named(name).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::Internal
    })?;
    let configured = settings.provider_identity(false);
    let wanted = if simulate {
        "simulator".to_owned()
    } else if let [(_, only)] = found.as_slice()
        && purpose == Purpose::Look
    {
        only.clone()
    } else {
        configured.clone()
    };
    if let Some((id, _)) = found.iter().find(|(_, p)| *p == wanted) {
        if !simulate && found.len() > 1 && found.iter().any(|(_, p)| p == "simulator") {
            eprintln!("({name} for {wanted}; the simulator's batch of that name takes --simulate)");
        }
        return Ok(*id);
    }
    if found.is_empty() {
        eprintln!(
            "error: no batch named `{name}` in {} (`recast status` lists them)",
            settings.state_dir.display()
        );
    } else {
        let reach: Vec<String> = found
            .iter()
            .map(|(_, p)| match p.as_str() {
                "simulator" => "the simulator's (add --simulate)".to_owned(),
                other => format!("{other}'s (add --api-base {other})"),
            })
            .collect();
        eprintln!(
            "error: no batch named `{name}` for {wanted}; there is {}",
            reach.join(" and ")
        );
    }
    Err(ExitCode::Invalid)
}
