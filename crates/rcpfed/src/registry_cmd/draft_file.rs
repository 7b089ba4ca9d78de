//! The draft file: the next registry version as human-editable TOML, and its conversion to
//! and from a `Registry`.

use anyhow::{Context as _, Result};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use rcpfed_core::Digest;
use rcpfed_core::registry::Registry;
use rcpfed_core::rejection::{Rejection, reasons};
use rcpfed_core::wire::timestamp_to_proto;
use rcpfed_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime};
/// A registry version as a human-editable TOML file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DraftFile {
    /// The federation (SPIFFE trust domain).
    pub federation_id: String,
    /// Version number: the previous one plus 1.
    pub version: u64,
    /// RFC 3339.
    pub issued_at: String,
    /// RFC 3339.
    pub expires_at: String,
    /// Hex SHA-256 of the previous version's payload; empty for version 1.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub previous_digest: String,
    /// Id of the member that runs the hub.
    pub hub_id: String,
    /// The root keys that sign the next version.
    pub root: DraftRoot,
    /// Every member.
    #[serde(default)]
    pub members: Vec<DraftMember>,
}

/// `[root]` of a draft.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DraftRoot {
    /// Distinct root signatures needed.
    pub threshold: u32,
    /// `[[root.keys]]`.
    pub keys: Vec<DraftRootKey>,
}

/// One `[[root.keys]]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DraftRootKey {
    /// Key id; must match the public key.
    pub key_id: String,
    /// Standard base64 of the raw 32-byte Ed25519 key.
    pub public_key: String,
    /// Who holds it.
    #[serde(default)]
    pub holder: String,
}

/// One `[[members]]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DraftMember {
    /// Member id.
    pub id: String,
    /// Full name.
    pub name: String,
    /// "RCP", "IRF", "hub" or "operator".
    pub kind: String,
    /// "publisher", "reader", "witness", "admin".
    #[serde(default)]
    pub roles: Vec<String>,
    /// URI SAN of its TLS certificate.
    pub spiffe_id: String,
    /// `[[members.keys]]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<DraftKey>,
    /// `[[members.states]]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub states: Vec<DraftState>,
}

/// One `[[members.keys]]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DraftKey {
    /// Key id; must match the public key.
    pub key_id: String,
    /// Standard base64 of the raw 32-byte Ed25519 key.
    pub public_key: String,
    /// RFC 3339: first moment the key may sign.
    pub valid_from: String,
    /// "active", "retired" or "revoked".
    pub status: String,
    /// RFC 3339: the retirement or revocation moment; empty while active.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub status_at: String,
}

/// One `[[members.states]]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DraftState {
    /// ISO 3166-1 alpha-3.
    pub iso3: String,
    /// YYYY-MM-DD, first day of membership; empty when unknown.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub since: String,
    /// YYYY-MM-DD, first day it is no longer a member; empty while it belongs.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub until: String,
}

pub(super) fn rfc3339(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

pub(super) fn format_date(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

pub(super) fn field_error(
    field: impl Into<String>,
    reason: &'static str,
    what: impl Into<String>,
) -> Rejection {
    Rejection::invalid_field(field, reason, what)
}

pub(super) fn parse_time_field(text: &str, field: &str) -> Result<OffsetDateTime, Rejection> {
    parse_rfc3339(text).map_err(|e| field_error(field, reasons::INVALID_DATE, e))
}

pub(super) fn parse_rfc3339(text: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(text.trim(), &Rfc3339)
        .map(|t| t.to_offset(time::UtcOffset::UTC))
        .map_err(|e| format!("{text:?} is not an RFC 3339 time such as 2026-01-31T12:00:00Z: {e}"))
}

pub(super) fn decode_key_bytes(text: &str, field: &str) -> Result<Vec<u8>, Rejection> {
    B64.decode(text.trim()).map_err(|_| {
        field_error(
            field,
            reasons::INVALID_PUBLIC_KEY,
            format!("{text:?} is not standard base64 of a 32-byte ed25519 key"),
        )
    })
}

impl DraftFile {
    /// The draft of `registry`, every field in its text form.
    pub fn from_registry(registry: &Registry) -> Self {
        DraftFile {
            federation_id: registry.federation_id.clone(),
            version: registry.version,
            issued_at: rfc3339(registry.issued_at),
            expires_at: rfc3339(registry.expires_at),
            previous_digest: registry
                .previous_digest
                .map(|d| d.to_hex())
                .unwrap_or_default(),
            hub_id: registry.hub_id.clone(),
            root: DraftRoot {
                threshold: registry.root.threshold,
                keys: registry
                    .root
                    .keys
                    .iter()
                    .map(|(k, holder)| DraftRootKey {
                        key_id: k.key_id.clone(),
                        public_key: k.to_base64(),
                        holder: holder.clone(),
                    })
                    .collect(),
            },
            members: registry
                .members
                .iter()
                .map(|m| DraftMember {
                    id: m.id.clone(),
                    name: m.name.clone(),
                    kind: m.kind.clone(),
                    roles: m.roles.iter().map(|r| r.as_str().to_owned()).collect(),
                    spiffe_id: m.spiffe_id.clone(),
                    keys: m
                        .keys
                        .iter()
                        .map(|k| DraftKey {
                            key_id: k.key.key_id.clone(),
                            public_key: k.key.to_base64(),
                            valid_from: rfc3339(k.valid_from),
                            status: k.status.status_str().to_owned(),
                            status_at: k.status.status_at().map(rfc3339).unwrap_or_default(),
                        })
                        .collect(),
                    states: m
                        .states
                        .iter()
                        .map(|s| DraftState {
                            iso3: s.iso3.clone(),
                            since: s.since.map(format_date).unwrap_or_default(),
                            until: s.until.map(format_date).unwrap_or_default(),
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    /// The registry this draft describes, through the wire form so that every structural rule
    /// of [`Registry::from_proto`] applies (unknown roles, invalid keys, bad dates…). The
    /// semantic rules are [`Registry::check`], which the caller runs.
    pub fn to_registry(&self) -> Result<Registry, Rejection> {
        let previous_digest = self.previous_digest_bytes()?;
        let root_keys = self
            .root
            .keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                Ok(pb::RootKey {
                    key_id: k.key_id.clone(),
                    public_key: decode_key_bytes(
                        &k.public_key,
                        &format!("root.keys[{i}].public_key"),
                    )?,
                    holder: k.holder.clone(),
                })
            })
            .collect::<Result<Vec<_>, Rejection>>()?;
        let members = self
            .members
            .iter()
            .enumerate()
            .map(|(i, m)| m.to_proto(i))
            .collect::<Result<Vec<_>, Rejection>>()?;
        let doc = pb::RegistryDocument {
            federation_id: self.federation_id.clone(),
            version: self.version,
            issued_at: Some(timestamp_to_proto(parse_time_field(
                &self.issued_at,
                "issued_at",
            )?)),
            expires_at: Some(timestamp_to_proto(parse_time_field(
                &self.expires_at,
                "expires_at",
            )?)),
            previous_digest,
            root: Some(pb::RootKeys {
                keys: root_keys,
                threshold: self.root.threshold,
            }),
            hub_id: self.hub_id.clone(),
            members,
        };
        Registry::from_proto(doc)
    }

    /// The previous version's digest as bytes; none (empty) for version 1.
    fn previous_digest_bytes(&self) -> Result<Vec<u8>, Rejection> {
        if self.previous_digest.trim().is_empty() {
            return Ok(Vec::new());
        }
        Digest::from_hex(self.previous_digest.trim())
            .map(|d| d.0.to_vec())
            .ok_or_else(|| {
                field_error(
                    "previous_digest",
                    reasons::INVALID_DIGEST,
                    format!("{:?} is not 64 hex digits", self.previous_digest),
                )
            })
    }

    /// The TOML text, with a comment header.
    pub fn to_toml(&self) -> Result<String> {
        let body = toml::to_string_pretty(self).context("cannot write the draft as TOML")?;
        Ok(format!(
            "# rcpfed registry draft, version {}. Edit, then `rcpfed registry build`.\n\
             # Times are RFC 3339; key status is \"active\", \"retired\" or \"revoked\" (with status_at).\n\n{body}",
            self.version
        ))
    }

    /// Parses the TOML text (unknown fields are refused).
    pub fn from_toml(text: &str) -> Result<Self> {
        toml::from_str(text).context("the draft is not valid")
    }
}

impl DraftMember {
    /// The wire form of the draft's member `i`.
    fn to_proto(&self, i: usize) -> Result<pb::RegistryMember, Rejection> {
        let keys = self
            .keys
            .iter()
            .enumerate()
            .map(|(j, k)| k.to_proto(&format!("members[{i}].keys[{j}]")))
            .collect::<Result<Vec<_>, Rejection>>()?;
        Ok(pb::RegistryMember {
            id: self.id.clone(),
            name: self.name.clone(),
            kind: self.kind.clone(),
            roles: self.roles.clone(),
            spiffe_id: self.spiffe_id.clone(),
            keys,
            states: self
                .states
                .iter()
                .map(|s| pb::StateMembership {
                    iso3: s.iso3.clone(),
                    since: s.since.clone(),
                    until: s.until.clone(),
                })
                .collect(),
        })
    }
}

impl DraftKey {
    /// The wire form of this key; `f` names it in errors.
    fn to_proto(&self, f: &str) -> Result<pb::RegistryKey, Rejection> {
        let status = match self.status.as_str() {
            "active" => pb::KeyStatus::Active,
            "retired" => pb::KeyStatus::Retired,
            "revoked" => pb::KeyStatus::Revoked,
            other => {
                return Err(field_error(
                    format!("{f}.status"),
                    reasons::INVALID_ENUM,
                    format!("{other:?} is not \"active\", \"retired\" or \"revoked\""),
                ));
            }
        };
        let status_at = if self.status_at.trim().is_empty() {
            None
        } else {
            Some(timestamp_to_proto(parse_time_field(
                &self.status_at,
                &format!("{f}.status_at"),
            )?))
        };
        Ok(pb::RegistryKey {
            key_id: self.key_id.clone(),
            public_key: decode_key_bytes(&self.public_key, &format!("{f}.public_key"))?,
            valid_from: Some(timestamp_to_proto(parse_time_field(
                &self.valid_from,
                &format!("{f}.valid_from"),
            )?)),
            status: status as i32,
            status_at,
        })
    }
}
