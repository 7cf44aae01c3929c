//! Input stamps: what a `recast run` of a manifest read when it last registered the batch, so
//! the next run of the same manifest can tell, from a `stat` of each file, that registering it
//! again would change nothing.
//!
//! Owns: the `input_stamps` rows and their files' chunks (kept, read as they go, forgotten),
//! the check that a line of the output folder's results file is one this state folder wrote
//! for the batch, and the public URL a run published a batch's folder under (so a daemon can
//! go on with it). What is known of each file read is `known_files`'.
//!
//! May not: stat files or decide whether a stamp still holds (`plan::stamp` does), or read the
//! results file (`output` does).

use rusqlite::{OptionalExtension, Transaction, params};

use super::Cached;
use super::{JobState, Store, StoreError, now_ms};
use crate::output::ResultLine;

/// A stamp's files are kept in chunks of about this many bytes.
const CHUNK_BYTES: usize = 64 << 10;

fn delete_chunks(
    tx: &Transaction<'_>,
    manifest_path: &str,
    provider: &str,
) -> rusqlite::Result<usize> {
    tx.exec(
        "DELETE FROM input_stamp_chunks WHERE manifest_path = ?1 AND provider = ?2",
        params![manifest_path, provider],
    )
}

fn add_chunk(
    tx: &Transaction<'_>,
    stamp: &InputStamp,
    seq: i64,
    bytes: &[u8],
) -> rusqlite::Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    tx.exec(
        "INSERT INTO input_stamp_chunks (manifest_path, provider, seq, bytes) VALUES (?1, ?2, ?3, ?4)",
        params![stamp.manifest_path, stamp.provider, seq, bytes],
    )?;
    Ok(())
}

/// A stamp's chunks read back as one stream of bytes.
struct ChunkReader<'a> {
    chunks: Box<dyn Iterator<Item = std::io::Result<Vec<u8>>> + 'a>,
    current: std::io::Cursor<Vec<u8>>,
}

impl std::io::Read for ChunkReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let n = self.current.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            match self.chunks.next() {
                Some(chunk) => self.current = std::io::Cursor::new(chunk?),
                None => return Ok(0),
            }
        }
    }
}

/// One stamp, as kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputStamp {
    pub manifest_path: String,
    pub provider: String,
    pub batch_id: i64,
    /// A digest of the settings and flags the batch was planned under.
    pub context: String,
    /// The batch's `updated_at` when it was registered: any later registration (the daemon's,
    /// another manifest's) makes the stamp stale.
    pub registered_at: i64,
    /// The output folder's results file (inode and length) as far as it was checked.
    pub results_ino: u64,
    pub results_len: u64,
    /// The batch's folders (read from the batch; not written with the stamp).
    pub base_dir: String,
    pub output_dir: String,
}

impl Store {
    /// Keep `stamp`, replacing the manifest's earlier one, its files' encoding written in
    /// chunks as `records` come, so a stamp of 100,000 files is never held whole. A record
    /// that is `None` (a file that cannot vouch) keeps nothing: returns whether it was kept.
    pub fn keep_stamp(
        &self,
        stamp: &InputStamp,
        records: impl Iterator<Item = Option<Vec<u8>>>,
    ) -> Result<bool, StoreError> {
        let mut whole = true;
        let kept = self.write("keep an input stamp", |tx| {
            tx.exec(
                "INSERT INTO input_stamps (manifest_path, provider, batch_id, context,
                     registered_at, files, results_ino, results_len, recorded_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, x'', ?6, ?7, ?8)
                 ON CONFLICT (manifest_path, provider) DO UPDATE SET batch_id = ?3, context = ?4,
                     registered_at = ?5, files = x'', results_ino = ?6, results_len = ?7,
                     recorded_at = ?8",
                params![
                    stamp.manifest_path,
                    stamp.provider,
                    stamp.batch_id,
                    stamp.context,
                    stamp.registered_at,
                    stamp.results_ino as i64,
                    stamp.results_len as i64,
                    now_ms()
                ],
            )?;
            delete_chunks(tx, &stamp.manifest_path, &stamp.provider)?;
            let mut chunk = Vec::with_capacity(CHUNK_BYTES);
            let mut seq = 0;
            for record in records {
                let Some(record) = record else {
                    whole = false;
                    // Nothing of a stamp that cannot vouch for every file is kept.
                    return Err(rusqlite::Error::InvalidQuery);
                };
                chunk.extend_from_slice(&record);
                if chunk.len() >= CHUNK_BYTES {
                    add_chunk(tx, stamp, seq, &chunk)?;
                    (seq, chunk) = (seq + 1, Vec::with_capacity(CHUNK_BYTES));
                }
            }
            add_chunk(tx, stamp, seq, &chunk)
        });
        match (kept, whole) {
            (Ok(()), _) => Ok(true),
            (Err(_), false) => Ok(false),
            (Err(e), true) => Err(e),
        }
    }

    /// Hand the kept encoding of a stamp's files (see `plan::stamp`) to `check`, read a chunk
    /// at a time.
    pub fn check_stamp_files(
        &self,
        stamp: &InputStamp,
        check: impl FnOnce(&mut dyn std::io::Read) -> bool,
    ) -> Result<bool, StoreError> {
        let conn = self.conn();
        let mut s = conn
            .prepare_cached(
                "SELECT bytes FROM input_stamp_chunks
                 WHERE manifest_path = ?1 AND provider = ?2 ORDER BY seq",
            )
            .map_err(self.sql_error("read an input stamp"))?;
        let chunks = s
            .query_map(params![stamp.manifest_path, stamp.provider], |r| {
                r.get::<_, Vec<u8>>(0)
            })
            .map_err(self.sql_error("read an input stamp"))?;
        let mut reader = ChunkReader {
            chunks: Box::new(chunks.map(|c| c.map_err(std::io::Error::other))),
            current: std::io::Cursor::new(Vec::new()),
        };
        Ok(check(&mut reader))
    }

    /// Move a stamp's results-file mark forward, after the lines up to it were checked.
    pub fn advance_stamp(
        &self,
        manifest_path: &str,
        provider: &str,
        results_ino: u64,
        results_len: u64,
    ) -> Result<(), StoreError> {
        self.note("advance an input stamp", |tx| {
            tx.exec(
                "UPDATE input_stamps SET results_ino = ?3, results_len = ?4
                 WHERE manifest_path = ?1 AND provider = ?2",
                params![
                    manifest_path,
                    provider,
                    results_ino as i64,
                    results_len as i64
                ],
            )
        })?;
        Ok(())
    }

    /// Forget a manifest's stamp: its next run plans it in full.
    pub fn forget_stamp(&self, manifest_path: &str, provider: &str) -> Result<(), StoreError> {
        self.write("forget an input stamp", |tx| {
            tx.exec(
                "DELETE FROM input_stamps WHERE manifest_path = ?1 AND provider = ?2",
                params![manifest_path, provider],
            )?;
            delete_chunks(tx, manifest_path, provider)
        })?;
        Ok(())
    }

    /// The manifest's stamp, if its batch is still as that registration left it.
    pub fn stamp(
        &self,
        manifest_path: &str,
        provider: &str,
    ) -> Result<Option<InputStamp>, StoreError> {
        let conn = self.conn();
        conn.row(
            "SELECT s.batch_id, s.context, s.registered_at, s.results_ino,
                    s.results_len, b.base_dir, b.output_dir
             FROM input_stamps s JOIN batches b ON b.id = s.batch_id
             WHERE s.manifest_path = ?1 AND s.provider = ?2 AND b.updated_at = s.registered_at",
            params![manifest_path, provider],
            |r| {
                Ok(InputStamp {
                    manifest_path: manifest_path.to_owned(),
                    provider: provider.to_owned(),
                    batch_id: r.get(0)?,
                    context: r.get(1)?,
                    registered_at: r.get(2)?,
                    results_ino: r.get::<_, i64>(3)? as u64,
                    results_len: r.get::<_, i64>(4)? as u64,
                    base_dir: r.get(5)?,
                    output_dir: r.get(6)?,
                })
            },
        )
        .optional()
        .map_err(self.sql_error("read an input stamp"))
    }

    /// When the batch was last registered (its `updated_at`).
    pub fn registered_at(&self, batch_id: i64) -> Result<Option<i64>, StoreError> {
        let conn = self.conn();
        conn.row(
            "SELECT updated_at FROM batches WHERE id = ?1",
            [batch_id],
            |r| r.get(0),
        )
        .optional()
        .map_err(self.sql_error("read when a batch was registered"))
    }

    /// Remember the public URL a run published the batch's folder under (`None`: none).
    pub fn set_media_base_url(&self, batch_id: i64, url: Option<&str>) -> Result<(), StoreError> {
        self.write("remember a batch's media URL", |tx| {
            tx.exec(
                "UPDATE batches SET media_base_url = ?2 WHERE id = ?1",
                params![batch_id, url],
            )
        })?;
        Ok(())
    }

    /// The folders of this provider's batches that a run published, with their public URLs.
    pub fn published_folders(&self, provider: &str) -> Result<Vec<(String, String)>, StoreError> {
        let conn = self.conn();
        let mut s = conn
            .prepare_cached(
                "SELECT base_dir, media_base_url FROM batches
                 WHERE provider = ?1 AND media_base_url IS NOT NULL ORDER BY id",
            )
            .map_err(self.sql_error("list published folders"))?;
        s.query_map([provider], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect())
            .map_err(self.sql_error("list published folders"))
    }

    /// Planned jobs of a batch, and the credits their estimates add up to (`None` if one has
    /// no price).
    pub fn planned_credits(&self, batch_id: i64) -> Result<(u64, Option<u64>), StoreError> {
        let conn = self.conn();
        conn.row(
            "SELECT count(*), sum(estimate_credits), count(estimate_credits) FROM jobs
             WHERE batch_id = ?1 AND state = 'planned'",
            [batch_id],
            |r| {
                let (n, sum, priced): (i64, Option<i64>, i64) = (r.get(0)?, r.get(1)?, r.get(2)?);
                Ok((n as u64, (priced == n).then(|| sum.unwrap_or(0) as u64)))
            },
        )
        .map_err(self.sql_error("add up planned credits"))
    }

    /// Whether a results-file line is one this state folder wrote for the batch: its job is
    /// the batch's, its submit (if it names one) is one of the job's attempts here, and a clip
    /// it records as landed is `done` here. Any other line (another state folder's, a hand
    /// edit) means registering again could change what is owed.
    pub fn results_line_is_ours(
        &self,
        batch_id: i64,
        line: &ResultLine,
    ) -> Result<bool, StoreError> {
        let conn = self.conn();
        let job: Option<(i64, String)> = conn
            .row(
                "SELECT id, state FROM jobs WHERE batch_id = ?1 AND job_key = ?2",
                params![batch_id, line.job_key],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(self.sql_error("check a results line"))?;
        let Some((job_id, state)) = job else {
            return Ok(false);
        };
        if line.state == "done" && state != JobState::Done.as_str() {
            return Ok(false);
        }
        let Some(key) = &line.idempotency_key else {
            return Ok(true);
        };
        let attempt: Option<i64> = conn
            .row(
                "SELECT 1 FROM attempts WHERE idempotency_key = ?1 AND job_id = ?2",
                params![key, job_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.sql_error("check a results line"))?;
        Ok(attempt.is_some())
    }
}
