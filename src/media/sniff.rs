//! What a file's first bytes say it is, so a wrong input can be named ("this is a PNG image")
//! instead of merely refused.
//!
//! Owns: magic-number recognition of the formats people plausibly hand us by mistake.
//! May not: parse past the first few dozen bytes, or decide what is acceptable (the probes do).

/// The accepted image formats, recognised by magic bytes alone.
pub(crate) fn image_format(head: &[u8]) -> Option<super::ImageFormat> {
    use super::ImageFormat;
    if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(ImageFormat::Png)
    } else if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(ImageFormat::Jpeg)
    } else if head.len() >= 12 && &head[0..4] == b"RIFF" && &head[8..12] == b"WEBP" {
        Some(ImageFormat::Webp)
    } else {
        None
    }
}

/// A phrase naming what the bytes look like ("a PNG image"), when we can tell.
pub(crate) fn describe(head: &[u8]) -> Option<&'static str> {
    use super::ImageFormat;
    if let Some(format) = image_format(head) {
        return Some(match format {
            ImageFormat::Png => "a PNG image",
            ImageFormat::Jpeg => "a JPEG image",
            ImageFormat::Webp => "a WebP image",
        });
    }
    let starts = |magic: &[u8]| head.starts_with(magic);
    if starts(b"GIF87a") || starts(b"GIF89a") {
        return Some("a GIF image");
    }
    if starts(b"II*\0") || starts(b"MM\0*") {
        return Some("a TIFF image");
    }
    if starts(b"BM") && head.len() >= 14 && head[6..10] == [0, 0, 0, 0] {
        // Bytes 6..10 are reserved zeros in every BMP; "BM" alone is too common a prefix.
        return Some("a BMP image");
    }
    if starts(b"\0\0\x01\0") && head.len() >= 6 {
        return Some("an ICO icon");
    }
    if head.len() >= 12 && &head[4..8] == b"ftyp" {
        return Some(ftyp_brand(&head[8..12]));
    }
    if head.len() >= 12 && starts(b"RIFF") {
        match &head[8..12] {
            b"AVI " => return Some("an AVI video"),
            b"WAVE" => return Some("a WAV audio file"),
            _ => {}
        }
    }
    if starts(&[0x1A, 0x45, 0xDF, 0xA3]) {
        return Some("a Matroska/WebM video");
    }
    if starts(b"ID3") {
        return Some("an MP3 audio file");
    }
    if starts(b"OggS") {
        return Some("an Ogg media file");
    }
    if starts(b"%PDF") {
        return Some("a PDF document");
    }
    if starts(b"PK\x03\x04") {
        return Some("a ZIP archive");
    }
    if starts(b"\x1f\x8b") {
        return Some("a gzip archive");
    }
    describe_text(head)
}

/// What an ISO-BMFF file is, from the major brand in its `ftyp` box.
pub(crate) fn ftyp_brand(brand: &[u8]) -> &'static str {
    match brand {
        b"heic" | b"heix" | b"heim" | b"heis" | b"hevc" | b"hevx" | b"mif1" | b"msf1" => {
            "a HEIF/HEIC image"
        }
        b"avif" | b"avis" => "an AVIF image",
        b"M4A " | b"M4B " => "an M4A audio file",
        b"qt  " => "a MOV video",
        _ => "an MP4 video",
    }
}

/// Servers answer a wrong URL with a 200 and an HTML page often enough that it deserves a name.
fn describe_text(head: &[u8]) -> Option<&'static str> {
    let text = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    let start = text.iter().position(|b| !b.is_ascii_whitespace())?;
    let text = &text[start..];
    let lower: Vec<u8> = text.iter().take(512).map(u8::to_ascii_lowercase).collect();
    let contains = |needle: &[u8]| lower.windows(needle.len()).any(|w| w == needle);
    if lower.starts_with(b"<!doctype html") || lower.starts_with(b"<html") || contains(b"<html") {
        Some("an HTML page")
    } else if lower.starts_with(b"<") && contains(b"<svg") {
        Some("an SVG image")
    } else if lower.starts_with(b"<?xml") {
        Some("an XML document")
    } else if lower.starts_with(b"{") || lower.starts_with(b"[") {
        Some("JSON or other text")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::ImageFormat;

    #[test]
    fn accepted_images_by_magic() {
        assert_eq!(
            image_format(b"\x89PNG\r\n\x1a\n...."),
            Some(ImageFormat::Png)
        );
        assert_eq!(
            image_format(&[0xFF, 0xD8, 0xFF, 0xE0]),
            Some(ImageFormat::Jpeg)
        );
        assert_eq!(
            image_format(b"RIFF\0\0\0\0WEBPVP8 "),
            Some(ImageFormat::Webp)
        );
        assert_eq!(image_format(b"RIFF\0\0\0\0WAVEfmt "), None);
        assert_eq!(image_format(b""), None);
    }

    #[test]
    fn names_common_mistakes() {
        assert_eq!(describe(b"GIF89a\x01\0"), Some("a GIF image"));
        assert_eq!(
            describe(b"\0\0\0\x18ftypheic\0\0\0\0"),
            Some("a HEIF/HEIC image")
        );
        assert_eq!(describe(b"\0\0\0\x14ftypqt  \0\0\0\0"), Some("a MOV video"));
        assert_eq!(describe(b"  <!DOCTYPE html><html>"), Some("an HTML page"));
        assert_eq!(describe(b"%PDF-1.7"), Some("a PDF document"));
        assert_eq!(describe(b"\x01\x02\x03"), None);
        assert_eq!(describe(b""), None);
    }
}
