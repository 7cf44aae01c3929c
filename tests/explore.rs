//! A seeded explorer of users' weeks: random sequences of what people do to a batch (runs,
//! `--no-wait` ticks, SIGKILLs at random moments, cancel, pause and resume, priced retries, a
//! prompt edit, a renamed manifest, `--simulate` trials and a second state folder beside it, a
//! lost state folder) against a simulator with faults, with de-duplication on or off, each
//! episode's runs planning the manifest in chunks of its own size (one subject to all). After
//! every step the money invariants are checked against the simulator's ledger and the disk:
//!
//! - no clip (subject and prompt) billed twice, unless a person's priced `retry --yes` allowed it;
//! - nothing new submitted while the batch is cancelled or paused;
//! - never more spent than the budget (plus what a person's priced retry allowed);
//! - every file under a clip's final name is a whole clip.
//!
//! The suite runs a few hundred steps. Reproduce or explore further with one command:
//! `RECAST_EXPLORE_SEED=7 RECAST_EXPLORE_EPISODES=50 cargo test --test tests explore -- --nocapture`

use std::collections::HashMap;
use std::time::Duration;

use recast::sim::{Fault, Faults, Generation, Sim, SimConfig};

use crate::helper::SeededRng;
use crate::helper::workspace::{Workspace, describe, reference_clip};

const SUBJECTS: usize = 4;
const BUDGET_CREDITS: u64 = 7000;
/// Any one command gets this long before the explorer calls it stuck.
const STEP_TIMEOUT: Duration = Duration::from_secs(90);

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What the explorer knows that the system must respect.
struct World {
    ws: Workspace,
    sim: Sim,
    label: String,
    manifest: String,
    prompt_version: u32,
    /// Run flags for this episode's provider (trust keys, dedicated account).
    flags: Vec<&'static str>,
    /// Set while a person's cancel or pause stands: the ledger's task count then.
    frozen_at: Option<usize>,
    cancelled: bool,
    paused: bool,
    /// Bills a person's priced retry allowed beyond one, per subject image.
    allowed_extra: HashMap<String, usize>,
    renames: u32,
    /// Runs that resumed the batch unchanged, without planning it (the stamp's shortcut).
    resumed: std::cell::Cell<u32>,
    /// Subjects a run plans at a time (`RECAST_PLAN_CHUNK`): from one a chunk to all in one.
    chunk: u64,
}

impl World {
    async fn new(seed: u64, rng: &mut SeededRng) -> World {
        let ws = Workspace::new(
            SUBJECTS,
            &format!(
                "prompt: \"v0\"\nretries: 2\nbudget:\n  max_usd: {:.3}\n",
                BUDGET_CREDITS as f64 / 1000.0
            ),
        );
        let honour = rng.chance(50);
        let sim = Sim::start(SimConfig {
            generation: Generation::Fixed(Duration::from_millis(150 + rng.below(400))),
            honour_idempotency: honour,
            faults: Faults {
                seed,
                task_failure: Fault::rate(0.05),
                submit_5xx: Fault::rate(0.03),
                submit_reset: Fault::rate(0.03),
                ambiguous_submit: Fault::rate(0.04),
                poll_5xx: Fault::rate(0.05),
                truncated_download: Fault::rate(0.05),
                ..Faults::default()
            },
            ..ws.sim_config()
        })
        .await
        .unwrap();
        let mut flags = Vec::new();
        if honour && rng.chance(50) {
            flags.push("--trust-idempotency");
        } else if rng.chance(60) {
            flags.push("--dedicated-account");
        }
        // From the seed, not the walk's random numbers: every seed keeps the walk it had.
        let chunk = 1 + seed % (SUBJECTS as u64 + 1);
        World {
            label: format!(
                "seed {seed} (de-duplication {honour}, flags {flags:?}, chunks of {chunk})"
            ),
            ws,
            sim,
            manifest: "jobs.yaml".to_owned(),
            prompt_version: 0,
            flags,
            frozen_at: None,
            cancelled: false,
            paused: false,
            allowed_extra: HashMap::new(),
            renames: 0,
            resumed: Default::default(),
            chunk,
        }
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = self.ws.recast_command(&self.sim, args);
        // Every run may take a stamp and resume an unchanged batch without planning it.
        cmd.env("RECAST_STAMP_RACY_MS", "0")
            .env("RECAST_PLAN_CHUNK", self.chunk.to_string())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        cmd
    }

    /// Run a command to its end; a command that hangs fails the walk.
    async fn finish(&self, args: &[&str]) -> std::process::Output {
        let child = self.command(args).spawn().unwrap();
        match tokio::time::timeout(STEP_TIMEOUT, child.wait_with_output()).await {
            Ok(out) => {
                let out = out.unwrap();
                let said = String::from_utf8_lossy(&out.stderr);
                if said.contains("unchanged since it was registered") {
                    self.resumed.set(self.resumed.get() + 1);
                }
                out
            }
            Err(_) => panic!("{}: `recast {}` did not end", self.label, args.join(" ")),
        }
    }

    fn run_args(&self, extra: &[&'static str]) -> Vec<String> {
        let mut args = vec!["run".to_owned(), self.manifest.clone()];
        args.extend(self.flags.iter().map(|f| (*f).to_owned()));
        args.extend(extra.iter().map(|f| (*f).to_owned()));
        args
    }

    async fn run(&self, extra: &[&'static str]) -> String {
        let args = self.run_args(extra);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.finish(&refs).await;
        let code = out.status.code();
        assert!(
            matches!(code, Some(0 | 1 | 3)),
            "{}: `recast {}` ended {code:?}\n{}",
            self.label,
            args.join(" "),
            describe(&out)
        );
        format!("run {extra:?} -> {code:?}")
    }

    async fn kill(&self, rng: &mut SeededRng) -> String {
        let args = self.run_args(&[]);
        let mut child = self
            .command(&args.iter().map(String::as_str).collect::<Vec<_>>())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let delay = Duration::from_millis(50 + rng.below(1500));
        tokio::select! {
            _ = child.wait() => "kill (it ended first)".to_owned(),
            _ = tokio::time::sleep(delay) => {
                child.start_kill().unwrap();
                child.wait().await.unwrap();
                format!("SIGKILL after {delay:?}")
            }
        }
    }

    /// The person's priced retry of everything that needs them: what it may bill twice is allowed.
    async fn retry_everything(&mut self) -> String {
        let status = self.finish(&["status", "e2e", "--json"]).await;
        if let Ok(doc) = serde_json::from_slice::<serde_json::Value>(&status.stdout) {
            for batch in doc["batches"].as_array().into_iter().flatten() {
                for job in batch["needs_a_person"].as_array().into_iter().flatten() {
                    if matches!(job["state"].as_str(), Some("lost" | "unknown")) {
                        let subject = job["subject_id"].as_str().unwrap_or_default();
                        *self
                            .allowed_extra
                            .entry(format!("{subject}.png"))
                            .or_default() += 1;
                    }
                }
            }
        }
        let out = self
            .finish(&[
                "retry",
                "e2e",
                "--failed",
                "--expired",
                "--rejected",
                "--unknown",
                "--lost",
                "--yes",
            ])
            .await;
        format!("retry everything --yes -> {:?}", out.status.code())
    }

    async fn step(&mut self, rng: &mut SeededRng) -> String {
        match rng.below(100) {
            0..=21 => self.run(&[]).await,
            22..=35 => self.run(&["--no-wait"]).await,
            36..=49 => self.kill(rng).await,
            50..=54 => {
                let out = self.finish(&["cancel", "e2e"]).await;
                if out.status.success() {
                    self.cancelled = true;
                    self.frozen_at
                        .get_or_insert(self.sim.ledger().entries.len());
                }
                format!("cancel -> {:?}", out.status.code())
            }
            55..=59 => {
                let out = self.finish(&["pause", "e2e"]).await;
                if out.status.success() {
                    self.paused = true;
                    self.frozen_at
                        .get_or_insert(self.sim.ledger().entries.len());
                }
                format!("pause -> {:?}", out.status.code())
            }
            60..=67 => {
                let out = self.finish(&["resume", "e2e"]).await;
                if out.status.success() {
                    (self.cancelled, self.paused, self.frozen_at) = (false, false, None);
                }
                format!("resume -> {:?}", out.status.code())
            }
            68..=72 => {
                let out = self
                    .finish(&["retry", "e2e", "--failed", "--expired", "--rejected"])
                    .await;
                format!("retry free -> {:?}", out.status.code())
            }
            73..=75 => self.retry_everything().await,
            76..=79 => {
                let path = self.ws.path().join(&self.manifest);
                let text = std::fs::read_to_string(&path).unwrap();
                let next = self.prompt_version + 1;
                let text = text.replace(
                    &format!("prompt: \"v{}\"", self.prompt_version),
                    &format!("prompt: \"v{next}\""),
                );
                std::fs::write(&path, text).unwrap();
                self.prompt_version = next;
                format!("edit the prompt to v{next}")
            }
            80..=82 => {
                self.renames += 1;
                let to = format!("renamed-{}.yaml", self.renames);
                std::fs::rename(
                    self.ws.path().join(&self.manifest),
                    self.ws.path().join(&to),
                )
                .unwrap();
                self.manifest = to.clone();
                format!("rename the manifest to {to}")
            }
            83..=89 => {
                let out = self
                    .finish(&["run", &self.manifest.clone(), "--simulate"])
                    .await;
                assert!(
                    matches!(out.status.code(), Some(0 | 1 | 3)),
                    "{}: a --simulate trial failed\n{}",
                    self.label,
                    describe(&out)
                );
                format!("--simulate trial -> {:?}", out.status.code())
            }
            90..=94 if self.output_held_by_main_state() => {
                let other = self.ws.path().join("second-state");
                let out = self
                    .ws
                    .recast_command_in(&self.sim, &other, &["run", &self.manifest])
                    .env("RECAST_STAMP_RACY_MS", "0")
                    .output()
                    .await
                    .unwrap();
                assert_eq!(
                    out.status.code(),
                    Some(1),
                    "{}: a second state folder was let fill the output folder\n{}",
                    self.label,
                    describe(&out)
                );
                "a second state folder (refused)".to_owned()
            }
            _ => {
                let _ = std::fs::remove_dir_all(self.ws.state());
                // A person's cancel and pause lived in the lost state folder.
                (self.cancelled, self.paused, self.frozen_at) = (false, false, None);
                "lose the state folder".to_owned()
            }
        }
    }

    /// The output folder names the main state folder as the one filling it, and that exists.
    fn output_held_by_main_state(&self) -> bool {
        let recorded =
            std::fs::read_to_string(self.ws.out().join(".recast.lock")).unwrap_or_default();
        let main = self.ws.state().canonicalize().ok();
        self.ws.state().join("recast.db").exists()
            && main.is_some_and(|m| recorded.lines().nth(1) == Some(&*m.to_string_lossy()))
    }

    /// The money invariants, against the simulator's ledger and the disk.
    fn check(&self, history: &[String]) {
        let ledger = self.sim.ledger();
        let trail = || format!("{}\nsteps:\n  {}", self.label, history.join("\n  "));
        let mut bills: HashMap<(String, Option<String>), usize> = HashMap::new();
        for e in ledger
            .entries
            .iter()
            .filter(|e| e.credits > 0 && !e.refunded)
        {
            let image = e
                .image_url
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_owned();
            *bills.entry((image, e.prompt.clone())).or_default() += 1;
        }
        for ((image, prompt), n) in &bills {
            let allowed = 1 + self.allowed_extra.get(image).copied().unwrap_or(0);
            assert!(
                *n <= allowed,
                "{image} with prompt {prompt:?} billed {n} times ({allowed} allowed)\n{}",
                trail()
            );
        }
        if let Some(at) = self.frozen_at {
            assert_eq!(
                ledger.entries.len(),
                at,
                "a task was created while the batch was cancelled or paused\n{}",
                trail()
            );
        }
        let extra: usize = self.allowed_extra.values().sum();
        assert!(
            ledger.totals.net_credits <= BUDGET_CREDITS + 566 * extra as u64,
            "{} credits spent over a budget of {BUDGET_CREDITS}\n{}",
            ledger.totals.net_credits,
            trail()
        );
        if let Some(mismatch) = counters_disagree_with_a_scan(&self.ws.state().join("recast.db")) {
            panic!("{mismatch}\n{}", trail());
        }
        let reference = reference_clip();
        for dir in [self.ws.out(), self.ws.out().join("simulated")] {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.ends_with(".mp4") && !name.starts_with('.') {
                    assert!(
                        std::fs::read(entry.path()).unwrap() == reference,
                        "{} is not a whole clip\n{}",
                        entry.path().display(),
                        trail()
                    );
                }
            }
        }
    }
}

/// The counters views read (kept by triggers) against a scan of the rows they count.
fn counters_disagree_with_a_scan(db: &std::path::Path) -> Option<String> {
    if !db.exists() {
        return None;
    }
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open the state database read-only");
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .unwrap();
    let migrated: bool = conn
        .query_row(
            "SELECT count(*) > 0 FROM sqlite_master WHERE name = 'batch_state_counts'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    if !migrated {
        return None; // a state folder lost and not yet opened again
    }
    let rows = |sql: &str| -> Vec<(i64, String, i64)> {
        let mut s = conn.prepare(sql).unwrap();
        s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let pairs = [
        (
            "SELECT batch_id, state, n FROM batch_state_counts WHERE n != 0 ORDER BY 1, 2",
            "SELECT batch_id, state, count(*) FROM jobs GROUP BY 1, 2 ORDER BY 1, 2",
        ),
        (
            "SELECT batch_id, state, credits FROM batch_attempt_credits WHERE credits != 0
             ORDER BY 1, 2",
            "SELECT j.batch_id, a.state, sum(a.credits_estimate) FROM attempts a
             JOIN jobs j ON j.id = a.job_id GROUP BY 1, 2 HAVING sum(a.credits_estimate) != 0
             ORDER BY 1, 2",
        ),
    ];
    for (counters, scan) in pairs {
        let (kept, counted) = (rows(counters), rows(scan));
        if kept != counted {
            return Some(format!("counters {kept:?} != scan {counted:?}"));
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_weeks_of_user_actions_and_faults_keep_the_money_invariants() {
    let first_seed = env_or("RECAST_EXPLORE_SEED", 1);
    let episodes = env_or("RECAST_EXPLORE_EPISODES", 7);
    let steps = env_or("RECAST_EXPLORE_STEPS", 30);
    for seed in first_seed..first_seed + episodes {
        let mut rng = SeededRng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut world = World::new(seed, &mut rng).await;
        let mut history = Vec::new();
        for _ in 0..steps {
            let what = world.step(&mut rng).await;
            // Captured, and shown with a failure: the steps that led to it.
            eprintln!("{}: {what}", world.label);
            history.push(what);
            world.check(&history);
        }
        let t = world.sim.ledger().totals;
        eprintln!(
            "{}: {steps} steps, {} tasks billed, {} credits net, {} runs resumed unchanged",
            world.label,
            t.billed_tasks,
            t.net_credits,
            world.resumed.get()
        );
        world.sim.shutdown().await;
    }
}
