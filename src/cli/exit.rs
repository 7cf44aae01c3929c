//! Exit codes: every command's outcome becomes one of these, here and nowhere else.

/// Documented in `recast --help` and the README.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// Everything asked for is done (or, for `plan`, plannable within budget).
    Ok = 0,
    /// Invalid manifest, media or settings, or the budget does not cover the work.
    Invalid = 1,
    /// Bad command line.
    Usage = 2,
    /// The run ended with jobs that need a person (rejected, failed, expired, unknown).
    NeedsPerson = 3,
    /// The provider refused the run: bad API key (401/403) or out of credits (402).
    ProviderRefused = 4,
    /// Another recast holds the state folder.
    Busy = 5,
    /// The state database failed, or another internal error.
    Internal = 10,
    /// Stopped by SIGINT/SIGTERM before the work was done; running it again resumes.
    Interrupted = 130,
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(c: ExitCode) -> Self {
        std::process::ExitCode::from(c as u8)
    }
}

/// The exit-code table, for `--help`.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0    done (plan: plannable and within budget; run --no-wait: nothing needs you so far)
  1    invalid manifest, media or settings, or over budget
  2    usage error
  3    some jobs need a person (rejected, failed, expired, unknown): see `recast status`
  4    the provider refused the run (bad API key, out of credits)
  5    another recast is using the state folder
  10   internal error (the state database failed)
  130  interrupted; run the same command again to resume";
