//! The daemon's settings: the `daemon:` section of the settings file as written
//! ([`DaemonSection`]), and resolved ([`DaemonConfig`]): folders made absolute and created, cron
//! expressions parsed, the listen address checked.
//!
//! Owns: the section's schema and its defaults. May not: start anything or touch the store; the
//! provider, limits and state folder stay in [`Settings`], shared with every other command.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use super::DaemonError;
use crate::settings::Settings;

/// Loopback only by default: `/metrics` names batches, which is nobody else's business.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9464";
pub const DEFAULT_SETTLE_MS: u64 = 2000;
pub const DEFAULT_POLL_INTERVAL_MS: u64 = 2000;

/// `daemon:` in the settings file, every field optional.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonSection {
    /// Address of `/healthz` and `/metrics`; port 0 picks a free one (written to
    /// `STATE/daemon.addr` either way).
    pub listen: Option<String>,
    /// A dropped file is taken once its size and mtime held still this long (milliseconds).
    pub settle_ms: Option<u64>,
    /// `native` (inotify) or `poll` (for network file systems, where inotify sees nothing).
    pub watch: Option<WatchMode>,
    /// How often `poll` looks at the folders (milliseconds).
    pub poll_interval_ms: Option<u64>,
    #[serde(default)]
    pub inboxes: Vec<InboxSection>,
    #[serde(default)]
    pub schedules: Vec<ScheduleSection>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WatchMode {
    #[default]
    Native,
    Poll,
}

/// A folder people drop manifests into.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboxSection {
    pub path: PathBuf,
    /// Public URL of this folder, so the provider can fetch the local media of its manifests.
    pub media_base_url: Option<String>,
    /// Batches from this inbox are submitted before those of lower priority (default 0).
    #[serde(default)]
    pub priority: i64,
}

/// A folder of manifests reconciled on a cron schedule (a git checkout another job pulls).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSection {
    /// Five fields (minute granularity) or six (with seconds first), e.g. `*/15 * * * *`.
    pub cron: String,
    pub folder: PathBuf,
    pub media_base_url: Option<String>,
    #[serde(default)]
    pub priority: i64,
}

/// One inbox, resolved.
#[derive(Debug, Clone)]
pub struct Inbox {
    /// Canonical.
    pub path: PathBuf,
    pub media_base_url: Option<String>,
    pub priority: i64,
}

/// One schedule, resolved.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub cron: croner::Cron,
    pub folder: PathBuf,
    pub media_base_url: Option<String>,
    pub priority: i64,
}

/// Everything the daemon runs with.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub settings: Settings,
    pub listen: SocketAddr,
    pub settle: Duration,
    pub watch: WatchMode,
    pub poll_interval: Duration,
    pub inboxes: Vec<Inbox>,
    pub schedules: Vec<Schedule>,
}

impl DaemonConfig {
    /// Resolve the `daemon:` section of `settings`. Inbox folders are created when missing, so a
    /// fresh server can start before anyone has dropped anything; relative folders are relative
    /// to the working folder, like `state_dir`.
    pub fn resolve(settings: Settings) -> Result<DaemonConfig, DaemonError> {
        let section = settings.daemon.clone();
        let listen_text = section.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen = SocketAddr::from_str(listen_text).map_err(|e| {
            DaemonError::Config(format!(
                "daemon.listen: `{listen_text}` is not an address like {DEFAULT_LISTEN}: {e}"
            ))
        })?;
        if !listen.ip().is_loopback() {
            tracing::warn!(
                %listen,
                "daemon.listen is not a loopback address: /metrics names your batches to anyone who can reach it"
            );
        }
        let mut inboxes = Vec::new();
        for (i, inbox) in section.inboxes.iter().enumerate() {
            inboxes.push(Inbox {
                path: folder(&inbox.path, &format!("daemon.inboxes[{i}].path"), true)?,
                media_base_url: url(inbox.media_base_url.as_deref(), i, "inboxes")?,
                priority: inbox.priority,
            });
        }
        let mut schedules = Vec::new();
        for (i, s) in section.schedules.iter().enumerate() {
            let cron = croner::Cron::from_str(&s.cron).map_err(|e| {
                DaemonError::Config(format!(
                    "daemon.schedules[{i}].cron: `{}` is not a cron expression: {e} \
                     (five fields, e.g. `*/15 * * * *`, or six with seconds first)",
                    s.cron
                ))
            })?;
            schedules.push(Schedule {
                cron,
                folder: folder(&s.folder, &format!("daemon.schedules[{i}].folder"), false)?,
                media_base_url: url(s.media_base_url.as_deref(), i, "schedules")?,
                priority: s.priority,
            });
        }
        let settle = Duration::from_millis(section.settle_ms.unwrap_or(DEFAULT_SETTLE_MS));
        if settle.is_zero() {
            return Err(DaemonError::Config(
                "daemon.settle_ms must be at least 1: a file is taken only once it held still"
                    .to_owned(),
            ));
        }
        Ok(DaemonConfig {
            listen,
            settle,
            watch: section.watch.unwrap_or_default(),
            poll_interval: Duration::from_millis(
                section
                    .poll_interval_ms
                    .unwrap_or(DEFAULT_POLL_INTERVAL_MS)
                    .max(50),
            ),
            inboxes,
            schedules,
            settings,
        })
    }
}

fn folder(path: &Path, field: &str, create: bool) -> Result<PathBuf, DaemonError> {
    if create && !path.exists() {
        std::fs::create_dir_all(path).map_err(|e| {
            DaemonError::Config(format!("{field}: cannot create {}: {e}", path.display()))
        })?;
    }
    let canonical = std::fs::canonicalize(path).map_err(|e| {
        DaemonError::Config(format!("{field}: cannot open {}: {e}", path.display()))
    })?;
    if !canonical.is_dir() {
        return Err(DaemonError::Config(format!(
            "{field}: {} is not a folder",
            path.display()
        )));
    }
    Ok(canonical)
}

fn url(raw: Option<&str>, i: usize, list: &str) -> Result<Option<String>, DaemonError> {
    match raw {
        None => Ok(None),
        Some(u) if u.starts_with("https://") || u.starts_with("http://") => Ok(Some(u.to_owned())),
        Some(u) => Err(DaemonError::Config(format!(
            "daemon.{list}[{i}].media_base_url: `{u}` must be an https:// (or http://) URL"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{Overrides, SettingsFile};

    fn settings(yaml: &str) -> Settings {
        let file: SettingsFile = serde_saphyr::from_str(yaml).unwrap();
        Settings::resolve(file, Overrides::default()).unwrap()
    }

    #[test]
    fn defaults_listen_on_loopback_and_create_inboxes() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = dir.path().join("drop");
        let c = DaemonConfig::resolve(settings(&format!(
            "daemon:\n  inboxes:\n    - path: {}\n      priority: 3\n",
            inbox.display()
        )))
        .unwrap();
        assert!(c.listen.ip().is_loopback());
        assert!(inbox.is_dir());
        assert_eq!(c.inboxes[0].priority, 3);
        assert_eq!(c.settle, Duration::from_millis(DEFAULT_SETTLE_MS));
    }

    #[test]
    fn a_bad_cron_names_its_field() {
        let dir = tempfile::tempdir().unwrap();
        let err = DaemonConfig::resolve(settings(&format!(
            "daemon:\n  schedules:\n    - cron: 'every tuesday'\n      folder: {}\n",
            dir.path().display()
        )))
        .unwrap_err();
        assert!(
            err.to_string().contains("daemon.schedules[0].cron"),
            "{err}"
        );
    }

    #[test]
    fn the_example_config_is_valid() {
        let file: SettingsFile =
            serde_saphyr::from_str(include_str!("../../recast.example.yaml")).unwrap();
        assert_eq!(file.daemon.inboxes.len(), 1);
        for s in &file.daemon.schedules {
            croner::Cron::from_str(&s.cron).unwrap();
        }
        assert!(
            SocketAddr::from_str(file.daemon.listen.as_deref().unwrap())
                .unwrap()
                .ip()
                .is_loopback()
        );
    }

    #[test]
    fn unknown_daemon_fields_are_refused() {
        assert!(serde_saphyr::from_str::<SettingsFile>("daemon:\n  inboxs: []\n").is_err());
    }
}
