//! "Did you mean …?" for names a person typed: indicator codes, configuration keys, log levels.

/// Levenshtein distance between two short strings (characters, not bytes).
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitution.min(previous + 1).min(row[j] + 1);
        }
    }
    row[b.len()]
}

/// The candidate closest to `typed`, if one is close enough to be a plausible typo (at most a
/// third of the longer name differs).
pub fn closest<'a>(typed: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let typed_lower = typed.to_lowercase();
    candidates
        .into_iter()
        .map(|c| (edit_distance(&c.to_lowercase(), &typed_lower), c))
        .filter(|(d, c)| *d * 3 <= typed.chars().count().max(c.chars().count()))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(edit_distance("debug", "degub"), 2);
        assert_eq!(edit_distance("listen", "listn"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("abc", "abc"), 0);
    }

    #[test]
    fn closest_only_when_plausible() {
        let codes = ["REMIT_INFLOW", "MIG_STOCK", "SDG_10_7_3"];
        assert_eq!(closest("REMIT_OUTFLOW", codes), Some("REMIT_INFLOW"));
        assert_eq!(closest("listn", ["listen", "ops_listen"]), Some("listen"));
        assert_eq!(closest("XYZ", codes), None);
    }
}
