//! Unknown submits resolved by the account's balance, for a provider that does not de-duplicate.
//!
//! A submit sent and never answered (a crash, a cut connection) may or may not have created a
//! billed task. On an account used only by recast (`provider.dedicated_account`), the balance
//! settles it: read while nothing is in flight and no submit is unknown, it is a baseline; read
//! later, the drop since the baseline that recast's own ledger (tasks it knows it created, net
//! of refunds) does not explain is what the unknown submits cost. Exactly zero: none was created,
//! and they are submitted again, once. Exactly what all of them would cost: all were created,
//! and their jobs are `lost` (paid, no task id), for a person to re-render at a shown price.
//! Anything else proves nothing: they stay held, and `recast status` shows the numbers.
//!
//! Only while nothing is in flight, and only when the ledger did not move during the read: a
//! running task's refund or a submit on the wire would make the numbers a guess.

use std::time::Duration;

use super::{Engine, EngineError};
use crate::provider::Provider;
use crate::store::now_ms;

/// After this long a task the provider may have created has ended, and its charge or refund
/// has landed: an unknown submit older than this no longer moves the balance. A baseline can be
/// read while older unknown submits stand (a person may have written them off).
const SETTLED_AFTER: Duration = Duration::from_secs(48 * 3600);

impl<P: Provider> Engine<P> {
    /// Read the balance if the account is quiet; resolve unknown submits if it proves their
    /// fate. Returns how many jobs went back to be submitted.
    pub(super) async fn check_balance(&self) -> Result<usize, EngineError> {
        if !self.config.dedicated_account || self.config.trust_idempotency {
            return Ok(0);
        }
        let provider = self.scope().provider_id().to_owned();
        let settled = now_ms() - SETTLED_AFTER.as_millis() as i64;
        let young = self.store.account_ledger(&provider, settled)?;
        if young.in_flight > 0 {
            return Ok(0);
        }
        let base = self.store.balance_baseline(&provider)?;
        // The pool judged together: every unknown submit since the baseline (all of the young
        // ones were sent after it: it was read when none was young).
        let since = match &base {
            Some(b) if !young.unknown.is_empty() => b.at_ms,
            _ => settled,
        };
        let before = self.store.account_ledger(&provider, since)?;
        let balance = match self.provider.balance().await {
            Ok(Some(b)) => b,
            Ok(None) => {
                tracing::warn!("the provider has no balance call: unknown submits stay held");
                return Ok(0);
            }
            Err(e) => {
                tracing::warn!("cannot read the account's balance: {e}");
                return Ok(0);
            }
        };
        if self.store.account_ledger(&provider, since)? != before {
            return Ok(0);
        }
        if before.unknown.is_empty() {
            self.store
                .record_balance(&provider, balance, &before, "baseline")?;
            return Ok(0);
        }
        let Some(base) = base else {
            let note = "no earlier balance read to measure from: unknown submits stay held";
            self.store
                .record_balance(&provider, balance, &before, note)?;
            tracing::warn!("{note}");
            return Ok(0);
        };
        let went_down = i128::from(base.credits) - i128::from(balance);
        let explained = i128::from(before.charged) - i128::from(base.ledger);
        let unaccounted = went_down - explained;
        let possible = i128::from(before.unknown_credits());
        let verdict = match unaccounted {
            0 => Some(false),
            u if u == possible && possible > 0 => Some(true),
            _ => None,
        };
        let note = format!(
            "balance check: the account went down {went_down} credits since the baseline, \
             recast's ledger explains {explained}, leaving {unaccounted}; the {} unknown submits \
             would cost 0 if none was created, {possible} if all were: {}",
            before.unknown.len(),
            match verdict {
                Some(false) => "none was created, sending them once",
                Some(true) =>
                    "all were created and billed: lost (`recast retry --lost` remakes them at a price)",
                None => "that proves neither, so they stay held",
            }
        );
        self.store
            .record_balance(&provider, balance, &before, &note)?;
        let Some(created) = verdict else {
            tracing::warn!("{note}");
            return Ok(0);
        };
        let attempts: Vec<i64> = before.unknown.iter().map(|(id, _)| *id).collect();
        let moved = self
            .store
            .resolve_unknown_submits(&attempts, created, &note)?;
        tracing::warn!("{note}");
        self.wake.notify_waiters();
        Ok(if created { 0 } else { moved })
    }
}
