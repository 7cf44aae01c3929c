//! The command line: commands, flags and terminal output.
//!
//! Owns: parsing arguments (clap), resolving them into [`Settings`], turning library errors into
//! human messages with a hint, tables and progress bars, `--json` documents, and exit codes
//! (all from one place, [`ExitCode`]). May not: hold logic the daemon also needs; every command
//! here is a thin layer over `manifest`, `plan`, `store` and `engine`.

mod args;
mod batch_ref;
mod daemon_cmd;
mod exit;
mod plan_cmd;
mod plan_markdown;
mod progress;
mod reach;
mod real_provider;
mod resume;
mod run_cmd;
mod run_plan;
mod run_report;
mod status_cmd;
mod table;
mod views;

use std::io::IsTerminal;

use clap::Parser;

pub use args::{Cli, Command, GlobalArgs};
pub use exit::ExitCode;

use crate::settings::{Settings, SettingsFile};

/// Parse the command line, run the command, and map the outcome to an exit code.
pub fn main() -> std::process::ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::Usage.into()
            } else {
                ExitCode::Ok.into()
            };
        }
    };
    init_logging(&cli.global);
    if cli.command.only_prints() {
        restore_default_sigpipe();
    }
    // One thread for the async work: recast waits on the network, and what could hold a thread
    // (SQLite, files, probes) runs on the store's thread or the blocking pool. A second worker
    // only stole tasks back and forth: `bench cpu` measured 12% less CPU a job without it.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::Internal.into();
        }
    };
    let code = runtime.block_on(dispatch(cli));
    // Do not wait for lingering blocking work (a stuck probe) once the command has answered.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    code.into()
}

async fn dispatch(cli: Cli) -> ExitCode {
    // These two need no settings: a broken settings file must not stop a shell from completing.
    match &cli.command {
        Command::Completions { shell } => return completions(*shell),
        Command::Man => return manual(),
        _ => {}
    }
    let settings = match resolve_settings(&cli.global) {
        Ok(s) => s,
        Err(message) => {
            for line in message.lines() {
                eprintln!("error: {line}");
            }
            if message.lines().count() > 1 {
                eprintln!(
                    "{} mistakes in the settings file; nothing was done",
                    message.lines().count()
                );
            }
            return ExitCode::Invalid;
        }
    };
    match cli.command {
        Command::Plan(a) => plan_cmd::plan(&settings, a).await,
        Command::Run(a) => run_cmd::run(&settings, &cli.global, a).await,
        Command::Status(a) if a.jobs || a.follow => views::status_views(&settings, a).await,
        Command::Status(a) => status_cmd::status(&settings, a),
        Command::Batches(a) => views::batches(&settings, a),
        Command::Dashboard(a) => daemon_cmd::dashboard(&settings, a).await,
        Command::Retry(a) => status_cmd::retry(&settings, a),
        Command::Cancel(a) => status_cmd::cancel(&settings, a),
        Command::Approve(a) => status_cmd::approve(&settings, a),
        Command::Daemon => daemon_cmd::daemon(settings).await,
        Command::Pause(a) => daemon_cmd::pause(&settings, a, true),
        Command::Resume(a) => daemon_cmd::pause(&settings, a, false),
        Command::Completions { .. } | Command::Man => unreachable!("answered above"),
        Command::Sim(a) => {
            let shutdown = async {
                let _ = tokio::signal::ctrl_c().await;
            };
            match crate::sim::run_from_args(*a, shutdown).await {
                Ok(()) => ExitCode::Ok,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::Invalid
                }
            }
        }
    }
}

/// Rust ignores SIGPIPE, so `recast status --json | head -1` made `println!` panic (exit 101)
/// once `head` had gone. Commands that only read and print take the default back: a closed
/// pipe ends them quietly, as it ends `cat`. Commands that spend money (`run`) or serve
/// (`daemon`, `sim`) keep it ignored and finish their work whatever their reader does.
fn restore_default_sigpipe() {
    // SAFETY: called once at start, before any thread of ours exists; SIG_DFL is a valid
    // disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn completions(shell: clap_complete::Shell) -> ExitCode {
    use clap::CommandFactory;
    clap_complete::generate(shell, &mut Cli::command(), "recast", &mut std::io::stdout());
    ExitCode::Ok
}

fn manual() -> ExitCode {
    use clap::CommandFactory;
    match clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()) {
        Ok(()) => ExitCode::Ok,
        Err(e) => {
            eprintln!("error: cannot write the manual: {e}");
            ExitCode::Internal
        }
    }
}

fn resolve_settings(g: &GlobalArgs) -> Result<Settings, String> {
    let file = match &g.config {
        Some(path) => SettingsFile::load(path).map_err(|e| e.to_string())?,
        None => SettingsFile::default(),
    };
    Settings::resolve(file, g.overrides()).map_err(|e| e.to_string())
}

fn init_logging(g: &GlobalArgs) {
    use tracing_subscriber::EnvFilter;
    // On a terminal the progress bar tells the story; log lines are for warnings. Elsewhere
    // (cron, CI, systemd) every step is a log line.
    let default = match (g.verbose, g.quiet, std::io::stderr().is_terminal()) {
        (_, true, _) => "error",
        (0, _, true) => "warn",
        (0, _, false) | (1, _, _) => "info",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_env("RECAST_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("recast={default},warn")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match g.log_format {
        args::LogFormat::Json => builder.json().try_init(),
        args::LogFormat::Text => builder.try_init(),
    };
}
