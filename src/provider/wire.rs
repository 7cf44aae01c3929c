//! The provider's JSON shapes, read tolerantly: gateways selling this model disagree on field
//! names and status words (`REAPI.md`), so every known variant is accepted here and nowhere else.

use std::time::SystemTime;

use serde_json::Value;

use crate::media::Orientation;
use crate::pricing::Mode;

/// The submit body.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SubmitRequest {
    pub model: String,
    pub image_url: String,
    pub video_url: String,
    pub character_orientation: Orientation,
    pub mode: Mode,
    pub keep_original_sound: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub prompt: Option<String>,
}

/// The project's own reading of a provider status word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    Queued,
    Running,
    Completed,
    Failed,
    Cancelled,
    Expired,
    /// A word no gateway was known to use; treated as still running.
    Unrecognised,
}

impl TaskState {
    pub fn from_word(word: &str) -> TaskState {
        match word.trim().to_ascii_lowercase().as_str() {
            "pending" | "queued" | "submitted" | "waiting" => TaskState::Queued,
            "processing" | "running" | "in_progress" | "generating" => TaskState::Running,
            "completed" | "succeeded" | "success" | "succeed" | "done" => TaskState::Completed,
            "failed" | "error" | "failure" => TaskState::Failed,
            "cancelled" | "canceled" => TaskState::Cancelled,
            "expired" => TaskState::Expired,
            _ => TaskState::Unrecognised,
        }
    }
}

/// A task's status as polled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskStatus {
    pub state: TaskState,
    /// The word as the provider sent it, for logs when it was not recognised.
    pub word: String,
    pub progress: Option<u8>,
    pub video_url: Option<String>,
    pub error: Option<String>,
    /// Credits the provider says it billed, when it says.
    pub billed_credits: Option<u64>,
    /// The failed task's error code and request id, when its envelope carries them.
    pub reference: ErrorRef,
}

/// What reAPI's error envelope (`{"error":{"code","message","request_id"}}`) says beside its
/// message: a five-digit code whose first digit is its family, and the request id the
/// provider's support asks for. Both are checked to be short plain tokens before they are kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ErrorRef {
    pub code: Option<String>,
    pub request_id: Option<String>,
}

/// reAPI's rate-limit code (HTTP 429).
pub const RATE_LIMIT_CODE: &str = "50001";

impl ErrorRef {
    pub fn is_empty(&self) -> bool {
        self.code.is_none() && self.request_id.is_none()
    }

    /// The documented family of the code: its first digit.
    pub fn family(&self) -> Option<&'static str> {
        let code = self.code.as_deref()?;
        if code.len() != 5 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        match code.as_bytes()[0] {
            b'1' => Some("authentication"),
            b'2' => Some("validation"),
            b'5' if code == RATE_LIMIT_CODE => Some("rate limit"),
            _ => None,
        }
    }

    fn from_envelope(v: &Value) -> ErrorRef {
        let token = |v: Option<&Value>| -> Option<String> {
            let text = match v? {
                Value::String(s) => s.trim().to_owned(),
                Value::Number(n) => n.to_string(),
                _ => return None,
            };
            is_task_id(&text).then_some(text)
        };
        let error = v.get("error").filter(|e| e.is_object());
        ErrorRef {
            code: token(error.and_then(|e| e.get("code"))),
            request_id: token(
                error
                    .and_then(|e| e.get("request_id"))
                    .or_else(|| v.get("request_id")),
            ),
        }
    }
}

impl std::fmt::Display for ErrorRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some(c) = &self.code {
            parts.push(match self.family() {
                Some(family) => format!("code {c}, {family}"),
                None => format!("code {c}"),
            });
        }
        if let Some(r) = &self.request_id {
            parts.push(format!("request {r}"));
        }
        if parts.is_empty() {
            Ok(())
        } else {
            write!(f, " [{}]", parts.join("; "))
        }
    }
}

/// The code and request id of an error answer's envelope (empty when it has none).
pub fn error_ref(body: &str) -> ErrorRef {
    serde_json::from_str::<Value>(body)
        .map(|v| ErrorRef::from_envelope(&v))
        .unwrap_or_default()
}

/// The balance answer: `{"balance": 12500}` (or under `data`, as other gateways wrap answers).
pub fn balance(body: &str) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    v.get("balance")
        .or_else(|| v.get("data").and_then(|d| d.get("balance")))
        .and_then(serde_json::Value::as_u64)
}

/// The task id from a submit answer: `id`, `task_id` or `data.task_id` (or `data.id`).
pub fn task_id(body: &str) -> Option<String> {
    let v: Value = serde_json::from_str(body).ok()?;
    let pick = |v: &Value| -> Option<String> {
        match v {
            Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    };
    let data = v.get("data");
    v.get("task_id")
        .and_then(pick)
        .or_else(|| v.get("id").and_then(pick))
        .or_else(|| data.and_then(|d| d.get("task_id")).and_then(pick))
        .or_else(|| data.and_then(|d| d.get("id")).and_then(pick))
        .filter(|id| is_task_id(id))
}

/// A task id recast will put in a URL, a file and a log line: 1 to 128 of `A-Z a-z 0-9 . _ : -`.
/// Anything else (a slash, a `?`, a newline, an escape) is not a task id, whatever the provider
/// says.
pub fn is_task_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
        && id != "."
        && id != ".."
}

/// A poll answer; `None` when it is not JSON with a status word.
pub fn task_status(body: &str) -> Option<TaskStatus> {
    let root: Value = serde_json::from_str(body).ok()?;
    // Some gateways wrap everything in `data`.
    let v = match root.get("data") {
        Some(d) if d.get("status").is_some() => d,
        _ => &root,
    };
    let word = v.get("status")?.as_str()?.to_owned();
    let progress = v
        .get("progress")
        .and_then(|p| {
            p.as_f64()
                .or_else(|| p.as_str().and_then(|s| s.parse().ok()))
        })
        .map(|p| p.clamp(0.0, 100.0) as u8);
    let video_url = v
        .pointer("/output/video_urls/0")
        .or_else(|| v.pointer("/output/video_url"))
        .or_else(|| v.get("video_url"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let error = message_in(v);
    let reference = ErrorRef::from_envelope(v);
    let billed_credits = v
        .pointer("/usage/credits")
        .or_else(|| v.pointer("/usage/total_credits"))
        .and_then(Value::as_f64)
        .map(|c| c.ceil() as u64);
    Some(TaskStatus {
        state: TaskState::from_word(&word),
        word,
        progress,
        video_url,
        error,
        billed_credits,
        reference,
    })
}

fn message_in(v: &Value) -> Option<String> {
    v.pointer("/error/message")
        .or_else(|| v.get("error_message"))
        .or_else(|| v.get("message"))
        .or_else(|| v.get("error").filter(|e| e.is_string()))
        .and_then(Value::as_str)
        .map(|s| without_url_queries(&s.chars().take(500).collect::<String>()))
}

/// `text` with the query of every URL in it cut off: a provider quoting a presigned media URL
/// back must not carry its signature and access key into a job's reason, a log or the store.
fn without_url_queries(text: &str) -> String {
    text.split(' ')
        .map(|word| match word.split_once('?') {
            Some((before, _)) if before.contains("://") => format!("{before}?…"),
            _ => word.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The human part of an error body, wherever the gateway put it.
pub fn error_message(body: &str) -> Option<String> {
    let v: Value = serde_json::from_str(body).ok()?;
    message_in(&v)
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the form RFC 9110 requires senders to use.
pub fn parse_http_date(s: &str) -> Option<SystemTime> {
    httpdate::parse_http_date(s.trim()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_envelope_keeps_its_code_and_request_id_and_nothing_hostile() {
        let r = error_ref(
            r#"{"error":{"code":20002,"message":"image too small","request_id":"req_01abc"}}"#,
        );
        assert_eq!(r.code.as_deref(), Some("20002"));
        assert_eq!(r.request_id.as_deref(), Some("req_01abc"));
        assert_eq!(
            r.to_string(),
            " [code 20002, validation; request req_01abc]"
        );
        let hostile = error_ref(r#"{"error":{"code":"1\n2","request_id":"req\u001b[31m"}}"#);
        assert!(hostile.is_empty(), "{hostile:?}");
        assert_eq!(error_ref("not json"), ErrorRef::default());
        let failed = task_status(
            r#"{"id":"t","status":"failed","error":{"code":30001,"message":"no face","request_id":"req_9"}}"#,
        )
        .unwrap();
        assert_eq!(failed.error.as_deref(), Some("no face"));
        assert_eq!(failed.reference.request_id.as_deref(), Some("req_9"));
    }

    #[test]
    fn a_quoted_presigned_url_loses_its_query() {
        let body = r#"{"status":"failed","error":{"code":20003,"message":"cannot fetch image_url http://s3.local/b/a.png?X-Amz-Credential=AKID%2F1&X-Amz-Signature=ab: 403"}}"#;
        let message = task_status(body).unwrap().error.unwrap();
        assert_eq!(
            message,
            "cannot fetch image_url http://s3.local/b/a.png?… 403"
        );
    }

    #[test]
    fn task_id_is_read_from_every_known_place() {
        assert_eq!(task_id(r#"{"id":"t1"}"#).as_deref(), Some("t1"));
        assert_eq!(task_id(r#"{"task_id":"t2"}"#).as_deref(), Some("t2"));
        assert_eq!(
            task_id(r#"{"data":{"task_id":"t3"}}"#).as_deref(),
            Some("t3")
        );
        assert_eq!(task_id(r#"{"data":{}}"#), None);
        assert_eq!(task_id("not json"), None);
    }

    #[test]
    fn every_family_of_status_words_is_understood() {
        for (word, state) in [
            ("pending", TaskState::Queued),
            ("submitted", TaskState::Queued),
            ("in_progress", TaskState::Running),
            ("succeeded", TaskState::Completed),
            ("success", TaskState::Completed),
            ("error", TaskState::Failed),
            ("canceled", TaskState::Cancelled),
            ("expired", TaskState::Expired),
            ("baking", TaskState::Unrecognised),
        ] {
            assert_eq!(TaskState::from_word(word), state, "{word}");
        }
    }

    #[test]
    fn a_completed_task_yields_its_first_clip_url() {
        let s = task_status(
            r#"{"id":"t","status":"completed","progress":100,"output":{"video_urls":["http://x/c.mp4"]},"usage":{"credits":566}}"#,
        )
        .unwrap();
        assert_eq!(s.state, TaskState::Completed);
        assert_eq!(s.video_url.as_deref(), Some("http://x/c.mp4"));
        assert_eq!(s.progress, Some(100));
        assert_eq!(s.billed_credits, Some(566));
    }

    #[test]
    fn failure_details_are_read_from_each_known_field() {
        for body in [
            r#"{"status":"failed","error":{"message":"bad face"}}"#,
            r#"{"status":"failed","error_message":"bad face"}"#,
            r#"{"status":"failed","message":"bad face"}"#,
        ] {
            assert_eq!(
                task_status(body).unwrap().error.as_deref(),
                Some("bad face")
            );
        }
    }

    #[test]
    fn a_task_id_that_would_change_the_url_or_forge_a_log_line_is_refused() {
        for bad in [
            r#"{"id":"../../admin/keys?dump=1#"}"#,
            r#"{"id":"a/b"}"#,
            r#"{"id":"t1\n2026-01-01 INFO forged"}"#,
            r#"{"id":"\u001b[31mred"}"#,
            r#"{"id":".."}"#,
        ] {
            assert_eq!(task_id(bad), None, "{bad}");
        }
        let long = format!(r#"{{"id":"{}"}}"#, "a".repeat(129));
        assert_eq!(task_id(&long), None);
        assert_eq!(
            task_id(r#"{"id":"task_01k9:x-1.2"}"#).as_deref(),
            Some("task_01k9:x-1.2")
        );
    }

    #[test]
    fn http_dates_parse() {
        let t = parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(
            t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs(),
            784_111_777
        );
        assert!(parse_http_date("yesterday").is_none());
    }
}
