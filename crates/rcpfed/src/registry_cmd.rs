//! `rcpfed registry`: the offline workflow of the threshold-signed membership registry.
//!
//! 1. `draft` writes the next version as a human-editable TOML file, from the current signed
//!    version and a few common edits (rotate, retire or revoke a key, end a state's membership,
//!    change the root keys).
//! 2. `build` turns a draft into an unsigned DSSE JSON file (the protobuf payload that will be
//!    signed, exactly), refusing drafts that break a registry rule.
//! 3. `sign` adds one root signature; each root key holder runs it on their own machine and
//!    passes the file on.
//! 4. `show` prints a version in plain words and, given the previous version (or the root trust
//!    file for version 1), verifies it as the hub and nodes will.
//!
//! `rcpfed pki init` uses [`create_root_keys`] and [`create_first_version`] to start a
//! federation on a threshold-signed registry.
//!
//! On disk a signed version is DSSE JSON:
//! `{"payloadType": "...", "payload": "<base64>", "signatures": [{"keyid": "...", "sig": "<base64>"}]}`.

use crate::client;
use anyhow::{Context as _, Result, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use clap::{Args, Subcommand};
use rcpfed_core::Digest;
use rcpfed_core::envelope::{EnvelopeSignature, SignedEnvelope, pae};
use rcpfed_core::keys::{SecretKey, VerifyKey};
use rcpfed_core::members::FederationFile;
use rcpfed_core::registry::{
    KeyEntry, KeyLifecycle, REGISTRY_PAYLOAD_TYPE, Registry, RegistryMemberEntry, RootSet,
    RootTrustFile, add_root_signature, decode_and_check, verify_first, verify_next,
    verify_root_signatures,
};
use rcpfed_core::rejection::{Rejection, reasons};
use rcpfed_core::wire::timestamp_to_proto;
use rcpfed_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use time::format_description::well_known::Rfc3339;
use time::{Date, Duration, OffsetDateTime};

// ---------------------------------------------------------------------------------------------
// DSSE JSON
// ---------------------------------------------------------------------------------------------

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvelopeJson {
    #[serde(rename = "payloadType")]
    payload_type: String,
    payload: String,
    signatures: Vec<SignatureJson>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignatureJson {
    keyid: String,
    sig: String,
}

/// The DSSE JSON form of an envelope (pretty-printed, with a final newline).
pub fn envelope_to_json(env: &SignedEnvelope) -> String {
    let json = EnvelopeJson {
        payload_type: env.payload_type.clone(),
        payload: B64.encode(&env.payload),
        signatures: env
            .signatures
            .iter()
            .map(|s| SignatureJson {
                keyid: s.key_id.clone(),
                sig: B64.encode(&s.sig),
            })
            .collect(),
    };
    // Serializing strings and vectors of strings cannot fail.
    let mut text = serde_json::to_string_pretty(&json).unwrap_or_default();
    text.push('\n');
    text
}

/// Parses the DSSE JSON form strictly: exactly the fields `payloadType`, `payload` and
/// `signatures` (each with exactly `keyid` and `sig`), no field twice, canonical standard
/// base64, a non-empty payload type, payload and key ids.
pub fn envelope_from_json(text: &str) -> Result<SignedEnvelope> {
    let json: EnvelopeJson = serde_json::from_str(text)
        .context("not a DSSE JSON envelope (payloadType, payload, signatures)")?;
    if json.payload_type.is_empty() {
        bail!("payloadType is empty");
    }
    let payload = B64
        .decode(&json.payload)
        .context("payload is not standard base64")?;
    if payload.is_empty() {
        bail!("payload is empty");
    }
    let mut signatures = Vec::with_capacity(json.signatures.len());
    for (i, s) in json.signatures.into_iter().enumerate() {
        if s.keyid.is_empty() {
            bail!("signatures[{i}].keyid is empty");
        }
        let sig = B64
            .decode(&s.sig)
            .with_context(|| format!("signatures[{i}].sig is not standard base64"))?;
        signatures.push(EnvelopeSignature {
            key_id: s.keyid,
            sig,
        });
    }
    Ok(SignedEnvelope {
        payload_type: json.payload_type,
        payload,
        signatures,
    })
}

fn read_envelope(path: &Path) -> Result<SignedEnvelope> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading registry version {}", path.display()))?;
    let env = envelope_from_json(&text).with_context(|| format!("{}", path.display()))?;
    if env.payload_type != REGISTRY_PAYLOAD_TYPE {
        bail!(
            "{}: payload type {:?} is not a registry version ({REGISTRY_PAYLOAD_TYPE:?})",
            path.display(),
            env.payload_type
        );
    }
    Ok(env)
}

/// Decodes and checks the registry carried by `env` (no signature is checked).
fn registry_of(env: &SignedEnvelope, path: &Path) -> Result<Registry> {
    decode_and_check(&env.payload).map_err(|e| anyhow!("{}: {}", path.display(), describe(&e)))
}

/// A rejection in plain words: reason, message and field violations.
pub fn describe(e: &Rejection) -> String {
    let mut text = format!("{} ({})", e.message, e.reason);
    // The message already names the first violation; list them all when there are more.
    for v in e.violations.iter().filter(|_| e.violations.len() > 1) {
        text.push_str(&format!(
            "\n  - {}: {} ({})",
            v.field, v.description, v.reason
        ));
    }
    text
}

// ---------------------------------------------------------------------------------------------
// The draft file
// ---------------------------------------------------------------------------------------------

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

fn rfc3339(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

fn format_date(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

fn field_error(
    field: impl Into<String>,
    reason: &'static str,
    what: impl Into<String>,
) -> Rejection {
    Rejection::invalid_field(field, reason, what)
}

fn parse_time_field(text: &str, field: &str) -> Result<OffsetDateTime, Rejection> {
    parse_rfc3339(text).map_err(|e| field_error(field, reasons::INVALID_DATE, e))
}

fn parse_rfc3339(text: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(text.trim(), &Rfc3339)
        .map(|t| t.to_offset(time::UtcOffset::UTC))
        .map_err(|e| format!("{text:?} is not an RFC 3339 time such as 2026-01-31T12:00:00Z: {e}"))
}

fn decode_key_bytes(text: &str, field: &str) -> Result<Vec<u8>, Rejection> {
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
        let previous_digest = if self.previous_digest.trim().is_empty() {
            Vec::new()
        } else {
            Digest::from_hex(self.previous_digest.trim())
                .map(|d| d.0.to_vec())
                .ok_or_else(|| {
                    field_error(
                        "previous_digest",
                        reasons::INVALID_DIGEST,
                        format!("{:?} is not 64 hex digits", self.previous_digest),
                    )
                })?
        };
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
        let mut members = Vec::with_capacity(self.members.len());
        for (i, m) in self.members.iter().enumerate() {
            let mut keys = Vec::with_capacity(m.keys.len());
            for (j, k) in m.keys.iter().enumerate() {
                let f = format!("members[{i}].keys[{j}]");
                let status = match k.status.as_str() {
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
                let status_at = if k.status_at.trim().is_empty() {
                    None
                } else {
                    Some(timestamp_to_proto(parse_time_field(
                        &k.status_at,
                        &format!("{f}.status_at"),
                    )?))
                };
                keys.push(pb::RegistryKey {
                    key_id: k.key_id.clone(),
                    public_key: decode_key_bytes(&k.public_key, &format!("{f}.public_key"))?,
                    valid_from: Some(timestamp_to_proto(parse_time_field(
                        &k.valid_from,
                        &format!("{f}.valid_from"),
                    )?)),
                    status: status as i32,
                    status_at,
                });
            }
            members.push(pb::RegistryMember {
                id: m.id.clone(),
                name: m.name.clone(),
                kind: m.kind.clone(),
                roles: m.roles.clone(),
                spiffe_id: m.spiffe_id.clone(),
                keys,
                states: m
                    .states
                    .iter()
                    .map(|s| pb::StateMembership {
                        iso3: s.iso3.clone(),
                        since: s.since.clone(),
                        until: s.until.clone(),
                    })
                    .collect(),
            });
        }
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

// ---------------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------------

/// Creates `path` (refusing to overwrite) with `text`; secret files get mode 0600.
fn write_new(path: &Path, text: &str, secret: bool) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    if secret {
        options.mode(0o600);
    }
    let mut f = options
        .open(path)
        .with_context(|| format!("cannot create {} (it must not exist yet)", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    f.sync_all()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Replaces `path` with `text` atomically (write a sibling file, then rename).
fn write_replace(path: &Path, text: &str) -> Result<()> {
    let mut tmp_name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let _ = std::fs::remove_file(&tmp);
    write_new(&tmp, text, false)?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))
}

fn load_secret_key(path: &Path) -> Result<SecretKey> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading key {}", path.display()))?;
    SecretKey::from_file_text(&text).with_context(|| format!("key {}", path.display()))
}

fn load_trust(path: &Path) -> Result<(RootTrustFile, RootSet)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading root trust file {}", path.display()))?;
    let file = RootTrustFile::from_toml(&text)
        .map_err(|e| anyhow!("{}: {}", path.display(), describe(&e)))?;
    let root = file
        .to_root_set()
        .map_err(|e| anyhow!("{}: {}", path.display(), describe(&e)))?;
    Ok((file, root))
}

fn now_seconds() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(0).unwrap_or(now)
}

// ---------------------------------------------------------------------------------------------
// Used by `rcpfed pki init`
// ---------------------------------------------------------------------------------------------

/// Creates `n` GFMD root keys under `<dir>/root/root-<i>.key` (mode 0600, refusing to
/// overwrite), writes `<dir>/root-trust.toml` (federation id, threshold, public keys) and
/// returns the root set with the secret keys.
pub fn create_root_keys(
    dir: &Path,
    federation_id: &str,
    n: usize,
    threshold: u32,
) -> Result<(RootSet, Vec<SecretKey>)> {
    use std::os::unix::fs::DirBuilderExt as _;
    if n == 0 || threshold == 0 || usize::try_from(threshold).map_or(true, |t| t > n) {
        bail!(
            "the root threshold must be between 1 and the number of root keys ({n}), not {threshold}"
        );
    }
    let secrets = (0..n)
        .map(|_| SecretKey::generate())
        .collect::<Result<Vec<_>, _>>()
        .context("generating root keys")?;
    let root = RootSet {
        keys: secrets
            .iter()
            .enumerate()
            .map(|(i, k)| {
                (
                    k.verify_key().clone(),
                    format!("GFMD root key holder {} of {n}", i + 1),
                )
            })
            .collect(),
        threshold,
    };
    let trust = root.to_trust_file(federation_id);
    trust
        .to_root_set()
        .map_err(|e| anyhow!("the root set is not valid: {}", describe(&e)))?;
    let root_dir = dir.join("root");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&root_dir)
        .with_context(|| format!("cannot create {}", root_dir.display()))?;
    for (i, key) in secrets.iter().enumerate() {
        let path = root_dir.join(format!("root-{}.key", i + 1));
        write_new(&path, &key.to_file_text(), true)?;
    }
    let header = format!(
        "# Root keys of federation {federation_id}: {threshold} of {n} sign each registry version.\n\
         # A node started with only this file bootstraps from registry version 1.\n\n"
    );
    write_new(
        &dir.join("root-trust.toml"),
        &format!("{header}{}", trust.to_toml()),
        false,
    )?;
    Ok((root, secrets))
}

fn member_from_file(
    m: &rcpfed_core::members::MemberFile,
    valid_from: OffsetDateTime,
) -> Result<RegistryMemberEntry> {
    let keys = m
        .keys
        .iter()
        .map(|k| {
            let key = VerifyKey::from_base64(&k.public_key)
                .with_context(|| format!("member {}: key {}", m.id, k.key_id))?;
            if key.key_id != k.key_id {
                bail!(
                    "member {}: key id {} does not match its public key (expected {})",
                    m.id,
                    k.key_id,
                    key.key_id
                );
            }
            Ok(KeyEntry {
                key,
                valid_from,
                status: KeyLifecycle::Active,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let date = |text: &str, what: &str| -> Result<Option<Date>> {
        if text.is_empty() {
            return Ok(None);
        }
        rcpfed_core::dates::parse_date(text)
            .map(Some)
            .ok_or_else(|| anyhow!("member {}: {what} {text:?} is not a YYYY-MM-DD date", m.id))
    };
    let states = m
        .states
        .iter()
        .map(|s| {
            Ok(rcpfed_core::members::Membership {
                iso3: s.iso3.clone(),
                since: date(&s.since, "since")?,
                until: date(&s.until, "until")?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RegistryMemberEntry {
        id: m.id.clone(),
        name: m.name.clone(),
        kind: m.kind.clone(),
        roles: m.roles.clone(),
        spiffe_id: m.spiffe_id.clone(),
        keys,
        states,
    })
}

/// Registry version 1 for `federation` (every key active from one hour ago, expiring in
/// `valid_days`), checked but not signed.
pub fn first_version(
    federation: &FederationFile,
    root: &RootSet,
    now: OffsetDateTime,
    valid_days: u32,
) -> Result<Registry> {
    let valid_from = now - Duration::hours(1);
    let registry = Registry {
        federation_id: federation.federation_id.clone(),
        version: 1,
        issued_at: now,
        expires_at: now + Duration::days(i64::from(valid_days)),
        previous_digest: None,
        root: root.clone(),
        hub_id: federation.hub_id.clone(),
        members: federation
            .members
            .iter()
            .map(|m| member_from_file(m, valid_from))
            .collect::<Result<_>>()?,
    };
    registry
        .check()
        .map_err(|e| anyhow!("registry version 1 would not be valid: {}", describe(&e)))?;
    Ok(registry)
}

/// Signs `registry` with every key of `signers` (an unsigned envelope when there is none).
fn sign_all(registry: &Registry, signers: &[SecretKey]) -> SignedEnvelope {
    let mut env = SignedEnvelope {
        payload_type: REGISTRY_PAYLOAD_TYPE.to_owned(),
        payload: registry.encode(),
        signatures: Vec::new(),
    };
    for key in signers {
        add_root_signature(&mut env, key);
    }
    env
}

/// Builds registry version 1 from the member file written by `pki init` (every key active from
/// now − 1 h; expires in `valid_days`), signs it with `signers` (at least the root threshold),
/// writes `<dir>/registry/registry.v1.json` and returns the envelope.
pub fn create_first_version(
    dir: &Path,
    federation: &FederationFile,
    root: &RootSet,
    signers: &[SecretKey],
    valid_days: u32,
) -> Result<SignedEnvelope> {
    let now = now_seconds();
    let registry = first_version(federation, root, now, valid_days)?;
    let env = sign_all(&registry, signers);
    verify_first(&env, root, &federation.federation_id, now)
        .map_err(|e| anyhow!("registry version 1 does not verify: {}", describe(&e)))?;
    let out_dir = dir.join("registry");
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    write_new(
        &out_dir.join("registry.v1.json"),
        &envelope_to_json(&env),
        false,
    )?;
    Ok(env)
}

// ---------------------------------------------------------------------------------------------
// Subcommands
// ---------------------------------------------------------------------------------------------

/// `rcpfed registry …`.
#[derive(Subcommand)]
pub enum RegistryCommand {
    /// Draft the next version (TOML) from the current signed version, with common edits.
    Draft(DraftArgs),
    /// Turn a draft into an unsigned registry version (DSSE JSON), refusing invalid drafts.
    Build(BuildArgs),
    /// Add one root key's signature to a registry version (run by each root key holder).
    Sign(SignArgs),
    /// Print a registry version in plain words and, given its predecessor or the root trust
    /// file, verify it.
    Show(ShowArgs),
    /// Publish a threshold-signed registry version to the hub (needs an admin identity).
    Publish(PublishArgs),
    /// Download every registry version from the hub into a directory, and optionally verify
    /// the chain from the root keys.
    Fetch(FetchArgs),
}

/// Arguments of `rcpfed registry draft`.
#[derive(Args)]
pub struct DraftArgs {
    /// The current signed version, registry.vN.json.
    #[arg(long)]
    pub from: PathBuf,
    /// Where to write the draft of version N+1 (TOML; refuses to overwrite).
    #[arg(long)]
    pub out: PathBuf,
    /// Days until the new version expires.
    #[arg(long, default_value_t = 365)]
    pub expires_days: u32,
    /// `<member>=<signing.key file or base64 public key>`: add the member's new key (active
    /// from now) and retire its active key at the same moment. Repeatable.
    #[arg(long = "rotate-key", value_name = "MEMBER=KEY")]
    pub rotate_key: Vec<String>,
    /// `<key_id>[@<RFC 3339 time>]`: retire a key (default: now). Repeatable.
    #[arg(long = "retire-key", value_name = "KEY_ID[@TIME]")]
    pub retire_key: Vec<String>,
    /// `<key_id>@<RFC 3339 time>`: revoke a key from that moment. Repeatable.
    #[arg(long = "revoke-key", value_name = "KEY_ID@TIME")]
    pub revoke_key: Vec<String>,
    /// `<member>:<ISO3>=<YYYY-MM-DD>`: the state stops belonging to the member on that day.
    /// Repeatable.
    #[arg(long = "state-until", value_name = "MEMBER:ISO3=DATE")]
    pub state_until: Vec<String>,
    /// root-trust.toml of a new root key set (the version must then be signed by the current
    /// threshold and the new one).
    #[arg(long)]
    pub new_root: Option<PathBuf>,
}

/// Arguments of `rcpfed registry build`.
#[derive(Args)]
pub struct BuildArgs {
    /// The draft (TOML).
    pub draft: PathBuf,
    /// Where to write the unsigned version (DSSE JSON; refuses to overwrite).
    #[arg(long)]
    pub out: PathBuf,
}

/// Arguments of `rcpfed registry sign`.
#[derive(Args)]
pub struct SignArgs {
    /// The registry version (DSSE JSON).
    pub file: PathBuf,
    /// The root key (root-N.key).
    #[arg(long)]
    pub key: PathBuf,
    /// Write the signed version here instead of replacing FILE.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Sign with a key that is not in this version's root set (a key of the previous root set,
    /// when this version changes the root keys).
    #[arg(long)]
    pub allow_previous_root: bool,
}

/// Arguments of `rcpfed registry show`.
#[derive(Args)]
pub struct ShowArgs {
    /// The registry version (DSSE JSON).
    pub file: PathBuf,
    /// The previous version, trusted: verify FILE as its successor.
    #[arg(long, conflicts_with = "trust")]
    pub previous: Option<PathBuf>,
    /// The root trust file: verify FILE as version 1.
    #[arg(long)]
    pub trust: Option<PathBuf>,
}

/// How to reach the hub.
#[derive(Args)]
pub struct HubArgs {
    /// The hub's endpoint.
    #[arg(
        long,
        env = "RCPFED_HUB_ENDPOINT",
        default_value = "https://localhost:50051"
    )]
    pub hub: String,
    /// PKI directory (from `rcpfed pki init`) holding ca.pem and members/<identity>/tls.*.
    #[arg(long, env = "RCPFED_PKI_DIR")]
    pub pki: PathBuf,
    /// Identity to call the hub as.
    #[arg(long, env = "RCPFED_IDENTITY", default_value = "operator")]
    pub identity: String,
}

/// Arguments of `rcpfed registry publish`.
#[derive(Args)]
pub struct PublishArgs {
    /// The signed registry version (DSSE JSON).
    pub file: PathBuf,
    /// The hub and the admin identity to call it as.
    #[command(flatten)]
    pub hub: HubArgs,
}

/// Arguments of `rcpfed registry fetch`.
#[derive(Args)]
pub struct FetchArgs {
    /// The hub and the identity (reader role) to call it as.
    #[command(flatten)]
    pub hub: HubArgs,
    /// Where to write registry.v<N>.json files (a file already there must be identical).
    #[arg(long)]
    pub out_dir: PathBuf,
    /// Verify the whole chain from these root keys (root-trust.toml), as a bootstrapping node
    /// does.
    #[arg(long)]
    pub trust: Option<PathBuf>,
}

/// Runs `rcpfed registry …`.
pub async fn run(command: RegistryCommand) -> Result<ExitCode> {
    let now = now_seconds();
    match command {
        RegistryCommand::Draft(args) => {
            for line in draft(&args, now)? {
                println!("{line}");
            }
            Ok(ExitCode::SUCCESS)
        }
        RegistryCommand::Build(args) => {
            for line in build(&args)? {
                println!("{line}");
            }
            Ok(ExitCode::SUCCESS)
        }
        RegistryCommand::Sign(args) => {
            for line in sign(&args)? {
                println!("{line}");
            }
            Ok(ExitCode::SUCCESS)
        }
        RegistryCommand::Show(args) => {
            let (lines, ok) = show(&args, now)?;
            for line in lines {
                println!("{line}");
            }
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        RegistryCommand::Publish(args) => publish(&args).await,
        RegistryCommand::Fetch(args) => fetch(&args, now).await,
    }
}

// ------------------------------------- draft -------------------------------------------------

fn find_key_mut<'a>(
    registry: &'a mut Registry,
    key_id: &str,
) -> Result<(&'a str, &'a mut KeyEntry)> {
    registry
        .members
        .iter_mut()
        .find_map(|m| {
            let id = m.id.as_str();
            m.keys
                .iter_mut()
                .find(|k| k.key.key_id == key_id)
                .map(|k| (id, k))
        })
        .ok_or_else(|| anyhow!("no member has key {key_id}"))
}

fn parse_new_key(text: &str) -> Result<VerifyKey> {
    let path = Path::new(text);
    if path.is_file() {
        let content =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        if let Ok(secret) = SecretKey::from_file_text(&content) {
            return Ok(secret.verify_key().clone());
        }
        return VerifyKey::from_base64(&content).map_err(|e| {
            anyhow!(
                "{} is neither a signing key file nor a base64 public key: {e}",
                path.display()
            )
        });
    }
    VerifyKey::from_base64(text).map_err(|e| {
        anyhow!("{text:?} is neither an existing key file nor a base64 public key: {e}")
    })
}

fn root_summary(root: &RootSet) -> String {
    format!("{} of {} root keys", root.threshold, root.keys.len())
}

/// Applies the edits of `args` to the draft of the version after `current`; returns the
/// plain-words changes.
fn apply_edits(next: &mut Registry, args: &DraftArgs, now: OffsetDateTime) -> Result<Vec<String>> {
    let mut changes = Vec::new();
    if let Some(path) = &args.new_root {
        let (file, root) = load_trust(path)?;
        if file.federation_id != next.federation_id {
            bail!(
                "{} is for federation {:?}, not {:?}",
                path.display(),
                file.federation_id,
                next.federation_id
            );
        }
        if root.same_trust(&next.root) {
            changes.push("the root keys stay the same (--new-root lists the current set)".into());
        } else {
            let old = &next.root;
            let added: Vec<&str> = root
                .keys
                .iter()
                .filter(|(k, _)| !old.keys.iter().any(|(o, _)| o.to_bytes() == k.to_bytes()))
                .map(|(k, _)| k.key_id.as_str())
                .collect();
            let removed: Vec<&str> = old
                .keys
                .iter()
                .filter(|(k, _)| !root.keys.iter().any(|(n, _)| n.to_bytes() == k.to_bytes()))
                .map(|(k, _)| k.key_id.as_str())
                .collect();
            changes.push(format!(
                "the root keys change from {} to {}: added {}; removed {}. This version must be signed by {} of the current root keys AND {} of the new ones.",
                root_summary(old),
                root_summary(&root),
                if added.is_empty() { "none".into() } else { added.join(", ") },
                if removed.is_empty() { "none".into() } else { removed.join(", ") },
                old.threshold,
                root.threshold
            ));
        }
        next.root = root;
    }
    for spec in &args.rotate_key {
        let (member_id, key_text) = spec.split_once('=').ok_or_else(|| {
            anyhow!("--rotate-key {spec:?}: expected <member>=<key file or base64 public key>")
        })?;
        let key = parse_new_key(key_text)?;
        if next
            .members
            .iter()
            .flat_map(|m| &m.keys)
            .any(|k| k.key.to_bytes() == key.to_bytes())
        {
            bail!(
                "--rotate-key: key {} is already in the registry",
                key.key_id
            );
        }
        let member = next
            .members
            .iter_mut()
            .find(|m| m.id == member_id)
            .ok_or_else(|| anyhow!("--rotate-key: no member {member_id:?}"))?;
        let mut retired = Vec::new();
        for k in &mut member.keys {
            if k.status == KeyLifecycle::Active {
                k.status = KeyLifecycle::Retired(now);
                retired.push(k.key.key_id.clone());
            }
        }
        member.keys.push(KeyEntry {
            key: key.clone(),
            valid_from: now,
            status: KeyLifecycle::Active,
        });
        changes.push(format!(
            "member {member_id} rotates its signing key: new key {} is active from {}{}",
            key.key_id,
            rfc3339(now),
            if retired.is_empty() {
                String::new()
            } else {
                format!(
                    "; {} retired at the same moment (what it signed before still verifies)",
                    retired.join(", ")
                )
            }
        ));
    }
    for spec in &args.retire_key {
        let (key_id, at) = match spec.split_once('@') {
            Some((key_id, at)) => (
                key_id,
                parse_rfc3339(at).map_err(|e| anyhow!("--retire-key {spec:?}: {e}"))?,
            ),
            None => (spec.as_str(), now),
        };
        let (member, entry) = find_key_mut(next, key_id)?;
        if entry.status != KeyLifecycle::Active {
            bail!(
                "--retire-key: key {key_id} of {member} is already {} at {}",
                entry.status.status_str(),
                entry.status.status_at().map(rfc3339).unwrap_or_default()
            );
        }
        entry.status = KeyLifecycle::Retired(at);
        changes.push(format!(
            "key {key_id} of member {member} is retired at {}: statements it signed before still verify, later ones are refused (KEY_RETIRED)",
            rfc3339(at)
        ));
    }
    for spec in &args.revoke_key {
        let (key_id, at) = spec
            .split_once('@')
            .ok_or_else(|| anyhow!("--revoke-key {spec:?}: expected <key_id>@<RFC 3339 time>"))?;
        let at = parse_rfc3339(at).map_err(|e| anyhow!("--revoke-key {spec:?}: {e}"))?;
        let (member, entry) = find_key_mut(next, key_id)?;
        let (at, note) = match entry.status {
            KeyLifecycle::Retired(retired) if retired < at => (
                retired,
                format!(
                    " (it was retired at {}, so the revocation takes effect from then)",
                    rfc3339(retired)
                ),
            ),
            KeyLifecycle::Revoked(_) => {
                bail!("--revoke-key: key {key_id} of {member} is already revoked")
            }
            _ => (at, String::new()),
        };
        entry.status = KeyLifecycle::Revoked(at);
        changes.push(format!(
            "key {key_id} of member {member} is revoked at {}{note}: statements it signed from then on are refused (KEY_REVOKED) and the hub flags those it already accepted",
            rfc3339(at)
        ));
    }
    for spec in &args.state_until {
        let parsed = spec
            .split_once(':')
            .and_then(|(m, rest)| rest.split_once('=').map(|(iso3, date)| (m, iso3, date)));
        let Some((member_id, iso3, date)) = parsed else {
            bail!("--state-until {spec:?}: expected <member>:<ISO3>=<YYYY-MM-DD>");
        };
        let until = rcpfed_core::dates::parse_date(date)
            .ok_or_else(|| anyhow!("--state-until {spec:?}: {date:?} is not a YYYY-MM-DD date"))?;
        let member = next
            .members
            .iter_mut()
            .find(|m| m.id == member_id)
            .ok_or_else(|| anyhow!("--state-until: no member {member_id:?}"))?;
        let state = member
            .states
            .iter_mut()
            .rev()
            .find(|s| s.iso3 == iso3 && s.until.is_none())
            .ok_or_else(|| {
                anyhow!("--state-until: {iso3} is not a current member state of {member_id}")
            })?;
        state.until = Some(until);
        changes.push(format!(
            "{iso3} stops belonging to {member_id} on {} (its observations for periods from that day are refused)",
            format_date(until)
        ));
    }
    Ok(changes)
}

/// The draft of the version after the one in `from`, with the edits applied and checked.
fn draft_registry(
    current_env: &SignedEnvelope,
    current: &Registry,
    args: &DraftArgs,
    now: OffsetDateTime,
) -> Result<(Registry, Vec<String>)> {
    let expires_at = now + Duration::days(i64::from(args.expires_days));
    let mut next = current.draft_next(current_env.digest(), now, expires_at);
    let changes = apply_edits(&mut next, args, now)?;
    next.check()
        .map_err(|e| anyhow!("the edited draft is not valid: {}", describe(&e)))?;
    Ok((next, changes))
}

fn draft(args: &DraftArgs, now: OffsetDateTime) -> Result<Vec<String>> {
    let current_env = read_envelope(&args.from)?;
    let current = registry_of(&current_env, &args.from)?;
    let (next, changes) = draft_registry(&current_env, &current, args, now)?;
    write_new(
        &args.out,
        &DraftFile::from_registry(&next).to_toml()?,
        false,
    )?;
    let mut lines = vec![
        format!(
            "drafted registry version {} of {} in {}",
            next.version,
            next.federation_id,
            args.out.display()
        ),
        format!(
            "  follows version {} (sha-256 {}); signatures of {} were not checked here (use `rcpfed registry show`)",
            current.version,
            current_env.digest().to_hex(),
            args.from.display()
        ),
        format!(
            "  issued {}, expires {} ({} days)",
            rfc3339(next.issued_at),
            rfc3339(next.expires_at),
            args.expires_days
        ),
    ];
    if changes.is_empty() {
        lines.push("  no change to members, keys or root keys (a renewal)".into());
    }
    lines.extend(changes.into_iter().map(|c| format!("  - {c}")));
    lines.push(format!(
        "next: review and edit the draft, then `rcpfed registry build {} --out registry.v{}.json`",
        args.out.display(),
        next.version
    ));
    Ok(lines)
}

// ------------------------------------- build -------------------------------------------------

fn build(args: &BuildArgs) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(&args.draft)
        .with_context(|| format!("reading draft {}", args.draft.display()))?;
    let draft = DraftFile::from_toml(&text).with_context(|| format!("{}", args.draft.display()))?;
    let registry = draft
        .to_registry()
        .and_then(|r| r.check().map(|()| r))
        .map_err(|e| anyhow!("{} is refused: {}", args.draft.display(), describe(&e)))?;
    let env = sign_all(&registry, &[]);
    write_new(&args.out, &envelope_to_json(&env), false)?;
    Ok(vec![
        format!(
            "built registry version {} (unsigned) in {}: payload sha-256 {}",
            registry.version,
            args.out.display(),
            env.digest().to_hex()
        ),
        format!(
            "next: {} must each run `rcpfed registry sign {} --key <root key>`{}",
            root_summary(&registry.root),
            args.out.display(),
            if registry.version > 1 {
                " (when the root keys change, the previous root's threshold signs too, with --allow-previous-root)"
            } else {
                ""
            }
        ),
    ])
}

// ------------------------------------- sign --------------------------------------------------

/// Adds `key`'s signature to the registry version in `env`, refusing keys outside the
/// version's root set unless `allow_previous_root`. Returns the plain-words outcome.
fn sign_envelope(
    env: &mut SignedEnvelope,
    key: &SecretKey,
    allow_previous_root: bool,
    path: &Path,
) -> Result<Vec<String>> {
    let registry = registry_of(env, path)?;
    let in_root = registry
        .root
        .keys
        .iter()
        .any(|(k, _)| k.to_bytes() == key.verify_key().to_bytes());
    let mut lines = Vec::new();
    if !in_root {
        if !allow_previous_root {
            bail!(
                "key {} is not one of the root keys of registry version {}; if it belongs to the previous root set (root rotation), pass --allow-previous-root",
                key.key_id(),
                registry.version
            );
        }
        lines.push(format!(
            "note: key {} is not in this version's root set; it counts only if it is in the previous version's root set",
            key.key_id()
        ));
    }
    add_root_signature(env, key);
    let valid = verify_root_signatures(env, &registry.root).unwrap_or(0);
    let others = env.signatures.len().saturating_sub(valid);
    lines.push(format!(
        "signed registry version {} with {}",
        registry.version,
        key.key_id()
    ));
    lines.push(format!(
        "signatures: {valid} (threshold {}){}",
        registry.root.threshold,
        if others > 0 {
            format!(", plus {others} by keys outside this version's root set")
        } else {
            String::new()
        }
    ));
    Ok(lines)
}

fn sign(args: &SignArgs) -> Result<Vec<String>> {
    let mut env = read_envelope(&args.file)?;
    let key = load_secret_key(&args.key)?;
    let mut lines = sign_envelope(&mut env, &key, args.allow_previous_root, &args.file)?;
    let out = args.out.as_ref().unwrap_or(&args.file);
    if args.out.is_some() {
        write_new(out, &envelope_to_json(&env), false)?;
    } else {
        write_replace(out, &envelope_to_json(&env))?;
    }
    lines.push(format!("written to {}", out.display()));
    Ok(lines)
}

// ------------------------------------- show --------------------------------------------------

fn describe_registry(r: &Registry, env: &SignedEnvelope, now: OffsetDateTime) -> Vec<String> {
    let mut lines = Vec::new();
    lines.push(format!(
        "registry version {} of federation {}",
        r.version, r.federation_id
    ));
    lines.push(format!("  payload sha-256 {}", env.digest().to_hex()));
    lines.push(format!("  issued  {}", rfc3339(r.issued_at)));
    let remaining = r.expires_at - now;
    lines.push(format!(
        "  expires {} ({})",
        rfc3339(r.expires_at),
        if remaining.is_positive() {
            format!("in {} days", remaining.whole_days())
        } else {
            format!("EXPIRED {} days ago", (-remaining).whole_days())
        }
    ));
    match r.previous_digest {
        Some(d) => lines.push(format!(
            "  follows version {} (sha-256 {})",
            r.version.saturating_sub(1),
            d.to_hex()
        )),
        None => lines.push("  first version".into()),
    }
    lines.push(format!(
        "root keys: {} of {} must sign the next version",
        r.root.threshold,
        r.root.keys.len()
    ));
    for (k, holder) in &r.root.keys {
        lines.push(format!("  {}  {holder}", k.key_id));
    }
    lines.push(format!("members: {} (hub {})", r.members.len(), r.hub_id));
    for m in &r.members {
        let roles: Vec<&str> = m.roles.iter().map(|r| r.as_str()).collect();
        lines.push(format!(
            "  {} ({}, {}): {}",
            m.id, m.kind, m.name, m.spiffe_id
        ));
        lines.push(format!(
            "    roles: {}",
            if roles.is_empty() {
                "none".into()
            } else {
                roles.join(", ")
            }
        ));
        for k in &m.keys {
            let status = match k.status {
                KeyLifecycle::Active => "active".to_owned(),
                KeyLifecycle::Retired(at) => format!("retired at {}", rfc3339(at)),
                KeyLifecycle::Revoked(at) => format!("REVOKED at {}", rfc3339(at)),
            };
            lines.push(format!(
                "    key {}: {status}, valid from {}",
                k.key.key_id,
                rfc3339(k.valid_from)
            ));
        }
        for s in &m.states {
            let period = match (s.since, s.until) {
                (Some(a), Some(b)) => format!("from {} until {}", format_date(a), format_date(b)),
                (Some(a), None) => format!("since {}", format_date(a)),
                (None, Some(b)) => format!("until {}", format_date(b)),
                (None, None) => "(no dates)".into(),
            };
            lines.push(format!("    state {} {period}", s.iso3));
        }
    }
    lines
}

fn describe_signatures(env: &SignedEnvelope, roots: &[(&str, &RootSet)]) -> Vec<String> {
    let message = pae(&env.payload_type, &env.payload);
    let mut lines = vec![format!("signatures: {}", env.signatures.len())];
    for s in &env.signatures {
        let mut what = Vec::new();
        for (name, root) in roots {
            if let Some((k, holder)) = root.keys.iter().find(|(k, _)| k.key_id == s.key_id) {
                let ok = if k.verify_strict(&message, &s.sig) {
                    "valid"
                } else {
                    "DOES NOT VERIFY"
                };
                what.push(format!("{ok}, {name} root key ({holder})"));
            }
        }
        if what.is_empty() {
            what.push("not a root key".into());
        }
        lines.push(format!("  {}: {}", s.key_id, what.join("; ")));
    }
    lines
}

fn threshold_line(env: &SignedEnvelope, name: &str, root: &RootSet) -> String {
    let valid = verify_root_signatures(env, root).unwrap_or(0);
    let met = usize::try_from(root.threshold).is_ok_and(|t| valid >= t);
    format!(
        "threshold of the {name} root set: {valid} valid of {} needed: {}",
        root.threshold,
        if met { "met" } else { "NOT met" }
    )
}

fn show(args: &ShowArgs, now: OffsetDateTime) -> Result<(Vec<String>, bool)> {
    let env = read_envelope(&args.file)?;
    let registry = registry_of(&env, &args.file)?;
    let mut lines = describe_registry(&registry, &env, now);
    let verdict = if let Some(prev_path) = &args.previous {
        let prev_env = read_envelope(prev_path)?;
        let prev = registry_of(&prev_env, prev_path)?;
        let mut roots: Vec<(&str, &RootSet)> = vec![("current", &prev.root)];
        if !registry.root.same_trust(&prev.root) {
            roots.push(("new", &registry.root));
        }
        lines.extend(describe_signatures(&env, &roots));
        for (name, root) in &roots {
            lines.push(threshold_line(&env, name, root));
        }
        let result = verify_next(&prev, &prev_env.digest(), &env, now);
        Some((
            format!(
                "version {} (from {}, taken as trusted)",
                prev.version,
                prev_path.display()
            ),
            result,
        ))
    } else if let Some(trust_path) = &args.trust {
        let (file, root) = load_trust(trust_path)?;
        let mut roots: Vec<(&str, &RootSet)> = vec![("trusted", &root)];
        if !registry.root.same_trust(&root) {
            roots.push(("new", &registry.root));
        }
        lines.extend(describe_signatures(&env, &roots));
        for (name, r) in &roots {
            lines.push(threshold_line(&env, name, r));
        }
        let result = verify_first(&env, &root, &file.federation_id, now);
        Some((format!("the root keys in {}", trust_path.display()), result))
    } else {
        lines.extend(describe_signatures(
            &env,
            &[("this version's", &registry.root)],
        ));
        lines.push(threshold_line(&env, "this version's", &registry.root));
        lines.push(
            "not verified: pass --previous <registry.v(N-1).json>, or --trust <root-trust.toml> for version 1"
                .into(),
        );
        None
    };
    let ok = match verdict {
        None => true,
        Some((against, Ok(_))) => {
            lines.push(format!(
                "VERIFIED against {against}: threshold met, version and chain correct, every rule holds, not expired"
            ));
            true
        }
        Some((against, Err(e))) => {
            lines.push(format!("NOT VERIFIED against {against}: {}", describe(&e)));
            false
        }
    };
    Ok((lines, ok))
}

// ------------------------------------- publish / fetch ---------------------------------------

async fn hub_client(
    args: &HubArgs,
) -> Result<pb::hub_service_client::HubServiceClient<tonic::transport::Channel>> {
    let tls = client::identity_files(&args.pki, &args.identity)?;
    client::hub_client(&args.hub, "--hub", &tls).await
}

async fn publish(args: &PublishArgs) -> Result<ExitCode> {
    let env = read_envelope(&args.file)?;
    let registry = registry_of(&env, &args.file)?;
    let mut hub = hub_client(&args.hub).await?;
    let response = hub
        .publish_registry(pb::PublishRegistryRequest {
            registry: Some(env.to_proto()),
        })
        .await
        .map_err(|status| {
            anyhow!(
                "the hub refused registry version {}: {}",
                registry.version,
                client::describe_status(&status)
            )
        })?
        .into_inner();
    println!(
        "published registry version {} to {}: now in force",
        response.version, args.hub.hub
    );
    if let Some(log) = &response.log {
        println!(
            "  logged as leaf {} (tree size {})",
            log.leaf_index, log.tree_size
        );
    }
    if response.newly_flagged > 0 {
        println!(
            "  {} accepted statement(s) flagged: signed with a key this version revokes, after the revocation point",
            response.newly_flagged
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes `text` to `path`, or checks that the file already there is identical.
fn write_or_match(path: &Path, text: &str) -> Result<bool> {
    match std::fs::read_to_string(path) {
        Ok(existing) if existing == text => Ok(false),
        Ok(_) => bail!(
            "{} already exists with different content: the hub serves another version under this number (a fork?); move it away to fetch again",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            write_new(path, text, false)?;
            Ok(true)
        }
        Err(e) => Err(anyhow!("reading {}: {e}", path.display())),
    }
}

/// Every registry version the hub serves, in order, each checked to be the next number.
pub async fn fetch_versions(
    hub: &mut pb::hub_service_client::HubServiceClient<tonic::transport::Channel>,
) -> Result<Vec<(u64, SignedEnvelope)>> {
    use prost::Message as _;
    let mut versions: Vec<(u64, SignedEnvelope)> = Vec::new();
    loop {
        let after = versions.last().map_or(0, |(v, _)| *v);
        let page = hub
            .list_registry_versions(pb::ListRegistryVersionsRequest {
                after_version: after,
                page_size: 100,
            })
            .await
            .map_err(|status| {
                anyhow!(
                    "cannot list registry versions: {}",
                    client::describe_status(&status)
                )
            })?
            .into_inner();
        if page.versions.is_empty() {
            break;
        }
        for p in page.versions {
            let env = SignedEnvelope::from_proto(p);
            let version = pb::RegistryDocument::decode(env.payload.as_slice())
                .map_err(|e| anyhow!("the hub sent a registry version that does not decode: {e}"))?
                .version;
            let expected = versions.last().map_or(0, |(v, _)| *v).saturating_add(1);
            if version != expected {
                bail!("the hub sent registry version {version} where {expected} was expected");
            }
            versions.push((version, env));
        }
    }
    Ok(versions)
}

async fn fetch(args: &FetchArgs, now: OffsetDateTime) -> Result<ExitCode> {
    let mut hub = hub_client(&args.hub).await?;
    let versions = fetch_versions(&mut hub).await?;
    if versions.is_empty() {
        bail!("the hub has no registry version");
    }
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("cannot create {}", args.out_dir.display()))?;
    for (version, env) in &versions {
        let path = args.out_dir.join(format!("registry.v{version}.json"));
        let new = write_or_match(&path, &envelope_to_json(env))?;
        println!(
            "{} {}",
            if new { "wrote" } else { "already had" },
            path.display()
        );
    }
    let Some(trust) = &args.trust else {
        println!(
            "fetched {} version(s); not verified (pass --trust <root-trust.toml> to verify the chain)",
            versions.len()
        );
        return Ok(ExitCode::SUCCESS);
    };
    let (file, root) = load_trust(trust)?;
    let envs: Vec<SignedEnvelope> = versions.into_iter().map(|(_, e)| e).collect();
    match rcpfed_core::registry::verify_chain(&root, &file.federation_id, &envs, now) {
        Ok(latest) => {
            println!(
                "VERIFIED the chain of {} version(s) from the root keys in {}: version {} is in force until {}",
                envs.len(),
                trust.display(),
                latest.version,
                rfc3339(latest.expires_at)
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("NOT VERIFIED: {}", describe(&e));
            Ok(ExitCode::FAILURE)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rcpfed_core::members::{KeyFile, MemberFile, MemberStateFile, Role};

    fn key_file(k: &SecretKey) -> KeyFile {
        KeyFile {
            key_id: k.key_id().to_owned(),
            public_key: k.verify_key().to_base64(),
        }
    }

    /// A federation of a hub, one RCP with a member state, and an operator, with their keys.
    fn federation() -> (FederationFile, Vec<SecretKey>) {
        let keys: Vec<SecretKey> = (0..2).map(|_| SecretKey::generate().unwrap()).collect();
        let file = FederationFile {
            federation_id: "rcpfed-test".into(),
            hub_id: "gfmd".into(),
            members: vec![
                MemberFile {
                    id: "gfmd".into(),
                    name: "Global Forum on Migration and Development".into(),
                    kind: "hub".into(),
                    roles: vec![Role::Reader, Role::Witness],
                    spiffe_id: "spiffe://rcpfed-test/node/gfmd".into(),
                    keys: vec![key_file(&keys[0])],
                    states: vec![],
                },
                MemberFile {
                    id: "rabat".into(),
                    name: "Rabat Process".into(),
                    kind: "RCP".into(),
                    roles: vec![Role::Publisher, Role::Reader],
                    spiffe_id: "spiffe://rcpfed-test/node/rabat".into(),
                    keys: vec![key_file(&keys[1])],
                    states: vec![
                        MemberStateFile {
                            iso3: "MLI".into(),
                            since: "2006-07-10".into(),
                            until: String::new(),
                        },
                        MemberStateFile {
                            iso3: "SEN".into(),
                            since: String::new(),
                            until: String::new(),
                        },
                    ],
                },
                MemberFile {
                    id: "operator".into(),
                    name: "Operator".into(),
                    kind: "operator".into(),
                    roles: vec![Role::Admin, Role::Reader],
                    spiffe_id: "spiffe://rcpfed-test/operator/operator".into(),
                    keys: vec![],
                    states: vec![],
                },
            ],
        };
        (file, keys)
    }

    fn draft_args(from: &Path, out: &Path) -> DraftArgs {
        DraftArgs {
            from: from.to_path_buf(),
            out: out.to_path_buf(),
            expires_days: 365,
            rotate_key: vec![],
            retire_key: vec![],
            revoke_key: vec![],
            state_until: vec![],
            new_root: None,
        }
    }

    fn key_path(dir: &Path, i: usize) -> PathBuf {
        dir.join("root").join(format!("root-{i}.key"))
    }

    fn read_env(path: &Path) -> SignedEnvelope {
        envelope_from_json(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn envelope_json_round_trips_and_is_strict() {
        let key = SecretKey::generate().unwrap();
        let env = SignedEnvelope::sign(REGISTRY_PAYLOAD_TYPE, b"payload".to_vec(), &key);
        let json = envelope_to_json(&env);
        assert_eq!(envelope_from_json(&json).unwrap(), env);
        assert!(json.contains("\"payloadType\""));
        assert!(json.contains("\"keyid\""));
        // Unknown field, duplicate field, bad base64, empty payload.
        let extra = json.replacen("\"payload\"", "\"extra\": 1,\n  \"payload\"", 1);
        assert!(envelope_from_json(&extra).is_err());
        let dup = json.replacen("\"payload\"", "\"payloadType\": \"x\",\n  \"payload\"", 1);
        assert!(envelope_from_json(&dup).is_err());
        let bad = json.replacen(&B64.encode(b"payload"), "cGF5bG9hZA", 1);
        assert!(envelope_from_json(&bad).is_err());
        let empty = json.replacen(&B64.encode(b"payload"), "", 1);
        assert!(envelope_from_json(&empty).is_err());
    }

    #[test]
    fn root_keys_are_private_and_never_overwritten() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let (root, secrets) = create_root_keys(dir.path(), "rcpfed-test", 3, 2).unwrap();
        assert_eq!(root.threshold, 2);
        assert_eq!(secrets.len(), 3);
        let mode = std::fs::metadata(key_path(dir.path(), 1))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let (_, trusted) = load_trust(&dir.path().join("root-trust.toml")).unwrap();
        assert!(trusted.same_trust(&root));
        assert!(create_root_keys(dir.path(), "rcpfed-test", 3, 2).is_err());
        assert!(create_root_keys(dir.path(), "rcpfed-test", 2, 3).is_err());
    }

    #[test]
    fn draft_round_trips_through_toml() {
        let dir = tempfile::tempdir().unwrap();
        let (root, _) = create_root_keys(dir.path(), "rcpfed-test", 3, 2).unwrap();
        let (fed, _) = federation();
        let mut registry = first_version(&fed, &root, now_seconds(), 30).unwrap();
        registry.members[1].keys[0].status =
            KeyLifecycle::Revoked(registry.issued_at + Duration::minutes(5));
        let text = DraftFile::from_registry(&registry).to_toml().unwrap();
        let back = DraftFile::from_toml(&text).unwrap().to_registry().unwrap();
        assert_eq!(back, registry);
        let bad_role = text.replacen("\"publisher\"", "\"publishr\"", 1);
        let e = DraftFile::from_toml(&bad_role)
            .unwrap()
            .to_registry()
            .unwrap_err();
        assert_eq!(e.reason, reasons::UNKNOWN_ROLE);
    }

    #[test]
    fn rotation_draft_build_sign_verify() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (root, signers) = create_root_keys(d, "rcpfed-test", 3, 2).unwrap();
        let (fed, _) = federation();
        let v1_env = create_first_version(d, &fed, &root, &signers[..2], 365).unwrap();
        let v1_path = d.join("registry").join("registry.v1.json");
        assert_eq!(read_env(&v1_path), v1_env);
        let now = now_seconds();
        let v1 = verify_first(&v1_env, &root, "rcpfed-test", now).unwrap();
        let old_key = v1.member("rabat").unwrap().keys[0].key.key_id.clone();

        // Draft v2: rabat rotates to a new key file; MLI leaves on 2025-01-29.
        let new_key = SecretKey::generate().unwrap();
        let new_key_path = d.join("rabat-new.key");
        std::fs::write(&new_key_path, new_key.to_file_text()).unwrap();
        let draft_path = d.join("v2.toml");
        let mut args = draft_args(&v1_path, &draft_path);
        args.rotate_key = vec![format!("rabat={}", new_key_path.display())];
        args.state_until = vec!["rabat:MLI=2025-01-29".into()];
        let lines = draft(&args, now).unwrap();
        assert!(lines.iter().any(|l| l.contains("rotates its signing key")));

        // Build.
        let unsigned = d.join("registry.v2.json");
        build(&BuildArgs {
            draft: draft_path.clone(),
            out: unsigned.clone(),
        })
        .unwrap();
        let env = read_env(&unsigned);
        assert!(env.signatures.is_empty());
        let v2 = decode_and_check(&env.payload).unwrap();
        assert_eq!(v2.version, 2);
        assert_eq!(v2.previous_digest, Some(v1_env.digest()));
        let rabat = v2.member("rabat").unwrap();
        assert_eq!(rabat.keys.len(), 2);
        assert_eq!(rabat.keys[0].key.key_id, old_key);
        assert_eq!(rabat.keys[0].status, KeyLifecycle::Retired(now));
        assert_eq!(rabat.keys[1].key.key_id, new_key.key_id());
        assert_eq!(rabat.keys[1].valid_from, now);
        assert!(rabat.states[0].until.is_some());

        // One signature: the threshold is not met.
        sign(&SignArgs {
            file: unsigned.clone(),
            key: key_path(d, 1),
            out: None,
            allow_previous_root: false,
        })
        .unwrap();
        let one = read_env(&unsigned);
        let e = verify_next(&v1, &v1_env.digest(), &one, now).unwrap_err();
        assert_eq!(e.reason, reasons::REGISTRY_THRESHOLD_NOT_MET);
        let (_, ok) = show(
            &ShowArgs {
                file: unsigned.clone(),
                previous: Some(v1_path.clone()),
                trust: None,
            },
            now,
        )
        .unwrap();
        assert!(!ok);

        // Second signature, into another file: verifies.
        let signed = d.join("registry.v2.signed.json");
        let lines = sign(&SignArgs {
            file: unsigned.clone(),
            key: key_path(d, 3),
            out: Some(signed.clone()),
            allow_previous_root: false,
        })
        .unwrap();
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("signatures: 2 (threshold 2)"))
        );
        let two = read_env(&signed);
        let v2 = verify_next(&v1, &v1_env.digest(), &two, now).unwrap();
        assert_eq!(v2.version, 2);
        let (lines, ok) = show(
            &ShowArgs {
                file: signed.clone(),
                previous: Some(v1_path.clone()),
                trust: None,
            },
            now,
        )
        .unwrap();
        assert!(ok, "{}", lines.join("\n"));

        // A key outside the root set is refused.
        let stranger = d.join("stranger.key");
        std::fs::write(&stranger, SecretKey::generate().unwrap().to_file_text()).unwrap();
        assert!(
            sign(&SignArgs {
                file: signed.clone(),
                key: stranger,
                out: None,
                allow_previous_root: false,
            })
            .is_err()
        );

        // Version 1 verifies against the trust file.
        let (_, ok) = show(
            &ShowArgs {
                file: v1_path,
                previous: None,
                trust: Some(d.join("root-trust.toml")),
            },
            now,
        )
        .unwrap();
        assert!(ok);
    }

    #[test]
    fn root_rotation_needs_old_and_new_thresholds() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (root, signers) = create_root_keys(d, "rcpfed-test", 3, 2).unwrap();
        let new_dir = d.join("new");
        let (new_root, _) = create_root_keys(&new_dir, "rcpfed-test", 3, 2).unwrap();
        let (fed, _) = federation();
        let v1_env = create_first_version(d, &fed, &root, &signers[1..], 365).unwrap();
        let v1_path = d.join("registry").join("registry.v1.json");
        let now = now_seconds();
        let v1 = verify_first(&v1_env, &root, "rcpfed-test", now).unwrap();

        let draft_path = d.join("v2.toml");
        let mut args = draft_args(&v1_path, &draft_path);
        args.new_root = Some(new_dir.join("root-trust.toml"));
        args.revoke_key = vec![format!(
            "{}@{}",
            v1.member("gfmd").unwrap().keys[0].key.key_id,
            rfc3339(now)
        )];
        draft(&args, now).unwrap();
        let file = d.join("registry.v2.json");
        build(&BuildArgs {
            draft: draft_path,
            out: file.clone(),
        })
        .unwrap();
        let built = read_env(&file);
        assert!(
            decode_and_check(&built.payload)
                .unwrap()
                .root
                .same_trust(&new_root)
        );

        let sign_with = |key: PathBuf, allow: bool| {
            sign(&SignArgs {
                file: file.clone(),
                key,
                out: None,
                allow_previous_root: allow,
            })
        };
        // An old root key needs --allow-previous-root.
        assert!(sign_with(key_path(d, 1), false).is_err());
        sign_with(key_path(d, 1), true).unwrap();
        sign_with(key_path(d, 2), true).unwrap();
        // Old threshold only: the new root set has not accepted.
        let old_only = read_env(&file);
        let e = verify_next(&v1, &v1_env.digest(), &old_only, now).unwrap_err();
        assert_eq!(e.reason, reasons::REGISTRY_THRESHOLD_NOT_MET);
        sign_with(key_path(&new_dir, 1), false).unwrap();
        sign_with(key_path(&new_dir, 3), false).unwrap();
        let both = read_env(&file);
        let v2 = verify_next(&v1, &v1_env.digest(), &both, now).unwrap();
        assert!(v2.root.same_trust(&new_root));
        assert!(matches!(
            v2.member("gfmd").unwrap().keys[0].status,
            KeyLifecycle::Revoked(_)
        ));

        // New threshold only (no old signatures): refused.
        let mut new_only = both.clone();
        let old_ids: Vec<String> = root.keys.iter().map(|(k, _)| k.key_id.clone()).collect();
        new_only.signatures.retain(|s| !old_ids.contains(&s.key_id));
        let e = verify_next(&v1, &v1_env.digest(), &new_only, now).unwrap_err();
        assert_eq!(e.reason, reasons::REGISTRY_THRESHOLD_NOT_MET);
    }

    #[test]
    fn build_refuses_invalid_drafts_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (root, signers) = create_root_keys(d, "rcpfed-test", 1, 1).unwrap();
        let (fed, _) = federation();
        create_first_version(d, &fed, &root, &signers, 365).unwrap();
        let v1_path = d.join("registry").join("registry.v1.json");
        let draft_path = d.join("v2.toml");
        draft(&draft_args(&v1_path, &draft_path), now_seconds()).unwrap();
        let text = std::fs::read_to_string(&draft_path).unwrap();
        // Make the rabat member keyless although it publishes.
        let mut draft_file = DraftFile::from_toml(&text).unwrap();
        draft_file.members[1].keys.clear();
        let bad = d.join("bad.toml");
        std::fs::write(&bad, draft_file.to_toml().unwrap()).unwrap();
        let e = build(&BuildArgs {
            draft: bad,
            out: d.join("bad.json"),
        })
        .unwrap_err();
        assert!(e.to_string().contains("MEMBER_WITHOUT_KEY"), "{e:#}");
        assert!(!d.join("bad.json").exists());
    }
}
