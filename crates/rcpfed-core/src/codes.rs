//! The syntax of the identifiers that statements and the catalogue share: indicator codes and
//! dimension ids. A module of its own so that the statement rules and the catalogue rules both
//! read it without depending on each other.

/// Whether `code` is an indicator code: upper-case letter, then up to 63 of A-Z, 0-9, '_'.
pub fn is_indicator_code(code: &str) -> bool {
    code.len() <= 64 && is_dimension_id(code)
}

/// Whether `id` is a dimension id: upper-case letter, then A-Z, 0-9, '_'.
pub fn is_dimension_id(id: &str) -> bool {
    id.starts_with(|c: char| c.is_ascii_uppercase())
        && id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}
