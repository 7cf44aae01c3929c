//! Crash tests: the real `recast run` process killed with SIGKILL at random moments, restarted
//! until it finishes, with faults on. Whatever the moment of death, no job is billed twice, no
//! clip is partial, and no temp file is left behind. Also what a power loss can take back
//! (writes committed but not yet synced), written back into the state folder by hand.

use std::time::Duration;

use recast::sim::{Fault, Faults, Generation, Sim, SimConfig};

use crate::helper::SeededRng;
use crate::helper::workspace::{Workspace, describe};

/// Run `recast ARGS` again and again, SIGKILLing it after a random delay in `delay_ms`, until
/// `kills` kills have happened; then run it to its end. Returns how many kills happened and the
/// last run's exit code. The seed comes from `RECAST_KILL_SEED` (else `default_seed`), so a
/// failing schedule of kills is replayed by one command.
async fn kill_until_done(
    ws: &Workspace,
    sim: &Sim,
    args: &[&str],
    kills_wanted: u32,
    delay_ms: (u64, u64),
    default_seed: u64,
) -> (u32, Option<i32>, u64) {
    let seed = std::env::var("RECAST_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_seed);
    let mut rng = SeededRng(seed);
    let mut kills = 0;
    for _round in 0..400 {
        let mut child = ws
            .recast_command(sim, args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        if kills < kills_wanted {
            let delay = Duration::from_millis(rng.next_in(delay_ms.0, delay_ms.1));
            tokio::select! {
                status = child.wait() => {
                    let status = status.unwrap();
                    if status.success() {
                        return (kills, status.code(), seed);
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
            return (kills, out.status.code(), seed);
        }
    }
    panic!("the batch never finished (seed {seed})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_never_bills_twice_nor_leaves_a_partial_clip() {
    let ws = Workspace::new(100, "retries: 4\n");
    // Slow enough that twenty short lives do not finish the batch: a restart resumes an
    // unchanged batch at once, and each life may send its burst.
    ws.write_settings(
        "  submit_per_minute: 300\n  submit_burst: 2\n  max_in_flight: 40\n  \
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
    let (kills, code, seed) = kill_until_done(
        &ws,
        &sim,
        &["run", "jobs.yaml", "--trust-idempotency"],
        20,
        (30, 500),
        0x5eed,
    )
    .await;
    assert_eq!(
        code,
        Some(0),
        "the last run did not finish cleanly (seed {seed})"
    );
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

/// Against a provider that ignores `Idempotency-Key` (like reAPI), without trusting keys: after
/// the kills and a final run, no subject is billed twice. Submits whose answer a kill or a fault
/// lost are settled by the account's balance where it proves their fate, else held (`unknown`)
/// or `lost`; their count is printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_against_a_provider_without_deduplication_never_bills_twice() {
    let ws = Workspace::new(60, "retries: 4\n");
    ws.write_settings(
        "  submit_per_minute: 600\n  submit_burst: 5\n  max_in_flight: 30\n  \
         poll_per_minute: 60000\n  download_concurrency: 6\n",
    );
    let sim = Sim::start(SimConfig {
        generation: Generation::Fixed(Duration::from_millis(300)),
        honour_idempotency: false,
        faults: Faults {
            seed: 2027,
            task_failure: Fault::rate(0.05),
            submit_5xx: Fault::rate(0.03),
            submit_reset: Fault::rate(0.03),
            ambiguous_submit: Fault::rate(0.03),
            poll_5xx: Fault::rate(0.05),
            truncated_download: Fault::rate(0.05),
            ..Faults::default()
        },
        ..ws.sim_config()
    })
    .await
    .unwrap();
    let (kills, code, seed) = kill_until_done(
        &ws,
        &sim,
        &["run", "jobs.yaml", "--dedicated-account"],
        20,
        (100, 1500),
        0xdead,
    )
    .await;
    assert!(
        matches!(code, Some(0) | Some(3)),
        "the last run ended {code:?} (seed {seed})"
    );
    let bills = crate::helper::net_bills_per_subject(&sim.ledger());
    assert!(
        bills.values().all(|n| *n == 1),
        "a subject was billed twice (seed {seed}): {bills:?}"
    );
    let status = ws.recast(&sim, &["status", "e2e", "--json"]).await;
    let doc: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let counts = &doc["batches"][0]["batch"]["counts"]["by_state"];
    let count = |s: &str| counts[s].as_u64().unwrap_or(0);
    let (done, held, lost) = (count("done"), count("unknown"), count("lost"));
    eprintln!(
        "seed {seed}: {kills} kills; {done} done, {held} held unknown, {lost} lost, {} billed once",
        bills.len()
    );
    assert_eq!(done + held + lost, 60, "{counts}");
    // Every clip on disk is whole, one per done job.
    let clips = ws.outputs();
    assert_eq!(clips.len() as u64, done, "{clips:?}");
    let reference = crate::helper::workspace::reference_clip();
    for name in clips {
        assert!(
            std::fs::read(ws.out().join(&name)).unwrap() == reference,
            "{name}"
        );
    }
}

/// A finished task and a finished clip are committed without waiting for the disk (the results
/// file holds the clip's line, synced). A power loss before the next sync takes both back: the
/// state folder says `running`, its attempt `accepted`, and nothing of the clip. The next run
/// polls again, finds its own clip under its name, and is done: no new file, no new bill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_clip_a_power_loss_took_back_is_found_again_not_made_again() {
    let ws = Workspace::new(4, "");
    let sim = Sim::start(ws.sim_config()).await.unwrap();
    let out = ws.recast(&sim, &["run", "jobs.yaml"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let before = ws.outputs();
    assert_eq!(before.len(), 4, "{before:?}");
    let polls = sim.stats().polls;

    let db = rusqlite::Connection::open(ws.state().join("recast.db")).unwrap();
    db.execute_batch(
        "UPDATE attempts SET state = 'accepted' WHERE state = 'completed';
         UPDATE jobs SET state = 'running', progress = 0, next_poll_at = 0, output_path = NULL,
             output_sha256 = NULL, output_bytes = NULL WHERE state = 'done';",
    )
    .unwrap();
    drop(db);

    let again = ws.recast(&sim, &["run", "jobs.yaml"]).await;
    assert_eq!(again.status.code(), Some(0), "{}", describe(&again));
    assert!(sim.stats().polls > polls, "the tasks were not polled again");
    assert_eq!(ws.outputs(), before, "a clip was made again beside its own");
    ws.assert_all_clips_whole();
    assert_eq!(sim.ledger().totals.billed_tasks, 4);
    let status = ws.recast(&sim, &["status", "e2e", "--json"]).await;
    let doc: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(doc["batches"][0]["batch"]["counts"]["by_state"]["done"], 4);
}
