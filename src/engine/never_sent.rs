//! After a crash: which interrupted submits certainly never left, read from the output
//! folders' results files (a submit's `submitting` line is written and synced before it is sent).
//!
//! Owns: that reading. May not: change a job (the store's recovery does, given this set), or
//! decide what becomes of the others (they stay `unknown` for policy).

use crate::store::InterruptedSubmit;

/// The interrupted submits that certainly never left: the output folder's `submitting` line
/// is written (and fsynced) before a submit is sent, after its media were published, so an
/// attempt whose line is missing from a results file that exists was never sent. A folder with
/// no results file proves nothing (it may have been deleted): those stay `unknown`.
pub(super) fn never_sent(interrupted: &[InterruptedSubmit]) -> std::collections::HashSet<i64> {
    let mut folders = std::collections::HashMap::new();
    let mut unsent = std::collections::HashSet::new();
    for item in interrupted {
        let (Some(attempt), Some(key)) = (item.attempt_id, item.idempotency_key.as_deref()) else {
            continue;
        };
        let lines = folders.entry(item.output_dir.clone()).or_insert_with(|| {
            let dir = std::path::Path::new(&item.output_dir);
            crate::output::open_regular(&dir.join(crate::output::RESULTS_FILE))
                .ok()
                .map(|_| crate::output::ResultsIndex::read(dir))
        });
        let Some(lines) = lines else { continue };
        let recorded = lines
            .get(&item.job_key)
            .is_some_and(|l| l.idempotency_key.as_deref() == Some(key));
        if !recorded {
            unsent.insert(attempt);
        }
    }
    unsent
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::{ResultLine, append};

    fn interrupted(dir: &std::path::Path, attempt: i64, job_key: &str) -> InterruptedSubmit {
        InterruptedSubmit {
            job_id: attempt,
            attempt_id: Some(attempt),
            job_key: job_key.to_owned(),
            idempotency_key: Some(format!("{job_key}-a{attempt}")),
            output_dir: dir.display().to_string(),
        }
    }

    #[test]
    fn only_a_submit_missing_from_an_existing_results_file_counts_as_never_sent() {
        let out = tempfile::tempdir().unwrap();
        let line = |key: &str, idem: &str, state: &str| ResultLine {
            job_key: key.into(),
            idempotency_key: Some(idem.into()),
            state: state.into(),
            ..Default::default()
        };
        // k1's attempt 1 was written down before sending: it may have left.
        append(out.path(), &line("k1", "k1-a1", "submitting")).unwrap();
        // k2's last line is an earlier attempt's: attempt 2 never reached the folder.
        append(out.path(), &line("k2", "k2-a1", "closed")).unwrap();
        let items = [
            interrupted(out.path(), 1, "k1"),
            interrupted(out.path(), 2, "k2"),
            interrupted(out.path(), 3, "k3"),
        ];
        let unsent = never_sent(&items);
        assert_eq!(unsent, std::collections::HashSet::from([2, 3]));
        // A folder without a results file proves nothing.
        let empty = tempfile::tempdir().unwrap();
        assert!(never_sent(&[interrupted(empty.path(), 4, "k4")]).is_empty());
    }
}
