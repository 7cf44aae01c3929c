//! The manifest: one YAML file declaring one batch (a performance x its subjects).
//!
//! Owns: the YAML schema, parsing with line/column errors, validation (every mistake in a file
//! reported at once), path confinement of local media, templating of output names, and
//! deterministic expansion into [`JobSpec`]s, each with its [`JobKey`].
//!
//! May not: do I/O beyond reading the manifest and listing and hashing local media files. It does
//! not probe media (that is `media`) nor price (that is `pricing`).

use std::path::PathBuf;

use crate::media::Orientation;
use crate::pricing::Mode;

/// Hash of everything that shapes a clip. Same key = same clip: never made twice.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct JobKey(pub String);

impl std::fmt::Display for JobKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl JobKey {
    /// First 12 hex digits: enough to tell keys apart in tables and file names.
    pub fn short(&self) -> &str {
        &self.0[..self.0.len().min(12)]
    }
}

/// Where a piece of media is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum MediaSource {
    /// A local file, already confined to an allowed root and hashed.
    Local {
        /// Canonical absolute path.
        path: PathBuf,
        /// Path relative to the manifest's folder with `/` separators, used to map local media to
        /// a public URL (`media_base_url`) or to the simulator's `/media/` folder.
        rel: String,
        /// sha256 of the content, lowercase hex.
        sha256: String,
    },
    /// An `https://` (or `http://`, for local testing) URL, passed to the provider as is.
    Remote { url: String },
}

/// A position in the manifest file (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, serde::Serialize)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

/// The settings that shape a clip, after per-subject overrides.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ClipSettings {
    pub model: String,
    pub mode: Mode,
    pub orientation: Orientation,
    pub keep_original_sound: bool,
    pub prompt: Option<String>,
}

/// One (performance, subject) pair: one clip to make.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct JobSpec {
    pub subject_id: String,
    pub image: MediaSource,
    pub settings: ClipSettings,
    pub key: JobKey,
    /// File name of the clip inside the batch's output folder, after templating and checks.
    pub output_name: String,
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
    pub jobs: Vec<JobSpec>,
}

/// How a manifest may reach local files.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Folders besides the manifest's own that local media may come from.
    pub allowed_roots: Vec<PathBuf>,
}

/// One mistake in a manifest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ManifestError {
    pub file: PathBuf,
    /// `None` when the mistake is about the file as a whole (cannot read it, too large).
    pub location: Option<Location>,
    /// Field path, e.g. `subjects[2].image`; empty for the whole file.
    pub field: String,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl std::fmt::Display for ManifestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(loc) = self.location {
            write!(f, ":{}:{}", loc.line, loc.column)?;
        }
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every mistake found in one manifest, in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ManifestErrors(pub Vec<ManifestError>);

impl std::fmt::Display for ManifestErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Read, validate and expand a manifest file.
pub fn load(_path: &std::path::Path, _options: &LoadOptions) -> Result<BatchSpec, ManifestErrors> {
    todo!("manifest helper")
}
