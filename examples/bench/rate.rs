//! `rate`: does recast submit as fast as the provider allows, and no faster?
//!
//! The simulator refuses submits beyond R/min (token bucket, burst B) with 429; recast is set to
//! the same R and B (and, in the last case, to twice R, to see how it recovers from 429s).
//! Achieved rate is measured from the moments the accepted answers arrived (in-process engine,
//! its provider wrapped to note them): `(N - B) / (t_last - t_first)`, since a bucket that
//! starts full lets the first B through at once and then one every 1/R.

use std::time::Duration;

use crate::harness::{Bench, Limits, engine_config, run_in_process};

struct Case {
    jobs: usize,
    provider: Limits,
    recast_per_minute: u32,
}

pub async fn run() {
    println!(
        "== rate: achieved submit rate / allowed rate (in-process engine, loopback simulator)"
    );
    println!(
        "   achieved = (N - burst) / (last accept - first accept); allowed = the simulator's R/min"
    );
    let cases = [
        Case {
            jobs: 100,
            provider: limits(600, 1),
            recast_per_minute: 600,
        },
        Case {
            jobs: 300,
            provider: limits(3000, 5),
            recast_per_minute: 3000,
        },
        Case {
            jobs: 100,
            provider: limits(600, 1),
            recast_per_minute: 1200,
        },
    ];
    println!(
        "{:>5} {:>12} {:>7} {:>12} {:>14} {:>7} {:>6} {:>6}",
        "jobs", "allowed/min", "burst", "recast/min", "achieved/min", "ratio", "429s", "done"
    );
    for case in cases {
        let bench = Bench::new(case.jobs).expect("bench batch");
        // Short tasks, no in-flight cap: only the submit rate limits the run.
        let sim = bench
            .sim(Some(case.provider), Duration::from_millis(100))
            .await;
        let mut config = engine_config(Limits {
            submit_per_minute: case.recast_per_minute,
            max_in_flight: 10_000,
            ..case.provider
        });
        config.submit_burst = case.provider.submit_burst;
        let run = run_in_process(&bench, &sim, config).await;
        let stats = sim.stats();
        let refused = stats.rate_limited_429 + stats.in_flight_refused_429;
        let n = run.accepted.len();
        let span = match (run.accepted.first(), run.accepted.last()) {
            (Some(a), Some(b)) => (*b - *a).as_secs_f64(),
            _ => 0.0,
        };
        let steady = n.saturating_sub(case.provider.submit_burst as usize) as f64;
        let achieved = if span > 0.0 {
            steady / span * 60.0
        } else {
            0.0
        };
        println!(
            "{:>5} {:>12} {:>7} {:>12} {:>14.1} {:>7.3} {:>6} {:>6}",
            case.jobs,
            case.provider.submit_per_minute,
            case.provider.submit_burst,
            case.recast_per_minute,
            achieved,
            achieved / f64::from(case.provider.submit_per_minute),
            refused,
            run.done,
        );
        sim.shutdown().await;
    }
}

fn limits(per_minute: u32, burst: u32) -> Limits {
    Limits {
        submit_per_minute: per_minute,
        submit_burst: burst,
        max_in_flight: 10_000,
    }
}
