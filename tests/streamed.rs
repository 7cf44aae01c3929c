//! A manifest planned in chunks (how `recast run` plans, so a batch of 100,000 subjects is not
//! held at once) registers exactly what the same manifest planned whole registers, row for row
//! and in the same order; and a mistake found in a later chunk registers nothing, and is
//! reported in the words a whole plan uses. The real binary against the simulator, with
//! `RECAST_PLAN_CHUNK` cutting a few subjects into several chunks.

use std::path::Path;

use recast::engine::{register, register_staged, staged_job};
use recast::manifest::{LoadOptions, ManifestStream};
use recast::plan::{Prober, make_plan, plan_streamed};
use recast::pricing::PriceTable;
use recast::sim::{Sim, SimConfig};
use recast::store::Store;

use crate::helper::workspace::{Workspace, describe, unique_png};

/// A job as the store registered it: subject, key, name, request, duration, estimate, state,
/// reason.
type Row = (
    String,
    String,
    String,
    String,
    i64,
    Option<i64>,
    String,
    Option<String>,
);

/// Every job of the state folder, in the order it was registered (the order it is submitted).
fn registered(state: &Path) -> Vec<Row> {
    let db = rusqlite::Connection::open(state.join("recast.db")).unwrap();
    let mut rows = db
        .prepare(
            "SELECT subject_id, job_key, output_name, spec_json, duration_ms, estimate_credits,
                 state, reason FROM jobs ORDER BY id",
        )
        .unwrap();
    rows.query_map([], |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
            r.get(6)?,
            r.get(7)?,
        ))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

/// Subjects declared out of id order, a glob, and an image too small for the provider.
fn mixed_manifest(ws: &Workspace) {
    let root = ws.path();
    std::fs::create_dir_all(root.join("more")).unwrap();
    for i in 0..5 {
        std::fs::write(root.join(format!("more/m{i}.png")), unique_png(200 + i)).unwrap();
    }
    std::fs::write(root.join("subjects/zeta.png"), unique_png(100)).unwrap();
    std::fs::write(root.join("subjects/alpha.png"), unique_png(101)).unwrap();
    std::fs::write(root.join("subjects/beta.png"), unique_png(102)).unwrap();
    let tiny = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/media/too-small-200.png"),
    )
    .unwrap();
    std::fs::write(root.join("subjects/tiny.png"), tiny).unwrap();
    std::fs::write(
        ws.manifest(),
        "version: 1\nname: mixed\nreference:\n  video: ./media/ref.mp4\n\
         model: kling-v3-motion-control\nmode: std\nsubjects:\n\
         \x20 - id: zeta\n    image: ./subjects/zeta.png\n\
         \x20 - id: alpha\n    image: ./subjects/alpha.png\n\
         \x20 - glob: ./more/*.png\n    mode: pro\n\
         \x20 - id: tiny\n    image: ./subjects/tiny.png\n\
         \x20 - id: beta\n    image: ./subjects/beta.png\n\
         output:\n  dir: ./out\n",
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_planned_in_chunks_registers_what_it_would_planned_whole() {
    let ws = Workspace::new(0, "");
    mixed_manifest(&ws);
    let (options, prices, prober) = (
        LoadOptions::default(),
        PriceTable::default(),
        Prober::default(),
    );

    let whole_state = ws.path().join("whole");
    let whole_store = Store::open(&whole_state).unwrap();
    let batch = recast::manifest::load(&ws.manifest(), &options).unwrap();
    let plan = make_plan(batch, "sim", &prices, Some(&whole_store), &prober)
        .await
        .unwrap();
    register(&whole_store, &plan, "sim", &ws.path().join("out-whole"), 0).unwrap();

    let streamed_state = ws.path().join("streamed");
    let streamed_store = Store::open(&streamed_state).unwrap();
    // Two subjects a chunk: the glob (five) is one chunk of its own, never cut.
    let stream = ManifestStream::open(&ws.manifest(), &options, 2).unwrap();
    let streamed = plan_streamed(
        stream,
        "sim",
        &prices,
        Some(&streamed_store),
        &prober,
        staged_job,
    )
    .await
    .unwrap();
    let out = ws.path().join("out-streamed");
    register_staged(&streamed_store, &streamed, "sim", &out, 0).unwrap();

    let rows = registered(&streamed_state);
    let subjects: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(
        subjects,
        [
            "alpha", "beta", "m0", "m1", "m2", "m3", "m4", "tiny", "zeta"
        ],
        "sorted by subject id across chunks, as a whole plan registers them"
    );
    assert_eq!(rows, registered(&whole_state), "row for row the same");
    assert_eq!(rows[7].6, "rejected", "{:?}", rows[7]);
    assert!(
        rows[2].3.contains("\"pro\""),
        "the glob's own settings: {}",
        rows[2].3
    );

    let (to_submit, credits) = plan.to_submit();
    assert_eq!(
        (
            streamed.subjects,
            streamed.to_submit,
            streamed.to_submit_credits,
            streamed.invalid
        ),
        (9, to_submit, credits, plan.invalid_count())
    );
    assert_eq!(
        streamed.batch.inputs.listed_dirs,
        plan.batch.inputs.listed_dirs
    );
    assert_eq!(streamed.batch.inputs.hashed, plan.batch.inputs.hashed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_chunks_mistake_is_reported_whole_and_registers_nothing() {
    let ws = Workspace::new(0, "");
    mixed_manifest(&ws);
    // `beta`, in the last chunk, would make the same clip as `alpha`, in the first.
    let text = std::fs::read_to_string(ws.manifest()).unwrap();
    std::fs::write(
        ws.manifest(),
        text.replace("image: ./subjects/beta.png", "image: ./subjects/alpha.png"),
    )
    .unwrap();
    let mut stream = ManifestStream::open(&ws.manifest(), &LoadOptions::default(), 2).unwrap();
    let mut taken = 0;
    let stopped = loop {
        match stream.next_chunk() {
            Ok(Some(chunk)) => taken += chunk.len(),
            Ok(None) => break false,
            Err(_) => break true,
        }
    };
    assert!(stopped && taken == 7, "stopped after {taken} subjects");

    let sim = Sim::start(SimConfig {
        media_dir: Some(ws.path().to_path_buf()),
        ..ws.sim_config()
    })
    .await
    .unwrap();
    let out = ws
        .recast_command(&sim, &["run", "jobs.yaml"])
        .env("RECAST_PLAN_CHUNK", "2")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("subjects `alpha` (line 10) and `beta` would make the same clip"),
        "{stderr}"
    );
    assert!(
        !ws.state().exists(),
        "a first run creates no state folder for an invalid manifest"
    );
    assert!(sim.ledger().entries.is_empty(), "nothing submitted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_planned_in_chunks_makes_every_clip_once_and_plans_an_added_subject() {
    let ws = Workspace::new(5, "");
    let sim = Sim::start(ws.sim_config()).await.unwrap();
    let run = |ws: &Workspace| {
        ws.recast_command(&sim, &["run", "jobs.yaml"])
            .env("RECAST_PLAN_CHUNK", "2")
            .env("RECAST_STAMP_RACY_MS", "0")
            .output()
    };
    let out = run(&ws).await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(ws.outputs().len(), 5, "{:?}", ws.outputs());
    ws.assert_all_clips_whole();
    // The stamp was written record by record from the staged plan, and vouches for it.
    let out = run(&ws).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unchanged since it was registered"),
        "{stderr}"
    );

    // One subject more, and one whose image is too small: the store is asked per key.
    let root = ws.path();
    std::fs::write(root.join("subjects/s005.png"), unique_png(5)).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/media/too-small-200.png"),
        root.join("subjects/s006.png"),
    )
    .unwrap();
    let text = std::fs::read_to_string(ws.manifest()).unwrap().replace(
        "output:",
        "  - id: s005\n    image: ./subjects/s005.png\n  - id: s006\n    image: ./subjects/s006.png\noutput:",
    );
    std::fs::write(ws.manifest(), text).unwrap();
    let out = run(&ws).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    assert!(stderr.contains("e2e: 7 subjects, 1 to submit"), "{stderr}");
    assert!(stderr.contains("left out: s006: "), "{stderr}");
    assert_eq!(ws.outputs().len(), 6, "{:?}", ws.outputs());
    let bills = crate::helper::net_bills_per_subject(&sim.ledger());
    assert_eq!(bills.len(), 6, "{bills:?}");
    assert!(
        bills.values().all(|&n| n == 1),
        "each clip paid once: {bills:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_with_no_room_to_stage_its_plan_plans_it_whole() {
    let ws = Workspace::new(2, "");
    let sim = Sim::start(ws.sim_config()).await.unwrap();
    let out = ws
        .recast_command(&sim, &["run", "jobs.yaml"])
        .env("TMPDIR", ws.path().join("no-such-folder"))
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(
        stderr.contains("cannot plan the manifest in chunks")
            && stderr.contains("planning it whole"),
        "{stderr}"
    );
    assert_eq!(ws.outputs().len(), 2, "{:?}", ws.outputs());
}
