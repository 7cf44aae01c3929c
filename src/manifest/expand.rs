//! Expansion: a checked [`Manifest`] -> the batch's [`JobSpec`]s, one per subject.
//!
//! Owns: the batch-wide fields ([`Header`]: reference video, output folder), effective settings
//! after overrides, job keys ([`SpecMaker`]), and the checks across subjects with their messages:
//! duplicate ids, two subjects making the same clip (the output names and their checks are
//! `output_name`'s). Each entry's subjects come from `candidates`.
//!
//! May not: read the YAML (that is `yaml` and `schema`) or decide what may be reached on disk
//! (that is `paths`). Output is deterministic: jobs sorted by subject id.

use std::collections::HashMap;
use std::path::PathBuf;

use super::candidates::{Candidate, entry_candidates};
use super::key::job_key;
use super::output_name::{
    OUTPUT_DIR_PLACEHOLDERS, check_name_template, check_output_names, render, render_output_name,
};
use super::paths::Roots;
use super::schema::{Manifest, Overrides};
use super::yaml::quote_for_message;
use super::{ClipSettings, JobSpec, MediaSource, Problems};
use crate::media::Orientation;
use crate::pricing::Mode;

/// What a batch expands to; `None` parts failed and were reported.
pub(super) struct Expanded {
    pub header: Header,
    pub jobs: Vec<JobSpec>,
    pub watch_dirs: Vec<PathBuf>,
}

/// The batch-wide parts of an expansion: the reference video, the output folder, and whether
/// the output name template is usable.
pub(super) struct Header {
    pub reference_video: Option<MediaSource>,
    pub output_dir: Option<PathBuf>,
    pub template_ok: bool,
}

pub(super) fn header(manifest: &Manifest, roots: &mut Roots, problems: &mut Problems) -> Header {
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
    Header {
        reference_video,
        output_dir,
        template_ok,
    }
}

pub(super) fn expand(manifest: &Manifest, roots: &mut Roots, problems: &mut Problems) -> Expanded {
    let header = header(manifest, roots, problems);
    let mut watch_dirs = Vec::new();
    let mut all = Vec::new();
    for entry in 0..manifest.subjects.len() {
        entry_candidates(manifest, entry, roots, &mut watch_dirs, problems, &mut all);
    }
    let candidates = drop_duplicate_ids(manifest, all, problems);

    // Keys need every clip-shaping input; a mistake there is already reported.
    let specs = SpecMaker::new(
        manifest,
        header.reference_video.as_ref(),
        header.template_ok,
    );
    let Some(specs) = specs else {
        return Expanded {
            header,
            jobs: Vec::new(),
            watch_dirs,
        };
    };
    // Already sorted by subject id (`drop_duplicate_ids`).
    let jobs: Vec<JobSpec> = candidates.into_iter().map(|c| specs.spec(c)).collect();

    check_same_clip(&jobs, problems);
    if header.template_ok {
        check_output_names(&jobs, &manifest.output_name, problems);
    }
    Expanded {
        header,
        jobs,
        watch_dirs,
    }
}

/// Makes each subject's [`JobSpec`]: its entry's settings (one per manifest entry, shared by
/// every subject it makes), its key and its output name. Owns what it needs, so a streamed
/// expansion can keep one beside the manifest.
pub(super) struct SpecMaker {
    video: MediaSource,
    batch: String,
    template: super::schema::At<String>,
    entry_settings: Vec<std::sync::Arc<ClipSettings>>,
    template_ok: bool,
}

impl SpecMaker {
    /// `None` when a clip-shaping input (the reference video, the model) is missing: that
    /// mistake is already reported.
    pub(super) fn new(
        manifest: &Manifest,
        video: Option<&MediaSource>,
        template_ok: bool,
    ) -> Option<SpecMaker> {
        let (video, model) = (video?, manifest.model.as_ref()?);
        let model: std::sync::Arc<str> = model.as_str().into();
        let entry_settings = manifest
            .subjects
            .iter()
            .map(|s| effective_settings(&model, &manifest.defaults, &s.overrides).into())
            .collect();
        Some(SpecMaker {
            video: video.clone(),
            batch: manifest
                .name
                .as_ref()
                .map_or(String::new(), |n| n.value.clone()),
            template: manifest.output_name.clone(),
            entry_settings,
            template_ok,
        })
    }

    pub(super) fn spec(&self, c: Candidate) -> JobSpec {
        let settings = self.entry_settings[c.entry].clone();
        let key = job_key(&settings, &c.image, &self.video);
        let output_name = if self.template_ok {
            render_output_name(&self.template, &self.batch, &c.id, &settings, &key)
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
    }
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
pub(super) fn drop_duplicate_ids(
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
