//! The last line of each job key in a results file, found by key without holding the lines:
//! where each key's last line is (about 50 bytes a key), read again from the file when asked.
//!
//! Owns: [`ResultsIndex`]. May not: write the results file, or decide what a line means for a
//! job (registration and recovery do).
//!
//! Why not the lines themselves: a folder that made 100,000 clips has some 300,000 lines; read
//! into a map they were the largest thing planning such a batch again held (about 50 MB), to
//! look up the few keys that are not already `done` in the state folder.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::{MAX_RESULTS_BYTES, RESULTS_FILE, ResultLine, counts_for_money, open_regular};

/// A job key's 32 bytes (its 64 hex digits decoded).
type Key = [u8; 32];

/// Where one line is: its offset and length in the file.
#[derive(Debug, Clone, Copy)]
struct At {
    offset: u64,
    len: u32,
}

/// The results file of one output folder, indexed by job key.
#[derive(Debug, Default)]
pub struct ResultsIndex {
    file: Option<File>,
    last: HashMap<Key, At>,
    /// Keys not written as a job key is (no job of this recast has one): kept as written, so
    /// the index finds exactly what a whole read finds.
    other: HashMap<String, At>,
}

impl ResultsIndex {
    /// Index the folder's results file. A missing, oversized or hostile file reads as empty;
    /// damaged lines, and lines that do not count for money (see [`super::read`]), are skipped.
    pub fn read(dir: &Path) -> ResultsIndex {
        let Ok(file) = open_regular(&dir.join(RESULTS_FILE)) else {
            return ResultsIndex::default();
        };
        let (mut last, mut other) = (HashMap::new(), HashMap::new());
        let mut reader = BufReader::new((&file).take(MAX_RESULTS_BYTES));
        let (mut offset, mut line) = (0u64, Vec::new());
        loop {
            line.clear();
            let Ok(read) = reader.read_until(b'\n', &mut line) else {
                break;
            };
            if read == 0 {
                break;
            }
            let at = At {
                offset,
                len: read as u32,
            };
            offset += read as u64;
            if let Ok(entry) = serde_json::from_slice::<ResultLine>(&line)
                && counts_for_money(&entry)
            {
                match key_of(&entry.job_key) {
                    Some(key) => last.insert(key, at),
                    None => other.insert(entry.job_key, at),
                };
            }
        }
        ResultsIndex {
            file: Some(file),
            last,
            other,
        }
    }

    /// The last line recorded for `key`, read again from the file.
    pub fn get(&self, key: &str) -> Option<ResultLine> {
        let at = match key_of(key) {
            Some(bytes) => self.last.get(&bytes)?,
            None => self.other.get(key)?,
        };
        let mut line = vec![0; at.len as usize];
        self.file
            .as_ref()?
            .read_exact_at(&mut line, at.offset)
            .ok()?;
        serde_json::from_slice::<ResultLine>(&line)
            .ok()
            .filter(|entry| entry.job_key == key)
    }

    /// Keys with a line.
    pub fn len(&self) -> usize {
        self.last.len() + self.other.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A job key written as 64 lowercase hex digits (as recast writes them); `None` for anything
/// else, which is kept as written: an uppercase spelling of a key in a planted line must not
/// take the place of the key's own line.
fn key_of(key: &str) -> Option<Key> {
    if key.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let mut bytes = [0; 32];
    hex::decode_to_slice(key, &mut bytes).ok()?;
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(key: &str, state: &str, task: &str) -> ResultLine {
        ResultLine {
            job_key: key.to_owned(),
            subject: "fox".to_owned(),
            batch: "b".to_owned(),
            task_id: Some(task.to_owned()),
            state: state.to_owned(),
            ..ResultLine::default()
        }
    }

    #[test]
    fn the_last_line_of_each_key_is_found_as_the_whole_read_finds_it() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (
            "a".repeat(64),
            format!("{}{}", "a".repeat(32), "b".repeat(32)),
        );
        let mut text = String::new();
        for l in [
            line(&a, "submitting", "t1"),
            line(&b, "submitting", "t2"),
            line(&a, "submitted", "t1"),
            line(&a, "failed", "t1"),
            line("not-a-key", "submitted", "t3"),
            line(&a.to_uppercase(), "submitted", "planted"),
        ] {
            text.push_str(&serde_json::to_string(&l).unwrap());
            text.push('\n');
        }
        text.push_str("{\"torn\n");
        std::fs::write(dir.path().join(RESULTS_FILE), text).unwrap();
        let index = ResultsIndex::read(dir.path());
        let whole = super::super::read(dir.path());
        assert_eq!(index.get(&a), whole.get(&a).cloned());
        assert_eq!(
            index.get(&a).unwrap().state,
            "submitted",
            "an outcome line is for people"
        );
        assert_eq!(
            index.get(&a).unwrap().task_id.as_deref(),
            Some("t1"),
            "not the planted line"
        );
        // Same first half, other key: each finds its own line.
        assert_eq!(
            index.get(&b).map(|l| l.task_id),
            Some(Some("t2".to_owned()))
        );
        assert_eq!(index.get(&"c".repeat(64)), None);
        assert_eq!(index.get("not-a-key"), whole.get("not-a-key").cloned());
        assert!(index.get("not-a-key").is_some());
        assert!(ResultsIndex::read(&dir.path().join("missing")).is_empty());
    }
}
