//! MP4/MOV box walking: container, duration and video size from the `ftyp` and `moov` boxes.
//!
//! Owns: the top-level box walk as a small state machine ([`Walk`]) that says which bytes it
//! needs next and is fed them, so one walk serves a local file (seek + read), bytes in memory,
//! HTTP range requests and a forward-only HTTP stream alike; and parsing the `moov` box in
//! memory (`mvhd`, `mvex/mehd`, `trak/tkhd`, `trak/mdia/hdlr`, `stsd`).
//!
//! May not: do any I/O itself, allocate more than its caps ([`MOOV_CAP`]) whatever the headers
//! declare, or loop without moving forward: every step advances by at least one box header.

use super::{Container, MediaError, VideoInfo, sniff};
use std::io::{Read as _, Seek as _, SeekFrom};

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

/// The children of a box body: `(kind, body)` pairs, or one error where the layout breaks.
struct Children<'a> {
    data: &'a [u8],
    pos: usize,
    parent: &'static str,
    failed: bool,
}

fn children<'a>(data: &'a [u8], parent: &'static str) -> Children<'a> {
    Children {
        data,
        pos: 0,
        parent,
        failed: false,
    }
}

impl<'a> Iterator for Children<'a> {
    type Item = Result<([u8; 4], &'a [u8]), MediaError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.data.get(self.pos..)?;
        // QuickTime allows a 4-byte zero terminator after a list of atoms; fewer than a header's
        // worth of bytes left is padding, not a box.
        if self.failed || rest.len() < 8 {
            return None;
        }
        let size32 = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let kind = [rest[4], rest[5], rest[6], rest[7]];
        let (size, header_len) = match size32 {
            0 => (rest.len() as u64, 8),
            1 if rest.len() >= 16 => (u64::from_be_bytes(rest[8..16].try_into().ok()?), 16),
            n => (u64::from(n), 8),
        };
        if size < header_len || size > rest.len() as u64 {
            self.failed = true;
            return Some(Err(MediaError::Corrupt(format!(
                "box `{}` inside `{}` declares {size} bytes, but only {} remain",
                kind_str(&kind),
                self.parent,
                rest.len()
            ))));
        }
        // size <= rest.len(), so it fits in usize.
        let size = size as usize;
        self.pos += size;
        Some(Ok((kind, &rest[header_len as usize..size])))
    }
}

fn parse_moov(moov: &[u8]) -> Result<Movie, MediaError> {
    let mut mvhd = None;
    let mut fragment_duration = None;
    let mut video = None;
    for child in children(moov, "moov") {
        let (kind, body) = child?;
        match &kind {
            b"mvhd" if mvhd.is_none() => mvhd = Some(parse_mvhd(body)?),
            b"trak" if video.is_none() => video = parse_trak(body)?,
            b"mvex" => {
                for child in children(body, "mvex") {
                    let (kind, body) = child?;
                    if &kind == b"mehd" {
                        fragment_duration = parse_mehd(body)?;
                    }
                }
            }
            _ => {}
        }
    }
    let (timescale, duration) = mvhd.ok_or_else(|| {
        MediaError::Corrupt("the `moov` box has no movie header (`mvhd`)".to_owned())
    })?;
    let duration = duration
        .filter(|d| *d > 0)
        .or(fragment_duration)
        .ok_or_else(|| {
            MediaError::NotAVideo(
            "its movie header gives no duration (a fragmented or live-recorded MP4?); remux it, \
             e.g. `ffmpeg -i in.mp4 -c copy out.mp4`"
                .to_owned(),
        )
        })?;
    let (width, height) = video.ok_or_else(|| {
        MediaError::NotAVideo("it has no video track (an audio-only file?)".to_owned())
    })?;
    Ok(Movie {
        duration_ms: duration_ms(duration, timescale)?,
        width,
        height,
    })
}

/// Milliseconds, rounded up: estimates built on this must be upper bounds.
fn duration_ms(duration: u64, timescale: u32) -> Result<u64, MediaError> {
    if timescale == 0 {
        return Err(MediaError::Corrupt(
            "the movie header gives a timescale of 0".to_owned(),
        ));
    }
    let ms = (u128::from(duration) * 1000).div_ceil(u128::from(timescale));
    u64::try_from(ms).map_err(|_| {
        MediaError::Corrupt(format!(
            "the movie header gives an absurd duration ({ms} ms)"
        ))
    })
}

fn be_u32(body: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(body.get(at..at + 4)?.try_into().ok()?))
}

fn be_u64(body: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(body.get(at..at + 8)?.try_into().ok()?))
}

fn be_u16(body: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(body.get(at..at + 2)?.try_into().ok()?))
}

/// `(timescale, duration)`; the duration is `None` when the header says "unknown" (all ones).
fn parse_mvhd(body: &[u8]) -> Result<(u32, Option<u64>), MediaError> {
    let short = || MediaError::Corrupt("the movie header (`mvhd`) is cut short".to_owned());
    match body.first() {
        Some(0) => {
            let timescale = be_u32(body, 12).ok_or_else(short)?;
            let duration = be_u32(body, 16).ok_or_else(short)?;
            Ok((timescale, (duration != u32::MAX).then_some(duration.into())))
        }
        Some(1) => {
            let timescale = be_u32(body, 20).ok_or_else(short)?;
            let duration = be_u64(body, 24).ok_or_else(short)?;
            Ok((timescale, (duration != u64::MAX).then_some(duration)))
        }
        Some(v) => Err(MediaError::NotAVideo(format!(
            "movie header version {v} is not supported"
        ))),
        None => Err(short()),
    }
}

fn parse_mehd(body: &[u8]) -> Result<Option<u64>, MediaError> {
    let short = || MediaError::Corrupt("the fragment header (`mehd`) is cut short".to_owned());
    let duration = match body.first() {
        Some(1) => be_u64(body, 4).ok_or_else(short)?,
        Some(_) => be_u32(body, 4).ok_or_else(short)?.into(),
        None => return Err(short()),
    };
    Ok((duration > 0).then_some(duration))
}

/// Width and height if this track is video (handler `vide`), else `None`.
fn parse_trak(trak: &[u8]) -> Result<Option<(u32, u32)>, MediaError> {
    let mut tkhd = None;
    let mut is_video = false;
    let mut entry_size = None;
    for child in children(trak, "trak") {
        let (kind, body) = child?;
        match &kind {
            b"tkhd" => tkhd = Some(body),
            b"mdia" => {
                for child in children(body, "mdia") {
                    let (kind, body) = child?;
                    match &kind {
                        // hdlr: version/flags, pre_defined, then the handler type.
                        b"hdlr" => is_video = body.get(8..12) == Some(b"vide"),
                        b"minf" => entry_size = sample_entry_size(body)?,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if !is_video {
        return Ok(None);
    }
    let tkhd = tkhd.ok_or_else(|| {
        MediaError::Corrupt("the video track has no track header (`tkhd`)".to_owned())
    })?;
    let (width, height) = parse_tkhd(tkhd)?;
    // Some muxers leave the track header's size at zero; the sample description still has it.
    match entry_size {
        Some(size) if width == 0 || height == 0 => Ok(Some(size)),
        _ => Ok(Some((width, height))),
    }
}

fn parse_tkhd(body: &[u8]) -> Result<(u32, u32), MediaError> {
    // Width and height are the last two fields, 16.16 fixed point.
    let at = match body.first() {
        Some(0) => 76,
        Some(1) => 88,
        Some(v) => {
            return Err(MediaError::NotAVideo(format!(
                "track header version {v} is not supported"
            )));
        }
        None => 0,
    };
    let (Some(w), Some(h)) = (be_u32(body, at), be_u32(body, at + 4)) else {
        return Err(MediaError::Corrupt(
            "the video track header (`tkhd`) is cut short".to_owned(),
        ));
    };
    let round = |fixed: u32| ((u64::from(fixed) + 0x8000) >> 16) as u32;
    Ok((round(w), round(h)))
}

/// Width and height from the first visual sample entry in `minf/stbl/stsd`.
fn sample_entry_size(minf: &[u8]) -> Result<Option<(u32, u32)>, MediaError> {
    for child in children(minf, "minf") {
        let (kind, stbl) = child?;
        if &kind != b"stbl" {
            continue;
        }
        for child in children(stbl, "stbl") {
            let (kind, stsd) = child?;
            if &kind == b"stsd" {
                // version/flags(4) entry_count(4) | entry header(8) reserved(6) data_ref(2)
                // pre_defined/reserved(16) width(2) height(2)
                let size = be_u16(stsd, 40).zip(be_u16(stsd, 42));
                return Ok(size.map(|(w, h)| (w.into(), h.into())));
            }
        }
    }
    Ok(None)
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
mod tests {
    use super::*;

    fn mp4_box(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut out = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        out.extend_from_slice(kind);
        out.extend_from_slice(body);
        out
    }

    fn mvhd_v0(timescale: u32, duration: u32) -> Vec<u8> {
        let mut body = vec![0u8; 100];
        body[12..16].copy_from_slice(&timescale.to_be_bytes());
        body[16..20].copy_from_slice(&duration.to_be_bytes());
        mp4_box(b"mvhd", &body)
    }

    fn mvhd_v1(timescale: u32, duration: u64) -> Vec<u8> {
        let mut body = vec![0u8; 112];
        body[0] = 1;
        body[20..24].copy_from_slice(&timescale.to_be_bytes());
        body[24..32].copy_from_slice(&duration.to_be_bytes());
        mp4_box(b"mvhd", &body)
    }

    fn video_trak(version: u8, width: u32, height: u32) -> Vec<u8> {
        let (len, at) = if version == 0 { (84, 76) } else { (96, 88) };
        let mut tkhd = vec![0u8; len];
        tkhd[0] = version;
        tkhd[at..at + 4].copy_from_slice(&(width << 16).to_be_bytes());
        tkhd[at + 4..at + 8].copy_from_slice(&(height << 16).to_be_bytes());
        let mut hdlr = vec![0u8; 24];
        hdlr[8..12].copy_from_slice(b"vide");
        let mdia = mp4_box(b"mdia", &mp4_box(b"hdlr", &hdlr));
        mp4_box(b"trak", &[mp4_box(b"tkhd", &tkhd), mdia].concat())
    }

    fn ftyp(major: &[u8; 4]) -> Vec<u8> {
        mp4_box(b"ftyp", &[&major[..], &[0, 0, 2, 0], b"isom"].concat())
    }

    fn movie(mvhd: Vec<u8>) -> Vec<u8> {
        let moov = mp4_box(b"moov", &[mvhd, video_trak(0, 640, 360)].concat());
        [ftyp(b"isom"), moov, mp4_box(b"mdat", &[0; 32])].concat()
    }

    #[test]
    fn duration_rounds_up_to_the_millisecond() {
        assert_eq!(duration_ms(6000, 1000).unwrap(), 6000);
        assert_eq!(duration_ms(1, 90_000).unwrap(), 1);
        assert_eq!(duration_ms(90_001, 90_000).unwrap(), 1001);
        assert_eq!(duration_ms(u64::MAX, 1).ok(), None);
        assert!(duration_ms(5, 0).is_err());
    }

    #[test]
    fn mvhd_versions_0_and_1() {
        let v0 = probe_bytes(&movie(mvhd_v0(600, 3001))).unwrap();
        assert_eq!(v0.duration_ms, 5002);
        let v1 = probe_bytes(&movie(mvhd_v1(48_000, 48_000 * 7))).unwrap();
        assert_eq!(v1.duration_ms, 7000);
        assert_eq!(
            (v1.width, v1.height, v1.container),
            (640, 360, Container::Mp4)
        );
    }

    #[test]
    fn unknown_duration_is_refused_not_guessed() {
        let err = probe_bytes(&movie(mvhd_v0(1000, u32::MAX))).unwrap_err();
        assert!(matches!(err, MediaError::NotAVideo(m) if m.contains("no duration")));
    }

    #[test]
    fn tkhd_version_1() {
        let moov = mp4_box(
            b"moov",
            &[mvhd_v0(1000, 4000), video_trak(1, 1920, 1080)].concat(),
        );
        let info = probe_bytes(&[ftyp(b"qt  "), moov].concat()).unwrap();
        assert_eq!(
            (info.width, info.height, info.container),
            (1920, 1080, Container::Mov)
        );
    }

    #[test]
    fn large_size_and_size_zero_boxes() {
        let moov = mp4_box(
            b"moov",
            &[mvhd_v0(1000, 4000), video_trak(0, 400, 400)].concat(),
        );
        let mut wide_mdat = 24u32.to_be_bytes().to_vec();
        wide_mdat.extend_from_slice(b"free");
        wide_mdat.extend_from_slice(&[0; 16]);
        // A 64-bit-size box, then a size-0 box that runs to the end.
        let mut large = 1u32.to_be_bytes().to_vec();
        large.extend_from_slice(b"mdat");
        large.extend_from_slice(&24u64.to_be_bytes());
        large.extend_from_slice(&[0; 8]);
        let mut to_end = 0u32.to_be_bytes().to_vec();
        to_end.extend_from_slice(b"mdat");
        to_end.extend_from_slice(&[7; 100]);
        let file = [ftyp(b"isom"), wide_mdat, large, moov, to_end].concat();
        let info = probe_bytes(&file).unwrap();
        assert_eq!(info.duration_ms, 4000);
        assert_eq!(info.size_bytes, file.len() as u64);
    }

    #[test]
    fn oversized_boxes_are_truncation() {
        let mut file = movie(mvhd_v0(1000, 4000));
        file.truncate(file.len() - 1);
        let err = probe_bytes(&file).unwrap_err().to_string();
        assert!(err.contains("truncated") && err.contains("`mdat`"), "{err}");

        let mut huge = ftyp(b"isom");
        huge.extend_from_slice(&1u32.to_be_bytes());
        huge.extend_from_slice(b"mdat");
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        assert!(
            probe_bytes(&huge)
                .unwrap_err()
                .to_string()
                .contains("truncated")
        );
    }

    #[test]
    fn box_smaller_than_its_header() {
        let mut file = ftyp(b"isom");
        file.extend_from_slice(&4u32.to_be_bytes());
        file.extend_from_slice(b"free");
        let err = probe_bytes(&file).unwrap_err().to_string();
        assert!(err.contains("less than its own header"), "{err}");
    }

    #[test]
    fn no_moov_no_video_track() {
        let file = [ftyp(b"isom"), mp4_box(b"mdat", &[0; 10])].concat();
        assert!(matches!(probe_bytes(&file), Err(MediaError::NotAVideo(m)) if m.contains("moov")));
        let moov = mp4_box(b"moov", &mvhd_v0(1000, 4000));
        let file = [ftyp(b"isom"), moov].concat();
        assert!(
            matches!(probe_bytes(&file), Err(MediaError::NotAVideo(m)) if m.contains("no video track"))
        );
    }

    #[test]
    fn heif_and_garbage_are_named() {
        let heic = [ftyp(b"heic"), mp4_box(b"meta", &[0; 4])].concat();
        let err = probe_bytes(&heic).unwrap_err().to_string();
        assert!(err.contains("HEIF/HEIC image"), "{err}");
        let err = probe_bytes(b"\x01\x02\x03\x04\x05\x06\x07\x08\x09")
            .unwrap_err()
            .to_string();
        assert!(
            !err.contains("01 02 03"),
            "foreign bytes are never quoted: {err}"
        );
        let err = probe_bytes(b"GIF").unwrap_err().to_string();
        assert!(err.contains("no MP4/MOV box structure"), "{err}");
        assert!(matches!(probe_bytes(b""), Err(MediaError::Empty)));
    }

    #[test]
    fn walk_reads_move_forward() {
        let file = movie(mvhd_v0(1000, 4000));
        let mut walk = Walk::new(file.len() as u64, false).unwrap();
        let mut last_end = 0;
        loop {
            let read = walk.next_read();
            assert!(
                read.offset >= last_end,
                "{read:?} goes back before {last_end}"
            );
            last_end = read.offset + read.len as u64;
            let data = &file[read.offset as usize..last_end as usize];
            if walk.feed(data).unwrap().is_some() {
                break;
            }
        }
    }
}
