//! Names in a manifest: the field a misspelt key most likely meant ("did you mean"), and what
//! a batch name or subject id may be.
//!
//! Owns: the edit distance and its threshold, and the identifier rule (`[A-Za-z0-9_-]{1,64}`).
//!
//! May not: decide which fields exist (the schema's lists do) or report anything but through
//! the [`Problems`] it is handed.

use super::{At, MAX_NAME_CHARS};
use crate::manifest::Problems;
use crate::manifest::yaml::{Node, Value, quote_for_message};

/// The allowed name nearest to a misspelling, if it is near enough to be what was meant.
pub(crate) fn closest<'a>(name: &str, allowed: &[&'a str]) -> Option<&'a str> {
    // The distance costs length x length; a key this long is no typo of a field name.
    if name.chars().count() > 64 {
        return None;
    }
    let name = name.to_ascii_lowercase();
    allowed
        .iter()
        .map(|candidate| (edit_distance(&name, candidate), *candidate))
        .filter(|(distance, candidate)| {
            *distance <= (candidate.len() / 3).max(1)
                || (name.len() >= 4 && candidate.contains(name.as_str()))
        })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// Edit distance counting insertions, deletions, substitutions and swaps of two neighbours
/// (optimal string alignment): `imgae` is one edit from `image`, as a typist would count it.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // d[i][j]: distance between a[..i] and b[..j].
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// A batch name or subject id: `[A-Za-z0-9_-]{1,64}`. A plain number such as `42` is taken as
/// the string it looks like.
pub(crate) fn identifier(
    node: &Node,
    path: &str,
    what: &str,
    problems: &mut Problems,
) -> Option<At<String>> {
    let text = match &node.value {
        Value::Str(s) => s.clone(),
        Value::Int(i) if *i >= 0 => i.to_string(),
        other => {
            problems.push(
                node.at,
                path,
                format!(
                    "{what} must be a string of letters, digits, `-` and `_`, not {}",
                    other.describe()
                ),
            );
            return None;
        }
    };
    match identifier_problem(&text) {
        None => Some(At {
            value: text,
            at: node.at,
        }),
        Some(problem) => {
            problems.push(
                node.at,
                path,
                format!(
                    "{what} `{}` {problem}; allowed: letters, digits, `-` and `_`, 1 to \
                     {MAX_NAME_CHARS} characters",
                    quote_for_message(&text)
                ),
            );
            None
        }
    }
}

/// Why `text` is not a valid id, or `None` when it is.
pub(crate) fn identifier_problem(text: &str) -> Option<&'static str> {
    if text.is_empty() {
        Some("is empty")
    } else if text.chars().count() > MAX_NAME_CHARS {
        Some("is too long")
    } else if !text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        Some("has characters that are not allowed")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::schema::{ROOT_FIELDS, SUBJECT_FIELDS};

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("imgae", "image"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("mode", "mode"), 0);
        assert_eq!(edit_distance("subject", "subjects"), 1);
    }

    #[test]
    fn near_misses_are_suggested_and_far_ones_are_not() {
        assert_eq!(closest("subject", ROOT_FIELDS), Some("subjects"));
        assert_eq!(
            closest("orientation", ROOT_FIELDS),
            Some("character_orientation")
        );
        assert_eq!(
            closest("chracter_orientation", ROOT_FIELDS),
            Some("character_orientation")
        );
        assert_eq!(closest("imgae", SUBJECT_FIELDS), Some("image"));
        assert_eq!(closest("Mode", SUBJECT_FIELDS), Some("mode"));
        assert_eq!(closest("zzzz", SUBJECT_FIELDS), None);
    }

    #[test]
    fn identifiers() {
        assert_eq!(identifier_problem("fox_1-a"), None);
        assert!(identifier_problem("").is_some());
        assert!(identifier_problem("a b").is_some());
        assert!(identifier_problem("../x").is_some());
        assert!(identifier_problem(&"a".repeat(65)).is_some());
        assert_eq!(identifier_problem(&"a".repeat(64)), None);
    }
}
