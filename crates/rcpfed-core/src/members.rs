//! The federation member file: who belongs to the federation, which TLS identity and which
//! signing keys each member has, its roles, and (for regional processes) its member states over
//! time. `rcpfed pki init` writes it; the hub and every node load it. It is the simple precursor
//! of the threshold-signed registry.

use crate::keys::{KeyError, VerifyKey};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use time::Date;

/// What a member may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Submits its own statements to the hub.
    Publisher,
    /// Reads statements and subscribes to the feed.
    Reader,
    /// Cosigns log checkpoints.
    Witness,
    /// Administers: equivocation evidence, publishing on a node, registry changes.
    Admin,
}

impl Role {
    /// The lowercase name used in files and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Publisher => "publisher",
            Role::Reader => "reader",
            Role::Witness => "witness",
            Role::Admin => "admin",
        }
    }
}

/// A state's membership of a regional process, with optional dates.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStateFile {
    /// ISO 3166-1 alpha-3 code.
    pub iso3: String,
    /// First day of membership, YYYY-MM-DD.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub since: String,
    /// Day the membership ended, YYYY-MM-DD (the state is not a member on that day).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub until: String,
}

/// A public key as written in the file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyFile {
    /// Key id; must match the public key.
    pub key_id: String,
    /// Standard base64 of the raw 32-byte Ed25519 public key.
    pub public_key: String,
}

/// One member as written in the file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberFile {
    /// Member id: lowercase letters, digits and '-', for example "colombo".
    pub id: String,
    /// Full name.
    pub name: String,
    /// "RCP", "IRF", "hub" or "operator".
    pub kind: String,
    /// Roles.
    pub roles: Vec<Role>,
    /// URI SAN of its TLS certificate.
    pub spiffe_id: String,
    /// Statement signing keys.
    #[serde(default)]
    pub keys: Vec<KeyFile>,
    /// Member states (regional processes only).
    #[serde(default)]
    pub states: Vec<MemberStateFile>,
}

/// The member file as written on disk (TOML).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FederationFile {
    /// Federation id, the trust domain of every SPIFFE id.
    pub federation_id: String,
    /// Id of the member that runs the hub.
    pub hub_id: String,
    /// Every member, including the hub and operators.
    pub members: Vec<MemberFile>,
}

/// Why a member file is refused.
#[derive(Debug, thiserror::Error)]
pub enum FederationError {
    /// Not valid TOML or missing fields.
    #[error("member file is not valid: {0}")]
    Syntax(String),
    /// A semantic problem, in plain words.
    #[error("member file is not valid: {0}")]
    Invalid(String),
}

/// A state's membership period. `since` inclusive, `until` exclusive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Membership {
    /// ISO 3166-1 alpha-3.
    pub iso3: String,
    /// First day, if known.
    pub since: Option<Date>,
    /// First day it is no longer a member, if it left.
    pub until: Option<Date>,
}

/// A verified, indexed member.
#[derive(Clone, Debug)]
pub struct Member {
    /// Member id.
    pub id: String,
    /// Full name.
    pub name: String,
    /// Kind.
    pub kind: String,
    /// Roles.
    pub roles: BTreeSet<Role>,
    /// URI SAN.
    pub spiffe_id: String,
    /// Signing keys.
    pub keys: Vec<VerifyKey>,
    /// Member states over time.
    pub states: Vec<Membership>,
}

impl Member {
    /// Whether the member has `role`.
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Whether `iso3` belongs to this member at any time.
    pub fn ever_had_state(&self, iso3: &str) -> bool {
        self.states.iter().any(|m| m.iso3 == iso3)
    }

    /// Whether `iso3` is a member state over the whole period `[start, end]` (inclusive days),
    /// by the member file's dates.
    pub fn has_state_during(&self, iso3: &str, start: Date, end: Date) -> bool {
        self.states.iter().any(|m| {
            m.iso3 == iso3
                && m.since.is_none_or(|since| since <= start)
                && m.until.is_none_or(|until| end < until)
        })
    }

    /// The key with `key_id`, if it is one of this member's.
    pub fn key(&self, key_id: &str) -> Option<&VerifyKey> {
        self.keys.iter().find(|k| k.key_id == key_id)
    }
}

/// The loaded federation.
#[derive(Clone, Debug)]
pub struct Federation {
    /// Federation id.
    pub federation_id: String,
    /// Id of the hub member.
    pub hub_id: String,
    members: BTreeMap<String, Member>,
    by_spiffe: BTreeMap<String, String>,
    key_owner: BTreeMap<String, String>,
    file: FederationFile,
}

/// Whether `id` is a valid member id (lowercase ASCII letters, digits and '-', 1 to 63 chars,
/// starting with a letter).
pub fn is_valid_member_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 63
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn parse_date(text: &str, what: &str) -> Result<Option<Date>, FederationError> {
    if text.is_empty() {
        return Ok(None);
    }
    crate::dates::parse_date(text).map(Some).ok_or_else(|| {
        FederationError::Invalid(format!("{what} {text:?} is not a YYYY-MM-DD date"))
    })
}

impl Federation {
    /// Parses and checks a member file.
    pub fn from_toml(text: &str) -> Result<Self, FederationError> {
        let file: FederationFile =
            toml::from_str(text).map_err(|e| FederationError::Syntax(e.to_string()))?;
        Self::from_file(file)
    }

    /// Checks a member file: ids valid and unique, SPIFFE ids unique and in this federation,
    /// keys valid, not weak, with matching ids and never shared, ISO codes real, dates valid.
    pub fn from_file(file: FederationFile) -> Result<Self, FederationError> {
        let invalid = |m: String| FederationError::Invalid(m);
        if !is_valid_member_id(&file.federation_id) {
            return Err(invalid(format!(
                "federation_id {:?} must be lowercase letters, digits and '-'",
                file.federation_id
            )));
        }
        let mut members = BTreeMap::new();
        let mut by_spiffe = BTreeMap::new();
        let mut key_owner = BTreeMap::new();
        for m in &file.members {
            if !is_valid_member_id(&m.id) {
                return Err(invalid(format!(
                    "member id {:?} must be lowercase letters, digits and '-'",
                    m.id
                )));
            }
            let prefix = format!("spiffe://{}/", file.federation_id);
            if !m.spiffe_id.starts_with(&prefix) {
                return Err(invalid(format!(
                    "member {}: spiffe_id {:?} is not in trust domain {}",
                    m.id, m.spiffe_id, file.federation_id
                )));
            }
            if by_spiffe
                .insert(m.spiffe_id.clone(), m.id.clone())
                .is_some()
            {
                return Err(invalid(format!(
                    "spiffe_id {:?} is listed twice",
                    m.spiffe_id
                )));
            }
            let mut keys = Vec::new();
            for k in &m.keys {
                let key = VerifyKey::from_base64(&k.public_key).map_err(|e: KeyError| {
                    invalid(format!("member {}: key {}: {e}", m.id, k.key_id))
                })?;
                if key.key_id != k.key_id {
                    return Err(invalid(format!(
                        "member {}: key id {} does not match its public key (expected {})",
                        m.id, k.key_id, key.key_id
                    )));
                }
                if key_owner.insert(key.key_id.clone(), m.id.clone()).is_some() {
                    return Err(invalid(format!("key {} is listed twice", key.key_id)));
                }
                keys.push(key);
            }
            if m.roles.contains(&Role::Publisher) && keys.is_empty() {
                return Err(invalid(format!(
                    "member {} has the publisher role but no signing key",
                    m.id
                )));
            }
            let mut states = Vec::new();
            for s in &m.states {
                if !crate::iso3166::is_alpha3(&s.iso3) {
                    return Err(invalid(format!(
                        "member {}: {:?} is not an ISO 3166-1 alpha-3 code",
                        m.id, s.iso3
                    )));
                }
                states.push(Membership {
                    iso3: s.iso3.clone(),
                    since: parse_date(&s.since, "since")?,
                    until: parse_date(&s.until, "until")?,
                });
            }
            let member = Member {
                id: m.id.clone(),
                name: m.name.clone(),
                kind: m.kind.clone(),
                roles: m.roles.iter().copied().collect(),
                spiffe_id: m.spiffe_id.clone(),
                keys,
                states,
            };
            if members.insert(m.id.clone(), member).is_some() {
                return Err(invalid(format!("member id {} is listed twice", m.id)));
            }
        }
        if !members.contains_key(&file.hub_id) {
            return Err(invalid(format!("hub_id {} is not a member", file.hub_id)));
        }
        Ok(Federation {
            federation_id: file.federation_id.clone(),
            hub_id: file.hub_id.clone(),
            members,
            by_spiffe,
            key_owner,
            file,
        })
    }

    /// The file form, for writing.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(&self.file).unwrap_or_default()
    }

    /// The member with `id`.
    pub fn member(&self, id: &str) -> Option<&Member> {
        self.members.get(id)
    }

    /// The member whose TLS identity is `spiffe_id`.
    pub fn member_by_spiffe(&self, spiffe_id: &str) -> Option<&Member> {
        self.by_spiffe
            .get(spiffe_id)
            .and_then(|id| self.members.get(id))
    }

    /// The member that owns `key_id`, and the key.
    pub fn key_owner(&self, key_id: &str) -> Option<(&Member, &VerifyKey)> {
        let member = self.members.get(self.key_owner.get(key_id)?)?;
        Some((member, member.key(key_id)?))
    }

    /// The hub's member entry (its keys sign receipts).
    pub fn hub(&self) -> Option<&Member> {
        self.members.get(&self.hub_id)
    }

    /// Every member, sorted by id.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }
}
