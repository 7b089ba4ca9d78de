//! A fixed, deterministic federation shared by the fuzz targets and the seed generator: the
//! hub "gfmd", the three demo regional processes with their real member states (from
//! `data/sample`), two registry root keys, and helpers that build what a node receives —
//! signed statements from the bundled sample data, hub receipts, feed entries, registry
//! versions, signed checkpoints and statement bundles. Keys come from fixed seeds so a seed
//! file made once stays valid for every later run.

use rcpfed_core::bundle::{Bundle, BundleLog, TrustAnchors};
use rcpfed_core::checkpoint::{Checkpoint, cosign, cosignature_line, sign_checkpoint};
use rcpfed_core::envelope::{STATEMENT_PAYLOAD_TYPE, SignedEnvelope, pae};
use rcpfed_core::keys::SecretKey;
use rcpfed_core::logkeys::{log_origin, witness_name};
use rcpfed_core::members::{Federation, FederationFile, KeyFile, MemberFile, Role};
use rcpfed_core::members::{KeyLifecycle, Membership};
use rcpfed_core::merkle::{MemorySource, inclusion_proof, leaf_hash, root_from_leaves};
use rcpfed_core::receipt::Receipt;
use rcpfed_core::registry::{KeyEntry, Registry, RegistryMemberEntry, RootSet, add_root_signature};
use rcpfed_core::statement::{
    Body, DocumentKind, Header, IndicatorSnapshot, PolicySummary, Statement,
};
use rcpfed_proto::v1 as pb;
use time::OffsetDateTime;
use time::macros::datetime;

/// The federation id of the fixture.
pub const FED: &str = "rcp-federation";
/// The hub's member id.
pub const HUB: &str = "gfmd";
/// The regional processes of the fixture (the demo's, with their sample data).
pub const NODES: [&str; 3] = ["colombo", "abu-dhabi", "midwa"];
/// "Now" for every check: fixed, so a run does not depend on the clock.
pub const NOW: OffsetDateTime = datetime!(2025-06-01 12:00:00 UTC);

/// The hub's statement/receipt key and log key.
pub fn hub_key() -> SecretKey {
    SecretKey::from_seed(&[1; 32])
}

/// The signing key of node `NODES[i]`.
pub fn node_key(i: usize) -> SecretKey {
    SecretKey::from_seed(&[2 + i as u8; 32])
}

/// Registry root key `i` (0 or 1).
pub fn root_key(i: usize) -> SecretKey {
    SecretKey::from_seed(&[10 + i as u8; 32])
}

fn key_file(k: &SecretKey) -> KeyFile {
    KeyFile {
        key_id: k.key_id().to_owned(),
        public_key: k.verify_key().to_base64(),
    }
}

/// The member file of the fixture.
pub fn federation_file() -> FederationFile {
    let mut members = vec![MemberFile {
        id: HUB.into(),
        name: "Global Forum on Migration and Development".into(),
        kind: "hub".into(),
        roles: vec![Role::Reader],
        spiffe_id: format!("spiffe://{FED}/node/{HUB}"),
        keys: vec![key_file(&hub_key())],
        states: vec![],
    }];
    for (i, id) in NODES.iter().enumerate() {
        let (name, kind, states) = rcpfed_import::sample::member_plan(id)
            .unwrap_or_else(|| (id.to_string(), "RCP".into(), vec![]));
        members.push(MemberFile {
            id: (*id).into(),
            name,
            kind,
            roles: vec![Role::Publisher, Role::Reader, Role::Witness],
            spiffe_id: format!("spiffe://{FED}/node/{id}"),
            keys: vec![key_file(&node_key(i))],
            states,
        });
    }
    FederationFile {
        federation_id: FED.into(),
        hub_id: HUB.into(),
        members,
    }
}

/// The fixture as a verified federation.
pub fn federation() -> Federation {
    match Federation::from_file(federation_file()) {
        Ok(f) => f,
        Err(e) => panic!("the fuzz fixture's member file is invalid: {e}"),
    }
}

/// What a bundle verifier trusts: the fixture's member file, quorum 1.
pub fn anchors() -> TrustAnchors {
    match TrustAnchors::from_federation(federation(), 1) {
        Some(t) => t,
        None => panic!("the fuzz fixture has no hub key"),
    }
}

/// A statement header for `node` carrying `body`.
pub fn header(node: &str, seq: u64, kind: DocumentKind, document: &str) -> Header {
    Header {
        federation_id: FED.into(),
        node_id: node.into(),
        seq,
        prev_digest: (seq > 1).then(|| rcpfed_core::Digest::of(b"previous statement")),
        issued_at: datetime!(2025-05-31 09:00:00 UTC),
        kind,
        schema_version: 1,
        document: document.into(),
        revision: 1,
    }
}

/// Every statement the bundled sample data yields for `node`: its policy summary and its
/// indicator snapshots, as the CLI's `publish` would build them.
pub fn sample_statements(node: &str) -> Vec<Statement> {
    let mut out = Vec::new();
    let mut seq = 1;
    if let Some(Ok(doc)) =
        rcpfed_import::sample::policy_toml(node).map(rcpfed_import::parse_policy_toml)
        && let Ok(summary) = PolicySummary::from_proto(doc.summary)
    {
        out.push(Statement {
            header: header(node, seq, DocumentKind::PolicySummary, &doc.document),
            body: Body::Policy(summary),
        });
        seq += 1;
    }
    if let Some(Ok(docs)) = rcpfed_import::sample::indicator_csv(node)
        .map(|t| rcpfed_import::parse_any_indicator_csv(t, node, "remittances"))
    {
        for doc in docs {
            let Ok(snapshot) = IndicatorSnapshot::from_proto(doc.snapshot) else {
                continue;
            };
            out.push(Statement {
                header: header(node, seq, DocumentKind::IndicatorSnapshot, &doc.document),
                body: Body::Indicators(snapshot),
            });
            seq += 1;
        }
    }
    out
}

/// The index in [`NODES`] of `node`.
pub fn node_index(node: &str) -> Option<usize> {
    NODES.iter().position(|n| *n == node)
}

/// `payload` as a statement envelope signed by node `i`.
pub fn sign_statement_payload(i: usize, payload: Vec<u8>) -> SignedEnvelope {
    SignedEnvelope::sign(STATEMENT_PAYLOAD_TYPE, payload, &node_key(i))
}

/// The hub's receipt for `env` (issued by `node` at `seq`) at `feed_index`.
pub fn receipt_for(env: &SignedEnvelope, node: &str, seq: u64, feed_index: u64) -> SignedEnvelope {
    Receipt {
        federation_id: FED.into(),
        hub_id: HUB.into(),
        node_id: node.into(),
        seq,
        statement_digest: env.digest(),
        feed_index,
        accepted_at: datetime!(2025-05-31 09:00:01 UTC),
    }
    .sign(&hub_key())
}

/// A feed entry as the hub sends it: envelope, receipt, no proof.
pub fn feed_entry(
    env: &SignedEnvelope,
    receipt: &SignedEnvelope,
    feed_index: u64,
) -> pb::SubscribeFeedResponse {
    pb::SubscribeFeedResponse {
        feed_index,
        envelope: Some(env.to_proto()),
        receipt: Some(receipt.to_proto()),
        log: None,
    }
}

/// The registry root set: both root keys, threshold 1 (so one signature reaches the checks).
pub fn root_set() -> RootSet {
    RootSet {
        keys: vec![
            (root_key(0).verify_key().clone(), "root 1".into()),
            (root_key(1).verify_key().clone(), "root 2".into()),
        ],
        threshold: 1,
    }
}

/// Registry version 1 of the fixture, unsigned.
pub fn registry_v1() -> Registry {
    let file = federation_file();
    let valid_from = datetime!(2025-01-01 00:00:00 UTC);
    Registry {
        federation_id: FED.into(),
        version: 1,
        issued_at: datetime!(2025-05-01 00:00:00 UTC),
        expires_at: datetime!(2026-05-01 00:00:00 UTC),
        previous_digest: None,
        root: root_set(),
        hub_id: HUB.into(),
        members: file
            .members
            .iter()
            .map(|m| RegistryMemberEntry {
                id: m.id.clone(),
                name: m.name.clone(),
                kind: m.kind.clone(),
                roles: m.roles.clone(),
                spiffe_id: m.spiffe_id.clone(),
                keys: m
                    .keys
                    .iter()
                    .filter_map(|k| rcpfed_core::keys::VerifyKey::from_base64(&k.public_key).ok())
                    .map(|key| KeyEntry {
                        key,
                        valid_from,
                        status: KeyLifecycle::Active,
                    })
                    .collect(),
                states: m
                    .states
                    .iter()
                    .map(|s| Membership {
                        iso3: s.iso3.clone(),
                        since: rcpfed_core::dates::parse_date(&s.since),
                        until: rcpfed_core::dates::parse_date(&s.until),
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// `payload` as a registry envelope signed by both root keys.
pub fn sign_registry_payload(payload: Vec<u8>) -> SignedEnvelope {
    let mut env = SignedEnvelope {
        payload_type: rcpfed_core::registry::REGISTRY_PAYLOAD_TYPE.into(),
        payload,
        signatures: vec![],
    };
    add_root_signature(&mut env, &root_key(0));
    add_root_signature(&mut env, &root_key(1));
    env
}

/// A checkpoint of a 5-leaf log whose leaf 2 is `env`, signed by the hub's log key and
/// cosigned by colombo and abu-dhabi; with the leaves, for proofs.
pub fn signed_checkpoint(
    env: &SignedEnvelope,
) -> (Checkpoint, String, Vec<rcpfed_core::merkle::Hash>) {
    let mut leaves: Vec<_> = (0..5u8)
        .map(|i| leaf_hash(format!("other entry {i}").as_bytes()))
        .collect();
    leaves[2] = leaf_hash(&pae(&env.payload_type, &env.payload));
    let cp = Checkpoint {
        origin: log_origin(FED),
        size: leaves.len() as u64,
        root: root_from_leaves(&leaves),
        extensions: vec![],
    };
    let mut note = match sign_checkpoint(&cp, &log_origin(FED), &hub_key()) {
        Ok(n) => n,
        Err(e) => panic!("cannot sign the fixture checkpoint: {e}"),
    };
    for (i, node) in NODES.iter().enumerate().take(2) {
        note.push_str(&cosignature_line(&cosign(
            &cp,
            &witness_name(FED, node),
            &node_key(i),
            1_748_772_000,
        )));
    }
    (cp, note, leaves)
}

/// A complete, valid bundle for colombo's first sample statement at leaf 2.
pub fn bundle() -> Bundle {
    let st = &sample_statements(NODES[0])[0];
    let env = sign_statement_payload(0, st.encode());
    let receipt = receipt_for(&env, NODES[0], st.header.seq, 3);
    let (_, note, leaves) = signed_checkpoint(&env);
    let proof = match inclusion_proof(&MemorySource::from_leaves(&leaves), 2, 5) {
        Ok(p) => p,
        Err(e) => panic!("cannot build the fixture proof: {e:?}"),
    };
    Bundle {
        federation_id: FED.into(),
        envelope: env,
        receipt: Some(receipt),
        log: BundleLog {
            leaf_index: 2,
            tree_size: 5,
            inclusion_proof: proof,
            checkpoint: note,
        },
    }
}
