//! The engine's settings: every limit the provider may impose, and when to poll a task.
//!
//! Owns: [`EngineConfig`] with its safe defaults for a new account, and [`PollSchedule`]. May
//! not: read files or the environment (the `settings` module resolves them into this).

use std::time::Duration;

/// When to poll a running task.
#[derive(Debug, Clone)]
pub struct PollSchedule {
    /// First poll after `first_base + first_per_clip_second x clip seconds`, at most `first_max`:
    /// generation takes longer for longer clips, and early polls only cost rate limit.
    pub first_base: Duration,
    pub first_per_clip_second: Duration,
    pub first_max: Duration,
    /// Then every `interval_min`, growing by half each poll up to `interval_max`, with jitter.
    pub interval_min: Duration,
    pub interval_max: Duration,
}

impl PollSchedule {
    /// For the real provider: generation takes one to several minutes.
    pub fn for_provider() -> PollSchedule {
        PollSchedule {
            first_base: Duration::from_secs(20),
            first_per_clip_second: Duration::from_secs(4),
            first_max: Duration::from_secs(120),
            interval_min: Duration::from_secs(5),
            interval_max: Duration::from_secs(60),
        }
    }

    /// For the simulator, whose generation takes a second or two.
    pub fn for_simulator() -> PollSchedule {
        PollSchedule {
            first_base: Duration::from_millis(150),
            first_per_clip_second: Duration::ZERO,
            first_max: Duration::from_secs(1),
            interval_min: Duration::from_millis(100),
            interval_max: Duration::from_millis(800),
        }
    }

    pub fn first_delay(&self, clip_ms: u64) -> Duration {
        let secs = clip_ms.div_ceil(1000) as u32;
        (self.first_base + self.first_per_clip_second * secs).min(self.first_max)
    }

    pub fn next_delay(&self, polls: u32) -> Duration {
        let grown = self
            .interval_min
            .mul_f64(1.5f64.powi(polls.min(30) as i32))
            .min(self.interval_max);
        grown.mul_f64(rand::random_range(0.8..1.2))
    }
}

/// Settings of the engine; every limit the provider may impose is one of them.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub submit_per_minute: u32,
    pub submit_burst: u32,
    /// Tasks submitted and not yet finished, at most.
    pub max_in_flight: u32,
    /// Submits on the wire at once.
    pub submit_concurrency: usize,
    pub poll_per_minute: u32,
    pub poll_concurrency: usize,
    pub poll_schedule: PollSchedule,
    pub download_concurrency: usize,
    pub download_timeout: Duration,
    /// The largest clip downloaded, in bytes: the body is cut off at the first byte past it.
    pub max_clip_bytes: u64,
    /// Clip links (and their redirects) may lead to private and local addresses.
    pub allow_private_networks: bool,
    /// After this many failed downloads of a clip (cut, corrupt), each further failure asks the
    /// provider for a fresh link, as a dead link (403/404/410) does at once.
    pub max_download_failures: u32,
    /// Fresh links asked for one clip before it is given up as `expired`.
    pub max_link_refreshes: u32,
    /// How long a clip link is assumed to live when the provider does not say (about 24 h).
    pub assumed_link_ttl: Duration,
    /// A task not final this long after its submit is polled no more: it fails, for a person.
    pub max_task_age: Duration,
    /// The provider honours `Idempotency-Key`: a submit whose outcome is unknown is sent again
    /// under its same key. Off: it is held as `unknown` for a person.
    pub trust_idempotency: bool,
    /// How many times one unknown submit is re-sent automatically before it is held.
    pub max_unknown_resends: u32,
    /// The provider's account is used by recast alone (and by this state folder alone): its
    /// balance then proves whether unknown submits created billed tasks (see `balance.rs`).
    pub dedicated_account: bool,
    /// With [`RunMode::Forever`] (the daemon): how long submitting stays stopped after a 402
    /// before one submit tries again (someone may have topped the account up). A one-shot run
    /// stops submitting instead, and says so.
    pub out_of_credits_pause: Duration,
}

impl Default for EngineConfig {
    /// Safe for a new account.
    fn default() -> Self {
        EngineConfig {
            submit_per_minute: 30,
            submit_burst: 5,
            max_in_flight: 20,
            submit_concurrency: 4,
            poll_per_minute: 120,
            poll_concurrency: 8,
            poll_schedule: PollSchedule::for_provider(),
            download_concurrency: 4,
            download_timeout: Duration::from_secs(300),
            // The provider takes reference videos up to 100 MB; a clip of the same length fits.
            max_clip_bytes: 100 << 20,
            allow_private_networks: false,
            max_download_failures: 5,
            max_link_refreshes: 3,
            assumed_link_ttl: Duration::from_secs(23 * 3600),
            max_task_age: Duration::from_secs(6 * 3600),
            trust_idempotency: false,
            max_unknown_resends: 5,
            dedicated_account: false,
            out_of_credits_pause: Duration::from_secs(300),
        }
    }
}
