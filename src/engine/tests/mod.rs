//! Engine behaviour that needs control of time: a scripted provider behind the [`Provider`]
//! trait, an in-memory store, and tokio's paused clock.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::*;
use crate::provider::{ProviderError, SubmitRequest, TaskState, TaskStatus};
use crate::store::{JobState, NewBatch, NewJob, Scope};

mod polls;

/// Answers submits from a script (then accepts everything); tasks never finish.
#[derive(Default)]
struct ScriptedProvider {
    submit_answers: Mutex<VecDeque<Result<String, ProviderError>>>,
    submits: AtomicU32,
    /// When each submit and each poll arrived, on tokio's clock.
    submit_times: Mutex<Vec<tokio::time::Instant>>,
    poll_times: Mutex<Vec<tokio::time::Instant>>,
    /// Polls answer 404 (the provider no longer knows the task).
    polls_not_found: std::sync::atomic::AtomicBool,
    /// Polls answered 429 (with `Retry-After: 30`) before they are answered again.
    polls_refused: AtomicU32,
    /// Polls panic (a bug in a stage must stop the run, not vanish).
    polls_panic: std::sync::atomic::AtomicBool,
}

impl Provider for Arc<ScriptedProvider> {
    async fn submit(&self, _: &SubmitRequest, _: &str) -> Result<String, ProviderError> {
        let n = self.submits.fetch_add(1, Ordering::SeqCst);
        self.submit_times
            .lock()
            .unwrap()
            .push(tokio::time::Instant::now());
        let scripted = self.submit_answers.lock().unwrap().pop_front();
        scripted.unwrap_or_else(|| Ok(format!("task-{n}")))
    }

    async fn balance(&self) -> Result<Option<u64>, ProviderError> {
        Ok(None)
    }

    async fn poll(&self, task_id: &str) -> Result<TaskStatus, ProviderError> {
        if self.polls_panic.load(Ordering::SeqCst) {
            panic!("scripted poll panic");
        }
        let polled = {
            let mut times = self.poll_times.lock().unwrap();
            times.push(tokio::time::Instant::now());
            times.len()
        };
        let refuse = self.polls_refused.load(Ordering::SeqCst);
        if refuse > 0 {
            self.polls_refused.store(refuse - 1, Ordering::SeqCst);
            return Err(ProviderError::RateLimited {
                retry_after: Some(Duration::from_secs(30)),
            });
        }
        if self.polls_not_found.load(Ordering::SeqCst) {
            return Err(ProviderError::TaskNotFound {
                task_id: task_id.to_owned(),
            });
        }
        Ok(TaskStatus {
            state: TaskState::Running,
            word: "processing".into(),
            // Grows with every answer, as a real task's does.
            progress: Some(polled.min(99) as u8),
            video_url: None,
            error: None,
            billed_credits: None,
            reference: Default::default(),
        })
    }
}

/// A provider whose first submit answers 402, and every later one is accepted.
fn out_of_credits_once() -> Arc<ScriptedProvider> {
    let provider = Arc::new(ScriptedProvider::default());
    provider
        .submit_answers
        .lock()
        .unwrap()
        .push_back(Err(ProviderError::OutOfCredits {
            message: "balance is 0".into(),
            reference: Default::default(),
        }));
    provider
}

fn registered_store(jobs: usize) -> (Arc<Store>, i64) {
    let store = Store::open_in_memory().unwrap();
    let batch = register_jobs(&store, jobs);
    (Arc::new(store), batch)
}

fn register_jobs(store: &Store, jobs: usize) -> i64 {
    let spec = StoredSpec {
        model: "kling-v3-motion-control".into(),
        mode: crate::pricing::Mode::Std,
        character_orientation: crate::media::Orientation::Image,
        keep_original_sound: true,
        prompt: None,
        image: StoredMedia::Url("https://cdn.example.com/a.png".into()),
        video: StoredMedia::Url("https://cdn.example.com/v.mp4".into()),
    };
    let report = store
        .register_batch(
            &NewBatch {
                name: "b".into(),
                provider: "scripted".into(),
                manifest_path: "b.yaml".into(),
                base_dir: "/nonexistent".into(),
                output_dir: "/nonexistent/out".into(),
                budget_credits: None,
                retries: 0,
                priority: 0,
                canary: None,
            },
            (0..jobs).map(|i| NewJob {
                key: format!("key{i}"),
                subject_id: format!("s{i}"),
                output_name: format!("s{i}.mp4"),
                spec_json: spec.to_json(),
                duration_ms: 5000,
                estimate_credits: Some(566),
                invalid_reason: None,
                landed: None,
                adopt: None,
            }),
        )
        .unwrap();
    report.batch_id
}

/// An engine over `store` and the scripted provider, for the batches of "scripted".
fn scripted_engine(
    store: &Arc<Store>,
    provider: &Arc<ScriptedProvider>,
    config: EngineConfig,
) -> Arc<Engine<Arc<ScriptedProvider>>> {
    Engine::new(
        store.clone(),
        provider.clone(),
        MediaPublisher::default(),
        config,
        Scope::provider("scripted"),
    )
    .unwrap()
}

/// An engine over `store` and the scripted provider, for one batch.
fn batch_engine(
    store: &Arc<Store>,
    provider: Arc<ScriptedProvider>,
    batch: i64,
    config: EngineConfig,
) -> Arc<Engine<Arc<ScriptedProvider>>> {
    Engine::new(
        store.clone(),
        provider,
        MediaPublisher::default(),
        config,
        Scope::batches("scripted", vec![batch]),
    )
    .unwrap()
}

/// Polls `what` every 10 ms for at most 10 s; panics with `label` if it never holds.
pub(crate) async fn wait_until(label: &str, what: impl Fn() -> bool) {
    for _ in 0..1000 {
        if what() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {label}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submit_never_leaves_before_its_intent_is_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let batch = register_jobs(&store, 5);
    store.hold_syncs(true);
    let (_, syncs_before) = store.commit_counts();
    let provider = Arc::new(ScriptedProvider::default());
    let config = EngineConfig {
        submit_per_minute: 60_000,
        submit_burst: 5,
        ..EngineConfig::default()
    };
    let engine = scripted_engine(&store, &provider, config);
    // One pass of submits: it claims (commits) intents without waiting for their sync, and
    // each send waits for it. No other write happens meanwhile, so nothing blocks on the hold.
    let pass = tokio::spawn({
        let engine = engine.clone();
        async move { engine.submit_pass(&CancellationToken::new()).await }
    });

    // Intents are committed (readable), but their commit is not on disk yet.
    wait_until("an intent is committed", || {
        let counts = store.batch_counts(batch).unwrap();
        counts.get(JobState::Submitting) + counts.get(JobState::Running) >= 1
    })
    .await;
    // Give the send tasks every chance to go out wrongly (a bounded check that nothing does).
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(
            provider.submits.load(Ordering::SeqCst),
            0,
            "a submit left before its intent was on disk"
        );
    }
    assert_eq!(
        store.commit_counts().1,
        syncs_before,
        "nothing synced while held"
    );

    store.hold_syncs(false);
    wait_until("every job was submitted", || {
        provider.submits.load(Ordering::SeqCst) == 5
    })
    .await;
    pass.await.unwrap().unwrap();
    assert_eq!(store.batch_counts(batch).unwrap().get(JobState::Running), 5);
}

#[tokio::test(start_paused = true)]
async fn in_the_daemon_a_402_pauses_submitting_then_one_submit_tries_again() {
    let (store, batch) = registered_store(3);
    let provider = out_of_credits_once();
    let config = EngineConfig {
        out_of_credits_pause: Duration::from_secs(300),
        submit_per_minute: 6000,
        ..EngineConfig::default()
    };
    let engine = scripted_engine(&store, &provider, config);
    let shutdown = CancellationToken::new();
    let run = tokio::spawn({
        let (engine, shutdown) = (engine.clone(), shutdown.clone());
        async move { engine.run(RunMode::Forever, shutdown).await }
    });

    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(
        provider.submits.load(Ordering::SeqCst),
        1,
        "nothing more after the 402"
    );
    assert_eq!(store.batch_counts(batch).unwrap().get(JobState::Planned), 3);

    tokio::time::sleep(Duration::from_secs(250)).await;
    assert_eq!(
        provider.submits.load(Ordering::SeqCst),
        4,
        "submitting resumed after the pause"
    );
    assert_eq!(store.batch_counts(batch).unwrap().get(JobState::Running), 3);

    shutdown.cancel();
    let report = run.await.unwrap().unwrap();
    assert!(report.halted.is_none());
}

#[tokio::test(start_paused = true)]
async fn a_one_shot_run_stops_submitting_on_a_402_and_says_why() {
    let (store, batch) = registered_store(3);
    let provider = out_of_credits_once();
    let engine = batch_engine(&store, provider.clone(), batch, EngineConfig::default());
    let report = engine
        .run(RunMode::UntilDone, CancellationToken::new())
        .await
        .unwrap();
    assert!(matches!(report.halted, Some(Halt::OutOfCredits(_))));
    assert_eq!(provider.submits.load(Ordering::SeqCst), 1);
    assert_eq!(store.batch_counts(batch).unwrap().get(JobState::Planned), 3);
}

#[tokio::test(start_paused = true)]
async fn a_panic_in_a_stage_stops_the_run_with_an_error() {
    let (store, batch) = registered_store(1);
    let provider = Arc::new(ScriptedProvider::default());
    provider.polls_panic.store(true, Ordering::SeqCst);
    let engine = batch_engine(
        &store,
        provider,
        batch,
        EngineConfig {
            poll_schedule: PollSchedule::for_simulator(),
            ..EngineConfig::default()
        },
    );
    let outcome = engine
        .run(RunMode::UntilDone, CancellationToken::new())
        .await;
    match outcome {
        Err(EngineError::Panicked(message)) => {
            assert!(message.contains("scripted poll panic"), "{message}")
        }
        other => panic!("expected a panic error, got {other:?}"),
    }
}

/// A re-send refused with a 400 proves nothing about the first send, whose task may exist and
/// be billed: the job stays `unknown` with those credits counted, never `rejected`.
#[tokio::test(start_paused = true)]
async fn a_resend_refused_with_a_400_stays_unknown_and_counted() {
    let (store, batch) = registered_store(1);
    let provider = Arc::new(ScriptedProvider::default());
    provider.submit_answers.lock().unwrap().extend([
        Err(ProviderError::Ambiguous("the connection closed".into())),
        Err(ProviderError::Rejected {
            status: 400,
            message: "image_url cannot be fetched".into(),
            reference: Default::default(),
        }),
    ]);
    let config = EngineConfig {
        trust_idempotency: true,
        ..EngineConfig::default()
    };
    let engine = scripted_engine(&store, &provider, config);
    for _ in 0..20 {
        if provider.submits.load(Ordering::SeqCst) == 2 {
            break;
        }
        engine.submit_pass(&CancellationToken::new()).await.unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    assert_eq!(
        provider.submits.load(Ordering::SeqCst),
        2,
        "sent, then re-sent once"
    );
    let counts = store.batch_counts(batch).unwrap();
    assert_eq!(counts.get(JobState::Rejected), 0);
    assert_eq!(counts.get(JobState::Unknown), 1);
    let summary = store.batch_summary(batch).unwrap();
    assert_eq!(
        summary.credits_uncertain, 566,
        "the first send may have billed"
    );
    // Held for a person: no third send.
    engine.submit_pass(&CancellationToken::new()).await.unwrap();
    assert_eq!(provider.submits.load(Ordering::SeqCst), 2);
}
