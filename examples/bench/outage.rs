//! `outage`: how recast rides out a provider that answers every call 503 for minutes.
//!
//! The simulator goes down `AFTER` seconds after it starts, for `LASTS` seconds
//! (`--fault-outage`), in the middle of a run limited to 600 submits a minute. It counts every
//! call that met the outage and how long after its end the first submit was accepted. recast
//! should probe with one call a few times a minute (a circuit breaker, shared by submits and
//! polls), submit again within seconds of the end, and hold no job `unknown`: a 503 created
//! nothing. Idempotency is not trusted, so an unknown submit would stay held and show.

use std::time::Duration;

use recast::sim::{Faults, Outage};

use crate::harness::{Bench, Limits, engine_config, run_in_process};

pub async fn run(lasts_secs: u64) {
    let jobs = 400;
    let limits = Limits {
        submit_per_minute: 600,
        submit_burst: 1,
        max_in_flight: 10_000,
    };
    let outage = Outage {
        after: Duration::from_secs(10),
        lasts: Duration::from_secs(lasts_secs),
    };
    println!(
        "== outage: every call answered 503 for {lasts_secs} s, from 10 s into a run of {jobs} \
         jobs at 600 submits/min (in-process engine)"
    );
    let bench = Bench::new(jobs).expect("bench batch");
    let faults = Faults {
        outage: Some(outage),
        ..Faults::default()
    };
    let sim = bench
        .sim_with(Some(limits), Duration::from_millis(500), faults)
        .await;
    let mut config = engine_config(limits);
    config.trust_idempotency = false;
    let run = run_in_process(&bench, &sim, config).await;
    let stats = sim.stats();
    let minutes = outage.lasts.as_secs_f64() / 60.0;
    println!(
        "{:>10} {:>13} {:>10} {:>15} {:>13} {:>8} {:>6}",
        "outage s", "calls in it", "calls/min", "submits in it", "first after s", "unknown", "done"
    );
    println!(
        "{:>10} {:>13} {:>10.1} {:>15} {:>13} {:>8} {:>6}",
        outage.lasts.as_secs(),
        stats.outage_calls,
        stats.outage_calls as f64 / minutes,
        stats.outage_submits,
        stats
            .first_accept_after_outage_ms
            .map_or("none".to_owned(), |ms| format!("{:.1}", ms as f64 / 1000.0)),
        run.unknown,
        format!("{}/{jobs}", run.done),
    );
    sim.shutdown().await;
}
