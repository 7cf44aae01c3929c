//! What a run against the real provider needs before anything is spent: a key, the media store
//! (if one is set), a way for every local file to reach the provider, and a balance that pays
//! for what would be submitted. Shared by a run that plans and one that resumes an unchanged
//! batch.
//!
//! Owns: those checks and their words. May not: submit or upload anything.

use std::sync::Arc;
use std::time::Duration;

use super::ExitCode;
use crate::engine::MediaPublisher;
use crate::manifest::{BatchSpec, MediaSource};
use crate::settings::Settings;

/// Before anything is opened for the real provider: the media store, a way for every local
/// file, and a key. `subjects` counts the batch's subject images the publisher cannot publish
/// (the batch's own jobs, or a streamed plan's staged ones). Returns the media store, if one
/// is set.
pub(super) fn check_real_provider(
    batch: &BatchSpec,
    settings: &Settings,
    subjects: impl FnOnce(&MediaPublisher) -> usize,
) -> Result<Option<Arc<crate::media_store::MediaStore>>, ExitCode> {
    let media_store = open_real_provider(settings)?;
    let publisher = real_publisher(&batch.base_dir, settings, media_store.clone());
    let reference = usize::from(!publishable(&batch.reference_video, &publisher));
    if let Some(message) = unpublishable_media(batch, reference + subjects(&publisher)) {
        eprintln!("error: {message}");
        return Err(ExitCode::Invalid);
    }
    Ok(media_store)
}

/// The media store (if one is set) and a key, for the real provider.
pub(super) fn open_real_provider(
    settings: &Settings,
) -> Result<Option<Arc<crate::media_store::MediaStore>>, ExitCode> {
    let invalid = |message: String| {
        eprintln!("error: {message}");
        ExitCode::Invalid
    };
    let media_store = settings.open_media_store().map_err(invalid)?;
    if let Some(ttl) = media_store.as_ref().and_then(|s| s.url_lifetime())
        && ttl < SHORT_URL_TTL
    {
        eprintln!(
            "warning: presigned media URLs live {} s (media_store.s3.url_ttl_secs): a task \
             that waits longer in the provider's queue before fetching its media fails",
            ttl.as_secs()
        );
    }
    if settings.api_key().is_none() {
        return Err(invalid(
            "no API key: set REAPI_API_KEY (or `provider.api_key_file` in a settings file), \
             or try the manifest first with --simulate"
                .to_owned(),
        ));
    }
    Ok(media_store)
}

/// Stop before the first submit when the account cannot pay for `needed` credits (unless told
/// to spend what there is), or refuses the key.
pub(super) async fn check_balance(
    settings: &Settings,
    needed: u64,
    spend_available: bool,
) -> Result<(), ExitCode> {
    let account = super::reach::account_check(settings, needed)
        .await
        .map_err(|e| {
            eprintln!("error: {e}");
            eprintln!("nothing was submitted");
            ExitCode::ProviderRefused
        })?;
    let Some(account) = account else {
        return Ok(());
    };
    eprintln!("{}", account.describe());
    if !account.enough() && !spend_available {
        eprintln!(
            "error: stopped before the first submit: the balance cannot pay for this run. Top \
             the account up, or run with --spend-available to submit what the balance pays \
             for (the provider refuses the rest with 402)"
        );
        return Err(ExitCode::Invalid);
    }
    Ok(())
}

/// Presigned URLs shorter-lived than this are warned about: a provider's queue can hold a task
/// about this long before it fetches the media.
const SHORT_URL_TTL: Duration = Duration::from_secs(3600);

/// How local media reach the real provider: under `media_base_url`, else through the media store.
pub(super) fn real_publisher(
    base_dir: &std::path::Path,
    settings: &Settings,
    store: Option<Arc<crate::media_store::MediaStore>>,
) -> MediaPublisher {
    let mut publisher = MediaPublisher::default().with_store(store);
    if let Some(url) = &settings.media_base_url {
        publisher.publish(base_dir, url);
    }
    publisher
}

/// Whether `media` reaches the real provider: a URL, or a local file the publisher publishes.
fn publishable(media: &MediaSource, publisher: &MediaPublisher) -> bool {
    matches!(media, MediaSource::Remote { .. })
        || publisher.can_publish(&crate::engine::StoredMedia::from(media))
}

/// The batch's own subject images the publisher cannot publish.
pub(super) fn unpublishable_subjects(batch: &BatchSpec, publisher: &MediaPublisher) -> usize {
    batch
        .jobs
        .iter()
        .filter(|j| !publishable(&j.image, publisher))
        .count()
}

/// Local media need a public URL for the real provider; say so before anything is spent.
fn unpublishable_media(batch: &BatchSpec, local: usize) -> Option<String> {
    (local > 0).then(|| {
        format!(
            "{}: {local} local media file{} need a public URL: the provider fetches media by URL. \
             Set `media_store.s3` in a settings file (recast uploads them to your bucket: see the \
             README's \"Against reAPI\"), publish the manifest's folder and set --media-base-url \
             (or `provider.media_base_url`), use https:// URLs in the manifest, or try it with \
             --simulate. Nothing was submitted.",
            batch.manifest_path.display(),
            if local == 1 { "" } else { "s" }
        )
    })
}
