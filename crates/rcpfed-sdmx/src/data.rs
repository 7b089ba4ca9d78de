//! SDMX data messages of the REST API, written row by row so a response is streamed: SDMX-ML
//! 2.1 structure-specific and generic data (every dimension at observation level), and the
//! SDMX-CSV 2.0 and SDMX-JSON 2.0 / 1.0 writers of the export.
//!
//! Data sets: rows arrive provider by provider. Each data provider's observations form one
//! data set, so a key has at most one value per data set (the conflicts between regional
//! processes stay side by side). For a history (`includeHistory`) or a change query
//! (`updatedAfter`) a provider's data set is cut at each statement and each change of action,
//! as SDMX REST describes for `includeHistory`: replaying the data sets of one provider in
//! order gives its values in force.

use crate::csv_write::{csv_header, csv_row};
use crate::json::{JsonMeta, SdmxJsonWriter};
use crate::layout::{
    ATTRIBUTES, SdmxAction, SdmxError, SdmxStructure, attribute_values, dimension_value, number,
    rfc3339_ms, sdmx_id,
};
use crate::xml::{self, NS_COMMON, NS_GENERIC, NS_MESSAGE, NS_STRUCTURE_SPECIFIC, NS_XSI, attr};
use rcpfed_core::statement::Observation;
use rcpfed_core::versions::ObservationRow;
use std::collections::HashSet;

/// The data formats of the REST API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataFormat {
    /// SDMX-ML 2.1 generic data (the SDMX REST default for data).
    Generic,
    /// SDMX-ML 2.1 structure-specific data.
    StructureSpecific,
    /// SDMX-JSON 2.0.0 data.
    Json,
    /// SDMX-JSON 1.0.0 data (the version SDMX REST 1.5.0 lists).
    Json1,
    /// SDMX-CSV 2.0.0.
    Csv,
}

impl DataFormat {
    /// The media type of the answer.
    pub fn media_type(self) -> &'static str {
        match self {
            DataFormat::Generic => "application/vnd.sdmx.genericdata+xml;version=2.1",
            DataFormat::StructureSpecific => {
                "application/vnd.sdmx.structurespecificdata+xml;version=2.1"
            }
            DataFormat::Json => crate::layout::JSON_MEDIA_TYPE,
            DataFormat::Json1 => crate::layout::JSON_1_MEDIA_TYPE,
            DataFormat::Csv => crate::layout::CSV_MEDIA_TYPE,
        }
    }
}

/// The value of one of an observation's components, with the structure's defaults.
fn component_values(structure: &SdmxStructure, obs: &Observation) -> Vec<(String, String)> {
    let mut values = Vec::with_capacity(structure.disaggregations.len() + 2);
    values.push(("REF_AREA".to_string(), obs.ref_area.clone()));
    for d in &structure.disaggregations {
        values.push((d.id.clone(), dimension_value(d, obs).to_string()));
    }
    values.push(("TIME_PERIOD".to_string(), obs.time_period.clone()));
    values
}

/// The attribute values an observation gives (absent ones left out).
fn present_attributes(obs: &Observation) -> Vec<(&'static str, String)> {
    ATTRIBUTES
        .iter()
        .map(|(id, _)| *id)
        .zip(attribute_values(obs))
        .filter(|(_, v)| !v.is_empty())
        .collect()
}

fn value_text(value: Option<f64>) -> Option<String> {
    value.filter(|v| v.is_finite()).map(number)
}

/// Where a data set ends: the provider, the statement and the action of the open one, and
/// the keys it holds.
struct OpenSet {
    provider: String,
    feed_index: u64,
    action: SdmxAction,
    /// A 64-bit hash of each key (the keys themselves could take hundreds of MB at a million
    /// observations; a collision only starts a data set early, which changes no value).
    keys: HashSet<u64>,
}

fn key_hash(key: &[(String, String)]) -> u64 {
    use std::hash::{Hash as _, Hasher as _};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

/// Decides when a new data set starts (see the module documentation).
#[derive(Default)]
struct DataSets {
    open: Option<OpenSet>,
    count: usize,
}

impl DataSets {
    /// True when `row` needs a new data set; then it is recorded as the open one.
    fn starts_new(
        &mut self,
        row: &ObservationRow,
        action: SdmxAction,
        key: &[(String, String)],
        per_statement: bool,
    ) -> bool {
        let p = &row.provenance;
        let same = self.open.as_ref().is_some_and(|o| {
            o.provider == p.node_id
                && (!per_statement || (o.feed_index == p.feed_index && o.action == action))
                && !o.keys.contains(&key_hash(key))
        });
        if !same {
            self.open = Some(OpenSet {
                provider: p.node_id.clone(),
                feed_index: p.feed_index,
                action,
                keys: HashSet::new(),
            });
            self.count += 1;
        }
        if let Some(open) = self.open.as_mut() {
            open.keys.insert(key_hash(key));
        }
        !same
    }
}

/// Streams an SDMX-ML 2.1 data message (generic or structure-specific).
pub struct XmlDataWriter {
    generic: bool,
    structure: SdmxStructure,
    sets: DataSets,
}

impl XmlDataWriter {
    /// A writer for `structure`; `generic` chooses the generic format.
    pub fn new(structure: SdmxStructure, generic: bool) -> Self {
        XmlDataWriter {
            generic,
            structure,
            sets: DataSets::default(),
        }
    }

    fn structure_ref(&self) -> String {
        let s = &self.structure;
        sdmx_id(&format!("{}_{}_{}", s.agency, s.indicator, s.version))
    }

    fn dsd_namespace(&self) -> String {
        let s = &self.structure;
        format!(
            "urn:sdmx:org.sdmx.infomodel.datastructure.DataStructure={}:{}({}):ObsLevelDim:AllDimensions",
            s.agency, s.indicator, s.version
        )
    }

    /// Writes the message start: root element and header.
    pub fn begin(&self, message_id: &str, prepared_ms: i64, out: &mut String) {
        out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        if self.generic {
            out.push_str("<message:GenericData");
            attr("xmlns:generic", NS_GENERIC, out);
        } else {
            out.push_str("<message:StructureSpecificData");
            attr("xmlns:ss", NS_STRUCTURE_SPECIFIC, out);
            attr("xmlns:ns1", &self.dsd_namespace(), out);
        }
        attr("xmlns:message", NS_MESSAGE, out);
        attr("xmlns:common", NS_COMMON, out);
        attr("xmlns:xsi", NS_XSI, out);
        out.push('>');
        xml::header_start(message_id, prepared_ms, &self.structure.agency, out);
        out.push_str("<message:Structure");
        attr("structureID", &self.structure_ref(), out);
        if !self.generic {
            attr("namespace", &self.dsd_namespace(), out);
        }
        attr("dimensionAtObservation", "AllDimensions", out);
        out.push_str("><common:Structure><Ref");
        attr("agencyID", &self.structure.agency, out);
        attr("id", &self.structure.indicator, out);
        attr("version", &self.structure.version, out);
        out.push_str("/></common:Structure></message:Structure></message:Header>");
    }

    /// Opens a data set. Its `setID` is the provider's id in `DATA_PROVIDERS`: the schema's
    /// `DataProvider` reference element is left out because sdmx1 (the client the API is
    /// tested with) refuses a data set that has one.
    fn open_data_set(&self, row: &ObservationRow, action: SdmxAction, out: &mut String) {
        let p = &row.provenance;
        let prefix = if self.generic { "" } else { "ss:" };
        out.push_str("<message:DataSet");
        attr(&format!("{prefix}structureRef"), &self.structure_ref(), out);
        attr(&format!("{prefix}setID"), &sdmx_id(&p.node_id), out);
        if !self.generic {
            attr("ss:dataScope", "DataStructure", out);
            attr("xsi:type", "ns1:DataSetType", out);
        }
        attr(&format!("{prefix}action"), action.json_name(), out);
        // Only a history's data sets are one statement each; a current view mixes statements,
        // so it has no single moment to state.
        let moment = if self.structure.history {
            rfc3339_ms(p.accepted_at_ms)
        } else {
            String::new()
        };
        if !moment.is_empty() {
            // A deletion's data set says until when the values were valid; others from when.
            let bound = if action == SdmxAction::Delete {
                "validToDate"
            } else {
                "validFromDate"
            };
            attr(&format!("{prefix}{bound}"), &moment, out);
        }
        out.push('>');
    }

    /// Writes one stored version.
    pub fn row(&mut self, row: &ObservationRow, out: &mut String) -> Result<(), SdmxError> {
        let obs = &row.observation;
        self.structure.check_dimensions(obs, &row.provenance)?;
        let action = SdmxAction::of(obs.action, self.structure.history);
        let key = component_values(&self.structure, obs);
        let was_open = self.sets.open.is_some();
        if self
            .sets
            .starts_new(row, action, &key, self.structure.history)
        {
            if was_open {
                out.push_str("</message:DataSet>");
            }
            self.open_data_set(row, action, out);
        }
        let value = (action != SdmxAction::Delete)
            .then(|| value_text(obs.obs_value))
            .flatten();
        let attributes = if action == SdmxAction::Delete {
            Vec::new()
        } else {
            present_attributes(obs)
        };
        if self.generic {
            out.push_str("<generic:Obs><generic:ObsKey>");
            generic_values(key.iter().map(|(id, v)| (id.as_str(), v.as_str())), out);
            out.push_str("</generic:ObsKey>");
            if let Some(value) = value {
                out.push_str("<generic:ObsValue");
                attr("value", &value, out);
                out.push_str("/>");
            }
            if !attributes.is_empty() {
                out.push_str("<generic:Attributes>");
                generic_values(attributes.iter().map(|(id, v)| (*id, v.as_str())), out);
                out.push_str("</generic:Attributes>");
            }
            out.push_str("</generic:Obs>");
        } else {
            out.push_str("<Obs");
            for (id, v) in &key {
                attr(id, v, out);
            }
            if let Some(value) = value {
                attr("OBS_VALUE", &value, out);
            }
            for (id, v) in &attributes {
                attr(id, v, out);
            }
            out.push_str("/>");
        }
        Ok(())
    }

    /// Writes the message end.
    pub fn finish(self, out: &mut String) {
        if self.sets.open.is_some() {
            out.push_str("</message:DataSet>");
        }
        out.push_str(if self.generic {
            "</message:GenericData>\n"
        } else {
            "</message:StructureSpecificData>\n"
        });
    }
}

/// `<generic:Value id="…" value="…"/>` for each (id, value), as generic data writes a key and
/// attributes.
fn generic_values<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>, out: &mut String) {
    for (id, value) in pairs {
        out.push_str("<generic:Value");
        attr("id", id, out);
        attr("value", value, out);
        out.push_str("/>");
    }
}

/// Any of the data writers.
pub enum DataWriter {
    /// SDMX-ML 2.1.
    Xml(XmlDataWriter),
    /// SDMX-JSON 2.0.0.
    Json(Box<SdmxJsonWriter>),
    /// SDMX-CSV 2.0.0.
    Csv(SdmxStructure),
}

impl DataWriter {
    /// A writer of `format` for `structure`, with the message start written to `out`.
    pub fn begin(
        format: DataFormat,
        structure: SdmxStructure,
        message_id: &str,
        prepared_ms: i64,
        out: &mut String,
    ) -> Self {
        match format {
            DataFormat::Generic | DataFormat::StructureSpecific => {
                let w = XmlDataWriter::new(structure, format == DataFormat::Generic);
                w.begin(message_id, prepared_ms, out);
                DataWriter::Xml(w)
            }
            DataFormat::Json | DataFormat::Json1 => {
                let meta = JsonMeta {
                    id: message_id.to_string(),
                    prepared_ms,
                    sender: structure.agency.clone(),
                };
                let mut w = SdmxJsonWriter::new(structure);
                if format == DataFormat::Json1 {
                    w = w.version_1();
                }
                w.begin(&meta, out);
                DataWriter::Json(Box::new(w))
            }
            DataFormat::Csv => {
                csv_header(&structure, out);
                DataWriter::Csv(structure)
            }
        }
    }

    /// Writes one stored version.
    pub fn row(&mut self, row: &ObservationRow, out: &mut String) -> Result<(), SdmxError> {
        match self {
            DataWriter::Xml(w) => w.row(row, out),
            DataWriter::Json(w) => w.row(row, out),
            DataWriter::Csv(s) => csv_row(s, row, out),
        }
    }

    /// Writes the message end.
    pub fn finish(self, out: &mut String) {
        match self {
            DataWriter::Xml(w) => w.finish(out),
            DataWriter::Json(w) => (*w).finish(out),
            DataWriter::Csv(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcpfed_core::Digest;
    use rcpfed_core::statement::ObservationAction;
    use rcpfed_core::versions::ObservationProvenance;
    use std::collections::BTreeSet;

    fn row(node: &str, feed_index: u64, action: ObservationAction, area: &str) -> ObservationRow {
        ObservationRow {
            indicator: "REMIT_INFLOW".into(),
            observation: Observation {
                action,
                ref_area: area.into(),
                time_period: "2023".into(),
                dimensions: Vec::new(),
                obs_value: (action != ObservationAction::Delete).then_some(6.5),
                obs_status: "A".into(),
                unit_measure: "current USD".into(),
                unit_mult: 9,
                conf_status: String::new(),
                footnote: "a <note> & more".into(),
                source: String::new(),
            },
            provenance: ObservationProvenance {
                node_id: node.into(),
                digest: Digest::of(&feed_index.to_be_bytes()),
                document: "remittances".into(),
                revision: 1,
                feed_index,
                position: 0,
                accepted_at_ms: 1_700_000_000_000,
            },
            superseded_at_ms: None,
        }
    }

    fn write(generic: bool, history: bool, rows: &[ObservationRow]) -> String {
        let structure = SdmxStructure::new("REMIT_INFLOW", None, "GFMD", &BTreeSet::new(), history);
        let mut out = String::new();
        let mut w = XmlDataWriter::new(structure, generic);
        w.begin("MSG", 0, &mut out);
        for r in rows {
            w.row(r, &mut out).expect("known dimensions");
        }
        w.finish(&mut out);
        out
    }

    #[test]
    fn one_data_set_per_provider_in_the_view_in_force() {
        use ObservationAction::{Append, Replace};
        let rows = [
            row("colombo", 3, Append, "LKA"),
            row("colombo", 5, Replace, "IND"),
            row("abu-dhabi", 4, Append, "LKA"),
        ];
        let ss = write(false, false, &rows);
        assert_eq!(ss.matches("<message:DataSet ").count(), 2, "{ss}");
        assert!(ss.contains("ss:setID=\"colombo\""), "{ss}");
        assert!(ss.contains("ss:setID=\"abu-dhabi\""), "{ss}");
        assert!(ss.contains("ss:action=\"Information\""), "{ss}");
        assert!(
            ss.contains(
                "<Obs REF_AREA=\"LKA\" TIME_PERIOD=\"2023\" OBS_VALUE=\"6.5\" OBS_STATUS=\"A\""
            ),
            "{ss}"
        );
        assert!(
            ss.contains("COMMENT_OBS=\"a &lt;note&gt; &amp; more\""),
            "{ss}"
        );
        assert!(ss.ends_with("</message:DataSet></message:StructureSpecificData>\n"));
        let generic = write(true, false, &rows);
        assert_eq!(generic.matches("<message:DataSet ").count(), 2);
        assert!(generic.contains(
            "<generic:Obs><generic:ObsKey><generic:Value id=\"REF_AREA\" value=\"LKA\"/><generic:Value id=\"TIME_PERIOD\" value=\"2023\"/></generic:ObsKey><generic:ObsValue value=\"6.5\"/>"
        ), "{generic}");
    }

    #[test]
    fn history_data_sets_are_cut_per_statement_and_action() {
        use ObservationAction::{Append, Delete, Replace};
        let rows = [
            row("colombo", 3, Append, "LKA"),
            row("colombo", 3, Append, "IND"),
            row("colombo", 5, Replace, "LKA"),
            row("colombo", 5, Delete, "IND"),
            // The same key twice in one statement: a data set never holds a key twice.
            row("colombo", 5, Delete, "IND"),
        ];
        let ss = write(false, true, &rows);
        let actions: Vec<&str> = ss
            .match_indices("ss:action=\"")
            .map(|(i, m)| {
                let rest = &ss[i + m.len()..];
                &rest[..rest.find('"').unwrap_or(0)]
            })
            .collect();
        assert_eq!(actions, ["Replace", "Replace", "Delete", "Delete"], "{ss}");
        assert!(
            ss.contains("ss:validToDate=\"2023-11-14T22:13:20Z\""),
            "{ss}"
        );
        assert!(
            ss.contains("<Obs REF_AREA=\"IND\" TIME_PERIOD=\"2023\"/>"),
            "a deletion is its key only: {ss}"
        );
    }
}
