//! A manifest's mistakes: each with its file, line, column and field, collected so that every
//! mistake in a file is reported at once, and bounded so a huge broken file cannot make a huge
//! report.
//!
//! May not: find mistakes (the schema, paths and expansion do) or print them (the CLI does).

use std::path::{Path, PathBuf};

use super::Location;

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

impl ManifestErrors {
    pub(super) fn one(file: &Path, message: impl Into<String>) -> ManifestErrors {
        ManifestErrors(vec![ManifestError {
            file: file.to_path_buf(),
            location: None,
            field: String::new(),
            message: message.into(),
        }])
    }
}

/// Mistakes reported for one manifest; past this the rest are counted, not listed, so a huge
/// broken file cannot produce a huge report.
pub const MAX_REPORTED_ERRORS: usize = 200;

/// Mistakes found so far in one manifest.
pub(crate) struct Problems {
    file: PathBuf,
    errors: Vec<ManifestError>,
    /// Mistakes beyond what is kept in memory.
    dropped: usize,
}

impl Problems {
    pub(super) fn new(file: &Path) -> Problems {
        Problems {
            file: file.to_path_buf(),
            errors: Vec::new(),
            dropped: 0,
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.errors.is_empty() && self.dropped == 0
    }

    pub(crate) fn push(&mut self, at: Location, field: &str, message: impl Into<String>) {
        // Kept beyond the reported count so sorting still picks the earliest in the file.
        if self.errors.len() >= 50 * MAX_REPORTED_ERRORS {
            self.dropped += 1;
            return;
        }
        self.errors.push(ManifestError {
            file: self.file.clone(),
            location: Some(at),
            field: field.to_owned(),
            message: message.into(),
        });
    }

    /// In file order; mistakes about the whole file first.
    pub(super) fn into_errors(mut self) -> ManifestErrors {
        self.errors.sort_by_key(|e| e.location);
        let more = self.dropped + self.errors.len().saturating_sub(MAX_REPORTED_ERRORS);
        self.errors.truncate(MAX_REPORTED_ERRORS);
        if more > 0 {
            self.errors.push(ManifestError {
                file: self.file,
                location: None,
                field: String::new(),
                message: format!("… and {more} more mistakes, not listed"),
            });
        }
        ManifestErrors(self.errors)
    }
}
