//! `makespan`: how close does a batch come to the fastest the provider's limits allow?
//!
//! Ideal makespan, precisely: submit i (0-based) goes out at
//! `s_i = max(rate_i, s_(i-C) + G)`, where `rate_i = max(0, i - B + 1) / R` is the earliest a
//! token bucket of rate R and burst B allows it and `s_(i-C) + G` is when the task C places
//! earlier finishes (the in-flight cap C); task i finishes at `s_i + G`. Ideal = the last finish.
//! It counts no request, poll or download latency: the measured makespan (engine start to the
//! last clip on disk, in-process engine) pays for all of them.

use std::time::Duration;

use crate::harness::{Bench, Limits, engine_config, poll_schedule, run_in_process};

struct Case {
    what: &'static str,
    jobs: usize,
    limits: Limits,
    generation: Duration,
}

pub async fn run() {
    println!("== makespan: makespan / ideal makespan (in-process engine, loopback simulator)");
    println!(
        "   ideal: submit i at max(max(0, i-B+1)/R, finish of task i-C); each task takes exactly G; \
         no request, poll or download latency"
    );
    let p = poll_schedule();
    println!(
        "   recast polls first after {} ms, then every {}..{} ms; limits alike on both sides",
        p.first_base.as_millis(),
        p.interval_min.as_millis(),
        p.interval_max.as_millis()
    );
    let cases = [
        Case {
            what: "rate-bound",
            jobs: 200,
            limits: Limits {
                submit_per_minute: 1200,
                submit_burst: 5,
                max_in_flight: 50,
            },
            generation: Duration::from_secs(1),
        },
        Case {
            what: "cap-bound",
            jobs: 200,
            limits: Limits {
                submit_per_minute: 6000,
                submit_burst: 10,
                max_in_flight: 10,
            },
            generation: Duration::from_secs(1),
        },
    ];
    println!(
        "{:>10} {:>5} {:>6} {:>5} {:>5} {:>6} {:>9} {:>10} {:>7} {:>6} {:>5}",
        "case", "jobs", "R/min", "B", "C", "G s", "ideal s", "measured s", "ratio", "429s", "done"
    );
    for case in cases {
        let bench = Bench::new(case.jobs).expect("bench batch");
        let sim = bench.sim(Some(case.limits), case.generation).await;
        let run = run_in_process(&bench, &sim, engine_config(case.limits)).await;
        let ideal = ideal_makespan(case.jobs, case.limits, case.generation);
        let stats = sim.stats();
        println!(
            "{:>10} {:>5} {:>6} {:>5} {:>5} {:>6.1} {:>9.2} {:>10.2} {:>7.3} {:>6} {:>5}",
            case.what,
            case.jobs,
            case.limits.submit_per_minute,
            case.limits.submit_burst,
            case.limits.max_in_flight,
            case.generation.as_secs_f64(),
            ideal.as_secs_f64(),
            run.makespan.as_secs_f64(),
            run.makespan.as_secs_f64() / ideal.as_secs_f64(),
            stats.rate_limited_429 + stats.in_flight_refused_429,
            run.done,
        );
        sim.shutdown().await;
    }
}

/// The ideal makespan defined in the module doc.
pub fn ideal_makespan(jobs: usize, limits: Limits, generation: Duration) -> Duration {
    let period = 60.0 / f64::from(limits.submit_per_minute);
    let burst = limits.submit_burst.max(1) as usize;
    let cap = limits.max_in_flight.max(1) as usize;
    let g = generation.as_secs_f64();
    let mut starts: Vec<f64> = Vec::with_capacity(jobs);
    for i in 0..jobs {
        let by_rate = (i + 1).saturating_sub(burst) as f64 * period;
        let by_cap = if i >= cap { starts[i - cap] + g } else { 0.0 };
        starts.push(by_rate.max(by_cap));
    }
    Duration::from_secs_f64(starts.last().map_or(0.0, |s| s + g))
}
