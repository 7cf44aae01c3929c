//! One state folder drives an output folder: `.recast.lock` in the output folder, locked for as
//! long as this process works on it and naming the state folder and pid holding it. Two state
//! folders filling one output folder at once would each bill every clip; the second is refused
//! with an error naming the first. The lock file keeps naming the last state folder after its
//! process ends, and another state folder is refused while that one still exists (it knows the
//! tasks in flight); a state folder that is gone (lost, a CI cache evicted) is not waited for.
//! The OS releases the lock however the process dies.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

const LOCK_FILE: &str = ".recast.lock";

/// Output folders this process holds, with the state folder it holds each for.
static HELD: Mutex<Vec<(PathBuf, PathBuf, File)>> = Mutex::new(Vec::new());

#[derive(Debug, thiserror::Error)]
pub enum OutputBusy {
    #[error(
        "the output folder {output} is being filled from another state folder, {other} (pid {pid}): \
         two state folders would each pay for every clip. Use the same state folder (--state-dir {other}), \
         or wait for that recast to finish"
    )]
    Other {
        output: PathBuf,
        other: String,
        pid: String,
    },
    #[error(
        "the output folder {output} was filled from another state folder, {other}, which still \
         exists: its record of tasks in flight would be billed again from here. Use that state \
         folder (--state-dir {other}), or remove it if you mean to start over (clips already in \
         the output folder are never made again)"
    )]
    Recorded { output: PathBuf, other: String },
    #[error("the output folder {output} is being filled from state folder {other} by this process")]
    ThisProcess { output: PathBuf, other: PathBuf },
    #[error("cannot lock the output folder {output}: {source}")]
    Io {
        output: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Hold `output_dir` for `state_dir` until this process ends (creating the folder if needed).
pub fn hold(output_dir: &Path, state_dir: &Path) -> Result<(), OutputBusy> {
    let io = |source| OutputBusy::Io {
        output: output_dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(output_dir).map_err(io)?;
    let output = output_dir.canonicalize().map_err(io)?;
    let state = state_dir
        .canonicalize()
        .unwrap_or_else(|_| state_dir.to_path_buf());
    let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, other, _)) = held.iter().find(|(o, _, _)| *o == output) {
        return if *other == state {
            Ok(())
        } else {
            Err(OutputBusy::ThisProcess {
                output,
                other: other.clone(),
            })
        };
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(output.join(LOCK_FILE))
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = (&file).take(4096).read_to_string(&mut text);
            let mut lines = text.lines();
            let pid = lines.next().unwrap_or("?").trim().to_owned();
            let other = lines.next().unwrap_or("unknown").trim().to_owned();
            return Err(OutputBusy::Other { output, other, pid });
        }
        Err(TryLockError::Error(e)) => return Err(io(e)),
    }
    let mut text = String::new();
    let _ = (&file).take(4096).read_to_string(&mut text);
    if let Some(previous) = text.lines().nth(1).map(str::trim).filter(|p| !p.is_empty())
        && Path::new(previous) != state
        && Path::new(previous).join("recast.db").is_file()
    {
        return Err(OutputBusy::Recorded {
            output,
            other: previous.to_owned(),
        });
    }
    file.set_len(0)
        .and_then(|_| file.seek(SeekFrom::Start(0)))
        .and_then(|_| write!(file, "{}\n{}\n", std::process::id(), state.display()))
        .and_then(|_| file.flush())
        .map_err(io)?;
    held.push((output, state, file));
    Ok(())
}
