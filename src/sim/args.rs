//! The `recast sim` flags, and running the simulator from them until shutdown.
//!
//! Owns: [`SimArgs`] (clap derive, grouped under help headings, each with an example), its
//! translation into a [`SimConfig`], and [`run_from_args`].
//!
//! May not: install signal handlers or parse the rest of the command line (the CLI passes the
//! shutdown future in and owns exit codes).

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::config::{
    Fault, Faults, Generation, IdField, Outage, RetryAfterFormat, SimConfig, StatusWords,
};
use super::{Sim, SimError};

/// Whether a repeated `Idempotency-Key` returns the first task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum IdempotencyMode {
    /// A repeat returns the first task and bills nothing.
    #[default]
    Honour,
    /// A repeat creates and bills a new task, as a gateway without the feature would.
    Ignore,
}

/// Flags of `recast sim`: a local simulator of the provider, for trying recast without a key.
#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// Address to listen on. Example: `--listen 127.0.0.1:8700` (port 0 picks a free one).
    #[arg(
        long,
        default_value = "127.0.0.1:8700",
        env = "RECAST_SIM_LISTEN",
        help_heading = "Server"
    )]
    pub listen: SocketAddr,

    /// The bearer key the simulator accepts. Example: `--api-key sim-key`.
    #[arg(
        long,
        default_value = "sim-key",
        env = "RECAST_SIM_API_KEY",
        help_heading = "Server"
    )]
    pub api_key: String,

    /// A folder served at `/media/...` with range requests, so manifests can use URLs.
    /// Example: `--media-dir examples` serves `examples/media/dance-5s.mp4` at `/media/media/dance-5s.mp4`.
    #[arg(long, value_name = "DIR", help_heading = "Server")]
    pub media_dir: Option<PathBuf>,

    /// Where the submit answer puts the task id. Example: `--id-field data-task-id`.
    #[arg(long, value_enum, default_value_t, help_heading = "Wire format")]
    pub id_field: IdField,

    /// Which family of status words to answer: `reapi` (processing, completed, failed: the
    /// documented words), `pending` (pending first), `alt1` (queued, running, succeeded, error),
    /// `alt2` (submitted, in_progress, success, failed).
    #[arg(long, value_enum, default_value_t, help_heading = "Wire format")]
    pub status_words: StatusWords,

    /// Echo `keep_original_sound` as "yes"/"no" (both spellings are always accepted).
    #[arg(long, help_heading = "Wire format")]
    pub sound_yes_no: bool,

    /// Seconds from submission to a finished clip. Example: `--generation-secs 0.2`.
    #[arg(
        long,
        default_value_t = 4.0,
        value_name = "SECS",
        help_heading = "Lifecycle"
    )]
    pub generation_secs: f64,

    /// Instead of a fixed time, this many seconds per second of source clip.
    /// Example: `--generation-per-clip-sec 12` (a 5 s clip takes a minute, like the real one).
    #[arg(
        long,
        value_name = "SECS",
        conflicts_with = "generation_secs",
        help_heading = "Lifecycle"
    )]
    pub generation_per_clip_sec: Option<f64>,

    /// How long a clip link stays valid. Example: `--link-ttl-secs 60`.
    #[arg(
        long,
        default_value_t = 86_400.0,
        value_name = "SECS",
        help_heading = "Lifecycle"
    )]
    pub link_ttl_secs: f64,

    /// Submissions allowed per minute (unlimited when absent). Example: `--rate-per-min 60`.
    #[arg(long, value_name = "N", help_heading = "Limits")]
    pub rate_per_min: Option<u32>,

    /// Submissions allowed at once on top of the steady rate. Example: `--burst 5`.
    #[arg(long, default_value_t = 1, value_name = "N", help_heading = "Limits")]
    pub burst: u32,

    /// Submit answers carry the quota and what is left of it (`RateLimit-Policy`, `RateLimit`,
    /// the IETF draft's fields), as some gateways send. Example: `--rate-limit-headers`.
    #[arg(long, help_heading = "Limits")]
    pub rate_limit_headers: bool,

    /// How a 429 spells `Retry-After`. Example: `--retry-after http-date`.
    #[arg(long, value_enum, default_value_t, help_heading = "Limits")]
    pub retry_after: RetryAfterFormat,

    /// Tasks pending or processing at once (unlimited when absent). Example: `--max-in-flight 10`.
    #[arg(long, value_name = "N", help_heading = "Limits")]
    pub max_in_flight: Option<u32>,

    /// Honour or ignore the `Idempotency-Key` header. Example: `--idempotency ignore`.
    #[arg(long, value_enum, default_value_t, help_heading = "Limits")]
    pub idempotency: IdempotencyMode,

    /// Account balance in credits; a submit that would overdraw it gets 402. Example: `--credits 5000`.
    #[arg(long, value_name = "CREDITS", help_heading = "Limits")]
    pub credits: Option<u64>,

    /// How long fetching one input may take. Example: `--fetch-timeout-secs 10`.
    #[arg(
        long,
        default_value_t = 30.0,
        value_name = "SECS",
        help_heading = "Limits"
    )]
    pub fetch_timeout_secs: f64,

    /// Seed of every fault decision: the same seed and requests give the same faults.
    /// Example: `--fault-seed 42`.
    #[arg(long, default_value_t = 0, value_name = "N", help_heading = "Faults")]
    pub fault_seed: u64,

    /// How long a slow answer is held (past a client's timeout). Example: `--slow-secs 90`.
    #[arg(
        long,
        default_value_t = 120.0,
        value_name = "SECS",
        help_heading = "Faults"
    )]
    pub slow_secs: f64,

    /// Tasks that end failed (refunded). A fault is a rate, `first=N`, and/or `max=N`:
    /// `--fault-task-failure 0.1`, `--fault-task-failure first=2`, `--fault-task-failure 0.2,max=5`.
    #[arg(long, value_name = "FAULT", help_heading = "Faults")]
    pub fault_task_failure: Option<Fault>,

    /// Submits answered 503 before anything is created. Example: `--fault-submit-5xx 0.05`.
    #[arg(long, value_name = "FAULT", help_heading = "Faults")]
    pub fault_submit_5xx: Option<Fault>,

    /// Submits answered 429 (`Retry-After: 1`) whatever the rate, nothing created: a storm.
    /// Example: `--fault-submit-429 0.3`.
    #[arg(long, value_name = "FAULT", help_heading = "Faults")]
    pub fault_submit_429: Option<Fault>,

    /// Every API call answers 503 from AFTER seconds past start, for LASTS seconds: an
    /// outage. Nothing is created meanwhile. Example: `--fault-outage 10+120`.
    #[arg(long, value_name = "AFTER+LASTS", help_heading = "Faults")]
    pub fault_outage: Option<Outage>,

    /// Submit connections reset before anything is created. Example: `--fault-submit-reset 0.05`.
    #[arg(long, value_name = "FAULT", help_heading = "Faults")]
    pub fault_submit_reset: Option<Fault>,

    /// Submits whose task is created and billed, then the connection is cut before the answer.
    /// Example: `--fault-ambiguous-submit first=1`.
    #[arg(long, value_name = "FAULT", help_heading = "Faults")]
    pub fault_ambiguous_submit: Option<Fault>,

    /// Polls answered 502. Example: `--fault-poll-5xx 0.1`.
    #[arg(long, value_name = "FAULT", help_heading = "Faults")]
    pub fault_poll_5xx: Option<Fault>,

    /// Poll connections reset. Example: `--fault-poll-reset 0.1`.
    #[arg(long, value_name = "FAULT", help_heading = "Faults")]
    pub fault_poll_reset: Option<Fault>,

    /// Submit and poll answers held for `--slow-secs`. Example: `--fault-slow-answer 0.02`.
    #[arg(long, value_name = "FAULT", help_heading = "Faults")]
    pub fault_slow_answer: Option<Fault>,

    /// Downloads that promise the full length and stop halfway. Example: `--fault-truncated-download 0.2`.
    #[arg(long, value_name = "FAULT", help_heading = "Faults")]
    pub fault_truncated_download: Option<Fault>,

    /// Downloads whose bytes differ from one attempt to the next. Example: `--fault-changed-download 0.1`.
    #[arg(long, value_name = "FAULT", help_heading = "Faults")]
    pub fault_changed_download: Option<Fault>,

    /// Polls handing out a link that has already expired. Example: `--fault-expired-link 0.1`.
    #[arg(long, value_name = "FAULT", help_heading = "Faults")]
    pub fault_expired_link: Option<Fault>,

    /// Polls answered with a body that is not valid JSON. Example: `--fault-malformed-json 0.05`.
    #[arg(long, value_name = "FAULT", help_heading = "Faults")]
    pub fault_malformed_json: Option<Fault>,

    /// Polls answered with a status word no gateway uses. Example: `--fault-unknown-status 0.05`.
    #[arg(long, value_name = "FAULT", help_heading = "Faults")]
    pub fault_unknown_status: Option<Fault>,
}

fn secs(name: &'static str, value: f64) -> Result<Duration, SimError> {
    Duration::try_from_secs_f64(value).map_err(|e| SimError::Setting {
        name,
        why: format!("{value} seconds: {e}"),
    })
}

impl SimArgs {
    /// The settings these flags describe.
    pub fn to_config(&self) -> Result<SimConfig, SimError> {
        if self.rate_per_min == Some(0) {
            return Err(SimError::Setting {
                name: "rate_per_min",
                why: "must be at least 1 (leave it out for no limit)".into(),
            });
        }
        let generation = match self.generation_per_clip_sec {
            Some(s) => Generation::PerClipSecond(secs("generation_per_clip_sec", s)?),
            None => Generation::Fixed(secs("generation_secs", self.generation_secs)?),
        };
        let f = |fault: Option<Fault>| fault.unwrap_or(Fault::NEVER);
        Ok(SimConfig {
            api_key: self.api_key.clone(),
            id_field: self.id_field,
            status_words: self.status_words,
            sound_as_yes_no: self.sound_yes_no,
            link_ttl: secs("link_ttl_secs", self.link_ttl_secs)?,
            generation,
            submit_rate_per_min: self.rate_per_min,
            submit_burst: self.burst.max(1),
            rate_limit_headers: self.rate_limit_headers,
            retry_after: self.retry_after,
            max_in_flight: self.max_in_flight,
            honour_idempotency: self.idempotency == IdempotencyMode::Honour,
            media_dir: self.media_dir.clone(),
            credit_balance: self.credits,
            fetch_timeout: secs("fetch_timeout_secs", self.fetch_timeout_secs)?,
            slow_delay: secs("slow_secs", self.slow_secs)?,
            faults: Faults {
                seed: self.fault_seed,
                task_failure: f(self.fault_task_failure),
                submit_5xx: f(self.fault_submit_5xx),
                submit_429: f(self.fault_submit_429),
                submit_reset: f(self.fault_submit_reset),
                ambiguous_submit: f(self.fault_ambiguous_submit),
                poll_5xx: f(self.fault_poll_5xx),
                poll_reset: f(self.fault_poll_reset),
                slow_answer: f(self.fault_slow_answer),
                truncated_download: f(self.fault_truncated_download),
                changed_download: f(self.fault_changed_download),
                expired_link: f(self.fault_expired_link),
                malformed_json: f(self.fault_malformed_json),
                unknown_status: f(self.fault_unknown_status),
                outage: self.fault_outage,
            },
            ..SimConfig::default()
        })
    }
}

/// Run `recast sim`: start, print where it listens, serve until `shutdown` resolves.
pub async fn run_from_args(
    args: SimArgs,
    shutdown: impl Future<Output = ()>,
) -> Result<(), SimError> {
    let config = args.to_config()?;
    let sim = Sim::start_on(args.listen, config).await?;
    let base = sim.base_url();
    println!("recast sim listening on {base}");
    println!("  API key:  {}", sim.api_key());
    println!("  submit:   POST {base}/api/v1/videos/generations");
    println!("  ledger:   GET  {base}/sim/ledger");
    if let Some(dir) = &args.media_dir {
        println!("  media:    {base}/media/  (serving {})", dir.display());
    }
    shutdown.await;
    sim.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        sim: SimArgs,
    }

    #[test]
    fn flags_become_settings() {
        let cli = Cli::try_parse_from([
            "sim",
            "--listen",
            "127.0.0.1:0",
            "--id-field",
            "data-task-id",
            "--status-words",
            "alt2",
            "--generation-per-clip-sec",
            "0.05",
            "--rate-per-min",
            "30",
            "--burst",
            "3",
            "--retry-after",
            "http-date",
            "--idempotency",
            "ignore",
            "--fault-seed",
            "9",
            "--fault-task-failure",
            "0.1,max=2",
            "--fault-ambiguous-submit",
            "first=1",
        ])
        .unwrap();
        let cfg = cli.sim.to_config().unwrap();
        assert_eq!(cfg.id_field, IdField::DataTaskId);
        assert_eq!(cfg.status_words, StatusWords::Alt2);
        assert_eq!(
            cfg.generation,
            Generation::PerClipSecond(Duration::from_millis(50))
        );
        assert_eq!(cfg.submit_rate_per_min, Some(30));
        assert_eq!(cfg.submit_burst, 3);
        assert_eq!(cfg.retry_after, RetryAfterFormat::HttpDate);
        assert!(!cfg.honour_idempotency);
        assert_eq!(cfg.faults.seed, 9);
        assert_eq!(cfg.faults.task_failure, Fault::rate(0.1).at_most(2));
        assert_eq!(cfg.faults.ambiguous_submit, Fault::first(1));
        assert!(cfg.faults.poll_5xx.is_never());
    }

    #[test]
    fn bad_values_are_refused_with_the_flag_named() {
        assert!(Cli::try_parse_from(["sim", "--fault-poll-5xx", "2"]).is_err());
        let cli = Cli::try_parse_from(["sim", "--link-ttl-secs=-1"]).unwrap();
        let err = cli.sim.to_config().unwrap_err().to_string();
        assert!(err.contains("link_ttl_secs"), "{err}");
    }
}
