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
//!
//! Layout: this file holds the model and its consistency rules; `document.rs` the signed,
//! chained document; `check.rs` the row-by-row check of observations.

use crate::codes::is_indicator_code;
use crate::dates::parse_time_period;
use crate::iso3166::is_alpha3;
use crate::limits::MAX_VIOLATIONS;
use crate::rejection::{ProblemCount, RejectClass, Rejection, Violation, reasons};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};

mod check;
mod document;
pub(crate) use document::dimensions_of;

pub(crate) use check::{CatalogueRows, RowFaults};
pub use check::{validate_observations_against, validate_snapshot};
use document::inconsistent;
pub use document::{
    CATALOGUE_PAYLOAD_TYPE, SignedCatalogue, embedded_catalogue_toml, same_content, sign_catalogue,
    verify_catalogue,
};

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
    // Concept ids follow the dimension id syntax.
    crate::codes::is_dimension_id(id)
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
        self.header_problems(&mut v);
        self.codelist_problems(&mut v);
        self.concept_problems(&mut v);
        self.indicator_problems(&mut v);
        v
    }

    /// The catalogue's own id, agency and version.
    fn header_problems(&self, v: &mut Vec<Violation>) {
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
    }

    /// Codelists: ids, codes, aggregates, and the frequency codelist.
    fn codelist_problems(&self, v: &mut Vec<Violation>) {
        let mut push = |field: String, reason: &'static str, description: String| {
            v.push(Violation::new(field, reason, description));
        };
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
    }

    /// Dimension and attribute concepts: REF_AREA present, TIME_PERIOD absent, ids and codelists.
    fn concept_problems(&self, v: &mut Vec<Violation>) {
        let mut push = |field: String, reason: &'static str, description: String| {
            v.push(Violation::new(field, reason, description));
        };
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
    }

    /// Indicators: codes, dimensions, frequencies, units and ranges.
    fn indicator_problems(&self, v: &mut Vec<Violation>) {
        let mut codes = BTreeSet::new();
        for (i, ind) in self.indicators.iter().enumerate() {
            let f = format!("indicators[{i}]");
            Self::naming_problems(&f, ind, &mut codes, v);
            self.unit_and_frequency_problems(&f, ind, v);
            self.dimension_problems(&f, ind, v);
            Self::range_problems(&f, ind, v);
        }
    }

    /// An indicator's code (well formed, defined once), SDG series, name and custodian.
    fn naming_problems<'c>(
        f: &str,
        ind: &'c Indicator,
        codes: &mut BTreeSet<&'c str>,
        v: &mut Vec<Violation>,
    ) {
        let mut push = |field: String, reason: &'static str, description: String| {
            v.push(Violation::new(field, reason, description));
        };
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
    }

    /// An indicator's units, UNIT_MULT values and frequencies.
    fn unit_and_frequency_problems(&self, f: &str, ind: &Indicator, v: &mut Vec<Violation>) {
        let mut push = |field: String, reason: &'static str, description: String| {
            v.push(Violation::new(field, reason, description));
        };
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
    }

    /// An indicator's disaggregations: defined once each, under [dimensions], and a default
    /// only for an optional one, from its codelist.
    fn dimension_problems(&self, f: &str, ind: &Indicator, v: &mut Vec<Violation>) {
        let mut push = |field: String, reason: &'static str, description: String| {
            v.push(Violation::new(field, reason, description));
        };
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
    }

    /// An indicator's plausible ranges: a finite bound at least, min not above max, a unit of
    /// the indicator's.
    fn range_problems(f: &str, ind: &Indicator, v: &mut Vec<Violation>) {
        let mut push = |field: String, reason: &'static str, description: String| {
            v.push(Violation::new(field, reason, description));
        };
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
}
