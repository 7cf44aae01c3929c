//! How fast the engine may call the provider: a configured rate and burst (governor), and on top
//! of it a slowdown that a 429 imposes on the whole stage and that wears off gradually.
//!
//! Time is tokio's, so the pacing is testable with paused time.

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use governor::clock::Clock;
use governor::{Quota, RateLimiter};
use tokio::time::Instant;

/// governor's clock, read from tokio's so that `start_paused` tests control it.
#[derive(Debug, Clone)]
pub struct TokioClock {
    origin: Instant,
}

impl Default for TokioClock {
    fn default() -> Self {
        TokioClock {
            origin: Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    type Instant = Duration;
    fn now(&self) -> Duration {
        Instant::now().saturating_duration_since(self.origin)
    }
}

type Limiter = RateLimiter<
    governor::state::NotKeyed,
    governor::state::InMemoryState,
    TokioClock,
    governor::middleware::NoOpMiddleware<Duration>,
>;

#[derive(Debug)]
struct Slowdown {
    /// Nothing goes out before this (a `Retry-After`, or a backoff).
    paused_until: Option<Instant>,
    /// Multiplies the configured spacing between calls; 1.0 is full speed.
    factor: f64,
    last_call: Option<Instant>,
    /// Server trouble (5xx, connection failures) in a row, since the last accepted call.
    trouble: u32,
}

/// A shared gate every call of one kind (submits, or polls) passes through.
#[derive(Debug)]
pub struct Pacing {
    limiter: Limiter,
    clock: TokioClock,
    spacing: Duration,
    slowdown: Mutex<Slowdown>,
}

/// The most a run of 429s can slow a stage down, relative to its configured rate.
const MAX_SLOWDOWN: f64 = 32.0;
/// Each 429 slows the stage by this factor: gentle, because the pause for its `Retry-After`
/// already costs a second or more of slots.
const BACKOFF: f64 = 1.5;
/// Each accepted call takes this much of the slowdown away: recovery over some forty calls, so
/// the rate that was just refused is not tried again at once (each refusal costs a pause).
const RECOVERY: f64 = 0.99;
/// Calls are spaced this much wider than the configured rate, so that a limit set exactly to
/// the provider's is not crossed by network jitter (a request sent on time may arrive early).
const HEADROOM: f64 = 1.03;
/// Pause after a 429 without a usable `Retry-After`.
const DEFAULT_PAUSE: Duration = Duration::from_secs(5);
/// The first pause after server trouble, doubled at each further failure in a row (with
/// jitter) up to [`MAX_TROUBLE_PAUSE`]: an outage costs a probe call every few minutes, not
/// one every two seconds.
const FIRST_TROUBLE_PAUSE: Duration = Duration::from_secs(2);
const MAX_TROUBLE_PAUSE: Duration = Duration::from_secs(300);

impl Pacing {
    pub fn new(per_minute: u32, burst: u32) -> Pacing {
        let per_minute = NonZeroU32::new(per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
        let clock = TokioClock::default();
        let spacing = (Duration::from_secs(60) / per_minute.get()).mul_f64(HEADROOM);
        let quota = Quota::with_period(spacing)
            .unwrap_or_else(|| Quota::per_minute(per_minute))
            .allow_burst(burst);
        Pacing {
            limiter: RateLimiter::direct_with_clock(quota, clock.clone()),
            clock,
            spacing,
            slowdown: Mutex::new(Slowdown {
                paused_until: None,
                factor: 1.0,
                last_call: None,
                trouble: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slowdown> {
        self.slowdown.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long the caller must wait before its next call, or `None` if it may go now
    /// (in which case the call is counted).
    pub fn try_acquire(&self) -> Option<Duration> {
        let now = Instant::now();
        {
            let s = self.lock();
            if let Some(until) = s.paused_until.filter(|u| *u > now) {
                return Some(until - now);
            }
            if s.factor > 1.0
                && let Some(last) = s.last_call
            {
                let gap = self.spacing.mul_f64(s.factor);
                if now < last + gap {
                    return Some(last + gap - now);
                }
            }
        }
        match self.limiter.check() {
            Ok(()) => {
                self.lock().last_call = Some(now);
                None
            }
            Err(not_until) => Some(not_until.wait_time_from(self.clock.now())),
        }
    }

    /// Wait until a call may go, and count it.
    pub async fn acquire(&self) {
        while let Some(wait) = self.try_acquire() {
            tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
        }
    }

    /// The provider said 429: pause everyone, and slow down for a while after.
    pub fn rate_limited(&self, retry_after: Option<Duration>) {
        let mut s = self.lock();
        let pause = retry_after.unwrap_or(DEFAULT_PAUSE);
        let until = Instant::now() + pause;
        s.paused_until = Some(s.paused_until.map_or(until, |u| u.max(until)));
        s.factor = (s.factor * BACKOFF).min(MAX_SLOWDOWN);
    }

    /// Pause everyone for `pause` without slowing down afterwards (server errors, backoff).
    pub fn pause(&self, pause: Duration) {
        let mut s = self.lock();
        let until = Instant::now() + pause;
        s.paused_until = Some(s.paused_until.map_or(until, |u| u.max(until)));
    }

    /// The server failed (5xx, no connection): pause everyone, twice as long as after the
    /// previous failure in a row (with jitter), at most five minutes. Returns the pause.
    pub fn server_trouble(&self) -> Duration {
        let mut s = self.lock();
        s.trouble = s.trouble.saturating_add(1);
        let pause = FIRST_TROUBLE_PAUSE
            .saturating_mul(2u32.saturating_pow(s.trouble.saturating_sub(1).min(16)))
            .min(MAX_TROUBLE_PAUSE)
            .mul_f64(rand::random_range(0.8..1.2));
        let until = Instant::now() + pause;
        s.paused_until = Some(s.paused_until.map_or(until, |u| u.max(until)));
        pause
    }

    /// Whether the server failed the last call: then one call at a time probes it (a circuit
    /// breaker half open), instead of a burst into an outage.
    pub fn in_trouble(&self) -> bool {
        self.lock().trouble > 0
    }

    /// A call went through: the slowdown wears off a little, and server trouble is over.
    pub fn accepted(&self) {
        let mut s = self.lock();
        s.factor = (s.factor * RECOVERY).max(1.0);
        s.trouble = 0;
    }

    pub fn slowdown_factor(&self) -> f64 {
        self.lock().factor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_configured_rate_holds_after_the_burst() {
        let pacing = Pacing::new(60, 3);
        let start = Instant::now();
        for _ in 0..6 {
            pacing.acquire().await;
        }
        // 3 at once, then one a second.
        let took = Instant::now() - start;
        assert!(took >= Duration::from_secs(3), "{took:?}");
        assert!(took < Duration::from_secs(4), "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_pauses_everyone_for_its_retry_after_then_slows_the_rate() {
        let pacing = Pacing::new(600, 1);
        pacing.acquire().await;
        pacing.rate_limited(Some(Duration::from_secs(7)));
        let start = Instant::now();
        pacing.acquire().await;
        assert!(Instant::now() - start >= Duration::from_secs(7));
        assert_eq!(pacing.slowdown_factor(), 1.5);
        // Spacing is now 1.5 x 103 ms.
        let start = Instant::now();
        pacing.acquire().await;
        assert!(Instant::now() - start >= Duration::from_millis(150));
    }

    #[tokio::test(start_paused = true)]
    async fn an_outage_is_probed_ever_more_rarely_and_one_success_ends_it() {
        let pacing = Pacing::new(6000, 10);
        let mut pauses = Vec::new();
        for _ in 0..10 {
            pauses.push(pacing.server_trouble());
        }
        assert!(pacing.in_trouble());
        // 2 s, 4 s, 8 s, ... (within their jitter), capped at five minutes.
        assert!(
            pauses[0] >= Duration::from_millis(1600) && pauses[0] <= Duration::from_millis(2400)
        );
        assert!(
            pauses[3] >= Duration::from_millis(12_800)
                && pauses[3] <= Duration::from_millis(19_200)
        );
        assert!(pauses[9] <= Duration::from_secs(360) && pauses[9] >= Duration::from_secs(240));
        // Ten failures in a row cost about ten probes over ten minutes, not 300.
        let total: Duration = pauses.iter().sum();
        assert!(total >= Duration::from_secs(600), "{total:?}");
        let start = Instant::now();
        pacing.acquire().await;
        assert!(Instant::now() - start >= Duration::from_secs(240));
        pacing.accepted();
        assert!(!pacing.in_trouble());
        assert!(
            pacing.server_trouble() <= Duration::from_millis(2400),
            "it starts over"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_slowdown_wears_off_gradually() {
        let pacing = Pacing::new(600, 1);
        pacing.rate_limited(Some(Duration::ZERO));
        pacing.rate_limited(Some(Duration::ZERO));
        assert_eq!(pacing.slowdown_factor(), 2.25);
        pacing.accepted();
        assert!(pacing.slowdown_factor() < 2.25 && pacing.slowdown_factor() > 2.0);
        for _ in 0..100 {
            pacing.accepted();
        }
        assert_eq!(pacing.slowdown_factor(), 1.0);
    }
}
