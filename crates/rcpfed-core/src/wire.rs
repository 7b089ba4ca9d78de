//! Small conversions shared by the protobuf edges of the domain types.

use time::OffsetDateTime;

/// Earliest instant a timestamp may name: 0001-01-01T00:00:00Z, the start of the range
/// `google.protobuf.Timestamp` documents.
pub const MIN_TIMESTAMP_SECONDS: i64 = -62_135_596_800;
/// Latest second a timestamp may name: 9999-12-31T23:59:59Z, the end of that range.
pub const MAX_TIMESTAMP_SECONDS: i64 = 253_402_300_799;

/// Whether `ts` is in the range `google.protobuf.Timestamp` documents (years 1 to 9999, nanos
/// in 0..1e9): every timestamp in a request must be.
pub fn timestamp_in_range(ts: &prost_types::Timestamp) -> bool {
    (MIN_TIMESTAMP_SECONDS..=MAX_TIMESTAMP_SECONDS).contains(&ts.seconds)
        && (0..1_000_000_000).contains(&ts.nanos)
}

/// A protobuf timestamp for `t` (UTC seconds and nanoseconds).
pub fn timestamp_to_proto(t: OffsetDateTime) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.unix_timestamp(),
        // Always 0..1e9, so it fits.
        nanos: i32::try_from(t.nanosecond()).unwrap_or(0),
    }
}

/// The instant of a protobuf timestamp, in UTC; `None` if the nanos are out of 0..1e9 or the
/// instant is outside what `time` can represent.
pub fn timestamp_from_proto(ts: &prost_types::Timestamp) -> Option<OffsetDateTime> {
    if !(0..1_000_000_000).contains(&ts.nanos) {
        return None;
    }
    let nanos = i128::from(ts.seconds) * 1_000_000_000 + i128::from(ts.nanos);
    OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn timestamps_round_trip() {
        let t = datetime!(2024-05-17 10:11:12.123456789 UTC);
        assert_eq!(timestamp_from_proto(&timestamp_to_proto(t)), Some(t));
        let bad = prost_types::Timestamp {
            seconds: 0,
            nanos: -1,
        };
        assert_eq!(timestamp_from_proto(&bad), None);
        let huge = prost_types::Timestamp {
            seconds: i64::MAX,
            nanos: 0,
        };
        assert_eq!(timestamp_from_proto(&huge), None);
        let at = |seconds, nanos| prost_types::Timestamp { seconds, nanos };
        assert!(timestamp_in_range(&at(MIN_TIMESTAMP_SECONDS, 0)));
        assert!(timestamp_in_range(&at(MAX_TIMESTAMP_SECONDS, 999_999_999)));
        assert!(!timestamp_in_range(&at(MAX_TIMESTAMP_SECONDS + 1, 0)));
        assert!(!timestamp_in_range(&at(MIN_TIMESTAMP_SECONDS - 1, 0)));
        // Year -29700 and year 10000, as found by the issue.
        assert!(!timestamp_in_range(&at(-999_367_286_400, 0)));
        assert!(!timestamp_in_range(&at(253_402_300_800, 0)));
        assert_eq!(
            timestamp_from_proto(&at(MAX_TIMESTAMP_SECONDS, 0)).map(|t| t.year()),
            Some(9999)
        );
    }
}
