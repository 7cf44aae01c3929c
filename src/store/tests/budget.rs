//! The store's money: budgets, refunds, retries and what each attempt commits.

use super::*;

#[test]
fn a_lost_task_is_remade_only_as_a_new_priced_attempt_that_the_budget_counts() {
    let store = Store::open_in_memory().unwrap();
    let r = store
        .register_batch(&batch("b", Some(2 * 566), 0), jobs("k", 1))
        .unwrap();
    let first = claim(&store).unwrap();
    store
        .record_submitted(&first, "t-1", 0)
        .now_or_never()
        .unwrap()
        .unwrap();
    store
        .record_needs_person(first.job_id, JobState::Lost, "404 on poll")
        .now_or_never()
        .unwrap()
        .unwrap();
    assert!(claim(&store).is_none());
    let which = RetrySelection {
        lost: true,
        ..Default::default()
    };
    let price = store.retry_price(r.batch_id, which, false).unwrap();
    assert_eq!(
        (price.submits, price.credits, price.may_bill_twice),
        (1, 566, 1)
    );
    store.retry(r.batch_id, which, false).unwrap();
    let again = claim(&store).unwrap();
    assert_ne!(again.idempotency_key, first.idempotency_key);
    // The lost task stays billed: both count.
    assert_eq!(store.committed_credits(r.batch_id).unwrap(), 2 * 566);
    assert_committed_matches(&store, r.batch_id);
}

#[test]
fn an_unknown_submit_retried_without_trusted_keys_counts_twice_against_the_budget() {
    let store = Store::open_in_memory().unwrap();
    let r = store
        .register_batch(&batch("b", Some(566 + 100), 0), jobs("k", 1))
        .unwrap();
    let first = claim(&store).unwrap();
    store
        .record_unknown(&first, "reset")
        .now_or_never()
        .unwrap()
        .unwrap();
    let which = RetrySelection {
        unknown: true,
        ..Default::default()
    };
    assert_eq!(
        store
            .retry_price(r.batch_id, which, false)
            .unwrap()
            .may_bill_twice,
        1
    );
    assert_eq!(
        store
            .retry_price(r.batch_id, which, true)
            .unwrap()
            .may_bill_twice,
        0
    );
    store.retry(r.batch_id, which, false).unwrap();
    // The budget (one job and a bit) cannot hold a second, possibly double, bill.
    assert!(claim(&store).is_none(), "held by the budget");
    let held = store.held_jobs(r.batch_id).unwrap();
    assert_eq!(held.len(), 1, "{held:?}");
}

#[test]
fn a_budget_holds_the_jobs_that_would_cross_it() {
    let store = Store::open_in_memory().unwrap();
    let r = store
        .register_batch(&batch("b", Some(3 * 566 + 100), 0), jobs("k", 5))
        .unwrap();
    let mut sent = 0;
    while let Some(i) = claim(&store) {
        store
            .record_submitted(&i, &format!("t{sent}"), 0)
            .now_or_never()
            .unwrap()
            .unwrap();
        sent += 1;
    }
    assert_eq!(sent, 3);
    let held = store.held_jobs(r.batch_id).unwrap();
    assert_eq!(held.len(), 2);
    assert!(held[0].1.contains("over budget"), "{held:?}");
    assert_committed_matches(&store, r.batch_id);
    assert!(
        store
            .has_active_jobs(&Scope::batches("test", vec![r.batch_id]), true)
            .unwrap()
    );
    for n in 0..3 {
        let item = store.due_polls(&all(), i64::MAX, 10).unwrap().remove(0);
        store
            .record_clip_ready(&item, &format!("http://x/{n}.mp4"), 0)
            .now_or_never()
            .unwrap()
            .unwrap();
        let dl = store
            .due_downloads(&all(), now_ms(), 10, &[])
            .unwrap()
            .remove(0);
        store
            .record_downloaded(&dl, &format!("/tmp/{n}.mp4"), "00", 1)
            .now_or_never()
            .unwrap()
            .unwrap();
    }
    assert!(
        !store
            .has_active_jobs(&Scope::batches("test", vec![r.batch_id]), true)
            .unwrap(),
        "held jobs are not active"
    );
}

#[test]
fn a_refund_lets_a_job_held_by_the_budget_go() {
    let store = Store::open_in_memory().unwrap();
    let r = store
        .register_batch(&batch("b", Some(566), 0), jobs("k", 2))
        .unwrap();
    let first = claim(&store).unwrap();
    store
        .record_submitted(&first, "t1", 0)
        .now_or_never()
        .unwrap()
        .unwrap();
    assert!(
        claim(&store).is_none(),
        "the second job is held by the budget"
    );
    assert_eq!(store.held_jobs(r.batch_id).unwrap().len(), 1);
    assert_eq!(store.held_count(r.batch_id).unwrap(), 1);
    // The retry of the failed task and the held job now compete for the refunded credits.
    let item = store.due_polls(&all(), i64::MAX, 10).unwrap().remove(0);
    store
        .record_task_failed(&item, AfterFailure::Retry, "boom", "retrying")
        .now_or_never()
        .unwrap()
        .unwrap();
    assert!(store.held_jobs(r.batch_id).unwrap().is_empty());
    assert_eq!(store.held_count(r.batch_id).unwrap(), 0);
    assert!(claim(&store).is_some());
    assert_committed_matches(&store, r.batch_id);
}

#[test]
fn a_failed_task_is_refunded_and_retried_until_retries_run_out() {
    let store = Store::open_in_memory().unwrap();
    let r = store
        .register_batch(&batch("b", Some(2 * 566), 0), jobs("k", 1))
        .unwrap();
    for attempt in 1..=2 {
        let i = claim(&store).expect("budget freed by the refund");
        assert_eq!(i.attempt_number, attempt);
        store
            .record_submitted(&i, &format!("t{attempt}"), 0)
            .now_or_never()
            .unwrap()
            .unwrap();
        let item = store.due_polls(&all(), i64::MAX, 10).unwrap().remove(0);
        // What the engine decides from: the failures before this one, and the batch's retries.
        assert_eq!((item.failed_attempts, item.retries), (attempt - 1, 1));
        let (next, expected) = if attempt == 1 {
            (AfterFailure::Retry, JobState::Planned)
        } else {
            (AfterFailure::GiveUp, JobState::Failed)
        };
        store
            .record_task_failed(&item, next, "boom", "why")
            .now_or_never()
            .unwrap()
            .unwrap();
        let counts = store.batch_counts(r.batch_id).unwrap();
        assert_eq!(counts.get(expected), 1, "{counts:?}");
    }
    let s = store.batch_summary(r.batch_id).unwrap();
    assert_eq!(s.credits_refunded, 2 * 566);
    assert_eq!(s.credits_spent, 0);
    assert_committed_matches(&store, r.batch_id);
}
