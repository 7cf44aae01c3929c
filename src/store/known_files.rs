//! What earlier plans learned of local files, so a plan of the same files reads only those
//! that changed: each file's sha256 by its identity (`file_digests`), and each subject image's
//! header by its content (`image_probes`).
//!
//! Owns: those two tables, their lookups, and how long a row is kept unread ([`DIGESTS_KEPT`]).
//!
//! May not: stat or open files, or decide when an identity vouches for a digest
//! (`plan::known` and `file_identity` do).

use rusqlite::{OptionalExtension, params};

use super::{Cached, Store, StoreError, now_ms};
use crate::media::{IMAGE_PROBE_VERSION, ImageFormat, ImageInfo};

/// How long a file's digest (and its image's header) is kept after the last plan that read it.
pub const DIGESTS_KEPT: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);
const DAY_MS: i64 = 24 * 3600 * 1000;

/// A local file a plan read and may keep: its identity (encoded) vouches for its digest; a
/// subject image also keeps what its header said.
#[derive(Debug, Clone)]
pub struct KnownFile {
    pub path: String,
    pub identity: Vec<u8>,
    pub sha256: String,
    pub image: Option<ImageInfo>,
}

impl Store {
    /// The identity (encoded) and sha256 recorded for the file at `path`, if any.
    pub fn file_digest(&self, path: &str) -> Result<Option<(Vec<u8>, String)>, StoreError> {
        let conn = self.conn();
        conn.row(
            "SELECT identity, sha256 FROM file_digests WHERE path = ?1",
            [path],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(self.sql_error("read a file's digest"))
    }

    /// Whether any image header is kept: a first plan skips asking for each of its images.
    pub fn has_image_probes(&self) -> Result<bool, StoreError> {
        let conn = self.conn();
        conn.row("SELECT EXISTS (SELECT 1 FROM image_probes)", [], |r| {
            r.get(0)
        })
        .map_err(self.sql_error("look for kept image headers"))
    }

    /// What the header of the image whose content has this sha256 said, as read by this
    /// version of the header readers.
    pub fn image_probe(&self, sha256: &str) -> Result<Option<ImageInfo>, StoreError> {
        let conn = self.conn();
        let row = conn
            .row(
                "SELECT format, width, height, size_bytes FROM image_probes
                 WHERE sha256 = ?1 AND prober = ?2",
                params![sha256, IMAGE_PROBE_VERSION],
                |r| {
                    let format: String = r.get(0)?;
                    Ok(ImageFormat::from_name(&format).map(|format| ImageInfo {
                        format,
                        width: r.get(1).unwrap_or(0),
                        height: r.get(2).unwrap_or(0),
                        size_bytes: r.get::<_, i64>(3).unwrap_or(0) as u64,
                    }))
                },
            )
            .optional()
            .map_err(self.sql_error("read an image's header"))?;
        Ok(row.flatten())
    }

    /// Record files by identity, and images' headers by content (a cache: written without
    /// waiting for the disk); drop what no plan has read for [`DIGESTS_KEPT`]. A row still in
    /// use is stamped as read at most once a day, so planning a large folder again writes only
    /// what changed. Returns how many digests were new, changed or stamped.
    pub fn remember_files(
        &self,
        files: impl Iterator<Item = KnownFile>,
    ) -> Result<usize, StoreError> {
        let now = now_ms();
        self.note("remember file digests", |tx| {
            let mut changed = 0;
            for file in files {
                changed += tx.exec(
                    "INSERT INTO file_digests (path, identity, sha256, seen_at)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (path) DO UPDATE SET identity = ?2, sha256 = ?3, seen_at = ?4
                     WHERE identity != ?2 OR sha256 != ?3 OR seen_at < ?4 - ?5",
                    params![file.path, file.identity, file.sha256, now, DAY_MS],
                )?;
                if let Some(image) = &file.image {
                    tx.exec(
                        "INSERT INTO image_probes
                             (sha256, prober, format, width, height, size_bytes, seen_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                         ON CONFLICT (sha256) DO UPDATE SET prober = ?2, format = ?3,
                             width = ?4, height = ?5, size_bytes = ?6, seen_at = ?7
                         WHERE prober != ?2 OR seen_at < ?7 - ?8",
                        params![
                            file.sha256,
                            IMAGE_PROBE_VERSION,
                            image.format.as_str(),
                            image.width,
                            image.height,
                            image.size_bytes as i64,
                            now,
                            DAY_MS
                        ],
                    )?;
                }
            }
            let cutoff = now - DIGESTS_KEPT.as_millis() as i64;
            tx.exec("DELETE FROM file_digests WHERE seen_at < ?1", [cutoff])?;
            tx.exec("DELETE FROM image_probes WHERE seen_at < ?1", [cutoff])?;
            Ok(changed)
        })
    }
}
