//! A planned batch held on disk while it is planned: the jobs of a streamed plan, staged in a
//! private SQLite file of their own until the whole manifest proved valid and the batch is
//! registered from them, sorted by subject id, in one transaction.
//!
//! Owns: the staging file (created under the temp folder, removed when dropped), its rows and
//! the order they are read back in. May not: touch the state folder's database (registration
//! reads these rows through [`super::Store::register_batch_from`]), or decide anything about a job: rows are
//! what the plan made of it.
//!
//! Why a file and not memory: a plan of 100,000 subjects is some 50 MB of requests; held in
//! memory it would be the largest thing a run ever holds. Staged, memory is SQLite's page cache
//! (capped here) and the chunk being planned. Why not the state folder: a first run creates no
//! state folder before its manifest proved valid, and a streamed manifest proves valid only at
//! its last chunk.

use std::path::Path;

use rusqlite::{Connection, params};

use super::jobs::NewJob;
use super::{Cached, StoreError};
use crate::media::{ImageFormat, ImageInfo};

/// SQLite's page cache for the staging file, in KiB (its sorter spills past it to temp files).
const CACHE_KIB: i64 = 2048;

/// One job as the plan staged it.
#[derive(Debug, Clone, PartialEq)]
pub struct StagedJob {
    /// What registration needs (`landed` and `adopt` are left for it to find).
    pub job: NewJob,
    /// The plan's word for the job's standing (`new`, `changed`, or the state the store has).
    pub status: String,
    /// The local subject image read (absolute), its sha256 and what its header said: for the
    /// stamp and the digests a later run may take instead of reading it again.
    pub image_path: Option<String>,
    pub image_sha256: Option<String>,
    pub image: Option<ImageInfo>,
}

/// The staged jobs of one plan.
#[derive(Debug)]
pub struct StagedJobs {
    conn: Connection,
    /// Holds the staging file's folder; removed with it.
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

impl StagedJobs {
    /// A new, empty staging file under the temp folder (`$TMPDIR`).
    pub fn new() -> Result<StagedJobs, StoreError> {
        let dir = tempfile::Builder::new()
            .prefix("recast-plan-")
            .tempdir()
            .map_err(|source| StoreError::Io {
                what: "create a folder to stage the plan in".to_owned(),
                source,
            })?;
        let path = dir.path().join("staged.db");
        let sql = |what| {
            let path = path.clone();
            move |source| StoreError::Sql { path, what, source }
        };
        let conn = Connection::open(&path).map_err(sql("open the staging file"))?;
        // Nothing here outlives the process: no journal, no syncs; sorts spill to files.
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA temp_store = FILE;
             PRAGMA cache_size = -{CACHE_KIB};
             CREATE TABLE staged (subject_id TEXT NOT NULL, job_key TEXT NOT NULL,
                 output_name TEXT NOT NULL, spec_json TEXT NOT NULL, duration_ms INTEGER NOT NULL,
                 estimate INTEGER, invalid_reason TEXT, status TEXT NOT NULL, image_path TEXT,
                 image_sha256 TEXT, image_format TEXT, image_width INTEGER, image_height INTEGER,
                 image_bytes INTEGER);"
        ))
        .map_err(sql("make the staging table"))?;
        Ok(StagedJobs {
            conn,
            _dir: dir,
            path,
        })
    }

    fn sql_error(&self, what: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError + '_ {
        move |source| StoreError::Sql {
            path: self.path.clone(),
            what,
            source,
        }
    }

    /// Stage `jobs`, in one transaction.
    pub fn add(&mut self, jobs: impl Iterator<Item = StagedJob>) -> Result<(), StoreError> {
        let tx = self.conn.transaction().map_err(|source| StoreError::Sql {
            path: self.path.clone(),
            what: "stage planned jobs",
            source,
        })?;
        for s in jobs {
            let j = &s.job;
            let image = s.image.as_ref();
            tx.exec(
                "INSERT INTO staged VALUES
                     (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                params![
                    j.subject_id,
                    j.key,
                    j.output_name,
                    j.spec_json,
                    j.duration_ms as i64,
                    j.estimate_credits.map(|c| c as i64),
                    j.invalid_reason,
                    s.status,
                    s.image_path,
                    s.image_sha256,
                    image.map(|i| i.format.as_str()),
                    image.map(|i| i.width),
                    image.map(|i| i.height),
                    image.map(|i| i.size_bytes as i64),
                ],
            )
            .map_err(|source| StoreError::Sql {
                path: self.path.clone(),
                what: "stage a planned job",
                source,
            })?;
        }
        tx.commit().map_err(self.sql_error("stage planned jobs"))
    }

    /// Hand every staged job to `f`, sorted by subject id (as a whole plan orders its jobs);
    /// `only_invalid` keeps those the plan found invalid. A failed read ends the rows with its
    /// error.
    pub fn read<R>(
        &self,
        only_invalid: bool,
        f: impl FnOnce(&mut dyn Iterator<Item = Result<StagedJob, StoreError>>) -> R,
    ) -> Result<R, StoreError> {
        let sql = match only_invalid {
            false => "SELECT * FROM staged ORDER BY subject_id",
            true => "SELECT * FROM staged WHERE invalid_reason IS NOT NULL ORDER BY subject_id",
        };
        let mut statement = self
            .conn
            .prepare(sql)
            .map_err(self.sql_error("read staged jobs"))?;
        let rows = statement
            .query_map([], staged_job)
            .map_err(self.sql_error("read staged jobs"))?;
        let mut rows = rows.map(|row| row.map_err(self.sql_error("read a staged job")));
        Ok(f(&mut rows))
    }

    /// Where the staging file is (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn staged_job(r: &rusqlite::Row<'_>) -> rusqlite::Result<StagedJob> {
    let format: Option<String> = r.get(10)?;
    let image = match format.as_deref().and_then(ImageFormat::from_name) {
        Some(format) => Some(ImageInfo {
            format,
            width: r.get(11)?,
            height: r.get(12)?,
            size_bytes: r.get::<_, i64>(13)? as u64,
        }),
        None => None,
    };
    Ok(StagedJob {
        job: NewJob {
            subject_id: r.get(0)?,
            key: r.get(1)?,
            output_name: r.get(2)?,
            spec_json: r.get(3)?,
            duration_ms: r.get::<_, i64>(4)? as u64,
            estimate_credits: r.get::<_, Option<i64>>(5)?.map(|c| c as u64),
            invalid_reason: r.get(6)?,
            landed: None,
            adopt: None,
        },
        status: r.get(7)?,
        image_path: r.get(8)?,
        image_sha256: r.get(9)?,
        image,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn staged(subject: &str, invalid: bool) -> StagedJob {
        StagedJob {
            job: NewJob {
                key: format!("{subject:0>64}"),
                subject_id: subject.to_owned(),
                output_name: format!("{subject}.mp4"),
                spec_json: "{}".to_owned(),
                duration_ms: 4000,
                estimate_credits: Some(12),
                invalid_reason: invalid.then(|| "too small".to_owned()),
                landed: None,
                adopt: None,
            },
            status: if invalid { "invalid" } else { "new" }.to_owned(),
            image_path: Some(format!("/subjects/{subject}.png")),
            image_sha256: Some("ab".repeat(32)),
            image: Some(ImageInfo {
                format: ImageFormat::Png,
                width: 300,
                height: 400,
                size_bytes: 670,
            }),
        }
    }

    #[test]
    fn staged_jobs_come_back_whole_sorted_by_subject_and_go_with_their_file() {
        let mut stage = StagedJobs::new().unwrap();
        let file = stage.path().to_path_buf();
        stage
            .add([staged("c", false), staged("a", true)].into_iter())
            .unwrap();
        stage.add([staged("b", false)].into_iter()).unwrap();
        let all: Vec<StagedJob> = stage
            .read(false, |rows| rows.collect::<Result<_, _>>())
            .unwrap()
            .unwrap();
        assert_eq!(
            all,
            vec![staged("a", true), staged("b", false), staged("c", false)]
        );
        let invalid = stage
            .read(true, |rows| {
                rows.map(|r| r.unwrap().job.subject_id).collect::<Vec<_>>()
            })
            .unwrap();
        assert_eq!(invalid, ["a"]);
        assert!(file.is_file());
        drop(stage);
        assert!(!file.exists(), "the staging file is removed with the plan");
    }
}
