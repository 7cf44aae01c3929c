//! Subjects as the manifest's entries name them: each `image` with its `id`, each file a `glob`
//! matches or a watched folder holds with an id made from its name, its media resolved (and
//! hashed) through [`Roots`], before any job key.
//!
//! Owns: [`Candidate`], reading one subject entry into candidates, and ids from file names. May
//! not: compare subjects with each other (duplicate ids, same clips and names are `expand`'s and
//! `stream`'s) or decide what may be reached on disk (`paths`).

use std::path::PathBuf;

use super::listing::{shown_match, split_glob};
use super::paths::Roots;
use super::schema::{MAX_NAME_CHARS, Manifest, SubjectSource, identifier_problem};
use super::yaml::quote_for_message;
use super::{Location, MediaSource, Problems};

/// A subject after its media are resolved, before its job key. Kept small: a glob may make
/// 100,000 of them, and what they share (the entry's overrides, its field path) stays with the
/// manifest's entry.
pub(super) struct Candidate {
    pub(super) id: String,
    /// Where the id came from, for duplicate messages: the `id:` line, or the glob's.
    pub(super) at: Location,
    /// The manifest's subject entry it came from (`manifest.subjects[entry]`).
    pub(super) entry: usize,
    /// The entry's field named in messages: `id`, `watch` or `glob`.
    pub(super) field: &'static str,
    /// The id came from the image's file name (a glob or watched folder match).
    pub(super) from_file: bool,
    pub(super) image: MediaSource,
}

impl Candidate {
    /// For ids from file names: the file as the user would write it, for messages. Made again
    /// from the entry and the path when needed, not kept with each of 100,000 candidates.
    pub(super) fn shown_file(&self, manifest: &Manifest) -> Option<String> {
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
    pub(super) fn field_path(&self, manifest: &Manifest) -> String {
        format!("{}.{}", manifest.subjects[self.entry].path, self.field)
    }
}

/// The candidates of the manifest's subject entry `entry`, in listing order, added to `out`.
pub(super) fn entry_candidates(
    manifest: &Manifest,
    entry: usize,
    roots: &mut Roots,
    watch_dirs: &mut Vec<PathBuf>,
    problems: &mut Problems,
    out: &mut Vec<Candidate>,
) {
    let subject = &manifest.subjects[entry];
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
                    return;
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
            glob_candidates(subject, glob, entry, roots, problems, out)
        }
    }
}

fn glob_candidates(
    subject: &super::schema::Subject,
    glob: &super::schema::At<String>,
    entry: usize,
    roots: &mut Roots,
    problems: &mut Problems,
    out: &mut Vec<Candidate>,
) {
    let field = format!("{}.glob", subject.path);
    let matches = match roots.glob(&glob.value) {
        Ok(matches) => matches,
        Err(message) => {
            problems.push(glob.at, &field, message);
            return;
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
                    "cannot make a subject id from `{}`: its name has no letters or digits",
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
