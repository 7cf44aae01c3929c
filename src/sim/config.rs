//! The simulator's settings: which wire-format variant it plays, its limits, and its faults.
//!
//! Owns: [`SimConfig`] and the small enums and fault specs it is made of, their defaults (the
//! seed's own shape, sensible for a person trying recast) and the text forms the flags use.
//!
//! May not: start anything or read the environment; `args.rs` turns flags into a [`SimConfig`].

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::pricing::PriceTable;

/// Where the submit answer carries the task id (`REAPI.md` lists all three).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IdField {
    /// `{"id": "..."}`
    #[default]
    Id,
    /// `{"task_id": "..."}`
    TaskId,
    /// `{"data": {"task_id": "..."}}`
    DataTaskId,
}

/// A family of status words, as different gateways spell them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusWords {
    /// processing, processing, completed, failed: reAPI's documented words
    #[default]
    Reapi,
    /// pending, processing, completed, failed
    Pending,
    /// queued, running, succeeded, error
    Alt1,
    /// submitted, in_progress, success, failed
    Alt2,
}

/// The phase of a task, before it is spelled in a family's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Pending,
    Processing,
    Completed,
    Failed,
}

impl StatusWords {
    pub fn word(self, phase: Phase) -> &'static str {
        use Phase::*;
        match (self, phase) {
            (StatusWords::Reapi, Pending | Processing) => "processing",
            (StatusWords::Reapi, Completed) => "completed",
            (StatusWords::Reapi, Failed) => "failed",
            (StatusWords::Pending, Pending) => "pending",
            (StatusWords::Pending, Processing) => "processing",
            (StatusWords::Pending, Completed) => "completed",
            (StatusWords::Pending, Failed) => "failed",
            (StatusWords::Alt1, Pending) => "queued",
            (StatusWords::Alt1, Processing) => "running",
            (StatusWords::Alt1, Completed) => "succeeded",
            (StatusWords::Alt1, Failed) => "error",
            (StatusWords::Alt2, Pending) => "submitted",
            (StatusWords::Alt2, Processing) => "in_progress",
            (StatusWords::Alt2, Completed) => "success",
            (StatusWords::Alt2, Failed) => "failed",
        }
    }
}

/// How long a task takes from submission to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generation {
    /// Every task takes this long.
    Fixed(Duration),
    /// This long per second of source clip (rounded up), like a real provider whose time grows
    /// with the clip; scaled down for tests.
    PerClipSecond(Duration),
}

impl Generation {
    pub fn for_clip(self, billed_seconds: u64) -> Duration {
        match self {
            Generation::Fixed(d) => d,
            Generation::PerClipSecond(d) => {
                d.saturating_mul(u32::try_from(billed_seconds.max(1)).unwrap_or(u32::MAX))
            }
        }
    }
}

/// How a 429 answer spells `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum RetryAfterFormat {
    /// Whole seconds, rounded up: `Retry-After: 3`.
    #[default]
    Seconds,
    /// An IMF-fixdate: `Retry-After: Sun, 06 Nov 1994 08:49:37 GMT`.
    HttpDate,
}

/// One fault: when it fires, out of the opportunities it has (each submit, poll or download).
///
/// The first `first` opportunities always fire (deterministic, for tests); every later one fires
/// with probability `rate`, drawn from the seed. `max` caps how many times it fires in all, so a
/// job with retries is not failed forever. Text form (flags): `0.1`, `first=2`, `0.2,max=5`,
/// `first=1,0.05,max=3`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Fault {
    pub rate: f64,
    pub first: u32,
    pub max: Option<u32>,
}

impl Fault {
    /// A fault that never fires.
    pub const NEVER: Fault = Fault {
        rate: 0.0,
        first: 0,
        max: None,
    };

    /// Fire each opportunity with this probability (0..1).
    pub fn rate(rate: f64) -> Fault {
        Fault {
            rate,
            ..Fault::NEVER
        }
    }

    /// Fire on the first `n` opportunities, then never.
    pub fn first(n: u32) -> Fault {
        Fault {
            first: n,
            ..Fault::NEVER
        }
    }

    /// Fire on every opportunity.
    pub fn always() -> Fault {
        Fault::rate(1.0)
    }

    /// Cap the total number of times this fault fires.
    pub fn at_most(self, max: u32) -> Fault {
        Fault {
            max: Some(max),
            ..self
        }
    }

    pub fn is_never(&self) -> bool {
        self.first == 0 && self.rate <= 0.0 || self.max == Some(0)
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("invalid fault `{text}`: {why} (examples: `0.1`, `first=2`, `0.2,max=5`)")]
pub struct FaultParseError {
    text: String,
    why: String,
}

impl FromStr for Fault {
    type Err = FaultParseError;

    fn from_str(text: &str) -> Result<Fault, FaultParseError> {
        let err = |why: String| FaultParseError {
            text: text.to_owned(),
            why,
        };
        let mut fault = Fault::NEVER;
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if let Some(n) = part.strip_prefix("first=") {
                fault.first = n.parse().map_err(|e| err(format!("first: {e}")))?;
            } else if let Some(n) = part.strip_prefix("max=") {
                fault.max = Some(n.parse().map_err(|e| err(format!("max: {e}")))?);
            } else {
                let rate: f64 = part.parse().map_err(|e| err(format!("rate: {e}")))?;
                if !(0.0..=1.0).contains(&rate) {
                    return Err(err(format!("rate {rate} is not between 0 and 1")));
                }
                fault.rate = rate;
            }
        }
        Ok(fault)
    }
}

/// Every fault the simulator can inject, reproducible from `seed`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Faults {
    pub seed: u64,
    /// The task ends `failed` (code `GENERATION_FAILED`) and its bill is refunded.
    pub task_failure: Fault,
    /// A submit answers 503 before anything is created: nothing billed.
    pub submit_5xx: Fault,
    /// A submit's connection is reset before anything is created: nothing billed.
    pub submit_reset: Fault,
    /// The task is created and billed, then the connection is cut before any answer.
    pub ambiguous_submit: Fault,
    /// A poll answers 503.
    pub poll_5xx: Fault,
    /// A poll's connection is reset before any answer.
    pub poll_reset: Fault,
    /// A submit or poll answer is held for `slow_delay` (the work itself is done at once).
    pub slow_answer: Fault,
    /// A download promises the full Content-Length, then cuts the body halfway.
    pub truncated_download: Fault,
    /// A download serves a body with bytes changed (same length), different on each attempt.
    pub changed_download: Fault,
    /// A poll of a completed task hands out a link that has already expired.
    pub expired_link: Fault,
    /// A poll answers 200 with a body that is not valid JSON.
    pub malformed_json: Fault,
    /// A poll answers a status word no gateway family uses.
    pub unknown_status: Fault,
    /// A submit answers 429 with `Retry-After: 1` whatever the rate (a storm of refusals that
    /// slowing down does not end). Nothing created.
    pub submit_429: Fault,
    /// A window in which every API call (submit, poll, balance) answers 503: an outage.
    pub outage: Option<Outage>,
}

/// From `after` the simulator started, for `lasts`, every API call answers 503 and nothing is
/// created. Text form (flags): `AFTER+LASTS` in seconds, e.g. `10+120`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outage {
    pub after: Duration,
    pub lasts: Duration,
}

impl Outage {
    /// Whether `since_start` (time since the simulator started) falls inside the outage.
    pub fn covers(&self, since_start: Duration) -> bool {
        since_start >= self.after && since_start < self.after + self.lasts
    }

    /// How long after the outage's end `since_start` is (`None` before it has ended).
    pub fn ended_ago(&self, since_start: Duration) -> Option<Duration> {
        since_start.checked_sub(self.after + self.lasts)
    }
}

impl FromStr for Outage {
    type Err = FaultParseError;

    fn from_str(text: &str) -> Result<Outage, FaultParseError> {
        let err = |why: &str| FaultParseError {
            text: text.to_owned(),
            why: why.to_owned(),
        };
        let (after, lasts) = text
            .split_once('+')
            .ok_or_else(|| err("expected AFTER+LASTS in seconds, e.g. 10+120"))?;
        let secs = |t: &str, what: &str| {
            t.trim()
                .parse::<f64>()
                .ok()
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
                .ok_or_else(|| err(&format!("{what} is not a number of seconds")))
        };
        Ok(Outage {
            after: secs(after, "AFTER")?,
            lasts: secs(lasts, "LASTS")?,
        })
    }
}

/// The simulator's settings. `Default` is the seed's own shape with a few seconds of generation.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The one bearer key accepted.
    pub api_key: String,
    pub id_field: IdField,
    pub status_words: StatusWords,
    /// Echo `keep_original_sound` as `"yes"`/`"no"` instead of a boolean (both are always accepted).
    pub sound_as_yes_no: bool,
    /// How long a clip link stays valid.
    pub link_ttl: Duration,
    pub generation: Generation,
    /// Submissions allowed per minute (steady rate); `None`: unlimited.
    pub submit_rate_per_min: Option<u32>,
    /// Submissions allowed at once on top of the steady rate (at least 1).
    pub submit_burst: u32,
    /// Every submit answer says the quota and what is left of it (`RateLimit-Policy`,
    /// `RateLimit`: the IETF draft's fields). reAPI documents none; other gateways send them.
    pub rate_limit_headers: bool,
    pub retry_after: RetryAfterFormat,
    /// Tasks pending or processing at once; `None`: unlimited.
    pub max_in_flight: Option<u32>,
    /// A repeat `Idempotency-Key` returns the first task and bills nothing (else: bills again).
    pub honour_idempotency: bool,
    /// A folder served at `/media/...` (range requests, confined to the folder).
    pub media_dir: Option<PathBuf>,
    /// Account balance in credits; a submit that would overdraw it gets 402. `None`: unlimited.
    pub credit_balance: Option<u64>,
    /// Rates the ledger bills at; models missing from it are rejected with 400.
    pub prices: PriceTable,
    /// How long fetching one input may take before the task fails with `INVALID_*_URL`.
    pub fetch_timeout: Duration,
    /// How long a `slow_answer` fault holds an answer (longer than a client's timeout).
    pub slow_delay: Duration,
    pub faults: Faults,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            api_key: "sim-key".to_owned(),
            id_field: IdField::Id,
            status_words: StatusWords::Reapi,
            sound_as_yes_no: false,
            link_ttl: Duration::from_secs(24 * 3600),
            generation: Generation::Fixed(Duration::from_secs(4)),
            submit_rate_per_min: None,
            submit_burst: 1,
            rate_limit_headers: false,
            retry_after: RetryAfterFormat::Seconds,
            max_in_flight: None,
            honour_idempotency: true,
            media_dir: None,
            credit_balance: None,
            prices: PriceTable::default(),
            fetch_timeout: Duration::from_secs(30),
            slow_delay: Duration::from_secs(120),
            faults: Faults::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_parse_from_their_text_form() {
        assert_eq!("0.1".parse(), Ok(Fault::rate(0.1)));
        assert_eq!("first=2".parse(), Ok(Fault::first(2)));
        assert_eq!("0.2,max=5".parse(), Ok(Fault::rate(0.2).at_most(5)));
        assert_eq!(
            "first=1, 0.05, max=3".parse(),
            Ok(Fault {
                rate: 0.05,
                first: 1,
                max: Some(3)
            })
        );
        assert!("1.5".parse::<Fault>().is_err());
        assert!("often".parse::<Fault>().is_err());
        assert!("".parse::<Fault>().unwrap().is_never());
    }

    #[test]
    fn an_outage_parses_and_covers_its_window() {
        let o: Outage = "10+120".parse().unwrap();
        assert!(!o.covers(Duration::from_secs(9)));
        assert!(o.covers(Duration::from_secs(10)) && o.covers(Duration::from_secs(129)));
        assert!(!o.covers(Duration::from_secs(130)));
        assert_eq!(
            o.ended_ago(Duration::from_secs(131)),
            Some(Duration::from_secs(1))
        );
        assert!("120".parse::<Outage>().is_err());
        assert!("x+1".parse::<Outage>().is_err());
    }

    #[test]
    fn generation_grows_with_the_clip_when_asked() {
        let g = Generation::PerClipSecond(Duration::from_millis(20));
        assert_eq!(g.for_clip(5), Duration::from_millis(100));
        assert_eq!(g.for_clip(0), Duration::from_millis(20));
        let g = Generation::Fixed(Duration::from_millis(70));
        assert_eq!(g.for_clip(12), Duration::from_millis(70));
    }

    #[test]
    fn each_family_spells_every_phase() {
        assert_eq!(StatusWords::Alt1.word(Phase::Completed), "succeeded");
        assert_eq!(StatusWords::Alt2.word(Phase::Processing), "in_progress");
        assert_eq!(StatusWords::Reapi.word(Phase::Pending), "processing");
        assert_eq!(StatusWords::Reapi.word(Phase::Failed), "failed");
        assert_eq!(StatusWords::Pending.word(Phase::Pending), "pending");
    }
}
