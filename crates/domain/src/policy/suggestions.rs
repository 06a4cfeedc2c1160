//! "Did you mean": the nearest of the names a document could have used, for
//! a key, an engagement type or a reason that is close to one of them.

/// The candidate nearest to `word` by edit distance, if it is close enough to
/// be a typo of it.
pub(crate) fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// ` (did you mean "x"?)` when a candidate is close to `word`, else nothing.
pub(super) fn did_you_mean<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> String {
    closest(word, candidates)
        .map(|s| format!(" (did you mean {s:?}?)"))
        .unwrap_or_default()
}

/// The hint for a key a table does not take: the allowed key it is closest
/// to, else all of them.
pub(super) fn key_hint(key: &str, allowed: &[&str]) -> String {
    closest(key, allowed.iter().copied()).map_or_else(
        || format!(" (expected one of: {})", allowed.join(", ")),
        |s| format!(" (did you mean {s:?}?)"),
    )
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1).min(row[j] + 1).min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typo_is_matched_and_a_stranger_is_not() {
        let types = ["webinar_attended", "webinar_registered", "page_viewed"];
        assert_eq!(
            closest("webinar_atended", types.into_iter()),
            Some("webinar_attended")
        );
        assert_eq!(closest("demo", types.into_iter()), None);
        assert_eq!(
            did_you_mean("page_veiwed", types.into_iter()),
            " (did you mean \"page_viewed\"?)"
        );
        assert_eq!(
            key_hint("colour", &["name", "id"]),
            " (expected one of: name, id)"
        );
        assert_eq!(key_hint("nme", &["name", "id"]), " (did you mean \"name\"?)");
    }
}
