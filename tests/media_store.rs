//! Local media published to a real S3-compatible server (`s3s-fs`, started here on loopback,
//! checking every signature), fetched by the simulator through presigned URLs as the provider
//! would; and what `plan` and `run` say about media and the account before spending.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use recast::media_store::{MediaStore, PublishFailure, S3Credentials, S3Settings};
use recast::sim::{Sim, SimConfig};
use sha2::{Digest, Sha256};

use crate::helper::wait_for;
use crate::helper::workspace::{Workspace, describe};

const ACCESS_KEY: &str = "AKIDRECASTTEST0001";
const SECRET_KEY: &str = "s3cr3t-that-must-never-be-written-anywhere";
const BUCKET: &str = "recast-media";

/// A real S3-compatible server on loopback, storing objects under a temp folder.
struct S3Server {
    child: std::process::Child,
    root: tempfile::TempDir,
    endpoint: String,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn s3s_fs_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("RECAST_S3S_FS") {
        return p.into();
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain(std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo/bin")))
        .map(|dir| dir.join("s3s-fs"))
        .find(|p| p.is_file());
    on_path.unwrap_or_else(|| {
        panic!(
            "these tests need the S3-compatible server s3s-fs: \
             `cargo install s3s-fs --version 0.14.1 --features binary --locked` (.ci/run does)"
        )
    })
}

impl S3Server {
    async fn start() -> S3Server {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join(BUCKET)).unwrap();
        let port = crate::helper::free_port();
        let child = std::process::Command::new(s3s_fs_binary())
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(root.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("s3s-fs starts");
        let server = S3Server {
            child,
            root,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        crate::helper::wait_listening("s3s-fs", port).await;
        server
    }

    fn settings(&self, ttl: u64) -> S3Settings {
        S3Settings {
            url_ttl_secs: ttl,
            ..S3Server::settings_for(&self.endpoint)
        }
    }

    fn settings_for(endpoint: &str) -> S3Settings {
        S3Settings {
            bucket: BUCKET.into(),
            endpoint: Some(endpoint.to_owned()),
            region: "us-east-1".into(),
            prefix: "recast/".into(),
            url_ttl_secs: 3600,
            public_base_url: None,
            credentials_file: None,
            profile: None,
        }
    }

    fn settings_yaml(&self, ttl: u64) -> String {
        format!(
            "media_store:\n  s3:\n    bucket: {BUCKET}\n    endpoint: {}\n    region: us-east-1\n    \
             prefix: recast/\n    url_ttl_secs: {ttl}\n",
            self.endpoint
        )
    }

    fn store(&self, ttl: u64) -> MediaStore {
        MediaStore::new(&self.settings(ttl), credentials()).unwrap()
    }

    /// Objects in the bucket: name -> (bytes, modification time).
    fn objects(&self) -> std::collections::BTreeMap<String, (Vec<u8>, std::time::SystemTime)> {
        let bucket = self.root.path().join(BUCKET);
        let mut found = std::collections::BTreeMap::new();
        let mut stack = vec![bucket.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    let name = path
                        .strip_prefix(&bucket)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned();
                    let modified = entry.metadata().unwrap().modified().unwrap();
                    found.insert(name, (std::fs::read(&path).unwrap(), modified));
                }
            }
        }
        found
    }
}

fn credentials() -> S3Credentials {
    // Read from a credentials file, as a user may keep them (runs below take the environment).
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("credentials");
    std::fs::write(
        &file,
        format!(
            "[default]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n"
        ),
    )
    .unwrap();
    let settings = S3Settings {
        credentials_file: Some(file),
        ..S3Server::settings_for("unused")
    };
    S3Credentials::from_file(&settings).unwrap()
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `recast ARGS` against `sim`, publishing through `s3` (no media_base_url).
async fn recast(ws: &Workspace, sim: &Sim, s3: &S3Server, args: &[&str]) -> Output {
    let settings = ws.path().join("s3.yaml");
    std::fs::write(
        &settings,
        format!(
            "polling:\n  first_base_ms: 50\n  first_per_clip_second_ms: 0\n  first_max_ms: 100\n  \
             interval_min_ms: 50\n  interval_max_ms: 200\nlimits:\n  submit_per_minute: 6000\n  \
             submit_burst: 50\n{}",
            s3.settings_yaml(3600)
        ),
    )
    .unwrap();
    tokio::process::Command::new(env!("CARGO_BIN_EXE_recast"))
        .args(args)
        .arg("--config")
        .arg(&settings)
        .arg("--state-dir")
        .arg(ws.state())
        .arg("--api-base")
        .arg(sim.base_url())
        .env("REAPI_API_KEY", sim.api_key())
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env_remove("AWS_SESSION_TOKEN")
        .env("RECAST_ALLOW_PRIVATE_NETWORKS", "1")
        .env("RECAST_LOG", "debug")
        .current_dir(ws.path())
        .kill_on_drop(true)
        .output()
        .await
        .unwrap()
}

/// Every file under `dir`, read whole (the database, its WAL, results files, clips).
fn every_byte_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                out.push((path, bytes));
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_media_go_up_once_by_content_and_the_provider_fetches_them_presigned() {
    let s3 = S3Server::start().await;
    let ws = Workspace::new(3, "");
    // A provider that serves no media of its own: it can only fetch what recast publishes.
    let sim = Sim::start(SimConfig {
        media_dir: None,
        ..ws.sim_config()
    })
    .await
    .unwrap();

    let plan = recast(&ws, &sim, &s3, &["plan", "jobs.yaml"]).await;
    assert_eq!(plan.status.code(), Some(0), "{}", describe(&plan));
    let text = String::from_utf8_lossy(&plan.stdout);
    assert!(
        text.contains("4 local files · 4 to upload · 0 already uploaded"),
        "{text}"
    );
    assert!(s3.objects().is_empty(), "a plan uploads nothing");

    let run = recast(&ws, &sim, &s3, &["run", "jobs.yaml"]).await;
    assert_eq!(run.status.code(), Some(0), "{}", describe(&run));
    assert_eq!(ws.outputs().len(), 3, "{}", describe(&run));
    ws.assert_all_clips_whole();
    // One object per distinct file, named by its content.
    let objects = s3.objects();
    let mut expected: Vec<String> = (0..3)
        .map(|i| {
            let bytes = std::fs::read(ws.path().join(format!("subjects/s{i:03}.png"))).unwrap();
            format!("recast/{}.png", sha256(&bytes))
        })
        .collect();
    expected.push(format!(
        "recast/{}.mp4",
        sha256(&std::fs::read(ws.path().join("media/ref.mp4")).unwrap())
    ));
    expected.sort();
    assert_eq!(objects.keys().cloned().collect::<Vec<_>>(), expected);
    for (name, (bytes, _)) in &objects {
        assert!(name.contains(&sha256(bytes)), "{name} holds other bytes");
    }
    // The provider fetched presigned URLs on the S3 server, and billed each subject once.
    let ledger = sim.ledger();
    assert_eq!(ledger.entries.len(), 3);
    for e in &ledger.entries {
        for url in [&e.image_url, &e.video_url] {
            assert!(url.starts_with(&s3.endpoint), "{url}");
            assert!(url.contains("X-Amz-Signature="), "{url}");
        }
        assert!(!e.refunded, "a fetch failed: {e:?}");
    }
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("media: 4 files uploaded"), "{stderr}");

    // A second batch of the same media: nothing goes up again.
    let manifest = std::fs::read_to_string(ws.manifest())
        .unwrap()
        .replace("name: e2e", "name: e2e-again")
        .replace("dir: ./out", "dir: ./out-again");
    std::fs::write(ws.path().join("again.yaml"), manifest).unwrap();
    let plan = recast(&ws, &sim, &s3, &["plan", "again.yaml"]).await;
    let text = String::from_utf8_lossy(&plan.stdout);
    assert!(
        text.contains("0 to upload · 4 already uploaded"),
        "{}",
        describe(&plan)
    );
    let again = recast(&ws, &sim, &s3, &["run", "again.yaml"]).await;
    assert_eq!(again.status.code(), Some(0), "{}", describe(&again));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("media: 0 files uploaded"),
        "{}",
        describe(&again)
    );
    assert_eq!(sim.ledger().entries.len(), 6);
    let after = s3.objects();
    assert_eq!(after.len(), 4);
    for (name, (_, modified)) in &objects {
        assert_eq!(after[name].1, *modified, "{name} was written again");
    }

    // Neither the secret nor the key id reaches a log, the store or the output folder.
    for out in [&plan, &run, &again] {
        for stream in [&out.stdout, &out.stderr] {
            assert!(!contains(stream, SECRET_KEY), "{}", describe(out));
            assert!(!contains(stream, ACCESS_KEY), "{}", describe(out));
        }
    }
    for (path, bytes) in every_byte_under(ws.path()) {
        assert!(
            !contains(&bytes, SECRET_KEY),
            "{} holds the secret",
            path.display()
        );
        assert!(
            !contains(&bytes, ACCESS_KEY),
            "{} holds the key id",
            path.display()
        );
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_or_expired_presigned_url_is_refused_by_the_server() {
    let s3 = S3Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fox.png");
    let bytes = crate::helper::workspace::unique_png(7);
    std::fs::write(&file, &bytes).unwrap();
    let store = s3.store(3600);
    let url = store.url_for(&file, Some(&sha256(&bytes))).await.unwrap();
    let http = reqwest::Client::new();
    let get = |u: String| {
        let http = http.clone();
        async move { http.get(u).send().await.unwrap() }
    };
    let whole = get(url.clone()).await;
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.headers()["content-type"], "image/png");
    assert_eq!(whole.bytes().await.unwrap().as_ref(), &bytes[..]);

    let at = url.find("X-Amz-Signature=").unwrap() + "X-Amz-Signature=".len();
    let flipped = if &url[at..=at] == "0" { "1" } else { "0" };
    let tampered = format!("{}{flipped}{}", &url[..at], &url[at + 1..]);
    assert_eq!(get(tampered).await.status(), 403);
    let other_object = url.replace(".png?", ".jpg?");
    assert_eq!(get(other_object).await.status(), 403);

    // A URL signed for one second stops working once it has lived it.
    let short = s3
        .store(1)
        .fetch_url(&store.object_name(&sha256(&bytes), &file));
    wait_for(
        "the one-second URL to be refused",
        Duration::from_secs(10),
        || {
            let short = short.clone();
            let get = &get;
            async move { (get(short).await.status() == 403).then_some(()) }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_video_goes_up_in_parts_and_a_changed_file_never_takes_the_planned_name() {
    let s3 = S3Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("long.mp4");
    // Past one part: two parts of 8 MiB and a short last one.
    let bytes: Vec<u8> = (0..(17u32 << 20))
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&file, &bytes).unwrap();
    let store = s3.store(3600);
    let url = store.url_for(&file, Some(&sha256(&bytes))).await.unwrap();
    let got = reqwest::get(&url).await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.headers()["content-type"], "video/mp4");
    assert_eq!(sha256(&got.bytes().await.unwrap()), sha256(&bytes));
    assert_eq!(
        store
            .progress
            .files_uploaded
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );

    // The job was planned with other bytes: nothing is stored under the planned name.
    let planned = sha256(b"what the file held when it was planned");
    for path in [&file, &dir.path().join("small.png")] {
        std::fs::write(dir.path().join("small.png"), b"changed since").unwrap();
        let err = store.url_for(path, Some(&planned)).await.unwrap_err();
        assert!(matches!(err, PublishFailure::Changed { .. }), "{err}");
        assert!(
            err.to_string().contains("changed after it was planned"),
            "{err}"
        );
        let name = store.object_name(&planned, path);
        assert_eq!(
            store.presence(&name).await.unwrap(),
            recast::media_store::Presence::Absent
        );
    }
    assert_eq!(s3.objects().len(), 1, "an aborted upload leaves no object");
}

#[tokio::test]
async fn a_plan_with_local_media_and_no_way_to_publish_them_exits_1_with_the_fix() {
    let ws = Workspace::new(2, "");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_recast"))
        .args(["plan", "jobs.yaml", "--state-dir"])
        .arg(ws.state())
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("REAPI_API_KEY")
        .current_dir(ws.path())
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("NO WAY to the provider"),
        "{}",
        describe(&out)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("3 local files cannot reach the provider"),
        "{stderr}"
    );
    assert!(stderr.contains("media_store.s3"), "{stderr}");
    assert!(stderr.contains("--media-base-url"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_the_balance_cannot_pay_stops_before_the_first_submit_with_the_numbers() {
    let ws = Workspace::new(3, "");
    // Three clips at 566 credits each; the account holds 1000.
    let sim = Sim::start(SimConfig {
        credit_balance: Some(1000),
        ..ws.sim_config()
    })
    .await
    .unwrap();
    let plan = ws.recast(&sim, &["plan", "jobs.yaml"]).await;
    assert_eq!(plan.status.code(), Some(1), "{}", describe(&plan));
    assert!(
        String::from_utf8_lossy(&plan.stdout).contains("short by 698 credits"),
        "{}",
        describe(&plan)
    );
    let run = ws.recast(&sim, &["run", "jobs.yaml"]).await;
    assert_eq!(run.status.code(), Some(1), "{}", describe(&run));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("account: 1000 credits"), "{stderr}");
    assert!(stderr.contains("costs up to 1698 credits"), "{stderr}");
    assert!(
        stderr.contains("stopped before the first submit"),
        "{stderr}"
    );
    let stats = sim.stats();
    assert_eq!(stats.submits_accepted + stats.rejected_402, 0, "{stderr}");
    assert!(sim.ledger().entries.is_empty());

    // Told to spend what there is, it submits what the balance pays for and stops at the 402.
    let run = ws
        .recast(&sim, &["run", "jobs.yaml", "--spend-available"])
        .await;
    assert_ne!(run.status.code(), Some(0), "{}", describe(&run));
    assert_eq!(sim.ledger().entries.len(), 1, "{}", describe(&run));
    assert!(
        String::from_utf8_lossy(&run.stderr).contains("out of credits"),
        "{}",
        describe(&run)
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_task_keeps_the_providers_code_and_request_id_for_support() {
    let ws = Workspace::new(1, "retries: 0\n");
    let mut config = ws.sim_config();
    config.faults.task_failure = "first=1".parse().unwrap();
    let sim = Sim::start(config).await.unwrap();
    let run = ws.recast(&sim, &["run", "jobs.yaml"]).await;
    assert_eq!(run.status.code(), Some(3), "{}", describe(&run));
    let task = &sim.ledger().entries[0].task_id;

    let status = ws.recast(&sim, &["status", "--json"]).await;
    let doc: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let job = &doc["batches"][0]["needs_a_person"][0];
    assert_eq!(job["state"], "failed", "{doc}");
    assert_eq!(job["error_code"], "60001", "{doc}");
    assert_eq!(job["request_id"], format!("req_{task}"), "{doc}");

    let text = ws.recast(&sim, &["status"]).await;
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(stdout.contains(&format!("request req_{task}")), "{stdout}");
    // The results file tells a person too, in a line of its own.
    let results = std::fs::read_to_string(ws.out().join(recast::output::RESULTS_FILE)).unwrap();
    let failed: Vec<serde_json::Value> = results
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["state"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1, "{results}");
    assert_eq!(failed[0]["subject"], "s000");
    let error = failed[0]["error"].as_str().unwrap();
    assert!(error.contains(&format!("request req_{task}")), "{error}");
    sim.shutdown().await;
}
