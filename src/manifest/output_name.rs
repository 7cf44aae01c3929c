//! Output names: the `output.name` and `output.dir` templates, rendered per subject, and the
//! checks that every clip gets a safe file name of its own in the batch's folder.
//!
//! Owns: placeholders and their rendering, what a file name may be, and the across-subject
//! check that no two clips land on one name. May not: resolve media or decide job keys (that
//! is `expand`), or touch the disk (the names are checked as text; `output::dir` writes).

use std::collections::HashMap;

use super::schema::At;
use super::yaml::quote_for_message;
use super::{ClipSettings, JobSpec, Problems};

/// Longest output file name most file systems take, in bytes.
const MAX_FILE_NAME_BYTES: usize = 255;
const OUTPUT_NAME_PLACEHOLDERS: &[&str] = &["batch", "subject", "mode", "model", "key"];
pub(super) const OUTPUT_DIR_PLACEHOLDERS: &[&str] = &["batch"];

/// Replace `{placeholder}`s; any other `{...}` or a stray brace is a mistake.
pub(super) fn render(
    template: &str,
    allowed: &[&str],
    value_of: &dyn Fn(&str) -> String,
) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find(['{', '}']) {
        out.push_str(&rest[..open]);
        if rest[open..].starts_with('}') {
            return Err(format!(
                "`{}` has a `}}` without a `{{`; placeholders are {}",
                quote_for_message(template),
                list_placeholders(allowed)
            ));
        }
        let Some(close) = rest[open..].find('}') else {
            return Err(format!(
                "`{}` has a `{{` without a `}}`; placeholders are {}",
                quote_for_message(template),
                list_placeholders(allowed)
            ));
        };
        let name = &rest[open + 1..open + close];
        if !allowed.contains(&name) {
            return Err(format!(
                "unknown placeholder `{{{}}}` in `{}`; allowed here: {}",
                quote_for_message(name),
                quote_for_message(template),
                list_placeholders(allowed)
            ));
        }
        out.push_str(&value_of(name));
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn list_placeholders(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{{{n}}}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why a file name could leave its folder or be mistaken for something else; `None` when fine.
pub(super) fn output_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("is empty")
    } else if name.contains('\0') {
        Some("contains a NUL character")
    } else if name.contains(['/', '\\']) {
        Some("contains a path separator (`/` or `\\`); it must be a file name in the output folder")
    } else if name.contains("..") {
        Some("contains `..`")
    } else if name.starts_with('.') {
        Some("starts with `.` (a hidden file)")
    } else if name.chars().any(char::is_control) {
        Some("contains control characters")
    } else if name.len() > MAX_FILE_NAME_BYTES {
        Some("is longer than 255 bytes")
    } else if !name.ends_with(".mp4") || name == ".mp4" {
        Some("must end in `.mp4`")
    } else {
        None
    }
}

/// Check the template once with harmless values, so a mistake in the template itself is
/// reported once rather than for every subject.
pub(super) fn check_name_template(template: &At<String>, problems: &mut Problems) -> bool {
    let result = render(&template.value, OUTPUT_NAME_PLACEHOLDERS, &|_| {
        "x".to_owned()
    })
    .and_then(|sample| match output_name_problem(&sample) {
        None => Ok(()),
        Some(problem) => Err(format!(
            "`{}` gives names like `{}`, which {problem}",
            quote_for_message(&template.value),
            quote_for_message(&sample)
        )),
    });
    match result {
        Ok(()) => true,
        Err(message) => {
            problems.push(template.at, "output.name", message);
            false
        }
    }
}

pub(super) fn render_output_name(
    template: &At<String>,
    batch: &str,
    subject: &str,
    settings: &ClipSettings,
    key: &super::JobKey,
) -> String {
    render(&template.value, OUTPUT_NAME_PLACEHOLDERS, &|p| match p {
        "batch" => batch.to_owned(),
        "subject" => subject.to_owned(),
        "mode" => settings.mode.as_str().to_owned(),
        "model" => settings.model.to_string(),
        "key" => key.short(),
        _ => String::new(),
    })
    // The template was checked already; an error here cannot happen, and leaves the name empty,
    // which the per-job check reports.
    .unwrap_or_default()
}

pub(super) fn check_output_names(jobs: &[JobSpec], template: &At<String>, problems: &mut Problems) {
    let mut reported_unsafe: Vec<String> = Vec::new();
    let mut first_by_name: HashMap<&str, &JobSpec> = HashMap::new();
    let mut in_file_order: Vec<&JobSpec> = jobs.iter().collect();
    in_file_order.sort_by_key(|j| j.location);
    for job in in_file_order {
        if let Some(problem) = output_name_problem(&job.output_name) {
            // Values such as a model with `/` give every subject the same mistake: say it once.
            let message = format!(
                "`{}` gives `{}` for subject `{}`, which {problem}",
                quote_for_message(&template.value),
                quote_for_message(&job.output_name),
                job.subject_id
            );
            if !reported_unsafe.contains(&problem.to_owned()) {
                reported_unsafe.push(problem.to_owned());
                problems.push(template.at, "output.name", message);
            }
            continue;
        }
        match first_by_name.get(&*job.output_name) {
            Some(first) => problems.push(
                job.location,
                "output.name",
                format!(
                    "subjects `{}` (line {}) and `{}` would both be saved as `{}`; put \
                     `{{subject}}` or `{{key}}` in `output.name`",
                    first.subject_id,
                    first.location.line,
                    job.subject_id,
                    quote_for_message(&job.output_name)
                ),
            ),
            None => {
                first_by_name.insert(&job.output_name, job);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates() {
        let value = |p: &str| format!("<{p}>");
        assert_eq!(
            render("{batch}/{subject}.mp4", OUTPUT_NAME_PLACEHOLDERS, &value).unwrap(),
            "<batch>/<subject>.mp4"
        );
        assert!(
            render("{nope}.mp4", OUTPUT_NAME_PLACEHOLDERS, &value)
                .unwrap_err()
                .contains("unknown placeholder `{nope}`")
        );
        assert!(render("{subject.mp4", OUTPUT_NAME_PLACEHOLDERS, &value).is_err());
        assert!(render("subject}.mp4", OUTPUT_NAME_PLACEHOLDERS, &value).is_err());
    }

    #[test]
    fn output_names_stay_in_their_folder() {
        assert_eq!(output_name_problem("fox.mp4"), None);
        for bad in [
            "",
            "a/b.mp4",
            "a\\b.mp4",
            "../x.mp4",
            "x..mp4",
            ".x.mp4",
            "x.mov",
            ".mp4",
            "a\0.mp4",
            "/etc/x.mp4",
        ] {
            assert!(output_name_problem(bad).is_some(), "{bad:?}");
        }
        assert!(output_name_problem(&format!("{}.mp4", "a".repeat(252))).is_some());
    }
}
