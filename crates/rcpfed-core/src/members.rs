//! The federation member file: who belongs to the federation, which TLS identity and which
//! signing keys each member has, its roles, and (for regional processes) its member states over
//! time. `rcpfed pki init` writes it; the hub and every node load it. It is the simple precursor
//! of the threshold-signed registry.

use crate::keys::{KeyError, VerifyKey};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime};

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
    lifecycle: FederationLifecycle,
}

/// A signing key's lifecycle status, as the registry states it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyLifecycle {
    /// Signs new statements.
    Active,
    /// Retired at this moment: what it signed before still verifies; nothing signed from this
    /// moment on is accepted.
    Retired(OffsetDateTime),
    /// Revoked at this moment: statements signed from this moment on are refused, and
    /// accepted ones are flagged.
    Revoked(OffsetDateTime),
}

impl KeyLifecycle {
    /// "active", "retired" or "revoked", as written in member files.
    pub fn status_str(&self) -> &'static str {
        match self {
            KeyLifecycle::Active => "active",
            KeyLifecycle::Retired(_) => "retired",
            KeyLifecycle::Revoked(_) => "revoked",
        }
    }

    /// The retirement or revocation moment; `None` while active.
    pub fn status_at(&self) -> Option<OffsetDateTime> {
        match self {
            KeyLifecycle::Active => None,
            KeyLifecycle::Retired(at) | KeyLifecycle::Revoked(at) => Some(*at),
        }
    }
}

/// One key's lifecycle: from when it may sign, and its status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyLifecycleInfo {
    /// First moment the key may sign; `None` when unknown (plain member files): always valid.
    pub valid_from: Option<OffsetDateTime>,
    /// Status.
    pub status: KeyLifecycle,
}

impl Default for KeyLifecycleInfo {
    fn default() -> Self {
        KeyLifecycleInfo {
            valid_from: None,
            status: KeyLifecycle::Active,
        }
    }
}

/// What the registry adds to a member file: its version and each key's lifecycle. A plain
/// member file has version 0 and every key active, always.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FederationLifecycle {
    /// The registry version the federation was built from; 0 for a plain member file.
    pub registry_version: u64,
    /// Lifecycle by key id; a key not listed is active and always valid.
    pub keys: BTreeMap<String, KeyLifecycleInfo>,
}

/// A key's state at one moment (see [`Federation::key_state`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyState {
    /// No member has this key.
    Unknown,
    /// The moment is before the key's `valid_from`.
    NotYetValid,
    /// The key may sign at this moment.
    Active,
    /// The key was retired at `at`, on or before the moment.
    Retired {
        /// The retirement moment.
        at: OffsetDateTime,
    },
    /// The key was revoked at `at`, on or before the moment.
    Revoked {
        /// The revocation moment.
        at: OffsetDateTime,
    },
}

/// The lifecycle fields a member file may carry next to each key (`valid_from`, `status`,
/// `status_at`) and at the top (`registry_version`). Read in a second pass so that
/// [`KeyFile`] and [`FederationFile`] keep their shape; all are optional.
#[derive(Deserialize)]
struct LifecycleOverlay {
    #[serde(default)]
    registry_version: u64,
    #[serde(default)]
    members: Vec<MemberOverlay>,
}

#[derive(Deserialize)]
struct MemberOverlay {
    #[serde(default)]
    id: String,
    #[serde(default)]
    keys: Vec<KeyOverlay>,
}

#[derive(Deserialize)]
struct KeyOverlay {
    #[serde(default)]
    key_id: String,
    #[serde(default)]
    valid_from: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    status_at: String,
}

fn parse_instant(text: &str, what: &str) -> Result<Option<OffsetDateTime>, FederationError> {
    if text.is_empty() {
        return Ok(None);
    }
    OffsetDateTime::parse(text, &Rfc3339)
        .map(Some)
        .map_err(|_| {
            FederationError::Invalid(format!("{what} {text:?} is not an RFC 3339 date and time"))
        })
}

/// `t` as RFC 3339; an instant RFC 3339 cannot write (a year beyond 9999) is an error, never
/// an empty field.
fn format_instant(t: OffsetDateTime) -> Result<String, toml::ser::Error> {
    t.format(&Rfc3339).map_err(|e| {
        <toml::ser::Error as serde::ser::Error>::custom(format!(
            "the instant {t} cannot be written as RFC 3339: {e}"
        ))
    })
}

impl LifecycleOverlay {
    fn into_lifecycle(self) -> Result<FederationLifecycle, FederationError> {
        let mut keys = BTreeMap::new();
        for m in self.members {
            for k in m.keys {
                let what = |field: &str| format!("member {}: key {}: {field}", m.id, k.key_id);
                let valid_from = parse_instant(&k.valid_from, &what("valid_from"))?;
                let status_at = parse_instant(&k.status_at, &what("status_at"))?;
                let status = match (k.status.as_str(), status_at) {
                    ("" | "active", None) => KeyLifecycle::Active,
                    ("retired", Some(at)) => KeyLifecycle::Retired(at),
                    ("revoked", Some(at)) => KeyLifecycle::Revoked(at),
                    ("" | "active", Some(_)) => {
                        return Err(FederationError::Invalid(format!(
                            "{}: an active key has no status_at",
                            what("status")
                        )));
                    }
                    ("retired" | "revoked", None) => {
                        return Err(FederationError::Invalid(format!(
                            "{}: a {} key needs status_at",
                            what("status"),
                            k.status
                        )));
                    }
                    (other, _) => {
                        return Err(FederationError::Invalid(format!(
                            "{}: {other:?} is not \"active\", \"retired\" or \"revoked\"",
                            what("status")
                        )));
                    }
                };
                let info = KeyLifecycleInfo { valid_from, status };
                if info != KeyLifecycleInfo::default() {
                    keys.insert(k.key_id, info);
                }
            }
        }
        Ok(FederationLifecycle {
            registry_version: self.registry_version,
            keys,
        })
    }
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
        let overlay: LifecycleOverlay =
            toml::from_str(text).map_err(|e| FederationError::Syntax(e.to_string()))?;
        Self::from_file_with_lifecycle(file, overlay.into_lifecycle()?)
    }

    /// Checks a member file: ids valid and unique, SPIFFE ids unique and in this federation,
    /// keys valid, not weak, with matching ids and never shared, ISO codes real, dates valid.
    pub fn from_file(file: FederationFile) -> Result<Self, FederationError> {
        Self::from_file_with_lifecycle(file, FederationLifecycle::default())
    }

    /// [`Self::from_file`], plus a registry version and key lifecycles (the registry's
    /// [`crate::registry::Registry::to_federation`] builds these). Every key in `lifecycle`
    /// must be a key of the file; a key retired or revoked before its `valid_from` is refused.
    pub fn from_file_with_lifecycle(
        file: FederationFile,
        lifecycle: FederationLifecycle,
    ) -> Result<Self, FederationError> {
        if !is_valid_member_id(&file.federation_id) {
            return Err(FederationError::Invalid(format!(
                "federation_id {:?} must be lowercase letters, digits and '-'",
                file.federation_id
            )));
        }
        let mut members = BTreeMap::new();
        let mut by_spiffe = BTreeMap::new();
        let mut key_owner = BTreeMap::new();
        for m in &file.members {
            let member = member_from_file(&file.federation_id, m, &mut by_spiffe, &mut key_owner)?;
            if members.insert(m.id.clone(), member).is_some() {
                return Err(FederationError::Invalid(format!(
                    "member id {} is listed twice",
                    m.id
                )));
            }
        }
        if !members.contains_key(&file.hub_id) {
            return Err(FederationError::Invalid(format!(
                "hub_id {} is not a member",
                file.hub_id
            )));
        }
        check_lifecycle(&lifecycle, &key_owner)?;
        Ok(Federation {
            federation_id: file.federation_id.clone(),
            hub_id: file.hub_id.clone(),
            members,
            by_spiffe,
            key_owner,
            file,
            lifecycle,
        })
    }

    /// The file form, for writing; key lifecycles and the registry version are written as the
    /// optional `valid_from`/`status`/`status_at` fields of each key and `registry_version`.
    /// An error, never an empty text, if it cannot be written.
    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        if self.lifecycle == FederationLifecycle::default() {
            return toml::to_string_pretty(&self.file);
        }
        let mut table = toml::Table::try_from(&self.file)?;
        if self.lifecycle.registry_version > 0 {
            let version = i64::try_from(self.lifecycle.registry_version).unwrap_or(i64::MAX);
            table.insert("registry_version".into(), toml::Value::Integer(version));
        }
        let members = table.get_mut("members").and_then(toml::Value::as_array_mut);
        for member in members.into_iter().flatten() {
            let keys = member.get_mut("keys").and_then(toml::Value::as_array_mut);
            for key in keys.into_iter().flatten() {
                let Some(key) = key.as_table_mut() else {
                    continue;
                };
                let Some(info) = key
                    .get("key_id")
                    .and_then(toml::Value::as_str)
                    .and_then(|id| self.lifecycle.keys.get(id))
                    .copied()
                else {
                    continue;
                };
                if let Some(from) = info.valid_from {
                    key.insert("valid_from".into(), format_instant(from)?.into());
                }
                key.insert("status".into(), info.status.status_str().into());
                if let Some(at) = info.status.status_at() {
                    key.insert("status_at".into(), format_instant(at)?.into());
                }
            }
        }
        toml::to_string_pretty(&table)
    }

    /// The registry version this federation was built from; 0 for a plain member file.
    pub fn registry_version(&self) -> u64 {
        self.lifecycle.registry_version
    }

    /// The lifecycle of `key_id` as stated (active and always valid for plain member files);
    /// `None` if no member has the key.
    pub fn key_lifecycle(&self, key_id: &str) -> Option<KeyLifecycleInfo> {
        if !self.key_owner.contains_key(key_id) {
            return None;
        }
        Some(self.lifecycle.keys.get(key_id).copied().unwrap_or_default())
    }

    /// The state of `key_id` at the moment `at`: before `valid_from` not yet valid; retired or
    /// revoked only from `status_at` on (before that the key counts as active).
    pub fn key_state(&self, key_id: &str, at: OffsetDateTime) -> KeyState {
        let Some(info) = self.key_lifecycle(key_id) else {
            return KeyState::Unknown;
        };
        if info.valid_from.is_some_and(|from| at < from) {
            return KeyState::NotYetValid;
        }
        match info.status {
            KeyLifecycle::Retired(t) if at >= t => KeyState::Retired { at: t },
            KeyLifecycle::Revoked(t) if at >= t => KeyState::Revoked { at: t },
            _ => KeyState::Active,
        }
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

/// One member of a federation file, checked: a valid id, a SPIFFE id in the trust domain and
/// not listed before (recorded in `by_spiffe`), its keys, its states.
fn member_from_file(
    federation_id: &str,
    m: &MemberFile,
    by_spiffe: &mut BTreeMap<String, String>,
    key_owner: &mut BTreeMap<String, String>,
) -> Result<Member, FederationError> {
    let invalid = FederationError::Invalid;
    if !is_valid_member_id(&m.id) {
        return Err(invalid(format!(
            "member id {:?} must be lowercase letters, digits and '-'",
            m.id
        )));
    }
    let prefix = format!("spiffe://{federation_id}/");
    if !m.spiffe_id.starts_with(&prefix) {
        return Err(invalid(format!(
            "member {}: spiffe_id {:?} is not in trust domain {federation_id}",
            m.id, m.spiffe_id
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
    let keys = member_keys(m, key_owner)?;
    if m.roles.contains(&Role::Publisher) && keys.is_empty() {
        return Err(invalid(format!(
            "member {} has the publisher role but no signing key",
            m.id
        )));
    }
    Ok(Member {
        id: m.id.clone(),
        name: m.name.clone(),
        kind: m.kind.clone(),
        roles: m.roles.iter().copied().collect(),
        spiffe_id: m.spiffe_id.clone(),
        keys,
        states: member_states(m)?,
    })
}

/// A member's keys: each decodes, its id matches its bytes, and no other key of the file has
/// that id (recorded in `key_owner`).
fn member_keys(
    m: &MemberFile,
    key_owner: &mut BTreeMap<String, String>,
) -> Result<Vec<VerifyKey>, FederationError> {
    let invalid = FederationError::Invalid;
    let mut keys = Vec::new();
    for k in &m.keys {
        let key = VerifyKey::from_base64(&k.public_key)
            .map_err(|e: KeyError| invalid(format!("member {}: key {}: {e}", m.id, k.key_id)))?;
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
    Ok(keys)
}

/// A member's states: ISO 3166-1 alpha-3 codes with valid dates.
fn member_states(m: &MemberFile) -> Result<Vec<Membership>, FederationError> {
    m.states
        .iter()
        .map(|s| {
            if !crate::iso3166::is_alpha3(&s.iso3) {
                return Err(FederationError::Invalid(format!(
                    "member {}: {:?} is not an ISO 3166-1 alpha-3 code",
                    m.id, s.iso3
                )));
            }
            Ok(Membership {
                iso3: s.iso3.clone(),
                since: parse_date(&s.since, "since")?,
                until: parse_date(&s.until, "until")?,
            })
        })
        .collect()
}

/// Every key with a lifecycle is a key of the file, and none is retired or revoked before its
/// `valid_from`.
fn check_lifecycle(
    lifecycle: &FederationLifecycle,
    key_owner: &BTreeMap<String, String>,
) -> Result<(), FederationError> {
    for (key_id, info) in &lifecycle.keys {
        if !key_owner.contains_key(key_id) {
            return Err(FederationError::Invalid(format!(
                "key {key_id} has a lifecycle but no member lists it"
            )));
        }
        if let (Some(from), Some(at)) = (info.valid_from, info.status.status_at())
            && at < from
        {
            return Err(FederationError::Invalid(format!(
                "key {key_id}: status_at is before valid_from"
            )));
        }
    }
    Ok(())
}
