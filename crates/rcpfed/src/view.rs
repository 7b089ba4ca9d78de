//! Plain-words formatting of observations, keys, values and times, shared by the indicator
//! commands' tables and CSV files.

use rcpfed_proto::v1;

/// An observation's value as published, with its power of ten: `275 ×10^6`, `8938`; `—` for
/// a deletion (no value).
pub fn value(obs: &v1::Observation) -> String {
    match obs.obs_value {
        None => "—".to_string(),
        Some(v) if obs.unit_mult == 0 => number(v),
        Some(v) => format!("{} ×10^{}", number(v), obs.unit_mult),
    }
}

/// The value with its unit: `275 ×10^6 persons`.
pub fn value_with_unit(obs: &v1::Observation) -> String {
    let v = value(obs);
    if obs.obs_value.is_none() || obs.unit_measure.is_empty() {
        v
    } else {
        format!("{v} {}", obs.unit_measure)
    }
}

/// OBS_VALUE × 10^UNIT_MULT as a plain number (`275000000`); empty for a deletion.
pub fn scaled(obs: &v1::Observation) -> String {
    match obs.obs_value {
        None => String::new(),
        Some(v) => number(v * 10f64.powi(obs.unit_mult)),
    }
}

/// The raw value (`275`), empty for a deletion.
pub fn raw(obs: &v1::Observation) -> String {
    obs.obs_value.map(number).unwrap_or_default()
}

/// A number without a needless fraction: `275`, `52.4`, `6.18`.
pub fn number(v: f64) -> String {
    if v.is_finite() && v == v.trunc() && v.abs() < 1e17 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

/// Dimensions as `SEX=F AGE=Y15T64`; empty when there are none.
pub fn dimensions(dims: &[v1::Dimension]) -> String {
    dims.iter()
        .map(|d| format!("{}={}", d.id, d.value))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Dimensions as one CSV cell, `SEX=F;AGE=Y15T64`: the form of the `dimensions` column in
/// every CSV the indicator commands write, so query and report files read alike.
pub fn csv_dimensions(dims: &[v1::Dimension]) -> String {
    dims.iter()
        .map(|d| format!("{}={}", d.id, d.value))
        .collect::<Vec<_>>()
        .join(";")
}

/// A key as `MIG_STOCK WLD 2020` (with dimensions after the period).
pub fn key(k: &v1::ObservationKey) -> String {
    let mut text = format!("{} {} {}", k.indicator, k.ref_area, k.time_period);
    let dims = dimensions(&k.dimensions);
    if !dims.is_empty() {
        text.push(' ');
        text.push_str(&dims);
    }
    text
}

/// The action in one word: `append`, `replace`, `delete` (or the number when unknown).
pub fn action(action: i32) -> String {
    match v1::ObservationAction::try_from(action) {
        Ok(v1::ObservationAction::Append) => "append".into(),
        Ok(v1::ObservationAction::Replace) => "replace".into(),
        Ok(v1::ObservationAction::Delete) => "delete".into(),
        Ok(v1::ObservationAction::Unspecified) => "unspecified".into(),
        Err(_) => action.to_string(),
    }
}

/// A timestamp in RFC 3339 (UTC, `2025-01-02T03:04:05Z`, with milliseconds when it has
/// them); empty when unset.
pub fn timestamp(ts: Option<&prost_types::Timestamp>) -> String {
    let Some(ts) = ts else {
        return String::new();
    };
    let nanos = i128::from(ts.seconds) * 1_000_000_000 + i128::from(ts.nanos);
    match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(t) => {
            let base = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            );
            let ms = t.millisecond();
            if t.nanosecond() % 1_000_000 != 0 {
                format!("{base}.{:09}Z", t.nanosecond())
            } else if ms != 0 {
                format!("{base}.{ms:03}Z")
            } else {
                format!("{base}Z")
            }
        }
        Err(_) => format!("{}s", ts.seconds),
    }
}

/// The first `n` hex digits of a digest.
pub fn digest_prefix(digest: &[u8], n: usize) -> String {
    let mut h = hex::encode(digest);
    h.truncate(n);
    h
}

/// A reported value's source in short: `a1b2c3d4 #12` (digest prefix and feed index).
pub fn source(p: Option<&v1::Provenance>) -> String {
    match p {
        Some(p) => format!(
            "{} #{}",
            digest_prefix(&p.statement_digest, 8),
            p.feed_index
        ),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(v: Option<f64>, mult: i32, unit: &str) -> v1::Observation {
        v1::Observation {
            obs_value: v,
            unit_mult: mult,
            unit_measure: unit.into(),
            ..Default::default()
        }
    }

    #[test]
    fn values_keep_their_power_of_ten() {
        assert_eq!(
            value_with_unit(&obs(Some(275.0), 6, "persons")),
            "275 ×10^6 persons"
        );
        assert_eq!(
            value_with_unit(&obs(Some(6.18), 0, "percent")),
            "6.18 percent"
        );
        assert_eq!(value_with_unit(&obs(None, 9, "current USD")), "—");
        assert_eq!(scaled(&obs(Some(52.4), 6, "persons")), "52400000");
        assert_eq!(scaled(&obs(Some(669.0), 9, "current USD")), "669000000000");
        assert_eq!(raw(&obs(Some(8938.0), 0, "")), "8938");
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let ts = prost_types::Timestamp {
            seconds: 1_735_689_600,
            nanos: 0,
        };
        assert_eq!(timestamp(Some(&ts)), "2025-01-01T00:00:00Z");
        let ts = prost_types::Timestamp {
            seconds: 1_735_689_600,
            nanos: 250_000_000,
        };
        assert_eq!(timestamp(Some(&ts)), "2025-01-01T00:00:00.250Z");
        assert_eq!(timestamp(None), "");
    }

    #[test]
    fn keys_read_like_sdmx_series() {
        let k = v1::ObservationKey {
            indicator: "SDG_10_7_3".into(),
            ref_area: "WLD".into(),
            time_period: "2024".into(),
            dimensions: vec![v1::Dimension {
                id: "SEX".into(),
                value: "F".into(),
            }],
        };
        assert_eq!(key(&k), "SDG_10_7_3 WLD 2024 SEX=F");
    }
}
