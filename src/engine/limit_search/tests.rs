use super::*;

/// The provider refuses a call sent faster than `limit` (a factor), with `noise` refused
/// anyway every `1/noise` calls; answers `calls` calls at the search's current factor.
fn provider(search: &mut LimitSearch, limit: f64, noise: u32, calls: u32) -> (u32, u32) {
    let now = Instant::now();
    let (mut accepted, mut refused) = (0, 0);
    for i in 0..calls {
        let noisy = noise > 0 && i % noise == 0;
        if search.factor() < limit || noisy {
            refused += 1;
            search.refused(now, now);
        } else {
            accepted += 1;
            search.accepted(now);
        }
    }
    (accepted, refused)
}

#[test]
fn ten_times_over_the_limit_converges_just_under_it() {
    let mut search = LimitSearch::default();
    let (_, refused) = provider(&mut search, 10.0, 0, 2000);
    let f = search.factor();
    assert!((10.0..10.0 * MARGIN * MARGIN).contains(&f), "{f}");
    // A few per step of the search (each step is judged on four answers).
    assert!(refused < 80, "{refused} refused while searching");
    assert!(search.take_learned().is_some());
    // Settled: few 429s from here on (the bound drifts, so one now and then).
    let (_, refused) = provider(&mut search, 10.0, 0, 2000);
    assert!(refused <= 20, "{refused} refused once settled");
}

#[test]
fn a_first_run_finds_the_limit_with_a_few_429s_by_descending_to_it() {
    // Within two slowdowns of the configured rate (16 times), a descent finds the limit:
    // a few 429s to mark the first crossing (this provider refuses every call too fast,
    // not every other), one for the second slowdown and one to end the descent. Further,
    // the third slowdown does not descend, and the search bisects.
    for (limit, most) in [
        (1.5, 8),
        (2.0, 8),
        (7.0, 8),
        (10.0, 8),
        (15.0, 8),
        (40.0, 30),
    ] {
        let mut search = LimitSearch::default();
        let (accepted, refused) = provider(&mut search, limit, 0, 600);
        let f = search.factor();
        assert!(
            (limit..limit * MARGIN * CHIRP_STEP).contains(&f),
            "{limit}: {f}"
        );
        assert!(
            refused <= most,
            "{limit}: {refused} refused ({accepted} accepted)"
        );
    }
}

#[test]
fn a_limit_within_the_first_slowdown_costs_a_first_run_two_429s() {
    // The first 429 slows the stage at once and a descent begins; the 429 that ends it places
    // the limit. Nothing else is refused, then or after.
    for limit in [1.2, 1.5, 2.0, 2.9] {
        let mut search = LimitSearch::default();
        let (_, refused) = provider(&mut search, limit, 0, 600);
        assert_eq!(refused, 2, "{limit}");
        let f = search.factor();
        assert!(
            (limit..limit * MARGIN * CHIRP_STEP).contains(&f),
            "{limit}: {f}"
        );
    }
}

#[test]
fn a_429_for_a_call_sent_before_the_factor_changed_says_nothing_new() {
    let mut search = LimitSearch::default();
    let start = Instant::now();
    for _ in 0..4 {
        search.refused(start, start);
    }
    let slowed = search.factor();
    assert!(slowed > 1.0, "four 429s in four answers slow the stage");
    // Answers to calls sent at the old factor, after the change: ignored, however many.
    let later = start + std::time::Duration::from_secs(1);
    for _ in 0..10 {
        search.refused(later, start - std::time::Duration::from_millis(1));
    }
    assert_eq!(search.factor(), slowed);
    // One sent after the change, at the first call of the descent (the provider's
    // allowance refilled during the pause): judged with the ones before.
    search.refused(later, later);
    assert!(search.factor() > slowed, "{}", search.factor());
}

#[test]
fn a_second_run_at_the_learned_limit_pays_no_429_and_a_raised_limit_is_found_again() {
    let mut search = LimitSearch::default();
    provider(&mut search, 10.0, 0, 2000);
    let learned = search.take_learned().unwrap();
    // A second run starts where the first settled, and stays there.
    let mut again = LimitSearch::default();
    again.start_from(learned);
    let (_, refused) = provider(&mut again, 10.0, 0, 3000);
    assert_eq!(refused, 0, "a second run within minutes probes nothing");
    // The provider raises its limit (a factor of 5 is twice as fast as 10); after a long
    // quiet the search steps faster while the steps stay safe.
    let mut now = Instant::now();
    let mut refused = 0;
    for _ in 0..2000 {
        now += std::time::Duration::from_secs(1);
        if again.factor() < 5.0 {
            refused += 1;
            again.refused(now, now);
        } else {
            again.accepted(now);
        }
    }
    let f = again.factor();
    assert!((5.0..5.0 * MARGIN * MARGIN).contains(&f), "{f}");
    assert!(
        refused <= 10,
        "{refused} refused while finding the raised limit"
    );
}

#[test]
fn a_limit_the_provider_names_is_taken_at_once_and_not_searched_past() {
    let mut search = LimitSearch::default();
    search.told(2.0);
    assert_eq!(search.factor(), 2.0);
    assert_eq!(search.take_learned(), Some(2.0));
    let (_, refused) = provider(&mut search, 2.0, 0, 2000);
    assert_eq!(refused, 0, "never faster than named");
    assert_eq!(search.factor(), 2.0);
}

#[test]
fn a_configured_rate_under_the_limit_is_never_slowed() {
    let mut search = LimitSearch::default();
    provider(&mut search, 0.5, 0, 1000);
    assert_eq!(search.factor(), 1.0);
    assert!(search.take_learned().is_none());
}

#[test]
fn refusals_whatever_the_rate_are_learned_as_noise_and_do_not_slow() {
    let mut search = LimitSearch::default();
    // Three in ten refused, at any factor.
    let noisy = |search: &mut LimitSearch, calls| {
        let now = Instant::now();
        for i in 0..calls {
            if i % 10 < 3 {
                search.refused(now, now);
            } else {
                search.accepted(now);
            }
        }
    };
    noisy(&mut search, 300);
    noisy(&mut search, 2000);
    assert_eq!(search.factor(), 1.0, "back at the configured rate");
    assert!(search.noise >= 0.25, "{}", search.noise);
}
