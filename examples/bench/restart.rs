//! `restart`: how long after a crash does work go on, and how fast does `recast status` answer,
//! with N jobs registered?
//!
//! A first `recast run` registers the whole batch and submits slowly (recast set to 60/min,
//! tasks that never finish during the benchmark); once the simulator has accepted two submits
//! it is killed with SIGKILL. Then the same `recast run` starts again, as cron or a person
//! would. The first run stamped what it read (`plan::stamp`), so the second finds the manifest
//! and every subject unchanged by a `stat` of each, resumes the batch from the store without
//! planning it again, recovers the interrupted submit and goes on. Measured: from its spawn to
//! the simulator's next accepted submit, whether it resumed unchanged, and `recast status`
//! (best of three).
//!
//! The subjects are written, then left two seconds before the first run: a file changed within
//! two seconds of a run's reading is not vouched for by a stamp (a user's files are older than
//! that when a crashed run is started again).

use std::time::Duration;

use tokio::time::Instant;

use crate::harness::{Bench, Limits, recast_command, write_settings};

pub async fn run(jobs: usize) {
    println!("== restart: first submit after SIGKILL and the same `recast run` again, and");
    println!("   `recast status`, at {jobs} jobs");
    let bench = Bench::new(jobs).expect("bench batch");
    tokio::time::sleep(recast::plan::stamp::RACY + Duration::from_millis(100)).await;
    // The provider is never the bottleneck; tasks outlast the benchmark.
    let sim = bench
        .sim(
            Some(Limits {
                submit_per_minute: 600_000,
                submit_burst: 1000,
                max_in_flight: 1_000_000,
            }),
            Duration::from_secs(3600),
        )
        .await;
    let settings = write_settings(
        &bench,
        Limits {
            submit_per_minute: 60,
            submit_burst: 1,
            max_in_flight: 1_000_000,
        },
    );
    let registered = Instant::now();
    let mut first = recast_command(&bench, &sim, &settings, "run")
        .spawn()
        .expect("recast run starts");
    let accepted = |n: u64| sim.stats().submits_accepted >= n;
    if !wait_for(&accepted, 2, Duration::from_secs(900)).await {
        println!("   the first run never submitted twice; giving up");
        return;
    }
    let registered = registered.elapsed();
    first.start_kill().expect("SIGKILL");
    let _ = first.wait().await;
    let before = sim.stats().submits_accepted;

    let start = Instant::now();
    let mut daemon = recast_command(&bench, &sim, &settings, "run")
        .spawn()
        .expect("recast run starts again");
    let resumed = wait_for(&accepted, before + 1, Duration::from_secs(600)).await;
    let restart = start.elapsed();
    daemon.start_kill().expect("stop the second run");
    let out = daemon
        .wait_with_output()
        .await
        .expect("the second run's output");
    let said = String::from_utf8_lossy(&out.stderr);
    let unchanged = said.contains("unchanged since it was registered");
    if !resumed {
        let text = said.clone();
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        println!("   the second run's last words:");
        for line in tail.into_iter().rev() {
            println!("   | {line}");
        }
    }
    let status = crate::memory::status_wall(&bench);
    sim.shutdown().await;
    println!(
        "{:>8} {:>14} {:>22} {:>10} {:>10}",
        "jobs", "first run s", "restart to submit ms", "unchanged", "status ms"
    );
    println!(
        "{:>8} {:>14.1} {:>22} {:>10} {:>10.1}",
        jobs,
        registered.as_secs_f64(),
        if resumed {
            format!("{:.0}", restart.as_secs_f64() * 1000.0)
        } else {
            "none in 600 s".to_owned()
        },
        if unchanged { "yes" } else { "no" },
        status.as_secs_f64() * 1000.0
    );
}

/// Poll the simulator's stats every 5 ms until `accepted(n)`; false if `limit` passes first.
async fn wait_for(accepted: &impl Fn(u64) -> bool, n: u64, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if accepted(n) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    false
}
