//! Where a manifest may reach: local media, globs and the output folder, confined to roots.
//!
//! Owns: telling URLs from local paths, confining local paths to the manifest's folder and the
//! allowed roots (lexically first, then after resolving symlinks), and resolving the output
//! folder. Listing a glob's or a watched folder is `listing`'s; opening and hashing a local file
//! is `local_file`'s.
//!
//! May not: read media beyond hashing them (probing is `media`), create or write anything, or
//! put a resolved absolute path into an error message: the manifest said where, and that is what
//! the user sees (a manifest dropped into a watched folder must not learn the file system).

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use super::MediaSource;
use super::yaml::quote_for_message;

/// The folders local media and outputs may live in: the manifest's own folder and the allowed
/// roots. Each is kept as written (made absolute) and canonical, so a path is accepted lexically
/// under either spelling and then checked again once symlinks are resolved.
#[derive(Debug)]
pub(crate) struct Roots {
    /// Canonical folder of the manifest.
    base: PathBuf,
    /// Allowed roots: (absolute as given, canonical).
    extra: Vec<(PathBuf, PathBuf)>,
    /// sha256 by canonical path, so media shared by subjects are read once.
    pub(super) hashes: HashMap<PathBuf, String>,
    /// Canonical folders whose listing chose subjects (globs, watches).
    pub(super) listed: Vec<PathBuf>,
    /// Some path resolved through a symlink: what it names can change without any file the
    /// batch read changing.
    through_links: std::cell::Cell<bool>,
    /// Digests recorded by earlier runs, and how many files were hashed or taken from them.
    pub(super) known: Option<std::sync::Arc<dyn super::KnownDigests>>,
    pub(super) hashed: usize,
    pub(super) reused: usize,
    /// When these roots were made, before any file was read through them.
    started: std::time::SystemTime,
}

impl Roots {
    /// `base` must be canonical. Allowed roots that do not exist are skipped: nothing can be
    /// read from them, and an output folder under them could not be confined after resolving.
    pub fn new(
        base: PathBuf,
        allowed: &[PathBuf],
        known: Option<std::sync::Arc<dyn super::KnownDigests>>,
    ) -> Roots {
        let extra = allowed
            .iter()
            .filter_map(|root| {
                // Relative roots come from flags and settings: relative to the working folder.
                let absolute = normalize(&std::path::absolute(root).ok()?);
                let canonical = fs::canonicalize(root).ok()?;
                Some((absolute, canonical))
            })
            .collect();
        Roots {
            base,
            extra,
            hashes: HashMap::new(),
            listed: Vec::new(),
            through_links: std::cell::Cell::new(false),
            known,
            hashed: 0,
            reused: 0,
            started: std::time::SystemTime::now(),
        }
    }

    pub fn base(&self) -> &Path {
        &self.base
    }

    /// The folders listed and whether any path went through a link (see [`super::InputTrail`]).
    pub fn trail(&self) -> super::InputTrail {
        super::InputTrail {
            listed_dirs: self.listed.clone(),
            through_links: self.through_links.get(),
            hashed: self.hashed,
            known: self.reused,
            read_at: Some(self.started),
        }
    }

    fn lexically_inside(&self, path: &Path) -> bool {
        path.starts_with(&self.base)
            || self.extra.iter().any(|(lexical, canonical)| {
                path.starts_with(lexical) || path.starts_with(canonical)
            })
    }

    /// The canonical root containing a canonical path.
    fn canonical_root_of(&self, canonical: &Path) -> Option<&Path> {
        if canonical.starts_with(&self.base) {
            return Some(&self.base);
        }
        self.extra
            .iter()
            .map(|(_, root)| root.as_path())
            .find(|root| canonical.starts_with(root))
    }

    /// A local path as written -> its absolute, lexically normalised form, if it stays inside.
    pub(super) fn confine_lexically(&self, raw: &str) -> Result<PathBuf, String> {
        if raw.contains('\0') {
            return Err("a path may not contain a NUL character".to_owned());
        }
        let joined = normalize(&self.base.join(raw));
        if self.lexically_inside(&joined) {
            Ok(joined)
        } else {
            Err(format!(
                "`{}` is outside the manifest's folder; local media must stay inside it (or \
                 inside an allowed root)",
                quote_for_message(raw)
            ))
        }
    }

    /// Resolve symlinks and check the result is still inside a root; returns the canonical path
    /// and the root it lies in.
    pub(super) fn confine_canonically(
        &self,
        raw: &str,
        path: &Path,
    ) -> Result<(PathBuf, &Path), String> {
        let canonical = fs::canonicalize(path).map_err(|err| match err.kind() {
            io::ErrorKind::NotFound => format!("`{}` does not exist", quote_for_message(raw)),
            _ => format!("cannot open `{}`: {err}", quote_for_message(raw)),
        })?;
        if canonical != path {
            self.through_links.set(true);
        }
        match self.canonical_root_of(&canonical) {
            Some(root) => Ok((canonical.clone(), root)),
            None => Err(format!(
                "`{}` leads through a symlink to a place outside the manifest's folder; local \
                 media must stay inside it (or inside an allowed root)",
                quote_for_message(raw)
            )),
        }
    }

    /// One media reference as written: an http(s) URL, or a local path relative to the manifest.
    pub fn media(&mut self, raw: &str) -> Result<MediaSource, String> {
        if let Some(url) = remote_url(raw)? {
            return Ok(MediaSource::Remote { url });
        }
        let path = self.confine_lexically(raw)?;
        self.local_file(raw, &path)
    }

    /// The output folder after templating: absolute, with the nearest existing ancestor resolved
    /// through symlinks, inside a root. It need not exist yet.
    pub fn output_dir(&self, raw: &str) -> Result<PathBuf, String> {
        if raw.trim().is_empty() {
            return Err("the output folder must not be empty (e.g. `./out/{batch}`)".to_owned());
        }
        if raw.contains('\0') {
            return Err("the output folder may not contain a NUL character".to_owned());
        }
        let joined = normalize(&self.base.join(raw));
        let outside = || {
            format!(
                "the output folder `{}` is outside the manifest's folder; outputs must stay \
                 inside it (or inside an allowed root)",
                quote_for_message(raw)
            )
        };
        if !self.lexically_inside(&joined) {
            return Err(outside());
        }
        for ancestor in joined.ancestors() {
            match fs::canonicalize(ancestor) {
                Ok(canonical) => {
                    if self.canonical_root_of(&canonical).is_none() {
                        return Err(format!(
                            "the output folder `{}` leads through a symlink to a place outside \
                             the manifest's folder",
                            quote_for_message(raw)
                        ));
                    }
                    if !canonical.is_dir() {
                        return Err(format!(
                            "the output folder `{}` runs into a file that is not a folder",
                            quote_for_message(raw)
                        ));
                    }
                    if canonical != ancestor {
                        self.through_links.set(true);
                    }
                    let rest = joined.strip_prefix(ancestor).unwrap_or(Path::new(""));
                    return Ok(canonical.join(rest));
                }
                // A dangling symlink would be followed when the folder is created.
                Err(_) if fs::symlink_metadata(ancestor).is_ok() => {
                    return Err(format!(
                        "the output folder `{}` runs into a broken symlink",
                        quote_for_message(raw)
                    ));
                }
                Err(_) => {}
            }
        }
        Err(outside())
    }
}

/// `Some(url)` for an accepted URL, `None` for a local path, an error for any other URL scheme
/// (`file://` in particular would reach around the confinement).
pub(crate) fn remote_url(raw: &str) -> Result<Option<String>, String> {
    let Some((scheme, rest)) = raw.split_once("://") else {
        return Ok(None);
    };
    let looks_like_scheme = scheme
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !looks_like_scheme {
        return Ok(None);
    }
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "https" && scheme != "http" {
        let hint = if scheme == "file" {
            "; for a local file write its path relative to the manifest"
        } else {
            ""
        };
        return Err(format!(
            "`{}`: `{scheme}://` URLs are not accepted; remote media must be `https://` (or \
             `http://`) URLs{hint}",
            quote_for_message(raw)
        ));
    }
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if let Some((_, bare_host)) = host.rsplit_once('@') {
        // Never quoted back: the part before `@` is a password.
        return Err(format!(
            "`{scheme}://***@{}...` carries credentials (user:password@): they would show in \
             plans, logs and the state database, so manifest URLs may not hold them; use a \
             presigned or public URL",
            quote_for_message(bare_host)
        ));
    }
    if host.is_empty() || raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "`{}` is not a valid URL (it needs a host, and no spaces)",
            quote_for_message(raw)
        ));
    }
    Ok(Some(raw.to_owned()))
}

/// Resolve `.` and `..` without touching the file system; `..` never climbs above the root.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            remote_url("https://cdn.example.com/x.png"),
            Ok(Some("https://cdn.example.com/x.png".to_owned()))
        );
        assert_eq!(remote_url("./x.png"), Ok(None));
        assert_eq!(remote_url("dir/a://b"), Ok(None));
        assert!(
            remote_url("file:///etc/passwd")
                .unwrap_err()
                .contains("relative")
        );
        assert!(remote_url("ftp://host/x").is_err());
        assert!(remote_url("https://").is_err());
        let creds = remote_url("https://alice:hunter2@cdn.example.com/x.png").unwrap_err();
        assert!(
            creds.contains("credentials") && !creds.contains("hunter2"),
            "{creds}"
        );
        assert!(remote_url("https://a b/").is_err());
    }

    #[test]
    fn normalize_never_climbs_above_root() {
        assert_eq!(normalize(Path::new("/a/b/../../../etc")), Path::new("/etc"));
        assert_eq!(normalize(Path::new("/a/./b/../c")), Path::new("/a/c"));
    }

    #[test]
    fn traversal_is_rejected_before_touching_the_file_system() {
        let dir = tempfile::tempdir().unwrap();
        let mut roots = Roots::new(fs::canonicalize(dir.path()).unwrap(), &[], None);
        let err = roots.media("../../etc/passwd").unwrap_err();
        assert!(err.contains("outside the manifest's folder"), "{err}");
        let err = roots.media("/etc/passwd").unwrap_err();
        assert!(err.contains("outside the manifest's folder"), "{err}");
    }
}
