//! Which batches a stage works on: those made for one provider, and optionally only some of
//! them. Every query of the engine's stages is scoped, so a `recast run --simulate` never polls a
//! real batch's tasks against the simulator, and a daemon never claims a simulator batch's jobs.

use super::Cached;
use super::{Store, StoreError};

/// The batches of one provider (by its identity: the base URL, or `simulator`), optionally only
/// the listed ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    provider: String,
    batch_ids: Option<Vec<i64>>,
}

impl Scope {
    /// Every batch made for `provider`, including ones registered later (the daemon).
    pub fn provider(provider: &str) -> Scope {
        Scope {
            provider: provider.to_owned(),
            batch_ids: None,
        }
    }

    /// Only these batches of `provider` (a `recast run`).
    pub fn batches(provider: &str, ids: Vec<i64>) -> Scope {
        Scope {
            provider: provider.to_owned(),
            batch_ids: Some(ids),
        }
    }

    pub fn provider_id(&self) -> &str {
        &self.provider
    }

    /// `AND <batch_col> IN (...)`: the scope as a filter on a column holding a batch id.
    pub(super) fn filter(&self, batch_col: &str) -> String {
        let ids = match &self.batch_ids {
            None => String::new(),
            Some(ids) => format!(" AND sb.id IN ({})", id_list(ids)),
        };
        format!(
            "AND {batch_col} IN (SELECT sb.id FROM batches sb WHERE sb.provider = {}{ids})",
            sql_text(&self.provider)
        )
    }

    /// `AND <batch_col> IN (...)` over every batch of the provider, whatever the listed ones:
    /// what the provider's own limits (tasks in flight) count.
    pub(super) fn provider_filter(&self, batch_col: &str) -> String {
        Scope::provider(&self.provider).filter(batch_col)
    }
}

/// A string as an SQL literal: SQLite's quoting (a doubled quote) is complete for text.
fn sql_text(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// SQL true when batch `b` may submit another job as far as its canary goes: it has none, a
/// person approved it, or fewer of its jobs than the canary were ever submitted.
pub(super) const CANARY_OPEN: &str =
    "(b.canary IS NULL OR b.approved = 1 OR b.canary_started < b.canary)";

pub(super) fn id_list(ids: &[i64]) -> String {
    if ids.is_empty() {
        // `IN ()` is a syntax error in SQLite; no id matches -1.
        return "-1".to_owned();
    }
    ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
}

impl Store {
    /// Whether any job in scope will still move by itself: submitting, running, downloading, or
    /// (when `with_planned`) planned, not held back, in a batch neither paused, cancelled nor
    /// waiting for its canary's approval.
    /// Asked often by a running engine, so it stops at the first such job.
    pub fn has_active_jobs(&self, scope: &Scope, with_planned: bool) -> Result<bool, StoreError> {
        let conn = self.conn();
        let filter = scope.filter("batch_id");
        let planned = if with_planned {
            format!(
                "OR EXISTS (SELECT 1 FROM jobs WHERE state = 'planned' AND held IS NULL {filter}
                     AND batch_id IN (SELECT id FROM batches b WHERE paused = 0 AND cancelled = 0
                         AND {CANARY_OPEN}))"
            )
        } else {
            String::new()
        };
        conn.row(
            &format!(
                "SELECT EXISTS (SELECT 1 FROM jobs
                     WHERE state IN ('submitting', 'running', 'downloading') {filter}) {planned}"
            ),
            [],
            |r| r.get(0),
        )
        .map_err(self.sql_error("look for active jobs"))
    }

    /// Output folders of the batches in scope.
    pub fn output_dirs(&self, scope: &Scope) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let mut s = conn
            .prepare_cached(&format!(
                "SELECT DISTINCT output_dir FROM batches WHERE 1 = 1 {}",
                scope.filter("id")
            ))
            .map_err(self.sql_error("list output folders"))?;
        s.query_map([], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .map_err(self.sql_error("list output folders"))
    }

    /// Tasks the provider is working on for us (or might be), across every batch made for it:
    /// what its in-flight cap counts.
    pub fn provider_in_flight(&self, scope: &Scope) -> Result<u64, StoreError> {
        let conn = self.conn();
        conn.row(
            &format!(
                "SELECT coalesce(sum(n), 0) FROM batch_state_counts
                 WHERE state IN ('submitting', 'running') {}",
                scope.provider_filter("batch_id")
            ),
            [],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| n as u64)
        .map_err(self.sql_error("count tasks in flight"))
    }
}

impl Store {
    /// Tasks in flight across every provider (the daemon's metrics).
    pub fn all_in_flight(&self) -> Result<u64, StoreError> {
        let conn = self.conn();
        conn.row(
            "SELECT coalesce(sum(n), 0) FROM batch_state_counts
             WHERE state IN ('submitting', 'running')",
            [],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| n as u64)
        .map_err(self.sql_error("count tasks in flight"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_provider_name_cannot_break_out_of_its_quotes() {
        let f = Scope::provider("x' OR 1=1 --").filter("batch_id");
        assert!(f.contains("'x'' OR 1=1 --'"), "{f}");
    }
}
