//! What `recast plan` and `recast run` say before anything is spent about reaching the real
//! provider: how each local file gets there (uploaded / already uploaded / under a base URL /
//! no way), and whether the account's balance pays for what would be submitted.
//!
//! Owns: those two views and their words. May not: upload anything (a plan only looks, with a
//! HEAD per file), or decide a run's course (the commands do, from what this returns).

use std::time::Duration;

use futures_util::StreamExt;

use crate::engine::{MediaPublisher, Route, StoredMedia};
use crate::manifest::{BatchSpec, MediaSource};
use crate::media_store::Presence;
use crate::provider::{HttpProvider, HttpProviderConfig, Provider, ProviderError};
use crate::settings::Settings;

/// Files looked up in the bucket by one plan, at most; the rest are said to be "to check".
const MAX_LOOKUPS: usize = 500;

/// How one local file reaches the provider.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MediaReach {
    pub file: String,
    /// `upload`, `uploaded`, `base_url`, `unchecked` or `none`.
    pub how: &'static str,
    /// The object or URL it is (or will be) fetched at; what went wrong for `none`.
    pub detail: String,
}

/// Every distinct local file of `batch`, and how it would reach the provider.
pub async fn media_reach(batch: &BatchSpec, publisher: &MediaPublisher) -> Vec<MediaReach> {
    let mut seen = std::collections::HashSet::new();
    let files: Vec<(String, StoredMedia)> = std::iter::once(&batch.reference_video)
        .chain(batch.jobs.iter().map(|j| &j.image))
        .filter(|m| matches!(m, MediaSource::Local(_)))
        .filter(|m| seen.insert(crate::plan::media_label(m).to_owned()))
        .map(|m| (crate::plan::media_label(m).to_owned(), StoredMedia::from(m)))
        .collect();
    futures_util::stream::iter(files.into_iter().enumerate())
        .map(|(i, (file, media))| async move {
            let (how, detail) = match publisher.route(&media) {
                Route::Url(u) | Route::BaseUrl(u) => ("base_url", u),
                Route::None => ("none", "no media_store.s3 and no media_base_url".to_owned()),
                Route::Store => look_up(publisher, &media, i < MAX_LOOKUPS).await,
            };
            MediaReach { file, how, detail }
        })
        .buffered(8)
        .collect()
        .await
}

async fn look_up(
    publisher: &MediaPublisher,
    media: &StoredMedia,
    allowed: bool,
) -> (&'static str, String) {
    let (Some(store), StoredMedia::File { path, sha256 }) = (publisher.store(), media) else {
        return ("upload", "hashed at submit time".to_owned());
    };
    let name = store.object_name(sha256, path);
    let place = store.describe(&name);
    if !allowed {
        return ("unchecked", place);
    }
    match store.presence(&name).await {
        Ok(Presence::Present) => ("uploaded", place),
        Ok(Presence::Absent) => ("upload", place),
        Err(e) => ("upload", format!("{place} (cannot check now: {e})")),
    }
}

/// The media lines of a plan; `Err` (exit 1) when a file has no way to the provider.
pub fn print_media(reach: &[MediaReach]) -> Result<(), String> {
    if reach.is_empty() {
        return Ok(());
    }
    let count = |how: &str| reach.iter().filter(|r| r.how == how).count();
    println!(
        "media: {} local file{} · {} to upload · {} already uploaded · {} under a base URL{}",
        reach.len(),
        if reach.len() == 1 { "" } else { "s" },
        count("upload") + count("unchecked"),
        count("uploaded"),
        count("base_url"),
        match count("none") {
            0 => String::new(),
            n => format!(" · {n} WITHOUT A WAY"),
        }
    );
    for r in reach.iter().take(20) {
        let how = match r.how {
            "upload" => "will be uploaded to",
            "uploaded" => "already uploaded:",
            "base_url" => "published at",
            "unchecked" => "uploaded unless there already:",
            _ => "NO WAY to the provider:",
        };
        println!("  {} {how} {}", r.file, r.detail);
    }
    if reach.len() > 20 {
        println!("  ... and {} more", reach.len() - 20);
    }
    let none = count("none");
    if none == 0 {
        return Ok(());
    }
    Err(format!(
        "{none} local file{} cannot reach the provider: the run would stop there. Set \
         `media_store.s3` in a settings file (recast uploads them to your bucket; see the \
         README's \"Against reAPI\"), or publish the manifest's folder and set --media-base-url, \
         or use https:// URLs in the manifest",
        if none == 1 { "" } else { "s" }
    ))
}

/// The account's balance against what would be submitted.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AccountCheck {
    pub balance_credits: u64,
    pub needed_credits: u64,
}

impl AccountCheck {
    pub fn enough(&self) -> bool {
        self.balance_credits >= self.needed_credits
    }

    pub fn describe(&self) -> String {
        let usd = |c: u64| c as f64 / 1000.0;
        if self.enough() {
            format!(
                "account: {} credits ({:.3} USD): enough for the {} credits ({:.3} USD) to submit",
                self.balance_credits,
                usd(self.balance_credits),
                self.needed_credits,
                usd(self.needed_credits)
            )
        } else {
            format!(
                "account: {} credits ({:.3} USD), but what would be submitted costs up to {} \
                 credits ({:.3} USD): short by {} credits ({:.3} USD)",
                self.balance_credits,
                usd(self.balance_credits),
                self.needed_credits,
                usd(self.needed_credits),
                self.needed_credits - self.balance_credits,
                usd(self.needed_credits - self.balance_credits)
            )
        }
    }
}

/// Read the balance (when a key is at hand) and set it against `needed_credits`. `Ok(None)`
/// when there is no key, the provider has no balance call, or it cannot be read now (said on
/// stderr); `Err` when the provider refused the key, which no submit would get past either.
pub async fn account_check(
    settings: &Settings,
    needed_credits: u64,
) -> Result<Option<AccountCheck>, ProviderError> {
    let Some(key) = settings.api_key().cloned() else {
        return Ok(None);
    };
    let provider = HttpProvider::new(HttpProviderConfig {
        base_url: settings.api_base.clone(),
        api_key: key,
        connect_timeout: Duration::from_secs(10),
        request_timeout: Duration::from_secs(20),
        max_wait: settings.max_provider_wait,
    })?;
    match provider.balance().await {
        Ok(Some(balance_credits)) => Ok(Some(AccountCheck {
            balance_credits,
            needed_credits,
        })),
        Ok(None) => Ok(None),
        Err(e @ ProviderError::Unauthorized { .. }) => Err(e),
        Err(e) => {
            eprintln!("warning: cannot read the account's balance now: {e}");
            Ok(None)
        }
    }
}
