//! The provider's limits and outages, end to end: the real binary against the simulator naming
//! its quota in rate-limit headers, and against `--fault-outage` (every call answered 503 for a
//! while), asserting what the simulator counted, the ledger and the disk.

use std::time::Duration;

use recast::sim::{Faults, Outage, Sim, SimConfig};

use crate::helper::workspace::{Workspace, describe};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_of_503s_is_probed_by_one_call_at_a_time_and_holds_no_job_unknown() {
    let ws = Workspace::new(6, "");
    // Down from the start for five seconds: the first submit meets it.
    let outage = Outage {
        after: Duration::ZERO,
        lasts: Duration::from_secs(5),
    };
    let sim = Sim::start(SimConfig {
        faults: Faults {
            outage: Some(outage),
            ..Faults::default()
        },
        ..ws.sim_config()
    })
    .await
    .expect("simulator starts");
    // Idempotency not trusted: a submit whose outcome were unknown would be held, not re-sent.
    let out = ws.recast(&sim, &["run", "jobs.yaml"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    ws.assert_all_clips_whole();
    let bills = crate::helper::net_bills_per_subject(&sim.ledger());
    assert_eq!(bills.len(), 6, "every subject billed: {bills:?}");
    assert!(bills.values().all(|n| *n == 1), "billed twice: {bills:?}");
    let stats = sim.stats();
    // The first submit, and probes after 2 s and 4 s more (with jitter), meet the outage (and
    // the plan's balance read); the next probe ends it.
    assert!(
        (1..=3).contains(&stats.outage_submits),
        "submits into the outage: {stats:?}"
    );
    assert!(stats.outage_calls <= 5, "calls into the outage: {stats:?}");
    let after = stats
        .first_accept_after_outage_ms
        .expect("a submit was accepted after the outage");
    assert!(after < 15_000, "first submit {after} ms after the outage");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("held as unknown"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quota_named_in_rate_limit_headers_is_kept_from_the_first_answer_on() {
    let ws = Workspace::new(30, "");
    // recast is set to ten times what the simulator allows.
    ws.write_settings(
        "  submit_per_minute: 12000\n  submit_burst: 1\n  max_in_flight: 100\n  \
         poll_per_minute: 60000\n  download_concurrency: 8\n",
    );
    let sim = Sim::start(SimConfig {
        submit_rate_per_min: Some(1200),
        submit_burst: 1,
        rate_limit_headers: true,
        ..ws.sim_config()
    })
    .await
    .expect("simulator starts");
    let out = ws.recast(&sim, &["run", "jobs.yaml"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    ws.assert_all_clips_whole();
    let stats = sim.stats();
    assert_eq!(stats.submits_accepted, 30, "{stats:?}");
    // The first submit goes alone and its answer names the quota: no search. A loaded machine's
    // jitter may still cross the limit once or twice; the search from 10x costs eight or more.
    assert!(stats.rate_limited_429 <= 3, "{stats:?}");
    assert_eq!(stats.submits_before_retry_after, 0, "{stats:?}");
}
