//! Expansion: a checked [`Manifest`] -> the batch's [`JobSpec`]s, one per subject.
//!
//! Owns: resolving every subject's media (through `paths`), ids from glob file stems, effective
//! settings after overrides, job keys, and the checks across subjects: duplicate ids, two
//! subjects making the same clip (the output names and their checks are `output_name`'s).
//!
//! May not: read the YAML (that is `yaml` and `schema`) or decide what may be reached on disk
//! (that is `paths`). Output is deterministic: jobs sorted by subject id.

use std::collections::HashMap;
use std::path::PathBuf;

use super::key::job_key;
use super::listing::{shown_match, split_glob};
use super::output_name::{
    OUTPUT_DIR_PLACEHOLDERS, check_name_template, check_output_names, render, render_output_name,
};
use super::paths::Roots;
use super::schema::{MAX_NAME_CHARS, Manifest, Overrides, SubjectSource, identifier_problem};
use super::yaml::quote_for_message;
use super::{ClipSettings, JobSpec, Location, MediaSource, Problems};
use crate::media::Orientation;
use crate::pricing::Mode;

/// What a batch expands to; `None` parts failed and were reported.
pub(crate) struct Expanded {
    pub reference_video: Option<MediaSource>,
    pub output_dir: Option<PathBuf>,
    pub jobs: Vec<JobSpec>,
    pub watch_dirs: Vec<PathBuf>,
}

/// A subject after its media are resolved, before its job key. Kept small: a glob may make
/// 100,000 of them, and what they share (the entry's overrides, its field path) stays with the
/// manifest's entry.
struct Candidate {
    id: String,
    /// Where the id came from, for duplicate messages: the `id:` line, or the glob's.
    at: Location,
    /// The manifest's subject entry it came from (`manifest.subjects[entry]`).
    entry: usize,
    /// The entry's field named in messages: `id`, `watch` or `glob`.
    field: &'static str,
    /// The id came from the image's file name (a glob or watched folder match).
    from_file: bool,
    image: MediaSource,
}

impl Candidate {
    /// For ids from file names: the file as the user would write it, for messages. Made again
    /// from the entry and the path when needed, not kept with each of 100,000 candidates.
    fn shown_file(&self, manifest: &Manifest) -> Option<String> {
        let MediaSource::Local(local) = &self.image else {
            return None;
        };
        let path = local.path();
        let folder = match manifest.subjects[self.entry].source.as_ref()? {
            SubjectSource::Glob(glob) => split_glob(&glob.value).0,
            SubjectSource::Watch(watch) => watch.value.as_str(),
            SubjectSource::Image(_) => return None,
        };
        let name = path.file_name()?.to_string_lossy();
        self.from_file.then(|| shown_match(folder, &name))
    }

    /// Field path for messages, e.g. `subjects[2].id` or `subjects[3].glob`.
    fn field_path(&self, manifest: &Manifest) -> String {
        format!("{}.{}", manifest.subjects[self.entry].path, self.field)
    }
}

pub(crate) fn expand(manifest: &Manifest, roots: &mut Roots, problems: &mut Problems) -> Expanded {
    let reference_video = manifest.reference_video.as_ref().and_then(|video| {
        roots
            .media(&video.value)
            .map_err(|message| problems.push(video.at, "reference.video", message))
            .ok()
    });

    let output_dir = manifest.name.as_ref().and_then(|name| {
        let dir = &manifest.output_dir;
        let rendered = render(&dir.value, OUTPUT_DIR_PLACEHOLDERS, &|p| match p {
            "batch" => name.value.clone(),
            _ => String::new(),
        })
        .map_err(|message| problems.push(dir.at, "output.dir", message))
        .ok()?;
        roots
            .output_dir(&rendered)
            .map_err(|message| problems.push(dir.at, "output.dir", message))
            .ok()
    });

    let template_ok = check_name_template(&manifest.output_name, problems);
    let mut watch_dirs = Vec::new();
    let candidates = drop_duplicate_ids(
        manifest,
        candidates(manifest, roots, &mut watch_dirs, problems),
        problems,
    );

    // Keys need every clip-shaping input; a mistake there is already reported.
    let (Some(video), Some(model)) = (&reference_video, &manifest.model) else {
        return Expanded {
            reference_video,
            output_dir,
            jobs: Vec::new(),
            watch_dirs,
        };
    };
    let batch = manifest.name.as_ref().map_or("", |n| n.value.as_str());
    let model: std::sync::Arc<str> = model.as_str().into();
    // One per manifest entry, shared by every subject it makes.
    let entry_settings: Vec<std::sync::Arc<ClipSettings>> = manifest
        .subjects
        .iter()
        .map(|s| effective_settings(&model, &manifest.defaults, &s.overrides).into())
        .collect();
    // Already sorted by subject id (`drop_duplicate_ids`).
    let jobs: Vec<JobSpec> = candidates
        .into_iter()
        .map(|c| {
            let settings = entry_settings[c.entry].clone();
            let key = job_key(&settings, &c.image, video);
            let output_name = if template_ok {
                render_output_name(&manifest.output_name, batch, &c.id, &settings, &key)
            } else {
                String::new()
            };
            JobSpec {
                subject_id: c.id.into_boxed_str(),
                image: c.image,
                settings,
                key,
                output_name: output_name.into_boxed_str(),
                location: c.at,
            }
        })
        .collect();

    check_same_clip(&jobs, problems);
    if template_ok {
        check_output_names(&jobs, &manifest.output_name, problems);
    }
    Expanded {
        reference_video,
        output_dir,
        jobs,
        watch_dirs,
    }
}

fn candidates(
    manifest: &Manifest,
    roots: &mut Roots,
    watch_dirs: &mut Vec<PathBuf>,
    problems: &mut Problems,
) -> Vec<Candidate> {
    let mut out = Vec::new();
    for (entry, subject) in manifest.subjects.iter().enumerate() {
        match &subject.source {
            None => {}
            Some(SubjectSource::Image(image)) => {
                let field = format!("{}.image", subject.path);
                let media = roots
                    .media(&image.value)
                    .map_err(|message| problems.push(image.at, &field, message));
                if let (Ok(image), Some(id)) = (media, &subject.id) {
                    out.push(Candidate {
                        id: id.value.clone(),
                        at: id.at,
                        entry,
                        field: "id",
                        from_file: false,
                        image,
                    });
                }
            }
            Some(SubjectSource::Watch(watch)) => {
                let field = format!("{}.watch", subject.path);
                let (folder, matches) = match roots.watch(&watch.value) {
                    Ok(found) => found,
                    Err(message) => {
                        problems.push(watch.at, &field, message);
                        continue;
                    }
                };
                watch_dirs.push(folder);
                // An empty folder is fine: the performance stands and waits for subjects.
                for m in matches {
                    let (Ok(image), Some(id)) = (m.media, id_from_file_name(&m.file_name)) else {
                        continue;
                    };
                    out.push(Candidate {
                        id,
                        at: watch.at,
                        entry,
                        field: "watch",
                        from_file: true,
                        image,
                    });
                }
            }
            Some(SubjectSource::Glob(glob)) => {
                let field = format!("{}.glob", subject.path);
                let matches = match roots.glob(&glob.value) {
                    Ok(matches) => matches,
                    Err(message) => {
                        problems.push(glob.at, &field, message);
                        continue;
                    }
                };
                if matches.is_empty() {
                    problems.push(
                        glob.at,
                        &field,
                        format!("`{}` matches no files", quote_for_message(&glob.value)),
                    );
                }
                for m in matches {
                    let image = match m.media {
                        Ok(image) => image,
                        Err(message) => {
                            problems.push(glob.at, &field, message);
                            continue;
                        }
                    };
                    let Some(id) = id_from_file_name(&m.file_name) else {
                        problems.push(
                            glob.at,
                            &field,
                            format!(
                                "cannot make a subject id from `{}`: its name has no letters or \
                                 digits",
                                quote_for_message(&m.shown)
                            ),
                        );
                        continue;
                    };
                    out.push(Candidate {
                        id,
                        at: glob.at,
                        entry,
                        field: "glob",
                        from_file: true,
                        image,
                    });
                }
            }
        }
    }
    out
}

/// A subject id from a file name: the stem, with characters ids may not hold turned into `-`,
/// runs of `-` collapsed, trimmed, and cut to the id length limit.
pub(crate) fn id_from_file_name(file_name: &str) -> Option<String> {
    let stem = match file_name.rfind('.') {
        Some(i) if i > 0 => &file_name[..i],
        _ => file_name,
    };
    let mut id = String::new();
    for c in stem.chars() {
        let c = if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
            c
        } else {
            '-'
        };
        if !(c == '-' && id.ends_with('-')) {
            id.push(c);
        }
    }
    let id: String = id.trim_matches('-').chars().take(MAX_NAME_CHARS).collect();
    let id = id.trim_end_matches('-').to_owned();
    debug_assert!(id.is_empty() || identifier_problem(&id).is_none());
    (!id.is_empty()).then_some(id)
}

fn describe_candidate(c: &Candidate, manifest: &Manifest) -> String {
    match &c.shown_file(manifest) {
        Some(file) => format!("line {} (from `{}`)", c.at.line, quote_for_message(file)),
        None => format!("line {}", c.at.line),
    }
}

/// Report every id used twice, and keep only the first use: the later one's clip and file name
/// would otherwise be reported again as collisions of the same mistake. The kept ones come back
/// sorted by id (a stable sort, so the first use in the file is the one kept).
fn drop_duplicate_ids(
    manifest: &Manifest,
    mut candidates: Vec<Candidate>,
    problems: &mut Problems,
) -> Vec<Candidate> {
    candidates.sort_by(|a, b| a.id.cmp(&b.id));
    // In place: a second vector of 100,000 candidates would double expansion's peak.
    candidates.dedup_by(|later, first| {
        if later.id != first.id {
            return false;
        }
        let here = match later.shown_file(manifest) {
            Some(file) => format!(" (from `{}`)", quote_for_message(&file)),
            None => String::new(),
        };
        problems.push(
            later.at,
            &later.field_path(manifest),
            format!(
                "subject id `{}`{here} is already used at {}; ids must be unique",
                later.id,
                describe_candidate(first, manifest)
            ),
        );
        true
    });
    candidates
}

/// Model and prompt are shared (`Arc<str>`) by every job that inherits them: a 2500-character
/// prompt is held once, not once per subject.
fn effective_settings(
    model: &std::sync::Arc<str>,
    defaults: &Overrides,
    own: &Overrides,
) -> ClipSettings {
    ClipSettings {
        model: model.clone(),
        mode: own.mode.or(defaults.mode).unwrap_or(Mode::Std),
        orientation: own
            .orientation
            .or(defaults.orientation)
            .unwrap_or(Orientation::Image),
        keep_original_sound: own
            .keep_original_sound
            .or(defaults.keep_original_sound)
            .unwrap_or(true),
        prompt: own
            .prompt
            .clone()
            .unwrap_or_else(|| defaults.prompt.clone().flatten()),
    }
}

/// Two subjects with one key would pay twice for one clip (or overwrite each other).
fn check_same_clip(jobs: &[JobSpec], problems: &mut Problems) {
    let mut first_by_key: HashMap<&super::JobKey, &JobSpec> = HashMap::new();
    // File order, so the later declaration is the one reported.
    let mut in_file_order: Vec<&JobSpec> = jobs.iter().collect();
    in_file_order.sort_by_key(|j| j.location);
    for job in in_file_order {
        match first_by_key.get(&job.key) {
            Some(first) => problems.push(
                job.location,
                "subjects",
                format!(
                    "subjects `{}` (line {}) and `{}` would make the same clip (same image, \
                     reference video and settings; job key {}); remove one or change a setting",
                    first.subject_id,
                    first.location.line,
                    job.subject_id,
                    job.key.short()
                ),
            ),
            None => {
                first_by_key.insert(&job.key, job);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_from_file_names_are_sanitised() {
        assert_eq!(id_from_file_name("fox.jpg").as_deref(), Some("fox"));
        assert_eq!(
            id_from_file_name("Mr. Fox (2).jpg").as_deref(),
            Some("Mr-Fox-2")
        );
        assert_eq!(
            id_from_file_name("..weird..name...png").as_deref(),
            Some("weird-name")
        );
        assert_eq!(id_from_file_name("été.png").as_deref(), Some("t"));
        assert_eq!(id_from_file_name("...png"), None);
        assert_eq!(id_from_file_name("ü.png"), None);
        let long = format!("{}.png", "a".repeat(63) + "-bbb");
        assert_eq!(
            id_from_file_name(&long).as_deref(),
            Some("a".repeat(63).as_str())
        );
    }
}
