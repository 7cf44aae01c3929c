//! The submit rate limit and the `Retry-After` header that goes with a 429.
//!
//! Owns: a GCRA rate limiter on the simulator's own clock, and the two spellings of
//! `Retry-After` (whole seconds, or an RFC 7231 IMF-fixdate).
//!
//! May not: count refusals (the submit handler does) or know about tasks.
//!
//! The limiter is GCRA, the algorithm governor uses, so a client that runs governor with the same
//! rate and burst is never refused. It is written here rather than taken from governor because
//! it must run on `tokio::time::Instant` (the simulator's clock, which a runtime with tokio's
//! `test-util` can pause), take `now` from its caller (unit tests pass synthetic instants), and
//! say exactly how long to wait.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use super::config::RetryAfterFormat;

/// `rate` requests per minute, `burst` of them at once.
#[derive(Debug)]
pub struct RateLimiter {
    /// Time between two requests at the steady rate.
    interval: Duration,
    /// How far ahead of now the theoretical arrival time may run (burst - 1 intervals).
    tolerance: Duration,
    /// Theoretical arrival time of the next request.
    tat: Option<Instant>,
}

impl RateLimiter {
    pub fn per_minute(rate: u32, burst: u32) -> RateLimiter {
        let interval = Duration::from_secs(60) / rate.max(1);
        RateLimiter {
            interval,
            tolerance: interval * (burst.max(1) - 1),
            tat: None,
        }
    }

    /// Take one request at `now`; `Err(wait)` says how long until one would be allowed.
    pub fn check(&mut self, now: Instant) -> Result<(), Duration> {
        let tat = self.tat.map_or(now, |t| t.max(now));
        let ahead = tat - now;
        if ahead > self.tolerance {
            return Err(ahead - self.tolerance);
        }
        self.tat = Some(tat + self.interval);
        Ok(())
    }

    /// Requests allowed at `now` (without taking any), and how long until one more would be.
    pub fn remaining(&self, now: Instant) -> (u64, Duration) {
        let ahead = self
            .tat
            .map_or(Duration::ZERO, |t| t.saturating_duration_since(now));
        match self.tolerance.checked_sub(ahead) {
            Some(room) => (
                room.as_nanos() as u64 / self.interval.as_nanos().max(1) as u64 + 1,
                Duration::ZERO,
            ),
            None => (0, ahead - self.tolerance),
        }
    }
}

/// The `Retry-After` value for a wait, never below one second (a client must wait at all).
pub fn retry_after_value(format: RetryAfterFormat, wait: Duration) -> String {
    let secs = wait.as_millis().div_ceil(1000).max(1) as u64;
    match format {
        RetryAfterFormat::Seconds => secs.to_string(),
        RetryAfterFormat::HttpDate => {
            // Round up: a date at whole-second resolution must not come before the real moment.
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            let at = now.as_secs() + u64::from(now.subsec_nanos() > 0) + secs;
            http_date(at)
        }
    }
}

/// Format seconds since the Unix epoch as an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
pub fn http_date(unix_secs: u64) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(unix_secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_match_rfc_7231_examples() {
        assert_eq!(http_date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(http_date(1_735_689_599), "Tue, 31 Dec 2024 23:59:59 GMT");
    }

    #[test]
    fn seconds_round_up_and_never_say_zero() {
        let f = RetryAfterFormat::Seconds;
        assert_eq!(retry_after_value(f, Duration::from_millis(1)), "1");
        assert_eq!(retry_after_value(f, Duration::from_millis(2_001)), "3");
        assert!(
            retry_after_value(RetryAfterFormat::HttpDate, Duration::from_secs(5)).ends_with(" GMT")
        );
    }

    #[test]
    fn the_limiter_allows_the_burst_then_the_steady_rate() {
        // The limiter takes `now` from its caller, so synthetic instants stand in for a clock.
        let mut rl = RateLimiter::per_minute(60, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            rl.check(t0).unwrap();
        }
        let wait = rl.check(t0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(1));
        let t1 = t0 + wait;
        rl.check(t1).unwrap();
        assert!(rl.check(t1).is_err());
        // A long quiet spell refills the burst, not more.
        let t2 = t1 + Duration::from_secs(600);
        for _ in 0..3 {
            rl.check(t2).unwrap();
        }
        assert!(rl.check(t2).is_err());
        assert_eq!(rl.remaining(t2), (0, Duration::from_secs(1)));
        assert_eq!(rl.remaining(t2 + Duration::from_secs(1)).0, 1);
        assert_eq!(rl.remaining(t2 + Duration::from_secs(60)).0, 3);
    }
}
