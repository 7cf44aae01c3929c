//! Integration tests of the `sim` module: a real simulator on port 0, driven with reqwest.
//!
//! Every test boots its own simulator serving the repository's root as `/media`, so inputs are
//! fetched over HTTP like the provider fetches them. Generation takes about 100 ms; tests wait
//! with `helper::wait_for`, never a fixed sleep.

use std::time::Duration;

use recast::sim::{
    Fault, Generation, IdField, Ledger, RetryAfterFormat, Sim, SimArgs, SimConfig, SimError, Stats,
    StatusWords, UNKNOWN_STATUS_WORD, run_from_args,
};
use serde_json::{Value, json};

use crate::helper::{repo_root, wait_for};

const DANCE: &str = "examples/media/dance-5s.mp4";
const LONG: &str = "tests/fixtures/media/long-12s.mp4";
const SUBJECT: &str = "tests/fixtures/media/subject.png";
const WAIT: Duration = Duration::from_secs(10);

fn config() -> SimConfig {
    SimConfig {
        generation: Generation::Fixed(Duration::from_millis(100)),
        media_dir: Some(repo_root()),
        ..SimConfig::default()
    }
}

/// A simulator and a client for it.
struct H {
    sim: Sim,
    http: reqwest::Client,
}

impl H {
    async fn start(config: SimConfig) -> H {
        H::with_timeout(config, Duration::from_secs(10)).await
    }

    async fn with_timeout(config: SimConfig, timeout: Duration) -> H {
        let sim = Sim::start(config).await.expect("sim starts");
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .no_proxy()
            .build()
            .unwrap();
        H { sim, http }
    }

    fn body(&self, video: &str, orientation: &str) -> Value {
        json!({
            "model": "kling-v3-motion-control",
            "image_url": self.sim.media_url(SUBJECT),
            "video_url": self.sim.media_url(video),
            "character_orientation": orientation,
            "mode": "std",
            "keep_original_sound": true,
            "prompt": "a slow pan"
        })
    }

    async fn submit_raw(
        &self,
        body: &Value,
        key: Option<&str>,
    ) -> reqwest::Result<reqwest::Response> {
        let mut req = self
            .http
            .post(format!("{}/api/v1/videos/generations", self.sim.base_url()))
            .bearer_auth("sim-key")
            .json(body);
        if let Some(key) = key {
            req = req.header("Idempotency-Key", key);
        }
        req.send().await
    }

    /// Submit and expect 200; the answer's JSON.
    async fn submit(&self, body: &Value, key: Option<&str>) -> Value {
        let resp = self.submit_raw(body, key).await.expect("submit answers");
        assert_eq!(resp.status(), 200, "submit: {:?}", resp.text().await);
        resp.json().await.unwrap()
    }

    async fn submit_dance(&self) -> String {
        let answer = self.submit(&self.body(DANCE, "video"), None).await;
        answer["id"].as_str().unwrap().to_owned()
    }

    async fn poll_raw(&self, id: &str) -> reqwest::Result<reqwest::Response> {
        self.http
            .get(format!("{}/api/v1/tasks/{id}", self.sim.base_url()))
            .bearer_auth("sim-key")
            .send()
            .await
    }

    async fn poll(&self, id: &str) -> Value {
        let resp = self.poll_raw(id).await.expect("poll answers");
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }

    /// Poll until the status is one of `words`.
    async fn poll_until(&self, id: &str, words: &[&str]) -> Value {
        wait_for(&format!("task {id} to reach {words:?}"), WAIT, || async {
            let v = self.poll(id).await;
            words
                .contains(&v["status"].as_str().unwrap_or_default())
                .then_some(v)
        })
        .await
    }

    async fn completed_link(&self, id: &str) -> String {
        let v = self.poll_until(id, &["completed"]).await;
        v["output"]["video_urls"][0].as_str().unwrap().to_owned()
    }

    async fn get(&self, url: &str) -> reqwest::Response {
        self.http.get(url).send().await.expect("GET answers")
    }
}

fn file(rel: &str) -> Vec<u8> {
    std::fs::read(repo_root().join(rel)).unwrap()
}

#[tokio::test]
async fn a_task_goes_pending_to_completed_and_its_clip_is_the_reference_video() {
    let h = H::start(config()).await;
    let answer = h.submit(&h.body(DANCE, "video"), None).await;
    // reAPI's documented words: `processing`, then `completed`.
    assert_eq!(answer["status"], "processing");
    assert!(answer.get("error").is_none() || answer["error"].is_null());
    let id = answer["id"].as_str().unwrap();
    let done = h.poll_until(id, &["completed"]).await;
    assert_eq!(done["progress"], 100);
    assert_eq!(done["usage"]["billed_seconds"], 5);
    assert_eq!(done["usage"]["credits"], 566);
    let url = done["output"]["video_urls"][0].as_str().unwrap();
    let clip = h.get(url).await;
    assert_eq!(clip.status(), 200);
    assert_eq!(clip.headers()["content-type"], "video/mp4");
    assert_eq!(clip.bytes().await.unwrap().as_ref(), file(DANCE));

    let ledger = h.sim.ledger();
    assert_eq!(ledger.entries.len(), 1);
    let e = &ledger.entries[0];
    assert_eq!(
        (e.task_id.as_str(), e.billed_seconds, e.credits),
        (id, 5, 566)
    );
    assert_eq!(e.video_url, h.sim.media_url(DANCE));
    assert!(!e.refunded);
    // The same ledger over HTTP.
    let remote: Ledger = h
        .get(&format!("{}/sim/ledger", h.sim.base_url()))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(remote, ledger);
    let stats: Stats = h
        .get(&format!("{}/sim/stats", h.sim.base_url()))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stats.submits_accepted, 1);
    assert_eq!(stats.downloads, 1);
    assert!(stats.polls >= 1);
    h.sim.shutdown().await;
}

#[tokio::test]
async fn progress_is_reported_while_processing() {
    // `pending` words set the queued phase (progress 0) apart from processing.
    let h = H::start(SimConfig {
        generation: Generation::Fixed(Duration::from_millis(400)),
        status_words: StatusWords::Pending,
        ..config()
    })
    .await;
    let id = h.submit_dance().await;
    let v = h.poll_until(&id, &["processing"]).await;
    let p = v["progress"].as_u64().unwrap();
    assert!((1..100).contains(&p), "progress {p}");
    assert!(v.get("output").is_none());
}

#[tokio::test]
async fn every_wire_variant_puts_the_id_and_status_words_where_it_says() {
    for (id_field, words, pending, completed) in [
        (IdField::TaskId, StatusWords::Alt1, "queued", "succeeded"),
        (
            IdField::DataTaskId,
            StatusWords::Alt2,
            "submitted",
            "success",
        ),
    ] {
        let h = H::start(SimConfig {
            id_field,
            status_words: words,
            sound_as_yes_no: true,
            ..config()
        })
        .await;
        let mut body = h.body(DANCE, "video");
        body["keep_original_sound"] = json!("no");
        let answer = h.submit(&body, None).await;
        let (id, status) = match id_field {
            IdField::TaskId => (&answer["task_id"], &answer["status"]),
            _ => (&answer["data"]["task_id"], &answer["data"]["status"]),
        };
        assert!(answer.get("id").is_none(), "{answer}");
        assert_eq!(status, pending);
        let id = id.as_str().unwrap();
        let done = h.poll_until(id, &[completed]).await;
        assert_eq!(done["task_id"], id);
        assert_eq!(done["keep_original_sound"], "no");
        assert!(done["output"]["video_urls"][0].is_string());
    }
}

#[tokio::test]
async fn a_wrong_or_missing_key_gets_401() {
    let h = H::start(config()).await;
    let url = format!("{}/api/v1/videos/generations", h.sim.base_url());
    let body = h.body(DANCE, "video");
    let none = h.http.post(&url).json(&body).send().await.unwrap();
    assert_eq!(none.status(), 401);
    let wrong = h
        .http
        .post(&url)
        .bearer_auth("nope")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let err: Value = wrong.json().await.unwrap();
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("API key")
    );
    let poll = h
        .http
        .get(format!("{}/api/v1/tasks/x", h.sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(poll.status(), 401);
    assert_eq!(h.sim.stats().rejected_401, 3);
    assert!(h.sim.ledger().entries.is_empty());
}

#[tokio::test]
async fn a_12_second_clip_with_image_orientation_is_a_400_and_bills_nothing() {
    let h = H::start(config()).await;
    let resp = h.submit_raw(&h.body(LONG, "image"), None).await.unwrap();
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    let message = err["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("video_url"), "{message}");
    assert!(message.contains("10"), "{message}");
    assert!(h.sim.ledger().entries.is_empty());
    assert_eq!(h.sim.stats().rejected_400, 1);

    // The same clip following the video's facing may run 30 s: billed 12 s.
    let answer = h.submit(&h.body(LONG, "video"), None).await;
    assert!(answer["id"].is_string());
    assert_eq!(h.sim.ledger().entries[0].billed_seconds, 12);
}

#[tokio::test]
async fn bad_parameters_are_400s_that_name_the_field() {
    let h = H::start(config()).await;
    for (key, value, needle) in [
        ("model", json!("kling-v9-motion-control"), "unknown model"),
        ("mode", json!("ultra"), "mode"),
        ("prompt", json!("x".repeat(2501)), "prompt"),
        ("image_url", json!(h.sim.media_url(DANCE)), "image_url"),
    ] {
        let mut body = h.body(DANCE, "video");
        body[key] = value;
        let resp = h.submit_raw(&body, None).await.unwrap();
        assert_eq!(resp.status(), 400, "{key}");
        let err: Value = resp.json().await.unwrap();
        assert!(
            err["error"]["message"].as_str().unwrap().contains(needle),
            "{key}: {err}"
        );
    }
    assert!(h.sim.ledger().entries.is_empty());
}

#[tokio::test]
async fn an_unreachable_input_fails_the_task_and_bills_nothing() {
    let h = H::start(config()).await;
    let mut body = h.body(DANCE, "video");
    body["image_url"] = json!(h.sim.media_url("no/such/subject.png"));
    let answer = h.submit(&body, None).await;
    let id = answer["id"].as_str().unwrap();
    let failed = h.poll_until(id, &["failed"]).await;
    assert_eq!(failed["error"]["name"], "INVALID_IMAGE_URL");
    assert_eq!(failed["error"]["code"], 60001);
    assert!(
        failed["error"]["request_id"]
            .as_str()
            .unwrap()
            .starts_with("req_")
    );
    assert!(failed["error"]["message"].as_str().unwrap().contains("404"));
    let ledger = h.sim.ledger();
    assert_eq!(ledger.entries[0].credits, 0);
    assert_eq!(ledger.totals.billed_tasks, 0);
    assert_eq!(h.sim.stats().fetch_failures, 1);
}

#[tokio::test]
async fn bills_follow_the_rate_table_and_failed_tasks_are_refunded() {
    let h = H::start(SimConfig {
        faults: fault(|f| f.task_failure = Fault::first(1)),
        ..config()
    })
    .await;
    let failing = h.submit_dance().await;
    let v3_std = h.submit_dance().await;
    let mut pro = h.body(DANCE, "video");
    pro["mode"] = json!("pro");
    h.submit(&pro, None).await;
    let mut v26 = h.body(DANCE, "video");
    v26["model"] = json!("kling-v2.6-motion-control");
    h.submit(&v26, None).await;

    let failed = h.poll_until(&failing, &["failed"]).await;
    assert_eq!(failed["error"]["name"], "GENERATION_FAILED");
    assert_eq!(failed["usage"]["refunded"], true);
    h.poll_until(&v3_std, &["completed"]).await;

    let ledger = h.sim.ledger();
    let credits: Vec<u64> = ledger.entries.iter().map(|e| e.credits).collect();
    // 5 s x 113.168 = 565.84 -> 566; x 150.832 = 754.16 -> 755; x 62.832 = 314.16 -> 315.
    assert_eq!(credits, [566, 566, 755, 315]);
    assert!(ledger.entries[0].refunded);
    assert_eq!(ledger.totals.billed_credits, 566 + 566 + 755 + 315);
    assert_eq!(ledger.totals.refunded_credits, 566);
    assert_eq!(ledger.totals.net_credits, 566 + 755 + 315);
    assert_eq!(
        (ledger.totals.billed_tasks, ledger.totals.net_tasks),
        (4, 3)
    );
    assert_eq!(h.sim.stats().faults.task_failure, 1);
}

#[tokio::test]
async fn an_account_without_credit_gets_402() {
    let h = H::start(SimConfig {
        credit_balance: Some(1000),
        ..config()
    })
    .await;
    h.submit_dance().await;
    let resp = h.submit_raw(&h.body(DANCE, "video"), None).await.unwrap();
    assert_eq!(resp.status(), 402);
    assert_eq!(h.sim.stats().rejected_402, 1);
    assert_eq!(h.sim.ledger().totals.net_credits, 566);
}

#[tokio::test]
async fn the_rate_limit_answers_429_with_retry_after_in_seconds_or_as_a_date() {
    for format in [RetryAfterFormat::Seconds, RetryAfterFormat::HttpDate] {
        let h = H::start(SimConfig {
            submit_rate_per_min: Some(6),
            submit_burst: 2,
            retry_after: format,
            ..config()
        })
        .await;
        h.submit_dance().await;
        h.submit_dance().await;
        let resp = h.submit_raw(&h.body(DANCE, "video"), None).await.unwrap();
        assert_eq!(resp.status(), 429);
        let value = resp.headers()["retry-after"].to_str().unwrap().to_owned();
        match format {
            // 6 a minute: the next one is allowed 10 s after the first.
            RetryAfterFormat::Seconds => {
                let secs: u64 = value.parse().unwrap();
                assert!((9..=10).contains(&secs), "{value}");
            }
            RetryAfterFormat::HttpDate => {
                // `Sun, 06 Nov 1994 08:49:37 GMT`
                assert_eq!(value.len(), 29, "{value}");
                assert!(
                    value.ends_with(" GMT") && value.as_bytes()[3] == b',',
                    "{value}"
                );
            }
        }
        let stats = h.sim.stats();
        assert_eq!(
            (stats.rate_limited_429, stats.in_flight_refused_429),
            (1, 0)
        );
        assert_eq!(h.sim.ledger().entries.len(), 2);
    }
}

#[tokio::test]
async fn the_in_flight_cap_refuses_until_a_task_ends() {
    let h = H::start(SimConfig {
        max_in_flight: Some(1),
        // Long enough that the second submit surely lands while the first is in flight.
        generation: Generation::Fixed(Duration::from_millis(1000)),
        ..config()
    })
    .await;
    let first = h.submit_dance().await;
    let resp = h.submit_raw(&h.body(DANCE, "video"), None).await.unwrap();
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key("retry-after"));
    h.poll_until(&first, &["completed"]).await;
    h.submit_dance().await;
    let stats = h.sim.stats();
    assert_eq!(
        (stats.in_flight_refused_429, stats.rate_limited_429),
        (1, 0)
    );
    assert_eq!(h.sim.ledger().entries.len(), 2);
}

#[tokio::test]
async fn links_expire_and_a_new_poll_gives_a_fresh_one() {
    let h = H::start(SimConfig {
        // Long enough for the first download to land before it expires, even on a busy machine.
        link_ttl: Duration::from_millis(800),
        ..config()
    })
    .await;
    let id = h.submit_dance().await;
    let link = h.completed_link(&id).await;
    assert_eq!(h.get(&link).await.status(), 200);
    wait_for("the link to expire", WAIT, || async {
        (h.get(&link).await.status() == 403).then_some(())
    })
    .await;
    let fresh = h.completed_link(&id).await;
    assert_ne!(fresh, link);
    let clip = h.get(&fresh).await;
    assert_eq!(clip.status(), 200);
    assert_eq!(clip.bytes().await.unwrap().as_ref(), file(DANCE));
    assert!(h.sim.stats().downloads_expired >= 1);
    // A forged link is not a link.
    let forged = fresh.replace(".mp4", "0.mp4");
    assert_eq!(h.get(&forged).await.status(), 404);
}

#[tokio::test]
async fn a_repeated_idempotency_key_returns_the_first_task_when_honoured() {
    let h = H::start(config()).await;
    let body = h.body(DANCE, "video");
    let a = h.submit(&body, Some("job-1#1")).await;
    let b = h.submit(&body, Some("job-1#1")).await;
    assert_eq!(a["id"], b["id"]);
    let ledger = h.sim.ledger();
    assert_eq!(ledger.entries.len(), 1);
    assert_eq!(
        ledger.entries[0].idempotency_key.as_deref(),
        Some("job-1#1")
    );
    assert_eq!(h.sim.stats().submits_replayed, 1);
}

#[tokio::test]
async fn a_repeated_idempotency_key_bills_again_when_ignored() {
    let h = H::start(SimConfig {
        honour_idempotency: false,
        ..config()
    })
    .await;
    let body = h.body(DANCE, "video");
    let a = h.submit(&body, Some("job-1#1")).await;
    let b = h.submit(&body, Some("job-1#1")).await;
    assert_ne!(a["id"], b["id"]);
    let ledger = h.sim.ledger();
    assert_eq!(ledger.with_key("job-1#1").count(), 2);
    assert_eq!(ledger.totals.net_credits, 2 * 566);
}

fn fault(f: impl FnOnce(&mut recast::sim::Faults)) -> recast::sim::Faults {
    let mut faults = recast::sim::Faults {
        seed: 42,
        ..Default::default()
    };
    f(&mut faults);
    faults
}

#[tokio::test]
async fn submit_5xx_and_reset_create_nothing() {
    let h = H::start(SimConfig {
        faults: fault(|f| {
            f.submit_5xx = Fault::first(1);
            f.submit_reset = Fault::first(1);
        }),
        ..config()
    })
    .await;
    let body = h.body(DANCE, "video");
    // The reset is decided first.
    let reset = h.submit_raw(&body, None).await;
    assert!(reset.is_err(), "{reset:?}");
    let unavailable = h.submit_raw(&body, None).await.unwrap();
    assert_eq!(unavailable.status(), 503);
    assert!(h.sim.ledger().entries.is_empty());
    h.submit_dance().await;
    let stats = h.sim.stats();
    assert_eq!((stats.faults.submit_reset, stats.faults.submit_5xx), (1, 1));
    assert_eq!(h.sim.ledger().totals.billed_tasks, 1);
}

#[tokio::test]
async fn an_ambiguous_submit_bills_the_task_and_gives_no_answer() {
    let h = H::start(SimConfig {
        faults: fault(|f| f.ambiguous_submit = Fault::first(1)),
        ..config()
    })
    .await;
    let err = h
        .submit_raw(&h.body(DANCE, "video"), Some("k1"))
        .await
        .expect_err("the connection is cut before any answer");
    assert!(!err.is_status() && !err.is_timeout(), "{err:?}");
    let ledger = h.sim.ledger();
    assert_eq!(ledger.totals.billed_tasks, 1);
    assert_eq!(ledger.entries[0].credits, 566);
    // The task is real: it can be polled to the end, and a retry with the key finds it.
    let id = ledger.entries[0].task_id.clone();
    h.poll_until(&id, &["completed"]).await;
    let again = h.submit(&h.body(DANCE, "video"), Some("k1")).await;
    assert_eq!(again["id"], id.as_str());
    assert_eq!(h.sim.ledger().totals.billed_tasks, 1);
    assert_eq!(h.sim.stats().faults.ambiguous_submit, 1);
}

#[tokio::test]
async fn poll_faults_5xx_reset_malformed_and_unknown_status() {
    let h = H::start(SimConfig {
        faults: fault(|f| {
            f.poll_reset = Fault::first(1);
            f.poll_5xx = Fault::first(1);
            f.malformed_json = Fault::first(1);
            f.unknown_status = Fault::first(1);
        }),
        ..config()
    })
    .await;
    let id = h.submit_dance().await;
    assert!(h.poll_raw(&id).await.is_err(), "reset");
    assert_eq!(h.poll_raw(&id).await.unwrap().status(), 502);
    // The next poll gets both malformed JSON and an unknown word; the JSON is what breaks.
    let text = h.poll_raw(&id).await.unwrap().text().await.unwrap();
    assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");
    let ok = h.poll(&id).await;
    assert_ne!(ok["status"], UNKNOWN_STATUS_WORD);
    let faults = h.sim.stats().faults;
    assert_eq!(
        (
            faults.poll_reset,
            faults.poll_5xx,
            faults.malformed_json,
            faults.unknown_status
        ),
        (1, 1, 1, 1)
    );
}

#[tokio::test]
async fn an_unknown_status_word_is_answered_on_request() {
    let h = H::start(SimConfig {
        faults: fault(|f| f.unknown_status = Fault::first(1)),
        ..config()
    })
    .await;
    let id = h.submit_dance().await;
    assert_eq!(h.poll(&id).await["status"], UNKNOWN_STATUS_WORD);
    h.poll_until(&id, &["completed"]).await;
}

#[tokio::test]
async fn a_slow_answer_outlasts_the_client_timeout() {
    let h = H::with_timeout(
        SimConfig {
            slow_delay: Duration::from_secs(30),
            faults: fault(|f| f.slow_answer = Fault::first(1)),
            ..config()
        },
        Duration::from_millis(1500),
    )
    .await;
    let err = h
        .submit_raw(&h.body(DANCE, "video"), None)
        .await
        .expect_err("times out");
    assert!(err.is_timeout(), "{err:?}");
    // The work was done before the answer was held: the task exists and is billed.
    assert_eq!(h.sim.ledger().totals.billed_tasks, 1);
    assert_eq!(h.sim.stats().faults.slow_answer, 1);
    // Shutdown does not wait 30 s for the held answer.
    tokio::time::timeout(Duration::from_secs(5), h.sim.shutdown())
        .await
        .expect("shutdown is prompt");
}

#[tokio::test]
async fn a_truncated_download_promises_more_than_it_sends() {
    let h = H::start(SimConfig {
        faults: fault(|f| f.truncated_download = Fault::first(1)),
        ..config()
    })
    .await;
    let id = h.submit_dance().await;
    let link = h.completed_link(&id).await;
    let cut = h.get(&link).await;
    assert_eq!(cut.status(), 200);
    assert_eq!(cut.content_length(), Some(file(DANCE).len() as u64));
    assert!(cut.bytes().await.is_err(), "the body is cut short");
    let whole = h.get(&link).await.bytes().await.unwrap();
    assert_eq!(whole.as_ref(), file(DANCE));
    assert_eq!(h.sim.stats().faults.truncated_download, 1);
}

#[tokio::test]
async fn a_changed_download_differs_between_attempts() {
    let h = H::start(SimConfig {
        faults: fault(|f| f.changed_download = Fault::first(2)),
        ..config()
    })
    .await;
    let id = h.submit_dance().await;
    let link = h.completed_link(&id).await;
    let original = file(DANCE);
    let a = h.get(&link).await.bytes().await.unwrap();
    let b = h.get(&link).await.bytes().await.unwrap();
    let c = h.get(&link).await.bytes().await.unwrap();
    assert_eq!((a.len(), b.len()), (original.len(), original.len()));
    assert_ne!(a.as_ref(), original);
    assert_ne!(a, b);
    assert_eq!(c.as_ref(), original);
    assert_eq!(h.sim.stats().faults.changed_download, 2);
}

#[tokio::test]
async fn an_expired_link_fault_hands_out_a_dead_link_once() {
    let h = H::start(SimConfig {
        faults: fault(|f| f.expired_link = Fault::first(1)),
        ..config()
    })
    .await;
    let id = h.submit_dance().await;
    let dead = h.completed_link(&id).await;
    assert_eq!(h.get(&dead).await.status(), 403);
    let live = h.completed_link(&id).await;
    assert_eq!(h.get(&live).await.status(), 200);
    assert_eq!(h.sim.stats().faults.expired_link, 1);
}

#[tokio::test]
async fn the_same_seed_injects_the_same_faults() {
    let mut runs = Vec::new();
    for _ in 0..2 {
        let h = H::start(SimConfig {
            faults: fault(|f| f.poll_5xx = Fault::rate(0.5)),
            ..config()
        })
        .await;
        let mut seq = Vec::new();
        for _ in 0..24 {
            seq.push(h.poll_raw("no-such-task").await.unwrap().status().as_u16());
        }
        runs.push(seq);
    }
    assert_eq!(runs[0], runs[1]);
    assert!(
        runs[0].contains(&502) && runs[0].contains(&404),
        "{:?}",
        runs[0]
    );
}

#[tokio::test]
async fn media_serves_ranges_and_stays_inside_its_folder() {
    let h = H::start(config()).await;
    let url = h.sim.media_url(DANCE);
    let whole = file(DANCE);
    let len = whole.len();
    let part = h
        .http
        .get(&url)
        .header("Range", "bytes=0-99")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(
        part.headers()["content-range"].to_str().unwrap(),
        format!("bytes 0-99/{len}")
    );
    assert_eq!(part.bytes().await.unwrap().as_ref(), &whole[..100]);
    let tail = h
        .http
        .get(&url)
        .header("Range", "bytes=-10")
        .send()
        .await
        .unwrap();
    assert_eq!(tail.bytes().await.unwrap().as_ref(), &whole[len - 10..]);
    let past = h
        .http
        .get(&url)
        .header("Range", format!("bytes={len}-"))
        .send()
        .await
        .unwrap();
    assert_eq!(past.status(), 416);
    let full = h.get(&url).await;
    assert_eq!(full.headers()["accept-ranges"], "bytes");
    assert_eq!(full.bytes().await.unwrap().as_ref(), whole);
    for escape in [
        "%2e%2e/%2e%2e/etc/passwd",
        "..%2f..%2fetc%2fpasswd",
        "%2fetc%2fpasswd",
    ] {
        let resp = h.get(&format!("{}/media/{escape}", h.sim.base_url())).await;
        assert_eq!(resp.status(), 404, "{escape}");
    }
    assert_eq!(h.get(&h.sim.media_url("no/such.mp4")).await.status(), 404);
}

#[tokio::test]
async fn unknown_tasks_are_404_and_a_stopped_sim_refuses_connections() {
    let h = H::start(config()).await;
    assert_eq!(h.poll_raw("sim-nope").await.unwrap().status(), 404);
    assert_eq!(h.sim.stats().polls_unknown_404, 1);
    let base = h.sim.base_url();
    h.sim.shutdown().await;
    assert!(
        h.http
            .get(format!("{base}/sim/stats"))
            .send()
            .await
            .is_err()
    );
}

#[derive(clap::Parser)]
struct Cli {
    #[command(flatten)]
    sim: SimArgs,
}

#[tokio::test]
async fn run_from_args_serves_until_shutdown_and_names_a_taken_address() {
    use clap::Parser;
    let args = |listen: &str| {
        Cli::try_parse_from(["recast-sim", "--listen", listen, "--generation-secs", "0.1"])
            .unwrap()
            .sim
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(run_from_args(args("127.0.0.1:0"), async {
        let _ = stopped.await;
    }));
    stop.send(()).unwrap();
    run.await.unwrap().expect("serves, then stops cleanly");

    let taken = Sim::start(config()).await.unwrap();
    let err = run_from_args(args(&taken.addr().to_string()), async {})
        .await
        .expect_err("the address is taken");
    assert!(matches!(err, SimError::Bind { .. }), "{err}");
    assert!(err.to_string().contains(&taken.addr().to_string()), "{err}");
}
