//! Telling people and scripts what happened: outgoing webhooks signed per the Standard Webhooks
//! spec, and the `on_batch_done` command hook.
//!
//! Owns: the `notifications:` settings, which events exist (`batch.finished`,
//! `job.needs_person`, `budget.reached`, `balance.low`), spotting them in the store
//! (`detect.rs`), and delivering them (`deliver.rs`: signing, retries with backoff, the hook's
//! environment). Every notice goes through the store's outbox first, so it is delivered at
//! least once across crashes and its attempts are recorded.
//!
//! May not: block the engine (it runs as its own task and only reads what the engine wrote),
//! or let a secret reach a log, the store or an error.

mod deliver;
mod detect;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::store::{Store, StoreError};

/// The settings file's `notifications:` section.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySection {
    #[serde(default)]
    pub webhooks: Vec<WebhookSection>,
    /// A shell command run when a batch finishes, with `RECAST_BATCH`, `RECAST_RESULTS_FILE`,
    /// `RECAST_OUTPUT_DIR` and `RECAST_EVENT` (the notice's JSON) in its environment.
    pub on_batch_done: Option<String>,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSection {
    pub url: String,
    /// A file holding the signing secret (`whsec_` + base64, as Standard Webhooks issues
    /// them); `RECAST_WEBHOOK_SECRET` is used when this is not set.
    pub secret_file: Option<PathBuf>,
    /// The events to send (default: all).
    pub events: Option<Vec<String>>,
}

/// What can be notified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Nothing of the batch moves any more by itself: every clip made, or waiting for a person.
    BatchFinished,
    /// A job is rejected, failed, expired, unknown or lost.
    JobNeedsPerson,
    /// The batch's budget holds jobs back.
    BudgetReached,
    /// The account's balance fell under `provider.balance_warn_credits` (daemon).
    BalanceLow,
}

impl Event {
    pub const ALL: [Event; 4] = [
        Event::BatchFinished,
        Event::JobNeedsPerson,
        Event::BudgetReached,
        Event::BalanceLow,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Event::BatchFinished => "batch.finished",
            Event::JobNeedsPerson => "job.needs_person",
            Event::BudgetReached => "budget.reached",
            Event::BalanceLow => "balance.low",
        }
    }

    fn parse(name: &str) -> Option<Event> {
        Event::ALL.into_iter().find(|e| e.name() == name)
    }
}

/// A webhook's signing key. `Debug` never shows it.
#[derive(Clone)]
pub struct SigningKey(Vec<u8>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(***)")
    }
}

impl SigningKey {
    /// `whsec_` + base64 (the prefix may be left out).
    pub fn parse(text: &str) -> Option<SigningKey> {
        use base64::Engine;
        let text = text.trim();
        let b64 = text.strip_prefix("whsec_").unwrap_or(text);
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .ok()
            .filter(|k| !k.is_empty())
            .map(SigningKey)
    }
}

/// Where notices go.
#[derive(Debug, Clone)]
pub enum Target {
    Webhook {
        url: String,
        key: SigningKey,
    },
    /// `sh -c COMMAND`.
    Command(String),
}

#[derive(Debug, Clone)]
pub struct Destination {
    pub target: Target,
    pub events: Vec<Event>,
}

impl Destination {
    /// How the outbox names it: the URL, or `hook:on_batch_done`.
    fn name(&self) -> String {
        match &self.target {
            Target::Webhook { url, .. } => url.clone(),
            Target::Command(_) => "hook:on_batch_done".to_owned(),
        }
    }
}

/// The section resolved: secrets read, event names checked.
pub fn resolve(section: &NotifySection) -> Result<Vec<Destination>, String> {
    let mut out = Vec::new();
    for (i, w) in section.webhooks.iter().enumerate() {
        let field = format!("notifications.webhooks[{i}]");
        url::Url::parse(&w.url)
            .ok()
            .filter(|u| matches!(u.scheme(), "https" | "http"))
            .ok_or_else(|| format!("{field}.url: `{}` is not an http(s) URL", w.url))?;
        let secret = match &w.secret_file {
            Some(path) => crate::safe_fs::read_small(path, 4096)
                .ok_or_else(|| format!("{field}.secret_file: cannot read {}", path.display()))?,
            None => std::env::var("RECAST_WEBHOOK_SECRET").map_err(|_| {
                format!("{field}: no signing secret: set secret_file or RECAST_WEBHOOK_SECRET")
            })?,
        };
        let key = SigningKey::parse(&secret).ok_or_else(|| {
            format!("{field}: the signing secret is not `whsec_` followed by base64")
        })?;
        let events = match &w.events {
            None => Event::ALL.to_vec(),
            Some(names) => names
                .iter()
                .map(|n| {
                    Event::parse(n).ok_or_else(|| {
                        let all: Vec<&str> = Event::ALL.iter().map(|e| e.name()).collect();
                        format!("{field}.events: `{n}` is not an event: {}", all.join(", "))
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        out.push(Destination {
            target: Target::Webhook {
                url: w.url.clone(),
                key,
            },
            events,
        });
    }
    if let Some(command) = &section.on_batch_done {
        out.push(Destination {
            target: Target::Command(command.clone()),
            events: vec![Event::BatchFinished],
        });
    }
    Ok(out)
}

/// Spots events in the store and delivers them to the destinations.
pub struct Notifier {
    store: Arc<Store>,
    destinations: Vec<Destination>,
    http: reqwest::Client,
}

/// How often the notifier looks at the store and the outbox.
const TICK: Duration = Duration::from_millis(500);

impl Notifier {
    /// `None` when there is nowhere to send anything.
    pub fn new(store: Arc<Store>, destinations: Vec<Destination>) -> Option<Arc<Notifier>> {
        if destinations.is_empty() {
            return None;
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(20))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("recast/", env!("CARGO_PKG_VERSION")))
            .build()
            .ok()?;
        Some(Arc::new(Notifier {
            store,
            destinations,
            http,
        }))
    }

    /// Queue `event` (with its `data`) for every destination that wants it.
    fn enqueue(
        &self,
        event: Event,
        message_id: &str,
        data: serde_json::Value,
    ) -> Result<(), StoreError> {
        let payload = serde_json::json!({
            "type": event.name(),
            "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "data": data,
        })
        .to_string();
        for d in self
            .destinations
            .iter()
            .filter(|d| d.events.contains(&event))
        {
            self.store
                .enqueue_notice(message_id, &d.name(), event.name(), &payload)?;
        }
        Ok(())
    }

    /// The daemon's balance watch saw the balance fall under the threshold.
    pub fn balance_low(&self, credits: u64, threshold: u64) -> Result<(), StoreError> {
        self.enqueue(
            Event::BalanceLow,
            &format!("balance.low:{}", crate::store::now_ms() / 1000),
            serde_json::json!({ "balance_credits": credits, "threshold_credits": threshold }),
        )
    }

    /// Look and deliver until `stop`.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) -> Result<(), StoreError> {
        loop {
            self.detect()?;
            self.deliver_due().await?;
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = tokio::time::sleep(TICK) => {}
            }
        }
    }

    /// At the end of a one-shot run: look once more, and deliver what is due (retries
    /// included) for at most `within`. Returns how many notices are still undelivered.
    pub async fn flush(&self, within: Duration) -> Result<usize, StoreError> {
        let deadline = tokio::time::Instant::now() + within;
        self.detect()?;
        loop {
            self.deliver_due().await?;
            let pending = self.store.next_notice_at()?;
            let Some(at) = pending else { return Ok(0) };
            let wait = Duration::from_millis((at - crate::store::now_ms()).max(0) as u64);
            if tokio::time::Instant::now() + wait > deadline {
                return Ok(self.store.due_notices(i64::MAX, usize::MAX >> 1)?.len());
            }
            tokio::time::sleep(wait.max(Duration::from_millis(50))).await;
        }
    }
}
