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

    let dir = media::probe_video_file(&fixture("")).unwrap_err();
    assert!(dir.to_string().contains("not a regular file"), "{dir}");
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
        #![proptest_config(ProptestConfig::with_cases(500))]

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
            // Flips land in the first 4 KiB, where the headers (and ref-6s.mp4's moov) are.
            let span = len.min(4096);
            for (at, value) in flips {
                bytes[(at * span as f64) as usize] = value;
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

/// A small file server on loopback: `/range/{name}` honours `Range: bytes=a-b` (206 with
/// Content-Range), `/whole/{name}` ignores ranges (200, whole file), `/endless` sends zeros
/// forever without a length; anything else is a 404. It counts the body bytes it sends.
mod over_http {
    use super::*;
    use axum::Router;
    use axum::body::{Body, Bytes};
    use axum::extract::{Path, State};
    use axum::http::{HeaderMap, StatusCode, header};
    use axum::response::{IntoResponse, Response};
    use axum::routing::get;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[derive(Clone)]
    struct Served {
        root: PathBuf,
        bytes: Arc<AtomicU64>,
    }

    struct Server {
        base: String,
        bytes: Arc<AtomicU64>,
    }

    impl Server {
        async fn start(root: PathBuf) -> Self {
            let bytes = Arc::new(AtomicU64::new(0));
            let app = Router::new()
                .route("/range/{name}", get(ranged))
                .route("/whole/{name}", get(whole))
                .route("/endless", get(endless))
                .with_state(Served {
                    root,
                    bytes: bytes.clone(),
                });
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
            Self { base, bytes }
        }

        fn url(&self, path: &str) -> String {
            format!("{}/{path}", self.base)
        }

        fn served(&self) -> u64 {
            self.bytes.load(Ordering::SeqCst)
        }
    }

    fn read(served: &Served, name: &str) -> Option<Vec<u8>> {
        std::fs::read(served.root.join(name)).ok()
    }

    fn send(served: &Served, status: StatusCode, headers: HeaderMap, body: Vec<u8>) -> Response {
        served.bytes.fetch_add(body.len() as u64, Ordering::SeqCst);
        (status, headers, body).into_response()
    }

    /// `bytes=a-b` -> `(a, b)`, clamped to the file; `None` when unsatisfiable.
    fn parse_range(value: &str, total: u64) -> Option<(u64, u64)> {
        let (a, b) = value.strip_prefix("bytes=")?.split_once('-')?;
        let a: u64 = a.parse().ok()?;
        let b: u64 = b.parse().unwrap_or(u64::MAX).min(total.checked_sub(1)?);
        (a <= b).then_some((a, b))
    }

    async fn ranged(
        State(served): State<Served>,
        Path(name): Path<String>,
        request: HeaderMap,
    ) -> Response {
        let Some(file) = read(&served, &name) else {
            return StatusCode::NOT_FOUND.into_response();
        };
        let total = file.len() as u64;
        let Some(range) = request.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
            return send(&served, StatusCode::OK, HeaderMap::new(), file);
        };
        let mut headers = HeaderMap::new();
        match parse_range(range, total) {
            Some((a, b)) => {
                let value = format!("bytes {a}-{b}/{total}");
                headers.insert(header::CONTENT_RANGE, value.parse().unwrap());
                let body = file[a as usize..=b as usize].to_vec();
                send(&served, StatusCode::PARTIAL_CONTENT, headers, body)
            }
            None => {
                let value = format!("bytes */{total}");
                headers.insert(header::CONTENT_RANGE, value.parse().unwrap());
                send(
                    &served,
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    headers,
                    Vec::new(),
                )
            }
        }
    }

    async fn whole(State(served): State<Served>, Path(name): Path<String>) -> Response {
        match read(&served, &name) {
            Some(file) => send(&served, StatusCode::OK, HeaderMap::new(), file),
            None => StatusCode::NOT_FOUND.into_response(),
        }
    }

    async fn endless(State(served): State<Served>) -> Response {
        let chunk = Bytes::from(vec![0u8; 64 * 1024]);
        let counter = served.bytes.clone();
        let stream = futures_util::stream::repeat_with(move || {
            counter.fetch_add(chunk.len() as u64, Ordering::SeqCst);
            Ok::<_, std::io::Error>(chunk.clone())
        });
        Body::from_stream(stream).into_response()
    }

    async fn fixtures_server() -> Server {
        Server::start(fixture("")).await
    }

    #[tokio::test]
    async fn videos_over_range_requests_read_only_the_headers() {
        let server = fixtures_server().await;
        let client = reqwest::Client::new();
        for name in [
            "ref-6s-moov-at-end.mp4",
            "ref-6s.mp4",
            "ref-4s.mov",
            "long-12s.mp4",
        ] {
            let before = server.served();
            let info = media::probe_video_url(&client, &server.url(&format!("range/{name}")))
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(info, video(name), "{name}");
            let fetched = server.served() - before;
            assert!(
                fetched * 10 < info.size_bytes,
                "{name}: fetched {fetched} of {} bytes",
                info.size_bytes
            );
        }
    }

    #[tokio::test]
    async fn videos_from_a_server_that_ignores_ranges() {
        let server = fixtures_server().await;
        let client = reqwest::Client::new();
        for name in ["ref-6s-moov-at-end.mp4", "ref-6s.mp4", "ref-4s.mov"] {
            let info = media::probe_video_url(&client, &server.url(&format!("whole/{name}")))
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(info, video(name), "{name}");
        }
    }

    #[tokio::test]
    async fn broken_videos_over_http() {
        let server = fixtures_server().await;
        let client = reqwest::Client::new();
        for mode in ["range", "whole"] {
            let probe = async |name: &str| {
                media::probe_video_url(&client, &server.url(&format!("{mode}/{name}"))).await
            };
            let err = probe("truncated.mp4").await.unwrap_err();
            assert!(err.to_string().contains("truncated"), "{mode}: {err}");
            let err = probe("png-pretending.mp4").await.unwrap_err();
            assert!(
                err.to_string().contains("this is a PNG image"),
                "{mode}: {err}"
            );
            let err = probe("empty.mp4").await.unwrap_err();
            assert!(matches!(err, MediaError::Empty), "{mode}: {err:?}");
        }
    }

    #[tokio::test]
    async fn http_errors_name_the_url_and_status() {
        let server = fixtures_server().await;
        let client = reqwest::Client::new();
        let url = server.url("range/no-such-file.mp4");
        let err = media::probe_video_url(&client, &url).await.unwrap_err();
        let MediaError::Http { url: named, reason } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(named, &url);
        assert!(reason.contains("404"), "{reason}");
        assert!(err.to_string().contains(&url));
        let err = media::probe_image_url(&client, &server.url("nowhere"))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("404"), "{err}");

        // Nothing listens on a port we just let go of.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}/x.mp4");
        let err = media::probe_video_url(&client, &url).await.unwrap_err();
        assert!(
            matches!(&err, MediaError::Http { url: u, .. } if u == &url),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn images_over_http() {
        let server = fixtures_server().await;
        let client = reqwest::Client::new();
        for mode in ["range", "whole"] {
            for name in [
                "subject.png",
                "subject.jpg",
                "subject.webp",
                "png-pretending.jpg",
            ] {
                let info = media::probe_image_url(&client, &server.url(&format!("{mode}/{name}")))
                    .await
                    .unwrap_or_else(|e| panic!("{mode}/{name}: {e}"));
                assert_eq!(info, image(name), "{mode}/{name}");
            }
            let probe = async |name: &str| {
                media::probe_image_url(&client, &server.url(&format!("{mode}/{name}"))).await
            };
            let err = probe("truncated.png").await.unwrap_err();
            assert!(err.to_string().contains("truncated"), "{mode}: {err}");
            assert!(matches!(probe("empty.mp4").await, Err(MediaError::Empty)));
            let err = probe("ref-6s.mp4").await.unwrap_err();
            assert!(matches!(err, MediaError::NotAnImage(_)), "{mode}: {err:?}");
        }
    }

    /// A PNG with a large ancillary chunk: over ranges only its head and tail travel.
    #[tokio::test]
    async fn large_image_is_read_at_both_ends_only() {
        let png = std::fs::read(fixture("subject.png")).unwrap();
        let (body, iend) = png.split_at(png.len() - 12);
        let filler = vec![b'x'; 400_000];
        let mut chunk = (filler.len() as u32).to_be_bytes().to_vec();
        chunk.extend_from_slice(b"zTXt");
        chunk.extend_from_slice(&filler);
        chunk.extend_from_slice(&[0; 4]);
        let big = [body, &chunk, iend].concat();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("big.png"), &big).unwrap();

        let server = Server::start(dir.path().to_path_buf()).await;
        let client = reqwest::Client::new();
        let info = media::probe_image_url(&client, &server.url("range/big.png"))
            .await
            .unwrap();
        assert_eq!(
            (info.format, info.width, info.height),
            (ImageFormat::Png, 400, 600)
        );
        assert_eq!(info.size_bytes, big.len() as u64);
        assert!(
            server.served() < 100_000,
            "fetched {} of {}",
            server.served(),
            big.len()
        );
    }

    #[tokio::test]
    async fn endless_bodies_are_cut_off() {
        let server = fixtures_server().await;
        let client = reqwest::Client::new();
        let err = media::probe_image_url(&client, &server.url("endless"))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, MediaError::Http { reason, .. } if reason.contains("MiB")),
            "{err:?}"
        );
        assert!(
            server.served() < 64 * 1024 * 1024,
            "read {} bytes",
            server.served()
        );
    }
}
