//! The manifest: one YAML file declaring one batch (a performance x its subjects).
//!
//! Owns: the YAML schema, parsing with line/column errors, validation (every mistake in a file
//! reported at once), path confinement of local media, templating of output names, and
//! deterministic expansion into [`JobSpec`]s, each with its [`JobKey`].
//!
//! May not: do I/O beyond reading the manifest and listing and hashing local media files. It does
//! not probe media (that is `media`) nor price (that is `pricing`).
//!
//! # Layout
//! - `yaml`: text -> a node tree with line/column (serde-saphyr, with a budget).
//! - `schema`: node tree -> typed fields, every mistake collected.
//! - `paths`: URLs vs local paths, confinement to roots, globs, hashing, the output folder.
//! - `expand`: subjects -> job specs; ids, keys, checks across subjects.
//! - `stream`: the same in bounded chunks, for a valid manifest (any mistake: expand it whole).
//! - `output_name`: the output name and folder templates, and that every clip gets a safe
//!   name of its own.
//! - `key`: the job key's versioned encoding.
//! - `errors`: mistakes with their positions, collected and bounded.
//!
//! Errors read `FILE:LINE:COLUMN: FIELD: MESSAGE` (see [`ManifestError`]), e.g.
//! ``jobs.yaml:7:7: mode: `mode` must be `std` or `pro`, not `ultra` ``. Fields are paths with
//! 0-based list indexes (`subjects[2].image`); mistakes about the whole file have no position.

mod candidates;
mod errors;
mod expand;
mod inputs;
mod key;
mod listing;
mod local_file;
mod output_name;
mod paths;
pub(crate) mod schema;
mod source;
mod stream;
pub(crate) mod yaml;

pub(crate) use errors::Problems;
pub use errors::{MAX_REPORTED_ERRORS, ManifestError, ManifestErrors};
pub use inputs::{InputTrail, KnownDigests};
pub use key::{JOB_KEY_SCHEME, job_key};
pub use listing::is_temporary_name;
pub use source::{JobKey, LocalMedia, LocalMediaError, MediaSource};
pub use stream::{ManifestStream, Unstreamable};
pub use yaml::MAX_MANIFEST_BYTES;

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::media::Orientation;
use crate::pricing::Mode;

/// A position in the manifest file (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

/// The settings that shape a clip, after per-subject overrides.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ClipSettings {
    pub model: std::sync::Arc<str>,
    pub mode: Mode,
    pub orientation: Orientation,
    pub keep_original_sound: bool,
    pub prompt: Option<std::sync::Arc<str>>,
}

/// One (performance, subject) pair: one clip to make.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct JobSpec {
    /// Exact-size strings, and settings shared by every subject of one manifest entry: a glob
    /// may make 100,000 of these, all held while the batch is planned.
    pub subject_id: Box<str>,
    pub image: MediaSource,
    pub settings: std::sync::Arc<ClipSettings>,
    pub key: JobKey,
    /// File name of the clip inside the batch's output folder, after templating and checks.
    pub output_name: Box<str>,
    /// Where the subject was declared (for a glob, the glob's line).
    pub location: Location,
}

/// One manifest, validated and expanded. Jobs are sorted by subject id.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BatchSpec {
    pub manifest_path: PathBuf,
    /// Canonical folder of the manifest; relative paths are resolved against it.
    pub base_dir: PathBuf,
    pub name: String,
    pub reference_video: MediaSource,
    pub reference_location: Location,
    /// Absolute output folder after templating.
    pub output_dir: PathBuf,
    pub budget_usd: Option<f64>,
    pub retries: u32,
    /// `canary: N`: N subjects are submitted first, the rest wait for `recast approve`.
    pub canary: Option<u32>,
    pub jobs: Vec<JobSpec>,
    /// Canonical folders declared with `subjects: [{watch: ...}]`: their images are subjects, and
    /// the daemon turns each image that arrives there into a job of this batch.
    pub watch_dirs: Vec<PathBuf>,
    /// What the expansion depended on besides the files it hashed.
    #[serde(skip)]
    pub inputs: InputTrail,
}

/// How a manifest may reach local files.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Folders besides the manifest's own that local media may come from.
    pub allowed_roots: Vec<PathBuf>,
    /// Digests earlier runs computed: a local file whose identity is unchanged is not read
    /// and hashed again.
    pub known: Option<std::sync::Arc<dyn KnownDigests>>,
}

/// The batch name the manifest file at `path` declares, if it can be read and says one. Used to
/// tell a renamed manifest (its old file is gone) from a second manifest taking the same name.
pub fn declared_name(path: &Path) -> Option<String> {
    let text = read_manifest_text(path).ok()?;
    yaml::declared_name(&text)
}

/// Read, validate and expand a manifest file. Relative paths in it are relative to its folder.
pub fn load(path: &Path, options: &LoadOptions) -> Result<BatchSpec, ManifestErrors> {
    load_with_hint(path, options).map_err(|(errors, _)| errors)
}

/// What can still be checked about the reference video of a manifest that has mistakes, so
/// `recast plan` reports a too-long clip together with every other mistake, not one run later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferenceHint {
    pub video: MediaSource,
    pub location: Location,
    /// Some subject would use `character_orientation: image` (which caps the video at 10 s).
    pub image_orientation_used: bool,
}

/// Like [`load`], but on failure also hands back the reference video if it resolved.
pub fn load_with_hint(
    path: &Path,
    options: &LoadOptions,
) -> Result<BatchSpec, (ManifestErrors, Option<ReferenceHint>)> {
    let text = read_manifest_text(path).map_err(|e| (e, None))?;
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    parse_with_hint(&text, path, folder, options)
}

/// Read at most [`MAX_MANIFEST_BYTES`]: the size is checked before reading, and the read is
/// capped too, since the file may grow in between.
fn read_manifest_text(path: &Path) -> Result<String, ManifestErrors> {
    let too_large = |size: u64| {
        ManifestErrors::one(
            path,
            format!(
                "the manifest is {size} bytes; a manifest may be at most {MAX_MANIFEST_BYTES} \
                 bytes (1 MiB)"
            ),
        )
    };
    // Opened once, without following a link at its name and without blocking on a FIFO, and
    // checked on the handle: a link dropped into an inbox (to a key file, to /etc/passwd) is
    // never read, and nothing can be swapped in between a check and the read.
    let file = crate::safe_fs::open_regular(path).map_err(|err| {
        let why = match err.raw_os_error() {
            Some(libc::ELOOP) => "it is a symbolic link; recast reads a manifest only from the \
                                  file itself (name its real path)"
                .to_owned(),
            _ if err.kind() == std::io::ErrorKind::Other => {
                "it is not a regular file (a folder, a FIFO, a device)".to_owned()
            }
            _ => format!("cannot read the manifest: {err}"),
        };
        ManifestErrors::one(path, why)
    })?;
    let size = file
        .metadata()
        .map_err(|err| ManifestErrors::one(path, format!("cannot read the manifest: {err}")))?
        .len();
    if size > MAX_MANIFEST_BYTES {
        return Err(too_large(size));
    }
    let mut bytes = Vec::new();
    file.take(MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|err| ManifestErrors::one(path, format!("cannot read the manifest: {err}")))?;
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    String::from_utf8(bytes)
        .map_err(|_| ManifestErrors::one(path, "the manifest is not UTF-8 text"))
}

/// Validate and expand manifest text. `file` is only named in messages (and kept in the
/// [`BatchSpec`]); relative paths in the text are resolved against `base_dir`.
pub fn parse_str(
    text: &str,
    file: &Path,
    base_dir: &Path,
    options: &LoadOptions,
) -> Result<BatchSpec, ManifestErrors> {
    parse_with_hint(text, file, base_dir, options).map_err(|(errors, _)| errors)
}

/// A manifest read and checked against the schema, with the roots its paths resolve against
/// and the mistakes found so far.
struct Parsed {
    pub manifest: schema::Manifest,
    pub roots: paths::Roots,
    pub problems: Problems,
}

fn parse_parts(
    text: &str,
    file: &Path,
    base_dir: &Path,
    options: &LoadOptions,
) -> Result<Parsed, ManifestErrors> {
    if text.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(ManifestErrors::one(
            file,
            format!("the manifest is larger than {MAX_MANIFEST_BYTES} bytes (1 MiB)"),
        ));
    }
    let base_dir = std::fs::canonicalize(base_dir).map_err(|err| {
        ManifestErrors::one(file, format!("cannot open the manifest's folder: {err}"))
    })?;
    let root = yaml::parse(text, file).map_err(|err| ManifestErrors(vec![err]))?;
    let mut problems = Problems::new(file);
    let manifest = schema::read_manifest(&root, &mut problems);
    let roots = paths::Roots::new(base_dir, &options.allowed_roots, options.known.clone());
    Ok(Parsed {
        manifest,
        roots,
        problems,
    })
}

/// The batch a checked manifest declares, with `jobs` (none yet for a streamed one).
fn batch_spec(
    file: &Path,
    manifest: &schema::Manifest,
    roots: &paths::Roots,
    header: expand::Header,
    jobs: Vec<JobSpec>,
    watch_dirs: Vec<PathBuf>,
) -> Result<BatchSpec, ManifestErrors> {
    let (Some(name), Some(reference), Some(reference_video), Some(output_dir)) = (
        &manifest.name,
        &manifest.reference_video,
        header.reference_video,
        header.output_dir,
    ) else {
        // Each of these is reported when missing; this guards the invariant without a panic.
        return Err(ManifestErrors::one(
            file,
            "the manifest is incomplete (internal error: a missing field was not reported)",
        ));
    };
    Ok(BatchSpec {
        manifest_path: file.to_path_buf(),
        base_dir: roots.base().to_path_buf(),
        name: name.value.clone(),
        reference_video,
        reference_location: reference.at,
        output_dir,
        budget_usd: manifest.budget_usd,
        retries: manifest.retries,
        canary: manifest.canary,
        jobs,
        watch_dirs,
        inputs: roots.trail(),
    })
}

fn parse_with_hint(
    text: &str,
    file: &Path,
    base_dir: &Path,
    options: &LoadOptions,
) -> Result<BatchSpec, (ManifestErrors, Option<ReferenceHint>)> {
    let Parsed {
        manifest,
        mut roots,
        mut problems,
    } = parse_parts(text, file, base_dir, options).map_err(|e| (e, None))?;
    let expanded = expand::expand(&manifest, &mut roots, &mut problems);
    if !problems.is_empty() {
        let image_orientation_used = manifest.defaults.orientation.unwrap_or(Orientation::Image)
            == Orientation::Image
            || manifest
                .subjects
                .iter()
                .any(|s| s.overrides.orientation == Some(Orientation::Image));
        let hint = match (&expanded.header.reference_video, &manifest.reference_video) {
            (Some(video), Some(at)) => Some(ReferenceHint {
                video: video.clone(),
                location: at.at,
                image_orientation_used,
            }),
            _ => None,
        };
        return Err((problems.into_errors(), hint));
    }
    batch_spec(
        file,
        &manifest,
        &roots,
        expanded.header,
        expanded.jobs,
        expanded.watch_dirs,
    )
    .map_err(|e| (e, None))
}
