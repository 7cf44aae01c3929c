//! The dashboard: a person's view of the batches in a browser, served by the daemon on its
//! listen address, or by `recast dashboard` for a state folder without one.
//!
//! Owns: its routes, its access rules and its state. A batch list; a batch page with a grid of
//! subjects (image thumbnail, state, cost, error, the clip playable inline), a page of a hundred
//! at a time, kept live by a few lines of plain JS; actions (pause, resume, cancel, retry with its price first, approve a
//! canary) as POSTs carrying a per-process CSRF token. Loopback needs nothing more; any other
//! address needs a token (`RECAST_DASHBOARD_TOKEN`), given once at `/login?token=...`.
//!
//! - `pages.rs`: the HTML (maud), `files.rs`: thumbnails and clips, `actions.rs`: the POSTs.
//!
//! No handler touches the store on a tokio worker: reads run on the blocking pool, changes on
//! the store's thread (the daemon's one writer).
//!
//! May not: hold SQL (the store does), or serve a file it did not record: thumbnails come from
//! the subject images the store recorded and clips from the paths it landed, each opened
//! without following links.

mod actions;
mod files;
mod pages;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::store::Store;

/// What every handler shares.
pub struct Dashboard {
    store: Arc<Store>,
    /// Put in every form; a POST without it is refused (a page elsewhere cannot read it).
    csrf: String,
    /// Required (as a cookie) when listening beyond loopback.
    token: Option<String>,
    /// Whether `retry --unknown` re-sends under the same key (the provider honours it).
    trust_idempotency: bool,
    thumbs: files::ThumbCache,
}

pub type Shared = Arc<Dashboard>;

/// Store reads for a page, on tokio's blocking pool and a read connection: a batch's rows may
/// be many, and a worker that read them would hold up every task scheduled on it.
async fn read<T, F>(d: &Shared, read: F) -> Result<T, crate::store::StoreError>
where
    F: FnOnce(&Store) -> Result<T, crate::store::StoreError> + Send + 'static,
    T: Send + 'static,
{
    let store = Arc::clone(&d.store);
    tokio::task::spawn_blocking(move || read(&store))
        .await
        .unwrap_or_else(|e| match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(_) => Err(crate::store::StoreError::Io {
                what: "read the state folder".into(),
                source: std::io::Error::other("the daemon is stopping"),
            }),
        })
}

/// A person's change to a batch, on the store's thread: the daemon's one writer, so a button
/// never waits for the writer's lock on a worker.
async fn write<T, F>(d: &Shared, write: F) -> Result<T, crate::store::StoreError>
where
    F: FnOnce(&Store) -> Result<T, crate::store::StoreError> + Send + 'static,
    T: Send + 'static,
{
    d.store.off_runtime(write).await
}

#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    #[error(
        "the dashboard listens on {0}, beyond this machine: set RECAST_DASHBOARD_TOKEN (a long \
         random string) so only people with it get in, or listen on 127.0.0.1"
    )]
    NeedsToken(SocketAddr),
}

impl Dashboard {
    /// For a dashboard on `listen`: a token is required beyond loopback.
    pub fn new(
        store: Arc<Store>,
        listen: SocketAddr,
        token: Option<String>,
        trust_idempotency: bool,
    ) -> Result<Shared, DashboardError> {
        let token = token.filter(|t| !t.trim().is_empty());
        if !listen.ip().is_loopback() && token.is_none() {
            return Err(DashboardError::NeedsToken(listen));
        }
        Ok(Arc::new(Dashboard {
            store,
            csrf: hex::encode(rand::random::<[u8; 16]>()),
            token,
            trust_idempotency,
            thumbs: files::ThumbCache::default(),
        }))
    }
}

/// The dashboard's routes (merged into the daemon's, or served alone).
pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/", get(pages::batch_list))
        .route("/batches/{id}", get(pages::batch_page))
        .route("/batches/{id}/grid", get(pages::grid))
        .route("/batches/{id}/retry", get(pages::retry_page))
        .route("/batches/{id}/{action}", post(actions::act))
        .route("/thumbs/{id}/{key}", get(files::thumbnail))
        .route("/clips/{id}/{key}", get(files::clip))
        .route("/login", get(login))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ))
        .with_state(state)
}

/// The standalone server of `recast dashboard`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Shared,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

const TOKEN_COOKIE: &str = "recast_dashboard";

/// Equal without telling how much of it was equal by how long it took.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

async fn require_token(State(d): State<Shared>, request: Request, next: Next) -> Response {
    let Some(token) = &d.token else {
        return next.run(request).await;
    };
    if request.uri().path() == "/login" {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| {
            c.trim()
                .strip_prefix(&format!("{TOKEN_COOKIE}="))
                .map(str::to_owned)
        })
        .any(|c| same(&c, token));
    if presented {
        next.run(request).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            "this dashboard needs its token: open /login?token=... once\n",
        )
            .into_response()
    }
}

#[derive(serde::Deserialize)]
struct LoginQuery {
    token: String,
}

async fn login(
    State(d): State<Shared>,
    axum::extract::Query(q): axum::extract::Query<LoginQuery>,
) -> Response {
    match &d.token {
        Some(token) if same(&q.token, token) => (
            StatusCode::SEE_OTHER,
            [
                (header::LOCATION, "/".to_owned()),
                (
                    header::SET_COOKIE,
                    format!("{TOKEN_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/"),
                ),
            ],
        )
            .into_response(),
        Some(_) => (StatusCode::UNAUTHORIZED, "wrong token\n").into_response(),
        None => (StatusCode::SEE_OTHER, [(header::LOCATION, "/".to_owned())]).into_response(),
    }
}

#[cfg(test)]
mod tests;
