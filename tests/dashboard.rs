//! The dashboard in a real browser: headless Chromium (Debian's `chromium`) driven over CDP,
//! looking at a finished simulated batch as a person would.

use std::path::PathBuf;
use std::time::Duration;

use chromiumoxide::browser::{Browser, BrowserConfig};
use chromiumoxide::page::ScreenshotParams;
use futures_util::StreamExt;
use recast::sim::Sim;

use crate::helper::workspace::{Workspace, describe};
use crate::helper::{free_port, wait_for, wait_listening};

fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("RECAST_CHROMIUM") {
        return p.into();
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .flat_map(|dir| ["chromium", "chromium-browser", "google-chrome"].map(|n| dir.join(n)))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("the dashboard test needs a browser: `apt-get install chromium` (.ci/run does)")
        })
}

async fn paused(ws: &Workspace, sim: &Sim) -> bool {
    let status = ws.recast(sim, &["status", "--json"]).await;
    let doc: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap_or_default();
    doc["batches"][0]["batch"]["paused"].as_bool() == Some(true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_sees_thumbnails_and_playable_clips_and_a_button_changes_the_batch() {
    let ws = Workspace::new(2, "");
    let sim = recast::sim::Sim::start(ws.sim_config()).await.unwrap();
    let run = ws.recast(&sim, &["run", "jobs.yaml"]).await;
    assert_eq!(run.status.code(), Some(0), "{}", describe(&run));

    // Beyond loopback, the dashboard wants a token.
    let open = ws
        .recast(&sim, &["dashboard", "--listen", "0.0.0.0:0"])
        .await;
    assert_eq!(open.status.code(), Some(1), "{}", describe(&open));
    assert!(String::from_utf8_lossy(&open.stderr).contains("RECAST_DASHBOARD_TOKEN"));

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _dashboard = ws
        .recast_command(
            &sim,
            &["dashboard", "--listen", &format!("127.0.0.1:{port}")],
        )
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_listening("the dashboard", port).await;

    // Its own profile: chromiumoxide's default one is shared by every run on the machine, and a
    // second browser on it refuses to start.
    let profile = tempfile::tempdir().unwrap();
    let config = BrowserConfig::builder()
        .chrome_executable(chromium())
        .user_data_dir(profile.path())
        .no_sandbox()
        .new_headless_mode()
        .window_size(1200, 1000)
        .arg("--disable-gpu")
        .arg("--mute-audio")
        .build()
        .unwrap();
    let (mut browser, mut handler) = Browser::launch(config).await.expect("chromium starts");
    let events = tokio::spawn(async move { while handler.next().await.is_some() {} });
    let page = browser.new_page(format!("{base}/")).await.unwrap();
    page.wait_for_navigation().await.unwrap();
    page.find_element("table.batches a")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    page.wait_for_navigation().await.unwrap();

    let check = |js: &'static str| {
        let page = page.clone();
        async move {
            page.evaluate(js)
                .await
                .ok()
                .and_then(|v| v.into_value::<bool>().ok())
                .filter(|ok| *ok)
        }
    };
    wait_for("both thumbnails decoded", Duration::from_secs(30), || {
        check(
            "(() => { const i = [...document.querySelectorAll('img.thumb')]; \
             return i.length === 2 && i.every(x => x.complete && x.naturalWidth > 0); })()",
        )
    })
    .await;
    page.evaluate("document.querySelectorAll('video').forEach(v => { v.muted = true; v.play(); })")
        .await
        .unwrap();
    wait_for("both clips playable", Duration::from_secs(30), || {
        check(
            "(() => { const v = [...document.querySelectorAll('video')]; \
             return v.length === 2 && v.every(x => x.readyState >= 2 && x.videoWidth > 0); })()",
        )
    })
    .await;
    let artefacts = crate::helper::repo_root().join("target/test-artefacts");
    std::fs::create_dir_all(&artefacts).unwrap();
    page.save_screenshot(
        ScreenshotParams::builder().full_page(true).build(),
        artefacts.join("dashboard-batch.png"),
    )
    .await
    .unwrap();

    // The live grid asks for the page it shows, and keeps that page's cards (counted once a
    // second answer arrived: the first answer's cards are in place by then).
    wait_for(
        "the live grid to refresh its page twice",
        Duration::from_secs(20),
        || {
            check(
                "(() => performance.getEntriesByType('resource') \
             .filter(e => e.name.endsWith('/grid?page=1')).length >= 2 \
             && document.querySelectorAll('#grid .card').length === 2)()",
            )
        },
    )
    .await;

    // The Pause button pauses the batch in the store, and the page says so.
    assert!(!paused(&ws, &sim).await);
    page.find_element("button[data-action=pause]")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for(
        "the batch to be paused in the store",
        Duration::from_secs(20),
        || async { paused(&ws, &sim).await.then_some(()) },
    )
    .await;
    wait_for("the page to say PAUSED", Duration::from_secs(20), || {
        check("document.body.innerText.includes('PAUSED')")
    })
    .await;

    // A form posted from elsewhere (no token) changes nothing.
    let forged = reqwest::Client::new()
        .post(format!("{base}/batches/1/resume"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("csrf=guess")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    assert!(paused(&ws, &sim).await);

    browser.close().await.ok();
    browser.wait().await.ok();
    events.abort();
    sim.shutdown().await;
}
