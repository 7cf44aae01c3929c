//! The manifest's schema: the node tree -> a typed, located [`Manifest`], field by field.
//!
//! Owns: field names, types, defaults, allowed values and their messages ("did you mean"),
//! duplicate keys. A bad field is reported and skipped, so one pass reports every mistake.
//! The tree's layout (root, reference, output, budget, subjects) is read here; each field's
//! value in [`fields`], and names ("did you mean", identifiers) in [`names`].
//!
//! May not: touch the file system (paths are checked in `paths`) nor combine fields across
//! subjects (ids, keys and output names are checked in `expand`).

use super::Location;
use super::Problems;
use super::yaml::{Node, Value, quote_for_message};
use crate::media::Orientation;
use crate::pricing::Mode;

mod fields;
mod names;
use fields::{max_usd, media_path, model, overrides, string, subject};
pub(crate) use names::{closest, identifier, identifier_problem};

/// The only manifest format version this build reads.
pub const MANIFEST_VERSION: i128 = 1;
pub const MAX_PROMPT_CHARS: usize = 2500;
pub const MAX_RETRIES: i128 = 10;
pub const DEFAULT_RETRIES: u32 = 2;
pub const DEFAULT_OUTPUT_DIR: &str = "./out/{batch}";
pub const DEFAULT_OUTPUT_NAME: &str = "{subject}.mp4";
/// Bound on names and ids: they become file names and table columns.
pub const MAX_NAME_CHARS: usize = 64;
const MAX_MODEL_CHARS: usize = 128;
const MAX_PATH_CHARS: usize = 4096;

const ROOT_FIELDS: &[&str] = &[
    "version",
    "name",
    "reference",
    "model",
    "mode",
    "character_orientation",
    "keep_original_sound",
    "prompt",
    "subjects",
    "output",
    "budget",
    "retries",
    "canary",
];
const SUBJECT_FIELDS: &[&str] = &[
    "id",
    "image",
    "glob",
    "watch",
    "prompt",
    "mode",
    "character_orientation",
    "keep_original_sound",
];
const REFERENCE_FIELDS: &[&str] = &["video"];
const OUTPUT_FIELDS: &[&str] = &["dir", "name"];
const BUDGET_FIELDS: &[&str] = &["max_usd"];

/// A value with where it was written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct At<T> {
    pub value: T,
    pub at: Location,
}

/// Settings a subject may override. `None` = not written here (inherit).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Overrides {
    pub mode: Option<Mode>,
    pub orientation: Option<Orientation>,
    pub keep_original_sound: Option<bool>,
    /// `Some(None)`: written as `null`, which clears an inherited prompt.
    pub prompt: Option<Option<std::sync::Arc<str>>>,
}

/// Where a subject's image comes from, as written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SubjectSource {
    Image(At<String>),
    Glob(At<String>),
    /// A folder whose images are the subjects, now and as they arrive (the daemon watches it).
    Watch(At<String>),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Subject {
    /// Field path, e.g. `subjects[2]`.
    pub path: String,
    pub at: Location,
    pub id: Option<At<String>>,
    /// `None` when the source was missing or invalid (already reported).
    pub source: Option<SubjectSource>,
    pub overrides: Overrides,
}

/// The manifest as written, typed; every field that failed its check is `None` or defaulted.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Manifest {
    pub name: Option<At<String>>,
    pub reference_video: Option<At<String>>,
    pub model: Option<String>,
    pub defaults: Overrides,
    pub subjects: Vec<Subject>,
    pub output_dir: At<String>,
    pub output_name: At<String>,
    pub budget_usd: Option<f64>,
    pub retries: u32,
    /// Submit this many subjects first and hold the rest until a person approves.
    pub canary: Option<u32>,
}

/// Check the tree against the schema, reporting every mistake into `problems`.
pub(crate) fn read_manifest(root: &Node, problems: &mut Problems) -> Manifest {
    let mut manifest = Manifest {
        name: None,
        reference_video: None,
        model: None,
        defaults: Overrides::default(),
        subjects: Vec::new(),
        output_dir: At {
            value: DEFAULT_OUTPUT_DIR.to_owned(),
            at: root.at,
        },
        output_name: At {
            value: DEFAULT_OUTPUT_NAME.to_owned(),
            at: root.at,
        },
        budget_usd: None,
        retries: DEFAULT_RETRIES,
        canary: None,
    };
    if root.value == Value::Null {
        problems.push(
            root.at,
            "",
            format!(
                "the manifest is empty; it must be a mapping with the fields {}",
                list_names(ROOT_FIELDS)
            ),
        );
        return manifest;
    }
    let Some(fields) = fields_of(root, "", ROOT_FIELDS, problems) else {
        return manifest;
    };

    match fields.get("version") {
        None => problems.push(
            root.at,
            "version",
            format!("missing required field `version` (write `version: {MANIFEST_VERSION}`)"),
        ),
        Some(node) => match &node.value {
            Value::Int(MANIFEST_VERSION) => {}
            Value::Int(other) => problems.push(
                node.at,
                "version",
                format!(
                    "unsupported version {other}: this recast reads version {MANIFEST_VERSION}"
                ),
            ),
            other => problems.push(
                node.at,
                "version",
                format!(
                    "must be the number {MANIFEST_VERSION}, not {}",
                    other.describe()
                ),
            ),
        },
    }

    manifest.name = match fields.get("name") {
        None => {
            problems.push(
                root.at,
                "name",
                "missing required field `name` (the batch name: letters, digits, `-` and `_`)",
            );
            None
        }
        Some(node) => identifier(node, "name", "the batch name", problems),
    };

    manifest.reference_video =
        match fields.get("reference") {
            None => {
                problems.push(
                    root.at,
                    "reference",
                    "missing required field `reference` (with `video:` a path or https URL)",
                );
                None
            }
            Some(node) => fields_of(node, "reference", REFERENCE_FIELDS, problems).and_then(|f| {
                match f.get("video") {
                    None => {
                        problems.push(
                            node.at,
                            "reference.video",
                            "missing required field `video` (a local path relative to the \
                         manifest, or an https URL)",
                        );
                        None
                    }
                    Some(video) => media_path(video, "reference.video", problems),
                }
            }),
        };

    manifest.model = match fields.get("model") {
        None => {
            problems.push(
                root.at,
                "model",
                "missing required field `model` (e.g. `kling-v3-motion-control`)",
            );
            None
        }
        Some(node) => model(node, problems),
    };

    manifest.defaults = overrides(&fields, "", problems);
    // At the top, `prompt: null` just means no prompt.
    if manifest.defaults.prompt == Some(None) {
        manifest.defaults.prompt = None;
    }

    match fields.get("subjects") {
        None => problems.push(
            root.at,
            "subjects",
            "missing required field `subjects` (a list of `id` + `image`, or `glob`)",
        ),
        Some(node) => match &node.value {
            Value::Seq(items) if items.is_empty() => problems.push(
                node.at,
                "subjects",
                "must list at least one subject (`id` + `image`, or `glob`)",
            ),
            Value::Seq(items) => {
                manifest.subjects = items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| subject(item, i, problems))
                    .collect();
            }
            other => problems.push(
                node.at,
                "subjects",
                format!(
                    "must be a list of subjects (`- id: ...`), not {}",
                    other.describe()
                ),
            ),
        },
    }

    if let Some(node) = fields.get("output")
        && let Some(output) = fields_of(node, "output", OUTPUT_FIELDS, problems)
    {
        if let Some(dir) = output
            .get("dir")
            .and_then(|n| string(n, "output.dir", problems))
        {
            manifest.output_dir = dir;
        }
        if let Some(name) = output
            .get("name")
            .and_then(|n| string(n, "output.name", problems))
        {
            manifest.output_name = name;
        }
    }

    if let Some(node) = fields.get("budget")
        && let Some(budget) = fields_of(node, "budget", BUDGET_FIELDS, problems)
    {
        manifest.budget_usd = budget.get("max_usd").and_then(|n| max_usd(n, problems));
    }

    if let Some(node) = fields.get("canary") {
        match &node.value {
            Value::Null => {}
            Value::Int(n) if (1..=i128::from(u32::MAX)).contains(n) => {
                manifest.canary = Some(*n as u32)
            }
            other => problems.push(
                node.at,
                "canary",
                format!(
                    "must be how many subjects go first, a whole number of at least 1, not {}",
                    other.describe()
                ),
            ),
        }
    }

    if let Some(node) = fields.get("retries") {
        match &node.value {
            Value::Int(n) if (0..=MAX_RETRIES).contains(n) => manifest.retries = *n as u32,
            other => problems.push(
                node.at,
                "retries",
                format!(
                    "must be a whole number from 0 to {MAX_RETRIES}, not {}",
                    other.describe()
                ),
            ),
        }
    }

    manifest
}

/// A mapping's fields by name, after rejecting unknown and duplicate keys. `None` (reported)
/// when the node is not a mapping. A `null` node counts as an empty mapping, so `output:` with
/// nothing under it means "all defaults".
fn fields_of<'a>(
    node: &'a Node,
    path: &str,
    allowed: &[&str],
    problems: &mut Problems,
) -> Option<Fields<'a>> {
    let entries: &[(Node, Node)] = match &node.value {
        Value::Map(entries) => entries,
        Value::Null => &[],
        other => {
            let what = if path.is_empty() {
                "the manifest".to_owned()
            } else {
                format!("`{path}`")
            };
            problems.push(
                node.at,
                path,
                format!(
                    "{what} must be a mapping with the fields {}, not {}",
                    list_names(allowed),
                    other.describe()
                ),
            );
            return None;
        }
    };
    let mut fields = Fields(Vec::new());
    for (key, value) in entries {
        let Value::Str(name) = &key.value else {
            problems.push(
                key.at,
                path,
                format!(
                    "keys must be field names ({}), not {}",
                    list_names(allowed),
                    key.value.describe()
                ),
            );
            continue;
        };
        let field_path = join(path, name);
        if !allowed.contains(&name.as_str()) {
            let hint = match closest(name, allowed) {
                Some(best) => format!("did you mean `{best}`? "),
                None => String::new(),
            };
            problems.push(
                key.at,
                &field_path,
                format!(
                    "unknown field `{}`; {hint}allowed here: {}",
                    quote_for_message(name),
                    list_names(allowed)
                ),
            );
            continue;
        }
        if let Some(first) = fields.0.iter().find(|(n, _, _)| n == name) {
            problems.push(
                key.at,
                &field_path,
                format!(
                    "duplicate key `{name}` (first written at line {}); write each field once",
                    first.1.line
                ),
            );
            continue;
        }
        fields.0.push((name.clone(), key.at, value));
    }
    Some(fields)
}

/// Known fields of one mapping: (name, where the key is, value).
struct Fields<'a>(Vec<(String, Location, &'a Node)>);

impl<'a> Fields<'a> {
    fn get(&self, name: &str) -> Option<&'a Node> {
        self.0.iter().find(|(n, _, _)| n == name).map(|f| f.2)
    }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

fn list_names(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
