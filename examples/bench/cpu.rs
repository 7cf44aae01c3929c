//! `cpu`: CPU time per job of the `recast run` process.
//!
//! The real binary (`target/release/recast`) runs a whole batch against the simulator, which
//! runs in this benchmark's process so its work is not counted. The child's user + system time
//! comes from `cutime + cstime` of `/proc/self/stat` after it is reaped, so it covers the whole
//! command: manifest, probing, registration, and every submit, poll, download and store write.

use std::time::Duration;

use crate::harness::{Bench, Limits, mib, run_binary};

pub async fn run(jobs: usize) {
    println!("== cpu: CPU ms per job of a spawned `recast run` (user + system, from /proc)");
    let limits = Limits {
        submit_per_minute: 60_000,
        submit_burst: 50,
        max_in_flight: 100,
    };
    let generation = Duration::from_millis(200);
    println!(
        "   {jobs} jobs; limits {}/min, burst {}, in flight {}; generation {} ms; clips 2 KB",
        limits.submit_per_minute,
        limits.submit_burst,
        limits.max_in_flight,
        generation.as_millis()
    );
    let bench = Bench::new(jobs).expect("bench batch");
    let sim = bench.sim(Some(limits), generation).await;
    let run = run_binary(&bench, &sim, limits, Duration::from_secs(600), false).await;
    let stats = sim.stats();
    sim.shutdown().await;
    if !run.finished || run.exit_code != Some(0) {
        println!(
            "   run did not finish cleanly (exit {:?}); stderr:\n{}",
            run.exit_code, run.stderr
        );
    }
    let cpu_ms = run.cpu.as_secs_f64() * 1000.0;
    println!(
        "{:>6} {:>9} {:>8} {:>11} {:>12} {:>10} {:>8} {:>9} {:>8}",
        "jobs",
        "wall s",
        "cpu s",
        "cpu ms/job",
        "of it: sys",
        "cpu/wall",
        "polls",
        "downloads",
        "rss MiB"
    );
    println!(
        "{:>6} {:>9.2} {:>8.2} {:>11.2} {:>12.2} {:>10.2} {:>8} {:>9} {:>8.1}",
        jobs,
        run.wall.as_secs_f64(),
        cpu_ms / 1000.0,
        cpu_ms / jobs as f64,
        run.sys.as_secs_f64() * 1000.0 / jobs as f64,
        run.cpu.as_secs_f64() / run.wall.as_secs_f64(),
        stats.polls,
        stats.downloads,
        mib(run.peak_rss_kib),
    );
    match store_counts(&run.stderr) {
        Some((commits, syncs)) => println!(
            "   state database: {commits} commits ({:.2} a job), {syncs} syncs ({:.2} a job)",
            commits as f64 / jobs as f64,
            syncs as f64 / jobs as f64
        ),
        None => println!("   state database: the run logged no commit counts"),
    }
}

/// `commits=N syncs=M` from the run's "state database closed" log line.
fn store_counts(stderr: &str) -> Option<(u64, u64)> {
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.contains("state database closed"))?;
    let field = |name: &str| -> Option<u64> {
        let start = line.find(&format!("{name}="))? + name.len() + 1;
        let digits: String = line[start..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    };
    Some((field("commits")?, field("syncs")?))
}
