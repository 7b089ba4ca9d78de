//! Statements: the domain form of `rcpfed.v1.Statement`, and its wire conversions. Conversion
//! checks only structure (required parts present, enums known, digests 32 bytes); the field rules
//! live in [`crate::validate`].

use crate::Digest;
use crate::rejection::{RejectClass, Rejection, reasons};
use crate::wire::{timestamp_from_proto, timestamp_to_proto};
use prost::Message as _;
use rcpfed_proto::v1 as pb;
use time::OffsetDateTime;

/// One signed document issued by one node.
#[derive(Clone, Debug, PartialEq)]
pub struct Statement {
    /// Issuer, chain position, document identity.
    pub header: Header,
    /// The document.
    pub body: Body,
}

/// Places a statement in its issuer's hash chain and names its logical document.
#[derive(Clone, Debug, PartialEq)]
pub struct Header {
    /// Federation id.
    pub federation_id: String,
    /// Issuing node id.
    pub node_id: String,
    /// Per-node sequence number, starting at 1.
    pub seq: u64,
    /// Digest of the node's statement `seq - 1`; `None` at seq 1.
    pub prev_digest: Option<Digest>,
    /// When the node issued it.
    pub issued_at: OffsetDateTime,
    /// Kind of the body.
    pub kind: DocumentKind,
    /// Body schema version; currently 1.
    pub schema_version: u32,
    /// Logical document name, "regions/{node_id}/...".
    pub document: String,
    /// Revision of the logical document, starting at 1.
    pub revision: u32,
}

/// The kinds of document a statement carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DocumentKind {
    /// A [`PolicySummary`].
    PolicySummary,
    /// An [`IndicatorSnapshot`].
    IndicatorSnapshot,
}

impl DocumentKind {
    /// The wire enum value.
    pub fn to_proto(self) -> pb::DocumentKind {
        match self {
            DocumentKind::PolicySummary => pb::DocumentKind::PolicySummary,
            DocumentKind::IndicatorSnapshot => pb::DocumentKind::IndicatorSnapshot,
        }
    }

    /// From the wire enum value; `None` for unspecified or unknown values.
    pub fn from_proto(value: i32) -> Option<Self> {
        match pb::DocumentKind::try_from(value).ok()? {
            pb::DocumentKind::Unspecified => None,
            pb::DocumentKind::PolicySummary => Some(DocumentKind::PolicySummary),
            pb::DocumentKind::IndicatorSnapshot => Some(DocumentKind::IndicatorSnapshot),
        }
    }

    /// A short lowercase name for messages and filters.
    pub fn as_str(self) -> &'static str {
        match self {
            DocumentKind::PolicySummary => "policy_summary",
            DocumentKind::IndicatorSnapshot => "indicator_snapshot",
        }
    }
}

/// The document a statement carries.
#[derive(Clone, Debug, PartialEq)]
pub enum Body {
    /// A policy summary.
    Policy(PolicySummary),
    /// An indicator snapshot.
    Indicators(IndicatorSnapshot),
}

impl Body {
    /// The kind this body is.
    pub fn kind(&self) -> DocumentKind {
        match self {
            Body::Policy(_) => DocumentKind::PolicySummary,
            Body::Indicators(_) => DocumentKind::IndicatorSnapshot,
        }
    }
}

/// A text in one language.
#[derive(Clone, Debug, PartialEq)]
pub struct LocalizedText {
    /// BCP 47 language tag.
    pub language: String,
    /// The text.
    pub text: String,
}

/// Adoption status of a policy document.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PolicyStatus {
    /// Circulated for comment.
    Draft,
    /// Adopted.
    Adopted,
    /// Superseded by a later document.
    Superseded,
    /// Withdrawn.
    Withdrawn,
}

/// A reference to a source document.
#[derive(Clone, Debug, PartialEq)]
pub struct Reference {
    /// Title of the referenced document.
    pub title: String,
    /// http or https URL.
    pub url: String,
    /// SHA-256 of the referenced document, if known.
    pub sha256: Option<Digest>,
}

/// A summary of a policy outcome of a regional process.
#[derive(Clone, Debug, PartialEq)]
pub struct PolicySummary {
    /// Titles, one per language.
    pub title: Vec<LocalizedText>,
    /// Summaries, one per language.
    pub summary: Vec<LocalizedText>,
    /// The meeting that produced it.
    pub meeting: String,
    /// Meeting date, YYYY-MM-DD or empty.
    pub meeting_date: String,
    /// Adoption status.
    pub status: PolicyStatus,
    /// Countries concerned, ISO 3166-1 alpha-3.
    pub countries: Vec<String>,
    /// Global Compact for Migration objectives, 1 to 23.
    pub gcm_objectives: Vec<u32>,
    /// SDG targets, e.g. "10.7".
    pub sdg_targets: Vec<String>,
    /// Source documents.
    pub references: Vec<Reference>,
}

/// What an observation does to the published series.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ObservationAction {
    /// Adds an observation for a new key.
    Append,
    /// Revises the value of an existing key.
    Replace,
    /// Deletes a key's observation (explicit tombstone).
    Delete,
}

/// One SDMX-style observation.
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    /// What it does.
    pub action: ObservationAction,
    /// REF_AREA: ISO 3166-1 alpha-3 of a member state.
    pub ref_area: String,
    /// TIME_PERIOD in SDMX form.
    pub time_period: String,
    /// Disaggregation dimensions as (id, value).
    pub dimensions: Vec<(String, String)>,
    /// OBS_VALUE; absent for deletes.
    pub obs_value: Option<f64>,
    /// SDMX OBS_STATUS code or empty.
    pub obs_status: String,
    /// UNIT_MEASURE.
    pub unit_measure: String,
    /// UNIT_MULT, power of ten.
    pub unit_mult: i32,
    /// SDMX CONF_STATUS code or empty.
    pub conf_status: String,
    /// Footnote.
    pub footnote: String,
    /// Source of the figure.
    pub source: String,
}

/// Observations for one indicator.
#[derive(Clone, Debug, PartialEq)]
pub struct IndicatorSnapshot {
    /// Indicator code from the catalogue.
    pub indicator: String,
    /// The observations (empty when `chunks` is set).
    pub observations: Vec<Observation>,
    /// For a large snapshot: the signed manifest of its observation chunks (see
    /// [`crate::chunks`]); the observations travel separately.
    pub chunks: Option<ChunkManifest>,
}

/// The signed description of a large snapshot's observation chunks.
#[derive(Clone, Debug, PartialEq)]
pub struct ChunkManifest {
    /// Observations over all chunks.
    pub observation_count: u64,
    /// The chunks, in order.
    pub chunks: Vec<ChunkRef>,
}

/// One chunk: the SHA-256 and size of its exact bytes (a serialized `ObservationChunk`).
#[derive(Clone, Debug, PartialEq)]
pub struct ChunkRef {
    /// SHA-256 of the chunk bytes.
    pub sha256: Digest,
    /// Observations in the chunk.
    pub observation_count: u32,
    /// Length of the chunk bytes.
    pub byte_length: u32,
}

/// Resolves a proto3 enum field: 0 is "required", unknown values are "invalid".
fn enum_field<T>(
    field: &str,
    value: i32,
    convert: impl Fn(i32) -> Option<T>,
) -> Result<T, Rejection> {
    convert(value).ok_or_else(|| {
        if value == 0 {
            Rejection::invalid_field(field, reasons::FIELD_REQUIRED, "is required")
        } else {
            Rejection::invalid_field(
                field,
                reasons::INVALID_ENUM,
                format!("value {value} is not a known value"),
            )
        }
    })
}

fn texts_from_proto(v: Vec<pb::LocalizedText>) -> Vec<LocalizedText> {
    v.into_iter()
        .map(|t| LocalizedText {
            language: t.language,
            text: t.text,
        })
        .collect()
}

fn texts_to_proto(v: &[LocalizedText]) -> Vec<pb::LocalizedText> {
    v.iter()
        .map(|t| pb::LocalizedText {
            language: t.language.clone(),
            text: t.text.clone(),
        })
        .collect()
}

/// Empty bytes → `None`, 32 bytes → digest, anything else → `Err(len)`.
fn optional_digest(bytes: &[u8]) -> Result<Option<Digest>, usize> {
    if bytes.is_empty() {
        return Ok(None);
    }
    Digest::from_slice(bytes).map(Some).ok_or(bytes.len())
}

fn digest_bytes(d: Option<Digest>) -> Vec<u8> {
    d.map(|d| d.0.to_vec()).unwrap_or_default()
}

impl PolicyStatus {
    /// The wire enum value.
    pub fn to_proto(self) -> pb::PolicyStatus {
        match self {
            PolicyStatus::Draft => pb::PolicyStatus::Draft,
            PolicyStatus::Adopted => pb::PolicyStatus::Adopted,
            PolicyStatus::Superseded => pb::PolicyStatus::Superseded,
            PolicyStatus::Withdrawn => pb::PolicyStatus::Withdrawn,
        }
    }

    /// From the wire enum value; `None` for unspecified or unknown values.
    pub fn from_proto(value: i32) -> Option<Self> {
        match pb::PolicyStatus::try_from(value).ok()? {
            pb::PolicyStatus::Unspecified => None,
            pb::PolicyStatus::Draft => Some(PolicyStatus::Draft),
            pb::PolicyStatus::Adopted => Some(PolicyStatus::Adopted),
            pb::PolicyStatus::Superseded => Some(PolicyStatus::Superseded),
            pb::PolicyStatus::Withdrawn => Some(PolicyStatus::Withdrawn),
        }
    }
}

impl ObservationAction {
    /// The wire enum value.
    pub fn to_proto(self) -> pb::ObservationAction {
        match self {
            ObservationAction::Append => pb::ObservationAction::Append,
            ObservationAction::Replace => pb::ObservationAction::Replace,
            ObservationAction::Delete => pb::ObservationAction::Delete,
        }
    }

    /// From the wire enum value; `None` for unspecified or unknown values.
    pub fn from_proto(value: i32) -> Option<Self> {
        match pb::ObservationAction::try_from(value).ok()? {
            pb::ObservationAction::Unspecified => None,
            pb::ObservationAction::Append => Some(ObservationAction::Append),
            pb::ObservationAction::Replace => Some(ObservationAction::Replace),
            pb::ObservationAction::Delete => Some(ObservationAction::Delete),
        }
    }
}

impl PolicySummary {
    /// From the wire form; refuses an unspecified status and malformed reference digests.
    pub fn from_proto(p: pb::PolicySummary) -> Result<Self, Rejection> {
        let status = enum_field("policy_summary.status", p.status, PolicyStatus::from_proto)?;
        let references = p
            .references
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let sha256 = optional_digest(&r.sha256).map_err(|len| {
                    Rejection::invalid_field(
                        format!("policy_summary.references[{i}].sha256"),
                        reasons::INVALID_DIGEST,
                        format!("must be empty or 32 bytes, got {len} bytes"),
                    )
                })?;
                Ok(Reference {
                    title: r.title,
                    url: r.url,
                    sha256,
                })
            })
            .collect::<Result<_, Rejection>>()?;
        Ok(PolicySummary {
            title: texts_from_proto(p.title),
            summary: texts_from_proto(p.summary),
            meeting: p.meeting,
            meeting_date: p.meeting_date,
            status,
            countries: p.countries,
            gcm_objectives: p.gcm_objectives,
            sdg_targets: p.sdg_targets,
            references,
        })
    }

    /// The wire form.
    pub fn to_proto(&self) -> pb::PolicySummary {
        pb::PolicySummary {
            title: texts_to_proto(&self.title),
            summary: texts_to_proto(&self.summary),
            meeting: self.meeting.clone(),
            meeting_date: self.meeting_date.clone(),
            status: self.status.to_proto() as i32,
            countries: self.countries.clone(),
            gcm_objectives: self.gcm_objectives.clone(),
            sdg_targets: self.sdg_targets.clone(),
            references: self
                .references
                .iter()
                .map(|r| pb::Reference {
                    title: r.title.clone(),
                    url: r.url.clone(),
                    sha256: digest_bytes(r.sha256),
                })
                .collect(),
        }
    }
}

impl Observation {
    /// From the wire form; `index` names it in errors.
    pub fn from_proto(index: usize, o: pb::Observation) -> Result<Self, Rejection> {
        let action = enum_field(
            &format!("indicator_snapshot.observations[{index}].action"),
            o.action,
            ObservationAction::from_proto,
        )?;
        Ok(Observation {
            action,
            ref_area: o.ref_area,
            time_period: o.time_period,
            dimensions: o.dimensions.into_iter().map(|d| (d.id, d.value)).collect(),
            obs_value: o.obs_value,
            obs_status: o.obs_status,
            unit_measure: o.unit_measure,
            unit_mult: o.unit_mult,
            conf_status: o.conf_status,
            footnote: o.footnote,
            source: o.source,
        })
    }

    /// The wire form.
    pub fn to_proto(&self) -> pb::Observation {
        pb::Observation {
            action: self.action.to_proto() as i32,
            ref_area: self.ref_area.clone(),
            time_period: self.time_period.clone(),
            dimensions: dimensions_to_proto(&self.dimensions),
            obs_value: self.obs_value,
            obs_status: self.obs_status.clone(),
            unit_measure: self.unit_measure.clone(),
            unit_mult: self.unit_mult,
            conf_status: self.conf_status.clone(),
            footnote: self.footnote.clone(),
            source: self.source.clone(),
        }
    }
}

impl IndicatorSnapshot {
    /// From the wire form; refuses unspecified or unknown observation actions.
    pub fn from_proto(p: pb::IndicatorSnapshot) -> Result<Self, Rejection> {
        let observations = p
            .observations
            .into_iter()
            .enumerate()
            .map(|(i, o)| Observation::from_proto(i, o))
            .collect::<Result<_, _>>()?;
        let chunks = p
            .chunks
            .map(|m| {
                let chunks = m
                    .chunks
                    .into_iter()
                    .enumerate()
                    .map(|(i, c)| {
                        let sha256 =
                            optional_digest(&c.sha256).ok().flatten().ok_or_else(|| {
                                Rejection::invalid_field(
                                    format!("indicator_snapshot.chunks.chunks[{i}].sha256"),
                                    reasons::INVALID_DIGEST,
                                    format!("must be 32 bytes, got {} bytes", c.sha256.len()),
                                )
                            })?;
                        Ok(ChunkRef {
                            sha256,
                            observation_count: c.observation_count,
                            byte_length: c.byte_length,
                        })
                    })
                    .collect::<Result<Vec<_>, Rejection>>()?;
                Ok::<_, Rejection>(ChunkManifest {
                    observation_count: m.observation_count,
                    chunks,
                })
            })
            .transpose()?;
        Ok(IndicatorSnapshot {
            indicator: p.indicator,
            observations,
            chunks,
        })
    }

    /// The wire form.
    pub fn to_proto(&self) -> pb::IndicatorSnapshot {
        pb::IndicatorSnapshot {
            indicator: self.indicator.clone(),
            observations: self
                .observations
                .iter()
                .map(Observation::to_proto)
                .collect(),
            chunks: self.chunks.as_ref().map(|m| pb::ChunkManifest {
                observation_count: m.observation_count,
                chunks: m
                    .chunks
                    .iter()
                    .map(|c| pb::ChunkDigest {
                        sha256: c.sha256.as_bytes().to_vec(),
                        observation_count: c.observation_count,
                        byte_length: c.byte_length,
                    })
                    .collect(),
            }),
        }
    }
}

impl Header {
    /// From the wire form.
    pub fn from_proto(h: pb::StatementHeader) -> Result<Self, Rejection> {
        let issued_at = match &h.issued_at {
            None => {
                return Err(Rejection::invalid_field(
                    "header.issued_at",
                    reasons::FIELD_REQUIRED,
                    "is required",
                ));
            }
            Some(ts) => timestamp_from_proto(ts).ok_or_else(|| {
                Rejection::invalid_field(
                    "header.issued_at",
                    reasons::INVALID_DATE,
                    "is not a representable timestamp",
                )
            })?,
        };
        let kind = enum_field("header.kind", h.kind, DocumentKind::from_proto)?;
        let prev_digest = optional_digest(&h.prev_digest).map_err(|len| {
            Rejection::invalid_field(
                "header.prev_digest",
                reasons::INVALID_PREV_DIGEST,
                format!("must be empty or 32 bytes, got {len} bytes"),
            )
        })?;
        Ok(Header {
            federation_id: h.federation_id,
            node_id: h.node_id,
            seq: h.seq,
            prev_digest,
            issued_at,
            kind,
            schema_version: h.schema_version,
            document: h.document,
            revision: h.revision,
        })
    }

    /// The wire form.
    pub fn to_proto(&self) -> pb::StatementHeader {
        pb::StatementHeader {
            federation_id: self.federation_id.clone(),
            node_id: self.node_id.clone(),
            seq: self.seq,
            prev_digest: digest_bytes(self.prev_digest),
            issued_at: Some(timestamp_to_proto(self.issued_at)),
            kind: self.kind.to_proto() as i32,
            schema_version: self.schema_version,
            document: self.document.clone(),
            revision: self.revision,
        }
    }
}

impl Statement {
    /// Decodes payload bytes (already signature-checked) into a statement.
    pub fn decode(payload: &[u8]) -> Result<Statement, Rejection> {
        let p = pb::Statement::decode(payload).map_err(|e| {
            Rejection::new(
                RejectClass::Invalid,
                reasons::PAYLOAD_MALFORMED,
                format!("the payload is not a valid rcpfed.v1.Statement: {e}"),
            )
        })?;
        Self::from_proto(p)
    }

    /// Serialized `rcpfed.v1.Statement` bytes: the payload to sign.
    pub fn encode(&self) -> Vec<u8> {
        self.to_proto().encode_to_vec()
    }

    /// The wire form.
    pub fn to_proto(&self) -> pb::Statement {
        let body = match &self.body {
            Body::Policy(p) => pb::statement::Body::PolicySummary(p.to_proto()),
            Body::Indicators(s) => pb::statement::Body::IndicatorSnapshot(s.to_proto()),
        };
        pb::Statement {
            header: Some(self.header.to_proto()),
            body: Some(body),
        }
    }

    /// From the wire form: header and body required, enums known, digests 32 bytes, and the
    /// header's kind agreeing with the body.
    pub fn from_proto(p: pb::Statement) -> Result<Self, Rejection> {
        let header = p.header.ok_or_else(|| {
            Rejection::invalid_field("header", reasons::FIELD_REQUIRED, "is required")
        })?;
        let header = Header::from_proto(header)?;
        let body = match p.body {
            None => {
                return Err(Rejection::invalid_field(
                    "body",
                    reasons::FIELD_REQUIRED,
                    "is required: set policy_summary or indicator_snapshot",
                ));
            }
            Some(pb::statement::Body::PolicySummary(b)) => {
                Body::Policy(PolicySummary::from_proto(b)?)
            }
            Some(pb::statement::Body::IndicatorSnapshot(b)) => {
                Body::Indicators(IndicatorSnapshot::from_proto(b)?)
            }
        };
        if header.kind != body.kind() {
            return Err(Rejection::new(
                RejectClass::Invalid,
                reasons::KIND_MISMATCH,
                format!(
                    "header.kind is {} but the body is a {}; make them agree",
                    header.kind.as_str(),
                    body.kind().as_str()
                ),
            )
            .with_violations(vec![crate::rejection::Violation::new(
                "header.kind",
                reasons::KIND_MISMATCH,
                format!("does not match the {} body", body.kind().as_str()),
            )]));
        }
        Ok(Statement { header, body })
    }
}

/// The field of column `column` (".ref_area", "" for the row) of observation `i` of an
/// indicator snapshot, as violations name it; built only when a rule is broken, so a million
/// clean rows allocate no messages.
pub(crate) fn obs_field(i: usize, column: &str) -> String {
    format!("indicator_snapshot.observations[{i}]{column}")
}

/// Optional dimensions (id, value) in their wire form, as observations and observation keys
/// carry them.
pub(crate) fn dimensions_to_proto(dimensions: &[(String, String)]) -> Vec<pb::Dimension> {
    dimensions
        .iter()
        .map(|(id, value)| pb::Dimension {
            id: id.clone(),
            value: value.clone(),
        })
        .collect()
}

/// Sample statements shared by this crate's tests.
#[cfg(test)]
pub(crate) mod samples {
    use super::*;
    use time::macros::datetime;

    /// A valid policy statement by "colombo".
    pub fn policy() -> Statement {
        Statement {
            header: Header {
                federation_id: "rcp-federation".into(),
                node_id: "colombo".into(),
                seq: 1,
                prev_digest: None,
                issued_at: datetime!(2024-05-17 10:00 UTC),
                kind: DocumentKind::PolicySummary,
                schema_version: 1,
                document: "regions/colombo/policies/2024-dhaka-declaration".into(),
                revision: 1,
            },
            body: Body::Policy(PolicySummary {
                title: vec![
                    LocalizedText {
                        language: "en".into(),
                        text: "Dhaka Declaration".into(),
                    },
                    LocalizedText {
                        language: "fr".into(),
                        text: "Déclaration de Dacca".into(),
                    },
                ],
                summary: vec![LocalizedText {
                    language: "en".into(),
                    text: "Ministers agreed on fair recruitment.".into(),
                }],
                meeting: "5th Ministerial Consultation of the Colombo Process".into(),
                meeting_date: "2011-04-20".into(),
                status: PolicyStatus::Adopted,
                countries: vec!["BGD".into(), "LKA".into()],
                gcm_objectives: vec![6, 20],
                sdg_targets: vec!["10.7".into(), "10.c".into()],
                references: vec![Reference {
                    title: "Declaration".into(),
                    url: "https://www.colomboprocess.org/".into(),
                    sha256: Some(Digest::of(b"declaration")),
                }],
            }),
        }
    }

    /// A valid indicator statement by "colombo" with one observation for LKA.
    pub fn indicators() -> Statement {
        Statement {
            header: Header {
                federation_id: "rcp-federation".into(),
                node_id: "colombo".into(),
                seq: 2,
                prev_digest: Some(Digest::of(b"previous")),
                issued_at: datetime!(2024-05-17 10:00 UTC),
                kind: DocumentKind::IndicatorSnapshot,
                schema_version: 1,
                document: "regions/colombo/indicators/remit-inflow".into(),
                revision: 1,
            },
            body: Body::Indicators(IndicatorSnapshot {
                indicator: "REMIT_INFLOW".into(),
                observations: vec![Observation {
                    action: ObservationAction::Append,
                    ref_area: "LKA".into(),
                    time_period: "2023".into(),
                    dimensions: vec![("SEX".into(), "_T".into())],
                    obs_value: Some(5.9),
                    obs_status: "A".into(),
                    unit_measure: "current USD".into(),
                    unit_mult: 9,
                    conf_status: String::new(),
                    footnote: String::new(),
                    source: "World Bank/KNOMAD".into(),
                }],
                chunks: None,
            }),
        }
    }
}

/// The member and key a statement envelope is signed by ([`verify_statement_signature`]).
#[derive(Clone, Copy, Debug)]
pub struct SignedBy<'f> {
    /// The member that owns the key.
    pub member: &'f crate::members::Member,
    /// The key whose signature verified.
    pub key: &'f crate::keys::VerifyKey,
}

impl SignedBy<'_> {
    /// Refuses (`PERMISSION_DENIED` / `KEY_NOT_OWNED`) unless the key belongs to `member_id`:
    /// the member a statement claims to be from, or the peer that sent it.
    pub fn owned_by(&self, member_id: &str) -> Result<(), Rejection> {
        if self.member.id == member_id {
            return Ok(());
        }
        Err(Rejection::new(
            RejectClass::Forbidden,
            reasons::KEY_NOT_OWNED,
            format!(
                "the envelope is signed with key {} of {}, not with a key of {member_id}",
                self.key.key_id, self.member.id
            ),
        )
        .with_meta("key_id", self.key.key_id.clone()))
    }
}

/// The one check of a statement envelope's signature: the payload type is a statement's,
/// and a signature verifies with a key some member of `federation` owns. Returns that member
/// and key; whose statement it may be is [`SignedBy::owned_by`], and whether the key was in
/// force at a given time is [`crate::members::Federation::key_state`].
pub fn verify_statement_signature<'f>(
    envelope: &crate::envelope::SignedEnvelope,
    federation: &'f crate::members::Federation,
) -> Result<SignedBy<'f>, Rejection> {
    use crate::envelope::STATEMENT_PAYLOAD_TYPE;
    if envelope.payload_type != STATEMENT_PAYLOAD_TYPE {
        return Err(Rejection::new(
            RejectClass::Invalid,
            reasons::UNKNOWN_PAYLOAD_TYPE,
            format!(
                "payload type {} is not a statement's; use {STATEMENT_PAYLOAD_TYPE:?}",
                crate::rejection::quote(&envelope.payload_type)
            ),
        ));
    }
    let key = crate::envelope::verify_signatures(envelope, |key_id| {
        federation.key_owner(key_id).map(|(_, k)| k)
    })?;
    let (member, key) = federation.key_owner(&key.key_id).ok_or_else(|| {
        Rejection::new(
            RejectClass::Unauthenticated,
            reasons::UNKNOWN_KEY_ID,
            format!("key {} has no owner in the member file", key.key_id),
        )
    })?;
    Ok(SignedBy { member, key })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason_and_field(r: Result<Statement, Rejection>) -> Option<(&'static str, String)> {
        let e = r.err()?;
        let field = e
            .violations
            .first()
            .map(|v| v.field.clone())
            .unwrap_or_default();
        Some((e.reason, field))
    }

    #[test]
    fn round_trip() {
        for st in [samples::policy(), samples::indicators()] {
            let bytes = st.encode();
            assert_eq!(Statement::decode(&bytes), Ok(st));
        }
    }

    #[test]
    fn garbage_is_payload_malformed() {
        let e = Statement::decode(&[0x0a, 0xff]).err();
        assert_eq!(e.map(|e| e.reason), Some(reasons::PAYLOAD_MALFORMED));
    }

    #[test]
    fn structural_errors_name_the_field() {
        let base = samples::indicators().to_proto();
        let policy = samples::policy().to_proto();
        type Edit = fn(&mut pb::Statement);
        let cases: Vec<(pb::Statement, Edit, &str, &str)> = vec![
            (
                base.clone(),
                |p| p.header = None,
                "header",
                reasons::FIELD_REQUIRED,
            ),
            (
                base.clone(),
                |p| p.body = None,
                "body",
                reasons::FIELD_REQUIRED,
            ),
            (
                base.clone(),
                |p| {
                    if let Some(h) = p.header.as_mut() {
                        h.issued_at = None;
                    }
                },
                "header.issued_at",
                reasons::FIELD_REQUIRED,
            ),
            (
                base.clone(),
                |p| {
                    if let Some(h) = p.header.as_mut() {
                        h.kind = 0;
                    }
                },
                "header.kind",
                reasons::FIELD_REQUIRED,
            ),
            (
                base.clone(),
                |p| {
                    if let Some(h) = p.header.as_mut() {
                        h.kind = 9;
                    }
                },
                "header.kind",
                reasons::INVALID_ENUM,
            ),
            (
                base.clone(),
                |p| {
                    if let Some(h) = p.header.as_mut() {
                        h.prev_digest = vec![1; 31];
                    }
                },
                "header.prev_digest",
                reasons::INVALID_PREV_DIGEST,
            ),
            (
                base.clone(),
                |p| {
                    if let Some(pb::statement::Body::IndicatorSnapshot(s)) = p.body.as_mut() {
                        s.observations[0].action = 0;
                    }
                },
                "indicator_snapshot.observations[0].action",
                reasons::FIELD_REQUIRED,
            ),
            (
                policy.clone(),
                |p| {
                    if let Some(pb::statement::Body::PolicySummary(s)) = p.body.as_mut() {
                        s.status = 0;
                    }
                },
                "policy_summary.status",
                reasons::FIELD_REQUIRED,
            ),
            (
                policy.clone(),
                |p| {
                    if let Some(pb::statement::Body::PolicySummary(s)) = p.body.as_mut() {
                        s.references[0].sha256 = vec![0; 33];
                    }
                },
                "policy_summary.references[0].sha256",
                reasons::INVALID_DIGEST,
            ),
            (
                policy.clone(),
                |p| {
                    if let Some(h) = p.header.as_mut() {
                        h.kind = pb::DocumentKind::IndicatorSnapshot as i32;
                    }
                },
                "header.kind",
                reasons::KIND_MISMATCH,
            ),
        ];
        for (mut p, edit, field, rule) in cases {
            edit(&mut p);
            let got = reason_and_field(Statement::decode(&p.encode_to_vec()));
            let want_reason = if rule == reasons::KIND_MISMATCH {
                reasons::KIND_MISMATCH
            } else {
                reasons::VALIDATION_FAILED
            };
            assert_eq!(got, Some((want_reason, field.to_owned())), "{field}");
            let e = Statement::from_proto(p).err();
            assert_eq!(
                e.and_then(|e| e.violations.first().map(|v| v.reason)),
                Some(rule)
            );
        }
    }
}
