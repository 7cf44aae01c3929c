//! `memory`: does `recast run`'s memory grow with the jobs in flight, or with the batch?
//!
//! The full path: a manifest with one `glob:` subject over a folder of N tiny unique PNGs, run
//! by the real binary against the simulator with high limits and 20 ms tasks. Peak RSS is the
//! child's `VmHWM` from `/proc/<pid>/status`. The in-flight cap is the same at every size, so a
//! flat peak means memory follows the work in flight; a peak that grows with N means something
//! holds the batch.

use std::time::Duration;

use crate::harness::{Bench, Limits, mib, run_binary};

pub async fn run(sizes: &[usize], max_secs: u64) {
    println!("== memory: peak RSS (VmHWM) of a spawned `recast run` against the batch size");
    let limits = Limits {
        submit_per_minute: 600_000,
        submit_burst: 200,
        max_in_flight: 200,
    };
    let generation = Duration::from_millis(20);
    println!(
        "   limits {}/min, burst {}, in flight {}; generation {} ms; clips deleted as they land",
        limits.submit_per_minute,
        limits.submit_burst,
        limits.max_in_flight,
        generation.as_millis()
    );
    println!(
        "{:>7} {:>8} {:>9} {:>8} {:>10} {:>9} {:>8} {:>8} {:>7} {:>10}",
        "jobs",
        "done",
        "wall s",
        "jobs/s",
        "cpu ms/job",
        "peak MiB",
        "x first",
        "end MiB",
        "exit",
        "status ms"
    );
    let mut first: Option<u64> = None;
    for &jobs in sizes {
        let made = std::time::Instant::now();
        let bench = Bench::new(jobs).expect("bench batch");
        let made = made.elapsed();
        let sim = bench.sim(None, generation).await;
        let run = run_binary(&bench, &sim, limits, Duration::from_secs(max_secs), true).await;
        let done = sim.stats().downloads;
        sim.shutdown().await;
        let status = status_wall(&bench);
        let base = *first.get_or_insert(run.peak_rss_kib);
        println!(
            "{:>7} {:>8} {:>9.1} {:>8.0} {:>10.2} {:>9.1} {:>8.2} {:>8.1} {:>7} {:>10.1}",
            jobs,
            done,
            run.wall.as_secs_f64(),
            done as f64 / run.wall.as_secs_f64(),
            run.cpu.as_secs_f64() * 1000.0 / done.max(1) as f64,
            mib(run.peak_rss_kib),
            run.peak_rss_kib as f64 / base.max(1) as f64,
            mib(run.last_rss_kib),
            match (run.finished, run.exit_code) {
                (false, _) => "killed".to_owned(),
                (true, Some(c)) => c.to_string(),
                (true, None) => "signal".to_owned(),
            },
            status.as_secs_f64() * 1000.0,
        );
        if run.finished && run.exit_code != Some(0) {
            println!("   stderr:\n{}", run.stderr);
        }
        eprintln!(
            "   ({jobs} subjects written in {:.1} s; temp dir removed)",
            made.as_secs_f64()
        );
    }
}

/// The wall time of `recast status` on the finished run's state folder (the best of three: a
/// person's first look after the run, with the database in the page cache).
pub fn status_wall(bench: &Bench) -> Duration {
    (0..3)
        .map(|_| {
            let start = std::time::Instant::now();
            let out = std::process::Command::new(crate::harness::recast_binary())
                .arg("status")
                .arg("--state-dir")
                .arg(bench.path().join("state"))
                .output()
                .expect("recast status runs");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            start.elapsed()
        })
        .min()
        .unwrap_or_default()
}
