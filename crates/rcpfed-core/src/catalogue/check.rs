//! The check of an indicator snapshot's observations against the catalogue, row by row.

use super::{
    Catalogue, CatalogueCheck, Codelist, Frequency, Indicator, IndicatorDimension, REF_AREA, Range,
    Severity,
};
use crate::members::Member;
use crate::rejection::reasons;
use crate::statement::obs_field;
use crate::statement::{IndicatorSnapshot, Observation, ObservationAction};
/// `value × 10^mult` in words, for messages.
pub(super) fn scaled_words(value: f64, mult: i32, scaled: f64) -> String {
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

    /// Whether an error was found so far.
    pub(crate) fn has_errors(&self) -> bool {
        !self.out.is_ok()
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
pub(super) struct Plan<'c> {
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

    /// Checks observation `i` against every catalogue rule, leaving out the fields in `faults`.
    fn check(
        &self,
        i: usize,
        o: &Observation,
        faults: &RowFaults,
        first_freq: &mut Option<(usize, Frequency)>,
        out: &mut CatalogueCheck,
    ) {
        self.check_ref_area(i, o, faults, out);
        self.check_time_period(i, o, faults, first_freq, out);
        self.check_dimensions(i, o, faults, out);
        self.check_coded_attributes(i, o, faults, out);
        // Units and ranges: appends and replaces only (a delete names a key).
        if o.action == ObservationAction::Delete {
            return;
        }
        self.check_units(i, o, faults, out);
        self.check_range(i, o, out);
    }

    /// REF_AREA: a code of the area codelist (ISO 3166-1 or an aggregate; any publisher may
    /// report aggregates, membership of states is crate::validate's rule).
    fn check_ref_area(
        &self,
        i: usize,
        o: &Observation,
        faults: &RowFaults,
        out: &mut CatalogueCheck,
    ) {
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
    }

    /// TIME_PERIOD: a time period of a frequency the indicator allows, the same for the whole
    /// snapshot (`first_freq`: the first one seen).
    fn check_time_period(
        &self,
        i: usize,
        o: &Observation,
        faults: &RowFaults,
        first_freq: &mut Option<(usize, Frequency)>,
        out: &mut CatalogueCheck,
    ) {
        let ind = self.ind;
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
    }

    /// Disaggregations: dimensions of the indicator, with codes of their codelists, and every
    /// required one given.
    fn check_dimensions(
        &self,
        i: usize,
        o: &Observation,
        faults: &RowFaults,
        out: &mut CatalogueCheck,
    ) {
        let ind = self.ind;
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
    }

    /// Coded attributes: OBS_STATUS and CONF_STATUS, when given, are codes of their codelists.
    fn check_coded_attributes(
        &self,
        i: usize,
        o: &Observation,
        faults: &RowFaults,
        out: &mut CatalogueCheck,
    ) {
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
    }

    /// Units: a unit and a multiplier of the indicator.
    fn check_units(&self, i: usize, o: &Observation, faults: &RowFaults, out: &mut CatalogueCheck) {
        let ind = self.ind;
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
    }

    /// Ranges: the value, scaled by its multiplier, within the indicator's plausible ranges
    /// (an error range refuses it, a warning range warns).
    fn check_range(&self, i: usize, o: &Observation, out: &mut CatalogueCheck) {
        let ind = self.ind;
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

pub(super) fn quoted(list: &[String]) -> String {
    list.iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}
