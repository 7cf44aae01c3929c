//! `recast run` of a manifest whose batch is registered and unchanged skips planning (no
//! subject read, hashed or probed again), and any change to what the plan read, or a clip
//! another state folder landed in the output folder, makes it plan in full, reading only the
//! files whose identity changed: the real binary against the simulator, asserting stderr, the
//! ledger and the clips on disk.

use recast::sim::{Sim, SimConfig};

use crate::helper::workspace::{Workspace, describe, unique_png};

const UNCHANGED: &str = "unchanged since it was registered";

async fn start(config: SimConfig) -> Sim {
    Sim::start(config).await.expect("simulator starts")
}

/// `recast run jobs.yaml` in `state`, with every file old enough to be vouched for (the files of
/// a test are milliseconds old; `RECAST_STAMP_RACY_MS` says how old is old enough).
async fn run_in(
    ws: &Workspace,
    sim: &Sim,
    state: &std::path::Path,
    extra: &[&str],
) -> (i32, String) {
    let mut args = vec!["run", "jobs.yaml"];
    args.extend_from_slice(extra);
    let out = ws
        .recast_command_in(sim, state, &args)
        .env("RECAST_STAMP_RACY_MS", "0")
        .output()
        .await
        .unwrap();
    let code = out.status.code().unwrap_or(-1);
    assert!(code == 0, "{}", describe(&out));
    (code, String::from_utf8_lossy(&out.stderr).into_owned())
}

fn bills(sim: &Sim) -> usize {
    crate::helper::net_bills_per_subject(&sim.ledger())
        .values()
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_manifest_is_resumed_without_planning_and_every_change_plans_it_again() {
    let ws = Workspace::new(3, "");
    let manifest = std::fs::read_to_string(ws.manifest()).unwrap();
    let head = manifest.split("subjects:\n").next().unwrap();
    std::fs::write(
        ws.manifest(),
        format!("{head}subjects:\n  - glob: ./subjects/*.png\noutput:\n  dir: ./out\n"),
    )
    .unwrap();
    let sim = start(ws.sim_config()).await;
    let state = ws.state();

    let (_, first) = run_in(&ws, &sim, &state, &[]).await;
    assert!(!first.contains(UNCHANGED), "{first}");
    assert_eq!(bills(&sim), 3);
    let (_, again) = run_in(&ws, &sim, &state, &[]).await;
    assert!(again.contains(UNCHANGED), "{again}");
    assert_eq!(bills(&sim), 3, "an unchanged rerun spends nothing");

    // One image more in the globbed folder: planned again, and only it is made.
    std::fs::write(ws.path().join("subjects/s003.png"), unique_png(3)).unwrap();
    let (_, added) = run_in(&ws, &sim, &state, &[]).await;
    assert!(!added.contains(UNCHANGED), "{added}");
    // Only the new image is read and hashed; the video and three images are known by identity.
    assert!(
        added.contains("4 of 5 local files unchanged since an earlier run"),
        "{added}"
    );
    assert_eq!(bills(&sim), 4);
    assert_eq!(ws.outputs().len(), 4, "{:?}", ws.outputs());
    let (_, again) = run_in(&ws, &sim, &state, &[]).await;
    assert!(again.contains(UNCHANGED), "{again}");

    // A subject's content changed under the same name: its clip is made again, once.
    std::fs::write(ws.path().join("subjects/s000.png"), unique_png(100)).unwrap();
    let (_, edited) = run_in(&ws, &sim, &state, &[]).await;
    assert!(!edited.contains(UNCHANGED), "{edited}");
    // Its identity changed with it: read again, never taken for its old digest.
    assert!(
        edited.contains("4 of 5 local files unchanged since an earlier run"),
        "{edited}"
    );
    assert_eq!(bills(&sim), 5);

    // The manifest written again (same bytes): its ctime changed, so it is read again.
    let text = std::fs::read(ws.manifest()).unwrap();
    std::fs::write(ws.manifest(), text).unwrap();
    let (_, rewritten) = run_in(&ws, &sim, &state, &[]).await;
    assert!(!rewritten.contains(UNCHANGED), "{rewritten}");
    // Other prices are another context.
    let (_, canary) = run_in(&ws, &sim, &state, &["--canary", "1"]).await;
    assert!(!canary.contains(UNCHANGED), "{canary}");
    assert_eq!(bills(&sim), 5, "nothing changed that shapes a clip");
    // The changed subject's new clip lands beside its old one.
    assert_eq!(ws.outputs().len(), 5, "{:?}", ws.outputs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clips_another_state_folder_landed_in_the_output_folder_are_not_bought_again() {
    let ws = Workspace::new(4, "");
    // One task in flight at a time: a `--no-wait` tick submits one subject and leaves.
    ws.write_settings(
        "  submit_per_minute: 6000\n  submit_burst: 50\n  max_in_flight: 1\n  \
         poll_per_minute: 60000\n  download_concurrency: 8\n",
    );
    let sim = start(ws.sim_config()).await;
    let a = ws.state();
    let b = ws.path().join("state-b");
    let (_, tick) = run_in(&ws, &sim, &a, &["--no-wait"]).await;
    assert!(!tick.contains(UNCHANGED), "{tick}");
    assert_eq!(bills(&sim), 1);
    // The first state folder is put aside; a cold cache (another state folder, as CI has)
    // finishes the batch into the same output folder and is thrown away.
    let aside = ws.path().join("state-aside");
    std::fs::rename(&a, &aside).unwrap();
    let (_, cold) = run_in(&ws, &sim, &b, &[]).await;
    assert!(!cold.contains(UNCHANGED), "{cold}");
    assert_eq!(bills(&sim), 4);
    std::fs::remove_dir_all(&b).unwrap();
    std::fs::rename(&aside, &a).unwrap();
    // Back in the first state folder: three of its jobs were never submitted there, and its
    // stamp still holds for every file; the output folder's new lines are not its own.
    let (_, back) = run_in(&ws, &sim, &a, &[]).await;
    assert!(!back.contains(UNCHANGED), "{back}");
    let per_subject = crate::helper::net_bills_per_subject(&sim.ledger());
    assert_eq!(per_subject.len(), 4, "{per_subject:?}");
    assert!(
        per_subject.values().all(|n| *n == 1),
        "bought twice: {per_subject:?}"
    );
    ws.assert_all_clips_whole();
}

/// A subject image planned before is known by its content: what its header said is taken from
/// the state folder, and the file is not opened to probe it again (the header kept here is made
/// to differ from the file's, so the plan shows which one it used).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_known_by_its_content_is_not_probed_again() {
    use recast::manifest::{LoadOptions, MediaSource};
    use recast::media::{ImageFormat, ImageInfo};
    use recast::plan::{Prober, known, make_plan};
    use recast::pricing::PriceTable;
    use recast::store::{KnownFile, Store};

    let ws = Workspace::new(2, "");
    let store = Store::open(&ws.state()).unwrap();
    let load = || recast::manifest::load(&ws.manifest(), &LoadOptions::default()).unwrap();
    let prices = PriceTable::default();
    let prober = Prober::default();
    let first = make_plan(load(), "sim", &prices, Some(&store), &prober)
        .await
        .unwrap();
    let found: Vec<ImageInfo> = first.jobs().map(|j| j.image.cloned().unwrap()).collect();
    assert_eq!(found[0].format, ImageFormat::Png, "{found:?}");
    let local: Vec<_> = first
        .jobs()
        .map(|j| match &j.spec.image {
            MediaSource::Local(local) => local.clone(),
            MediaSource::Remote { .. } => panic!("a local image"),
        })
        .collect();

    // The state folder keeps another header for the first image's content.
    let kept = ImageInfo {
        format: ImageFormat::Jpeg,
        width: 1234,
        height: 567,
        size_bytes: found[0].size_bytes,
    };
    let file = KnownFile {
        path: local[0].path().to_str().unwrap().to_owned(),
        identity: vec![0; 8],
        sha256: local[0].sha256(),
        image: Some(kept.clone()),
    };
    store.remember_files([file].into_iter()).unwrap();
    let again = make_plan(load(), "sim", &prices, Some(&store), &prober)
        .await
        .unwrap();
    let jobs: Vec<_> = again.jobs().collect();
    assert_eq!(jobs[0].image, Some(&kept), "taken from the state folder");
    // The second image's content is not known: its header is read from the file.
    assert_eq!(jobs[1].image, Some(&found[1]));
    assert_eq!(store.image_probe(&local[1].sha256()).unwrap(), None);

    // A run keeps what its plan found of every image worth keeping.
    known::remember(&store, &again, std::time::Duration::ZERO).unwrap();
    assert_eq!(
        store.image_probe(&local[1].sha256()).unwrap(),
        Some(found[1].clone())
    );
}
