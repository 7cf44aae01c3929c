//! One field's value at a time: strings, media paths, the model, the budget, the settings a
//! subject may override, and a subject entry whole.
//!
//! Owns: each field's type, allowed values and range, and the message for a value out of them.
//!
//! May not: touch the file system (paths are checked in `paths`) or look across subjects.

use super::*;

pub(super) fn string(node: &Node, path: &str, problems: &mut Problems) -> Option<At<String>> {
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

pub(super) fn media_path(node: &Node, path: &str, problems: &mut Problems) -> Option<At<String>> {
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

pub(super) fn model(node: &Node, problems: &mut Problems) -> Option<String> {
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

pub(super) fn max_usd(node: &Node, problems: &mut Problems) -> Option<f64> {
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
pub(super) fn overrides(fields: &Fields<'_>, path: &str, problems: &mut Problems) -> Overrides {
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

pub(super) fn subject(node: &Node, index: usize, problems: &mut Problems) -> Subject {
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
