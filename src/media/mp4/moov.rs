//! The `moov` box, parsed in memory: the movie's duration (`mvhd`, `mvex/mehd`) and its video
//! track's size (`trak/tkhd`, `trak/mdia/hdlr`, `stsd`).
//!
//! Owns: walking a box body's children and reading their fields, bounds-checked.
//!
//! May not: read anything but the bytes it is given (the walk in [`super`] fetched them, under
//! its caps).

use super::{MediaError, Movie, kind_str};

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

pub(super) fn parse_moov(moov: &[u8]) -> Result<Movie, MediaError> {
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
pub(super) fn duration_ms(duration: u64, timescale: u32) -> Result<u64, MediaError> {
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
