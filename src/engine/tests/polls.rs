//! The poll schedule on tokio's paused clock: ten virtual minutes of a task that never ends
//! take no real time, and every gap between polls is the one the schedule asks for.

use super::*;

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
    let engine = batch_engine(
        &store,
        provider.clone(),
        batch,
        EngineConfig {
            submit_per_minute: 6000,
            poll_schedule: schedule.clone(),
            ..EngineConfig::default()
        },
    );
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
