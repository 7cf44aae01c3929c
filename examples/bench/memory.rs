//! `memory`: does `recast run`'s memory grow with the jobs in flight, or with the batch?
//!
//! The full path: a manifest with one `glob:` subject over a folder of N tiny unique PNGs, run
//! by the real binary against the simulator with high limits and 20 ms tasks. Peak RSS is the
//! child's `VmHWM` from `/proc/<pid>/status`. The in-flight cap is the same at every size, so a
//! flat peak means memory follows the work in flight; a peak that grows with N means something
//! holds the batch. Then one subject is added to the manifest and it is run again (`+1`): the
//! batch planned again in full beside what the first run registered, one job submitted.

use std::time::Duration;

use crate::harness::{Bench, ChildRun, Limits, mib, run_binary};

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
        let deadline = Duration::from_secs(max_secs);
        let run = run_binary(&bench, &sim, limits, deadline, true).await;
        let done = sim.stats().downloads;
        // A standing performance gains one subject: the same batch planned again in full.
        add_one_subject(&bench, jobs).expect("one more subject");
        let again = run_binary(&bench, &sim, limits, deadline, true).await;
        let made_again = sim.stats().downloads - done;
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
            exit_word(&run),
            status.as_secs_f64() * 1000.0,
        );
        println!(
            "{:>7} {:>8} {:>9.1} {:>8} {:>10} {:>9.1} {:>8.2} {:>8.1} {:>7}",
            "+1",
            made_again,
            again.wall.as_secs_f64(),
            "",
            "",
            mib(again.peak_rss_kib),
            again.peak_rss_kib as f64 / base.max(1) as f64,
            mib(again.last_rss_kib),
            exit_word(&again),
        );
        for r in [&run, &again] {
            if r.finished && r.exit_code != Some(0) {
                println!("   stderr:\n{}", r.stderr);
            }
        }
        eprintln!(
            "   ({jobs} subjects written in {:.1} s; temp dir removed)",
            made.as_secs_f64()
        );
    }
}

fn exit_word(run: &ChildRun) -> String {
    match (run.finished, run.exit_code) {
        (false, _) => "killed".to_owned(),
        (true, Some(c)) => c.to_string(),
        (true, None) => "signal".to_owned(),
    }
}

/// One subject more, in an entry of its own at the end of the manifest (a glob's folder may
/// already hold the 10,000 files a glob takes).
fn add_one_subject(bench: &Bench, jobs: usize) -> std::io::Result<()> {
    let root = bench.path();
    std::fs::write(
        root.join("subjects/added.png"),
        crate::png::unique_png(jobs),
    )?;
    let manifest = std::fs::read_to_string(root.join("jobs.yaml"))?.replace(
        "output:",
        "  - id: added\n    image: ./subjects/added.png\noutput:",
    );
    std::fs::write(root.join("jobs.yaml"), manifest)
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
