//! Exactly once in real operation: each path that used to spend money twice (or after a
//! cancel), driven through the real binary against the simulator, checked on its ledger.

use std::time::Duration;

use recast::sim::{Generation, Sim, SimConfig};

use crate::helper::wait_for;
use crate::helper::workspace::{Workspace, describe};

async fn start(config: SimConfig) -> Sim {
    Sim::start(config).await.unwrap()
}

fn status_counts(out: &std::process::Output) -> serde_json::Value {
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    doc["batches"][0]["batch"]["counts"]["by_state"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulated_run_beside_a_real_batch_never_touches_its_tasks() {
    let ws = Workspace::new(3, "");
    // The "real" provider: generation slow enough that its tasks are running during the trial.
    let sim = start(SimConfig {
        generation: Generation::Fixed(Duration::from_secs(3)),
        ..ws.sim_config()
    })
    .await;
    let tick = ws.recast(&sim, &["run", "jobs.yaml", "--no-wait"]).await;
    assert_eq!(tick.status.code(), Some(0), "{}", describe(&tick));
    assert_eq!(sim.ledger().totals.billed_tasks, 3);
    // A trial with --simulate in the same state folder.
    let trial = ws.recast(&sim, &["run", "jobs.yaml", "--simulate"]).await;
    assert_eq!(trial.status.code(), Some(0), "{}", describe(&trial));
    let real = ws.recast(&sim, &["run", "jobs.yaml"]).await;
    assert_eq!(real.status.code(), Some(0), "{}", describe(&real));
    assert_eq!(
        sim.ledger().totals.billed_tasks,
        3,
        "nothing real billed twice"
    );
    assert_eq!(sim.stats().polls_unknown_404, 0);
    let status = ws.recast(&sim, &["status", "e2e", "--json"]).await;
    let doc: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    for batch in doc["batches"].as_array().unwrap() {
        assert_eq!(batch["batch"]["counts"]["by_state"]["done"], 3, "{doc}");
    }
    for i in 0..3 {
        assert!(ws.out().join(format!("s{i:03}.mp4")).is_file());
        assert!(ws.out().join(format!("simulated/s{i:03}.mp4")).is_file());
    }
}

/// A provider that ignores keys; one `--no-wait` tick submits the three jobs of `ws` (tasks
/// taking `generation`), then the state folder is lost while every task is still running.
async fn three_submitted_then_state_lost(ws: &Workspace, generation: Duration) -> Sim {
    let sim = start(SimConfig {
        generation: Generation::Fixed(generation),
        honour_idempotency: false,
        ..ws.sim_config()
    })
    .await;
    let tick = ws.recast(&sim, &["run", "jobs.yaml", "--no-wait"]).await;
    assert_eq!(tick.status.code(), Some(0), "{}", describe(&tick));
    assert_eq!(sim.ledger().totals.billed_tasks, 3);
    std::fs::remove_dir_all(ws.state()).unwrap();
    sim
}

/// Found by the explorer (seed 1002): a new state folder numbers its batches from 1 again, so a
/// `--simulate` trial made the idempotency keys the lost folder's real submits had (the
/// results file remembers them), and the real run could not take them over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulate_trial_in_a_new_state_folder_makes_no_key_the_lost_one_sent() {
    let ws = Workspace::new(3, "");
    let sim = three_submitted_then_state_lost(&ws, Duration::from_secs(3)).await;
    let trial = ws.recast(&sim, &["run", "jobs.yaml", "--simulate"]).await;
    assert_eq!(trial.status.code(), Some(0), "{}", describe(&trial));
    let real = ws.recast(&sim, &["run", "jobs.yaml"]).await;
    assert_eq!(real.status.code(), Some(0), "{}", describe(&real));
    let bills = crate::helper::net_bills_per_subject(&sim.ledger());
    assert_eq!(bills.len(), 3, "{bills:?}");
    assert!(bills.values().all(|n| *n == 1), "billed twice: {bills:?}");
    for i in 0..3 {
        assert!(ws.out().join(format!("s{i:03}.mp4")).is_file());
    }
}

/// Found by the explorer (seed 1025): with only a `--simulate` trial of a batch registered,
/// `recast cancel NAME` cancelled the trial and said nothing of NAME would be submitted again;
/// the next real `recast run` registered the real batch and paid for it. A change now reaches
/// the trial only with `--simulate`, and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_by_name_never_lands_on_the_simulated_trial_alone() {
    let ws = Workspace::new(2, "");
    let sim = start(ws.sim_config()).await;
    let trial = ws.recast(&sim, &["run", "jobs.yaml", "--simulate"]).await;
    assert_eq!(trial.status.code(), Some(0), "{}", describe(&trial));
    for steer in [
        &["cancel", "e2e"][..],
        &["pause", "e2e"],
        &["approve", "e2e"],
    ] {
        let out = ws.recast(&sim, steer).await;
        assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(said.contains("the simulator's (add --simulate)"), "{said}");
    }
    // Looking needs no flag: the only batch of the name is the one meant.
    let jobs = ws.recast(&sim, &["status", "e2e", "--jobs"]).await;
    assert_eq!(jobs.status.code(), Some(0), "{}", describe(&jobs));
    let cancel = ws.recast(&sim, &["cancel", "e2e", "--simulate"]).await;
    assert_eq!(cancel.status.code(), Some(0), "{}", describe(&cancel));
    assert_eq!(sim.ledger().totals.billed_tasks, 0);
    let real = ws.recast(&sim, &["run", "jobs.yaml"]).await;
    assert_eq!(real.status.code(), Some(0), "{}", describe(&real));
    assert_eq!(
        sim.ledger().totals.billed_tasks,
        2,
        "the real batch is made"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_state_folder_bills_nothing_the_output_folder_holds() {
    let ws = Workspace::new(3, "");
    // Like reAPI: no de-duplication, so only the output folder's memory stands between a fresh
    // state folder and a second bill.
    let sim = start(SimConfig {
        honour_idempotency: false,
        ..ws.sim_config()
    })
    .await;
    let out = ws.recast(&sim, &["run", "jobs.yaml"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(sim.ledger().totals.billed_tasks, 3);
    // The state folder is gone (a CI cache evicted, another working folder, a new machine).
    std::fs::remove_dir_all(ws.state()).unwrap();
    // One clip is damaged meanwhile: that one, and only that one, is made again.
    std::fs::write(ws.out().join("s001.mp4"), b"not the clip").unwrap();
    let again = ws.recast(&sim, &["run", "jobs.yaml"]).await;
    assert_eq!(again.status.code(), Some(0), "{}", describe(&again));
    assert!(
        describe(&again).contains("2 clips found whole"),
        "{}",
        describe(&again)
    );
    assert_eq!(
        sim.ledger().totals.billed_tasks,
        4,
        "only the damaged clip again: {}",
        describe(&again)
    );
    let status = ws.recast(&sim, &["status", "e2e", "--json"]).await;
    assert_eq!(status_counts(&status)["done"], 3);
    // The damaged file was never overwritten: the new clip landed beside it.
    assert_eq!(
        std::fs::read(ws.out().join("s001.mp4")).unwrap(),
        b"not the clip"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_state_folders_cannot_fill_one_output_folder_at_once() {
    let ws = Workspace::new(2, "");
    let sim = start(SimConfig {
        generation: Generation::Fixed(Duration::from_secs(2)),
        ..ws.sim_config()
    })
    .await;
    let mut first = ws
        .recast_command(&sim, &["run", "jobs.yaml"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for(
        "the first run to submit",
        Duration::from_secs(30),
        || async { (sim.ledger().totals.billed_tasks == 2).then_some(()) },
    )
    .await;
    let other = ws.path().join("other-state");
    let second = ws
        .recast_command_in(&sim, &other, &["run", "jobs.yaml"])
        .output()
        .await
        .unwrap();
    assert_eq!(second.status.code(), Some(1), "{}", describe(&second));
    let text = describe(&second);
    let first_state = ws.state().canonicalize().unwrap();
    assert!(
        text.contains("another state folder") && text.contains(&first_state.display().to_string()),
        "{text}"
    );
    assert!(first.wait().await.unwrap().success());
    assert_eq!(sim.ledger().totals.billed_tasks, 2);
    ws.assert_all_clips_whole();
    // Later too, while the first state folder exists: it is the one that knows the batch.
    let later = ws
        .recast_command_in(&sim, &other, &["run", "jobs.yaml"])
        .output()
        .await
        .unwrap();
    assert_eq!(later.status.code(), Some(1), "{}", describe(&later));
    assert!(
        describe(&later).contains("still exists"),
        "{}",
        describe(&later)
    );
    // Once it is gone, the output folder's own memory is enough: nothing is made again.
    std::fs::remove_dir_all(ws.state()).unwrap();
    let fresh = ws
        .recast_command_in(&sim, &other, &["run", "jobs.yaml"])
        .output()
        .await
        .unwrap();
    assert_eq!(fresh.status.code(), Some(0), "{}", describe(&fresh));
    assert_eq!(sim.ledger().totals.billed_tasks, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_manifest_with_the_same_name_is_refused_and_a_renamed_one_keeps_its_batch() {
    let ws = Workspace::new(2, "");
    let sim = start(ws.sim_config()).await;
    let out = ws.recast(&sim, &["run", "jobs.yaml"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    // A copy with one subject less: it would cancel the other's jobs on every tick.
    let text = std::fs::read_to_string(ws.manifest()).unwrap();
    let fewer = text.replace("  - id: s001\n    image: ./subjects/s001.png\n", "");
    std::fs::write(ws.path().join("copy.yaml"), fewer).unwrap();
    let second = ws.recast(&sim, &["run", "copy.yaml"]).await;
    assert_eq!(second.status.code(), Some(1), "{}", describe(&second));
    let message = describe(&second);
    assert!(
        message.contains("copy.yaml") && message.contains("jobs.yaml") && message.contains("`e2e`"),
        "{message}"
    );
    // Renaming the manifest moves its batch with it: nothing is made again.
    std::fs::remove_file(ws.path().join("copy.yaml")).unwrap();
    std::fs::rename(ws.manifest(), ws.path().join("renamed.yaml")).unwrap();
    let renamed = ws.recast(&sim, &["run", "renamed.yaml"]).await;
    assert_eq!(renamed.status.code(), Some(0), "{}", describe(&renamed));
    assert_eq!(sim.ledger().totals.billed_tasks, 2);
    let status = ws.recast(&sim, &["status", "e2e", "--json"]).await;
    assert_eq!(status_counts(&status)["done"], 2);
}

/// A simulator like reAPI (no de-duplication) whose first submit meets `fault`.
async fn sim_with_first_submit(ws: &Workspace, fault: &str) -> Sim {
    let mut faults = recast::sim::Faults::default();
    match fault {
        "reset" => faults.submit_reset = recast::sim::Fault::first(1),
        _ => faults.ambiguous_submit = recast::sim::Fault::first(1),
    }
    start(SimConfig {
        honour_idempotency: false,
        faults,
        ..ws.sim_config()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_dedicated_account_the_balance_proves_a_lost_answer_created_nothing() {
    let ws = Workspace::new(3, "");
    let sim = sim_with_first_submit(&ws, "reset").await;
    let out = ws
        .recast(&sim, &["run", "jobs.yaml", "--dedicated-account"])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        describe(&out).contains("none was created"),
        "{}",
        describe(&out)
    );
    ws.assert_all_clips_whole();
    assert_eq!(
        sim.ledger().totals.billed_tasks,
        3,
        "each subject billed once"
    );
    let status = ws.recast(&sim, &["status", "e2e"]).await;
    assert!(
        describe(&status).contains("unaccounted 0"),
        "{}",
        describe(&status)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_dedicated_account_the_balance_proves_a_lost_answer_was_billed() {
    let ws = Workspace::new(3, "");
    let sim = sim_with_first_submit(&ws, "ambiguous").await;
    let out = ws
        .recast(&sim, &["run", "jobs.yaml", "--dedicated-account"])
        .await;
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    assert_eq!(
        sim.ledger().totals.billed_tasks,
        3,
        "never sent a second time"
    );
    let status = ws.recast(&sim, &["status", "e2e", "--json"]).await;
    assert_eq!(status_counts(&status)["lost"], 1, "{}", describe(&status));
    assert_eq!(status_counts(&status)["done"], 2);
    // A re-render is the person's priced choice.
    let asked = ws.recast(&sim, &["retry", "e2e", "--lost"]).await;
    assert_eq!(asked.status.code(), Some(1), "{}", describe(&asked));
    assert_eq!(sim.ledger().totals.billed_tasks, 3);
    let yes = ws.recast(&sim, &["retry", "e2e", "--lost", "--yes"]).await;
    assert_eq!(yes.status.code(), Some(0), "{}", describe(&yes));
    let out = ws.recast(&sim, &["run", "jobs.yaml"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(sim.ledger().totals.billed_tasks, 4);
    ws.assert_all_clips_whole();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_folder_lost_mid_flight_follows_the_tasks_the_output_folder_recorded() {
    let ws = Workspace::new(3, "");
    let sim = three_submitted_then_state_lost(&ws, Duration::from_secs(2)).await;
    let out = ws.recast(&sim, &["run", "jobs.yaml"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(sim.ledger().totals.billed_tasks, 3, "{}", describe(&out));
    ws.assert_all_clips_whole();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_submits_its_first_subjects_and_nothing_more_until_a_person_approves() {
    let ws = Workspace::new(5, "canary: 2\n");
    let sim = start(ws.sim_config()).await;
    let plan = ws.recast(&sim, &["plan", "jobs.yaml"]).await;
    let text = String::from_utf8_lossy(&plan.stdout);
    assert!(
        text.contains("canary: 2 subjects first (1.132 USD), then 3 more (1.698 USD) wait for `recast approve e2e`"),
        "{}",
        describe(&plan)
    );

    let first = ws.recast(&sim, &["run", "jobs.yaml"]).await;
    assert_eq!(first.status.code(), Some(3), "{}", describe(&first));
    assert!(
        String::from_utf8_lossy(&first.stderr).contains("canary: 3 jobs wait"),
        "{}",
        describe(&first)
    );
    assert_eq!(ws.outputs().len(), 2);
    assert_eq!(sim.ledger().entries.len(), 2);
    // A cron tick, and a manifest whose canary was taken out, release nothing.
    let tick = ws.recast(&sim, &["run", "jobs.yaml", "--no-wait"]).await;
    assert_eq!(tick.status.code(), Some(3), "{}", describe(&tick));
    let manifest = std::fs::read_to_string(ws.manifest())
        .unwrap()
        .replace("canary: 2\n", "");
    std::fs::write(ws.manifest(), manifest).unwrap();
    let edited = ws.recast(&sim, &["run", "jobs.yaml"]).await;
    assert_eq!(edited.status.code(), Some(3), "{}", describe(&edited));
    assert_eq!(sim.ledger().entries.len(), 2, "nothing before approval");
    let status = ws.recast(&sim, &["status"]).await;
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("CANARY: 3 jobs wait"),
        "{}",
        describe(&status)
    );

    let approve = ws.recast(&sim, &["approve", "e2e"]).await;
    assert_eq!(approve.status.code(), Some(0), "{}", describe(&approve));
    assert!(String::from_utf8_lossy(&approve.stderr).contains("3 more jobs may be submitted"));
    let rest = ws.recast(&sim, &["run", "jobs.yaml"]).await;
    assert_eq!(rest.status.code(), Some(0), "{}", describe(&rest));
    assert_eq!(ws.outputs().len(), 5);
    let bills = crate::helper::net_bills_per_subject(&sim.ledger());
    assert_eq!(bills.len(), 5);
    assert!(bills.values().all(|n| *n == 1), "{bills:?}");
    sim.shutdown().await;
}
