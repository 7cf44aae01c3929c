//! Image headers: format from magic bytes, width and height from the header, truncation from the
//! last bytes.
//!
//! Owns: turning a file's first bytes (its "head"), its last bytes (its "tail") and its size
//! into an [`ImageInfo`], and reading those from a local file or memory. Dimensions come from the
//! `imagesize` crate; what the format is and whether the file is whole are decided here.
//!
//! May not: read a whole file (only the head, up to [`HEAD_MAX`], and the tail), or trust the
//! file name's extension (see `rules::check_extension` for that).

use super::{ImageFormat, ImageInfo, MediaError, sniff};
use std::io::{Read as _, Seek as _, SeekFrom};

/// Heads tried in turn: almost every header fits the first; a JPEG with a large EXIF thumbnail
/// or ICC profile before its frame header may need more.
pub(crate) const HEAD_STEPS: [u64; 2] = [64 * 1024, HEAD_MAX];
/// Most of an image's start this tool reads looking for its size.
pub(crate) const HEAD_MAX: u64 = 1024 * 1024;
/// Bytes read at the end: a PNG's `IEND` chunk (12) or a JPEG's end marker and some padding.
pub(crate) const TAIL_LEN: u64 = 32;
/// A JPEG may be followed by a few zero bytes of padding from some writers.
const JPEG_MAX_PADDING: usize = 16;

const PNG_IEND: [u8; 12] = [0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xAE, 0x42, 0x60, 0x82];

/// Probe from the file's first bytes (`head`: the whole file when shorter than the head
/// asked for), its last bytes (`tail`, up to [`TAIL_LEN`]) and its size.
///
/// `Ok(None)`: the header goes on past `head`; call again with a longer head.
pub(crate) fn probe_parts(
    head: &[u8],
    tail: &[u8],
    size: u64,
) -> Result<Option<ImageInfo>, MediaError> {
    if size == 0 {
        return Err(MediaError::Empty);
    }
    let format = sniff::image_format(head).ok_or_else(|| not_an_image(head))?;
    check_whole(format, head, tail, size)?;
    let dims = match imagesize::blob_size(head) {
        Ok(dims) => dims,
        Err(_) if (head.len() as u64) < size => return Ok(None),
        Err(e) => {
            return Err(MediaError::Corrupt(format!(
                "cannot find the image size in its {} header ({e})",
                name(format)
            )));
        }
    };
    let (Ok(width), Ok(height)) = (u32::try_from(dims.width), u32::try_from(dims.height)) else {
        return Err(MediaError::Corrupt(
            "the header gives an absurd image size".to_owned(),
        ));
    };
    if width == 0 || height == 0 {
        return Err(MediaError::Corrupt(format!(
            "the {} header gives a size of {width}x{height} px",
            name(format)
        )));
    }
    Ok(Some(ImageInfo {
        format,
        width,
        height,
        size_bytes: size,
    }))
}

pub(crate) fn name(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Jpeg => "JPEG",
        ImageFormat::Png => "PNG",
        ImageFormat::Webp => "WebP",
    }
}

fn not_an_image(head: &[u8]) -> MediaError {
    const ACCEPTED: &str = "the provider accepts JPEG, PNG or WebP";
    match sniff::describe(head) {
        Some(what) => MediaError::NotAnImage(format!("this is {what}; {ACCEPTED}")),
        // The bytes themselves are never quoted: they may come from anywhere (a URL's answer).
        None => MediaError::NotAnImage(format!("unrecognised content; {ACCEPTED}")),
    }
}

/// Each format says where it ends; a file that stops before that was cut short.
fn check_whole(format: ImageFormat, head: &[u8], tail: &[u8], size: u64) -> Result<(), MediaError> {
    let problem = match format {
        ImageFormat::Png => {
            if head.get(12..16) != Some(b"IHDR") && size > 16 {
                Some("does not start with an `IHDR` chunk".to_owned())
            } else if !tail.ends_with(&PNG_IEND) {
                Some("does not end with an `IEND` chunk: it is truncated".to_owned())
            } else {
                None
            }
        }
        ImageFormat::Jpeg => {
            let padding = tail.iter().rev().take_while(|b| **b == 0).count();
            let end = &tail[..tail.len() - padding];
            if end.ends_with(&[0xFF, 0xD9]) && padding <= JPEG_MAX_PADDING {
                None
            } else {
                Some("does not end with the end-of-image marker FF D9: it is truncated".to_owned())
            }
        }
        ImageFormat::Webp => {
            let riff = head
                .get(4..8)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
            // The RIFF size counts everything after its own 8-byte header.
            let declared = riff.map_or(0, |r| u64::from(r) + 8);
            if declared > size {
                Some(format!(
                    "has {size} bytes but its RIFF header declares {declared}: it is truncated"
                ))
            } else if declared < size {
                Some(format!(
                    "has {size} bytes but its RIFF header declares {declared} (extra data \
                     after the image?)"
                ))
            } else {
                None
            }
        }
    };
    match problem {
        Some(problem) => Err(MediaError::Corrupt(format!(
            "the {} file {problem}",
            name(format)
        ))),
        None => Ok(()),
    }
}

pub(crate) fn probe_bytes(bytes: &[u8]) -> Result<ImageInfo, MediaError> {
    let tail = &bytes[bytes.len().saturating_sub(TAIL_LEN as usize)..];
    // The whole slice is the head, so the header cannot "go on past it".
    probe_parts(bytes, tail, bytes.len() as u64)?
        .ok_or_else(|| MediaError::Corrupt("the image header is cut short".to_owned()))
}

/// Probe an open file of `size` bytes; `what` names it in errors.
pub(crate) fn probe_open(
    mut file: std::fs::File,
    size: u64,
    what: &str,
) -> Result<ImageInfo, MediaError> {
    let io = |source| MediaError::Io {
        what: what.to_owned(),
        source,
    };
    if size == 0 {
        return Err(MediaError::Empty);
    }
    let mut read_at = |offset: u64, len: u64| -> Result<Vec<u8>, MediaError> {
        let mut buf = Vec::new();
        file.seek(SeekFrom::Start(offset)).map_err(io)?;
        (&mut file).take(len).read_to_end(&mut buf).map_err(io)?;
        Ok(buf)
    };
    let tail_len = size.min(TAIL_LEN);
    let tail = read_at(size - tail_len, tail_len)?;
    for step in HEAD_STEPS {
        let head = read_at(0, size.min(step))?;
        if let Some(info) = probe_parts(&head, &tail, size)? {
            return Ok(info);
        }
    }
    Err(no_size_in_head())
}

pub(crate) fn no_size_in_head() -> MediaError {
    MediaError::Corrupt(format!(
        "no image size in the first {} MiB of the header",
        HEAD_MAX / (1024 * 1024)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let mut out = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        out.extend_from_slice(&width.to_be_bytes());
        out.extend_from_slice(&height.to_be_bytes());
        out.extend_from_slice(&[8, 6, 0, 0, 0, 0, 0, 0, 0]);
        out.extend_from_slice(&PNG_IEND);
        out
    }

    #[test]
    fn png_header_and_end() {
        let info = probe_bytes(&png(123, 321)).unwrap();
        assert_eq!(
            (info.format, info.width, info.height),
            (ImageFormat::Png, 123, 321)
        );
        let mut cut = png(123, 321);
        cut.truncate(cut.len() - 1);
        let err = probe_bytes(&cut).unwrap_err().to_string();
        assert!(err.contains("truncated") && err.contains("IEND"), "{err}");
        assert!(
            probe_bytes(&png(0, 10))
                .unwrap_err()
                .to_string()
                .contains("0x10")
        );
    }

    #[test]
    fn jpeg_end_marker_allows_a_little_zero_padding() {
        // SOI, SOF0 (height 20, width 10), EOI.
        let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xC0, 0, 11, 8, 0, 20, 0, 10, 3, 0, 0, 0];
        jpeg.extend_from_slice(&[0xFF, 0xD9]);
        let info = probe_bytes(&jpeg).unwrap();
        assert_eq!((info.width, info.height), (10, 20));
        jpeg.extend_from_slice(&[0; 4]);
        assert!(probe_bytes(&jpeg).is_ok());
        jpeg.extend_from_slice(&[0; 20]);
        assert!(
            probe_bytes(&jpeg)
                .unwrap_err()
                .to_string()
                .contains("FF D9")
        );
    }

    #[test]
    fn webp_riff_size_must_match() {
        // VP8L: signature 0x2F, then 14-bit width-1 and height-1.
        let dims: u32 = (400 - 1) | ((500 - 1) << 14);
        let mut chunk = b"VP8L".to_vec();
        chunk.extend_from_slice(&5u32.to_le_bytes());
        chunk.push(0x2F);
        chunk.extend_from_slice(&dims.to_le_bytes());
        chunk.push(0);
        let mut webp = b"RIFF".to_vec();
        webp.extend_from_slice(&((4 + chunk.len()) as u32).to_le_bytes());
        webp.extend_from_slice(b"WEBP");
        webp.extend_from_slice(&chunk);
        let info = probe_bytes(&webp).unwrap();
        assert_eq!(
            (info.format, info.width, info.height),
            (ImageFormat::Webp, 400, 500)
        );
        let err = probe_bytes(&webp[..webp.len() - 1])
            .unwrap_err()
            .to_string();
        assert!(err.contains("truncated") && err.contains("RIFF"), "{err}");
        webp.push(0);
        assert!(
            probe_bytes(&webp)
                .unwrap_err()
                .to_string()
                .contains("extra data")
        );
    }

    #[test]
    fn other_formats_are_named() {
        let err = probe_bytes(b"GIF89a\x10\0\x10\0").unwrap_err();
        assert!(
            matches!(&err, MediaError::NotAnImage(m) if m.contains("GIF")),
            "{err}"
        );
        let err = probe_bytes(b"\x00\x01\x02").unwrap_err().to_string();
        assert!(
            err.contains("unrecognised") && !err.contains("00 01 02"),
            "{err}"
        );
        assert!(matches!(probe_bytes(b""), Err(MediaError::Empty)));
    }

    #[test]
    fn short_head_asks_for_more() {
        let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xE1, 0x01, 0x00];
        jpeg.extend_from_slice(&[0; 254]);
        jpeg.extend_from_slice(&[0xFF, 0xC0, 0, 11, 8, 0, 20, 0, 10, 3, 0, 0, 0, 0xFF, 0xD9]);
        let tail = &jpeg[jpeg.len() - 8..];
        assert_eq!(
            probe_parts(&jpeg[..100], tail, jpeg.len() as u64).unwrap(),
            None
        );
        let info = probe_parts(&jpeg, tail, jpeg.len() as u64)
            .unwrap()
            .unwrap();
        assert_eq!((info.width, info.height), (10, 20));
    }
}
