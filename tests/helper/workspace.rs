//! A batch on disk for end-to-end tests: a manifest, real media, a state folder, and a way to
//! run the real `recast` binary against a simulator started in the test.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use recast::sim::{Sim, SimConfig};

use super::repo_root;

/// A tempdir holding `jobs.yaml`, `media/ref.mp4`, `subjects/sNNN.png` and `state/`.
pub struct Workspace {
    pub dir: tempfile::TempDir,
    pub subjects: usize,
}

/// The reference clip every job uses (5.0 s, so 566 credits on v3 std).
pub fn reference_clip() -> Vec<u8> {
    std::fs::read(repo_root().join("examples/media/dance-5s.mp4")).unwrap()
}

/// A real PNG, distinct per `i` (a tEXt chunk), so every subject has its own job key.
pub fn unique_png(i: usize) -> Vec<u8> {
    let png = std::fs::read(repo_root().join("examples/subjects/fox.png")).unwrap();
    let data = format!("Comment\0subject {i}").into_bytes();
    let mut chunk = Vec::new();
    chunk.extend((data.len() as u32).to_be_bytes());
    let mut typed = b"tEXt".to_vec();
    typed.extend(&data);
    chunk.extend(&typed);
    chunk.extend(crc32(&typed).to_be_bytes());
    // After the 8-byte signature and the 25-byte IHDR chunk.
    let mut out = png[..33].to_vec();
    out.extend(chunk);
    out.extend(&png[33..]);
    out
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

impl Workspace {
    /// `subjects` subjects, with `extra` lines appended to the manifest (budget, retries, ...).
    pub fn new(subjects: usize, extra: &str) -> Workspace {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("media")).unwrap();
        std::fs::create_dir_all(root.join("subjects")).unwrap();
        std::fs::write(root.join("media/ref.mp4"), reference_clip()).unwrap();
        let mut manifest = String::from(
            "version: 1\nname: e2e\nreference:\n  video: ./media/ref.mp4\n\
             model: kling-v3-motion-control\nmode: std\ncharacter_orientation: image\n\
             keep_original_sound: true\nsubjects:\n",
        );
        for i in 0..subjects {
            std::fs::write(root.join(format!("subjects/s{i:03}.png")), unique_png(i)).unwrap();
            manifest.push_str(&format!(
                "  - id: s{i:03}\n    image: ./subjects/s{i:03}.png\n"
            ));
        }
        manifest.push_str("output:\n  dir: ./out\n");
        manifest.push_str(extra);
        std::fs::write(root.join("jobs.yaml"), manifest).unwrap();
        Workspace { dir, subjects }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn manifest(&self) -> PathBuf {
        self.path().join("jobs.yaml")
    }

    pub fn out(&self) -> PathBuf {
        self.path().join("out")
    }

    pub fn state(&self) -> PathBuf {
        self.path().join("state")
    }

    /// A simulator serving this workspace's media, quick to generate.
    pub fn sim_config(&self) -> SimConfig {
        SimConfig {
            media_dir: Some(self.path().to_path_buf()),
            generation: recast::sim::Generation::Fixed(Duration::from_millis(100)),
            ..SimConfig::default()
        }
    }

    /// Write the settings file the runs use: fast polls, generous limits unless overridden.
    pub fn write_settings(&self, limits: &str) -> PathBuf {
        let path = self.path().join("recast.yaml");
        let text = format!(
            "polling:\n  first_base_ms: 50\n  first_per_clip_second_ms: 0\n  first_max_ms: 100\n  \
             interval_min_ms: 50\n  interval_max_ms: 200\nlimits:\n{limits}"
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    /// `recast ARGS` against `sim`, as a user would run it; waits for it to end.
    pub async fn recast(&self, sim: &Sim, args: &[&str]) -> Output {
        self.recast_command(sim, args).output().await.unwrap()
    }

    pub fn recast_command(&self, sim: &Sim, args: &[&str]) -> tokio::process::Command {
        self.recast_command_in(sim, &self.state(), args)
    }

    /// `recast ARGS` with another state folder than the workspace's own.
    pub fn recast_command_in(
        &self,
        sim: &Sim,
        state: &Path,
        args: &[&str],
    ) -> tokio::process::Command {
        let settings = self.path().join("recast.yaml");
        if !settings.exists() {
            self.write_settings(
                "  submit_per_minute: 6000\n  submit_burst: 50\n  max_in_flight: 50\n  \
                 poll_per_minute: 60000\n  download_concurrency: 8\n",
            );
        }
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_recast"));
        cmd.args(args)
            .arg("--config")
            .arg(&settings)
            .arg("--state-dir")
            .arg(state)
            .arg("--api-base")
            .arg(sim.base_url())
            .arg("--media-base-url")
            .arg(format!("{}/media/", sim.base_url()))
            .env("REAPI_API_KEY", sim.api_key())
            // The simulator's clip links are on loopback.
            .env("RECAST_ALLOW_PRIVATE_NETWORKS", "1")
            .env_remove("RECAST_LOG")
            .env_remove("REAPI_BASE_URL")
            .current_dir(self.path())
            .kill_on_drop(true);
        cmd
    }

    /// Names of the files in the output folder, sorted, less the folder's own bookkeeping
    /// (its results file and its lock).
    pub fn outputs(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.out())
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n != recast::output::RESULTS_FILE && n != ".recast.lock")
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// The output folder's results file, by job key.
    pub fn results(&self) -> std::collections::HashMap<String, recast::output::ResultLine> {
        recast::output::read(&self.out())
    }

    /// Every subject's clip is in the output folder, byte-identical to what the simulator
    /// served (the reference clip), and nothing else is there (no temp files).
    pub fn assert_all_clips_whole(&self) {
        let expected: Vec<String> = (0..self.subjects).map(|i| format!("s{i:03}.mp4")).collect();
        assert_eq!(
            self.outputs(),
            expected,
            "output folder holds exactly one clip per subject"
        );
        let reference = reference_clip();
        for name in &expected {
            let clip = std::fs::read(self.out().join(name)).unwrap();
            assert!(
                clip == reference,
                "{name} is not the clip the simulator served"
            );
        }
        // The folder remembers every clip it holds, verified.
        let results = self.results();
        let mut remembered: Vec<String> = results
            .values()
            .filter(|line| recast::output::verify(&self.out(), line).is_some())
            .map(|line| line.file.clone())
            .collect();
        remembered.sort();
        remembered.dedup();
        assert_eq!(remembered, expected, "the results file names every clip");
    }
}

/// Text of a finished process, for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
