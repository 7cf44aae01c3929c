//! Every mistake in a settings file at once, each at its `file:line:column` with "did you mean",
//! the way manifests are checked: serde stops at the first mistake, so the file is first read
//! as a schema-free tree (the manifest's YAML layer) and walked against [`SCHEMA`].
//!
//! Owns: the settings file's field names and the kind of value each takes. May not: resolve
//! values (`Settings::resolve` does); a file this passes is still deserialized by serde, whose
//! error (if any) is then the only one left.

use std::path::Path;

use crate::manifest::ManifestError;
use crate::manifest::schema::closest;
use crate::manifest::yaml::{Node, Value, quote_for_message};

/// The kind of value a field takes. `null` is accepted everywhere: it means "not set".
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// A whole number, 0 or more.
    Count,
    Int,
    Bool,
    Text,
    /// A number (`0.11`, `1`).
    Number,
    /// A list of texts.
    Texts,
    Map(&'static [(&'static str, Kind)]),
    /// A list of mappings with these fields.
    Maps(&'static [(&'static str, Kind)]),
}

use Kind::*;

const PROVIDER: &[(&str, Kind)] = &[
    ("base_url", Text),
    ("api_key_file", Text),
    ("trust_idempotency", Bool),
    ("dedicated_account", Bool),
    ("media_base_url", Text),
    ("request_timeout_secs", Count),
    ("balance_warn_credits", Count),
];

const LIMITS: &[(&str, Kind)] = &[
    ("submit_per_minute", Count),
    ("submit_burst", Count),
    ("max_in_flight", Count),
    ("poll_per_minute", Count),
    ("download_concurrency", Count),
    ("download_timeout_secs", Count),
    ("max_clip_bytes", Count),
    ("max_provider_wait_secs", Count),
    ("max_task_age_secs", Count),
];

const POLLING: &[(&str, Kind)] = &[
    ("first_base_ms", Count),
    ("first_per_clip_second_ms", Count),
    ("first_max_ms", Count),
    ("interval_min_ms", Count),
    ("interval_max_ms", Count),
];

const PRICE: &[(&str, Kind)] = &[("model", Text), ("mode", Text), ("usd_per_second", Number)];

const S3: &[(&str, Kind)] = &[
    ("bucket", Text),
    ("endpoint", Text),
    ("region", Text),
    ("prefix", Text),
    ("url_ttl_secs", Count),
    ("public_base_url", Text),
    ("credentials_file", Text),
    ("profile", Text),
];

const INBOX: &[(&str, Kind)] = &[("path", Text), ("media_base_url", Text), ("priority", Int)];

const SCHEDULE: &[(&str, Kind)] = &[
    ("cron", Text),
    ("folder", Text),
    ("media_base_url", Text),
    ("priority", Int),
];

const DAEMON: &[(&str, Kind)] = &[
    ("listen", Text),
    ("settle_ms", Count),
    ("watch", Text),
    ("poll_interval_ms", Count),
    ("inboxes", Maps(INBOX)),
    ("schedules", Maps(SCHEDULE)),
];

const WEBHOOK: &[(&str, Kind)] = &[("url", Text), ("secret_file", Text), ("events", Texts)];

const NOTIFICATIONS: &[(&str, Kind)] = &[("webhooks", Maps(WEBHOOK)), ("on_batch_done", Text)];

/// The whole file.
const SCHEMA: &[(&str, Kind)] = &[
    ("state_dir", Text),
    ("provider", Map(PROVIDER)),
    ("limits", Map(LIMITS)),
    ("allowed_roots", Texts),
    ("allow_private_networks", Bool),
    ("prices", Maps(PRICE)),
    ("polling", Map(POLLING)),
    ("daemon", Map(DAEMON)),
    ("media_store", Map(&[("s3", Map(S3))])),
    ("notifications", Map(NOTIFICATIONS)),
];

/// Every mistake the tree of `text` shows against the schema, in file order (empty: none).
pub fn mistakes(text: &str, file: &Path) -> Vec<ManifestError> {
    let root = match crate::manifest::yaml::parse(text, file) {
        Ok(root) => root,
        Err(e) => return vec![e],
    };
    let mut found = Vec::new();
    if !matches!(root.value, Value::Null) {
        check(&root, Map(SCHEMA), "", file, &mut found);
    }
    found.sort_by_key(|e| e.location);
    found
}

fn check(node: &Node, kind: Kind, path: &str, file: &Path, found: &mut Vec<ManifestError>) {
    let mut wrong = |what: &str| {
        found.push(ManifestError {
            file: file.to_path_buf(),
            location: Some(node.at),
            field: path.to_owned(),
            message: format!("must be {what}, not {}", node.value.describe()),
        })
    };
    match (kind, &node.value) {
        (_, Value::Null) => {}
        (Count, Value::Int(n)) if *n >= 0 => {}
        (Count, _) => wrong("a whole number, 0 or more"),
        (Int, Value::Int(_)) => {}
        (Int, _) => wrong("a whole number"),
        (Bool, Value::Bool(_)) => {}
        (Bool, _) => wrong("`true` or `false`"),
        (Text, Value::Str(_)) => {}
        (Text, _) => wrong("a text"),
        (Number, Value::Int(_) | Value::Float(_)) => {}
        (Number, _) => wrong("a number"),
        (Texts, Value::Seq(items)) => {
            for (i, item) in items.iter().enumerate() {
                check(item, Text, &format!("{path}[{i}]"), file, found);
            }
        }
        (Texts, _) => wrong("a list"),
        (Maps(fields), Value::Seq(items)) => {
            for (i, item) in items.iter().enumerate() {
                check(item, Map(fields), &format!("{path}[{i}]"), file, found);
            }
        }
        (Maps(_), _) => wrong("a list"),
        (Map(fields), Value::Map(entries)) => check_fields(entries, fields, path, file, found),
        (Map(_), _) => wrong("a mapping"),
    }
}

fn check_fields(
    entries: &[(Node, Node)],
    fields: &[(&'static str, Kind)],
    path: &str,
    file: &Path,
    found: &mut Vec<ManifestError>,
) {
    let names: Vec<&str> = fields.iter().map(|(n, _)| *n).collect();
    let mut seen: Vec<(&str, usize)> = Vec::new();
    for (key, value) in entries {
        let mut push = |field: String, message: String| {
            found.push(ManifestError {
                file: file.to_path_buf(),
                location: Some(key.at),
                field,
                message,
            })
        };
        let Value::Str(name) = &key.value else {
            push(
                path.to_owned(),
                format!("keys must be field names, not {}", key.value.describe()),
            );
            continue;
        };
        let field = if path.is_empty() {
            name.clone()
        } else {
            format!("{path}.{name}")
        };
        let Some((known, kind)) = fields.iter().find(|(n, _)| n == name) else {
            let hint = closest(name, &names)
                .map(|best| format!("did you mean `{best}`? "))
                .unwrap_or_default();
            push(
                field,
                format!(
                    "unknown field `{}`; {hint}allowed here: {}",
                    quote_for_message(name),
                    names.join(", ")
                ),
            );
            continue;
        };
        if let Some((_, line)) = seen.iter().find(|(n, _)| n == known) {
            push(
                field,
                format!(
                    "duplicate key `{name}` (first written at line {line}); write each field once"
                ),
            );
            continue;
        }
        seen.push((known, key.at.line));
        check(value, *kind, &field, file, found);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        mistakes(text, Path::new("recast.yaml"))
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn every_mistake_is_named_at_once_with_its_place_and_a_suggestion() {
        let found = lines(
            "limits:\n  max_in_fligth: 3\n  submit_per_minute: fast\nprovider:\n  \
             trust_idempotency: yes\nmedia_store:\n  s3:\n    bukcet: b\n",
        );
        assert_eq!(
            found,
            [
                "recast.yaml:2:3: limits.max_in_fligth: unknown field `max_in_fligth`; did you \
                 mean `max_in_flight`? allowed here: submit_per_minute, submit_burst, \
                 max_in_flight, poll_per_minute, download_concurrency, download_timeout_secs, \
                 max_clip_bytes, max_provider_wait_secs, max_task_age_secs",
                "recast.yaml:3:22: limits.submit_per_minute: must be a whole number, 0 or more, \
                 not `fast`",
                "recast.yaml:5:22: provider.trust_idempotency: must be `true` or `false`, not `yes`",
                "recast.yaml:8:5: media_store.s3.bukcet: unknown field `bukcet`; did you mean \
                 `bucket`? allowed here: bucket, endpoint, region, prefix, url_ttl_secs, \
                 public_base_url, credentials_file, profile",
            ]
        );
    }

    #[test]
    fn a_good_file_and_an_empty_one_have_no_mistakes() {
        assert!(lines("").is_empty());
        assert!(
            lines(
                "state_dir: /srv/s\nprices:\n  - { model: m, mode: std, usd_per_second: 1 }\n\
                 daemon:\n  inboxes:\n    - path: /in\n      priority: -1\n\
                 media_store:\n  s3:\n    bucket: b\n    public_base_url: null\n"
            )
            .is_empty()
        );
        assert_eq!(lines("daemon:\n  inboxes:\n    - paht: /in\n").len(), 1);
    }
}
