//! The account as recast's own ledger sees it, against the balance the provider reports: how an
//! unknown submit (sent, answer lost) is resolved without the provider's de-duplication.
//!
//! Owns the SQL of the ledger (credits of every task recast knows it created, net of refunds:
//! billed amounts where the provider said them, estimates elsewhere), the balance reads, and
//! the transition of unknown submits once the balance proves what became of them. The decision
//! (when to read, whether the numbers prove anything) is the engine's.

use rusqlite::{OptionalExtension, params};

use super::Cached;
use super::jobs::event;
use super::{Store, StoreError, now_ms};

/// Attempt states the provider billed and did not refund.
const CHARGED: &str = "('accepted', 'completed')";

/// recast's own view of one provider's account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountLedger {
    /// Credits of the tasks recast knows it created and that were not refunded.
    pub charged: u64,
    /// Submits whose outcome is unknown, sent after the asked moment: (attempt id, upper bound
    /// of its charge).
    pub unknown: Vec<(i64, u64)>,
    /// Submits on the wire or tasks running: their charges or refunds may land unseen.
    pub in_flight: u64,
}

impl AccountLedger {
    /// What the unknown submits would have been charged had every one of them been created.
    pub fn unknown_credits(&self) -> u64 {
        self.unknown.iter().map(|(_, c)| c).sum()
    }
}

/// One read of the account's balance, beside recast's ledger then.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BalanceRead {
    pub at_ms: i64,
    pub credits: u64,
    pub ledger: u64,
    pub unknown: u64,
    pub note: String,
}

impl Store {
    /// recast's ledger for `provider`'s batches, with the unknown submits sent after
    /// `unknown_since` (Unix ms).
    pub fn account_ledger(
        &self,
        provider: &str,
        unknown_since: i64,
    ) -> Result<AccountLedger, StoreError> {
        let conn = self.conn();
        let what = "read the account ledger";
        let of_provider = "a.job_id IN (SELECT j.id FROM jobs j JOIN batches b ON b.id = j.batch_id
             WHERE b.provider = ?1)";
        let charged: i64 = conn
            .row(
                &format!(
                    "SELECT coalesce(sum(coalesce(a.billed_credits, a.credits_estimate, 0)), 0)
                     FROM attempts a WHERE a.state IN {CHARGED} AND {of_provider}"
                ),
                [provider],
                |r| r.get(0),
            )
            .map_err(self.sql_error(what))?;
        let in_flight: i64 = conn
            .row(
                "SELECT count(*) FROM jobs j JOIN batches b ON b.id = j.batch_id
                 WHERE b.provider = ?1 AND j.state IN ('submitting', 'running')",
                [provider],
                |r| r.get(0),
            )
            .map_err(self.sql_error(what))?;
        let mut s = conn
            .prepare_cached(&format!(
                "SELECT a.id, coalesce(a.credits_estimate, 0) FROM attempts a
                 WHERE a.state = 'unknown' AND a.created_at > ?2 AND {of_provider} ORDER BY a.id"
            ))
            .map_err(self.sql_error(what))?;
        let unknown = s
            .query_map(params![provider, unknown_since], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?.max(0) as u64))
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(self.sql_error(what))?;
        Ok(AccountLedger {
            charged: charged.max(0) as u64,
            unknown,
            in_flight: in_flight.max(0) as u64,
        })
    }

    /// What the provider says it billed for an attempt's task.
    pub async fn record_billed(&self, attempt_id: i64, credits: u64) -> Result<(), StoreError> {
        self.note_async("record a billed amount", move |tx| {
            set_billed(tx, attempt_id, credits)
        })
        .await?;
        Ok(())
    }

    /// Keep one balance read (taken while nothing was in flight).
    pub fn record_balance(
        &self,
        provider: &str,
        credits: u64,
        ledger: &AccountLedger,
        note: &str,
    ) -> Result<(), StoreError> {
        self.write("record a balance read", |tx| {
            tx.exec(
                "INSERT INTO balance_reads (provider, at, credits, ledger, unknown, note)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    provider,
                    now_ms(),
                    credits as i64,
                    ledger.charged as i64,
                    ledger.unknown.len() as i64,
                    note
                ],
            )
        })?;
        Ok(())
    }

    /// The newest read taken with no unknown submit whose fate could still change: the
    /// baseline later reads are measured from.
    pub fn balance_baseline(&self, provider: &str) -> Result<Option<BalanceRead>, StoreError> {
        self.balance_read(provider, "AND unknown = 0")
    }

    /// The newest read of `provider`'s balance.
    pub fn last_balance(&self, provider: &str) -> Result<Option<BalanceRead>, StoreError> {
        self.balance_read(provider, "")
    }

    fn balance_read(
        &self,
        provider: &str,
        filter: &str,
    ) -> Result<Option<BalanceRead>, StoreError> {
        let conn = self.conn();
        conn.row(
            &format!(
                "SELECT at, credits, ledger, unknown, note FROM balance_reads
                 WHERE provider = ?1 {filter} ORDER BY id DESC LIMIT 1"
            ),
            [provider],
            |r| {
                Ok(BalanceRead {
                    at_ms: r.get(0)?,
                    credits: r.get::<_, i64>(1)?.max(0) as u64,
                    ledger: r.get::<_, i64>(2)?.max(0) as u64,
                    unknown: r.get::<_, i64>(3)?.max(0) as u64,
                    note: r.get(4)?,
                })
            },
        )
        .optional()
        .map_err(self.sql_error("read the balance reads"))
    }

    /// The balance proved what became of these unknown submits: `created` ones were billed
    /// (their attempts count as charged; jobs still waiting on them become `lost`, a re-render
    /// being a person's priced choice), the others never made a task (their jobs go back to
    /// `planned`, to be submitted once). Returns how many jobs moved.
    pub fn resolve_unknown_submits(
        &self,
        attempts: &[i64],
        created: bool,
        evidence: &str,
    ) -> Result<usize, StoreError> {
        self.write("resolve unknown submits", |tx| {
            let mut moved = 0;
            for attempt in attempts {
                let (attempt_state, job_state) = if created {
                    ("accepted", "lost")
                } else {
                    ("not_sent", "planned")
                };
                tx.exec(
                    "UPDATE attempts SET state = ?2, error = ?3, updated_at = ?4
                     WHERE id = ?1 AND state = 'unknown'",
                    params![attempt, attempt_state, evidence, now_ms()],
                )?;
                let job: Option<(i64, i64)> = tx
                    .row(
                        "SELECT id, batch_id FROM jobs WHERE attempt_id = ?1 AND state = 'unknown'",
                        [attempt],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()?;
                let Some((job_id, batch_id)) = job else {
                    continue;
                };
                let detach = if created { "" } else { ", attempt_id = NULL" };
                moved += tx.exec(
                    &format!(
                        "UPDATE jobs SET state = ?2, reason = ?3, held = NULL{detach},
                             updated_at = ?4 WHERE id = ?1 AND state = 'unknown'"
                    ),
                    params![job_id, job_state, evidence, now_ms()],
                )?;
                event(tx, Some(batch_id), Some(job_id), job_state, evidence)?;
            }
            Ok(moved)
        })
    }

    /// The submit rate (calls a minute) the provider was last seen to accept, if learned.
    pub fn learned_limit(&self, provider: &str) -> Result<Option<f64>, StoreError> {
        let conn = self.conn();
        conn.row(
            "SELECT submit_per_minute FROM provider_limits WHERE provider = ?1",
            [provider],
            |r| r.get(0),
        )
        .optional()
        .map_err(self.sql_error("read a learned rate limit"))
    }

    /// Remember the submit rate the provider accepts (an observation: made again if lost).
    pub async fn remember_limit(&self, provider: &str, per_minute: f64) -> Result<(), StoreError> {
        let provider = provider.to_owned();
        self.note_async("remember a learned rate limit", move |tx| {
            tx.exec(
                "INSERT INTO provider_limits (provider, submit_per_minute, learned_at)
                 VALUES (?1, ?2, ?3)
                 ON CONFLICT (provider) DO UPDATE SET submit_per_minute = ?2, learned_at = ?3",
                params![provider, per_minute, now_ms()],
            )
        })
        .await?;
        Ok(())
    }
}

pub(super) fn set_billed(
    tx: &rusqlite::Transaction<'_>,
    attempt_id: i64,
    credits: u64,
) -> rusqlite::Result<usize> {
    tx.exec(
        "UPDATE attempts SET billed_credits = ?2 WHERE id = ?1 AND billed_credits IS NOT ?2",
        params![attempt_id, credits as i64],
    )
}
