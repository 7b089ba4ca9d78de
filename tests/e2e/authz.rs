//! The authorization matrix over real mutual TLS: every RPC of HubService, NodeService and
//! WitnessService, called as every kind of identity (the hub, two nodes, an operator, and a
//! certificate from another federation's CA). Refused cells must be `PERMISSION_DENIED` /
//! `ROLE_REQUIRED` (or, for the foreign CA, a failed handshake); allowed cells must get past
//! authorization (a minimal request may still be invalid, which is fine).
//!
//! Also: a node may publish only as itself.

use crate::harness::{Cluster, RawNode, assert_refused, connect, describe, pki_init, reason};
use rcpfed_core::envelope::{STATEMENT_PAYLOAD_TYPE, SignedEnvelope};
use rcpfed_grpc::tls::TlsFiles;
use rcpfed_proto::v1;
use rcpfed_proto::v1::hub_service_client::HubServiceClient;
use rcpfed_proto::v1::node_service_client::NodeServiceClient;
use rcpfed_proto::v1::witness_service_client::WitnessServiceClient;
use tonic::Code;
use tonic::transport::Channel;

/// The member identities of the matrix, in column order; roles as `rcpfed pki init` assigns
/// them: the hub "gfmd" reader; nodes publisher, reader, witness; the operator admin, reader.
const IDENTITIES: [&str; 4] = ["gfmd", "colombo", "abu-dhabi", "operator"];

/// A certificate of another federation's CA, with colombo's SPIFFE id: never gets in.
const FOREIGN: &str = "foreign-ca";

/// (RPC, the role it declares, allowed for [gfmd, colombo, abu-dhabi, operator]), from the
/// `authorize` call at the top of each handler (rcpfed-hub `service.rs`, rcpfed-node
/// `service.rs`). AddCheckpoint admits the hub by identity, or an admin.
const MATRIX: [(&str, &str, [bool; 4]); 21] = [
    //                                                  gfmd   colombo abu-dh  operator
    (
        "HubService.SubmitStatement",
        "publisher",
        [false, true, true, false],
    ),
    (
        "HubService.GetStatement",
        "reader",
        [true, true, true, true],
    ),
    (
        "HubService.ListStatements",
        "reader",
        [true, true, true, true],
    ),
    (
        "HubService.SubscribeFeed",
        "reader",
        [true, true, true, true],
    ),
    (
        "HubService.ListEquivocations",
        "admin",
        [false, false, false, true],
    ),
    ("HubService.ListMembers", "reader", [true, true, true, true]),
    (
        "HubService.GetCheckpoint",
        "reader",
        [true, true, true, true],
    ),
    (
        "HubService.GetInclusionProof",
        "reader",
        [true, true, true, true],
    ),
    (
        "HubService.GetConsistencyProof",
        "reader",
        [true, true, true, true],
    ),
    (
        "HubService.ListLogEntries",
        "reader",
        [true, true, true, true],
    ),
    (
        "HubService.SubmitCosignature",
        "witness",
        [false, true, true, false],
    ),
    (
        "HubService.PublishRegistry",
        "admin",
        [false, false, false, true],
    ),
    ("HubService.GetRegistry", "reader", [true, true, true, true]),
    (
        "HubService.ListRegistryVersions",
        "reader",
        [true, true, true, true],
    ),
    (
        "HubService.ListFlaggedStatements",
        "reader",
        [true, true, true, true],
    ),
    (
        "NodeService.GetNodeStatus",
        "reader",
        [true, true, true, true],
    ),
    (
        "NodeService.PublishDocument",
        "admin",
        [false, false, false, true],
    ),
    ("NodeService.ListOutbox", "reader", [true, true, true, true]),
    (
        "NodeService.ListMirroredStatements",
        "reader",
        [true, true, true, true],
    ),
    (
        "WitnessService.AddCheckpoint",
        "hub or admin",
        [true, false, false, true],
    ),
    (
        "WitnessService.GetWitnessStatus",
        "reader",
        [true, true, true, true],
    ),
];

/// What a call came to.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    /// Past authorization: OK, or an error other than PERMISSION_DENIED/UNAUTHENTICATED.
    Allowed(String),
    /// PERMISSION_DENIED / ROLE_REQUIRED.
    RoleRequired,
    /// Another PERMISSION_DENIED or UNAUTHENTICATED.
    Denied(String),
    /// The TLS handshake (or the connection) failed.
    NoConnection(String),
}

impl Outcome {
    fn of(result: Result<(), tonic::Status>) -> Outcome {
        match result {
            Ok(()) => Outcome::Allowed("OK".into()),
            Err(s) => match s.code() {
                Code::PermissionDenied if reason(&s) == "ROLE_REQUIRED" => Outcome::RoleRequired,
                Code::PermissionDenied | Code::Unauthenticated => Outcome::Denied(describe(&s)),
                Code::Unavailable | Code::Unknown | Code::Cancelled => {
                    Outcome::NoConnection(describe(&s))
                }
                _ => Outcome::Allowed(format!("{:?} {}", s.code(), reason(&s))),
            },
        }
    }

    fn short(&self) -> String {
        match self {
            Outcome::Allowed(what) => format!("allowed ({what})"),
            Outcome::RoleRequired => "ROLE_REQUIRED".into(),
            Outcome::Denied(what) => format!("DENIED {what}"),
            Outcome::NoConnection(what) => format!("no connection: {what}"),
        }
    }
}

/// Channels to the hub and to colombo's node, or why there are none.
struct Channels {
    hub: Result<Channel, String>,
    node: Result<Channel, String>,
}

async fn channels(c: &Cluster, tls: &TlsFiles) -> Channels {
    let open = |port| async move {
        connect(port, tls)
            .await
            .map_err(|e| format!("connect: {e:?}"))
    };
    Channels {
        hub: open(c.hub_addr().port()).await,
        node: open(c.node_addr("colombo").port()).await,
    }
}

fn ok<T>(r: Result<T, tonic::Status>) -> Result<(), tonic::Status> {
    r.map(|_| ())
}

/// Calls `rpc` with a minimal request over `ch`.
async fn call(rpc: &str, ch: &Channels) -> Outcome {
    let channel = if rpc.starts_with("HubService.") {
        &ch.hub
    } else {
        &ch.node
    };
    let channel = match channel {
        Ok(c) => c.clone(),
        Err(e) => return Outcome::NoConnection(e.clone()),
    };
    let mut hub = HubServiceClient::new(channel.clone());
    let mut node = NodeServiceClient::new(channel.clone());
    let mut witness = WitnessServiceClient::new(channel);
    let result = match rpc {
        "HubService.SubmitStatement" => ok(hub
            .submit_statement(v1::SubmitStatementRequest::default())
            .await),
        "HubService.GetStatement" => ok(hub
            .get_statement(v1::GetStatementRequest {
                name: "nodes/gfmd/statements/1".into(),
            })
            .await),
        "HubService.ListStatements" => ok(hub
            .list_statements(v1::ListStatementsRequest::default())
            .await),
        "HubService.SubscribeFeed" => ok(hub
            .subscribe_feed(v1::SubscribeFeedRequest::default())
            .await),
        "HubService.ListEquivocations" => ok(hub
            .list_equivocations(v1::ListEquivocationsRequest::default())
            .await),
        "HubService.ListMembers" => ok(hub.list_members(v1::ListMembersRequest::default()).await),
        "HubService.GetCheckpoint" => ok(hub
            .get_checkpoint(v1::GetCheckpointRequest::default())
            .await),
        "HubService.GetInclusionProof" => ok(hub
            .get_inclusion_proof(v1::GetInclusionProofRequest {
                leaf: Some(v1::get_inclusion_proof_request::Leaf::LeafIndex(0)),
                ..Default::default()
            })
            .await),
        "HubService.GetConsistencyProof" => ok(hub
            .get_consistency_proof(v1::GetConsistencyProofRequest {
                old_size: 1,
                ..Default::default()
            })
            .await),
        "HubService.ListLogEntries" => ok(hub
            .list_log_entries(v1::ListLogEntriesRequest::default())
            .await),
        "HubService.SubmitCosignature" => ok(hub
            .submit_cosignature(v1::SubmitCosignatureRequest::default())
            .await),
        "HubService.PublishRegistry" => ok(hub
            .publish_registry(v1::PublishRegistryRequest::default())
            .await),
        "HubService.GetRegistry" => ok(hub.get_registry(v1::GetRegistryRequest::default()).await),
        "HubService.ListRegistryVersions" => ok(hub
            .list_registry_versions(v1::ListRegistryVersionsRequest::default())
            .await),
        "HubService.ListFlaggedStatements" => ok(hub
            .list_flagged_statements(v1::ListFlaggedStatementsRequest::default())
            .await),
        "NodeService.GetNodeStatus" => ok(node
            .get_node_status(v1::GetNodeStatusRequest::default())
            .await),
        "NodeService.PublishDocument" => ok(node
            .publish_document(v1::PublishDocumentRequest::default())
            .await),
        "NodeService.ListOutbox" => ok(node.list_outbox(v1::ListOutboxRequest::default()).await),
        "NodeService.ListMirroredStatements" => ok(node
            .list_mirrored_statements(v1::ListMirroredStatementsRequest::default())
            .await),
        "WitnessService.AddCheckpoint" => ok(witness
            .add_checkpoint(v1::AddCheckpointRequest::default())
            .await),
        "WitnessService.GetWitnessStatus" => ok(witness
            .get_witness_status(v1::GetWitnessStatusRequest::default())
            .await),
        other => panic!("no call for {other}"),
    };
    Outcome::of(result)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_matrix() {
    let c = Cluster::start(&["colombo"]).await;
    // The table agrees with the roles the registry gives each identity.
    let members = c
        .hub_client("operator")
        .await
        .list_members(v1::ListMembersRequest::default())
        .await
        .unwrap_or_else(|s| panic!("ListMembers: {}", describe(&s)))
        .into_inner()
        .members;
    for (rpc, role, allowed) in MATRIX {
        for (i, id) in IDENTITIES.iter().enumerate() {
            let m = members
                .iter()
                .find(|m| m.id == *id)
                .unwrap_or_else(|| panic!("no member {id}"));
            let has = |r: &str| m.roles.iter().any(|x| x == r);
            let expected = match role {
                "hub or admin" => *id == "gfmd" || has("admin"),
                r => has(r),
            };
            assert_eq!(
                allowed[i], expected,
                "the table's cell {rpc} × {id} contradicts {id}'s roles {:?}",
                m.roles
            );
        }
    }

    let other = c.root().join("other-federation");
    pki_init(&other);
    let foreign = TlsFiles {
        ca_cert: c.fed_dir().join("ca.pem"),
        cert: other.join("members/colombo/tls.pem"),
        key: other.join("members/colombo/tls.key"),
    };
    let mut columns = Vec::new();
    for id in IDENTITIES {
        columns.push((id, channels(&c, &c.tls(id)).await));
    }
    columns.push((FOREIGN, channels(&c, &foreign).await));

    let before = c.hub_snapshot().await;
    let mut table = String::new();
    let mut wrong = Vec::new();
    for (rpc, role, allowed) in MATRIX {
        table.push_str(&format!("{rpc} [{role}]\n"));
        for (i, (id, ch)) in columns.iter().enumerate() {
            let got = call(rpc, ch).await;
            let ok = match (allowed.get(i), &got) {
                (Some(true), Outcome::Allowed(_)) => true,
                (Some(false), Outcome::RoleRequired) => true,
                // The foreign certificate never completes a handshake.
                (None, Outcome::NoConnection(_)) => true,
                _ => false,
            };
            let expected = match allowed.get(i) {
                Some(true) => "allowed",
                Some(false) => "ROLE_REQUIRED",
                None => "no connection",
            };
            table.push_str(&format!(
                "  {} {id:<10} expected {expected:<14} got {}\n",
                if ok { " " } else { "✗" },
                got.short()
            ));
            if !ok {
                wrong.push(format!("{rpc} × {id}"));
            }
        }
    }
    eprintln!("{table}");
    assert!(
        wrong.is_empty(),
        "{} cell(s) of the authorization matrix are wrong: {wrong:?}\n{table}\n{}",
        wrong.len(),
        c.logs()
    );
    // Nothing any of these calls did changed what the hub stores.
    assert_eq!(c.hub_snapshot().await, before);
}

/// colombo's next statement, rewritten to claim to be abu-dhabi's first.
fn as_abu_dhabi(raw: &RawNode) -> rcpfed_core::statement::Statement {
    let mut st = raw.policy("Published in abu-dhabi's name");
    st.header.node_id = "abu-dhabi".into();
    st.header.document = "regions/abu-dhabi/policies/x".into();
    st.header.seq = 1;
    st.header.prev_digest = None;
    st
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_publishes_only_as_itself() {
    let c = Cluster::start(&[]).await;
    let mut raw = RawNode::connect(&c, "colombo").await;
    let before = c.hub_snapshot().await;
    // Over colombo's connection, signed with abu-dhabi's key.
    let env = SignedEnvelope::sign(
        STATEMENT_PAYLOAD_TYPE,
        as_abu_dhabi(&raw).encode(),
        &c.signing_key("abu-dhabi"),
    );
    assert_refused(
        raw.submit(env.to_proto()).await,
        Code::PermissionDenied,
        "KEY_NOT_OWNED",
    );
    // Over colombo's connection, signed with colombo's key, claiming to be abu-dhabi.
    let env = raw.sign(&as_abu_dhabi(&raw));
    assert_refused(
        raw.submit(env.to_proto()).await,
        Code::PermissionDenied,
        "NODE_MISMATCH",
    );
    // The hub's own identity may not publish at all.
    let mut hub_as_publisher = c.hub_client("gfmd").await;
    let env = raw.sign(&raw.policy("From the hub's identity"));
    assert_refused(
        hub_as_publisher
            .submit_statement(v1::SubmitStatementRequest {
                envelope: Some(env.to_proto()),
            })
            .await,
        Code::PermissionDenied,
        "ROLE_REQUIRED",
    );
    assert_eq!(c.hub_snapshot().await, before, "the hub's store changed");
    // colombo as itself is fine.
    let st = raw.policy("As itself");
    raw.accept(&st).await;
}
