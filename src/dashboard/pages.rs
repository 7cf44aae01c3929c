//! The dashboard's pages, server-rendered with maud (every value escaped): the batch list, a
//! batch's page and its grid, a page of [`PAGE_CARDS`] cards at a time (also served alone, for
//! the page's live updates), and the retry page that shows the price before anything is sent
//! back.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::Shared;
use crate::store::{BatchSummary, JobRow, JobState, RetrySelection};

const STYLE: &str = include_str!("style.css");
const LIVE_JS: &str = include_str!("live.js");

fn usd(credits: u64) -> String {
    format!("{:.3}", credits as f64 / 1000.0)
}

fn page(title: &str, body: Markup) -> Html<String> {
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (title) " · recast" }
                    style { (PreEscaped(STYLE)) }
                }
                body {
                    header { a href="/" { "recast" } " · " (title) }
                    main { (body) }
                }
            }
        }
        .into_string(),
    )
}

pub(super) fn failure(e: impl std::fmt::Display) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("the state folder: {e}\n"),
    )
        .into_response()
}

fn money(s: &BatchSummary) -> String {
    let spent = usd(s.credits_spent);
    let simulated = if s.provider == "simulator" {
        " (simulated)"
    } else {
        ""
    };
    match s.budget_credits {
        Some(b) => format!("{spent} of {} USD{simulated}", usd(b)),
        None => format!("{spent} USD{simulated}"),
    }
}

pub(super) async fn batch_list(State(d): State<Shared>) -> Response {
    let summaries: Result<Vec<BatchSummary>, _> = super::read(&d, |store| {
        let ids = store.batch_ids_named(None)?;
        ids.into_iter().map(|id| store.batch_summary(id)).collect()
    })
    .await;
    let summaries = match summaries {
        Ok(s) => s,
        Err(e) => return failure(e),
    };
    page(
        "batches",
        html! {
            @if summaries.is_empty() { p { "No batches yet." } }
            table.batches {
                thead { tr { th { "batch" } th { "provider" } th { "progress" } th { "spend" } th { "states" } } }
                tbody {
                    @for s in &summaries {
                        @let c = &s.counts;
                        @let total = c.total() - c.get(JobState::Cancelled);
                        tr {
                            td {
                                a href={ "/batches/" (s.id) } { (s.name) }
                                @if s.cancelled { " " span.tag { "cancelled" } }
                                @else if s.paused { " " span.tag { "paused" } }
                                @if s.awaiting_approval > 0 { " " span.tag { "canary: approve" } }
                            }
                            td { (s.provider) }
                            td { progress max=(total.max(1)) value=(c.get(JobState::Done)) {} " " (c.get(JobState::Done)) "/" (total) }
                            td { (money(s)) }
                            td {
                                @for st in JobState::ALL {
                                    @if c.get(st) > 0 { span class={ "state " (st.as_str()) } { (c.get(st)) " " (st.as_str()) } " " }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
    .into_response()
}

/// Cards on one page of a batch's grid: a page a browser renders and refreshes at once, however
/// large the batch.
pub(super) const PAGE_CARDS: u64 = 100;

/// `?page=N` (from 1) of a batch's grid.
#[derive(serde::Deserialize, Default)]
pub(super) struct PageQuery {
    #[serde(default)]
    page: Option<u64>,
}

/// Which page to show of a batch of `jobs`: the one asked for, within the batch; and how many.
fn page_of(q: &PageQuery, jobs: u64) -> (u64, u64) {
    let pages = jobs.div_ceil(PAGE_CARDS).max(1);
    (q.page.unwrap_or(1).clamp(1, pages), pages)
}

pub(super) async fn batch_page(
    State(d): State<Shared>,
    Path(id): Path<i64>,
    Query(q): Query<PageQuery>,
) -> Response {
    let read = super::read(&d, move |store| {
        let s = store.batch_summary(id)?;
        let (at, pages) = page_of(&q, s.counts.total());
        let rows = store.job_rows_page(id, (at - 1) * PAGE_CARDS, PAGE_CARDS)?;
        Ok((s, rows, at, pages))
    });
    let (s, rows, at, pages) = match read.await {
        Ok(read) => read,
        Err(e) => return failure(e),
    };
    let csrf = &d.csrf;
    let action = |name: &str, label: &str| {
        html! {
            form method="post" action={ "/batches/" (id) "/" (name) } {
                input type="hidden" name="csrf" value=(csrf);
                button type="submit" data-action=(name) { (label) }
            }
        }
    };
    page(
        &s.name,
        html! {
            section.summary {
                h1 { (s.name) }
                p {
                    (s.provider) " · " (s.counts.get(JobState::Done)) " done of "
                    (s.counts.total() - s.counts.get(JobState::Cancelled)) " · " (money(&s))
                    @if s.cancelled { " · " strong { "CANCELLED" } }
                    @else if s.paused { " · " strong { "PAUSED" } }
                }
                @if s.awaiting_approval > 0 {
                    p.canary { "Canary: " (s.awaiting_approval) " subjects wait until you approve the first clips." }
                }
                div.actions {
                    @if s.paused { (action("resume", "Resume")) } @else { (action("pause", "Pause")) }
                    @if s.cancelled { (action("resume", "Resume (undo cancel)")) } @else { (action("cancel", "Cancel")) }
                    @if s.awaiting_approval > 0 { (action("approve", "Approve the canary")) }
                    a.button href={ "/batches/" (id) "/retry" } { "Retry…" }
                }
            }
            @if pages > 1 { (pager(id, at, pages, s.counts.total())) }
            div #grid data-batch=(id) data-page=(at) { (cards(id, &rows)) }
            @if pages > 1 { (pager(id, at, pages, s.counts.total())) }
            script { (PreEscaped(LIVE_JS)) }
        },
    )
    .into_response()
}

/// "jobs 101 to 200 of 250" and the links to the pages around it.
fn pager(id: i64, at: u64, pages: u64, jobs: u64) -> Markup {
    let first = (at - 1) * PAGE_CARDS + 1;
    let last = (at * PAGE_CARDS).min(jobs);
    let link = |to: u64, label: &str| {
        html! { a.page href={ "/batches/" (id) "?page=" (to) } { (label) } }
    };
    html! {
        nav.pages {
            @if at > 1 { (link(1, "« first")) " " (link(at - 1, "‹ previous")) " " }
            span { "jobs " (first) " to " (last) " of " (jobs) " · page " (at) " of " (pages) }
            @if at < pages { " " (link(at + 1, "next ›")) " " (link(pages, "last »")) }
        }
    }
}

fn cards(id: i64, rows: &[JobRow]) -> Markup {
    html! {
        @for r in rows {
            div class={ "card " (r.state.as_str()) } data-key=(r.job_key) data-v={ (r.updated_at) "-" (r.state.as_str()) } {
                img.thumb src={ "/thumbs/" (id) "/" (r.job_key) } alt={ "subject " (r.subject) } loading="lazy";
                div.meta {
                    strong { (r.subject) }
                    span class={ "state " (r.state.as_str()) } { (r.state.as_str()) }
                    @if let Some(c) = r.credits_estimated { span.cost { (usd(c)) " USD" } }
                }
                @if r.clip.is_some() {
                    video controls preload="metadata" src={ "/clips/" (id) "/" (r.job_key) } {}
                }
                @if let Some(e) = &r.error {
                    p.error {
                        (e)
                        @if let Some(code) = &r.error_code { " [code " (code) "]" }
                        @if let Some(req) = &r.request_id { " [request " (req) "]" }
                    }
                }
            }
        }
    }
}

/// One page of the grid alone (the page's live updates ask for the page they show).
pub(super) async fn grid(
    State(d): State<Shared>,
    Path(id): Path<i64>,
    Query(q): Query<PageQuery>,
) -> Response {
    let read = super::read(&d, move |store| {
        let (at, _) = page_of(&q, store.batch_summary(id)?.counts.total());
        store.job_rows_page(id, (at - 1) * PAGE_CARDS, PAGE_CARDS)
    });
    match read.await {
        Ok(rows) => Html(cards(id, &rows).into_string()).into_response(),
        Err(e) => failure(e),
    }
}

#[derive(serde::Deserialize, Default)]
pub(super) struct RetryQuery {
    #[serde(default)]
    failed: bool,
    #[serde(default)]
    expired: bool,
    #[serde(default)]
    unknown: bool,
}

impl RetryQuery {
    pub(super) fn selection(&self) -> RetrySelection {
        RetrySelection {
            failed: self.failed,
            expired: self.expired,
            unknown: self.unknown,
            ..Default::default()
        }
    }
}

/// The price of a retry before it happens; the form that confirms it.
pub(super) async fn retry_page(
    State(d): State<Shared>,
    Path(id): Path<i64>,
    Query(q): Query<RetryQuery>,
) -> Response {
    let which = q.selection();
    let chosen = q.failed || q.expired || q.unknown;
    let trust = d.trust_idempotency;
    let read = super::read(&d, move |store| {
        let price = store.retry_price(id, which, trust)?;
        let name = store.batch_summary(id).map(|s| s.name).unwrap_or_default();
        Ok((price, name))
    });
    let (price, name) = match read.await {
        Ok(read) => read,
        Err(e) => return failure(e),
    };
    page(
        &format!("retry {name}"),
        html! {
            form method="get" action={ "/batches/" (id) "/retry" } {
                label { input type="checkbox" name="failed" value="true" checked[q.failed]; " failed" }
                label { input type="checkbox" name="expired" value="true" checked[q.expired]; " expired" }
                label { input type="checkbox" name="unknown" value="true" checked[q.unknown]; " unknown" }
                button type="submit" { "Show the price" }
            }
            @if chosen {
                p.price {
                    (price.jobs) " jobs go back to work; " (price.submits) " of them are submitted again, at most "
                    (price.credits) " credits ≈ " (usd(price.credits)) " USD."
                }
                form method="post" action={ "/batches/" (id) "/retry" } {
                    input type="hidden" name="csrf" value=(d.csrf);
                    input type="hidden" name="failed" value=(q.failed);
                    input type="hidden" name="expired" value=(q.expired);
                    input type="hidden" name="unknown" value=(q.unknown);
                    @if price.may_bill_twice > 0 {
                        p.warning { (price.may_bill_twice) " of them may be billed a second time: their first task may exist (paid)." }
                        label { input type="checkbox" name="yes" value="true"; " I accept that" }
                    }
                    button type="submit" data-action="retry" { "Retry at this price" }
                }
            }
        },
    )
    .into_response()
}
