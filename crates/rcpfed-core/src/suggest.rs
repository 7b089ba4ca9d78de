//! "Did you mean …?" for names a person typed: indicator codes, configuration keys, log levels.

/// Edit distance between two short strings (characters, not bytes): insertions, deletions,
/// substitutions, and swaps of two neighbouring characters (`tsl` → `tls`, a common typo) each
/// count one (the optimal string alignment distance).
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Three rows of the table: two rows back (for swaps), the previous one and the current.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current: Vec<usize> = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        current[0] = i;
        for j in 1..=b.len() {
            let substitution = previous[j - 1] + usize::from(a[i - 1] != b[j - 1]);
            let mut best = substitution.min(previous[j] + 1).min(current[j - 1] + 1);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(before[j - 2] + 1);
            }
            current[j] = best;
        }
        std::mem::swap(&mut before, &mut previous);
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
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
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn a_swap_of_neighbours_is_one_edit() {
        assert_eq!(edit_distance("tsl", "tls"), 1);
        assert_eq!(edit_distance("recieve", "receive"), 1);
        assert_eq!(edit_distance("ab", "ba"), 1);
        assert_eq!(closest("tsl", ["tls", "listen"]), Some("tls"));
    }

    #[test]
    fn closest_only_when_plausible() {
        let codes = ["REMIT_INFLOW", "MIG_STOCK", "SDG_10_7_3"];
        assert_eq!(closest("REMIT_OUTFLOW", codes), Some("REMIT_INFLOW"));
        assert_eq!(closest("listn", ["listen", "ops_listen"]), Some("listen"));
        assert_eq!(closest("XYZ", codes), None);
    }
}
