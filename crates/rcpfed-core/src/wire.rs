//! Small conversions shared by the protobuf edges of the domain types.

use time::OffsetDateTime;

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
    }
}
