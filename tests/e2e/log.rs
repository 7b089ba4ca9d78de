//! The transparency log end to end (issue 3): receipts and statements carry inclusion proofs
//! that verify against hub-signed C2SP checkpoints; the nodes witness and cosign them until a
//! quorum makes them final; consistency proofs between every pair of sizes; a dishonest hub
//! (forked checkpoints, a rewritten entry) is caught; `kill -9` during ingest leaves every
//! receipt provable; and a bundle exported with `rcpfed export bundle` verifies offline with
//! `rcpfed verify`, and fails when tampered with.
//!
//! Every proof here is checked with `rcpfed_core`'s own verifier against checkpoints opened
//! with the hub's log key from the member file, never by trusting what the hub says.
//!
//! A new hub logs registry version 1 (its own statement, node `HUB_ID`, seq 1) as the first
//! entry of the log and the feed (feed index 1, leaf 0), then indicator catalogue version 1
//! (chain `gfmd/catalogue`, feed index 2, leaf 1): the `HUB_PRELUDE`. Every node statement
//! comes after them, so a log holding `n` node statements has `n + HUB_PRELUDE` leaves, and
//! leaf index = feed index - 1 holds for every entry, the hub's documents included.

use crate::harness::{
    ALL_NODES, BIN, Cluster, HUB_ID, HUB_PRELUDE, RawNode, TIMEOUT, assert_refused, describe,
    field_violations, is_catalogue, is_registry, node_statements, off_runtime,
};
use prost::Message as _;
use rcpfed_core::bundle::Bundle;
use rcpfed_core::checkpoint::{
    Checkpoint, cosignature_quorum, open_checkpoint, sign_checkpoint, verify_cosignature,
};
use rcpfed_core::envelope::{SignedEnvelope, pae, verify_signatures};
use rcpfed_core::logkeys;
use rcpfed_core::members::Federation;
use rcpfed_core::merkle::{self, Hash};
use rcpfed_core::note::{NoteVerifier, parse_note};
use rcpfed_core::receipt::Receipt;
use rcpfed_proto::v1;
use rcpfed_proto::v1::get_inclusion_proof_request::Leaf;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// Nodes poll the hub's checkpoint every 100 ms instead of every second.
const FAST_WITNESS: [(&str, &str); 1] = [("RCPFED_NODE_WITNESS_INTERVAL_MS", "100")];
/// The health service name of the witness role.
const WITNESS_HEALTH: &str = "rcpfed.v1.WitnessService";

// ----- helpers ---------------------------------------------------------------------------------

fn hashes(proof: &[Vec<u8>]) -> Vec<Hash> {
    proof
        .iter()
        .map(|h| Hash::try_from(h.as_slice()).expect("a proof hash is 32 bytes"))
        .collect()
}

fn log_key(fed: &Federation) -> NoteVerifier {
    logkeys::log_verifier(fed).expect("the member file gives the hub's log key")
}

fn witness_keys(fed: &Federation) -> Vec<NoteVerifier> {
    logkeys::witness_verifiers(fed)
        .into_iter()
        .map(|(_, v)| v)
        .collect()
}

/// Opens a signed checkpoint with the hub's log key from the member file.
fn open(fed: &Federation, note: &str) -> Checkpoint {
    open_checkpoint(note, &log_key(fed))
        .unwrap_or_else(|e| panic!("the checkpoint does not open with the log key: {e}\n{note}"))
        .0
}

/// Distinct witnesses (by key) with a valid cosignature line on `note`.
fn cosigners(fed: &Federation, note: &str) -> usize {
    let (cp, parsed) = open_checkpoint(note, &log_key(fed)).expect("checkpoint opens");
    cosignature_quorum(&cp, &parsed.signatures, &witness_keys(fed))
}

/// The log leaf of an envelope: SHA-256(0x00 || PAE(type, payload)).
fn leaf_of(env: &v1::Envelope) -> Hash {
    merkle::leaf_hash(&pae(&env.payload_type, &env.payload))
}

/// Checks that `log` proves `envelope` is leaf `leaf_index` of the tree of the checkpoint it
/// carries (opened with the log key); returns that checkpoint.
#[track_caller]
fn check_proof(
    fed: &Federation,
    envelope: &v1::Envelope,
    log: &v1::LogProof,
    leaf_index: u64,
) -> Checkpoint {
    assert_eq!(log.leaf_index, leaf_index, "leaf index = feed index - 1");
    let cp = open(fed, &log.checkpoint);
    assert_eq!(
        log.tree_size, cp.size,
        "the proof is for its checkpoint's size"
    );
    assert!(
        leaf_index < cp.size,
        "leaf {leaf_index} in size {}",
        cp.size
    );
    merkle::verify_inclusion(
        &leaf_of(envelope),
        leaf_index,
        cp.size,
        &hashes(&log.inclusion_proof),
        &cp.root,
    )
    .unwrap_or_else(|e| panic!("inclusion proof of leaf {leaf_index} does not verify: {e}"));
    cp
}

/// The hub's checkpoint (latest, or latest final); None while there is none.
async fn hub_checkpoint(c: &Cluster, final_only: bool) -> Option<v1::GetCheckpointResponse> {
    match c
        .hub_client("operator")
        .await
        .get_checkpoint(v1::GetCheckpointRequest {
            final_only,
            ..Default::default()
        })
        .await
    {
        Ok(r) => Some(r.into_inner()),
        Err(s) if s.code() == Code::NotFound => None,
        Err(s) => panic!("GetCheckpoint: {}", describe(&s)),
    }
}

/// Whether the latest final checkpoint has exactly `size` leaves.
async fn final_at(c: &Cluster, size: u64) -> bool {
    hub_checkpoint(c, true)
        .await
        .is_some_and(|cp| cp.tree_size == size && cp.r#final)
}

/// Whether every node in `nodes` trusts a checkpoint of exactly `size`.
async fn witnesses_at(c: &Cluster, nodes: &[&str], size: u64) -> bool {
    for node in nodes {
        if c.witness_status(node).await.trusted_size != size {
            return false;
        }
    }
    true
}

/// A value from the `google.rpc.ErrorInfo` metadata of a status.
fn error_meta(status: &tonic::Status, key: &str) -> Option<String> {
    use tonic_types::StatusExt as _;
    status
        .get_error_details()
        .error_info()
        .and_then(|i| i.metadata.get(key).cloned())
}

/// The health of `service` on a plaintext ops port.
async fn health(ops: SocketAddr, service: &str) -> Result<i32, String> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{ops}"))
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(2))
        .connect()
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .map(|r| r.into_inner().status)
        .map_err(|s| format!("{s:?}"))
}

fn add_request(old_size: u64, proof: Vec<Vec<u8>>, note: &str) -> v1::AddCheckpointRequest {
    v1::AddCheckpointRequest {
        old_size,
        consistency_proof: proof,
        checkpoint: note.to_string(),
    }
}

/// Every log entry, through ListLogEntries pages of 3.
async fn all_log_entries(c: &Cluster) -> Vec<v1::LogEntry> {
    let mut hub = c.hub_client("operator").await;
    let mut out: Vec<v1::LogEntry> = Vec::new();
    let mut start = 0;
    loop {
        let page = hub
            .list_log_entries(v1::ListLogEntriesRequest {
                start_index: start,
                page_size: 3,
            })
            .await
            .unwrap_or_else(|s| panic!("ListLogEntries: {}", describe(&s)))
            .into_inner();
        if page.entries.is_empty() {
            assert_eq!(page.next_start_index, start, "the end of the log");
            return out;
        }
        for (i, e) in page.entries.iter().enumerate() {
            assert_eq!(e.leaf_index, start + i as u64, "entries in leaf order");
        }
        start = page.next_start_index;
        assert_eq!(start, out.len() as u64 + page.entries.len() as u64);
        out.extend(page.entries);
    }
}

/// An auditor's check of the whole log against a witnessed checkpoint: for every entry, the
/// leaf hash recomputed from its envelope must be what ListLogEntries says, and its inclusion
/// proof (fetched for the checkpoint's size) must lead to the witnessed root. Returns the leaf
/// indexes whose proofs fail.
async fn audit(c: &Cluster, witnessed: &Checkpoint) -> Vec<u64> {
    let entries = all_log_entries(c).await;
    assert_eq!(entries.len() as u64, witnessed.size, "one entry per leaf");
    let mut hub = c.hub_client("operator").await;
    let mut failing = Vec::new();
    for e in &entries {
        let leaf = leaf_of(e.envelope.as_ref().expect("entry envelope"));
        assert_eq!(
            e.leaf_hash,
            leaf.to_vec(),
            "leaf_hash is the envelope's leaf"
        );
        let proof = hub
            .get_inclusion_proof(v1::GetInclusionProofRequest {
                leaf: Some(Leaf::LeafIndex(e.leaf_index)),
                tree_size: witnessed.size,
            })
            .await
            .unwrap_or_else(|s| panic!("GetInclusionProof {}: {}", e.leaf_index, describe(&s)))
            .into_inner();
        let log = proof.proof.expect("proof");
        if merkle::verify_inclusion(
            &leaf,
            e.leaf_index,
            witnessed.size,
            &hashes(&log.inclusion_proof),
            &witnessed.root,
        )
        .is_err()
        {
            failing.push(e.leaf_index);
        }
    }
    failing
}

/// Runs `rcpfed <args>`; returns (exit code, stdout, stderr).
fn rcpfed(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN.as_str())
        .args(args)
        .output()
        .expect("running rcpfed");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

// ----- 1. receipts and mirrors -----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_and_mirrors_carry_verified_inclusion_proofs() {
    let c = Cluster::start_with_env(&ALL_NODES, &FAST_WITNESS).await;
    let fed = c.federation();
    for round in 1..=2 {
        for node in ALL_NODES {
            c.publish_policy(node, &format!("Logged {node} {round}"))
                .await;
        }
    }
    for node in ALL_NODES {
        assert_eventually!(c, TIMEOUT, c.delivered(node, 2).await, "{node} delivered");
    }
    // Registry version 1, catalogue version 1 and 6 node statements.
    let published = 2 * ALL_NODES.len() as u64;
    let total = HUB_PRELUDE + published;
    let records = c.hub_statements().await;
    assert_eq!(
        records.len() as u64,
        total,
        "the hub prelude and {published} node statements"
    );
    assert!(
        is_registry(&records[0]),
        "the registry version is feed entry 1"
    );
    assert_eq!(records[0].feed_index, 1);
    assert!(is_catalogue(&records[1]), "the catalogue is feed entry 2");
    assert_eq!(records[1].feed_index, 2);
    assert_eq!(node_statements(&records).len() as u64, published);
    let hub_keys = fed.hub().expect("hub member").keys.clone();
    let mut hub = c.hub_client("operator").await;

    // Each node's receipts (the node counted them delivered only after verifying their log
    // proofs): the receipt names a feed index, and the hub proves that leaf.
    for node in ALL_NODES {
        let outbox = c.outbox(node).await;
        assert_eq!(outbox.len(), 2, "{node}'s outbox");
        for entry in &outbox {
            assert_eq!(entry.state, v1::DeliveryState::Delivered as i32);
            let receipt = SignedEnvelope::from_proto(entry.receipt.clone().expect("receipt"));
            let r = Receipt::verify(&receipt, &hub_keys, &fed.federation_id)
                .expect("the hub's receipt verifies");
            assert_eq!(r.statement_digest.0.to_vec(), entry.digest);
            assert_eq!((r.node_id.as_str(), r.seq), (node, entry.seq));
            let record = records
                .iter()
                .find(|rec| rec.digest == entry.digest)
                .expect("the hub lists the statement");
            assert_eq!(record.feed_index, r.feed_index);
            let envelope = record.envelope.as_ref().expect("envelope");
            let answer = hub
                .get_inclusion_proof(v1::GetInclusionProofRequest {
                    leaf: Some(Leaf::StatementDigest(entry.digest.clone())),
                    tree_size: 0,
                })
                .await
                .unwrap_or_else(|s| panic!("GetInclusionProof: {}", describe(&s)))
                .into_inner();
            assert_eq!(answer.leaf_hash, leaf_of(envelope).to_vec());
            let cp = check_proof(
                &fed,
                envelope,
                &answer.proof.expect("proof"),
                r.feed_index - 1,
            );
            assert_eq!(cp.size, total, "proved against the latest checkpoint");
        }
    }

    // Every statement the hub serves (registry version 1, leaf 0, and catalogue version 1,
    // leaf 1, included) carries its proof against the latest checkpoint.
    for (i, rec) in records.iter().enumerate() {
        assert_eq!(rec.feed_index, i as u64 + 1);
        let got = hub
            .get_statement(v1::GetStatementRequest {
                name: rec.name.clone(),
            })
            .await
            .unwrap_or_else(|s| panic!("GetStatement {}: {}", rec.name, describe(&s)))
            .into_inner()
            .statement
            .expect("statement");
        let log = got.log.as_ref().expect("GetStatement carries a log proof");
        let cp = check_proof(
            &fed,
            got.envelope.as_ref().expect("envelope"),
            log,
            rec.feed_index - 1,
        );
        assert_eq!(cp.size, total);
        // A proof for another leaf's envelope does not verify.
        let other = &records[(i + 1) % records.len()];
        assert!(
            merkle::verify_inclusion(
                &leaf_of(other.envelope.as_ref().expect("envelope")),
                log.leaf_index,
                cp.size,
                &hashes(&log.inclusion_proof),
                &cp.root,
            )
            .is_err(),
            "a proof binds its leaf"
        );
    }

    // The mirrors: each feed entry's proof was checked before mirroring, and every witness
    // has reached the latest checkpoint.
    assert_eventually!(
        c,
        TIMEOUT,
        c.mirrors_match_hub(&ALL_NODES).await,
        "every mirror matches the hub"
    );
    assert_eventually!(
        c,
        TIMEOUT,
        witnesses_at(&c, &ALL_NODES, total).await,
        "every witness trusts size {total}"
    );
    for node in ALL_NODES {
        let s = c.node_status(node).await;
        assert_eq!(
            s.mirror_count, total,
            "{node}: the hub prelude and {published} statements"
        );
        assert!(s.last_error.is_empty(), "{node}: {}", s.last_error);
    }
}

// ----- 2. quorum -------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_become_final_with_quorum() {
    let c = Cluster::start_with_env(&ALL_NODES, &FAST_WITNESS).await;
    let fed = c.federation();
    for node in ALL_NODES {
        c.publish_policy(node, &format!("Quorum {node}")).await;
    }
    c.publish_policy("colombo", "Quorum colombo again").await;
    assert_eventually!(c, TIMEOUT, c.delivered("colombo", 2).await, "colombo");
    assert_eventually!(c, TIMEOUT, c.delivered("abu-dhabi", 1).await, "abu-dhabi");
    assert_eventually!(c, TIMEOUT, c.delivered("midwa", 1).await, "midwa");
    // The hub prelude (registry version 1, catalogue version 1) and 4 node statements.
    let total = HUB_PRELUDE + 4;

    assert_eventually!(
        c,
        TIMEOUT,
        final_at(&c, total).await,
        "the checkpoint of size {total} becomes final"
    );
    let cp = hub_checkpoint(&c, true).await.expect("final checkpoint");
    assert_eq!(cp.quorum, 2, "the default quorum");
    assert!(cp.r#final);
    assert!(cp.cosignature_count >= 2, "{}", cp.cosignature_count);
    let opened = open(&fed, &cp.checkpoint);
    assert_eq!(opened.size, total);
    assert_eq!(opened.root.to_vec(), cp.root_hash);
    assert_eq!(opened.origin, logkeys::log_origin(&fed.federation_id));
    let valid = cosigners(&fed, &cp.checkpoint);
    assert!(valid >= 2, "cosignatures verify for {valid} witnesses");
    assert_eq!(
        valid as u32, cp.cosignature_count,
        "every cosignature the hub counts verifies"
    );

    // With every witness polling, all three end up cosigning the latest checkpoint.
    assert_eventually!(
        c,
        TIMEOUT,
        hub_checkpoint(&c, false)
            .await
            .is_some_and(|cp| cp.tree_size == total && cp.cosignature_count == 3),
        "all three witnesses cosign"
    );
    let latest = hub_checkpoint(&c, false).await.expect("latest");
    assert_eq!(cosigners(&fed, &latest.checkpoint), 3);
    let parsed = parse_note(&latest.checkpoint).expect("note");
    let mut names: Vec<String> = parsed
        .signatures
        .iter()
        .map(|s| s.name.clone())
        .filter(|n| n.contains("/witness/"))
        .collect();
    names.sort();
    let mut want: Vec<String> = ALL_NODES
        .iter()
        .map(|n| logkeys::witness_name(&fed.federation_id, n))
        .collect();
    want.sort();
    assert_eq!(names, want, "one cosignature line per witness");

    // Fewer cosignatures than the quorum is not final: the hub's note without one witness
    // line would have count 2, without two lines only 1.
    let one_line = {
        let mut n = parsed.clone();
        n.signatures
            .retain(|s| !s.name.contains("/witness/") || s.name.ends_with("/colombo"));
        n.to_note_string()
    };
    assert_eq!(cosigners(&fed, &one_line), 1);

    for node in ALL_NODES {
        let s = c.witness_status(node).await;
        assert_eq!(s.trusted_size, total, "{node}");
        assert!(!s.forked, "{node}");
        assert!(s.evidence.is_empty(), "{node}");
        assert_eq!(
            s.witness_name,
            logkeys::witness_name(&fed.federation_id, node)
        );
        let trusted = open(&fed, &s.trusted_checkpoint);
        assert_eq!((trusted.size, trusted.root), (opened.size, opened.root));
        assert_eq!(
            health(c.node_ops(node), WITNESS_HEALTH).await,
            Ok(ServingStatus::Serving as i32),
            "{node}'s witness role is SERVING"
        );
    }
}

// ----- 3. consistency --------------------------------------------------------------------------

/// A hub with its prelude (registry version 1, leaf 0, then catalogue version 1, leaf 1, each
/// logged alone at start-up: the checkpoints of sizes 1 and 2) and then `n` colombo statements
/// submitted one at a time, so it signed a checkpoint at every size 1..=n+HUB_PRELUDE; returns
/// the roots by size (sizes 1 and 2 from the prelude entries' proofs, the others from the
/// receipts) and the envelopes of all n+HUB_PRELUDE leaves, in leaf order.
async fn one_by_one(n: u64) -> (Cluster, BTreeMap<u64, Hash>, Vec<v1::Envelope>) {
    let c = Cluster::start(&[]).await;
    let fed = c.federation();
    let records = c.hub_statements().await;
    assert_eq!(
        records.len() as u64,
        HUB_PRELUDE,
        "a new hub holds registry version 1 and catalogue version 1 only"
    );
    assert!(is_registry(&records[0]), "{:?}", records[0]);
    assert_eq!(
        (
            records[0].node_id.as_str(),
            records[0].seq,
            records[0].feed_index
        ),
        (HUB_ID, 1, 1)
    );
    assert!(is_catalogue(&records[1]), "{:?}", records[1]);
    assert_eq!((records[1].seq, records[1].feed_index), (1, 2));
    let mut hub = c.hub_client("operator").await;
    let mut roots = BTreeMap::new();
    let mut envelopes = Vec::new();
    for (leaf, record) in (0u64..).zip(&records) {
        let size = leaf + 1;
        let envelope = record.envelope.clone().expect("envelope");
        let log = hub
            .get_inclusion_proof(v1::GetInclusionProofRequest {
                leaf: Some(Leaf::LeafIndex(leaf)),
                tree_size: size,
            })
            .await
            .unwrap_or_else(|s| panic!("GetInclusionProof {leaf}@{size}: {}", describe(&s)))
            .into_inner()
            .proof
            .expect("proof");
        let cp = check_proof(&fed, &envelope, &log, leaf);
        assert_eq!(
            cp.size, size,
            "{}: logged in a batch of its own, the checkpoint of size {size}",
            record.name
        );
        roots.insert(size, cp.root);
        envelopes.push(envelope);
    }
    assert_eq!(
        roots[&1],
        leaf_of(&envelopes[0]),
        "a one-leaf tree's root is its leaf"
    );
    let mut raw = RawNode::connect(&c, "colombo").await;
    for i in 1..=n {
        let (env, response) = raw.accept(&raw.policy(&format!("Entry {i}"))).await;
        let env = env.to_proto();
        let log = response.log.expect("a receipt carries a log proof");
        // Statement i is leaf i + HUB_PRELUDE - 1: the prelude is leaves 0 and 1.
        let leaf = i + HUB_PRELUDE - 1;
        let cp = check_proof(&fed, &env, &log, leaf);
        assert_eq!(
            cp.size,
            leaf + 1,
            "one statement per batch: one checkpoint per size"
        );
        roots.insert(leaf + 1, cp.root);
        envelopes.push(env);
    }
    (c, roots, envelopes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistency_proofs_between_all_checkpoint_sizes() {
    // N leaves: the hub prelude and N - HUB_PRELUDE colombo statements.
    const N: u64 = 7;
    let (c, roots, envelopes) = one_by_one(N - HUB_PRELUDE).await;
    assert_eq!(
        roots.keys().copied().collect::<Vec<_>>(),
        (1..=N).collect::<Vec<_>>()
    );
    assert_eq!(envelopes.len() as u64, N);
    let fed = c.federation();
    let mut hub = c.hub_client("operator").await;

    // The stored entries (the hub prelude first) recompute every checkpoint's root.
    let entries = all_log_entries(&c).await;
    let leaves: Vec<Hash> = entries
        .iter()
        .map(|e| leaf_of(e.envelope.as_ref().expect("envelope")))
        .collect();
    assert_eq!(leaves, envelopes.iter().map(leaf_of).collect::<Vec<_>>());
    for (&size, root) in &roots {
        assert_eq!(
            &merkle::root_from_leaves(&leaves[..size as usize]),
            root,
            "root of size {size}"
        );
    }

    // Every leaf against every size.
    for size in 1..=N {
        for leaf in 0..size {
            let log = hub
                .get_inclusion_proof(v1::GetInclusionProofRequest {
                    leaf: Some(Leaf::LeafIndex(leaf)),
                    tree_size: size,
                })
                .await
                .unwrap_or_else(|s| panic!("GetInclusionProof {leaf}@{size}: {}", describe(&s)))
                .into_inner()
                .proof
                .expect("proof");
            let cp = check_proof(&fed, &envelopes[leaf as usize], &log, leaf);
            assert_eq!((cp.size, cp.root), (size, roots[&size]));
        }
    }

    // Every pair of sizes; flipping any bit of any proof hash breaks it.
    for old in 1..=N {
        for new in old..=N {
            let r = hub
                .get_consistency_proof(v1::GetConsistencyProofRequest {
                    old_size: old,
                    new_size: new,
                })
                .await
                .unwrap_or_else(|s| panic!("GetConsistencyProof {old}->{new}: {}", describe(&s)))
                .into_inner();
            assert_eq!((r.old_size, r.new_size), (old, new));
            let cp = open(&fed, &r.checkpoint);
            assert_eq!((cp.size, cp.root), (new, roots[&new]), "the new checkpoint");
            let proof = hashes(&r.proof);
            merkle::verify_consistency(old, new, &roots[&old], &roots[&new], &proof)
                .unwrap_or_else(|e| panic!("consistency {old}->{new} does not verify: {e}"));
            for i in 0..proof.len() {
                let mut bad = proof.clone();
                bad[i][31] ^= 0x80;
                assert!(
                    merkle::verify_consistency(old, new, &roots[&old], &roots[&new], &bad).is_err(),
                    "a flipped bit in hash {i} of {old}->{new} must fail"
                );
            }
            if old < new {
                // The proof does not prove another old root.
                assert!(
                    merkle::verify_consistency(old, new, &roots[&new], &roots[&new], &proof)
                        .is_err()
                );
            }
        }
    }
    // new_size 0: the latest checkpoint.
    let r = hub
        .get_consistency_proof(v1::GetConsistencyProofRequest {
            old_size: 3,
            new_size: 0,
        })
        .await
        .expect("to the latest")
        .into_inner();
    assert_eq!((r.old_size, r.new_size), (3, N));
    merkle::verify_consistency(3, N, &roots[&3], &roots[&N], &hashes(&r.proof))
        .expect("3 -> latest");

    // Bad input.
    for (old, new) in [(5, 3), (0, 3), (N + 1, 0), (0, 0)] {
        let s = assert_refused(
            hub.get_consistency_proof(v1::GetConsistencyProofRequest {
                old_size: old,
                new_size: new,
            })
            .await,
            Code::InvalidArgument,
            "INVALID_ARGUMENT",
        );
        assert_eq!(
            field_violations(&s).first().map(|v| v.0.as_str()),
            Some("old_size"),
            "{old}->{new}: {}",
            describe(&s)
        );
    }
    assert_refused(
        hub.get_inclusion_proof(v1::GetInclusionProofRequest {
            leaf: Some(Leaf::StatementDigest(vec![7; 32])),
            tree_size: 0,
        })
        .await,
        Code::NotFound,
        "NOT_FOUND",
    );
    assert_refused(
        hub.get_inclusion_proof(v1::GetInclusionProofRequest {
            leaf: Some(Leaf::LeafIndex(N)),
            tree_size: 0,
        })
        .await,
        Code::NotFound,
        "NOT_FOUND",
    );
    assert_refused(
        hub.get_inclusion_proof(v1::GetInclusionProofRequest {
            leaf: Some(Leaf::LeafIndex(0)),
            tree_size: N + 5,
        })
        .await,
        Code::NotFound,
        "NOT_FOUND",
    );
    // Leaf 5 is not in the tree of size 3.
    assert_refused(
        hub.get_inclusion_proof(v1::GetInclusionProofRequest {
            leaf: Some(Leaf::LeafIndex(5)),
            tree_size: 3,
        })
        .await,
        Code::NotFound,
        "NOT_FOUND",
    );
    assert_refused(
        hub.get_inclusion_proof(v1::GetInclusionProofRequest {
            leaf: Some(Leaf::StatementDigest(vec![7; 31])),
            tree_size: 0,
        })
        .await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
    assert_refused(
        hub.get_inclusion_proof(v1::GetInclusionProofRequest {
            leaf: None,
            tree_size: 0,
        })
        .await,
        Code::InvalidArgument,
        "FIELD_REQUIRED",
    );
    // A verifier refuses a consistency proof from a larger to a smaller tree.
    let r = hub
        .get_consistency_proof(v1::GetConsistencyProofRequest {
            old_size: 2,
            new_size: 5,
        })
        .await
        .expect("2 -> 5")
        .into_inner();
    assert!(merkle::verify_consistency(5, 2, &roots[&5], &roots[&2], &hashes(&r.proof)).is_err());
}

/// GetConsistencyProof to a size the hub has no checkpoint for: the refusal must name the
/// field that is wrong (`new_size`), as GetInclusionProof does for the same condition (it
/// answers NOT_FOUND).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistency_proof_to_a_size_without_checkpoint_blames_new_size() {
    let (c, _, _) = one_by_one(2).await;
    let mut hub = c.hub_client("operator").await;
    let s = hub
        .get_consistency_proof(v1::GetConsistencyProofRequest {
            old_size: 1,
            new_size: 99,
        })
        .await
        .expect_err("no checkpoint of size 99");
    assert!(
        matches!(s.code(), Code::NotFound | Code::InvalidArgument),
        "{}",
        describe(&s)
    );
    if s.code() == Code::InvalidArgument {
        let fields: Vec<String> = field_violations(&s).into_iter().map(|v| v.0).collect();
        assert_eq!(
            fields,
            vec!["new_size".to_string()],
            "the bad field is new_size: {}",
            describe(&s)
        );
    }
}

// ----- 4. dishonest hub: forked checkpoints ----------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dishonest_hub_forked_checkpoint_is_caught() {
    let mut c = Cluster::start_with_env(&["colombo", "midwa"], &FAST_WITNESS).await;
    let fed = c.federation();
    c.publish_policy("colombo", "Honest entry").await;
    // The hub prelude (registry version 1, catalogue version 1) and colombo#1.
    let trusted_size = HUB_PRELUDE + 1;
    assert_eventually!(
        c,
        TIMEOUT,
        witnesses_at(&c, &["colombo", "midwa"], trusted_size).await,
        "both witnesses trust size {trusted_size}"
    );
    let honest = c.witness_status("colombo").await;
    let trusted_note = honest.trusted_checkpoint.clone();
    let trusted = open(&fed, &trusted_note);
    assert_eq!(trusted.size, trusted_size, "the hub prelude and colombo#1");
    let origin = logkeys::log_origin(&fed.federation_id);
    let hub_key = c.signing_key(HUB_ID);
    let forge = |size: u64, root: Hash| {
        sign_checkpoint(
            &Checkpoint {
                origin: origin.clone(),
                size,
                root,
                extensions: Vec::new(),
            },
            &origin,
            &hub_key,
        )
        .expect("signing a checkpoint")
    };
    let mut as_hub = c.witness_client("colombo", HUB_ID).await;
    let colombo_ops = c.node_ops("colombo");

    // --- Refusals that are not forks: the witness keeps serving. ---
    // Not the hub, not an admin.
    let mut as_node = c.witness_client("colombo", "abu-dhabi").await;
    assert_refused(
        as_node
            .add_checkpoint(add_request(trusted_size, Vec::new(), &trusted_note))
            .await,
        Code::PermissionDenied,
        "ROLE_REQUIRED",
    );
    // Signed by another key (colombo's signing key used as a log key, with the right origin).
    let other_key = sign_checkpoint(
        &Checkpoint {
            origin: origin.clone(),
            size: trusted_size,
            root: [0x42; 32],
            extensions: Vec::new(),
        },
        &origin,
        &c.signing_key("colombo"),
    )
    .expect("sign");
    assert_refused(
        as_hub
            .add_checkpoint(add_request(trusted_size, Vec::new(), &other_key))
            .await,
        Code::Unauthenticated,
        "UNKNOWN_LOG_KEY",
    );
    // The hub's signature line altered.
    let bad_sig = {
        let mut n = parse_note(&trusted_note).expect("note");
        n.signatures[0].sig[0] ^= 1;
        n.to_note_string()
    };
    assert_refused(
        as_hub
            .add_checkpoint(add_request(trusted_size, Vec::new(), &bad_sig))
            .await,
        Code::Unauthenticated,
        "BAD_NOTE_SIGNATURE",
    );
    // Truncated notes: cut inside the signature line, and without any signature line.
    let cut = &trusted_note[..trusted_note.len() - 10];
    assert_refused(
        as_hub
            .add_checkpoint(add_request(trusted_size, Vec::new(), cut))
            .await,
        Code::InvalidArgument,
        "MALFORMED_NOTE",
    );
    let text_only = format!("{}\n", parse_note(&trusted_note).expect("note").text);
    assert_refused(
        as_hub
            .add_checkpoint(add_request(trusted_size, Vec::new(), &text_only))
            .await,
        Code::InvalidArgument,
        "MALFORMED_NOTE",
    );
    // old_size is not the trusted size.
    let s = assert_refused(
        as_hub
            .add_checkpoint(add_request(trusted_size + 3, Vec::new(), &trusted_note))
            .await,
        Code::FailedPrecondition,
        "OLD_SIZE_MISMATCH",
    );
    assert_eq!(error_meta(&s, "known_size"), Some(trusted_size.to_string()));
    // A proof hash that is not 32 bytes.
    assert_refused(
        as_hub
            .add_checkpoint(add_request(
                trusted_size,
                vec![vec![1, 2, 3]],
                &forge(trusted_size + 1, [1; 32]),
            ))
            .await,
        Code::InvalidArgument,
        "BAD_PROOF",
    );
    // A smaller (older) checkpoint: a log never shrinks, but an older head is no fork.
    assert_refused(
        as_hub
            .add_checkpoint(add_request(
                trusted_size,
                Vec::new(),
                &forge(0, merkle::empty_root()),
            ))
            .await,
        Code::InvalidArgument,
        "BAD_PROOF",
    );
    // The honest checkpoint again is cosigned, as the hub and as an admin.
    for identity in [HUB_ID, "operator"] {
        let line = c
            .witness_client("colombo", identity)
            .await
            .add_checkpoint(add_request(trusted_size, Vec::new(), &trusted_note))
            .await
            .unwrap_or_else(|s| panic!("honest AddCheckpoint as {identity}: {}", describe(&s)))
            .into_inner()
            .cosignature;
        let sig = parse_note(&format!("x\n\n{line}"))
            .expect("a signature line")
            .signatures
            .remove(0);
        let colombo = logkeys::witness_verifiers(&fed)
            .into_iter()
            .find(|(id, _)| id == "colombo")
            .expect("colombo's witness key")
            .1;
        verify_cosignature(&trusted, &sig, &colombo).expect("the cosignature verifies");
    }
    let s = c.witness_status("colombo").await;
    assert!(!s.forked, "no fork yet: {:?}", s.evidence);
    assert!(s.evidence.is_empty());
    assert_eq!(s.trusted_size, trusted_size);
    assert_eq!(
        health(colombo_ops, WITNESS_HEALTH).await,
        Ok(ServingStatus::Serving as i32)
    );

    // --- The fork: a second checkpoint of the trusted size with another root. ---
    let forked_note = forge(trusted_size, [0x42; 32]);
    let s = assert_refused(
        as_hub
            .add_checkpoint(add_request(trusted_size, Vec::new(), &forked_note))
            .await,
        Code::FailedPrecondition,
        "INCONSISTENT_CHECKPOINT",
    );
    eprintln!("fork refused: {}", describe(&s));
    let status = c.witness_status("colombo").await;
    assert!(status.forked);
    assert_eq!(status.evidence.len(), 1, "{:?}", status.evidence);
    let ev = &status.evidence[0];
    assert_eq!(ev.trusted_checkpoint, trusted_note);
    assert_eq!(ev.conflicting_checkpoint, forked_note);
    assert!(!ev.problem.is_empty());
    assert!(ev.detected_at.is_some());
    // Both pieces of evidence are hub-signed checkpoints of the trusted size with different roots:
    // anyone can check them with the log key alone.
    let (a, b) = (
        open(&fed, &ev.trusted_checkpoint),
        open(&fed, &ev.conflicting_checkpoint),
    );
    assert_eq!((a.size, b.size), (trusted_size, trusted_size));
    assert_ne!(a.root, b.root);
    assert_eq!(
        status.trusted_size, trusted_size,
        "the trusted checkpoint did not move"
    );
    assert_eq!(status.trusted_checkpoint, trusted_note);
    assert_eq!(
        health(colombo_ops, WITNESS_HEALTH).await,
        Ok(ServingStatus::NotServing as i32),
        "the witness role is NOT_SERVING after a fork"
    );
    // Nothing more is cosigned, not even the honest checkpoint.
    assert_refused(
        as_hub
            .add_checkpoint(add_request(trusted_size, Vec::new(), &trusted_note))
            .await,
        Code::FailedPrecondition,
        "INCONSISTENT_CHECKPOINT",
    );
    // The node's other functions keep working.
    assert_eq!(
        health(colombo_ops, "rcpfed.v1.NodeService").await,
        Ok(ServingStatus::Serving as i32)
    );
    let node_status = c.node_status("colombo").await;
    assert_eq!(node_status.head_seq, 1);
    let published = c.publish_policy("colombo", "After the fork").await;
    assert_eq!(
        published.seq, 2,
        "the node still signs and queues statements"
    );
    // The fork survives a restart.
    c.stop_node("colombo").await;
    c.restart_node("colombo").await;
    let after = c.witness_status("colombo").await;
    assert!(after.forked, "the fork is remembered");
    assert_eq!(after.evidence.len(), 1);
    assert_eventually!(
        c,
        TIMEOUT,
        health(c.node_ops("colombo"), WITNESS_HEALTH).await == Ok(ServingStatus::NotServing as i32),
        "still NOT_SERVING after a restart"
    );

    // --- A larger checkpoint with a consistency proof that does not verify, from the hub. ---
    // (The hub is honest and moved on one leaf with colombo's statement above; midwa, not
    // forked, follows it.) A proof carries no signature, so one that does not verify (altered
    // by a man in the middle, or a bug) is a failed proof, retried, never a fork
    // (docs/spec/log.md §6).
    let moved_on = trusted_size + 1;
    assert_eventually!(
        c,
        TIMEOUT,
        c.witness_status("midwa").await.trusted_size == moved_on,
        "midwa trusts size {moved_on}"
    );
    let bigger = forge(moved_on + 2, [0x17; 32]);
    let mut midwa_as_hub = c.witness_client("midwa", HUB_ID).await;
    assert_refused(
        midwa_as_hub
            .add_checkpoint(add_request(
                moved_on,
                vec![vec![0xab; 32], vec![0xcd; 32]],
                &bigger,
            ))
            .await,
        Code::InvalidArgument,
        "BAD_PROOF",
    );
    let midwa = c.witness_status("midwa").await;
    assert!(!midwa.forked, "a failed proof is not a fork");
    assert!(midwa.evidence.is_empty());
    assert_eq!(midwa.trusted_size, moved_on);
    assert_eq!(
        health(c.node_ops("midwa"), WITNESS_HEALTH).await,
        Ok(ServingStatus::Serving as i32)
    );
}

/// A genuine, consistent hub checkpoint offered by an admin with a garbage consistency proof
/// proves nothing against the hub (the hub did not send that proof): the witness should refuse
/// the proof (BAD_PROOF) and stay serving, not record "fork evidence" that no third party could
/// check (two honest checkpoints of different sizes) and stop witnessing for good. (Neither is
/// a proof from the hub that does not verify: see `dishonest_hub_forked_checkpoint_is_caught`.)
/// The witness is kept from learning the new checkpoint by stopping the hub before
/// it restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_proof_for_a_genuine_checkpoint_is_not_a_fork() {
    let mut c = Cluster::start_with_env(&["colombo", "midwa"], &FAST_WITNESS).await;
    c.publish_policy("colombo", "First").await;
    // The hub prelude and colombo#1; then colombo#2 makes the genuine checkpoint.
    let trusted_size = HUB_PRELUDE + 1;
    let genuine_size = trusted_size + 1;
    assert_eventually!(
        c,
        TIMEOUT,
        witnesses_at(&c, &["colombo", "midwa"], trusted_size).await,
        "both witnesses trust size {trusted_size}"
    );
    c.stop_node("midwa").await;
    c.publish_policy("colombo", "Second").await;
    assert_eventually!(c, TIMEOUT, c.delivered("colombo", 2).await, "delivered");
    let genuine = hub_checkpoint(&c, false).await.expect("latest").checkpoint;
    assert_eq!(open(&c.federation(), &genuine).size, genuine_size);
    assert!(c.stop_hub().await.success());
    c.restart_node("midwa").await;
    assert_eq!(c.witness_status("midwa").await.trusted_size, trusted_size);

    let refused = c
        .witness_client("midwa", "operator")
        .await
        .add_checkpoint(add_request(trusted_size, vec![vec![0xab; 32]], &genuine))
        .await
        .expect_err("a garbage proof is refused");
    let status = c.witness_status("midwa").await;
    assert!(
        !status.forked,
        "a bad proof for a genuine checkpoint was recorded as a fork ({}); evidence: {:?}",
        describe(&refused),
        status.evidence
    );
    assert_eq!(
        (refused.code(), crate::harness::reason(&refused).as_str()),
        (Code::InvalidArgument, "BAD_PROOF"),
        "{}",
        describe(&refused)
    );
    // With the hub back, the witness moves on to the genuine checkpoint.
    c.start_hub().await;
    assert_eventually!(
        c,
        TIMEOUT,
        c.witness_status("midwa").await.trusted_size == genuine_size,
        "midwa witnesses size {genuine_size}"
    );
}

// ----- 5. dishonest hub: a rewritten entry -----------------------------------------------------

/// The hub's store opened directly, behind the hub's back (it is stopped), to rewrite history:
/// the SQLite file, or the PostgreSQL schema when the hub stores there.
enum StoredLog {
    Sqlite(PathBuf),
    /// The URL of the hub's schema.
    Postgres(String),
}

/// Runs `f` with a client on the schema at `url` (see [`off_runtime`]).
fn with_pg<T: Send>(url: &str, f: impl FnOnce(&mut postgres::Client) -> T + Send) -> T {
    off_runtime(|| {
        let mut client =
            postgres::Client::connect(url, postgres::NoTls).expect("connect to the hub's schema");
        f(&mut client)
    })
}

impl StoredLog {
    fn of(c: &Cluster) -> StoredLog {
        match c.hub_postgres() {
            Some(pg) => StoredLog::Postgres(pg.url.clone()),
            None => StoredLog::Sqlite(c.hub_db()),
        }
    }

    fn read_node(&self, level: u8, idx: u64) -> Vec<u8> {
        let sql = "SELECT hash FROM log_nodes WHERE level = $1 AND idx = $2";
        match self {
            StoredLog::Sqlite(db) => rusqlite::Connection::open(db)
                .expect("open hub.sqlite")
                .query_row(
                    &sql.replace('$', "?"),
                    rusqlite::params![level, idx as i64],
                    |r| r.get(0),
                )
                .expect("log node"),
            StoredLog::Postgres(url) => with_pg(url, |client| {
                client
                    .query_one(sql, &[&i64::from(level), &(idx as i64)])
                    .expect("log node")
                    .get(0)
            }),
        }
    }

    fn write_node(&self, level: u8, idx: u64, hash: &[u8]) {
        let sql = "UPDATE log_nodes SET hash = $3 WHERE level = $1 AND idx = $2";
        let n = match self {
            StoredLog::Sqlite(db) => rusqlite::Connection::open(db)
                .expect("open hub.sqlite")
                .execute(
                    &sql.replace('$', "?"),
                    rusqlite::params![level, idx as i64, hash],
                )
                .expect("update log node") as u64,
            StoredLog::Postgres(url) => with_pg(url, |client| {
                client
                    .execute(sql, &[&i64::from(level), &(idx as i64), &hash])
                    .expect("update log node")
            }),
        };
        assert_eq!(n, 1, "one log node ({level}, {idx}) rewritten");
    }

    fn envelope(&self, feed_index: u64) -> Vec<u8> {
        let sql = "SELECT envelope FROM statements WHERE feed_index = $1";
        match self {
            StoredLog::Sqlite(db) => rusqlite::Connection::open(db)
                .expect("open hub.sqlite")
                .query_row(
                    &sql.replace('$', "?"),
                    rusqlite::params![feed_index as i64],
                    |r| r.get(0),
                )
                .expect("the statement at that feed index"),
            StoredLog::Postgres(url) => with_pg(url, |client| {
                client
                    .query_one(sql, &[&(feed_index as i64)])
                    .expect("the statement at that feed index")
                    .get(0)
            }),
        }
    }

    fn set_envelope(&self, feed_index: u64, envelope: &[u8]) {
        let sql = "UPDATE statements SET envelope = $1 WHERE feed_index = $2";
        let n = match self {
            StoredLog::Sqlite(db) => rusqlite::Connection::open(db)
                .expect("open hub.sqlite")
                .execute(
                    &sql.replace('$', "?"),
                    rusqlite::params![envelope, feed_index as i64],
                )
                .expect("update") as u64,
            StoredLog::Postgres(url) => with_pg(url, |client| {
                client
                    .execute(sql, &[&envelope, &(feed_index as i64)])
                    .expect("update")
            }),
        };
        assert_eq!(n, 1);
    }
}

/// Starts the hub directly (not through the harness, which returns as soon as the address
/// file exists) and expects it to exit with an error; returns its output.
async fn hub_refuses_to_start(c: &Cluster) -> String {
    let mut child = Command::new(BIN.as_str())
        .arg("hub")
        .arg("--config")
        .arg(c.fed_dir().join("hub.toml"))
        .args(["--listen", "127.0.0.1:0", "--ops-listen", "127.0.0.1:0"])
        .envs(
            c.hub_postgres()
                .map(|pg| ("RCPFED_HUB_DATABASE_URL", pg.url.as_str())),
        )
        .env("RCPFED_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starting the hub");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            let out = child.wait_with_output().expect("output");
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(!status.success(), "the hub must not start: {text}");
            return text;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the hub started on a log whose right edge was rewritten");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewritten_entry_is_detected() {
    let mut c = Cluster::start_with_env(&["colombo", "midwa"], &FAST_WITNESS).await;
    let fed = c.federation();
    for (node, title) in [
        ("colombo", "Rewrite one"),
        ("midwa", "Rewrite two"),
        ("colombo", "Rewrite me"),
        ("midwa", "Rewrite four"),
        ("colombo", "Rewrite five"),
    ] {
        // One at a time, so the statement order (and so the leaf order) is known.
        let n = c.hub_statements().await.len();
        c.publish_policy(node, title).await;
        assert_eventually!(
            c,
            TIMEOUT,
            c.hub_statements().await.len() == n + 1,
            "{title} reaches the hub"
        );
    }
    // Registry version 1 is leaf 0 and catalogue version 1 leaf 1 (the hub prelude); the
    // five statements are leaves 2-6, in publishing order.
    let size = HUB_PRELUDE + 5;
    let rewrite_one = HUB_PRELUDE; // leaf of "Rewrite one"
    let rewrite_me = HUB_PRELUDE + 2; // leaf of "Rewrite me"
    assert_eq!(size, 7, "the tree shape the comments below describe");
    let records = c.hub_statements().await;
    assert_eq!(records.len() as u64, size);
    assert!(is_registry(&records[0]), "the registry version is leaf 0");
    assert!(is_catalogue(&records[1]), "the catalogue is leaf 1");
    assert_eq!(node_statements(&records).len(), 5);
    assert_eq!(
        records[rewrite_one as usize].name,
        "nodes/colombo/statements/1"
    );
    assert_eq!(
        records[rewrite_me as usize].name,
        "nodes/colombo/statements/2"
    );
    assert_eventually!(
        c,
        TIMEOUT,
        final_at(&c, size).await,
        "the size-{size} checkpoint is final"
    );
    let witnessed_note = hub_checkpoint(&c, true).await.expect("final").checkpoint;
    assert!(cosigners(&fed, &witnessed_note) >= 2);
    let witnessed = open(&fed, &witnessed_note);
    assert_eq!(audit(&c, &witnessed).await, Vec::<u64>::new(), "honest log");
    let honest_leaves: Vec<Vec<u8>> = all_log_entries(&c)
        .await
        .into_iter()
        .map(|e| e.leaf_hash)
        .collect();
    let db = StoredLog::of(&c);

    // (a) Rewrite leaf 2's stored hash (the first statement, "Rewrite one"). For size 7 the
    // right edge is the nodes (2, 0) (leaves 0-3), (1, 2) (leaves 4-5) and (0, 6) (leaf 6):
    // leaf 2's own node is not on it, so the hub's start-up check (which reads only the right
    // edge: start-up must not grow with the log) cannot see it, and the hub starts and
    // serves. The damage shows in the proofs it now serves: leaf 3's proof ("Rewrite two")
    // uses the stored leaf-2 hash as its sibling, so it no longer leads to the root the
    // witnesses cosigned. (Leaf 2's own proof does not contain its own hash, leaves 0-1 use
    // the stored (1, 1) node and leaves 4-6 the stored (2, 0) node, which still hold the
    // honest hashes.)
    assert_eq!(rewrite_one % 2, 0, "leaf {rewrite_one} is a left child");
    let sibling = rewrite_one + 1;
    assert!(c.stop_hub().await.success());
    let original_leaf = db.read_node(0, rewrite_one);
    assert_eq!(
        original_leaf, honest_leaves[rewrite_one as usize],
        "the stored leaf is the entry's"
    );
    db.write_node(0, rewrite_one, &[0x66; 32]);
    c.start_hub().await;
    assert_eq!(
        audit(&c, &witnessed).await,
        vec![sibling],
        "the auditor catches the rewritten leaf through its sibling's proof"
    );
    // The hub still presents the old checkpoint, and the witnesses never saw a different
    // one (what was rewritten is the storage behind it).
    let latest = hub_checkpoint(&c, false).await.expect("latest");
    assert_eq!(open(&fed, &latest.checkpoint), witnessed);
    for node in ["colombo", "midwa"] {
        assert!(!c.witness_status(node).await.forked);
    }

    // (b) Rewrite a node on the right edge: the hub checks the right edge against its latest
    // checkpoint at start-up and refuses to continue a rewritten log. Here the node (1, 2),
    // the hash of leaves 4-5.
    assert!(c.stop_hub().await.success());
    db.write_node(0, rewrite_one, &original_leaf);
    let original_edge = db.read_node(1, 2);
    db.write_node(1, 2, &[0x77; 32]);
    let output = hub_refuses_to_start(&c).await;
    assert!(
        output.contains("does not match its latest checkpoint"),
        "the hub says why: {output}"
    );
    db.write_node(1, 2, &original_edge);

    // (c) Rewrite a statement's envelope (leaf 4, feed index 5, "Rewrite me" -> "Rewrote me"):
    // the leaf recomputed from the envelope the hub now serves no longer matches its inclusion
    // proof against the witnessed checkpoint, and the member's signature no longer verifies.
    let feed_index = rewrite_me + 1;
    {
        let bytes = db.envelope(feed_index);
        let mut env = v1::Envelope::decode(bytes.as_slice()).expect("stored envelope");
        let at = env
            .payload
            .windows(10)
            .position(|w| w == b"Rewrite me")
            .expect("the title is in the payload");
        env.payload[at..at + 10].copy_from_slice(b"Rewrote me");
        db.set_envelope(feed_index, &env.encode_to_vec());
    }
    c.start_hub().await;
    assert_eq!(
        audit(&c, &witnessed).await,
        vec![rewrite_me],
        "the auditor catches the rewritten envelope"
    );
    let entries = all_log_entries(&c).await;
    let rewritten = &entries[rewrite_me as usize];
    assert_ne!(rewritten.leaf_hash, honest_leaves[rewrite_me as usize]);
    let served = SignedEnvelope::from_proto(rewritten.envelope.clone().expect("envelope"));
    assert!(
        verify_signatures(&served, |id| fed.key_owner(id).map(|(_, k)| k)).is_err(),
        "the rewritten statement's signature fails too"
    );
}

// ----- 6. kill -9 during ingest ----------------------------------------------------------------

/// One client's load: `n` statements submitted one after another; an error that is not a
/// refusal (the hub died or is restarting) is retried with the same signed envelope, so a
/// statement committed just before a kill comes back as a duplicate with its original receipt.
async fn load(
    mut raw: RawNode,
    n: u64,
    progress: Arc<AtomicU64>,
) -> Vec<(String, v1::Envelope, v1::SubmitStatementResponse)> {
    let mut out = Vec::new();
    for i in 1..=n {
        let st = raw.policy(&format!("Load {} {i}", raw.node_id));
        let env = raw.sign(&st);
        let deadline = Instant::now() + Duration::from_secs(60);
        let response = loop {
            match raw.submit(env.to_proto()).await {
                Ok(r) => break r,
                Err(s)
                    if matches!(
                        s.code(),
                        Code::InvalidArgument
                            | Code::PermissionDenied
                            | Code::AlreadyExists
                            | Code::FailedPrecondition
                            | Code::Unauthenticated
                    ) =>
                {
                    panic!("{} #{i} refused: {}", raw.node_id, describe(&s))
                }
                Err(s) => {
                    assert!(
                        Instant::now() < deadline,
                        "{} #{i} not accepted within 60 s: {}",
                        raw.node_id,
                        describe(&s)
                    );
                    tokio::time::sleep(Duration::from_millis(30)).await;
                }
            }
        };
        raw.seq = st.header.seq;
        raw.head = Some(env.digest());
        progress.fetch_add(1, Ordering::SeqCst);
        out.push((
            format!("nodes/{}/statements/{}", raw.node_id, st.header.seq),
            env.to_proto(),
            response,
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_minus_9_during_ingest_keeps_every_receipt_provable() {
    const PER_CLIENT: u64 = 67;
    let total = PER_CLIENT * 3;
    // The log: the hub prelude (registry version 1 and catalogue version 1, leaves 0 and 1,
    // logged when the hub first started) and every statement.
    let log_size = total + HUB_PRELUDE;
    let mut c = Cluster::start_with_env(&ALL_NODES, &FAST_WITNESS).await;
    let fed = c.federation();
    let progress = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for node in ALL_NODES {
        let raw = RawNode::connect(&c, node).await;
        clients.push(tokio::spawn(load(raw, PER_CLIENT, Arc::clone(&progress))));
    }
    // SIGKILL the hub three times at moments picked at random within the load.
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64
        | 1;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..3u64 {
        let at = 20 + round * 55 + next() % 30;
        let started = Instant::now();
        while progress.load(Ordering::SeqCst) < at {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the load stalled at {} statements\n{}",
                progress.load(Ordering::SeqCst),
                c.logs()
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(Duration::from_millis(next() % 25)).await;
        let done = progress.load(Ordering::SeqCst);
        c.kill_hub().await;
        eprintln!("SIGKILL {} after {done} acknowledged statements", round + 1);
        tokio::time::sleep(Duration::from_millis(next() % 200)).await;
        c.start_hub().await;
    }
    let mut receipts = Vec::new();
    for client in clients {
        receipts.extend(client.await.expect("client task"));
    }
    assert_eq!(receipts.len() as u64, total);

    // Quiescence: the hub holds every statement once and the witnesses caught up.
    assert_eventually!(
        c,
        Duration::from_secs(30),
        witnesses_at(&c, &ALL_NODES, log_size).await,
        "every witness reaches size {log_size}"
    );
    assert_eventually!(
        c,
        Duration::from_secs(30),
        final_at(&c, log_size).await,
        "the size-{log_size} checkpoint becomes final"
    );
    let records = c.hub_statements().await;
    assert_eq!(records.len() as u64, log_size, "each entry exactly once");
    assert!(
        is_registry(&records[0]),
        "registry version 1 is still first"
    );
    assert_eq!(
        (records[0].seq, records[0].feed_index),
        (1, 1),
        "registry version 1 at feed index 1"
    );
    assert_eq!(
        records.iter().filter(|r| is_registry(r)).count(),
        1,
        "the restarts logged no second registry version"
    );
    assert!(
        is_catalogue(&records[1]),
        "catalogue version 1 is still second"
    );
    assert_eq!(
        records.iter().filter(|r| is_catalogue(r)).count(),
        1,
        "the restarts logged no second catalogue version"
    );
    assert_eq!(
        node_statements(&records).len() as u64,
        total,
        "each statement exactly once"
    );
    let dense: Vec<u64> = records.iter().map(|r| r.feed_index).collect();
    assert_eq!(dense, (1..=log_size).collect::<Vec<_>>(), "a dense feed");
    for node in ALL_NODES {
        let seqs: Vec<u64> = records
            .iter()
            .filter(|r| r.node_id == node)
            .map(|r| r.seq)
            .collect();
        assert_eq!(seqs, (1..=PER_CLIENT).collect::<Vec<_>>(), "{node}");
    }
    let latest = hub_checkpoint(&c, false).await.expect("latest");
    let latest_cp = open(&fed, &latest.checkpoint);
    assert_eq!(latest_cp.size, log_size);

    // The stored entries, the hub prelude first, recompute the latest root (and, below,
    // every root a receipt named).
    let entries = all_log_entries(&c).await;
    let leaves: Vec<Hash> = entries
        .iter()
        .map(|e| leaf_of(e.envelope.as_ref().expect("envelope")))
        .collect();
    assert_eq!(leaves.len() as u64, log_size);
    for (e, record) in entries.iter().zip(&records) {
        assert_eq!(
            e.envelope, record.envelope,
            "leaf {} is feed entry {}",
            e.leaf_index, record.feed_index
        );
        assert_eq!(e.leaf_index + 1, record.feed_index);
    }
    assert_eq!(merkle::root_from_leaves(&leaves), latest_cp.root);

    // Every receipt: its inclusion proof verifies against its own checkpoint (each distinct
    // checkpoint text opened once with the log key: signatures are slow in a debug build),
    // and the hub still lists the statement with that very receipt.
    let by_name: BTreeMap<&str, &v1::StatementRecord> =
        records.iter().map(|r| (r.name.as_str(), r)).collect();
    let mut opened: BTreeMap<String, Checkpoint> = BTreeMap::new();
    let mut sizes: BTreeMap<u64, (Hash, String)> = BTreeMap::new();
    let mut duplicates = 0;
    for (name, envelope, response) in &receipts {
        duplicates += usize::from(response.duplicate);
        let receipt = response.receipt.as_ref().expect("receipt");
        let r = v1::Receipt::decode(receipt.payload.as_slice()).expect("receipt payload");
        let log = response
            .log
            .as_ref()
            .expect("every receipt has a log proof");
        assert_eq!(log.leaf_index + 1, r.feed_index, "{name}");
        let text = parse_note(&log.checkpoint).expect("note").text;
        let cp = opened
            .entry(text.clone())
            .or_insert_with(|| open(&fed, &log.checkpoint))
            .clone();
        assert_eq!(log.tree_size, cp.size);
        merkle::verify_inclusion(
            &leaf_of(envelope),
            log.leaf_index,
            cp.size,
            &hashes(&log.inclusion_proof),
            &cp.root,
        )
        .unwrap_or_else(|e| panic!("{name}: its receipt's proof fails: {e}"));
        if let Some((root, _)) = sizes.insert(cp.size, (cp.root, text)) {
            assert_eq!(
                root, cp.root,
                "two receipts name different roots for size {}",
                cp.size
            );
        }
        let record = by_name
            .get(name.as_str())
            .unwrap_or_else(|| panic!("{name} is no longer listed"));
        assert_eq!(record.envelope.as_ref(), Some(envelope), "{name}");
        assert_eq!(record.feed_index, r.feed_index, "{name}");
        assert_eq!(
            record.receipt.as_ref(),
            Some(receipt),
            "{name}: the same receipt"
        );
    }
    eprintln!(
        "{} receipts, {duplicates} answered as duplicates after a retry, {} distinct checkpoint sizes",
        receipts.len(),
        sizes.len()
    );
    let hub = c.hub_client("operator").await;
    // GetStatement still answers for every one of them.
    let names: Vec<String> = receipts.iter().map(|(n, _, _)| n.clone()).collect();
    let got = in_parallel(names, |name| {
        let mut hub = hub.clone();
        async move {
            hub.get_statement(v1::GetStatementRequest { name })
                .await
                .map(|r| r.into_inner().statement)
        }
    })
    .await;
    for ((name, envelope, _), got) in receipts.iter().zip(got) {
        let got = got
            .unwrap_or_else(|s| panic!("GetStatement {name} after the kills: {}", describe(&s)))
            .expect("statement");
        assert_eq!(got.envelope.as_ref(), Some(envelope), "{name}");
    }
    // Every checkpoint a receipt named agrees with the stored entries, is still stored as it
    // was signed, and is consistent with the latest one.
    for (&size, (root, _)) in &sizes {
        assert_eq!(
            &merkle::root_from_leaves(&leaves[..size as usize]),
            root,
            "the checkpoint of size {size} agrees with the stored entries"
        );
    }
    let checked = in_parallel(sizes.keys().copied().collect(), |size| {
        let mut hub = hub.clone();
        async move {
            let consistency = hub
                .get_consistency_proof(v1::GetConsistencyProofRequest {
                    old_size: size,
                    new_size: 0,
                })
                .await
                .map(tonic::Response::into_inner);
            let stored = hub
                .get_inclusion_proof(v1::GetInclusionProofRequest {
                    leaf: Some(Leaf::LeafIndex(0)),
                    tree_size: size,
                })
                .await
                .map(tonic::Response::into_inner);
            (size, consistency, stored)
        }
    })
    .await;
    for (size, consistency, stored) in checked {
        let (root, text) = &sizes[&size];
        let r =
            consistency.unwrap_or_else(|s| panic!("GetConsistencyProof {size}: {}", describe(&s)));
        assert_eq!(r.new_size, log_size);
        assert_eq!(
            parse_note(&r.checkpoint).expect("note").text,
            latest_cp.to_text()
        );
        merkle::verify_consistency(size, log_size, root, &latest_cp.root, &hashes(&r.proof))
            .unwrap_or_else(|e| panic!("checkpoint {size} is not consistent with {log_size}: {e}"));
        let stored = stored
            .unwrap_or_else(|s| panic!("the checkpoint of size {size} is gone: {}", describe(&s)))
            .proof
            .expect("proof");
        assert_eq!(
            &parse_note(&stored.checkpoint).expect("note").text,
            text,
            "the hub stores the checkpoint of size {size} the receipt carried"
        );
    }
    for node in ALL_NODES {
        let s = c.witness_status(node).await;
        assert!(!s.forked, "{node} recorded a fork: {:?}", s.evidence);
        assert!(s.evidence.is_empty());
    }
}

/// The number of hashes in the RFC 6962 audit path of leaf `leaf` in a tree of `size` leaves.
fn audit_path_len(leaf: u64, size: u64) -> usize {
    if size <= 1 {
        return 0;
    }
    // The largest power of two smaller than `size` splits the tree.
    let k = 1u64 << (63 - (size - 1).leading_zeros());
    if leaf < k {
        1 + audit_path_len(leaf, k)
    } else {
        1 + audit_path_len(leaf - k, size - k)
    }
}

/// Runs `f` on every item, at most 32 at a time; results in item order.
async fn in_parallel<I, R, F, Fut>(items: Vec<I>, f: F) -> Vec<R>
where
    R: Send + 'static,
    F: Fn(I) -> Fut,
    Fut: std::future::Future<Output = R> + Send + 'static,
{
    let mut out = Vec::with_capacity(items.len());
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        let batch: Vec<_> = items
            .by_ref()
            .take(32)
            .map(|i| tokio::spawn(f(i)))
            .collect();
        for handle in batch {
            out.push(handle.await.expect("task"));
        }
    }
    out
}

// ----- 7. bundles ------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_and_offline_verify_bundle() {
    let c = Cluster::start_with_env(&ALL_NODES, &FAST_WITNESS).await;
    for node in ALL_NODES {
        c.publish_policy(node, &format!("Bundled {node}")).await;
        assert_eventually!(c, TIMEOUT, c.delivered(node, 1).await, "{node} delivered");
    }
    // The hub prelude (registry version 1, catalogue version 1) and the three statements.
    let size = HUB_PRELUDE + ALL_NODES.len() as u64;
    assert_eventually!(c, TIMEOUT, final_at(&c, size).await, "final at size {size}");
    let fed_dir = c.fed_dir();
    let federation = fed_dir.join("federation.toml");
    let bundle_path = c.root().join("b.json");
    let hub = format!("https://localhost:{}", c.hub_addr().port());
    let (code, stdout, stderr) = rcpfed(&[
        "export",
        "bundle",
        "--hub",
        &hub,
        "--pki",
        path_str(fed_dir),
        "--statement",
        "nodes/colombo/statements/1",
        "--final",
        "--out",
        path_str(&bundle_path),
    ]);
    assert_eq!(code, 0, "export bundle:\n{stdout}\n{stderr}");
    let text = std::fs::read_to_string(&bundle_path).expect("bundle written");
    let bundle = Bundle::from_json(&text).expect("the bundle parses");
    assert_eq!(bundle.log.tree_size, size);
    let colombo_1 = c
        .hub_statements_of("colombo")
        .await
        .into_iter()
        .next()
        .expect("colombo#1");
    assert!(colombo_1.feed_index > HUB_PRELUDE, "after the hub prelude");
    assert_eq!(bundle.log.leaf_index, colombo_1.feed_index - 1);
    assert_eq!(
        bundle.log.inclusion_proof.len(),
        audit_path_len(bundle.log.leaf_index, size),
        "a leaf of a {size}-leaf tree: one hash per level of its audit path"
    );
    assert!(bundle.receipt.is_some());

    let verify = |path: &Path, quorum: &str| {
        rcpfed(&[
            "verify",
            path_str(path),
            "--federation",
            path_str(&federation),
            "--quorum",
            quorum,
        ])
    };
    let (code, stdout, stderr) = verify(&bundle_path, "2");
    assert_eq!(code, 0, "verify:\n{stdout}\n{stderr}");
    let ticks = stdout.lines().filter(|l| l.starts_with('✓')).count();
    assert_eq!(ticks, 6, "six steps pass:\n{stdout}");
    assert!(!stdout.contains('✗'), "{stdout}");

    // The same bundle against the registry itself, verified from the root keys alone.
    let (code, stdout, stderr) = rcpfed(&[
        "verify",
        path_str(&bundle_path),
        "--root-trust",
        path_str(&fed_dir.join("root-trust.toml")),
        "--registry",
        path_str(&fed_dir.join("registry").join("registry.v1.json")),
    ]);
    assert_eq!(code, 0, "verify from the root keys:\n{stdout}\n{stderr}");
    assert!(stdout.contains("trusting registry version 1"), "{stdout}");
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with('✓')).count(),
        6,
        "{stdout}"
    );

    let tampered = |name: &str, change: &dyn Fn(&mut Bundle)| {
        let mut b = bundle.clone();
        change(&mut b);
        let path = c.root().join(format!("{name}.json"));
        std::fs::write(&path, b.to_json()).expect("write");
        path
    };
    let expect_failure = |path: &Path, quorum: &str, step: &str| {
        let (code, stdout, stderr) = verify(path, quorum);
        assert_eq!(
            code,
            1,
            "{}: must fail:\n{stdout}\n{stderr}",
            path.display()
        );
        assert!(
            stdout.lines().any(|l| l.starts_with(&format!("✗ {step}"))),
            "{}: expected ✗ {step}:\n{stdout}",
            path.display()
        );
    };
    let payload = tampered("payload", &|b| {
        let last = b.envelope.payload.len() - 1;
        b.envelope.payload[last] ^= 1;
    });
    expect_failure(&payload, "2", "statement signature");
    let proof = tampered("proof", &|b| b.log.inclusion_proof[1] = [0x5a; 32]);
    expect_failure(&proof, "2", "inclusion");
    let no_cosignatures = tampered("no-cosignatures", &|b| {
        let mut note = parse_note(&b.log.checkpoint).expect("note");
        note.signatures.retain(|s| !s.name.contains("/witness/"));
        b.log.checkpoint = note.to_note_string();
    });
    expect_failure(&no_cosignatures, "2", "witness cosignatures");
    expect_failure(&bundle_path, "4", "witness cosignatures");
}

/// The cosigned checkpoint of an older size is readable (`GetCheckpoint` with `tree_size`), a
/// size without one is NOT_FOUND, and asking for both forms is INVALID_ARGUMENT; a feed
/// subscription says in its headers where the backlog ends (`rcpfed-backlog-end`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_checkpoints_and_the_end_of_the_feed_backlog() {
    let c = Cluster::start_with_env(&ALL_NODES, &FAST_WITNESS).await;
    let fed = c.federation();
    let mut raw = RawNode::connect(&c, "colombo").await;
    let mut hub = c.hub_client("operator").await;
    let at = |tree_size: u64, final_only: bool| v1::GetCheckpointRequest {
        final_only,
        tree_size,
    };
    // One at a time, so the hub signs a checkpoint at each size.
    let (_, first) = raw.accept(&raw.policy("Older checkpoint 1")).await;
    let older = first.log.expect("a log proof").tree_size;
    // The older checkpoint gathers its own cosignatures: witnesses that saw it cosign it. The
    // next statement waits for that: committed within one feed page interval, it would be
    // sent to the witnesses with the first, both proved against the newer checkpoint only.
    assert_eventually!(
        c,
        TIMEOUT,
        hub.clone()
            .get_checkpoint(at(older, false))
            .await
            .is_ok_and(|r| r.into_inner().cosignature_count >= 1),
        "the checkpoint of size {older} is cosigned"
    );
    raw.accept(&raw.policy("Older checkpoint 2")).await;
    let total = HUB_PRELUDE + 2;
    assert_eventually!(
        c,
        TIMEOUT,
        hub_checkpoint(&c, false)
            .await
            .is_some_and(|cp| cp.tree_size == total),
        "the latest checkpoint covers both statements"
    );
    let cp = hub
        .get_checkpoint(at(older, false))
        .await
        .unwrap_or_else(|s| panic!("GetCheckpoint({older}): {}", describe(&s)))
        .into_inner();
    assert_eq!(cp.tree_size, older);
    let opened = open(&fed, &cp.checkpoint);
    assert_eq!(opened.size, older, "the note is of the size asked for");
    assert_eq!(opened.root.to_vec(), cp.root_hash);
    assert_eq!(
        cosigners(&fed, &cp.checkpoint) as u32,
        cp.cosignature_count,
        "every cosignature of the older checkpoint verifies"
    );

    let missing = hub.get_checkpoint(at(total + 1000, false)).await;
    let status = missing.expect_err("a size the hub never signed");
    assert_eq!(status.code(), Code::NotFound, "{}", describe(&status));
    let both = hub.get_checkpoint(at(older, true)).await;
    let refused = assert_refused(both, Code::InvalidArgument, "INVALID_ARGUMENT");
    assert_eq!(
        field_violations(&refused)
            .iter()
            .map(|(f, _)| f.as_str())
            .collect::<Vec<_>>(),
        ["final_only"]
    );

    // The feed: the headers name the backlog's last entry, and the stream delivers up to it.
    let response = hub
        .subscribe_feed(v1::SubscribeFeedRequest { after_index: 1 })
        .await
        .unwrap_or_else(|s| panic!("SubscribeFeed: {}", describe(&s)));
    let end: u64 = response
        .metadata()
        .get("rcpfed-backlog-end")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("rcpfed-backlog-end header");
    assert_eq!(end, total, "the backlog ends at the feed size");
    let mut stream = response.into_inner();
    let mut seen = Vec::new();
    while seen.last() != Some(&end) {
        let entry = tokio::time::timeout(TIMEOUT, stream.message())
            .await
            .expect("the backlog in time")
            .expect("an entry")
            .expect("the stream stays open");
        seen.push(entry.feed_index);
    }
    assert_eq!(seen, (2..=total).collect::<Vec<_>>());
    // Subscribing from the head: no backlog.
    let caught_up = hub
        .subscribe_feed(v1::SubscribeFeedRequest { after_index: total })
        .await
        .expect("SubscribeFeed at the head");
    assert_eq!(
        caught_up
            .metadata()
            .get("rcpfed-backlog-end")
            .and_then(|v| v.to_str().ok()),
        Some(total.to_string().as_str())
    );
}

/// Subscribers at one cursor are handed one feed page, built once
/// (`rcpfed_hub_feed_pages_built_total`) and shared (`rcpfed_hub_feed_pages_shared_total`), and
/// every entry of it still proves its inclusion in a checkpoint signed with the log key and
/// cosigned by the witnesses that had cosigned it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_subscribers_at_one_cursor_share_one_page() {
    let c = Cluster::start(&ALL_NODES).await;
    let fed = c.federation();
    c.publish_policy("colombo", "One page for every subscriber")
        .await;
    let total = HUB_PRELUDE + 1;
    assert_eventually!(
        c,
        TIMEOUT,
        c.mirrors_match_hub(&ALL_NODES).await,
        "every mirror caught up"
    );
    let pages = || async {
        let metrics = crate::harness::http_get(&c.hub_ops().to_string(), "/metrics").await;
        let value = |series: &str| {
            metrics
                .lines()
                .find_map(|line| {
                    line.strip_prefix(series)?
                        .strip_prefix(' ')?
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
                .unwrap_or_else(|| panic!("{series} in the hub's metrics:\n{metrics}"))
        };
        (
            value("rcpfed_hub_feed_pages_built_total"),
            value("rcpfed_hub_feed_pages_shared_total"),
        )
    };
    let backlog = |member: &'static str| {
        let c = &c;
        async move {
            let mut stream = c
                .hub_client(member)
                .await
                .subscribe_feed(v1::SubscribeFeedRequest { after_index: 0 })
                .await
                .unwrap_or_else(|s| panic!("SubscribeFeed as {member}: {}", describe(&s)))
                .into_inner();
            let mut entries = Vec::new();
            while (entries.len() as u64) < total {
                let entry = tokio::time::timeout(TIMEOUT, stream.message())
                    .await
                    .expect("the backlog in time")
                    .expect("an entry")
                    .expect("the stream stays open");
                entries.push(entry);
            }
            entries
        }
    };
    // A witness cosignature landing between two subscribers' reads of the latest checkpoint
    // makes a second page (its note gained a line), so a few tries.
    let mut deltas = Vec::new();
    for _ in 0..5 {
        let (built, shared) = pages().await;
        let (colombo, midwa, abu_dhabi) =
            tokio::join!(backlog("colombo"), backlog("midwa"), backlog("abu-dhabi"));
        for entries in [&colombo, &midwa, &abu_dhabi] {
            let indexes: Vec<u64> = entries.iter().map(|e| e.feed_index).collect();
            assert_eq!(indexes, (1..=total).collect::<Vec<_>>());
            for entry in entries {
                let log = entry.log.as_ref().expect("a log proof");
                let envelope = entry.envelope.as_ref().expect("an envelope");
                check_proof(&fed, envelope, log, entry.feed_index - 1);
            }
        }
        let (built_after, shared_after) = pages().await;
        let (built, shared) = (built_after - built, shared_after - shared);
        deltas.push((built, shared));
        // Three requests served by at most one build: one built the page and two shared
        // it, or all three shared the page an earlier try built for the same checkpoint.
        if built <= 1 && built + shared == 3 {
            return;
        }
    }
    panic!(
        "three subscribers at cursor 0 never shared one page: (built, shared) per try {deltas:?}"
    );
}

/// A caught-up subscriber gets what is committed in quick succession in few pages, each entry
/// with its inclusion proof against its page's checkpoint: the hub sends it a page at most
/// every 25 ms (`FEED_PAGE_INTERVAL`), so a node checks and witnesses one checkpoint per page
/// rather than one per commit (issue 11). Three members send ten statements each at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caught_up_subscriber_gets_a_burst_of_commits_in_few_pages() {
    const EACH: u64 = 10;
    let c = Cluster::start(&ALL_NODES).await;
    let fed = c.federation();
    let hub = c.hub_client("colombo").await;
    let subscribe = |after_index| {
        let mut hub = hub.clone();
        async move {
            hub.subscribe_feed(v1::SubscribeFeedRequest { after_index })
                .await
                .unwrap_or_else(|s| panic!("SubscribeFeed: {}", describe(&s)))
        }
    };
    let head: u64 = subscribe(0)
        .await
        .metadata()
        .get("rcpfed-backlog-end")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("rcpfed-backlog-end header");
    let mut stream = subscribe(head).await.into_inner();
    let burst = |member: &'static str| {
        let c = &c;
        async move {
            let mut raw = RawNode::connect(c, member).await;
            for i in 0..EACH {
                let mut policy = raw.policy(&format!("burst {i}"));
                policy.header.document = format!("regions/{member}/policies/burst-{i}");
                raw.accept(&policy).await;
            }
        }
    };
    let started = Instant::now();
    tokio::join!(burst("colombo"), burst("abu-dhabi"), burst("midwa"));
    let mut sizes = BTreeMap::new();
    let mut last_index = head;
    while last_index < head + 3 * EACH {
        let entry = tokio::time::timeout(TIMEOUT, stream.message())
            .await
            .expect("the burst in time")
            .expect("an entry")
            .expect("the stream stays open");
        assert_eq!(entry.feed_index, last_index + 1, "in feed order, no gap");
        last_index = entry.feed_index;
        let log = entry.log.as_ref().expect("a log proof");
        let envelope = entry.envelope.as_ref().expect("an envelope");
        check_proof(&fed, envelope, log, entry.feed_index - 1);
        *sizes.entry(log.tree_size).or_insert(0u32) += 1;
    }
    let elapsed = started.elapsed();
    // One checkpoint per page, a page at most every 25 ms, and the first one at once.
    let most = elapsed.as_millis() / 25 + 2;
    eprintln!(
        "{} entries in {elapsed:?} came against {} checkpoints: {sizes:?}",
        3 * EACH,
        sizes.len()
    );
    assert!(
        sizes.len() as u128 <= most,
        "{} checkpoints in {elapsed:?}, more than a page per 25 ms: {sizes:?}",
        sizes.len()
    );
}
