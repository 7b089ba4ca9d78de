//! Synthetic load-test data: large indicator CSV files, in the simple format, that a real
//! node can publish. Every row says in its SOURCE that it is synthetic, and every row passes
//! the catalogue's validation (and the federation rules: member states of the node, distinct
//! keys), because the plan is derived from the catalogue itself.

use crate::sample;
use rcpfed_core::catalogue::{Catalogue, Frequency, REF_AREA};
use rcpfed_core::dates::{MAX_YEAR, MIN_YEAR};
use rcpfed_core::iso3166::is_alpha3;
use rcpfed_proto::v1::ObservationAction;
use std::io::{self, Write};

/// The sample node whose member states the synthetic data covers.
pub const SYNTHETIC_NODE: &str = "colombo";
/// The SOURCE of every synthetic row.
pub const SYNTHETIC_SOURCE: &str = "SYNTHETIC load-test data, not real";
/// The shipped catalogue the plan is derived from.
const CATALOGUE_TOML: &str = include_str!("../../../data/catalogue/catalogue.toml");
/// Indicators preferred when several allow the same number of keys.
const PREFERRED: [&str; 2] = ["MIG_STOCK", "REMIT_INFLOW"];
/// Widest range of values written (in OBS_VALUE units), so the figures stay plausible.
const MAX_SPREAD: f64 = 1.0e6;

/// What [`synthetic_indicator_csv`] writes: one catalogue indicator, for the member states of
/// one node, over every period of the indicator's finest allowed frequency that the
/// federation reads (years 1900 to 2100) and every combination of its disaggregations' codes.
/// Keys are enumerated period by period, then area, then disaggregation, so the first
/// [`SyntheticPlan::capacity`] rows are all distinct.
#[derive(Clone, Debug, PartialEq)]
pub struct SyntheticPlan {
    /// The publishing node.
    pub node: String,
    /// The indicator code.
    pub indicator: String,
    /// REF_AREA codes: the node's member states without dates (members throughout).
    pub areas: Vec<String>,
    /// The frequency of TIME_PERIOD.
    pub frequency: Frequency,
    /// Number of periods of that frequency from 1900 to 2100.
    pub periods: usize,
    /// Every disaggregation of the indicator with all the codes of its codelist.
    pub dimensions: Vec<(String, Vec<String>)>,
    /// UNIT_MEASURE written.
    pub unit_measure: String,
    /// UNIT_MULT written.
    pub unit_mult: i32,
    /// Values are drawn from `[min, max]` (OBS_VALUE, before UNIT_MULT), inside every range
    /// of the catalogue (error and warning).
    pub min: f64,
    /// See `min`.
    pub max: f64,
}

fn is_leap(y: i32) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i32, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn period_count(f: Frequency) -> usize {
    let years = usize::try_from(MAX_YEAR - MIN_YEAR + 1).unwrap_or(0);
    match f {
        Frequency::Annual => years,
        Frequency::HalfYearly => years * 2,
        Frequency::Quarterly => years * 4,
        Frequency::Monthly => years * 12,
        Frequency::Daily => (MIN_YEAR..=MAX_YEAR)
            .map(|y| if is_leap(y) { 366 } else { 365 })
            .sum(),
    }
}

/// The periods of one frequency from 1900 to 2100, in order.
struct Periods {
    frequency: Frequency,
    year: i32,
    /// Half, quarter or month (1-based), or month for days.
    part: u32,
    day: u32,
}

impl Periods {
    fn new(frequency: Frequency) -> Self {
        Periods {
            frequency,
            year: MIN_YEAR,
            part: 1,
            day: 1,
        }
    }

    /// Writes the current period into `buf` and moves on; `false` past 2100.
    fn next_into(&mut self, buf: &mut String) -> bool {
        use std::fmt::Write as _;
        if self.year > MAX_YEAR {
            return false;
        }
        buf.clear();
        let y = self.year;
        let parts = match self.frequency {
            Frequency::Annual => {
                let _ = write!(buf, "{y:04}");
                1
            }
            Frequency::HalfYearly => {
                let _ = write!(buf, "{y:04}-S{}", self.part);
                2
            }
            Frequency::Quarterly => {
                let _ = write!(buf, "{y:04}-Q{}", self.part);
                4
            }
            Frequency::Monthly => {
                let _ = write!(buf, "{y:04}-{:02}", self.part);
                12
            }
            Frequency::Daily => {
                let _ = write!(buf, "{y:04}-{:02}-{:02}", self.part, self.day);
                if self.day < days_in_month(y, self.part) {
                    self.day += 1;
                    return true;
                }
                self.day = 1;
                12
            }
        };
        if self.part < parts {
            self.part += 1;
        } else {
            self.part = 1;
            self.year += 1;
        }
        true
    }
}

/// SplitMix64: a small, good, seedable generator (no dependency for a test-data writer).
fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Every ISO 3166-1 alpha-3 code, in order.
fn all_alpha3() -> Vec<String> {
    let mut out = Vec::new();
    for a in b'A'..=b'Z' {
        for b in b'A'..=b'Z' {
            for c in b'A'..=b'Z' {
                let code = String::from_utf8(vec![a, b, c]).unwrap_or_default();
                if is_alpha3(&code) {
                    out.push(code);
                }
            }
        }
    }
    out
}

/// Moves to the next combination of codes; `false` after the last one.
fn advance(odometer: &mut [usize], codes: &[Vec<String>]) -> bool {
    for (i, list) in odometer.iter_mut().zip(codes).rev() {
        *i += 1;
        if *i < list.len() {
            return true;
        }
        *i = 0;
    }
    false
}

/// A CSV cell: quoted when it must be.
fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) || s.trim() != s {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

impl SyntheticPlan {
    /// The plan for indicator `code` of `cat`, reported by `node` for `areas`.
    pub fn for_indicator(
        cat: &Catalogue,
        code: &str,
        node: &str,
        areas: &[String],
    ) -> Result<SyntheticPlan, String> {
        let ind = cat
            .indicator(code)
            .ok_or_else(|| format!("{code} is not in the catalogue"))?;
        let area_codes = cat.dimension_codelist(REF_AREA);
        let areas: Vec<String> = areas
            .iter()
            .filter(|a| area_codes.is_none_or(|cl| cl.contains(a) && !cl.is_aggregate(a)))
            .cloned()
            .collect();
        if areas.is_empty() {
            return Err(format!("{node} has no member state to report"));
        }
        let frequency = Frequency::ALL
            .into_iter()
            .filter(|f| ind.allows(*f))
            .max_by_key(|f| period_count(*f))
            .ok_or_else(|| format!("{code} allows no frequency this build reads"))?;
        let mut dimensions = Vec::new();
        for d in &ind.dimensions {
            let cl = cat
                .dimension_codelist(&d.id)
                .ok_or_else(|| format!("dimension {} has no codelist", d.id))?;
            let mut codes: Vec<String> = cl
                .codes
                .keys()
                .filter(|c| !cl.is_aggregate(c))
                .cloned()
                .collect();
            if cl.iso3166_alpha3 {
                codes.extend(
                    all_alpha3()
                        .into_iter()
                        .filter(|c| !cl.codes.contains_key(c)),
                );
            }
            if codes.is_empty() {
                return Err(format!("dimension {} has no code", d.id));
            }
            dimensions.push((d.id.clone(), codes));
        }
        let unit_measure = ind
            .units
            .first()
            .ok_or_else(|| format!("{code} has no unit"))?
            .clone();
        let unit_mult = if ind.unit_mults.contains(&0) {
            0
        } else {
            *ind.unit_mults
                .first()
                .ok_or_else(|| format!("{code} allows no UNIT_MULT"))?
        };
        let scale = 10f64.powi(unit_mult);
        let (mut lo, mut hi) = (f64::NEG_INFINITY, f64::INFINITY);
        for r in ind
            .ranges
            .iter()
            .filter(|r| r.unit.as_ref().is_none_or(|u| *u == unit_measure))
        {
            if let Some(min) = r.min {
                lo = lo.max(min / scale);
            }
            if let Some(max) = r.max {
                hi = hi.min(max / scale);
            }
        }
        let min = if lo.is_finite() {
            lo
        } else if hi.is_finite() {
            hi - MAX_SPREAD
        } else {
            0.0
        };
        let max = hi.min(min + MAX_SPREAD);
        if min.is_nan() || max.is_nan() || min > max {
            return Err(format!("{code}'s plausible ranges leave no value"));
        }
        Ok(SyntheticPlan {
            node: node.to_owned(),
            indicator: code.to_owned(),
            areas,
            frequency,
            periods: period_count(frequency),
            dimensions,
            unit_measure,
            unit_mult,
            min,
            max,
        })
    }

    /// The plan of `cat`'s indicator that allows the most distinct keys for `node` and
    /// `areas` (MIG_STOCK, then REMIT_INFLOW, then catalogue order on ties).
    pub fn for_catalogue(
        cat: &Catalogue,
        node: &str,
        areas: &[String],
    ) -> Result<SyntheticPlan, String> {
        let rank = |p: &SyntheticPlan| {
            let preferred = PREFERRED
                .iter()
                .position(|c| *c == p.indicator)
                .map_or(0, |i| PREFERRED.len() - i);
            (p.capacity(), preferred)
        };
        let mut best: Option<SyntheticPlan> = None;
        let mut last_error = String::from("the catalogue has no indicator");
        for ind in &cat.indicators {
            match SyntheticPlan::for_indicator(cat, &ind.code, node, areas) {
                Ok(p) if best.as_ref().is_none_or(|b| rank(&p) > rank(b)) => best = Some(p),
                Ok(_) => {}
                Err(e) => last_error = e,
            }
        }
        best.ok_or(last_error)
    }

    /// How many distinct keys the plan has (saturating).
    pub fn capacity(&self) -> u64 {
        let mut n = (self.areas.len() as u64).saturating_mul(self.periods as u64);
        for (_, codes) in &self.dimensions {
            n = n.saturating_mul(codes.len() as u64);
        }
        n
    }

    /// Writes `observations` rows (each a distinct key) with values drawn from `seed`, with
    /// ACTION `action` (append, replace, or delete with no value). Refuses more observations
    /// than [`SyntheticPlan::capacity`] (`InvalidInput`), naming what limits the keys.
    pub fn write_csv(
        &self,
        observations: usize,
        seed: u64,
        action: ObservationAction,
        out: &mut impl Write,
    ) -> io::Result<()> {
        if observations as u64 > self.capacity() {
            return Err(self.over_capacity());
        }
        let action_word = match action {
            ObservationAction::Replace => "replace",
            ObservationAction::Delete => "delete",
            ObservationAction::Append | ObservationAction::Unspecified => "append",
        };
        let delete = action == ObservationAction::Delete;
        let mut w = io::BufWriter::with_capacity(1 << 16, out);
        self.write_header(&mut w)?;

        let indicator = csv_cell(&self.indicator);
        let unit = csv_cell(&self.unit_measure);
        let source = csv_cell(SYNTHETIC_SOURCE);
        let areas: Vec<String> = self.areas.iter().map(|a| csv_cell(a)).collect();
        let codes: Vec<Vec<String>> = self
            .dimensions
            .iter()
            .map(|(_, c)| c.iter().map(|c| csv_cell(c)).collect())
            .collect();
        let values = ValueDraw::new(self.min, self.max, seed);
        let mut periods = Periods::new(self.frequency);
        let mut period = String::new();
        let mut odometer = vec![0usize; codes.len()];
        let mut written = 0usize;
        'periods: while written < observations && periods.next_into(&mut period) {
            for area in &areas {
                odometer.iter_mut().for_each(|i| *i = 0);
                loop {
                    if written >= observations {
                        break 'periods;
                    }
                    write!(w, "{indicator},{area},{period},")?;
                    for (list, &i) in codes.iter().zip(&odometer) {
                        write!(w, "{},", list[i])?;
                    }
                    if !delete {
                        values.write(&mut w, written)?;
                    }
                    writeln!(
                        w,
                        ",{unit},{},{action_word},{source}",
                        if delete {
                            String::new()
                        } else {
                            self.unit_mult.to_string()
                        }
                    )?;
                    written += 1;
                    if !advance(&mut odometer, &codes) {
                        break;
                    }
                }
            }
        }
        w.flush()
    }

    /// Why more than [`SyntheticPlan::capacity`] observations cannot be written, naming what
    /// limits the keys.
    fn over_capacity(&self) -> io::Error {
        let combos: u64 = self
            .dimensions
            .iter()
            .map(|(_, c)| c.len() as u64)
            .product();
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "the catalogue allows at most {} distinct keys of {} for node {} ({} member \
                 states × {} {} periods from {MIN_YEAR} to {MAX_YEAR} × {combos} \
                 combinations of disaggregations); ask for fewer observations, or give the \
                 indicator a finer frequency or more disaggregations in the catalogue",
                self.capacity(),
                self.indicator,
                self.node,
                self.areas.len(),
                self.periods,
                self.frequency.word(),
            ),
        )
    }

    /// The header row: the fixed columns around this indicator's dimensions.
    fn write_header(&self, w: &mut impl Write) -> io::Result<()> {
        write!(w, "INDICATOR,REF_AREA,TIME_PERIOD,")?;
        for (id, _) in &self.dimensions {
            write!(w, "{},", csv_cell(id))?;
        }
        writeln!(w, "OBS_VALUE,UNIT_MEASURE,UNIT_MULT,ACTION,SOURCE")
    }
}

/// Synthetic values inside [min, max]: integers when the range is wide, otherwise
/// hundredths, drawn from a seed and the row number.
struct ValueDraw {
    seed: u64,
    decimals: i32,
    factor: f64,
    lo: f64,
    span: u64,
}

impl ValueDraw {
    fn new(min: f64, max: f64, seed: u64) -> Self {
        let decimals = if max - min >= 1000.0 { 0 } else { 2 };
        let factor = 10f64.powi(decimals);
        let lo = (min * factor).ceil();
        let hi = (max * factor).floor();
        let span = (hi - lo).max(0.0) as u64 + 1;
        ValueDraw {
            seed,
            decimals,
            factor,
            lo,
            span,
        }
    }

    /// Writes the value of row `row`.
    fn write(&self, w: &mut impl Write, row: usize) -> io::Result<()> {
        let r = splitmix64(self.seed ^ splitmix64(row as u64));
        let v = self.lo + (r % self.span) as f64;
        if self.decimals == 0 {
            write!(w, "{v:.0}")
        } else {
            write!(w, "{:.2}", v / self.factor)
        }
    }
}

/// The plan for the shipped catalogue (`data/catalogue/catalogue.toml`) and the member states
/// of [`SYNTHETIC_NODE`] in the sample data.
pub fn synthetic_plan() -> io::Result<SyntheticPlan> {
    let invalid = |m: String| io::Error::new(io::ErrorKind::InvalidData, m);
    let cat = Catalogue::from_toml(CATALOGUE_TOML)
        .map_err(|e| invalid(format!("the shipped catalogue is refused: {e:?}")))?;
    let (_, _, states) = sample::member_plan(SYNTHETIC_NODE)
        .ok_or_else(|| invalid(format!("no member plan for {SYNTHETIC_NODE}")))?;
    let areas: Vec<String> = states
        .into_iter()
        .filter(|s| s.since.is_empty() && s.until.is_empty())
        .map(|s| s.iso3)
        .collect();
    SyntheticPlan::for_catalogue(&cat, SYNTHETIC_NODE, &areas).map_err(invalid)
}

/// Writes a clearly synthetic indicator CSV file in the project's simple format, with
/// `observations` rows (each a distinct key) of the shipped catalogue's indicator that allows
/// the most keys for node [`SYNTHETIC_NODE`] (see [`synthetic_plan`]); values are drawn from
/// `seed` inside the catalogue's plausible ranges; every row's SOURCE is
/// [`SYNTHETIC_SOURCE`] and its ACTION `append`. Every row passes the catalogue's validation.
///
/// Fails with `InvalidInput` if the catalogue allows fewer distinct keys than `observations`
/// (see [`SyntheticPlan::capacity`]). With catalogue 1.0.0 that is 57,888 keys (MIG_STOCK:
/// 12 member states × 201 years × 3 SEX × 8 AGE codes): the shipped indicators are all annual.
pub fn synthetic_indicator_csv(
    observations: usize,
    seed: u64,
    out: &mut impl Write,
) -> io::Result<()> {
    synthetic_plan()?.write_csv(observations, seed, ObservationAction::Append, out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::{IndicatorCsvBatches, parse_indicator_csv};
    use rcpfed_core::catalogue::validate_snapshot;
    use rcpfed_core::members::{Member, Membership};
    use rcpfed_core::statement::IndicatorSnapshot;
    use std::collections::{BTreeSet, HashSet};

    fn member() -> Member {
        let (name, kind, states) = sample::member_plan(SYNTHETIC_NODE).unwrap();
        Member {
            id: SYNTHETIC_NODE.into(),
            name,
            kind,
            roles: BTreeSet::new(),
            spiffe_id: String::new(),
            keys: Vec::new(),
            states: states
                .into_iter()
                .map(|s| Membership {
                    iso3: s.iso3,
                    since: None,
                    until: None,
                })
                .collect(),
        }
    }

    #[test]
    fn ten_thousand_rows_pass_the_catalogue() {
        let mut csv = Vec::new();
        synthetic_indicator_csv(10_000, 7, &mut csv).unwrap();
        let text = String::from_utf8(csv).unwrap();
        let docs = parse_indicator_csv(&text, SYNTHETIC_NODE, "load-test").unwrap();
        assert_eq!(docs.len(), 1);
        let doc = &docs[0];
        assert_eq!(doc.snapshot.observations.len(), 10_000);
        assert_eq!(doc.lines[9_999], 10_001);
        let cat = Catalogue::from_toml(CATALOGUE_TOML).unwrap();
        let snap = IndicatorSnapshot::from_proto(doc.snapshot.clone()).unwrap();
        let member = member();
        let check = validate_snapshot(&cat, &snap, &member);
        assert!(check.is_ok(), "{:?}", check.errors.first());
        assert_eq!(check.total_warnings, 0, "{:?}", check.warnings.first());
        let mut keys = HashSet::new();
        for o in &snap.observations {
            assert_eq!(o.source, SYNTHETIC_SOURCE);
            assert!(member.ever_had_state(&o.ref_area), "{}", o.ref_area);
            assert!(o.obs_value.is_some_and(f64::is_finite));
            let mut dims = o.dimensions.clone();
            dims.sort();
            assert!(keys.insert((o.ref_area.clone(), o.time_period.clone(), dims)));
        }
        // Deterministic for one seed, different for another.
        let mut again = Vec::new();
        synthetic_indicator_csv(10_000, 7, &mut again).unwrap();
        assert_eq!(again, text.as_bytes());
        let mut other = Vec::new();
        synthetic_indicator_csv(10_000, 8, &mut other).unwrap();
        assert_ne!(other, text.as_bytes());
    }

    #[test]
    fn every_key_of_the_plan_is_distinct_and_more_are_refused() {
        let plan = synthetic_plan().unwrap();
        assert_eq!(plan.node, SYNTHETIC_NODE);
        assert_eq!(plan.indicator, "MIG_STOCK");
        assert_eq!(plan.areas.len(), 12);
        let capacity = usize::try_from(plan.capacity()).unwrap();
        // The benchmark publishes one million observations of one node.
        assert!(capacity >= 1_000_000, "{capacity}");
        // Writing all of them in a debug test would take minutes; a prefix that spans several
        // areas, periods and disaggregations shows the enumeration has no repeats.
        let sample = 60_000;
        let mut csv = Vec::new();
        plan.write_csv(sample, 1, ObservationAction::Replace, &mut csv)
            .unwrap();
        let mut keys = HashSet::new();
        let mut n = 0;
        for batch in IndicatorCsvBatches::new(csv.as_slice(), 4096).unwrap() {
            for o in batch.unwrap().observations {
                assert_eq!(o.action, ObservationAction::Replace as i32);
                let dims: Vec<(String, String)> =
                    o.dimensions.into_iter().map(|d| (d.id, d.value)).collect();
                assert!(keys.insert((o.ref_area, o.time_period, dims)));
                n += 1;
            }
        }
        assert_eq!(n, sample);
        let err = plan
            .write_csv(capacity + 1, 1, ObservationAction::Append, &mut Vec::new())
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("distinct keys"), "{err}");
        let mut deletes = Vec::new();
        plan.write_csv(3, 1, ObservationAction::Delete, &mut deletes)
            .unwrap();
        let docs = parse_indicator_csv(std::str::from_utf8(&deletes).unwrap(), "c", "n").unwrap();
        assert!(
            docs[0]
                .snapshot
                .observations
                .iter()
                .all(|o| o.obs_value.is_none())
        );
    }

    #[test]
    fn periods_of_every_frequency_parse_and_count() {
        for f in Frequency::ALL {
            let mut periods = Periods::new(f);
            let mut buf = String::new();
            let mut n = 0;
            let mut last = String::new();
            while periods.next_into(&mut buf) {
                assert_eq!(Frequency::of_time_period(&buf), Some(f), "{buf}");
                assert!(buf > last, "{buf} after {last}");
                last.clone_from(&buf);
                n += 1;
            }
            assert_eq!(n, period_count(f), "{f:?}");
        }
        assert_eq!(period_count(Frequency::Daily), 73_414);
    }

    #[test]
    fn plans_follow_the_catalogue() {
        let cat = Catalogue::from_toml(CATALOGUE_TOML).unwrap();
        let areas: Vec<String> = ["LKA", "IND", "WLD"].map(String::from).to_vec();
        // Aggregates are not member states.
        let p = SyntheticPlan::for_indicator(&cat, "SDG_10_C_1", "colombo", &areas).unwrap();
        assert_eq!(p.areas, ["LKA", "IND"]);
        assert_eq!(p.frequency, Frequency::Quarterly);
        assert!(p.min >= 0.0 && p.max <= 30.0, "{p:?}");
        let p = SyntheticPlan::for_indicator(&cat, "SDG_8_8_1", "colombo", &areas).unwrap();
        assert_eq!(p.dimensions.len(), 3);
        assert!(SyntheticPlan::for_indicator(&cat, "NOPE", "colombo", &areas).is_err());
        assert!(SyntheticPlan::for_indicator(&cat, "MIG_STOCK", "colombo", &[]).is_err());
        // Every indicator's plan passes the catalogue.
        let member = member();
        for ind in &cat.indicators {
            let plan = SyntheticPlan::for_indicator(&cat, &ind.code, "colombo", &areas).unwrap();
            let mut csv = Vec::new();
            let n = usize::try_from(plan.capacity().min(500)).unwrap();
            plan.write_csv(n, 3, ObservationAction::Append, &mut csv)
                .unwrap();
            let docs =
                parse_indicator_csv(std::str::from_utf8(&csv).unwrap(), "colombo", "t").unwrap();
            let snap = IndicatorSnapshot::from_proto(docs[0].snapshot.clone()).unwrap();
            let check = validate_snapshot(&cat, &snap, &member);
            assert!(check.is_ok(), "{}: {:?}", ind.code, check.errors.first());
            assert_eq!(
                check.total_warnings,
                0,
                "{}: {:?}",
                ind.code,
                check.warnings.first()
            );
        }
    }
}
