//! End-to-end tests of `recast run`: the real binary against a real simulator, asserting what a
//! user would see: clips on disk, the simulator's billing ledger, exit codes and messages.

use std::collections::HashMap;
use std::time::Duration;

use recast::sim::{Fault, Faults, Ledger, Sim, SimConfig};

use crate::helper::workspace::{Workspace, describe};

fn assert_each_subject_billed_once(ws: &Workspace, ledger: &Ledger) {
    let bills = crate::helper::net_bills_per_subject(ledger);
    assert_eq!(bills.len(), ws.subjects, "every subject billed: {bills:?}");
    assert!(
        bills.values().all(|n| *n == 1),
        "a subject billed twice: {bills:?}"
    );
}

async fn start(config: SimConfig) -> Sim {
    Sim::start(config).await.expect("simulator starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_subjects_make_fifty_whole_clips_billed_once_and_a_rerun_spends_nothing() {
    let ws = Workspace::new(50, "");
    let sim = start(ws.sim_config()).await;

    let out = ws.recast(&sim, &["run", "jobs.yaml"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    ws.assert_all_clips_whole();
    let ledger = sim.ledger();
    assert_eq!(ledger.totals.billed_tasks, 50);
    assert_eq!(ledger.totals.billed_credits, 50 * 566);
    assert_each_subject_billed_once(&ws, &ledger);

    let again = ws.recast(&sim, &["run", "jobs.yaml"]).await;
    assert_eq!(again.status.code(), Some(0), "{}", describe(&again));
    assert_eq!(
        sim.ledger().totals.billed_tasks,
        50,
        "a rerun submitted something"
    );
    assert_eq!(
        sim.stats().submits_accepted + sim.stats().submits_replayed,
        50
    );
    ws.assert_all_clips_whole();

    let plan = ws.recast(&sim, &["plan", "jobs.yaml", "--json"]).await;
    let doc: serde_json::Value = serde_json::from_slice(&plan.stdout).expect("plan --json parses");
    assert_eq!(doc["totals"]["to_submit"], 0);
    assert!(
        doc["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|j| j["status"] == "done")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_providers_own_rate_nothing_is_refused() {
    let ws = Workspace::new(24, "");
    ws.write_settings(
        "  submit_per_minute: 600\n  submit_burst: 2\n  max_in_flight: 50\n  poll_per_minute: 60000\n",
    );
    let sim = start(SimConfig {
        submit_rate_per_min: Some(600),
        submit_burst: 4,
        ..ws.sim_config()
    })
    .await;
    let out = ws.recast(&sim, &["run", "jobs.yaml"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(sim.stats().rate_limited_429, 0, "{:?}", sim.stats());
    ws.assert_all_clips_whole();
    assert_each_subject_billed_once(&ws, &sim.ledger());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_slower_than_our_setting_slows_us_down_and_every_job_still_finishes_once() {
    let ws = Workspace::new(20, "");
    ws.write_settings(
        "  submit_per_minute: 1200\n  submit_burst: 4\n  max_in_flight: 50\n  poll_per_minute: 60000\n",
    );
    let sim = start(SimConfig {
        submit_rate_per_min: Some(600),
        submit_burst: 1,
        ..ws.sim_config()
    })
    .await;
    let out = ws.recast(&sim, &["run", "jobs.yaml"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let stats = sim.stats();
    assert!(
        stats.rate_limited_429 > 0,
        "the provider never pushed back: {stats:?}"
    );
    // Slowing the whole stage means far fewer refusals than submits.
    assert!(
        stats.rate_limited_429 < 20,
        "recast kept hammering: {stats:?}"
    );
    ws.assert_all_clips_whole();
    assert_each_subject_billed_once(&ws, &sim.ledger());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_and_resets_on_submit_and_poll_are_ridden_out() {
    let ws = Workspace::new(12, "");
    let sim = start(SimConfig {
        faults: Faults {
            seed: 7,
            submit_5xx: Fault::first(3),
            submit_reset: Fault::rate(0.2).at_most(3),
            poll_5xx: Fault::rate(0.2),
            poll_reset: Fault::rate(0.1),
            malformed_json: Fault::rate(0.1),
            unknown_status: Fault::rate(0.1),
            ..Faults::default()
        },
        ..ws.sim_config()
    })
    .await;
    let out = ws
        .recast(&sim, &["run", "jobs.yaml", "--trust-idempotency"])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    ws.assert_all_clips_whole();
    assert_each_subject_billed_once(&ws, &sim.ledger());
    assert!(sim.stats().faults.submit_5xx >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_submits_with_idempotency_honoured_are_resent_and_never_billed_twice() {
    let ws = Workspace::new(10, "");
    let sim = start(SimConfig {
        honour_idempotency: true,
        faults: Faults {
            ambiguous_submit: Fault::first(4),
            ..Faults::default()
        },
        ..ws.sim_config()
    })
    .await;
    let out = ws
        .recast(&sim, &["run", "jobs.yaml", "--trust-idempotency"])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(sim.stats().faults.ambiguous_submit, 4);
    assert!(sim.stats().submits_replayed >= 4, "{:?}", sim.stats());
    assert_eq!(sim.ledger().totals.billed_tasks, 10);
    assert_each_subject_billed_once(&ws, &sim.ledger());
    ws.assert_all_clips_whole();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_submits_without_idempotency_are_held_as_unknown_not_resent() {
    let ws = Workspace::new(10, "");
    let sim = start(SimConfig {
        honour_idempotency: false,
        faults: Faults {
            ambiguous_submit: Fault::first(3),
            ..Faults::default()
        },
        ..ws.sim_config()
    })
    .await;
    let out = ws.recast(&sim, &["run", "jobs.yaml"]).await;
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("is unknown").count(), 3, "{stderr}");
    // The three ambiguous submits were billed by the provider; nothing was billed twice.
    let ledger = sim.ledger();
    assert_eq!(ledger.totals.billed_tasks, 10);
    assert_each_subject_billed_once(&ws, &ledger);
    assert_eq!(ws.outputs().len(), 7);

    let status = ws.recast(&sim, &["status", "e2e", "--json"]).await;
    let doc: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let held = doc["batches"][0]["needs_a_person"].as_array().unwrap();
    assert_eq!(held.len(), 3);
    assert!(held.iter().all(|j| j["state"] == "unknown"));
    // A second run still sends nothing for them.
    let again = ws.recast(&sim, &["run", "jobs.yaml"]).await;
    assert_eq!(again.status.code(), Some(3), "{}", describe(&again));
    assert_eq!(sim.ledger().totals.billed_tasks, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_tasks_are_retried_as_new_attempts_refunded_and_capped() {
    let ws = Workspace::new(6, "retries: 1\n");
    let sim = start(SimConfig {
        faults: Faults {
            seed: 3,
            task_failure: Fault::rate(0.4),
            ..Faults::default()
        },
        ..ws.sim_config()
    })
    .await;
    let out = ws.recast(&sim, &["run", "jobs.yaml", "--json"]).await;
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("run --json parses");
    let ledger = sim.ledger();
    let refunds = ledger.entries.iter().filter(|e| e.refunded).count() as u64;
    assert_eq!(
        refunds,
        sim.stats().faults.task_failure,
        "every failed task refunded"
    );
    assert!(refunds > 0, "no task failed: seed changed?");
    let done = doc["counts"]["done"].as_u64().unwrap_or(0);
    let failed = doc["counts"]["failed"].as_u64().unwrap_or(0);
    assert_eq!(done + failed, 6, "{}", describe(&out));
    assert_eq!(
        ledger.totals.net_tasks, done,
        "each done job paid once, failed ones refunded"
    );
    assert_eq!(ws.outputs().len() as u64, done);
    // retries: 1 means at most two attempts per subject.
    let mut attempts: HashMap<&str, usize> = HashMap::new();
    for e in &ledger.entries {
        *attempts.entry(e.image_url.as_str()).or_default() += 1;
    }
    assert!(attempts.values().all(|n| *n <= 2), "{attempts:?}");
    let expected = if failed > 0 { Some(3) } else { Some(0) };
    assert_eq!(out.status.code(), expected, "{}", describe(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_changed_and_expired_downloads_never_leave_a_bad_file_under_a_final_name() {
    let ws = Workspace::new(8, "");
    let sim = start(SimConfig {
        faults: Faults {
            seed: 11,
            truncated_download: Fault::first(3),
            changed_download: Fault::rate(0.3).at_most(4),
            expired_link: Fault::first(2),
            ..Faults::default()
        },
        ..ws.sim_config()
    })
    .await;
    let out = ws.recast(&sim, &["run", "jobs.yaml"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let faults = sim.stats().faults;
    assert_eq!(faults.truncated_download, 3);
    assert_eq!(faults.expired_link, 2);
    assert!(faults.changed_download > 0);
    ws.assert_all_clips_whole();
    assert_each_subject_billed_once(&ws, &sim.ledger());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_that_covers_seven_of_ten_jobs_submits_seven_and_says_why() {
    // 7 x 566 = 3962 credits fit in 4.00 USD; an eighth would need 4528.
    let ws = Workspace::new(10, "budget:\n  max_usd: 4.00\n");
    let sim = start(ws.sim_config()).await;
    let plan = ws.recast(&sim, &["plan", "jobs.yaml"]).await;
    assert_eq!(plan.status.code(), Some(1), "{}", describe(&plan));
    assert!(
        String::from_utf8_lossy(&plan.stdout).contains("OVER"),
        "{}",
        describe(&plan)
    );

    let out = ws.recast(&sim, &["run", "jobs.yaml"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("stopped by the budget: 3 jobs not submitted"),
        "{stderr}"
    );
    assert!(stderr.contains("over budget"), "{stderr}");
    assert_eq!(sim.ledger().totals.billed_tasks, 7);
    assert_eq!(ws.outputs().len(), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_key_stops_the_run_with_a_clear_message_and_no_spend() {
    let ws = Workspace::new(3, "");
    let sim = start(ws.sim_config()).await;
    let out = ws
        .recast_command(&sim, &["run", "jobs.yaml"])
        .env("REAPI_API_KEY", "wrong-key-123")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", describe(&out));
    let text = describe(&out);
    assert!(text.contains("refused the API key"), "{text}");
    assert!(!text.contains("wrong-key-123"), "the key leaked: {text}");
    for file in std::fs::read_dir(ws.state()).unwrap().flatten() {
        let bytes = std::fs::read(file.path()).unwrap();
        let leaked = bytes
            .windows(b"wrong-key-123".len())
            .any(|w| w == b"wrong-key-123");
        assert!(!leaked, "the key reached {}", file.path().display());
    }
    assert_eq!(sim.ledger().totals.billed_tasks, 0);
    assert_eq!(
        sim.stats().rejected_401,
        1,
        "nothing more was sent after the 401"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_media_without_a_public_url_fail_before_anything_is_spent() {
    let ws = Workspace::new(2, "");
    let sim = start(ws.sim_config()).await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_recast"))
        .args([
            "run",
            "jobs.yaml",
            "--state-dir",
            "state",
            "--api-base",
            &sim.base_url(),
        ])
        .env("REAPI_API_KEY", sim.api_key())
        .env_remove("RECAST_MEDIA_BASE_URL")
        .current_dir(ws.path())
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        describe(&out).contains("--media-base-url"),
        "{}",
        describe(&out)
    );
    assert_eq!(sim.stats().submits_accepted, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_recast_on_the_same_state_folder_is_refused_naming_the_first() {
    let ws = Workspace::new(30, "");
    let sim = start(SimConfig {
        generation: recast::sim::Generation::Fixed(Duration::from_secs(3)),
        ..ws.sim_config()
    })
    .await;
    let mut first = ws
        .recast_command(&sim, &["run", "jobs.yaml"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = first.id().unwrap();
    crate::helper::wait_for(
        "the first run to take the lock",
        Duration::from_secs(20),
        || async {
            let lock = std::fs::read_to_string(ws.state().join("recast.lock")).ok()?;
            (lock.trim() == pid.to_string()).then_some(())
        },
    )
    .await;
    let second = ws.recast(&sim, &["run", "jobs.yaml"]).await;
    assert_eq!(second.status.code(), Some(5), "{}", describe(&second));
    assert!(
        describe(&second).contains(&format!("pid {pid}")),
        "{}",
        describe(&second)
    );
    first.start_kill().unwrap();
    let _ = first.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_subject_is_made_again_beside_its_old_clip_never_over_it() {
    let ws = Workspace::new(2, "");
    let sim = start(ws.sim_config()).await;
    let out = ws.recast(&sim, &["run", "jobs.yaml"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let before = std::fs::metadata(ws.out().join("s000.mp4"))
        .unwrap()
        .modified()
        .unwrap();

    let manifest = std::fs::read_to_string(ws.manifest()).unwrap().replace(
        "    image: ./subjects/s000.png\n",
        "    image: ./subjects/s000.png\n    prompt: \"golden hour\"\n",
    );
    std::fs::write(ws.manifest(), manifest).unwrap();
    let plan = ws.recast(&sim, &["plan", "jobs.yaml", "--json"]).await;
    let doc: serde_json::Value = serde_json::from_slice(&plan.stdout).expect("plan --json");
    let status = |id: &str| {
        doc["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["subject"] == id)
            .unwrap()["status"]
            .clone()
    };
    assert_eq!(status("s000"), "changed");
    assert_eq!(status("s001"), "done");
    assert_eq!(doc["totals"]["to_submit"], 1);
    assert_eq!(doc["totals"]["credits"], 566);
    // The plan names the file the new clip will really land as: beside the old one.
    let job = |id: &str| {
        doc["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["subject"] == id)
            .unwrap()
            .clone()
    };
    let lands_as = job("s000")["lands_as"].as_str().unwrap().to_owned();
    let key = job("s000")["key"].as_str().unwrap().to_owned();
    assert_eq!(lands_as, format!("s000.{}.mp4", &key[..12]));
    assert_eq!(job("s001")["lands_as"], "s001.mp4");

    let out = ws.recast(&sim, &["run", "jobs.yaml"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(sim.ledger().totals.billed_tasks, 3);
    let outputs = ws.outputs();
    assert_eq!(outputs.len(), 3, "{outputs:?}");
    assert!(
        outputs
            .iter()
            .any(|n| n.starts_with("s000.") && n != "s000.mp4"),
        "{outputs:?}"
    );
    let after = std::fs::metadata(ws.out().join("s000.mp4"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(before, after, "the first clip was rewritten");
    assert!(outputs.contains(&lands_as), "{outputs:?} lacks {lands_as}");
    // Two subjects, not "3 done": the earlier version is named as such.
    let status = ws.recast(&sim, &["status"]).await;
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("2 subjects, 3 jobs (1 an earlier version of a changed subject"),
        "{text}"
    );
    let json = ws.recast(&sim, &["status", "--json"]).await;
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(doc["batches"][0]["batch"]["subjects"], 2);
    assert_eq!(doc["batches"][0]["batch"]["earlier_versions"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_wait_runs_advance_the_batch_tick_by_tick_until_it_is_done() {
    let ws = Workspace::new(6, "");
    let sim = start(SimConfig {
        generation: recast::sim::Generation::Fixed(Duration::from_millis(600)),
        ..ws.sim_config()
    })
    .await;
    let first = ws
        .recast(&sim, &["run", "jobs.yaml", "--no-wait", "--json"])
        .await;
    assert_eq!(first.status.code(), Some(0), "{}", describe(&first));
    let doc: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    assert!(
        doc["in_progress"].as_u64().unwrap() > 0,
        "the first tick cannot finish: {doc}"
    );
    assert_eq!(
        sim.ledger().totals.billed_tasks,
        6,
        "the first tick submits everything it may"
    );

    let ticks = std::sync::atomic::AtomicU32::new(1);
    crate::helper::wait_for(
        "ticks to finish the batch",
        Duration::from_secs(30),
        || async {
            ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let out = ws
                .recast(&sim, &["run", "jobs.yaml", "--no-wait", "--json"])
                .await;
            assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
            let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            (doc["counts"]["done"] == 6).then_some(())
        },
    )
    .await;
    assert!(ticks.into_inner() >= 2);
    ws.assert_all_clips_whole();
    assert_eq!(sim.ledger().totals.billed_tasks, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_unknown_resends_held_submits_and_cancel_stops_what_was_not_sent() {
    let ws = Workspace::new(4, "");
    let sim = start(SimConfig {
        honour_idempotency: true,
        faults: Faults {
            ambiguous_submit: Fault::first(1),
            ..Faults::default()
        },
        ..ws.sim_config()
    })
    .await;
    // Not trusted: the ambiguous submit is held.
    let out = ws.recast(&sim, &["run", "jobs.yaml"]).await;
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    // Without trusted keys a re-send may bill twice: the price is shown and nothing changes.
    let asked = ws.recast(&sim, &["retry", "e2e", "--unknown"]).await;
    assert_eq!(asked.status.code(), Some(1), "{}", describe(&asked));
    assert!(
        describe(&asked).contains("may be billed a second time")
            && describe(&asked).contains("566 credits"),
        "{}",
        describe(&asked)
    );
    let retry = ws
        .recast(&sim, &["retry", "e2e", "--unknown", "--trust-idempotency"])
        .await;
    assert_eq!(retry.status.code(), Some(0), "{}", describe(&retry));
    assert!(
        describe(&retry).contains("1 jobs of e2e sent back"),
        "{}",
        describe(&retry)
    );
    let out = ws.recast(&sim, &["run", "jobs.yaml"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    // Re-sent under the same key: the provider answered with the first task.
    assert_eq!(sim.ledger().totals.billed_tasks, 4);
    assert_eq!(sim.stats().submits_replayed, 1);
    ws.assert_all_clips_whole();

    // A batch cancelled before it ran submits nothing.
    let ws2 = Workspace::new(3, "");
    let sim2 = start(ws2.sim_config()).await;
    let plan_only = ws2
        .recast(
            &sim2,
            &[
                "run",
                "jobs.yaml",
                "--no-wait",
                "--submit-per-minute",
                "1",
                "--submit-burst",
                "1",
            ],
        )
        .await;
    assert_eq!(plan_only.status.code(), Some(0), "{}", describe(&plan_only));
    let cancel = ws2.recast(&sim2, &["cancel", "e2e"]).await;
    assert_eq!(cancel.status.code(), Some(0), "{}", describe(&cancel));
    assert!(
        describe(&cancel).contains("2 jobs of e2e cancelled"),
        "{}",
        describe(&cancel)
    );
    let status = ws2.recast(&sim2, &["status", "e2e", "--json"]).await;
    let doc: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(
        doc["batches"][0]["batch"]["counts"]["by_state"]["cancelled"], 2,
        "{doc}"
    );
    // The cancel sticks: the next tick (cron, CI) submits nothing of it.
    let tick = ws2.recast(&sim2, &["run", "jobs.yaml", "--no-wait"]).await;
    assert_eq!(tick.status.code(), Some(0), "{}", describe(&tick));
    let plan = ws2.recast(&sim2, &["plan", "jobs.yaml", "--json"]).await;
    let doc: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    let statuses: Vec<String> = doc["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["status"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| *s == "cancelled").count(),
        2,
        "{statuses:?}"
    );
    assert_eq!(sim2.ledger().totals.billed_tasks, 1);
    // Only a person's resume brings it back, saying what it will submit.
    let resume = ws2.recast(&sim2, &["resume", "e2e"]).await;
    assert!(
        describe(&resume).contains("2 will be submitted"),
        "{}",
        describe(&resume)
    );
    let out = ws2.recast(&sim2, &["run", "jobs.yaml"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(sim2.ledger().totals.billed_tasks, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulated_run_interrupted_mid_flight_resumes_with_a_fresh_simulator() {
    let ws = Workspace::new(3, "");
    let simulate = |ws: &Workspace| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_recast"));
        cmd.args(["run", "jobs.yaml", "--simulate", "--state-dir", "state"])
            .current_dir(ws.path())
            .env_remove("REAPI_API_KEY")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        cmd
    };
    let child = simulate(&ws).spawn().unwrap();
    let pid = child.id().unwrap();
    crate::helper::wait_for("tasks in flight", Duration::from_secs(30), || async {
        let store = recast::store::Store::open(&ws.state()).ok()?;
        let id = store.batch_id("e2e", "simulator").ok()??;
        (store
            .batch_counts(id)
            .ok()?
            .get(recast::store::JobState::Running)
            > 0)
        .then_some(())
    })
    .await;
    std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", describe(&out));

    let again = simulate(&ws).output().await.unwrap();
    assert_eq!(again.status.code(), Some(0), "{}", describe(&again));
    assert!(
        describe(&again).contains("submitted again"),
        "{}",
        describe(&again)
    );
    let mut clips: Vec<String> = std::fs::read_dir(ws.out().join("simulated"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".mp4"))
        .collect();
    clips.sort();
    assert_eq!(clips, ["s000.mp4", "s001.mp4", "s002.mp4"]);
}
