//! A manifest's subjects expanded in bounded chunks, for planning a batch larger than memory
//! should hold at once (`recast run`: DESIGN.md invariant 5).
//!
//! Owns: cutting the subject entries into chunks, and the checks across chunks (an id used
//! twice, two subjects making one clip, two clips given one name) made on 64-bit hashes of what
//! is compared, so the whole batch costs a few words a subject, not the subject.
//!
//! May not: report mistakes. Any mistake at all, or a hash seen twice (which may be a real
//! repeat), ends the stream with [`Unstreamable`], and the caller expands the manifest whole
//! ([`super::load`]), which reports every mistake as it always has: streaming is a way to hold
//! less of a valid manifest, never a second set of error messages.
//!
//! Within a chunk the subjects are sorted by id, as a whole expansion sorts them all; a caller
//! that needs the whole batch in that order sorts across chunks itself (the staged plan does).

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use super::candidates::{Candidate, entry_candidates};
use super::expand::{SpecMaker, drop_duplicate_ids, header};
use super::output_name::output_name_problem;
use super::paths::Roots;
use super::schema::Manifest;
use super::{BatchSpec, JobSpec, LoadOptions, Parsed, Problems};

/// The stream stopped: the manifest has a mistake (or two subjects may collide), and only a
/// whole expansion says which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unstreamable;

/// A valid-so-far manifest, its subjects still to expand.
pub struct ManifestStream {
    manifest: Manifest,
    roots: Roots,
    specs: SpecMaker,
    batch: BatchSpec,
    watch_dirs: Vec<PathBuf>,
    next_entry: usize,
    /// At least this many subjects a chunk (a manifest entry is never cut: a glob is at most
    /// [`super::listing::MAX_GLOB_MATCHES`]).
    chunk: usize,
    /// Hashes of every id, job key and output name so far, each with its own tag.
    seen: HashSet<u64>,
    /// A problems list that only ever tells "some mistake": its messages are the whole path's.
    problems: Problems,
    subjects: usize,
}

impl std::fmt::Debug for ManifestStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManifestStream")
            .field("batch", &self.batch.name)
            .field("next_entry", &self.next_entry)
            .field("subjects", &self.subjects)
            .finish_non_exhaustive()
    }
}

impl ManifestStream {
    /// Read and check the manifest at `path` and its batch-wide fields (reference video,
    /// output folder, names), expanding no subject yet.
    pub fn open(
        path: &Path,
        options: &LoadOptions,
        chunk: usize,
    ) -> Result<ManifestStream, Unstreamable> {
        let text = super::read_manifest_text(path).map_err(|_| Unstreamable)?;
        let folder = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        let Parsed {
            manifest,
            mut roots,
            mut problems,
        } = super::parse_parts(&text, path, folder, options).map_err(|_| Unstreamable)?;
        let header = header(&manifest, &mut roots, &mut problems);
        let specs = SpecMaker::new(
            &manifest,
            header.reference_video.as_ref(),
            header.template_ok,
        );
        let (false, Some(specs)) = (!problems.is_empty(), specs) else {
            return Err(Unstreamable);
        };
        let batch = super::batch_spec(path, &manifest, &roots, header, Vec::new(), Vec::new())
            .map_err(|_| Unstreamable)?;
        Ok(ManifestStream {
            manifest,
            roots,
            specs,
            batch,
            watch_dirs: Vec::new(),
            next_entry: 0,
            chunk: chunk.max(1),
            seen: HashSet::new(),
            problems,
            subjects: 0,
        })
    }

    /// The batch as declared; its `jobs` stay empty (they come by [`ManifestStream::next_chunk`]).
    pub fn batch(&self) -> &BatchSpec {
        &self.batch
    }

    /// The next chunk of subjects, sorted by id; `Ok(None)` when every entry was expanded.
    pub fn next_chunk(&mut self) -> Result<Option<Vec<JobSpec>>, Unstreamable> {
        let entries = self.manifest.subjects.len();
        if self.next_entry >= entries {
            return Ok(None);
        }
        let mut candidates: Vec<Candidate> = Vec::new();
        while self.next_entry < entries && candidates.len() < self.chunk {
            entry_candidates(
                &self.manifest,
                self.next_entry,
                &mut self.roots,
                &mut self.watch_dirs,
                &mut self.problems,
                &mut candidates,
            );
            self.next_entry += 1;
        }
        let before = candidates.len();
        let candidates = drop_duplicate_ids(&self.manifest, candidates, &mut self.problems);
        if !self.problems.is_empty() || candidates.len() != before {
            return Err(Unstreamable);
        }
        let mut jobs = Vec::with_capacity(candidates.len());
        for c in candidates {
            let job = self.specs.spec(c);
            let fresh = output_name_problem(&job.output_name).is_none()
                && self.first(b'i', &job.subject_id)
                && self.first(b'k', job.key.hex().as_str())
                && self.first(b'n', &job.output_name);
            if !fresh {
                return Err(Unstreamable);
            }
            jobs.push(job);
        }
        self.subjects += jobs.len();
        Ok(Some(jobs))
    }

    /// Whether `value` (under `tag`) was not seen before; notes it.
    fn first(&mut self, tag: u8, value: &str) -> bool {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (tag, value).hash(&mut hasher);
        self.seen.insert(hasher.finish())
    }

    /// Subjects expanded so far.
    pub fn subjects(&self) -> usize {
        self.subjects
    }

    /// The batch with what expanding it depended on (folders listed, files hashed), once
    /// every chunk was taken; its `jobs` stay empty.
    pub fn finish(self) -> BatchSpec {
        BatchSpec {
            watch_dirs: self.watch_dirs,
            inputs: self.roots.trail(),
            ..self.batch
        }
    }
}
