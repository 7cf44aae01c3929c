//! Delivering queued notices: webhooks signed per Standard Webhooks (`webhook-id`,
//! `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`),
//! and the command hook; each failure tried again with exponential backoff and jitter, for up
//! to a day. Errors recorded are recast's own words (a status, "timed out"), never the
//! receiver's bytes.

use std::time::Duration;

use hmac::{KeyInit, Mac};

use super::{Notifier, SigningKey, Target};
use crate::store::{DueNotice, StoreError, now_ms};

/// Notices sent per look.
const PER_LOOK: usize = 32;
/// The first wait after a failure, doubled each time, at most [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// A notice not delivered this long after it was queued is given up (recorded as such).
const GIVE_UP_AFTER: Duration = Duration::from_secs(24 * 3600);
/// The longest a command hook may run.
const HOOK_TIMEOUT: Duration = Duration::from_secs(120);

/// The `webhook-signature` value for a message.
pub fn signature(key: &SigningKey, id: &str, timestamp: i64, body: &str) -> String {
    use base64::Engine;
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(&key.0).expect("HMAC takes a key of any length");
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

impl Notifier {
    pub(super) async fn deliver_due(&self) -> Result<usize, StoreError> {
        let due = self.store.due_notices(now_ms(), PER_LOOK)?;
        let n = due.len();
        for notice in due {
            let outcome = match self
                .destinations
                .iter()
                .find(|d| d.name() == notice.destination)
            {
                Some(d) => match &d.target {
                    Target::Webhook { url, key } => self.post(url, key, &notice).await,
                    Target::Command(command) => run_hook(command, &notice).await,
                },
                // A destination since taken out of the settings: nothing to send it to.
                None => Err("no such destination in the settings any more".to_owned()),
            };
            match outcome {
                Ok(()) => {
                    self.store.notice_delivered(notice.id)?;
                    tracing::info!(event = %notice.event, to = %notice.destination, "notified");
                }
                Err(why) => {
                    let next = retry_at(&notice);
                    self.store.notice_failed(notice.id, &why, next)?;
                    match next {
                        Some(_) => {
                            tracing::warn!(event = %notice.event, to = %notice.destination, "notice not delivered ({why}); will try again")
                        }
                        None => {
                            tracing::error!(event = %notice.event, to = %notice.destination, "notice given up after a day: {why}")
                        }
                    }
                }
            }
        }
        Ok(n)
    }

    async fn post(&self, url: &str, key: &SigningKey, notice: &DueNotice) -> Result<(), String> {
        let timestamp = now_ms() / 1000;
        let answer = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", &notice.message_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header(
                "webhook-signature",
                signature(key, &notice.message_id, timestamp, &notice.payload),
            )
            .body(notice.payload.clone())
            .send()
            .await;
        match answer {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(format!("HTTP {}", r.status().as_u16())),
            Err(e) if e.is_timeout() => Err("timed out".to_owned()),
            Err(e) if e.is_connect() => Err("cannot connect".to_owned()),
            Err(_) => Err("the connection failed".to_owned()),
        }
    }
}

/// When to try a failed notice again; `None` once it has been trying for a day.
fn retry_at(notice: &DueNotice) -> Option<i64> {
    if now_ms() - notice.created_at > GIVE_UP_AFTER.as_millis() as i64 {
        return None;
    }
    let wait = FIRST_BACKOFF
        .saturating_mul(2u32.saturating_pow(notice.attempts.min(20)))
        .min(MAX_BACKOFF)
        .mul_f64(rand::random_range(0.8..1.2));
    Some(now_ms() + wait.as_millis() as i64)
}

/// `sh -c COMMAND` with the batch's results file in its environment; exit 0 is delivered.
async fn run_hook(command: &str, notice: &DueNotice) -> Result<(), String> {
    let payload: serde_json::Value = serde_json::from_str(&notice.payload).unwrap_or_default();
    let data = &payload["data"];
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    let child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .env("RECAST_EVENT", &notice.payload)
        .env("RECAST_BATCH", text(&data["batch"]))
        .env("RECAST_OUTPUT_DIR", text(&data["output_dir"]))
        .env("RECAST_RESULTS_FILE", text(&data["results_file"]))
        .stdin(std::process::Stdio::null())
        // Its output must not mix with a `--json` document on recast's stdout.
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start the hook: {}", e.kind()))?;
    match tokio::time::timeout(HOOK_TIMEOUT, child.wait_with_output()).await {
        Ok(Ok(out)) if out.status.success() => Ok(()),
        Ok(Ok(out)) => Err(format!("the hook exited with {}", out.status)),
        Ok(Err(e)) => Err(format!("the hook failed: {}", e.kind())),
        Err(_) => Err(format!("the hook ran past {} s", HOOK_TIMEOUT.as_secs())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_standard_webhooks_one() {
        // The example of the Standard Webhooks specification.
        let key = SigningKey::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            signature(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }
}
