//! SDMX-JSON data messages written from stored observation versions: 2.0.0, and 1.0.0 (the
//! SDMX-JSON of SDMX 2.1 that SDMX REST 1.5.0 lists).

use crate::layout::{
    ATTRIBUTE_CODED, ATTRIBUTES, JSON_SCHEMA_URL, REF_AREA, SdmxAction, SdmxError, SdmxStructure,
    TIME_PERIOD, attribute_values, dimension_value, is_sdmx_code, number, rfc3339_ms, sdmx_id,
    unit_mult_name,
};
use rcpfed_core::dates::parse_time_period;
use rcpfed_core::versions::{ObservationProvenance, ObservationRow};
use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash as _, Hasher as _};

/// Appends `s` as a JSON string literal.
pub fn json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The `meta` of an SDMX-JSON message.
#[derive(Clone, Debug, PartialEq)]
pub struct JsonMeta {
    /// Message id (`[A-Za-z0-9_@$-]+`; see [`sdmx_id`]).
    pub id: String,
    /// When the message was prepared (unix ms).
    pub prepared_ms: i64,
    /// The sending party's id (`[A-Za-z0-9_@$-]+`).
    pub sender: String,
}

/// Distinct values of one component, in first-seen order: SDMX-JSON data sets refer to them
/// by index.
#[derive(Default)]
struct ValueList {
    index: HashMap<String, usize>,
    values: Vec<String>,
}

impl ValueList {
    fn index_of(&mut self, value: &str) -> usize {
        if let Some(&i) = self.index.get(value) {
            return i;
        }
        let i = self.values.len();
        self.index.insert(value.to_string(), i);
        self.values.push(value.to_string());
        i
    }
}

/// The data set being written: one statement's versions with one action.
struct OpenDataSet {
    feed_index: u64,
    action: SdmxAction,
    /// Hashes of the keys written so far: a repeated key starts a new data set (a hash
    /// collision only splits a data set, which is harmless).
    keys: HashSet<u64>,
    empty: bool,
}

/// Streams an SDMX-JSON 2.0 data message.
///
/// The value lists and annotations the data sets index into are only known once every row is
/// written, so the message writes `data.dataSets` before `data.structures` (JSON members are
/// unordered; SDMX-JSON readers must not rely on member order). Memory grows with the number
/// of distinct values and statements, not with the number of observations.
///
/// Layout: `{"meta":{…},"data":{"dataSets":[…],"structures":[{…}]}}`. Every dimension is at
/// observation level (`AllDimensions`); each observation is `"i:j:…:k": [OBS_VALUE, OBS_STATUS,
/// CONF_STATUS, UNIT_MEASURE, UNIT_MULT, COMMENT_OBS, SOURCE_DETAIL]` with value indices
/// (null when absent), and `[]` in a `Delete` data set. Each data set holds the versions of
/// one statement with one action; its `validFrom` is the statement's acceptance time and its
/// annotations give the publishing node (`PROVIDER`), the statement digest
/// (`STATEMENT_DIGEST`) and its feed index (`FEED_INDEX`).
pub struct SdmxJsonWriter {
    structure: SdmxStructure,
    /// SDMX-JSON 1.0.0 instead of 2.0.0 (see [`SdmxJsonWriter::version_1`]).
    version_1: bool,
    /// REF_AREA, the disaggregations, TIME_PERIOD.
    dims: Vec<ValueList>,
    attrs: [ValueList; 6],
    /// (type, value) of each annotation.
    annotations: Vec<(&'static str, String)>,
    /// The last statement annotated: (feed index, its first annotation index).
    annotated: Option<(u64, usize)>,
    datasets: usize,
    open: Option<OpenDataSet>,
}

impl SdmxJsonWriter {
    /// A writer for `structure`.
    pub fn new(structure: SdmxStructure) -> Self {
        let dims = (0..structure.disaggregations.len() + 2)
            .map(|_| ValueList::default())
            .collect();
        SdmxJsonWriter {
            structure,
            version_1: false,
            dims,
            attrs: Default::default(),
            annotations: Vec::new(),
            annotated: None,
            datasets: 0,
            open: None,
        }
    }

    /// The same message in SDMX-JSON 1.0.0 (SDMX 2.1): `header` for `meta`, `dataSets` and
    /// one `structure` at the top level, dimensions and attributes by level (all at
    /// observation level), free-text attribute values as `{"name"}`, no `measures`.
    pub fn version_1(mut self) -> Self {
        self.version_1 = true;
        self
    }

    /// Writes the message start: `meta` and the opening of `data.dataSets`.
    pub fn begin(&self, meta: &JsonMeta, out: &mut String) {
        if self.version_1 {
            out.push_str("{\"header\":{\"id\":");
            json_string(&sdmx_id(&meta.id), out);
            out.push_str(",\"test\":false,\"prepared\":");
            json_string(&rfc3339_ms(meta.prepared_ms), out);
            out.push_str(",\"sender\":{\"id\":");
            json_string(&sdmx_id(&meta.sender), out);
            out.push_str("}},\"dataSets\":[");
            return;
        }
        out.push_str("{\"meta\":{\"schema\":");
        json_string(JSON_SCHEMA_URL, out);
        out.push_str(",\"id\":");
        json_string(&sdmx_id(&meta.id), out);
        out.push_str(",\"test\":false,\"prepared\":");
        json_string(&rfc3339_ms(meta.prepared_ms), out);
        out.push_str(",\"contentLanguages\":[\"en\"],\"sender\":{\"id\":");
        json_string(&sdmx_id(&meta.sender), out);
        out.push_str("}},\"data\":{\"dataSets\":[");
    }

    /// Writes one stored version.
    pub fn row(&mut self, row: &ObservationRow, out: &mut String) -> Result<(), SdmxError> {
        let obs = &row.observation;
        let p = &row.provenance;
        self.structure.check_dimensions(obs, p)?;
        let action = SdmxAction::of(obs.action, self.structure.history);

        let last = self.dims.len() - 1;
        let mut key = String::new();
        for (i, list) in self.dims.iter_mut().enumerate() {
            let value = if i == 0 {
                obs.ref_area.as_str()
            } else if i == last {
                obs.time_period.as_str()
            } else {
                dimension_value(&self.structure.disaggregations[i - 1], obs)
            };
            if i > 0 {
                key.push(':');
            }
            key.push_str(&list.index_of(value).to_string());
        }
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        let key_hash = hasher.finish();

        let reuse = self.open.as_ref().is_some_and(|o| {
            o.feed_index == p.feed_index && o.action == action && !o.keys.contains(&key_hash)
        });
        if !reuse {
            self.open_data_set(p, action, out);
        }
        let Some(open) = self.open.as_mut() else {
            return Ok(());
        };
        open.keys.insert(key_hash);
        if !open.empty {
            out.push(',');
        }
        open.empty = false;
        json_string(&key, out);
        out.push_str(":[");
        if action != SdmxAction::Delete {
            match obs.obs_value.filter(|v| v.is_finite()) {
                Some(v) => out.push_str(&number(v)),
                None => out.push_str("null"),
            }
            for (list, value) in self.attrs.iter_mut().zip(attribute_values(obs)) {
                out.push(',');
                if value.is_empty() {
                    out.push_str("null");
                } else {
                    out.push_str(&list.index_of(&value).to_string());
                }
            }
        }
        out.push(']');
        Ok(())
    }

    /// Closes the open data set (if any) and opens one for `p`'s statement and `action`.
    fn open_data_set(&mut self, p: &ObservationProvenance, action: SdmxAction, out: &mut String) {
        if self.open.is_some() {
            out.push_str("}}");
        }
        if self.datasets > 0 {
            out.push(',');
        }
        let first_annotation = match self.annotated {
            Some((feed_index, first)) if feed_index == p.feed_index => first,
            _ => {
                let first = self.annotations.len();
                self.annotations.push(("PROVIDER", p.node_id.clone()));
                self.annotations
                    .push(("STATEMENT_DIGEST", p.digest.to_hex()));
                self.annotations
                    .push(("FEED_INDEX", p.feed_index.to_string()));
                self.annotated = Some((p.feed_index, first));
                first
            }
        };
        out.push_str(if self.version_1 {
            "{\"action\":"
        } else {
            "{\"structure\":0,\"action\":"
        });
        json_string(action.json_name(), out);
        let valid_from = rfc3339_ms(p.accepted_at_ms);
        if !valid_from.is_empty() {
            out.push_str(",\"validFrom\":");
            json_string(&valid_from, out);
        }
        out.push_str(",\"links\":[{\"rel\":\"dataflow\",\"urn\":");
        json_string(&self.structure.dataflow_urn(), out);
        out.push_str(&format!(
            "}}],\"annotations\":[{},{},{}],\"observations\":{{",
            first_annotation,
            first_annotation + 1,
            first_annotation + 2
        ));
        self.datasets += 1;
        self.open = Some(OpenDataSet {
            feed_index: p.feed_index,
            action,
            keys: HashSet::new(),
            empty: true,
        });
    }

    /// Writes the message end: closes the data sets and writes the structure.
    pub fn finish(mut self, out: &mut String) {
        if self.open.take().is_some() {
            out.push_str("}}");
        }
        self.write_structure_head(out);
        self.write_dimensions(out);
        self.write_attributes(out);
        self.write_annotations(out);
        out.push_str(if self.version_1 { "}}" } else { "}]}}" });
    }

    /// Closes `dataSets` and opens the structure: its name, the data sets it describes (2.0)
    /// and the link to the dataflow.
    fn write_structure_head(&self, out: &mut String) {
        let s = &self.structure;
        out.push_str(if self.version_1 {
            "],\"structure\":{\"name\":"
        } else {
            "],\"structures\":[{\"name\":"
        });
        json_string(&s.name, out);
        if self.datasets > 0 && !self.version_1 {
            out.push_str(",\"dataSets\":[");
            let indices: Vec<String> = (0..self.datasets).map(|i| i.to_string()).collect();
            out.push_str(&indices.join(","));
            out.push(']');
        }
        out.push_str(",\"links\":[{\"rel\":\"dataflow\",\"urn\":");
        json_string(&s.dataflow_urn(), out);
        out.push_str("}]");
    }

    /// The dimensions in key order, each with the values the data sets index into. One
    /// without values (no rows at all) is left out, since SDMX-JSON requires at least one
    /// value per dimension.
    fn write_dimensions(&self, out: &mut String) {
        out.push_str(if self.version_1 {
            ",\"dimensions\":{\"dataSet\":[],\"series\":[],\"observation\":["
        } else {
            ",\"dimensions\":{\"observation\":["
        });
        let mut first = true;
        for (i, list) in self.dims.iter().enumerate() {
            if list.values.is_empty() {
                continue;
            }
            if !first {
                out.push(',');
            }
            first = false;
            self.write_dimension(i, list, out);
        }
        out.push_str("]}");
    }

    /// Dimension `i` of the key (REF_AREA, the disaggregations, TIME_PERIOD) with its values.
    fn write_dimension(&self, i: usize, list: &ValueList, out: &mut String) {
        let s = &self.structure;
        let last = self.dims.len() - 1;
        let (id, name, names, role) = if i == 0 {
            (
                REF_AREA,
                s.ref_area.name.as_str(),
                Some(&s.ref_area.code_names),
                Some(REF_AREA),
            )
        } else if i == last {
            (TIME_PERIOD, "Time period", None, Some(TIME_PERIOD))
        } else {
            let d = &s.disaggregations[i - 1];
            (d.id.as_str(), d.name.as_str(), Some(&d.code_names), None)
        };
        out.push_str("{\"id\":");
        json_string(id, out);
        out.push_str(",\"name\":");
        json_string(name, out);
        out.push_str(&format!(",\"keyPosition\":{i}"));
        if let Some(role) = role {
            out.push_str(",\"roles\":[");
            json_string(role, out);
            out.push(']');
        }
        out.push_str(",\"values\":[");
        for (j, value) in list.values.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            let name = names.and_then(|n| n.get(value)).map(String::as_str);
            if i == last {
                time_value(value, out);
            } else {
                coded_value(value, name, out);
            }
        }
        out.push_str("]}");
    }

    /// The measure (2.0 only) and the observation attributes with their values.
    fn write_attributes(&self, out: &mut String) {
        if self.version_1 {
            out.push_str(",\"attributes\":{\"dataSet\":[],\"series\":[],\"observation\":[");
        } else {
            out.push_str(",\"measures\":{\"observation\":[{\"id\":\"OBS_VALUE\",\"name\":\"Observation value\",\"roles\":[\"OBS_VALUE\"]}]}");
            out.push_str(",\"attributes\":{\"observation\":[");
        }
        for (i, ((id, name), list)) in ATTRIBUTES.iter().zip(&self.attrs).enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str("{\"id\":");
            json_string(id, out);
            out.push_str(",\"name\":");
            json_string(name, out);
            out.push_str(",\"relationship\":{\"observation\":{}}");
            // An attribute no row gives has no `values`: its entries are then the (null)
            // values themselves, which the schema allows.
            if !list.values.is_empty() {
                self.write_attribute_values(id, ATTRIBUTE_CODED[i], list, out);
            }
            out.push('}');
        }
        out.push_str("]}");
    }

    /// `,"values":[…]` of attribute `id`, given as codes (`coded`) or as free text.
    fn write_attribute_values(&self, id: &str, coded: bool, list: &ValueList, out: &mut String) {
        let s = &self.structure;
        out.push_str(",\"values\":[");
        for (j, value) in list.values.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            let code_name = match id {
                "OBS_STATUS" => s.obs_status_names.get(value).map(String::as_str),
                "CONF_STATUS" => s.conf_status_names.get(value).map(String::as_str),
                "UNIT_MULT" => unit_mult_name(value),
                _ => None,
            };
            if coded {
                coded_value(value, code_name, out);
            } else {
                // Free text: SDMX-JSON 2.0 gives it as `value`, 1.0 as `name`.
                out.push_str(if self.version_1 {
                    "{\"name\":"
                } else {
                    "{\"value\":"
                });
                json_string(value, out);
                out.push('}');
            }
        }
        out.push(']');
    }

    /// The provenance annotations the data sets refer to, when there are any.
    fn write_annotations(&self, out: &mut String) {
        if self.annotations.is_empty() {
            return;
        }
        out.push_str(",\"annotations\":[");
        for (i, (kind, value)) in self.annotations.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str("{\"type\":");
            json_string(kind, out);
            out.push_str(",\"value\":");
            json_string(value, out);
            out.push('}');
        }
        out.push(']');
    }
}

/// A coded component value: `{"id","name"}`, or `{"value"}` when the text cannot be an SDMX
/// code.
fn coded_value(value: &str, name: Option<&str>, out: &mut String) {
    if is_sdmx_code(value) {
        out.push_str("{\"id\":");
        json_string(value, out);
        out.push_str(",\"name\":");
        json_string(name.unwrap_or(value), out);
        out.push('}');
    } else {
        out.push_str("{\"value\":");
        json_string(value, out);
        out.push('}');
    }
}

/// A TIME_PERIOD value, with the first and last moment of the period when it parses.
fn time_value(value: &str, out: &mut String) {
    if !is_sdmx_code(value) {
        coded_value(value, None, out);
        return;
    }
    out.push_str("{\"id\":");
    json_string(value, out);
    out.push_str(",\"name\":");
    json_string(value, out);
    if let Some(range) = parse_time_period(value) {
        let date =
            |d: time::Date| format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day());
        out.push_str(&format!(
            ",\"start\":\"{}T00:00:00Z\",\"end\":\"{}T23:59:59Z\"",
            date(range.start),
            date(range.end)
        ));
    }
    out.push('}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::csv_write::csv_row;
    use crate::layout::tests::structure;
    use crate::test_support::{obs, row};
    use rcpfed_core::statement::ObservationAction;

    #[test]
    fn unknown_dimensions_are_refused() {
        let s = structure(false, &[]);
        let r = row(
            "node-a",
            9,
            4,
            obs(ObservationAction::Append, "FRA", "2024", &[("ZED", "1")]),
        );
        let err = csv_row(&s, &r, &mut String::new()).expect_err("unknown");
        assert_eq!(
            err,
            SdmxError::UnknownDimension {
                id: "ZED".into(),
                feed_index: 9,
                position: 4
            }
        );
        let mut w = SdmxJsonWriter::new(s);
        assert!(w.row(&r, &mut String::new()).is_err());
    }

    #[test]
    fn json_string_escapes() {
        let mut out = String::new();
        json_string("a\"b\\c\nd\u{1}é", &mut out);
        assert_eq!(out, "\"a\\\"b\\\\c\\nd\\u0001é\"");
    }

    fn json_message(s: SdmxStructure, rows: &[ObservationRow]) -> serde_json::Value {
        let mut w = SdmxJsonWriter::new(s);
        let mut out = String::new();
        w.begin(
            &JsonMeta {
                id: "RCPFED-SDG_10_7_3".into(),
                prepared_ms: 1_714_564_800_000,
                sender: "GFMD".into(),
            },
            &mut out,
        );
        for r in rows {
            w.row(r, &mut out).expect("row");
        }
        w.finish(&mut out);
        serde_json::from_str(&out).expect("valid JSON")
    }

    #[test]
    fn json_index_structure() {
        let rows = [
            row(
                "node-a",
                2,
                0,
                obs(ObservationAction::Append, "FRA", "2023", &[("SEX", "F")]),
            ),
            row(
                "node-a",
                2,
                1,
                obs(ObservationAction::Append, "DEU", "2023", &[]),
            ),
            // Same key as the first, from another node: another data set.
            row(
                "node-b",
                3,
                0,
                obs(ObservationAction::Append, "FRA", "2023", &[("SEX", "F")]),
            ),
        ];
        let m = json_message(structure(false, &["SEX"]), &rows);
        assert_eq!(m["meta"]["schema"], JSON_SCHEMA_URL);
        assert_eq!(m["meta"]["sender"]["id"], "GFMD");
        assert_eq!(m["meta"]["prepared"], "2024-05-01T12:00:00Z");

        let st = &m["data"]["structures"][0];
        let dims = st["dimensions"]["observation"].as_array().expect("dims");
        let ids: Vec<&str> = dims.iter().filter_map(|d| d["id"].as_str()).collect();
        assert_eq!(ids, ["REF_AREA", "SEX", "AGE", "TIME_PERIOD"]);
        let positions: Vec<i64> = dims
            .iter()
            .filter_map(|d| d["keyPosition"].as_i64())
            .collect();
        assert_eq!(positions, [0, 1, 2, 3]);
        assert_eq!(dims[0]["values"][1]["id"], "DEU");
        assert_eq!(
            dims[1]["values"][0],
            serde_json::json!({"id": "F", "name": "Female"})
        );
        assert_eq!(dims[1]["values"][1]["id"], "_T");
        assert_eq!(dims[3]["values"][0]["start"], "2023-01-01T00:00:00Z");
        assert_eq!(st["dataSets"], serde_json::json!([0, 1]));

        let attrs = st["attributes"]["observation"].as_array().expect("attrs");
        let attr_ids: Vec<&str> = attrs.iter().filter_map(|a| a["id"].as_str()).collect();
        assert_eq!(
            attr_ids,
            [
                "OBS_STATUS",
                "CONF_STATUS",
                "UNIT_MEASURE",
                "UNIT_MULT",
                "COMMENT_OBS",
                "SOURCE_DETAIL"
            ]
        );
        assert_eq!(
            attrs[0]["values"][0],
            serde_json::json!({"id": "A", "name": "Normal value"})
        );
        assert!(attrs[1].get("values").is_none(), "no CONF_STATUS given");
        assert_eq!(
            attrs[2]["values"][0],
            serde_json::json!({"value": "persons"})
        );
        assert_eq!(
            attrs[3]["values"][0],
            serde_json::json!({"id": "3", "name": "Thousands"})
        );

        let sets = m["data"]["dataSets"].as_array().expect("sets");
        assert_eq!(sets.len(), 2);
        assert_eq!(sets[0]["action"], "Information");
        assert_eq!(sets[0]["validFrom"], "2024-05-01T12:00:00Z");
        assert_eq!(
            sets[0]["observations"]["0:0:0:0"],
            serde_json::json!([12.5, 0, null, 0, 0, 0, 0])
        );
        assert_eq!(sets[0]["observations"]["1:1:0:0"][0], 12.5);
        assert_eq!(
            sets[1]["observations"].as_object().map(|o| o.len()),
            Some(1)
        );
        assert!(sets[1]["observations"]["0:0:0:0"].is_array());
        let ann = st["annotations"].as_array().expect("annotations");
        assert_eq!(sets[1]["annotations"], serde_json::json!([3, 4, 5]));
        assert_eq!(
            ann[3],
            serde_json::json!({"type": "PROVIDER", "value": "node-b"})
        );
        assert_eq!(
            ann[5],
            serde_json::json!({"type": "FEED_INDEX", "value": "3"})
        );
    }

    #[test]
    fn json_version_1_layout() {
        let r = row(
            "node-a",
            2,
            0,
            obs(ObservationAction::Append, "FRA", "2023", &[("SEX", "F")]),
        );
        let mut out = String::new();
        let mut w = SdmxJsonWriter::new(structure(false, &["SEX"])).version_1();
        let meta = JsonMeta {
            id: "M".into(),
            prepared_ms: 0,
            sender: "GFMD".into(),
        };
        w.begin(&meta, &mut out);
        w.row(&r, &mut out).expect("row");
        w.finish(&mut out);
        let m: serde_json::Value = serde_json::from_str(&out).expect("JSON");
        assert_eq!(m["header"]["sender"]["id"], "GFMD");
        assert!(m.get("meta").is_none() && m.get("data").is_none(), "{m}");
        assert_eq!(m["dataSets"][0]["action"], "Information");
        assert!(m["dataSets"][0].get("structure").is_none());
        assert_eq!(
            m["structure"]["dimensions"]["series"],
            serde_json::json!([])
        );
        assert_eq!(
            m["structure"]["dimensions"]["observation"][0]["id"],
            "REF_AREA"
        );
        assert!(m["structure"].get("measures").is_none());
        assert_eq!(
            m["structure"]["attributes"]["observation"][2]["values"][0],
            serde_json::json!({"name": "persons"})
        );
    }

    #[test]
    fn json_history_splits_by_action_and_repeated_keys() {
        let rows = [
            row(
                "node-a",
                4,
                0,
                obs(ObservationAction::Replace, "FRA", "2023", &[]),
            ),
            row(
                "node-a",
                4,
                1,
                obs(ObservationAction::Delete, "DEU", "2023", &[]),
            ),
            row(
                "node-a",
                4,
                2,
                obs(ObservationAction::Append, "ITA", "2023", &[]),
            ),
            // A repeated key within one statement (refused by validation, but never written
            // twice into one data set).
            row(
                "node-a",
                4,
                3,
                obs(ObservationAction::Append, "ITA", "2023", &[]),
            ),
        ];
        let m = json_message(structure(true, &[]), &rows);
        let sets = m["data"]["dataSets"].as_array().expect("sets");
        let actions: Vec<&str> = sets.iter().filter_map(|s| s["action"].as_str()).collect();
        assert_eq!(actions, ["Replace", "Delete", "Replace", "Replace"]);
        assert_eq!(sets[1]["observations"]["1:0:0:0"], serde_json::json!([]));
        // One statement: its provenance annotations are shared.
        assert!(
            sets.iter()
                .all(|s| s["annotations"] == serde_json::json!([0, 1, 2]))
        );
    }

    #[test]
    fn json_message_bytes_are_stable() {
        // The exact bytes of a small SDMX-JSON 1.0 message, as written before `finish` was
        // split into its steps.
        let r = row(
            "node-a",
            2,
            0,
            obs(ObservationAction::Append, "FRA", "2023", &[("SEX", "F")]),
        );
        let mut w = SdmxJsonWriter::new(structure(false, &["SEX", "ZED"])).version_1();
        let meta = JsonMeta {
            id: "M".into(),
            prepared_ms: 5,
            sender: "G".into(),
        };
        let mut out = String::new();
        w.begin(&meta, &mut out);
        w.row(&r, &mut out).expect("row");
        w.finish(&mut out);
        assert_eq!(
            out,
            r#"{"header":{"id":"M","test":false,"prepared":"1970-01-01T00:00:00.005Z","sender":{"id":"G"}},"dataSets":[{"action":"Information","validFrom":"2024-05-01T12:00:00Z","links":[{"rel":"dataflow","urn":"urn:sdmx:org.sdmx.infomodel.datastructure.Dataflow=GFMD:SDG_10_7_3(1.2.0)"}],"annotations":[0,1,2],"observations":{"0:0:0:0:0":[12.5,0,null,0,0,0,0]}}],"structure":{"name":"Migrant deaths","links":[{"rel":"dataflow","urn":"urn:sdmx:org.sdmx.infomodel.datastructure.Dataflow=GFMD:SDG_10_7_3(1.2.0)"}],"dimensions":{"dataSet":[],"series":[],"observation":[{"id":"REF_AREA","name":"Reference area","keyPosition":0,"roles":["REF_AREA"],"values":[{"id":"FRA","name":"FRA"}]},{"id":"SEX","name":"Sex","keyPosition":1,"values":[{"id":"F","name":"Female"}]},{"id":"AGE","name":"Age","keyPosition":2,"values":[{"id":"_T","name":"_T"}]},{"id":"ZED","name":"ZED","keyPosition":3,"values":[{"id":"_Z","name":"_Z"}]},{"id":"TIME_PERIOD","name":"Time period","keyPosition":4,"roles":["TIME_PERIOD"],"values":[{"id":"2023","name":"2023","start":"2023-01-01T00:00:00Z","end":"2023-12-31T23:59:59Z"}]}]},"attributes":{"dataSet":[],"series":[],"observation":[{"id":"OBS_STATUS","name":"Observation status","relationship":{"observation":{}},"values":[{"id":"A","name":"Normal value"}]},{"id":"CONF_STATUS","name":"Confidentiality status","relationship":{"observation":{}}},{"id":"UNIT_MEASURE","name":"Unit of measure","relationship":{"observation":{}},"values":[{"name":"persons"}]},{"id":"UNIT_MULT","name":"Unit multiplier","relationship":{"observation":{}},"values":[{"id":"3","name":"Thousands"}]},{"id":"COMMENT_OBS","name":"Observation comment","relationship":{"observation":{}},"values":[{"name":"say \"hi\", twice"}]},{"id":"SOURCE_DETAIL","name":"Source details","relationship":{"observation":{}},"values":[{"name":"IOM"}]}]},"annotations":[{"type":"PROVIDER","value":"node-a"},{"type":"STATEMENT_DIGEST","value":"66570ff05a2074043084d4aca94293ef067530dde94ff4e92b8d8459253eb779"},{"type":"FEED_INDEX","value":"2"}]}}"#
        );
    }

    #[test]
    fn json_without_rows_is_valid() {
        let m = json_message(structure(false, &[]), &[]);
        assert_eq!(m["data"]["dataSets"], serde_json::json!([]));
        assert!(m["data"]["structures"][0].get("dataSets").is_none());
        assert_eq!(
            m["data"]["structures"][0]["dimensions"]["observation"],
            serde_json::json!([])
        );
    }
}
