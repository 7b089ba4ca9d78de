//! Field rules for statements. Header identity checks come first and stop at the first failure
//! (they say the statement is in the wrong place); every other rule is checked and all
//! violations are reported together, so a secretariat can fix a document in one go.
//!
//! Indicator snapshots: an inline snapshot's observations are checked here. A chunked snapshot
//! (`chunks` set) is checked in two steps: [`validate_statement`] checks its manifest (and
//! that it carries no inline observations); [`validate_observations`] checks the observations
//! when the chunks arrive, with the same code as the inline path.
//!
//! REF_AREA is an ISO 3166-1 alpha-3 code of a state that belongs to the publishing member over
//! the whole period, or one of [`ValidationContext::aggregates`] (such as `WLD`): aggregates
//! are custodian figures the processes cite, so any publisher may report them, and the
//! membership rule applies to states only.

use crate::catalogue::{Catalogue, CatalogueCheck, CatalogueRows, RowFaults};
use crate::chunks::check_manifest;
use crate::codes::{is_dimension_id, is_indicator_code};
use crate::dates::{parse_date, parse_time_period};
use crate::iso3166::is_alpha3;
use crate::limits::MAX_VIOLATIONS;
use crate::members::Member;
use crate::obskey::key_pairs;
use crate::rejection::{ProblemCount, RejectClass, Rejection, Violation, reasons};
use crate::statement::{
    Body, IndicatorSnapshot, LocalizedText, Observation, ObservationAction, PolicySummary,
    Statement, obs_field,
};
use std::collections::hash_map::{Entry, RandomState};
use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use time::OffsetDateTime;

/// How far in the receiver's future `issued_at` may be (clock skew).
pub const MAX_FUTURE_SKEW: time::Duration = time::Duration::minutes(5);
/// The only body schema version this build understands.
pub const SCHEMA_VERSION: u32 = 1;
/// Earliest plausible `issued_at` year.
pub const MIN_ISSUED_YEAR: i32 = 2000;
/// Longest document name, in bytes.
pub const MAX_DOCUMENT_LEN: usize = 200;
/// Longest title, in characters.
pub const MAX_TITLE_CHARS: usize = 500;
/// Longest summary, in characters.
pub const MAX_SUMMARY_CHARS: usize = 20_000;
/// Longest meeting name, in characters.
pub const MAX_MEETING_CHARS: usize = 500;
/// Longest footnote or source, in characters.
pub const MAX_NOTE_CHARS: usize = 1000;

/// SDMX CL_OBS_STATUS codes.
const OBS_STATUS: &[&str] = &[
    "A", "B", "D", "E", "F", "G", "I", "K", "M", "N", "O", "P", "Q", "S", "T", "U", "V", "W",
];
/// SDMX CL_CONF_STATUS codes.
const CONF_STATUS: &[&str] = &["F", "N", "C", "D", "S", "A", "O", "T", "G", "M", "E"];

/// What a statement is checked against.
#[derive(Clone, Copy, Debug)]
pub struct ValidationContext<'a> {
    /// The receiver's federation id.
    pub federation_id: &'a str,
    /// The member the statement must come from (its id and member states).
    pub member: &'a Member,
    /// The receiver's current time.
    pub now: OffsetDateTime,
    /// REF_AREA codes accepted as aggregates (e.g. `WLD`), exempt from the membership rule;
    /// usually the catalogue's [`crate::catalogue::Catalogue::area_aggregates`], `&[]` for none.
    pub aggregates: &'a [String],
}

/// Collects violations up to [`MAX_VIOLATIONS`].
#[derive(Default)]
struct Violations(Vec<Violation>, usize);

impl Violations {
    fn push(
        &mut self,
        field: impl Into<String>,
        reason: &'static str,
        description: impl Into<String>,
    ) {
        self.1 += 1;
        if self.0.len() < MAX_VIOLATIONS {
            self.0.push(Violation::new(field, reason, description));
        }
    }

    /// Counts a violation; `make` builds its (field, description) only while the list has
    /// room, so a million bad rows do not build a million messages.
    fn push_with<F: Into<String>, D: Into<String>>(
        &mut self,
        reason: &'static str,
        make: impl FnOnce() -> (F, D),
    ) {
        self.1 += 1;
        if self.0.len() < MAX_VIOLATIONS {
            let (field, description) = make();
            self.0.push(Violation::new(field, reason, description));
        }
    }

    fn too_long(&mut self, field: &str, text: &str, max: usize) {
        let n = text.chars().count();
        if n > max {
            self.push(
                field,
                reasons::TOO_LONG,
                format!("is {n} characters long; the limit is {max}"),
            );
        }
    }
}

/// Checks `st` against every rule; see the module docs for the order.
pub fn validate_statement(st: &Statement, ctx: &ValidationContext) -> Result<(), Rejection> {
    check_identity(st, ctx)?;
    let mut v = Violations::default();
    check_header(st, ctx, &mut v);
    match &st.body {
        Body::Policy(p) => check_policy(p, &mut v),
        Body::Indicators(s) => check_indicators(s, ctx, &[], &mut v, None),
    }
    into_result(v)
}

/// The header identity checks, which stop at the first failure.
fn check_identity(st: &Statement, ctx: &ValidationContext) -> Result<(), Rejection> {
    let h = &st.header;
    if h.federation_id != ctx.federation_id {
        return Err(Rejection::new(
            RejectClass::Forbidden,
            reasons::WRONG_FEDERATION,
            format!(
                "the statement is for federation {:?}, but this is federation {:?}",
                h.federation_id, ctx.federation_id
            ),
        ));
    }
    if h.node_id != ctx.member.id {
        return Err(Rejection::new(
            RejectClass::Forbidden,
            reasons::NODE_MISMATCH,
            format!(
                "the statement is issued by node {:?}, but it comes from {:?}; a node publishes only as itself",
                h.node_id, ctx.member.id
            ),
        ));
    }
    if h.schema_version != SCHEMA_VERSION {
        return Err(Rejection::new(
            RejectClass::Invalid,
            reasons::UNSUPPORTED_SCHEMA_VERSION,
            format!(
                "schema_version {} is not supported; use {SCHEMA_VERSION}",
                h.schema_version
            ),
        ));
    }
    Ok(())
}

/// Checks a policy summary body alone (the node checks a document before building a header).
pub fn validate_policy(p: &PolicySummary) -> Result<(), Rejection> {
    let mut v = Violations::default();
    check_policy(p, &mut v);
    into_result(v)
}

/// Checks an indicator snapshot body alone against `ctx.member`'s member states.
pub fn validate_indicators(
    s: &IndicatorSnapshot,
    ctx: &ValidationContext,
) -> Result<(), Rejection> {
    let mut v = Violations::default();
    check_indicators(s, ctx, &[], &mut v, None);
    into_result(v)
}

/// Checks a snapshot's observations passed apart from the snapshot (a chunked snapshot's, once
/// its chunks have arrived, in order) with the same rules as an inline snapshot's, duplicate
/// keys included across the whole list. `observations[i]` is named
/// `indicator_snapshot.observations[i]`, so pass the whole snapshot.
pub fn validate_observations(
    indicator: &str,
    observations: &[Observation],
    ctx: &ValidationContext,
) -> Result<(), Rejection> {
    let mut v = Violations::default();
    check_observations(indicator, observations, ctx, &[], &mut v, None);
    into_result(v)
}

/// Everything found wrong with one document by separate checks (the statement rules, the
/// catalogue rules, the actions), kept together so that one refusal reports all of it: the
/// errors merged in **document order** (the header, then the snapshot's own fields, then each
/// observation by position; for one observation, in the order the checks were added), at
/// most [`MAX_VIOLATIONS`] listed, every one counted.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Findings {
    /// The first errors in document order, at most [`MAX_VIOLATIONS`].
    pub errors: Vec<Violation>,
    /// Errors found (may exceed `errors.len()`).
    pub total_errors: usize,
    /// Whether `total_errors` is a lower bound: a check stopped at its limit.
    pub errors_at_least: bool,
    /// Errors of the statement rules (`validate.rs`) among `total_errors`; the rest come from
    /// the catalogue and the actions.
    pub rule_errors: usize,
    /// Warnings (values outside a warning range), at most [`MAX_VIOLATIONS`].
    pub warnings: Vec<Violation>,
    /// Warnings found (may exceed `warnings.len()`).
    pub total_warnings: usize,
}

/// Where a violation's field is in the document: the header first, then the body's own fields,
/// then observation `i` by position.
fn document_position(field: &str) -> (u8, usize) {
    if field.starts_with("header.") {
        return (0, 0);
    }
    let index = field
        .strip_prefix("indicator_snapshot.observations[")
        .and_then(|rest| rest.split_once(']'))
        .and_then(|(i, _)| i.parse::<usize>().ok());
    match index {
        Some(i) => (2, i),
        None => (1, 0),
    }
}

impl Findings {
    /// Adds the errors of one check: `list` (its first errors in document order), `total`
    /// found, `at_least` when the check stopped at its limit.
    pub fn add_errors(&mut self, list: Vec<Violation>, total: usize, at_least: bool) {
        self.total_errors += total.max(list.len());
        self.errors_at_least |= at_least;
        if list.is_empty() {
            return;
        }
        // Both lists are in document order, so a stable sort of the two is their merge; the
        // first MAX_VIOLATIONS of the union are among the first MAX_VIOLATIONS of each.
        self.errors.extend(list);
        self.errors.sort_by_key(|v| document_position(&v.field));
        self.errors.truncate(MAX_VIOLATIONS);
    }

    /// Adds the catalogue check's errors and warnings.
    pub fn add_catalogue(&mut self, check: CatalogueCheck) {
        self.add_errors(check.errors, check.total_errors, false);
        self.total_warnings += check.total_warnings;
        let room = MAX_VIOLATIONS.saturating_sub(self.warnings.len());
        self.warnings.extend(check.warnings.into_iter().take(room));
    }

    fn add_catalogue_rows(
        &mut self,
        rows: Option<CatalogueRows<'_>>,
        unknown: Option<CatalogueCheck>,
    ) {
        if let Some(check) = unknown {
            self.add_catalogue(check);
        }
        if let Some(rows) = rows {
            self.add_catalogue(rows.finish());
        }
    }

    /// Adds everything `other` found (another part of the same document).
    pub fn absorb(&mut self, other: Findings) {
        self.add_errors(other.errors, other.total_errors, other.errors_at_least);
        self.rule_errors += other.rule_errors;
        self.total_warnings += other.total_warnings;
        let room = MAX_VIOLATIONS.saturating_sub(self.warnings.len());
        self.warnings.extend(other.warnings.into_iter().take(room));
    }

    fn add_rules(&mut self, v: Violations) {
        let Violations(list, total) = v;
        self.rule_errors += total;
        self.add_errors(list, total, false);
    }

    /// Whether nothing refuses the document (warnings allowed).
    pub fn is_ok(&self) -> bool {
        self.total_errors == 0
    }

    /// The warnings when there is no error; otherwise one refusal listing the errors
    /// (docs/spec/statement.md §6: the reason they share or `VALIDATION_FAILED`, the first in the
    /// message with the count of the others).
    pub fn into_result(self) -> Result<Vec<Violation>, Rejection> {
        let count = if self.errors_at_least {
            ProblemCount::AtLeast(self.total_errors)
        } else {
            ProblemCount::Exactly(self.total_errors)
        };
        match Rejection::from_violations(self.errors, count) {
            Some(rejection) => Err(rejection),
            None => Ok(self.warnings),
        }
    }
}

/// Checks `st` in one pass: the header identity checks first (they stop at the first failure:
/// the statement is in the wrong place), then every field rule of [`validate_statement`] and,
/// for an indicator snapshot when `catalogue` is given, the catalogue rules
/// ([`crate::catalogue::validate_observations_against`]), row by row after the statement
/// rules, which leave out the fields the statement rules refused already (one problem, one
/// violation), all collected in [`Findings`]. With a catalogue,
/// duplicate keys are judged by its key rule ([`crate::obskey`]): an observation that leaves
/// out a dimension with a default repeats one that gives the default explicitly. A chunked
/// snapshot's observations are not here: [`check_observations_all`] checks them.
pub fn check_statement(
    st: &Statement,
    ctx: &ValidationContext,
    catalogue: Option<&Catalogue>,
) -> Result<Findings, Rejection> {
    check_identity(st, ctx)?;
    let mut v = Violations::default();
    check_header(st, ctx, &mut v);
    let mut findings = Findings::default();
    match &st.body {
        Body::Policy(p) => {
            check_policy(p, &mut v);
            findings.add_rules(v);
        }
        Body::Indicators(s) => {
            let defaults = key_defaults(catalogue, &s.indicator);
            let (mut rows, unknown) = catalogue_rows(catalogue, &s.indicator);
            check_indicators(s, ctx, &defaults, &mut v, rows.as_mut());
            findings.add_rules(v);
            findings.add_catalogue_rows(rows, unknown);
        }
    }
    Ok(findings)
}

/// A chunked snapshot's observations once its chunks are in (or any observations passed apart
/// from their snapshot), in one pass: the statement rules of [`validate_observations`] and,
/// when `catalogue` is given, the catalogue rules, with duplicate keys judged by its key rule.
pub fn check_observations_all(
    indicator: &str,
    observations: &[Observation],
    ctx: &ValidationContext,
    catalogue: Option<&Catalogue>,
) -> Findings {
    let defaults = key_defaults(catalogue, indicator);
    let (mut rows, unknown) = catalogue_rows(catalogue, indicator);
    let mut v = Violations::default();
    check_observations(
        indicator,
        observations,
        ctx,
        &defaults,
        &mut v,
        rows.as_mut(),
    );
    let mut findings = Findings::default();
    findings.add_rules(v);
    findings.add_catalogue_rows(rows, unknown);
    findings
}

/// The header rules alone ([`check_statement`] without the body): the identity checks, which
/// stop at the first failure, then every header field rule. For a snapshot that streams, whose
/// observations [`ObservationRows`] checks as they arrive.
pub fn check_header_rules(st: &Statement, ctx: &ValidationContext) -> Result<Findings, Rejection> {
    check_identity(st, ctx)?;
    let mut v = Violations::default();
    check_header(st, ctx, &mut v);
    let mut findings = Findings::default();
    findings.add_rules(v);
    Ok(findings)
}

/// The observation rules of [`check_observations_all`] for a snapshot that arrives in pieces:
/// each row is checked when it comes ([`ObservationRows::check`]), so the snapshot never has
/// to be held whole. The caller decides the one cross-row rule of the statement rules, the
/// duplicate key (it passes the position of the earlier observation with the same key, under
/// [`ObservationRows::key_defaults`]); the catalogue's one cross-row rule, one frequency per
/// snapshot, is kept here. Rows must come in position order, from 0. What [`Self::finish`]
/// gives equals what [`check_observations_all`] gives for the whole list.
pub struct ObservationRows<'c> {
    ctx: ValidationContext<'c>,
    defaults: Vec<(String, String)>,
    rules: Violations,
    catalogue: Option<CatalogueRows<'c>>,
    unknown: Option<CatalogueCheck>,
    rows: usize,
}

impl<'c> ObservationRows<'c> {
    /// The checks of `indicator`'s observations under `ctx` and, when given, `catalogue`.
    pub fn new(
        indicator: &str,
        ctx: ValidationContext<'c>,
        catalogue: Option<&'c Catalogue>,
    ) -> Self {
        let mut rules = Violations::default();
        check_indicator_code(indicator, &mut rules);
        let (rows, unknown) = catalogue_rows(catalogue, indicator);
        ObservationRows {
            ctx,
            defaults: key_defaults(catalogue, indicator),
            rules,
            catalogue: rows,
            unknown,
            rows: 0,
        }
    }

    /// The catalogue defaults of the key rule: an observation that leaves one out has it.
    pub fn key_defaults(&self) -> &[(String, String)] {
        &self.defaults
    }

    /// Checks observation `i` (the next one); `repeat_of`: the earlier observation with the
    /// same key, if any.
    pub fn check(&mut self, i: usize, o: &Observation, repeat_of: Option<usize>) {
        self.rows += 1;
        check_row(
            i,
            o,
            repeat_of,
            &self.ctx,
            &self.defaults,
            &mut self.rules,
            self.catalogue.as_mut(),
        );
    }

    /// Whether an error was found so far.
    pub fn has_errors(&self) -> bool {
        self.rules.1 > 0
            || self.unknown.as_ref().is_some_and(|u| !u.is_ok())
            || self.catalogue.as_ref().is_some_and(|c| c.has_errors())
    }

    /// Everything the rows gave.
    pub fn finish(self) -> Findings {
        let mut rules = self.rules;
        if self.rows == 0 {
            push_no_observations(&mut rules);
        }
        let mut findings = Findings::default();
        findings.add_rules(rules);
        findings.add_catalogue_rows(self.catalogue, self.unknown);
        findings
    }
}

/// The key of an observation as bytes, equal for two observations exactly when the duplicate
/// rule ([`repeated_keys`]) calls their keys the same: REF_AREA, TIME_PERIOD and the
/// dimensions with the absent `defaults` filled in, sorted, each length-prefixed.
pub fn key_bytes(o: &Observation, defaults: &[(String, String)]) -> Vec<u8> {
    let (ref_area, time_period, pairs) = canonical_key(o, defaults);
    let mut out = Vec::with_capacity(64);
    let mut put = |text: &str| {
        out.extend_from_slice(&(text.len() as u32).to_le_bytes());
        out.extend_from_slice(text.as_bytes());
    };
    put(ref_area);
    put(time_period);
    for (id, value) in pairs {
        put(id);
        put(value);
    }
    out
}

/// The catalogue's row checks for `indicator`, or its `UNKNOWN_INDICATOR` refusal; neither
/// without a catalogue, nor for a code that is not an indicator code at all (the statement
/// rules refuse it).
fn catalogue_rows<'c>(
    catalogue: Option<&'c Catalogue>,
    indicator: &str,
) -> (Option<CatalogueRows<'c>>, Option<CatalogueCheck>) {
    match catalogue {
        Some(cat) if is_indicator_code(indicator) => match CatalogueRows::new(cat, indicator) {
            Ok(rows) => (Some(rows), None),
            Err(unknown) => (None, Some(unknown)),
        },
        _ => (None, None),
    }
}

/// The key defaults of `indicator` in `catalogue` (none without one).
fn key_defaults(catalogue: Option<&Catalogue>, indicator: &str) -> Vec<(String, String)> {
    catalogue
        .and_then(|c| c.indicator(indicator))
        .map(|i| i.key_defaults())
        .unwrap_or_default()
}

fn into_result(v: Violations) -> Result<(), Rejection> {
    let Violations(list, total) = v;
    match Rejection::from_violations(list, ProblemCount::Exactly(total)) {
        Some(rejection) => Err(rejection),
        None => Ok(()),
    }
}

fn is_document_segment(seg: &str) -> bool {
    // "." and ".." would let anything that normalises paths place a document under another
    // member's name (regions/x/../colombo/y).
    !seg.is_empty()
        && seg != "."
        && seg != ".."
        && seg
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

/// Whether `document` is "regions/{node_id}/" followed by one or more lowercase segments,
/// at most [`MAX_DOCUMENT_LEN`] bytes.
pub fn is_valid_document_name(document: &str, node_id: &str) -> bool {
    let prefix = format!("regions/{node_id}/");
    document.len() <= MAX_DOCUMENT_LEN
        && document
            .strip_prefix(&prefix)
            .is_some_and(|rest| rest.split('/').all(is_document_segment))
}

fn check_header(st: &Statement, ctx: &ValidationContext, v: &mut Violations) {
    let h = &st.header;
    if h.seq == 0 {
        v.push("header.seq", reasons::INVALID_SEQ, "must be 1 or more");
    }
    match (h.seq == 1, h.prev_digest.is_some()) {
        (true, true) => v.push(
            "header.prev_digest",
            reasons::INVALID_PREV_DIGEST,
            "must be empty for the first statement (seq 1)",
        ),
        (false, false) if h.seq > 1 => v.push(
            "header.prev_digest",
            reasons::INVALID_PREV_DIGEST,
            format!(
                "is required for seq {}: set it to the digest of statement {}",
                h.seq,
                h.seq - 1
            ),
        ),
        _ => {}
    }
    if !is_valid_document_name(&h.document, &h.node_id) {
        v.push(
            "header.document",
            reasons::INVALID_DOCUMENT_NAME,
            format!(
                "{} must start with \"regions/{}/\" followed by segments of a-z, 0-9, '.', '_', '-' (not \".\" or \"..\"), at most {MAX_DOCUMENT_LEN} bytes",
                crate::rejection::quote(&h.document),
                h.node_id
            ),
        );
    }
    if h.revision == 0 {
        v.push(
            "header.revision",
            reasons::INVALID_REVISION,
            "must be 1 or more",
        );
    }
    if h.issued_at > ctx.now + MAX_FUTURE_SKEW {
        v.push(
            "header.issued_at",
            reasons::ISSUED_AT_IN_FUTURE,
            format!(
                "issued_at {} is {} ahead of the receiving server's clock (limit {}); check \
                 the node's clock (NTP)",
                h.issued_at,
                crate::clock::describe(h.issued_at - ctx.now),
                crate::clock::describe(MAX_FUTURE_SKEW)
            ),
        );
    } else if h.issued_at.year() < MIN_ISSUED_YEAR {
        v.push(
            "header.issued_at",
            reasons::ISSUED_AT_IN_FUTURE,
            format!(
                "{} is before {MIN_ISSUED_YEAR}; check the node's clock",
                h.issued_at
            ),
        );
    }
}

/// Whether `tag` looks like a BCP 47 tag: a 2-3 letter lowercase primary subtag, then
/// optional `-` subtags of 1-8 ASCII letters or digits.
pub fn is_language_tag(tag: &str) -> bool {
    let mut parts = tag.split('-');
    let primary_ok = parts
        .next()
        .is_some_and(|p| (2..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_lowercase()));
    primary_ok
        && parts.all(|s| (1..=8).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric()))
}

fn check_texts(
    list: &[LocalizedText],
    field: &str,
    empty_rule: &'static str,
    max: usize,
    v: &mut Violations,
) {
    let mut seen = HashSet::new();
    for (i, t) in list.iter().enumerate() {
        let f = format!("{field}[{i}]");
        if !is_language_tag(&t.language) {
            v.push(
                format!("{f}.language"),
                reasons::INVALID_LANGUAGE,
                format!(
                    "{:?} is not a language tag such as \"en\", \"fr\" or \"pt-BR\"",
                    t.language
                ),
            );
        } else if !seen.insert(t.language.to_ascii_lowercase()) {
            v.push(
                format!("{f}.language"),
                reasons::DUPLICATE_LANGUAGE,
                format!(
                    "{:?} appears more than once; give one text per language",
                    t.language
                ),
            );
        }
        if t.text.trim().is_empty() {
            v.push(format!("{f}.text"), empty_rule, "must not be empty");
        }
        v.too_long(&format!("{f}.text"), &t.text, max);
    }
}

/// Whether `t` is an SDG target like "10.7" or "10.c".
fn is_sdg_target(t: &str) -> bool {
    let Some((goal, target)) = t.split_once('.') else {
        return false;
    };
    (1..=2).contains(&goal.len())
        && goal.bytes().all(|b| b.is_ascii_digit())
        && (1..=2).contains(&target.len())
        && target
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
}

fn is_url(u: &str) -> bool {
    let rest = u
        .strip_prefix("https://")
        .or_else(|| u.strip_prefix("http://"));
    rest.is_some_and(|r| !r.is_empty() && !u.chars().any(char::is_whitespace))
}

fn check_policy(p: &PolicySummary, v: &mut Violations) {
    if !p.title.iter().any(|t| !t.text.trim().is_empty()) {
        v.push(
            "policy_summary.title",
            reasons::EMPTY_TITLE,
            "needs at least one non-empty title",
        );
    }
    check_texts(
        &p.title,
        "policy_summary.title",
        reasons::EMPTY_TITLE,
        MAX_TITLE_CHARS,
        v,
    );
    check_texts(
        &p.summary,
        "policy_summary.summary",
        reasons::FIELD_REQUIRED,
        MAX_SUMMARY_CHARS,
        v,
    );
    v.too_long("policy_summary.meeting", &p.meeting, MAX_MEETING_CHARS);
    if !p.meeting_date.is_empty() && parse_date(&p.meeting_date).is_none() {
        v.push(
            "policy_summary.meeting_date",
            reasons::INVALID_DATE,
            format!("{:?} is not a YYYY-MM-DD date", p.meeting_date),
        );
    }
    for (i, c) in p.countries.iter().enumerate() {
        if !is_alpha3(c) {
            v.push(
                format!("policy_summary.countries[{i}]"),
                reasons::INVALID_COUNTRY_CODE,
                format!("{c:?} is not an ISO 3166-1 alpha-3 code such as \"LKA\""),
            );
        }
    }
    let mut seen = HashSet::new();
    for (i, g) in p.gcm_objectives.iter().enumerate() {
        let f = format!("policy_summary.gcm_objectives[{i}]");
        if !(1..=23).contains(g) {
            v.push(
                f,
                reasons::INVALID_GCM_OBJECTIVE,
                format!("{g} is not a GCM objective (1 to 23)"),
            );
        } else if !seen.insert(*g) {
            v.push(
                f,
                reasons::INVALID_GCM_OBJECTIVE,
                format!("objective {g} is listed twice"),
            );
        }
    }
    for (i, t) in p.sdg_targets.iter().enumerate() {
        if !is_sdg_target(t) {
            v.push(
                format!("policy_summary.sdg_targets[{i}]"),
                reasons::INVALID_SDG_TARGET,
                format!("{t:?} is not an SDG target such as \"10.7\" or \"10.c\""),
            );
        }
    }
    for (i, r) in p.references.iter().enumerate() {
        let f = format!("policy_summary.references[{i}]");
        if !is_url(&r.url) {
            v.push(
                format!("{f}.url"),
                reasons::INVALID_URL,
                format!(
                    "{:?} is not an http:// or https:// URL without spaces",
                    r.url
                ),
            );
        }
        v.too_long(&format!("{f}.title"), &r.title, MAX_TITLE_CHARS);
    }
}

fn check_indicators(
    s: &IndicatorSnapshot,
    ctx: &ValidationContext,
    defaults: &[(String, String)],
    v: &mut Violations,
    catalogue: Option<&mut CatalogueRows<'_>>,
) {
    let Some(manifest) = &s.chunks else {
        check_observations(&s.indicator, &s.observations, ctx, defaults, v, catalogue);
        return;
    };
    // A chunked snapshot: the header carries only the manifest; its observations are checked
    // with [`validate_observations`] when the chunks arrive.
    check_indicator_code(&s.indicator, v);
    if !s.observations.is_empty() {
        v.push(
            "indicator_snapshot.observations",
            reasons::INVALID_CHUNK_MANIFEST,
            format!(
                "must be empty when chunks are set: the {} observations travel in the chunks",
                manifest.observation_count
            ),
        );
    }
    if let Err(e) = check_manifest(manifest) {
        if e.violations.is_empty() {
            v.push("indicator_snapshot.chunks", e.reason, e.message);
        }
        for x in e.violations {
            v.push(x.field, x.reason, x.description);
        }
    }
}

fn check_indicator_code(indicator: &str, v: &mut Violations) {
    if !is_indicator_code(indicator) {
        v.push(
            "indicator_snapshot.indicator",
            reasons::INVALID_INDICATOR_CODE,
            format!(
                "{indicator:?} is not an indicator code such as \"SDG_10_7_3\" (upper-case letters, digits, '_')"
            ),
        );
    }
}

/// An observation's key in canonical form: REF_AREA, TIME_PERIOD, and the dimensions with the
/// absent defaults filled in, in id order ([`crate::obskey`]).
fn canonical_key<'a>(
    o: &'a Observation,
    defaults: &'a [(String, String)],
) -> (&'a str, &'a str, Vec<(&'a str, &'a str)>) {
    (
        &o.ref_area,
        &o.time_period,
        key_pairs(&o.dimensions, defaults).0,
    )
}

/// The observations whose key (REF_AREA, TIME_PERIOD and the dimensions in any order, an
/// absent dimension with a default counting as that default; `defaults` from
/// [`crate::catalogue::Indicator::key_defaults`], empty for none) repeats an earlier
/// observation's, ascending, each with the position of the first observation with that key:
/// the `DUPLICATE_KEY` violations.
/// Keys are sorted by a 64-bit fingerprint and compared in full only where fingerprints meet:
/// a million keys cost one sort, no allocation each, and the per-process random hash keys
/// mean a publisher cannot craft colliding keys to slow the check down.
pub fn repeated_keys(
    observations: &[Observation],
    defaults: &[(String, String)],
) -> Vec<(usize, usize)> {
    let hasher = RandomState::new();
    // Order-independent in the dimensions: the pair hashes are added; an absent default adds
    // the hash of its pair, as if it were given.
    let fingerprint = |o: &Observation| {
        let given = o.dimensions.iter().fold(
            hasher.hash_one((&o.ref_area, &o.time_period)),
            |acc, pair| acc.wrapping_add(hasher.hash_one(pair)),
        );
        defaults
            .iter()
            .filter(|(id, _)| !o.dimensions.iter().any(|(d, _)| d == id))
            .fold(given, |acc, pair| acc.wrapping_add(hasher.hash_one(pair)))
    };
    let mut order: Vec<(u64, usize)> = observations
        .iter()
        .enumerate()
        .map(|(i, o)| (fingerprint(o), i))
        .collect();
    order.sort_unstable();
    let mut repeats = Vec::new();
    for run in order
        .chunk_by(|a, b| a.0 == b.0)
        .filter(|run| run.len() > 1)
    {
        // Within a run positions ascend, so the first of each key is the one kept.
        let mut seen = HashMap::new();
        for &(_, i) in run {
            if let Some(o) = observations.get(i) {
                match seen.entry(canonical_key(o, defaults)) {
                    Entry::Occupied(first) => repeats.push((i, *first.get())),
                    Entry::Vacant(slot) => {
                        slot.insert(i);
                    }
                }
            }
        }
    }
    repeats.sort_unstable();
    repeats
}

/// The rules of an inline snapshot's observations, also run on a chunked snapshot's
/// observations once they have arrived: one code path for both.
fn check_observations(
    indicator: &str,
    observations: &[Observation],
    ctx: &ValidationContext,
    defaults: &[(String, String)],
    v: &mut Violations,
    mut catalogue: Option<&mut CatalogueRows<'_>>,
) {
    check_indicator_code(indicator, v);
    if observations.is_empty() {
        push_no_observations(v);
    }
    let mut repeats = repeated_keys(observations, defaults).into_iter().peekable();
    for (i, o) in observations.iter().enumerate() {
        let repeat_of = repeats.next_if(|(r, _)| *r == i).map(|(_, first)| first);
        check_row(i, o, repeat_of, ctx, defaults, v, catalogue.as_deref_mut());
    }
}

fn push_no_observations(v: &mut Violations) {
    v.push(
        "indicator_snapshot.observations",
        reasons::NO_OBSERVATIONS,
        "needs at least one observation",
    );
}

/// The rules of observation `i` alone, then the catalogue's for it; `repeat_of` is the
/// position of the earlier observation with the same key, if any (the one cross-row rule,
/// decided by the caller: in memory for a whole snapshot, in a staging index for a stream).
fn check_row(
    i: usize,
    o: &Observation,
    repeat_of: Option<usize>,
    ctx: &ValidationContext,
    defaults: &[(String, String)],
    v: &mut Violations,
    catalogue: Option<&mut CatalogueRows<'_>>,
) {
    // What this row's rules refuse; the catalogue leaves those fields alone.
    let mut faults = RowFaults::default();
    check_period_and_area(i, o, ctx, &mut faults, v);
    check_dimensions(i, o, &mut faults, v);
    check_value_for_action(i, o, v);
    check_status_codes(i, o, &mut faults, v);
    check_note_lengths(i, o, &mut faults, v);
    if let Some(first) = repeat_of {
        push_duplicate_key(i, first, o, defaults, v);
    }
    if let Some(rows) = catalogue {
        rows.check(i, o, &faults);
    }
}

/// TIME_PERIOD must parse; REF_AREA must be a member state over that whole period, or an
/// aggregate.
fn check_period_and_area(
    i: usize,
    o: &Observation,
    ctx: &ValidationContext,
    faults: &mut RowFaults,
    v: &mut Violations,
) {
    let period = parse_time_period(&o.time_period);
    if period.is_none() {
        faults.time_period = true;
        v.push_with(reasons::INVALID_TIME_PERIOD, || {
            let description = format!(
                "{:?} is not a time period such as \"2024\", \"2024-S1\", \"2024-Q3\", \"2024-05\" or \"2024-05-17\"",
                o.time_period
            );
            (obs_field(i, ".time_period"), description)
        });
    }
    if is_alpha3(&o.ref_area) {
        if let Some(range) = period
            && !ctx
                .member
                .has_state_during(&o.ref_area, range.start, range.end)
        {
            faults.ref_area = true;
            v.push_with(reasons::NOT_A_MEMBER_STATE, || {
                (
                    obs_field(i, ".ref_area"),
                    format!(
                        "{:?} is not a member state of {} for the whole of {}",
                        o.ref_area, ctx.member.id, o.time_period
                    ),
                )
            });
        }
    } else if !ctx.aggregates.contains(&o.ref_area) {
        faults.ref_area = true;
        v.push_with(reasons::INVALID_COUNTRY_CODE, || {
            let description = if ctx.aggregates.is_empty() {
                format!(
                    "{:?} is not an ISO 3166-1 alpha-3 code such as \"LKA\"",
                    o.ref_area
                )
            } else {
                format!(
                    "{:?} is neither an ISO 3166-1 alpha-3 code such as \"LKA\" nor an aggregate ({})",
                    o.ref_area,
                    ctx.aggregates.join(", ")
                )
            };
            (obs_field(i, ".ref_area"), description)
        });
    }
}

/// Each dimension: a well-formed id, not REF_AREA or TIME_PERIOD, not repeated, with a value.
fn check_dimensions(i: usize, o: &Observation, faults: &mut RowFaults, v: &mut Violations) {
    for (j, (id, value)) in o.dimensions.iter().enumerate() {
        let df = |what: &str| obs_field(i, &format!(".dimensions[{j}].{what}"));
        let repeated = o.dimensions[..j].iter().any(|(earlier, _)| earlier == id);
        let dimension_ok = is_dimension_id(id)
            && id != "REF_AREA"
            && id != "TIME_PERIOD"
            && !repeated
            && !value.is_empty();
        if !dimension_ok {
            faults.dimensions.push(j);
        }
        if !is_dimension_id(id) {
            v.push_with(reasons::INVALID_DIMENSION, || {
                let description = format!(
                    "{id:?} is not a dimension id such as \"SEX\" (upper-case letters, digits, '_')"
                );
                (df("id"), description)
            });
        } else if id == "REF_AREA" || id == "TIME_PERIOD" {
            v.push_with(reasons::INVALID_DIMENSION, || {
                (
                    df("id"),
                    format!("{id} is set by the observation's own field, not as a dimension"),
                )
            });
        } else if repeated {
            v.push_with(reasons::INVALID_DIMENSION, || {
                (df("id"), format!("{id} appears more than once"))
            });
        }
        if value.is_empty() {
            v.push_with(reasons::INVALID_DIMENSION, || {
                (df("value"), format!("dimension {id} needs a value"))
            });
        }
    }
}

/// Append and replace carry a finite value; delete carries none.
fn check_value_for_action(i: usize, o: &Observation, v: &mut Violations) {
    match (o.action, o.obs_value) {
        (ObservationAction::Append | ObservationAction::Replace, None) => {
            v.push_with(reasons::VALUE_REQUIRED, || {
                (
                    obs_field(i, ".obs_value"),
                    "is required to append or replace an observation",
                )
            })
        }
        (ObservationAction::Append | ObservationAction::Replace, Some(x)) if !x.is_finite() => v
            .push_with(reasons::NON_FINITE_VALUE, || {
                (
                    obs_field(i, ".obs_value"),
                    format!("{x} is not a finite number"),
                )
            }),
        (ObservationAction::Delete, Some(_)) => v.push_with(reasons::VALUE_NOT_ALLOWED, || {
            (
                obs_field(i, ".obs_value"),
                "must be absent when deleting an observation",
            )
        }),
        _ => {}
    }
}

/// OBS_STATUS and CONF_STATUS (when given) are SDMX codes; UNIT_MULT is 0 to 12.
fn check_status_codes(i: usize, o: &Observation, faults: &mut RowFaults, v: &mut Violations) {
    if !o.obs_status.is_empty() && !OBS_STATUS.contains(&o.obs_status.as_str()) {
        faults.obs_status = true;
        v.push_with(reasons::INVALID_OBS_STATUS, || {
            (
                obs_field(i, ".obs_status"),
                format!(
                    "{:?} is not an SDMX OBS_STATUS code such as \"A\", \"E\" or \"P\"",
                    o.obs_status
                ),
            )
        });
    }
    if !o.conf_status.is_empty() && !CONF_STATUS.contains(&o.conf_status.as_str()) {
        faults.conf_status = true;
        v.push_with(reasons::INVALID_CONF_STATUS, || {
            (
                obs_field(i, ".conf_status"),
                format!(
                    "{:?} is not an SDMX CONF_STATUS code such as \"F\" or \"C\"",
                    o.conf_status
                ),
            )
        });
    }
    if !(0..=12).contains(&o.unit_mult) {
        faults.unit_mult = true;
        v.push_with(reasons::INVALID_UNIT_MULT, || {
            (
                obs_field(i, ".unit_mult"),
                format!("{} is not a power of ten from 0 to 12", o.unit_mult),
            )
        });
    }
}

/// Footnote, source and unit of measure are at most [`MAX_NOTE_CHARS`] characters.
fn check_note_lengths(i: usize, o: &Observation, faults: &mut RowFaults, v: &mut Violations) {
    for (column, text) in [
        (".footnote", &o.footnote),
        (".source", &o.source),
        (".unit_measure", &o.unit_measure),
    ] {
        // A string of at most MAX_NOTE_CHARS bytes has at most as many characters.
        if text.len() > MAX_NOTE_CHARS {
            let before = v.1;
            v.too_long(&obs_field(i, column), text, MAX_NOTE_CHARS);
            faults.unit_measure |= column == ".unit_measure" && v.1 > before;
        }
    }
}

/// The `DUPLICATE_KEY` violation of observation `i`, whose key repeats observation `first`'s.
fn push_duplicate_key(
    i: usize,
    first: usize,
    o: &Observation,
    defaults: &[(String, String)],
    v: &mut Violations,
) {
    v.push_with(reasons::DUPLICATE_KEY, || {
        let (pairs, filled) = key_pairs(&o.dimensions, defaults);
        let dims: Vec<String> = pairs.iter().map(|(id, c)| format!("{id}={c}")).collect();
        let dims = if dims.is_empty() {
            "no dimensions".to_string()
        } else {
            dims.join(", ")
        };
        let note = if filled {
            "; a dimension left out counts as its catalogue default"
        } else {
            ""
        };
        (
            obs_field(i, ""),
            format!(
                "has the same key as observation {first} ({}, {}, {dims}){note}",
                o.ref_area, o.time_period
            ),
        )
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Digest;
    use crate::members::{Membership, Role};
    use crate::statement::{Observation, samples};
    use time::macros::{date, datetime};

    fn colombo() -> Member {
        Member {
            id: "colombo".into(),
            name: "Colombo Process".into(),
            kind: "RCP".into(),
            roles: [Role::Publisher, Role::Reader].into_iter().collect(),
            spiffe_id: "spiffe://rcp-federation/node/colombo".into(),
            keys: Vec::new(),
            states: vec![
                Membership {
                    iso3: "LKA".into(),
                    since: None,
                    until: None,
                },
                Membership {
                    iso3: "BGD".into(),
                    since: Some(date!(2003 - 04 - 01)),
                    until: None,
                },
                // Left mid-2024 (synthetic, for the test).
                Membership {
                    iso3: "NPL".into(),
                    since: None,
                    until: Some(date!(2024 - 07 - 01)),
                },
            ],
        }
    }

    fn check(st: &Statement) -> Result<(), Rejection> {
        let member = colombo();
        let ctx = ValidationContext {
            federation_id: "rcp-federation",
            member: &member,
            now: datetime!(2024-05-17 10:00 UTC),
            aggregates: &[],
        };
        validate_statement(st, &ctx)
    }

    fn policy_of(st: &mut Statement) -> &mut PolicySummary {
        match &mut st.body {
            Body::Policy(p) => p,
            Body::Indicators(_) => unreachable!("policy sample"),
        }
    }

    fn obs_of(st: &mut Statement) -> &mut IndicatorSnapshot {
        match &mut st.body {
            Body::Indicators(s) => s,
            Body::Policy(_) => unreachable!("indicator sample"),
        }
    }

    fn first_obs(st: &mut Statement) -> &mut Observation {
        &mut obs_of(st).observations[0]
    }

    #[test]
    fn samples_are_valid() {
        assert_eq!(check(&samples::policy()), Ok(()));
        assert_eq!(check(&samples::indicators()), Ok(()));
    }

    #[test]
    fn header_identity_checks_stop_first() {
        let mut st = samples::policy();
        st.header.federation_id = "other".into();
        st.header.revision = 0;
        let e = check(&st).err();
        assert_eq!(
            e.map(|e| (e.class, e.reason)),
            Some((RejectClass::Forbidden, reasons::WRONG_FEDERATION))
        );

        let mut st = samples::policy();
        st.header.node_id = "midwa".into();
        let e = check(&st).err();
        assert_eq!(
            e.map(|e| (e.class, e.reason)),
            Some((RejectClass::Forbidden, reasons::NODE_MISMATCH))
        );

        let mut st = samples::policy();
        st.header.schema_version = 2;
        let e = check(&st).err();
        assert_eq!(
            e.map(|e| (e.class, e.reason)),
            Some((RejectClass::Invalid, reasons::UNSUPPORTED_SCHEMA_VERSION))
        );
    }

    type Edit = fn(&mut Statement);

    /// (name, sample, edit, expected field, expected rule)
    fn cases() -> Vec<(&'static str, Statement, Edit, &'static str, &'static str)> {
        let p = samples::policy();
        let s = samples::indicators();
        vec![
            (
                "seq 0",
                p.clone(),
                |st| st.header.seq = 0,
                "header.seq",
                reasons::INVALID_SEQ,
            ),
            (
                "prev at seq 1",
                p.clone(),
                |st| st.header.prev_digest = Some(Digest::of(b"x")),
                "header.prev_digest",
                reasons::INVALID_PREV_DIGEST,
            ),
            (
                "no prev at seq 2",
                s.clone(),
                |st| st.header.prev_digest = None,
                "header.prev_digest",
                reasons::INVALID_PREV_DIGEST,
            ),
            (
                "document of another node",
                p.clone(),
                |st| st.header.document = "regions/midwa/policies/x".into(),
                "header.document",
                reasons::INVALID_DOCUMENT_NAME,
            ),
            (
                "document without segment",
                p.clone(),
                |st| st.header.document = "regions/colombo/".into(),
                "header.document",
                reasons::INVALID_DOCUMENT_NAME,
            ),
            (
                "document upper case",
                p.clone(),
                |st| st.header.document = "regions/colombo/Policies".into(),
                "header.document",
                reasons::INVALID_DOCUMENT_NAME,
            ),
            (
                "document with a .. segment",
                p.clone(),
                |st| st.header.document = "regions/colombo/../midwa/policies/x".into(),
                "header.document",
                reasons::INVALID_DOCUMENT_NAME,
            ),
            (
                "document with a . segment",
                p.clone(),
                |st| st.header.document = "regions/colombo/./policies".into(),
                "header.document",
                reasons::INVALID_DOCUMENT_NAME,
            ),
            (
                "document ending in ..",
                p.clone(),
                |st| st.header.document = "regions/colombo/policies/..".into(),
                "header.document",
                reasons::INVALID_DOCUMENT_NAME,
            ),
            (
                "document with an empty segment",
                p.clone(),
                |st| st.header.document = "regions/colombo/policies//x".into(),
                "header.document",
                reasons::INVALID_DOCUMENT_NAME,
            ),
            (
                "document too long",
                p.clone(),
                |st| st.header.document = format!("regions/colombo/{}", "a".repeat(190)),
                "header.document",
                reasons::INVALID_DOCUMENT_NAME,
            ),
            (
                "revision 0",
                p.clone(),
                |st| st.header.revision = 0,
                "header.revision",
                reasons::INVALID_REVISION,
            ),
            (
                "issued in the future",
                p.clone(),
                |st| st.header.issued_at = datetime!(2024-05-17 10:05:01 UTC),
                "header.issued_at",
                reasons::ISSUED_AT_IN_FUTURE,
            ),
            (
                "issued before 2000",
                p.clone(),
                |st| st.header.issued_at = datetime!(1999-12-31 23:59 UTC),
                "header.issued_at",
                reasons::ISSUED_AT_IN_FUTURE,
            ),
            (
                "no titles",
                p.clone(),
                |st| policy_of(st).title.clear(),
                "policy_summary.title",
                reasons::EMPTY_TITLE,
            ),
            (
                "blank title",
                p.clone(),
                |st| policy_of(st).title[1].text = "  ".into(),
                "policy_summary.title[1].text",
                reasons::EMPTY_TITLE,
            ),
            (
                "blank summary",
                p.clone(),
                |st| policy_of(st).summary[0].text = String::new(),
                "policy_summary.summary[0].text",
                reasons::FIELD_REQUIRED,
            ),
            (
                "bad language",
                p.clone(),
                |st| policy_of(st).title[1].language = "French".into(),
                "policy_summary.title[1].language",
                reasons::INVALID_LANGUAGE,
            ),
            (
                "duplicate language",
                p.clone(),
                |st| policy_of(st).title[1].language = "en".into(),
                "policy_summary.title[1].language",
                reasons::DUPLICATE_LANGUAGE,
            ),
            (
                "title too long",
                p.clone(),
                |st| policy_of(st).title[0].text = "é".repeat(501),
                "policy_summary.title[0].text",
                reasons::TOO_LONG,
            ),
            (
                "meeting too long",
                p.clone(),
                |st| policy_of(st).meeting = "m".repeat(501),
                "policy_summary.meeting",
                reasons::TOO_LONG,
            ),
            (
                "bad meeting date",
                p.clone(),
                |st| policy_of(st).meeting_date = "2011-02-30".into(),
                "policy_summary.meeting_date",
                reasons::INVALID_DATE,
            ),
            (
                "bad country",
                p.clone(),
                |st| policy_of(st).countries.push("XKX".into()),
                "policy_summary.countries[2]",
                reasons::INVALID_COUNTRY_CODE,
            ),
            (
                "gcm 24",
                p.clone(),
                |st| policy_of(st).gcm_objectives.push(24),
                "policy_summary.gcm_objectives[2]",
                reasons::INVALID_GCM_OBJECTIVE,
            ),
            (
                "gcm repeated",
                p.clone(),
                |st| policy_of(st).gcm_objectives.push(6),
                "policy_summary.gcm_objectives[2]",
                reasons::INVALID_GCM_OBJECTIVE,
            ),
            (
                "sdg target",
                p.clone(),
                |st| policy_of(st).sdg_targets.push("10.7.3".into()),
                "policy_summary.sdg_targets[2]",
                reasons::INVALID_SDG_TARGET,
            ),
            (
                "url scheme",
                p.clone(),
                |st| policy_of(st).references[0].url = "ftp://x.org/".into(),
                "policy_summary.references[0].url",
                reasons::INVALID_URL,
            ),
            (
                "url space",
                p.clone(),
                |st| policy_of(st).references[0].url = "https://x.org/a b".into(),
                "policy_summary.references[0].url",
                reasons::INVALID_URL,
            ),
            (
                "indicator code",
                s.clone(),
                |st| obs_of(st).indicator = "remit".into(),
                "indicator_snapshot.indicator",
                reasons::INVALID_INDICATOR_CODE,
            ),
            (
                "no observations",
                s.clone(),
                |st| obs_of(st).observations.clear(),
                "indicator_snapshot.observations",
                reasons::NO_OBSERVATIONS,
            ),
            (
                "ref_area not iso",
                s.clone(),
                |st| first_obs(st).ref_area = "SRI".into(),
                "indicator_snapshot.observations[0].ref_area",
                reasons::INVALID_COUNTRY_CODE,
            ),
            (
                "ref_area not a member",
                s.clone(),
                |st| first_obs(st).ref_area = "FRA".into(),
                "indicator_snapshot.observations[0].ref_area",
                reasons::NOT_A_MEMBER_STATE,
            ),
            (
                "member joined later",
                s.clone(),
                |st| {
                    first_obs(st).ref_area = "BGD".into();
                    first_obs(st).time_period = "2003".into();
                },
                "indicator_snapshot.observations[0].ref_area",
                reasons::NOT_A_MEMBER_STATE,
            ),
            (
                "member left during the period",
                s.clone(),
                |st| {
                    first_obs(st).ref_area = "NPL".into();
                    first_obs(st).time_period = "2024-S2".into();
                },
                "indicator_snapshot.observations[0].ref_area",
                reasons::NOT_A_MEMBER_STATE,
            ),
            (
                "time period",
                s.clone(),
                |st| first_obs(st).time_period = "2024-Q5".into(),
                "indicator_snapshot.observations[0].time_period",
                reasons::INVALID_TIME_PERIOD,
            ),
            (
                "dimension id",
                s.clone(),
                |st| first_obs(st).dimensions[0].0 = "sex".into(),
                "indicator_snapshot.observations[0].dimensions[0].id",
                reasons::INVALID_DIMENSION,
            ),
            (
                "dimension reserved",
                s.clone(),
                |st| first_obs(st).dimensions[0].0 = "REF_AREA".into(),
                "indicator_snapshot.observations[0].dimensions[0].id",
                reasons::INVALID_DIMENSION,
            ),
            (
                "dimension repeated",
                s.clone(),
                |st| first_obs(st).dimensions.push(("SEX".into(), "F".into())),
                "indicator_snapshot.observations[0].dimensions[1].id",
                reasons::INVALID_DIMENSION,
            ),
            (
                "dimension value",
                s.clone(),
                |st| first_obs(st).dimensions[0].1 = String::new(),
                "indicator_snapshot.observations[0].dimensions[0].value",
                reasons::INVALID_DIMENSION,
            ),
            (
                "value required",
                s.clone(),
                |st| first_obs(st).obs_value = None,
                "indicator_snapshot.observations[0].obs_value",
                reasons::VALUE_REQUIRED,
            ),
            (
                "NaN",
                s.clone(),
                |st| first_obs(st).obs_value = Some(f64::NAN),
                "indicator_snapshot.observations[0].obs_value",
                reasons::NON_FINITE_VALUE,
            ),
            (
                "infinity",
                s.clone(),
                |st| first_obs(st).obs_value = Some(f64::NEG_INFINITY),
                "indicator_snapshot.observations[0].obs_value",
                reasons::NON_FINITE_VALUE,
            ),
            (
                "delete with value",
                s.clone(),
                |st| first_obs(st).action = ObservationAction::Delete,
                "indicator_snapshot.observations[0].obs_value",
                reasons::VALUE_NOT_ALLOWED,
            ),
            (
                "obs status",
                s.clone(),
                |st| first_obs(st).obs_status = "Z".into(),
                "indicator_snapshot.observations[0].obs_status",
                reasons::INVALID_OBS_STATUS,
            ),
            (
                "conf status",
                s.clone(),
                |st| first_obs(st).conf_status = "X".into(),
                "indicator_snapshot.observations[0].conf_status",
                reasons::INVALID_CONF_STATUS,
            ),
            (
                "unit mult",
                s.clone(),
                |st| first_obs(st).unit_mult = 13,
                "indicator_snapshot.observations[0].unit_mult",
                reasons::INVALID_UNIT_MULT,
            ),
            (
                "footnote too long",
                s.clone(),
                |st| first_obs(st).footnote = "f".repeat(1001),
                "indicator_snapshot.observations[0].footnote",
                reasons::TOO_LONG,
            ),
            (
                "duplicate key",
                s.clone(),
                |st| {
                    let mut o = first_obs(st).clone();
                    o.action = ObservationAction::Replace;
                    obs_of(st).observations.push(o);
                },
                "indicator_snapshot.observations[1]",
                reasons::DUPLICATE_KEY,
            ),
        ]
    }

    #[test]
    fn each_rule() {
        for (name, mut st, edit, field, rule) in cases() {
            edit(&mut st);
            let Err(e) = check(&st) else {
                panic!("{name}: accepted");
            };
            assert_eq!(e.class, RejectClass::Invalid, "{name}");
            assert_eq!(e.reason, rule, "{name}: {e:?}");
            assert_eq!(e.violations.len(), 1, "{name}: {e:?}");
            assert_eq!(e.violations[0].field, field, "{name}");
            assert_eq!(e.violations[0].reason, rule, "{name}");
            assert!(e.message.starts_with(field), "{name}: {}", e.message);
        }
    }

    #[test]
    fn edge_values_pass() {
        let mut st = samples::indicators();
        {
            let o = first_obs(&mut st);
            o.ref_area = "NPL".into();
            o.time_period = "2024-S1".into(); // ends the day before NPL left
            o.unit_mult = 12;
            o.conf_status = "C".into();
        }
        let mut del = first_obs(&mut st).clone();
        del.action = ObservationAction::Delete;
        del.obs_value = None;
        del.dimensions = vec![("SEX".into(), "F".into()), ("AGE".into(), "Y15T64".into())];
        obs_of(&mut st).observations.push(del.clone());
        // Same dimensions in another order is the same key.
        del.dimensions.reverse();
        obs_of(&mut st).observations.push(del);
        let e = check(&st).err();
        assert_eq!(e.map(|e| e.reason), Some(reasons::DUPLICATE_KEY));

        let mut st = samples::policy();
        st.header.issued_at = datetime!(2024-05-17 10:05 UTC);
        st.header.document = "regions/colombo/policies/2024/dhaka_v1.2-final".into();
        policy_of(&mut st).title[1].language = "pt-BR".into();
        policy_of(&mut st).sdg_targets = vec!["17.3".into(), "8.8".into()];
        policy_of(&mut st).meeting_date = String::new();
        policy_of(&mut st).references[0].url = "http://x".into();
        assert_eq!(check(&st), Ok(()));
    }

    #[test]
    fn violations_are_collected_and_capped() {
        let mut st = samples::indicators();
        st.header.revision = 0;
        first_obs(&mut st).obs_value = Some(f64::NAN);
        let e = check(&st).err();
        let e = e.as_ref();
        assert_eq!(e.map(|e| e.reason), Some(reasons::VALIDATION_FAILED));
        assert_eq!(e.map(|e| e.violations.len()), Some(2));
        assert!(e.is_some_and(|e| e.message.contains("and 1 more")));

        let mut st = samples::indicators();
        let o = first_obs(&mut st).clone();
        obs_of(&mut st).observations = (0..150)
            .map(|i| {
                let mut o = o.clone();
                o.obs_value = Some(f64::INFINITY);
                o.dimensions = vec![("AGE".into(), format!("Y{i}"))];
                o
            })
            .collect();
        let e = check(&st).err();
        assert_eq!(e.as_ref().map(|e| e.violations.len()), Some(MAX_VIOLATIONS));
        // One distinct rule: that rule is the reason.
        assert_eq!(
            e.as_ref().map(|e| e.reason),
            Some(reasons::NON_FINITE_VALUE)
        );
        assert!(e.is_some_and(|e| e.message.contains("and 149 more")));
    }

    fn check_with(st: &Statement, aggregates: &[String]) -> Result<(), Rejection> {
        let member = colombo();
        let ctx = ValidationContext {
            federation_id: "rcp-federation",
            member: &member,
            now: datetime!(2024-05-17 10:00 UTC),
            aggregates,
        };
        validate_statement(st, &ctx)
    }

    #[test]
    fn aggregates_pass_only_when_the_caller_names_them() {
        let aggregates = ["WLD".to_string(), "LMC_AGG".to_string()];
        let mut st = samples::indicators();
        first_obs(&mut st).ref_area = "WLD".into();
        let mut lmc = first_obs(&mut st).clone();
        lmc.ref_area = "LMC_AGG".into();
        obs_of(&mut st).observations.push(lmc);
        assert_eq!(check_with(&st, &aggregates), Ok(()));

        // Without the catalogue's aggregates they are not ISO codes.
        let e = check(&st).err();
        assert_eq!(
            e.as_ref().map(|e| e.reason),
            Some(reasons::INVALID_COUNTRY_CODE)
        );
        assert_eq!(e.map(|e| e.violations.len()), Some(2));

        // Any other code is still refused, naming the aggregates.
        first_obs(&mut st).ref_area = "EUU".into();
        let e = check_with(&st, &aggregates).err();
        assert!(
            e.as_ref()
                .is_some_and(|e| e.message.contains("WLD, LMC_AGG"))
        );
        assert_eq!(e.map(|e| e.reason), Some(reasons::INVALID_COUNTRY_CODE));

        // An ISO code listed as an aggregate by mistake still needs membership.
        first_obs(&mut st).ref_area = "FRA".into();
        obs_of(&mut st).observations.truncate(1);
        let e = check_with(&st, &["FRA".to_string()]).err();
        assert_eq!(e.map(|e| e.reason), Some(reasons::NOT_A_MEMBER_STATE));
    }

    fn chunked(n: usize) -> (Statement, Vec<Observation>) {
        let mut st = samples::indicators();
        let o = first_obs(&mut st).clone();
        let all: Vec<Observation> = (0..n)
            .map(|i| {
                let mut o = o.clone();
                o.time_period = format!("{}", 1990 + i % 30);
                o.dimensions = vec![("AGE".into(), format!("Y{}", i / 30))];
                o
            })
            .collect();
        let (manifest, _) = crate::chunks::encode_chunks(&all, 100);
        let s = obs_of(&mut st);
        s.observations.clear();
        s.chunks = Some(manifest);
        (st, all)
    }

    #[test]
    fn chunked_snapshot_header_is_checked_without_observations() {
        let (st, all) = chunked(250);
        assert_eq!(check(&st), Ok(()));

        // Inline observations alongside chunks.
        let mut both = st.clone();
        obs_of(&mut both).observations.push(all[0].clone());
        let e = check(&both).err();
        assert_eq!(
            e.as_ref().map(|e| e.reason),
            Some(reasons::INVALID_CHUNK_MANIFEST)
        );
        assert_eq!(
            e.map(|e| e.violations[0].field.clone()).as_deref(),
            Some("indicator_snapshot.observations")
        );

        // A manifest whose counts do not add up.
        let mut bad = st.clone();
        if let Some(m) = obs_of(&mut bad).chunks.as_mut() {
            m.observation_count += 1;
        }
        let e = check(&bad).err();
        assert_eq!(
            e.as_ref().map(|e| e.reason),
            Some(reasons::INVALID_CHUNK_MANIFEST)
        );
        assert_eq!(
            e.map(|e| e.violations[0].field.clone()).as_deref(),
            Some("indicator_snapshot.chunks.observation_count")
        );

        // The indicator code is still checked in the header.
        let mut code = st.clone();
        obs_of(&mut code).indicator = "remit".into();
        let e = check(&code).err();
        assert_eq!(e.map(|e| e.reason), Some(reasons::INVALID_INDICATOR_CODE));
    }

    #[test]
    fn separate_observations_follow_the_inline_rules() {
        let member = colombo();
        let ctx = ValidationContext {
            federation_id: "rcp-federation",
            member: &member,
            now: datetime!(2024-05-17 10:00 UTC),
            aggregates: &[],
        };
        let (_, mut all) = chunked(250);
        assert_eq!(validate_observations("REMIT_INFLOW", &all, &ctx), Ok(()));
        assert_eq!(
            validate_observations("REMIT_INFLOW", &[], &ctx)
                .err()
                .map(|e| e.reason),
            Some(reasons::NO_OBSERVATIONS)
        );

        // A duplicate key across chunks, and a non-member, named by snapshot position.
        all[230] = all[5].clone();
        all[120].ref_area = "FRA".into();
        let e = validate_observations("REMIT_INFLOW", &all, &ctx).err();
        let fields: Vec<(&str, &str)> = e
            .as_ref()
            .map(|e| {
                e.violations
                    .iter()
                    .map(|v| (v.field.as_str(), v.reason))
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(
            fields,
            [
                (
                    "indicator_snapshot.observations[120].ref_area",
                    reasons::NOT_A_MEMBER_STATE
                ),
                (
                    "indicator_snapshot.observations[230]",
                    reasons::DUPLICATE_KEY
                ),
            ]
        );

        // The inline path gives the same answer for the same observations.
        let mut st = samples::indicators();
        obs_of(&mut st).observations = all;
        assert_eq!(check(&st).err(), e);
    }

    fn shipped() -> Catalogue {
        Catalogue::from_toml(crate::catalogue::embedded_catalogue_toml()).expect("catalogue")
    }

    /// A MIG_STOCK observation of colombo in persons.
    fn stock(area: &str, period: &str, dims: &[(&str, &str)], value: f64) -> Observation {
        Observation {
            action: ObservationAction::Append,
            ref_area: area.into(),
            time_period: period.into(),
            dimensions: dims
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            obs_value: Some(value),
            obs_status: "A".into(),
            unit_measure: "persons".into(),
            unit_mult: 6,
            conf_status: String::new(),
            footnote: String::new(),
            source: String::new(),
        }
    }

    fn stock_statement(observations: Vec<Observation>) -> Statement {
        let mut st = samples::indicators();
        let s = obs_of(&mut st);
        s.indicator = "MIG_STOCK".into();
        s.observations = observations;
        st
    }

    fn fields(e: &Rejection) -> Vec<(&str, &str)> {
        e.violations
            .iter()
            .map(|v| (v.field.as_str(), v.reason))
            .collect()
    }

    #[test]
    fn a_blank_default_and_its_explicit_form_are_one_key() {
        let cat = shipped();
        let member = colombo();
        let ctx = ValidationContext {
            federation_id: "rcp-federation",
            member: &member,
            now: datetime!(2024-05-17 10:00 UTC),
            aggregates: cat.area_aggregates(),
        };
        // The issue's two lines: MIG_STOCK,LKA,2020,_T,_T,40.5 and MIG_STOCK,LKA,2020,,,41.0.
        let st = stock_statement(vec![
            stock("LKA", "2020", &[("SEX", "_T"), ("AGE", "_T")], 40.5),
            stock("LKA", "2020", &[], 41.0),
            // Only AGE left out, SEX given in another order: the same key again.
            stock("LKA", "2020", &[("SEX", "_T")], 42.0),
            // SEX=F is another key; so is a period.
            stock("LKA", "2020", &[("SEX", "F")], 20.0),
            stock("LKA", "2021", &[], 43.0),
        ]);
        let e = check_statement(&st, &ctx, Some(&cat))
            .expect("identity passes")
            .into_result()
            .expect_err("duplicates");
        assert_eq!(e.reason, reasons::DUPLICATE_KEY);
        assert_eq!(
            fields(&e),
            [
                ("indicator_snapshot.observations[1]", reasons::DUPLICATE_KEY),
                ("indicator_snapshot.observations[2]", reasons::DUPLICATE_KEY),
            ]
        );
        assert!(
            e.violations[0].description.contains(
                "same key as observation 0 (LKA, 2020, AGE=_T, SEX=_T); a dimension left out counts as its catalogue default"
            ),
            "{}",
            e.violations[0].description
        );
        // Without a catalogue the dimensions are compared as given: no duplicate.
        assert_eq!(validate_statement(&st, &ctx), Ok(()));
        assert!(check_statement(&st, &ctx, None).expect("identity").is_ok());
        // The chunked path judges the same way.
        let Body::Indicators(s) = &st.body else {
            unreachable!("indicators")
        };
        let all = check_observations_all("MIG_STOCK", &s.observations, &ctx, Some(&cat));
        assert_eq!(all.into_result().err(), Some(e));
    }

    #[test]
    fn one_pass_reports_every_kind_of_error_in_document_order() {
        let cat = shipped();
        let member = colombo();
        let ctx = ValidationContext {
            federation_id: "rcp-federation",
            member: &member,
            now: datetime!(2024-05-17 10:00 UTC),
            aggregates: cat.area_aggregates(),
        };
        let mut unit = stock("LKA", "2021", &[], 1.0);
        unit.unit_measure = "current USD".into();
        let mut st = stock_statement(vec![
            stock("LKA", "2020", &[("SEX", "_T"), ("AGE", "_T")], 40.5),
            stock("LKA", "2020", &[], 41.0), // duplicate key (statement rules)
            stock("FRA", "2020", &[], 1.0),  // not a member state (statement rules)
            unit,                            // unit of another indicator (catalogue)
            stock("LKA", "2022", &[("SEX", "X")], 1.0), // not a code (catalogue)
        ]);
        st.header.revision = 0; // a header rule
        let findings = check_statement(&st, &ctx, Some(&cat)).expect("identity passes");
        assert_eq!(findings.total_errors, 5);
        assert_eq!(findings.rule_errors, 3);
        let e = findings.into_result().expect_err("refused");
        assert_eq!(e.reason, reasons::VALIDATION_FAILED);
        assert_eq!(
            fields(&e),
            [
                ("header.revision", reasons::INVALID_REVISION),
                ("indicator_snapshot.observations[1]", reasons::DUPLICATE_KEY),
                (
                    "indicator_snapshot.observations[2].ref_area",
                    reasons::NOT_A_MEMBER_STATE
                ),
                (
                    "indicator_snapshot.observations[3].unit_measure",
                    reasons::UNIT_MISMATCH
                ),
                (
                    "indicator_snapshot.observations[4].dimensions[0].value",
                    reasons::CODE_NOT_IN_CODELIST
                ),
            ]
        );
        assert!(
            e.message.ends_with("(and 4 more problems)"),
            "{}",
            e.message
        );

        // The identity checks still stop first.
        let mut other = st.clone();
        other.header.federation_id = "elsewhere".into();
        assert_eq!(
            check_statement(&other, &ctx, Some(&cat))
                .err()
                .map(|e| e.reason),
            Some(reasons::WRONG_FEDERATION)
        );
        // A policy summary has rule errors only.
        let mut policy = samples::policy();
        policy.header.revision = 0;
        let e = check_statement(&policy, &ctx, Some(&cat))
            .expect("identity")
            .into_result()
            .expect_err("refused");
        assert_eq!(fields(&e), [("header.revision", reasons::INVALID_REVISION)]);
    }

    #[test]
    fn findings_are_bounded_and_keep_the_count_of_the_rest() {
        let cat = shipped();
        let member = colombo();
        let ctx = ValidationContext {
            federation_id: "rcp-federation",
            member: &member,
            now: datetime!(2024-05-17 10:00 UTC),
            aggregates: cat.area_aggregates(),
        };
        // 150 rows from a non-member, then one unit error: 100 listed, 151 counted.
        let mut rows: Vec<Observation> = (0..150)
            .map(|i| stock("FRA", &format!("{}", 1900 + i), &[], 1.0))
            .collect();
        let mut unit = stock("LKA", "2021", &[], 1.0);
        unit.unit_measure = "current USD".into();
        rows.push(unit);
        let findings = check_statement(&stock_statement(rows), &ctx, Some(&cat)).expect("identity");
        assert_eq!(findings.total_errors, 151);
        let e = findings.clone().into_result().expect_err("refused");
        assert_eq!(e.violations.len(), MAX_VIOLATIONS);
        assert!(
            e.message.ends_with("(and 150 more problems)"),
            "{}",
            e.message
        );

        // A check that stopped at its limit makes the count a lower bound, and its errors
        // are merged by position.
        let mut findings = findings;
        let action = |i: usize| {
            Violation::new(
                format!("indicator_snapshot.observations[{i}]"),
                reasons::OBSERVATION_EXISTS,
                "appends a key in force",
            )
        };
        findings.add_errors(vec![action(0)], 1, true);
        assert_eq!(
            findings.errors[0].field,
            "indicator_snapshot.observations[0].ref_area"
        );
        assert_eq!(
            findings.errors[1].field,
            "indicator_snapshot.observations[0]"
        );
        assert_eq!(findings.errors.len(), MAX_VIOLATIONS);
        let e = findings.into_result().expect_err("refused");
        assert!(
            e.message.ends_with("(and at least 151 more problems)"),
            "{}",
            e.message
        );
        // Nothing found: the warnings (none here).
        assert_eq!(Findings::default().into_result(), Ok(Vec::new()));
    }

    #[test]
    fn a_problem_is_refused_once_not_by_both_checks() {
        let cat = shipped();
        let member = colombo();
        let ctx = ValidationContext {
            federation_id: "rcp-federation",
            member: &member,
            now: datetime!(2024-05-17 10:00 UTC),
            aggregates: cat.area_aggregates(),
        };
        type Edit = fn(&mut Observation);
        let cases: [(&str, Edit, &str, &str); 9] = [
            (
                "not a code",
                |o| o.ref_area = "XYZ".into(),
                ".ref_area",
                reasons::INVALID_COUNTRY_CODE,
            ),
            (
                "empty area",
                |o| o.ref_area = String::new(),
                ".ref_area",
                reasons::INVALID_COUNTRY_CODE,
            ),
            (
                "period",
                |o| o.time_period = "2020-13".into(),
                ".time_period",
                reasons::INVALID_TIME_PERIOD,
            ),
            (
                "dimension id",
                |o| o.dimensions = vec![("sex".into(), "F".into())],
                ".dimensions[0].id",
                reasons::INVALID_DIMENSION,
            ),
            (
                "dimension value",
                |o| o.dimensions = vec![("SEX".into(), String::new())],
                ".dimensions[0].value",
                reasons::INVALID_DIMENSION,
            ),
            (
                "status",
                |o| o.obs_status = "Z".into(),
                ".obs_status",
                reasons::INVALID_OBS_STATUS,
            ),
            (
                "confidentiality",
                |o| o.conf_status = "X".into(),
                ".conf_status",
                reasons::INVALID_CONF_STATUS,
            ),
            (
                "multiplier",
                |o| o.unit_mult = 13,
                ".unit_mult",
                reasons::INVALID_UNIT_MULT,
            ),
            (
                "unit",
                |o| o.unit_measure = "u".repeat(1001),
                ".unit_measure",
                reasons::TOO_LONG,
            ),
        ];
        for (what, edit, column, reason) in cases {
            let mut o = stock("LKA", "2020", &[], 1.0);
            edit(&mut o);
            let e = check_statement(&stock_statement(vec![o]), &ctx, Some(&cat))
                .expect("identity")
                .into_result()
                .expect_err(what);
            assert_eq!(
                fields(&e),
                [(
                    format!("indicator_snapshot.observations[0]{column}").as_str(),
                    reason
                )],
                "{what}"
            );
        }
        // An indicator code that is not one: the statement rule alone.
        let mut st = stock_statement(vec![stock("LKA", "2020", &[], 1.0)]);
        obs_of(&mut st).indicator = "mig stock".into();
        let e = check_statement(&st, &ctx, Some(&cat))
            .expect("identity")
            .into_result()
            .expect_err("code");
        assert_eq!(
            fields(&e),
            [(
                "indicator_snapshot.indicator",
                reasons::INVALID_INDICATOR_CODE
            )]
        );
        // A valid code the catalogue does not define: the catalogue says so, and the rows'
        // statement rules still run.
        let mut st = stock_statement(vec![stock("FRA", "2020", &[], 1.0)]);
        obs_of(&mut st).indicator = "NO_SUCH".into();
        let e = check_statement(&st, &ctx, Some(&cat))
            .expect("identity")
            .into_result()
            .expect_err("unknown");
        assert_eq!(
            fields(&e),
            [
                ("indicator_snapshot.indicator", reasons::UNKNOWN_INDICATOR),
                (
                    "indicator_snapshot.observations[0].ref_area",
                    reasons::NOT_A_MEMBER_STATE
                ),
            ]
        );
    }
}
