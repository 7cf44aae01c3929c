//! `POST /api/v1/videos/generations`: check, fetch, probe, bill, answer (or not).
//!
//! Owns: parsing and validating the submit body, fetching `image_url` and `video_url` like the
//! provider does, applying the media input rules, and the order in which limits and submit faults
//! apply.
//!
//! May not: keep task state itself (the book does) or hold the book's lock across an `.await`.
//! The body is read in [`request`], the inputs fetched and checked in [`inputs`].
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
use bytes::Bytes;
use serde_json::json;
use tokio::time::Instant;

mod inputs;
mod request;
use inputs::fetched_inputs;
use request::{SubmitRequest, parse};

use super::config::{IdField, Phase};
use super::conn::Conn;
use super::faults::FaultKind;
use super::ledger::bump;
use super::server::{Shared, error};
use super::tasks::{Admit, AdmitRules, Failure, NewTask};

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
    if let Some(refused) = refused_before_body(&app, &headers, &conn) {
        return refused;
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
    if let Some(answered) = replayed_or_full(&app, key.as_deref()) {
        return answered;
    }
    let new = match fetched_inputs(&app, &req).await {
        Ok(inputs) => inputs.task(&app, &req, key),
        Err(refused) => return refused,
    };
    let now = Instant::now();
    let idx = match admit(&app, new, now) {
        Admitted::Created(idx) => idx,
        Admitted::Answered(answer) => return answer,
    };
    let (id, phase) = {
        let book = app.book();
        let task = book.task(idx);
        (task.id.clone(), task.phase(now).0)
    };
    app.note_accepted();
    if after_create(&app, &conn, idx, now).await == Reply::Cut {
        return StatusCode::OK.into_response();
    }
    answer(&app, &id, phase)
}

/// The refusals that come before the body is read, cheapest first: the key (401), an outage,
/// the storm fault and the rate limit (429), an injected reset or 5xx (nothing created). A
/// submit that arrives before a `Retry-After` this server gave has ended is counted.
fn refused_before_body(app: &Shared, headers: &HeaderMap, conn: &Conn) -> Option<Response> {
    if !app.authorized(headers) {
        return Some(app.unauthorized());
    }
    if let Some(down) = app.outage_answer(true) {
        return Some(down);
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
        return Some(app.too_many(
            std::time::Duration::from_secs(1),
            "too many requests; retry after the given time",
        ));
    }
    if let Some(limiter) = &app.limiter {
        let checked = limiter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .check(Instant::now());
        if let Err(wait) = checked {
            bump(&app.counters.rate_limited_429);
            return Some(app.too_many(
                wait,
                "submit rate limit reached; retry after the given time",
            ));
        }
    }
    if app.faults.roll(FaultKind::SubmitReset) {
        // Nothing created: the response is never written (see conn.rs).
        conn.cut();
        return Some(StatusCode::OK.into_response());
    }
    if app.faults.roll(FaultKind::Submit5xx) {
        return Some(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "SERVICE_UNAVAILABLE",
            "simulated upstream failure; nothing was created",
        ));
    }
    None
}

/// Cheap checks before fetching anything (both are checked again when the task is created):
/// a key seen before answers with its task, and a full in-flight cap refuses.
fn replayed_or_full(app: &Shared, key: Option<&str>) -> Option<Response> {
    let now = Instant::now();
    let mut book = app.book();
    if let Some(idx) = book.replay(key, app.cfg.honour_idempotency) {
        let task = book.task(idx);
        let (phase, _) = task.phase(now);
        let id = task.id.clone();
        drop(book);
        bump(&app.counters.submits_replayed);
        return Some(answer(app, &id, phase));
    }
    let cap = app.cfg.max_in_flight?;
    let (n, wait) = book.in_flight(now);
    if n < cap as usize {
        return None;
    }
    drop(book);
    bump(&app.counters.in_flight_refused_429);
    Some(app.too_many(wait, &format!("{cap} tasks already in flight")))
}

enum Admitted {
    Created(usize),
    /// Not created here: the answer says why, or names the twin's task.
    Answered(Response),
}

/// The task created and billed, or why not (a full cap, too little credit), or a twin request
/// that raced this one past the early check and made the task this one answers with.
fn admit(app: &Shared, new: NewTask, now: Instant) -> Admitted {
    let rules = AdmitRules {
        honour_idempotency: app.cfg.honour_idempotency,
        max_in_flight: app.cfg.max_in_flight,
        credit_balance: app.cfg.credit_balance,
    };
    let admitted = app.book().admit(now, new, rules);
    match admitted {
        Admit::Created(idx) => Admitted::Created(idx),
        Admit::Replayed(idx) => {
            let (id, phase) = {
                let book = app.book();
                let task = book.task(idx);
                (task.id.clone(), task.phase(now).0)
            };
            bump(&app.counters.submits_replayed);
            Admitted::Answered(answer(app, &id, phase))
        }
        Admit::InFlightFull(wait) => {
            bump(&app.counters.in_flight_refused_429);
            let cap = app.cfg.max_in_flight.unwrap_or_default();
            Admitted::Answered(app.too_many(wait, &format!("{cap} tasks already in flight")))
        }
        Admit::NoCredit { needed, left } => {
            bump(&app.counters.rejected_402);
            Admitted::Answered(error(
                StatusCode::PAYMENT_REQUIRED,
                "insufficient_quota",
                "INSUFFICIENT_CREDITS",
                &format!("this task costs {needed} credits and the account has {left} left"),
            ))
        }
    }
}

#[derive(PartialEq)]
enum Reply {
    Write,
    /// The connection was cut: the response is never written.
    Cut,
}

/// The faults a created task may meet: its generation failing, the answer cut after the bill,
/// or the answer slowed.
async fn after_create(app: &Shared, conn: &Conn, idx: usize, now: Instant) -> Reply {
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
        return Reply::Cut;
    }
    if app.faults.roll(FaultKind::SlowAnswer) {
        app.slow_down().await;
    }
    Reply::Write
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
