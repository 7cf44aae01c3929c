//! Thumbnails of subject images (scaled server-side, cached) and clips with range requests,
//! both from paths the store recorded, opened without following links.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::sync::Mutex;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::Shared;
use crate::engine::{StoredMedia, StoredSpec};

/// The longest side of a thumbnail, in pixels.
const THUMB_SIDE: u32 = 360;
/// The largest subject image decoded for a thumbnail (the provider takes 10 MB).
const MAX_IMAGE_BYTES: u64 = 20 << 20;
/// The widest and tallest subject image decoded (the provider's own limit is 3850 px for
/// videos; images far larger are refused rather than decoded).
const MAX_IMAGE_SIDE: u32 = 12_000;
/// Thumbnails kept in memory, at most; past it the cache starts again.
const MAX_CACHED: usize = 2000;

#[derive(Default)]
pub(super) struct ThumbCache(Mutex<HashMap<String, bytes::Bytes>>);

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not here\n").into_response()
}

pub(super) async fn thumbnail(
    State(d): State<Shared>,
    Path((id, key)): Path<(i64, String)>,
) -> Response {
    let cache_key = format!("{id}/{key}");
    if let Some(png) = d
        .thumbs
        .0
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&cache_key)
    {
        return png_response(png.clone());
    }
    let files = {
        let key = key.clone();
        super::read(&d, move |store| store.job_files(id, &key)).await
    };
    let spec = match files {
        Ok(Some((spec, _))) => spec,
        Ok(None) => return not_found(),
        Err(e) => return super::pages::failure(e),
    };
    let Ok(spec) = serde_json::from_str::<StoredSpec>(&spec) else {
        return not_found();
    };
    let path = match spec.image {
        StoredMedia::Local(p) | StoredMedia::File { path: p, .. } => p,
        // A remote image is not fetched by the dashboard.
        StoredMedia::Url(_) => return not_found(),
    };
    let made = tokio::task::spawn_blocking(move || scale(&path)).await;
    match made {
        Ok(Some(png)) => {
            let png = bytes::Bytes::from(png);
            let mut cache = d.thumbs.0.lock().unwrap_or_else(|p| p.into_inner());
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
            cache.insert(cache_key, png.clone());
            png_response(png)
        }
        _ => not_found(),
    }
}

/// The image at `path`, at most [`THUMB_SIDE`] pixels a side, as PNG.
fn scale(path: &std::path::Path) -> Option<Vec<u8>> {
    let file = crate::safe_fs::open_regular(path).ok()?;
    let mut bytes = Vec::new();
    file.take(MAX_IMAGE_BYTES).read_to_end(&mut bytes).ok()?;
    // A planted image may claim any size: decoding stays within bounds whatever it says.
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(256 << 20);
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .ok()?;
    reader.limits(limits);
    let image = reader.decode().ok()?;
    let thumb = image.thumbnail(THUMB_SIDE, THUMB_SIDE);
    let mut out = std::io::Cursor::new(Vec::new());
    thumb.write_to(&mut out, image::ImageFormat::Png).ok()?;
    Some(out.into_inner())
}

fn png_response(png: bytes::Bytes) -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/png"),
            (header::CACHE_CONTROL, "private, max-age=3600"),
        ],
        png,
    )
        .into_response()
}

/// A landed clip, whole or the byte range asked for (`Range: bytes=START-END`).
pub(super) async fn clip(
    State(d): State<Shared>,
    Path((id, key)): Path<(i64, String)>,
    headers: HeaderMap,
) -> Response {
    let path = match super::read(&d, move |store| store.job_files(id, &key)).await {
        Ok(Some((_, Some(path)))) => path,
        Ok(_) => return not_found(),
        Err(e) => return super::pages::failure(e),
    };
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let read = tokio::task::spawn_blocking(move || read_range(&path, range.as_deref())).await;
    match read {
        Ok(Ok((part, total, Some((start, end))))) => (
            StatusCode::PARTIAL_CONTENT,
            [
                (header::CONTENT_TYPE, "video/mp4".to_owned()),
                (header::ACCEPT_RANGES, "bytes".to_owned()),
                (
                    header::CONTENT_RANGE,
                    format!("bytes {start}-{end}/{total}"),
                ),
            ],
            Body::from(part),
        )
            .into_response(),
        Ok(Ok((whole, _, None))) => (
            [
                (header::CONTENT_TYPE, "video/mp4"),
                (header::ACCEPT_RANGES, "bytes"),
            ],
            Body::from(whole),
        )
            .into_response(),
        Ok(Err(RangeError::Unsatisfiable(total))) => (
            StatusCode::RANGE_NOT_SATISFIABLE,
            [(header::CONTENT_RANGE, format!("bytes */{total}"))],
        )
            .into_response(),
        _ => not_found(),
    }
}

/// The most one answer carries: a player asks for more as it goes.
const MAX_PART: u64 = 8 << 20;

enum RangeError {
    Io,
    Unsatisfiable(u64),
}

type Part = (Vec<u8>, u64, Option<(u64, u64)>);

fn read_range(path: &str, range: Option<&str>) -> Result<Part, RangeError> {
    let mut file =
        crate::safe_fs::open_regular(std::path::Path::new(path)).map_err(|_| RangeError::Io)?;
    let total = file.metadata().map_err(|_| RangeError::Io)?.len();
    let wanted = range
        .and_then(|r| r.trim().strip_prefix("bytes="))
        .map(|spec| {
            let (a, b) = spec.split_once('-').unwrap_or((spec, ""));
            match (a.trim().parse::<u64>().ok(), b.trim().parse::<u64>().ok()) {
                (Some(start), Some(end)) => (start, end.min(total.saturating_sub(1))),
                (Some(start), None) => (start, total.saturating_sub(1)),
                // `bytes=-N`: the last N bytes.
                (None, Some(n)) => (total.saturating_sub(n), total.saturating_sub(1)),
                (None, None) => (0, total.saturating_sub(1)),
            }
        });
    let (start, end) = match wanted {
        Some((start, end)) if start <= end && start < total => {
            (start, end.min(start + MAX_PART - 1))
        }
        Some(_) => return Err(RangeError::Unsatisfiable(total)),
        None if total <= MAX_PART => (0, total.saturating_sub(1)),
        None => (0, MAX_PART - 1),
    };
    file.seek(SeekFrom::Start(start))
        .map_err(|_| RangeError::Io)?;
    let mut buf = Vec::new();
    file.take(end + 1 - start)
        .read_to_end(&mut buf)
        .map_err(|_| RangeError::Io)?;
    let partial = wanted.is_some() || total > MAX_PART;
    Ok((buf, total, partial.then_some((start, end))))
}
