//! What a person sees in a terminal and a pipe: the rough edges a new user met, each pinned.

use std::process::{Command, Output, Stdio};

use crate::helper::repo_root;
use crate::helper::workspace::describe;

fn recast() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_recast"));
    cmd.current_dir(repo_root())
        .env_remove("RECAST_CONFIG")
        .env_remove("RECAST_STATE_DIR")
        .env_remove("REAPI_API_KEY");
    cmd
}

/// Run with stdout a pipe whose reader is already gone, as after `| head -1` has read its line.
fn into_a_closed_pipe(cmd: &mut Command) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    cmd.stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn a_reader_that_goes_away_ends_a_printing_command_quietly_not_with_a_panic() {
    let state = tempfile::tempdir().unwrap();
    for args in [
        &["plan", "jobs.example.yaml", "--simulate"][..],
        &["plan", "jobs.example.yaml", "--simulate", "--json"][..],
        &["status", "--json"][..],
    ] {
        let out = into_a_closed_pipe(recast().args(args).arg("--state-dir").arg(state.path()));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {}", describe(&out));
        assert_ne!(out.status.code(), Some(101), "{args:?}: {}", describe(&out));
        use std::os::unix::process::ExitStatusExt;
        assert!(
            out.status.success() || out.status.signal() == Some(libc::SIGPIPE),
            "{args:?}: {}",
            describe(&out)
        );
    }
}
