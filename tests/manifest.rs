//! Integration tests of the `manifest` module: real files, real folders, real symlinks.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use recast::manifest::{self, BatchSpec, LoadOptions, ManifestErrors, MediaSource};

use crate::helper::{fixture, repo_root};

/// Errors as the user sees them, with the file named by its file name only, so snapshots hold
/// on every machine.
fn render(errors: &ManifestErrors) -> String {
    errors
        .0
        .iter()
        .map(|e| {
            let mut e = e.clone();
            e.file = PathBuf::from(e.file.file_name().unwrap_or_default());
            e.to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn with_media_root() -> LoadOptions {
    LoadOptions {
        allowed_roots: vec![fixture("media")],
        ..LoadOptions::default()
    }
}

fn load_err(path: &Path, options: &LoadOptions) -> ManifestErrors {
    match manifest::load(path, options) {
        Ok(batch) => panic!("expected errors, loaded {} jobs", batch.jobs.len()),
        Err(errors) => errors,
    }
}

/// A manifest in a fresh folder, with the given files (path, content) beside it.
fn folder_with(files: &[(&str, &[u8])]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (rel, content) in files {
        let path = dir.path().join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }
    dir
}

fn parse_in(dir: &Path, text: &str) -> Result<BatchSpec, ManifestErrors> {
    manifest::parse_str(text, Path::new("jobs.yaml"), dir, &LoadOptions::default())
}

const HEAD: &str = "version: 1\nname: b\nreference:\n  video: ./v.mp4\nmodel: m\n";

#[test]
fn the_example_manifest_loads() {
    let batch = manifest::load(
        &repo_root().join("jobs.example.yaml"),
        &LoadOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(batch.name, "example-batch");
    assert_eq!(batch.budget_usd, Some(5.0));
    assert_eq!(batch.retries, 2);
    assert!(batch.output_dir.ends_with("out/example-batch"));
    assert!(batch.output_dir.starts_with(&batch.base_dir));
    let summary: Vec<_> = batch
        .jobs
        .iter()
        .map(|j| {
            let MediaSource::Local(local) = &j.image else {
                panic!("local media")
            };
            assert_eq!(local.sha256().len(), 64);
            (
                &*j.subject_id,
                local.rel(),
                &*j.output_name,
                j.location.line,
            )
        })
        .collect();
    insta::assert_debug_snapshot!(summary, @r#"
    [
        (
            "fox",
            "examples/subjects/fox.png",
            "fox-std.mp4",
            46,
        ),
        (
            "owl",
            "examples/subjects/owl.jpg",
            "owl-std.mp4",
            48,
        ),
        (
            "robot",
            "examples/subjects/robot.webp",
            "robot-std.mp4",
            52,
        ),
    ]
    "#);
    let owl = &batch.jobs[1].settings;
    assert_eq!(owl.prompt.as_deref(), Some("moonlight, slow dolly in"));
    assert!(!owl.keep_original_sound);
    assert!(batch.jobs[0].settings.keep_original_sound);
    let MediaSource::Local(local) = &batch.reference_video else {
        panic!("local video")
    };
    assert_eq!(local.rel(), "examples/media/dance-5s.mp4");
}

#[test]
fn every_mistake_is_reported_at_once_with_line_and_column() {
    let errors = load_err(&fixture("manifests/many-mistakes.yaml"), &with_media_root());
    insta::assert_snapshot!(render(&errors), @r"
    many-mistakes.yaml:7:7: mode: `mode` must be `std` or `pro`, not `ultra`
    many-mistakes.yaml:9:22: keep_original_sound: `keep_original_sound` must be `true` or `false`, not `yes`
    many-mistakes.yaml:13:9: subjects[1].id: subject id `fox` is already used at line 11; ids must be unique
    many-mistakes.yaml:15:5: subjects[1].promt: unknown field `promt`; did you mean `prompt`? allowed here: `id`, `image`, `glob`, `watch`, `prompt`, `mode`, `character_orientation`, `keep_original_sound`
    many-mistakes.yaml:16:5: subjects[2]: needs `image` (one file or URL, with an `id`), `glob` (a pattern such as `./subjects/*.png`) or `watch` (a folder whose images become subjects as they arrive, such as `./incoming`)
    many-mistakes.yaml:17:5: subjects[2].imgae: unknown field `imgae`; did you mean `image`? allowed here: `id`, `image`, `glob`, `watch`, `prompt`, `mode`, `character_orientation`, `keep_original_sound`
    many-mistakes.yaml:19:12: subjects[3].image: `../../etc/passwd` is outside the manifest's folder; local media must stay inside it (or inside an allowed root)
    many-mistakes.yaml:21:12: subjects[4].image: `file:///etc/passwd`: `file://` URLs are not accepted; remote media must be `https://` (or `http://`) URLs; for a local file write its path relative to the manifest
    many-mistakes.yaml:22:9: subjects[5].id: subject id `bad id!` has characters that are not allowed; allowed: letters, digits, `-` and `_`, 1 to 64 characters
    many-mistakes.yaml:25:9: output.name: `{subject}.mov` gives names like `x.mov`, which must end in `.mp4`
    many-mistakes.yaml:27:12: budget.max_usd: must be a positive number of US dollars (e.g. `5.00`), not the number `-5`
    many-mistakes.yaml:28:10: retries: must be a whole number from 0 to 10, not the number `11`
    ");
}

#[test]
fn duplicate_ids_name_both_lines() {
    let dir = folder_with(&[("v.mp4", b"video"), ("a.png", b"a"), ("b.png", b"b")]);
    let text = format!(
        "{HEAD}subjects:\n  - id: fox\n    image: ./a.png\n  - id: fox\n    image: ./b.png\n"
    );
    let errors = parse_in(dir.path(), &text).unwrap_err();
    insta::assert_snapshot!(render(&errors), @"jobs.yaml:9:9: subjects[1].id: subject id `fox` is already used at line 7; ids must be unique");
}

#[test]
fn duplicate_keys_name_both_lines() {
    let dir = folder_with(&[("v.mp4", b"video"), ("a.png", b"a")]);
    let text = format!("{HEAD}mode: std\nmode: pro\nsubjects:\n  - id: a\n    image: ./a.png\n");
    let errors = parse_in(dir.path(), &text).unwrap_err();
    insta::assert_snapshot!(render(&errors), @"jobs.yaml:7:1: mode: duplicate key `mode` (first written at line 6); write each field once");
}

#[test]
fn missing_required_fields_and_wrong_types() {
    let dir = folder_with(&[]);
    let errors = parse_in(dir.path(), "version: 2\nsubject: []\nprompt: 5\n").unwrap_err();
    insta::assert_snapshot!(render(&errors), @r"
    jobs.yaml:1:1: name: missing required field `name` (the batch name: letters, digits, `-` and `_`)
    jobs.yaml:1:1: reference: missing required field `reference` (with `video:` a path or https URL)
    jobs.yaml:1:1: model: missing required field `model` (e.g. `kling-v3-motion-control`)
    jobs.yaml:1:1: subjects: missing required field `subjects` (a list of `id` + `image`, or `glob`)
    jobs.yaml:1:10: version: unsupported version 2: this recast reads version 1
    jobs.yaml:2:1: subject: unknown field `subject`; did you mean `subjects`? allowed here: `version`, `name`, `reference`, `model`, `mode`, `character_orientation`, `keep_original_sound`, `prompt`, `subjects`, `output`, `budget`, `retries`, `canary`
    jobs.yaml:3:9: prompt: `prompt` must be a string (quote it), not the number `5`
    ");
}

#[test]
fn not_a_mapping_and_empty_files_are_reported() {
    let dir = folder_with(&[]);
    for text in ["", "# nothing\n", "- a\n- b\n", "just text\n"] {
        let errors = parse_in(dir.path(), text).unwrap_err();
        assert_eq!(errors.0.len(), 1, "{text:?}: {errors}");
        assert!(
            errors.0[0].message.contains("must be a mapping"),
            "{errors}"
        );
    }
}

#[test]
fn yaml_syntax_errors_have_line_and_column() {
    let dir = folder_with(&[]);
    let errors = parse_in(dir.path(), "version: 1\nname: [a, b\nmodel: m\n").unwrap_err();
    assert_eq!(errors.0.len(), 1);
    let location = errors.0[0].location.expect("a location");
    assert_eq!(location.line, 3, "{errors}");
    assert!(errors.0[0].message.starts_with("invalid YAML"), "{errors}");
}

#[test]
fn an_alias_bomb_is_rejected_fast() {
    let started = Instant::now();
    let errors = load_err(
        &fixture("manifests/alias-bomb.yaml"),
        &LoadOptions::default(),
    );
    // A hang guard, not a benchmark: the budget stops replay after a few thousand events.
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(errors.0.len(), 1, "{errors}");
    assert!(errors.0[0].message.contains("alias"), "{errors}");
    assert!(errors.0[0].location.is_some());
}

#[test]
fn deep_nesting_is_rejected() {
    let errors = load_err(
        &fixture("manifests/deep-nesting.yaml"),
        &LoadOptions::default(),
    );
    assert_eq!(errors.0.len(), 1, "{errors}");
    assert!(
        errors.0[0].message.contains("nested too deeply"),
        "{errors}"
    );
    let flow = format!(
        "version: 1\nname: {}{}\n",
        "[".repeat(5000),
        "]".repeat(5000)
    );
    let errors = parse_in(tempfile::tempdir().unwrap().path(), &flow).unwrap_err();
    // Flow nesting is capped by the parser itself, which words it its own way.
    let message = &errors.0[0].message;
    assert!(
        message.contains("nested too deeply") || message.contains("recursion limit"),
        "{errors}"
    );
}

#[test]
fn a_manifest_over_one_mebibyte_is_refused_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.yaml");
    let mut text = String::from("version: 1\n");
    while text.len() as u64 <= manifest::MAX_MANIFEST_BYTES {
        text.push_str("# padding padding padding padding padding padding padding padding\n");
    }
    fs::write(&path, &text).unwrap();
    let errors = load_err(&path, &LoadOptions::default());
    assert_eq!(errors.0.len(), 1);
    assert_eq!(errors.0[0].location, None);
    assert!(
        errors.0[0].message.contains("at most 1048576 bytes"),
        "{errors}"
    );
}

#[test]
fn missing_media_name_the_field_and_path() {
    let dir = folder_with(&[("a.png", b"a")]);
    let text = format!(
        "{HEAD}subjects:\n  - id: a\n    image: ./a.png\n  - id: b\n    image: ./nope.png\n"
    );
    let errors = parse_in(dir.path(), &text).unwrap_err();
    insta::assert_snapshot!(render(&errors), @r"
    jobs.yaml:4:10: reference.video: `./v.mp4` does not exist
    jobs.yaml:10:12: subjects[1].image: `./nope.png` does not exist
    ");
}

#[cfg(unix)]
#[test]
fn symlinks_out_of_the_folder_are_refused() {
    use std::os::unix::fs::symlink;
    let outside = folder_with(&[("secret.png", b"secret"), ("team/x.png", b"x")]);
    let dir = folder_with(&[("v.mp4", b"video"), ("ok.png", b"ok")]);
    symlink(
        outside.path().join("secret.png"),
        dir.path().join("link.png"),
    )
    .unwrap();
    symlink(outside.path().join("team"), dir.path().join("team")).unwrap();
    symlink(outside.path(), dir.path().join("out")).unwrap();
    let text = format!(
        "{HEAD}subjects:\n  - id: a\n    image: ./link.png\n  - glob: ./team/*.png\n  - id: ok\n    image: ./ok.png\noutput:\n  dir: ./out/{{batch}}\n"
    );
    let errors = parse_in(dir.path(), &text).unwrap_err();
    insta::assert_snapshot!(render(&errors), @r"
    jobs.yaml:8:12: subjects[0].image: `./link.png` leads through a symlink to a place outside the manifest's folder; local media must stay inside it (or inside an allowed root)
    jobs.yaml:9:11: subjects[1].glob: `./team` leads through a symlink to a place outside the manifest's folder; local media must stay inside it (or inside an allowed root)
    jobs.yaml:13:8: output.dir: the output folder `./out/b` leads through a symlink to a place outside the manifest's folder
    ");

    // Allowing the other folder lets the same manifest through.
    let options = LoadOptions {
        allowed_roots: vec![outside.path().to_path_buf()],
        ..LoadOptions::default()
    };
    let batch = manifest::parse_str(&text, Path::new("jobs.yaml"), dir.path(), &options)
        .unwrap_or_else(|e| panic!("{e}"));
    let ids: Vec<_> = batch.jobs.iter().map(|j| &*j.subject_id).collect();
    assert_eq!(ids, ["a", "ok", "x"]);
}

#[test]
fn output_folders_and_absolute_paths_stay_confined() {
    let dir = folder_with(&[("v.mp4", b"video"), ("a.png", b"a")]);
    let text = format!(
        "{HEAD}subjects:\n  - id: a\n    image: ./a.png\n  - id: b\n    image: /etc/hostname\noutput:\n  dir: ../../{{batch}}\n"
    );
    let errors = parse_in(dir.path(), &text).unwrap_err();
    insta::assert_snapshot!(render(&errors), @r"
    jobs.yaml:10:12: subjects[1].image: `/etc/hostname` is outside the manifest's folder; local media must stay inside it (or inside an allowed root)
    jobs.yaml:12:8: output.dir: the output folder `../../b` is outside the manifest's folder; outputs must stay inside it (or inside an allowed root)
    ");
}

#[test]
fn remote_schemes_other_than_http_are_refused() {
    let dir = folder_with(&[("v.mp4", b"video")]);
    let text = format!(
        "{HEAD}subjects:\n  - id: a\n    image: ftp://host/a.png\n  - id: b\n    image: https://cdn.example.com/b.png\n  - id: c\n    image: http://localhost:8080/c.png\n"
    );
    let errors = parse_in(dir.path(), &text).unwrap_err();
    insta::assert_snapshot!(render(&errors), @"jobs.yaml:8:12: subjects[0].image: `ftp://host/a.png`: `ftp://` URLs are not accepted; remote media must be `https://` (or `http://`) URLs");
}

#[test]
fn glob_ids_are_sanitised_sorted_and_checked_for_duplicates() {
    let dir = folder_with(&[
        ("v.mp4", b"video"),
        ("team/Zed Smith.jpg", b"z"),
        ("team/ann.jpg", b"a"),
        ("team/.hidden.jpg", b"h"),
        ("team/notes.txt", b"n"),
    ]);
    let text = format!("{HEAD}subjects:\n  - glob: ./team/*.jpg\n    mode: pro\n");
    let batch = parse_in(dir.path(), &text).unwrap_or_else(|e| panic!("{e}"));
    let ids: Vec<_> = batch.jobs.iter().map(|j| &*j.subject_id).collect();
    assert_eq!(ids, ["Zed-Smith", "ann"]);
    assert!(
        batch
            .jobs
            .iter()
            .all(|j| j.settings.mode == recast::pricing::Mode::Pro)
    );
    assert!(batch.jobs.iter().all(|j| j.location.line == 7));

    fs::write(dir.path().join("team/ann!.jpg"), b"other").unwrap();
    let text = format!(
        "{HEAD}subjects:\n  - id: Zed-Smith\n    image: ./team/ann.jpg\n  - glob: ./team/*.jpg\n"
    );
    let errors = parse_in(dir.path(), &text).unwrap_err();
    insta::assert_snapshot!(render(&errors), @r"
    jobs.yaml:9:11: subjects[1].glob: subject id `Zed-Smith` (from `./team/Zed Smith.jpg`) is already used at line 7; ids must be unique
    jobs.yaml:9:11: subjects[1].glob: subject id `ann` (from `./team/ann.jpg`) is already used at line 9 (from `./team/ann!.jpg`); ids must be unique
    ");

    let text = format!("{HEAD}subjects:\n  - glob: ./team/*.png\n  - glob: ./t*/a.jpg\n");
    let errors = parse_in(dir.path(), &text).unwrap_err();
    insta::assert_snapshot!(render(&errors), @r"
    jobs.yaml:7:11: subjects[0].glob: `./team/*.png` matches no files
    jobs.yaml:8:11: subjects[1].glob: `./t*/a.jpg`: `*` and `?` are allowed in the file name only, not in folders
    ");
}

#[test]
fn two_subjects_making_the_same_clip_are_refused() {
    let dir = folder_with(&[
        ("v.mp4", b"video"),
        ("a.png", b"same"),
        ("copy.png", b"same"),
    ]);
    let text = format!(
        "{HEAD}subjects:\n  - id: a\n    image: ./a.png\n  - id: b\n    image: ./copy.png\n  - id: c\n    image: ./a.png\n    mode: pro\n"
    );
    let errors = parse_in(dir.path(), &text).unwrap_err();
    let rendered = render(&errors);
    assert_eq!(errors.0.len(), 1, "{rendered}");
    assert!(
        rendered.starts_with(
            "jobs.yaml:9:9: subjects: subjects `a` (line 7) and `b` would make the same clip"
        ),
        "{rendered}"
    );
}

#[test]
fn colliding_and_unsafe_output_names_are_refused() {
    let dir = folder_with(&[("v.mp4", b"video"), ("a.png", b"a"), ("b.png", b"b")]);
    let subjects = "subjects:\n  - id: a\n    image: ./a.png\n  - id: b\n    image: ./b.png\n";
    let text = format!("{HEAD}{subjects}output:\n  name: \"{{batch}}.mp4\"\n");
    let errors = parse_in(dir.path(), &text).unwrap_err();
    insta::assert_snapshot!(render(&errors), @"jobs.yaml:9:9: output.name: subjects `a` (line 7) and `b` would both be saved as `b.mp4`; put `{subject}` or `{key}` in `output.name`");

    for (name, expected) in [
        ("../{subject}.mp4", "contains a path separator"),
        ("{subject}/x.mp4", "contains a path separator"),
        (".{subject}.mp4", "starts with `.`"),
        ("{subject}.mov", "must end in `.mp4`"),
        ("{nope}.mp4", "unknown placeholder `{nope}`"),
    ] {
        let text = format!("{HEAD}{subjects}output:\n  name: \"{name}\"\n");
        let errors = parse_in(dir.path(), &text).unwrap_err();
        assert_eq!(errors.0.len(), 1, "{name}: {errors}");
        assert!(errors.0[0].message.contains(expected), "{name}: {errors}");
        assert_eq!(errors.0[0].field, "output.name");
    }

    // A model name with a slash only breaks names that use `{model}`.
    let text = format!("{HEAD}{subjects}output:\n  name: \"{{model}}-{{subject}}.mp4\"\n")
        .replace("model: m\n", "model: vendor/m\n");
    let errors = parse_in(dir.path(), &text).unwrap_err();
    assert_eq!(errors.0.len(), 1, "{errors}");
    assert!(errors.0[0].message.contains("`vendor/m-a.mp4`"), "{errors}");
}

#[test]
fn defaults_and_overrides() {
    let dir = folder_with(&[("v.mp4", b"video"), ("a.png", b"a"), ("b.png", b"b")]);
    let text = format!(
        "{HEAD}prompt: base\nsubjects:\n  - id: a\n    image: ./a.png\n  - id: b\n    image: ./b.png\n    prompt: null\n    character_orientation: video\n    keep_original_sound: false\n"
    );
    let batch = parse_in(dir.path(), &text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(batch.retries, 2);
    assert_eq!(batch.budget_usd, None);
    assert!(batch.output_dir.ends_with("out/b"));
    let [a, b] = &batch.jobs[..] else {
        panic!("two jobs")
    };
    assert_eq!(&*a.output_name, "a.mp4");
    assert_eq!(a.settings.prompt.as_deref(), Some("base"));
    assert_eq!(a.settings.mode, recast::pricing::Mode::Std);
    assert_eq!(a.settings.orientation, recast::media::Orientation::Image);
    assert!(a.settings.keep_original_sound);
    assert_eq!(b.settings.prompt, None);
    assert_eq!(b.settings.orientation, recast::media::Orientation::Video);
    assert!(!b.settings.keep_original_sound);
}

/// One subject of a generated manifest.
#[derive(Debug, Clone)]
struct GenSubject {
    id: String,
    /// Index into the media files, or a URL.
    local: Option<usize>,
    url: String,
    prompt: Option<String>,
    pro: Option<bool>,
}

fn manifest_text(name: &str, model: &str, subjects: &[GenSubject]) -> String {
    let mut text = format!(
        "version: 1\nname: \"{name}\"\nreference:\n  video: ./v.mp4\nmodel: {model}\nsubjects:\n"
    );
    for s in subjects {
        text.push_str(&format!("  - id: \"{}\"\n", s.id));
        match s.local {
            Some(i) => text.push_str(&format!("    image: ./media/{i}.png\n")),
            None => text.push_str(&format!("    image: {}\n", s.url)),
        }
        if let Some(prompt) = &s.prompt {
            text.push_str(&format!("    prompt: {prompt:?}\n"));
        }
        if let Some(pro) = s.pro {
            text.push_str(&format!("    mode: {}\n", if pro { "pro" } else { "std" }));
        }
    }
    text
}

fn keys_by_id(batch: &BatchSpec) -> BTreeMap<String, String> {
    batch
        .jobs
        .iter()
        .map(|j| (j.subject_id.to_string(), j.key.to_string()))
        .collect()
}

fn gen_subjects() -> impl Strategy<Value = Vec<GenSubject>> {
    proptest::collection::btree_map(
        "[a-z][a-z0-9_-]{0,8}",
        (
            proptest::option::of(0usize..4),
            "https://cdn\\.example\\.com/[a-z]{1,6}\\.png",
            proptest::option::of("[a-z ]{0,10}"),
            proptest::option::of(any::<bool>()),
        ),
        1..6,
    )
    .prop_map(|by_id| {
        by_id
            .into_iter()
            .enumerate()
            // Unique media per subject, so no two subjects make the same clip.
            .map(|(n, (id, (local, url, prompt, pro)))| GenSubject {
                id,
                local: local.map(|_| n),
                url: url.replace(".png", &format!("-{n}.png")),
                prompt,
                pro,
            })
            .collect()
    })
}

/// Media files 0..8 with distinct content, and the reference video.
fn media_folder() -> tempfile::TempDir {
    let dir = folder_with(&[("v.mp4", b"video")]);
    for i in 0..8 {
        let path = dir.path().join(format!("media/{i}.png"));
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, format!("image {i}")).unwrap();
    }
    dir
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn keys_ignore_order_and_names(
        subjects in gen_subjects(),
        seed in any::<u64>(),
        other_name in "[a-z][a-z0-9-]{0,10}",
    ) {
        let dir = media_folder();
        let batch = manifest::parse_str(
            &manifest_text("first", "m1", &subjects), Path::new("a.yaml"), dir.path(), &LoadOptions::default(),
        ).unwrap_or_else(|e| panic!("{e}"));

        let mut shuffled = subjects.clone();
        let n = shuffled.len();
        for i in 0..n {
            shuffled.swap(i, (seed as usize).wrapping_add(i * 7) % n);
        }
        let renamed = manifest::parse_str(
            &manifest_text(&other_name, "m1", &shuffled), Path::new("other/b.yaml"), dir.path(), &LoadOptions::default(),
        ).unwrap_or_else(|e| panic!("{e}"));
        prop_assert_eq!(keys_by_id(&batch), keys_by_id(&renamed));
        // Jobs come sorted by id whatever the file order.
        let ids: Vec<_> = renamed.jobs.iter().map(|j| j.subject_id.clone()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        prop_assert_eq!(ids, sorted);
    }

    #[test]
    fn keys_follow_every_clip_shaping_change(subjects in gen_subjects(), which in 0usize..6) {
        let dir = media_folder();
        let options = LoadOptions::default();
        let before = manifest::parse_str(
            &manifest_text("b", "m1", &subjects), Path::new("a.yaml"), dir.path(), &options,
        ).unwrap_or_else(|e| panic!("{e}"));
        let mut changed = subjects.clone();
        let target = &mut changed[0];
        let mut model = "m1";
        match which {
            0 => target.pro = Some(!target.pro.unwrap_or(false)),
            1 => target.prompt = Some(format!("{}!", target.prompt.clone().unwrap_or_default())),
            2 => match target.local {
                Some(_) => target.local = Some(7),
                None => target.url = target.url.replace(".png", "-x.png"),
            },
            3 => model = "m2",
            // Same path, new content.
            4 => {
                target.local = Some(0);
                let before_edit = manifest::parse_str(
                    &manifest_text("b", "m1", &changed), Path::new("a.yaml"), dir.path(), &options,
                ).unwrap_or_else(|e| panic!("{e}"));
                fs::write(dir.path().join("media/0.png"), b"edited").unwrap();
                let after_edit = manifest::parse_str(
                    &manifest_text("b", "m1", &changed), Path::new("a.yaml"), dir.path(), &options,
                ).unwrap_or_else(|e| panic!("{e}"));
                prop_assert_ne!(&keys_by_id(&before_edit)[&changed[0].id], &keys_by_id(&after_edit)[&changed[0].id]);
                return Ok(());
            }
            _ => {
                fs::write(dir.path().join("v.mp4"), b"another video").unwrap();
            }
        }
        let after = manifest::parse_str(
            &manifest_text("b", model, &changed), Path::new("a.yaml"), dir.path(), &options,
        ).unwrap_or_else(|e| panic!("{e}"));
        let (before, after) = (keys_by_id(&before), keys_by_id(&after));
        let id = &subjects[0].id;
        prop_assert_ne!(&before[id], &after[id]);
        // Untouched subjects keep their keys unless the change was batch-wide.
        if which < 3 {
            for s in &subjects[1..] {
                prop_assert_eq!(&before[&s.id], &after[&s.id]);
            }
        }
    }

    #[test]
    fn any_text_gives_a_result_not_a_panic(text in "\\PC{0,200}") {
        let dir = tempfile::tempdir().unwrap();
        let _ = parse_in(dir.path(), &text);
    }

    #[test]
    fn mutated_manifests_give_a_result_not_a_panic(
        cuts in proptest::collection::vec((0usize..4000, "[\\[\\]{}:,&*!|>'\"\\-# \n\t?a-z0-9]{0,4}"), 1..6),
    ) {
        let mut text = fs::read_to_string(fixture("manifests/many-mistakes.yaml")).unwrap();
        for (at, insert) in cuts {
            let mut at = at % (text.len() + 1);
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            text.insert_str(at, &insert);
        }
        let _ = manifest::parse_str(&text, Path::new("m.yaml"), &fixture("manifests"), &with_media_root());
    }
}

#[test]
fn budget_and_retries_are_bounded() {
    let dir = folder_with(&[("v.mp4", b"video"), ("a.png", b"a")]);
    let subjects = "subjects:\n  - id: a\n    image: ./a.png\n";
    for (budget, retries) in [
        (".inf", "-1"),
        ("0", "2.5"),
        ("\"5\"", "\"2\""),
        (".nan", "ten"),
    ] {
        let text = format!("{HEAD}{subjects}budget:\n  max_usd: {budget}\nretries: {retries}\n");
        let errors = parse_in(dir.path(), &text).unwrap_err();
        let fields: Vec<_> = errors.0.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["budget.max_usd", "retries"], "{errors}");
    }
    let text = format!("{HEAD}{subjects}budget:\n  max_usd: 0.5\nretries: 0\n");
    let batch = parse_in(dir.path(), &text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((batch.budget_usd, batch.retries), (Some(0.5), 0));
}

#[test]
fn a_flood_of_mistakes_is_reported_in_bounded_form() {
    let dir = folder_with(&[]);
    let mut text = String::from(
        "version: 1\nname: b\nreference:\n  video: https://a/v.mp4\nmodel: m\nsubjects:\n",
    );
    for i in 0..5_000 {
        text.push_str(&format!("  - id: a{i}\n    imgae: https://a/{i}.png\n"));
    }
    let errors = parse_in(dir.path(), &text).unwrap_err();
    assert_eq!(errors.0.len(), manifest::MAX_REPORTED_ERRORS + 1);
    assert_eq!(errors.0[0].location.map(|l| l.line), Some(7));
    let last = errors.0.last().unwrap();
    assert!(last.message.contains("9800 more mistakes"), "{last}");
}
