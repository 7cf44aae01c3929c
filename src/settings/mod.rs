//! Settings: where state lives, how to reach the provider, and every limit, resolved from
//! flags, the environment and an optional YAML settings file (in that order of precedence),
//! over defaults that are safe for a new account.
//!
//! Owns: the settings file's schema and the resolution into an [`EngineConfig`] and provider
//! settings. May not: read manifests or touch the store. The API key is read here and kept in
//! an [`ApiKey`], which never prints.

mod check;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::engine::{EngineConfig, PollSchedule};
use crate::pricing::{Mode, PriceTable};
use crate::provider::ApiKey;

/// The default provider.
pub const DEFAULT_API_BASE: &str = "https://reapi.ai";

/// The settings file (`--config FILE`), every field optional.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsFile {
    pub state_dir: Option<PathBuf>,
    #[serde(default)]
    pub provider: ProviderSection,
    #[serde(default)]
    pub limits: LimitsSection,
    /// Folders besides a manifest's own that its local media may come from.
    #[serde(default)]
    pub allowed_roots: Vec<PathBuf>,
    /// Let URLs from manifests and provider answers reach private and local addresses
    /// (default false; see `netguard`).
    pub allow_private_networks: Option<bool>,
    /// Rate overrides, in USD per second of source video.
    #[serde(default)]
    pub prices: Vec<PriceOverride>,
    #[serde(default)]
    pub polling: PollingSection,
    /// `recast daemon`: inboxes, schedules, the HTTP endpoint (see `recast.example.yaml`).
    #[serde(default)]
    pub daemon: crate::daemon::DaemonSection,
    /// Where local media are published for the provider (an S3-compatible bucket).
    #[serde(default)]
    pub media_store: crate::media_store::MediaStoreSection,
    /// Webhooks and the `on_batch_done` hook.
    #[serde(default)]
    pub notifications: crate::notify::NotifySection,
}

/// When tasks are polled (milliseconds). Defaults suit the real provider, whose generation takes
/// minutes; the simulator (and tests) want it much faster.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollingSection {
    pub first_base_ms: Option<u64>,
    pub first_per_clip_second_ms: Option<u64>,
    pub first_max_ms: Option<u64>,
    pub interval_min_ms: Option<u64>,
    pub interval_max_ms: Option<u64>,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSection {
    pub base_url: Option<String>,
    /// A file holding the API key (first line); the environment's REAPI_API_KEY wins over it.
    pub api_key_file: Option<PathBuf>,
    /// Whether the provider honours `Idempotency-Key` (default false: unknown submits are held).
    pub trust_idempotency: Option<bool>,
    /// The account is used by recast alone, from this state folder alone (default false): its
    /// balance then settles unknown submits. Wrong if anyone or anything else spends from it.
    pub dedicated_account: Option<bool>,
    /// Public URL of the manifest's folder, for local media.
    pub media_base_url: Option<String>,
    pub request_timeout_secs: Option<u64>,
    /// The daemon warns when the account's balance falls under this many credits.
    pub balance_warn_credits: Option<u64>,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    pub submit_per_minute: Option<u32>,
    pub submit_burst: Option<u32>,
    pub max_in_flight: Option<u32>,
    pub poll_per_minute: Option<u32>,
    pub download_concurrency: Option<usize>,
    pub download_timeout_secs: Option<u64>,
    /// The largest clip recast downloads, in bytes (default 100 MiB): a body past it is cut off.
    pub max_clip_bytes: Option<u64>,
    /// The longest wait a provider's `Retry-After` may impose, in seconds (default and at most
    /// 3600).
    pub max_provider_wait_secs: Option<u64>,
    /// A task that has not reached a final status this many seconds after its submit is polled
    /// no more (default 21600, six hours).
    pub max_task_age_secs: Option<u64>,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceOverride {
    pub model: String,
    pub mode: Mode,
    pub usd_per_second: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read the settings file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the settings file {path} is not valid: {message}")]
    Invalid { path: PathBuf, message: String },
    /// Every mistake found, each `file:line:column: field: message`.
    #[error("{}", .0.join("\n"))]
    Mistakes(Vec<String>),
    #[error("cannot read the API key file {path}: {source}")]
    KeyFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Value(String),
}

impl SettingsFile {
    pub fn load(path: &Path) -> Result<SettingsFile, SettingsError> {
        let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mistakes = check::mistakes(&text, path);
        if !mistakes.is_empty() {
            return Err(SettingsError::Mistakes(
                mistakes.iter().map(ToString::to_string).collect(),
            ));
        }
        serde_saphyr::from_str(&text).map_err(|e| SettingsError::Invalid {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }
}

/// Values given on the command line or in the environment; `None` = not given.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub state_dir: Option<PathBuf>,
    pub api_base: Option<String>,
    pub api_key: Option<String>,
    pub api_key_file: Option<PathBuf>,
    pub trust_idempotency: Option<bool>,
    pub dedicated_account: Option<bool>,
    pub media_base_url: Option<String>,
    pub submit_per_minute: Option<u32>,
    pub submit_burst: Option<u32>,
    pub max_in_flight: Option<u32>,
    pub poll_per_minute: Option<u32>,
    pub download_concurrency: Option<usize>,
    pub allowed_roots: Vec<PathBuf>,
    pub allow_private_networks: Option<bool>,
}

/// Everything resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    pub state_dir: PathBuf,
    pub api_base: String,
    /// `None` until a command needs it; see [`Settings::api_key`].
    api_key: Option<ApiKey>,
    pub media_base_url: Option<String>,
    pub request_timeout: Duration,
    /// The longest wait a provider's answer may impose.
    pub max_provider_wait: Duration,
    pub engine: EngineConfig,
    pub prices: PriceTable,
    pub allowed_roots: Vec<PathBuf>,
    /// The settings file's `daemon:` section, as written; `daemon::DaemonConfig` resolves it.
    pub daemon: crate::daemon::DaemonSection,
    /// `media_store.s3`, as written; [`Settings::open_media_store`] makes the client.
    pub media_store: Option<crate::media_store::S3Settings>,
    /// The daemon warns when the balance falls under this many credits.
    pub balance_warn_credits: Option<u64>,
    /// `notifications:`, as written; [`crate::notify::resolve`] reads its secrets.
    pub notifications: crate::notify::NotifySection,
}

/// The state folder when none is set: one per user (`$XDG_STATE_HOME/recast`, else
/// `~/.local/state/recast`), never relative to the working folder. A folder relative to where a
/// command happens to run would split one batch's memory in two (`cd campaigns && recast run
/// spring.yaml` against `recast run campaigns/spring.yaml`), and the second would bill everything
/// again.
pub fn default_state_dir() -> PathBuf {
    let absolute = |v: std::ffi::OsString| {
        let p = PathBuf::from(v);
        p.is_absolute().then_some(p)
    };
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").and_then(absolute) {
        return dir.join("recast");
    }
    match std::env::var_os("HOME").and_then(absolute) {
        Some(home) => home.join(".local/state/recast"),
        // No home at all (a bare service account): the system's place for a program's state.
        None => PathBuf::from("/var/lib/recast"),
    }
}

impl Settings {
    /// The provider a batch's clips are made for, as the store keys batches: the base URL, or
    /// `simulator` (a clip from the simulator never counts for reAPI). One definition for
    /// `recast run`, `plan`, the steering commands and the daemon: if two ever differed, one
    /// batch would split in two and its jobs be billed twice.
    pub fn provider_identity(&self, simulate: bool) -> String {
        if simulate {
            "simulator".to_owned()
        } else {
            self.api_base.trim_end_matches('/').to_owned()
        }
    }

    pub fn resolve(file: SettingsFile, o: Overrides) -> Result<Settings, SettingsError> {
        let mut engine = EngineConfig::default();
        let l = &file.limits;
        engine.submit_per_minute = o
            .submit_per_minute
            .or(l.submit_per_minute)
            .unwrap_or(engine.submit_per_minute);
        engine.submit_burst = o
            .submit_burst
            .or(l.submit_burst)
            .unwrap_or(engine.submit_burst);
        engine.max_in_flight = o
            .max_in_flight
            .or(l.max_in_flight)
            .unwrap_or(engine.max_in_flight);
        engine.poll_per_minute = o
            .poll_per_minute
            .or(l.poll_per_minute)
            .unwrap_or(engine.poll_per_minute);
        engine.download_concurrency = o
            .download_concurrency
            .or(l.download_concurrency)
            .unwrap_or(engine.download_concurrency);
        if let Some(bytes) = l.max_clip_bytes {
            engine.max_clip_bytes = bytes;
        }
        if let Some(secs) = l.download_timeout_secs {
            engine.download_timeout = Duration::from_secs(secs);
        }
        if let Some(secs) = l.max_task_age_secs {
            engine.max_task_age = Duration::from_secs(secs.max(60));
        }
        let p = &file.polling;
        let ms = Duration::from_millis;
        let schedule = &mut engine.poll_schedule;
        if let Some(v) = p.first_base_ms {
            schedule.first_base = ms(v);
        }
        if let Some(v) = p.first_per_clip_second_ms {
            schedule.first_per_clip_second = ms(v);
        }
        if let Some(v) = p.first_max_ms {
            schedule.first_max = ms(v);
        }
        if let Some(v) = p.interval_min_ms {
            schedule.interval_min = ms(v);
        }
        if let Some(v) = p.interval_max_ms {
            schedule.interval_max = ms(v);
        }
        engine.trust_idempotency = o
            .trust_idempotency
            .or(file.provider.trust_idempotency)
            .unwrap_or(false);
        engine.allow_private_networks = o
            .allow_private_networks
            .or(file.allow_private_networks)
            .unwrap_or(false);
        engine.dedicated_account = o
            .dedicated_account
            .or(file.provider.dedicated_account)
            .unwrap_or(false);
        for (name, v) in [
            ("submit_per_minute", engine.submit_per_minute as usize),
            ("submit_burst", engine.submit_burst as usize),
            ("max_in_flight", engine.max_in_flight as usize),
            ("poll_per_minute", engine.poll_per_minute as usize),
            ("download_concurrency", engine.download_concurrency),
        ] {
            if v == 0 {
                return Err(SettingsError::Value(format!("`{name}` must be at least 1")));
            }
        }
        let mut prices = PriceTable::default();
        for p in &file.prices {
            if !(p.usd_per_second.is_finite() && p.usd_per_second > 0.0) {
                return Err(SettingsError::Value(format!(
                    "prices: `{}` {}: usd_per_second must be a positive number",
                    p.model, p.mode
                )));
            }
            prices.set_usd_per_second(&p.model, p.mode, p.usd_per_second);
        }
        let api_key = match (o.api_key, o.api_key_file.or(file.provider.api_key_file)) {
            (Some(k), _) => ApiKey::new(k),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(&path)
                    .map_err(|source| SettingsError::KeyFile { path, source })?;
                ApiKey::new(text.lines().next().unwrap_or_default())
            }
            (None, None) => None,
        };
        let mut allowed_roots = file.allowed_roots;
        allowed_roots.extend(o.allowed_roots);
        Ok(Settings {
            state_dir: o
                .state_dir
                .or(file.state_dir)
                .unwrap_or_else(default_state_dir),
            api_base: o
                .api_base
                .or(file.provider.base_url)
                .unwrap_or_else(|| DEFAULT_API_BASE.to_owned()),
            api_key,
            media_base_url: o.media_base_url.or(file.provider.media_base_url),
            request_timeout: Duration::from_secs(file.provider.request_timeout_secs.unwrap_or(60)),
            max_provider_wait: file
                .limits
                .max_provider_wait_secs
                .map_or(crate::provider::MAX_PROVIDER_WAIT, Duration::from_secs)
                .min(crate::provider::MAX_PROVIDER_WAIT),
            engine,
            prices,
            allowed_roots,
            daemon: file.daemon,
            media_store: file.media_store.s3,
            balance_warn_credits: file.provider.balance_warn_credits,
            notifications: file.notifications,
        })
    }

    /// The media store's client, when `media_store.s3` is set; an error says what is missing.
    pub fn open_media_store(
        &self,
    ) -> Result<Option<std::sync::Arc<crate::media_store::MediaStore>>, String> {
        let Some(s3) = &self.media_store else {
            return Ok(None);
        };
        let credentials = crate::media_store::S3Credentials::find(s3)?.ok_or_else(|| {
            "media_store.s3 is set but no credentials were found: set AWS_ACCESS_KEY_ID and \
             AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary ones), or \
             media_store.s3.credentials_file"
                .to_owned()
        })?;
        crate::media_store::MediaStore::new(s3, credentials).map(|m| Some(std::sync::Arc::new(m)))
    }

    pub fn api_key(&self) -> Option<&ApiKey> {
        self.api_key.as_ref()
    }

    /// Settings for a run against the built-in simulator: its key, fast polls.
    pub fn for_simulator(&self, base_url: &str, key: &str) -> Settings {
        let mut s = self.clone();
        s.api_base = base_url.to_owned();
        s.api_key = ApiKey::new(key);
        s.engine.poll_schedule = PollSchedule::for_simulator();
        s.engine.poll_per_minute = s.engine.poll_per_minute.max(600);
        s.engine.submit_per_minute = s.engine.submit_per_minute.max(600);
        s.engine.submit_burst = s.engine.submit_burst.max(20);
        // The simulator honours idempotency keys by default.
        s.engine.trust_idempotency = true;
        // Its clip links point at its own loopback server.
        s.engine.allow_private_networks = true;
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let file: SettingsFile = serde_saphyr::from_str(
            "limits:\n  submit_per_minute: 10\n  max_in_flight: 3\nprovider:\n  trust_idempotency: true\n",
        )
        .unwrap();
        let s = Settings::resolve(
            file,
            Overrides {
                submit_per_minute: Some(99),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(s.engine.submit_per_minute, 99);
        assert_eq!(s.engine.max_in_flight, 3);
        assert!(s.engine.trust_idempotency);
        assert_eq!(
            s.engine.poll_per_minute,
            EngineConfig::default().poll_per_minute
        );
        assert_eq!(s.api_base, DEFAULT_API_BASE);
    }

    #[test]
    fn unknown_fields_in_the_settings_file_are_refused() {
        assert!(serde_saphyr::from_str::<SettingsFile>("limitz: {}\n").is_err());
    }

    #[test]
    fn the_key_never_prints() {
        let s = Settings::resolve(
            SettingsFile::default(),
            Overrides {
                api_key: Some("sk-very-secret".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert!(!format!("{s:?}").contains("sk-very-secret"));
    }

    #[test]
    fn zero_limits_are_refused() {
        let err = Settings::resolve(
            SettingsFile::default(),
            Overrides {
                max_in_flight: Some(0),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("max_in_flight"));
    }
}
