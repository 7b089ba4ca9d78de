//! The wall clock every timestamp of hub and node comes from, with a test-only offset.
//!
//! `RCPFED_CLOCK_OFFSET_MS` (FOR TESTING ONLY: signed milliseconds added to the system clock,
//! read once per process) lets the tests run a hub or node whose clock is wrong, the way a
//! machine without NTP would be. Never set it in production.

use std::sync::OnceLock;
use time::{Duration, OffsetDateTime};

/// The test-only clock offset variable, see the module documentation.
pub const CLOCK_OFFSET_ENV: &str = "RCPFED_CLOCK_OFFSET_MS";

/// The clock offset of this process (zero unless [`CLOCK_OFFSET_ENV`] is set to an integer).
pub fn offset() -> Duration {
    static OFFSET: OnceLock<Duration> = OnceLock::new();
    *OFFSET.get_or_init(|| {
        std::env::var(CLOCK_OFFSET_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<i64>().ok())
            .map_or(Duration::ZERO, Duration::milliseconds)
    })
}

/// Now, as this process's clock says.
pub fn now_utc() -> OffsetDateTime {
    OffsetDateTime::now_utc().saturating_add(offset())
}

/// Now in unix milliseconds, as this process's clock says.
pub fn now_ms() -> i64 {
    i64::try_from(now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// A span of time in words for messages: "7 min 12 s", "2 h 3 min", "800 ms".
pub fn describe(span: Duration) -> String {
    let span = span.abs();
    let secs = span.whole_seconds();
    if secs == 0 {
        return format!("{} ms", span.whole_milliseconds());
    }
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m, s) {
        (0, 0, s) => format!("{s} s"),
        (0, m, 0) => format!("{m} min"),
        (0, m, s) => format!("{m} min {s} s"),
        (h, 0, _) if h >= 48 => format!("{} days", h / 24),
        (h, m, _) => format!("{h} h {m} min"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_as_words() {
        assert_eq!(describe(Duration::seconds(432)), "7 min 12 s");
        assert_eq!(describe(Duration::seconds(-300)), "5 min");
        assert_eq!(describe(Duration::milliseconds(800)), "800 ms");
        assert_eq!(describe(Duration::seconds(7380)), "2 h 3 min");
        assert_eq!(describe(Duration::days(3)), "3 days");
    }
}
