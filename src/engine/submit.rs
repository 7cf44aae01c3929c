//! The submit stage: claim the job [`super::next_job`] chooses (its intent committed first),
//! send it, record the answer.
//!
//! A submit is retried only when it certainly never reached the provider (a connect error) or
//! was refused outright (429, 402). Anything else after sending (a 5xx, a reset, a timeout, an
//! answer without a task id) may have created a billed task: the job becomes `unknown`, and is
//! re-sent only under its same idempotency key and only when the provider is trusted to honour it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{Engine, EngineError, Halt};
use crate::provider::{Provider, ProviderError};
use crate::store::{Commit, SubmitIntent, now_ms};

impl<P: Provider> Engine<P> {
    /// Until the provider has accepted one submit of this run, submits go one at a time: a bad
    /// key or an empty account then costs one refused request, not a burst of them.
    /// While the provider is failing (5xx, no connection), one submit at a time probes it.
    fn submit_concurrency(&self) -> usize {
        if self.provider_confirmed.load(Ordering::Relaxed) && !self.submit_pacing.in_trouble() {
            self.config.submit_concurrency.max(1)
        } else {
            1
        }
    }

    /// Submit for as long as the run lasts.
    pub(super) async fn submit_stage(
        self: Arc<Self>,
        stop: CancellationToken,
    ) -> Result<(), EngineError> {
        let mut sends = JoinSet::new();
        loop {
            if stop.is_cancelled() {
                break;
            }
            // Reap finished sends; a store failure in one of them is critical.
            while let Some(done) = sends.try_join_next() {
                super::joined(done)?;
            }
            let full = sends.len() >= self.submit_concurrency()
                || self.provider_in_flight().await? >= u64::from(self.config.max_in_flight);
            if full || self.halted().is_some() {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = self.wake.notified() => {}
                    Some(done) = sends.join_next(), if !sends.is_empty() => { super::joined(done)?; }
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
                continue;
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = self.submit_pacing.acquire() => {}
            }
            match self.claim_next().await? {
                Some((intent, commit)) => {
                    let engine = self.clone();
                    sends.spawn(async move { engine.send(*intent, commit).await });
                }
                None => {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = self.wake.notified() => {}
                        Some(done) = sends.join_next(), if !sends.is_empty() => { super::joined(done)?; }
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
        // Sends already on the wire finish and are recorded: their outcome must not be lost.
        while let Some(done) = sends.join_next().await {
            super::joined(done)?;
        }
        Ok(())
    }

    /// Submit what the limits allow right now, without waiting for the rate limit to refill.
    pub(super) async fn submit_pass(
        self: &Arc<Self>,
        stop: &CancellationToken,
    ) -> Result<(), EngineError> {
        let mut sends = JoinSet::new();
        while !stop.is_cancelled() && self.halted().is_none() {
            while sends.len() >= self.submit_concurrency() {
                if let Some(done) = sends.join_next().await {
                    super::joined(done)?;
                }
            }
            if self.provider_in_flight().await? >= u64::from(self.config.max_in_flight) {
                break;
            }
            if self.submit_pacing.try_acquire().is_some() {
                break;
            }
            match self.claim_next().await? {
                Some((intent, commit)) => {
                    let engine = self.clone();
                    sends.spawn(async move { engine.send(*intent, commit).await });
                }
                None => break,
            }
        }
        while let Some(done) = sends.join_next().await {
            super::joined(done)?;
        }
        Ok(())
    }

    /// The output folder's line for this submit (see [`crate::output`]), and the folder.
    fn submit_line(
        &self,
        intent: &SubmitIntent,
        state: &str,
        task_id: Option<&str>,
    ) -> std::io::Result<(Arc<crate::output::OutputDir>, crate::output::ResultLine)> {
        let folder = self.folders.get(std::path::Path::new(&intent.output_dir))?;
        let line = crate::output::ResultLine {
            job_key: intent.job_key.clone(),
            subject: intent.subject_id.clone(),
            batch: intent.batch_name.clone(),
            provider: self.scope().provider_id().to_owned(),
            task_id: task_id.map(str::to_owned),
            idempotency_key: Some(intent.idempotency_key.clone()),
            credits: intent.estimate_credits,
            state: state.to_owned(),
            at: now_ms(),
            ..Default::default()
        };
        Ok((folder, line))
    }

    /// The submit's `submitting` line, on disk before the submit leaves: recovery's never-sent
    /// check trusts its absence. The sync runs off the runtime, which it would hold still.
    async fn remember_sending(&self, intent: &SubmitIntent) -> std::io::Result<()> {
        let (folder, line) = self.submit_line(intent, "submitting", None)?;
        tokio::task::spawn_blocking(move || crate::output::append_in(&folder, &line))
            .await
            .map_err(std::io::Error::other)?
    }

    /// A later line of the submit: the task id the store records too, or a submit that never
    /// left, under the same key as its `submitting` line. Written, not waited for: one lost to
    /// a power cut costs, after a lost state folder, a job held as unknown, never a second bill.
    fn remember(
        &self,
        intent: &SubmitIntent,
        state: &str,
        task_id: Option<&str>,
    ) -> std::io::Result<()> {
        let (folder, line) = self.submit_line(intent, state, task_id)?;
        crate::output::append_unsynced_in(&folder, &line)
    }

    async fn send(
        self: Arc<Self>,
        intent: SubmitIntent,
        commit: Commit,
    ) -> Result<(), EngineError> {
        // Nothing of the submit leaves before its intent is on disk (claims in a row share one
        // sync: group commit).
        self.store.settled(commit).await?;
        // Media are published (uploaded if need be) before the output folder hears of the
        // submit: until that line is written, nothing has left for the provider.
        let request = match self.publisher.request_for(&intent.spec_json).await {
            Ok(r) => r,
            Err(e) if e.is_transient() => {
                self.store.record_not_sent(&intent, &e.to_string()).await?;
                self.submit_pacing.local_trouble();
                tracing::warn!(subject = %intent.subject_id, "not submitted yet: {e}");
                return Ok(());
            }
            Err(e) => {
                self.store.record_not_sent(&intent, &e.to_string()).await?;
                self.halt(Halt::Unpublishable(e.to_string()));
                return Ok(());
            }
        };
        // The output folder learns of the submit before it is sent, as the store did: a state
        // folder lost from here on finds it `unknown`, never sends it again silently.
        if let Err(e) = self.remember_sending(&intent).await {
            let why = format!(
                "cannot write {} in {}: {e}",
                crate::output::RESULTS_FILE,
                intent.output_dir
            );
            self.store.record_not_sent(&intent, &why).await?;
            self.submit_pacing.local_trouble();
            tracing::error!(subject = %intent.subject_id, "not submitted: {why}");
            return Ok(());
        }
        // The rate again, now that the intent's sync is behind: syncs of varying length must
        // not bunch sends closer than the provider allows.
        let on_wire = self.submit_pacing.before_send().await;
        let answer = self
            .provider
            .submit(&request, &intent.idempotency_key)
            .await;
        // Before anything is recorded, as for a 429: the next submit must already see it.
        if let Some(hint) = self.provider.take_rate_limit_hint() {
            self.submit_pacing.provider_told(hint);
        }
        self.record_answer(&intent, answer, on_wire.sent()).await?;
        drop(on_wire);
        if let Some(per_minute) = self.submit_pacing.take_learned() {
            tracing::info!(per_minute, "learned the provider's submit rate limit");
            self.store
                .remember_limit(self.scope().provider_id(), per_minute)
                .await?;
        }
        self.wake.notify_waiters();
        Ok(())
    }

    /// Record what the provider answered (store first, then the output folder), and act on it.
    async fn record_answer(
        &self,
        intent: &SubmitIntent,
        answer: Result<String, ProviderError>,
        sent: tokio::time::Instant,
    ) -> Result<(), EngineError> {
        let store = &self.store;
        let closed = |engine: &Self| {
            // A resend's earlier send may have billed: the output folder must not hear it closed.
            if intent.resend {
                return;
            }
            if let Err(e) = engine.remember(intent, "closed", None) {
                tracing::warn!(subject = %intent.subject_id, "cannot note an unsent submit in the output folder: {e}");
            }
        };
        match answer {
            Ok(task_id) => {
                if let Err(e) = self.remember(intent, "submitted", Some(&task_id)) {
                    tracing::warn!(subject = %intent.subject_id, "cannot note task {task_id} in the output folder: {e}");
                }
                let first = self.config.poll_schedule.first_delay(intent.duration_ms);
                let running = store
                    .record_submitted(intent, &task_id, now_ms() + first.as_millis() as i64)
                    .await?;
                if let Some(task) = running {
                    self.started_running(super::poll::Started::Known(task));
                }
                self.submit_pacing.accepted();
                self.provider_confirmed.store(true, Ordering::Relaxed);
                tracing::info!(
                    batch = %intent.batch_name, subject = %intent.subject_id, task = %task_id,
                    attempt = intent.attempt_number, "submitted"
                );
            }
            Err(ProviderError::NotSent(why)) => {
                // The pause first, as for a 429: no submit leaves during the write below.
                self.submit_pacing.server_trouble(None);
                store.record_not_sent(intent, &why).await?;
                closed(self);
                tracing::warn!(subject = %intent.subject_id, "submit not sent, will retry: {why}");
            }
            Err(e @ ProviderError::Unavailable { retry_after, .. }) => {
                // A 503 is "unable to handle the request" (RFC 9110): nothing was created, so
                // the job goes back to the queue, not to `unknown`. The breaker probes.
                let pause = self.submit_pacing.server_trouble(retry_after);
                let why = e.to_string();
                store.record_not_sent(intent, &why).await?;
                closed(self);
                tracing::warn!(
                    subject = %intent.subject_id, pause_s = pause.as_secs_f64(),
                    "{why}; not created, will retry"
                );
            }
            Err(ProviderError::RateLimited { retry_after }) => {
                // The pause first: a submit that leaves during the database write below would
                // cross the limit the provider just named.
                self.submit_pacing.rate_limited(retry_after, sent);
                store
                    .record_not_sent(intent, "rate limited by the provider (429)")
                    .await?;
                closed(self);
                tracing::warn!(
                    retry_after_s = retry_after.map(|d| d.as_secs_f64()),
                    "provider rate limit (429): slowing every submit down"
                );
            }
            Err(e @ ProviderError::Rejected { .. }) if intent.resend => {
                // The refusal is of this send; the first one may have made a billed task. Its
                // credits stay counted and a person decides (the provider's answer is kept).
                let why = format!(
                    "a re-send was refused ({e}); the first send may have made a task, which may be billed"
                );
                store.record_unknown(intent, &why).await?;
                store
                    .note_error_reference(intent.job_id, &e.reference())
                    .await?;
                self.note_outcome(intent.job_id);
                tracing::warn!(subject = %intent.subject_id, "{why}; held as unknown");
            }
            Err(e @ ProviderError::Rejected { .. }) => {
                let why = e.to_string();
                store.record_rejected(intent, &why).await?;
                store
                    .note_error_reference(intent.job_id, &e.reference())
                    .await?;
                self.note_outcome(intent.job_id);
                closed(self);
                tracing::warn!(subject = %intent.subject_id, "{why}");
            }
            Err(e @ ProviderError::Unauthorized { .. }) => {
                store.record_not_sent(intent, &e.to_string()).await?;
                closed(self);
                self.halt(Halt::Unauthorized(e.to_string()));
            }
            Err(e @ ProviderError::OutOfCredits { .. }) => {
                store.record_not_sent(intent, &e.to_string()).await?;
                closed(self);
                self.halt(Halt::OutOfCredits(e.to_string()));
            }
            Err(e @ (ProviderError::Ambiguous(_) | ProviderError::TaskNotFound { .. })) => {
                let why = format!("submit outcome unknown: {e}");
                self.submit_pacing.server_trouble(None);
                store.record_unknown(intent, &why).await?;
                let resends = {
                    let mut m = self
                        .unknown_resends
                        .lock()
                        .unwrap_or_else(|p| p.into_inner());
                    let n = m.entry(intent.attempt_id).or_default();
                    *n += 1;
                    *n
                };
                if self.config.trust_idempotency && resends <= self.config.max_unknown_resends {
                    store.release_unknown_job(intent.job_id).await?;
                    tracing::warn!(subject = %intent.subject_id, "{why}; re-sending under the same idempotency key");
                } else {
                    self.note_outcome(intent.job_id);
                    tracing::warn!(
                        subject = %intent.subject_id,
                        "{why}; held as unknown (`recast retry --unknown` re-sends it)"
                    );
                }
            }
        }
        Ok(())
    }
}
