//! The simulator's HTTP surface: shared state, routes, bearer-key check and error answers.
//!
//! Owns: [`App`] (everything the handlers share), the router, and the small helpers every
//! handler uses (auth, JSON error bodies, 429 answers, slow-answer delays).
//!
//! May not: hold the book's lock across an `.await`, or answer in a shape `REAPI.md` does not
//! describe. The handlers themselves live in `submit.rs`, `poll.rs` and `files.rs`.

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::config::SimConfig;
use super::faults::FaultPlan;
use super::ledger::{Counters, Ledger, Stats, bump};
use super::limits::{RateLimiter, retry_after_value};
use super::tasks::Book;
use super::{files, poll, submit};

/// Everything the handlers share.
#[derive(Debug)]
pub struct App {
    pub cfg: SimConfig,
    pub book: Mutex<Book>,
    pub limiter: Option<Mutex<RateLimiter>>,
    /// The latest end of a `Retry-After` given: a submit before it is counted as early.
    pub retry_deadline: Mutex<Option<Instant>>,
    pub faults: FaultPlan,
    pub counters: Counters,
    /// The client that fetches `image_url` and `video_url`, as the provider would.
    pub http: reqwest::Client,
    /// Signs clip links, so a link cannot be forged or its expiry edited.
    pub secret: [u8; 32],
    /// Makes every link handed out distinct, even two in the same millisecond.
    pub link_nonce: AtomicU64,
    /// The zero of the clip links' expiry times, on the simulator's clock.
    pub epoch: Instant,
    pub base_url: String,
    /// `media_dir`, canonicalised: served paths must stay under it.
    pub media_root: Option<PathBuf>,
    pub cancel: CancellationToken,
}

pub type Shared = Arc<App>;

impl App {
    pub fn book(&self) -> MutexGuard<'_, Book> {
        // A panic while holding the lock leaves the book consistent (every method is a few
        // plain updates), so a poisoned lock is taken over rather than taking the server down.
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn ledger(&self) -> Ledger {
        self.book().ledger(Instant::now())
    }

    pub fn stats(&self) -> Stats {
        self.counters.snapshot(&self.faults)
    }

    /// Does the request carry `Authorization: Bearer <the key>`?
    pub fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        let Some((scheme, key)) = value.trim().split_once(' ') else {
            return false;
        };
        scheme.eq_ignore_ascii_case("bearer") && key.trim() == self.cfg.api_key
    }

    /// The 401 answer, counted.
    pub fn unauthorized(&self) -> Response {
        bump(&self.counters.rejected_401);
        error(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "INVALID_API_KEY",
            "missing or wrong API key: send `Authorization: Bearer <key>`",
        )
    }

    /// A 429 with `Retry-After` in the configured format.
    pub fn too_many(&self, wait: Duration, message: &str) -> Response {
        let mut resp = error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            "RATE_LIMITED",
            message,
        );
        // What the header says, whole seconds rounded up: the client may come back after it.
        let said = Duration::from_secs(wait.as_millis().div_ceil(1000).max(1) as u64);
        {
            let mut deadline = self
                .retry_deadline
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let end = Instant::now() + said;
            *deadline = Some(deadline.map_or(end, |d| d.max(end)));
        }
        if let Ok(v) = HeaderValue::from_str(&retry_after_value(self.cfg.retry_after, wait)) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }

    /// During `--fault-outage`, the 503 every API call gets (counted; `submit` says whether
    /// the call is a submit).
    pub fn outage_answer(&self, submit: bool) -> Option<Response> {
        let outage = self.cfg.faults.outage?;
        if !outage.covers(self.epoch.elapsed()) {
            return None;
        }
        bump(&self.counters.outage_calls);
        if submit {
            bump(&self.counters.outage_submits);
        }
        Some(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "SERVICE_UNAVAILABLE",
            "the service is unavailable (simulated outage); nothing was created",
        ))
    }

    /// A submit created a task: the first after an outage notes how long after its end.
    pub fn note_accepted(&self) {
        bump(&self.counters.submits_accepted);
        let Some(ago) = self
            .cfg
            .faults
            .outage
            .and_then(|o| o.ended_ago(self.epoch.elapsed()))
        else {
            return;
        };
        let _ = self.counters.first_accept_after_outage.compare_exchange(
            0,
            ago.as_millis() as u64 + 1,
            std::sync::atomic::Ordering::Relaxed,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// With `rate_limit_headers`, what is left of the submit quota, as the IETF draft spells it
    /// (`RateLimit-Policy: "default";q=600;w=60`, `RateLimit: "default";r=0;t=1`).
    pub fn rate_limit_headers(&self, headers: &mut HeaderMap) {
        let (true, Some(rate), Some(limiter)) = (
            self.cfg.rate_limit_headers,
            self.cfg.submit_rate_per_min,
            &self.limiter,
        ) else {
            return;
        };
        let (left, wait) = limiter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remaining(Instant::now());
        let secs = wait.as_millis().div_ceil(1000) as u64;
        for (name, value) in [
            ("ratelimit-policy", format!("\"default\";q={rate};w=60")),
            ("ratelimit", format!("\"default\";r={left};t={secs}")),
        ] {
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(name, v);
            }
        }
    }

    /// Hold an answer for the slow-answer delay (cut short when the simulator shuts down).
    pub async fn slow_down(&self) {
        tokio::select! {
            _ = tokio::time::sleep(self.cfg.slow_delay) => {}
            _ = self.cancel.cancelled() => {}
        }
    }

    /// The base URL clients used to reach us (from `Host`), so links work from their side.
    pub fn public_base(&self, headers: &HeaderMap) -> String {
        headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()))
            .map_or_else(|| self.base_url.clone(), |h| format!("http://{h}"))
    }
}

/// An error answer in reAPI's documented envelope,
/// `{"error": {"code": 20001, "message", "request_id": "req_..."}}`: a five-digit code whose
/// first digit is its family. `kind` and `name` (`type`, `name`) are what other gateways send.
pub fn error(status: StatusCode, kind: &str, name: &str, message: &str) -> Response {
    let code: u32 = match status.as_u16() {
        401 | 403 if kind == "authentication_error" => 10001,
        400 | 422 => 20001,
        402 => 30001,
        403 | 404 => 20004,
        429 => 50001,
        _ => 90001,
    };
    let request_id = format!("req_{:016x}", rand::random::<u64>());
    let body = serde_json::json!({
        "error": {
            "code": code, "message": message, "request_id": request_id,
            "type": kind, "name": name,
        }
    });
    (status, Json(body)).into_response()
}

pub fn router(app: Shared) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/api/v1/videos/generations", post(submit::submit))
        .route("/api/v1/tasks/{id}", get(poll::poll))
        .route("/api/v1/balance", get(balance))
        .route("/clips/{id}/{token}", get(files::clip))
        .route("/media/{*path}", get(files::media))
        .route("/sim/ledger", get(ledger))
        .route("/sim/stats", get(stats))
        .with_state(app)
}

async fn index(State(app): State<Shared>) -> String {
    format!(
        "recast sim: a local simulator of the reAPI Kling Motion Control gateway.\n\
         POST {base}/api/v1/videos/generations   submit (Authorization: Bearer <key>)\n\
         GET  {base}/api/v1/tasks/{{id}}           poll\n\
         GET  {base}/api/v1/balance               the account's balance in credits\n\
         GET  {base}/media/...                    the media folder{media}\n\
         GET  {base}/sim/ledger                   what was billed and refunded\n\
         GET  {base}/sim/stats                    requests, refusals and injected faults\n",
        base = app.base_url,
        media = if app.media_root.is_some() {
            ""
        } else {
            " (none: start with --media-dir)"
        }
    )
}

/// The account's balance in whole credits, as reAPI documents it: `{"balance": 12500}`. An
/// account without a set balance starts at a billion credits.
async fn balance(State(app): State<Shared>, headers: HeaderMap) -> Response {
    if !app.authorized(&headers) {
        return app.unauthorized();
    }
    if let Some(down) = app.outage_answer(false) {
        return down;
    }
    let start = app.cfg.credit_balance.unwrap_or(UNLIMITED_BALANCE);
    let spent = app.book().spent(Instant::now());
    Json(serde_json::json!({ "balance": start.saturating_sub(spent) })).into_response()
}

/// What the balance endpoint starts from when no balance was set.
pub const UNLIMITED_BALANCE: u64 = 1_000_000_000;

async fn ledger(State(app): State<Shared>) -> Json<Ledger> {
    Json(app.ledger())
}

async fn stats(State(app): State<Shared>) -> Json<Stats> {
    Json(app.stats())
}
