//! The membership registry: a TUF-style, versioned, expiring document, threshold-signed by the
//! GFMD root keys, that replaces the static member file as the source of a
//! [`Federation`](crate::members::Federation).
//!
//! Each version travels as the payload of a [`SignedEnvelope`] of type
//! [`REGISTRY_PAYLOAD_TYPE`]. A verifier that trusts version N accepts version N+1 only if:
//! - the payload type is the registry's;
//! - a threshold of distinct keys of version N's root set signed PAE(type, payload), checked over
//!   the raw bytes before anything is decoded beyond what is needed;
//! - the federation id is unchanged, the version is exactly N+1 and `previous_digest` is the
//!   SHA-256 of version N's payload bytes;
//! - when the root keys or threshold change, a threshold of the new root set signed it too;
//! - the document passes every semantic rule ([`Registry::check`]);
//! - it is not expired at the moment of the check (only the latest version must be fresh: a
//!   node that bootstraps with [`verify_chain`] walks through expired intermediate versions).
//!
//! What this resists, in the words of the TUF threat model: arbitrary content (signatures by a
//! threshold of root keys), rollback (version must grow), fast-forward (version must be exactly
//! +1, so no one can jump to a huge version), indefinite freeze (expiry of the latest version),
//! mix-and-match and forks (each version commits to the digest of its predecessor), compromise
//! of fewer than a threshold of root keys, and rotation of the root keys themselves (new root
//! signed by old and new thresholds, after which the old keys alone no longer suffice).
//! Endless data and slow retrieval are the transport's business (message size limits and
//! timeouts at the gRPC edge).
//!
//! API boundary: the protobuf type `rcpfed.v1.RegistryDocument` appears only in
//! [`Registry::from_proto`] and [`Registry::to_proto`].

use crate::Digest;
use crate::envelope::{EnvelopeSignature, SignedEnvelope, pae};
use crate::keys::{SecretKey, VerifyKey};
use crate::members::{
    FederationFile, FederationLifecycle, KeyFile, KeyLifecycleInfo, MemberFile, MemberStateFile,
    Membership, Role, is_valid_member_id,
};
use crate::rejection::{RejectClass, Rejection, Violation, reasons};
use crate::spiffe::SpiffeId;
use crate::wire::{timestamp_from_proto, timestamp_to_proto};
use prost::Message as _;
use rcpfed_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use time::{Date, OffsetDateTime};

pub use crate::members::KeyLifecycle;

/// Payload type of an envelope carrying a `rcpfed.v1.RegistryDocument`.
pub const REGISTRY_PAYLOAD_TYPE: &str = "application/vnd.rcpfed.registry.v1+protobuf";

/// The root keys that sign registry versions, and how many distinct ones must sign.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RootSet {
    /// Root public keys with their holders (for people, e.g. "GFMD Support Unit, root 1").
    pub keys: Vec<(VerifyKey, String)>,
    /// Valid signatures by distinct root keys needed: 1 to the number of keys.
    pub threshold: u32,
}

/// A member's statement-signing key with its lifecycle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyEntry {
    /// The public key (with its id).
    pub key: VerifyKey,
    /// First moment the key may sign.
    pub valid_from: OffsetDateTime,
    /// Active, retired at T or revoked at T.
    pub status: KeyLifecycle,
}

impl KeyEntry {
    /// The window in which the key may sign: `[valid_from, end)`, `end` `None` while active.
    pub fn window(&self) -> (OffsetDateTime, Option<OffsetDateTime>) {
        (self.valid_from, self.status.status_at())
    }
}

/// One member of the federation as the registry lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryMemberEntry {
    /// Member id, e.g. "colombo".
    pub id: String,
    /// Full name.
    pub name: String,
    /// "RCP", "IRF", "hub" or "operator".
    pub kind: String,
    /// Roles.
    pub roles: Vec<Role>,
    /// The one URI SAN of its TLS certificate.
    pub spiffe_id: String,
    /// Statement-signing keys with their lifecycle.
    pub keys: Vec<KeyEntry>,
    /// Member states over time (regional processes).
    pub states: Vec<Membership>,
}

/// One registry version, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registry {
    /// The federation, the SPIFFE trust domain of every member.
    pub federation_id: String,
    /// 1 for the first version; each version is exactly one more.
    pub version: u64,
    /// When the root key holders issued it.
    pub issued_at: OffsetDateTime,
    /// After this moment it must not be trusted as the latest version.
    pub expires_at: OffsetDateTime,
    /// SHA-256 of the previous version's payload bytes; `None` for version 1.
    pub previous_digest: Option<Digest>,
    /// The root keys and threshold that sign the next version.
    pub root: RootSet,
    /// Id of the member that runs the hub.
    pub hub_id: String,
    /// Every member.
    pub members: Vec<RegistryMemberEntry>,
}

/// Reasons that name a specific registry rule: a rejection whose first violation has one of
/// these carries it as its reason; any other violation makes it VALIDATION_FAILED.
const SPECIFIC_REASONS: [&str; 7] = [
    reasons::REGISTRY_INVALID,
    reasons::INVALID_ROOT,
    reasons::DUPLICATE_KEY_ID,
    reasons::OVERLAPPING_KEY_WINDOWS,
    reasons::MEMBER_WITHOUT_KEY,
    reasons::UNKNOWN_ROLE,
    reasons::INVALID_COUNTRY_CODE,
];

/// Collects violations; the first decides the rejection's reason.
#[derive(Default)]
struct Problems(Vec<Violation>);

impl Problems {
    fn add(&mut self, field: impl Into<String>, reason: &'static str, what: impl Into<String>) {
        self.0.push(Violation::new(field, reason, what));
    }

    fn finish(self, what: &str) -> Result<(), Rejection> {
        let Some(first) = self.0.first() else {
            return Ok(());
        };
        let reason = if SPECIFIC_REASONS.contains(&first.reason) {
            first.reason
        } else {
            reasons::VALIDATION_FAILED
        };
        let more = match self.0.len() {
            1 => String::new(),
            2 => " (and 1 more problem)".to_owned(),
            n => format!(" (and {} more problems)", n - 1),
        };
        let message = format!("{what}: {}: {}{more}", first.field, first.description);
        Err(Rejection::new(RejectClass::Invalid, reason, message).with_violations(self.0))
    }
}

fn parse_role(text: &str) -> Option<Role> {
    [Role::Publisher, Role::Reader, Role::Witness, Role::Admin]
        .into_iter()
        .find(|r| r.as_str() == text)
}

fn format_date(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// Parses a root public key, checking it is valid, strong and matches its id.
fn parse_root_key(
    k: &pb::RootKey,
    field: &str,
    problems: &mut Problems,
) -> Option<(VerifyKey, String)> {
    match VerifyKey::from_bytes(&k.public_key) {
        Ok(key) if key.key_id == k.key_id => Some((key, k.holder.clone())),
        Ok(key) => {
            problems.add(
                format!("{field}.key_id"),
                reasons::INVALID_ROOT,
                format!(
                    "root key id {:?} does not match its public key (expected {})",
                    k.key_id, key.key_id
                ),
            );
            None
        }
        Err(e) => {
            problems.add(
                format!("{field}.public_key"),
                reasons::INVALID_ROOT,
                format!("root key {:?}: {e}", k.key_id),
            );
            None
        }
    }
}

impl RootSet {
    /// From the wire form. Refuses (INVALID_ROOT) invalid, weak or mislabelled keys, a key
    /// listed twice, and a threshold of 0 or above the number of keys.
    pub fn from_proto(p: &pb::RootKeys) -> Result<Self, Rejection> {
        let mut problems = Problems::default();
        let root = Self::parse(p, "root", &mut problems);
        problems.finish("the registry's root keys are not valid")?;
        root.ok_or_else(|| invalid_root("the registry's root keys are not valid"))
    }

    fn parse(p: &pb::RootKeys, field: &str, problems: &mut Problems) -> Option<Self> {
        let before = problems.0.len();
        let keys: Vec<_> = p
            .keys
            .iter()
            .enumerate()
            .filter_map(|(i, k)| parse_root_key(k, &format!("{field}.keys[{i}]"), problems))
            .collect();
        let root = RootSet {
            keys,
            threshold: p.threshold,
        };
        if problems.0.len() > before {
            return None;
        }
        root.check_into(field, problems);
        (problems.0.len() == before).then_some(root)
    }

    /// The wire form.
    pub fn to_proto(&self) -> pb::RootKeys {
        pb::RootKeys {
            keys: self
                .keys
                .iter()
                .map(|(k, holder)| pb::RootKey {
                    key_id: k.key_id.clone(),
                    public_key: k.to_bytes().to_vec(),
                    holder: holder.clone(),
                })
                .collect(),
            threshold: self.threshold,
        }
    }

    fn check_into(&self, field: &str, problems: &mut Problems) {
        if self.keys.is_empty() {
            problems.add(
                format!("{field}.keys"),
                reasons::INVALID_ROOT,
                "the root set has no key",
            );
        }
        let count = self.keys.len();
        if self.threshold == 0 || usize::try_from(self.threshold).is_ok_and(|t| t > count) {
            problems.add(
                format!("{field}.threshold"),
                reasons::INVALID_ROOT,
                format!(
                    "threshold {} must be between 1 and the number of root keys ({count})",
                    self.threshold
                ),
            );
        }
        let mut seen = BTreeSet::new();
        for (i, (key, _)) in self.keys.iter().enumerate() {
            if !seen.insert(key.to_bytes()) {
                problems.add(
                    format!("{field}.keys[{i}]"),
                    reasons::INVALID_ROOT,
                    format!("root key {} is listed twice", key.key_id),
                );
            }
        }
    }

    /// Checks the set on its own: at least one key, no key twice, threshold 1 to the number of
    /// keys (INVALID_ROOT).
    pub fn check(&self) -> Result<(), Rejection> {
        let mut problems = Problems::default();
        self.check_into("root", &mut problems);
        problems.finish("the root set is not valid")
    }

    /// Whether both sets hold the same public keys and threshold (holders are for people and
    /// do not count).
    pub fn same_trust(&self, other: &RootSet) -> bool {
        let keys = |r: &RootSet| {
            r.keys
                .iter()
                .map(|(k, _)| k.to_bytes())
                .collect::<BTreeSet<_>>()
        };
        self.threshold == other.threshold && keys(self) == keys(other)
    }

    /// Whether `key_id` names one of the root keys.
    pub fn contains(&self, key_id: &str) -> bool {
        self.keys.iter().any(|(k, _)| k.key_id == key_id)
    }

    /// The trust-anchor file for this set.
    pub fn to_trust_file(&self, federation_id: &str) -> RootTrustFile {
        RootTrustFile {
            federation_id: federation_id.to_owned(),
            threshold: self.threshold,
            keys: self
                .keys
                .iter()
                .map(|(k, holder)| RootTrustKey {
                    key_id: k.key_id.clone(),
                    public_key: k.to_base64(),
                    holder: holder.clone(),
                })
                .collect(),
        }
    }
}

fn invalid_root(message: impl Into<String>) -> Rejection {
    Rejection::new(RejectClass::Invalid, reasons::INVALID_ROOT, message)
}

/// The trust anchor of a node that bootstraps from the root keys alone (TOML):
/// `federation_id`, `threshold` and one `[[keys]]` table per root key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootTrustFile {
    /// The federation these root keys sign the registry of.
    pub federation_id: String,
    /// Valid signatures by distinct root keys needed.
    pub threshold: u32,
    /// The root keys.
    pub keys: Vec<RootTrustKey>,
}

/// One root key in a [`RootTrustFile`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootTrustKey {
    /// Key id; must match the public key.
    pub key_id: String,
    /// Standard base64 of the raw 32-byte Ed25519 public key.
    pub public_key: String,
    /// Who holds it.
    #[serde(default)]
    pub holder: String,
}

impl RootTrustFile {
    /// Parses the TOML form (INVALID_ROOT when it is not valid TOML of this shape).
    pub fn from_toml(text: &str) -> Result<Self, Rejection> {
        toml::from_str(text)
            .map_err(|e| invalid_root(format!("the root trust file is not valid: {e}")))
    }

    /// The TOML form; an error, never an empty text, if it cannot be written.
    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        toml::to_string_pretty(self)
    }

    /// The root set, with every check of [`RootSet::check`], keys valid, strong and matching
    /// their ids, and a valid federation id (INVALID_ROOT).
    pub fn to_root_set(&self) -> Result<RootSet, Rejection> {
        if !is_valid_member_id(&self.federation_id) {
            return Err(invalid_root(format!(
                "the root trust file's federation_id {:?} must be lowercase letters, digits and '-'",
                self.federation_id
            )));
        }
        let mut keys = Vec::new();
        for (i, k) in self.keys.iter().enumerate() {
            let key = VerifyKey::from_base64(&k.public_key)
                .map_err(|e| invalid_root(format!("keys[{i}] ({}): {e}", k.key_id)))?;
            if key.key_id != k.key_id {
                return Err(invalid_root(format!(
                    "keys[{i}]: key id {} does not match its public key (expected {})",
                    k.key_id, key.key_id
                )));
            }
            keys.push((key, k.holder.clone()));
        }
        let root = RootSet {
            keys,
            threshold: self.threshold,
        };
        root.check()?;
        Ok(root)
    }
}

fn required_time(
    ts: Option<&prost_types::Timestamp>,
    field: String,
    problems: &mut Problems,
) -> Option<OffsetDateTime> {
    let Some(ts) = ts else {
        problems.add(field, reasons::FIELD_REQUIRED, "a timestamp is required");
        return None;
    };
    let t = timestamp_from_proto(ts);
    if t.is_none() {
        problems.add(
            field,
            reasons::INVALID_DATE,
            "the timestamp is out of range",
        );
    }
    t
}

fn parse_key(k: &pb::RegistryKey, field: &str, problems: &mut Problems) -> Option<KeyEntry> {
    let key = match VerifyKey::from_bytes(&k.public_key) {
        Ok(key) if key.key_id == k.key_id => Some(key),
        Ok(key) => {
            problems.add(
                format!("{field}.key_id"),
                reasons::INVALID_PUBLIC_KEY,
                format!(
                    "key id {:?} does not match its public key (expected {})",
                    k.key_id, key.key_id
                ),
            );
            None
        }
        Err(e) => {
            problems.add(
                format!("{field}.public_key"),
                reasons::INVALID_PUBLIC_KEY,
                format!("key {:?}: {e}", k.key_id),
            );
            None
        }
    };
    let valid_from = required_time(
        k.valid_from.as_ref(),
        format!("{field}.valid_from"),
        problems,
    );
    let status_field = format!("{field}.status_at");
    let status = match pb::KeyStatus::try_from(k.status) {
        Ok(pb::KeyStatus::Active) => {
            if k.status_at.is_some() {
                problems.add(
                    status_field,
                    reasons::REGISTRY_INVALID,
                    "an active key has no status_at; set the status to retired or revoked",
                );
                None
            } else {
                Some(KeyLifecycle::Active)
            }
        }
        Ok(pb::KeyStatus::Retired) => {
            required_time(k.status_at.as_ref(), status_field, problems).map(KeyLifecycle::Retired)
        }
        Ok(pb::KeyStatus::Revoked) => {
            required_time(k.status_at.as_ref(), status_field, problems).map(KeyLifecycle::Revoked)
        }
        Ok(pb::KeyStatus::Unspecified) | Err(_) => {
            problems.add(
                format!("{field}.status"),
                reasons::INVALID_ENUM,
                format!(
                    "status {} is not KEY_STATUS_ACTIVE, KEY_STATUS_RETIRED or KEY_STATUS_REVOKED",
                    k.status
                ),
            );
            None
        }
    };
    Some(KeyEntry {
        key: key?,
        valid_from: valid_from?,
        status: status?,
    })
}

fn parse_member(
    m: &pb::RegistryMember,
    field: &str,
    problems: &mut Problems,
) -> Option<RegistryMemberEntry> {
    let before = problems.0.len();
    let mut roles = Vec::new();
    for (j, r) in m.roles.iter().enumerate() {
        match parse_role(r) {
            Some(role) => roles.push(role),
            None => problems.add(
                format!("{field}.roles[{j}]"),
                reasons::UNKNOWN_ROLE,
                format!("role {r:?} is not one of publisher, reader, witness, admin"),
            ),
        }
    }
    let keys: Vec<_> = m
        .keys
        .iter()
        .enumerate()
        .filter_map(|(j, k)| parse_key(k, &format!("{field}.keys[{j}]"), problems))
        .collect();
    let mut states = Vec::new();
    for (j, s) in m.states.iter().enumerate() {
        let mut date = |text: &str, name: &str| {
            if text.is_empty() {
                return None;
            }
            let d = crate::dates::parse_date(text);
            if d.is_none() {
                problems.add(
                    format!("{field}.states[{j}].{name}"),
                    reasons::INVALID_DATE,
                    format!("{text:?} is not a YYYY-MM-DD date"),
                );
            }
            d
        };
        let since = date(&s.since, "since");
        let until = date(&s.until, "until");
        states.push(Membership {
            iso3: s.iso3.clone(),
            since,
            until,
        });
    }
    (problems.0.len() == before).then(|| RegistryMemberEntry {
        id: m.id.clone(),
        name: m.name.clone(),
        kind: m.kind.clone(),
        roles,
        spiffe_id: m.spiffe_id.clone(),
        keys,
        states,
    })
}

impl Registry {
    /// From the wire form: structure only (timestamps present, enums known, keys valid and
    /// matching their ids, digests 32 bytes, roles known, dates valid). Semantic rules are
    /// [`Self::check`]. Violations name the field, e.g. `members[2].keys[0].status`.
    pub fn from_proto(p: pb::RegistryDocument) -> Result<Self, Rejection> {
        let mut problems = Problems::default();
        let issued_at = required_time(p.issued_at.as_ref(), "issued_at".into(), &mut problems);
        let expires_at = required_time(p.expires_at.as_ref(), "expires_at".into(), &mut problems);
        let previous_digest = match p.previous_digest.len() {
            0 => None,
            _ => {
                let d = Digest::from_slice(&p.previous_digest);
                if d.is_none() {
                    problems.add(
                        "previous_digest",
                        reasons::INVALID_DIGEST,
                        format!(
                            "previous_digest is {} bytes; it must be empty or a 32-byte sha-256",
                            p.previous_digest.len()
                        ),
                    );
                }
                d
            }
        };
        let root = match &p.root {
            Some(root) => RootSet::parse(root, "root", &mut problems),
            None => {
                problems.add(
                    "root",
                    reasons::INVALID_ROOT,
                    "the registry names no root keys",
                );
                None
            }
        };
        let members: Vec<_> = p
            .members
            .iter()
            .enumerate()
            .filter_map(|(i, m)| parse_member(m, &format!("members[{i}]"), &mut problems))
            .collect();
        problems.finish(&format!("registry version {} is not valid", p.version))?;
        match (issued_at, expires_at, root) {
            (Some(issued_at), Some(expires_at), Some(root)) => Ok(Registry {
                federation_id: p.federation_id,
                version: p.version,
                issued_at,
                expires_at,
                previous_digest,
                root,
                hub_id: p.hub_id,
                members,
            }),
            _ => Err(Rejection::new(
                RejectClass::Invalid,
                reasons::VALIDATION_FAILED,
                format!("registry version {} is not valid", p.version),
            )),
        }
    }

    /// The wire form.
    pub fn to_proto(&self) -> pb::RegistryDocument {
        pb::RegistryDocument {
            federation_id: self.federation_id.clone(),
            version: self.version,
            issued_at: Some(timestamp_to_proto(self.issued_at)),
            expires_at: Some(timestamp_to_proto(self.expires_at)),
            previous_digest: self
                .previous_digest
                .map(|d| d.0.to_vec())
                .unwrap_or_default(),
            root: Some(self.root.to_proto()),
            hub_id: self.hub_id.clone(),
            members: self
                .members
                .iter()
                .map(|m| pb::RegistryMember {
                    id: m.id.clone(),
                    name: m.name.clone(),
                    kind: m.kind.clone(),
                    roles: m.roles.iter().map(|r| r.as_str().to_owned()).collect(),
                    spiffe_id: m.spiffe_id.clone(),
                    keys: m
                        .keys
                        .iter()
                        .map(|k| pb::RegistryKey {
                            key_id: k.key.key_id.clone(),
                            public_key: k.key.to_bytes().to_vec(),
                            valid_from: Some(timestamp_to_proto(k.valid_from)),
                            status: match k.status {
                                KeyLifecycle::Active => pb::KeyStatus::Active,
                                KeyLifecycle::Retired(_) => pb::KeyStatus::Retired,
                                KeyLifecycle::Revoked(_) => pb::KeyStatus::Revoked,
                            } as i32,
                            status_at: k.status.status_at().map(timestamp_to_proto),
                        })
                        .collect(),
                    states: m
                        .states
                        .iter()
                        .map(|s| pb::StateMembership {
                            iso3: s.iso3.clone(),
                            since: s.since.map(format_date).unwrap_or_default(),
                            until: s.until.map(format_date).unwrap_or_default(),
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    /// Serialized `rcpfed.v1.RegistryDocument` bytes: the payload to sign. Verifiers hash and
    /// verify the bytes they received, never a re-encoding.
    pub fn encode(&self) -> Vec<u8> {
        self.to_proto().encode_to_vec()
    }

    /// The semantic rules, every violation collected (the first decides the reason):
    /// version at least 1; `previous_digest` present exactly when the version is above 1;
    /// `expires_at` after `issued_at`; a valid root set (INVALID_ROOT); member ids valid and
    /// unique; SPIFFE ids `spiffe://{federation_id}/node|operator/{name}` and unique; roles not
    /// repeated; publishers and witnesses have a key (MEMBER_WITHOUT_KEY); no key listed twice,
    /// across members and root keys too (DUPLICATE_KEY_ID); the signing windows
    /// `[valid_from, status_at)` (open-ended while active) of one member's keys never overlap
    /// (OVERLAPPING_KEY_WINDOWS); states are ISO 3166-1 alpha-3 codes (INVALID_COUNTRY_CODE)
    /// with `since` before `until`; `hub_id` is a member. Generic rules: REGISTRY_INVALID.
    pub fn check(&self) -> Result<(), Rejection> {
        let mut p = Problems::default();
        self.check_header(&mut p);
        self.root.check_into("root", &mut p);
        let mut seen = SeenMembers::with_root_keys(&self.root);
        for (i, m) in self.members.iter().enumerate() {
            let f = format!("members[{i}]");
            self.check_member_identity(&f, m, &mut seen, &mut p);
            check_member_roles(&f, m, &mut p);
            check_member_keys(&f, m, &mut seen, &mut p);
            check_key_windows(&f, m, &mut p);
            check_member_states(&f, m, &mut p);
        }
        if !self.members.iter().any(|m| m.id == self.hub_id) {
            p.add(
                "hub_id",
                reasons::REGISTRY_INVALID,
                format!("hub_id {:?} is not a member", self.hub_id),
            );
        }
        p.finish(&format!("registry version {} is not valid", self.version))
    }

    /// The federation id, the version and its chain link, and the validity period.
    fn check_header(&self, p: &mut Problems) {
        let generic = reasons::REGISTRY_INVALID;
        if !is_valid_member_id(&self.federation_id) {
            p.add(
                "federation_id",
                generic,
                format!(
                    "federation_id {:?} must be lowercase letters, digits and '-'",
                    self.federation_id
                ),
            );
        }
        if self.version == 0 {
            p.add("version", generic, "the first version is 1");
        }
        match (self.version, self.previous_digest) {
            (1, Some(_)) => p.add(
                "previous_digest",
                generic,
                "version 1 has no previous version, so previous_digest must be empty",
            ),
            (v, None) if v > 1 => p.add(
                "previous_digest",
                generic,
                format!(
                    "version {v} needs the sha-256 of version {} as previous_digest",
                    v - 1
                ),
            ),
            _ => {}
        }
        if self.expires_at <= self.issued_at {
            p.add("expires_at", generic, "expires_at must be after issued_at");
        }
    }

    /// A member's id and SPIFFE id: well formed and not listed before.
    fn check_member_identity<'a>(
        &self,
        f: &str,
        m: &'a RegistryMemberEntry,
        seen: &mut SeenMembers<'a>,
        p: &mut Problems,
    ) {
        let generic = reasons::REGISTRY_INVALID;
        if !is_valid_member_id(&m.id) {
            p.add(
                format!("{f}.id"),
                generic,
                format!(
                    "member id {:?} must be lowercase letters, digits and '-', starting with a letter",
                    m.id
                ),
            );
        } else if !seen.ids.insert(m.id.as_str()) {
            p.add(
                format!("{f}.id"),
                generic,
                format!("member id {} is listed twice", m.id),
            );
        }
        match SpiffeId::parse(&m.spiffe_id) {
            Some(s) if s.trust_domain == self.federation_id => {
                if !seen.spiffe_ids.insert(m.spiffe_id.as_str()) {
                    p.add(
                        format!("{f}.spiffe_id"),
                        generic,
                        format!("spiffe_id {} is listed twice", m.spiffe_id),
                    );
                }
            }
            _ => p.add(
                format!("{f}.spiffe_id"),
                generic,
                format!(
                    "spiffe_id {:?} is not spiffe://{}/node/<id> or spiffe://{}/operator/<name>",
                    m.spiffe_id, self.federation_id, self.federation_id
                ),
            ),
        }
    }

    /// The member with `id`.
    pub fn member(&self, id: &str) -> Option<&RegistryMemberEntry> {
        self.members.iter().find(|m| m.id == id)
    }

    /// A draft of the next version: version + 1, chained to `current_digest` (the SHA-256 of
    /// this version's payload as signed), with new issue and expiry moments; the caller edits
    /// members or root keys, then encodes and has it signed.
    pub fn draft_next(
        &self,
        current_digest: Digest,
        issued_at: OffsetDateTime,
        expires_at: OffsetDateTime,
    ) -> Registry {
        Registry {
            version: self.version.saturating_add(1),
            issued_at,
            expires_at,
            previous_digest: Some(current_digest),
            ..self.clone()
        }
    }

    /// The federation the rest of the code works with: members, roles, SPIFFE ids, keys,
    /// states over time, key lifecycles (see `Federation::key_state`) and the registry version.
    pub fn to_federation(&self) -> Result<crate::members::Federation, Rejection> {
        let mut lifecycle = FederationLifecycle {
            registry_version: self.version,
            keys: BTreeMap::new(),
        };
        let members = self
            .members
            .iter()
            .map(|m| MemberFile {
                id: m.id.clone(),
                name: m.name.clone(),
                kind: m.kind.clone(),
                roles: m.roles.clone(),
                spiffe_id: m.spiffe_id.clone(),
                keys: m
                    .keys
                    .iter()
                    .map(|k| {
                        lifecycle.keys.insert(
                            k.key.key_id.clone(),
                            KeyLifecycleInfo {
                                valid_from: Some(k.valid_from),
                                status: k.status,
                            },
                        );
                        KeyFile {
                            key_id: k.key.key_id.clone(),
                            public_key: k.key.to_base64(),
                        }
                    })
                    .collect(),
                states: m
                    .states
                    .iter()
                    .map(|s| MemberStateFile {
                        iso3: s.iso3.clone(),
                        since: s.since.map(format_date).unwrap_or_default(),
                        until: s.until.map(format_date).unwrap_or_default(),
                    })
                    .collect(),
            })
            .collect();
        let file = FederationFile {
            federation_id: self.federation_id.clone(),
            hub_id: self.hub_id.clone(),
            members,
        };
        crate::members::Federation::from_file_with_lifecycle(file, lifecycle).map_err(|e| {
            Rejection::new(
                RejectClass::Invalid,
                reasons::REGISTRY_INVALID,
                format!("registry version {}: {e}", self.version),
            )
        })
    }

    /// An envelope carrying this version's encoding, signed by one root key; more signers
    /// add theirs with [`add_root_signature`].
    pub fn sign(&self, key: &SecretKey) -> SignedEnvelope {
        SignedEnvelope::sign(REGISTRY_PAYLOAD_TYPE, self.encode(), key)
    }
}

/// What the registry check has met so far: member ids, SPIFFE ids, and keys (by bytes and by
/// key id, each with the field where it was first listed; root keys first).
#[derive(Default)]
struct SeenMembers<'a> {
    ids: BTreeSet<&'a str>,
    spiffe_ids: BTreeSet<&'a str>,
    key_bytes: BTreeMap<[u8; 32], String>,
    key_ids: BTreeMap<String, String>,
}

impl SeenMembers<'_> {
    fn with_root_keys(root: &RootSet) -> Self {
        let mut seen = SeenMembers::default();
        for (i, (key, _)) in root.keys.iter().enumerate() {
            seen.key_bytes
                .entry(key.to_bytes())
                .or_insert_with(|| format!("root.keys[{i}]"));
            seen.key_ids
                .entry(key.key_id.clone())
                .or_insert_with(|| format!("root.keys[{i}]"));
        }
        seen
    }
}

/// No role twice; a publisher or witness has a signing key.
fn check_member_roles(f: &str, m: &RegistryMemberEntry, p: &mut Problems) {
    let mut roles = BTreeSet::new();
    for (j, r) in m.roles.iter().enumerate() {
        if !roles.insert(*r) {
            p.add(
                format!("{f}.roles[{j}]"),
                reasons::REGISTRY_INVALID,
                format!("role {} is listed twice", r.as_str()),
            );
        }
    }
    if m.keys.is_empty()
        && let Some(role) = [Role::Publisher, Role::Witness]
            .into_iter()
            .find(|r| roles.contains(r))
    {
        p.add(
            format!("{f}.keys"),
            reasons::MEMBER_WITHOUT_KEY,
            format!(
                "member {} has the {} role but no signing key",
                m.id,
                role.as_str()
            ),
        );
    }
}

/// No key listed twice anywhere in the registry; no key's status before its valid_from.
fn check_member_keys(f: &str, m: &RegistryMemberEntry, seen: &mut SeenMembers, p: &mut Problems) {
    for (j, k) in m.keys.iter().enumerate() {
        let kf = format!("{f}.keys[{j}]");
        let first = seen
            .key_bytes
            .get(&k.key.to_bytes())
            .or_else(|| seen.key_ids.get(&k.key.key_id));
        if let Some(first) = first {
            p.add(
                kf.clone(),
                reasons::DUPLICATE_KEY_ID,
                format!("key {} is listed twice (first at {first})", k.key.key_id),
            );
        } else {
            seen.key_bytes.insert(k.key.to_bytes(), kf.clone());
            seen.key_ids.insert(k.key.key_id.clone(), kf.clone());
        }
        if let Some(at) = k.status.status_at()
            && at < k.valid_from
        {
            p.add(
                format!("{kf}.status_at"),
                reasons::REGISTRY_INVALID,
                format!(
                    "key {} is {} before its valid_from",
                    k.key.key_id,
                    k.status.status_str()
                ),
            );
        }
    }
}

/// No two keys of one member may sign at the same moment.
fn check_key_windows(f: &str, m: &RegistryMemberEntry, p: &mut Problems) {
    for (j, a) in m.keys.iter().enumerate() {
        for (l, b) in m.keys.iter().enumerate().skip(j + 1) {
            if windows_overlap(a.window(), b.window()) {
                p.add(
                    format!("{f}.keys[{l}]"),
                    reasons::OVERLAPPING_KEY_WINDOWS,
                    format!(
                        "keys {} and {} of member {} may both sign at the same moment; \
                         retire or revoke the old key at or before the new key's valid_from",
                        a.key.key_id, b.key.key_id, m.id
                    ),
                );
            }
        }
    }
}

/// Member states are ISO 3166-1 alpha-3 codes with `since` before `until`.
fn check_member_states(f: &str, m: &RegistryMemberEntry, p: &mut Problems) {
    for (j, s) in m.states.iter().enumerate() {
        if !crate::iso3166::is_alpha3(&s.iso3) {
            p.add(
                format!("{f}.states[{j}].iso3"),
                reasons::INVALID_COUNTRY_CODE,
                format!("{:?} is not an ISO 3166-1 alpha-3 code", s.iso3),
            );
        }
        if let (Some(since), Some(until)) = (s.since, s.until)
            && until <= since
        {
            p.add(
                format!("{f}.states[{j}].until"),
                reasons::REGISTRY_INVALID,
                "until must be after since",
            );
        }
    }
}

/// Whether `[a0, a1)` and `[b0, b1)` intersect (`None` = open-ended).
fn windows_overlap(
    a: (OffsetDateTime, Option<OffsetDateTime>),
    b: (OffsetDateTime, Option<OffsetDateTime>),
) -> bool {
    let starts_before_end =
        |start: OffsetDateTime, end: Option<OffsetDateTime>| end.is_none_or(|end| start < end);
    starts_before_end(a.0, b.1) && starts_before_end(b.0, a.1)
}

/// Adds `key`'s signature over the envelope's exact payload (replacing an earlier signature by
/// the same key): how each root key holder signs a draft on their own machine.
pub fn add_root_signature(env: &mut SignedEnvelope, key: &SecretKey) {
    let sig = key.sign(&pae(&env.payload_type, &env.payload)).to_vec();
    env.signatures.retain(|s| s.key_id != key.key_id());
    env.signatures.push(EnvelopeSignature {
        key_id: key.key_id().to_owned(),
        sig,
    });
}

fn malformed(e: prost::DecodeError) -> Rejection {
    Rejection::new(
        RejectClass::Invalid,
        reasons::PAYLOAD_MALFORMED,
        format!("the payload is not a valid rcpfed.v1.RegistryDocument: {e}"),
    )
}

/// Decodes a registry payload and applies [`Registry::from_proto`] and [`Registry::check`].
/// No signature is checked here: verifiers use [`verify_first`], [`verify_next`] or
/// [`verify_chain`], which check signatures first.
pub fn decode_and_check(payload: &[u8]) -> Result<Registry, Rejection> {
    let doc = pb::RegistryDocument::decode(payload).map_err(malformed)?;
    let registry = Registry::from_proto(doc)?;
    registry.check()?;
    Ok(registry)
}

/// Counts the distinct root keys (by public key) whose signature verifies (RFC 8032 strict)
/// over PAE(payload_type, payload). Signatures by other keys, and bad ones, are not counted.
/// Refused (REGISTRY_THRESHOLD_NOT_MET, or MISSING_SIGNATURE) only when nothing counts, with a
/// message that says why.
pub fn verify_root_signatures(env: &SignedEnvelope, root: &RootSet) -> Result<usize, Rejection> {
    if env.signatures.is_empty() {
        return Err(Rejection::new(
            RejectClass::Unauthenticated,
            reasons::MISSING_SIGNATURE,
            "the registry version has no signature; root key holders sign it",
        ));
    }
    let message = pae(&env.payload_type, &env.payload);
    let mut valid = BTreeSet::new();
    let mut by_root_key = 0usize;
    for s in &env.signatures {
        let candidates = root.keys.iter().filter(|(k, _)| k.key_id == s.key_id);
        for (k, _) in candidates {
            by_root_key += 1;
            if k.verify_strict(&message, &s.sig) {
                valid.insert(k.to_bytes());
            }
        }
    }
    if !valid.is_empty() {
        return Ok(valid.len());
    }
    let message = if by_root_key == 0 {
        format!(
            "the registry version is signed by keys that are not root keys ({} signature(s), none by the {} root key(s))",
            env.signatures.len(),
            root.keys.len()
        )
    } else {
        format!("none of the {by_root_key} signature(s) by root keys verifies over the payload")
    };
    Err(Rejection::new(
        RejectClass::Unauthenticated,
        reasons::REGISTRY_THRESHOLD_NOT_MET,
        message,
    )
    .with_meta("valid_signatures", "0")
    .with_meta("threshold", root.threshold.to_string()))
}

/// Requires `root.threshold` distinct valid root signatures; `which` names the set in the
/// message ("current", "new", "trusted").
fn require_threshold(
    env: &SignedEnvelope,
    root: &RootSet,
    which: &str,
) -> Result<usize, Rejection> {
    root.check()?;
    let valid = verify_root_signatures(env, root).map_err(|e| {
        let message = format!("{} root set: {}", which, e.message);
        Rejection { message, ..e }.with_meta("root_set", which)
    })?;
    if usize::try_from(root.threshold).is_ok_and(|t| valid >= t) {
        return Ok(valid);
    }
    Err(Rejection::new(
        RejectClass::Unauthenticated,
        reasons::REGISTRY_THRESHOLD_NOT_MET,
        format!(
            "the registry version has {valid} valid signature(s) by distinct keys of the {which} root set; {} of its {} keys must sign",
            root.threshold,
            root.keys.len()
        ),
    )
    .with_meta("valid_signatures", valid.to_string())
    .with_meta("threshold", root.threshold.to_string())
    .with_meta("root_set", which))
}

fn require_payload_type(env: &SignedEnvelope) -> Result<(), Rejection> {
    if env.payload_type == REGISTRY_PAYLOAD_TYPE {
        return Ok(());
    }
    Err(Rejection::new(
        RejectClass::Invalid,
        reasons::UNKNOWN_PAYLOAD_TYPE,
        format!(
            "payload type {:?} is not {REGISTRY_PAYLOAD_TYPE:?}",
            env.payload_type
        ),
    ))
}

fn require_federation(doc: &pb::RegistryDocument, federation_id: &str) -> Result<(), Rejection> {
    if doc.federation_id == federation_id {
        return Ok(());
    }
    Err(Rejection::new(
        RejectClass::Forbidden,
        reasons::WRONG_FEDERATION,
        format!(
            "the registry version is for federation {:?}, not {federation_id:?}",
            doc.federation_id
        ),
    ))
}

/// When the document carries a root set other than `trusted`, requires the threshold of its
/// own root too (a new root must be accepted by its own holders).
fn require_new_root(
    env: &SignedEnvelope,
    doc: &pb::RegistryDocument,
    trusted: &RootSet,
) -> Result<(), Rejection> {
    let Some(root) = &doc.root else {
        return Err(invalid_root("the registry names no root keys"));
    };
    let new_root = RootSet::from_proto(root)?;
    if !new_root.same_trust(trusted) {
        require_threshold(env, &new_root, "new")?;
    }
    Ok(())
}

fn require_fresh(registry: &Registry, now: OffsetDateTime) -> Result<(), Rejection> {
    if now < registry.expires_at {
        return Ok(());
    }
    Err(Rejection::new(
        RejectClass::Precondition,
        reasons::REGISTRY_EXPIRED,
        format!(
            "registry version {} expired at {}; the root key holders must issue a new version",
            registry.version, registry.expires_at
        ),
    )
    .with_meta("registry_version", registry.version.to_string()))
}

fn first_inner(
    env: &SignedEnvelope,
    trusted_root: &RootSet,
    federation_id: &str,
    now: Option<OffsetDateTime>,
) -> Result<Registry, Rejection> {
    require_payload_type(env)?;
    require_threshold(env, trusted_root, "trusted")?;
    let doc = pb::RegistryDocument::decode(env.payload.as_slice()).map_err(malformed)?;
    require_federation(&doc, federation_id)?;
    if doc.version != 1 {
        return Err(Rejection::new(
            RejectClass::Precondition,
            reasons::REGISTRY_VERSION_GAP,
            format!(
                "bootstrapping from the root keys starts at registry version 1, not {}; fetch every version from 1",
                doc.version
            ),
        ));
    }
    require_new_root(env, &doc, trusted_root)?;
    let registry = Registry::from_proto(doc)?;
    registry.check()?;
    if let Some(now) = now {
        require_fresh(&registry, now)?;
    }
    Ok(registry)
}

fn next_inner(
    current: &Registry,
    current_digest: &Digest,
    env: &SignedEnvelope,
    now: Option<OffsetDateTime>,
) -> Result<Registry, Rejection> {
    require_payload_type(env)?;
    require_threshold(env, &current.root, "current")?;
    let doc = pb::RegistryDocument::decode(env.payload.as_slice()).map_err(malformed)?;
    require_federation(&doc, &current.federation_id)?;
    let expected = current.version.saturating_add(1);
    if doc.version <= current.version {
        return Err(Rejection::new(
            RejectClass::Conflict,
            reasons::REGISTRY_ROLLBACK,
            format!(
                "registry version {} is not newer than the trusted version {}",
                doc.version, current.version
            ),
        )
        .with_meta("trusted_version", current.version.to_string()));
    }
    if doc.version != expected {
        return Err(Rejection::new(
            RejectClass::Precondition,
            reasons::REGISTRY_VERSION_GAP,
            format!(
                "registry version {} skips versions: the next version after {} is {expected}",
                doc.version, current.version
            ),
        )
        .with_meta("trusted_version", current.version.to_string()));
    }
    if Digest::from_slice(&doc.previous_digest).as_ref() != Some(current_digest) {
        return Err(Rejection::new(
            RejectClass::Conflict,
            reasons::REGISTRY_CHAIN_MISMATCH,
            format!(
                "registry version {} does not follow the trusted version {}: its previous_digest is {:?}, the trusted version's digest is {current_digest}",
                doc.version,
                current.version,
                hex::encode(&doc.previous_digest)
            ),
        )
        .with_meta("trusted_digest", current_digest.to_hex()));
    }
    require_new_root(env, &doc, &current.root)?;
    let registry = Registry::from_proto(doc)?;
    registry.check()?;
    if let Some(now) = now {
        require_fresh(&registry, now)?;
    }
    Ok(registry)
}

/// Verifies registry version 1 from the root keys alone (a node's trust anchor): payload type,
/// a threshold of `trusted_root`, the federation, version 1, its own root threshold too when
/// its root differs from `trusted_root`, every semantic rule, and not expired at `now`.
pub fn verify_first(
    env: &SignedEnvelope,
    trusted_root: &RootSet,
    federation_id: &str,
    now: OffsetDateTime,
) -> Result<Registry, Rejection> {
    first_inner(env, trusted_root, federation_id, Some(now))
}

/// Verifies the version after `current` (whose payload digest is `current_digest`): payload
/// type (UNKNOWN_PAYLOAD_TYPE), a threshold of the CURRENT root keys over the raw bytes
/// (REGISTRY_THRESHOLD_NOT_MET), the same federation (WRONG_FEDERATION), version exactly
/// current + 1 (REGISTRY_ROLLBACK, REGISTRY_VERSION_GAP), `previous_digest` equal to
/// `current_digest` (REGISTRY_CHAIN_MISMATCH), a threshold of the NEW root keys when they
/// change, every semantic rule, and not expired at `now` (REGISTRY_EXPIRED).
pub fn verify_next(
    current: &Registry,
    current_digest: &Digest,
    env: &SignedEnvelope,
    now: OffsetDateTime,
) -> Result<Registry, Rejection> {
    next_inner(current, current_digest, env, Some(now))
}

/// Bootstraps from the root keys: verifies `versions` (1, 2, …, in order) as a chain and
/// returns the last. Only the last version must be unexpired at `now`; intermediate versions
/// may have expired since. A failure names the index of the refused version in its metadata.
pub fn verify_chain(
    trusted_root: &RootSet,
    federation_id: &str,
    versions: &[SignedEnvelope],
    now: OffsetDateTime,
) -> Result<Registry, Rejection> {
    let Some((first, rest)) = versions.split_first() else {
        return Err(Rejection::new(
            RejectClass::Invalid,
            reasons::REGISTRY_INVALID,
            "no registry version to verify",
        ));
    };
    let last = versions.len() - 1;
    let at = |i: usize| (i == last).then_some(now);
    let index = |i: usize| move |e: Rejection| e.with_meta("version_index", i.to_string());
    let mut current = first_inner(first, trusted_root, federation_id, at(0)).map_err(index(0))?;
    let mut digest = first.digest();
    for (i, env) in rest.iter().enumerate() {
        let i = i + 1;
        current = next_inner(&current, &digest, env, at(i)).map_err(index(i))?;
        digest = env.digest();
    }
    Ok(current)
}
