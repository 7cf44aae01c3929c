//! Hostile answers from a real local HTTP server: endless bodies, huge `Content-Length`,
//! absurd `Retry-After`, task ids built to move the poll URL. Every outcome is a typed error,
//! memory stays bounded, and nothing waits for ever.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use recast::provider::{
    ApiKey, HttpProvider, HttpProviderConfig, MAX_PROVIDER_WAIT, Provider, ProviderError,
    SubmitRequest,
};

/// A server answering every request with `answer`, noting the paths it was asked for.
async fn serve(answer: fn() -> Response) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let noted = seen.clone();
    let handler = move |uri: Uri, _: HeaderMap| {
        let noted = noted.clone();
        async move {
            noted.lock().unwrap().push(uri.to_string());
            answer()
        }
    };
    let app = Router::new()
        .route("/api/v1/videos/generations", post(handler.clone()))
        .fallback(get(handler));
    (serve_app(app).await, seen)
}

/// Serve `app` on a free loopback port until the test ends.
async fn serve_app(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn client(addr: SocketAddr) -> HttpProvider {
    HttpProvider::new(HttpProviderConfig {
        base_url: format!("http://{addr}"),
        api_key: ApiKey::new("hostile-test-key").unwrap(),
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(20),
        max_wait: MAX_PROVIDER_WAIT,
    })
    .unwrap()
}

fn request() -> SubmitRequest {
    serde_json::from_value(serde_json::json!({
        "model": "kling-v3-motion-control",
        "image_url": "https://cdn.example.com/a.png",
        "video_url": "https://cdn.example.com/v.mp4",
        "character_orientation": "image",
        "mode": "std",
        "keep_original_sound": true
    }))
    .unwrap()
}

/// An answer that never ends: 1 MiB chunks for ever.
fn endless() -> Response {
    let chunk = bytes::Bytes::from(vec![b'{'; 1 << 20]);
    let stream = futures_util::stream::repeat_with(move || Ok::<_, std::io::Error>(chunk.clone()));
    (StatusCode::OK, Body::from_stream(stream)).into_response()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_answer_is_cut_off_and_the_submit_is_unknown_not_retried() {
    let (addr, _) = serve(endless).await;
    let answer = client(addr).submit(&request(), "k-1").await;
    match answer {
        Err(ProviderError::Ambiguous(why)) => assert!(why.contains("MiB"), "{why}"),
        other => panic!("expected an unknown outcome, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_announced_answer_is_not_read() {
    fn huge() -> Response {
        let mut r = (StatusCode::OK, "{}").into_response();
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, "10000000000".parse().unwrap());
        r
    }
    let (addr, _) = serve(huge).await;
    let answer = client(addr).poll("task-1").await;
    assert!(
        matches!(answer, Err(ProviderError::Ambiguous(_))),
        "{answer:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absurd_retry_after_is_capped_at_an_hour() {
    fn forever() -> Response {
        let mut r = (StatusCode::TOO_MANY_REQUESTS, "{}").into_response();
        r.headers_mut()
            .insert(header::RETRY_AFTER, "18446744073709551615".parse().unwrap());
        r
    }
    fn far_date() -> Response {
        let mut r = (StatusCode::TOO_MANY_REQUESTS, "{}").into_response();
        r.headers_mut().insert(
            header::RETRY_AFTER,
            "Fri, 31 Dec 9999 23:59:59 GMT".parse().unwrap(),
        );
        r
    }
    for answer in [forever as fn() -> Response, far_date] {
        let (addr, _) = serve(answer).await;
        match client(addr).submit(&request(), "k-1").await {
            Err(ProviderError::RateLimited {
                retry_after: Some(wait),
            }) => assert!(wait <= MAX_PROVIDER_WAIT, "{wait:?}"),
            other => panic!("expected a capped rate limit, got {other:?}"),
        }
    }
    // A pacing told to wait that long still answers promptly when asked to stop waiting.
    let pacing = recast::engine::Pacing::new(60, 1);
    pacing.rate_limited(Some(MAX_PROVIDER_WAIT), tokio::time::Instant::now());
    assert!(
        tokio::time::timeout(Duration::from_millis(50), pacing.acquire())
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_id_built_to_move_the_poll_url_is_never_sent() {
    fn hostile_id() -> Response {
        (StatusCode::OK, r#"{"id":"../../admin/keys?dump=1#"}"#).into_response()
    }
    let (addr, seen) = serve(hostile_id).await;
    let provider = client(addr);
    let answer = provider.submit(&request(), "k-1").await;
    assert!(
        matches!(answer, Err(ProviderError::Ambiguous(_))),
        "{answer:?}"
    );
    let poll = provider.poll("../../admin/keys?dump=1#").await;
    assert!(
        matches!(poll, Err(ProviderError::TaskNotFound { .. })),
        "{poll:?}"
    );
    assert_eq!(
        *seen.lock().unwrap(),
        ["/api/v1/videos/generations"],
        "only the submit reached the server"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_or_a_link_planted_at_a_clips_name_is_neither_read_nor_written_through() {
    use crate::helper::workspace::{Workspace, describe};
    let ws = Workspace::new(2, "");
    let sim = recast::sim::Sim::start(ws.sim_config()).await.unwrap();
    std::fs::create_dir_all(ws.out()).unwrap();
    let fifo = ws.out().join("s000.mp4");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("precious"), b"not yours").unwrap();
    std::os::unix::fs::symlink(outside.path().join("precious"), ws.out().join("s001.mp4")).unwrap();

    let run = ws.recast_command(&sim, &["run", "jobs.yaml"]).output();
    let out = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the run does not hang on a FIFO")
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    use std::os::unix::fs::FileTypeExt;
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo()
    );
    assert_eq!(
        std::fs::read(outside.path().join("precious")).unwrap(),
        b"not yours"
    );
    // Both clips landed beside the planted names, whole.
    let results = ws.results();
    assert_eq!(results.len(), 2);
    for line in results.values() {
        assert!(
            line.file.starts_with(&line.subject) && line.file != format!("{}.mp4", line.subject)
        );
        assert!(
            recast::output::verify(&ws.out(), line).is_some(),
            "{line:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_echoing_the_key_never_carries_it_further() {
    fn echo() -> Response {
        (
            StatusCode::BAD_REQUEST,
            r#"{"error":{"code":20002,"message":"bad request; you sent Authorization: Bearer hostile-test-key"}}"#,
        )
            .into_response()
    }
    let (addr, _) = serve(echo).await;
    let answer = client(addr).submit(&request(), "k-1").await;
    let text = format!(
        "{answer:?} {}",
        answer
            .as_ref()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    );
    assert!(
        matches!(answer, Err(ProviderError::Rejected { .. })),
        "{text}"
    );
    assert!(!text.contains("hostile-test-key"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clip_that_never_comes_out_right_ends_expired_after_bounded_tries() {
    use crate::helper::workspace::{Workspace, describe};
    use recast::sim::{Fault, Faults, SimConfig};
    let ws = Workspace::new(1, "");
    let sim = recast::sim::Sim::start(SimConfig {
        faults: Faults {
            changed_download: Fault::rate(1.0),
            ..Faults::default()
        },
        ..ws.sim_config()
    })
    .await
    .unwrap();
    let run = ws.recast_command(&sim, &["run", "jobs.yaml"]).output();
    let out = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("a bad clip does not keep the run going for ever")
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    assert!(describe(&out).contains("expired"), "{}", describe(&out));
    let downloads = sim.stats().downloads;
    assert!(downloads <= 30, "{downloads} downloads of one clip");
    assert!(ws.outputs().is_empty(), "{:?}", ws.outputs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_url_to_a_local_address_is_refused_before_any_request() {
    use crate::helper::workspace::{Workspace, describe};
    fn never() -> Response {
        (StatusCode::OK, "should never be asked").into_response()
    }
    let (addr, seen) = serve(never).await;
    let ws = Workspace::new(1, "");
    let text = std::fs::read_to_string(ws.manifest()).unwrap();
    for host in [addr.to_string(), format!("localhost:{}", addr.port())] {
        let hostile = text.replace(
            "./subjects/s000.png",
            &format!("http://{host}/latest/meta-data.png"),
        );
        std::fs::write(ws.path().join("remote.yaml"), hostile).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_recast"))
            .args(["plan", "remote.yaml", "--state-dir", "state"])
            .env_remove("RECAST_ALLOW_PRIVATE_NETWORKS")
            .current_dir(ws.path())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(1), "{text}");
        assert!(text.contains("allow_private_networks"), "{text}");
        assert!(
            seen.lock().unwrap().is_empty(),
            "{host}: a request reached the server"
        );
        let _ = describe;
    }
    // Allowed by the setting, the same manifest is probed.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_recast"))
        .args([
            "plan",
            "remote.yaml",
            "--state-dir",
            "state",
            "--allow-private-networks",
        ])
        .current_dir(ws.path())
        .output()
        .unwrap();
    assert!(!seen.lock().unwrap().is_empty(), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clip_link_to_a_local_address_is_refused_by_default() {
    use crate::helper::workspace::{Workspace, describe};
    let ws = Workspace::new(1, "");
    let sim = recast::sim::Sim::start(ws.sim_config()).await.unwrap();
    let out = ws
        .recast_command(&sim, &["run", "jobs.yaml"])
        .env_remove("RECAST_ALLOW_PRIVATE_NETWORKS")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    assert!(
        describe(&out).contains("allow_private_networks"),
        "{}",
        describe(&out)
    );
    assert_eq!(
        sim.stats().downloads,
        0,
        "no request reached the clip's address"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_claiming_a_huge_file_of_tiny_boxes_does_not_keep_the_prober_asking() {
    /// Any range of a "10 GB" file made only of 8-byte `free` boxes.
    async fn tiny_boxes(headers: HeaderMap) -> Response {
        let range = headers
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("bytes="))
            .and_then(|v| v.split_once('-'))
            .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)));
        let Some((start, end)) = range else {
            return StatusCode::BAD_REQUEST.into_response();
        };
        let total = 10_000_000_000u64;
        let body: Vec<u8> = (start..=end)
            .map(|i| b"\0\0\0\x08free"[(i % 8) as usize])
            .collect();
        let mut r = (StatusCode::PARTIAL_CONTENT, body).into_response();
        r.headers_mut().insert(
            header::CONTENT_RANGE,
            format!("bytes {start}-{end}/{total}").parse().unwrap(),
        );
        r
    }
    let counted = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let hits = counted.clone();
    let app = Router::new().fallback(get(move |h: HeaderMap| {
        hits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        tiny_boxes(h)
    }));
    let addr = serve_app(app).await;
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/dance.mp4");
    let probe = recast::media::probe_video_url(&client, &url);
    let outcome = tokio::time::timeout(Duration::from_secs(60), probe)
        .await
        .expect("the probe ends by itself");
    assert!(outcome.is_err(), "{outcome:?}");
    let requests = counted.load(std::sync::atomic::Ordering::SeqCst);
    assert!(requests <= 65, "{requests} range requests");
}

/// A random answer: a status, maybe a `Retry-After`, and a body that is JSON of a random shape,
/// a status word from any gateway family (or none), or bytes that are not JSON at all.
fn random_answer(rng: &mut crate::helper::SeededRng) -> Response {
    const STATUSES: [u16; 12] = [200, 201, 202, 204, 400, 401, 402, 404, 429, 500, 503, 302];
    const WORDS: [&str; 12] = [
        "completed",
        "succeeded",
        "failed",
        "processing",
        "queued",
        "expired",
        "warming_up",
        "",
        "SUCCESS",
        "cancelled",
        "null",
        "\u{1b}[31m",
    ];
    const RETRY: [&str; 6] = [
        "1",
        "18446744073709551615",
        "-5",
        "soon",
        "Fri, 31 Dec 9999 23:59:59 GMT",
        "",
    ];
    let status = STATUSES[rng.below(STATUSES.len() as u64) as usize];
    let word = WORDS[rng.below(WORDS.len() as u64) as usize];
    let id = match rng.below(4) {
        0 => serde_json::json!("task_ok-1"),
        1 => serde_json::json!(rng.below(1 << 40)),
        2 => serde_json::json!("../x?y#z"),
        _ => serde_json::json!(null),
    };
    let body = match rng.below(6) {
        0 => serde_json::json!({"id": id, "status": word}).to_string(),
        1 => serde_json::json!({"data": {"task_id": id, "status": word,
            "output": {"video_urls": [word, 5, null]}, "usage": {"credits": -1}}})
        .to_string(),
        2 => serde_json::json!({"error": {"code": 20002, "message": word, "request_id": id}})
            .to_string(),
        3 => serde_json::json!([1, {"status": [word]}, "x"]).to_string(),
        4 => "{\"status\": \"completed\", \"output\": ".repeat(rng.below(50) as usize + 1),
        _ => String::from_utf8_lossy(
            &(0..rng.below(300))
                .map(|_| rng.below(256) as u8)
                .collect::<Vec<_>>(),
        )
        .into_owned(),
    };
    let mut r = (StatusCode::from_u16(status).unwrap(), body).into_response();
    if rng.chance(40) {
        let value = RETRY[rng.below(RETRY.len() as u64) as usize];
        if let Ok(v) = value.parse() {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_answers_never_panic_the_client_and_every_outcome_is_typed() {
    let seed = std::env::var("RECAST_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2026u64);
    let rng = Arc::new(Mutex::new(crate::helper::SeededRng(seed)));
    let shared = rng.clone();
    let handler = move || {
        let rng = shared.clone();
        async move { random_answer(&mut rng.lock().unwrap()) }
    };
    let app = Router::new()
        .route("/api/v1/videos/generations", post(handler.clone()))
        .fallback(get(handler));
    let provider = client(serve_app(app).await);
    for i in 0..300 {
        let outcome = match i % 3 {
            0 => provider.submit(&request(), "k").await.map(|id| {
                assert!(recast::provider::is_task_id(&id), "seed {seed}: {id:?}");
            }),
            1 => provider.poll("task_ok-1").await.map(drop),
            _ => provider.balance().await.map(drop),
        };
        if let Err(
            ProviderError::RateLimited {
                retry_after: Some(wait),
            }
            | ProviderError::Unavailable {
                retry_after: Some(wait),
                ..
            },
        ) = &outcome
        {
            assert!(*wait <= MAX_PROVIDER_WAIT, "seed {seed}: {wait:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_swapped_for_a_link_after_the_manifest_was_read_is_not_probed_outside() {
    use crate::helper::workspace::Workspace;
    let ws = Workspace::new(1, "");
    let batch =
        recast::manifest::load(&ws.manifest(), &recast::manifest::LoadOptions::default()).unwrap();
    let image = batch.jobs[0].image.clone();
    // Between the manifest's check and the probe, `subjects/` becomes a link to a folder
    // outside holding a file of the same name (and then to /dev, which never ends).
    let outside = tempfile::tempdir().unwrap();
    std::fs::copy(
        ws.path().join("subjects/s000.png"),
        outside.path().join("s000.png"),
    )
    .unwrap();
    std::fs::rename(ws.path().join("subjects"), ws.path().join("moved")).unwrap();
    std::os::unix::fs::symlink(outside.path(), ws.path().join("subjects")).unwrap();
    let prober = recast::plan::Prober::default();
    let probed = tokio::time::timeout(Duration::from_secs(30), prober.image(&image))
        .await
        .expect("the probe ends");
    assert!(probed.is_err(), "read outside the root: {probed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_a_private_address_is_not_followed_and_chains_are_bounded() {
    // The first hop is reached directly (as if it were public); its redirects are checked.
    fn to_loopback() -> Response {
        let mut r = (StatusCode::FOUND, "").into_response();
        r.headers_mut().insert(
            header::LOCATION,
            "http://127.0.0.1:9/secret".parse().unwrap(),
        );
        r
    }
    let (addr, _) = serve(to_loopback).await;
    let client = recast::netguard::client_builder(false).build().unwrap();
    let err = client
        .get(format!("http://{addr}/clip.mp4"))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_redirect(), "{err:?}");
    assert!(
        format!("{err:?}").contains("allow_private_networks"),
        "{err:?}"
    );

    // Allowed, a chain is still bounded.
    let hops = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counted = hops.clone();
    let app = Router::new().fallback(get(move |uri: Uri| {
        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async move {
            let mut r = (StatusCode::FOUND, "").into_response();
            r.headers_mut().insert(
                header::LOCATION,
                format!("{}x", uri.path()).parse().unwrap(),
            );
            r
        }
    }));
    let addr = serve_app(app).await;
    let client = recast::netguard::client_builder(true).build().unwrap();
    let err = client
        .get(format!("http://{addr}/a"))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_redirect(), "{err:?}");
    assert!(hops.load(std::sync::atomic::Ordering::SeqCst) <= 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_that_drips_is_given_up_at_the_request_timeout() {
    fn drip() -> Response {
        let stream = futures_util::stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            Some((Ok::<_, std::io::Error>(bytes::Bytes::from_static(b" ")), ()))
        });
        (StatusCode::OK, Body::from_stream(stream)).into_response()
    }
    let (addr, _) = serve(drip).await;
    let provider = HttpProvider::new(HttpProviderConfig {
        base_url: format!("http://{addr}"),
        api_key: ApiKey::new("hostile-test-key").unwrap(),
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(2),
        max_wait: MAX_PROVIDER_WAIT,
    })
    .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(30), provider.poll("task-1"))
        .await
        .expect("the poll ends by itself");
    assert!(
        matches!(answer, Err(ProviderError::Ambiguous(_))),
        "{answer:?}"
    );
}
