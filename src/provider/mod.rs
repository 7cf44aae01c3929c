//! The provider client: reAPI's Kling Motion Control wire format over HTTP.
//!
//! Owns: the submit and poll requests, tolerant parsing of their answers (the id may come as
//! `id`, `task_id` or `data.task_id`; status words come in several families), and the
//! classification of every failure into what the engine must do about it ([`ProviderError`]).
//!
//! May not: touch the store, decide retries or print. The API key lives in [`ApiKey`], whose
//! `Debug` and `Display` never show it, and no error built here carries a header or the key.

mod http;
mod ratelimit;
mod wire;

use std::future::Future;
use std::time::Duration;

pub use http::{
    HttpProvider, HttpProviderConfig, MAX_ANSWER_BYTES, MAX_PROVIDER_WAIT, parse_retry_after,
};
pub use ratelimit::{RateLimitHint, rate_limit_hint};
pub use wire::{ErrorRef, RATE_LIMIT_CODE, SubmitRequest, TaskState, TaskStatus, is_task_id};

/// The bearer key. Never printed: `Debug` shows `ApiKey(***)`.
#[derive(Clone)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> Option<ApiKey> {
        let key = key.into().trim().to_owned();
        (!key.is_empty()).then_some(ApiKey(key))
    }

    fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

/// What went wrong talking to the provider, classified by what the caller must do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The request certainly never reached the provider (connection refused, DNS): safe to retry.
    #[error("could not reach the provider: {0}")]
    NotSent(String),
    /// 429: slow the whole run down.
    #[error("rate limited by the provider{}", retry_after_text(.retry_after))]
    RateLimited { retry_after: Option<Duration> },
    /// 400/422: the provider refused this request; nothing was billed.
    #[error("the provider rejected the request ({status}): {message}{reference}")]
    Rejected {
        status: u16,
        message: String,
        reference: ErrorRef,
    },
    /// 401/403 (or an authentication-family code): the key is wrong or lacks access; stop
    /// submitting anything.
    #[error("the provider refused the API key ({status}); check REAPI_API_KEY{reference}")]
    Unauthorized { status: u16, reference: ErrorRef },
    /// 402: out of credits; pause submissions.
    #[error("the provider says the account is out of credits (402): {message}{reference}")]
    OutOfCredits {
        message: String,
        reference: ErrorRef,
    },
    /// 404 on a poll: the provider does not know the task.
    #[error("the provider does not know task {task_id}")]
    TaskNotFound { task_id: String },
    /// 503: the provider says it cannot handle requests now. RFC 9110 (15.6.4) makes this "unable
    /// to handle the request": nothing was created, and the call may be made again later.
    #[error("the provider is unavailable (503): {message}{reference}")]
    Unavailable {
        message: String,
        reference: ErrorRef,
        retry_after: Option<Duration>,
    },
    /// The request was sent but the answer was lost, or was a 5xx other than 503: the outcome
    /// is unknown.
    #[error("no usable answer from the provider: {0}")]
    Ambiguous(String),
}

impl ProviderError {
    /// The provider's code and request id for this error, when its answer carried them.
    pub fn reference(&self) -> ErrorRef {
        match self {
            ProviderError::Rejected { reference, .. }
            | ProviderError::Unauthorized { reference, .. }
            | ProviderError::OutOfCredits { reference, .. }
            | ProviderError::Unavailable { reference, .. } => reference.clone(),
            _ => ErrorRef::default(),
        }
    }
}

fn retry_after_text(retry_after: &Option<Duration>) -> String {
    match retry_after {
        Some(d) => format!(" (retry after {} s)", d.as_secs_f64().ceil()),
        None => String::new(),
    }
}

/// The provider as the engine sees it; the HTTP client and test doubles implement it.
pub trait Provider: Send + Sync + 'static {
    /// Submit one job; the answer is the provider's task id.
    fn submit(
        &self,
        request: &SubmitRequest,
        idempotency_key: &str,
    ) -> impl Future<Output = Result<String, ProviderError>> + Send;

    /// Ask for a task's status.
    fn poll(&self, task_id: &str)
    -> impl Future<Output = Result<TaskStatus, ProviderError>> + Send;

    /// The account's balance in whole credits; `None` when the provider has no such call.
    fn balance(&self) -> impl Future<Output = Result<Option<u64>, ProviderError>> + Send;

    /// What rate-limit headers said on the latest submit answer, once (`None`: nothing new, or
    /// a provider that sends none).
    fn take_rate_limit_hint(&self) -> Option<RateLimitHint> {
        None
    }
}
