//! Polls on tokio's paused clock: the schedule's gaps, a task the provider forgets, and one
//! that never ends.

use super::*;

/// Submits as fast as asked, polls on `schedule`.
fn polling(schedule: PollSchedule) -> EngineConfig {
    EngineConfig {
        submit_per_minute: 6000,
        poll_schedule: schedule,
        ..EngineConfig::default()
    }
}

#[tokio::test(start_paused = true)]
async fn a_running_task_is_polled_on_its_schedule_by_tokio_clock() {
    let (store, batch) = registered_store(1);
    let provider = Arc::new(ScriptedProvider::default());
    let schedule = PollSchedule {
        first_base: Duration::from_secs(20),
        first_per_clip_second: Duration::ZERO,
        first_max: Duration::from_secs(20),
        interval_min: Duration::from_secs(5),
        interval_max: Duration::from_secs(60),
    };
    let engine = batch_engine(&store, provider.clone(), batch, polling(schedule.clone()));
    let stop = CancellationToken::new();
    let run = {
        let stop = stop.clone();
        tokio::spawn(async move { engine.run(RunMode::UntilDone, stop).await })
    };
    tokio::time::sleep(Duration::from_secs(600)).await;
    stop.cancel();
    run.await.unwrap().unwrap();

    let submitted = provider.submit_times.lock().unwrap()[0];
    let polls = provider.poll_times.lock().unwrap().clone();
    // 20 s, then 5, 7.5, 11.3, 16.9, 25.3, 38, 57, then every 60 s (each +-20%).
    assert!((11..=19).contains(&polls.len()), "{} polls", polls.len());
    let slack = Duration::from_secs(1);
    let first = polls[0] - submitted;
    assert!(
        // The store keeps the first due time in milliseconds.
        first >= Duration::from_millis(19_990) && first <= Duration::from_secs(20) + slack,
        "first poll after {first:?}"
    );
    for (k, pair) in polls.windows(2).enumerate() {
        let asked = schedule
            .interval_min
            .mul_f64(1.5f64.powi(k as i32))
            .min(schedule.interval_max);
        let gap = pair[1] - pair[0];
        assert!(
            gap >= asked.mul_f64(0.8) && gap <= asked.mul_f64(1.2) + slack,
            "gap {k}: {gap:?}, the schedule asks {asked:?} +-20%"
        );
    }
    let running = store.job_rows(batch, &[JobState::Running]).unwrap();
    assert_eq!(running.len(), 1, "still running: nothing ended it");
}

#[tokio::test(start_paused = true)]
async fn a_task_the_provider_forgets_is_lost_and_never_submitted_again_by_itself() {
    let (store, batch) = registered_store(2);
    let provider = Arc::new(ScriptedProvider::default());
    provider.polls_not_found.store(true, Ordering::SeqCst);
    let engine = batch_engine(
        &store,
        provider.clone(),
        batch,
        polling(PollSchedule::for_simulator()),
    );
    let report = engine
        .run(RunMode::UntilDone, CancellationToken::new())
        .await
        .unwrap();
    assert!(report.halted.is_none());
    let counts = store.batch_counts(batch).unwrap();
    assert_eq!(counts.get(JobState::Lost), 2, "{counts:?}");
    // Neither a new run nor `retry --unknown` submits them again: only a priced --lost retry.
    let unknown = crate::store::RetrySelection {
        unknown: true,
        ..Default::default()
    };
    assert_eq!(store.retry(batch, unknown, false).unwrap(), 0);
    engine
        .run(RunMode::NoWait, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(provider.submits.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_task_that_never_ends_is_polled_no_more_after_the_maximum_age() {
    let (store, batch) = registered_store(1);
    // The scripted provider answers `processing` for ever.
    let provider = Arc::new(ScriptedProvider::default());
    let engine = batch_engine(
        &store,
        provider.clone(),
        batch,
        EngineConfig {
            max_task_age: Duration::ZERO,
            ..polling(PollSchedule::for_simulator())
        },
    );
    let report = engine
        .run(RunMode::UntilDone, CancellationToken::new())
        .await
        .unwrap();
    assert!(report.halted.is_none());
    let jobs = store.attention_jobs(batch).unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].state, JobState::Failed);
    let why = jobs[0].reason.as_deref().unwrap();
    assert!(why.contains("polled no more"), "{why}");
    assert_eq!(
        provider.submits.load(Ordering::SeqCst),
        1,
        "never re-sent by itself"
    );
}

#[tokio::test(start_paused = true)]
async fn a_poll_429_pauses_polls_for_its_retry_after() {
    let (store, batch) = registered_store(1);
    let provider = Arc::new(ScriptedProvider::default());
    provider.polls_refused.store(1, Ordering::SeqCst);
    let every = Duration::from_secs(5);
    let schedule = PollSchedule {
        first_base: every,
        first_per_clip_second: Duration::ZERO,
        first_max: every,
        interval_min: every,
        interval_max: every,
    };
    let engine = batch_engine(&store, provider.clone(), batch, polling(schedule));
    let stop = CancellationToken::new();
    let run = {
        let stop = stop.clone();
        tokio::spawn(async move { engine.run(RunMode::UntilDone, stop).await })
    };
    tokio::time::sleep(Duration::from_secs(120)).await;
    stop.cancel();
    run.await.unwrap().unwrap();

    let polls = provider.poll_times.lock().unwrap().clone();
    assert!(
        polls.len() >= 3,
        "polls go on after the pause: {}",
        polls.len()
    );
    // The task is due every 5 s; the 429's 30 s come first.
    let gap = polls[1] - polls[0];
    assert!(gap >= Duration::from_secs(30), "polled again after {gap:?}");
}
