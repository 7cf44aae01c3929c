//! What a person sees in a terminal and a pipe: the rough edges a new user met, each pinned.

use std::process::{Command, Output, Stdio};

use crate::helper::repo_root;
use crate::helper::workspace::describe;

fn recast() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_recast"));
    cmd.current_dir(repo_root())
        .env_remove("RECAST_CONFIG")
        .env_remove("RECAST_STATE_DIR")
        .env_remove("REAPI_API_KEY");
    cmd
}

/// Run with stdout a pipe whose reader is already gone, as after `| head -1` has read its line.
fn into_a_closed_pipe(cmd: &mut Command) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    cmd.stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn a_reader_that_goes_away_ends_a_printing_command_quietly_not_with_a_panic() {
    let state = tempfile::tempdir().unwrap();
    for args in [
        &["plan", "jobs.example.yaml", "--simulate"][..],
        &["plan", "jobs.example.yaml", "--simulate", "--json"][..],
        &["status", "--json"][..],
    ] {
        let out = into_a_closed_pipe(recast().args(args).arg("--state-dir").arg(state.path()));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {}", describe(&out));
        assert_ne!(out.status.code(), Some(101), "{args:?}: {}", describe(&out));
        use std::os::unix::process::ExitStatusExt;
        assert!(
            out.status.success() || out.status.signal() == Some(libc::SIGPIPE),
            "{args:?}: {}",
            describe(&out)
        );
    }
}

#[test]
fn the_plan_table_fits_a_narrow_terminal() {
    let state = tempfile::tempdir().unwrap();
    for width in [60usize, 80] {
        let out = recast()
            .args(["plan", "jobs.example.yaml", "--simulate", "--state-dir"])
            .arg(state.path())
            .env("COLUMNS", width.to_string())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        let text = String::from_utf8_lossy(&out.stdout);
        let table: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with(['┌', '│', '╞', '└']))
            .collect();
        assert!(table.len() > 4, "{text}");
        for line in table {
            assert!(
                line.chars().count() <= width,
                "wider than {width}: {line}\n{text}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_show_the_time_a_person_reads_not_epoch_milliseconds() {
    let ws = crate::helper::workspace::Workspace::new(1, "");
    let sim = recast::sim::Sim::start(ws.sim_config()).await.unwrap();
    let run = ws.recast(&sim, &["run", "jobs.yaml"]).await;
    assert_eq!(run.status.code(), Some(0), "{}", describe(&run));
    let out = ws.recast(&sim, &["status", "--events", "5"]).await;
    let text = String::from_utf8_lossy(&out.stdout);
    let events: Vec<&str> = text.lines().filter(|l| l.starts_with("  20")).collect();
    assert!(!events.is_empty(), "{text}");
    let year = chrono::Local::now().format("%Y-").to_string();
    for line in events {
        assert!(line.trim_start().starts_with(&year), "{line}");
        assert!(
            !line
                .split_whitespace()
                .any(|w| w.len() >= 13 && w.bytes().all(|b| b.is_ascii_digit())),
            "epoch milliseconds in: {line}"
        );
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tick_tells_jobs_in_flight_from_jobs_never_submitted() {
    let ws = crate::helper::workspace::Workspace::new(3, "");
    ws.write_settings("  submit_per_minute: 6000\n  submit_burst: 50\n  max_in_flight: 1\n");
    let sim = recast::sim::Sim::start(recast::sim::SimConfig {
        generation: recast::sim::Generation::Fixed(std::time::Duration::from_secs(30)),
        ..ws.sim_config()
    })
    .await
    .unwrap();
    let tick = ws.recast(&sim, &["run", "jobs.yaml", "--no-wait"]).await;
    assert_eq!(tick.status.code(), Some(0), "{}", describe(&tick));
    let stderr = String::from_utf8_lossy(&tick.stderr);
    assert!(
        stderr.contains("0 done, 1 in flight, 2 not yet submitted"),
        "{stderr}"
    );
    let json = ws
        .recast(&sim, &["run", "jobs.yaml", "--no-wait", "--json"])
        .await;
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(
        (doc["in_flight"].as_u64(), doc["waiting"].as_u64()),
        (Some(1), Some(2)),
        "{doc}"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_named_the_same_way_in_every_steering_command() {
    let ws = crate::helper::workspace::Workspace::new(1, "");
    let sim = recast::sim::Sim::start(ws.sim_config()).await.unwrap();
    // A batch only the simulator has: every command that changes it needs --simulate (and says
    // so), whichever provider is configured; looking at it does not.
    let trial = ws.recast(&sim, &["run", "jobs.yaml", "--simulate"]).await;
    assert_eq!(trial.status.code(), Some(0), "{}", describe(&trial));
    let other_provider = "http://127.0.0.1:9";
    for args in [
        &["pause", "e2e"][..],
        &["resume", "e2e"][..],
        &["cancel", "e2e"][..],
        &["resume", "e2e"][..],
        &["retry", "e2e", "--failed"][..],
    ] {
        let out = against(&ws, other_provider, args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", describe(&out));
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            said.contains("the simulator's (add --simulate)"),
            "{args:?}: {said}"
        );
        let mut reached = args.to_vec();
        reached.push("--simulate");
        let out = against(&ws, other_provider, &reached);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{reached:?}: {}",
            describe(&out)
        );
    }
    let look = against(&ws, other_provider, &["status", "e2e", "--jobs"]);
    assert_eq!(look.status.code(), Some(0), "{}", describe(&look));
    // A real batch of the same name: the name means the configured provider's; --simulate the
    // simulator's; a provider without one is told which flag reaches each.
    let real = ws.recast(&sim, &["run", "jobs.yaml"]).await;
    assert_eq!(real.status.code(), Some(0), "{}", describe(&real));
    let pause = ws.recast(&sim, &["pause", "e2e"]).await;
    assert_eq!(pause.status.code(), Some(0), "{}", describe(&pause));
    let status = ws.recast(&sim, &["status", "--json"]).await;
    let doc: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let paused: Vec<(String, bool)> = doc["batches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["batch"]["provider"].as_str().unwrap().to_owned(),
                b["batch"]["paused"].as_bool().unwrap(),
            )
        })
        .collect();
    assert!(
        paused.contains(&("simulator".to_owned(), false)),
        "{paused:?}"
    );
    assert!(
        paused.contains(&(sim.base_url().trim_end_matches('/').to_owned(), true)),
        "{paused:?}"
    );
    let sim_pause = ws.recast(&sim, &["pause", "e2e", "--simulate"]).await;
    assert_eq!(sim_pause.status.code(), Some(0), "{}", describe(&sim_pause));
    let miss = against(&ws, other_provider, &["cancel", "e2e"]);
    assert_eq!(miss.status.code(), Some(1), "{}", describe(&miss));
    let stderr = String::from_utf8_lossy(&miss.stderr);
    assert!(
        stderr.contains("the simulator's (add --simulate)"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "(add --api-base {}",
            sim.base_url().trim_end_matches('/')
        )),
        "{stderr}"
    );
    sim.shutdown().await;
}

/// A steering command with the workspace's state folder and `api_base` as the provider.
fn against(ws: &crate::helper::workspace::Workspace, api_base: &str, args: &[&str]) -> Output {
    recast()
        .current_dir(ws.path())
        .args(args)
        .arg("--state-dir")
        .arg(ws.state())
        .args(["--api-base", api_base])
        .output()
        .unwrap()
}

#[test]
fn a_settings_file_gets_every_mistake_at_once_and_the_documented_examples_have_none() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("recast.yaml");
    std::fs::write(
        &bad,
        "limits:\n  max_in_fligth: 3\n  poll_per_minute: -1\nprovider:\n  dedicated_acount: true\n",
    )
    .unwrap();
    let out = recast()
        .args(["status", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let at = |line: usize, col: usize| format!("{}:{line}:{col}: ", bad.display());
    assert!(
        stderr.contains(&format!(
            "{}limits.max_in_fligth: unknown field `max_in_fligth`; did you mean `max_in_flight`?",
            at(2, 3)
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{}limits.poll_per_minute: must be a whole number",
            at(3, 20)
        )),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("{}provider.dedicated_acount: unknown field `dedicated_acount`; did you mean `dedicated_account`?", at(5, 3))), "{stderr}");

    // The README's settings example and recast.example.yaml are read without a mistake.
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let block = readme
        .split("```yaml\n")
        .find(|b| b.starts_with("state_dir:"))
        .and_then(|b| b.split("```").next())
        .expect("the README's settings example");
    for (name, text) in [
        ("README", block.to_owned()),
        (
            "recast.example.yaml",
            std::fs::read_to_string(repo_root().join("recast.example.yaml")).unwrap(),
        ),
    ] {
        let file = dir.path().join("example.yaml");
        std::fs::write(&file, text).unwrap();
        let loaded = recast::settings::SettingsFile::load(&file);
        assert!(loaded.is_ok(), "{name}: {}", loaded.unwrap_err());
    }
}

#[test]
fn shell_completions_and_a_manual_page_are_printed_even_with_a_broken_settings_file() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yaml");
    std::fs::write(&broken, "limitz: {}\n").unwrap();
    for (args, needle) in [
        (&["completions", "bash"][..], "_recast()"),
        (&["completions", "zsh"][..], "#compdef recast"),
        (&["completions", "fish"][..], "complete -c recast"),
        (&["man"][..], ".TH recast"),
    ] {
        let out = recast()
            .args(args)
            .env("RECAST_CONFIG", &broken)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", describe(&out));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(needle), "{args:?}: {text}");
        assert!(text.contains("daemon"), "{args:?} lacks the commands");
    }
}

/// The first ```sh block after `heading` in the README.
fn readme_block(readme: &str, heading: &str) -> String {
    let after = &readme[readme
        .find(heading)
        .unwrap_or_else(|| panic!("no {heading}"))..];
    let start = after.find("```sh\n").unwrap() + "```sh\n".len();
    let len = after[start..].find("```").unwrap();
    after[start..start + len].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_curl_walkthrough_works_when_pasted() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let port = crate::helper::free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut sim = tokio::process::Command::new(env!("CARGO_BIN_EXE_recast"))
        .args([
            "sim",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--generation-secs",
            "0.2",
        ])
        .arg("--media-dir")
        .arg(repo_root().join("examples"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    crate::helper::wait_listening("the simulator", port).await;
    let paste =
        |heading: &str| readme_block(&readme, heading).replace("http://127.0.0.1:8700", &base);
    // What a person pastes, in order; between the poll and the download they wait a moment.
    let script = format!(
        "set -euo pipefail\n{}\n{}\nfor i in $(seq 100); do\n  \
         curl -s -H 'Authorization: Bearer sim-key' $B/api/v1/tasks/$TASK | grep -q '\"completed\"' && break\n  \
         sleep 0.1\ndone\n{}\n{}\n",
        paste("### 2. Submit a job"),
        paste("### 3. Poll it"),
        paste("### 4. Download the clip"),
        paste("### 5. Read the ledger"),
    );
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{script}\n{}", describe(&out));
    let clip = std::fs::read(dir.path().join("clip.mp4")).unwrap();
    assert_eq!(
        clip,
        std::fs::read(repo_root().join("examples/media/dance-5s.mp4")).unwrap()
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("\"billed_tasks\":1"),
        "{}",
        describe(&out)
    );
    let _ = sim.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_can_be_looked_at_job_by_job_and_listed_with_its_spend() {
    let ws = crate::helper::workspace::Workspace::new(3, "retries: 0\nbudget:\n  max_usd: 5.00\n");
    let mut config = ws.sim_config();
    config.faults.task_failure = "first=1".parse().unwrap();
    config.generation = recast::sim::Generation::Fixed(std::time::Duration::from_millis(400));
    let sim = recast::sim::Sim::start(config).await.unwrap();
    // Watch it live while a run drives it: --follow ends by itself when the batch settles.
    let run = ws
        .recast_command(&sim, &["run", "jobs.yaml"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    crate::helper::wait_for(
        "the run to register the batch",
        std::time::Duration::from_secs(30),
        || async {
            let status = ws.recast(&sim, &["status", "--json"]).await;
            let doc: serde_json::Value = serde_json::from_slice(&status.stdout).ok()?;
            (doc["batches"].as_array()?.len() == 1).then_some(())
        },
    )
    .await;
    let follow = ws
        .recast_command(&sim, &["status", "e2e", "--jobs", "--follow", "--json"])
        .output();
    let (follow, run) = tokio::join!(follow, run.wait_with_output());
    assert_eq!(run.unwrap().status.code(), Some(3));
    let follow = follow.unwrap();
    assert_eq!(follow.status.code(), Some(0), "{}", describe(&follow));
    let looks: Vec<serde_json::Value> = String::from_utf8_lossy(&follow.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!looks.is_empty());
    let last = looks.last().unwrap();
    let jobs = last["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 3, "{last}");
    let failed: Vec<&serde_json::Value> = jobs.iter().filter(|j| j["state"] == "failed").collect();
    assert_eq!(failed.len(), 1, "{last}");
    assert_eq!(failed[0]["error_code"], "60001");
    assert!(
        failed[0]["request_id"]
            .as_str()
            .unwrap()
            .starts_with("req_")
    );
    for done in jobs.iter().filter(|j| j["state"] == "done") {
        assert_eq!(done["credits_estimated"], 566);
        assert_eq!(done["attempt"], 1);
        let clip = done["clip"].as_str().unwrap();
        assert!(std::path::Path::new(clip).is_file(), "{clip}");
        assert_eq!(done["sha256"].as_str().unwrap().len(), 64);
    }

    // The table, filtered by state.
    let table = ws
        .recast(&sim, &["status", "e2e", "--jobs", "--state", "failed"])
        .await;
    assert_eq!(table.status.code(), Some(0), "{}", describe(&table));
    let text = String::from_utf8_lossy(&table.stdout);
    assert_eq!(
        text.lines().filter(|l| l.contains("│ s00")).count(),
        1,
        "{text}"
    );
    assert!(text.contains("failed") && text.contains("req_"), "{text}");
    let bad = ws
        .recast(&sim, &["status", "e2e", "--jobs", "--state", "flying"])
        .await;
    assert_eq!(bad.status.code(), Some(2), "{}", describe(&bad));

    // Every batch with its spend against its budget.
    let list = ws.recast(&sim, &["batches"]).await;
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(
        text.contains("e2e") && text.contains("2/3") && text.contains("1.132 / 5.000"),
        "{text}"
    );
    let json = ws.recast(&sim, &["batches", "--json"]).await;
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(doc[0]["name"], "e2e");
    assert_eq!(doc[0]["budget_credits"], 5000);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_markdown_is_a_pull_request_comment_of_what_changed_and_what_it_costs() {
    let ws = crate::helper::workspace::Workspace::new(3, "budget:\n  max_usd: 3.00\ncanary: 1\n");
    let sim = recast::sim::Sim::start(ws.sim_config()).await.unwrap();
    let first = ws.recast(&sim, &["plan", "jobs.yaml", "--markdown"]).await;
    assert_eq!(first.status.code(), Some(0), "{}", describe(&first));
    let md = String::from_utf8_lossy(&first.stdout);
    assert!(md.starts_with("### recast plan: `e2e`"), "{md}");
    assert!(
        md.contains("**3 to submit** of 3 subjects · at most **1.698 USD**"),
        "{md}"
    );
    assert!(
        md.contains("| subject | status | credits | USD | clip | notes |"),
        "{md}"
    );
    assert!(
        md.contains("| s001 | new | 566 | 0.566 | s001.mp4 |  |"),
        "{md}"
    );
    assert!(
        md.contains("- Budget: within (0.000 spent + 1.698 to submit of 3.000 USD)"),
        "{md}"
    );
    assert!(md.contains("- Canary: 1 subjects first"), "{md}");

    let run = ws
        .recast(&sim, &["run", "jobs.yaml", "--canary", "3"])
        .await;
    assert_eq!(run.status.code(), Some(0), "{}", describe(&run));
    let manifest = std::fs::read_to_string(ws.manifest()).unwrap().replace(
        "    image: ./subjects/s002.png\n",
        "    image: ./subjects/s002.png\n    prompt: \"a | pipe\"\n",
    );
    std::fs::write(ws.manifest(), manifest).unwrap();
    let second = ws.recast(&sim, &["plan", "jobs.yaml", "--markdown"]).await;
    let md = String::from_utf8_lossy(&second.stdout);
    assert!(md.contains("**1 to submit** of 3 subjects"), "{md}");
    assert!(md.contains("| s002 | changed | 566 |"), "{md}");
    assert!(
        !md.contains("| s000 |"),
        "unchanged subjects stay out of the table: {md}"
    );
    assert!(
        md.contains("2 more subjects are made already: unchanged."),
        "{md}"
    );
    sim.shutdown().await;
}
