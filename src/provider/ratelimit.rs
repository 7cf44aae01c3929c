//! Rate-limit headers, when a provider sends them: what the limit is and how much of it is left.
//!
//! Owns: reading the IETF draft's fields (`RateLimit-Policy: "default";q=600;w=60` and
//! `RateLimit: "default";r=5;t=3`), its older form (`RateLimit-Limit`, `RateLimit-Remaining`,
//! `RateLimit-Reset`, with the window in `RateLimit-Policy: 600;w=60`), and the common `X-`
//! spellings (`X-RateLimit-Remaining`, `X-RateLimit-Reset` in seconds or as a Unix time).
//!
//! May not: act on them (the engine's pacing does), or trust them beyond bounds: a value out of
//! range is ignored, never a reason to stop or to go faster than configured.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::HeaderMap;

/// The longest a header may ask submits to wait for its quota to come back.
const MAX_RESET: Duration = Duration::from_secs(3600);

/// What a provider's rate-limit headers said.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RateLimitHint {
    /// The quota as calls per minute, when both the quota and its window were given.
    pub per_minute: Option<f64>,
    /// Calls left in the current window.
    pub remaining: Option<u64>,
    /// When the quota comes back (seconds from the answer).
    pub reset: Option<Duration>,
}

impl RateLimitHint {
    fn is_empty(&self) -> bool {
        *self == RateLimitHint::default()
    }
}

/// The hint in an answer's headers, if it carries any usable one.
pub fn rate_limit_hint(headers: &HeaderMap, now: SystemTime) -> Option<RateLimitHint> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let mut hint = RateLimitHint::default();
    if let Some(policy) = text("ratelimit-policy").or_else(|| text("x-ratelimit-policy")) {
        let (quota, window) = policy_quota(policy);
        let quota = quota.or_else(|| {
            text("ratelimit-limit")
                .or_else(|| text("x-ratelimit-limit"))
                .and_then(|v| number(v.split([',', ';']).next()?))
        });
        if let (Some(q), Some(w)) = (quota, window)
            && q > 0
            && (1..=86_400).contains(&w)
            && q <= 1_000_000_000
        {
            hint.per_minute = Some(q as f64 * 60.0 / w as f64);
        }
    }
    if let Some(current) = text("ratelimit") {
        hint.remaining = param(current, "r");
        hint.reset = param(current, "t").map(Duration::from_secs);
    }
    if hint.remaining.is_none() {
        hint.remaining = text("ratelimit-remaining")
            .or_else(|| text("x-ratelimit-remaining"))
            .and_then(number);
    }
    if hint.reset.is_none() {
        hint.reset = text("ratelimit-reset")
            .or_else(|| text("x-ratelimit-reset"))
            .and_then(number)
            .map(|n| reset_from(n, now));
    }
    hint.reset = hint.reset.filter(|r| *r <= MAX_RESET);
    (!hint.is_empty()).then_some(hint)
}

/// A reset is seconds from now, unless it is so large it can only be a Unix time (GitHub's).
fn reset_from(n: u64, now: SystemTime) -> Duration {
    const UNIX_TIME_FROM: u64 = 1_000_000_000;
    if n < UNIX_TIME_FROM {
        return Duration::from_secs(n);
    }
    let at = UNIX_EPOCH + Duration::from_secs(n);
    at.duration_since(now).unwrap_or(Duration::ZERO)
}

/// `"default";q=600;w=60` (the draft) or `600;w=60` (its older form): the first policy's quota
/// and window.
fn policy_quota(policy: &str) -> (Option<u64>, Option<u64>) {
    let first = policy.split(',').next().unwrap_or_default();
    let head = first.split(';').next().unwrap_or_default().trim();
    let quota = param(first, "q").or_else(|| number(head));
    (quota, param(first, "w"))
}

/// The value of `;key=N` among a field item's parameters.
fn param(item: &str, key: &str) -> Option<u64> {
    item.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        (k.trim() == key).then(|| number(v))?
    })
}

fn number(text: &str) -> Option<u64> {
    let text = text.trim().trim_matches('"');
    (!text.is_empty() && text.len() <= 20 && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn the_drafts_fields_give_the_quota_per_minute_and_what_is_left() {
        let now = SystemTime::now();
        let h = headers(&[
            (
                "ratelimit-policy",
                "\"default\";q=600;w=60, \"daily\";q=10000;w=86400",
            ),
            ("ratelimit", "\"default\";r=0;t=2"),
        ]);
        let hint = rate_limit_hint(&h, now).unwrap();
        assert_eq!(hint.per_minute, Some(600.0));
        assert_eq!(hint.remaining, Some(0));
        assert_eq!(hint.reset, Some(Duration::from_secs(2)));
        // The older form: the quota in its own field, the window in the policy.
        let h = headers(&[
            ("ratelimit-limit", "100"),
            ("ratelimit-policy", "100;w=10"),
            ("ratelimit-remaining", "7"),
            ("ratelimit-reset", "4"),
        ]);
        let hint = rate_limit_hint(&h, now).unwrap();
        assert_eq!(hint.per_minute, Some(600.0));
        assert_eq!(hint.remaining, Some(7));
    }

    #[test]
    fn x_spellings_and_a_unix_reset_are_read_and_nonsense_is_not() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let h = headers(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "1800000030"),
        ]);
        let hint = rate_limit_hint(&h, now).unwrap();
        assert_eq!(hint.per_minute, None, "no window: no rate");
        assert_eq!(hint.reset, Some(Duration::from_secs(30)));
        for bad in ["-1", "soon", "1e9", "99999999999999999999999", ""] {
            let h = headers(&[("x-ratelimit-remaining", bad), ("ratelimit-policy", bad)]);
            assert_eq!(rate_limit_hint(&h, now), None, "{bad:?}");
        }
        let h = headers(&[("ratelimit-policy", "\"d\";q=0;w=60")]);
        assert_eq!(rate_limit_hint(&h, now), None);
        let h = headers(&[("ratelimit", "\"d\";r=0;t=999999")]);
        assert_eq!(
            rate_limit_hint(&h, now).unwrap().reset,
            None,
            "a wait past an hour"
        );
        assert!(rate_limit_hint(&HeaderMap::new(), now).is_none());
    }
}
