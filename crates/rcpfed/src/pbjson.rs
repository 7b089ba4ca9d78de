//! The protobuf JSON mapping (proto3) of the messages the indicator commands print, written
//! by hand with serde_json because the generated types have no serde support: lowerCamelCase
//! field names, 64-bit integers as strings, bytes as base64, enums by name, timestamps in RFC
//! 3339, and fields with their default value left out (as `grpcurl` prints them). Fields
//! keep the order of the .proto file.

use base64::Engine as _;
use rcpfed_proto::v1;
use serde::ser::{Serialize, SerializeMap as _, SerializeSeq as _, Serializer};
use serde_json::Value;

/// A JSON value whose objects keep their fields in order.
#[derive(Clone, Debug)]
pub enum Json {
    /// A scalar.
    Scalar(Value),
    /// An object, fields in order.
    Object(Vec<(String, Json)>),
    /// An array.
    Array(Vec<Json>),
}

impl Serialize for Json {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Json::Scalar(v) => v.serialize(serializer),
            Json::Object(fields) => {
                let mut map = serializer.serialize_map(Some(fields.len()))?;
                for (k, v) in fields {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
            Json::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for v in items {
                    seq.serialize_element(v)?;
                }
                seq.end()
            }
        }
    }
}

/// A JSON object being built, leaving default values out.
#[derive(Default)]
struct Obj(Vec<(String, Json)>);

impl Obj {
    fn str(mut self, name: &str, v: &str) -> Self {
        if !v.is_empty() {
            self.0
                .push((name.into(), Json::Scalar(Value::String(v.into()))));
        }
        self
    }

    fn u64(mut self, name: &str, v: u64) -> Self {
        if v != 0 {
            self.0
                .push((name.into(), Json::Scalar(Value::String(v.to_string()))));
        }
        self
    }

    fn u32(mut self, name: &str, v: u32) -> Self {
        if v != 0 {
            self.0.push((name.into(), Json::Scalar(Value::from(v))));
        }
        self
    }

    fn i32(mut self, name: &str, v: i32) -> Self {
        if v != 0 {
            self.0.push((name.into(), Json::Scalar(Value::from(v))));
        }
        self
    }

    /// A double; `present` for an `optional` field (written even when 0).
    fn f64(mut self, name: &str, v: f64, present: bool) -> Self {
        if present || v != 0.0 {
            self.0.push((name.into(), Json::Scalar(double(v))));
        }
        self
    }

    fn bytes(mut self, name: &str, v: &[u8]) -> Self {
        if !v.is_empty() {
            self.0.push((
                name.into(),
                Json::Scalar(Value::String(
                    base64::engine::general_purpose::STANDARD.encode(v),
                )),
            ));
        }
        self
    }

    fn enum_name(mut self, name: &str, v: i32, label: Option<&str>) -> Self {
        if v != 0 {
            let value = match label {
                Some(l) => Value::String(l.into()),
                None => Value::from(v),
            };
            self.0.push((name.into(), Json::Scalar(value)));
        }
        self
    }

    fn msg(mut self, name: &str, v: Option<Json>) -> Self {
        if let Some(v) = v {
            self.0.push((name.into(), v));
        }
        self
    }

    fn list(mut self, name: &str, v: Vec<Json>) -> Self {
        if !v.is_empty() {
            self.0.push((name.into(), Json::Array(v)));
        }
        self
    }

    fn done(self) -> Json {
        Json::Object(self.0)
    }
}

/// A double: a number, or "NaN", "Infinity", "-Infinity".
fn double(v: f64) -> Value {
    if v.is_nan() {
        Value::String("NaN".into())
    } else if v.is_infinite() {
        Value::String(if v > 0.0 { "Infinity" } else { "-Infinity" }.into())
    } else {
        serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
    }
}

fn strings(v: &[String]) -> Vec<Json> {
    v.iter()
        .map(|s| Json::Scalar(Value::String(s.clone())))
        .collect()
}

fn numbers(v: &[u32]) -> Vec<Json> {
    v.iter().map(|n| Json::Scalar(Value::from(*n))).collect()
}

/// `google.protobuf.Timestamp`: RFC 3339 in UTC.
pub fn timestamp(ts: &prost_types::Timestamp) -> Json {
    Json::Scalar(Value::String(crate::view::timestamp(Some(ts))))
}

/// `rcpfed.v1.Dimension`.
pub fn dimension(d: &v1::Dimension) -> Json {
    Obj::default()
        .str("id", &d.id)
        .str("value", &d.value)
        .done()
}

/// `rcpfed.v1.Observation`.
pub fn observation(o: &v1::Observation) -> Json {
    let action = v1::ObservationAction::try_from(o.action).ok();
    Obj::default()
        .enum_name("action", o.action, action.map(|a| a.as_str_name()))
        .str("refArea", &o.ref_area)
        .str("timePeriod", &o.time_period)
        .list("dimensions", o.dimensions.iter().map(dimension).collect())
        .f64(
            "obsValue",
            o.obs_value.unwrap_or(0.0),
            o.obs_value.is_some(),
        )
        .str("obsStatus", &o.obs_status)
        .str("unitMeasure", &o.unit_measure)
        .i32("unitMult", o.unit_mult)
        .str("confStatus", &o.conf_status)
        .str("footnote", &o.footnote)
        .str("source", &o.source)
        .done()
}

/// `rcpfed.v1.Provenance`.
pub fn provenance(p: &v1::Provenance) -> Json {
    Obj::default()
        .str("nodeId", &p.node_id)
        .bytes("statementDigest", &p.statement_digest)
        .str("document", &p.document)
        .u32("revision", p.revision)
        .u64("feedIndex", p.feed_index)
        .u64("leafIndex", p.leaf_index)
        .u64("position", p.position)
        .msg("acceptedAt", p.accepted_at.as_ref().map(timestamp))
        .done()
}

/// `rcpfed.v1.ObservationRecord`.
pub fn observation_record(r: &v1::ObservationRecord) -> Json {
    Obj::default()
        .str("indicator", &r.indicator)
        .msg("observation", r.observation.as_ref().map(observation))
        .msg("provenance", r.provenance.as_ref().map(provenance))
        .msg("supersededAt", r.superseded_at.as_ref().map(timestamp))
        .done()
}

/// `rcpfed.v1.ObservationKey`.
pub fn observation_key(k: &v1::ObservationKey) -> Json {
    Obj::default()
        .str("indicator", &k.indicator)
        .str("refArea", &k.ref_area)
        .str("timePeriod", &k.time_period)
        .list("dimensions", k.dimensions.iter().map(dimension).collect())
        .done()
}

/// `rcpfed.v1.ReportedValue`.
pub fn reported_value(v: &v1::ReportedValue) -> Json {
    Obj::default()
        .msg("observation", v.observation.as_ref().map(observation))
        .msg("provenance", v.provenance.as_ref().map(provenance))
        .done()
}

/// `rcpfed.v1.CoherenceReport`.
pub fn coherence_report(r: &v1::CoherenceReport) -> Json {
    let conflicts = r
        .conflicts
        .iter()
        .map(|c| {
            Obj::default()
                .msg("key", c.key.as_ref().map(observation_key))
                .list("values", c.values.iter().map(reported_value).collect())
                .f64("relativeDifference", c.relative_difference, false)
                .done()
        })
        .collect();
    let coverage = r
        .coverage
        .iter()
        .map(|c| {
            Obj::default()
                .str("nodeId", &c.node_id)
                .str("indicator", &c.indicator)
                .list("refAreas", strings(&c.ref_areas))
                .list("missingMemberStates", strings(&c.missing_member_states))
                .str("firstPeriod", &c.first_period)
                .str("lastPeriod", &c.last_period)
                .u64("observationCount", c.observation_count)
                .done()
        })
        .collect();
    let policy = r
        .policy_coverage
        .iter()
        .map(|p| {
            Obj::default()
                .str("nodeId", &p.node_id)
                .list("gcmObjectives", numbers(&p.gcm_objectives))
                .u64("policyDocuments", p.policy_documents)
                .done()
        })
        .collect();
    let revisions = r
        .revisions
        .iter()
        .map(|e| {
            Obj::default()
                .str("nodeId", &e.node_id)
                .msg("key", e.key.as_ref().map(observation_key))
                .msg("oldValue", e.old_value.as_ref().map(reported_value))
                .msg("newValue", e.new_value.as_ref().map(reported_value))
                .done()
        })
        .collect();
    Obj::default()
        .str("federationId", &r.federation_id)
        .u64("number", r.number)
        .msg("generatedAt", r.generated_at.as_ref().map(timestamp))
        .u64("feedSize", r.feed_size)
        .u64("previousFeedSize", r.previous_feed_size)
        .bytes("previousDigest", &r.previous_digest)
        .u64("catalogueVersion", r.catalogue_version)
        .list("conflicts", conflicts)
        .u64("totalConflicts", r.total_conflicts)
        .list("coverage", coverage)
        .list("policyCoverage", policy)
        .list(
            "unaddressedGcmObjectives",
            numbers(&r.unaddressed_gcm_objectives),
        )
        .list("revisions", revisions)
        .u64("totalRevisions", r.total_revisions)
        .done()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn follows_the_proto3_json_mapping() {
        let record = v1::ObservationRecord {
            indicator: "MIG_STOCK".into(),
            observation: Some(v1::Observation {
                action: v1::ObservationAction::Replace as i32,
                ref_area: "WLD".into(),
                time_period: "2020".into(),
                obs_value: Some(0.0),
                unit_mult: 6,
                unit_measure: "persons".into(),
                ..Default::default()
            }),
            provenance: Some(v1::Provenance {
                node_id: "colombo".into(),
                statement_digest: vec![0xff, 0x00],
                feed_index: 12,
                leaf_index: 11,
                accepted_at: Some(prost_types::Timestamp {
                    seconds: 1_735_689_600,
                    nanos: 0,
                }),
                ..Default::default()
            }),
            superseded_at: None,
        };
        let json = observation_record(&record);
        let text = serde_json::to_string(&json).unwrap();
        assert!(
            text.starts_with("{\"indicator\":\"MIG_STOCK\",\"observation\":{\"action\""),
            "{text}"
        );
        assert_eq!(
            serde_json::to_value(&json).unwrap(),
            serde_json::json!({
                "indicator": "MIG_STOCK",
                "observation": {
                    "action": "OBSERVATION_ACTION_REPLACE",
                    "refArea": "WLD",
                    "timePeriod": "2020",
                    "obsValue": 0.0,
                    "unitMeasure": "persons",
                    "unitMult": 6
                },
                "provenance": {
                    "nodeId": "colombo",
                    "statementDigest": "/wA=",
                    "feedIndex": "12",
                    "leafIndex": "11",
                    "acceptedAt": "2025-01-01T00:00:00Z"
                }
            })
        );
        assert_eq!(double(f64::NAN), Value::String("NaN".into()));
    }
}
