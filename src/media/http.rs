//! Probing media at an `http(s)` URL with range requests, reading only the bytes the header
//! walk asks for (for a video with `moov` at the end: a few KiB at each end, not the file).
//!
//! Owns: `Range: bytes=a-b` requests, reading `Content-Range` for the file size, a small
//! read-ahead cache, and the fallback for servers that ignore ranges (a forward-only stream,
//! capped, never buffered beyond the caps).
//!
//! May not: configure the client (timeouts, proxies and TLS belong to the caller's
//! `reqwest::Client`) or retry; a failed fetch is a [`MediaError::Http`] naming the URL.

use super::image::{self, HEAD_STEPS, TAIL_LEN};
use super::mp4::{self, MOOV_CAP, Read, Walk};
use super::{ImageInfo, MediaError, VideoInfo};
use bytes::Bytes;
use reqwest::{Client, Response, StatusCode, header};

/// Bytes fetched per header read: a faststart file's `ftyp` and `moov` header, or the last few
/// box headers, arrive in one request instead of one request per 8-byte header.
const READ_AHEAD: u64 = 4096;
/// Most of a range-ignoring server's body we read looking for `moov` (skipped bytes included).
const STREAM_CAP: u64 = 128 * 1024 * 1024;
/// Most of a range-ignoring server's body we keep in memory: an image (whose end must be seen
/// to know it is whole) or a video whose server sends no length.
const IMAGE_BUFFER_CAP: u64 = 16 * 1024 * 1024;
const VIDEO_BUFFER_CAP: u64 = MOOV_CAP;
/// First bytes a stream keeps, so the video walk can name a file that is not a video.
const STREAM_KEEP: usize = 64;
/// Range requests one probe may make: a real file needs a handful; a server claiming a huge
/// file of tiny boxes would otherwise keep the prober asking for ever.
const MAX_RANGE_REQUESTS: u32 = 64;
/// Bytes one probe may fetch over range requests, all of them together.
const MAX_RANGE_BYTES: u64 = 64 * 1024 * 1024;

fn http_error(url: &str, reason: impl Into<String>) -> MediaError {
    MediaError::Http {
        url: url.to_owned(),
        reason: reason.into(),
    }
}

/// reqwest's own message is often just "error sending request"; the cause is in its sources.
fn reqwest_reason(err: reqwest::Error) -> String {
    let err = err.without_url();
    let mut reason = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        reason.push_str(": ");
        reason.push_str(&cause.to_string());
        source = cause.source();
    }
    reason
}

/// The answer to one range request.
enum Fetched {
    /// 206: the bytes asked for (or fewer at the end of the file) and the file's size.
    Partial { body: Vec<u8>, total: u64 },
    /// 200: the server ignored the range and is sending the whole file.
    Whole(Response),
    /// 416 with a size of 0.
    Empty,
}

/// `bytes a-b/total` -> `(a, total)`.
fn parse_content_range(value: &str) -> Option<(u64, u64)> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, _end) = range.split_once('-')?;
    Some((start.trim().parse().ok()?, total.trim().parse().ok()?))
}

/// Request `len` bytes at `start`.
async fn get_range(
    client: &Client,
    url: &str,
    start: u64,
    len: u64,
) -> Result<Fetched, MediaError> {
    let end = start + len.max(1) - 1;
    let response = client
        .get(url)
        .header(header::RANGE, format!("bytes={start}-{end}"))
        .send()
        .await
        .map_err(|e| http_error(url, reqwest_reason(e)))?;
    let status = response.status();
    let content_range = response
        .headers()
        .get(header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    match status {
        StatusCode::OK => Ok(Fetched::Whole(response)),
        StatusCode::PARTIAL_CONTENT => {
            let (got_start, total) = content_range
                .as_deref()
                .and_then(parse_content_range)
                .ok_or_else(|| {
                    http_error(
                        url,
                        format!(
                            "the server answered 206 without a usable Content-Range ({})",
                            content_range.as_deref().unwrap_or("none")
                        ),
                    )
                })?;
            if got_start != start {
                return Err(http_error(
                    url,
                    format!("asked for bytes from {start}, the server sent bytes from {got_start}"),
                ));
            }
            let want = len.min(total.saturating_sub(start));
            let body = read_body(url, response, want, Overflow::Truncate).await?;
            if (body.len() as u64) < want {
                return Err(http_error(
                    url,
                    format!(
                        "the server sent {} of the {want} bytes asked for at {start}",
                        body.len()
                    ),
                ));
            }
            Ok(Fetched::Partial { body, total })
        }
        StatusCode::RANGE_NOT_SATISFIABLE
            if content_range.as_deref().map(str::trim) == Some("bytes */0") =>
        {
            Ok(Fetched::Empty)
        }
        _ => Err(http_error(
            url,
            format!("the server answered HTTP {status}"),
        )),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Overflow {
    /// Keep the first `cap` bytes and stop reading (a server that sends more than asked).
    Truncate,
    /// More than `cap` bytes is an error.
    Fail,
}

/// Read a body chunk by chunk, never holding more than `cap` bytes.
async fn read_body(
    url: &str,
    mut response: Response,
    cap: u64,
    overflow: Overflow,
) -> Result<Vec<u8>, MediaError> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| http_error(url, reqwest_reason(e)))?
    {
        let room = (cap - body.len() as u64) as usize;
        if chunk.len() > room {
            if overflow == Overflow::Fail {
                return Err(http_error(
                    url,
                    format!(
                        "the server ignores range requests and the body is over the {} MiB this \
                         tool downloads to probe it",
                        cap / (1024 * 1024)
                    ),
                ));
            }
            body.extend_from_slice(&chunk[..room]);
            break;
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Random access over range requests, with one cached window.
struct RangeSource<'a> {
    client: &'a Client,
    url: &'a str,
    total: u64,
    window_start: u64,
    window: Vec<u8>,
    /// Requests made and bytes fetched so far, against the probe's budget.
    requests: u32,
    fetched: u64,
}

impl RangeSource<'_> {
    async fn read(&mut self, read: Read) -> Result<Vec<u8>, MediaError> {
        if read.len == 0 {
            return Ok(Vec::new());
        }
        let len = read.len as u64;
        let in_window = read.offset >= self.window_start
            && read.offset + len <= self.window_start + self.window.len() as u64;
        if !in_window {
            let fetch_len = len.max(READ_AHEAD).min(self.total - read.offset);
            self.requests += 1;
            self.fetched += fetch_len;
            if self.requests > MAX_RANGE_REQUESTS || self.fetched > MAX_RANGE_BYTES {
                return Err(http_error(
                    self.url,
                    format!(
                        "the header is not found within {MAX_RANGE_REQUESTS} range requests \
                         and {} MiB: not a file this tool can probe",
                        MAX_RANGE_BYTES >> 20
                    ),
                ));
            }
            match get_range(self.client, self.url, read.offset, fetch_len).await? {
                Fetched::Partial { body, total } if total == self.total => {
                    self.window_start = read.offset;
                    self.window = body;
                }
                Fetched::Partial { total, .. } => {
                    return Err(http_error(
                        self.url,
                        format!(
                            "the file changed size while being read ({} -> {total} bytes)",
                            self.total
                        ),
                    ));
                }
                Fetched::Whole(_) | Fetched::Empty => {
                    return Err(http_error(
                        self.url,
                        "the server stopped honouring range requests mid-probe",
                    ));
                }
            }
        }
        let at = (read.offset - self.window_start) as usize;
        Ok(self.window[at..at + read.len].to_vec())
    }
}

/// A forward-only body from a server that ignores ranges: skipped bytes are dropped as they come.
struct StreamSource<'a> {
    url: &'a str,
    response: Response,
    /// Offset of the first byte of `pending`.
    pos: u64,
    pending: Bytes,
    first_bytes: Vec<u8>,
}

impl StreamSource<'_> {
    async fn next_chunk(&mut self) -> Result<(), MediaError> {
        let chunk = self
            .response
            .chunk()
            .await
            .map_err(|e| http_error(self.url, reqwest_reason(e)))?
            .ok_or_else(|| http_error(self.url, "the body ended before its Content-Length"))?;
        let keep = STREAM_KEEP
            .saturating_sub(self.first_bytes.len())
            .min(chunk.len());
        self.first_bytes.extend_from_slice(&chunk[..keep]);
        self.pending = chunk;
        Ok(())
    }

    async fn read(&mut self, read: Read) -> Result<Vec<u8>, MediaError> {
        let end = read.offset + read.len as u64;
        if read.offset < self.pos {
            // Only the walk's look back at the first bytes goes backwards.
            return self
                .first_bytes
                .get(read.offset as usize..end as usize)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| http_error(self.url, "cannot seek back in a stream"));
        }
        if end > STREAM_CAP {
            return Err(http_error(
                self.url,
                format!(
                    "the server ignores range requests, and the movie header is not within the \
                     first {} MiB",
                    STREAM_CAP / (1024 * 1024)
                ),
            ));
        }
        let mut out = Vec::with_capacity(read.len);
        while self.pos < end {
            if self.pending.is_empty() {
                self.next_chunk().await?;
                continue;
            }
            let skip = read
                .offset
                .saturating_sub(self.pos)
                .min(self.pending.len() as u64) as usize;
            let take = ((end - self.pos) as usize - skip).min(self.pending.len() - skip);
            out.extend_from_slice(&self.pending[skip..skip + take]);
            self.pending = self.pending.slice(skip + take..);
            self.pos += (skip + take) as u64;
        }
        Ok(out)
    }
}

pub(crate) async fn probe_video(client: &Client, url: &str) -> Result<VideoInfo, MediaError> {
    match get_range(client, url, 0, READ_AHEAD).await? {
        Fetched::Empty => Err(MediaError::Empty),
        Fetched::Partial { body, total } => {
            let mut walk = Walk::new(total, false)?;
            let mut source = RangeSource {
                client,
                url,
                total,
                window_start: 0,
                window: body,
                requests: 1,
                fetched: READ_AHEAD,
            };
            loop {
                let data = source.read(walk.next_read()).await?;
                if let Some(info) = walk.feed(&data)? {
                    return Ok(info);
                }
            }
        }
        Fetched::Whole(response) => match response.content_length() {
            Some(total) => {
                let mut walk = Walk::new(total, true)?;
                let mut source = StreamSource {
                    url,
                    response,
                    pos: 0,
                    pending: Bytes::new(),
                    first_bytes: Vec::new(),
                };
                loop {
                    let data = source.read(walk.next_read()).await?;
                    if let Some(info) = walk.feed(&data)? {
                        return Ok(info);
                    }
                }
            }
            None => {
                let body = read_body(url, response, VIDEO_BUFFER_CAP, Overflow::Fail).await?;
                mp4::probe_bytes(&body)
            }
        },
    }
}

pub(crate) async fn probe_image(client: &Client, url: &str) -> Result<ImageInfo, MediaError> {
    match get_range(client, url, 0, HEAD_STEPS[0]).await? {
        Fetched::Empty => Err(MediaError::Empty),
        Fetched::Partial {
            body: mut head,
            total,
        } => {
            let tail = if total <= head.len() as u64 {
                head[head.len() - (TAIL_LEN.min(total) as usize)..].to_vec()
            } else {
                let start = total - TAIL_LEN.min(total);
                match get_range(client, url, start, total - start).await? {
                    Fetched::Partial { body, .. } => body,
                    _ => {
                        return Err(http_error(
                            url,
                            "the server stopped honouring range requests",
                        ));
                    }
                }
            };
            for step in HEAD_STEPS {
                let want = step.min(total);
                if (head.len() as u64) < want {
                    let have = head.len() as u64;
                    match get_range(client, url, have, want - have).await? {
                        Fetched::Partial { body, .. } => head.extend_from_slice(&body),
                        _ => {
                            return Err(http_error(
                                url,
                                "the server stopped honouring range requests",
                            ));
                        }
                    }
                }
                if let Some(info) = image::probe_parts(&head, &tail, total)? {
                    return Ok(info);
                }
            }
            Err(image::no_size_in_head())
        }
        Fetched::Whole(response) => {
            if let Some(len) = response
                .content_length()
                .filter(|len| *len > IMAGE_BUFFER_CAP)
            {
                return Err(http_error(
                    url,
                    format!(
                        "the server ignores range requests and the image is {len} bytes, over the \
                         {} MiB this tool downloads to probe it",
                        IMAGE_BUFFER_CAP / (1024 * 1024)
                    ),
                ));
            }
            let body = read_body(url, response, IMAGE_BUFFER_CAP, Overflow::Fail).await?;
            image::probe_bytes(&body)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range() {
        assert_eq!(
            parse_content_range("bytes 0-4095/124252"),
            Some((0, 124_252))
        );
        assert_eq!(parse_content_range("bytes 10-20/*"), None);
        assert_eq!(parse_content_range("bytes */0"), None);
        assert_eq!(parse_content_range("items 0-1/2"), None);
    }
}
