//! The manifest's schema: the node tree -> a typed, located [`Manifest`], field by field.
//!
//! Owns: field names, types, defaults, allowed values and their messages ("did you mean"),
//! duplicate keys. A bad field is reported and skipped, so one pass reports every mistake.
//!
//! May not: touch the file system (paths are checked in `paths`) nor combine fields across
//! subjects (ids, keys and output names are checked in `expand`).

use super::Location;
use super::Problems;
use super::yaml::{Node, Value, quote_for_message};
use crate::media::Orientation;
use crate::pricing::Mode;

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

/// The allowed name nearest to a misspelling, if it is near enough to be what was meant.
pub(crate) fn closest<'a>(name: &str, allowed: &[&'a str]) -> Option<&'a str> {
    // The distance costs length x length; a key this long is no typo of a field name.
    if name.chars().count() > 64 {
        return None;
    }
    let name = name.to_ascii_lowercase();
    allowed
        .iter()
        .map(|candidate| (edit_distance(&name, candidate), *candidate))
        .filter(|(distance, candidate)| {
            *distance <= (candidate.len() / 3).max(1)
                || (name.len() >= 4 && candidate.contains(name.as_str()))
        })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// Edit distance counting insertions, deletions, substitutions and swaps of two neighbours
/// (optimal string alignment): `imgae` is one edit from `image`, as a typist would count it.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // d[i][j]: distance between a[..i] and b[..j].
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

fn string(node: &Node, path: &str, problems: &mut Problems) -> Option<At<String>> {
    match &node.value {
        Value::Str(s) => Some(At {
            value: s.clone(),
            at: node.at,
        }),
        other => {
            problems.push(
                node.at,
                path,
                format!("must be a string, not {}", other.describe()),
            );
            None
        }
    }
}

/// A batch name or subject id: `[A-Za-z0-9_-]{1,64}`. A plain number such as `42` is taken as
/// the string it looks like.
pub(crate) fn identifier(
    node: &Node,
    path: &str,
    what: &str,
    problems: &mut Problems,
) -> Option<At<String>> {
    let text = match &node.value {
        Value::Str(s) => s.clone(),
        Value::Int(i) if *i >= 0 => i.to_string(),
        other => {
            problems.push(
                node.at,
                path,
                format!(
                    "{what} must be a string of letters, digits, `-` and `_`, not {}",
                    other.describe()
                ),
            );
            return None;
        }
    };
    match identifier_problem(&text) {
        None => Some(At {
            value: text,
            at: node.at,
        }),
        Some(problem) => {
            problems.push(
                node.at,
                path,
                format!(
                    "{what} `{}` {problem}; allowed: letters, digits, `-` and `_`, 1 to \
                     {MAX_NAME_CHARS} characters",
                    quote_for_message(&text)
                ),
            );
            None
        }
    }
}

/// Why `text` is not a valid id, or `None` when it is.
pub(crate) fn identifier_problem(text: &str) -> Option<&'static str> {
    if text.is_empty() {
        Some("is empty")
    } else if text.chars().count() > MAX_NAME_CHARS {
        Some("is too long")
    } else if !text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        Some("has characters that are not allowed")
    } else {
        None
    }
}

fn media_path(node: &Node, path: &str, problems: &mut Problems) -> Option<At<String>> {
    let value = string(node, path, problems)?;
    if value.value.trim().is_empty() {
        problems.push(
            node.at,
            path,
            "must not be empty (a local path relative to the manifest, or an https URL)",
        );
        return None;
    }
    if value.value.chars().count() > MAX_PATH_CHARS {
        problems.push(
            node.at,
            path,
            format!("is longer than {MAX_PATH_CHARS} characters"),
        );
        return None;
    }
    Some(value)
}

fn model(node: &Node, problems: &mut Problems) -> Option<String> {
    let value = string(node, "model", problems)?;
    let text = value.value;
    if text.trim().is_empty() {
        problems.push(
            node.at,
            "model",
            "must not be empty (e.g. `kling-v3-motion-control`)",
        );
        None
    } else if text.chars().count() > MAX_MODEL_CHARS || text.chars().any(char::is_control) {
        problems.push(
            node.at,
            "model",
            format!(
                "must be a model name of at most {MAX_MODEL_CHARS} printable characters, not `{}`",
                quote_for_message(&text)
            ),
        );
        None
    } else {
        Some(text)
    }
}

fn max_usd(node: &Node, problems: &mut Problems) -> Option<f64> {
    let usd = match &node.value {
        Value::Int(i) => *i as f64,
        Value::Float(f) => *f,
        _ => f64::NAN,
    };
    if usd.is_finite() && usd > 0.0 {
        Some(usd)
    } else {
        problems.push(
            node.at,
            "budget.max_usd",
            format!(
                "must be a positive number of US dollars (e.g. `5.00`), not {}",
                node.value.describe()
            ),
        );
        None
    }
}

/// The clip-shaping settings written in one mapping (the top level or one subject).
fn overrides(fields: &Fields<'_>, path: &str, problems: &mut Problems) -> Overrides {
    let mut out = Overrides::default();
    if let Some(node) = fields.get("mode") {
        out.mode = match &node.value {
            Value::Str(s) if s == "std" => Some(Mode::Std),
            Value::Str(s) if s == "pro" => Some(Mode::Pro),
            other => {
                problems.push(
                    node.at,
                    &join(path, "mode"),
                    format!("`mode` must be `std` or `pro`, not {}", other.describe()),
                );
                None
            }
        };
    }
    if let Some(node) = fields.get("character_orientation") {
        out.orientation = match &node.value {
            Value::Str(s) if s == "image" => Some(Orientation::Image),
            Value::Str(s) if s == "video" => Some(Orientation::Video),
            other => {
                problems.push(
                    node.at,
                    &join(path, "character_orientation"),
                    format!(
                        "`character_orientation` must be `image` or `video`, not {}",
                        other.describe()
                    ),
                );
                None
            }
        };
    }
    if let Some(node) = fields.get("keep_original_sound") {
        out.keep_original_sound = match &node.value {
            Value::Bool(b) => Some(*b),
            other => {
                problems.push(
                    node.at,
                    &join(path, "keep_original_sound"),
                    format!(
                        "`keep_original_sound` must be `true` or `false`, not {}",
                        other.describe()
                    ),
                );
                None
            }
        };
    }
    if let Some(node) = fields.get("prompt") {
        let field = join(path, "prompt");
        out.prompt = match &node.value {
            Value::Null => Some(None),
            Value::Str(s) if s.chars().count() > MAX_PROMPT_CHARS => {
                problems.push(
                    node.at,
                    &field,
                    format!(
                        "`prompt` has {} characters; the provider takes at most {MAX_PROMPT_CHARS}",
                        s.chars().count()
                    ),
                );
                None
            }
            Value::Str(s) => Some(Some(s.as_str().into())),
            other => {
                problems.push(
                    node.at,
                    &field,
                    format!(
                        "`prompt` must be a string (quote it), not {}",
                        other.describe()
                    ),
                );
                None
            }
        };
    }
    out
}

fn subject(node: &Node, index: usize, problems: &mut Problems) -> Subject {
    let path = format!("subjects[{index}]");
    let mut subject = Subject {
        path: path.clone(),
        at: node.at,
        id: None,
        source: None,
        overrides: Overrides::default(),
    };
    let Some(fields) = fields_of(node, &path, SUBJECT_FIELDS, problems) else {
        return subject;
    };
    subject.overrides = overrides(&fields, &path, problems);
    let image = fields.get("image");
    let glob = fields.get("glob");
    let watch = fields.get("watch");
    let id = fields.get("id");
    let given: Vec<&str> = [("image", image), ("glob", glob), ("watch", watch)]
        .iter()
        .filter(|(_, node)| node.is_some())
        .map(|(name, _)| *name)
        .collect();
    if given.len() > 1 {
        let second = [image, glob, watch].into_iter().flatten().nth(1);
        problems.push(
            second.map_or(node.at, |n| n.at),
            &path,
            format!(
                "has both `{}` and `{}`; a subject has one of `image`, `glob` or `watch`",
                given[0], given[1]
            ),
        );
        return subject;
    }
    match (image, glob, watch) {
        (Some(image), _, _) => {
            subject.source =
                media_path(image, &join(&path, "image"), problems).map(SubjectSource::Image);
            match id {
                Some(id) => {
                    subject.id = identifier(id, &join(&path, "id"), "subject id", problems);
                }
                None => problems.push(
                    node.at,
                    &join(&path, "id"),
                    "missing required field `id` (names the subject's clip: letters, digits, \
                     `-` and `_`)",
                ),
            }
        }
        (None, Some(many), _) | (None, None, Some(many)) => {
            let (field, source): (&str, fn(At<String>) -> SubjectSource) = if glob.is_some() {
                ("glob", SubjectSource::Glob)
            } else {
                ("watch", SubjectSource::Watch)
            };
            subject.source = media_path(many, &join(&path, field), problems).map(source);
            if let Some(id) = id {
                problems.push(
                    id.at,
                    &join(&path, "id"),
                    format!(
                        "a `{field}` subject takes its ids from the file names; remove `id` \
                         or use `image` instead of `{field}`"
                    ),
                );
            }
        }
        (None, None, None) => problems.push(
            node.at,
            &path,
            "needs `image` (one file or URL, with an `id`), `glob` (a pattern such as \
             `./subjects/*.png`) or `watch` (a folder whose images become subjects as they \
             arrive, such as `./incoming`)",
        ),
    }
    subject
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("imgae", "image"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("mode", "mode"), 0);
        assert_eq!(edit_distance("subject", "subjects"), 1);
    }

    #[test]
    fn near_misses_are_suggested_and_far_ones_are_not() {
        assert_eq!(closest("subject", ROOT_FIELDS), Some("subjects"));
        assert_eq!(
            closest("orientation", ROOT_FIELDS),
            Some("character_orientation")
        );
        assert_eq!(
            closest("chracter_orientation", ROOT_FIELDS),
            Some("character_orientation")
        );
        assert_eq!(closest("imgae", SUBJECT_FIELDS), Some("image"));
        assert_eq!(closest("Mode", SUBJECT_FIELDS), Some("mode"));
        assert_eq!(closest("zzzz", SUBJECT_FIELDS), None);
    }

    #[test]
    fn identifiers() {
        assert_eq!(identifier_problem("fox_1-a"), None);
        assert!(identifier_problem("").is_some());
        assert!(identifier_problem("a b").is_some());
        assert!(identifier_problem("../x").is_some());
        assert!(identifier_problem(&"a".repeat(65)).is_some());
        assert_eq!(identifier_problem(&"a".repeat(64)), None);
    }
}
