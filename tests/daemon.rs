//! End-to-end tests of `recast daemon`: the real binary against a real simulator, fed the way
//! people feed it (files dropped into folders, slowly, while it runs or while it is down), and
//! stopped with real signals.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use recast::sim::{Generation, Sim, SimConfig};

use crate::helper::wait_for;
use crate::helper::workspace::{describe, reference_clip, unique_png};

const WAIT: Duration = Duration::from_secs(60);

/// A server's folders: `inbox/` (with `media/ref.mp4`), `state/`, and the settings file.
struct Site {
    dir: tempfile::TempDir,
    /// Runs of the daemon so far, to name their log files.
    runs: usize,
}

struct Daemon {
    child: tokio::process::Child,
    log: PathBuf,
    addr: String,
}

impl Site {
    fn new() -> Site {
        let dir = tempfile::tempdir().unwrap();
        let inbox = dir.path().join("inbox");
        std::fs::create_dir_all(inbox.join("media")).unwrap();
        std::fs::write(inbox.join("media/ref.mp4"), reference_clip()).unwrap();
        Site { dir, runs: 0 }
    }

    fn root(&self) -> PathBuf {
        std::fs::canonicalize(self.dir.path()).unwrap()
    }

    fn inbox(&self) -> PathBuf {
        self.root().join("inbox")
    }

    fn state(&self) -> PathBuf {
        self.root().join("state")
    }

    fn out(&self, batch: &str) -> PathBuf {
        self.inbox().join("out").join(batch)
    }

    /// The simulator serves the inbox as its media folder.
    async fn sim(&self, generation: Duration) -> Sim {
        Sim::start(SimConfig {
            media_dir: Some(self.inbox()),
            generation: Generation::Fixed(generation),
            ..SimConfig::default()
        })
        .await
        .unwrap()
    }

    fn write_settings(&self, sim: &Sim, limits: &str) -> PathBuf {
        let path = self.root().join("recast.yaml");
        let text = format!(
            "polling:\n  first_base_ms: 50\n  first_per_clip_second_ms: 0\n  first_max_ms: 100\n  \
             interval_min_ms: 50\n  interval_max_ms: 200\nlimits:\n{limits}\
             daemon:\n  listen: 127.0.0.1:0\n  settle_ms: 300\n  inboxes:\n    - path: {}\n      \
             media_base_url: {}/media/\n",
            self.inbox().display(),
            sim.base_url()
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    fn command(&self, sim: &Sim, args: &[&str]) -> tokio::process::Command {
        let settings = self.root().join("recast.yaml");
        if !settings.exists() {
            self.write_settings(
                sim,
                "  submit_per_minute: 6000\n  submit_burst: 50\n  max_in_flight: 50\n  \
                 poll_per_minute: 60000\n  download_concurrency: 8\n",
            );
        }
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_recast"));
        cmd.args(args)
            .arg("--config")
            .arg(&settings)
            .arg("--state-dir")
            .arg(self.state())
            .arg("--api-base")
            .arg(sim.base_url())
            .env("REAPI_API_KEY", sim.api_key())
            // The simulator's clip links are on loopback.
            .env("RECAST_ALLOW_PRIVATE_NETWORKS", "1")
            .env("RECAST_LOG", "recast=debug")
            .env_remove("REAPI_BASE_URL")
            .current_dir(self.root())
            .kill_on_drop(true);
        cmd
    }

    /// Start `recast daemon` and wait until its HTTP endpoint is up.
    async fn start(&mut self, sim: &Sim) -> Daemon {
        self.runs += 1;
        let log = self.root().join(format!("daemon-{}.log", self.runs));
        let _ = std::fs::remove_file(self.state().join("daemon.addr"));
        let child = self
            .command(sim, &["daemon"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let addr_file = self.state().join("daemon.addr");
        let addr = wait_for("the daemon's address file", WAIT, || {
            let addr_file = addr_file.clone();
            async move {
                std::fs::read_to_string(&addr_file)
                    .ok()
                    .filter(|s| s.ends_with('\n'))
            }
        })
        .await;
        Daemon {
            child,
            log,
            addr: addr.trim().to_owned(),
        }
    }

    /// `recast status --json`.
    async fn status(&self, sim: &Sim) -> serde_json::Value {
        let out = self
            .command(sim, &["status", "--json"])
            .output()
            .await
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    }

    /// Jobs of `batch` in `state`, per `recast status --json`.
    async fn count(&self, sim: &Sim, batch: &str, state: &str) -> u64 {
        let doc = self.status(sim).await;
        doc["batches"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|b| b["batch"]["name"] == batch)
            .map(|b| {
                b["batch"]["counts"]["by_state"][state]
                    .as_u64()
                    .unwrap_or(0)
            })
            .sum()
    }

    async fn wait_done(&self, sim: &Sim, batch: &str, n: u64) {
        wait_for(&format!("{n} clips of {batch} done"), WAIT, || async {
            (self.count(sim, batch, "done").await >= n).then_some(())
        })
        .await;
    }
}

impl Daemon {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then the time it took to exit and its exit code.
    async fn terminate(mut self) -> (Duration, Option<i32>, String) {
        let pid = self.child.id().unwrap();
        let started = std::time::Instant::now();
        let killed = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let status = tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("the daemon did not exit on SIGTERM:\n{}", self.log()))
            .unwrap();
        (started.elapsed(), status.code(), self.log())
    }
}

/// A manifest for `name` with `subjects` listed images (under `subjects/`), or a `watch` folder.
fn manifest(name: &str, subjects: &str) -> String {
    format!(
        "version: 1\nname: {name}\nreference:\n  video: ./media/ref.mp4\n\
         model: kling-v3-motion-control\nmode: std\ncharacter_orientation: image\n\
         subjects:\n{subjects}output:\n  dir: ./out/{name}\n"
    )
}

fn listed_subjects(site: &Site, prefix: &str, n: std::ops::Range<usize>) -> String {
    let dir = site.inbox().join("subjects");
    std::fs::create_dir_all(&dir).unwrap();
    let mut text = String::new();
    for i in n {
        std::fs::write(dir.join(format!("{prefix}{i:03}.png")), unique_png(i)).unwrap();
        text.push_str(&format!(
            "  - id: {prefix}{i:03}\n    image: ./subjects/{prefix}{i:03}.png\n"
        ));
    }
    text
}

/// Clip files in an output folder, less its own bookkeeping (results file, lock).
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != recast::output::RESULTS_FILE && n != ".recast.lock")
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Every clip in `dir` is whole (the clip the simulator served) and nothing else is there.
fn assert_clips_whole(dir: &Path, expected: &[String]) {
    assert_eq!(names_in(dir), expected, "clips in {}", dir.display());
    let reference = reference_clip();
    for name in expected {
        assert!(
            std::fs::read(dir.join(name)).unwrap() == reference,
            "{name} is not whole"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_manifest_is_taken_once_whole_a_bad_one_is_rejected_and_metrics_match_status() {
    let mut site = Site::new();
    let sim = site.sim(Duration::from_millis(100)).await;
    let daemon = site.start(&sim).await;

    // Written in small chunks, each sooner than the settle time: a slow network copy.
    let text = manifest("slow", &listed_subjects(&site, "s", 0..3));
    let slow = site.inbox().join("slow.yaml");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&slow).unwrap();
        for chunk in text.as_bytes().chunks(24) {
            f.write_all(chunk).unwrap();
            f.flush().unwrap();
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
    }
    let bad_text =
        manifest("bad", &listed_subjects(&site, "b", 0..1)).replace("mode: std", "mode: ultra");
    // Saved the way editors do: a temporary name, then a rename.
    std::fs::write(site.inbox().join(".bad.yaml.swp"), &bad_text).unwrap();
    std::fs::rename(
        site.inbox().join(".bad.yaml.swp"),
        site.inbox().join("bad.yaml"),
    )
    .unwrap();

    site.wait_done(&sim, "slow", 3).await;
    let rejected = site.inbox().join("rejected");
    wait_for("bad.yaml rejected with its error file", WAIT, || async {
        (rejected.join("bad.yaml").exists() && rejected.join("bad.error.txt").exists())
            .then_some(())
    })
    .await;

    assert_eq!(
        names_in(&site.inbox().join("accepted")),
        ["slow.yaml"],
        "{}",
        daemon.log()
    );
    assert_eq!(
        std::fs::read_to_string(site.inbox().join("accepted/slow.yaml")).unwrap(),
        text
    );
    assert_eq!(names_in(&rejected), ["bad.error.txt", "bad.yaml"]);
    assert_clips_whole(
        &site.out("slow"),
        &["s000.mp4".to_owned(), "s001.mp4".into(), "s002.mp4".into()],
    );
    assert_eq!(sim.ledger().totals.billed_tasks, 3, "{}", daemon.log());

    // The error file says what `recast plan` says about the same file, planned where it was
    // dropped (under a temporary name, which the daemon leaves alone).
    let reasons = std::fs::read_to_string(rejected.join("bad.error.txt")).unwrap();
    let copy = site.inbox().join("bad.yaml.part");
    std::fs::copy(rejected.join("bad.yaml"), &copy).unwrap();
    let plan = site
        .command(&sim, &["plan", copy.to_str().unwrap()])
        .output()
        .await
        .unwrap();
    std::fs::remove_file(&copy).unwrap();
    let plan_errors: Vec<String> = String::from_utf8_lossy(&plan.stderr)
        .lines()
        .filter_map(|l| l.strip_prefix("error: "))
        .map(|l| l.replace("/bad.yaml.part", "/bad.yaml"))
        .collect();
    assert!(
        reasons.contains("`mode` must be `std` or `pro`"),
        "{reasons}"
    );
    assert_eq!(reasons.lines().collect::<Vec<_>>(), plan_errors);

    // The same content dropped again: no new work.
    std::fs::write(site.inbox().join("again.yaml"), &text).unwrap();
    let accepted = site.inbox().join("accepted");
    wait_for("the second drop accepted", WAIT, || async {
        accepted.join("again.yaml").exists().then_some(())
    })
    .await;
    assert_eq!(site.count(&sim, "slow", "done").await, 3);
    assert_eq!(sim.ledger().totals.billed_tasks, 3);

    // /metrics parses as Prometheus text and agrees with `recast status --json`.
    let base = format!("http://{}", daemon.addr);
    let health = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert!(health.status().is_success());
    let body = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned())))
        .unwrap_or_else(|e| panic!("not Prometheus text: {e}\n{body}"));
    let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
            .unwrap_or_else(|| panic!("no {name} {labels:?} in\n{body}"))
    };
    let status = site.status(&sim).await;
    for b in status["batches"].as_array().unwrap() {
        let name = b["batch"]["name"].as_str().unwrap();
        for (state, n) in b["batch"]["counts"]["by_state"].as_object().unwrap() {
            assert_eq!(
                value("recast_jobs", &[("batch", name), ("state", state)]),
                n.as_f64().unwrap(),
                "{name} {state}"
            );
        }
        for (metric, field) in [
            ("recast_credits_spent", "credits_spent"),
            ("recast_credits_refunded", "credits_refunded"),
        ] {
            assert_eq!(
                value(metric, &[("batch", name)]),
                b["batch"][field].as_f64().unwrap(),
                "{metric} of {name}"
            );
        }
    }
    assert_eq!(value("recast_submits", &[("batch", "slow")]), 3.0);
    assert_eq!(value("recast_tasks_in_flight", &[]), 0.0);
    // The balance, read at start (before or between the first submits).
    let balance = value("recast_account_balance_credits", &[]);
    let unlimited = recast::sim::UNLIMITED_BALANCE as f64;
    assert!(
        (unlimited - 3.0 * 566.0..=unlimited).contains(&balance),
        "{balance}"
    );

    let (_, code, log) = daemon.terminate().await;
    assert_eq!(code, Some(0), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_dropped_into_a_standing_performance_become_clips_even_while_the_daemon_is_down() {
    let mut site = Site::new();
    let sim = site.sim(Duration::from_millis(100)).await;
    let incoming = site.inbox().join("incoming");
    std::fs::create_dir_all(&incoming).unwrap();
    // Dropped before the daemon ever ran: found at start.
    std::fs::write(incoming.join("w000.png"), unique_png(100)).unwrap();
    std::fs::write(
        site.inbox().join("stand.yaml"),
        manifest("stand", "  - watch: ./incoming\n"),
    )
    .unwrap();
    site.write_settings(
        &sim,
        "  submit_per_minute: 6000\n  submit_burst: 50\n  max_in_flight: 50\n  \
         poll_per_minute: 60000\n  download_concurrency: 8\n",
    );
    let daemon = site.start(&sim).await;
    site.wait_done(&sim, "stand", 1).await;

    // A copy under a temporary name then renamed, one written straight, and a bad image.
    std::fs::write(incoming.join("w001.png.part"), unique_png(101)).unwrap();
    std::fs::rename(incoming.join("w001.png.part"), incoming.join("w001.png")).unwrap();
    std::fs::write(incoming.join("w002.png"), unique_png(102)).unwrap();
    std::fs::write(incoming.join("broken.png"), b"this is not a png at all").unwrap();
    site.wait_done(&sim, "stand", 3).await;
    wait_for("an error file beside the bad image", WAIT, || async {
        incoming.join("broken.png.error.txt").exists().then_some(())
    })
    .await;
    let (_, code, log) = daemon.terminate().await;
    assert_eq!(code, Some(0), "{log}");

    // Dropped while the daemon is down.
    std::fs::write(incoming.join("w003.png"), unique_png(103)).unwrap();
    let daemon = site.start(&sim).await;
    site.wait_done(&sim, "stand", 4).await;
    let (_, code, log) = daemon.terminate().await;
    assert_eq!(code, Some(0), "{log}");

    let expected: Vec<String> = (0..4).map(|i| format!("w{i:03}.mp4")).collect();
    assert_clips_whole(&site.out("stand"), &expected);
    let bills = crate::helper::net_bills_per_subject(&sim.ledger());
    assert_eq!(bills.len(), 4, "{bills:?}");
    assert!(bills.values().all(|n| *n == 1), "billed twice: {bills:?}");
    assert!(!bills.contains_key("broken.png"));
    assert_eq!(site.count(&sim, "stand", "rejected").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_in_a_busy_run_exits_quickly_leaves_no_partial_file_and_a_restart_finishes() {
    let mut site = Site::new();
    let sim = site.sim(Duration::from_millis(400)).await;
    site.write_settings(
        &sim,
        "  submit_per_minute: 600\n  submit_burst: 4\n  max_in_flight: 6\n  \
         poll_per_minute: 60000\n  download_concurrency: 4\n",
    );
    let text = manifest("busy", &listed_subjects(&site, "s", 0..24));
    let daemon = site.start(&sim).await;
    std::fs::write(site.inbox().join("busy.yaml"), text).unwrap();
    site.wait_done(&sim, "busy", 4).await;
    wait_for("tasks in flight", WAIT, || async {
        (site.count(&sim, "busy", "running").await > 0).then_some(())
    })
    .await;

    let (took, code, log) = daemon.terminate().await;
    assert!(
        took < Duration::from_secs(5),
        "took {took:?} to stop:\n{log}"
    );
    assert_eq!(code, Some(0), "{log}");
    let done_before = site.count(&sim, "busy", "done").await;
    assert!(done_before < 24, "the batch finished before the signal");
    // Only whole clips under final names.
    let out = site.out("busy");
    let names = names_in(&out);
    assert_eq!(names.len() as u64, done_before, "{names:?}");
    assert_clips_whole(&out, &names);

    let daemon = site.start(&sim).await;
    site.wait_done(&sim, "busy", 24).await;
    let (_, code, log) = daemon.terminate().await;
    assert_eq!(code, Some(0), "{log}");
    let expected: Vec<String> = (0..24).map(|i| format!("s{i:03}.mp4")).collect();
    assert_clips_whole(&out, &expected);
    let bills = crate::helper::net_bills_per_subject(&sim.ledger());
    assert_eq!(bills.len(), 24, "{bills:?}");
    assert!(bills.values().all(|n| *n == 1), "billed twice: {bills:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_on_the_same_state_folder_is_refused_and_a_paused_batch_waits() {
    let mut site = Site::new();
    let sim = site.sim(Duration::from_millis(100)).await;
    let daemon = site.start(&sim).await;
    let second = site.command(&sim, &["daemon"]).output().await.unwrap();
    assert_eq!(second.status.code(), Some(5), "{second:?}");
    assert!(String::from_utf8_lossy(&second.stderr).contains("in use by another recast"));

    let accepted = site.inbox().join("accepted");
    std::fs::write(
        site.inbox().join("held.yaml"),
        manifest("held", &listed_subjects(&site, "h", 0..2)),
    )
    .unwrap();
    site.wait_done(&sim, "held", 2).await;
    let paused = site
        .command(&sim, &["pause", "held"])
        .output()
        .await
        .unwrap();
    assert!(paused.status.success(), "{paused:?}");

    // Two more subjects for the paused batch, then another batch: the other one is made while
    // the paused one's new jobs wait.
    std::fs::write(
        site.inbox().join("held.yaml"),
        manifest("held", &listed_subjects(&site, "h", 0..4)),
    )
    .unwrap();
    wait_for("the grown manifest accepted", WAIT, || async {
        accepted.join("held-2.yaml").exists().then_some(())
    })
    .await;
    std::fs::write(
        site.inbox().join("other.yaml"),
        manifest("other", &listed_subjects(&site, "o", 0..1)),
    )
    .unwrap();
    site.wait_done(&sim, "other", 1).await;
    assert_eq!(
        site.count(&sim, "held", "planned").await,
        2,
        "{}",
        daemon.log()
    );
    assert_eq!(site.count(&sim, "held", "done").await, 2);

    // A cancel works while the daemon runs, and sticks through the daemon's own ticks: a bare
    // resume lifts the pause but not the cancel; only `resume held` does.
    let cancelled = site
        .command(&sim, &["cancel", "held"])
        .output()
        .await
        .unwrap();
    assert!(cancelled.status.success(), "{cancelled:?}");
    let resumed = site.command(&sim, &["resume"]).output().await.unwrap();
    assert!(resumed.status.success(), "{resumed:?}");
    assert_eq!(site.count(&sim, "held", "cancelled").await, 2);
    let resumed = site
        .command(&sim, &["resume", "held"])
        .output()
        .await
        .unwrap();
    assert!(
        String::from_utf8_lossy(&resumed.stderr).contains("2 will be submitted"),
        "{resumed:?}"
    );
    site.wait_done(&sim, "held", 4).await;
    let (_, code, log) = daemon.terminate().await;
    assert_eq!(code, Some(0), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_reconciles_its_folder_adding_new_subjects_and_never_remaking_old_ones() {
    let mut site = Site::new();
    let sim = site.sim(Duration::from_millis(100)).await;
    // The scheduled folder is the inbox's media root too, so its media have a URL; a separate
    // `repo/` folder would need its own `media_base_url`.
    let repo = site.inbox().join("repo");
    std::fs::create_dir_all(repo.join("media")).unwrap();
    std::fs::write(repo.join("media/ref.mp4"), reference_clip()).unwrap();
    let write_manifest = |n: usize| {
        let mut subjects = String::new();
        for i in 0..n {
            std::fs::write(repo.join(format!("r{i:03}.png")), unique_png(200 + i)).unwrap();
            subjects.push_str(&format!("  - id: r{i:03}\n    image: ./r{i:03}.png\n"));
        }
        // Written beside and renamed, as a `git pull` does.
        std::fs::write(repo.join(".git-tmp"), manifest("repo", &subjects)).unwrap();
        std::fs::rename(repo.join(".git-tmp"), repo.join("campaign.yaml")).unwrap();
    };
    write_manifest(2);
    let settings = site.write_settings(
        &sim,
        "  submit_per_minute: 6000\n  submit_burst: 50\n  max_in_flight: 50\n  \
         poll_per_minute: 60000\n  download_concurrency: 8\n",
    );
    let mut text = std::fs::read_to_string(&settings).unwrap();
    text.push_str(&format!(
        "  schedules:\n    - cron: '* * * * * *'\n      folder: {}\n      media_base_url: {}/media/repo/\n",
        repo.display(),
        sim.base_url()
    ));
    std::fs::write(&settings, text).unwrap();

    let daemon = site.start(&sim).await;
    site.wait_done(&sim, "repo", 2).await;
    write_manifest(3);
    site.wait_done(&sim, "repo", 3).await;
    let (_, code, log) = daemon.terminate().await;
    assert_eq!(code, Some(0), "{log}");
    // The folder is its owner's: nothing moved.
    assert!(repo.join("campaign.yaml").exists());
    let bills = crate::helper::net_bills_per_subject(&sim.ledger());
    assert_eq!(bills.len(), 3, "{bills:?}");
    assert!(bills.values().all(|n| *n == 1), "billed twice: {bills:?}");
    assert_clips_whole(
        &repo.join("out/repo"),
        &["r000.mp4".to_owned(), "r001.mp4".into(), "r002.mp4".into()],
    );
}

#[test]
fn a_watch_subject_lists_the_folders_whole_images_and_may_start_empty() {
    let site = Site::new();
    let incoming = site.inbox().join("incoming");
    std::fs::create_dir_all(&incoming).unwrap();
    let path = site.inbox().join("stand.yaml");
    std::fs::write(&path, manifest("stand", "  - watch: ./incoming\n")).unwrap();
    let options = recast::manifest::LoadOptions::default();
    let empty = recast::manifest::load(&path, &options).unwrap();
    assert!(empty.jobs.is_empty());
    assert_eq!(empty.watch_dirs, std::slice::from_ref(&incoming));

    for (i, name) in [
        "b.png",
        "a.JPG",
        "c.png.part",
        ".d.png",
        "e.crdownload",
        "f.txt",
        "g.png~",
    ]
    .into_iter()
    .enumerate()
    {
        std::fs::write(incoming.join(name), unique_png(300 + i)).unwrap();
    }
    let batch = recast::manifest::load(&path, &options).unwrap();
    let ids: Vec<&str> = batch.jobs.iter().map(|j| &*j.subject_id).collect();
    assert_eq!(ids, ["a", "b"]);

    std::fs::write(
        &path,
        manifest("stand", "  - watch: ./incoming\n    image: ./x.png\n"),
    )
    .unwrap();
    let errors = recast::manifest::load(&path, &options)
        .unwrap_err()
        .to_string();
    assert!(errors.contains("has both `image` and `watch`"), "{errors}");
    std::fs::write(&path, manifest("stand", "  - watch: ../../etc\n")).unwrap();
    let errors = recast::manifest::load(&path, &options)
        .unwrap_err()
        .to_string();
    assert!(errors.contains("outside the manifest's folder"), "{errors}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_dropped_into_an_inbox_is_never_read_and_no_link_is_written_through() {
    let mut site = Site::new();
    let sim = site.sim(Duration::from_millis(100)).await;
    let secrets = tempfile::tempdir().unwrap();
    let key_file = secrets.path().join("reapi.key");
    std::fs::write(&key_file, "sk-live-SECRET-KEY-123\n").unwrap();
    // A dangling link where the next error file would go, aimed outside the inbox.
    let rejected = site.inbox().join("rejected");
    std::fs::create_dir_all(&rejected).unwrap();
    let planted = secrets.path().join("pwned.txt");
    std::os::unix::fs::symlink(&planted, rejected.join("bad.error.txt")).unwrap();
    let daemon = site.start(&sim).await;

    std::os::unix::fs::symlink(&key_file, site.inbox().join("evil.yaml")).unwrap();
    let bad_text =
        manifest("bad", &listed_subjects(&site, "b", 0..1)).replace("mode: std", "mode: ultra");
    std::fs::write(site.inbox().join("bad.yaml"), &bad_text).unwrap();
    // A file name built to forge a log line.
    std::fs::write(
        site.inbox()
            .join("x\n2026-01-01T00:00:00Z  INFO FORGED line.yaml"),
        &bad_text,
    )
    .unwrap();
    wait_for("the three drops rejected", WAIT, || async {
        (rejected.join("evil.yaml").is_symlink()
            && rejected.join("bad-2.yaml").exists()
            && rejected
                .join("x\n2026-01-01T00:00:00Z  INFO FORGED line.error.txt")
                .exists())
        .then_some(())
    })
    .await;
    let (_, code, log) = daemon.terminate().await;
    assert_eq!(code, Some(0), "{log}");

    let why = std::fs::read_to_string(rejected.join("evil.error.txt")).unwrap();
    assert!(why.contains("symbolic link"), "{why}");
    for text in [why.as_str(), log.as_str()] {
        assert!(!text.contains("SECRET"), "the key leaked: {text}");
    }
    assert!(
        !planted.exists(),
        "an error file was written through a planted link"
    );
    let bad_why = std::fs::read_to_string(rejected.join("bad-2.error.txt")).unwrap();
    assert!(bad_why.contains("ultra"), "{bad_why}");
    assert!(
        !log.lines().any(|l| l.starts_with("2026-01-01T00:00:00Z")),
        "a file name forged a log line:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drop_whose_probe_hangs_does_not_hold_back_the_next_drop() {
    let mut site = Site::new();
    let sim = site.sim(Duration::from_millis(100)).await;
    // A media server that accepts and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let slow_addr = listener.local_addr().unwrap();
    let asked = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let noted = asked.clone();
    let app = axum::Router::new().fallback(axum::routing::get(move || {
        noted.store(true, std::sync::atomic::Ordering::SeqCst);
        async {
            tokio::time::sleep(Duration::from_secs(600)).await;
            "never"
        }
    }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let daemon = site.start(&sim).await;

    let slow = manifest("slow", &listed_subjects(&site, "w", 0..1)).replace(
        "./subjects/w000.png",
        &format!("http://{slow_addr}/w000.png"),
    );
    std::fs::write(site.inbox().join("slow.yaml"), slow).unwrap();
    // Once the slow drop's probe is waiting on the server, drop a good one.
    wait_for("the slow drop's probe to start", WAIT, || async {
        asked
            .load(std::sync::atomic::Ordering::SeqCst)
            .then_some(())
    })
    .await;
    let accepted = site.inbox().join("accepted");
    std::fs::write(
        site.inbox().join("good.yaml"),
        manifest("good", &listed_subjects(&site, "g", 0..1)),
    )
    .unwrap();
    wait_for(
        "the good drop accepted while the slow one hangs",
        Duration::from_secs(20),
        || async { accepted.join("good.yaml").exists().then_some(()) },
    )
    .await;
    assert!(
        !accepted.join("slow.yaml").exists() && !site.inbox().join("rejected/slow.yaml").exists(),
        "the slow drop is still being probed"
    );
    site.wait_done(&sim, "good", 1).await;
    let (_, code, log) = daemon.terminate().await;
    assert_eq!(code, Some(0), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_a_run_published_with_a_media_base_url_is_finished_by_the_daemon() {
    let mut site = Site::new();
    // A campaign folder outside every inbox, published by the run's --media-base-url alone.
    let campaign = site.root().join("campaign");
    std::fs::create_dir_all(campaign.join("media")).unwrap();
    std::fs::create_dir_all(campaign.join("subjects")).unwrap();
    std::fs::write(campaign.join("media/ref.mp4"), reference_clip()).unwrap();
    let mut subjects = String::new();
    for i in 0..3 {
        std::fs::write(campaign.join(format!("subjects/c{i}.png")), unique_png(i)).unwrap();
        subjects.push_str(&format!("  - id: c{i}\n    image: ./subjects/c{i}.png\n"));
    }
    std::fs::write(campaign.join("jobs.yaml"), manifest("campaign", &subjects)).unwrap();
    let sim = Sim::start(SimConfig {
        media_dir: Some(site.root()),
        generation: Generation::Fixed(Duration::from_millis(100)),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    // One task in flight at a time: the tick submits one subject and leaves the rest.
    site.write_settings(
        &sim,
        "  submit_per_minute: 6000\n  submit_burst: 50\n  max_in_flight: 1\n  \
         poll_per_minute: 60000\n  download_concurrency: 8\n",
    );
    let base = format!("{}/media/campaign/", sim.base_url());
    let manifest_path = campaign.join("jobs.yaml");
    let tick = site
        .command(
            &sim,
            &[
                "run",
                manifest_path.to_str().unwrap(),
                "--no-wait",
                "--media-base-url",
                &base,
            ],
        )
        .output()
        .await
        .unwrap();
    assert!(tick.status.success(), "{}", describe(&tick));
    assert_eq!(sim.stats().submits_accepted, 1);
    let daemon = site.start(&sim).await;
    site.wait_done(&sim, "campaign", 3).await;
    let (_, code, log) = daemon.terminate().await;
    assert_eq!(code, Some(0), "{log}");
    assert!(!log.contains("no public URL"), "{log}");
    let bills = crate::helper::net_bills_per_subject(&sim.ledger());
    assert_eq!(bills.len(), 3, "{bills:?}");
    assert!(bills.values().all(|n| *n == 1), "{bills:?}");
}
