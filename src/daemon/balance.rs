//! The daemon's watch on the account's balance: read every few minutes, exposed on `/metrics`
//! (`recast_account_balance_credits`), and a warning in the log when it falls under
//! `provider.balance_warn_credits`.
//!
//! Owns: the read schedule and the warning (a `balance.low` notice too, when notifications
//! are set). May not: decide anything about submits (the engine stops on a 402 by itself) or
//! write the store beyond queuing a notice: the dedicated-account settling in
//! `engine::balance` keeps its own, stricter reads.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::DaemonError;
use crate::provider::Provider;

/// How often the balance is read.
const EVERY: Duration = Duration::from_secs(300);

/// The last balance read, in credits; negative while none was read.
#[derive(Debug, Clone)]
pub struct BalanceGauge(Arc<AtomicI64>);

impl Default for BalanceGauge {
    fn default() -> Self {
        BalanceGauge(Arc::new(AtomicI64::new(-1)))
    }
}

impl BalanceGauge {
    pub fn get(&self) -> Option<u64> {
        u64::try_from(self.0.load(Ordering::Relaxed)).ok()
    }

    fn set(&self, credits: u64) {
        self.0.store(
            i64::try_from(credits).unwrap_or(i64::MAX),
            Ordering::Relaxed,
        );
    }
}

pub async fn watch<P: Provider>(
    provider: P,
    gauge: BalanceGauge,
    warn_under: Option<u64>,
    notifier: Option<Arc<crate::notify::Notifier>>,
    stop: CancellationToken,
) -> Result<(), DaemonError> {
    let mut was_low = false;
    loop {
        match provider.balance().await {
            Ok(Some(credits)) => {
                gauge.set(credits);
                let low = warn_under.is_some_and(|floor| credits < floor);
                if low && !was_low {
                    tracing::warn!(
                        balance_credits = credits,
                        threshold = warn_under,
                        "the account's balance is under provider.balance_warn_credits \
                         ({credits} credits ≈ {:.2} USD): top it up before submits are refused",
                        credits as f64 / 1000.0
                    );
                    if let (Some(n), Some(floor)) = (&notifier, warn_under) {
                        n.balance_low(credits, floor)?;
                    }
                }
                was_low = low;
            }
            Ok(None) => {
                tracing::debug!("the provider has no balance call; not watching it");
                return Ok(());
            }
            Err(e) => tracing::debug!("cannot read the balance now: {e}"),
        }
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            _ = tokio::time::sleep(EVERY) => {}
        }
    }
}
