//! What a job's media and key are, held compactly: a batch may hold 100,000 of each.
//!
//! Owns: [`JobKey`] (its 32 bytes inline, its hex made when asked), [`MediaSource`] and [`LocalMedia`] (a confined,
//! hashed file: its path once, its relative part as an offset, its digest as bytes), and how
//! they print and serialize.
//!
//! May not: confine, open or hash files (`paths` does), or say what a key covers (`key` does).

use std::path::{Path, PathBuf};

/// Hash of everything that shapes a clip. Same key = same clip: never made twice. Held as its
/// 32 bytes inline (no allocation: a batch may hold 100,000); named by its 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobKey([u8; 32]);

impl JobKey {
    /// The key of a sha256 digest.
    pub fn from_digest(digest: &[u8; 32]) -> Self {
        JobKey(*digest)
    }

    /// The key as the store and the results file name it: 64 lowercase hex digits.
    pub fn hex(&self) -> KeyHex {
        let mut digits = [0u8; 64];
        hex::encode_to_slice(self.0, &mut digits).expect("64 digits for 32 bytes");
        KeyHex(digits)
    }

    /// First 12 hex digits: enough to tell keys apart in tables and file names.
    pub fn short(&self) -> String {
        self.hex().as_str()[..12].to_owned()
    }
}

/// A [`JobKey`]'s 64 lowercase hex digits, made on the stack when asked for.
#[derive(Clone, Copy)]
pub struct KeyHex([u8; 64]);

impl KeyHex {
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("hex digits are ASCII")
    }
}

impl std::fmt::Display for JobKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.hex().as_str())
    }
}

impl std::fmt::Debug for JobKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JobKey({self})")
    }
}

impl serde::Serialize for JobKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.hex().as_str())
    }
}

/// Where a piece of media is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum MediaSource {
    /// A local file, already confined to an allowed root and hashed.
    Local(LocalMedia),
    /// An `https://` (or `http://`, for local testing) URL, passed to the provider as is.
    Remote { url: String },
}

/// A local file, already confined to an allowed root and hashed. Kept compact, since a batch
/// may hold 100,000 of them: the path once (its relative part is an offset into it) and the
/// digest as bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalMedia {
    path: Box<str>,
    rel_at: u32,
    sha256: [u8; 32],
}

/// Why a confined file cannot be named as local media.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocalMediaError {
    #[error("its path is not valid UTF-8")]
    NotUtf8,
    #[error("its path does not end with its path relative to its folder")]
    NotRelative,
    #[error("its digest is not 64 hex digits")]
    BadDigest,
}

impl LocalMedia {
    /// `path` is canonical and absolute, `rel` its part below the root it was confined under
    /// (with `/` separators), `sha256` the content's digest in lowercase hex.
    pub fn new(path: PathBuf, rel: &str, sha256: &str) -> Result<Self, LocalMediaError> {
        let path = path
            .into_os_string()
            .into_string()
            .map_err(|_| LocalMediaError::NotUtf8)?;
        let rel_at = path
            .strip_suffix(rel)
            .filter(|head| rel.is_empty() || head.ends_with('/'))
            .map(str::len)
            .ok_or(LocalMediaError::NotRelative)?;
        let mut digest = [0u8; 32];
        hex::decode_to_slice(sha256, &mut digest).map_err(|_| LocalMediaError::BadDigest)?;
        Ok(LocalMedia {
            path: path.into_boxed_str(),
            rel_at: u32::try_from(rel_at).map_err(|_| LocalMediaError::NotRelative)?,
            sha256: digest,
        })
    }

    /// Canonical absolute path.
    pub fn path(&self) -> &Path {
        Path::new(&*self.path)
    }

    /// Path relative to the manifest's folder with `/` separators, used to map local media to
    /// a public URL (`media_base_url`) or to the simulator's `/media/` folder. For a file under
    /// an allowed root outside the manifest's folder: relative to that root.
    pub fn rel(&self) -> &str {
        &self.path[self.rel_at as usize..]
    }

    /// sha256 of the content, lowercase hex.
    pub fn sha256(&self) -> String {
        hex::encode(self.sha256)
    }
}

impl serde::Serialize for LocalMedia {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut s = serializer.serialize_struct("LocalMedia", 3)?;
        s.serialize_field("path", &*self.path)?;
        s.serialize_field("rel", self.rel())?;
        s.serialize_field("sha256", &self.sha256())?;
        s.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_media_keeps_its_relative_part_and_digest() {
        let sha = "0f".repeat(32);
        let media = LocalMedia::new("/base/team/fox.png".into(), "team/fox.png", &sha).unwrap();
        assert_eq!(media.path(), Path::new("/base/team/fox.png"));
        assert_eq!(media.rel(), "team/fox.png");
        assert_eq!(media.sha256(), sha);
        let json = serde_json::to_value(MediaSource::Local(media)).unwrap();
        assert_eq!(json["kind"], "local");
        assert_eq!(json["rel"], "team/fox.png");
        assert_eq!(json["sha256"], sha);
    }

    #[test]
    fn local_media_refuses_what_it_cannot_hold() {
        let sha = "ab".repeat(32);
        let not_below = LocalMedia::new("/base/xfox.png".into(), "fox.png", &sha);
        assert_eq!(not_below, Err(LocalMediaError::NotRelative));
        let short = LocalMedia::new("/base/fox.png".into(), "fox.png", "abc");
        assert_eq!(short, Err(LocalMediaError::BadDigest));
        use std::os::unix::ffi::OsStrExt;
        let bytes = std::ffi::OsStr::from_bytes(b"/base/f\xffx.png");
        let not_utf8 = LocalMedia::new(bytes.into(), "x.png", &sha);
        assert_eq!(not_utf8, Err(LocalMediaError::NotUtf8));
    }

    #[test]
    fn a_key_prints_as_its_hex_digits() {
        let key = JobKey::from_digest(&[0xab; 32]);
        assert_eq!(key.hex().as_str(), "ab".repeat(32));
        assert_eq!(key.short(), "abababababab");
        assert_eq!(serde_json::to_value(key).unwrap(), "ab".repeat(32));
    }
}
