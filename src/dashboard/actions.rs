//! The dashboard's actions: pause, resume (which also undoes a cancel), cancel, retry (after
//! its price was shown, and with an explicit yes when it may bill twice) and approve a canary.
//! Each is a POST that must carry the page's CSRF token, and, when the browser says where it
//! comes from, come from this dashboard.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::Shared;
use crate::store::RetrySelection;

#[derive(serde::Deserialize)]
pub(super) struct ActionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    failed: bool,
    #[serde(default)]
    expired: bool,
    #[serde(default)]
    unknown: bool,
    #[serde(default)]
    yes: bool,
}

/// A browser's word on where a request comes from, when it gives one.
fn cross_site(headers: &HeaderMap) -> bool {
    let site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("same-origin");
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin_host = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .and_then(|o| url::Url::parse(o).ok())
        .and_then(|u| {
            u.host_str()
                .map(|h| u.port().map_or(h.to_owned(), |p| format!("{h}:{p}")))
        });
    !matches!(site, "same-origin" | "none")
        || matches!((origin_host, host), (Some(o), Some(h)) if o != h)
}

pub(super) async fn act(
    State(d): State<Shared>,
    Path((id, action)): Path<(i64, String)>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<ActionForm>,
) -> Response {
    if !super::same(&form.csrf, &d.csrf) || cross_site(&headers) {
        return (
            StatusCode::FORBIDDEN,
            "refused: this form did not come from this dashboard (reload the page)\n",
        )
            .into_response();
    }
    let trust = d.trust_idempotency;
    let done = match action.as_str() {
        "pause" => super::write(&d, move |store| store.set_paused(Some(id), true).map(drop)).await,
        // Resume also undoes a person's cancel, like `recast resume BATCH`.
        "resume" => {
            super::write(&d, move |store| {
                store.set_paused(Some(id), false)?;
                if store.batch_summary(id)?.cancelled {
                    store.uncancel(id)?;
                }
                Ok(())
            })
            .await
        }
        "cancel" => super::write(&d, move |store| store.cancel(id, false).map(drop)).await,
        "approve" => super::write(&d, move |store| store.approve(id).map(drop)).await,
        "retry" => {
            let which = RetrySelection {
                failed: form.failed,
                expired: form.expired,
                unknown: form.unknown,
                ..Default::default()
            };
            let consented = form.yes;
            // Priced and sent back in one call on the writer's thread: no other change to
            // the batch comes between the price and the retry.
            let retried = super::write(&d, move |store| {
                let price = store.retry_price(id, which, trust)?;
                if price.may_bill_twice > 0 && !consented {
                    return Ok(false);
                }
                store.retry(id, which, trust).map(|_| true)
            })
            .await;
            match retried {
                Ok(false) => {
                    return (
                        StatusCode::CONFLICT,
                        "this retry may bill a clip twice: go back and tick \"I accept that\"\n",
                    )
                        .into_response();
                }
                other => other.map(drop),
            }
        }
        _ => return (StatusCode::NOT_FOUND, "no such action\n").into_response(),
    };
    match done {
        Ok(()) => {
            tracing::info!(batch = id, action = %action, "dashboard action");
            (
                StatusCode::SEE_OTHER,
                [(header::LOCATION, format!("/batches/{id}"))],
            )
                .into_response()
        }
        Err(e) => super::pages::failure(e),
    }
}
