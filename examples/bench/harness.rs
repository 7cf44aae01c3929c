//! What every benchmark stands on: a batch in a temp dir (manifest, a 2 KB reference clip,
//! tiny unique PNG subjects found by one `glob:` entry), the simulator on loopback, the engine
//! wired in-process exactly as `recast run` wires it, and the real `recast` binary spawned with
//! its CPU time and peak RSS read from `/proc`.
//!
//! Everything written lands in the temp dir, removed when the [`Bench`] is dropped.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use recast::engine::{Engine, EngineConfig, MediaPublisher, PollSchedule, RunMode, register};
use recast::manifest::{self, LoadOptions};
use recast::plan::{Prober, make_plan};
use recast::pricing::PriceTable;
use recast::provider::{
    ApiKey, HttpProvider, HttpProviderConfig, Provider, ProviderError, SubmitRequest, TaskStatus,
};
use recast::sim::{Generation, Sim, SimConfig};
use recast::store::{Scope, Store};
use tokio::process::Command;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::png;

/// The reference clip: 4 s, 340 x 340, 2 KB (made once with ffmpeg, see docs/readme-bench.md),
/// so 100,000 downloaded clips stay small.
const REFERENCE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/media/solid-4s.mp4"
);

/// The most files one `glob:` subject entry may match.
const GLOB_MAX: usize = 10_000;

/// Limits, applied alike to the simulator (the provider's side) and to recast.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub submit_per_minute: u32,
    pub submit_burst: u32,
    pub max_in_flight: u32,
}

/// A batch of `jobs` subjects in a temp dir.
pub struct Bench {
    dir: tempfile::TempDir,
}

impl Bench {
    pub fn new(jobs: usize) -> std::io::Result<Bench> {
        let dir = tempfile::Builder::new().prefix("recast-bench-").tempdir()?;
        let root = dir.path();
        std::fs::create_dir_all(root.join("media"))?;
        std::fs::copy(REFERENCE, root.join("media/ref.mp4"))?;
        // A `glob:` matches at most 10,000 files: one folder and one glob per 10,000 subjects.
        let folders = jobs.div_ceil(GLOB_MAX).max(1);
        let mut manifest = String::from(
            "version: 1\nname: bench\nreference:\n  video: ./media/ref.mp4\n\
             model: kling-v3-motion-control\nmode: std\ncharacter_orientation: image\n\
             keep_original_sound: true\nsubjects:\n",
        );
        for f in 0..folders {
            std::fs::create_dir_all(root.join(format!("subjects/d{f}")))?;
            manifest.push_str(&format!("  - glob: ./subjects/d{f}/*.png\n"));
        }
        manifest.push_str("output:\n  dir: ./out\n");
        for i in 0..jobs {
            std::fs::write(
                root.join(format!("subjects/d{}/s{i:06}.png", i / GLOB_MAX)),
                png::unique_png(i),
            )?;
        }
        std::fs::write(root.join("jobs.yaml"), manifest)?;
        Ok(Bench { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn out(&self) -> PathBuf {
        self.path().join("out")
    }

    /// A simulator serving this batch's media, with the provider-side limits.
    pub async fn sim(&self, limits: Option<Limits>, generation: Duration) -> Sim {
        self.sim_with(limits, generation, Default::default()).await
    }

    /// The simulator with faults (a storm of 429s, for one).
    pub async fn sim_with(
        &self,
        limits: Option<Limits>,
        generation: Duration,
        faults: recast::sim::Faults,
    ) -> Sim {
        let config = self.sim_config(limits, generation, faults);
        Sim::start(config).await.expect("the simulator starts")
    }

    /// The simulator's settings for this batch, to adjust before starting it.
    pub fn sim_config(
        &self,
        limits: Option<Limits>,
        generation: Duration,
        faults: recast::sim::Faults,
    ) -> SimConfig {
        SimConfig {
            faults,
            media_dir: Some(self.path().to_path_buf()),
            generation: Generation::Fixed(generation),
            submit_rate_per_min: limits.map(|l| l.submit_per_minute),
            submit_burst: limits.map_or(1, |l| l.submit_burst),
            max_in_flight: limits.map(|l| l.max_in_flight),
            ..SimConfig::default()
        }
    }
}

/// How often the benchmarks poll the simulator (the same schedule as the end-to-end tests).
pub fn poll_schedule() -> PollSchedule {
    PollSchedule {
        first_base: Duration::from_millis(50),
        first_per_clip_second: Duration::ZERO,
        first_max: Duration::from_millis(100),
        interval_min: Duration::from_millis(50),
        interval_max: Duration::from_millis(200),
    }
}

pub fn engine_config(limits: Limits) -> EngineConfig {
    EngineConfig {
        // The in-process simulator's clip links are on loopback.
        allow_private_networks: true,
        submit_per_minute: limits.submit_per_minute,
        submit_burst: limits.submit_burst,
        max_in_flight: limits.max_in_flight,
        poll_per_minute: 60_000,
        poll_schedule: poll_schedule(),
        download_concurrency: 8,
        trust_idempotency: true,
        ..EngineConfig::default()
    }
}

/// The HTTP provider, with the moment of every accepted submit written down.
pub struct Timed<P> {
    inner: P,
    accepted: Arc<Mutex<Vec<Instant>>>,
}

impl<P: Provider> Provider for Timed<P> {
    async fn submit(
        &self,
        request: &SubmitRequest,
        idempotency_key: &str,
    ) -> Result<String, ProviderError> {
        let answer = self.inner.submit(request, idempotency_key).await;
        if answer.is_ok() {
            self.accepted
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(Instant::now());
        }
        answer
    }

    async fn balance(&self) -> Result<Option<u64>, ProviderError> {
        self.inner.balance().await
    }

    async fn poll(&self, task_id: &str) -> Result<TaskStatus, ProviderError> {
        self.inner.poll(task_id).await
    }

    fn take_rate_limit_hint(&self) -> Option<recast::provider::RateLimitHint> {
        self.inner.take_rate_limit_hint()
    }
}

/// What an in-process run did.
pub struct EngineRun {
    /// From the engine's start to its return (every clip on disk).
    pub makespan: Duration,
    /// When each accepted submit's answer arrived, in order.
    pub accepted: Vec<Instant>,
    pub done: u64,
    /// Jobs left `unknown` (a submit whose outcome was never learned).
    pub unknown: u64,
}

/// Plan, register and run the batch through the library, as `recast run` does, against `sim`.
/// The clock starts when the engine starts: manifest loading, probing and registration are
/// not part of the makespan.
pub async fn run_in_process(bench: &Bench, sim: &Sim, config: EngineConfig) -> EngineRun {
    run_in_process_at(bench, sim, config, &bench.path().join("state")).await
}

/// [`run_in_process`] with the state folder at `state` (one shared by runs, to see what a run
/// remembers for the next).
pub async fn run_in_process_at(
    bench: &Bench,
    sim: &Sim,
    config: EngineConfig,
    state: &Path,
) -> EngineRun {
    let store = Arc::new(Store::open(state).expect("store opens"));
    let batch = manifest::load(&bench.path().join("jobs.yaml"), &LoadOptions::default())
        .expect("the bench manifest loads");
    let provider_id = "bench-sim";
    let base_dir = batch.base_dir.clone();
    let plan = make_plan(
        batch,
        provider_id,
        &PriceTable::default(),
        Some(&store),
        &Prober::default(),
    )
    .await
    .expect("the bench batch plans");
    assert_eq!(plan.invalid_count(), 0, "every bench subject is valid");
    let batch_id = register(&store, &plan, provider_id, &bench.out(), 0)
        .expect("registers")
        .batch_id;
    drop(plan);
    let mut publisher = MediaPublisher::default();
    publisher.publish(&base_dir, &format!("{}/media/", sim.base_url()));
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let provider = Timed {
        inner: HttpProvider::new(HttpProviderConfig {
            base_url: sim.base_url(),
            api_key: ApiKey::new(sim.api_key()).expect("a key"),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_wait: recast::provider::MAX_PROVIDER_WAIT,
        })
        .expect("client builds"),
        accepted: accepted.clone(),
    };
    let engine = Engine::new(
        store.clone(),
        provider,
        publisher,
        config,
        Scope::batches(provider_id, vec![batch_id]),
    )
    .expect("engine builds");
    let start = Instant::now();
    let report = engine
        .run(RunMode::UntilDone, CancellationToken::new())
        .await
        .expect("the run ends without a store error");
    let makespan = start.elapsed();
    assert!(report.halted.is_none(), "halted: {:?}", report.halted);
    let counts = store.batch_counts(batch_id).expect("counts");
    let done = counts.get(recast::store::JobState::Done);
    let unknown = counts.get(recast::store::JobState::Unknown);
    let accepted = accepted.lock().unwrap_or_else(|p| p.into_inner()).clone();
    EngineRun {
        makespan,
        accepted,
        done,
        unknown,
    }
}

/// What a spawned `recast run` did.
pub struct ChildRun {
    pub wall: Duration,
    /// User + system CPU of the child, from this process's `cutime + cstime` in
    /// `/proc/self/stat` before and after reaping it (ticks of 10 ms).
    pub cpu: Duration,
    /// The system part of `cpu` (`cstime`): the kernel's work for the child (file creation,
    /// fsyncs, sockets), which depends on the machine's file system more than on recast.
    pub sys: Duration,
    /// The child's `VmHWM` (peak resident set) from `/proc/<pid>/status`, last read before it
    /// exited (read every 20 ms; the high-water mark only grows).
    pub peak_rss_kib: u64,
    /// The child's `VmRSS` at the last reading before it exited: what it still held at the end.
    pub last_rss_kib: u64,
    pub exit_code: Option<i32>,
    pub finished: bool,
    pub stderr: String,
}

/// The `recast` binary of the same profile as this benchmark (`target/release/recast`).
pub fn recast_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("own path");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("recast"))
        .expect("target/<profile>/examples/bench");
    if !bin.exists() {
        eprintln!(
            "error: {} is missing: build it first with `cargo build --release`",
            bin.display()
        );
        std::process::exit(2);
    }
    bin
}

/// A settings file for the spawned binary: the benchmarks' polling and these limits; the
/// daemon's health server on a free port.
pub fn write_settings(bench: &Bench, limits: Limits) -> PathBuf {
    let settings = bench.path().join("recast.yaml");
    let p = poll_schedule();
    std::fs::write(
        &settings,
        format!(
            "polling:\n  first_base_ms: {}\n  first_per_clip_second_ms: 0\n  first_max_ms: {}\n  \
             interval_min_ms: {}\n  interval_max_ms: {}\nlimits:\n  submit_per_minute: {}\n  \
             submit_burst: {}\n  max_in_flight: {}\n  poll_per_minute: 600000\n  \
             download_concurrency: 16\nprovider:\n  trust_idempotency: true\n\
             daemon:\n  listen: 127.0.0.1:0\n",
            p.first_base.as_millis(),
            p.first_max.as_millis(),
            p.interval_min.as_millis(),
            p.interval_max.as_millis(),
            limits.submit_per_minute,
            limits.submit_burst,
            limits.max_in_flight,
        ),
    )
    .expect("settings written");
    settings
}

/// `recast <command> ...` against `sim`, with the benchmarks' settings and the simulator's key.
pub fn recast_command(bench: &Bench, sim: &Sim, settings: &Path, command: &str) -> Command {
    let mut cmd = Command::new(recast_binary());
    cmd.arg(command);
    if command == "run" {
        cmd.arg(bench.path().join("jobs.yaml")).arg("--json");
    }
    cmd.arg("--config")
        .arg(settings)
        .arg("--state-dir")
        .arg(bench.path().join("state"))
        .arg("--api-base")
        .arg(sim.base_url())
        .arg("--media-base-url")
        .arg(format!("{}/media/", sim.base_url()))
        .arg("--allow-private-networks")
        .env("REAPI_API_KEY", sim.api_key())
        // The default for a run whose stderr is not a terminal, and the store's commit and
        // sync counts at its close (`cpu` reads them).
        .env(
            "RECAST_LOG",
            "recast=info,recast::store::durable=debug,warn",
        )
        .env_remove("REAPI_BASE_URL")
        .current_dir(bench.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// `recast run jobs.yaml --json` against `sim` with these limits; killed after `deadline`.
/// With `sweep`, clips are deleted as they land (only their count matters) so 100,000 of them
/// never sit on disk at once.
pub async fn run_binary(
    bench: &Bench,
    sim: &Sim,
    limits: Limits,
    deadline: Duration,
    sweep: bool,
) -> ChildRun {
    let settings = write_settings(bench, limits);
    let mut cmd = recast_command(bench, sim, &settings, "run");
    let (user_before, sys_before) = children_cpu();
    let start = Instant::now();
    let mut child = cmd.spawn().expect("recast starts");
    let pid = child.id().expect("a pid");
    let mut stderr = child.stderr.take().expect("piped");
    let stderr_text = tokio::spawn(async move {
        let mut s = String::new();
        let _ = tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut s).await;
        s
    });
    let mut peak = 0;
    let mut last = 0;
    let mut last_sweep = Instant::now();
    let mut finished = true;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status.expect("recast is reaped"),
            _ = tokio::time::sleep(Duration::from_millis(20)) => {
                peak = peak.max(status_field(pid, "VmHWM:").unwrap_or(0));
                last = status_field(pid, "VmRSS:").unwrap_or(last);
                if sweep && last_sweep.elapsed() > Duration::from_secs(1) {
                    sweep_clips(&bench.out());
                    last_sweep = Instant::now();
                }
                if start.elapsed() > deadline {
                    finished = false;
                    let _ = child.start_kill();
                }
            }
        }
    };
    let wall = start.elapsed();
    let (user, sys) = children_cpu();
    let sys = sys.saturating_sub(sys_before);
    let cpu = user.saturating_sub(user_before) + sys;
    ChildRun {
        wall,
        sys,
        cpu,
        peak_rss_kib: peak,
        last_rss_kib: last,
        exit_code: status.code(),
        finished,
        stderr: stderr_text.await.unwrap_or_default(),
    }
}

fn sweep_clips(dir: &Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().ends_with(".mp4") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// A field of `/proc/<pid>/status` given in KiB (`VmHWM:`, `VmRSS:`).
fn status_field(pid: u32, name: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// CPU time of this process's reaped children, user and system: `cutime` and `cstime` of
/// `/proc/self/stat`. Linux reports them in USER_HZ ticks, which is 100 per second on every
/// mainstream kernel.
fn children_cpu() -> (Duration, Duration) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the `(comm)`, which may hold spaces; cutime and cstime are fields 16 and 17.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // `rest` starts at field 3 (state), so field n is at index n - 3.
    (
        Duration::from_millis(ticks(16 - 3) * 10),
        Duration::from_millis(ticks(17 - 3) * 10),
    )
}

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}
