//! The output folder's own memory, so that it, not only a state folder, says what it holds.
//!
//! Owns: `recast-results.jsonl`, JSON lines appended and fsynced as a job's money moves: before
//! a submit is sent (`submitting`, with its idempotency key), when the provider answers with a
//! task (`submitted`, with the task id), when a submit certainly created nothing (`closed`), and
//! when the clip lands (`done`: file, sha256, bytes); and, for a person, when a job comes to need
//! one (`rejected`, `failed`, `expired`, `lost`, `unknown`, with the error). The last money line
//! of a job key is its state.
//! Read back when a batch is registered, it makes a verified clip `done` for any state folder
//! (a lost state folder, a CI cache evicted, `cd` into another folder), and a task in flight
//! followed rather than billed again; a submit that was on the wire is `unknown`, never re-sent
//! silently. It doubles as the batch's results file, like OpenAI Batch's output file. Also owns the
//! folder's lock (`.recast.lock`): one state folder drives an output folder at a time.
//!
//! May not: touch the store, or trust the folder: every file here is opened without following
//! links, read within a bound, and checked to be a regular file; a damaged line is skipped.

mod appends;
mod dir;
mod index;
mod lock;

pub use dir::{OpenFolders, OutputDir, TempName};
pub use index::ResultsIndex;
pub use lock::{OutputBusy, hold};

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The results file's name inside an output folder.
pub const RESULTS_FILE: &str = "recast-results.jsonl";
/// A results file larger than this is not read (about a million clips' lines).
const MAX_RESULTS_BYTES: u64 = 512 << 20;

/// One step of a job, as its line in the results file.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ResultLine {
    pub job_key: String,
    pub subject: String,
    pub batch: String,
    /// Who the task was submitted to (the provider's identity, as batches are keyed).
    #[serde(default)]
    pub provider: String,
    /// The clip's file name inside the output folder (`done` lines).
    #[serde(default)]
    pub file: String,
    #[serde(default)]
    pub sha256: String,
    #[serde(default)]
    pub bytes: u64,
    pub task_id: Option<String>,
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// Upper bound of what the clip cost, in credits.
    pub credits: Option<u64>,
    /// `submitting`, `submitted`, `closed` or `done`; or one of [`OUTCOME_STATES`] with the
    /// `error`, for a person reading the file.
    pub state: String,
    /// Unix milliseconds.
    pub at: i64,
    /// Why the job needs a person (outcome lines), with the provider's code and request id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// States of lines written for a person (a job rejected, failed, expired, lost or unknown, with
/// why). Reading the file back for money ignores them: a job's money state is its last
/// `submitting`/`submitted`/`closed`/`done` line, as before they existed.
pub const OUTCOME_STATES: [&str; 5] = ["rejected", "failed", "expired", "lost", "unknown"];

fn is_outcome(entry: &ResultLine) -> bool {
    OUTCOME_STATES.contains(&entry.state.as_str())
}

pub use crate::safe_fs::open_regular;

/// Append `line` to the folder's results file and fsync it: once this returns, the clip is
/// remembered by the folder itself.
pub fn append(dir: &Path, line: &ResultLine) -> std::io::Result<()> {
    append_in(&*OutputDir::open(dir)?, line)
}

/// [`append`] in a folder already open.
pub fn append_in(dir: &OutputDir, line: &ResultLine) -> std::io::Result<()> {
    dir.append_result(&line_text(line)?)
}

/// A line nothing waits on (the store holds the same, or it is for a person): written now,
/// synced with the next [`append_in`] of the folder or when the folder is let go.
pub fn append_unsynced_in(dir: &OutputDir, line: &ResultLine) -> std::io::Result<()> {
    dir.append_result_unsynced(&line_text(line)?)
}

fn line_text(line: &ResultLine) -> std::io::Result<Vec<u8>> {
    let mut text = serde_json::to_vec(line).map_err(std::io::Error::other)?;
    // One write of one line: a crash leaves at most a torn last line, which reading skips.
    text.push(b'\n');
    Ok(text)
}

/// The last line of every job key in the folder's results file. A missing, oversized or
/// hostile file reads as empty; damaged lines are skipped.
pub fn read(dir: &Path) -> HashMap<String, ResultLine> {
    let mut out = HashMap::new();
    let Ok(file) = open_regular(&dir.join(RESULTS_FILE)) else {
        return out;
    };
    let reader = BufReader::new(file.take(MAX_RESULTS_BYTES));
    for line in reader.split(b'\n').map_while(Result::ok) {
        if let Ok(entry) = serde_json::from_slice::<ResultLine>(&line)
            && counts_for_money(&entry)
        {
            out.insert(entry.job_key.clone(), entry);
        }
    }
    out
}

/// Whether a line tells where a job's money went (not an outcome line for people, and a
/// `done` line naming a plain file).
fn counts_for_money(entry: &ResultLine) -> bool {
    !is_outcome(entry) && (entry.state != "done" || is_plain_name(&entry.file))
}

/// The results file's inode and length, if it is there (a regular file).
pub fn results_extent(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = open_regular(&dir.join(RESULTS_FILE))
        .ok()?
        .metadata()
        .ok()?;
    Some((meta.ino(), meta.len()))
}

/// Hand every line of the results file between bytes `from` and `to` to `each`, until it
/// says stop (`false`). A torn or damaged line is handed on as `None`: it is not known whose
/// it is. Returns `false` if the file cannot be read or `each` stopped.
pub fn each_line_between(
    dir: &Path,
    from: u64,
    to: u64,
    mut each: impl FnMut(Option<ResultLine>) -> bool,
) -> bool {
    use std::io::{Seek, SeekFrom};
    let Ok(mut file) = open_regular(&dir.join(RESULTS_FILE)) else {
        return false;
    };
    if file.seek(SeekFrom::Start(from)).is_err() {
        return false;
    }
    let reader = BufReader::new(file.take(to.saturating_sub(from).min(MAX_RESULTS_BYTES)));
    for line in reader.split(b'\n') {
        let Ok(line) = line else {
            return false;
        };
        if !each(serde_json::from_slice::<ResultLine>(&line).ok()) {
            return false;
        }
    }
    true
}

/// Credits the results file records as spent on jobs other than `known` ones: per submit (its
/// idempotency key) whose last line is not `closed`, or once for a clip recorded only as landed.
/// An upper bound (a failed task's refund is not recorded), so a budget never counts too little.
/// `known` is asked per line (the store answers from its index), so the batch's keys are not
/// held in memory.
pub fn recorded_credits(dir: &Path, mut known: impl FnMut(&str) -> bool) -> u64 {
    let Ok(file) = open_regular(&dir.join(RESULTS_FILE)) else {
        return 0;
    };
    let mut submits: HashMap<(String, String), (bool, u64)> = HashMap::new();
    let mut landed: HashMap<String, u64> = HashMap::new();
    let reader = BufReader::new(file.take(MAX_RESULTS_BYTES));
    for line in reader.split(b'\n').map_while(Result::ok) {
        let Ok(entry) = serde_json::from_slice::<ResultLine>(&line) else {
            continue;
        };
        if is_outcome(&entry) || known(&entry.job_key) {
            continue;
        }
        let credits = entry.credits.unwrap_or(0);
        match entry.idempotency_key {
            Some(key) => {
                submits.insert((entry.job_key, key), (entry.state != "closed", credits));
            }
            None if entry.state == "done" => {
                landed.insert(entry.job_key, credits);
            }
            None => {}
        }
    }
    let with_submits: std::collections::HashSet<&String> =
        submits.keys().map(|(job, _)| job).collect();
    let paid: u64 = submits
        .values()
        .filter(|(open, _)| *open)
        .map(|(_, c)| c)
        .sum();
    paid + landed
        .iter()
        .filter(|(job, _)| !with_submits.contains(job))
        .map(|(_, c)| c)
        .sum::<u64>()
}

/// A file name with no folder in it: a hostile line cannot point outside the folder.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && !name.contains('\0')
}

/// The clip `entry` names, if it is in `dir` as a regular file with its length and sha256.
pub fn verify(dir: &Path, entry: &ResultLine) -> Option<PathBuf> {
    if entry.state != "done" || !is_plain_name(&entry.file) {
        return None;
    }
    let path = dir.join(&entry.file);
    let file = open_regular(&path).ok()?;
    if file.metadata().ok()?.len() != entry.bytes {
        return None;
    }
    let mut hasher = Sha256::new();
    let mut reader = BufReader::new(file.take(entry.bytes));
    loop {
        let chunk = reader.fill_buf().ok()?;
        if chunk.is_empty() {
            break;
        }
        hasher.update(chunk);
        let n = chunk.len();
        reader.consume(n);
    }
    (hex::encode(hasher.finalize()) == entry.sha256).then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn line(key: &str, file: &str, body: &[u8]) -> ResultLine {
        ResultLine {
            job_key: key.to_owned(),
            subject: "fox".to_owned(),
            batch: "b".to_owned(),
            file: file.to_owned(),
            sha256: hex::encode(Sha256::digest(body)),
            bytes: body.len() as u64,
            task_id: Some("t-1".to_owned()),
            credits: Some(566),
            state: "done".to_owned(),
            ..Default::default()
        }
    }

    #[test]
    fn outcome_lines_are_for_people_and_never_change_what_the_folder_remembers() {
        let dir = tempfile::tempdir().unwrap();
        let money = |state: &str| ResultLine {
            job_key: "k1".into(),
            idempotency_key: Some("k1-a1".into()),
            task_id: Some("t-1".into()),
            credits: Some(566),
            state: state.into(),
            ..Default::default()
        };
        append(dir.path(), &money("submitted")).unwrap();
        append(
            dir.path(),
            &ResultLine {
                error: Some("no face [code 60001; request req_1]".into()),
                ..money("failed")
            },
        )
        .unwrap();
        let text = std::fs::read_to_string(dir.path().join(RESULTS_FILE)).unwrap();
        assert!(text.contains("\"error\":\"no face [code 60001; request req_1]\""));
        assert_eq!(read(dir.path())["k1"].state, "submitted");
        assert_eq!(recorded_credits(dir.path(), |_| false), 566);
    }

    #[test]
    fn a_landed_clip_is_remembered_and_verified_and_a_changed_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("fox.mp4"), b"clip").unwrap();
        append(dir.path(), &line("k1", "fox.mp4", b"clip")).unwrap();
        append(dir.path(), &line("k2", "gone.mp4", b"x")).unwrap();
        // A torn last line (a crash mid-write) is skipped.
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(RESULTS_FILE))
            .unwrap()
            .write_all(b"{\"job_key\":\"k3\",\"subj")
            .unwrap();
        let index = read(dir.path());
        assert_eq!(index.len(), 2);
        assert!(verify(dir.path(), &index["k1"]).is_some());
        assert!(verify(dir.path(), &index["k2"]).is_none(), "missing file");
        std::fs::write(dir.path().join("fox.mp4"), b"CLIP").unwrap();
        assert!(verify(dir.path(), &index["k1"]).is_none(), "changed bytes");
    }

    #[test]
    fn hostile_lines_and_links_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"clip").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("fox.mp4"))
            .unwrap();
        append(dir.path(), &line("k1", "fox.mp4", b"clip")).unwrap();
        append(dir.path(), &line("k2", "../secret", b"clip")).unwrap();
        let index = read(dir.path());
        assert!(!index.contains_key("k2"), "a name with a folder in it");
        assert!(verify(dir.path(), &index["k1"]).is_none(), "a link");
        // A results file that is itself a link is not read.
        let other = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(
            dir.path().join(RESULTS_FILE),
            other.path().join(RESULTS_FILE),
        )
        .unwrap();
        assert!(read(other.path()).is_empty());
        assert!(append(other.path(), &line("k9", "a.mp4", b"x")).is_err());
    }
}
