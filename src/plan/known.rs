//! Digests of local files that earlier runs computed, kept in the state folder by the file's
//! identity, and what each subject image's header said, by its content, so that planning a
//! batch again reads, hashes and probes only the files that changed: a standing performance
//! that gains one image, a manifest edited beside 100,000 subjects.
//!
//! Owns: the bridge from the manifest's [`KnownDigests`] to the store, and which digests and
//! headers of a plan are kept. May not: take a digest for a file on anything less than its
//! whole identity, or keep the digest of a file that changed too close to its reading (see
//! [`crate::file_identity`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::{Plan, StreamedPlan};
use crate::file_identity::{DIGEST_WORTH_KEEPING, FileIdentity};
use crate::manifest::{BatchSpec, KnownDigests, LocalMedia, MediaSource};
use crate::media::ImageInfo;
use crate::store::{KnownFile, Store, StoreError};

/// The digests a state folder keeps, as the manifest asks for them.
#[derive(Debug)]
pub struct DigestsInStore {
    store: Arc<Store>,
}

impl DigestsInStore {
    pub fn new(store: Arc<Store>) -> DigestsInStore {
        DigestsInStore { store }
    }
}

impl KnownDigests for DigestsInStore {
    fn sha256(&self, path: &Path, identity: &FileIdentity) -> Option<String> {
        let (recorded, sha256) = self.store.file_digest(path.to_str()?).ok()??;
        (FileIdentity::from_bytes(&recorded)? == *identity).then_some(sha256)
    }
}

/// Keep the digest of every local file `plan` read whose identity vouches for it, and what each
/// such subject image's header said: one changed within `racy` of the moment its manifest's
/// reading began, or since, is left out (its digest and header may describe two contents), and
/// so is one too small to be worth it ([`DIGEST_WORTH_KEEPING`]). Returns how many digests were
/// new or changed.
pub fn remember(store: &Store, plan: &Plan, racy: Duration) -> Result<usize, StoreError> {
    let images = plan.jobs().filter_map(|j| {
        let local = local_of(&j.spec.image)?;
        Some((local.path().to_path_buf(), local.sha256(), j.image.cloned()))
    });
    remember_read(store, &plan.batch, images, racy)
}

/// [`remember`] for a plan made in chunks, its images read back from the staging file.
pub fn remember_staged(
    store: &Store,
    plan: &StreamedPlan,
    racy: Duration,
) -> Result<usize, StoreError> {
    plan.staged.read(false, |rows| {
        // A cache: a staged row that cannot be read is one digest less kept.
        let images = rows
            .map_while(Result::ok)
            .filter_map(|row| Some((PathBuf::from(row.image_path?), row.image_sha256?, row.image)));
        remember_read(store, &plan.batch, images, racy)
    })?
}

fn remember_read(
    store: &Store,
    batch: &BatchSpec,
    images: impl Iterator<Item = (PathBuf, String, Option<ImageInfo>)>,
    racy: Duration,
) -> Result<usize, StoreError> {
    let Some(read_at) = batch.inputs.read_at else {
        return Ok(0);
    };
    let files = local_of(&batch.reference_video)
        .map(|video| (video.path().to_path_buf(), video.sha256(), None))
        .into_iter()
        .chain(images);
    let rows = files.filter_map(|(path, sha256, image)| {
        let meta = std::fs::metadata(&path).ok()?;
        if meta.len() < DIGEST_WORTH_KEEPING {
            return None;
        }
        let identity = FileIdentity::of_metadata(&meta);
        if !identity.settled_before(read_at, racy) {
            return None;
        }
        Some(KnownFile {
            path: path.to_str()?.to_owned(),
            identity: identity.to_bytes().to_vec(),
            sha256,
            image,
        })
    });
    store.remember_files(rows)
}

/// Headers of images an earlier plan probed, by content: an image whose digest is known is
/// neither read nor opened again. Only asked when the store keeps any (not on a first plan).
pub(super) struct KnownHeaders<'a>(Option<&'a Store>);

impl<'a> KnownHeaders<'a> {
    pub(super) fn of(store: Option<&'a Store>) -> KnownHeaders<'a> {
        KnownHeaders(store.filter(|s| s.has_image_probes().unwrap_or(false)))
    }

    pub(super) fn get(&self, image: &MediaSource) -> Option<ImageInfo> {
        let (Some(store), MediaSource::Local(local)) = (self.0, image) else {
            return None;
        };
        // A failed lookup only costs a probe.
        store.image_probe(&local.sha256()).ok().flatten()
    }
}

fn local_of(media: &MediaSource) -> Option<&LocalMedia> {
    match media {
        MediaSource::Local(local) => Some(local),
        MediaSource::Remote { .. } => None,
    }
}
