//! Listing a folder for a manifest: the files a `glob:` matches, and the images a watched
//! folder holds, each confined and hashed through [`Roots`] like any local path.
//!
//! Owns: wildcard matching, which names a watched folder takes (images, not half-copied files),
//! and the cap on matches. May not: confine or hash anything itself (`paths` does).

use std::fs;
use std::path::PathBuf;

use super::MediaSource;
use super::paths::{Roots, remote_url};
use super::yaml::quote_for_message;

/// A glob that matches more files than this is more likely a mistake than a batch.
pub const MAX_GLOB_MATCHES: usize = 10_000;

impl Roots {
    /// Every file a glob matches, sorted by file name; each match is confined and hashed on its
    /// own, so one bad match (a symlink out) does not hide the others.
    pub fn glob(&mut self, raw: &str) -> Result<Vec<GlobMatch>, String> {
        if remote_url(raw)?.is_some() {
            return Err("a `glob` matches local files only; use `image` for a URL".to_owned());
        }
        let (folder_raw, pattern) = split_glob(raw);
        if folder_raw.contains(['*', '?']) {
            return Err(format!(
                "`{}`: `*` and `?` are allowed in the file name only, not in folders",
                quote_for_message(raw)
            ));
        }
        if !pattern.contains(['*', '?']) {
            return Err(format!(
                "`{}` has no `*` or `?` in its file name; for a single file use `image` with an `id`",
                quote_for_message(raw)
            ));
        }
        let folder = self.confine_lexically(folder_raw)?;
        let (folder, _) = self.confine_canonically(folder_raw, &folder)?;
        self.listed.push(folder.clone());
        let entries = fs::read_dir(&folder).map_err(|err| {
            format!(
                "cannot list the folder `{}`: {err}",
                quote_for_message(folder_raw)
            )
        })?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|err| {
                format!(
                    "cannot list the folder `{}`: {err}",
                    quote_for_message(folder_raw)
                )
            })?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            // As in shells, `*` does not match hidden files unless the pattern asks for them.
            if name.starts_with('.') && !pattern.starts_with('.') {
                continue;
            }
            if wildcard_match(pattern, &name) {
                names.push(name);
                if names.len() > MAX_GLOB_MATCHES {
                    return Err(format!(
                        "`{}` matches more than {MAX_GLOB_MATCHES} files",
                        quote_for_message(raw)
                    ));
                }
            }
        }
        names.sort();
        let mut matches = Vec::new();
        for name in names {
            let path = folder.join(&name);
            // Folders that happen to match (`*`) are not subjects.
            if fs::metadata(&path).is_ok_and(|m| m.is_dir()) {
                continue;
            }
            let shown = shown_match(folder_raw, &name);
            let media = self.listed_file(&shown, &path);
            matches.push(GlobMatch {
                file_name: name,
                shown,
                media,
            });
        }
        Ok(matches)
    }

    /// A watched subjects folder: confined like any local path; returns its canonical path and
    /// the images in it now, sorted by file name. Only whole, visible image files count: names
    /// a copy is still writing ([`is_temporary_name`]), dot-files, other extensions and folders
    /// are left alone, so a half-copied image never becomes a subject. A file that cannot be
    /// confined or read (a symlink out, one removed while listing) is skipped, not an error:
    /// one stray file dropped by someone must not stop the whole standing performance.
    pub fn watch(&mut self, raw: &str) -> Result<(PathBuf, Vec<GlobMatch>), String> {
        if remote_url(raw)?.is_some() {
            return Err("`watch` takes a local folder, not a URL".to_owned());
        }
        let folder = self.confine_lexically(raw)?;
        let (folder, _) = self.confine_canonically(raw, &folder)?;
        self.listed.push(folder.clone());
        if !folder.is_dir() {
            return Err(format!("`{}` is not a folder", quote_for_message(raw)));
        }
        let entries = fs::read_dir(&folder)
            .map_err(|err| format!("cannot list the folder `{}`: {err}", quote_for_message(raw)))?;
        let mut names: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|name| !is_temporary_name(name) && is_image_name(name))
            .collect();
        if names.len() > MAX_GLOB_MATCHES {
            return Err(format!(
                "`{}` holds more than {MAX_GLOB_MATCHES} images",
                quote_for_message(raw)
            ));
        }
        names.sort();
        let mut matches = Vec::new();
        for name in names {
            let path = folder.join(&name);
            if !fs::metadata(&path).is_ok_and(|m| m.is_file()) {
                continue;
            }
            let shown = shown_match(raw, &name);
            if let Ok(media) = self.listed_file(&shown, &path) {
                matches.push(GlobMatch {
                    file_name: name,
                    shown,
                    media: Ok(media),
                });
            }
        }
        Ok((folder, matches))
    }
}

/// A glob as written: its folder part and its file name pattern.
pub(crate) fn split_glob(raw: &str) -> (&str, &str) {
    match raw.rfind('/') {
        Some(i) => (&raw[..i.max(1)], &raw[i + 1..]),
        None => (".", raw),
    }
}

/// A listed file as the user would write it: the folder as the manifest wrote it, then its name.
pub(crate) fn shown_match(folder_raw: &str, name: &str) -> String {
    format!("{}/{name}", folder_raw.trim_end_matches('/'))
}

/// One file matched by a glob.
#[derive(Debug)]
pub(crate) struct GlobMatch {
    pub file_name: String,
    /// The match as the user would write it (`./subjects/team/fox.jpg`), for messages.
    pub shown: String,
    pub media: Result<MediaSource, String>,
}

/// A name that a copy, download or editor is still writing, or a hidden file: never taken as
/// input from a watched folder (`.part`, `.tmp`, `.crdownload`, `~`, dot-files).
pub fn is_temporary_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    name.starts_with('.')
        || name.ends_with('~')
        || [".part", ".tmp", ".crdownload", ".partial", ".swp"]
            .iter()
            .any(|suffix| lower.ends_with(suffix))
}

/// Whether a file name has an image extension the provider takes.
fn is_image_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [".png", ".jpg", ".jpeg", ".webp"]
        .iter()
        .any(|ext| lower.ends_with(ext))
}

/// `*` matches any run of characters, `?` one character; everything else is literal.
pub(crate) fn wildcard_match(pattern: &str, name: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    let (mut p, mut n) = (0, 0);
    // Where the last `*` was, and how much of the name it has swallowed so far.
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == name[n]) {
            p += 1;
            n += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some((p, n));
            p += 1;
        } else if let Some((star_p, star_n)) = star {
            p = star_p + 1;
            n = star_n + 1;
            star = Some((star_p, star_n + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*.jpg", "fox.jpg"));
        assert!(wildcard_match("*", "x"));
        assert!(wildcard_match("f?x*.jpg", "fox-1.jpg"));
        assert!(wildcard_match("*a*b", "xxaxxb"));
        assert!(!wildcard_match("*.jpg", "fox.jpeg"));
        assert!(!wildcard_match("?", ""));
        assert!(!wildcard_match("a*b", "acbd"));
    }
}
