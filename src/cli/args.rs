//! The command line's shape: every command, flag and its help.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use super::exit::EXIT_CODES_HELP;
use crate::settings::Overrides;

/// recast: one performance, many subjects.
///
/// Pairs one reference video with many subject images from a YAML manifest, submits one paid
/// Kling Motion Control job per subject to reAPI under its rate limits, checkpoints every step in
/// SQLite, and lands each finished clip in an output folder: every clip you planned, exactly once.
///
/// Try it without an API key: `recast run jobs.example.yaml --simulate`.
#[derive(Debug, Parser)]
#[command(name = "recast", version, after_help = EXIT_CODES_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate, probe and price a manifest without spending anything.
    ///
    /// Prints every subject with its image, status against the state folder (new, done,
    /// changed, ...) and estimated cost, then the totals and the budget verdict.
    /// Example: `recast plan jobs.example.yaml --json`
    #[command(after_help = EXIT_CODES_HELP)]
    Plan(PlanArgs),
    /// Register a manifest's batch and drive it until every clip is on disk.
    ///
    /// Safe to run again: jobs already made are never submitted twice, and a run that was
    /// interrupted (even by a crash) resumes from the state folder.
    /// Example: `recast run jobs.example.yaml --simulate`
    #[command(after_help = EXIT_CODES_HELP)]
    Run(RunArgs),
    /// Show batches: jobs by state, credits spent and refunded, and jobs that need a person.
    ///
    /// Example: `recast status spring-campaign --json`
    Status(StatusArgs),
    /// List the state folder's batches: provider, progress, spend against the budget, state
    /// counts, paused or cancelled, and the manifest each came from.
    ///
    /// Example: `recast batches --json`
    Batches(BatchesArgs),
    /// Send a batch's held jobs back to work, saying first what it may cost.
    ///
    /// Example: `recast retry spring-campaign --failed --expired`
    Retry(RetryArgs),
    /// Stop submitting a batch's jobs, for good: later runs, schedule ticks and standing
    /// performances submit nothing of it until `recast resume BATCH`. Tasks already running
    /// still finish and are downloaded unless `--abandon`.
    ///
    /// Example: `recast cancel spring-campaign`
    Cancel(CancelArgs),
    /// Approve a canary: after its first subjects' clips (`canary: N` in the manifest), let the
    /// rest of the batch be submitted. Works while a daemon runs.
    ///
    /// Example: `recast approve spring-campaign`
    Approve(ApproveArgs),
    /// Keep running: watch inbox folders for manifests, standing performances for new subject
    /// images, reconcile scheduled folders, and drive every batch through one engine. Serves
    /// `/healthz` and `/metrics` on loopback. Stops cleanly on SIGINT/SIGTERM; a restart resumes.
    ///
    /// Its settings are the `daemon:` section of the settings file (see recast.example.yaml).
    /// Example: `recast daemon --config recast.yaml`
    #[command(after_help = EXIT_CODES_HELP)]
    Daemon,
    /// Stop submitting a batch's new jobs (every batch without a name); tasks already running
    /// still finish and are downloaded. Works against a running daemon.
    ///
    /// Example: `recast pause spring-campaign`
    Pause(PauseArgs),
    /// Let paused batches submit again (every batch without a name); with a name, also undo a
    /// `recast cancel` of that batch, saying what it will submit.
    ///
    /// Example: `recast resume spring-campaign`
    Resume(PauseArgs),
    /// Run the provider simulator: a local HTTP server with reAPI's wire format, a billing
    /// ledger and fault injection.
    ///
    /// Example: `recast sim --listen 127.0.0.1:8700 --media-dir examples`
    Sim(Box<crate::sim::SimArgs>),
    /// Serve the dashboard for this state folder (without a daemon): batches, a grid of
    /// subjects with thumbnails and clips, and pause/resume/cancel/retry/approve buttons.
    /// Loopback by default; another address needs RECAST_DASHBOARD_TOKEN.
    ///
    /// Example: `recast dashboard --listen 127.0.0.1:8710`, then open http://127.0.0.1:8710/
    Dashboard(DashboardArgs),
    /// Print a shell completion script.
    ///
    /// Example: `recast completions bash > ~/.local/share/bash-completion/completions/recast`
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff).
    ///
    /// Example: `recast man > ~/.local/share/man/man1/recast.1 && man recast`
    Man,
}

impl Command {
    /// Commands that only read and print (and change at most one database row), so a reader
    /// that goes away may simply end them.
    pub fn only_prints(&self) -> bool {
        matches!(
            self,
            Command::Plan(_)
                | Command::Status(_)
                | Command::Batches(_)
                | Command::Retry(_)
                | Command::Cancel(_)
                | Command::Approve(_)
                | Command::Pause(_)
                | Command::Resume(_)
                | Command::Completions { .. }
                | Command::Man
        )
    }
}

#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// A YAML settings file (provider, limits, state folder, prices). Flags and the
    /// environment win over it.
    #[arg(
        long,
        global = true,
        env = "RECAST_CONFIG",
        value_name = "FILE",
        help_heading = "Settings"
    )]
    pub config: Option<PathBuf>,
    /// Where recast keeps its state (SQLite database, lock). Default: one per user,
    /// $XDG_STATE_HOME/recast or ~/.local/state/recast, whatever the working folder.
    #[arg(
        long,
        global = true,
        env = "RECAST_STATE_DIR",
        value_name = "DIR",
        help_heading = "Settings"
    )]
    pub state_dir: Option<PathBuf>,
    /// Also allow local media from this folder (besides the manifest's own). Repeatable.
    /// Example: --allow-root /srv/media
    #[arg(
        long = "allow-root",
        global = true,
        value_name = "DIR",
        help_heading = "Settings"
    )]
    pub allow_roots: Vec<PathBuf>,

    /// Provider base URL. Default: https://reapi.ai
    #[arg(
        long,
        global = true,
        env = "REAPI_BASE_URL",
        value_name = "URL",
        help_heading = "Provider"
    )]
    pub api_base: Option<String>,
    /// Read the API key from this file. The key itself only ever comes from the REAPI_API_KEY
    /// environment variable or a file, never a flag (flags show in process lists).
    #[arg(long, global = true, value_name = "FILE", help_heading = "Provider")]
    pub api_key_file: Option<PathBuf>,
    /// Public URL of the manifest's folder, so the provider can fetch its local media.
    /// Example: --media-base-url https://cdn.example.com/campaign/
    #[arg(
        long,
        global = true,
        env = "RECAST_MEDIA_BASE_URL",
        value_name = "URL",
        help_heading = "Provider"
    )]
    pub media_base_url: Option<String>,
    /// The provider honours Idempotency-Key: a submit whose answer was lost is sent again
    /// under the same key. Without it such a submit is held as `unknown` for you to decide.
    #[arg(long, global = true, help_heading = "Provider")]
    pub trust_idempotency: bool,
    /// The provider account is used by recast alone, from this state folder alone: its balance
    /// (GET /api/v1/balance) then proves whether a submit whose answer was lost created a billed
    /// task, so such submits are sent again (none was created) or marked `lost` (all were)
    /// instead of waiting for you. Wrong, and unsafe, if anyone else spends from the account.
    #[arg(long, global = true, help_heading = "Provider")]
    pub dedicated_account: bool,

    /// Let URLs from manifests and from the provider's answers (clip links, redirects) reach
    /// private and local addresses (127.0.0.1, 10.x, 169.254.169.254, ...). Off by default: a
    /// manifest dropped into an inbox must not make recast fetch from inside your network.
    #[arg(
        long,
        global = true,
        env = "RECAST_ALLOW_PRIVATE_NETWORKS",
        value_parser = clap::builder::BoolishValueParser::new(),
        action = clap::ArgAction::SetTrue,
        help_heading = "Provider"
    )]
    pub allow_private_networks: bool,

    /// Submits per minute (default 30). Example: --submit-per-minute 120
    #[arg(long, global = true, value_name = "N", help_heading = "Limits")]
    pub submit_per_minute: Option<u32>,
    /// Submits allowed at once before the per-minute rate applies (default 5).
    #[arg(long, global = true, value_name = "N", help_heading = "Limits")]
    pub submit_burst: Option<u32>,
    /// Tasks submitted and not yet finished, at most (default 20).
    #[arg(long, global = true, value_name = "N", help_heading = "Limits")]
    pub max_in_flight: Option<u32>,
    /// Status polls per minute, all tasks together (default 120).
    #[arg(long, global = true, value_name = "N", help_heading = "Limits")]
    pub poll_per_minute: Option<u32>,
    /// Clips downloaded at once (default 4).
    #[arg(long, global = true, value_name = "N", help_heading = "Limits")]
    pub download_concurrency: Option<usize>,

    /// Log lines as text or JSON (on stderr).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t,
        help_heading = "Output"
    )]
    pub log_format: LogFormat,
    /// More log lines (-v: every step, -vv: debug). RECAST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, help_heading = "Output")]
    pub verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true, help_heading = "Output")]
    pub quiet: bool,
}

impl GlobalArgs {
    pub fn overrides(&self) -> Overrides {
        Overrides {
            state_dir: self.state_dir.clone(),
            api_base: self.api_base.clone(),
            api_key: std::env::var("REAPI_API_KEY")
                .ok()
                .filter(|k| !k.trim().is_empty()),
            api_key_file: self.api_key_file.clone(),
            trust_idempotency: self.trust_idempotency.then_some(true),
            dedicated_account: self.dedicated_account.then_some(true),
            media_base_url: self.media_base_url.clone(),
            submit_per_minute: self.submit_per_minute,
            submit_burst: self.submit_burst,
            max_in_flight: self.max_in_flight,
            poll_per_minute: self.poll_per_minute,
            download_concurrency: self.download_concurrency,
            allowed_roots: self.allow_roots.clone(),
            allow_private_networks: self.allow_private_networks.then_some(true),
        }
    }
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The manifest. Example: jobs.example.yaml
    pub manifest: PathBuf,
    /// Print a stable JSON document instead of a table.
    #[arg(long, conflicts_with = "markdown")]
    pub json: bool,
    /// Print the plan as a Markdown comment for a pull request: what would be submitted and
    /// what it costs, the budget verdict, what changed since the last run.
    #[arg(long)]
    pub markdown: bool,
    /// Show status against the simulator's record instead of the real provider's.
    #[arg(long)]
    pub simulate: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The manifest. Example: jobs.example.yaml
    pub manifest: PathBuf,
    /// Advance every job as far as it can go now and exit (for cron, CI, systemd timers);
    /// running it again later continues.
    #[arg(long)]
    pub no_wait: bool,
    /// Run against a simulator started in-process (no API key, no cost). Clips land in a
    /// `simulated/` folder inside the output folder, and never count as made by the provider.
    #[arg(long)]
    pub simulate: bool,
    /// Print the final summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Submit this many subjects first and hold the rest until `recast approve` (overrides
    /// the manifest's `canary:`). A canary is never lowered or lifted by a later run: only
    /// approval releases the rest.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub canary: Option<u32>,
    /// When the account's balance cannot pay for everything to submit, submit what it pays
    /// for anyway (the provider refuses the rest with 402). Without it, such a run stops
    /// before the first submit.
    #[arg(long)]
    pub spend_available: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// A batch name; all batches when left out.
    pub batch: Option<String>,
    #[arg(long)]
    pub json: bool,
    /// Also show the batch's latest events.
    #[arg(long, value_name = "N")]
    pub events: Option<usize>,
    /// One row per job: subject, state, attempt, task id, credits estimated and billed, clip,
    /// error with the provider's code and request id, when it last changed. Needs BATCH.
    /// Example: `recast status spring --jobs --state failed,expired`
    #[arg(long, requires = "batch")]
    pub jobs: bool,
    /// Only jobs in these states (with --jobs): planned, submitting, running, downloading,
    /// done, rejected, failed, expired, unknown, lost, cancelled.
    #[arg(long, value_delimiter = ',', value_name = "STATE", requires = "jobs")]
    pub state: Vec<String>,
    /// Keep the view live (every second) until nothing of the batch is in flight or waiting:
    /// for watching a batch a daemon (or another `recast run`) drives. Needs BATCH.
    #[arg(long, requires = "batch")]
    pub follow: bool,
    /// The simulator's batch of that name, when a real batch has the same name.
    #[arg(long)]
    pub simulate: bool,
}

#[derive(Debug, Args)]
pub struct ApproveArgs {
    pub batch: String,
    /// The simulator's batch of that name, when a real batch has the same name.
    #[arg(long)]
    pub simulate: bool,
}

#[derive(Debug, Args)]
pub struct DashboardArgs {
    /// Where to listen (port 0 picks a free one; the address is printed).
    #[arg(long, default_value = "127.0.0.1:8710")]
    pub listen: std::net::SocketAddr,
}

#[derive(Debug, Args)]
pub struct BatchesArgs {
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RetryArgs {
    pub batch: String,
    /// Jobs whose tasks failed more often than `retries` allowed (new attempts).
    #[arg(long)]
    pub failed: bool,
    /// Jobs whose clip links expired (asks the provider for a fresh link).
    #[arg(long)]
    pub expired: bool,
    /// Jobs whose submit outcome is unknown. With --trust-idempotency they are sent again
    /// under their same key; otherwise as new submits, which bill twice if the first one did go
    /// through (reAPI does not de-duplicate): the price is shown and --yes is required.
    #[arg(long)]
    pub unknown: bool,
    /// Jobs the provider rejected (after you fixed the cause).
    #[arg(long)]
    pub rejected: bool,
    /// Jobs whose task was billed but can no longer be reached (the provider answers 404): made
    /// again as new, paid tasks. The price is shown and --yes is required.
    #[arg(long)]
    pub lost: bool,
    /// Confirm a retry that may bill a clip a second time (--unknown without
    /// --trust-idempotency, --lost). Without it the price is shown and nothing changes.
    #[arg(long)]
    pub yes: bool,
    /// The simulator's batch of that name, when a real batch has the same name (a name only
    /// one batch has needs no flag).
    #[arg(long)]
    pub simulate: bool,
}

#[derive(Debug, Args)]
pub struct PauseArgs {
    /// A batch name; every batch when left out. `recast resume BATCH` also undoes a
    /// `recast cancel BATCH` (only with a name: a bare `resume` never revives cancelled work).
    pub batch: Option<String>,
    /// The simulator's batch of that name, when a real batch has the same name.
    #[arg(long)]
    pub simulate: bool,
}

#[derive(Debug, Args)]
pub struct CancelArgs {
    pub batch: String,
    /// Also stop following tasks already running: their clips are never downloaded (and the
    /// provider still bills them).
    #[arg(long)]
    pub abandon: bool,
    /// The simulator's batch of that name, when a real batch has the same name (a name only
    /// one batch has needs no flag).
    #[arg(long)]
    pub simulate: bool,
}
