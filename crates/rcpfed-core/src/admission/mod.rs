//! Admission: the rules a statement meets before a node signs it and again when the hub accepts
//! it, in domain types and in one place, with one entry per form that node and hub both call:
//! - a statement that carries its observations (or a policy summary, or a chunked snapshot's
//!   signed manifest): [`admit_inline`], the statement and catalogue rules in one pass, then
//!   the action rules;
//! - a snapshot whose observations arrive in pieces (the node's stream, the hub's chunks):
//!   [`ChunkedAdmission`], the same rules row by row and piece by piece.
//!
//! Around them: the envelope rules at the hub ([`admit_envelope`]), the draft rules at the node
//! ([`admit_draft_body`], [`fill_key_defaults`]), the chunk rules ([`chunks_required`],
//! [`known_indicator`]) and the action rules themselves ([`actions`]). The node runs them
//! before signing so that it reports what the hub would refuse; the hub runs them at ingest and
//! is authoritative.

pub mod actions;
mod chunked;

pub use chunked::{ChunkedAdmission, ChunkedFindings};

use crate::catalogue::{Catalogue, validate_observations_against};
use crate::envelope::SignedEnvelope;
use crate::limits;
use crate::members::{Federation, KeyState, Member};
use crate::obskey;
use crate::rejection::{RejectClass, Rejection, Violation, reasons};
use crate::statement::{
    Body, IndicatorSnapshot, Observation, Statement, verify_statement_signature,
};
use crate::validate::{
    Findings, ValidationContext, check_statement, repeated_keys, validate_statement,
};
use std::collections::HashSet;
use time::OffsetDateTime;

/// What one statement is admitted against: the receiver's federation, the member it must come
/// from, the receiver's clock, and the indicator catalogue in force (None: none known, so
/// observations meet the statement rules only).
#[derive(Clone, Copy, Debug)]
pub struct AdmissionContext<'a> {
    /// The receiver's federation id.
    pub federation_id: &'a str,
    /// The member the statement must come from.
    pub member: &'a Member,
    /// The receiver's current time.
    pub now: OffsetDateTime,
    /// The catalogue in force.
    pub catalogue: Option<&'a Catalogue>,
}

impl<'a> AdmissionContext<'a> {
    /// The context for `member_id`'s statements; PEER_NOT_A_MEMBER for a non-member.
    pub fn new(
        federation: &'a Federation,
        member_id: &str,
        now: OffsetDateTime,
        catalogue: Option<&'a Catalogue>,
    ) -> Result<Self, Rejection> {
        let member = federation.member(member_id).ok_or_else(|| {
            Rejection::new(
                RejectClass::Forbidden,
                reasons::PEER_NOT_A_MEMBER,
                format!("node {member_id} is not in the member file"),
            )
        })?;
        Ok(AdmissionContext {
            federation_id: &federation.federation_id,
            member,
            now,
            catalogue,
        })
    }

    /// The same context judging observations against `catalogue`.
    pub fn with_catalogue<'c>(self, catalogue: Option<&'c Catalogue>) -> AdmissionContext<'c>
    where
        'a: 'c,
    {
        AdmissionContext {
            federation_id: self.federation_id,
            member: self.member,
            now: self.now,
            catalogue,
        }
    }

    /// The statement rules' view: the catalogue's aggregate areas are exempt from the
    /// membership rule.
    pub fn validation(&self) -> ValidationContext<'a> {
        ValidationContext {
            federation_id: self.federation_id,
            member: self.member,
            now: self.now,
            aggregates: self.catalogue.map_or(&[], |c| c.area_aggregates()),
        }
    }
}

/// The envelope rules at ingest, before its payload is decoded: every size bound of the whole
/// envelope before any hashing or signature work (what is accepted must fit every feed entry
/// and response), a signature by a key of `member_id`, and that key's lifecycle in the
/// registry at the receiver's clock `now` (the signer controls `issued_at`, so it cannot date
/// a statement back before a retirement).
pub fn admit_envelope(
    envelope: &SignedEnvelope,
    federation: &Federation,
    member_id: &str,
    now: OffsetDateTime,
) -> Result<(), Rejection> {
    limits::check_envelope(envelope, limits::MAX_PAYLOAD_BYTES)?;
    let signed_by = verify_statement_signature(envelope, federation)?;
    signed_by.owned_by(member_id)?;
    let key_id = &signed_by.key.key_id;
    let refusal = match federation.key_state(key_id, now) {
        KeyState::Active => return Ok(()),
        KeyState::Retired { at } => (
            reasons::KEY_RETIRED,
            format!("was retired at {at}; sign with the member's current key"),
        ),
        KeyState::Revoked { at } => (reasons::KEY_REVOKED, format!("was revoked at {at}")),
        KeyState::NotYetValid => (reasons::KEY_NOT_YET_VALID, "is not valid yet".into()),
        // The signature check found the key in this registry; kept for completeness.
        KeyState::Unknown => (reasons::UNKNOWN_KEY_ID, "is not in the registry".into()),
    };
    let (reason, what) = refusal;
    Err(Rejection::new(
        RejectClass::Forbidden,
        reason,
        format!("key {key_id} of {member_id} {what}"),
    )
    .with_meta("key_id", key_id.clone()))
}

/// The statement rules and, for an indicator snapshot with inline observations, the catalogue
/// rules, in one pass ([`check_statement`]): one refusal lists every problem. A chunked
/// snapshot's observations are admitted once its chunks are in ([`ChunkedAdmission`]).
pub fn admit_statement(st: &Statement, cx: &AdmissionContext) -> Result<Findings, Rejection> {
    let inline = matches!(&st.body, Body::Indicators(s) if s.chunks.is_none());
    check_statement(st, &cx.validation(), cx.catalogue.filter(|_| inline))
}

/// The admission of a statement in its inline form: the statement rules and, for an inline
/// snapshot, the catalogue rules in one pass ([`admit_statement`]); then, for an inline
/// snapshot of an indicator the catalogue lists, the action rules: `check_actions` judges the
/// observations against the caller's view and gives its violations (at most
/// [`actions::MAX_ACTION_VIOLATIONS`]; None: not checked), which join the findings in
/// document order ([`add_action_findings`]).
///
/// Where the paths differ, and why: the node passes the check against its mirror, so that its
/// one report before signing lists every problem; the hub passes none, because its action check
/// must judge the view at the statement's place in the log, which only the sequencer knows
/// (it refuses with [`actions::refusal`] there).
pub fn admit_inline<E: From<Rejection>>(
    st: &Statement,
    cx: &AdmissionContext,
    check_actions: impl FnOnce(&str, &[Observation]) -> Result<Option<Vec<Violation>>, E>,
) -> Result<Findings, E> {
    let mut findings = admit_statement(st, cx)?;
    if let Body::Indicators(snapshot) = &st.body
        && snapshot.chunks.is_none()
        && cx
            .catalogue
            .is_some_and(|c| c.indicator(&snapshot.indicator).is_some())
        && let Some(violations) = check_actions(&snapshot.indicator, &snapshot.observations)?
    {
        add_action_findings(
            &mut findings,
            violations,
            &snapshot.observations,
            actions::MAX_ACTION_VIOLATIONS,
        );
    }
    Ok(findings)
}

/// The statement rules alone, on the form that is signed (for a large snapshot, its chunk
/// manifest): what the hub checks first.
pub fn admit_signed_form(st: &Statement, cx: &AdmissionContext) -> Result<(), Rejection> {
    validate_statement(st, &cx.validation())
}

/// UNKNOWN_INDICATOR unless `catalogue` lists `indicator`: a chunked snapshot is refused for
/// it before any chunk is read.
pub fn known_indicator(catalogue: &Catalogue, indicator: &str) -> Result<(), Rejection> {
    validate_observations_against(catalogue, indicator, &[])
        .into_result()
        .map(|_| ())
}

/// A CHUNKS_REQUIRED refusal: a chunked snapshot sent where its chunks cannot follow, or a
/// statement without chunks sent where they must.
pub fn chunks_required(message: &str) -> Rejection {
    Rejection::invalid(reasons::CHUNKS_REQUIRED, message).with_violations(vec![Violation::new(
        "indicator_snapshot.chunks",
        reasons::CHUNKS_REQUIRED,
        message,
    )])
}

/// A draft to sign carries its observations themselves: the node cuts the chunks and signs
/// their manifest, so a draft with a manifest is refused (CHUNKS_REQUIRED).
pub fn admit_draft_body(body: &Body) -> Result<(), Rejection> {
    match body {
        Body::Indicators(snapshot) if snapshot.chunks.is_some() => {
            let field = "indicator_snapshot.chunks";
            let description = "must be empty: send the observations themselves (NodeService.PublishSnapshot for large snapshots); the node cuts the chunks and signs their manifest";
            Err(
                Rejection::invalid(reasons::CHUNKS_REQUIRED, format!("{field}: {description}"))
                    .with_violations(vec![Violation::new(
                        field,
                        reasons::CHUNKS_REQUIRED,
                        description,
                    )]),
            )
        }
        _ => Ok(()),
    }
}

/// Fills in every optional dimension that the catalogue defaults and an observation leaves
/// out ([`obskey::fill_defaults`]), so a signed statement carries one key per observation; an
/// indicator the catalogue does not know is left as it is (and refused).
pub fn fill_key_defaults(catalogue: &Catalogue, snapshot: &mut IndicatorSnapshot) {
    let Some(indicator) = catalogue.indicator(&snapshot.indicator) else {
        return;
    };
    fill_defaults_of_rows(&indicator.key_defaults(), &mut snapshot.observations);
}

/// [`fill_key_defaults`] for rows of a snapshot that arrives in pieces, with the indicator's
/// `defaults` looked up once.
pub fn fill_defaults_of_rows(defaults: &[(String, String)], observations: &mut [Observation]) {
    if defaults.is_empty() {
        return;
    }
    for o in observations {
        obskey::fill_defaults(defaults, &mut o.dimensions);
    }
}

/// Adds the action violations [`actions::check`] found with `limit` to `findings`, in document
/// order with the others. A key repeated within the snapshot is refused as DUPLICATE_KEY
/// already, so its second touch adds nothing.
pub fn add_action_findings(
    findings: &mut Findings,
    mut violations: Vec<Violation>,
    observations: &[Observation],
    limit: usize,
) {
    // As actions::refusal counts them: a full list means the check stopped there.
    let at_least = violations.len() >= limit;
    if !violations.is_empty() {
        let repeats: HashSet<String> = repeated_keys(observations, &[])
            .into_iter()
            .map(|(i, _)| format!("indicator_snapshot.observations[{i}]"))
            .collect();
        violations.retain(|v| !repeats.contains(&v.field));
    }
    let found = violations.len();
    findings.add_errors(violations, found, at_least);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunks::encode_chunks;
    use crate::members::{Membership, Role};
    use crate::statement::samples;
    use time::macros::datetime;

    fn colombo() -> Member {
        Member {
            id: "colombo".into(),
            name: "Colombo Process".into(),
            kind: "RCP".into(),
            roles: [Role::Publisher].into_iter().collect(),
            spiffe_id: "spiffe://rcp-federation/node/colombo".into(),
            keys: Vec::new(),
            states: vec![Membership {
                iso3: "LKA".into(),
                since: None,
                until: None,
            }],
        }
    }

    fn catalogue() -> Catalogue {
        Catalogue::from_toml(crate::catalogue::embedded_catalogue_toml()).expect("catalogue")
    }

    fn snapshot_of(st: &mut Statement) -> Option<&mut IndicatorSnapshot> {
        match &mut st.body {
            Body::Indicators(s) => Some(s),
            Body::Policy(_) => None,
        }
    }

    fn reasons_of(findings: &Findings) -> Vec<&'static str> {
        findings.errors.iter().map(|v| v.reason).collect()
    }

    #[test]
    fn the_catalogue_judges_inline_observations_and_leaves_a_manifest_to_its_chunks() {
        let (member, catalogue) = (colombo(), catalogue());
        let cx = AdmissionContext {
            federation_id: "rcp-federation",
            member: &member,
            now: datetime!(2024-05-17 10:00 UTC),
            catalogue: Some(&catalogue),
        };
        // ZZ_UNKNOWN is a well-formed code the shipped catalogue does not list.
        let mut inline = samples::indicators();
        snapshot_of(&mut inline)
            .expect("an indicator sample")
            .indicator = "ZZ_UNKNOWN".into();
        let findings = admit_statement(&inline, &cx).expect("the header is in place");
        assert_eq!(reasons_of(&findings), [reasons::UNKNOWN_INDICATOR]);
        assert_eq!(
            findings.rule_errors, 0,
            "a catalogue error, not a rule error"
        );

        let mut chunked = inline.clone();
        let snapshot = snapshot_of(&mut chunked).expect("an indicator sample");
        let observations = std::mem::take(&mut snapshot.observations);
        snapshot.chunks = Some(encode_chunks(&observations, 10).0);
        let findings = admit_statement(&chunked, &cx).expect("the header is in place");
        assert!(findings.is_ok(), "{:?}", findings.errors);
        assert_eq!(admit_signed_form(&chunked, &cx), Ok(()));
        let mut later = ChunkedAdmission::start("ZZ_UNKNOWN", &cx);
        let (rows, offset) = later.rows();
        for (i, o) in observations.iter().enumerate() {
            rows.check(offset + i, o, None);
        }
        later.advance(observations.len());
        assert_eq!(
            reasons_of(&later.finish().findings),
            [reasons::UNKNOWN_INDICATOR]
        );
        assert_eq!(
            known_indicator(&catalogue, "ZZ_UNKNOWN").map_err(|r| r.reason),
            Err(reasons::UNKNOWN_INDICATOR)
        );
        assert_eq!(known_indicator(&catalogue, "REMIT_INFLOW"), Ok(()));
    }

    #[test]
    fn a_draft_to_sign_carries_its_observations_not_a_manifest() {
        let mut draft = samples::indicators();
        assert_eq!(admit_draft_body(&draft.body), Ok(()));
        let snapshot = snapshot_of(&mut draft).expect("an indicator sample");
        snapshot.chunks = Some(encode_chunks(&snapshot.observations, 10).0);
        let refusal = admit_draft_body(&draft.body).err();
        assert_eq!(
            refusal
                .as_ref()
                .map(|r| (r.reason, r.violations[0].field.as_str())),
            Some((reasons::CHUNKS_REQUIRED, "indicator_snapshot.chunks"))
        );
        let hub = chunks_required("send it with SubmitSnapshot");
        assert_eq!(hub.message, "send it with SubmitSnapshot");
        assert_eq!(hub.violations[0].field, "indicator_snapshot.chunks");
    }

    #[test]
    fn action_findings_skip_repeated_keys_and_count_a_full_list_as_a_lower_bound() {
        let mut st = samples::indicators();
        let snapshot = snapshot_of(&mut st).expect("an indicator sample");
        let first = snapshot.observations[0].clone();
        let mut other = first.clone();
        other.time_period = "2024".into();
        snapshot.observations = vec![first.clone(), other, first];
        let violation = |i: usize| {
            Violation::new(
                format!("indicator_snapshot.observations[{i}]"),
                reasons::OBSERVATION_EXISTS,
                "appends a key in force",
            )
        };
        let mut findings = Findings::default();
        add_action_findings(
            &mut findings,
            vec![violation(1), violation(2)],
            &snapshot.observations,
            2,
        );
        let fields: Vec<&str> = findings.errors.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["indicator_snapshot.observations[1]"]);
        assert_eq!(findings.total_errors, 1);
        assert!(findings.errors_at_least, "the check stopped at its limit");
    }
}
