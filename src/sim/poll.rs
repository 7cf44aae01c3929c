//! `GET /api/v1/tasks/{id}`: a task's status, progress, clip link, error and usage.
//!
//! Owns: the poll answer's shape and the poll faults (reset, 5xx, slow, malformed JSON, unknown
//! status word, already-expired link).
//!
//! May not: change a task (the book settles tasks; a poll only reads and signs a fresh link).
//!
//! Shape: `{"id"|"task_id": .., "status": .., "progress": 0-100, "model", "mode",
//! "keep_original_sound", "output": {"video_urls": [url]}` (completed), `"error": {"message",
//! "code"}` (failed), `"usage": {"billed_seconds", "credits", "refunded"}}`. The id key follows
//! the submit variant (`id`, or `task_id` for both `task_id` variants); the rest stays at the top
//! level in every variant.

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::config::{IdField, Phase};
use super::conn::Conn;
use super::faults::FaultKind;
use super::files;
use super::ledger::bump;
use super::server::{Shared, error};

/// The word a `unknown_status` fault answers; no gateway family uses it.
pub const UNKNOWN_STATUS_WORD: &str = "warming_up";

pub async fn poll(
    State(app): State<Shared>,
    ConnectInfo(conn): ConnectInfo<Conn>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !app.authorized(&headers) {
        return app.unauthorized();
    }
    if let Some(down) = app.outage_answer(false) {
        return down;
    }
    bump(&app.counters.polls);
    if app.faults.roll(FaultKind::PollReset) {
        conn.cut();
        return StatusCode::OK.into_response();
    }
    if app.faults.roll(FaultKind::Poll5xx) {
        return error(
            StatusCode::BAD_GATEWAY,
            "server_error",
            "BAD_GATEWAY",
            "simulated upstream failure; poll again",
        );
    }
    let now = Instant::now();
    let base = app.public_base(&headers);
    let body = {
        let mut book = app.book();
        book.settle(now);
        let Some(idx) = book.index_of(&id) else {
            drop(book);
            bump(&app.counters.polls_unknown_404);
            return error(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "TASK_NOT_FOUND",
                &format!("no task `{id}`"),
            );
        };
        let task = book.task(idx);
        let (phase, progress) = task.phase(now);
        let id_key = match app.cfg.id_field {
            IdField::Id => "id",
            IdField::TaskId | IdField::DataTaskId => "task_id",
        };
        let sound = if app.cfg.sound_as_yes_no {
            json!(if task.sound { "yes" } else { "no" })
        } else {
            json!(task.sound)
        };
        let mut body = json!({
            id_key: task.id,
            "status": app.cfg.status_words.word(phase),
            "progress": progress,
            "model": task.model,
            "mode": task.mode,
            "character_orientation": task.orientation,
            "keep_original_sound": sound,
            "prompt": task.prompt,
            // reAPI's documented fields: creation time in Unix seconds, and `error: null`.
            "created_at": unix_seconds_at(task.created, now),
            "error": null,
            "usage": {
                "billed_seconds": task.billed_seconds,
                "credits": task.credits,
                "refunded": task.refunded,
            },
        });
        match phase {
            Phase::Completed => {
                let expired = app.faults.roll(FaultKind::ExpiredLink);
                let url = files::sign_link(&app, &base, &task.id, now, expired);
                body["output"] = json!({ "video_urls": [url] });
            }
            Phase::Failed => {
                if let Some(f) = &task.failure {
                    body["error"] = json!({
                        "code": GENERATION_FAILED_CODE,
                        "message": f.message,
                        "request_id": format!("req_{}", task.id),
                        "name": f.code,
                    });
                }
            }
            Phase::Pending | Phase::Processing => {}
        }
        body
    };
    let mut body = body;
    if app.faults.roll(FaultKind::UnknownStatus) {
        body["status"] = Value::from(UNKNOWN_STATUS_WORD);
    }
    let mut text = body.to_string();
    if app.faults.roll(FaultKind::MalformedJson) {
        // Cut the document in half: a client must not take a half answer for a whole one.
        let mut cut = text.len() / 2;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    if app.faults.roll(FaultKind::SlowAnswer) {
        app.slow_down().await;
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        text,
    )
        .into_response()
}

/// The code a failed generation carries in the simulator's error envelope.
const GENERATION_FAILED_CODE: u32 = 60001;

/// The wall-clock second at which `then` (on tokio's clock, which tests may pause) happened.
fn unix_seconds_at(then: Instant, now: Instant) -> u64 {
    let ago = now.saturating_duration_since(then);
    std::time::SystemTime::now()
        .checked_sub(ago)
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}
