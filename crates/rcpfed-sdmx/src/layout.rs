//! The layout of the SDMX data messages written from observation rows (SDMX-CSV 2.0, SDMX-JSON
//! 2.0 and 1.0, SDMX-ML 2.1): which dataflow, which dimensions in which order, which
//! attributes, which action; and the id and timestamp forms every writer uses.
//!
//! The writers are pure (no store, no I/O) so the exact bytes are unit-tested in this crate;
//! the gRPC export and the REST API only page through the store and forward the text in
//! pieces.
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

use rcpfed_core::statement::{Observation, ObservationAction};
use rcpfed_core::versions::ObservationProvenance;
use rcpfed_proto::v1;
use std::collections::{BTreeSet, HashMap, HashSet};

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

pub(crate) const REF_AREA: &str = "REF_AREA";
pub(crate) const TIME_PERIOD: &str = "TIME_PERIOD";
pub(crate) const OBS_VALUE: &str = "OBS_VALUE";

/// Observation attributes, in column (and SDMX-JSON array) order.
pub(crate) const ATTRIBUTES: [(&str, &str); 6] = [
    ("OBS_STATUS", "Observation status"),
    ("CONF_STATUS", "Confidentiality status"),
    ("UNIT_MEASURE", "Unit of measure"),
    ("UNIT_MULT", "Unit multiplier"),
    ("COMMENT_OBS", "Observation comment"),
    ("SOURCE_DETAIL", "Source details"),
];
/// Which attributes are coded (written with `id` and `name` in SDMX-JSON); the others are
/// free text (written as `value`).
pub(crate) const ATTRIBUTE_CODED: [bool; 6] = [true, true, false, true, false, false];

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
pub(crate) fn number(value: f64) -> String {
    if value.is_finite() {
        format!("{value}")
    } else {
        String::new()
    }
}

pub(crate) fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

/// SDMX CL_UNIT_MULT names of the powers of ten the catalogue uses.
pub(crate) fn unit_mult_name(code: &str) -> Option<&'static str> {
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
    pub fn check_dimensions(
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
pub fn dimension_value<'a>(dim: &'a SdmxDimension, obs: &'a Observation) -> &'a str {
    obs.dimensions
        .iter()
        .find(|(id, _)| id == &dim.id)
        .map(|(_, value)| value.as_str())
        .or(dim.default_code.as_deref())
        .unwrap_or(NOT_APPLICABLE)
}

/// The six attribute values of an observation, in [`ATTRIBUTES`] order ("" when absent).
pub(crate) fn attribute_values(obs: &Observation) -> [String; 6] {
    [
        obs.obs_status.clone(),
        obs.conf_status.clone(),
        obs.unit_measure.clone(),
        obs.unit_mult.to_string(),
        obs.footnote.clone(),
        obs.source.clone(),
    ]
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::test_support::catalogue;

    /// The writers' test structure: the test catalogue's SDG_10_7_3 with the dimensions
    /// `found` in the data.
    pub(crate) fn structure(history: bool, found: &[&str]) -> SdmxStructure {
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
