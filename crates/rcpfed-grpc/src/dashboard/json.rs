//! The dashboard's JSON: stored documents and views turned into the plain objects the page
//! draws. Times are unix milliseconds (the page formats them), digests and hashes lower-case
//! hex, log indexes `feed_index - 1`.

use super::{LogView, PolicyStatement};
use prost::Message;
use rcpfed_core::Digest;
use rcpfed_core::envelope::SignedEnvelope;
use rcpfed_core::members::Federation;
use rcpfed_proto::v1;
use rcpfed_store::ObservationRow;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Primary language subtags written right to left (Arabic, Hebrew, Persian, Urdu, Pashto,
/// Sindhi, Yiddish, Dhivehi, Central Kurdish, Uyghur).
const RIGHT_TO_LEFT: &[&str] = &["ar", "he", "fa", "ur", "ps", "sd", "yi", "dv", "ckb", "ug"];

/// "rtl" for a BCP 47 tag whose language is written right to left, else "ltr".
pub fn language_direction(tag: &str) -> &'static str {
    let primary = tag.split(['-', '_']).next().unwrap_or_default();
    if RIGHT_TO_LEFT
        .iter()
        .any(|rtl| rtl.eq_ignore_ascii_case(primary))
    {
        "rtl"
    } else {
        "ltr"
    }
}

/// The payload of a stored hub document (catalogue version or coherence report). Stored
/// documents were verified when logged, so an error here is a fault of the store.
pub fn decode_hub_payload<M: Message + Default>(envelope: &[u8]) -> Result<M, String> {
    let envelope = SignedEnvelope::decode(envelope).map_err(|e| e.to_string())?;
    M::decode(envelope.payload.as_slice()).map_err(|e| e.to_string())
}

fn unix_ms(t: time::OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn timestamp_ms(t: Option<&prost_types::Timestamp>) -> Value {
    t.map_or(Value::Null, |t| {
        json!(t.seconds.saturating_mul(1000) + i64::from(t.nanos) / 1_000_000)
    })
}

pub fn members(federation: &Federation) -> Value {
    let members: Vec<Value> = federation
        .members()
        .map(|m| {
            let keys: Vec<Value> = m
                .keys
                .iter()
                .map(|k| {
                    let life = federation.key_lifecycle(&k.key_id).unwrap_or_default();
                    json!({
                        "key_id": k.key_id,
                        "status": life.status.status_str(),
                        "status_at_ms": life.status.status_at().map(unix_ms),
                        "valid_from_ms": life.valid_from.map(unix_ms),
                    })
                })
                .collect();
            let states: Vec<Value> = m
                .states
                .iter()
                .map(|s| {
                    json!({
                        "iso3": s.iso3,
                        "since": s.since.map(|d| d.to_string()),
                        "until": s.until.map(|d| d.to_string()),
                    })
                })
                .collect();
            json!({
                "id": m.id,
                "name": m.name,
                "kind": m.kind,
                "roles": m.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
                "spiffe_id": m.spiffe_id,
                "keys": keys,
                "states": states,
            })
        })
        .collect();
    json!({
        "federation_id": federation.federation_id,
        "hub_id": federation.hub_id,
        "registry_version": federation.registry_version(),
        "members": members,
    })
}

pub fn log(view: &LogView) -> Value {
    json!({
        "viewpoint": view.viewpoint,
        "checkpoint": view.checkpoint.as_ref().map(|c| json!({
            "size": c.size,
            "root": hex::encode(c.root),
            "created_at_ms": c.created_at_ms,
            "note": c.note,
        })),
        "cosignatures": view.cosignatures.iter().map(|c| json!({
            "witness_id": c.witness_id,
            "timestamp_ms": c.timestamp.saturating_mul(1000),
        })).collect::<Vec<_>>(),
        "quorum": view.quorum,
        "final_size": view.final_size,
        "witnesses": view.witnesses.iter().map(|w| json!({
            "id": w.id,
            "cosigned_size": w.cosigned_size,
            "state": w.state,
        })).collect::<Vec<_>>(),
    })
}

fn texts(texts: &[v1::LocalizedText]) -> Value {
    texts
        .iter()
        .map(|t| {
            json!({
                "language": t.language,
                "dir": language_direction(&t.language),
                "text": t.text,
            })
        })
        .collect()
}

fn status_word(status: i32) -> String {
    v1::PolicyStatus::try_from(status)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("POLICY_STATUS_")
                .to_ascii_lowercase()
        })
        .unwrap_or_else(|_| format!("unknown status {status}"))
}

/// The latest revision of each policy document, grouped by the publishing member (its
/// region), at most `max_documents` and no more once their signed payloads reach
/// `max_bytes` (at least one).
pub fn policies(
    statements: &[PolicyStatement],
    more_statements: bool,
    max_documents: usize,
    max_bytes: usize,
) -> Result<Value, String> {
    // Feed order: a later revision of a document replaces the earlier one.
    let mut latest: BTreeMap<(&str, &str), &PolicyStatement> = BTreeMap::new();
    for s in statements {
        latest.insert((s.node_id.as_str(), s.document.as_str()), s);
    }
    let total = latest.len();
    let mut out = Vec::new();
    let mut bytes = 0;
    for s in latest.values().take(max_documents) {
        if !out.is_empty() && bytes + s.envelope.len() > max_bytes {
            break;
        }
        bytes += s.envelope.len();
        let envelope = SignedEnvelope::decode(&s.envelope).map_err(|e| e.to_string())?;
        let statement =
            v1::Statement::decode(envelope.payload.as_slice()).map_err(|e| e.to_string())?;
        let Some(v1::statement::Body::PolicySummary(p)) = statement.body else {
            return Err(format!(
                "statement at feed index {} is listed as a policy summary but is not one",
                s.feed_index
            ));
        };
        out.push(json!({
            "node_id": s.node_id,
            "document": s.document,
            "revision": s.revision,
            "feed_index": s.feed_index,
            "log_index": s.feed_index.saturating_sub(1),
            "digest": s.digest.to_hex(),
            "accepted_at_ms": s.accepted_at_ms,
            "title": texts(&p.title),
            "summary": texts(&p.summary),
            "meeting": p.meeting,
            "meeting_date": p.meeting_date,
            "status": status_word(p.status),
            "countries": p.countries,
            "gcm_objectives": p.gcm_objectives,
            "sdg_targets": p.sdg_targets,
            "references": p.references.iter().map(|r| json!({
                "title": r.title,
                "url": r.url,
            })).collect::<Vec<_>>(),
        }));
    }
    Ok(json!({
        "documents": out,
        "total_documents": total,
        "truncated": more_statements || total > out.len(),
    }))
}

pub fn catalogue(catalogue: &v1::CatalogueDocument, feed_index: u64) -> Value {
    json!({
        "version": catalogue.version,
        "name": catalogue.name,
        "feed_index": feed_index,
        "indicators": catalogue.indicators.iter().map(|i| json!({
            "code": i.code,
            "name": i.name,
            "custodian": i.custodian,
            "sdg_series": i.sdg_series,
            "units": i.units,
        })).collect::<Vec<_>>(),
    })
}

fn action_word(action: i32) -> String {
    v1::ObservationAction::try_from(action)
        .map(|a| {
            a.as_str_name()
                .trim_start_matches("OBSERVATION_ACTION_")
                .to_ascii_lowercase()
        })
        .unwrap_or_else(|_| format!("unknown action {action}"))
}

fn observation(o: &v1::Observation) -> Value {
    json!({
        "action": action_word(o.action),
        "ref_area": o.ref_area,
        "time_period": o.time_period,
        "dimensions": o.dimensions.iter().map(|d| json!({"id": d.id, "value": d.value})).collect::<Vec<_>>(),
        // NaN and infinities are refused on input; null is a deletion.
        "value": o.obs_value.filter(|v| v.is_finite()),
        "unit_measure": o.unit_measure,
        "unit_mult": o.unit_mult,
        "obs_status": o.obs_status,
        "source": o.source,
        "footnote": o.footnote,
    })
}

fn provenance(p: &v1::Provenance) -> Value {
    json!({
        "node_id": p.node_id,
        "statement_digest": hex::encode(&p.statement_digest),
        "document": p.document,
        "revision": p.revision,
        "feed_index": p.feed_index,
        "log_index": p.leaf_index,
        "position": p.position,
        "accepted_at_ms": timestamp_ms(p.accepted_at.as_ref()),
    })
}

fn reported(v: Option<&v1::ReportedValue>) -> Value {
    v.map_or(Value::Null, |v| {
        json!({
            "observation": v.observation.as_ref().map(observation),
            "provenance": v.provenance.as_ref().map(provenance),
        })
    })
}

/// The versions in force of one indicator (`rows` read with one extra to tell a cut): at most
/// `max_points`, and no more once their JSON reaches `max_bytes` (at least one).
pub fn series(
    rows: &[ObservationRow],
    feed_size: u64,
    name: &str,
    max_points: usize,
    max_bytes: usize,
) -> Value {
    let mut points = Vec::new();
    let mut bytes = 0;
    for row in rows.iter().take(max_points) {
        let record = crate::indicators::observation_record(row);
        let point = json!({
            "observation": record.observation.as_ref().map(observation),
            "provenance": record.provenance.as_ref().map(provenance),
        });
        // Footnotes and sources make points differ in size; count what is sent.
        let size = point.to_string().len();
        if !points.is_empty() && bytes + size > max_bytes {
            break;
        }
        bytes += size;
        points.push(point);
    }
    json!({
        "indicator": rows.first().map(|r| r.indicator.as_str()),
        "name": name,
        "feed_size": feed_size,
        "truncated": rows.len() > points.len(),
        "points": points,
    })
}

fn key(k: Option<&v1::ObservationKey>) -> Value {
    k.map_or(Value::Null, |k| {
        json!({
            "indicator": k.indicator,
            "ref_area": k.ref_area,
            "time_period": k.time_period,
            "dimensions": k.dimensions.iter().map(|d| json!({"id": d.id, "value": d.value})).collect::<Vec<_>>(),
        })
    })
}

pub fn coherence(report: &v1::CoherenceReport, feed_index: u64, digest: &Digest) -> Value {
    json!({
        "report": {
            "number": report.number,
            "federation_id": report.federation_id,
            "generated_at_ms": timestamp_ms(report.generated_at.as_ref()),
            "feed_size": report.feed_size,
            "previous_feed_size": report.previous_feed_size,
            "catalogue_version": report.catalogue_version,
            "feed_index": feed_index,
            "log_index": feed_index.saturating_sub(1),
            "digest": digest.to_hex(),
            "conflicts": report.conflicts.iter().map(|c| json!({
                "key": key(c.key.as_ref()),
                "relative_difference": c.relative_difference,
                "values": c.values.iter().map(|v| reported(Some(v))).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "total_conflicts": report.total_conflicts,
            "coverage": report.coverage.iter().map(|c| json!({
                "node_id": c.node_id,
                "indicator": c.indicator,
                "ref_areas": c.ref_areas,
                "missing_member_states": c.missing_member_states,
                "first_period": c.first_period,
                "last_period": c.last_period,
                "observation_count": c.observation_count,
            })).collect::<Vec<_>>(),
            "policy_coverage": report.policy_coverage.iter().map(|p| json!({
                "node_id": p.node_id,
                "gcm_objectives": p.gcm_objectives,
                "policy_documents": p.policy_documents,
            })).collect::<Vec<_>>(),
            "unaddressed_gcm_objectives": report.unaddressed_gcm_objectives,
            "revisions": report.revisions.iter().map(|r| json!({
                "node_id": r.node_id,
                "key": key(r.key.as_ref()),
                "old_value": reported(r.old_value.as_ref()),
                "new_value": reported(r.new_value.as_ref()),
            })).collect::<Vec<_>>(),
            "total_revisions": report.total_revisions,
        }
    })
}
