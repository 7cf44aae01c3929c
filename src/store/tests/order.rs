//! Which job goes next: fairness between batches, priority, pauses and canaries.

use super::*;

#[test]
fn a_small_batch_is_not_starved_behind_a_large_one() {
    let store = Store::open_in_memory().unwrap();
    let big = store
        .register_batch(&batch("big", None, 0), jobs("big", 1000))
        .unwrap();
    let small = store
        .register_batch(&batch("small", None, 0), jobs("small", 10))
        .unwrap();
    let mut per_batch = std::collections::HashMap::new();
    for n in 0..20 {
        let i = claim(&store).unwrap();
        store
            .record_submitted(&i, &format!("t{n}"), 0)
            .now_or_never()
            .unwrap()
            .unwrap();
        *per_batch.entry(i.batch_id).or_insert(0) += 1;
    }
    assert_eq!(per_batch[&small.batch_id], 10);
    assert_eq!(per_batch[&big.batch_id], 10);
}

#[test]
fn priority_goes_first_and_paused_batches_wait() {
    let store = Store::open_in_memory().unwrap();
    let low = store
        .register_batch(&batch("low", None, 0), jobs("low", 3))
        .unwrap();
    let high = store
        .register_batch(&batch("high", None, 5), jobs("high", 3))
        .unwrap();
    assert_eq!(claim(&store).unwrap().batch_id, high.batch_id);
    store.set_paused(Some(high.batch_id), true).unwrap();
    assert_eq!(claim(&store).unwrap().batch_id, low.batch_id);
}

#[test]
fn a_canary_batch_submits_its_first_subjects_then_waits_for_approval() {
    let store = Store::open_in_memory().unwrap();
    let r = store
        .register_batch(
            &NewBatch {
                canary: Some(2),
                ..batch("b", None, 0)
            },
            jobs("k", 5),
        )
        .unwrap();
    assert!(claim(&store).is_some());
    assert!(claim(&store).is_some());
    assert!(claim(&store).is_none(), "the fan-out waits for a person");
    assert!(
        !store.has_active_jobs(&all(), true).unwrap()
            || store.provider_in_flight(&all()).unwrap() > 0
    );
    let summary = store.batch_summary(r.batch_id).unwrap();
    assert_eq!(summary.awaiting_approval, 3);
    // A re-registration without a canary does not release it: only approval does.
    store
        .register_batch(&batch("b", None, 0), jobs("k", 5))
        .unwrap();
    assert!(claim(&store).is_none());
    store.approve(r.batch_id).unwrap();
    assert_eq!(
        store.batch_summary(r.batch_id).unwrap().awaiting_approval,
        0
    );
    for _ in 0..3 {
        assert!(claim(&store).is_some());
    }
}

#[test]
fn a_claim_or_hold_made_on_what_moved_since_it_was_read_does_nothing() {
    let store = Store::open_in_memory().unwrap();
    let b = store
        .register_batch(&batch("b", Some(10_000), 0), jobs("k", 2))
        .unwrap()
        .batch_id;
    let ready = store.next_ready_job(b).unwrap().unwrap();

    // A person pauses the batch between the engine's read and its claim.
    store.set_paused(Some(b), true).unwrap();
    assert!(matches!(store.claim(&ready).unwrap(), Claim::Raced));
    store.set_paused(Some(b), false).unwrap();

    // Credits committed moved (a refund, another claim): the budget check read old numbers.
    let stale = ReadyJob {
        committed_credits: ready.committed_credits + 1,
        ..ready.clone()
    };
    assert!(matches!(store.claim(&stale).unwrap(), Claim::Raced));
    assert!(
        !store.hold_job(&stale, "over budget").unwrap(),
        "not held on old numbers"
    );
    assert_eq!(
        store.next_ready_job(b).unwrap(),
        Some(ready.clone()),
        "still ready"
    );

    let Claim::Intent(intent, _) = store.claim(&ready).unwrap() else {
        panic!("the job as read is claimed");
    };
    assert_eq!(intent.job_id, ready.job_id);
    assert!(
        matches!(store.claim(&ready).unwrap(), Claim::Raced),
        "never claimed twice"
    );
    assert_committed_matches(&store, b);
}
