//! The S3 side of the media store: HEAD, PUT, multipart upload and presigned GETs, signed by
//! `rusty-s3` (which does no I/O) and sent with the project's own HTTP client.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use sha2::{Digest, Sha256};

use super::local::{
    MAX_MEDIA_BYTES, changed, content_type, hash_file, open, read_part, unreadable,
};
use super::{MAX_URL_TTL_SECS, PublishFailure, S3Credentials, S3Settings};

/// Files up to this size go up in one PUT; larger ones in parts of this size.
pub const PART_SIZE: usize = 8 << 20;
/// How long a signed request for recast's own calls (HEAD, PUT, parts) stays valid.
const REQUEST_TTL: Duration = Duration::from_secs(15 * 60);
/// Tries per call, with exponential backoff and jitter between them.
const TRIES: u32 = 4;
const FIRST_BACKOFF: Duration = Duration::from_millis(400);

/// Whether an object is in the bucket already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    Present,
    Absent,
}

/// Upload counters, for a progress display.
#[derive(Debug, Default)]
pub struct UploadProgress {
    /// Bytes of files being or having been uploaded in this run.
    pub bytes_total: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub files_uploaded: AtomicU64,
    /// Files found in the bucket already (HEAD), not uploaded again.
    pub files_present: AtomicU64,
}

/// A bucket recast publishes local media to. Cheap to share (`Arc`).
pub struct MediaStore {
    bucket: Bucket,
    credentials: Credentials,
    client: reqwest::Client,
    prefix: String,
    url_ttl: Duration,
    public_base: Option<String>,
    /// Objects known to be in the bucket: never HEADed or uploaded twice in one process.
    present: Mutex<HashSet<String>>,
    /// One upload per object at a time: the reference video shared by 10,000 jobs goes once.
    uploads: tokio::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    pub progress: Arc<UploadProgress>,
}

impl std::fmt::Debug for MediaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaStore")
            .field("bucket", &self.bucket.name())
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl MediaStore {
    pub fn new(settings: &S3Settings, credentials: S3Credentials) -> Result<MediaStore, String> {
        if !(1..=MAX_URL_TTL_SECS).contains(&settings.url_ttl_secs) {
            return Err(format!(
                "media_store.s3.url_ttl_secs: {} is out of range (1 to {MAX_URL_TTL_SECS}, 7 days)",
                settings.url_ttl_secs
            ));
        }
        // AWS wants virtual-host addressing; other services (R2, MinIO, B2) take paths.
        let (endpoint, style) = match &settings.endpoint {
            Some(e) => (e.clone(), UrlStyle::Path),
            None => (
                format!("https://s3.{}.amazonaws.com", settings.region),
                UrlStyle::VirtualHost,
            ),
        };
        let endpoint = url::Url::parse(&endpoint)
            .map_err(|e| format!("media_store.s3.endpoint: `{endpoint}` is not a URL: {e}"))?;
        let bucket = Bucket::new(
            endpoint,
            style,
            settings.bucket.clone(),
            settings.region.clone(),
        )
        .map_err(|e| format!("media_store.s3: bucket `{}`: {e}", settings.bucket))?;
        let public_base = match &settings.public_base_url {
            Some(base) => {
                url::Url::parse(base).map_err(|e| {
                    format!("media_store.s3.public_base_url: `{base}` is not a URL: {e}")
                })?;
                Some(format!("{}/", base.trim_end_matches('/')))
            }
            None => None,
        };
        let prefix = settings.prefix.trim_start_matches('/');
        let prefix = if prefix.is_empty() || prefix.ends_with('/') {
            prefix.to_owned()
        } else {
            format!("{prefix}/")
        };
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            .user_agent(concat!("recast/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        let S3Credentials { key, secret, token } = credentials;
        Ok(MediaStore {
            bucket,
            credentials: match token {
                Some(t) => Credentials::new_with_token(key, secret, t),
                None => Credentials::new(key, secret),
            },
            client,
            prefix,
            url_ttl: Duration::from_secs(settings.url_ttl_secs),
            public_base,
            present: Mutex::new(HashSet::new()),
            uploads: tokio::sync::Mutex::new(HashMap::new()),
            progress: Arc::new(UploadProgress::default()),
        })
    }

    /// How long a URL handed to the provider stays valid (`None`: a public bucket's, for ever).
    pub fn url_lifetime(&self) -> Option<Duration> {
        self.public_base.is_none().then_some(self.url_ttl)
    }

    /// `prefix/sha256.ext`: the name of a file's bytes, the same on every machine.
    pub fn object_name(&self, sha256: &str, path: &Path) -> String {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .filter(|e| (1..=5).contains(&e.len()) && e.bytes().all(|b| b.is_ascii_alphanumeric()));
        match ext {
            Some(ext) => format!("{}{sha256}.{ext}", self.prefix),
            None => format!("{}{sha256}", self.prefix),
        }
    }

    /// `s3://bucket/name`, for messages.
    pub fn describe(&self, name: &str) -> String {
        format!("s3://{}/{name}", self.bucket.name())
    }

    /// Whether `name` is in the bucket (one HEAD, remembered once found).
    pub async fn presence(&self, name: &str) -> Result<Presence, PublishFailure> {
        if self.known(name) {
            return Ok(Presence::Present);
        }
        let url = self
            .bucket
            .head_object(Some(&self.credentials), name)
            .sign(REQUEST_TTL);
        let answer = self
            .call(name, "look up", || self.client.head(url.clone()), &[404])
            .await?;
        if answer.status().as_u16() == 404 {
            return Ok(Presence::Absent);
        }
        self.remember(name);
        Ok(Presence::Present)
    }

    /// The URL the provider fetches `path` at, uploading it first unless it is there already.
    /// `sha256` is what the job key holds; `None` (a job stored before the media store existed)
    /// hashes the file now.
    pub async fn url_for(
        &self,
        path: &Path,
        sha256: Option<&str>,
    ) -> Result<String, PublishFailure> {
        let sha256 = match sha256 {
            Some(s) => s.to_owned(),
            None => hash_file(path).await?,
        };
        let name = self.object_name(&sha256, path);
        let gate = {
            let mut uploads = self.uploads.lock().await;
            uploads.entry(name.clone()).or_default().clone()
        };
        {
            let _one_at_a_time = gate.lock().await;
            if self.presence(&name).await? == Presence::Absent {
                self.upload(path, &sha256, &name).await?;
            } else {
                self.progress.files_present.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(self.fetch_url(&name))
    }

    /// A presigned GET (signed now, for `url_ttl_secs`) or the public URL.
    pub fn fetch_url(&self, name: &str) -> String {
        match &self.public_base {
            Some(base) => format!("{base}{}", encode_path(name)),
            None => self
                .bucket
                .get_object(Some(&self.credentials), name)
                .sign(self.url_ttl)
                .into(),
        }
    }

    fn known(&self, name: &str) -> bool {
        self.present
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(name)
    }

    fn remember(&self, name: &str) {
        self.present
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned());
    }

    async fn upload(&self, path: &Path, sha256: &str, name: &str) -> Result<(), PublishFailure> {
        let file = open(path)?;
        let size = file
            .metadata()
            .map_err(|e| unreadable(path, &e.to_string()))?
            .len();
        if size > MAX_MEDIA_BYTES {
            return Err(unreadable(
                path,
                &format!("{size} bytes is more than the {MAX_MEDIA_BYTES} published"),
            ));
        }
        self.progress.bytes_total.fetch_add(size, Ordering::Relaxed);
        tracing::info!(file = %path.display(), bytes = size, to = %self.describe(name), "uploading");
        if size as usize <= PART_SIZE {
            self.put_whole(path, file, sha256, name).await?;
        } else {
            super::s3_multipart::upload(self, path, file, sha256, name).await?;
        }
        self.progress.files_uploaded.fetch_add(1, Ordering::Relaxed);
        self.remember(name);
        Ok(())
    }

    async fn put_whole(
        &self,
        path: &Path,
        file: std::fs::File,
        sha256: &str,
        name: &str,
    ) -> Result<(), PublishFailure> {
        let bytes = read_part(file, PART_SIZE as u64 + 1)
            .await
            .map_err(|e| unreadable(path, &e))?
            .1;
        if hex::encode(Sha256::digest(&bytes)) != sha256 {
            return Err(changed(path, sha256));
        }
        let len = bytes.len() as u64;
        let bytes = bytes::Bytes::from(bytes);
        let url = self
            .bucket
            .put_object(Some(&self.credentials), name)
            .sign(REQUEST_TTL);
        let content_type = content_type(path);
        self.call(
            name,
            "upload",
            || {
                self.client
                    .put(url.clone())
                    .header(reqwest::header::CONTENT_TYPE, content_type)
                    .body(bytes.clone())
            },
            &[],
        )
        .await?;
        self.progress.bytes_sent.fetch_add(len, Ordering::Relaxed);
        Ok(())
    }

    pub(super) fn bucket(&self) -> (&Bucket, &Credentials) {
        (&self.bucket, &self.credentials)
    }

    pub(super) fn http(&self) -> &reqwest::Client {
        &self.client
    }

    /// Send one request, retrying transport failures, 5xx and 429 with backoff. Statuses in
    /// `expected` are answers, not failures (a HEAD's 404).
    pub(super) async fn call(
        &self,
        name: &str,
        what: &str,
        request: impl Fn() -> reqwest::RequestBuilder,
        expected: &[u16],
    ) -> Result<reqwest::Response, PublishFailure> {
        let file = self.describe(name);
        let mut last = String::new();
        for attempt in 0..TRIES {
            if attempt > 0 {
                let wait = FIRST_BACKOFF * 2u32.pow(attempt - 1);
                tokio::time::sleep(wait.mul_f64(rand::random_range(0.5..1.5))).await;
            }
            match request().send().await {
                Ok(r) if r.status().is_success() || expected.contains(&r.status().as_u16()) => {
                    return Ok(r);
                }
                Ok(r) => {
                    let status = r.status().as_u16();
                    let code = s3_error_code(r).await;
                    last = format!("{what}: HTTP {status}{code}");
                    if !(status == 429 || status >= 500) {
                        return Err(PublishFailure::Refused {
                            file,
                            why: format!("{last}{}", refusal_hint(status)),
                        });
                    }
                }
                // Only the kind of failure: a transport error's text would carry the URL, and
                // with it the signature.
                Err(e) if e.is_timeout() => last = format!("{what}: timed out"),
                Err(e) if e.is_connect() => last = format!("{what}: cannot connect"),
                Err(_) => last = format!("{what}: the connection failed"),
            }
        }
        Err(PublishFailure::Unavailable {
            file,
            why: format!("{last} ({TRIES} tries)"),
        })
    }
}

fn refusal_hint(status: u16) -> &'static str {
    match status {
        401 | 403 => {
            ": check the credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY) and \
                     that they may read and write the bucket"
        }
        404 => ": check media_store.s3.bucket and endpoint",
        _ => "",
    }
}

/// S3's `<Code>` from an error body, if it is a short plain word (never other foreign bytes).
async fn s3_error_code(r: reqwest::Response) -> String {
    let body = r.bytes().await.unwrap_or_default();
    let text = String::from_utf8_lossy(&body[..body.len().min(4096)]).into_owned();
    text.split_once("<Code>")
        .and_then(|(_, rest)| rest.split_once("</Code>"))
        .map(|(code, _)| code.trim())
        .filter(|c| (1..=64).contains(&c.len()) && c.bytes().all(|b| b.is_ascii_alphanumeric()))
        .map(|c| format!(" ({c})"))
        .unwrap_or_default()
}

/// Percent-encode an object name for a public URL, keeping its `/`.
fn encode_path(name: &str) -> String {
    let mut url = url::Url::parse("http://x/").expect("a fixed URL parses");
    url.path_segments_mut()
        .expect("http URLs have paths")
        .extend(name.split('/'));
    url.path().trim_start_matches('/').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(public: Option<&str>) -> MediaStore {
        let settings = S3Settings {
            bucket: "recast-media".into(),
            endpoint: Some("http://127.0.0.1:9".into()),
            region: "auto".into(),
            prefix: "campaigns".into(),
            url_ttl_secs: 3600,
            public_base_url: public.map(str::to_owned),
            credentials_file: None,
            profile: None,
        };
        let creds = S3Credentials {
            key: "AKIDEXAMPLE".into(),
            secret: "very-secret-key".into(),
            token: None,
        };
        MediaStore::new(&settings, creds).unwrap()
    }

    #[test]
    fn objects_are_named_by_content_under_the_prefix() {
        let s = store(None);
        let sha = "ab".repeat(32);
        assert_eq!(
            s.object_name(&sha, Path::new("/x/My Fox.PNG")),
            format!("campaigns/{sha}.png")
        );
        assert_eq!(
            s.object_name(&sha, Path::new("/x/noext")),
            format!("campaigns/{sha}")
        );
    }

    #[test]
    fn presigned_urls_carry_a_signature_and_the_ttl_but_never_the_secret() {
        let s = store(None);
        let url = s.fetch_url("campaigns/abc.png");
        assert!(
            url.starts_with("http://127.0.0.1:9/recast-media/campaigns/abc.png?"),
            "{url}"
        );
        assert!(url.contains("X-Amz-Signature="), "{url}");
        assert!(url.contains("X-Amz-Expires=3600"), "{url}");
        assert!(!url.contains("very-secret-key"));
        assert!(!format!("{s:?}").contains("very-secret-key"));
        assert_eq!(s.url_lifetime(), Some(Duration::from_secs(3600)));
    }

    #[test]
    fn a_public_bucket_gets_plain_urls() {
        let s = store(Some("https://media.example.com/"));
        assert_eq!(
            s.fetch_url("campaigns/a b.png"),
            "https://media.example.com/campaigns/a%20b.png"
        );
        assert_eq!(s.url_lifetime(), None);
    }
}
