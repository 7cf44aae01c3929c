//! Integration tests of the `media` module: the real fixtures in `tests/fixtures/media/`, probed
//! from disk, from memory and over HTTP from a small range-honouring server started here.

use recast::media::{self, Container, ImageFormat, ImageInfo, MediaError, Orientation, VideoInfo};
use std::path::PathBuf;

// Paths are built here rather than with `crate::helper`: until Cargo.toml sets
// `autotests = false`, cargo also builds this file as a test target of its own, without `helper`.
fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> PathBuf {
    repo_root().join("tests/fixtures/media").join(name)
}

fn video(name: &str) -> VideoInfo {
    let path = fixture(name);
    let info = media::probe_video_file(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(
        media::probe_video_bytes(&bytes).unwrap(),
        info,
        "{name}: bytes vs file"
    );
    info
}

fn image(name: &str) -> ImageInfo {
    let path = fixture(name);
    let info = media::probe_image_file(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(
        media::probe_image_bytes(&bytes).unwrap(),
        info,
        "{name}: bytes vs file"
    );
    info
}

fn video_err(name: &str) -> MediaError {
    let path = fixture(name);
    let err = media::probe_video_file(&path).expect_err(name);
    let bytes = std::fs::read(&path).unwrap();
    let from_bytes = media::probe_video_bytes(&bytes).expect_err(name);
    assert_eq!(
        err.to_string(),
        from_bytes.to_string(),
        "{name}: bytes vs file"
    );
    err
}

fn image_err(name: &str) -> MediaError {
    let path = fixture(name);
    let err = media::probe_image_file(&path).expect_err(name);
    let bytes = std::fs::read(&path).unwrap();
    let from_bytes = media::probe_image_bytes(&bytes).expect_err(name);
    assert_eq!(
        err.to_string(),
        from_bytes.to_string(),
        "{name}: bytes vs file"
    );
    err
}

fn file_len(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

#[test]
fn reference_videos() {
    let cases = [
        ("ref-6s.mp4", Container::Mp4, 6_000, 360, 640),
        ("ref-6s-moov-at-end.mp4", Container::Mp4, 6_000, 360, 640),
        ("ref-4s.mov", Container::Mov, 4_000, 360, 640),
        ("long-12s.mp4", Container::Mp4, 12_000, 360, 640),
        ("short-2s.mp4", Container::Mp4, 2_000, 360, 640),
        ("silent-5s.mp4", Container::Mp4, 5_000, 360, 640),
        ("tiny-video-200.mp4", Container::Mp4, 4_000, 200, 200),
    ];
    for (name, container, duration_ms, width, height) in cases {
        let info = video(name);
        let expected = VideoInfo {
            container,
            duration_ms,
            width,
            height,
            size_bytes: file_len(&fixture(name)),
        };
        assert_eq!(info, expected, "{name}");
    }
}

#[test]
fn example_dance_is_exactly_five_seconds() {
    let path = repo_root().join("examples/media/dance-5s.mp4");
    let info = media::probe_video_file(&path).unwrap();
    assert_eq!(info.duration_ms, 5_000);
    assert_eq!(
        (info.width, info.height, info.container),
        (360, 640, Container::Mp4)
    );
    assert_eq!(info.size_bytes, 103_663);
    assert!(media::check_video(&info, Orientation::Image).is_empty());
}

#[test]
fn video_rules_on_fixtures() {
    assert!(media::check_video(&video("ref-6s.mp4"), Orientation::Image).is_empty());
    assert!(media::check_video(&video("ref-4s.mov"), Orientation::Video).is_empty());

    let long = video("long-12s.mp4");
    assert!(media::check_video(&long, Orientation::Video).is_empty());
    let v = media::check_video(&long, Orientation::Image);
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].rule, "duration");
    assert_eq!(
        v[0].message,
        "video is 12.0 s long; orientation `image` allows at most 10 s (use \
         `character_orientation: video` for up to 30 s)"
    );

    let v = media::check_video(&video("short-2s.mp4"), Orientation::Video);
    assert_eq!(v.len(), 1);
    assert_eq!(
        v[0].message,
        "video is 2.0 s long; the provider needs at least 3 s"
    );

    let v = media::check_video(&video("tiny-video-200.mp4"), Orientation::Video);
    let rules: Vec<_> = v.iter().map(|v| v.rule).collect();
    assert_eq!(rules, ["width", "height"]);
    assert_eq!(
        v[0].message,
        "video is 200 px wide; its width must be 340 to 3850 px"
    );
    assert_eq!(
        v[1].message,
        "video is 200 px high; its height must be 340 to 3850 px"
    );

    let mut big = video("ref-6s.mp4");
    big.size_bytes = 150_000_000;
    let v = media::check_video(&big, Orientation::Video);
    assert_eq!(v[0].rule, "size");
    assert!(v[0].message.contains("150.0 MB") && v[0].message.contains("at most 100.0 MB"));
}

#[test]
fn malformed_videos() {
    let err = video_err("truncated.mp4");
    assert!(matches!(err, MediaError::Corrupt(_)), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("truncated") && msg.contains("`moov`") && msg.contains("3000"),
        "{msg}"
    );

    let err = video_err("png-pretending.mp4");
    assert!(matches!(err, MediaError::NotAVideo(_)), "{err:?}");
    assert!(
        err.to_string()
            .contains("this is a PNG image, not an MP4/MOV video"),
        "{err}"
    );

    assert!(matches!(video_err("empty.mp4"), MediaError::Empty));
    assert!(matches!(video_err("subject.jpg"), MediaError::NotAVideo(m) if m.contains("JPEG")));
    assert!(matches!(video_err("subject.webp"), MediaError::NotAVideo(m) if m.contains("WebP")));

    let missing = media::probe_video_file(&fixture("no-such-file.mp4")).unwrap_err();
    assert!(matches!(&missing, MediaError::Io { what, .. } if what.ends_with("no-such-file.mp4")));
}

#[test]
fn subject_images() {
    let cases = [
        ("subject.png", ImageFormat::Png, 400, 600),
        ("subject.jpg", ImageFormat::Jpeg, 480, 640),
        ("subject.webp", ImageFormat::Webp, 400, 500),
        ("too-small-200.png", ImageFormat::Png, 200, 200),
        ("too-wide-1200x300.png", ImageFormat::Png, 1200, 300),
        // The content decides, not the name.
        ("png-pretending.jpg", ImageFormat::Png, 400, 600),
        ("png-pretending.mp4", ImageFormat::Png, 400, 600),
    ];
    for (name, format, width, height) in cases {
        let expected = ImageInfo {
            format,
            width,
            height,
            size_bytes: file_len(&fixture(name)),
        };
        assert_eq!(image(name), expected, "{name}");
    }
}

#[test]
fn image_rules_on_fixtures() {
    for name in ["subject.png", "subject.jpg", "subject.webp"] {
        assert!(media::check_image(&image(name)).is_empty(), "{name}");
    }
    let v = media::check_image(&image("too-small-200.png"));
    let rules: Vec<_> = v.iter().map(|v| v.rule).collect();
    assert_eq!(rules, ["width", "height"]);
    assert_eq!(
        v[0].message,
        "image is 200 px wide; its width must be at least 300 px"
    );

    let v = media::check_image(&image("too-wide-1200x300.png"));
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].rule, "aspect_ratio");
    assert!(v[0].message.contains("1200x300") && v[0].message.contains("1:2.5 to 2.5:1"));

    let mut heavy = image("subject.png");
    heavy.size_bytes = 12_000_000;
    let v = media::check_image(&heavy);
    assert_eq!(v[0].rule, "size");
    assert!(v[0].message.contains("12.0 MB") && v[0].message.contains("at most 10.0 MB"));
}

#[test]
fn lying_extensions() {
    let info = image("png-pretending.jpg");
    let v = media::check_extension("png-pretending.jpg", info.format).unwrap();
    assert_eq!(v.rule, "extension");
    assert!(
        v.message.contains("JPEG") && v.message.contains("PNG"),
        "{}",
        v.message
    );
    assert!(media::check_extension("subject.jpeg", image("subject.jpg").format).is_none());
    assert!(media::check_extension("https://cdn.test/subject", ImageFormat::Webp).is_none());

    let mov = video("ref-4s.mov");
    assert!(media::check_video_extension("ref-4s.mov", mov.container).is_none());
    assert!(media::check_video_extension("ref-4s.mp4", mov.container).is_some());
}

#[test]
fn malformed_images() {
    let err = image_err("truncated.png");
    assert!(matches!(err, MediaError::Corrupt(_)), "{err:?}");
    assert!(err.to_string().contains("truncated"), "{err}");

    let err = image_err("ref-6s.mp4");
    assert!(
        matches!(&err, MediaError::NotAnImage(m) if m.contains("MP4 video")),
        "{err:?}"
    );
    assert!(matches!(image_err("empty.mp4"), MediaError::Empty));

    let dir = tempfile::tempdir().unwrap();
    let cut = |name: &str, keep: usize| {
        let bytes = std::fs::read(fixture(name)).unwrap();
        let path = dir.path().join(format!("cut-{name}"));
        std::fs::write(&path, &bytes[..keep.min(bytes.len())]).unwrap();
        media::probe_image_file(&path).unwrap_err().to_string()
    };
    let jpeg_len = file_len(&fixture("subject.jpg")) as usize;
    assert!(cut("subject.jpg", jpeg_len - 100).contains("truncated"));
    let webp_len = file_len(&fixture("subject.webp")) as usize;
    assert!(cut("subject.webp", webp_len - 1).contains("truncated"));

    let gif = dir.path().join("anim.gif");
    std::fs::write(&gif, b"GIF89a\x90\x01\x90\x01\0\0\0;").unwrap();
    let err = media::probe_image_file(&gif).unwrap_err();
    assert!(
        matches!(&err, MediaError::NotAnImage(m) if m.contains("GIF")),
        "{err:?}"
    );
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn fixtures() -> Vec<Vec<u8>> {
        [
            "ref-6s.mp4",
            "ref-4s.mov",
            "subject.png",
            "subject.jpg",
            "subject.webp",
        ]
        .iter()
        .map(|name| std::fs::read(fixture(name)).unwrap())
        .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = media::probe_video_bytes(&bytes);
            let _ = media::probe_image_bytes(&bytes);
        }

        #[test]
        fn truncations_and_flips_never_panic(
            which in 0usize..5,
            keep in 0.0f64..1.0,
            flips in proptest::collection::vec((0.0f64..1.0, any::<u8>()), 0..8),
        ) {
            let mut bytes = fixtures().swap_remove(which);
            let len = bytes.len();
            for (at, value) in flips {
                bytes[(at * len as f64) as usize] = value;
            }
            bytes.truncate((keep * len as f64) as usize);
            let _ = media::probe_video_bytes(&bytes);
            let _ = media::probe_image_bytes(&bytes);
        }
    }

    #[test]
    fn every_truncation_of_a_video_header_is_an_error() {
        let bytes = std::fs::read(fixture("ref-6s-moov-at-end.mp4")).unwrap();
        // Cuts inside the moov box or its header, and one byte short of the end.
        for keep in (bytes.len() - 3_500..bytes.len()).step_by(7) {
            let err = media::probe_video_bytes(&bytes[..keep]).unwrap_err();
            assert!(err.to_string().contains("truncated"), "{keep}: {err}");
        }
    }
}
