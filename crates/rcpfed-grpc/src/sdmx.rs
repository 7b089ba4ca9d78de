//! SDMX data messages written from observation rows: SDMX-CSV 2.0 and SDMX-JSON 2.0 (and 1.0,
//! the SDMX 2.1 version the REST API also serves).
//!
//! The writers are pure (no store, no I/O) so the exact bytes are unit-tested here; the
//! service only pages through the store and forwards the text in pieces.
//!
//! The data structure follows the indicator catalogue, which is modelled on SDMX data
//! structure definitions:
//! * dimensions: `REF_AREA`, the indicator's disaggregations in catalogue order (then any
//!   other dimension found in the data, sorted by id), `TIME_PERIOD` last, as SDMX orders the
//!   time dimension;
//! * measure: `OBS_VALUE`;
//! * observation attributes: `OBS_STATUS`, `CONF_STATUS`, `UNIT_MEASURE`, `UNIT_MULT`,
//!   `COMMENT_OBS` (the footnote) and `SOURCE_DETAIL` (the source), SDMX cross-domain ids.
//!
//! An SDMX key names every dimension, so an optional disaggregation an observation leaves out
//! is written as the catalogue's default code for it (usually `_T`, the total), or `_Z` (SDMX
//! "not applicable") when the catalogue gives none.
//!
//! Observations of different publishing nodes may share a key: they are the conflicts the
//! coherence report lists. SDMX-CSV keeps one row per version with custom provenance columns;
//! SDMX-JSON puts each statement's observations in a data set of their own, annotated with
//! their provenance, so no data set repeats a key.

use rcpfed_core::dates::parse_time_period;
use rcpfed_core::statement::{Observation, ObservationAction};
use rcpfed_proto::v1;
use rcpfed_store::{ObservationProvenance, ObservationRow};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::{DefaultHasher, Hash as _, Hasher as _};

/// Media type of SDMX-CSV 2.0 data messages.
pub const CSV_MEDIA_TYPE: &str = "application/vnd.sdmx.data+csv;version=2.0.0";
/// Media type of SDMX-JSON 2.0 data messages.
pub const JSON_MEDIA_TYPE: &str = "application/vnd.sdmx.data+json;version=2.0.0";
/// Media type of SDMX-JSON 1.0 data messages (the SDMX-JSON of SDMX 2.1 and SDMX REST 1.5.0).
pub const JSON_1_MEDIA_TYPE: &str = "application/vnd.sdmx.data+json;version=1.0.0";
/// The SDMX-JSON 2.0.0 data message schema, named in `meta.schema` so readers can validate.
pub const JSON_SCHEMA_URL: &str = "https://raw.githubusercontent.com/sdmx-twg/sdmx-json/master/data-message/tools/schemas/2.0.0/sdmx-json-data-schema.json";
/// Code written for an absent dimension the catalogue gives no default for.
pub const NOT_APPLICABLE: &str = "_Z";
/// Version written when there is no catalogue to take it from.
pub const DEFAULT_VERSION: &str = "1.0.0";

const REF_AREA: &str = "REF_AREA";
const TIME_PERIOD: &str = "TIME_PERIOD";
const OBS_VALUE: &str = "OBS_VALUE";

/// Observation attributes, in column (and SDMX-JSON array) order.
const ATTRIBUTES: [(&str, &str); 6] = [
    ("OBS_STATUS", "Observation status"),
    ("CONF_STATUS", "Confidentiality status"),
    ("UNIT_MEASURE", "Unit of measure"),
    ("UNIT_MULT", "Unit multiplier"),
    ("COMMENT_OBS", "Observation comment"),
    ("SOURCE_DETAIL", "Source details"),
];
/// Which attributes are coded (written with `id` and `name` in SDMX-JSON); the others are
/// free text (written as `value`).
const ATTRIBUTE_CODED: [bool; 6] = [true, true, false, true, false, false];

/// Custom SDMX-CSV columns (allowed by SDMX-CSV 2.0) carrying each row's provenance.
const PROVENANCE_COLUMNS: [&str; 6] = [
    "PROVIDER",
    "STATEMENT_DIGEST",
    "FEED_INDEX",
    "POSITION",
    "ACCEPTED_AT",
    "SUPERSEDED_AT",
];

/// Why a row cannot be written under the structure chosen before the first row.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SdmxError {
    /// The row has a dimension the header (or the SDMX-JSON key layout) does not list: the
    /// data changed between the structure pass and the data pass.
    #[error(
        "the observation at feed index {feed_index}, position {position} has dimension {id}, \
         which this export's structure does not list"
    )]
    UnknownDimension {
        /// The dimension id.
        id: String,
        /// The row's feed index.
        feed_index: u64,
        /// The row's position in its snapshot.
        position: u64,
    },
}

/// One disaggregation dimension (or REF_AREA) of the exported structure.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SdmxDimension {
    /// Dimension id.
    pub id: String,
    /// Name in plain words.
    pub name: String,
    /// The code an absent value stands for; None when the catalogue gives none.
    pub default_code: Option<String>,
    /// Code names from the catalogue codelist; a code without one is named by its id.
    pub code_names: HashMap<String, String>,
}

/// The structure of one export: which dataflow, which columns, and whether rows carry
/// revision actions.
#[derive(Clone, Debug, PartialEq)]
pub struct SdmxStructure {
    /// Maintenance agency of the dataflow (the catalogue's agency).
    pub agency: String,
    /// Dataflow id: the indicator code.
    pub indicator: String,
    /// Dataflow version (the catalogue's content version).
    pub version: String,
    /// The indicator's name.
    pub name: String,
    /// REF_AREA.
    pub ref_area: SdmxDimension,
    /// The disaggregations, in key order (between REF_AREA and TIME_PERIOD).
    pub disaggregations: Vec<SdmxDimension>,
    /// OBS_STATUS code names.
    pub obs_status_names: HashMap<String, String>,
    /// CONF_STATUS code names.
    pub conf_status_names: HashMap<String, String>,
    /// True when the query asked for history or for changes (`include_history` or
    /// `updated_after`): versions are then written as replacements (R) and tombstones as
    /// deletions (D), as SDMX recommends for such queries; otherwise as information (I).
    pub history: bool,
}

/// What an SDMX row or data set does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SdmxAction {
    /// A value in force.
    Information,
    /// A version that adds or replaces the key's value (history and change queries).
    Replace,
    /// A tombstone: the key's value was deleted.
    Delete,
}

impl SdmxAction {
    /// The SDMX action for a stored version.
    pub fn of(action: ObservationAction, history: bool) -> Self {
        match action {
            ObservationAction::Delete => SdmxAction::Delete,
            _ if history => SdmxAction::Replace,
            _ => SdmxAction::Information,
        }
    }

    /// The SDMX-CSV `ACTION` code.
    pub fn csv_code(self) -> &'static str {
        match self {
            SdmxAction::Information => "I",
            SdmxAction::Replace => "R",
            SdmxAction::Delete => "D",
        }
    }

    /// The SDMX-JSON data set `action`.
    pub fn json_name(self) -> &'static str {
        match self {
            SdmxAction::Information => "Information",
            SdmxAction::Replace => "Replace",
            SdmxAction::Delete => "Delete",
        }
    }
}

/// Whether `s` can be an SDMX code or party id (`[A-Za-z0-9_@$-]+`).
pub fn is_sdmx_code(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'@' | b'$' | b'-'))
}

/// `s` with every character SDMX ids do not allow replaced by `_` ("RCPFED" when empty).
pub fn sdmx_id(s: &str) -> String {
    if s.is_empty() {
        return "RCPFED".to_string();
    }
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '@' | '$' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Unix milliseconds as an RFC 3339 UTC timestamp (empty when out of range).
pub fn rfc3339_ms(ms: i64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// An observation value as text: the shortest form that reads back to the same double.
fn number(value: f64) -> String {
    if value.is_finite() {
        format!("{value}")
    } else {
        String::new()
    }
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

/// SDMX CL_UNIT_MULT names of the powers of ten the catalogue uses.
fn unit_mult_name(code: &str) -> Option<&'static str> {
    Some(match code {
        "0" => "Units",
        "3" => "Thousands",
        "6" => "Millions",
        "9" => "Billions",
        "12" => "Trillions",
        _ => return None,
    })
}

impl SdmxStructure {
    /// The structure for `indicator`, from the catalogue when there is one.
    ///
    /// `found_dimensions` are the dimension ids the selected rows use (collected before the
    /// first row is written); those the catalogue does not list for the indicator follow its
    /// own, sorted. Without a catalogue the agency is `fallback_agency` and the version
    /// [`DEFAULT_VERSION`].
    pub fn new(
        indicator: &str,
        catalogue: Option<&v1::CatalogueDocument>,
        fallback_agency: &str,
        found_dimensions: &BTreeSet<String>,
        history: bool,
    ) -> Self {
        let concept = |id: &str| {
            catalogue.and_then(|c| {
                c.dimensions
                    .iter()
                    .chain(c.attributes.iter())
                    .find(|d| d.id == id)
            })
        };
        let code_names = |concept_id: &str| -> HashMap<String, String> {
            let Some(codelist) = concept(concept_id).map(|c| c.codelist.as_str()) else {
                return HashMap::new();
            };
            catalogue
                .and_then(|c| c.codelists.iter().find(|l| l.id == codelist))
                .map(|l| {
                    l.codes
                        .iter()
                        .filter(|code| !code.name.is_empty())
                        .map(|code| (code.id.clone(), code.name.clone()))
                        .collect()
                })
                .unwrap_or_default()
        };
        let dimension = |id: &str, default_code: Option<String>| SdmxDimension {
            id: id.to_string(),
            name: concept(id)
                .and_then(|c| non_empty(&c.name))
                .unwrap_or_else(|| id.to_string()),
            default_code,
            code_names: code_names(id),
        };
        let definition = catalogue.and_then(|c| c.indicators.iter().find(|i| i.code == indicator));
        let mut disaggregations: Vec<SdmxDimension> = Vec::new();
        let mut listed: HashSet<&str> = HashSet::new();
        let declared = definition.map(|d| d.dimensions.as_slice()).unwrap_or(&[]);
        for d in declared {
            if d.id == REF_AREA || d.id == TIME_PERIOD || !listed.insert(d.id.as_str()) {
                continue;
            }
            disaggregations.push(dimension(&d.id, non_empty(&d.default_code)));
        }
        for id in found_dimensions {
            if id == REF_AREA || id == TIME_PERIOD || listed.contains(id.as_str()) {
                continue;
            }
            disaggregations.push(dimension(id, None));
        }
        let mut ref_area = dimension(REF_AREA, None);
        if ref_area.name == REF_AREA {
            ref_area.name = "Reference area".to_string();
        }
        SdmxStructure {
            agency: sdmx_id(
                &catalogue
                    .and_then(|c| non_empty(&c.agency))
                    .unwrap_or_else(|| fallback_agency.to_string()),
            ),
            indicator: indicator.to_string(),
            version: catalogue
                .and_then(|c| non_empty(&c.catalogue_version))
                .unwrap_or_else(|| DEFAULT_VERSION.to_string()),
            name: definition
                .and_then(|d| non_empty(&d.name))
                .unwrap_or_else(|| indicator.to_string()),
            ref_area,
            disaggregations,
            obs_status_names: code_names("OBS_STATUS"),
            conf_status_names: code_names("CONF_STATUS"),
            history,
        }
    }

    /// `AGENCY:DATAFLOW(VERSION)`, the SDMX-CSV `STRUCTURE_ID`.
    pub fn structure_id(&self) -> String {
        format!("{}:{}({})", self.agency, self.indicator, self.version)
    }

    /// The dataflow's SDMX URN.
    pub fn dataflow_urn(&self) -> String {
        format!(
            "urn:sdmx:org.sdmx.infomodel.datastructure.Dataflow={}",
            self.structure_id()
        )
    }

    /// Refuses a row with a dimension the structure does not list.
    pub(crate) fn check_dimensions(
        &self,
        obs: &Observation,
        provenance: &ObservationProvenance,
    ) -> Result<(), SdmxError> {
        for (id, _) in &obs.dimensions {
            if id != REF_AREA
                && id != TIME_PERIOD
                && !self.disaggregations.iter().any(|d| &d.id == id)
            {
                return Err(SdmxError::UnknownDimension {
                    id: id.clone(),
                    feed_index: provenance.feed_index,
                    position: provenance.position,
                });
            }
        }
        Ok(())
    }
}

/// The value of disaggregation `dim` in `obs`: as given, else the default code, else `_Z`.
fn dimension_value<'a>(dim: &'a SdmxDimension, obs: &'a Observation) -> &'a str {
    obs.dimensions
        .iter()
        .find(|(id, _)| id == &dim.id)
        .map(|(_, value)| value.as_str())
        .or(dim.default_code.as_deref())
        .unwrap_or(NOT_APPLICABLE)
}

/// The six attribute values of an observation, in [`ATTRIBUTES`] order ("" when absent).
fn attribute_values(obs: &Observation) -> [String; 6] {
    [
        obs.obs_status.clone(),
        obs.conf_status.clone(),
        obs.unit_measure.clone(),
        obs.unit_mult.to_string(),
        obs.footnote.clone(),
        obs.source.clone(),
    ]
}

// ---------------------------------------------------------------------------------------
// SDMX-CSV 2.0
// ---------------------------------------------------------------------------------------

/// Appends one RFC 4180 field: quoted (with inner quotes doubled) when it holds a comma, a
/// quote or a line break.
pub fn csv_field(value: &str, out: &mut String) {
    if value.contains([',', '"', '\r', '\n']) {
        out.push('"');
        out.push_str(&value.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(value);
    }
}

fn csv_line<'a>(fields: impl IntoIterator<Item = &'a str>, out: &mut String) {
    for (i, field) in fields.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        csv_field(field, out);
    }
    out.push_str("\r\n");
}

/// The SDMX-CSV 2.0 header line: `STRUCTURE,STRUCTURE_ID,ACTION`, the dimensions in key
/// order, `OBS_VALUE`, the attributes, then the custom provenance columns.
pub fn csv_header(structure: &SdmxStructure, out: &mut String) {
    let mut columns: Vec<&str> = vec!["STRUCTURE", "STRUCTURE_ID", "ACTION", REF_AREA];
    columns.extend(structure.disaggregations.iter().map(|d| d.id.as_str()));
    columns.push(TIME_PERIOD);
    columns.push(OBS_VALUE);
    columns.extend(ATTRIBUTES.iter().map(|(id, _)| *id));
    columns.extend(PROVENANCE_COLUMNS);
    csv_line(columns, out);
}

/// One SDMX-CSV 2.0 line for a stored version. A deletion carries only its key (and its
/// provenance): in SDMX-CSV a `D` row with values would delete only those values.
pub fn csv_row(
    structure: &SdmxStructure,
    row: &ObservationRow,
    out: &mut String,
) -> Result<(), SdmxError> {
    let obs = &row.observation;
    let p = &row.provenance;
    structure.check_dimensions(obs, p)?;
    let action = SdmxAction::of(obs.action, structure.history);
    let structure_id = structure.structure_id();
    let mut fields: Vec<String> = Vec::with_capacity(32);
    fields.push("dataflow".to_string());
    fields.push(structure_id);
    fields.push(action.csv_code().to_string());
    fields.push(obs.ref_area.clone());
    for dim in &structure.disaggregations {
        fields.push(dimension_value(dim, obs).to_string());
    }
    fields.push(obs.time_period.clone());
    if action == SdmxAction::Delete {
        fields.extend(std::iter::repeat_n(String::new(), 1 + ATTRIBUTES.len()));
    } else {
        fields.push(obs.obs_value.map(number).unwrap_or_default());
        fields.extend(attribute_values(obs));
    }
    fields.push(p.node_id.clone());
    fields.push(p.digest.to_hex());
    fields.push(p.feed_index.to_string());
    fields.push(p.position.to_string());
    fields.push(rfc3339_ms(p.accepted_at_ms));
    fields.push(row.superseded_at_ms.map(rfc3339_ms).unwrap_or_default());
    csv_line(fields.iter().map(String::as_str), out);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// SDMX-JSON 2.0
// ---------------------------------------------------------------------------------------

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
        out.push_str(if self.version_1 {
            "}],\"dimensions\":{\"dataSet\":[],\"series\":[],\"observation\":["
        } else {
            "}],\"dimensions\":{\"observation\":["
        });

        // Dimensions in key order; one without values (no rows at all) is left out, since
        // SDMX-JSON requires at least one value per dimension.
        let last = self.dims.len() - 1;
        let mut first = true;
        for (i, list) in self.dims.iter().enumerate() {
            if list.values.is_empty() {
                continue;
            }
            if !first {
                out.push(',');
            }
            first = false;
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
        if self.version_1 {
            out.push_str("]},\"attributes\":{\"dataSet\":[],\"series\":[],\"observation\":[");
        } else {
            out.push_str("]},\"measures\":{\"observation\":[{\"id\":\"OBS_VALUE\",\"name\":\"Observation value\",\"roles\":[\"OBS_VALUE\"]}]}");
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
                out.push_str(",\"values\":[");
                for (j, value) in list.values.iter().enumerate() {
                    if j > 0 {
                        out.push(',');
                    }
                    let code_name = match *id {
                        "OBS_STATUS" => s.obs_status_names.get(value).map(String::as_str),
                        "CONF_STATUS" => s.conf_status_names.get(value).map(String::as_str),
                        "UNIT_MULT" => unit_mult_name(value),
                        _ => None,
                    };
                    if ATTRIBUTE_CODED[i] {
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
            out.push('}');
        }
        out.push_str("]}");

        if !self.annotations.is_empty() {
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
        out.push_str(if self.version_1 { "}}" } else { "}]}}" });
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
    use rcpfed_core::Digest;

    fn obs(
        action: ObservationAction,
        area: &str,
        period: &str,
        dims: &[(&str, &str)],
    ) -> Observation {
        Observation {
            action,
            ref_area: area.into(),
            time_period: period.into(),
            dimensions: dims
                .iter()
                .map(|(i, v)| ((*i).to_string(), (*v).to_string()))
                .collect(),
            obs_value: (action != ObservationAction::Delete).then_some(12.5),
            obs_status: "A".into(),
            unit_measure: "persons".into(),
            unit_mult: 3,
            conf_status: String::new(),
            footnote: "say \"hi\", twice".into(),
            source: "IOM".into(),
        }
    }

    fn row(node: &str, feed_index: u64, position: u64, o: Observation) -> ObservationRow {
        ObservationRow {
            indicator: "SDG_10_7_3".into(),
            observation: o,
            provenance: ObservationProvenance {
                node_id: node.into(),
                digest: Digest::of(node.as_bytes()),
                document: "doc".into(),
                revision: 1,
                feed_index,
                position,
                accepted_at_ms: 1_714_564_800_000,
            },
            superseded_at_ms: None,
        }
    }

    fn catalogue() -> v1::CatalogueDocument {
        v1::CatalogueDocument {
            agency: "GFMD".into(),
            catalogue_version: "1.2.0".into(),
            dimensions: vec![
                v1::ConceptDefinition {
                    id: "REF_AREA".into(),
                    name: "Reference area".into(),
                    codelist: "CL_AREA".into(),
                },
                v1::ConceptDefinition {
                    id: "SEX".into(),
                    name: "Sex".into(),
                    codelist: "CL_SEX".into(),
                },
                v1::ConceptDefinition {
                    id: "AGE".into(),
                    name: "Age".into(),
                    codelist: "CL_AGE".into(),
                },
            ],
            attributes: vec![v1::ConceptDefinition {
                id: "OBS_STATUS".into(),
                name: "Observation status".into(),
                codelist: "CL_OBS_STATUS".into(),
            }],
            codelists: vec![
                v1::CodelistDefinition {
                    id: "CL_SEX".into(),
                    codes: vec![v1::CodeDefinition {
                        id: "F".into(),
                        name: "Female".into(),
                    }],
                    ..Default::default()
                },
                v1::CodelistDefinition {
                    id: "CL_OBS_STATUS".into(),
                    codes: vec![v1::CodeDefinition {
                        id: "A".into(),
                        name: "Normal value".into(),
                    }],
                    ..Default::default()
                },
            ],
            indicators: vec![v1::IndicatorDefinition {
                code: "SDG_10_7_3".into(),
                name: "Migrant deaths".into(),
                dimensions: vec![
                    v1::IndicatorDimension {
                        id: "SEX".into(),
                        required: false,
                        default_code: "_T".into(),
                    },
                    v1::IndicatorDimension {
                        id: "AGE".into(),
                        required: false,
                        default_code: "_T".into(),
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn structure(history: bool, found: &[&str]) -> SdmxStructure {
        let found: BTreeSet<String> = found.iter().map(|s| (*s).to_string()).collect();
        SdmxStructure::new("SDG_10_7_3", Some(&catalogue()), "hub", &found, history)
    }

    #[test]
    fn structure_follows_the_catalogue_then_found_dimensions() {
        let s = structure(false, &["ZED", "SEX", "MIGRANT_STATUS"]);
        let ids: Vec<&str> = s.disaggregations.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, ["SEX", "AGE", "MIGRANT_STATUS", "ZED"]);
        assert_eq!(s.structure_id(), "GFMD:SDG_10_7_3(1.2.0)");
        assert_eq!(s.name, "Migrant deaths");
        assert_eq!(s.disaggregations[0].default_code.as_deref(), Some("_T"));
        assert_eq!(s.disaggregations[2].default_code, None);

        let bare = SdmxStructure::new("X_1", None, "gfmd-hub", &BTreeSet::new(), false);
        assert_eq!(bare.structure_id(), "gfmd-hub:X_1(1.0.0)");
        assert!(bare.disaggregations.is_empty());
    }

    #[test]
    fn csv_quotes_only_when_needed() {
        let mut out = String::new();
        for f in ["plain", "a,b", "say \"hi\"", "two\nlines", "cr\r", ""] {
            csv_field(f, &mut out);
            out.push('|');
        }
        assert_eq!(
            out,
            "plain|\"a,b\"|\"say \"\"hi\"\"\"|\"two\nlines\"|\"cr\r\"||"
        );
    }

    #[test]
    fn csv_header_and_rows() {
        let s = structure(false, &["SEX"]);
        let mut out = String::new();
        csv_header(&s, &mut out);
        csv_row(
            &s,
            &row(
                "node-a",
                7,
                0,
                obs(ObservationAction::Append, "FRA", "2024", &[("SEX", "F")]),
            ),
            &mut out,
        )
        .expect("row");
        let lines: Vec<&str> = out.split("\r\n").collect();
        assert_eq!(
            lines[0],
            "STRUCTURE,STRUCTURE_ID,ACTION,REF_AREA,SEX,AGE,TIME_PERIOD,OBS_VALUE,OBS_STATUS,\
             CONF_STATUS,UNIT_MEASURE,UNIT_MULT,COMMENT_OBS,SOURCE_DETAIL,PROVIDER,\
             STATEMENT_DIGEST,FEED_INDEX,POSITION,ACCEPTED_AT,SUPERSEDED_AT"
        );
        assert_eq!(
            lines[1],
            format!(
                "dataflow,GFMD:SDG_10_7_3(1.2.0),I,FRA,F,_T,2024,12.5,A,,persons,3,\
                 \"say \"\"hi\"\", twice\",IOM,node-a,{},7,0,2024-05-01T12:00:00Z,",
                Digest::of(b"node-a").to_hex()
            )
        );
        assert_eq!(lines[2], "");
    }

    #[test]
    fn csv_history_actions() {
        let s = structure(true, &[]);
        let mut superseded = row(
            "node-a",
            3,
            1,
            obs(ObservationAction::Append, "FRA", "2023", &[]),
        );
        superseded.superseded_at_ms = Some(1_714_564_800_500);
        let replace = row(
            "node-a",
            4,
            0,
            obs(ObservationAction::Replace, "FRA", "2023", &[]),
        );
        let delete = row(
            "node-a",
            5,
            0,
            obs(ObservationAction::Delete, "FRA", "2023", &[]),
        );
        let mut out = String::new();
        for r in [&superseded, &replace, &delete] {
            csv_row(&s, r, &mut out).expect("row");
        }
        let lines: Vec<Vec<&str>> = out
            .split("\r\n")
            .filter(|l| !l.is_empty())
            .map(|l| l.split(',').collect())
            .collect();
        assert_eq!(lines[0][2], "R");
        // The footnote holds a quoted comma; the last column is SUPERSEDED_AT.
        assert_eq!(lines[0].last(), Some(&"2024-05-01T12:00:00.5Z"));
        assert_eq!(lines[1][2], "R");
        assert_eq!(lines[2][2], "D");
        // A deletion carries its key and provenance, no value and no attributes.
        assert_eq!(&lines[2][3..7], ["FRA", "_T", "_T", "2023"]);
        assert!(
            lines[2][7..14].iter().all(|f| f.is_empty()),
            "{:?}",
            lines[2]
        );
        assert_eq!(lines[2][14], "node-a");

        // Without history, a version in force is information.
        let current = structure(false, &[]);
        let mut out = String::new();
        csv_row(&current, &replace, &mut out).expect("row");
        assert!(
            out.starts_with("dataflow,GFMD:SDG_10_7_3(1.2.0),I,"),
            "{out}"
        );
    }

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
    fn json_without_rows_is_valid() {
        let m = json_message(structure(false, &[]), &[]);
        assert_eq!(m["data"]["dataSets"], serde_json::json!([]));
        assert!(m["data"]["structures"][0].get("dataSets").is_none());
        assert_eq!(
            m["data"]["structures"][0]["dimensions"]["observation"],
            serde_json::json!([])
        );
    }

    #[test]
    fn ids_and_timestamps() {
        assert!(is_sdmx_code("Y15T64"));
        assert!(is_sdmx_code("2024-Q3"));
        assert!(!is_sdmx_code("current USD"));
        assert!(!is_sdmx_code(""));
        assert_eq!(sdmx_id("gfmd hub/x"), "gfmd_hub_x");
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_ms(1_500), "1970-01-01T00:00:01.5Z");
        assert_eq!(number(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(number(1e21), "1000000000000000000000");
    }
}
