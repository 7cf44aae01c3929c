//! The HTTP client of the provider: requests, bounded reading of answers, and the mapping of
//! every status and transport failure to a [`ProviderError`].
//!
//! Owns: [`HttpProvider`] and what it reads from an answer's headers (`Retry-After`, rate-limit
//! headers). May not: touch the store, decide retries or print; no error built here carries a
//! header or the key.

use std::time::Duration;

use super::{
    ApiKey, Provider, ProviderError, RATE_LIMIT_CODE, RateLimitHint, SubmitRequest, TaskStatus,
    is_task_id, rate_limit_hint, wire,
};

/// How the HTTP client behaves.
#[derive(Debug, Clone)]
pub struct HttpProviderConfig {
    /// e.g. `https://reapi.ai`; paths are appended.
    pub base_url: String,
    pub api_key: ApiKey,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// The longest wait an answer may impose (`Retry-After`), at most [`MAX_PROVIDER_WAIT`].
    pub max_wait: Duration,
}

/// The real client, speaking HTTP to reAPI (or to `recast sim`).
#[derive(Debug, Clone)]
pub struct HttpProvider {
    client: reqwest::Client,
    config: HttpProviderConfig,
    /// The latest submit answer's rate-limit headers, until taken.
    hint: std::sync::Arc<std::sync::Mutex<Option<RateLimitHint>>>,
}

impl HttpProvider {
    pub fn new(config: HttpProviderConfig) -> Result<HttpProvider, ProviderError> {
        let client = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .user_agent(concat!("recast/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ProviderError::NotSent(format!("cannot build an HTTP client: {e}")))?;
        Ok(HttpProvider {
            client,
            config,
            hint: Default::default(),
        })
    }

    /// A `Retry-After` past the configured ceiling is taken as the ceiling.
    fn cap_wait(&self, e: ProviderError) -> ProviderError {
        match e {
            ProviderError::RateLimited {
                retry_after: Some(wait),
            } => ProviderError::RateLimited {
                retry_after: Some(wait.min(self.config.max_wait)),
            },
            ProviderError::Unavailable {
                message,
                reference,
                retry_after: Some(wait),
            } => ProviderError::Unavailable {
                message,
                reference,
                retry_after: Some(wait.min(self.config.max_wait)),
            },
            other => other,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.config.base_url.trim_end_matches('/'), path)
    }

    /// The poll URL of a task, its id one percent-encoded path segment (never pasted in raw).
    fn task_url(&self, task_id: &str) -> Result<String, ProviderError> {
        if !is_task_id(task_id) {
            return Err(ProviderError::TaskNotFound {
                task_id: task_id.escape_default().to_string(),
            });
        }
        let mut url = url::Url::parse(&self.config.base_url)
            .map_err(|e| ProviderError::NotSent(format!("the provider's base URL: {e}")))?;
        url.path_segments_mut()
            .map_err(|_| ProviderError::NotSent("the provider's base URL has no path".into()))?
            .pop_if_empty()
            .extend(["api", "v1", "tasks", task_id]);
        Ok(url.into())
    }
}

/// Describe a transport error without its URL's query or any header.
fn transport_error(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "the answer was cut off"
    } else {
        "the connection failed"
    };
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind} ({detail})")
    }
}

/// The longest wait a provider's answer can impose (`Retry-After`): a wait past it is taken as
/// this long, so a hostile or broken answer cannot stall a run for ever.
pub const MAX_PROVIDER_WAIT: Duration = Duration::from_secs(3600);

/// Seconds or an HTTP date, as RFC 9110 allows, capped at [`MAX_PROVIDER_WAIT`].
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => wire::parse_http_date(value)?
            .duration_since(now)
            .unwrap_or(Duration::ZERO),
    };
    Some(wait.min(MAX_PROVIDER_WAIT))
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, std::time::SystemTime::now()))
}

fn error_for_status(
    status: reqwest::StatusCode,
    headers: &reqwest::header::HeaderMap,
    body: &str,
    task_id: Option<&str>,
) -> ProviderError {
    let message = wire::error_message(body).unwrap_or_else(|| {
        status
            .canonical_reason()
            .unwrap_or("no reason given")
            .to_owned()
    });
    let reference = wire::error_ref(body);
    let code = reference.code.as_deref().unwrap_or_default();
    let status_code = match status.as_u16() {
        // The code family says more than a gateway's choice of status.
        _ if reference.family() == Some("authentication") => 401,
        _ if code == RATE_LIMIT_CODE => 429,
        s => s,
    };
    match status_code {
        400 | 422 => ProviderError::Rejected {
            status: status.as_u16(),
            message,
            reference,
        },
        401 | 403 => ProviderError::Unauthorized {
            status: status.as_u16(),
            reference,
        },
        402 => ProviderError::OutOfCredits { message, reference },
        404 if task_id.is_some() => ProviderError::TaskNotFound {
            task_id: task_id.unwrap_or_default().to_owned(),
        },
        429 => ProviderError::RateLimited {
            retry_after: retry_after(headers),
        },
        503 => ProviderError::Unavailable {
            message,
            reference,
            retry_after: retry_after(headers),
        },
        s => ProviderError::Ambiguous(format!("HTTP {s}: {message}{reference}")),
    }
}

/// The most of a JSON answer recast reads: real answers are a few hundred bytes.
pub const MAX_ANSWER_BYTES: usize = 4 << 20;

/// Read an answer's body, stopping at the first byte past [`MAX_ANSWER_BYTES`]: an endless or
/// huge body is an answer recast cannot use (for a submit: a task may exist, so `Ambiguous`).
async fn read_bounded(mut response: reqwest::Response) -> Result<String, ProviderError> {
    if response
        .content_length()
        .is_some_and(|n| n > MAX_ANSWER_BYTES as u64)
    {
        return Err(ProviderError::Ambiguous(format!(
            "the answer announces more than {} MiB",
            MAX_ANSWER_BYTES >> 20
        )));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| ProviderError::Ambiguous(transport_error(&e)))?
    {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(ProviderError::Ambiguous(format!(
                "the answer ran past {} MiB",
                MAX_ANSWER_BYTES >> 20
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// Send a request and read its whole answer; anything but a 2xx becomes its [`ProviderError`].
async fn exchange(
    request: reqwest::RequestBuilder,
    task_id: Option<&str>,
    key: &ApiKey,
    hint: Option<&std::sync::Mutex<Option<RateLimitHint>>>,
) -> Result<(reqwest::StatusCode, String), ProviderError> {
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) if e.is_connect() => return Err(ProviderError::NotSent(transport_error(&e))),
        Err(e) => return Err(ProviderError::Ambiguous(transport_error(&e))),
    };
    let status = response.status();
    let headers = response.headers().clone();
    if let Some(slot) = hint
        && let Some(read) = rate_limit_hint(&headers, std::time::SystemTime::now())
    {
        *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(read);
    }
    // An answer that echoes our key (a proxy's debug page, a careless gateway) must not carry
    // it any further: into a job's reason, the database, a log line.
    let body = read_bounded(response)
        .await
        .map(|b| b.replace(key.expose(), "***"));
    if !status.is_success() {
        // The status says what happened; an oversized body only loses its message.
        let body = body.unwrap_or_default();
        return Err(error_for_status(status, &headers, &body, task_id));
    }
    Ok((status, body?))
}

impl Provider for HttpProvider {
    async fn submit(
        &self,
        request: &SubmitRequest,
        idempotency_key: &str,
    ) -> Result<String, ProviderError> {
        let request = self
            .client
            .post(self.url("/api/v1/videos/generations"))
            .bearer_auth(self.config.api_key.expose())
            .header("Idempotency-Key", idempotency_key)
            .json(request);
        let (status, body) = exchange(request, None, &self.config.api_key, Some(&self.hint))
            .await
            .map_err(|e| self.cap_wait(e))?;
        // A 2xx whose id we cannot read may still have created a task: unknown, not rejected.
        wire::task_id(&body).ok_or_else(|| {
            ProviderError::Ambiguous(format!(
                "the submit answer (HTTP {}) carries no usable task id",
                status.as_u16()
            ))
        })
    }

    async fn poll(&self, task_id: &str) -> Result<TaskStatus, ProviderError> {
        let request = self
            .client
            .get(self.task_url(task_id)?)
            .bearer_auth(self.config.api_key.expose());
        let (_, body) = exchange(request, Some(task_id), &self.config.api_key, None)
            .await
            .map_err(|e| self.cap_wait(e))?;
        wire::task_status(&body).ok_or_else(|| {
            ProviderError::Ambiguous("the task answer is not the JSON expected".to_owned())
        })
    }

    async fn balance(&self) -> Result<Option<u64>, ProviderError> {
        let request = self
            .client
            .get(self.url("/api/v1/balance"))
            .bearer_auth(self.config.api_key.expose());
        match exchange(request, None, &self.config.api_key, None)
            .await
            .map_err(|e| self.cap_wait(e))
        {
            Ok((_, body)) => wire::balance(&body).map(Some).ok_or_else(|| {
                ProviderError::Ambiguous("the balance answer is not the JSON expected".to_owned())
            }),
            Err(ProviderError::Ambiguous(m)) if m.starts_with("HTTP 404") => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn take_rate_limit_hint(&self) -> Option<RateLimitHint> {
        self.hint.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;
    use reqwest::header::HeaderMap;

    fn envelope(code: u32) -> String {
        format!(r#"{{"error":{{"code":{code},"message":"m","request_id":"req_1"}}}}"#)
    }

    #[test]
    fn the_documented_code_families_decide_over_the_status() {
        let headers = HeaderMap::new();
        let e = error_for_status(StatusCode::BAD_REQUEST, &headers, &envelope(20002), None);
        assert!(matches!(e, ProviderError::Rejected { .. }), "{e:?}");
        assert_eq!(e.reference().request_id.as_deref(), Some("req_1"));
        assert!(
            e.to_string()
                .contains("[code 20002, validation; request req_1]"),
            "{e}"
        );
        // An authentication code stops submits whatever status carried it.
        let e = error_for_status(StatusCode::BAD_REQUEST, &headers, &envelope(10003), None);
        assert!(matches!(e, ProviderError::Unauthorized { .. }), "{e:?}");
        let mut retry = HeaderMap::new();
        retry.insert(reqwest::header::RETRY_AFTER, "7".parse().unwrap());
        let e = error_for_status(
            StatusCode::TOO_MANY_REQUESTS,
            &retry,
            &envelope(50001),
            None,
        );
        assert_eq!(
            e,
            ProviderError::RateLimited {
                retry_after: Some(Duration::from_secs(7))
            }
        );
        let e = error_for_status(StatusCode::BAD_GATEWAY, &headers, &envelope(90001), None);
        assert!(
            matches!(&e, ProviderError::Ambiguous(m) if m.contains("request req_1")),
            "{e:?}"
        );
    }
}
