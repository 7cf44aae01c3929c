//! Bytes the simulator serves: generated clips at expiring links, and the media folder.
//!
//! Owns: signing and checking clip links (`/clips/{task}/{expiry}-{nonce}-{sig}.mp4`), the clip
//! download answer and its faults (truncated, changed), `/media/...` confined to the media
//! folder, and single-range `Range` requests for both.
//!
//! May not: serve anything outside the media folder (no `..`, no symlink out of it), or require
//! the API key for downloads (CDN links need none).
//!
//! Links are stateless: the expiry (ms on the simulator's clock) and a nonce are in the URL,
//! signed with the run's secret, so every poll can hand out a fresh link without storing it,
//! and an edited expiry is caught. An expired link answers 403, as a presigned CDN URL does.

use std::io;
use std::path::{Component, Path as FsPath};
use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::time::Instant;
use tokio_util::io::ReaderStream;

use super::faults::FaultKind;
use super::ledger::bump;
use super::server::{App, Shared, error};

/// Milliseconds since the simulator started, on its own clock.
fn clock_ms(app: &App, now: Instant) -> u64 {
    now.saturating_duration_since(app.epoch).as_millis() as u64
}

fn signature(app: &App, task_id: &str, expires_ms: u64, nonce: u64) -> String {
    let mut h = Sha256::new();
    h.update(app.secret);
    h.update(task_id.as_bytes());
    h.update(expires_ms.to_be_bytes());
    h.update(nonce.to_be_bytes());
    hex::encode(&h.finalize()[..8])
}

/// A fresh link to a task's clip, valid for `link_ttl` (or already expired, for the fault).
pub fn sign_link(app: &App, base: &str, task_id: &str, now: Instant, expired: bool) -> String {
    let now_ms = clock_ms(app, now);
    let expires_ms = if expired {
        now_ms
    } else {
        now_ms.saturating_add(app.cfg.link_ttl.as_millis() as u64)
    };
    let nonce = app.link_nonce.fetch_add(1, Ordering::Relaxed);
    let sig = signature(app, task_id, expires_ms, nonce);
    format!("{base}/clips/{task_id}/{expires_ms}-{nonce}-{sig}.mp4")
}

fn parse_token(token: &str) -> Option<(u64, u64, &str)> {
    let token = token.strip_suffix(".mp4").unwrap_or(token);
    let mut parts = token.splitn(3, '-');
    let expires = parts.next()?.parse().ok()?;
    let nonce = parts.next()?.parse().ok()?;
    Some((expires, nonce, parts.next()?))
}

fn not_found(message: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        "NOT_FOUND",
        message,
    )
}

pub async fn clip(
    State(app): State<Shared>,
    Path((id, token)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    bump(&app.counters.downloads);
    let now = Instant::now();
    let Some((expires_ms, nonce, sig)) = parse_token(&token) else {
        return not_found("no such link");
    };
    if signature(&app, &id, expires_ms, nonce) != sig {
        return not_found("no such link");
    }
    if clock_ms(&app, now) >= expires_ms {
        bump(&app.counters.downloads_expired);
        return error(
            StatusCode::FORBIDDEN,
            "invalid_request_error",
            "LINK_EXPIRED",
            "this link has expired; poll the task again for a fresh one",
        );
    }
    let found = {
        let mut book = app.book();
        book.index_of(&id).and_then(|idx| book.download(idx))
    };
    let Some((mut bytes, attempt)) = found else {
        return not_found("no clip for this task");
    };
    // Announced for the clip as generated, so a body changed in flight can be caught.
    let digest = crate::digest::repr_digest(&bytes);
    if app.faults.roll(FaultKind::ChangedDownload) {
        bytes = changed(&bytes, attempt);
    }
    let truncate = app.faults.roll(FaultKind::TruncatedDownload);
    let len = bytes.len() as u64;
    let (status, range) = match parse_range(header_str(&headers, header::RANGE), len) {
        RangeAnswer::Unsatisfiable => return unsatisfiable(len),
        RangeAnswer::Full => (StatusCode::OK, 0..len),
        RangeAnswer::Partial(start, end) => (StatusCode::PARTIAL_CONTENT, start..end + 1),
    };
    let part = bytes.slice(range.start as usize..range.end as usize);
    let promised = part.len() as u64;
    let body = if truncate {
        // The header promises every byte; half arrive, then the body errors and hyper drops
        // the connection, so the client sees a short read rather than a clean end. The pause
        // lets hyper flush the headers and the half first: an error right behind them would
        // take the buffered bytes down with the connection.
        let half = part.slice(..part.len() / 2);
        let chunks = futures_util::stream::unfold(Some(half), |state| async move {
            match state {
                Some(half) => Some((Ok(half), None)),
                None => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    Some((Err(io::Error::other("sim: download cut on purpose")), None))
                }
            }
        });
        Body::from_stream(chunks)
    } else {
        Body::from(part)
    };
    let mut resp = ranged_response(status, body, promised, range, len, "video/mp4");
    if let Ok(v) = HeaderValue::from_str(&digest) {
        resp.headers_mut().insert("repr-digest", v);
    }
    resp
}

/// The same length, with one byte changed at a place that moves with each attempt.
fn changed(bytes: &Bytes, attempt: u64) -> Bytes {
    let mut v = bytes.to_vec();
    if !v.is_empty() {
        let at = (v.len() / 2 + (attempt as usize % 97)).min(v.len() - 1);
        v[at] ^= 0x5A;
    }
    Bytes::from(v)
}

pub async fn media(
    State(app): State<Shared>,
    Path(rel): Path<String>,
    headers: HeaderMap,
) -> Response {
    bump(&app.counters.media_requests);
    let Some(root) = &app.media_root else {
        return not_found("no media folder is served (start the simulator with --media-dir)");
    };
    let rel_path = FsPath::new(&rel);
    if rel_path
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        return not_found("no such file");
    }
    // Canonicalise and check again: a symlink inside the folder must not lead out of it.
    let Ok(full) = tokio::fs::canonicalize(root.join(rel_path)).await else {
        return not_found("no such file");
    };
    if !full.starts_with(root) {
        return not_found("no such file");
    }
    let Ok(mut file) = tokio::fs::File::open(&full).await else {
        return not_found("no such file");
    };
    let len = match file.metadata().await {
        Ok(m) if m.is_file() => m.len(),
        _ => return not_found("no such file"),
    };
    let (status, range) = match parse_range(header_str(&headers, header::RANGE), len) {
        RangeAnswer::Unsatisfiable => return unsatisfiable(len),
        RangeAnswer::Full => (StatusCode::OK, 0..len),
        RangeAnswer::Partial(start, end) => (StatusCode::PARTIAL_CONTENT, start..end + 1),
    };
    if range.start > 0 && file.seek(io::SeekFrom::Start(range.start)).await.is_err() {
        return not_found("no such file");
    }
    let promised = range.end - range.start;
    let body = Body::from_stream(ReaderStream::new(file.take(promised)));
    ranged_response(status, body, promised, range, len, content_type(&full))
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn content_type(path: &FsPath) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("mp4") => "video/mp4",
        Some("mov") => "video/quicktime",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("webp") => "image/webp",
        Some("yaml" | "yml") => "application/yaml",
        _ => "application/octet-stream",
    }
}

fn ranged_response(
    status: StatusCode,
    body: Body,
    promised: u64,
    range: std::ops::Range<u64>,
    total: u64,
    content_type: &'static str,
) -> Response {
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(promised));
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) =
            HeaderValue::from_str(&format!("bytes {}-{}/{total}", range.start, range.end - 1))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    resp
}

fn unsatisfiable(len: u64) -> Response {
    let mut resp = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
        resp.headers_mut().insert(header::CONTENT_RANGE, v);
    }
    resp
}

/// What to send for a `Range` header.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeAnswer {
    Full,
    /// First and last byte, inclusive.
    Partial(u64, u64),
    Unsatisfiable,
}

/// One `bytes=` range (RFC 7233). Anything else, multi-ranges included, gets the whole body,
/// which the RFC allows a server to do.
pub fn parse_range(value: Option<&str>, len: u64) -> RangeAnswer {
    let Some(spec) = value.and_then(|v| v.trim().strip_prefix("bytes=")) else {
        return RangeAnswer::Full;
    };
    if spec.contains(',') {
        return RangeAnswer::Full;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return RangeAnswer::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        return match b.parse::<u64>() {
            Ok(0) => RangeAnswer::Unsatisfiable,
            Ok(_) if len == 0 => RangeAnswer::Unsatisfiable,
            Ok(n) => RangeAnswer::Partial(len.saturating_sub(n), len - 1),
            Err(_) => RangeAnswer::Full,
        };
    }
    let Ok(start) = a.parse::<u64>() else {
        return RangeAnswer::Full;
    };
    let end = if b.is_empty() {
        u64::MAX
    } else {
        match b.parse::<u64>() {
            Ok(end) if end >= start => end,
            _ => return RangeAnswer::Full,
        }
    };
    if start >= len {
        return RangeAnswer::Unsatisfiable;
    }
    RangeAnswer::Partial(start, end.min(len - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_rfc_7233() {
        use RangeAnswer::*;
        assert_eq!(parse_range(None, 100), Full);
        assert_eq!(parse_range(Some("bytes=0-9"), 100), Partial(0, 9));
        assert_eq!(parse_range(Some("bytes=90-"), 100), Partial(90, 99));
        assert_eq!(parse_range(Some("bytes=90-500"), 100), Partial(90, 99));
        assert_eq!(parse_range(Some("bytes=-10"), 100), Partial(90, 99));
        assert_eq!(parse_range(Some("bytes=-500"), 100), Partial(0, 99));
        assert_eq!(parse_range(Some("bytes=100-"), 100), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-0"), 100), Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=5-2"), 100), Full);
        assert_eq!(parse_range(Some("bytes=0-1,5-6"), 100), Full);
        assert_eq!(parse_range(Some("items=0-1"), 100), Full);
        assert_eq!(parse_range(Some("bytes=0-"), 0), Unsatisfiable);
    }

    #[test]
    fn tokens_parse_back() {
        assert_eq!(parse_token("123-4-abcdef.mp4"), Some((123, 4, "abcdef")));
        assert_eq!(parse_token("x-4-abc"), None);
        assert_eq!(parse_token("123"), None);
    }

    #[test]
    fn a_changed_body_keeps_its_length_and_differs_per_attempt() {
        let original = Bytes::from(vec![0u8; 1000]);
        let a = changed(&original, 1);
        let b = changed(&original, 2);
        assert_eq!(a.len(), 1000);
        assert_ne!(a, original);
        assert_ne!(a, b);
    }
}
