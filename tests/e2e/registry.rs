//! The threshold-signed membership registry end to end: the offline `rcpfed registry` workflow
//! (draft, build, sign with one root key at a time, publish), the hub's and nodes' verification
//! of each version against the one in force, key rotation and revocation, membership over
//! time, and a node that bootstraps from the root keys alone.
//!
//! Every refusal is checked for its gRPC code and `ErrorInfo` reason (or, for the CLI, its exit
//! status and the reason it prints) and for leaving the hub's registry and store unchanged.

use crate::harness::{
    ALL_NODES, Cluster, RawNode, Snapshot, TIMEOUT, assert_refused, describe, field_violations,
    observation, run_rcpfed,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use prost::Message as _;
use rcpfed_core::envelope::{EnvelopeSignature, SignedEnvelope, verify_signatures};
use rcpfed_core::keys::SecretKey;
use rcpfed_core::registry::{
    KeyLifecycle, REGISTRY_PAYLOAD_TYPE, add_root_signature, decode_and_check,
};
use rcpfed_proto::v1;
use std::path::{Path, PathBuf};
use std::time::Duration;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tonic::Code;

// ----- helpers -----------------------------------------------------------------------------------

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// Runs `rcpfed <args>` and returns its standard output; panics unless it exits with 0.
fn cli_ok(args: &[&str]) -> String {
    let (code, stdout, stderr) = run_rcpfed(args);
    assert_eq!(
        code,
        0,
        "rcpfed {} failed:\n{stdout}\n{stderr}",
        args.join(" ")
    );
    stdout
}

/// Runs `rcpfed <args>`; panics unless it fails; returns stdout and stderr together.
fn cli_fails(args: &[&str]) -> String {
    let (code, stdout, stderr) = run_rcpfed(args);
    assert_ne!(
        code,
        0,
        "rcpfed {} should have failed:\n{stdout}\n{stderr}",
        args.join(" ")
    );
    format!("{stdout}\n{stderr}")
}

/// The registry workflow's files for one test: `<root>/registry-work/…`.
pub(crate) struct Work {
    fed: PathBuf,
    dir: PathBuf,
    hub: String,
}

impl Work {
    pub(crate) fn new(c: &Cluster) -> Work {
        let dir = c.root().join("registry-work");
        std::fs::create_dir_all(&dir).expect("work dir");
        Work {
            fed: c.fed_dir().to_path_buf(),
            dir,
            hub: c.hub_endpoint(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Registry version 1 as `rcpfed pki init` wrote it.
    pub(crate) fn v1(&self) -> PathBuf {
        self.fed.join("registry").join("registry.v1.json")
    }

    /// GFMD root key `i` (1 to 3).
    fn root_key(&self, i: usize) -> PathBuf {
        self.fed.join("root").join(format!("root-{i}.key"))
    }

    /// A member's statement signing key file.
    fn member_key(&self, member: &str) -> PathBuf {
        self.fed.join("members").join(member).join("signing.key")
    }

    /// `rcpfed registry draft --from <from> --out <name>.toml <edits>`; returns the draft's path.
    pub(crate) fn draft(&self, from: &Path, name: &str, edits: &[&str]) -> PathBuf {
        let out = self.path(&format!("{name}.toml"));
        let mut args = vec![
            "registry",
            "draft",
            "--from",
            path_str(from),
            "--out",
            path_str(&out),
        ];
        args.extend_from_slice(edits);
        cli_ok(&args);
        out
    }

    /// `rcpfed registry build <draft> --out <name>.json`; returns the unsigned version's path.
    fn build(&self, draft: &Path, name: &str) -> PathBuf {
        let out = self.path(&format!("{name}.json"));
        cli_ok(&[
            "registry",
            "build",
            path_str(draft),
            "--out",
            path_str(&out),
        ]);
        out
    }

    /// `rcpfed registry sign <file> --key <key> --out <out>` (a new file each time).
    fn sign_into(&self, file: &Path, key: &Path, out: &Path, extra: &[&str]) {
        let mut args = vec![
            "registry",
            "sign",
            path_str(file),
            "--key",
            path_str(key),
            "--out",
            path_str(out),
        ];
        args.extend_from_slice(extra);
        cli_ok(&args);
    }

    /// Builds `draft` and signs it with the root keys `signers`, one `rcpfed registry sign` per
    /// holder, as each would on their own machine; returns the signed file.
    pub(crate) fn build_and_sign(&self, draft: &Path, name: &str, signers: &[usize]) -> PathBuf {
        let mut file = self.build(draft, name);
        for (n, i) in signers.iter().enumerate() {
            let out = self.path(&format!("{name}.sig{}.json", n + 1));
            self.sign_into(&file, &self.root_key(*i), &out, &[]);
            file = out;
        }
        file
    }

    /// `rcpfed registry publish <file> --identity <identity>`.
    fn publish(&self, file: &Path, identity: &str) -> (i32, String, String) {
        run_rcpfed(&[
            "registry",
            "publish",
            path_str(file),
            "--hub",
            &self.hub,
            "--pki",
            path_str(&self.fed),
            "--identity",
            identity,
        ])
    }

    /// Publishes as the operator; panics unless the hub accepts.
    pub(crate) fn publish_ok(&self, file: &Path) -> String {
        let (code, stdout, stderr) = self.publish(file, "operator");
        assert_eq!(
            code,
            0,
            "publishing {}:\n{stdout}\n{stderr}",
            file.display()
        );
        stdout
    }

    /// Publishes as `identity`; panics unless the hub refuses with `reason`.
    fn publish_refused(&self, file: &Path, identity: &str, reason: &str) {
        let (code, stdout, stderr) = self.publish(file, identity);
        assert_ne!(
            code,
            0,
            "publishing {} should fail with {reason}:\n{stdout}\n{stderr}",
            file.display()
        );
        assert!(
            stderr.contains(&format!("[reason {reason}]")),
            "publishing {}: expected reason {reason}:\n{stdout}\n{stderr}",
            file.display()
        );
    }

    fn key(&self, path: &Path) -> SecretKey {
        SecretKey::from_file_text(&std::fs::read_to_string(path).expect("key file"))
            .expect("key text")
    }
}

/// Reads a DSSE JSON registry file (`{"payloadType", "payload", "signatures": [{"keyid",
/// "sig"}]}`).
fn read_dsse(path: &Path) -> SignedEnvelope {
    let text = std::fs::read_to_string(path).expect("registry file");
    let v: serde_json::Value = serde_json::from_str(&text).expect("DSSE JSON");
    let b64 = |v: &serde_json::Value| B64.decode(v.as_str().expect("string")).expect("base64");
    SignedEnvelope {
        payload_type: v["payloadType"].as_str().expect("payloadType").into(),
        payload: b64(&v["payload"]),
        signatures: v["signatures"]
            .as_array()
            .expect("signatures")
            .iter()
            .map(|s| EnvelopeSignature {
                key_id: s["keyid"].as_str().expect("keyid").into(),
                sig: b64(&s["sig"]),
            })
            .collect(),
    }
}

/// Rewrites the draft `src` into `dst` after `edit` changes its TOML.
fn edit_draft(src: &Path, dst: &Path, edit: impl FnOnce(&mut toml::Table)) {
    let mut table: toml::Table = std::fs::read_to_string(src)
        .expect("draft")
        .parse()
        .expect("draft TOML");
    edit(&mut table);
    std::fs::write(dst, toml::to_string(&table).expect("TOML")).expect("write draft");
}

/// The `[[members]]` table of `id` in a draft.
fn draft_member<'t>(t: &'t mut toml::Table, id: &str) -> &'t mut toml::Table {
    t.get_mut("members")
        .and_then(toml::Value::as_array_mut)
        .expect("members")
        .iter_mut()
        .filter_map(toml::Value::as_table_mut)
        .find(|m| m.get("id").and_then(toml::Value::as_str) == Some(id))
        .unwrap_or_else(|| panic!("no member {id} in the draft"))
}

/// The version in force at the hub (GetRegistry as the operator): (version, payload digest).
async fn hub_registry(c: &Cluster) -> (u64, Vec<u8>) {
    let r = c
        .hub_client("operator")
        .await
        .get_registry(v1::GetRegistryRequest { version: 0 })
        .await
        .unwrap_or_else(|s| panic!("GetRegistry: {}", describe(&s)))
        .into_inner();
    let env = SignedEnvelope::from_proto(r.registry.expect("registry envelope"));
    let version = r.document.expect("decoded document").version;
    (version, env.digest().0.to_vec())
}

/// Every registry version the hub lists, decoded (ListRegistryVersions as `identity`).
async fn hub_registry_versions(c: &Cluster, identity: &str) -> Vec<SignedEnvelope> {
    c.hub_client(identity)
        .await
        .list_registry_versions(v1::ListRegistryVersionsRequest::default())
        .await
        .unwrap_or_else(|s| panic!("ListRegistryVersions: {}", describe(&s)))
        .into_inner()
        .versions
        .into_iter()
        .map(SignedEnvelope::from_proto)
        .collect()
}

/// What the hub holds about the registry, for "nothing changed" assertions.
#[derive(Debug, PartialEq, Eq)]
struct RegistryView {
    in_force: (u64, Vec<u8>),
    versions: usize,
    store: Snapshot,
}

async fn registry_view(c: &Cluster) -> RegistryView {
    RegistryView {
        in_force: hub_registry(c).await,
        versions: hub_registry_versions(c, "operator").await.len(),
        store: c.hub_snapshot().await,
    }
}

async fn publish_grpc(
    c: &Cluster,
    identity: &str,
    env: &SignedEnvelope,
) -> Result<v1::PublishRegistryResponse, tonic::Status> {
    c.hub_client(identity)
        .await
        .publish_registry(v1::PublishRegistryRequest {
            registry: Some(env.to_proto()),
        })
        .await
        .map(tonic::Response::into_inner)
}

/// Whether `node`'s mirror holds registry version `version` (the node put it in force: a node
/// mirrors a registry entry only after verifying it against the version it trusts).
async fn node_has_registry(c: &Cluster, node: &str, version: u64) -> bool {
    let name = format!("nodes/gfmd/statements/{version}");
    c.mirror(node).await.iter().any(|r| r.name == name)
}

fn timestamp(t: OffsetDateTime) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.unix_timestamp(),
        nanos: i32::try_from(t.nanosecond()).expect("nanos"),
    }
}

fn millis(ts: &prost_types::Timestamp) -> i64 {
    ts.seconds * 1000 + i64::from(ts.nanos) / 1_000_000
}

/// A validate-only indicator snapshot for `area` in `period` on `node`, as the operator.
async fn node_validates(
    c: &Cluster,
    node: &str,
    area: &str,
    period: &str,
) -> Result<(), tonic::Status> {
    let obs = v1::Observation {
        action: v1::ObservationAction::Append as i32,
        ref_area: area.into(),
        time_period: period.into(),
        obs_value: Some(100.0),
        obs_status: "A".into(),
        unit_measure: "current USD".into(),
        unit_mult: 6,
        source: "World Bank/KNOMAD".into(),
        ..Default::default()
    };
    c.node_client(node, "operator")
        .await
        .publish_document(v1::PublishDocumentRequest {
            document: format!("regions/{node}/indicators/remit-inflow"),
            body: Some(v1::publish_document_request::Body::IndicatorSnapshot(
                v1::IndicatorSnapshot {
                    indicator: "REMIT_INFLOW".into(),
                    observations: vec![obs],
                    chunks: None,
                },
            )),
            validate_only: true,
            ..Default::default()
        })
        .await
        .map(|_| ())
}

// ----- 1. threshold, rollback, chain, expiry, bad drafts, admin only -----------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_update_needs_the_root_threshold() {
    let c = Cluster::start(&ALL_NODES).await;
    let w = Work::new(&c);
    let v1 = w.v1();
    let v1_env = read_dsse(&v1);
    assert_eq!(hub_registry(&c).await, (1, v1_env.digest().0.to_vec()));
    for node in ALL_NODES {
        assert_eventually!(
            c,
            TIMEOUT,
            node_has_registry(&c, node, 1).await,
            "{node} mirrors registry version 1"
        );
    }
    // Under version 1 Senegal belongs to MIDWA.
    node_validates(&c, "midwa", "SEN", "2024")
        .await
        .unwrap_or_else(|s| panic!("SEN 2024 under v1: {}", describe(&s)));
    let before = registry_view(&c).await;

    // Version 2: Senegal's membership of MIDWA ends on 2020-01-01.
    let draft = w.draft(&v1, "v2", &["--state-until", "midwa:SEN=2020-01-01"]);
    let unsigned = w.build(&draft, "v2");
    assert!(read_dsse(&unsigned).signatures.is_empty());
    let one = w.path("v2.one.json");
    w.sign_into(&unsigned, &w.root_key(1), &one, &[]);

    // Unsigned, one root signature, a member's key alone, one root + one member signature:
    // all short of the 2-of-3 threshold.
    w.publish_refused(&unsigned, "operator", "MISSING_SIGNATURE");
    w.publish_refused(&one, "operator", "REGISTRY_THRESHOLD_NOT_MET");
    let member_only = w.path("v2.member-only.json");
    w.sign_into(
        &unsigned,
        &w.member_key("colombo"),
        &member_only,
        &["--allow-previous-root"],
    );
    w.publish_refused(&member_only, "operator", "REGISTRY_THRESHOLD_NOT_MET");
    let one_plus_member = w.path("v2.one-plus-member.json");
    w.sign_into(
        &one,
        &w.member_key("colombo"),
        &one_plus_member,
        &["--allow-previous-root"],
    );
    assert_eq!(read_dsse(&one_plus_member).signatures.len(), 2);
    w.publish_refused(&one_plus_member, "operator", "REGISTRY_THRESHOLD_NOT_MET");
    // The same root key twice counts once.
    let mut twice = read_dsse(&one);
    twice.signatures.push(twice.signatures[0].clone());
    assert_refused(
        publish_grpc(&c, "operator", &twice).await,
        Code::Unauthenticated,
        "REGISTRY_THRESHOLD_NOT_MET",
    );
    // A second root signature over different bytes does not count either.
    let mut forged = read_dsse(&one);
    let other = w.key(&w.root_key(2));
    forged.signatures.push(EnvelopeSignature {
        key_id: other.key_id().to_owned(),
        sig: other.sign(b"something else").to_vec(),
    });
    assert_refused(
        publish_grpc(&c, "operator", &forged).await,
        Code::Unauthenticated,
        "REGISTRY_THRESHOLD_NOT_MET",
    );
    assert_eq!(
        registry_view(&c).await,
        before,
        "a refused version changed the hub"
    );

    // A node identity may not publish even a correctly signed version.
    let signed = w.path("v2.signed.json");
    w.sign_into(&one, &w.root_key(2), &signed, &[]);
    w.publish_refused(&signed, "colombo", "ROLE_REQUIRED");
    assert_refused(
        publish_grpc(&c, "midwa", &read_dsse(&signed)).await,
        Code::PermissionDenied,
        "ROLE_REQUIRED",
    );
    assert_eq!(registry_view(&c).await, before);

    // Two root signatures: accepted, logged, in force.
    let out = w.publish_ok(&signed);
    assert!(out.contains("published registry version 2"), "{out}");
    let v2_env = read_dsse(&signed);
    assert_eq!(hub_registry(&c).await, (2, v2_env.digest().0.to_vec()));
    let versions = hub_registry_versions(&c, "colombo").await;
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0].digest(), v1_env.digest());
    assert_eq!(versions[1].digest(), v2_env.digest());
    let after = c.hub_snapshot().await;
    assert_eq!(after.statements.len(), before.store.statements.len() + 1);
    assert_eq!(
        after.statements.last().map(|s| s.0.as_str()),
        Some("nodes/gfmd/statements/2")
    );
    // A retry of the version in force is answered as the first time.
    assert_eq!(
        publish_grpc(&c, "operator", &v2_env)
            .await
            .unwrap_or_else(|s| panic!("retrying v2: {}", describe(&s)))
            .version,
        2
    );

    // Every node verifies version 2 against version 1 and puts it in force.
    for node in ALL_NODES {
        assert_eventually!(
            c,
            TIMEOUT,
            node_has_registry(&c, node, 2).await,
            "{node} has registry version 2"
        );
    }
    // Behaviour: midwa now refuses Senegal after 2019 itself, and the hub does too.
    assert_refused(
        node_validates(&c, "midwa", "SEN", "2024").await,
        Code::InvalidArgument,
        "NOT_A_MEMBER_STATE",
    );
    node_validates(&c, "midwa", "SEN", "2019")
        .await
        .unwrap_or_else(|s| panic!("SEN 2019 under v2: {}", describe(&s)));
    let mut midwa = RawNode::connect(&c, "midwa").await;
    let st = midwa.indicators(vec![observation("SEN", "2024", 1.0)]);
    assert_refused(
        midwa.submit(midwa.sign(&st).to_proto()).await,
        Code::InvalidArgument,
        "NOT_A_MEMBER_STATE",
    );
    let before = registry_view(&c).await;

    // Rollback: version 1 again, or another version 2 (a fork of the chain).
    w.publish_refused(&v1, "operator", "REGISTRY_ROLLBACK");
    let fork = w.draft(&v1, "v2-fork", &["--state-until", "midwa:GHA=2020-01-01"]);
    let fork = w.build_and_sign(&fork, "v2-fork", &[1, 3]);
    w.publish_refused(&fork, "operator", "REGISTRY_ROLLBACK");

    // Version 3 drafted from version 1: it names version 1's digest as its predecessor.
    let from_v1 = w.draft(&v1, "v3-from-v1", &[]);
    let v3_from_v1 = w.path("v3-from-v1.edited.toml");
    edit_draft(&from_v1, &v3_from_v1, |t| {
        t.insert("version".into(), 3.into());
    });
    let v3_from_v1 = w.build_and_sign(&v3_from_v1, "v3-from-v1", &[2, 3]);
    w.publish_refused(&v3_from_v1, "operator", "REGISTRY_CHAIN_MISMATCH");

    // Version 4 after 2: a gap (fast-forward).
    let v4 = w.draft(&signed, "v4", &[]);
    let v4_edited = w.path("v4.edited.toml");
    edit_draft(&v4, &v4_edited, |t| {
        t.insert("version".into(), 4.into());
    });
    let v4 = w.build_and_sign(&v4_edited, "v4", &[1, 2]);
    w.publish_refused(&v4, "operator", "REGISTRY_VERSION_GAP");

    // An expired version 3 (freeze attack): a correct successor whose expiry has passed.
    let expired = w.draft(&signed, "v3-expired", &[]);
    let expired_edited = w.path("v3-expired.edited.toml");
    edit_draft(&expired, &expired_edited, |t| {
        t.insert("issued_at".into(), "2020-01-01T00:00:00Z".into());
        t.insert("expires_at".into(), "2020-01-02T00:00:00Z".into());
    });
    let expired = w.build_and_sign(&expired_edited, "v3-expired", &[1, 2]);
    w.publish_refused(&expired, "operator", "REGISTRY_EXPIRED");
    // `--expires-days 0` does not even make a valid draft (expires_at must follow issued_at).
    let out = cli_fails(&[
        "registry",
        "draft",
        "--from",
        path_str(&signed),
        "--out",
        path_str(&w.path("v3-zero-days.toml")),
        "--expires-days",
        "0",
    ]);
    assert!(out.contains("expires_at"), "{out}");
    assert_eq!(registry_view(&c).await, before);

    // Bad drafts: `rcpfed registry build` refuses them with the rule's reason and writes
    // nothing…
    let base = w.draft(&signed, "v3-base", &[]);
    let fresh = SecretKey::generate().expect("key");
    type Edit = Box<dyn Fn(&mut toml::Table)>;
    let colombo_key: toml::Value = {
        let mut t: toml::Table = std::fs::read_to_string(&base)
            .expect("draft")
            .parse()
            .expect("TOML");
        draft_member(&mut t, "colombo")["keys"]
            .as_array()
            .expect("keys")[0]
            .clone()
    };
    let fresh_key: toml::Value = {
        let mut k = colombo_key.as_table().expect("key").clone();
        k.insert("key_id".into(), fresh.key_id().into());
        k.insert("public_key".into(), fresh.verify_key().to_base64().into());
        toml::Value::Table(k)
    };
    let cases: Vec<(&str, &str, Edit)> = vec![
        ("key-twice", "DUPLICATE_KEY_ID", {
            let k = colombo_key.clone();
            Box::new(move |t| {
                draft_member(t, "abu-dhabi")["keys"]
                    .as_array_mut()
                    .expect("keys")
                    .push(k.clone());
            })
        }),
        ("no-key", "MEMBER_WITHOUT_KEY", {
            Box::new(|t| {
                draft_member(t, "midwa").remove("keys");
            })
        }),
        ("unknown-role", "UNKNOWN_ROLE", {
            Box::new(|t| {
                draft_member(t, "colombo")["roles"]
                    .as_array_mut()
                    .expect("roles")
                    .push("superuser".into());
            })
        }),
        ("bad-iso", "INVALID_COUNTRY_CODE", {
            Box::new(|t| {
                let states = draft_member(t, "colombo")["states"]
                    .as_array_mut()
                    .expect("states");
                states[0]
                    .as_table_mut()
                    .expect("state")
                    .insert("iso3".into(), "LK".into());
            })
        }),
        ("overlap", "OVERLAPPING_KEY_WINDOWS", {
            let k = fresh_key.clone();
            Box::new(move |t| {
                draft_member(t, "colombo")["keys"]
                    .as_array_mut()
                    .expect("keys")
                    .push(k.clone());
            })
        }),
    ];
    for (name, reason, edit) in &cases {
        let bad = w.path(&format!("v3-{name}.toml"));
        edit_draft(&base, &bad, edit);
        let out_file = w.path(&format!("v3-{name}.json"));
        let out = cli_fails(&[
            "registry",
            "build",
            path_str(&bad),
            "--out",
            path_str(&out_file),
        ]);
        assert!(
            out.contains(&format!("({reason})")),
            "build of the {name} draft: expected {reason}:\n{out}"
        );
        assert!(!out_file.exists(), "build wrote {}", out_file.display());
    }

    // …and the hub refuses the same documents, correctly chained and threshold-signed, built
    // without the CLI.
    let v2_doc = v1::RegistryDocument::decode(v2_env.payload.as_slice()).expect("v2 decodes");
    let now = OffsetDateTime::now_utc();
    let mut next = v2_doc.clone();
    next.version = 3;
    next.previous_digest = v2_env.digest().0.to_vec();
    next.issued_at = Some(timestamp(now));
    next.expires_at = Some(timestamp(now + time::Duration::days(30)));
    let roots = [w.key(&w.root_key(1)), w.key(&w.root_key(3))];
    let sign = |doc: &v1::RegistryDocument| {
        let mut env = SignedEnvelope::sign(REGISTRY_PAYLOAD_TYPE, doc.encode_to_vec(), &roots[0]);
        add_root_signature(&mut env, &roots[1]);
        env
    };
    let index = |doc: &v1::RegistryDocument, id: &str| {
        doc.members
            .iter()
            .position(|m| m.id == id)
            .unwrap_or_else(|| panic!("no member {id}"))
    };
    type DocEdit = Box<dyn Fn(&mut v1::RegistryDocument)>;
    let (colombo, abu_dhabi, midwa_i) = (
        index(&next, "colombo"),
        index(&next, "abu-dhabi"),
        index(&next, "midwa"),
    );
    let fresh_pb = v1::RegistryKey {
        key_id: fresh.key_id().into(),
        public_key: fresh.verify_key().to_bytes().to_vec(),
        valid_from: Some(timestamp(now)),
        status: v1::KeyStatus::Active as i32,
        status_at: None,
    };
    let doc_cases: Vec<(&str, &str, DocEdit)> = vec![
        (
            "key-twice",
            "DUPLICATE_KEY_ID",
            Box::new(move |d| {
                let k = d.members[colombo].keys[0].clone();
                d.members[abu_dhabi].keys.push(k);
            }),
        ),
        (
            "no-key",
            "MEMBER_WITHOUT_KEY",
            Box::new(move |d| d.members[midwa_i].keys.clear()),
        ),
        (
            "unknown-role",
            "UNKNOWN_ROLE",
            Box::new(move |d| d.members[colombo].roles.push("superuser".into())),
        ),
        (
            "bad-iso",
            "INVALID_COUNTRY_CODE",
            Box::new(move |d| d.members[colombo].states[0].iso3 = "lka".into()),
        ),
        ("overlap", "OVERLAPPING_KEY_WINDOWS", {
            let k = fresh_pb.clone();
            Box::new(move |d| d.members[colombo].keys.push(k.clone()))
        }),
        (
            "root-threshold-0",
            "INVALID_ROOT",
            Box::new(|d| d.root.as_mut().expect("root").threshold = 0),
        ),
    ];
    // The unedited document is a valid version 3 (so each refusal is the edit's doing).
    assert!(decode_and_check(&next.encode_to_vec()).is_ok());
    for (name, reason, edit) in &doc_cases {
        let mut doc = next.clone();
        edit(&mut doc);
        let status = assert_refused(
            publish_grpc(&c, "operator", &sign(&doc)).await,
            Code::InvalidArgument,
            reason,
        );
        eprintln!("{name}: {}", describe(&status));
    }
    assert_eq!(
        registry_view(&c).await,
        before,
        "a refused version changed the hub"
    );
    // The nodes still trust version 2 and nothing else.
    for node in ALL_NODES {
        assert!(
            !node_has_registry(&c, node, 3).await,
            "{node} has a version 3"
        );
    }
}

// ----- 2. rotation -------------------------------------------------------------------------------

/// The public key of vector `name` in `proto/vectors/ed25519.json` (docs/spec/keys.md §3).
fn ed25519_vector_key(name: &str) -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../proto/vectors/ed25519.json"
    );
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("vectors file")).expect("JSON");
    let vector = file["vectors"]
        .as_array()
        .expect("vectors")
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no vector {name}"));
    hex::decode(vector["public_key"].as_str().expect("public_key")).expect("hex")
}

/// A registry version, correctly signed by the root threshold, that gives colombo a key the exact
/// Ed25519 key rule (docs/spec/keys.md §2) refuses is refused whole, naming the key's field and
/// why. The non-canonical and mixed-order keys were accepted before the rule was made exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_version_with_a_key_the_ed25519_rule_refuses_is_refused() {
    let c = Cluster::start(&[]).await;
    let w = Work::new(&c);
    let v1_env = read_dsse(&w.v1());
    let before = registry_view(&c).await;
    let roots = [w.key(&w.root_key(1)), w.key(&w.root_key(2))];
    let cases = [
        ("a-mixed-order", "small-order component"),
        ("a-non-canonical-large-order-0", "non-canonical encoding"),
        ("identity-key-forgery", "weak (small order)"),
    ];
    for (vector, why) in cases {
        let public = ed25519_vector_key(vector);
        let raw: [u8; 32] = public.as_slice().try_into().expect("32 bytes");
        let mut doc = v1::RegistryDocument::decode(v1_env.payload.as_slice()).expect("v1");
        doc.version = 2;
        doc.previous_digest = v1_env.digest().0.to_vec();
        let i = doc
            .members
            .iter()
            .position(|m| m.id == "colombo")
            .expect("colombo");
        doc.members[i].keys[0].public_key = public;
        doc.members[i].keys[0].key_id = rcpfed_core::keys::key_id_of(&raw);
        let mut env = SignedEnvelope {
            payload_type: REGISTRY_PAYLOAD_TYPE.into(),
            payload: doc.encode_to_vec(),
            signatures: Vec::new(),
        };
        for root in &roots {
            add_root_signature(&mut env, root);
        }
        let status = assert_refused(
            publish_grpc(&c, "operator", &env).await,
            Code::InvalidArgument,
            "VALIDATION_FAILED",
        );
        let violations = field_violations(&status);
        let field = format!("members[{i}].keys[0].public_key");
        assert!(
            violations
                .iter()
                .any(|(f, d)| *f == field && d.contains(why)),
            "{vector}: {}",
            describe(&status)
        );
    }
    assert_eq!(
        registry_view(&c).await,
        before,
        "a refused version changed the hub"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_keeps_old_statements_verifiable() {
    let mut c = Cluster::start(&["colombo"]).await;
    let w = Work::new(&c);
    let old_key = c.signing_key("colombo");
    for i in 1..=2 {
        c.publish_policy("colombo", &format!("Before rotation {i}"))
            .await;
    }
    assert_eventually!(c, TIMEOUT, c.delivered("colombo", 2).await, "delivered");

    // colombo's key holder makes a new key; the root key holders sign the rotation.
    let new_key_path = w.path("colombo-new.key");
    cli_ok(&["keygen", "--out", path_str(&new_key_path)]);
    let new_key = w.key(&new_key_path);
    let draft = w.draft(
        &w.v1(),
        "v2",
        &[
            "--rotate-key",
            &format!("colombo={}", new_key_path.display()),
        ],
    );
    let signed = w.build_and_sign(&draft, "v2", &[1, 3]);
    w.publish_ok(&signed);
    let v2 = decode_and_check(&read_dsse(&signed).payload).expect("v2");
    let colombo = v2.member("colombo").expect("colombo");
    assert_eq!(colombo.keys.len(), 2);
    assert_eq!(colombo.keys[0].key.key_id, old_key.key_id());
    assert!(matches!(colombo.keys[0].status, KeyLifecycle::Retired(_)));
    assert_eq!(colombo.keys[1].key.key_id, new_key.key_id());
    assert_eventually!(
        c,
        TIMEOUT,
        node_has_registry(&c, "colombo", 2).await,
        "colombo has registry version 2"
    );

    // The old key can no longer sign anything new.
    let mut raw = RawNode::connect(&c, "colombo").await;
    assert_eq!(raw.key.key_id(), old_key.key_id());
    let before = c.hub_snapshot().await;
    let st = raw.policy("Signed with the retired key");
    let status = assert_refused(
        raw.submit(raw.sign(&st).to_proto()).await,
        Code::PermissionDenied,
        "KEY_RETIRED",
    );
    eprintln!("retired key: {}", describe(&status));
    assert_eq!(c.hub_snapshot().await, before, "the store changed");

    // colombo restarts with its new key (its configuration names the new key file).
    c.stop_node("colombo").await;
    let config = c.fed_dir().join("colombo.toml");
    let text = std::fs::read_to_string(&config).expect("colombo.toml");
    let old_line = "signing_key = \"members/colombo/signing.key\"";
    assert!(text.contains(old_line), "{text}");
    std::fs::write(
        &config,
        text.replace(
            old_line,
            &format!("signing_key = \"{}\"", new_key_path.display()),
        ),
    )
    .expect("write colombo.toml");
    c.restart_node("colombo").await;
    c.publish_policy("colombo", "After rotation").await;
    assert_eventually!(c, TIMEOUT, c.delivered("colombo", 3).await, "delivered");
    let records = c.hub_statements_of("colombo").await;
    assert_eq!(records.len(), 3);
    let signer = |r: &v1::StatementRecord| {
        r.envelope.as_ref().expect("envelope").signatures[0]
            .key_id
            .clone()
    };
    assert_eq!(signer(&records[0]), old_key.key_id());
    assert_eq!(signer(&records[2]), new_key.key_id());

    // The statements signed before the retirement still verify with the key version 2 keeps.
    let federation = v2.to_federation().expect("v2 federation");
    let mut hub = c.hub_client("abu-dhabi").await;
    for seq in 1..=2 {
        let st = hub
            .get_statement(v1::GetStatementRequest {
                name: format!("nodes/colombo/statements/{seq}"),
            })
            .await
            .unwrap_or_else(|s| panic!("GetStatement: {}", describe(&s)))
            .into_inner()
            .statement
            .expect("statement");
        let env = SignedEnvelope::from_proto(st.envelope.expect("envelope"));
        let key = verify_signatures(&env, |id| federation.key_owner(id).map(|(_, k)| k))
            .unwrap_or_else(|e| panic!("colombo#{seq} no longer verifies: {e}"));
        assert_eq!(key.key_id, old_key.key_id());
    }
    // …and offline: a bundle of colombo#1 verifies against the member file of version 2.
    let members = w.path("members-v2.toml");
    std::fs::write(&members, federation.to_toml().expect("member file as TOML"))
        .expect("member file");
    let bundle = w.path("colombo-1.bundle.json");
    cli_ok(&[
        "export",
        "bundle",
        "--hub",
        &c.hub_endpoint(),
        "--pki",
        path_str(c.fed_dir()),
        "--statement",
        "nodes/colombo/statements/1",
        "--out",
        path_str(&bundle),
    ]);
    let out = cli_ok(&[
        "verify",
        path_str(&bundle),
        "--federation",
        path_str(&members),
        "--quorum",
        "0",
    ]);
    assert!(!out.contains('✗'), "{out}");

    // Still refused after the restart, and nothing stored.
    let mut raw = RawNode::connect(&c, "colombo").await;
    raw.key = old_key;
    let before = c.hub_snapshot().await;
    let st = raw.policy("Retired key again");
    assert_refused(
        raw.submit(raw.sign(&st).to_proto()).await,
        Code::PermissionDenied,
        "KEY_RETIRED",
    );
    assert_eq!(c.hub_snapshot().await, before);
}

// ----- 3. revocation -----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_revocation_flags_later_statements() {
    let mut c = Cluster::start(&[]).await;
    let w = Work::new(&c);
    let mut raw = RawNode::connect(&c, "colombo").await;
    for i in 1..=5 {
        let st = raw.policy(&format!("Statement {i}"));
        raw.accept(&st).await;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let records = c.hub_statements_of("colombo").await;
    assert_eq!(records.len(), 5);
    let accepted: Vec<i64> = records
        .iter()
        .map(|r| millis(r.accepted_at.as_ref().expect("accepted_at")))
        .collect();
    // Revoked from a moment between the acceptance of #3 and #4.
    assert!(accepted[3] - accepted[2] >= 2, "{accepted:?}");
    let at_ms = (accepted[2] + accepted[3]) / 2;
    let at =
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(at_ms) * 1_000_000).expect("time");
    let at_text = at.format(&Rfc3339).expect("RFC 3339");
    let key_id = raw.key.key_id().to_owned();
    let draft = w.draft(
        &w.v1(),
        "v2",
        &["--revoke-key", &format!("{key_id}@{at_text}")],
    );
    let signed = read_dsse(&w.build_and_sign(&draft, "v2", &[2, 3]));
    let v2 = decode_and_check(&signed.payload).expect("v2");
    assert_eq!(
        v2.member("colombo").expect("colombo").keys[0].status,
        KeyLifecycle::Revoked(at)
    );
    let response = publish_grpc(&c, "operator", &signed)
        .await
        .unwrap_or_else(|s| panic!("publishing v2: {}", describe(&s)));
    assert_eq!(response.version, 2);
    let later: Vec<String> = records
        .iter()
        .zip(&accepted)
        .filter(|(_, t)| **t >= at_ms)
        .map(|(r, _)| r.name.clone())
        .collect();
    assert_eq!(
        later,
        ["nodes/colombo/statements/4", "nodes/colombo/statements/5"]
    );
    assert_eq!(response.newly_flagged as usize, later.len());

    let list = flagged(&c).await;
    let names: Vec<String> = list.iter().map(|f| f.name.clone()).collect();
    assert_eq!(names, later);
    for f in &list {
        assert_eq!(f.key_id, key_id);
        assert_eq!(f.registry_version, 2);
        assert!(!f.reason.is_empty());
    }
    // Publishing the same version again flags nothing new.
    let again = publish_grpc(&c, "operator", &signed)
        .await
        .unwrap_or_else(|s| panic!("retrying v2: {}", describe(&s)));
    assert_eq!(again.newly_flagged, 0);
    assert_eq!(flagged(&c).await.len(), later.len());

    // Flags lost between logging the version and flagging (a hub killed there, a full store):
    // publishing the version again adds them, and so does a restart.
    delete_flags(&c);
    assert!(flagged(&c).await.is_empty());
    let again = publish_grpc(&c, "operator", &signed)
        .await
        .unwrap_or_else(|s| panic!("retrying v2: {}", describe(&s)));
    assert_eq!(again.newly_flagged as usize, later.len());
    assert_eq!(flagged(&c).await.len(), later.len());
    c.stop_hub().await;
    delete_flags(&c);
    c.start_hub().await;
    assert_eventually!(
        c,
        TIMEOUT,
        flagged(&c).await.len() == later.len(),
        "the restarted hub flags what the registry in force revokes"
    );

    // A new statement signed with the revoked key: refused, nothing stored.
    let before = c.hub_snapshot().await;
    let st = raw.policy("After the revocation");
    let status = assert_refused(
        raw.submit(raw.sign(&st).to_proto()).await,
        Code::PermissionDenied,
        "KEY_REVOKED",
    );
    eprintln!("revoked key: {}", describe(&status));
    assert_eq!(c.hub_snapshot().await, before);
    assert_eq!(flagged(&c).await.len(), later.len());

    // Offline, against the member file of version 2: a statement accepted before the
    // revocation moment still verifies; one accepted after it does not.
    let members = w.path("members-v2.toml");
    std::fs::write(
        &members,
        v2.to_federation()
            .expect("v2 federation")
            .to_toml()
            .expect("v2 member file as TOML"),
    )
    .expect("member file");
    for (seq, should_verify) in [(3, true), (5, false)] {
        let bundle = w.path(&format!("colombo-{seq}.bundle.json"));
        cli_ok(&[
            "export",
            "bundle",
            "--hub",
            &c.hub_endpoint(),
            "--pki",
            path_str(c.fed_dir()),
            "--statement",
            &format!("nodes/colombo/statements/{seq}"),
            "--out",
            path_str(&bundle),
        ]);
        let (code, stdout, stderr) = run_rcpfed(&[
            "verify",
            path_str(&bundle),
            "--federation",
            path_str(&members),
            "--quorum",
            "0",
        ]);
        if should_verify {
            assert_eq!(code, 0, "colombo#{seq} must verify:\n{stdout}\n{stderr}");
        } else {
            assert_ne!(code, 0, "colombo#{seq} must not verify:\n{stdout}");
            assert!(stdout.contains("revoked at"), "{stdout}");
        }
    }
}

/// Deletes every flag the hub stored, behind its back.
fn delete_flags(c: &Cluster) {
    const DELETE: &str = "DELETE FROM statement_flags";
    match c.hub_postgres() {
        Some(pg) => {
            pg.with_client(|client| client.execute(DELETE, &[]))
                .expect("deleting the flags");
        }
        None => {
            rusqlite::Connection::open(c.hub_db())
                .and_then(|db| {
                    db.busy_timeout(Duration::from_secs(10))?;
                    db.execute(DELETE, [])
                })
                .expect("deleting the flags");
        }
    }
}

async fn flagged(c: &Cluster) -> Vec<v1::FlaggedStatement> {
    c.hub_client("abu-dhabi")
        .await
        .list_flagged_statements(v1::ListFlaggedStatementsRequest::default())
        .await
        .unwrap_or_else(|s| panic!("ListFlaggedStatements: {}", describe(&s)))
        .into_inner()
        .statements
}

// ----- 4. membership over time -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_over_time_from_the_registry() {
    let c = Cluster::start(&[]).await;
    let w = Work::new(&c);
    let mut midwa = RawNode::connect(&c, "midwa").await;
    let before = c.hub_snapshot().await;
    // Mali left ECOWAS (and MIDWA) on 2025-01-29 (registry version 1, from the sample data).
    let st = midwa.indicators(vec![observation("MLI", "2025", 1.0)]);
    assert_refused(
        midwa.submit(midwa.sign(&st).to_proto()).await,
        Code::InvalidArgument,
        "NOT_A_MEMBER_STATE",
    );
    assert_eq!(c.hub_snapshot().await, before);
    let st = midwa.indicators(vec![observation("MLI", "2024", 1.0)]);
    midwa.accept(&st).await;
    let st = midwa.indicators(vec![observation("GHA", "2024", 1.0)]);
    midwa.accept(&st).await;

    // Version 2: Ghana's membership ends on 2020-01-01.
    let draft = w.draft(&w.v1(), "v2", &["--state-until", "midwa:GHA=2020-01-01"]);
    let signed = w.build_and_sign(&draft, "v2", &[1, 2]);
    w.publish_ok(&signed);
    assert_eq!(hub_registry(&c).await.0, 2);

    let before = c.hub_snapshot().await;
    for period in ["2024", "2020"] {
        let st = midwa.indicators(vec![observation("GHA", period, 1.0)]);
        assert_refused(
            midwa.submit(midwa.sign(&st).to_proto()).await,
            Code::InvalidArgument,
            "NOT_A_MEMBER_STATE",
        );
    }
    assert_eq!(
        c.hub_snapshot().await,
        before,
        "a refused statement was stored"
    );
    let st = midwa.indicators(vec![observation("GHA", "2019", 1.0)]);
    midwa.accept(&st).await;
    // Other states are unaffected.
    let st = midwa.indicators(vec![observation("SEN", "2024", 1.0)]);
    midwa.accept(&st).await;
    let after = c.hub_snapshot().await;
    assert_eq!(after.statements.len(), before.statements.len() + 2);
    // What was accepted before version 2 stays accepted.
    assert_eq!(
        after.statements[..before.statements.len()],
        before.statements[..]
    );
}

// ----- 5. bootstrap from the root keys -----------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_bootstraps_from_root_keys_only() {
    let mut c = Cluster::start(&["colombo"]).await;
    let w = Work::new(&c);
    // The hub moves to version 2, so a bootstrapping node must verify a chain of two.
    let draft = w.draft(&w.v1(), "v2", &["--state-until", "midwa:GHA=2020-01-01"]);
    let signed = w.build_and_sign(&draft, "v2", &[1, 2]);
    w.publish_ok(&signed);

    // midwa's configuration has the root keys only: no registry file, no cache.
    let config = c.fed_dir().join("midwa.toml");
    let text = std::fs::read_to_string(&config).expect("midwa.toml");
    let line = "registry_file = \"registry/registry.v1.json\"\n";
    assert!(text.contains(line), "{text}");
    std::fs::write(&config, text.replace(line, "")).expect("write midwa.toml");
    let cache = c.fed_dir().join("data/midwa/registry-trusted.bin");
    assert!(!cache.exists());
    c.start_node_with_env("midwa", &[]).await;

    // It works: version 2 is in force there (its own validation applies v2's rule) and it
    // publishes and mirrors.
    assert_eventually!(
        c,
        TIMEOUT,
        node_has_registry(&c, "midwa", 2).await,
        "midwa mirrors registry version 2"
    );
    assert_refused(
        node_validates(&c, "midwa", "GHA", "2024").await,
        Code::InvalidArgument,
        "NOT_A_MEMBER_STATE",
    );
    c.publish_policy("midwa", "Bootstrapped").await;
    c.publish_policy("colombo", "Alongside").await;
    assert_eventually!(c, TIMEOUT, c.delivered("midwa", 1).await, "midwa delivered");
    assert_eventually!(
        c,
        TIMEOUT,
        c.mirrors_match_hub(&["colombo", "midwa"]).await,
        "mirrors match the hub"
    );
    assert!(cache.exists(), "the trusted version is cached");

    // A node whose root keys did not sign the hub's chain (here: the root trust file of
    // another federation with the same id) refuses to start and trusts nothing.
    let other = c.root().join("other-federation");
    crate::harness::pki_init(&other);
    let config = c.fed_dir().join("abu-dhabi.toml");
    let text = std::fs::read_to_string(&config).expect("abu-dhabi.toml");
    std::fs::write(&config, text.replace(line, "")).expect("write abu-dhabi.toml");
    let log = c.root().join("abu-dhabi-untrusted.log");
    let log_file = std::fs::File::create(&log).expect("log");
    let mut child = c
        .node_command("abu-dhabi")
        .env(
            "RCPFED_NODE_ROOT_TRUST_FILE",
            other.join("root-trust.toml").as_os_str(),
        )
        .stdout(log_file.try_clone().expect("log"))
        .stderr(log_file)
        .spawn()
        .expect("starting abu-dhabi");
    let deadline = std::time::Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "a node with foreign root keys kept running:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!status.success(), "{output}");
    assert!(
        output.contains("do not verify from the root keys"),
        "expected the chain to fail verification:\n{output}"
    );
    assert!(
        !c.fed_dir()
            .join("data/abu-dhabi/registry-trusted.bin")
            .exists(),
        "an unverified registry was cached"
    );
}
