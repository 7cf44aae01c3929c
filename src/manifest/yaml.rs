//! The YAML layer: manifest text -> a tree of nodes, each carrying its line and column.
//!
//! Owns: the serde-saphyr options and budget sized for manifests, and turning YAML errors
//! (syntax, budget breaches, alias bombs) into [`ManifestError`]s.
//!
//! May not: know the manifest's schema. It parses into a schema-free tree on purpose: serde's
//! derive stops at the first mistake, while validation over the tree reports every mistake in a
//! file at once (see `schema`).

use std::borrow::Cow;
use std::path::Path;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{DuplicateKeyPolicy, MessageFormatter, NonFiniteFloatPolicy, Spanned};

use super::{Location, ManifestError};

/// Largest manifest read: a batch of many subjects fits in far less, and the cap bounds memory
/// before the parser sees a byte.
pub const MAX_MANIFEST_BYTES: u64 = 1024 * 1024;

/// Nesting a manifest needs is 4 (root > subjects > subject > field); the slack admits aliases
/// and flow style without letting a deep document cost stack or time.
const MAX_DEPTH: usize = 16;

/// One YAML node with where it was referenced (for an alias: the `*alias` token).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub at: Location,
    pub value: Value,
}

/// A node's content. Scalars keep the type YAML's core schema gave them, so validation can say
/// "must be a string, not the number 5".
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in file order, duplicates kept so validation can name both lines.
    Map(Vec<(Node, Node)>),
}

impl Value {
    /// How to name this value in a message: "a list", "the number `5`", ...
    pub fn describe(&self) -> String {
        match self {
            Value::Null => "nothing (null)".to_owned(),
            Value::Bool(b) => format!("`{b}`"),
            Value::Int(i) => format!("the number `{i}`"),
            Value::Float(f) => format!("the number `{f:?}`"),
            Value::Str(s) => format!("`{}`", quote_for_message(s)),
            Value::Seq(_) => "a list".to_owned(),
            Value::Map(_) => "a mapping".to_owned(),
        }
    }
}

/// Cut long values and escape control characters: messages go to terminals and logs.
pub(crate) fn quote_for_message(s: &str) -> String {
    const MAX_CHARS: usize = 80;
    let mut out: String = s
        .chars()
        .take(MAX_CHARS)
        .flat_map(char::escape_debug)
        .collect();
    if s.chars().nth(MAX_CHARS).is_some() {
        out.push('…');
    }
    out
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<Value>::deserialize(deserializer)?;
        Ok(Node {
            at: location_from(spanned.referenced),
            value: spanned.value,
        })
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Int(v.into()))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<Value, E> {
        // Beyond i128 no manifest field can be valid anyway; keep it as a float for the message.
        Ok(i128::try_from(v).map_or(Value::Float(v as f64), Value::Int))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_bytes<E>(self, v: &[u8]) -> Result<Value, E> {
        // `!!binary` scalars: no manifest field takes bytes, so keep a lossy string to report.
        Ok(Value::Str(String::from_utf8_lossy(v).into_owned()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Value::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Node>()? {
            let value = map.next_value::<Node>()?;
            entries.push((key, value));
        }
        Ok(Value::Map(entries))
    }
}

fn location_from(loc: serde_saphyr::Location) -> Location {
    Location {
        line: usize::try_from(loc.line()).unwrap_or(usize::MAX),
        column: usize::try_from(loc.column()).unwrap_or(usize::MAX),
    }
}

/// Options sized for manifests: one document, shallow, few anchors, and alias replay capped far
/// below what a "billion laughs" needs, so such input fails in milliseconds with bounded memory.
fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_reader_input_bytes: Some(MAX_MANIFEST_BYTES as usize),
            // Loose enough that the 1 MiB cap binds first (a subject is about 5 nodes).
            max_events: 1_000_000,
            max_nodes: 500_000,
            max_aliases: 1_000,
            max_anchors: 1_000,
            max_depth: MAX_DEPTH,
            max_documents: 1,
            max_total_scalar_bytes: MAX_MANIFEST_BYTES as usize,
            max_merge_keys: 1_000,
            flow_nesting_limit: MAX_DEPTH,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: 20_000,
            max_replay_stack_depth: MAX_DEPTH,
            max_alias_expansions_per_anchor: 10_000,
        },
        // Duplicates reach our visitor, so the error can name both lines.
        duplicate_keys: DuplicateKeyPolicy::PassThrough,
        // `n`, `no`, `on` as booleans surprise people; only `true`/`false` are booleans.
        strict_booleans: true,
        // An id like `007` stays the string it looks like.
        leading_zero_numbers_as_strings: true,
        // Reported by the field's own check ("must be a positive finite number").
        non_finite_float_policy: NonFiniteFloatPolicy::AsString,
        emit_comments: false,
    }
}

/// The `name:` a manifest's text declares, if it parses that far; nothing else is checked.
pub(crate) fn declared_name(text: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct NameOnly {
        name: Option<String>,
    }
    serde_saphyr::from_str_with_options::<NameOnly>(text, options())
        .ok()?
        .name
}

/// Parse manifest text into a node tree, or the one YAML error that stopped the parser.
pub(crate) fn parse(text: &str, file: &Path) -> Result<Node, ManifestError> {
    serde_saphyr::from_str_with_options::<Node>(text, options())
        .map_err(|err| yaml_error(&err, file))
}

fn yaml_error(err: &serde_saphyr::Error, file: &Path) -> ManifestError {
    let location = err.location().filter(|l| l.line() > 0).map(location_from);
    ManifestError {
        file: file.to_path_buf(),
        location,
        field: String::new(),
        message: yaml_error_message(err),
    }
}

fn yaml_error_message(err: &serde_saphyr::Error) -> String {
    use serde_saphyr::Error;
    use serde_saphyr::budget::BudgetBreach;

    let mut inner = err;
    while let Error::WithSnippet { error, .. } | Error::AliasError { error, .. } = inner {
        inner = error;
    }
    let text: Cow<'_, str> = match inner {
        Error::Budget { breach, .. } => match breach {
            BudgetBreach::Depth { .. } => {
                format!("YAML nested too deeply (a manifest needs at most {MAX_DEPTH} levels)")
                    .into()
            }
            BudgetBreach::Documents { .. } => {
                "more than one YAML document (`---`): a manifest is one document".into()
            }
            BudgetBreach::Aliases { .. }
            | BudgetBreach::Anchors { .. }
            | BudgetBreach::AliasAnchorRatio { .. } => {
                "too many YAML anchors or aliases for a manifest".into()
            }
            other => format!("YAML too large for a manifest ({other:?})").into(),
        },
        Error::AliasReplayLimitExceeded { .. }
        | Error::AliasExpansionLimitExceeded { .. }
        | Error::AliasReplayStackDepthExceeded { .. }
        | Error::AliasReplayCounterOverflow { .. } => {
            "YAML aliases expand to far more data than a manifest holds (an alias bomb?)".into()
        }
        other => format!(
            "invalid YAML: {}",
            serde_saphyr::DefaultMessageFormatter.format_message(other)
        )
        .into(),
    };
    // The formatter's text bypassed the crate's own sanitising; it may quote input.
    text.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_debug().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> Node {
        parse(text, Path::new("m.yaml")).expect("parses")
    }

    #[test]
    fn nodes_carry_line_and_column() {
        let root = parse_ok("a: 1\nb:\n  - x\n");
        let Value::Map(entries) = root.value else {
            panic!("a mapping")
        };
        assert_eq!(entries[0].0.value, Value::Str("a".into()));
        assert_eq!(entries[0].1.at, Location { line: 1, column: 4 });
        let Value::Seq(items) = &entries[1].1.value else {
            panic!("a list")
        };
        assert_eq!(items[0].at, Location { line: 3, column: 5 });
    }

    #[test]
    fn duplicate_keys_reach_the_tree() {
        let root = parse_ok("mode: std\nmode: pro\n");
        let Value::Map(entries) = root.value else {
            panic!("a mapping")
        };
        assert_eq!(entries.len(), 2);
    }

    #[test]
    fn yaml_one_one_booleans_and_leading_zeros_stay_strings() {
        let root = parse_ok("n: no\nid: 007\n");
        let Value::Map(entries) = root.value else {
            panic!("a mapping")
        };
        assert_eq!(entries[0].0.value, Value::Str("n".into()));
        assert_eq!(entries[0].1.value, Value::Str("no".into()));
        assert_eq!(entries[1].1.value, Value::Str("007".into()));
    }

    #[test]
    fn syntax_errors_have_a_location() {
        let err = parse("a: [1, 2\nb: 3\n", Path::new("m.yaml")).unwrap_err();
        assert!(err.location.is_some(), "{err}");
        assert!(err.message.starts_with("invalid YAML"), "{err}");
    }

    #[test]
    fn several_documents_are_rejected() {
        let err = parse("a: 1\n---\nb: 2\n", Path::new("m.yaml")).unwrap_err();
        assert!(err.message.contains("more than one YAML document"), "{err}");
    }
}
