//! The indicator catalogue, modelled on SDMX data structure definitions, and the check of an
//! indicator snapshot against it.
//!
//! The shipped catalogue is `data/catalogue/catalogue.toml` ([`embedded_catalogue_toml`]); its
//! format is described in `data/catalogue/README.md`. [`Catalogue::from_toml`] parses it and
//! checks that it is consistent (every codelist it names exists, defaults are codes of their
//! codelist, ranges are ordered and name units of their indicator, …).
//!
//! The hub issues the catalogue as a chain of versions, like the registry: each version is a
//! `rcpfed.v1.CatalogueDocument` ([`Catalogue::to_document`]) signed by the hub member's
//! statement signing key ([`sign_catalogue`]) and logged in the feed. [`verify_catalogue`]
//! checks a version against the previous one (signature first, then federation, version + 1,
//! previous digest, content), so a node cannot be given an older, forked or forged catalogue.
//!
//! What [`validate_snapshot`] and [`validate_observations_against`] check, per observation,
//! naming the row and the column (`indicator_snapshot.observations[i].<column>`):
//! - the indicator is in the catalogue (otherwise nothing else is checked);
//! - REF_AREA and TIME_PERIOD are present; REF_AREA is in the area codelist (ISO 3166-1
//!   alpha-3 or a named aggregate such as `WLD`). Any publisher may report an aggregate
//!   (`WLD`, `LMC_AGG`): they are custodian figures the processes cite, not member states;
//! - TIME_PERIOD's frequency (from its format) is allowed for the indicator, and all
//!   observations of one snapshot have the same frequency;
//! - every disaggregation is one of the indicator's dimensions with a code from its codelist,
//!   and every required dimension is present;
//! - OBS_STATUS and CONF_STATUS, when given, are codes of their codelists;
//! - for appends and replaces: UNIT_MEASURE and UNIT_MULT are allowed for the indicator, and
//!   OBS_VALUE × 10^UNIT_MULT lies within the plausible ranges. A range of severity `error`
//!   gives an error; one of severity `warning` gives a warning (reported, not refused).
//!   Deletes (tombstones) name a key only, so units and ranges are not checked for them.
//!
//! It does not repeat [`crate::validate`]'s rules (membership of a state in the publishing
//! RCP over the period, duplicate keys, finite values, …); both run on a snapshot. Give
//! [`crate::validate::ValidationContext::aggregates`] the catalogue's
//! [`Catalogue::area_aggregates`] so that those rules accept the aggregates too.

use crate::Digest;
use crate::dates::parse_time_period;
use crate::envelope::{SignedEnvelope, verify_signatures};
use crate::iso3166::is_alpha3;
use crate::keys::{SecretKey, VerifyKey};
use crate::members::Member;
use crate::rejection::{ProblemCount, RejectClass, Rejection, Violation, reasons};
use crate::statement::{IndicatorSnapshot, Observation, ObservationAction};
use crate::validate::{MAX_VIOLATIONS, is_indicator_code, obs_field};
use crate::wire::{timestamp_from_proto, timestamp_to_proto};
use prost::Message as _;
use rcpfed_proto::v1 as pb;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use time::OffsetDateTime;

/// The dimension every indicator has, with the area codelist.
pub const REF_AREA: &str = "REF_AREA";
/// The time dimension every indicator has (no codelist; its format gives the frequency).
pub const TIME_PERIOD: &str = "TIME_PERIOD";
/// The codelist of frequencies that indicators may name.
pub const FREQ_CODELIST: &str = "CL_FREQ";

/// An SDMX frequency, as read from a TIME_PERIOD's format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Frequency {
    /// `2024` (CL_FREQ `A`).
    Annual,
    /// `2024-S1` (CL_FREQ `S`).
    HalfYearly,
    /// `2024-Q3` (CL_FREQ `Q`).
    Quarterly,
    /// `2024-05` (CL_FREQ `M`).
    Monthly,
    /// `2024-05-17` (CL_FREQ `D`).
    Daily,
}

impl Frequency {
    /// Every frequency whose TIME_PERIOD format [`parse_time_period`] reads.
    pub const ALL: [Frequency; 5] = [
        Frequency::Annual,
        Frequency::HalfYearly,
        Frequency::Quarterly,
        Frequency::Monthly,
        Frequency::Daily,
    ];

    /// The SDMX CL_FREQ code.
    pub fn code(self) -> &'static str {
        match self {
            Frequency::Annual => "A",
            Frequency::HalfYearly => "S",
            Frequency::Quarterly => "Q",
            Frequency::Monthly => "M",
            Frequency::Daily => "D",
        }
    }

    /// From a CL_FREQ code this build understands.
    pub fn from_code(code: &str) -> Option<Frequency> {
        Frequency::ALL.into_iter().find(|f| f.code() == code)
    }

    /// A plain word for messages.
    pub fn word(self) -> &'static str {
        match self {
            Frequency::Annual => "annual",
            Frequency::HalfYearly => "half-yearly",
            Frequency::Quarterly => "quarterly",
            Frequency::Monthly => "monthly",
            Frequency::Daily => "daily",
        }
    }

    /// The frequency of a valid SDMX time period; `None` when `period` is not one.
    pub fn of_time_period(period: &str) -> Option<Frequency> {
        parse_time_period(period)?;
        Some(match period.len() {
            4 => Frequency::Annual,
            10 => Frequency::Daily,
            _ if period.contains("-S") => Frequency::HalfYearly,
            _ if period.contains("-Q") => Frequency::Quarterly,
            _ => Frequency::Monthly,
        })
    }
}

/// Catalogue identity.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogueInfo {
    /// Catalogue id, e.g. `RCPFED_MIGRATION`.
    pub id: String,
    /// Maintaining agency, e.g. `GFMD`.
    pub agency: String,
    /// Version, e.g. `1.0.0`.
    pub version: String,
    /// Name in plain words.
    #[serde(default)]
    pub name: String,
}

/// A dimension or attribute concept and the codelist its values come from.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Concept {
    /// Name in plain words.
    #[serde(default)]
    pub name: String,
    /// Id of the codelist in [`Catalogue::codelists`].
    pub codelist: String,
}

/// The coded observation attributes.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attributes {
    /// SDMX OBS_STATUS.
    #[serde(rename = "OBS_STATUS")]
    pub obs_status: Concept,
    /// SDMX CONF_STATUS.
    #[serde(rename = "CONF_STATUS")]
    pub conf_status: Concept,
}

/// A codelist: codes and their names.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Codelist {
    /// Name in plain words.
    #[serde(default)]
    pub name: String,
    /// Whether it is (a subset of) an official SDMX codelist; `false` for project codelists.
    pub official: bool,
    /// Whether every officially assigned ISO 3166-1 alpha-3 code is also a code.
    #[serde(default)]
    pub iso3166_alpha3: bool,
    /// Code → name (a name may be empty).
    #[serde(default)]
    pub codes: BTreeMap<String, String>,
    /// Codes that are aggregates (e.g. `WLD`), not ISO 3166-1 codes; each also in `codes`.
    #[serde(default)]
    pub aggregates: Vec<String>,
}

impl Codelist {
    /// Whether `code` is in this codelist.
    pub fn contains(&self, code: &str) -> bool {
        self.codes.contains_key(code) || (self.iso3166_alpha3 && is_alpha3(code))
    }

    /// Whether `code` is an aggregate.
    pub fn is_aggregate(&self, code: &str) -> bool {
        self.aggregates.iter().any(|a| a == code)
    }

    /// A short list of codes for messages.
    fn examples(&self) -> String {
        let mut list: Vec<String> = self
            .codes
            .keys()
            .take(8)
            .map(|c| format!("{c:?}"))
            .collect();
        if self.codes.len() > 8 {
            list.push("…".into());
        }
        if self.iso3166_alpha3 {
            list.insert(0, "an ISO 3166-1 alpha-3 code".into());
        }
        list.join(", ")
    }
}

/// A disaggregation dimension of one indicator.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndicatorDimension {
    /// Dimension id, a key of [`Catalogue::dimensions`].
    pub id: String,
    /// Whether every observation must give it.
    pub required: bool,
    /// What an absent optional dimension means (usually the total, `_T`).
    #[serde(default)]
    pub default: Option<String>,
}

/// Whether a range violation refuses the observation or is only reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Refuses the observation.
    Error,
    /// Reported, not refused.
    Warning,
}

/// A plausible range for OBS_VALUE × 10^UNIT_MULT.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Range {
    /// The unit it applies to; every unit of the indicator when absent.
    #[serde(default)]
    pub unit: Option<String>,
    /// Lowest plausible value (inclusive).
    #[serde(default)]
    pub min: Option<f64>,
    /// Highest plausible value (inclusive).
    #[serde(default)]
    pub max: Option<f64>,
    /// Error or warning.
    pub severity: Severity,
}

/// One indicator: an SDMX dataflow with its structure.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Indicator {
    /// Indicator code, e.g. `SDG_10_7_3`.
    pub code: String,
    /// SDG series code, e.g. `SM_DTH_MIGR`; empty when not known.
    #[serde(default)]
    pub sdg_series: String,
    /// Name.
    pub name: String,
    /// Custodian agency or agencies.
    pub custodian: String,
    /// Allowed UNIT_MEASURE values.
    pub units: Vec<String>,
    /// Allowed UNIT_MULT values.
    pub unit_mults: Vec<i32>,
    /// Allowed frequencies, CL_FREQ codes.
    pub frequencies: Vec<String>,
    /// Disaggregation dimensions (REF_AREA and TIME_PERIOD are implicit).
    #[serde(default)]
    pub dimensions: Vec<IndicatorDimension>,
    /// Plausible ranges.
    #[serde(default)]
    pub ranges: Vec<Range>,
}

impl Indicator {
    /// The disaggregation dimension `id`, if the indicator has it.
    pub fn dimension(&self, id: &str) -> Option<&IndicatorDimension> {
        self.dimensions.iter().find(|d| d.id == id)
    }

    /// Whether the indicator allows frequency `f`.
    pub fn allows(&self, f: Frequency) -> bool {
        self.frequencies.iter().any(|c| c == f.code())
    }
}

/// The indicator catalogue.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalogue {
    /// Identity and version.
    pub catalogue: CatalogueInfo,
    /// Dimension concepts by id; includes REF_AREA.
    pub dimensions: BTreeMap<String, Concept>,
    /// Coded attributes.
    pub attributes: Attributes,
    /// Codelists by id.
    pub codelists: BTreeMap<String, Codelist>,
    /// Indicators, in file order.
    pub indicators: Vec<Indicator>,
}

/// The result of [`validate_snapshot`]: errors refuse the snapshot, warnings are reported.
/// Each list keeps at most [`MAX_VIOLATIONS`] entries; the totals count all of them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CatalogueCheck {
    /// Violations that refuse the snapshot.
    pub errors: Vec<Violation>,
    /// Violations of warning-severity ranges.
    pub warnings: Vec<Violation>,
    /// Number of errors found (may exceed `errors.len()`).
    pub total_errors: usize,
    /// Number of warnings found (may exceed `warnings.len()`).
    pub total_warnings: usize,
}

impl CatalogueCheck {
    /// Whether no error was found (warnings allowed).
    pub fn is_ok(&self) -> bool {
        self.total_errors == 0
    }

    /// The warnings if there is no error; otherwise a rejection carrying the errors.
    pub fn into_result(self) -> Result<Vec<Violation>, Rejection> {
        match Rejection::from_violations(self.errors, ProblemCount::Exactly(self.total_errors)) {
            Some(rejection) => Err(rejection),
            None => Ok(self.warnings),
        }
    }

    /// Counts an error; `make` builds its (field, description) only while the list has
    /// room, so a million bad rows do not build a million messages.
    fn error(&mut self, reason: &'static str, make: impl FnOnce() -> (String, String)) {
        self.total_errors += 1;
        if self.errors.len() < MAX_VIOLATIONS {
            let (field, description) = make();
            self.errors.push(Violation::new(field, reason, description));
        }
    }

    /// Counts a warning, like [`CatalogueCheck::error`].
    fn warning(&mut self, reason: &'static str, make: impl FnOnce() -> (String, String)) {
        self.total_warnings += 1;
        if self.warnings.len() < MAX_VIOLATIONS {
            let (field, description) = make();
            self.warnings
                .push(Violation::new(field, reason, description));
        }
    }
}

/// Whether `id` is an SDMX-style id: a letter or `_`, then letters, digits, `_`, `@`, `$`, `-`.
fn is_code_id(id: &str) -> bool {
    id.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_@$-".contains(&b))
}

/// Whether `id` is a concept or codelist id: upper-case letter, then A-Z, 0-9, '_'.
fn is_concept_id(id: &str) -> bool {
    id.starts_with(|c: char| c.is_ascii_uppercase())
        && id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

impl Catalogue {
    /// Parses a catalogue from TOML and checks that it is consistent. Unknown keys are
    /// refused (PAYLOAD_MALFORMED, with the line); inconsistencies are refused together
    /// (CATALOGUE_INVALID with one violation each, as [`Catalogue::from_document`] does).
    pub fn from_toml(text: &str) -> Result<Catalogue, Rejection> {
        let cat: Catalogue = toml::from_str(text).map_err(|e| {
            Rejection::new(
                RejectClass::Invalid,
                reasons::PAYLOAD_MALFORMED,
                format!("the catalogue is not valid: {}", e.to_string().trim()),
            )
        })?;
        let v = cat.consistency();
        if v.is_empty() {
            Ok(cat)
        } else {
            Err(inconsistent(v))
        }
    }

    /// The indicator with `code`.
    pub fn indicator(&self, code: &str) -> Option<&Indicator> {
        self.indicators.iter().find(|i| i.code == code)
    }

    /// The REF_AREA codes that are aggregates (e.g. `WLD`): what
    /// [`ValidationContext::aggregates`](crate::validate::ValidationContext::aggregates) takes.
    pub fn area_aggregates(&self) -> &[String] {
        self.dimension_codelist(REF_AREA)
            .map_or(&[], |cl| cl.aggregates.as_slice())
    }

    /// The codelist of dimension `id`.
    pub fn dimension_codelist(&self, id: &str) -> Option<&Codelist> {
        self.codelists.get(&self.dimensions.get(id)?.codelist)
    }

    /// Every rule the catalogue itself must satisfy.
    fn consistency(&self) -> Vec<Violation> {
        let mut v = Vec::new();
        let mut push = |field: String, reason: &'static str, description: String| {
            v.push(Violation::new(field, reason, description));
        };
        let info = &self.catalogue;
        for (name, value) in [
            ("id", &info.id),
            ("agency", &info.agency),
            ("version", &info.version),
        ] {
            if value.trim().is_empty() {
                push(
                    format!("catalogue.{name}"),
                    reasons::FIELD_REQUIRED,
                    "must not be empty".into(),
                );
            }
        }

        // Codelists.
        for (id, cl) in &self.codelists {
            let f = format!("codelists.{id}");
            if !is_concept_id(id) {
                push(
                    f.clone(),
                    reasons::INVALID_DIMENSION,
                    format!("{id:?} is not a codelist id such as \"CL_SEX\""),
                );
            }
            if cl.codes.is_empty() && !cl.iso3166_alpha3 {
                push(
                    format!("{f}.codes"),
                    reasons::FIELD_REQUIRED,
                    "a codelist needs at least one code".into(),
                );
            }
            for code in cl.codes.keys() {
                if !is_code_id(code) {
                    push(
                        format!("{f}.codes.{code}"),
                        reasons::INVALID_DIMENSION,
                        format!(
                            "{code:?} is not a code id (a letter or '_', then letters, digits, '_', '@', '$', '-')"
                        ),
                    );
                }
            }
            for (k, a) in cl.aggregates.iter().enumerate() {
                if !cl.codes.contains_key(a) {
                    push(
                        format!("{f}.aggregates[{k}]"),
                        reasons::CODE_NOT_IN_CODELIST,
                        format!("aggregate {a:?} is not one of the codelist's codes"),
                    );
                } else if is_alpha3(a) {
                    push(
                        format!("{f}.aggregates[{k}]"),
                        reasons::CODE_NOT_IN_CODELIST,
                        format!("{a:?} is an ISO 3166-1 country code, not an aggregate"),
                    );
                }
            }
        }
        match self.codelists.get(FREQ_CODELIST) {
            None => push(
                format!("codelists.{FREQ_CODELIST}"),
                reasons::FIELD_REQUIRED,
                "the frequency codelist is required".into(),
            ),
            Some(cl) => {
                for code in cl.codes.keys() {
                    if Frequency::from_code(code).is_none() {
                        push(
                            format!("codelists.{FREQ_CODELIST}.codes.{code}"),
                            reasons::FREQUENCY_NOT_ALLOWED,
                            format!(
                                "frequency {code:?} has no TIME_PERIOD format this build reads (A, S, Q, M, D)"
                            ),
                        );
                    }
                }
            }
        }

        // Dimension and attribute concepts.
        if !self.dimensions.contains_key(REF_AREA) {
            push(
                format!("dimensions.{REF_AREA}"),
                reasons::MISSING_DIMENSION,
                "every catalogue defines REF_AREA and its codelist".into(),
            );
        }
        if self.dimensions.contains_key(TIME_PERIOD) {
            push(
                format!("dimensions.{TIME_PERIOD}"),
                reasons::INVALID_DIMENSION,
                "TIME_PERIOD is the time dimension: it has no codelist; indicators name their frequencies".into(),
            );
        }
        let concepts = self
            .dimensions
            .iter()
            .map(|(id, c)| (format!("dimensions.{id}"), id.as_str(), c))
            .chain([
                (
                    "attributes.OBS_STATUS".to_string(),
                    "OBS_STATUS",
                    &self.attributes.obs_status,
                ),
                (
                    "attributes.CONF_STATUS".to_string(),
                    "CONF_STATUS",
                    &self.attributes.conf_status,
                ),
            ]);
        for (f, id, c) in concepts {
            if !is_concept_id(id) {
                push(
                    f.clone(),
                    reasons::INVALID_DIMENSION,
                    format!("{id:?} is not a dimension id such as \"SEX\""),
                );
            }
            if !self.codelists.contains_key(&c.codelist) {
                push(
                    format!("{f}.codelist"),
                    reasons::INVALID_DIMENSION,
                    format!("names codelist {:?}, which is not defined", c.codelist),
                );
            }
        }

        // Indicators.
        let mut codes = BTreeSet::new();
        for (i, ind) in self.indicators.iter().enumerate() {
            let f = format!("indicators[{i}]");
            if !is_indicator_code(&ind.code) {
                push(
                    format!("{f}.code"),
                    reasons::INVALID_INDICATOR_CODE,
                    format!(
                        "{:?} is not an indicator code such as \"SDG_10_7_3\"",
                        ind.code
                    ),
                );
            } else if !codes.insert(ind.code.as_str()) {
                push(
                    format!("{f}.code"),
                    reasons::DUPLICATE_KEY,
                    format!("indicator {} is defined more than once", ind.code),
                );
            }
            if !ind.sdg_series.is_empty() && !is_concept_id(&ind.sdg_series) {
                push(
                    format!("{f}.sdg_series"),
                    reasons::INVALID_INDICATOR_CODE,
                    format!(
                        "{:?} is not an SDG series code such as \"SM_DTH_MIGR\"",
                        ind.sdg_series
                    ),
                );
            }
            for (name, value) in [("name", &ind.name), ("custodian", &ind.custodian)] {
                if value.trim().is_empty() {
                    push(
                        format!("{f}.{name}"),
                        reasons::FIELD_REQUIRED,
                        "must not be empty".into(),
                    );
                }
            }
            if ind.units.is_empty() || ind.units.iter().any(|u| u.trim().is_empty()) {
                push(
                    format!("{f}.units"),
                    reasons::FIELD_REQUIRED,
                    "needs at least one unit, none of them empty".into(),
                );
            }
            if ind.unit_mults.is_empty() {
                push(
                    format!("{f}.unit_mults"),
                    reasons::FIELD_REQUIRED,
                    "needs at least one UNIT_MULT value".into(),
                );
            }
            for (k, m) in ind.unit_mults.iter().enumerate() {
                if !(0..=12).contains(m) {
                    push(
                        format!("{f}.unit_mults[{k}]"),
                        reasons::INVALID_UNIT_MULT,
                        format!("{m} is not a power of ten from 0 to 12"),
                    );
                }
            }
            if ind.frequencies.is_empty() {
                push(
                    format!("{f}.frequencies"),
                    reasons::FIELD_REQUIRED,
                    "needs at least one frequency".into(),
                );
            }
            let freq_list = self.codelists.get(FREQ_CODELIST);
            for (k, code) in ind.frequencies.iter().enumerate() {
                if !freq_list.is_some_and(|cl| cl.contains(code)) {
                    push(
                        format!("{f}.frequencies[{k}]"),
                        reasons::FREQUENCY_NOT_ALLOWED,
                        format!("{code:?} is not a code of {FREQ_CODELIST}"),
                    );
                }
            }
            let mut dim_ids = BTreeSet::new();
            for (k, d) in ind.dimensions.iter().enumerate() {
                let df = format!("{f}.dimensions[{k}]");
                if d.id == REF_AREA || d.id == TIME_PERIOD {
                    push(
                        format!("{df}.id"),
                        reasons::INVALID_DIMENSION,
                        format!("{} is implicit: list only disaggregations", d.id),
                    );
                    continue;
                }
                if !dim_ids.insert(d.id.as_str()) {
                    push(
                        format!("{df}.id"),
                        reasons::INVALID_DIMENSION,
                        format!("{} is listed more than once", d.id),
                    );
                }
                if !self.dimensions.contains_key(&d.id) {
                    push(
                        format!("{df}.id"),
                        reasons::UNKNOWN_DIMENSION,
                        format!("{:?} is not defined under [dimensions]", d.id),
                    );
                }
                match (&d.default, d.required) {
                    (Some(_), true) => push(
                        format!("{df}.default"),
                        reasons::INVALID_DIMENSION,
                        "a required dimension has no default".into(),
                    ),
                    (Some(def), false) => {
                        if let Some(cl) = self.dimension_codelist(&d.id)
                            && !cl.contains(def)
                        {
                            push(
                                format!("{df}.default"),
                                reasons::CODE_NOT_IN_CODELIST,
                                format!("{def:?} is not a code of {}'s codelist", d.id),
                            );
                        }
                    }
                    _ => {}
                }
            }
            for (k, r) in ind.ranges.iter().enumerate() {
                let rf = format!("{f}.ranges[{k}]");
                if r.min.is_none() && r.max.is_none() {
                    push(
                        rf.clone(),
                        reasons::FIELD_REQUIRED,
                        "a range needs min, max or both".into(),
                    );
                }
                if r.min.is_some_and(|x| !x.is_finite()) || r.max.is_some_and(|x| !x.is_finite()) {
                    push(
                        rf.clone(),
                        reasons::NON_FINITE_VALUE,
                        "min and max must be finite numbers".into(),
                    );
                }
                if let (Some(lo), Some(hi)) = (r.min, r.max)
                    && lo > hi
                {
                    push(
                        rf.clone(),
                        reasons::VALUE_OUT_OF_RANGE,
                        format!("min {lo} is above max {hi}"),
                    );
                }
                if let Some(u) = &r.unit
                    && !ind.units.contains(u)
                {
                    push(
                        format!("{rf}.unit"),
                        reasons::UNIT_MISMATCH,
                        format!("{u:?} is not one of the indicator's units"),
                    );
                }
            }
        }
        v
    }
}

/// Payload type of an envelope carrying a `rcpfed.v1.CatalogueDocument`.
pub const CATALOGUE_PAYLOAD_TYPE: &str = "application/vnd.rcpfed.catalogue.v1+protobuf";

/// The shipped catalogue, `data/catalogue/catalogue.toml`: what the hub issues as version 1
/// when its operator gives no other file.
pub fn embedded_catalogue_toml() -> &'static str {
    include_str!("../../../data/catalogue/catalogue.toml")
}

/// A catalogue version whose hub signature, place in the chain and content have been checked
/// by [`verify_catalogue`].
#[derive(Clone, Debug, PartialEq)]
pub struct SignedCatalogue {
    /// Feed version: 1, 2, …
    pub version: u64,
    /// SHA-256 of the envelope's payload bytes: the next version's `previous_digest`.
    pub digest: Digest,
    /// When the hub issued it.
    pub issued_at: OffsetDateTime,
    /// The decoded document, as signed.
    pub document: pb::CatalogueDocument,
    /// The catalogue it carries, shared by the validators without copying.
    pub catalogue: Arc<Catalogue>,
    /// The envelope, for mirroring and re-serving.
    pub envelope: SignedEnvelope,
}

/// Field problems of a document, before any consistency rule can run.
#[derive(Default)]
struct Problems(Vec<Violation>);

impl Problems {
    fn add(&mut self, field: String, reason: &'static str, description: impl Into<String>) {
        self.0.push(Violation::new(field, reason, description));
    }
}

/// Refuses a catalogue with its violations (reason CATALOGUE_INVALID), the first in the
/// message; at most [`MAX_VIOLATIONS`] are attached.
fn inconsistent(mut v: Vec<Violation>) -> Rejection {
    let total = v.len();
    let mut message = match v.first() {
        Some(first) => format!(
            "the catalogue is not consistent: {}: {}",
            first.field, first.description
        ),
        None => "the catalogue is not consistent".to_string(),
    };
    if total > 1 {
        message.push_str(&format!(" (and {} more problems)", total - 1));
    }
    v.truncate(MAX_VIOLATIONS);
    Rejection::new(RejectClass::Invalid, reasons::CATALOGUE_INVALID, message).with_violations(v)
}

/// An id that repeats an earlier one in its list: the second definition would be lost.
fn repeated(p: &mut Problems, field: String, id: &str) {
    p.add(
        field,
        reasons::DUPLICATE_KEY,
        format!("{id:?} is defined more than once"),
    );
}

impl Catalogue {
    /// The document the hub signs for feed version `version`. Maps, codelists and codes come
    /// out sorted by id (as the protocol says), so equal catalogues give equal bytes.
    pub fn to_document(
        &self,
        federation_id: &str,
        version: u64,
        issued_at: OffsetDateTime,
        previous_digest: Option<Digest>,
    ) -> pb::CatalogueDocument {
        let concept = |id: &str, c: &Concept| pb::ConceptDefinition {
            id: id.to_owned(),
            name: c.name.clone(),
            codelist: c.codelist.clone(),
        };
        pb::CatalogueDocument {
            federation_id: federation_id.to_owned(),
            version,
            issued_at: Some(timestamp_to_proto(issued_at)),
            previous_digest: previous_digest.map(|d| d.0.to_vec()).unwrap_or_default(),
            id: self.catalogue.id.clone(),
            agency: self.catalogue.agency.clone(),
            catalogue_version: self.catalogue.version.clone(),
            name: self.catalogue.name.clone(),
            dimensions: self
                .dimensions
                .iter()
                .map(|(id, c)| concept(id, c))
                .collect(),
            // Sorted by id, like every other list.
            attributes: vec![
                concept("CONF_STATUS", &self.attributes.conf_status),
                concept("OBS_STATUS", &self.attributes.obs_status),
            ],
            codelists: self
                .codelists
                .iter()
                .map(|(id, cl)| pb::CodelistDefinition {
                    id: id.clone(),
                    name: cl.name.clone(),
                    official: cl.official,
                    iso3166_alpha3: cl.iso3166_alpha3,
                    codes: cl
                        .codes
                        .iter()
                        .map(|(code, name)| pb::CodeDefinition {
                            id: code.clone(),
                            name: name.clone(),
                        })
                        .collect(),
                    aggregates: cl.aggregates.clone(),
                })
                .collect(),
            indicators: self
                .indicators
                .iter()
                .map(|ind| pb::IndicatorDefinition {
                    code: ind.code.clone(),
                    sdg_series: ind.sdg_series.clone(),
                    name: ind.name.clone(),
                    custodian: ind.custodian.clone(),
                    units: ind.units.clone(),
                    unit_mults: ind.unit_mults.clone(),
                    frequencies: ind.frequencies.clone(),
                    dimensions: ind
                        .dimensions
                        .iter()
                        .map(|d| pb::IndicatorDimension {
                            id: d.id.clone(),
                            required: d.required,
                            default_code: d.default.clone().unwrap_or_default(),
                        })
                        .collect(),
                    ranges: ind
                        .ranges
                        .iter()
                        .map(|r| pb::PlausibleRange {
                            unit: r.unit.clone().unwrap_or_default(),
                            min: r.min,
                            max: r.max,
                            severity: match r.severity {
                                Severity::Error => pb::RangeSeverity::Error,
                                Severity::Warning => pb::RangeSeverity::Warning,
                            } as i32,
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    /// The catalogue a document carries (its feed fields, federation, version, issued_at and
    /// previous_digest, are [`verify_catalogue`]'s business). Refused with CATALOGUE_INVALID and
    /// one violation per problem: repeated ids, codes not sorted by id, an attribute other than
    /// OBS_STATUS and CONF_STATUS, a range without severity, then every rule of
    /// [`Catalogue::from_toml`]. The inverse of [`Catalogue::to_document`].
    pub fn from_document(doc: &pb::CatalogueDocument) -> Result<Catalogue, Rejection> {
        let mut p = Problems::default();
        let mut dimensions = BTreeMap::new();
        for (k, c) in doc.dimensions.iter().enumerate() {
            let concept = Concept {
                name: c.name.clone(),
                codelist: c.codelist.clone(),
            };
            if dimensions.insert(c.id.clone(), concept).is_some() {
                repeated(&mut p, format!("dimensions[{k}].id"), &c.id);
            }
        }
        let (mut obs_status, mut conf_status) = (None, None);
        for (k, c) in doc.attributes.iter().enumerate() {
            let slot = match c.id.as_str() {
                "OBS_STATUS" => &mut obs_status,
                "CONF_STATUS" => &mut conf_status,
                other => {
                    p.add(
                        format!("attributes[{k}].id"),
                        reasons::INVALID_DIMENSION,
                        format!(
                            "{other:?} is not a coded attribute: use OBS_STATUS or CONF_STATUS"
                        ),
                    );
                    continue;
                }
            };
            let concept = Concept {
                name: c.name.clone(),
                codelist: c.codelist.clone(),
            };
            if slot.replace(concept).is_some() {
                repeated(&mut p, format!("attributes[{k}].id"), &c.id);
            }
        }
        for (id, slot) in [("OBS_STATUS", &obs_status), ("CONF_STATUS", &conf_status)] {
            if slot.is_none() {
                p.add(
                    "attributes".into(),
                    reasons::FIELD_REQUIRED,
                    format!("{id} and its codelist are required"),
                );
            }
        }
        let mut codelists = BTreeMap::new();
        for (k, cl) in doc.codelists.iter().enumerate() {
            let mut codes = BTreeMap::new();
            let mut last: Option<&str> = None;
            for (m, code) in cl.codes.iter().enumerate() {
                let field = format!("codelists[{k}].codes[{m}].id");
                if last.is_some_and(|l| l >= code.id.as_str()) {
                    if codes.contains_key(&code.id) {
                        repeated(&mut p, field, &code.id);
                    } else {
                        p.add(
                            field,
                            reasons::CATALOGUE_INVALID,
                            format!("{:?} is out of order: codes are sorted by id", code.id),
                        );
                    }
                }
                last = Some(&code.id);
                codes.insert(code.id.clone(), code.name.clone());
            }
            let list = Codelist {
                name: cl.name.clone(),
                official: cl.official,
                iso3166_alpha3: cl.iso3166_alpha3,
                codes,
                aggregates: cl.aggregates.clone(),
            };
            if codelists.insert(cl.id.clone(), list).is_some() {
                repeated(&mut p, format!("codelists[{k}].id"), &cl.id);
            }
        }
        let mut indicators = Vec::with_capacity(doc.indicators.len());
        for (i, ind) in doc.indicators.iter().enumerate() {
            let mut ranges = Vec::with_capacity(ind.ranges.len());
            for (k, r) in ind.ranges.iter().enumerate() {
                let severity = match pb::RangeSeverity::try_from(r.severity) {
                    Ok(pb::RangeSeverity::Error) => Severity::Error,
                    Ok(pb::RangeSeverity::Warning) => Severity::Warning,
                    _ => {
                        p.add(
                            format!("indicators[{i}].ranges[{k}].severity"),
                            reasons::FIELD_REQUIRED,
                            format!(
                                "{} is not a severity: use RANGE_SEVERITY_ERROR or RANGE_SEVERITY_WARNING",
                                r.severity
                            ),
                        );
                        Severity::Error
                    }
                };
                ranges.push(Range {
                    unit: (!r.unit.is_empty()).then(|| r.unit.clone()),
                    min: r.min,
                    max: r.max,
                    severity,
                });
            }
            indicators.push(Indicator {
                code: ind.code.clone(),
                sdg_series: ind.sdg_series.clone(),
                name: ind.name.clone(),
                custodian: ind.custodian.clone(),
                units: ind.units.clone(),
                unit_mults: ind.unit_mults.clone(),
                frequencies: ind.frequencies.clone(),
                dimensions: ind
                    .dimensions
                    .iter()
                    .map(|d| IndicatorDimension {
                        id: d.id.clone(),
                        required: d.required,
                        default: (!d.default_code.is_empty()).then(|| d.default_code.clone()),
                    })
                    .collect(),
                ranges,
            });
        }
        let (Some(obs_status), Some(conf_status), true) = (obs_status, conf_status, p.0.is_empty())
        else {
            return Err(inconsistent(p.0));
        };
        let cat = Catalogue {
            catalogue: CatalogueInfo {
                id: doc.id.clone(),
                agency: doc.agency.clone(),
                version: doc.catalogue_version.clone(),
                name: doc.name.clone(),
            },
            dimensions,
            attributes: Attributes {
                obs_status,
                conf_status,
            },
            codelists,
            indicators,
        };
        let v = cat.consistency();
        if v.is_empty() {
            Ok(cat)
        } else {
            Err(inconsistent(v))
        }
    }
}

/// The envelope the hub logs for `doc`: the exact encoding signed with `key` (the hub
/// member's statement signing key).
pub fn sign_catalogue(doc: &pb::CatalogueDocument, key: &SecretKey) -> SignedEnvelope {
    SignedEnvelope::sign(CATALOGUE_PAYLOAD_TYPE, doc.encode_to_vec(), key)
}

/// A CATALOGUE_INVALID refusal of class `class`.
fn chain_error(class: RejectClass, message: String) -> Rejection {
    Rejection::new(class, reasons::CATALOGUE_INVALID, message)
}

/// Verifies one catalogue version. The signature comes first, over the raw bytes: the payload
/// type must be [`CATALOGUE_PAYLOAD_TYPE`] (UNKNOWN_PAYLOAD_TYPE) and a signature must verify
/// with one of `hub_keys` (MISSING_SIGNATURE, UNKNOWN_KEY_ID, BAD_SIGNATURE). Only then is the
/// payload decoded and checked, every refusal CATALOGUE_INVALID: the federation, the version
/// (exactly one more than `previous`'s, or 1 when there is none), `previous_digest` (the
/// previous payload's SHA-256, empty for version 1), `issued_at`, and the content
/// ([`Catalogue::from_document`]). The chain rule stops rollback, replay and forks.
pub fn verify_catalogue(
    envelope: &SignedEnvelope,
    hub_keys: &[VerifyKey],
    federation_id: &str,
    previous: Option<(u64, Digest)>,
) -> Result<SignedCatalogue, Rejection> {
    if envelope.payload_type != CATALOGUE_PAYLOAD_TYPE {
        return Err(Rejection::new(
            RejectClass::Invalid,
            reasons::UNKNOWN_PAYLOAD_TYPE,
            format!(
                "payload type {:?} is not {CATALOGUE_PAYLOAD_TYPE:?}",
                envelope.payload_type
            ),
        ));
    }
    verify_signatures(envelope, |id| hub_keys.iter().find(|k| k.key_id == id)).map_err(|e| {
        Rejection {
            message: format!("the catalogue is not signed by the hub: {}", e.message),
            ..e
        }
    })?;
    let document = pb::CatalogueDocument::decode(envelope.payload.as_slice()).map_err(|e| {
        chain_error(
            RejectClass::Invalid,
            format!("the payload is not a valid rcpfed.v1.CatalogueDocument: {e}"),
        )
    })?;
    let version = document.version;
    if document.federation_id != federation_id {
        return Err(chain_error(
            RejectClass::Forbidden,
            format!(
                "catalogue version {version} is for federation {:?}, not {federation_id:?}",
                document.federation_id
            ),
        ));
    }
    let expected = previous.map_or(1, |(v, _)| v.saturating_add(1));
    if version != expected {
        let (class, words) = match previous {
            Some((v, _)) if version <= v => (
                RejectClass::Conflict,
                format!("is not newer than the trusted version {v}"),
            ),
            Some((v, _)) => (
                RejectClass::Precondition,
                format!("skips versions: the next version after {v} is {expected}"),
            ),
            None => (
                RejectClass::Precondition,
                "is not the first: the chain starts at version 1".to_string(),
            ),
        };
        return Err(
            chain_error(class, format!("catalogue version {version} {words}"))
                .with_meta("expected_version", expected.to_string()),
        );
    }
    let linked = match &previous {
        None => document.previous_digest.is_empty(),
        Some((_, d)) => Digest::from_slice(&document.previous_digest).as_ref() == Some(d),
    };
    if !linked {
        let expected_words = match &previous {
            None => "empty, as version 1 has no predecessor".to_string(),
            Some((v, d)) => format!("{d}, the digest of version {v}"),
        };
        return Err(chain_error(
            RejectClass::Conflict,
            format!(
                "catalogue version {version} does not follow the trusted chain: its previous_digest is {:?}; it must be {expected_words}",
                hex::encode(&document.previous_digest)
            ),
        ));
    }
    let issued_at = document
        .issued_at
        .as_ref()
        .and_then(timestamp_from_proto)
        .ok_or_else(|| {
            chain_error(
                RejectClass::Invalid,
                format!("catalogue version {version} has no valid issued_at time"),
            )
        })?;
    let catalogue = Catalogue::from_document(&document).map_err(|e| Rejection {
        message: format!("catalogue version {version}: {}", e.message),
        ..e
    })?;
    Ok(SignedCatalogue {
        version,
        digest: envelope.digest(),
        issued_at,
        document,
        catalogue: Arc::new(catalogue),
        envelope: envelope.clone(),
    })
}

/// Whether two catalogues say the same thing: exactly `a == b` (derived [`PartialEq`]); named
/// so the hub can skip issuing a version that changes nothing.
pub fn same_content(a: &Catalogue, b: &Catalogue) -> bool {
    a == b
}

/// `value × 10^mult` in words, for messages.
fn scaled_words(value: f64, mult: i32, scaled: f64) -> String {
    if mult == 0 {
        format!("{value}")
    } else {
        format!("{value} × 10^{mult} = {scaled}")
    }
}

/// Checks `snap` against the catalogue; see the module docs for the rules. Errors refuse the
/// snapshot; warnings are reported only. A chunked snapshot carries no observations here:
/// only its indicator is checked, and its observations go through
/// [`validate_observations_against`] when the chunks arrive.
///
/// `member` is no longer used (any publisher may report aggregates); it stays so that callers
/// need not change.
pub fn validate_snapshot(
    cat: &Catalogue,
    snap: &IndicatorSnapshot,
    member: &Member,
) -> CatalogueCheck {
    let _ = member;
    validate_observations_against(cat, &snap.indicator, &snap.observations)
}

/// Checks observations against the catalogue's indicator `indicator`, naming
/// `observations[i]` `indicator_snapshot.observations[i]`: the check of a chunked snapshot,
/// whose observations travel outside the [`IndicatorSnapshot`]. Pass the whole snapshot (all
/// chunks, in order) so the one-frequency rule sees every observation.
pub fn validate_observations_against(
    cat: &Catalogue,
    indicator: &str,
    observations: &[Observation],
) -> CatalogueCheck {
    match CatalogueRows::new(cat, indicator) {
        Err(unknown) => unknown,
        Ok(mut rows) => {
            for (i, o) in observations.iter().enumerate() {
                rows.check(i, o, &RowFaults::default());
            }
            rows.finish()
        }
    }
}

/// The catalogue rules row by row, for the one pass that runs them with the statement rules
/// (`crate::validate::check_statement`): each row is checked after the statement rules, which
/// say in [`RowFaults`] which of its fields they refused already, so no field is refused
/// twice for one problem.
pub(crate) struct CatalogueRows<'c> {
    plan: Plan<'c>,
    /// The snapshot's frequency: that of its first observation with an allowed frequency.
    first_freq: Option<(usize, Frequency)>,
    out: CatalogueCheck,
}

impl<'c> CatalogueRows<'c> {
    /// The rules of `indicator`; `Err` with the `UNKNOWN_INDICATOR` refusal when the catalogue
    /// does not define it (then nothing else is checked).
    pub(crate) fn new(cat: &'c Catalogue, indicator: &str) -> Result<Self, CatalogueCheck> {
        let Some(ind) = cat.indicator(indicator) else {
            let mut out = CatalogueCheck::default();
            let known: Vec<&str> = cat.indicators.iter().map(|i| i.code.as_str()).collect();
            out.error(reasons::UNKNOWN_INDICATOR, || {
                (
                    "indicator_snapshot.indicator".into(),
                    format!(
                        "{indicator:?} is not in catalogue {} {}; known indicators: {}",
                        cat.catalogue.id,
                        cat.catalogue.version,
                        known.join(", ")
                    ),
                )
            });
            return Err(out);
        };
        Ok(CatalogueRows {
            plan: Plan {
                ind,
                areas: cat.dimension_codelist(REF_AREA),
                obs_status: cat.codelists.get(&cat.attributes.obs_status.codelist),
                conf_status: cat.codelists.get(&cat.attributes.conf_status.codelist),
                dims: ind
                    .dimensions
                    .iter()
                    .map(|d| (d, cat.dimension_codelist(&d.id)))
                    .collect(),
            },
            first_freq: None,
            out: CatalogueCheck::default(),
        })
    }

    /// Checks observation `i`, leaving out the fields in `faults`.
    pub(crate) fn check(&mut self, i: usize, o: &Observation, faults: &RowFaults) {
        self.plan
            .check(i, o, faults, &mut self.first_freq, &mut self.out);
    }

    /// What the rows gave.
    pub(crate) fn finish(self) -> CatalogueCheck {
        self.out
    }
}

/// The fields of one observation that the statement rules refused: the catalogue rules leave
/// them alone (a REF_AREA that is not a code at all is `INVALID_COUNTRY_CODE`, not also
/// `CODE_NOT_IN_CODELIST`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RowFaults {
    pub(crate) ref_area: bool,
    pub(crate) time_period: bool,
    pub(crate) obs_status: bool,
    pub(crate) conf_status: bool,
    pub(crate) unit_measure: bool,
    pub(crate) unit_mult: bool,
    /// Positions `j` of `dimensions[j]` refused (its id or its value).
    pub(crate) dimensions: Vec<usize>,
}

/// What one indicator's observations are checked against, looked up once per snapshot so the
/// loop over (up to millions of) observations does no map lookups and allocates nothing
/// unless a rule is broken.
struct Plan<'c> {
    ind: &'c Indicator,
    areas: Option<&'c Codelist>,
    obs_status: Option<&'c Codelist>,
    conf_status: Option<&'c Codelist>,
    /// The indicator's dimensions with their codelists.
    dims: Vec<(&'c IndicatorDimension, Option<&'c Codelist>)>,
}

impl Plan<'_> {
    fn dim_words(&self) -> String {
        if self.dims.is_empty() {
            "it has no disaggregations".to_string()
        } else {
            let ids: Vec<&str> = self.dims.iter().map(|(d, _)| d.id.as_str()).collect();
            format!("its disaggregations are {}", ids.join(", "))
        }
    }

    fn check(
        &self,
        i: usize,
        o: &Observation,
        faults: &RowFaults,
        first_freq: &mut Option<(usize, Frequency)>,
        out: &mut CatalogueCheck,
    ) {
        let ind = self.ind;

        // REF_AREA: a code of the area codelist (ISO 3166-1 or an aggregate; any publisher
        // may report aggregates, membership of states is crate::validate's rule).
        if faults.ref_area {
            // Refused by the statement rules already.
        } else if o.ref_area.is_empty() {
            out.error(reasons::MISSING_DIMENSION, || {
                (obs_field(i, ".ref_area"), "REF_AREA is required".into())
            });
        } else if let Some(cl) = self.areas
            && !cl.contains(&o.ref_area)
        {
            out.error(reasons::CODE_NOT_IN_CODELIST, || {
                (
                    obs_field(i, ".ref_area"),
                    format!(
                        "{:?} is not in REF_AREA's codelist: use {}",
                        o.ref_area,
                        cl.examples()
                    ),
                )
            });
        }

        // TIME_PERIOD and frequency.
        if faults.time_period {
            // Refused by the statement rules already.
        } else if o.time_period.is_empty() {
            out.error(reasons::MISSING_DIMENSION, || {
                (
                    obs_field(i, ".time_period"),
                    "TIME_PERIOD is required".into(),
                )
            });
        } else {
            let field = || obs_field(i, ".time_period");
            match Frequency::of_time_period(&o.time_period) {
                None => out.error(reasons::INVALID_TIME_PERIOD, || {
                    let description = format!(
                        "{:?} is not a time period such as \"2024\", \"2024-S1\", \"2024-Q3\", \"2024-05\" or \"2024-05-17\"",
                        o.time_period
                    );
                    (field(), description)
                }),
                Some(freq) if !ind.allows(freq) => out.error(reasons::FREQUENCY_NOT_ALLOWED, || {
                    let description = format!(
                        "{:?} is {} ({}); {} allows {}",
                        o.time_period,
                        freq.word(),
                        freq.code(),
                        ind.code,
                        ind.frequencies.join(", ")
                    );
                    (field(), description)
                }),
                Some(freq) => match *first_freq {
                    None => *first_freq = Some((i, freq)),
                    Some((j, first)) if first != freq => {
                        out.error(reasons::MIXED_FREQUENCIES, || {
                            let description = format!(
                                "{:?} is {}, but observation {j} is {}; one snapshot has one frequency",
                                o.time_period,
                                freq.word(),
                                first.word()
                            );
                            (field(), description)
                        })
                    }
                    Some(_) => {}
                },
            }
        }

        // Disaggregations.
        for (j, (id, value)) in o.dimensions.iter().enumerate() {
            if faults.dimensions.contains(&j) {
                continue;
            }
            match self.dims.iter().find(|(d, _)| d.id == *id) {
                None => out.error(reasons::UNKNOWN_DIMENSION, || {
                    (
                        obs_field(i, &format!(".dimensions[{j}].id")),
                        format!(
                            "{id:?} is not a dimension of {}; {}",
                            ind.code,
                            self.dim_words()
                        ),
                    )
                }),
                Some((_, Some(cl))) if !cl.contains(value) => {
                    out.error(reasons::CODE_NOT_IN_CODELIST, || {
                        (
                            obs_field(i, &format!(".dimensions[{j}].value")),
                            format!(
                                "{value:?} is not a code of {id}'s codelist: use {}",
                                cl.examples()
                            ),
                        )
                    })
                }
                Some(_) => {}
            }
        }
        for (d, cl) in self.dims.iter().filter(|(d, _)| d.required) {
            if !o.dimensions.iter().any(|(id, _)| *id == d.id) {
                out.error(reasons::MISSING_DIMENSION, || {
                    let codes = cl.map(Codelist::examples).unwrap_or_default();
                    (
                        obs_field(i, ".dimensions"),
                        format!("{} is required for {} ({codes})", d.id, ind.code),
                    )
                });
            }
        }

        // Coded attributes.
        for (column, code, cl, concept) in [
            (".obs_status", &o.obs_status, self.obs_status, "OBS_STATUS"),
            (
                ".conf_status",
                &o.conf_status,
                self.conf_status,
                "CONF_STATUS",
            ),
        ] {
            let refused = match column {
                ".obs_status" => faults.obs_status,
                _ => faults.conf_status,
            };
            if let Some(cl) = cl
                && !refused
                && !code.is_empty()
                && !cl.contains(code)
            {
                out.error(reasons::CODE_NOT_IN_CODELIST, || {
                    (
                        obs_field(i, column),
                        format!(
                            "{code:?} is not a code of {concept}'s codelist: use {}",
                            cl.examples()
                        ),
                    )
                });
            }
        }

        // Units and ranges: appends and replaces only (a delete names a key).
        if o.action == ObservationAction::Delete {
            return;
        }
        if faults.unit_measure {
            // Refused by the statement rules already (too long).
        } else if o.unit_measure.is_empty() {
            out.error(reasons::FIELD_REQUIRED, || {
                (
                    obs_field(i, ".unit_measure"),
                    format!(
                        "is required: {} is measured in {}",
                        ind.code,
                        quoted(&ind.units)
                    ),
                )
            });
        } else if !ind.units.contains(&o.unit_measure) {
            out.error(reasons::UNIT_MISMATCH, || {
                (
                    obs_field(i, ".unit_measure"),
                    format!(
                        "{:?} is not a unit of {}: use {}",
                        o.unit_measure,
                        ind.code,
                        quoted(&ind.units)
                    ),
                )
            });
        }
        if !faults.unit_mult && !ind.unit_mults.contains(&o.unit_mult) {
            out.error(reasons::UNIT_MISMATCH, || {
                let mults: Vec<String> = ind.unit_mults.iter().map(i32::to_string).collect();
                (
                    obs_field(i, ".unit_mult"),
                    format!(
                        "UNIT_MULT {} is not allowed for {}: use {}",
                        o.unit_mult,
                        ind.code,
                        mults.join(", ")
                    ),
                )
            });
        }
        let Some(value) = o.obs_value.filter(|x| x.is_finite()) else {
            return;
        };
        if !(0..=12).contains(&o.unit_mult) {
            return;
        }
        let scaled = value * 10f64.powi(o.unit_mult);
        let broken = |r: &&Range| {
            r.unit.as_ref().is_none_or(|u| *u == o.unit_measure)
                && (r.min.is_some_and(|lo| scaled < lo) || r.max.is_some_and(|hi| scaled > hi))
        };
        if !ind.ranges.iter().any(|r| broken(&r)) {
            return;
        }
        // Something is out of range: only now are messages built.
        let any_error = ind
            .ranges
            .iter()
            .filter(broken)
            .any(|r| r.severity == Severity::Error);
        for r in ind.ranges.iter().filter(broken) {
            let make = || {
                let bound = match r.min {
                    Some(lo) if scaled < lo => format!("is below the plausible minimum {lo}"),
                    _ => format!(
                        "is above the plausible maximum {}",
                        r.max.unwrap_or(f64::INFINITY)
                    ),
                };
                let severity = match r.severity {
                    Severity::Error => "an error",
                    Severity::Warning => "a warning",
                };
                let description = format!(
                    "{} {bound} for {} ({}); the catalogue treats this as {severity}",
                    scaled_words(value, o.unit_mult, scaled),
                    ind.code,
                    o.unit_measure,
                );
                (obs_field(i, ".obs_value"), description)
            };
            match r.severity {
                Severity::Error => out.error(reasons::VALUE_OUT_OF_RANGE, make),
                // A value already refused is not also warned about.
                Severity::Warning if !any_error => out.warning(reasons::VALUE_OUT_OF_RANGE, make),
                Severity::Warning => {}
            }
        }
    }
}

fn quoted(list: &[String]) -> String {
    list.iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}
