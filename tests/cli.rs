//! The command line as a user meets it: `recast plan` on the example and on broken manifests,
//! help text, and exit codes.

use std::process::Output;

use crate::helper::{fixture, repo_root, workspace::describe};

fn recast(dir: &std::path::Path, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_recast"))
        .args(args)
        .current_dir(dir)
        .env_remove("RECAST_CONFIG")
        .env_remove("RECAST_STATE_DIR")
        .output()
        .unwrap()
}

#[test]
fn the_example_plans_every_subject_with_its_estimate_and_the_total() {
    let state = tempfile::tempdir().unwrap();
    let state_arg = state.path().to_str().unwrap();
    // Against the simulator the plan passes; against reAPI it prices the same subjects and
    // exits 1, since its local files have no way to the provider without a media store.
    let out = recast(
        &repo_root(),
        &[
            "plan",
            "jobs.example.yaml",
            "--state-dir",
            state_arg,
            "--simulate",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let real = recast(
        &repo_root(),
        &["plan", "jobs.example.yaml", "--state-dir", state_arg],
    );
    assert_eq!(real.status.code(), Some(1), "{}", describe(&real));
    assert!(
        String::from_utf8_lossy(&real.stderr).contains("media_store.s3"),
        "{}",
        describe(&real)
    );
    assert!(
        String::from_utf8_lossy(&real.stdout).contains("estimated 1698 credits"),
        "{}",
        describe(&real)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for subject in ["fox", "owl", "robot"] {
        let line = text
            .lines()
            .find(|l| l.contains(subject))
            .unwrap_or_else(|| panic!("{text}"));
        assert!(
            line.contains("566") && line.contains("0.566") && line.contains("new"),
            "{line}"
        );
    }
    assert!(text.contains("estimated 1698 credits"), "{text}");
    assert!(
        !state.path().join("recast.db").exists(),
        "a plan never creates state"
    );

    let json = recast(
        &repo_root(),
        &[
            "plan",
            "jobs.example.yaml",
            "--json",
            "--state-dir",
            state_arg,
        ],
    );
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).expect("--json parses");
    assert_eq!(doc["totals"]["credits"], 1698);
    assert_eq!(doc["totals"]["to_submit"], 3);
    assert_eq!(doc["reference"]["duration_ms"], 5000);
    assert_eq!(doc["jobs"].as_array().unwrap().len(), 3);
    // Deterministic: the same manifest gives the same document.
    let again = recast(
        &repo_root(),
        &[
            "plan",
            "jobs.example.yaml",
            "--json",
            "--state-dir",
            state_arg,
        ],
    );
    assert_eq!(json.stdout, again.stdout);
}

#[test]
fn every_mistake_of_a_manifest_is_reported_at_once_with_its_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("m")).unwrap();
    std::fs::copy(fixture("media/long-12s.mp4"), dir.path().join("m/long.mp4")).unwrap();
    std::fs::copy(fixture("media/subject.png"), dir.path().join("m/a.png")).unwrap();
    std::fs::copy(fixture("media/subject.jpg"), dir.path().join("m/b.jpg")).unwrap();
    std::fs::write(
        dir.path().join("jobs.yaml"),
        "version: 1\n\
         name: broken\n\
         reference:\n  video: ./m/long.mp4\n\
         model: kling-v3-motion-control\n\
         mode: ultra\n\
         character_orientation: image\n\
         subjects:\n\
         \x20 - id: fox\n    image: ./m/a.png\n    promt: shiny\n\
         \x20 - id: fox\n    image: ./m/b.jpg\n\
         \x20 - id: pw\n    image: ../../../../etc/passwd\n",
    )
    .unwrap();
    let out = recast(dir.path(), &["plan", "jobs.yaml", "--state-dir", "state"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "jobs.yaml:4:10: reference.video: video is 12.0 s long; orientation `image` allows at most 10 s",
        "jobs.yaml:6:7: mode: `mode` must be `std` or `pro`, not `ultra`",
        "jobs.yaml:11:5: subjects[0].promt: unknown field `promt`; did you mean `prompt`?",
        "jobs.yaml:12:9: subjects[1].id: subject id `fox` is already used at line 9",
        "jobs.yaml:15:12: subjects[2].image: `../../../../etc/passwd` is outside the manifest's folder",
    ] {
        assert!(err.contains(expected), "missing `{expected}` in:\n{err}");
    }
    assert!(err.contains("5 mistakes; nothing was planned"), "{err}");
}

#[test]
fn an_alias_bomb_is_refused() {
    let dir = fixture("manifests");
    let out = recast(
        &dir,
        &[
            "plan",
            "alias-bomb.yaml",
            "--state-dir",
            "/nonexistent/state",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("alias-bomb.yaml:"),
        "{}",
        describe(&out)
    );
}

#[test]
fn a_bad_subject_is_left_out_and_named_while_the_others_stay_planned() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        repo_root().join("examples/media/dance-5s.mp4"),
        dir.path().join("ref.mp4"),
    )
    .unwrap();
    std::fs::copy(fixture("media/subject.png"), dir.path().join("good.png")).unwrap();
    std::fs::copy(
        fixture("media/too-small-200.png"),
        dir.path().join("small.png"),
    )
    .unwrap();
    std::fs::copy(fixture("media/truncated.png"), dir.path().join("cut.png")).unwrap();
    std::fs::write(
        dir.path().join("jobs.yaml"),
        "version: 1\nname: mixed\nreference:\n  video: ./ref.mp4\nmodel: kling-v3-motion-control\n\
         subjects:\n  - id: good\n    image: ./good.png\n  - id: small\n    image: ./small.png\n\
         \x20 - id: cut\n    image: ./cut.png\n",
    )
    .unwrap();
    let out = recast(
        dir.path(),
        &["plan", "jobs.yaml", "--json", "--state-dir", "state"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let job = |id: &str| {
        doc["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["subject"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(job("good")["status"], "new");
    assert_eq!(job("small")["status"], "invalid");
    assert!(
        job("small")["problems"][0]
            .as_str()
            .unwrap()
            .contains("300"),
        "{doc}"
    );
    assert!(
        job("cut")["problems"][0]
            .as_str()
            .unwrap()
            .contains("truncated"),
        "{doc}"
    );
    assert_eq!(doc["totals"]["to_submit"], 1);
    assert_eq!(doc["totals"]["credits"], 566);
}

#[test]
fn help_explains_the_exit_codes_and_a_bad_flag_is_a_usage_error() {
    let out = recast(&repo_root(), &["run", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Exit codes:") && text.contains("--no-wait") && text.contains("--simulate"),
        "{text}"
    );
    let bad = recast(&repo_root(), &["plan", "--frobnicate"]);
    assert_eq!(bad.status.code(), Some(2), "{}", describe(&bad));
}
