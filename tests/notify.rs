//! Notifications end to end: a real local HTTP receiver that checks every Standard Webhooks
//! signature and answers the first delivery with a 500, and the `on_batch_done` hook.

use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use hmac::{KeyInit, Mac};
use recast::sim::Sim;

use crate::helper::workspace::{Workspace, describe};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[derive(Default)]
struct Received {
    /// (webhook-id, event type, signature verified, status answered)
    deliveries: Vec<(String, String, bool, u16)>,
}

fn verify(headers: &HeaderMap, body: &str) -> bool {
    use base64::Engine;
    let h = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    };
    let key = base64::engine::general_purpose::STANDARD
        .decode(SECRET.trim_start_matches("whsec_"))
        .unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{}.{}.{body}", h("webhook-id"), h("webhook-timestamp")).as_bytes());
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    let fresh = h("webhook-timestamp")
        .parse::<i64>()
        .is_ok_and(|t| (chrono::Utc::now().timestamp() - t).abs() < 300);
    fresh && h("webhook-signature").split(' ').any(|s| s == expected)
}

async fn receiver() -> (String, Arc<Mutex<Received>>) {
    let received = Arc::new(Mutex::new(Received::default()));
    let state = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let state = state.clone();
            async move {
                let mut r = state.lock().unwrap();
                // The first delivery fails: the sender must try again, with the same id.
                let status = if r.deliveries.is_empty() { 500 } else { 200 };
                let event: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                r.deliveries.push((
                    headers
                        .get("webhook-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned(),
                    event["type"].as_str().unwrap_or_default().to_owned(),
                    verify(&headers, &body),
                    status,
                ));
                StatusCode::from_u16(status).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_signed_retried_after_a_500_and_the_hook_gets_the_results_file() {
    let ws = Workspace::new(2, "retries: 0\n");
    let mut config = ws.sim_config();
    config.faults.task_failure = "first=1".parse().unwrap();
    let sim = Sim::start(config).await.unwrap();
    let (url, received) = receiver().await;
    std::fs::write(ws.path().join("webhook.secret"), SECRET).unwrap();
    let settings = ws.write_settings(
        "  submit_per_minute: 6000\n  submit_burst: 50\nnotifications:\n  webhooks:\n",
    );
    let mut text = std::fs::read_to_string(&settings).unwrap();
    text.push_str(&format!(
        "    - url: {url}\n      secret_file: {}\n  on_batch_done: 'printf \"%s\\n%s\\n\" \"$RECAST_BATCH\" \"$RECAST_RESULTS_FILE\" > hook.out'\n",
        ws.path().join("webhook.secret").display()
    ));
    std::fs::write(&settings, text).unwrap();

    let run = ws.recast(&sim, &["run", "jobs.yaml"]).await;
    assert_eq!(run.status.code(), Some(3), "{}", describe(&run));
    assert!(!String::from_utf8_lossy(&run.stderr).contains(SECRET));

    let deliveries = received.lock().unwrap().deliveries.clone();
    assert!(
        deliveries.iter().all(|d| d.2),
        "a signature did not verify: {deliveries:?}"
    );
    let (first_id, _, _, status) = &deliveries[0];
    assert_eq!(*status, 500);
    assert!(
        deliveries[1..]
            .iter()
            .any(|d| d.0 == *first_id && d.3 == 200),
        "the failed delivery was not tried again under its id: {deliveries:?}"
    );
    let delivered: Vec<&str> = deliveries
        .iter()
        .filter(|d| d.3 == 200)
        .map(|d| d.1.as_str())
        .collect();
    for event in ["job.needs_person", "batch.finished"] {
        assert_eq!(
            delivered.iter().filter(|e| **e == event).count(),
            1,
            "{deliveries:?}"
        );
    }

    let hook = std::fs::read_to_string(ws.path().join("hook.out")).expect("the hook ran");
    let mut lines = hook.lines();
    assert_eq!(lines.next(), Some("e2e"));
    let results = lines.next().unwrap();
    assert!(
        results.ends_with(recast::output::RESULTS_FILE) && std::path::Path::new(results).is_file(),
        "{hook}"
    );

    // Each delivery is recorded in the store, with its attempts.
    let store = recast::store::Store::open(&ws.state()).unwrap();
    let notices = store.notices(20).unwrap();
    assert_eq!(notices.len(), 3, "{notices:?}");
    assert!(
        notices.iter().all(|n| n.delivered_at.is_some()),
        "{notices:?}"
    );
    assert!(notices.iter().any(|n| n.attempts == 2), "{notices:?}");
    // A second run finds nothing new to tell.
    let again = ws.recast(&sim, &["run", "jobs.yaml"]).await;
    assert_eq!(again.status.code(), Some(3), "{}", describe(&again));
    assert_eq!(received.lock().unwrap().deliveries.len(), deliveries.len());
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_set_up_on_a_state_folder_with_a_past_send_no_old_news() {
    let ws = Workspace::new(2, "retries: 0\n");
    let mut config = ws.sim_config();
    config.faults.task_failure = "first=1".parse().unwrap();
    let sim = Sim::start(config).await.unwrap();
    let before = ws.recast(&sim, &["run", "jobs.yaml"]).await;
    assert_eq!(before.status.code(), Some(3), "{}", describe(&before));

    let (url, received) = receiver().await;
    std::fs::write(ws.path().join("webhook.secret"), SECRET).unwrap();
    let settings = ws.write_settings("  submit_per_minute: 6000\nnotifications:\n  webhooks:\n");
    let mut text = std::fs::read_to_string(&settings).unwrap();
    text.push_str(&format!(
        "    - url: {url}\n      secret_file: {}\n",
        ws.path().join("webhook.secret").display()
    ));
    std::fs::write(&settings, text).unwrap();
    let after = ws.recast(&sim, &["run", "jobs.yaml"]).await;
    assert_eq!(after.status.code(), Some(3), "{}", describe(&after));
    assert!(
        received.lock().unwrap().deliveries.is_empty(),
        "the failure from before the webhook was set up was sent"
    );
    sim.shutdown().await;
}
