//! A submit's two inputs, fetched and checked as the provider does: an input that cannot be
//! fetched fails the task at once (billed nothing); one that breaks a rule is a 400.
//!
//! Owns: the size caps, the fetch itself, and the messages for inputs out of the rules.
//!
//! May not: create or bill a task (the handler in [`super`] admits it).

use axum::response::Response;
use bytes::{Bytes, BytesMut};

use super::{SubmitRequest, bad_request, new_task};
use crate::media;
use crate::pricing;
use crate::sim::ledger::bump;
use crate::sim::server::Shared;
use crate::sim::tasks::{Failure, NewTask};

/// Largest image and video the provider takes (`REAPI.md`).
const IMAGE_MAX_BYTES: u64 = 10 * 1024 * 1024;
const VIDEO_MAX_BYTES: u64 = 100 * 1024 * 1024;

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

/// What fetching the two inputs found: a task to create (failed at once if an input could not
/// be fetched), or a 400 for an input that breaks a rule.
pub(super) struct Inputs {
    fetch_failure: Option<Failure>,
    clip: Option<Bytes>,
    billed_seconds: u64,
}

impl Inputs {
    pub(super) fn task(self, app: &Shared, req: &SubmitRequest, key: Option<String>) -> NewTask {
        match self.fetch_failure {
            Some(failure) => {
                bump(&app.counters.fetch_failures);
                NewTask {
                    failure: Some(failure),
                    ..new_task(req, key)
                }
            }
            None => NewTask {
                billed_seconds: self.billed_seconds,
                credits: pricing::bill_at(req.rate, self.billed_seconds),
                clip: self.clip,
                generation: app.cfg.generation.for_clip(self.billed_seconds),
                ..new_task(req, key)
            },
        }
    }
}

pub(super) async fn fetched_inputs(app: &Shared, req: &SubmitRequest) -> Result<Inputs, Response> {
    let (image, video) = tokio::join!(
        fetch(&app.http, &req.image_url, IMAGE_MAX_BYTES),
        fetch(&app.http, &req.video_url, VIDEO_MAX_BYTES)
    );
    let mut inputs = Inputs {
        fetch_failure: None,
        clip: None,
        billed_seconds: 0,
    };
    match image {
        Ok(bytes) => {
            let info = media::probe_image_bytes(&bytes)
                .map_err(|e| bad_request(app, &format!("image_url: {e}")))?;
            let broken = media::check_image(&info);
            if !broken.is_empty() {
                return Err(bad_request(app, &format!("image_url: {}", join(&broken))));
            }
        }
        Err(FetchError::TooLarge(limit)) => {
            return Err(bad_request(
                app,
                &format!("image_url: the image is larger than {limit} bytes"),
            ));
        }
        Err(FetchError::Unreachable(why)) => {
            inputs.fetch_failure = Some(Failure {
                code: "INVALID_IMAGE_URL",
                message: format!("cannot fetch image_url {}: {why}", req.image_url),
            });
        }
    }
    match video {
        Ok(bytes) => {
            let info = media::probe_video_bytes(&bytes)
                .map_err(|e| bad_request(app, &format!("video_url: {e}")))?;
            let broken = media::check_video(&info, req.orientation);
            if !broken.is_empty() {
                return Err(bad_request(app, &format!("video_url: {}", join(&broken))));
            }
            inputs.billed_seconds = info.duration_ms.div_ceil(1000);
            inputs.clip = Some(bytes);
        }
        Err(FetchError::TooLarge(limit)) => {
            return Err(bad_request(
                app,
                &format!("video_url: the video is larger than {limit} bytes"),
            ));
        }
        Err(FetchError::Unreachable(why)) => {
            inputs.fetch_failure.get_or_insert(Failure {
                code: "INVALID_VIDEO_URL",
                message: format!("cannot fetch video_url {}: {why}", req.video_url),
            });
        }
    }
    Ok(inputs)
}

fn join(broken: &[media::RuleViolation]) -> String {
    broken
        .iter()
        .map(|v| v.message.as_str())
        .collect::<Vec<_>>()
        .join("; ")
}
