//! The indicator catalogue, modelled on SDMX data structure definitions, and the check of an
//! indicator snapshot against it.
//!
//! **Not yet wired:** nothing in the hub or the node calls this module yet. The catalogue is
//! not signed or distributed, and [`validate_snapshot`] runs only in tests. Wiring it into the
//! node (before signing, and `--dry-run`) and the hub (on receipt) is later work (issue 5).
//!
//! The shipped catalogue is `data/catalogue/catalogue.toml`; its format is described in
//! `data/catalogue/README.md`. [`Catalogue::from_toml`] parses it and checks that it is
//! consistent (every codelist it names exists, defaults are codes of their codelist, ranges
//! are ordered and name units of their indicator, …).
//!
//! What [`validate_snapshot`] checks, per observation, naming the row and the column
//! (`indicator_snapshot.observations[i].<column>`):
//! - the indicator is in the catalogue (otherwise nothing else is checked);
//! - REF_AREA and TIME_PERIOD are present; REF_AREA is in the area codelist (ISO 3166-1
//!   alpha-3 or a named aggregate such as `WLD`);
//! - **aggregates are the hub's:** a code listed under `aggregates` (e.g. `WLD`, `LMC_AGG`) is
//!   accepted only from a member whose kind is `"hub"` (the GFMD). A regional process reports
//!   its member states; the world and income-group totals are the hub's to publish;
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
//! RCP over the period, duplicate keys, finite values, …); both run on a snapshot.

use crate::dates::parse_time_period;
use crate::iso3166::is_alpha3;
use crate::members::Member;
use crate::rejection::{RejectClass, Rejection, Violation, reasons};
use crate::statement::{IndicatorSnapshot, ObservationAction};
use crate::validate::{MAX_VIOLATIONS, is_indicator_code};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};

/// The member kind that may report aggregates such as `WLD`.
pub const HUB_KIND: &str = "hub";
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
    /// Codes that are aggregates (reported by the hub only); each also in `codes`.
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
        let Some(first) = self.errors.first() else {
            return Ok(self.warnings);
        };
        let rules: BTreeSet<&str> = self.errors.iter().map(|v| v.reason).collect();
        let reason = match rules.iter().next() {
            Some(only) if rules.len() == 1 => *only,
            _ => reasons::VALIDATION_FAILED,
        };
        let mut message = format!("{}: {}", first.field, first.description);
        if self.total_errors > 1 {
            message.push_str(&format!(" (and {} more problems)", self.total_errors - 1));
        }
        Err(Rejection::new(RejectClass::Invalid, reason, message).with_violations(self.errors))
    }

    fn error(&mut self, field: String, reason: &'static str, description: String) {
        self.total_errors += 1;
        if self.errors.len() < MAX_VIOLATIONS {
            self.errors.push(Violation::new(field, reason, description));
        }
    }

    fn warning(&mut self, field: String, reason: &'static str, description: String) {
        self.total_warnings += 1;
        if self.warnings.len() < MAX_VIOLATIONS {
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
    /// (VALIDATION_FAILED with one violation each).
    pub fn from_toml(text: &str) -> Result<Catalogue, Rejection> {
        let cat: Catalogue = toml::from_str(text).map_err(|e| {
            Rejection::new(
                RejectClass::Invalid,
                reasons::PAYLOAD_MALFORMED,
                format!("the catalogue is not valid: {}", e.to_string().trim()),
            )
        })?;
        let v = cat.consistency();
        match v.first() {
            None => Ok(cat),
            Some(first) => {
                let mut message = format!(
                    "the catalogue is not consistent: {}: {}",
                    first.field, first.description
                );
                if v.len() > 1 {
                    message.push_str(&format!(" (and {} more problems)", v.len() - 1));
                }
                Err(
                    Rejection::new(RejectClass::Invalid, reasons::VALIDATION_FAILED, message)
                        .with_violations(v),
                )
            }
        }
    }

    /// The indicator with `code`.
    pub fn indicator(&self, code: &str) -> Option<&Indicator> {
        self.indicators.iter().find(|i| i.code == code)
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

/// `value × 10^mult` in words, for messages.
fn scaled_words(value: f64, mult: i32, scaled: f64) -> String {
    if mult == 0 {
        format!("{value}")
    } else {
        format!("{value} × 10^{mult} = {scaled}")
    }
}

/// Checks `snap` against the catalogue as published by `member`; see the module docs for the
/// rules. Errors refuse the snapshot; warnings are reported only.
pub fn validate_snapshot(
    cat: &Catalogue,
    snap: &IndicatorSnapshot,
    member: &Member,
) -> CatalogueCheck {
    let mut out = CatalogueCheck::default();
    let Some(ind) = cat.indicator(&snap.indicator) else {
        let known: Vec<&str> = cat.indicators.iter().map(|i| i.code.as_str()).collect();
        out.error(
            "indicator_snapshot.indicator".into(),
            reasons::UNKNOWN_INDICATOR,
            format!(
                "{:?} is not in catalogue {} {}; known indicators: {}",
                snap.indicator,
                cat.catalogue.id,
                cat.catalogue.version,
                known.join(", ")
            ),
        );
        return out;
    };
    let areas = cat.dimension_codelist(REF_AREA);
    let obs_status = cat.codelists.get(&cat.attributes.obs_status.codelist);
    let conf_status = cat.codelists.get(&cat.attributes.conf_status.codelist);
    let allowed_freqs: Vec<&str> = ind.frequencies.iter().map(String::as_str).collect();
    let dim_ids: Vec<&str> = ind.dimensions.iter().map(|d| d.id.as_str()).collect();
    let dim_words = if dim_ids.is_empty() {
        "it has no disaggregations".to_string()
    } else {
        format!("its disaggregations are {}", dim_ids.join(", "))
    };
    // The snapshot's frequency: that of its first observation with an allowed frequency.
    let mut first_freq: Option<(usize, Frequency)> = None;

    for (i, o) in snap.observations.iter().enumerate() {
        let f = format!("indicator_snapshot.observations[{i}]");

        // REF_AREA.
        if o.ref_area.is_empty() {
            out.error(
                format!("{f}.ref_area"),
                reasons::MISSING_DIMENSION,
                "REF_AREA is required".into(),
            );
        } else if let Some(cl) = areas {
            if !cl.contains(&o.ref_area) {
                out.error(
                    format!("{f}.ref_area"),
                    reasons::CODE_NOT_IN_CODELIST,
                    format!(
                        "{:?} is not in REF_AREA's codelist: use {}",
                        o.ref_area,
                        cl.examples()
                    ),
                );
            } else if cl.is_aggregate(&o.ref_area) && member.kind != HUB_KIND {
                let name = cl.codes.get(&o.ref_area).map_or("", String::as_str);
                out.error(
                    format!("{f}.ref_area"),
                    reasons::NOT_A_MEMBER_STATE,
                    format!(
                        "{:?} ({name}) is an aggregate; only the hub reports aggregates, and {} reports its member states",
                        o.ref_area, member.id
                    ),
                );
            }
        }

        // TIME_PERIOD and frequency.
        if o.time_period.is_empty() {
            out.error(
                format!("{f}.time_period"),
                reasons::MISSING_DIMENSION,
                "TIME_PERIOD is required".into(),
            );
        } else {
            match Frequency::of_time_period(&o.time_period) {
                None => out.error(
                    format!("{f}.time_period"),
                    reasons::INVALID_TIME_PERIOD,
                    format!(
                        "{:?} is not a time period such as \"2024\", \"2024-S1\", \"2024-Q3\", \"2024-05\" or \"2024-05-17\"",
                        o.time_period
                    ),
                ),
                Some(freq) if !ind.allows(freq) => out.error(
                    format!("{f}.time_period"),
                    reasons::FREQUENCY_NOT_ALLOWED,
                    format!(
                        "{:?} is {} ({}); {} allows {}",
                        o.time_period,
                        freq.word(),
                        freq.code(),
                        ind.code,
                        allowed_freqs.join(", ")
                    ),
                ),
                Some(freq) => match first_freq {
                    None => first_freq = Some((i, freq)),
                    Some((j, first)) if first != freq => out.error(
                        format!("{f}.time_period"),
                        reasons::MIXED_FREQUENCIES,
                        format!(
                            "{:?} is {}, but observation {j} is {}; one snapshot has one frequency",
                            o.time_period,
                            freq.word(),
                            first.word()
                        ),
                    ),
                    Some(_) => {}
                },
            }
        }

        // Disaggregations.
        for (j, (id, value)) in o.dimensions.iter().enumerate() {
            let df = format!("{f}.dimensions[{j}]");
            if ind.dimension(id).is_none() {
                out.error(
                    format!("{df}.id"),
                    reasons::UNKNOWN_DIMENSION,
                    format!("{id:?} is not a dimension of {}; {dim_words}", ind.code),
                );
            } else if let Some(cl) = cat.dimension_codelist(id)
                && !cl.contains(value)
            {
                out.error(
                    format!("{df}.value"),
                    reasons::CODE_NOT_IN_CODELIST,
                    format!(
                        "{value:?} is not a code of {id}'s codelist: use {}",
                        cl.examples()
                    ),
                );
            }
        }
        for d in ind.dimensions.iter().filter(|d| d.required) {
            if !o.dimensions.iter().any(|(id, _)| *id == d.id) {
                let codes = cat
                    .dimension_codelist(&d.id)
                    .map(Codelist::examples)
                    .unwrap_or_default();
                out.error(
                    format!("{f}.dimensions"),
                    reasons::MISSING_DIMENSION,
                    format!("{} is required for {} ({codes})", d.id, ind.code),
                );
            }
        }

        // Coded attributes.
        for (column, code, cl, concept) in [
            ("obs_status", &o.obs_status, obs_status, "OBS_STATUS"),
            ("conf_status", &o.conf_status, conf_status, "CONF_STATUS"),
        ] {
            if let Some(cl) = cl
                && !code.is_empty()
                && !cl.contains(code)
            {
                out.error(
                    format!("{f}.{column}"),
                    reasons::CODE_NOT_IN_CODELIST,
                    format!(
                        "{code:?} is not a code of {concept}'s codelist: use {}",
                        cl.examples()
                    ),
                );
            }
        }

        // Units and ranges: appends and replaces only (a delete names a key).
        if o.action == ObservationAction::Delete {
            continue;
        }
        if o.unit_measure.is_empty() {
            out.error(
                format!("{f}.unit_measure"),
                reasons::FIELD_REQUIRED,
                format!(
                    "is required: {} is measured in {}",
                    ind.code,
                    quoted(&ind.units)
                ),
            );
        } else if !ind.units.contains(&o.unit_measure) {
            out.error(
                format!("{f}.unit_measure"),
                reasons::UNIT_MISMATCH,
                format!(
                    "{:?} is not a unit of {}: use {}",
                    o.unit_measure,
                    ind.code,
                    quoted(&ind.units)
                ),
            );
        }
        if !ind.unit_mults.contains(&o.unit_mult) {
            let mults: Vec<String> = ind.unit_mults.iter().map(i32::to_string).collect();
            out.error(
                format!("{f}.unit_mult"),
                reasons::UNIT_MISMATCH,
                format!(
                    "UNIT_MULT {} is not allowed for {}: use {}",
                    o.unit_mult,
                    ind.code,
                    mults.join(", ")
                ),
            );
        }
        let Some(value) = o.obs_value.filter(|x| x.is_finite()) else {
            continue;
        };
        if !(0..=12).contains(&o.unit_mult) {
            continue;
        }
        let scaled = value * 10f64.powi(o.unit_mult);
        let applicable = ind
            .ranges
            .iter()
            .filter(|r| r.unit.as_ref().is_none_or(|u| *u == o.unit_measure));
        let broken: Vec<(&Range, String)> = applicable
            .filter_map(|r| {
                let words = scaled_words(value, o.unit_mult, scaled);
                match (r.min, r.max) {
                    (Some(lo), _) if scaled < lo => {
                        Some((r, format!("{words} is below the plausible minimum {lo}")))
                    }
                    (_, Some(hi)) if scaled > hi => {
                        Some((r, format!("{words} is above the plausible maximum {hi}")))
                    }
                    _ => None,
                }
            })
            .collect();
        let any_error = broken.iter().any(|(r, _)| r.severity == Severity::Error);
        for (r, words) in broken {
            let description = format!(
                "{words} for {} ({}); the catalogue treats this as {}",
                ind.code,
                o.unit_measure,
                match r.severity {
                    Severity::Error => "an error",
                    Severity::Warning => "a warning",
                }
            );
            match r.severity {
                Severity::Error => out.error(
                    format!("{f}.obs_value"),
                    reasons::VALUE_OUT_OF_RANGE,
                    description,
                ),
                // A value already refused is not also warned about.
                Severity::Warning if !any_error => out.warning(
                    format!("{f}.obs_value"),
                    reasons::VALUE_OUT_OF_RANGE,
                    description,
                ),
                Severity::Warning => {}
            }
        }
    }
    out
}

fn quoted(list: &[String]) -> String {
    list.iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}
