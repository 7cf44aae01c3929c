//! The live line of a `recast run` on a terminal: done of all, what is in flight, why the rest
//! waits (paused, the budget, the in-flight cap, the submit pace), the money (labelled when it
//! is simulated), uploads, and an ETA that only counts down.
//!
//! Owns: [`show_progress`] and the pure [`progress_message`] it draws each tick. May not: drive
//! the run or write anything.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::media_store::UploadProgress;
use crate::store::{BatchSummary, JobState, Store};

/// What the line is drawn from, besides the batch's summary.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    /// Jobs the budget holds back.
    pub held: u64,
    /// Tasks in flight for the provider, all batches (what the cap counts).
    pub provider_in_flight: u64,
    pub max_in_flight: u32,
    pub submit_per_minute: u32,
    /// Estimated time left, once a clip has landed in this run.
    pub eta: Option<Duration>,
}

/// The message after the bar: `2 running · 5 waiting (in-flight cap 2) · 1.132 USD simulated`.
pub fn progress_message(s: &BatchSummary, ctx: &Context) -> String {
    let c = &s.counts;
    let mut parts = Vec::new();
    for (state, word) in [
        (JobState::Submitting, "submitting"),
        (JobState::Running, "running"),
        (JobState::Downloading, "downloading"),
    ] {
        if c.get(state) > 0 {
            parts.push(format!("{} {word}", c.get(state)));
        }
    }
    let waiting = c.get(JobState::Planned);
    if waiting > 0 {
        let why = if s.cancelled {
            "cancelled".to_owned()
        } else if s.awaiting_approval > 0 {
            format!("canary: `recast approve {}` releases them", s.name)
        } else if s.paused {
            "paused: `recast resume` lets them go".to_owned()
        } else if ctx.held >= waiting {
            "held by the budget".to_owned()
        } else if ctx.provider_in_flight >= u64::from(ctx.max_in_flight) {
            format!("in-flight cap {}", ctx.max_in_flight)
        } else {
            format!("submit pace {}/min", ctx.submit_per_minute)
        };
        parts.push(format!("{waiting} waiting ({why})"));
    }
    let money = s.credits_spent as f64 / 1000.0;
    parts.push(if s.provider == "simulator" {
        format!("{money:.3} USD simulated, nothing billed")
    } else {
        format!("{money:.3} USD spent")
    });
    parts.push(match ctx.eta {
        Some(eta) if eta.is_zero() => "finishing".to_owned(),
        Some(eta) => format!("ETA {}", short_duration(eta)),
        None => "ETA after the first clip".to_owned(),
    });
    parts.join(" · ")
}

fn short_duration(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
    }
}

/// An ETA from the pace of clips landed in this run, set when a clip lands and only counting
/// down between landings (waiting for polls does not make it grow).
#[derive(Debug)]
struct Eta {
    started: Instant,
    done_at_start: u64,
    last_done: u64,
    /// When the last clip landed, and the time left estimated then.
    estimate: Option<(Instant, Duration)>,
}

impl Eta {
    fn update(&mut self, done: u64, total: u64, now: Instant) -> Option<Duration> {
        if done > self.last_done && done > self.done_at_start {
            self.last_done = done;
            let per_clip = (now - self.started) / (done - self.done_at_start) as u32;
            self.estimate = Some((now, per_clip * total.saturating_sub(done) as u32));
        }
        self.estimate
            .map(|(at, left)| left.saturating_sub(now.saturating_duration_since(at)))
    }
}

pub(super) async fn show_progress(
    store: Arc<Store>,
    batch_id: i64,
    uploads: Option<Arc<UploadProgress>>,
    limits: (u32, u32),
    stop: CancellationToken,
) {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} done · {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut eta: Option<Eta> = None;
    loop {
        // Off the runtime: the engine's stages share its workers, and a read may wait.
        let read = store
            .off_runtime(move |store| {
                let s = store.batch_summary(batch_id)?;
                let held = store.held_count(batch_id).unwrap_or(0);
                let in_flight = store
                    .provider_in_flight(&crate::store::Scope::provider(&s.provider))
                    .unwrap_or(0);
                Ok((s, held, in_flight))
            })
            .await;
        if let Ok((s, held, provider_in_flight)) = read {
            let c = &s.counts;
            let total = c.total() - c.get(JobState::Cancelled);
            let done = c.get(JobState::Done);
            let now = Instant::now();
            let eta = eta.get_or_insert(Eta {
                started: now,
                done_at_start: done,
                last_done: done,
                estimate: None,
            });
            let ctx = Context {
                held,
                provider_in_flight,
                max_in_flight: limits.0,
                submit_per_minute: limits.1,
                eta: eta.update(done, total, now),
            };
            bar.set_length(total);
            bar.set_position(done);
            bar.set_message(
                progress_message(&s, &ctx)
                    + &uploads.as_deref().map(upload_text).unwrap_or_default(),
            );
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
    bar.finish_and_clear();
}

/// ` · uploading 3.1/12.0 MB` while media go up to the bucket.
fn upload_text(u: &UploadProgress) -> String {
    use std::sync::atomic::Ordering::Relaxed;
    let (sent, total) = (u.bytes_sent.load(Relaxed), u.bytes_total.load(Relaxed));
    if sent >= total {
        return String::new();
    }
    format!(
        " · uploading {:.1}/{:.1} MB",
        sent as f64 / 1e6,
        total as f64 / 1e6
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::JobStateCounts;

    fn summary(provider: &str, states: &[(JobState, u64)]) -> BatchSummary {
        let counts = JobStateCounts {
            by_state: states.iter().copied().collect(),
        };
        BatchSummary {
            id: 1,
            name: "b".into(),
            provider: provider.into(),
            manifest_path: "b.yaml".into(),
            output_dir: "out".into(),
            budget_credits: None,
            paused: false,
            cancelled: false,
            counts,
            credits_spent: 1132,
            credits_refunded: 0,
            credits_uncertain: 0,
            subjects: 0,
            earlier_versions: 0,
            canary: None,
            approved: false,
            awaiting_approval: 0,
        }
    }

    fn ctx() -> Context {
        Context {
            held: 0,
            provider_in_flight: 2,
            max_in_flight: 2,
            submit_per_minute: 30,
            eta: None,
        }
    }

    #[test]
    fn waiting_jobs_say_why_and_simulated_money_says_so() {
        let s = summary(
            "simulator",
            &[(JobState::Running, 2), (JobState::Planned, 5)],
        );
        let line = progress_message(&s, &ctx());
        assert_eq!(
            line,
            "2 running · 5 waiting (in-flight cap 2) · 1.132 USD simulated, nothing billed · \
             ETA after the first clip"
        );
        let mut paused = summary("https://reapi.ai", &[(JobState::Planned, 3)]);
        paused.paused = true;
        assert!(progress_message(&paused, &ctx()).contains("3 waiting (paused"));
        assert!(progress_message(&paused, &ctx()).contains("1.132 USD spent"));
        let held = Context { held: 3, ..ctx() };
        let real = summary("https://reapi.ai", &[(JobState::Planned, 3)]);
        assert!(progress_message(&real, &held).contains("(held by the budget)"));
        let free = Context {
            provider_in_flight: 0,
            ..ctx()
        };
        assert!(progress_message(&real, &free).contains("(submit pace 30/min)"));
    }

    #[test]
    fn the_eta_waits_for_a_first_clip_then_only_counts_down() {
        let t0 = Instant::now();
        let mut eta = Eta {
            started: t0,
            done_at_start: 0,
            last_done: 0,
            estimate: None,
        };
        assert_eq!(eta.update(0, 10, t0 + Duration::from_secs(5)), None);
        // One clip in 10 s: 9 left, 90 s.
        let first = eta.update(1, 10, t0 + Duration::from_secs(10)).unwrap();
        assert_eq!(first, Duration::from_secs(90));
        // Twenty seconds of waiting for polls: it goes down, not up.
        let later = eta.update(1, 10, t0 + Duration::from_secs(30)).unwrap();
        assert_eq!(later, Duration::from_secs(70));
        assert_eq!(
            eta.update(1, 10, t0 + Duration::from_secs(500)),
            Some(Duration::ZERO)
        );
    }
}
