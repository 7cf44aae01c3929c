//! `POST /api/v1/videos/generations`: check, fetch, probe, bill, answer (or not).
//!
//! Owns: parsing and validating the submit body, fetching `image_url` and `video_url` like the
//! provider does, applying the media input rules, and the order in which limits and submit faults
//! apply.
//!
//! May not: keep task state itself (the book does) or hold the book's lock across an `.await`.
//!
//! Order, cheapest refusal first: bearer key (401) -> rate limit (429) -> injected reset / 5xx
//! (nothing created) -> body (400) -> idempotency replay -> in-flight cap (429) -> fetch and
//! probe (400 when an input breaks a rule) -> balance (402) -> create and bill -> injected
//! ambiguous cut / slow answer -> the answer.
//!
//! An input URL that cannot be fetched (unreachable, timeout, non-2xx) does not give 400: like
//! real gateways, the submit is accepted and the task fails at once with `INVALID_IMAGE_URL` or
//! `INVALID_VIDEO_URL`, billed 0 credits (nothing could be measured, so nothing to refund).
//! Everything that was fetched but breaks a rule (not an image, a 12 s clip with `image`
//! orientation, too large) is a 400 and creates nothing.

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::config::{IdField, Phase};
use super::conn::Conn;
use super::faults::FaultKind;
use super::ledger::bump;
use super::server::{Shared, error};
use super::tasks::{Admit, AdmitRules, Failure, NewTask};
use crate::media::{self, Orientation};
use crate::pricing::{self, Mode, PriceTable};

/// Largest image and video the provider takes (`REAPI.md`).
const IMAGE_MAX_BYTES: u64 = 10 * 1024 * 1024;
const VIDEO_MAX_BYTES: u64 = 100 * 1024 * 1024;
const PROMPT_MAX_CHARS: usize = 2500;

/// A submit body that passed the checks that need no fetching.
#[derive(Debug, Clone, PartialEq)]
pub struct SubmitRequest {
    pub model: String,
    pub mode: Mode,
    pub orientation: Orientation,
    pub sound: bool,
    pub prompt: Option<String>,
    pub image_url: String,
    pub video_url: String,
    /// Credits per second for this model and mode, in thousandths.
    pub rate: pricing::MilliCreditsPerSecond,
}

/// Check a submit body; the error is the message of a 400.
pub fn parse(body: &[u8], prices: &PriceTable) -> Result<SubmitRequest, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not valid JSON: {e}"))?;
    let obj = value.as_object().ok_or("the body must be a JSON object")?;
    let text = |name: &str| -> Result<Option<&str>, String> {
        match obj.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(other) => Err(format!("`{name}` must be a string, not {other}")),
        }
    };
    let required = |name: &str| -> Result<&str, String> {
        text(name)?
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| format!("`{name}` is required"))
    };
    let model = required("model")?;
    if !prices.knows_model(model) {
        return Err(format!("unknown model `{model}`"));
    }
    let mode = match required("mode")? {
        "std" => Mode::Std,
        "pro" => Mode::Pro,
        other => return Err(format!("`mode` must be `std` or `pro`, not `{other}`")),
    };
    let rate = prices
        .rate(model, mode)
        .ok_or_else(|| format!("model `{model}` has no `{mode}` mode"))?;
    let orientation = match required("character_orientation")? {
        "image" => Orientation::Image,
        "video" => Orientation::Video,
        other => {
            return Err(format!(
                "`character_orientation` must be `image` or `video`, not `{other}`"
            ));
        }
    };
    // Both spellings are accepted always: a boolean, or "yes"/"no" as some gateways take it.
    let sound = match obj.get("keep_original_sound") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("yes") => true,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("no") => false,
        Some(other) => {
            return Err(format!(
                "`keep_original_sound` must be true/false or \"yes\"/\"no\", not {other}"
            ));
        }
    };
    let prompt = text("prompt")?.map(str::to_owned);
    if let Some(p) = &prompt {
        let chars = p.chars().count();
        if chars > PROMPT_MAX_CHARS {
            return Err(format!(
                "`prompt` is {chars} characters; at most {PROMPT_MAX_CHARS} are allowed"
            ));
        }
    }
    let url = |name: &str| -> Result<String, String> {
        let raw = required(name)?;
        match reqwest::Url::parse(raw) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(raw.to_owned()),
            _ => Err(format!(
                "`{name}` must be a public http(s) URL, not `{raw}`"
            )),
        }
    };
    Ok(SubmitRequest {
        model: model.to_owned(),
        mode,
        orientation,
        sound,
        prompt,
        image_url: url("image_url")?,
        video_url: url("video_url")?,
        rate,
    })
}

#[derive(Debug)]
enum FetchError {
    /// Unreachable, timed out, or answered non-2xx: the task fails.
    Unreachable(String),
    /// Larger than the provider takes: a 400.
    TooLarge(u64),
}

/// Fetch a whole input, as the provider does, refusing more than `limit` bytes.
async fn fetch(http: &reqwest::Client, url: &str, limit: u64) -> Result<Bytes, FetchError> {
    let mut resp = http
        .get(url)
        .send()
        .await
        .map_err(|e| FetchError::Unreachable(error_chain(&e)))?;
    if !resp.status().is_success() {
        return Err(FetchError::Unreachable(format!(
            "the server answered {}",
            resp.status()
        )));
    }
    if resp.content_length().is_some_and(|len| len > limit) {
        return Err(FetchError::TooLarge(limit));
    }
    let mut buf = BytesMut::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| FetchError::Unreachable(error_chain(&e)))?
    {
        if (buf.len() + chunk.len()) as u64 > limit {
            return Err(FetchError::TooLarge(limit));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// An error and its causes on one line (reqwest's own text hides the cause).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

fn bad_request(app: &Shared, message: &str) -> Response {
    bump(&app.counters.rejected_400);
    error(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        "INVALID_PARAMETER",
        message,
    )
}

/// The submit answer, with the id where the configured variant puts it.
fn answer(app: &Shared, id: &str, phase: Phase) -> Response {
    let status = app.cfg.status_words.word(phase);
    let body = match app.cfg.id_field {
        IdField::Id => json!({ "id": id, "status": status }),
        IdField::TaskId => json!({ "task_id": id, "status": status }),
        IdField::DataTaskId => json!({
            "code": 0,
            "message": "success",
            "data": { "task_id": id, "status": status }
        }),
    };
    (StatusCode::OK, axum::Json(body)).into_response()
}

pub async fn submit(
    State(app): State<Shared>,
    conn: ConnectInfo<Conn>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut response = submit_answer(State(app.clone()), conn, headers, body).await;
    app.rate_limit_headers(response.headers_mut());
    response
}

async fn submit_answer(
    State(app): State<Shared>,
    ConnectInfo(conn): ConnectInfo<Conn>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !app.authorized(&headers) {
        return app.unauthorized();
    }
    if let Some(down) = app.outage_answer(true) {
        return down;
    }
    let early = app
        .retry_deadline
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .is_some_and(|d| Instant::now() < d);
    if early {
        bump(&app.counters.submits_before_retry_after);
    }
    if app.faults.roll(FaultKind::Submit429) {
        return app.too_many(
            std::time::Duration::from_secs(1),
            "too many requests; retry after the given time",
        );
    }
    if let Some(limiter) = &app.limiter {
        let checked = limiter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .check(Instant::now());
        if let Err(wait) = checked {
            bump(&app.counters.rate_limited_429);
            return app.too_many(
                wait,
                "submit rate limit reached; retry after the given time",
            );
        }
    }
    if app.faults.roll(FaultKind::SubmitReset) {
        // Nothing created: the response below is never written (see conn.rs).
        conn.cut();
        return StatusCode::OK.into_response();
    }
    if app.faults.roll(FaultKind::Submit5xx) {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "SERVICE_UNAVAILABLE",
            "simulated upstream failure; nothing was created",
        );
    }
    let req = match parse(&body, &app.cfg.prices) {
        Ok(r) => r,
        Err(message) => return bad_request(&app, &message),
    };
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(str::to_owned);

    // Cheap checks before fetching anything; both are checked again when the task is created.
    {
        let now = Instant::now();
        let mut book = app.book();
        if let Some(idx) = book.replay(key.as_deref(), app.cfg.honour_idempotency) {
            let task = book.task(idx);
            let (phase, _) = task.phase(now);
            let id = task.id.clone();
            drop(book);
            bump(&app.counters.submits_replayed);
            return answer(&app, &id, phase);
        }
        if let Some(cap) = app.cfg.max_in_flight {
            let (n, wait) = book.in_flight(now);
            if n >= cap as usize {
                drop(book);
                bump(&app.counters.in_flight_refused_429);
                return app.too_many(wait, &format!("{cap} tasks already in flight"));
            }
        }
    }

    let (image, video) = tokio::join!(
        fetch(&app.http, &req.image_url, IMAGE_MAX_BYTES),
        fetch(&app.http, &req.video_url, VIDEO_MAX_BYTES)
    );
    let mut fetch_failure = None;
    let mut clip = None;
    let mut billed_seconds = 0;
    match image {
        Ok(bytes) => {
            let info = match media::probe_image_bytes(&bytes) {
                Ok(info) => info,
                Err(e) => return bad_request(&app, &format!("image_url: {e}")),
            };
            let broken = media::check_image(&info);
            if !broken.is_empty() {
                return bad_request(&app, &format!("image_url: {}", join(&broken)));
            }
        }
        Err(FetchError::TooLarge(limit)) => {
            return bad_request(
                &app,
                &format!("image_url: the image is larger than {limit} bytes"),
            );
        }
        Err(FetchError::Unreachable(why)) => {
            fetch_failure = Some(Failure {
                code: "INVALID_IMAGE_URL",
                message: format!("cannot fetch image_url {}: {why}", req.image_url),
            });
        }
    }
    match video {
        Ok(bytes) => {
            let info = match media::probe_video_bytes(&bytes) {
                Ok(info) => info,
                Err(e) => return bad_request(&app, &format!("video_url: {e}")),
            };
            let broken = media::check_video(&info, req.orientation);
            if !broken.is_empty() {
                return bad_request(&app, &format!("video_url: {}", join(&broken)));
            }
            billed_seconds = info.duration_ms.div_ceil(1000);
            clip = Some(bytes);
        }
        Err(FetchError::TooLarge(limit)) => {
            return bad_request(
                &app,
                &format!("video_url: the video is larger than {limit} bytes"),
            );
        }
        Err(FetchError::Unreachable(why)) => {
            fetch_failure.get_or_insert(Failure {
                code: "INVALID_VIDEO_URL",
                message: format!("cannot fetch video_url {}: {why}", req.video_url),
            });
        }
    }

    let new = match fetch_failure {
        Some(failure) => {
            bump(&app.counters.fetch_failures);
            NewTask {
                billed_seconds: 0,
                credits: 0,
                clip: None,
                generation: std::time::Duration::ZERO,
                failure: Some(failure),
                ..new_task(&req, key)
            }
        }
        None => NewTask {
            billed_seconds,
            credits: pricing::bill_at(req.rate, billed_seconds),
            clip,
            generation: app.cfg.generation.for_clip(billed_seconds),
            ..new_task(&req, key)
        },
    };
    let rules = AdmitRules {
        honour_idempotency: app.cfg.honour_idempotency,
        max_in_flight: app.cfg.max_in_flight,
        credit_balance: app.cfg.credit_balance,
    };
    let now = Instant::now();
    let admitted = app.book().admit(now, new, rules);
    let (idx, replayed) = match admitted {
        Admit::Created(idx) => (idx, false),
        Admit::Replayed(idx) => (idx, true),
        Admit::InFlightFull(wait) => {
            bump(&app.counters.in_flight_refused_429);
            let cap = app.cfg.max_in_flight.unwrap_or_default();
            return app.too_many(wait, &format!("{cap} tasks already in flight"));
        }
        Admit::NoCredit { needed, left } => {
            bump(&app.counters.rejected_402);
            return error(
                StatusCode::PAYMENT_REQUIRED,
                "insufficient_quota",
                "INSUFFICIENT_CREDITS",
                &format!("this task costs {needed} credits and the account has {left} left"),
            );
        }
    };
    let (id, phase) = {
        let book = app.book();
        let task = book.task(idx);
        (task.id.clone(), task.phase(now).0)
    };
    if replayed {
        // A twin request raced this one past the early check: it made the task, this one reuses it.
        bump(&app.counters.submits_replayed);
        return answer(&app, &id, phase);
    }
    app.note_accepted();
    // Rolled only for a task that exists, so the fault count is the number of failed tasks.
    let fetched = app.book().task(idx).failure.is_none();
    if fetched && app.faults.roll(FaultKind::TaskFailure) {
        let failure = Failure {
            code: "GENERATION_FAILED",
            message: "generation failed on the provider's side (simulated); credits refunded"
                .to_owned(),
        };
        app.book().fail(idx, failure, now);
    }
    if app.faults.roll(FaultKind::AmbiguousSubmit) {
        // Created and billed above; now vanish without a word.
        conn.cut();
        return StatusCode::OK.into_response();
    }
    if app.faults.roll(FaultKind::SlowAnswer) {
        app.slow_down().await;
    }
    answer(&app, &id, phase)
}

fn new_task(req: &SubmitRequest, key: Option<String>) -> NewTask {
    NewTask {
        model: req.model.clone(),
        mode: req.mode,
        orientation: req.orientation,
        sound: req.sound,
        prompt: req.prompt.clone(),
        image_url: req.image_url.clone(),
        video_url: req.video_url.clone(),
        idempotency_key: key,
        billed_seconds: 0,
        credits: 0,
        clip: None,
        generation: std::time::Duration::ZERO,
        failure: None,
    }
}

fn join(broken: &[media::RuleViolation]) -> String {
    broken
        .iter()
        .map(|v| v.message.as_str())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: Value) -> Vec<u8> {
        serde_json::to_vec(&v).unwrap()
    }

    fn good() -> Value {
        json!({
            "model": "kling-v3-motion-control",
            "image_url": "http://127.0.0.1:1/i.png",
            "video_url": "http://127.0.0.1:1/v.mp4",
            "character_orientation": "image",
            "mode": "std",
            "keep_original_sound": true,
            "prompt": "slow pan"
        })
    }

    fn with(key: &str, value: Value) -> Vec<u8> {
        let mut v = good();
        v[key] = value;
        body(v)
    }

    #[test]
    fn a_good_body_parses() {
        let req = parse(&body(good()), &PriceTable::default()).unwrap();
        assert_eq!(req.mode, Mode::Std);
        assert_eq!(req.orientation, Orientation::Image);
        assert!(req.sound);
        assert_eq!(req.rate, 113_168);
    }

    #[test]
    fn sound_takes_yes_and_no_too() {
        let p = PriceTable::default();
        assert!(
            !parse(&with("keep_original_sound", json!("no")), &p)
                .unwrap()
                .sound
        );
        assert!(
            parse(&with("keep_original_sound", json!("YES")), &p)
                .unwrap()
                .sound
        );
        assert!(parse(&with("keep_original_sound", json!("maybe")), &p).is_err());
    }

    #[test]
    fn each_bad_field_is_named() {
        let p = PriceTable::default();
        for (key, value, needle) in [
            ("model", json!("kling-v9"), "unknown model"),
            ("mode", json!("ultra"), "`mode`"),
            (
                "character_orientation",
                json!("sideways"),
                "character_orientation",
            ),
            ("prompt", json!("x".repeat(2501)), "2501 characters"),
            ("image_url", json!("file:///etc/passwd"), "image_url"),
            ("video_url", Value::Null, "`video_url` is required"),
        ] {
            let err = parse(&with(key, value), &p).unwrap_err();
            assert!(err.contains(needle), "{key}: {err}");
        }
        assert!(parse(&with("prompt", json!("é".repeat(2500))), &p).is_ok());
        assert!(
            parse(b"not json", &p)
                .unwrap_err()
                .contains("not valid JSON")
        );
    }
}
