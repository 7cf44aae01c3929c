//! `rate`: does recast find the provider's real limit and submit at it, and no faster?
//!
//! The simulator refuses submits beyond R/min (GCRA, burst B) with 429 and a `Retry-After`.
//! recast is set to 1x, 2x and 10x R: users guess limits, and recast must learn the real one
//! from the 429s. Achieved rate is measured from the moments the accepted answers arrived
//! (in-process engine, its provider wrapped to note them): `(N - B) / (t_last - t_first)`.
//! The simulator counts submits that arrived before a `Retry-After` it gave had ended: an
//! honest client sends none.
//!
//! The "headers" cases have the simulator name its quota in rate-limit headers
//! (`RateLimit-Policy`, `RateLimit`), as some gateways do: recast takes the quota at once.
//!
//! The "long" cases are first runs of 3,000 jobs (five minutes at the limit): what learning
//! the limit costs once, spread over a batch of a realistic length. They run only when
//! `--only` names them (`--only long`, `--only "2 x R, long"`), to keep the default run near
//! ten minutes.
//!
//! The storm case refuses 30% of submits with `Retry-After: 1` whatever the rate: recast must
//! honour every pause without mistaking the storm for a limit. Its ideal is the rate that
//! honouring every `Retry-After` allows: per accepted submit, 1/(1-p) sends at R plus
//! p/(1-p) pauses of one second.

use std::time::Duration;

use recast::sim::{Fault, Faults};

use crate::harness::{Bench, Limits, engine_config, run_in_process_at};

struct Case {
    label: &'static str,
    jobs: usize,
    provider: Limits,
    recast_per_minute: u32,
    storm: Option<f64>,
    /// A first run of this many jobs on the same state folder (not measured): the measured run
    /// starts from the limit it learned.
    warm_up: usize,
    /// The simulator names its quota in rate-limit headers.
    headers: bool,
    /// Run only when `--only` names it.
    long: bool,
}

pub async fn run(only: Option<&str>) {
    println!("== rate: achieved submit rate / what the provider allows (in-process engine)");
    println!("   achieved = (N - burst) / (last accept - first accept); 'early' = submits sent");
    println!("   before a Retry-After had ended (the simulator counts them); 'again' = a second");
    println!("   run on the same state folder, starting from the limit the first one learned;");
    println!("   'headers' = the simulator names its quota in RateLimit-Policy / RateLimit");
    let cases = [
        case("1 x R", 200, limits(600, 1), 600, None),
        case("2 x R", 600, limits(600, 1), 1200, None),
        case("10 x R", 600, limits(600, 1), 6000, None),
        Case {
            warm_up: 300,
            ..case("2 x R, again", 600, limits(600, 1), 1200, None)
        },
        Case {
            warm_up: 300,
            ..case("10 x R, again", 600, limits(600, 1), 6000, None)
        },
        Case {
            headers: true,
            ..case("2 x R, headers", 600, limits(600, 1), 1200, None)
        },
        Case {
            headers: true,
            ..case("10 x R, headers", 600, limits(600, 1), 6000, None)
        },
        case("1 x R", 400, limits(3000, 5), 3000, None),
        case("storm 30%", 200, limits(3000, 5), 3000, Some(0.3)),
        Case {
            long: true,
            ..case("2 x R, long", 3000, limits(600, 1), 1200, None)
        },
        Case {
            long: true,
            ..case("10 x R, long", 3000, limits(600, 1), 6000, None)
        },
    ];
    println!(
        "{:>10} {:>5} {:>9} {:>6} {:>10} {:>9} {:>9} {:>7} {:>6} {:>6} {:>6}",
        "case",
        "jobs",
        "R/min",
        "burst",
        "recast/min",
        "ideal/min",
        "achieved",
        "ratio",
        "429s",
        "429 %",
        "early"
    );
    for case in cases.into_iter().filter(|c| match only {
        Some(o) => c.label.contains(o) && (!c.long || o.contains("long")),
        None => !c.long,
    }) {
        let state = tempfile::Builder::new()
            .prefix("recast-bench-state-")
            .tempdir()
            .expect("a state folder");
        if case.warm_up > 0 {
            let bench = Bench::new(case.warm_up).expect("bench batch");
            let sim = bench
                .sim(Some(case.provider), Duration::from_millis(100))
                .await;
            run_in_process_at(&bench, &sim, config_for(&case), state.path()).await;
            sim.shutdown().await;
        }
        let bench = Bench::new(case.jobs).expect("bench batch");
        let faults = Faults {
            seed: 7,
            submit_429: case.storm.map_or_else(Fault::default, |p| Fault {
                rate: p,
                ..Fault::default()
            }),
            ..Faults::default()
        };
        // Short tasks, no in-flight cap: only the submit rate limits the run.
        let mut config = bench.sim_config(Some(case.provider), Duration::from_millis(100), faults);
        config.rate_limit_headers = case.headers;
        let sim = recast::sim::Sim::start(config)
            .await
            .expect("the simulator starts");
        let run = run_in_process_at(&bench, &sim, config_for(&case), state.path()).await;
        let stats = sim.stats();
        let refused =
            stats.rate_limited_429 + stats.in_flight_refused_429 + stats.faults.submit_429;
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
        let allowed = f64::from(case.provider.submit_per_minute);
        let ideal = match case.storm {
            // Seconds per accepted submit when every Retry-After (1 s) is honoured.
            Some(p) => 60.0 / ((1.0 / (1.0 - p)) * (60.0 / allowed) + p / (1.0 - p)),
            None => allowed,
        };
        let sent = stats.submits_accepted + refused;
        println!(
            "{:>10} {:>5} {:>9} {:>6} {:>10} {:>9.1} {:>9.1} {:>7.3} {:>6} {:>6.1} {:>6}",
            case.label,
            case.jobs,
            case.provider.submit_per_minute,
            case.provider.submit_burst,
            case.recast_per_minute,
            ideal,
            achieved,
            achieved / ideal,
            refused,
            100.0 * refused as f64 / sent.max(1) as f64,
            stats.submits_before_retry_after,
        );
        if run.done != case.jobs as u64 {
            println!("           ({} of {} jobs done)", run.done, case.jobs);
        }
        sim.shutdown().await;
    }
}

fn config_for(case: &Case) -> recast::engine::EngineConfig {
    let mut config = engine_config(Limits {
        submit_per_minute: case.recast_per_minute,
        max_in_flight: 10_000,
        ..case.provider
    });
    config.submit_burst = case.provider.submit_burst;
    config
}

fn case(
    label: &'static str,
    jobs: usize,
    provider: Limits,
    recast_per_minute: u32,
    storm: Option<f64>,
) -> Case {
    Case {
        label,
        jobs,
        provider,
        recast_per_minute,
        storm,
        warm_up: 0,
        headers: false,
        long: false,
    }
}

fn limits(per_minute: u32, burst: u32) -> Limits {
    Limits {
        submit_per_minute: per_minute,
        submit_burst: burst,
        max_in_flight: 10_000,
    }
}
