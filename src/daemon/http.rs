//! The daemon's HTTP endpoint (loopback by default): `/healthz`, `/metrics`, and the dashboard
//! (`crate::dashboard`) at `/`.
//!
//! Owns: the routes and the metrics' names, help and labels. Every number but the account's
//! balance (last read by `balance.rs`) is read from the store at scrape time, through the same queries `recast status` uses, so a scrape and
//! `recast status --json` always agree, across restarts too. The exposition format is
//! prometheus-client's (OpenMetrics text, which Prometheus reads).
//!
//! May not: change anything: every route here is read-only (the dashboard's actions are its own).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use super::DaemonError;
use super::balance::BalanceGauge;
use crate::store::{JobState, Store, StoreError};

/// A clip link expiring sooner than this, still not downloaded, is "at risk".
pub const LINK_RISK_HORIZON_MS: i64 = 60 * 60 * 1000;

/// Bind `addr` (before anything else starts, so a taken port fails the daemon at once).
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, DaemonError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| DaemonError::Listen { addr, source })
}

#[derive(Clone)]
struct Shared {
    store: Arc<Store>,
    balance: BalanceGauge,
}

pub async fn serve(
    listener: tokio::net::TcpListener,
    store: Arc<Store>,
    balance: BalanceGauge,
    dashboard: Option<crate::dashboard::Shared>,
    shutdown: CancellationToken,
) -> Result<(), DaemonError> {
    let mut app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(Shared { store, balance });
    if let Some(dashboard) = dashboard {
        app = app.merge(crate::dashboard::router(dashboard));
    }
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .map_err(|source| DaemonError::Serve { source })?;
    tracing::info!("http endpoint stopped");
    Ok(())
}

async fn healthz(State(Shared { store, .. }): State<Shared>) -> impl IntoResponse {
    match tokio::task::spawn_blocking(move || store.all_in_flight()).await {
        Ok(Ok(_)) => (StatusCode::OK, "ok\n".to_owned()),
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("store: {e}\n")),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
    }
}

async fn metrics(State(Shared { store, balance }): State<Shared>) -> impl IntoResponse {
    match tokio::task::spawn_blocking(move || render(&store, balance.get())).await {
        Ok(Ok(text)) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("store: {e}\n")).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

type Labels = Vec<(&'static str, String)>;

fn family() -> Family<Labels, Gauge> {
    Family::default()
}

/// The whole exposition, read from the store now (and the balance last read, if any).
pub fn render(store: &Store, balance: Option<u64>) -> Result<String, StoreError> {
    let jobs = family();
    let sent = family();
    let rate_limited = family();
    let retries = family();
    let spent = family();
    let refunded = family();
    let uncertain = family();
    let paused = family();
    for id in store.batch_ids_named(None)? {
        let s = store.batch_summary(id)?;
        let c = store.submit_counts(id)?;
        let batch: Labels = vec![("batch", s.name.clone()), ("provider", s.provider.clone())];
        for state in JobState::ALL {
            let mut labels = batch.clone();
            labels.push(("state", state.as_str().to_owned()));
            jobs.get_or_create(&labels).set(s.counts.get(state) as i64);
        }
        sent.get_or_create(&batch).set(c.sent as i64);
        rate_limited
            .get_or_create(&batch)
            .set(c.rate_limited as i64);
        retries.get_or_create(&batch).set(c.retries as i64);
        spent.get_or_create(&batch).set(s.credits_spent as i64);
        refunded
            .get_or_create(&batch)
            .set(s.credits_refunded as i64);
        uncertain
            .get_or_create(&batch)
            .set(s.credits_uncertain as i64);
        paused.get_or_create(&batch).set(i64::from(s.paused));
    }
    let now = crate::store::now_ms();
    let in_flight = Gauge::<i64>::default();
    in_flight.set(store.all_in_flight()? as i64);
    let oldest = Gauge::<f64, AtomicU64>::default();
    oldest.set(
        store
            .oldest_pending_since()?
            .map_or(0.0, |since| (now - since).max(0) as f64 / 1000.0),
    );
    let at_risk = Gauge::<i64>::default();
    at_risk.set(store.links_expiring_before(now + LINK_RISK_HORIZON_MS)? as i64);

    let mut r = Registry::with_prefix("recast");
    r.register("jobs", "Jobs by batch and state", jobs);
    r.register(
        "submits",
        "Submit requests sent to the provider, by batch",
        sent,
    );
    r.register(
        "submits_rate_limited",
        "Submits the provider refused with 429, by batch",
        rate_limited,
    );
    r.register(
        "submit_retries",
        "Submits that were not the job's first try (after a failed task or a refused submit)",
        retries,
    );
    r.register(
        "credits_spent",
        "Credits of accepted tasks (upper-bound estimates; 1000 credits = 1 USD)",
        spent,
    );
    r.register(
        "credits_refunded",
        "Credits of tasks the provider failed and refunds",
        refunded,
    );
    r.register(
        "credits_uncertain",
        "Credits of submits whose outcome is unknown (possibly billed)",
        uncertain,
    );
    r.register("batch_paused", "1 when the batch is paused", paused);
    r.register(
        "tasks_in_flight",
        "Tasks submitted and not yet finished (what the in-flight cap counts)",
        in_flight,
    );
    r.register(
        "oldest_pending_job_age_seconds",
        "Age of the oldest job waiting to be submitted (0 when none waits)",
        oldest,
    );
    r.register(
        "links_at_risk",
        "Finished clips not yet downloaded whose link expires within the hour",
        at_risk,
    );
    if let Some(credits) = balance {
        let gauge = Gauge::<i64>::default();
        gauge.set(i64::try_from(credits).unwrap_or(i64::MAX));
        r.register(
            "account_balance_credits",
            "The provider account's balance, as last read (every 5 minutes; 1000 credits = 1 USD)",
            gauge,
        );
    }
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &r)
        .expect("writing to a String cannot fail");
    Ok(text)
}
