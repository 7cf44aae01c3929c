//! Publishing local media where the provider can fetch them: an S3-compatible bucket (AWS S3,
//! Cloudflare R2, Backblaze B2, MinIO, Wasabi, ...), content-addressed.
//!
//! Owns: the `media_store` settings ([`S3Settings`]), the credentials (read from the standard
//! `AWS_*` environment or a credentials file, never printed: [`S3Credentials`]), and the
//! [`MediaStore`], which turns a local file and the sha256 its job key holds into a URL: it
//! uploads the file once as `prefix/sha256.ext` (skipped when a HEAD finds it there already,
//! from any run or machine), checks that the bytes it sent are the bytes the key names, and
//! signs a GET URL at submit time (or joins `public_base_url` for a public bucket).
//!
//! May not: touch the store, decide when to upload (the engine asks at submit time, after the
//! job's budget and cancel were checked), or put a signature, a secret or a URL's query into an
//! error or a log line.

mod local;
mod s3;
mod s3_multipart;

pub use s3::{MediaStore, Presence, UploadProgress};

use std::path::PathBuf;

/// The settings file's `media_store:` section.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaStoreSection {
    pub s3: Option<S3Settings>,
}

/// `media_store.s3`: where local media are published.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Settings {
    pub bucket: String,
    /// The service's endpoint; omit it for AWS, where it follows from the region.
    pub endpoint: Option<String>,
    /// `auto` for R2; an AWS region such as `eu-west-1` for S3.
    #[serde(default = "default_region")]
    pub region: String,
    /// Prepended to every object's name (`recast/` by default).
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// Lifetime of presigned GET URLs, in seconds (default 86400, at most 7 days).
    #[serde(default = "default_ttl")]
    pub url_ttl_secs: u64,
    /// A public bucket or CDN in front of it: URLs are this plus the object's name, unsigned.
    pub public_base_url: Option<String>,
    /// An AWS-style credentials file (`[default]` with `aws_access_key_id`,
    /// `aws_secret_access_key`, optionally `aws_session_token`), used when the `AWS_*`
    /// environment has no key.
    pub credentials_file: Option<PathBuf>,
    /// The section of the credentials file to read (default `default`).
    pub profile: Option<String>,
}

fn default_region() -> String {
    "us-east-1".to_owned()
}

fn default_prefix() -> String {
    "recast/".to_owned()
}

fn default_ttl() -> u64 {
    86_400
}

/// The longest a presigned URL may live (S3's own limit).
pub const MAX_URL_TTL_SECS: u64 = 7 * 86_400;

/// An access key and its secret. `Debug` shows neither.
#[derive(Clone)]
pub struct S3Credentials {
    pub(crate) key: String,
    pub(crate) secret: String,
    pub(crate) token: Option<String>,
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("S3Credentials(***)")
    }
}

impl S3Credentials {
    /// `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`), else the
    /// settings' credentials file; `Ok(None)` when neither has a key.
    pub fn find(settings: &S3Settings) -> Result<Option<S3Credentials>, String> {
        let env = |name: &str| {
            std::env::var(name)
                .ok()
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        if let (Some(key), Some(secret)) = (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY"))
        {
            return Ok(Some(S3Credentials {
                key,
                secret,
                token: env("AWS_SESSION_TOKEN"),
            }));
        }
        if settings.credentials_file.is_none() {
            return Ok(None);
        }
        S3Credentials::from_file(settings).map(Some)
    }

    /// The settings' credentials file alone (the environment not looked at).
    pub fn from_file(settings: &S3Settings) -> Result<S3Credentials, String> {
        let Some(path) = &settings.credentials_file else {
            return Err("media_store.s3.credentials_file is not set".to_owned());
        };
        let text = crate::safe_fs::read_small(path, 64 << 10).ok_or_else(|| {
            format!(
                "media_store.s3.credentials_file: cannot read {} (missing, not a regular file, \
                 or larger than 64 KiB)",
                path.display()
            )
        })?;
        let profile = settings.profile.as_deref().unwrap_or("default");
        parse_credentials_file(&text, profile).ok_or_else(|| {
            format!(
                "media_store.s3.credentials_file: {} has no [{profile}] section with \
                     aws_access_key_id and aws_secret_access_key",
                path.display()
            )
        })
    }
}

/// The `[profile]` section of an AWS shared credentials file.
fn parse_credentials_file(text: &str, profile: &str) -> Option<S3Credentials> {
    let mut in_section = false;
    let (mut key, mut secret, mut token) = (None, None, None);
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.trim();
            in_section = name == profile || name == format!("profile {profile}");
            continue;
        }
        if !in_section {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            continue;
        };
        let value = Some(value.trim().to_owned()).filter(|v| !v.is_empty());
        match name.trim() {
            "aws_access_key_id" => key = value,
            "aws_secret_access_key" => secret = value,
            "aws_session_token" => token = value,
            _ => {}
        }
    }
    Some(S3Credentials {
        key: key?,
        secret: secret?,
        token,
    })
}

/// Why a local file could not be published.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishFailure {
    /// The bucket or the network failed for now (after retries): the submit waits and tries again.
    #[error("cannot publish {file} to the media store: {why}")]
    Unavailable { file: String, why: String },
    /// The store refused for good (no access, no bucket): a person must fix the settings.
    #[error("the media store refused {file}: {why}")]
    Refused { file: String, why: String },
    /// The file's bytes are no longer the ones its job was planned with.
    #[error(
        "{file} changed after it was planned (its sha256 is no longer {planned}): run the \
         manifest again to plan the new content; nothing was sent for it"
    )]
    Changed { file: String, planned: String },
    /// The file cannot be read (gone, not a regular file, too large).
    #[error("cannot read {file}: {why}")]
    Unreadable { file: String, why: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credentials_file_is_read_by_profile_and_never_printed() {
        let text = "[default]\naws_access_key_id = AKIA1\naws_secret_access_key = s3cr3t\n\
                    [profile work]\naws_access_key_id=AKIA2\naws_secret_access_key=w0rk\n\
                    aws_session_token = tok\n";
        let c = parse_credentials_file(text, "default").unwrap();
        assert_eq!((c.key.as_str(), c.secret.as_str()), ("AKIA1", "s3cr3t"));
        assert!(c.token.is_none());
        let w = parse_credentials_file(text, "work").unwrap();
        assert_eq!(w.token.as_deref(), Some("tok"));
        assert!(parse_credentials_file(text, "missing").is_none());
        assert!(!format!("{c:?}").contains("s3cr3t"));
        assert!(!format!("{c:?}").contains("AKIA1"));
    }

    #[test]
    fn the_settings_section_has_the_documented_names_and_defaults() {
        let s: MediaStoreSection = serde_saphyr::from_str(
            "s3:\n  bucket: recast-media\n  endpoint: https://acc.r2.cloudflarestorage.com\n  \
             region: auto\n",
        )
        .unwrap();
        let s3 = s.s3.unwrap();
        assert_eq!(s3.prefix, "recast/");
        assert_eq!(s3.url_ttl_secs, 86_400);
        assert!(s3.public_base_url.is_none());
        assert!(
            serde_saphyr::from_str::<MediaStoreSection>("s3:\n  bucket: b\n  buckett: c\n")
                .is_err()
        );
    }
}
