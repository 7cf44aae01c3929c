//! MP4/MOV box walking: container, duration and video size from the `ftyp` and `moov` boxes.
//!
//! Owns: the top-level box walk as a small state machine ([`Walk`]) that says which bytes it
//! needs next and is fed them, so one walk serves a local file (seek + read), bytes in memory,
//! HTTP range requests and a forward-only HTTP stream alike. The `moov` box it reads is parsed
//! in [`moov`].
//!
//! May not: do I/O in the walk (only [`probe_open`] reads, from a file it is handed), allocate
//! more than its caps ([`MOOV_CAP`]) whatever the headers declare, or loop without moving
//! forward: every step advances by at least one box header.

use super::{Container, MediaError, VideoInfo, sniff};
use std::io::{Read as _, Seek as _, SeekFrom};

mod moov;
use moov::parse_moov;

/// Largest `moov` box read into memory. Real ones are kilobytes to a few MiB (hours of
/// video); a bigger claim is either corrupt or not worth the memory.
pub(crate) const MOOV_CAP: u64 = 64 * 1024 * 1024;
/// `ftyp` holds a handful of 4-byte brands; anything large is not an `ftyp`.
const FTYP_CAP: u64 = 4096;
/// Bytes read at the start to name what a non-video file is.
const SNIFF_LEN: u64 = 64;

/// A read the walk needs: `len` bytes at `offset`, always inside the file.
///
/// Offsets never go backwards, except one read of the first [`SNIFF_LEN`] bytes when the file
/// turns out not to be a video, so a forward-only stream that keeps its first bytes can serve it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Read {
    pub offset: u64,
    pub len: usize,
}

#[derive(Debug, Clone, Copy)]
struct BoxHeader {
    kind: [u8; 4],
    start: u64,
    size: u64,
    header_len: u64,
}

impl BoxHeader {
    fn payload_len(&self) -> u64 {
        self.size - self.header_len
    }
}

#[derive(Debug, Clone, Copy)]
enum Pending {
    /// The 8-byte header of the box at `pos`.
    Header,
    /// The 64-bit size that follows a header whose 32-bit size is 1.
    LargeSize { kind: [u8; 4] },
    /// The body of an `ftyp` or `moov` box.
    Payload(BoxHeader),
    /// The first bytes, to say what this file is instead of a video.
    Sniff,
}

/// What the `moov` box says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Movie {
    duration_ms: u64,
    width: u32,
    height: u32,
}

/// The top-level box walk. Ask [`Walk::next_read`], feed the bytes to [`Walk::feed`], repeat
/// until it returns the probe.
pub(crate) struct Walk {
    file_len: u64,
    pos: u64,
    pending: Pending,
    container: Option<Container>,
    movie: Option<Movie>,
    /// A forward-only stream stops at `moov` instead of reading through `mdat` to check the
    /// layout; the length it trusts is then the server's Content-Length.
    stop_at_moov: bool,
}

impl Walk {
    pub(crate) fn new(file_len: u64, stop_at_moov: bool) -> Result<Self, MediaError> {
        if file_len == 0 {
            return Err(MediaError::Empty);
        }
        Ok(Self {
            file_len,
            pos: 0,
            pending: Pending::Header,
            container: None,
            movie: None,
            stop_at_moov,
        })
    }

    pub(crate) fn next_read(&self) -> Read {
        let remaining = self.file_len - self.pos;
        let (offset, len) = match self.pending {
            Pending::Header => (self.pos, remaining.min(8)),
            Pending::LargeSize { .. } => (self.pos + 8, 8),
            Pending::Payload(h) => (h.start + h.header_len, h.payload_len()),
            Pending::Sniff => (0, self.file_len.min(SNIFF_LEN)),
        };
        // Every length was checked against a cap or the file length before it got here.
        Read {
            offset,
            len: usize::try_from(len).unwrap_or(usize::MAX),
        }
    }

    /// Feed the bytes [`Walk::next_read`] asked for; `Some` once the walk is complete.
    pub(crate) fn feed(&mut self, data: &[u8]) -> Result<Option<VideoInfo>, MediaError> {
        let want = self.next_read();
        if data.len() != want.len {
            return Err(MediaError::Corrupt(format!(
                "expected {} bytes at byte {}, got {}: truncated (did the file change while being read?)",
                want.len,
                want.offset,
                data.len()
            )));
        }
        match self.pending {
            Pending::Sniff => Err(not_a_video(data)),
            Pending::Header => self.feed_header(data),
            Pending::LargeSize { kind } => {
                let size = u64::from_be_bytes(data.try_into().expect("8 bytes, checked above"));
                self.open_box(BoxHeader {
                    kind,
                    start: self.pos,
                    size,
                    header_len: 16,
                })
            }
            Pending::Payload(header) => {
                match &header.kind {
                    b"ftyp" => self.container = Some(parse_ftyp(data)?),
                    _ => self.movie = Some(parse_moov(data)?),
                }
                self.skip_past(header)
            }
        }
    }

    fn feed_header(&mut self, data: &[u8]) -> Result<Option<VideoInfo>, MediaError> {
        if data.len() < 8 {
            if self.pos == 0 {
                return Err(not_a_video(data));
            }
            return Err(MediaError::Corrupt(format!(
                "the file ends {} bytes after the last complete box (at byte {}), too few for \
                 another box header: it is truncated",
                data.len(),
                self.pos
            )));
        }
        let size = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
        let kind = [data[4], data[5], data[6], data[7]];
        if self.pos == 0 && !plausible_first_box(&kind) {
            self.pending = Pending::Sniff;
            return Ok(None);
        }
        if !kind.iter().all(|b| (0x20..=0x7E).contains(b) || *b == 0xA9) {
            return Err(MediaError::Corrupt(format!(
                "expected a box header at byte {}, found something else",
                self.pos
            )));
        }
        match size {
            1 => {
                if self.file_len - self.pos < 16 {
                    return Err(truncated_box(&kind, self.pos, 16, self.file_len));
                }
                self.pending = Pending::LargeSize { kind };
                Ok(None)
            }
            // Size 0: the box runs to the end of the file (a last `mdat` written by a streamer).
            0 => self.open_box(BoxHeader {
                kind,
                start: self.pos,
                size: self.file_len - self.pos,
                header_len: 8,
            }),
            n => self.open_box(BoxHeader {
                kind,
                start: self.pos,
                size: n.into(),
                header_len: 8,
            }),
        }
    }

    fn open_box(&mut self, h: BoxHeader) -> Result<Option<VideoInfo>, MediaError> {
        if h.size < h.header_len {
            return Err(MediaError::Corrupt(format!(
                "box `{}` at byte {} declares a size of {} bytes, less than its own header",
                kind_str(&h.kind),
                h.start,
                h.size
            )));
        }
        if h.start
            .checked_add(h.size)
            .is_none_or(|end| end > self.file_len)
        {
            return Err(truncated_box(&h.kind, h.start, h.size, self.file_len));
        }
        match &h.kind {
            b"ftyp" if self.container.is_none() && h.start == 0 => {
                if !(8..=FTYP_CAP).contains(&h.payload_len()) {
                    return Err(MediaError::Corrupt(format!(
                        "the file type box (`ftyp`) is {} bytes; expected 8 to {FTYP_CAP}",
                        h.payload_len()
                    )));
                }
                self.pending = Pending::Payload(h);
                Ok(None)
            }
            b"moov" if self.movie.is_none() => {
                if h.payload_len() > MOOV_CAP {
                    return Err(MediaError::NotAVideo(format!(
                        "its movie header (`moov` box) is {} bytes, more than the {} MiB this tool reads",
                        h.payload_len(),
                        MOOV_CAP / (1024 * 1024)
                    )));
                }
                self.pending = Pending::Payload(h);
                Ok(None)
            }
            _ => self.skip_past(h),
        }
    }

    fn skip_past(&mut self, h: BoxHeader) -> Result<Option<VideoInfo>, MediaError> {
        self.pos = h.start + h.size;
        self.pending = Pending::Header;
        if self.pos == self.file_len || (self.stop_at_moov && self.movie.is_some()) {
            return self.finish().map(Some);
        }
        Ok(None)
    }

    fn finish(&self) -> Result<VideoInfo, MediaError> {
        let movie = self.movie.ok_or_else(|| {
            MediaError::NotAVideo(
                "no movie header (`moov` box) in the file; was the recording stopped before it was \
                 finalised?"
                    .to_owned(),
            )
        })?;
        Ok(VideoInfo {
            // No `ftyp` at all: QuickTime files from before the brand existed.
            container: self.container.unwrap_or(Container::Mov),
            duration_ms: movie.duration_ms,
            width: movie.width,
            height: movie.height,
            size_bytes: self.file_len,
        })
    }
}

/// Top-level boxes a video may start with: `ftyp`, or what old QuickTime files begin with.
fn plausible_first_box(kind: &[u8; 4]) -> bool {
    matches!(
        kind,
        b"ftyp" | b"moov" | b"mdat" | b"wide" | b"free" | b"skip" | b"pnot"
    )
}

fn not_a_video(head: &[u8]) -> MediaError {
    match sniff::describe(head) {
        Some(what) => MediaError::NotAVideo(format!("this is {what}, not an MP4/MOV video")),
        // The bytes themselves are never quoted: they may come from anywhere (a URL's answer).
        None => MediaError::NotAVideo("no MP4/MOV box structure at the start".to_owned()),
    }
}

fn truncated_box(kind: &[u8; 4], start: u64, size: u64, file_len: u64) -> MediaError {
    MediaError::Corrupt(format!(
        "box `{}` at byte {start} declares {size} bytes, but the file ends after {file_len}: \
         it is truncated (an interrupted download or copy?)",
        kind_str(kind)
    ))
}

fn kind_str(kind: &[u8; 4]) -> String {
    kind.escape_ascii().to_string()
}

fn parse_ftyp(payload: &[u8]) -> Result<Container, MediaError> {
    let major = &payload[0..4];
    // Compatible brands follow the major brand and a 4-byte minor version.
    let mut compatible = payload[8..].chunks_exact(4);
    let what = sniff::ftyp_brand(major);
    if what.ends_with("image") {
        return Err(MediaError::NotAVideo(format!(
            "this is {what}, not an MP4/MOV video"
        )));
    }
    if major == b"qt  " || compatible.any(|b| b == b"qt  ") {
        Ok(Container::Mov)
    } else {
        Ok(Container::Mp4)
    }
}

/// Probe bytes already in memory.
pub(crate) fn probe_bytes(bytes: &[u8]) -> Result<VideoInfo, MediaError> {
    let mut walk = Walk::new(bytes.len() as u64, false)?;
    loop {
        let read = walk.next_read();
        let data = usize::try_from(read.offset)
            .ok()
            .and_then(|start| bytes.get(start..start.checked_add(read.len)?))
            .ok_or_else(|| MediaError::Corrupt(format!("no bytes at {read:?}")))?;
        if let Some(info) = walk.feed(data)? {
            return Ok(info);
        }
    }
}

/// Probe a local file, seeking over every top-level box except `ftyp` and `moov`.
/// Walk an open file of `len` bytes; `what` names it in errors.
pub(crate) fn probe_open(
    mut file: std::fs::File,
    len: u64,
    what: &str,
) -> Result<VideoInfo, MediaError> {
    let io = |source| MediaError::Io {
        what: what.to_owned(),
        source,
    };
    let mut walk = Walk::new(len, false)?;
    let mut buf = Vec::new();
    loop {
        let read = walk.next_read();
        buf.resize(read.len, 0);
        file.seek(SeekFrom::Start(read.offset)).map_err(io)?;
        match file.read_exact(&mut buf) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(MediaError::Corrupt(format!(
                    "the file ended before byte {} while being read: truncated (is it still \
                     being written?)",
                    read.offset + read.len as u64
                )));
            }
            Err(e) => return Err(io(e)),
        }
        if let Some(info) = walk.feed(&buf)? {
            return Ok(info);
        }
    }
}

#[cfg(test)]
mod tests;
