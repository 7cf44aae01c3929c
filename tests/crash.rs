//! Crash tests: the real `recast run` process killed with SIGKILL at random moments, restarted
//! until it finishes, with faults on. Whatever the moment of death, no job is billed twice, no
//! clip is partial, and no temp file is left behind.

use std::time::Duration;

use recast::sim::{Fault, Faults, Generation, Sim, SimConfig};

use crate::helper::workspace::{Workspace, describe};

/// A tiny deterministic generator, so a failing schedule of kills can be replayed.
struct Lcg(u64);

impl Lcg {
    fn next_in(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        lo + (self.0 >> 33) % (hi - lo)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_never_bills_twice_nor_leaves_a_partial_clip() {
    let ws = Workspace::new(100, "retries: 4\n");
    ws.write_settings(
        "  submit_per_minute: 600\n  submit_burst: 5\n  max_in_flight: 40\n  \
         poll_per_minute: 60000\n  download_concurrency: 6\n",
    );
    let sim = Sim::start(SimConfig {
        generation: Generation::Fixed(Duration::from_millis(300)),
        honour_idempotency: true,
        faults: Faults {
            seed: 2026,
            task_failure: Fault::rate(0.05),
            submit_5xx: Fault::rate(0.03),
            ambiguous_submit: Fault::rate(0.05),
            poll_5xx: Fault::rate(0.05),
            truncated_download: Fault::rate(0.1),
            changed_download: Fault::rate(0.05),
            ..Faults::default()
        },
        ..ws.sim_config()
    })
    .await
    .unwrap();
    let seed = std::env::var("RECAST_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_u64);
    let mut rng = Lcg(seed);
    let mut kills = 0;
    let mut finished = None;
    for _round in 0..400 {
        let mut child = ws
            .recast_command(&sim, &["run", "jobs.yaml", "--trust-idempotency"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        if kills < 20 {
            let delay = Duration::from_millis(rng.next_in(30, 500));
            tokio::select! {
                status = child.wait() => {
                    let status = status.unwrap();
                    if status.success() {
                        finished = Some(status);
                        break;
                    }
                }
                _ = tokio::time::sleep(delay) => {
                    child.start_kill().unwrap();
                    child.wait().await.unwrap();
                    kills += 1;
                }
            }
        } else {
            let out = child.wait_with_output().await.unwrap();
            if out.status.success() {
                finished = Some(out.status);
                break;
            }
            panic!(
                "a run after the kills did not finish cleanly: {}",
                describe(&out)
            );
        }
    }
    assert!(finished.is_some(), "the batch never finished");
    assert!(
        kills >= 20,
        "only {kills} kills happened before the batch finished (seed {seed})"
    );

    ws.assert_all_clips_whole();
    let ledger = sim.ledger();
    let mut net = std::collections::HashMap::<&str, usize>::new();
    for e in ledger
        .entries
        .iter()
        .filter(|e| e.credits > 0 && !e.refunded)
    {
        *net.entry(e.image_url.as_str()).or_default() += 1;
    }
    assert_eq!(net.len(), 100, "every subject billed (seed {seed})");
    assert!(
        net.values().all(|n| *n == 1),
        "a subject was billed twice (seed {seed}): {net:?}"
    );
    assert_eq!(ledger.totals.net_credits, 100 * 566);
    // No held unknowns: with idempotency honoured every unknown submit was resolved.
    let status = ws.recast(&sim, &["status", "e2e", "--json"]).await;
    let doc: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(
        doc["batches"][0]["batch"]["counts"]["by_state"]["done"], 100,
        "{doc}"
    );
}
