//! The catalogue as a signed, chained document: the protobuf form the hub signs and logs,
//! and its verification against the previous version.

use super::{
    Attributes, Catalogue, CatalogueInfo, Codelist, Concept, Indicator, IndicatorDimension, Range,
    Severity,
};
use crate::Digest;
use crate::envelope::SignedEnvelope;
use crate::hub_document::{HubDocument, HubDocumentError, verify_hub_document};
use crate::keys::{SecretKey, VerifyKey};
use crate::limits::MAX_VIOLATIONS;
use crate::rejection::{RejectClass, Rejection, Violation, reasons};
use crate::wire::{timestamp_from_proto, timestamp_to_proto};
use prost::Message as _;
use rcpfed_proto::v1 as pb;
use std::collections::BTreeMap;
use std::sync::Arc;
use time::OffsetDateTime;
/// Payload type of an envelope carrying a `rcpfed.v1.CatalogueDocument`.
pub const CATALOGUE_PAYLOAD_TYPE: &str = "application/vnd.rcpfed.catalogue.v1+protobuf";

/// The shipped catalogue, `data/catalogue/catalogue.toml`: what the hub issues as version 1
/// when its operator gives no other file.
pub fn embedded_catalogue_toml() -> &'static str {
    include_str!("../../../../data/catalogue/catalogue.toml")
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
    /// The digest of the version before it (None for version 1), as signed.
    pub previous_digest: Option<Digest>,
    /// The catalogue it carries, shared by the validators without copying.
    pub catalogue: Arc<Catalogue>,
    /// The envelope, for mirroring and re-serving.
    pub envelope: SignedEnvelope,
}

/// Field problems of a document, before any consistency rule can run.
#[derive(Default)]
pub(super) struct Problems(Vec<Violation>);

impl Problems {
    fn add(&mut self, field: String, reason: &'static str, description: impl Into<String>) {
        self.0.push(Violation::new(field, reason, description));
    }
}

/// Refuses a catalogue with its violations (reason CATALOGUE_INVALID), the first in the
/// message; at most [`MAX_VIOLATIONS`] are attached.
pub(super) fn inconsistent(mut v: Vec<Violation>) -> Rejection {
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
pub(super) fn repeated(p: &mut Problems, field: String, id: &str) {
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
        let dimensions = dimensions_from(doc, &mut p);
        let (obs_status, conf_status) = attributes_from(doc, &mut p);
        let codelists = codelists_from(doc, &mut p);
        let indicators = doc
            .indicators
            .iter()
            .enumerate()
            .map(|(i, ind)| indicator_from(i, ind, &mut p))
            .collect();
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

/// The document's dimensions by id; a repeated id is a problem.
fn dimensions_from(doc: &pb::CatalogueDocument, p: &mut Problems) -> BTreeMap<String, Concept> {
    let mut dimensions = BTreeMap::new();
    for (k, c) in doc.dimensions.iter().enumerate() {
        let concept = Concept {
            name: c.name.clone(),
            codelist: c.codelist.clone(),
        };
        if dimensions.insert(c.id.clone(), concept).is_some() {
            repeated(p, format!("dimensions[{k}].id"), &c.id);
        }
    }
    dimensions
}

/// The OBS_STATUS and CONF_STATUS attributes (None when missing, which is a problem); any
/// other attribute or a repeated one is a problem too.
fn attributes_from(
    doc: &pb::CatalogueDocument,
    p: &mut Problems,
) -> (Option<Concept>, Option<Concept>) {
    let (mut obs_status, mut conf_status) = (None, None);
    for (k, c) in doc.attributes.iter().enumerate() {
        let slot = match c.id.as_str() {
            "OBS_STATUS" => &mut obs_status,
            "CONF_STATUS" => &mut conf_status,
            other => {
                p.add(
                    format!("attributes[{k}].id"),
                    reasons::INVALID_DIMENSION,
                    format!("{other:?} is not a coded attribute: use OBS_STATUS or CONF_STATUS"),
                );
                continue;
            }
        };
        let concept = Concept {
            name: c.name.clone(),
            codelist: c.codelist.clone(),
        };
        if slot.replace(concept).is_some() {
            repeated(p, format!("attributes[{k}].id"), &c.id);
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
    (obs_status, conf_status)
}

/// The codelists by id, each with its codes sorted by id (out of order or repeated codes and
/// repeated codelist ids are problems).
fn codelists_from(doc: &pb::CatalogueDocument, p: &mut Problems) -> BTreeMap<String, Codelist> {
    let mut codelists = BTreeMap::new();
    for (k, cl) in doc.codelists.iter().enumerate() {
        let mut codes = BTreeMap::new();
        let mut last: Option<&str> = None;
        for (m, code) in cl.codes.iter().enumerate() {
            let field = format!("codelists[{k}].codes[{m}].id");
            if last.is_some_and(|l| l >= code.id.as_str()) {
                if codes.contains_key(&code.id) {
                    repeated(p, field, &code.id);
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
            repeated(p, format!("codelists[{k}].id"), &cl.id);
        }
    }
    codelists
}

/// Indicator `i` of the document; a range without a known severity is a problem (and is kept
/// as an error range, so later checks still see it).
fn indicator_from(i: usize, ind: &pb::IndicatorDefinition, p: &mut Problems) -> Indicator {
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
    Indicator {
        code: ind.code.clone(),
        sdg_series: ind.sdg_series.clone(),
        name: ind.name.clone(),
        custodian: ind.custodian.clone(),
        units: ind.units.clone(),
        unit_mults: ind.unit_mults.clone(),
        frequencies: ind.frequencies.clone(),
        dimensions: dimensions_of(ind),
        ranges,
    }
}

/// The dimensions an indicator definition declares, as read from the wire (an empty
/// `default_code` is no default). The one reading of them: [`Catalogue::from_document`] checks
/// the catalogue they are part of, [`crate::obskey::KeyRule::from_catalogue_payload`] reads
/// them from logged versions without that check.
pub(crate) fn dimensions_of(ind: &pb::IndicatorDefinition) -> Vec<IndicatorDimension> {
    ind.dimensions
        .iter()
        .map(|d| IndicatorDimension {
            id: d.id.clone(),
            required: d.required,
            default: (!d.default_code.is_empty()).then(|| d.default_code.clone()),
        })
        .collect()
}

/// The envelope the hub logs for `catalogue` as feed version `version` of `federation_id`:
/// the encoding of [`Catalogue::to_document`] signed with `key` (the hub member's statement
/// signing key).
pub fn sign_catalogue(
    catalogue: &Catalogue,
    federation_id: &str,
    version: u64,
    issued_at: OffsetDateTime,
    previous_digest: Option<Digest>,
    key: &SecretKey,
) -> SignedEnvelope {
    let document = catalogue.to_document(federation_id, version, issued_at, previous_digest);
    SignedEnvelope::sign(CATALOGUE_PAYLOAD_TYPE, document.encode_to_vec(), key)
}

impl HubDocument for pb::CatalogueDocument {
    const PAYLOAD_TYPE: &'static str = CATALOGUE_PAYLOAD_TYPE;
    const MESSAGE_NAME: &'static str = "rcpfed.v1.CatalogueDocument";
    fn federation_id(&self) -> &str {
        &self.federation_id
    }
}

/// The refusal of a catalogue version that failed the check of every hub document: the
/// signature's own reasons, the rest as the catalogue rules word them.
fn hub_document_refusal(e: HubDocumentError) -> Rejection {
    match e {
        HubDocumentError::PayloadType { found, expected } => Rejection::new(
            RejectClass::Invalid,
            reasons::UNKNOWN_PAYLOAD_TYPE,
            format!("payload type {found:?} is not {expected:?}"),
        ),
        HubDocumentError::Signature(e) => Rejection {
            message: format!("the catalogue is not signed by the hub: {}", e.message),
            ..e
        },
        HubDocumentError::Undecodable { message, error } => chain_error(
            RejectClass::Invalid,
            format!("the payload is not a valid {message}: {error}"),
        ),
        HubDocumentError::OtherFederation { found, expected } => chain_error(
            RejectClass::Forbidden,
            format!("the catalogue version is for federation {found:?}, not {expected:?}"),
        ),
    }
}

/// A CATALOGUE_INVALID refusal of class `class`.
pub(super) fn chain_error(class: RejectClass, message: String) -> Rejection {
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
    let document = verify_hub_document::<pb::CatalogueDocument>(envelope, hub_keys, federation_id)
        .map_err(hub_document_refusal)?
        .document;
    let version = document.version;
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
        previous_digest: previous.map(|(_, d)| d),
        catalogue: Arc::new(catalogue),
        envelope: envelope.clone(),
    })
}

/// Whether two catalogues say the same thing: exactly `a == b` (derived [`PartialEq`]); named
/// so the hub can skip issuing a version that changes nothing.
pub fn same_content(a: &Catalogue, b: &Catalogue) -> bool {
    a == b
}
