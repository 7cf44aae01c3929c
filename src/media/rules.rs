//! The provider's input rules (`REAPI.md`, "Input rules"), checked on probed media before any
//! money is spent, and the check that a file's extension tells the truth about its content.
//!
//! Owns: the numbers (as named consts) and the wording of each violation: what is wrong and what
//! is allowed, so a user can fix it without reading the provider's docs.
//! May not: probe anything itself; it judges a [`VideoInfo`] or [`ImageInfo`] it is given.

use super::{Container, ImageFormat, ImageInfo, Orientation, RuleViolation, VideoInfo};

pub const VIDEO_MIN_DURATION_MS: u64 = 3_000;
pub const VIDEO_MAX_DURATION_MS: u64 = 30_000;
/// With `character_orientation: image` the provider takes at most this much video.
pub const VIDEO_MAX_DURATION_IMAGE_ORIENTATION_MS: u64 = 10_000;
/// "100 MB", read as decimal megabytes: the stricter reading never lets a rejected file through.
pub const VIDEO_MAX_BYTES: u64 = 100_000_000;
pub const VIDEO_MIN_SIDE_PX: u32 = 340;
pub const VIDEO_MAX_SIDE_PX: u32 = 3_850;

/// "10 MB", decimal, for the same reason as [`VIDEO_MAX_BYTES`].
pub const IMAGE_MAX_BYTES: u64 = 10_000_000;
/// Some gateways say 340; the provider's own page says 300.
pub const IMAGE_MIN_SIDE_PX: u32 = 300;
/// The long side may be at most 2.5 times the short side (1:2.5 to 2.5:1, inclusive), as the
/// fraction `NUM / DEN` so the comparison stays in integers.
pub const IMAGE_MAX_ASPECT_NUM: u64 = 5;
pub const IMAGE_MAX_ASPECT_DEN: u64 = 2;

fn violation(rule: &'static str, message: String) -> RuleViolation {
    RuleViolation { rule, message }
}

/// Seconds without a misleading rounding: 10.04 s must not print as "10.0 s" next to "at most 10 s".
fn secs(ms: u64) -> String {
    let whole = format!("{}.{:03}", ms / 1000, ms % 1000);
    let trimmed = whole.trim_end_matches('0');
    if trimmed.ends_with('.') {
        format!("{trimmed}0")
    } else {
        trimmed.to_owned()
    }
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1_000_000.0)
}

pub(super) fn check_video(info: &VideoInfo, orientation: Orientation) -> Vec<RuleViolation> {
    let mut out = Vec::new();
    let long = secs(info.duration_ms);
    if info.duration_ms < VIDEO_MIN_DURATION_MS {
        out.push(violation(
            "duration",
            format!(
                "video is {long} s long; the provider needs at least {} s",
                VIDEO_MIN_DURATION_MS / 1000
            ),
        ));
    } else if info.duration_ms > VIDEO_MAX_DURATION_MS {
        out.push(violation(
            "duration",
            format!(
                "video is {long} s long; the provider allows at most {} s",
                VIDEO_MAX_DURATION_MS / 1000
            ),
        ));
    } else if orientation == Orientation::Image
        && info.duration_ms > VIDEO_MAX_DURATION_IMAGE_ORIENTATION_MS
    {
        out.push(violation(
            "duration",
            format!(
                "video is {long} s long; orientation `image` allows at most {} s (use \
                 `character_orientation: video` for up to {} s)",
                VIDEO_MAX_DURATION_IMAGE_ORIENTATION_MS / 1000,
                VIDEO_MAX_DURATION_MS / 1000
            ),
        ));
    }
    if info.size_bytes > VIDEO_MAX_BYTES {
        out.push(violation(
            "size",
            format!(
                "video is {} ({} bytes); the provider allows at most {}",
                megabytes(info.size_bytes),
                info.size_bytes,
                megabytes(VIDEO_MAX_BYTES)
            ),
        ));
    }
    let sides = [
        ("width", "wide", info.width),
        ("height", "high", info.height),
    ];
    for (rule, adjective, px) in sides {
        if !(VIDEO_MIN_SIDE_PX..=VIDEO_MAX_SIDE_PX).contains(&px) {
            out.push(violation(
                rule,
                format!(
                    "video is {px} px {adjective}; its {rule} must be {VIDEO_MIN_SIDE_PX} to \
                     {VIDEO_MAX_SIDE_PX} px"
                ),
            ));
        }
    }
    out
}

pub(super) fn check_image(info: &ImageInfo) -> Vec<RuleViolation> {
    let mut out = Vec::new();
    if info.size_bytes > IMAGE_MAX_BYTES {
        out.push(violation(
            "size",
            format!(
                "image is {} ({} bytes); the provider allows at most {}",
                megabytes(info.size_bytes),
                info.size_bytes,
                megabytes(IMAGE_MAX_BYTES)
            ),
        ));
    }
    let sides = [
        ("width", "wide", info.width),
        ("height", "high", info.height),
    ];
    for (rule, adjective, px) in sides {
        if px < IMAGE_MIN_SIDE_PX {
            out.push(violation(
                rule,
                format!(
                    "image is {px} px {adjective}; its {rule} must be at least {IMAGE_MIN_SIDE_PX} px"
                ),
            ));
        }
    }
    let (w, h) = (u64::from(info.width), u64::from(info.height));
    let (long, short) = (w.max(h), w.min(h));
    if long * IMAGE_MAX_ASPECT_DEN > short * IMAGE_MAX_ASPECT_NUM {
        let ratio = long as f64 / short.max(1) as f64;
        let shape = if w >= h {
            format!("{ratio:.2}:1")
        } else {
            format!("1:{ratio:.2}")
        };
        out.push(violation(
            "aspect_ratio",
            format!(
                "image is {w}x{h} px, an aspect ratio of {shape}; the provider allows 1:2.5 to \
                 2.5:1 (crop it)"
            ),
        ));
    }
    out
}

/// The extension of a file name or URL path, lowercased; `None` without one.
fn extension(name: &str) -> Option<String> {
    // A URL's query and fragment are not part of its file name.
    let path = name.split(['?', '#']).next().unwrap_or(name);
    let file = path.rsplit(['/', '\\']).next().unwrap_or(path);
    let (stem, ext) = file.rsplit_once('.')?;
    (!stem.is_empty() && !ext.is_empty()).then(|| ext.to_ascii_lowercase())
}

/// What a known media extension claims the content is.
fn claimed(ext: &str) -> Option<&'static str> {
    Some(match ext {
        "jpg" | "jpeg" | "jpe" | "jfif" => "a JPEG image",
        "png" => "a PNG image",
        "webp" => "a WebP image",
        "gif" => "a GIF image",
        "bmp" => "a BMP image",
        "tif" | "tiff" => "a TIFF image",
        "heic" | "heif" => "a HEIF/HEIC image",
        "avif" => "an AVIF image",
        "mp4" | "m4v" => "an MP4 video",
        "mov" | "qt" => "a MOV video",
        "webm" | "mkv" => "a Matroska/WebM video",
        "avi" => "an AVI video",
        _ => return None,
    })
}

fn check_claim(name: &str, actual: &'static str) -> Option<RuleViolation> {
    let ext = extension(name)?;
    let claim = claimed(&ext)?;
    (claim != actual).then(|| {
        violation(
            "extension",
            format!(
                "`{name}` is named like {claim} (`.{ext}`) but its content is {actual}; rename it \
                 so tools that trust the extension are not misled"
            ),
        )
    })
}

/// A violation when `name`'s extension claims a different format than the content has
/// (`png-pretending.jpg`). Names without a known media extension pass; `.jpg` and `.jpeg` are
/// the same thing.
pub fn check_extension(name: &str, detected: ImageFormat) -> Option<RuleViolation> {
    let actual = match detected {
        ImageFormat::Jpeg => "a JPEG image",
        ImageFormat::Png => "a PNG image",
        ImageFormat::Webp => "a WebP image",
    };
    check_claim(name, actual)
}

/// The video counterpart of [`check_extension`]: `.mp4`/`.m4v` for MP4, `.mov`/`.qt` for MOV.
pub fn check_video_extension(name: &str, detected: Container) -> Option<RuleViolation> {
    let actual = match detected {
        Container::Mp4 => "an MP4 video",
        Container::Mov => "a MOV video",
    };
    check_claim(name, actual)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn video(duration_ms: u64, width: u32, height: u32, size_bytes: u64) -> VideoInfo {
        VideoInfo {
            container: Container::Mp4,
            duration_ms,
            width,
            height,
            size_bytes,
        }
    }

    fn image(width: u32, height: u32, size_bytes: u64) -> ImageInfo {
        ImageInfo {
            format: ImageFormat::Png,
            width,
            height,
            size_bytes,
        }
    }

    fn rules(v: &[RuleViolation]) -> Vec<&'static str> {
        v.iter().map(|v| v.rule).collect()
    }

    #[test]
    fn seconds_print_without_misleading_rounding() {
        assert_eq!(secs(12_000), "12.0");
        assert_eq!(secs(10_040), "10.04");
        assert_eq!(secs(10_001), "10.001");
        assert_eq!(secs(0), "0.0");
    }

    #[test]
    fn video_duration_bounds_are_inclusive() {
        let ok = |ms, o| check_video(&video(ms, 360, 640, 1000), o).is_empty();
        assert!(ok(3_000, Orientation::Image));
        assert!(!ok(2_999, Orientation::Video));
        assert!(ok(10_000, Orientation::Image));
        assert!(!ok(10_001, Orientation::Image));
        assert!(ok(30_000, Orientation::Video));
        assert!(!ok(30_001, Orientation::Video));
    }

    #[test]
    fn video_messages_say_what_is_allowed() {
        let v = check_video(&video(12_000, 360, 640, 1000), Orientation::Image);
        assert_eq!(
            v[0].message,
            "video is 12.0 s long; orientation `image` allows at most 10 s (use \
             `character_orientation: video` for up to 30 s)"
        );
        let v = check_video(&video(31_000, 339, 3851, 100_000_001), Orientation::Video);
        assert_eq!(rules(&v), ["duration", "size", "width", "height"]);
        assert_eq!(
            v[0].message,
            "video is 31.0 s long; the provider allows at most 30 s"
        );
        assert!(
            v[1].message.contains("100.0 MB (100000001 bytes)"),
            "{}",
            v[1].message
        );
        assert_eq!(
            v[2].message,
            "video is 339 px wide; its width must be 340 to 3850 px"
        );
        assert!(check_video(&video(5_000, 340, 3850, 100_000_000), Orientation::Video).is_empty());
    }

    #[test]
    fn image_rules() {
        assert!(check_image(&image(300, 750, 10_000_000)).is_empty());
        assert!(check_image(&image(750, 300, 1)).is_empty());
        let v = check_image(&image(299, 751, 10_000_001));
        assert_eq!(rules(&v), ["size", "width", "aspect_ratio"]);
        let v = check_image(&image(1200, 300, 1));
        assert_eq!(
            v[0].message,
            "image is 1200x300 px, an aspect ratio of 4.00:1; the provider allows 1:2.5 to 2.5:1 \
             (crop it)"
        );
        assert!(
            check_image(&image(0, 0, 1))
                .iter()
                .any(|v| v.rule == "height")
        );
    }

    #[test]
    fn extensions() {
        assert!(check_extension("a/b/photo.JPEG", ImageFormat::Jpeg).is_none());
        assert!(check_extension("photo.jpg", ImageFormat::Jpeg).is_none());
        assert!(check_extension("photo", ImageFormat::Png).is_none());
        assert!(check_extension(".hidden", ImageFormat::Png).is_none());
        assert!(check_extension("https://x.test/img?id=3.jpg", ImageFormat::Png).is_none());
        assert!(check_extension("https://x.test/a.png?v=2", ImageFormat::Png).is_none());
        assert!(check_extension("notes.txt", ImageFormat::Png).is_none());
        let v = check_extension("png-pretending.jpg", ImageFormat::Png).unwrap();
        assert_eq!(v.rule, "extension");
        assert!(
            v.message.contains("JPEG") && v.message.contains("PNG"),
            "{}",
            v.message
        );
        assert!(check_video_extension("clip.MOV", Container::Mov).is_none());
        assert!(check_video_extension("clip.mov", Container::Mp4).is_some());
        assert!(check_video_extension("clip.png", Container::Mp4).is_some());
    }
}
