//! Transitions tested on a real SQLite database: what each one commits, and the rules the
//! engine relies on (budget holds, fair claims, idempotency keys reused for unknown submits).

use super::*;
use futures_util::FutureExt;

mod budget;
mod disk;
mod order;
mod stamps;

pub(crate) fn batch(name: &str, budget_credits: Option<u64>, priority: i64) -> NewBatch {
    NewBatch {
        name: name.to_owned(),
        provider: "test".to_owned(),
        manifest_path: format!("{name}.yaml"),
        base_dir: "/tmp".to_owned(),
        output_dir: format!("/tmp/out-{name}"),
        budget_credits,
        retries: 1,
        priority,
        canary: None,
    }
}

pub(crate) fn job(key: &str) -> NewJob {
    NewJob {
        key: key.to_owned(),
        subject_id: format!("s-{key}"),
        output_name: format!("{key}.mp4"),
        spec_json: "{}".to_owned(),
        duration_ms: 5000,
        estimate_credits: Some(566),
        invalid_reason: None,
        landed: None,
        adopt: None,
    }
}

pub(crate) fn jobs(prefix: &str, n: usize) -> Vec<NewJob> {
    (0..n).map(|i| job(&format!("{prefix}{i:04}"))).collect()
}

/// The running total the triggers keep equals the sum over attempts.
pub(super) fn assert_committed_matches(store: &Store, batch_id: i64) {
    let s = store.batch_summary(batch_id).unwrap();
    assert_eq!(
        store.committed_credits(batch_id).unwrap(),
        s.credits_spent + s.credits_uncertain
    );
}

pub(super) fn all() -> Scope {
    Scope::provider("test")
}

/// The engine's choice of the next job in `scope`, its intent on disk when this returns.
pub(super) fn claim_next(store: &Store, scope: &Scope) -> Option<SubmitIntent> {
    let (intent, commit) = crate::engine::claim_next(store, scope).unwrap()?;
    store.durability.wait(commit).unwrap();
    Some(*intent)
}

pub(super) fn claim(store: &Store) -> Option<SubmitIntent> {
    claim_next(store, &all())
}

#[test]
fn registering_the_same_jobs_again_adds_nothing_and_dropped_planned_jobs_are_cancelled() {
    let store = Store::open_in_memory().unwrap();
    let first = store
        .register_batch(&batch("b", None, 0), jobs("k", 3))
        .unwrap();
    assert_eq!((first.added, first.kept), (3, 0));
    let again = store
        .register_batch(&batch("b", None, 0), jobs("k", 3))
        .unwrap();
    assert_eq!((again.added, again.kept, again.dropped), (0, 3, 0));
    let fewer = store
        .register_batch(&batch("b", None, 0), jobs("k", 2))
        .unwrap();
    assert_eq!(fewer.dropped, 1);
    let counts = store.batch_counts(first.batch_id).unwrap();
    assert_eq!(counts.get(JobState::Planned), 2);
    assert_eq!(counts.get(JobState::Cancelled), 1);
    // Back in the manifest: back to work (nothing was ever spent on it, no person cancelled it).
    let back = store
        .register_batch(&batch("b", None, 0), jobs("k", 3))
        .unwrap();
    assert_eq!(back.revived, 1);
}

#[test]
fn a_persons_cancel_sticks_through_every_registration_until_they_resume() {
    let store = Store::open_in_memory().unwrap();
    let r = store
        .register_batch(&batch("b", None, 0), jobs("k", 3))
        .unwrap();
    assert_eq!(store.cancel(r.batch_id, false).unwrap(), 3);
    // The next run, cron tick or standing re-plan registers the same manifest, and more.
    let again = store
        .register_batch(&batch("b", None, 0), jobs("k", 4))
        .unwrap();
    assert_eq!(again.revived, 0);
    let counts = store.batch_counts(r.batch_id).unwrap();
    assert_eq!(counts.get(JobState::Cancelled), 4, "{counts:?}");
    assert!(
        claim(&store).is_none(),
        "nothing of a cancelled batch is claimed"
    );
    assert_eq!(store.uncancel_price(r.batch_id).unwrap().submits, 4);
    assert_eq!(store.uncancel(r.batch_id).unwrap(), 4);
    assert!(claim(&store).is_some());
}

#[test]
fn a_late_answer_cannot_move_a_job_that_moved_on() {
    let store = Store::open_in_memory().unwrap();
    let r = store
        .register_batch(&batch("b", None, 0), jobs("k", 1))
        .unwrap();
    let intent = claim(&store).unwrap();
    store
        .record_submitted(&intent, "t-1", 0)
        .now_or_never()
        .unwrap()
        .unwrap();
    let item = store.due_polls(&all(), i64::MAX, 10).unwrap().remove(0);
    store.cancel(r.batch_id, true).unwrap();
    // The poll that was on the wire answers now.
    store
        .record_clip_ready(&item, "http://x/clip.mp4", i64::MAX)
        .now_or_never()
        .unwrap()
        .unwrap();
    store
        .record_task_failed(&item, AfterFailure::Retry, "late", "late")
        .now_or_never()
        .unwrap()
        .unwrap();
    let counts = store.batch_counts(r.batch_id).unwrap();
    assert_eq!(counts.get(JobState::Cancelled), 1, "{counts:?}");
    assert!(claim(&store).is_none());
}

#[test]
fn every_stage_works_only_on_batches_of_its_provider() {
    let store = Store::open_in_memory().unwrap();
    let mut real = batch("b", None, 0);
    real.provider = "https://reapi.ai".to_owned();
    store.register_batch(&real, jobs("k", 1)).unwrap();
    let sim = Scope::provider("simulator");
    let reapi = Scope::provider("https://reapi.ai");
    assert!(claim_next(&store, &sim).is_none());
    let Some(intent) = claim_next(&store, &reapi) else {
        panic!("the real provider's job is claimable by its engine");
    };
    store
        .record_submitted(&intent, "task-1", 0)
        .now_or_never()
        .unwrap()
        .unwrap();
    assert!(store.due_polls(&sim, i64::MAX, 10).unwrap().is_empty());
    assert_eq!(store.next_poll_at(&sim).unwrap(), None);
    assert_eq!(store.provider_in_flight(&sim).unwrap(), 0);
    assert!(!store.has_active_jobs(&sim, true).unwrap());
    assert_eq!(store.due_polls(&reapi, i64::MAX, 10).unwrap().len(), 1);
    assert_eq!(store.provider_in_flight(&reapi).unwrap(), 1);
}

#[test]
fn an_intent_is_committed_with_its_idempotency_key_before_the_answer() {
    let store = Store::open_in_memory().unwrap();
    store
        .register_batch(&batch("b", None, 0), jobs("k", 1))
        .unwrap();
    let intent = claim(&store).unwrap();
    assert_eq!(intent.attempt_number, 1);
    assert!(intent.idempotency_key.contains("-a1"));
    assert_eq!(store.provider_in_flight(&all()).unwrap(), 1);
    // A crash now: the intent becomes unknown, never planned.
    assert_eq!(store.interrupted_submits().unwrap().len(), 1);
    assert_eq!(
        store
            .recover_interrupted_submits(&Default::default())
            .unwrap(),
        (1, 0)
    );
    assert_eq!(
        store
            .batch_counts(intent.batch_id)
            .unwrap()
            .get(JobState::Unknown),
        1
    );
    assert!(
        claim(&store).is_none(),
        "an unknown submit is never re-sent by itself"
    );
}

#[test]
fn a_released_unknown_submit_is_resent_under_its_same_key() {
    let store = Store::open_in_memory().unwrap();
    store
        .register_batch(&batch("b", Some(566), 0), jobs("k", 1))
        .unwrap();
    let first = claim(&store).unwrap();
    store
        .record_unknown(&first, "reset")
        .now_or_never()
        .unwrap()
        .unwrap();
    assert_eq!(store.release_unknown(&all()).unwrap(), 1);
    // The budget only covers one job: re-sending the same attempt costs nothing more.
    let again = claim(&store).unwrap();
    assert_eq!(again.attempt_id, first.attempt_id);
    assert_eq!(again.idempotency_key, first.idempotency_key);
    assert!(again.resend && !first.resend);
    assert_committed_matches(&store, first.batch_id);
    // This send created nothing, but the first one may have: the attempt stays unknown (its
    // credits still committed) and goes again under the same key, never a new one.
    store
        .record_not_sent(&again, "connection refused")
        .now_or_never()
        .unwrap()
        .unwrap();
    assert_committed_matches(&store, first.batch_id);
    assert_eq!(store.committed_credits(first.batch_id).unwrap(), 566);
    let third = claim(&store).unwrap();
    assert_eq!(third.attempt_id, first.attempt_id);
    assert_eq!(third.idempotency_key, first.idempotency_key);
}

#[test]
fn a_dead_link_is_refreshed_by_polling_again() {
    let store = Store::open_in_memory().unwrap();
    store
        .register_batch(&batch("b", None, 0), jobs("k", 1))
        .unwrap();
    let i = claim(&store).unwrap();
    store
        .record_submitted(&i, "t1", 0)
        .now_or_never()
        .unwrap()
        .unwrap();
    let item = store.due_polls(&all(), i64::MAX, 10).unwrap().remove(0);
    store
        .record_clip_ready(&item, "http://x/c.mp4", now_ms() + 1000)
        .now_or_never()
        .unwrap()
        .unwrap();
    let dl = store
        .due_downloads(&all(), now_ms(), 10, &[])
        .unwrap()
        .remove(0);
    assert_eq!(
        store
            .record_link_dead(&dl, "403")
            .now_or_never()
            .unwrap()
            .unwrap(),
        1
    );
    assert_eq!(store.due_polls(&all(), i64::MAX, 10).unwrap().len(), 1);
    assert!(
        store
            .due_downloads(&all(), now_ms(), 10, &[])
            .unwrap()
            .is_empty()
    );
}

#[test]
fn re_registering_never_creates_a_second_attempt_for_a_job_in_flight() {
    let store = Store::open_in_memory().unwrap();
    let r = store
        .register_batch(&batch("b", None, 0), jobs("k", 2))
        .unwrap();
    let first = claim(&store).unwrap();
    store
        .record_submitted(&first, "t-1", 0)
        .now_or_never()
        .unwrap()
        .unwrap();
    let second = claim(&store).unwrap();
    store
        .record_unknown(&second, "reset")
        .now_or_never()
        .unwrap()
        .unwrap();
    // A schedule tick, a standing re-plan, a concurrent run: the same manifest, then one that
    // drops both subjects, then both back.
    for keys in [jobs("k", 2), Vec::new(), jobs("k", 2)] {
        store.register_batch(&batch("b", None, 0), keys).unwrap();
        assert!(claim(&store).is_none(), "nothing to submit");
    }
    let counts = store.batch_counts(r.batch_id).unwrap();
    assert_eq!(counts.get(JobState::Running), 1, "{counts:?}");
    assert_eq!(counts.get(JobState::Unknown), 1, "{counts:?}");
    assert_eq!(store.submit_counts(r.batch_id).unwrap().sent, 2);
}

#[test]
fn an_interrupted_submit_the_output_folder_never_saw_is_sent_back_not_held() {
    let store = Store::open_in_memory().unwrap();
    store
        .register_batch(&batch("b", None, 0), jobs("k", 2))
        .unwrap();
    let first = claim(&store).unwrap();
    let second = claim(&store).unwrap();
    let never_sent = std::collections::HashSet::from([second.attempt_id]);
    assert_eq!(
        store.recover_interrupted_submits(&never_sent).unwrap(),
        (1, 1)
    );
    let counts = store.batch_counts(first.batch_id).unwrap();
    assert_eq!(counts.get(JobState::Unknown), 1);
    assert_eq!(counts.get(JobState::Planned), 1);
    assert_eq!(claim(&store).unwrap().job_id, second.job_id);
}

#[test]
fn old_events_are_pruned_and_recent_ones_kept() {
    let store = Store::open_in_memory().unwrap();
    store
        .register_batch(&batch("b", None, 0), jobs("k", 2))
        .unwrap();
    let _ = claim(&store);
    let before = store.last_event_id().unwrap();
    assert!(before > 0);
    assert_eq!(
        store.prune_events(0).unwrap(),
        0,
        "nothing is older than 1970"
    );
    assert!(store.prune_events(now_ms() + 1).unwrap() > 0);
    assert_eq!(store.events_after(0, 100).unwrap().len(), 0);
}

#[test]
fn a_resume_never_revives_subjects_the_manifest_dropped() {
    let store = Store::open_in_memory().unwrap();
    let r = store
        .register_batch(&batch("b", None, 0), jobs("k", 3))
        .unwrap();
    // The manifest loses one subject, then a person cancels and resumes the batch.
    store
        .register_batch(&batch("b", None, 0), jobs("k", 2))
        .unwrap();
    store.cancel(r.batch_id, false).unwrap();
    assert_eq!(store.uncancel_price(r.batch_id).unwrap().submits, 2);
    assert_eq!(store.uncancel(r.batch_id).unwrap(), 2);
    let counts = store.batch_counts(r.batch_id).unwrap();
    assert_eq!(counts.get(JobState::Planned), 2);
    assert_eq!(
        counts.get(JobState::Cancelled),
        1,
        "the dropped subject stays out"
    );
    assert_eq!(
        claim(&store).map(|i| i.job_key.ends_with("0002")),
        Some(false)
    );
}
