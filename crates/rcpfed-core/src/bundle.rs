//! Statement bundles: one signed statement with everything needed to check, offline, that the
//! hub logged it in a checkpoint the witnesses cosigned (docs/spec/bundles.md).
//!
//! A bundle is JSON (`format` = [`BUNDLE_FORMAT`]): the statement envelope, optionally the
//! hub's receipt, and the log proof (leaf index, tree size, inclusion proof, cosigned
//! checkpoint note). [`verify_bundle`] checks it against [`TrustAnchors`] (member file, log
//! key, witness keys, quorum) and reports every step in plain words.

use crate::Digest;
use crate::checkpoint::{Checkpoint, cosignature_quorum, open_checkpoint, verify_cosignature};
use crate::dsse_json::{DsseEnvelopeJson, DsseJsonError};
use crate::envelope::SignedEnvelope;
use crate::logkeys;
use crate::members::{Federation, Member};
use crate::merkle::{Hash, verify_inclusion};
use crate::note::{NoteSignature, NoteVerifier};
use crate::receipt::{Acknowledged, Receipt};
use crate::statement::Statement;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

/// The `format` value of a version 1 bundle.
pub const BUNDLE_FORMAT: &str = "rcpfed-bundle/v1";

/// Where the statement sits in the log, and the proof of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleLog {
    /// 0-based leaf index; the statement's feed index minus one.
    pub leaf_index: u64,
    /// Size of the tree the proof is for; must be the checkpoint's size.
    pub tree_size: u64,
    /// RFC 9162 inclusion proof, nearest the leaf first.
    pub inclusion_proof: Vec<Hash>,
    /// The signed checkpoint note, with any witness cosignature lines.
    pub checkpoint: String,
}

/// A statement bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bundle {
    /// The federation the statement belongs to.
    pub federation_id: String,
    /// The signed statement, payload byte for byte as signed.
    pub envelope: SignedEnvelope,
    /// The hub's signed receipt, if included.
    pub receipt: Option<SignedEnvelope>,
    /// The log proof.
    pub log: BundleLog,
}

/// Why a bundle's JSON was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the statement bundle is not valid: {0}")]
pub struct BundleError(pub String);

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonBundle {
    format: String,
    federation_id: String,
    envelope: DsseEnvelopeJson,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    receipt: Option<DsseEnvelopeJson>,
    log: JsonLog,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonLog {
    leaf_index: u64,
    tree_size: u64,
    inclusion_proof: Vec<String>,
    checkpoint: String,
}

impl From<DsseJsonError> for BundleError {
    fn from(e: DsseJsonError) -> Self {
        BundleError(e.0)
    }
}

impl Bundle {
    /// The bundle as pretty-printed JSON (no trailing newline).
    pub fn to_json(&self) -> String {
        let json = JsonBundle {
            format: BUNDLE_FORMAT.to_owned(),
            federation_id: self.federation_id.clone(),
            envelope: DsseEnvelopeJson::from_envelope(&self.envelope),
            receipt: self.receipt.as_ref().map(DsseEnvelopeJson::from_envelope),
            log: JsonLog {
                leaf_index: self.log.leaf_index,
                tree_size: self.log.tree_size,
                inclusion_proof: self
                    .log
                    .inclusion_proof
                    .iter()
                    .map(|h| B64.encode(h))
                    .collect(),
                checkpoint: self.log.checkpoint.clone(),
            },
        };
        // Plain strings, integers and lists: serializing cannot fail.
        serde_json::to_string_pretty(&json).unwrap_or_default()
    }

    /// Parses a bundle strictly: the format must be [`BUNDLE_FORMAT`], unknown or duplicate
    /// fields are refused, every field but `receipt` is required, binary fields are standard
    /// base64 with padding, and every proof hash is 32 bytes. Nothing is verified here.
    pub fn from_json(text: &str) -> Result<Self, BundleError> {
        let json: JsonBundle =
            serde_json::from_str(text).map_err(|e| BundleError(e.to_string()))?;
        if json.format != BUNDLE_FORMAT {
            return Err(BundleError(format!(
                "format is {:?}; this verifier reads {BUNDLE_FORMAT:?}",
                json.format
            )));
        }
        let inclusion_proof = json
            .log
            .inclusion_proof
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let raw = crate::dsse_json::decode_b64(h, &format!("log.inclusion_proof[{i}]"))?;
                Hash::try_from(raw.as_slice()).map_err(|_| {
                    BundleError(format!(
                        "log.inclusion_proof[{i}] is {} bytes, not 32",
                        raw.len()
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Bundle {
            federation_id: json.federation_id,
            envelope: json.envelope.into_envelope("envelope")?,
            receipt: json
                .receipt
                .map(|r| r.into_envelope("receipt"))
                .transpose()?,
            log: BundleLog {
                leaf_index: json.log.leaf_index,
                tree_size: json.log.tree_size,
                inclusion_proof,
                checkpoint: json.log.checkpoint,
            },
        })
    }

    /// The log leaf of the statement: `SHA-256(0x00 || PAE(payload_type, payload))`.
    pub fn leaf_hash(&self) -> Hash {
        self.envelope.leaf_hash()
    }
}

/// What a verifier trusts.
#[derive(Clone, Debug)]
pub struct TrustAnchors {
    /// The member file: statement signing keys and the hub's receipt keys.
    pub federation: Federation,
    /// The hub's log key (signature type 0x01, named by the log origin).
    pub log: NoteVerifier,
    /// Witness cosignature keys (type 0x04), each with the witness it belongs to (a member
    /// id). A witness with several keys counts once.
    pub witnesses: Vec<(String, NoteVerifier)>,
    /// How many distinct witnesses must have cosigned the checkpoint.
    pub quorum: usize,
}

impl TrustAnchors {
    /// Anchors taken from the member file alone ([`logkeys::log_verifier`] and
    /// [`logkeys::witness_verifiers`]); `None` if the hub member has no key.
    pub fn from_federation(federation: Federation, quorum: usize) -> Option<Self> {
        let log = logkeys::log_verifier(&federation)?;
        let witnesses = logkeys::witness_verifiers(&federation);
        Some(TrustAnchors {
            federation,
            log,
            witnesses,
            quorum,
        })
    }
}

/// One verification step and its outcome in plain words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// Which check: "statement signature", "statement", "receipt", "checkpoint signature",
    /// "inclusion" or "witness cosignatures".
    pub name: &'static str,
    /// Whether it passed.
    pub ok: bool,
    /// What was checked, or why it failed.
    pub detail: String,
}

/// Whether every step passed (and there is at least one).
pub fn all_ok(steps: &[Step]) -> bool {
    !steps.is_empty() && steps.iter().all(|s| s.ok)
}

/// Step names, in order.
pub const STEP_STATEMENT_SIGNATURE: &str = "statement signature";
/// See [`STEP_STATEMENT_SIGNATURE`].
pub const STEP_STATEMENT: &str = "statement";
/// See [`STEP_STATEMENT_SIGNATURE`].
pub const STEP_RECEIPT: &str = "receipt";
/// See [`STEP_STATEMENT_SIGNATURE`].
pub const STEP_CHECKPOINT_SIGNATURE: &str = "checkpoint signature";
/// See [`STEP_STATEMENT_SIGNATURE`].
pub const STEP_INCLUSION: &str = "inclusion";
/// See [`STEP_STATEMENT_SIGNATURE`].
pub const STEP_WITNESSES: &str = "witness cosignatures";

/// Records a step; `None` stops the run after a failure.
fn record(
    steps: &mut Vec<Step>,
    name: &'static str,
    outcome: Result<String, String>,
) -> Option<()> {
    let ok = outcome.is_ok();
    let detail = match outcome {
        Ok(d) | Err(d) => d,
    };
    steps.push(Step { name, ok, detail });
    ok.then_some(())
}

/// Verifies a bundle with no network, in this order, stopping after the first failure:
/// statement signature, statement, receipt (only if the bundle has one), checkpoint
/// signature, inclusion, witness cosignatures. Returns the steps that ran.
pub fn verify_bundle(b: &Bundle, t: &TrustAnchors) -> Vec<Step> {
    let mut steps = Vec::new();
    let _ = run(b, t, &mut steps);
    steps
}

fn run(b: &Bundle, t: &TrustAnchors, steps: &mut Vec<Step>) -> Option<()> {
    let owner = step_signature(b, t);
    record(
        steps,
        STEP_STATEMENT_SIGNATURE,
        owner.as_ref().map(|(d, _)| d.clone()).map_err(Clone::clone),
    )?;
    let owner = owner.ok()?.1;
    let statement = step_statement(b, t, owner);
    record(
        steps,
        STEP_STATEMENT,
        statement
            .as_ref()
            .map(|(d, _)| d.clone())
            .map_err(Clone::clone),
    )?;
    let statement = statement.ok()?.1;
    if let Some(receipt) = &b.receipt {
        record(steps, STEP_RECEIPT, step_receipt(b, t, receipt, &statement))?;
    }
    let opened = open_checkpoint(&b.log.checkpoint, &t.log);
    let (cp, note) = match opened {
        Ok(v) => v,
        Err(e) => {
            return record(
                steps,
                STEP_CHECKPOINT_SIGNATURE,
                Err(format!("{} [{}]", e.message, e.reason)),
            );
        }
    };
    record(
        steps,
        STEP_CHECKPOINT_SIGNATURE,
        Ok(format!(
            "signed by the log key {}+{}; origin {}, tree size {}, root hash {}",
            t.log.name,
            hex::encode(t.log.key_hash),
            cp.origin,
            cp.size,
            B64.encode(cp.root)
        )),
    )?;
    record(steps, STEP_INCLUSION, step_inclusion(b, &cp))?;
    record(
        steps,
        STEP_WITNESSES,
        step_witnesses(&cp, &note.signatures, t),
    )
}

fn describe_member(m: &Member) -> String {
    format!("{} ({})", m.id, m.name)
}

fn step_signature<'a>(b: &Bundle, t: &'a TrustAnchors) -> Result<(String, &'a Member), String> {
    let crate::statement::SignedBy { member, key } =
        crate::statement::verify_statement_signature(&b.envelope, &t.federation)
            .map_err(|e| format!("{} [{}]", e.message, e.reason))?;
    Ok((
        format!(
            "signed by key {} of {}",
            key.key_id,
            describe_member(member)
        ),
        member,
    ))
}

fn step_statement(
    b: &Bundle,
    t: &TrustAnchors,
    owner: &Member,
) -> Result<(String, Statement), String> {
    let fed = &t.federation.federation_id;
    if &b.federation_id != fed {
        return Err(format!(
            "the bundle is for federation {:?}, but the member file is for {fed:?}",
            b.federation_id
        ));
    }
    let st = Statement::decode(&b.envelope.payload).map_err(|e| {
        format!(
            "the payload is not a valid rcpfed.v1.Statement: {}",
            e.message
        )
    })?;
    let h = &st.header;
    if &h.federation_id != fed {
        return Err(format!(
            "the statement is for federation {:?}, not {fed:?}",
            h.federation_id
        ));
    }
    if h.node_id != owner.id {
        return Err(format!(
            "the statement says it was issued by {:?}, but it is signed with a key of {}",
            h.node_id,
            describe_member(owner)
        ));
    }
    let issued = h
        .issued_at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| h.issued_at.unix_timestamp().to_string());
    let detail = format!(
        "{} of {}: document {}, revision {}, seq {}, issued {issued}; digest {}",
        h.kind.as_str(),
        h.node_id,
        h.document,
        h.revision,
        h.seq,
        b.envelope.digest()
    );
    Ok((detail, st))
}

fn step_receipt(
    b: &Bundle,
    t: &TrustAnchors,
    receipt: &SignedEnvelope,
    st: &Statement,
) -> Result<String, String> {
    let digest: Digest = b.envelope.digest();
    let r = Receipt::verify_for(
        receipt,
        &t.federation,
        Acknowledged {
            node_id: &st.header.node_id,
            seq: st.header.seq,
            digest: &digest,
            feed_index: None,
        },
    )?;
    if r.feed_index.checked_sub(1) != Some(b.log.leaf_index) {
        return Err(format!(
            "the receipt puts the statement at feed index {}, so leaf index {}, but the log proof is for leaf {}",
            r.feed_index,
            r.feed_index.saturating_sub(1),
            b.log.leaf_index
        ));
    }
    let accepted = r
        .accepted_at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| r.accepted_at.unix_timestamp().to_string());
    // A key revoked before the hub accepted the statement does not vouch for it (the hub's
    // clock decides, never the signer's issued_at): whoever stole the key could have signed it.
    // Retirement is not compromise: the hub refuses retired keys itself, so anything it
    // accepted was signed while the key was in force under the registry of that moment.
    for sig in &b.envelope.signatures {
        if let crate::members::KeyState::Revoked { at } =
            t.federation.key_state(&sig.key_id, r.accepted_at)
        {
            return Err(format!(
                "the statement is signed with key {}, revoked at {at}, before the hub accepted it at {accepted}",
                sig.key_id
            ));
        }
    }
    let hub = t
        .federation
        .hub()
        .map_or_else(|| r.hub_id.clone(), describe_member);
    Ok(format!(
        "signed by the hub {hub}; accepted at {accepted} as feed index {}",
        r.feed_index
    ))
}

fn step_inclusion(b: &Bundle, cp: &Checkpoint) -> Result<String, String> {
    if b.log.tree_size != cp.size {
        return Err(format!(
            "the inclusion proof is for a tree of size {}, but the checkpoint is for size {}",
            b.log.tree_size, cp.size
        ));
    }
    let leaf = b.leaf_hash();
    verify_inclusion(
        &leaf,
        b.log.leaf_index,
        cp.size,
        &b.log.inclusion_proof,
        &cp.root,
    )
    .map_err(|e| format!("{} [{}]", e.message, e.reason))?;
    Ok(format!(
        "leaf {} (hash {}) is in the tree of size {}: the proof ({} hash{}) leads to the checkpoint's root",
        b.log.leaf_index,
        hex::encode(leaf),
        cp.size,
        b.log.inclusion_proof.len(),
        if b.log.inclusion_proof.len() == 1 {
            ""
        } else {
            "es"
        }
    ))
}

fn format_time(ts: u64) -> String {
    i64::try_from(ts)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{ts} (POSIX seconds)"))
}

fn step_witnesses(
    cp: &Checkpoint,
    sigs: &[NoteSignature],
    t: &TrustAnchors,
) -> Result<String, String> {
    // Which witnesses (by member id) have a valid cosignature, and when.
    let mut cosigned: Vec<(&str, u64)> = Vec::new();
    let mut invalid: Vec<String> = Vec::new();
    let mut missing: Vec<&str> = Vec::new();
    let mut members: Vec<&str> = Vec::new();
    for (id, _) in &t.witnesses {
        if !members.contains(&id.as_str()) {
            members.push(id);
        }
    }
    for id in &members {
        let mut found = None;
        for (_, v) in t.witnesses.iter().filter(|(w, _)| w == id) {
            for s in sigs
                .iter()
                .filter(|s| s.name == v.name && s.key_hash == v.key_hash)
            {
                match verify_cosignature(cp, s, v) {
                    Ok(ts) => {
                        found.get_or_insert(ts);
                    }
                    Err(e) => invalid.push(format!("{id}: {}", e.message)),
                }
            }
        }
        match found {
            Some(ts) => cosigned.push((id, ts)),
            None => missing.push(id),
        }
    }
    let verifiers: Vec<NoteVerifier> = t.witnesses.iter().map(|(_, v)| v.clone()).collect();
    // Distinct keys (cosignature_quorum) and distinct witnesses: both must reach the quorum.
    let count = cosignature_quorum(cp, sigs, &verifiers).min(cosigned.len());
    let known = |s: &NoteSignature| {
        (s.name == t.log.name && s.key_hash == t.log.key_hash)
            || verifiers
                .iter()
                .any(|v| v.name == s.name && v.key_hash == s.key_hash)
    };
    let ignored = sigs.iter().filter(|s| !known(s)).count();

    let mut detail = format!(
        "{count} of {} witnesses cosigned (quorum {})",
        members.len(),
        t.quorum
    );
    if !cosigned.is_empty() {
        let list: Vec<String> = cosigned
            .iter()
            .map(|(id, ts)| format!("{id} at {}", format_time(*ts)))
            .collect();
        detail.push_str(&format!(": {}", list.join(", ")));
    }
    if !missing.is_empty() {
        detail.push_str(&format!(
            "; no valid cosignature from {}",
            missing.join(", ")
        ));
    }
    for m in &invalid {
        detail.push_str(&format!("; refused cosignature by {m}"));
    }
    if ignored > 0 {
        detail.push_str(&format!(
            "; {ignored} signature line(s) by keys that are not trusted were ignored"
        ));
    }
    if count >= t.quorum {
        Ok(detail)
    } else {
        Err(format!("quorum not met: {detail}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{cosign, cosignature_line, sign_checkpoint};
    use crate::envelope::STATEMENT_PAYLOAD_TYPE;
    use crate::keys::SecretKey;
    use crate::logkeys::{log_origin, witness_name};
    use crate::merkle::leaf_hash;
    use crate::merkle::{MemorySource, inclusion_proof, root_from_leaves};
    use time::macros::datetime;

    const FED: &str = "rcp-federation";

    fn hub() -> SecretKey {
        SecretKey::from_seed(&[1; 32])
    }
    fn colombo() -> SecretKey {
        SecretKey::from_seed(&[2; 32])
    }
    fn abu_dhabi() -> SecretKey {
        SecretKey::from_seed(&[3; 32])
    }
    fn midwa() -> SecretKey {
        SecretKey::from_seed(&[4; 32])
    }
    fn stranger() -> SecretKey {
        SecretKey::from_seed(&[9; 32])
    }

    fn federation() -> Federation {
        let member = |id: &str, name: &str, kind: &str, roles: &str, k: &SecretKey| {
            format!(
                "[[members]]\nid = \"{id}\"\nname = \"{name}\"\nkind = \"{kind}\"\nroles = [{roles}]\n\
                 spiffe_id = \"spiffe://{FED}/node/{id}\"\n\
                 [[members.keys]]\nkey_id = \"{}\"\npublic_key = \"{}\"\n",
                k.key_id(),
                k.verify_key().to_base64()
            )
        };
        let w = "\"publisher\", \"reader\", \"witness\"";
        let text = format!(
            "federation_id = \"{FED}\"\nhub_id = \"gfmd\"\n{}{}{}{}",
            member("gfmd", "Global Forum", "hub", "\"reader\"", &hub()),
            member("colombo", "Colombo Process", "RCP", w, &colombo()),
            member("abu-dhabi", "Abu Dhabi Dialogue", "RCP", w, &abu_dhabi()),
            member("midwa", "MIDWA", "RCP", w, &midwa()),
        );
        match Federation::from_toml(&text) {
            Ok(f) => f,
            Err(e) => panic!("{e}"),
        }
    }

    fn anchors(quorum: usize) -> TrustAnchors {
        TrustAnchors::from_federation(federation(), quorum).expect("hub key")
    }

    const INDEX: u64 = 2;
    const SIZE: u64 = 5;
    const TS: u64 = 1_715_940_000;

    struct Fixture {
        bundle: Bundle,
        cp: Checkpoint,
        leaves: Vec<Hash>,
    }

    fn cosign_line(cp: &Checkpoint, id: &str, key: &SecretKey) -> String {
        cosignature_line(&cosign(cp, &witness_name(FED, id), key, TS))
    }

    fn fixture() -> Fixture {
        let envelope = SignedEnvelope::sign(
            STATEMENT_PAYLOAD_TYPE,
            crate::statement::samples::policy().encode(),
            &colombo(),
        );
        let mut leaves: Vec<Hash> = (0..SIZE)
            .map(|i| leaf_hash(format!("other entry {i}").as_bytes()))
            .collect();
        leaves[INDEX as usize] = envelope.leaf_hash();
        let src = MemorySource::from_leaves(&leaves);
        let proof = inclusion_proof(&src, INDEX, SIZE).expect("proof");
        let cp = Checkpoint {
            origin: log_origin(FED),
            size: SIZE,
            root: root_from_leaves(&leaves),
            extensions: vec![],
        };
        let mut note = sign_checkpoint(&cp, &log_origin(FED), &hub()).expect("sign");
        note.push_str(&cosign_line(&cp, "colombo", &colombo()));
        note.push_str(&cosign_line(&cp, "abu-dhabi", &abu_dhabi()));
        let receipt = Receipt {
            federation_id: FED.into(),
            hub_id: "gfmd".into(),
            node_id: "colombo".into(),
            seq: 1,
            statement_digest: envelope.digest(),
            feed_index: INDEX + 1,
            accepted_at: datetime!(2024-05-17 10:00:01 UTC),
        }
        .sign(&hub());
        Fixture {
            bundle: Bundle {
                federation_id: FED.into(),
                envelope,
                receipt: Some(receipt),
                log: BundleLog {
                    leaf_index: INDEX,
                    tree_size: SIZE,
                    inclusion_proof: proof,
                    checkpoint: note,
                },
            },
            cp,
            leaves,
        }
    }

    /// The name of the failed step, if any (always the last one).
    fn failed_at(steps: &[Step]) -> Option<&'static str> {
        let last = steps.last()?;
        assert!(
            steps[..steps.len() - 1].iter().all(|s| s.ok),
            "only the last step may fail: {steps:#?}"
        );
        (!last.ok).then_some(last.name)
    }

    fn check(b: &Bundle, t: &TrustAnchors) -> Option<&'static str> {
        failed_at(&verify_bundle(b, t))
    }

    #[test]
    fn a_good_bundle_passes_every_step() {
        let f = fixture();
        let steps = verify_bundle(&f.bundle, &anchors(2));
        assert!(all_ok(&steps), "{steps:#?}");
        let names: Vec<_> = steps.iter().map(|s| s.name).collect();
        assert_eq!(
            names,
            [
                STEP_STATEMENT_SIGNATURE,
                STEP_STATEMENT,
                STEP_RECEIPT,
                STEP_CHECKPOINT_SIGNATURE,
                STEP_INCLUSION,
                STEP_WITNESSES
            ]
        );
        assert!(
            steps[0].detail.contains(colombo().key_id())
                && steps[0].detail.contains("colombo (Colombo Process)"),
            "{}",
            steps[0].detail
        );
        assert!(steps[1].detail.contains("revision 1") && steps[1].detail.contains("seq 1"));
        assert!(steps[3].detail.contains("tree size 5"));
        let w = &steps[5].detail;
        assert!(
            w.starts_with("2 of 3 witnesses cosigned (quorum 2)")
                && w.contains("colombo at 2024-05-17T10:00:00Z")
                && w.contains("abu-dhabi at")
                && w.contains("no valid cosignature from midwa"),
            "{w}"
        );
        // Without a receipt the receipt step is skipped.
        let mut b = f.bundle.clone();
        b.receipt = None;
        let steps = verify_bundle(&b, &anchors(2));
        assert!(all_ok(&steps));
        assert_eq!(steps.len(), 5);
        assert!(!all_ok(&[]));
    }

    #[test]
    fn json_round_trip_and_strictness() {
        let f = fixture();
        let json = f.bundle.to_json();
        assert_eq!(Bundle::from_json(&json), Ok(f.bundle.clone()));
        let v: serde_json::Value = serde_json::from_str(&json).expect("json");
        assert_eq!(v["format"], BUNDLE_FORMAT);
        assert_eq!(v["log"]["leaf_index"], INDEX);
        assert_eq!(
            v["log"]["inclusion_proof"].as_array().map(Vec::len),
            Some(3)
        );

        let mut b = f.bundle.clone();
        b.receipt = None;
        let json = b.to_json();
        assert!(!json.contains("receipt"));
        assert_eq!(Bundle::from_json(&json), Ok(b));

        let edit = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut v: serde_json::Value =
                serde_json::from_str(&fixture().bundle.to_json()).expect("json");
            f(&mut v);
            Bundle::from_json(&v.to_string())
        };
        assert!(edit(&|v| v["extra"] = 1.into()).is_err());
        assert!(edit(&|v| v["log"]["extra"] = 1.into()).is_err());
        assert!(edit(&|v| v["envelope"]["signatures"][0]["extra"] = 1.into()).is_err());
        assert!(edit(&|v| v["format"] = "rcpfed-bundle/v2".into()).is_err());
        assert!(edit(&|v| v["envelope"]["payload"] = "not base64!".into()).is_err());
        // URL-safe alphabet and missing padding are refused.
        assert!(edit(&|v| v["log"]["inclusion_proof"][0] = "_-8".into()).is_err());
        assert!(edit(&|v| v["log"]["inclusion_proof"][0] = "AAAA".into()).is_err());
        assert!(
            edit(&|v| {
                if let Some(o) = v["log"].as_object_mut() {
                    o.remove("checkpoint");
                }
            })
            .is_err()
        );
        assert!(edit(&|v| v["log"]["leaf_index"] = (-1).into()).is_err());
        assert!(edit(&|v| v["receipt"] = serde_json::Value::Null).is_ok());
        assert!(
            Bundle::from_json("{\"format\": \"rcpfed-bundle/v1\", \"format\": \"x\"}").is_err()
        );
    }

    #[test]
    fn bundles_are_written_with_dsse_names_and_the_older_names_still_read() {
        let f = fixture();
        let json = f.bundle.to_json();
        let v: serde_json::Value = serde_json::from_str(&json).expect("json");
        for envelope in [&v["envelope"], &v["receipt"]] {
            assert!(envelope["payloadType"].is_string(), "{json}");
            assert!(envelope["signatures"][0]["keyid"].is_string(), "{json}");
        }
        assert!(!json.contains("payload_type") && !json.contains("key_id"));
        // A bundle written before the DSSE names: still read, and it still verifies.
        let older = json
            .replace("\"payloadType\"", "\"payload_type\"")
            .replace("\"keyid\"", "\"key_id\"");
        let read = Bundle::from_json(&older).expect("an older bundle is read");
        assert_eq!(read, f.bundle);
        assert!(all_ok(&verify_bundle(&read, &anchors(2))));
        // The fuzzer's seed bundle, as an older version wrote it.
        let seed = include_str!("../../../fuzz/seeds/bundle/valid.json");
        assert!(Bundle::from_json(seed).is_ok());
        // One member in both spellings is a duplicate.
        let both = json.replacen(
            "\"payloadType\"",
            "\"payload_type\": \"x\",\n    \"payloadType\"",
            1,
        );
        assert!(Bundle::from_json(&both).is_err_and(|e| e.0.contains("duplicate field")));
    }

    #[test]
    fn flipped_payload_byte_fails_the_statement_signature() {
        let mut b = fixture().bundle;
        b.envelope.payload[10] ^= 0x01;
        assert_eq!(check(&b, &anchors(2)), Some(STEP_STATEMENT_SIGNATURE));
        let mut b = fixture().bundle;
        b.envelope.signatures[0].key_id = stranger().key_id().to_owned();
        assert_eq!(check(&b, &anchors(2)), Some(STEP_STATEMENT_SIGNATURE));
        let mut b = fixture().bundle;
        b.envelope.payload_type = crate::envelope::RECEIPT_PAYLOAD_TYPE.into();
        assert_eq!(check(&b, &anchors(2)), Some(STEP_STATEMENT_SIGNATURE));
    }

    #[test]
    fn statement_signed_by_another_member_fails_the_statement_step() {
        let mut b = fixture().bundle;
        b.envelope = SignedEnvelope::sign(
            STATEMENT_PAYLOAD_TYPE,
            b.envelope.payload.clone(),
            &abu_dhabi(),
        );
        let steps = verify_bundle(&b, &anchors(2));
        assert_eq!(failed_at(&steps), Some(STEP_STATEMENT));
        let mut b = fixture().bundle;
        b.federation_id = "other".into();
        assert_eq!(check(&b, &anchors(2)), Some(STEP_STATEMENT));
        let mut b = fixture().bundle;
        b.envelope = SignedEnvelope::sign(STATEMENT_PAYLOAD_TYPE, vec![0xff, 0xff], &colombo());
        assert_eq!(check(&b, &anchors(2)), Some(STEP_STATEMENT));
    }

    #[test]
    fn receipt_for_something_else_fails_the_receipt_step() {
        let f = fixture();
        let r = |edit: &dyn Fn(&mut Receipt)| {
            let mut r = Receipt {
                federation_id: FED.into(),
                hub_id: "gfmd".into(),
                node_id: "colombo".into(),
                seq: 1,
                statement_digest: f.bundle.envelope.digest(),
                feed_index: INDEX + 1,
                accepted_at: datetime!(2024-05-17 10:00:01 UTC),
            };
            edit(&mut r);
            let mut b = f.bundle.clone();
            b.receipt = Some(r.sign(&hub()));
            check(&b, &anchors(2))
        };
        assert_eq!(r(&|_| {}), None);
        assert_eq!(
            r(&|r| r.statement_digest = Digest::of(b"other")),
            Some(STEP_RECEIPT)
        );
        assert_eq!(r(&|r| r.feed_index = INDEX), Some(STEP_RECEIPT));
        assert_eq!(r(&|r| r.feed_index = 0), Some(STEP_RECEIPT));
        assert_eq!(r(&|r| r.seq = 2), Some(STEP_RECEIPT));
        // Signed by a witness, not the hub.
        let mut b = f.bundle.clone();
        let good = Receipt::verify(
            b.receipt.as_ref().expect("receipt"),
            &[hub().verify_key().clone()],
            FED,
        )
        .expect("valid");
        b.receipt = Some(good.sign(&colombo()));
        assert_eq!(check(&b, &anchors(2)), Some(STEP_RECEIPT));
    }

    #[test]
    fn checkpoint_signed_by_another_key_fails() {
        let f = fixture();
        let mut b = f.bundle.clone();
        let mut note = sign_checkpoint(&f.cp, &log_origin(FED), &stranger()).expect("sign");
        note.push_str(&cosign_line(&f.cp, "colombo", &colombo()));
        note.push_str(&cosign_line(&f.cp, "abu-dhabi", &abu_dhabi()));
        b.log.checkpoint = note;
        let steps = verify_bundle(&b, &anchors(2));
        assert_eq!(failed_at(&steps), Some(STEP_CHECKPOINT_SIGNATURE));
        assert!(
            steps[steps.len() - 1].detail.contains("UNKNOWN_LOG_KEY"),
            "{steps:#?}"
        );
        // The right key under another origin.
        let mut other = f.cp.clone();
        other.origin = "another/log".into();
        b.log.checkpoint = sign_checkpoint(&other, "another/log", &hub()).expect("sign");
        assert_eq!(check(&b, &anchors(2)), Some(STEP_CHECKPOINT_SIGNATURE));
    }

    #[test]
    fn truncated_note_fails_the_checkpoint_step() {
        let f = fixture();
        let note = &f.bundle.log.checkpoint;
        for cut in [note.len() - 1, note.len() - 20, 30, 0] {
            let mut b = f.bundle.clone();
            b.log.checkpoint = note[..cut].to_owned();
            assert_eq!(
                check(&b, &anchors(2)),
                Some(STEP_CHECKPOINT_SIGNATURE),
                "cut at {cut}"
            );
        }
        // Only the checkpoint body: no signature at all.
        let mut b = f.bundle.clone();
        b.log.checkpoint = f.cp.to_text();
        assert_eq!(check(&b, &anchors(2)), Some(STEP_CHECKPOINT_SIGNATURE));
    }

    #[test]
    fn wrong_proof_hash_fails_inclusion() {
        let f = fixture();
        let mut b = f.bundle.clone();
        b.log.inclusion_proof[1][0] ^= 0x80;
        assert_eq!(check(&b, &anchors(2)), Some(STEP_INCLUSION));
        let mut b = f.bundle.clone();
        b.log.inclusion_proof.pop();
        assert_eq!(check(&b, &anchors(2)), Some(STEP_INCLUSION));
        let mut b = f.bundle.clone();
        b.log.leaf_index = 3;
        b.receipt = None;
        assert_eq!(check(&b, &anchors(2)), Some(STEP_INCLUSION));
        let mut b = f.bundle.clone();
        b.log.leaf_index = SIZE;
        b.receipt = None;
        assert_eq!(check(&b, &anchors(2)), Some(STEP_INCLUSION));
    }

    #[test]
    fn tree_size_mismatch_fails_inclusion() {
        let f = fixture();
        let mut b = f.bundle.clone();
        b.log.tree_size = SIZE + 1;
        let steps = verify_bundle(&b, &anchors(2));
        assert_eq!(failed_at(&steps), Some(STEP_INCLUSION));
        assert!(steps[steps.len() - 1].detail.contains("size 6"));
        // A genuine proof for a larger tree, against the size-5 checkpoint.
        let mut leaves = f.leaves.clone();
        leaves.push(leaf_hash(b"later"));
        leaves.push(leaf_hash(b"later still"));
        let src = MemorySource::from_leaves(&leaves);
        let mut b = f.bundle.clone();
        b.log.tree_size = 7;
        b.log.inclusion_proof = inclusion_proof(&src, INDEX, 7).expect("proof");
        assert_eq!(check(&b, &anchors(2)), Some(STEP_INCLUSION));
        // The size-5 proof claimed for a checkpoint of size 7.
        let mut b = f.bundle.clone();
        let cp7 = Checkpoint {
            origin: log_origin(FED),
            size: 7,
            root: root_from_leaves(&leaves),
            extensions: vec![],
        };
        b.log.checkpoint = sign_checkpoint(&cp7, &log_origin(FED), &hub()).expect("sign");
        assert_eq!(check(&b, &anchors(0)), Some(STEP_INCLUSION));
    }

    #[test]
    fn cosignature_for_another_checkpoint_does_not_count() {
        let f = fixture();
        let other = Checkpoint {
            origin: log_origin(FED),
            size: SIZE - 1,
            root: root_from_leaves(&f.leaves[..4]),
            extensions: vec![],
        };
        let mut note = sign_checkpoint(&f.cp, &log_origin(FED), &hub()).expect("sign");
        note.push_str(&cosign_line(&f.cp, "colombo", &colombo()));
        note.push_str(&cosign_line(&other, "abu-dhabi", &abu_dhabi()));
        let mut b = f.bundle.clone();
        b.log.checkpoint = note;
        let steps = verify_bundle(&b, &anchors(2));
        assert_eq!(failed_at(&steps), Some(STEP_WITNESSES));
        let d = &steps[steps.len() - 1].detail;
        assert!(
            d.contains("1 of 3") && d.contains("refused cosignature by abu-dhabi"),
            "{d}"
        );
        assert_eq!(check(&b, &anchors(1)), None);
    }

    #[test]
    fn quorum_not_met() {
        let f = fixture();
        let steps = verify_bundle(&f.bundle, &anchors(3));
        assert_eq!(failed_at(&steps), Some(STEP_WITNESSES));
        assert!(
            steps[steps.len() - 1]
                .detail
                .starts_with("quorum not met: 2 of 3")
        );
        // A cosignature by a key that is not a witness's is ignored.
        let mut b = f.bundle.clone();
        b.log
            .checkpoint
            .push_str(&cosign_line(&f.cp, "stranger", &stranger()));
        let steps = verify_bundle(&b, &anchors(3));
        assert_eq!(failed_at(&steps), Some(STEP_WITNESSES));
        assert!(
            steps[steps.len() - 1]
                .detail
                .contains("1 signature line(s)")
        );
        // The same witness twice counts once.
        let mut b = f.bundle.clone();
        let mut note = sign_checkpoint(&f.cp, &log_origin(FED), &hub()).expect("sign");
        note.push_str(&cosign_line(&f.cp, "colombo", &colombo()));
        note.push_str(&cosignature_line(&cosign(
            &f.cp,
            &witness_name(FED, "colombo"),
            &colombo(),
            TS + 60,
        )));
        b.log.checkpoint = note;
        assert_eq!(check(&b, &anchors(2)), Some(STEP_WITNESSES));
        // A witness cosigning under another member's name does not count.
        let mut b = f.bundle.clone();
        let mut note = sign_checkpoint(&f.cp, &log_origin(FED), &hub()).expect("sign");
        note.push_str(&cosign_line(&f.cp, "colombo", &colombo()));
        note.push_str(&cosign_line(&f.cp, "midwa", &colombo()));
        b.log.checkpoint = note;
        assert_eq!(check(&b, &anchors(2)), Some(STEP_WITNESSES));
        // Quorum 0 passes with no cosignature at all.
        let mut b = f.bundle.clone();
        b.log.checkpoint = sign_checkpoint(&f.cp, &log_origin(FED), &hub()).expect("sign");
        assert_eq!(check(&b, &anchors(0)), None);
        assert_eq!(check(&b, &anchors(1)), Some(STEP_WITNESSES));
    }

    #[test]
    fn one_witness_with_two_keys_counts_once() {
        let f = fixture();
        let mut t = anchors(2);
        let second = NoteVerifier::new(
            &witness_name(FED, "colombo"),
            crate::note::ALG_COSIGNATURE_V1,
            stranger().verify_key().clone(),
        )
        .expect("verifier");
        t.witnesses.push(("colombo".into(), second));
        let mut b = f.bundle.clone();
        let mut note = sign_checkpoint(&f.cp, &log_origin(FED), &hub()).expect("sign");
        note.push_str(&cosign_line(&f.cp, "colombo", &colombo()));
        note.push_str(&cosign_line(&f.cp, "colombo", &stranger()));
        b.log.checkpoint = note;
        assert_eq!(check(&b, &t), Some(STEP_WITNESSES));
        assert_eq!(check(&f.bundle, &t), None);
    }
}
