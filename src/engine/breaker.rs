//! The circuit breaker every call to the provider shares (submits and polls alike): while the
//! provider is failing (503, no connection), calls wait an ever longer pause, and then one call,
//! of whichever stage comes first, probes it.
//!
//! Owns: the count of failures in a row, the pause they impose, and which call is the probe.
//!
//! May not: decide what a failure means for a job (the engine's stages record that), or pace
//! calls by rate ([`super::pacing`] does; it consults the breaker before every call).
//!
//! Why shared: an outage is the provider's, not a stage's. With one breaker per stage, an outage
//! would be probed by submits and polls each, twice the calls into a provider that is down.
//! Time is tokio's, so the backoff is testable with paused time.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The first pause after a failure, doubled at each further failure in a row (with jitter) up
/// to [`MAX_PAUSE`]: an outage costs a few probe calls a minute, not one every two seconds,
/// and the first call after it ends leaves within seconds.
const FIRST_PAUSE: Duration = Duration::from_secs(2);
const MAX_PAUSE: Duration = Duration::from_secs(15);

#[derive(Debug, Default)]
struct State {
    /// Failures in a row since the last answer that worked; 0 when the circuit is closed.
    failures: u32,
    /// No call goes before this.
    open_until: Option<Instant>,
    /// A probe is on the wire: no other call goes until it is answered.
    probing: bool,
}

/// See the module's doc.
#[derive(Debug, Default)]
pub struct Breaker {
    state: Mutex<State>,
}

impl Breaker {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long calls must still wait, if the circuit is open.
    pub fn wait(&self, now: Instant) -> Option<Duration> {
        self.lock()
            .open_until
            .filter(|until| *until > now)
            .map(|until| until - now)
    }

    /// Whether the provider failed its last call: then calls go one at a time.
    pub fn tripped(&self) -> bool {
        self.lock().failures > 0
    }

    /// Take the one probe a tripped circuit allows; `true` also when the circuit is closed (no
    /// probe needed). A taken probe is given back with [`Breaker::probe_answered`].
    pub fn try_probe(&self) -> Option<bool> {
        let mut s = self.lock();
        if s.failures == 0 {
            return Some(false);
        }
        if s.probing {
            return None;
        }
        s.probing = true;
        Some(true)
    }

    pub fn probe_answered(&self) {
        self.lock().probing = false;
    }

    /// The provider failed a call: open the circuit for twice the last pause (with jitter), at
    /// least `retry_after` if the answer named one. Failures of calls already on the wire when
    /// the circuit opened do not lengthen it: they say nothing new. Returns the pause left.
    pub fn failed(&self, retry_after: Option<Duration>) -> Duration {
        let now = Instant::now();
        let mut s = self.lock();
        if let Some(until) = s.open_until.filter(|until| *until > now) {
            return until - now;
        }
        s.failures = s.failures.saturating_add(1);
        let pause = FIRST_PAUSE
            .saturating_mul(2u32.saturating_pow(s.failures.saturating_sub(1).min(16)))
            .min(MAX_PAUSE)
            .mul_f64(rand::random_range(0.8..1.2))
            .max(retry_after.unwrap_or_default());
        s.open_until = Some(now + pause);
        pause
    }

    /// The provider answered: the circuit closes.
    pub fn answered(&self) {
        let mut s = self.lock();
        s.failures = 0;
        s.open_until = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_outage_is_probed_ever_more_rarely_and_one_answer_ends_it() {
        let breaker = Breaker::default();
        let mut pauses = Vec::new();
        for _ in 0..10 {
            pauses.push(breaker.failed(None));
            // The next failure is the probe's, once the pause is over.
            tokio::time::advance(*pauses.last().unwrap()).await;
        }
        assert!(breaker.tripped());
        // 2 s, 4 s, 8 s, ... (within their jitter), capped at fifteen seconds.
        let within = |d: Duration, lo: u64, hi: u64| {
            d >= Duration::from_millis(lo) && d <= Duration::from_millis(hi)
        };
        assert!(within(pauses[0], 1_600, 2_400), "{pauses:?}");
        assert!(within(pauses[2], 6_400, 9_600), "{pauses:?}");
        assert!(within(pauses[9], 12_000, 18_000), "{pauses:?}");
        // A two-minute outage costs about a dozen probes, a few a minute, not sixty.
        let total: Duration = pauses.iter().sum();
        assert!(total >= Duration::from_secs(100), "{total:?}");
        breaker.answered();
        assert!(!breaker.tripped());
        assert!(
            breaker.failed(None) <= Duration::from_millis(2400),
            "it starts over"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn failures_of_calls_already_on_the_wire_do_not_lengthen_the_pause() {
        let breaker = Breaker::default();
        let first = breaker.failed(None);
        for _ in 0..20 {
            assert!(breaker.failed(None) <= first);
        }
        tokio::time::advance(first).await;
        assert!(breaker.wait(Instant::now()).is_none());
        let second = breaker.failed(None);
        assert!(second >= Duration::from_millis(3_200), "{second:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_tripped_circuit_lets_one_probe_out_and_honours_a_retry_after() {
        let breaker = Breaker::default();
        assert_eq!(breaker.try_probe(), Some(false), "closed: no probe needed");
        let pause = breaker.failed(Some(Duration::from_secs(40)));
        assert!(pause >= Duration::from_secs(40), "{pause:?}");
        assert_eq!(breaker.try_probe(), Some(true));
        assert_eq!(breaker.try_probe(), None, "one probe at a time");
        breaker.probe_answered();
        assert_eq!(breaker.try_probe(), Some(true));
    }
}
