//! How fast the engine may call the provider: a configured rate and burst (governor), and on top
//! of it what 429s taught about the provider's real limit ([`super::limit_search`]).
//!
//! A 429 pauses every call for its `Retry-After`; server trouble opens the circuit breaker
//! ([`super::breaker`]) that submits and polls share. Calls pass the gate twice: when a submit is
//! claimed, and again just before it is sent (after its intent's sync), so that the time a sync
//! takes never bunches sends closer than the rate allows.
//!
//! Time is tokio's, so the pacing is testable with paused time.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::Clock;
use governor::{Quota, RateLimiter};

use super::breaker::Breaker;
use super::limit_search::LimitSearch;
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
    last_call: Option<Instant>,
    last_send: Option<Instant>,
    /// Calls to be accepted before calls go more than one at a time again, after a 429: a
    /// provider refusing now and then is not sent bursts it may refuse all at once.
    refused: u32,
    /// Calls sent and not yet answered.
    on_wire: u32,
    search: LimitSearch,
}

/// A call on the wire, from [`Pacing::before_send`] until its answer is handled (dropped).
#[must_use]
pub struct OnWire<'a> {
    pacing: &'a Pacing,
    /// This call is the breaker's probe.
    probe: bool,
    sent: Instant,
}

impl OnWire<'_> {
    /// When the call left (passed the gate): a 429 for it is judged at the rate it went at.
    pub fn sent(&self) -> Instant {
        self.sent
    }
}

impl Drop for OnWire<'_> {
    fn drop(&mut self) {
        let mut s = self.pacing.lock();
        s.on_wire = s.on_wire.saturating_sub(1);
        drop(s);
        if self.probe {
            self.pacing.breaker.probe_answered();
        }
        self.pacing.wire_freed.notify_waiters();
    }
}

/// A shared gate every call of one kind (submits, or polls) passes through.
#[derive(Debug)]
pub struct Pacing {
    limiter: Limiter,
    /// The same quota again, taken just before a call leaves (see the module's doc).
    send_limiter: Limiter,
    clock: TokioClock,
    spacing: Duration,
    slowdown: Mutex<Slowdown>,
    wire_freed: tokio::sync::Notify,
    /// The provider's trouble, shared by every gate.
    breaker: Arc<Breaker>,
    /// This gate's own trouble, not the provider's (publishing media, the output folder).
    local: Breaker,
}

/// Calls are spaced this much wider than the configured rate, so that a limit set exactly to
/// the provider's is not crossed by network jitter (a request sent on time may arrive early).
const HEADROOM: f64 = 1.03;
/// Calls accepted in a row after a 429 before more than one is on the wire again.
const ALONE_AFTER_429: u32 = 20;
/// Pause after a 429 without a usable `Retry-After`.
const DEFAULT_PAUSE: Duration = Duration::from_secs(5);

impl Pacing {
    /// A gate with a breaker of its own.
    pub fn new(per_minute: u32, burst: u32) -> Pacing {
        Pacing::sharing(per_minute, burst, Arc::default())
    }

    /// A gate whose server trouble is `breaker`'s, shared with other gates.
    pub fn sharing(per_minute: u32, burst: u32, breaker: Arc<Breaker>) -> Pacing {
        let per_minute = NonZeroU32::new(per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
        let clock = TokioClock::default();
        let spacing = (Duration::from_secs(60) / per_minute.get()).mul_f64(HEADROOM);
        let quota = Quota::with_period(spacing)
            .unwrap_or_else(|| Quota::per_minute(per_minute))
            .allow_burst(burst);
        Pacing {
            limiter: RateLimiter::direct_with_clock(quota, clock.clone()),
            send_limiter: RateLimiter::direct_with_clock(quota, clock.clone()),
            clock,
            spacing,
            slowdown: Mutex::new(Slowdown {
                paused_until: None,
                last_call: None,
                last_send: None,
                refused: 0,
                on_wire: 0,
                search: LimitSearch::default(),
            }),
            wire_freed: tokio::sync::Notify::new(),
            breaker,
            local: Breaker::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slowdown> {
        self.slowdown.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long the caller must wait before its next call, or `None` if it may go now
    /// (in which case the call is counted).
    pub fn try_acquire(&self) -> Option<Duration> {
        self.try_pass(&self.limiter, |s| &mut s.last_call)
    }

    fn try_pass(
        &self,
        limiter: &Limiter,
        last: fn(&mut Slowdown) -> &mut Option<Instant>,
    ) -> Option<Duration> {
        let now = Instant::now();
        if let Some(wait) = self.breaker.wait(now).max(self.local.wait(now)) {
            return Some(wait);
        }
        {
            let mut s = self.lock();
            if let Some(until) = s.paused_until.filter(|u| *u > now) {
                return Some(until - now);
            }
            let factor = s.search.factor();
            if factor > 1.0
                && let Some(last) = *last(&mut s)
            {
                let gap = self.spacing.mul_f64(factor);
                if now < last + gap {
                    return Some(last + gap - now);
                }
            }
        }
        match limiter.check() {
            Ok(()) => {
                *last(&mut self.lock()) = Some(now);
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

    /// Wait, just before a claimed call leaves, until the rate (and any pause) lets it; after
    /// a 429, also until no other call is on the wire, and while the breaker is tripped, until
    /// this call is its one probe: the first call after a pause goes alone (a burst after it
    /// would cross a limit, a storm or an outage blindly).
    /// Hold the answer's handling in the returned [`OnWire`].
    pub async fn before_send(&self) -> OnWire<'_> {
        loop {
            while let Some(wait) = self.try_pass(&self.send_limiter, |s| &mut s.last_send) {
                tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
            }
            let freed = self.wire_freed.notified();
            {
                let mut s = self.lock();
                if !(s.refused > 0 && s.on_wire > 0)
                    && let Some(probe) = self.breaker.try_probe()
                {
                    s.on_wire += 1;
                    return OnWire {
                        pacing: self,
                        probe,
                        sent: Instant::now(),
                    };
                }
            }
            tokio::select! {
                _ = freed => {}
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    }

    /// The provider said 429 to a call sent at `sent`: pause everyone for its `Retry-After`,
    /// and let the limit search judge whether a limit is being crossed.
    pub fn rate_limited(&self, retry_after: Option<Duration>, sent: Instant) {
        let mut s = self.lock();
        let now = Instant::now();
        let pause = retry_after.unwrap_or(DEFAULT_PAUSE);
        let until = now + pause;
        s.paused_until = Some(s.paused_until.map_or(until, |u| u.max(until)));
        s.refused = ALONE_AFTER_429;
        s.search.refused(now, sent);
    }

    /// What the provider's rate-limit headers said: its quota becomes the rate at once, and a
    /// window used up (nothing remaining) pauses everyone until it comes back, unless the
    /// quota is known (then the rate already spaces calls as it asks).
    pub fn provider_told(&self, hint: crate::provider::RateLimitHint) {
        if let Some(per_minute) = hint.per_minute {
            // With the same headroom as a configured rate: jitter must not cross it.
            let factor = self.factor_for(per_minute) * HEADROOM;
            self.lock().search.told(factor);
        } else if let (Some(0), Some(reset)) = (hint.remaining, hint.reset) {
            self.pause(reset);
        }
    }

    /// Start from a limit learned in an earlier run (a factor of the configured spacing).
    pub fn start_from_learned(&self, factor: f64) {
        self.lock().search.start_from(factor);
    }

    /// A limit found since the last call, as calls per minute, to be remembered.
    pub fn take_learned(&self) -> Option<f64> {
        let learned = self.lock().search.take_learned()?;
        Some(60.0 / self.spacing.mul_f64(learned).as_secs_f64())
    }

    /// The factor of the configured spacing that a calls-per-minute limit is.
    pub fn factor_for(&self, per_minute: f64) -> f64 {
        (60.0 / per_minute.max(0.001)) / self.spacing.as_secs_f64()
    }

    /// Pause everyone for `pause` without slowing down afterwards (server errors, backoff).
    pub fn pause(&self, pause: Duration) {
        let mut s = self.lock();
        let until = Instant::now() + pause;
        s.paused_until = Some(s.paused_until.map_or(until, |u| u.max(until)));
    }

    /// The server failed (503, no connection): open the shared breaker (see
    /// [`super::breaker`]), for at least `retry_after` if the answer named one. Returns the
    /// pause.
    pub fn server_trouble(&self, retry_after: Option<Duration>) -> Duration {
        self.breaker.failed(retry_after)
    }

    /// Something this gate's calls need besides the provider failed (publishing media, the
    /// output folder): pause this gate alone, with the same backoff.
    pub fn local_trouble(&self) -> Duration {
        self.local.failed(None)
    }

    /// Whether the server failed the last call or refused it (429): then one call at a time
    /// goes (a probe), instead of a burst into an outage or a limit.
    pub fn in_trouble(&self) -> bool {
        self.lock().refused > 0 || self.breaker.tripped() || self.local.tripped()
    }

    /// A call went through: server trouble is over, and the limit search counts it.
    pub fn accepted(&self) {
        let mut s = self.lock();
        s.search.accepted(Instant::now());
        s.refused = s.refused.saturating_sub(1);
        drop(s);
        self.breaker.answered();
        self.local.answered();
    }

    pub fn slowdown_factor(&self) -> f64 {
        self.lock().search.factor()
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
    async fn a_429_pauses_everyone_for_its_retry_after_and_one_alone_does_not_slow() {
        let pacing = Pacing::new(600, 1);
        pacing.acquire().await;
        // Enough accepted answers for the configured rate to be known safe (before that, a
        // first 429 slows the stage and descends: see `limit_search`).
        for _ in 0..super::super::limit_search::SAFE_RUN {
            pacing.accepted();
        }
        pacing.rate_limited(Some(Duration::from_secs(7)), Instant::now());
        let start = Instant::now();
        pacing.acquire().await;
        assert!(Instant::now() - start >= Duration::from_secs(7));
        assert_eq!(pacing.slowdown_factor(), 1.0);
    }

    #[tokio::test(start_paused = true)]
    async fn server_trouble_of_one_gate_pauses_the_other_and_lets_one_probe_out() {
        let breaker = Arc::new(Breaker::default());
        let submits = Pacing::sharing(6000, 10, breaker.clone());
        let polls = Pacing::sharing(6000, 10, breaker);
        let pause = polls.server_trouble(None);
        assert!(submits.in_trouble());
        let start = Instant::now();
        let probe = submits.before_send().await;
        assert!(
            Instant::now() - start >= pause,
            "the submit waited out the poll's pause"
        );
        // The submit is the probe: a poll waits for its answer.
        let waiting = tokio::time::timeout(Duration::from_secs(30), polls.before_send()).await;
        assert!(waiting.is_err(), "a second call went out during the probe");
        drop(probe);
        submits.accepted();
        assert!(!polls.in_trouble());
        let _poll = polls.before_send().await;
    }
}
