//! `rcpfed verify` (offline check of a statement bundle) and `rcpfed export bundle` (fetch one
//! from the hub). The bundle format and the checks are in docs/spec/bundles.md and in
//! `rcpfed_core::bundle`.

use crate::client;
use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};
use rcpfed_core::bundle::{
    Bundle, BundleLog, STEP_CHECKPOINT_SIGNATURE, STEP_INCLUSION, STEP_RECEIPT, STEP_STATEMENT,
    STEP_STATEMENT_SIGNATURE, STEP_WITNESSES, TrustAnchors, all_ok, verify_bundle,
};
use rcpfed_core::envelope::SignedEnvelope;
use rcpfed_core::logkeys;
use rcpfed_core::members::Federation;
use rcpfed_core::merkle::Hash;
use rcpfed_core::note::{ALG_COSIGNATURE_V1, ALG_ED25519, parse_note, parse_verifier_key};
use rcpfed_core::statement::Statement;
use rcpfed_proto::v1;
use rcpfed_proto::v1::hub_service_client::HubServiceClient;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tonic::transport::Channel;

/// Largest bundle file read, in bytes (a statement payload is at most 1 MiB).
const MAX_BUNDLE_BYTES: u64 = 16 << 20;

/// Arguments of `rcpfed verify`.
#[derive(Args)]
pub struct VerifyArgs {
    /// The statement bundle (JSON, as written by `rcpfed export bundle`).
    pub bundle: PathBuf,
    /// The member file (federation.toml) that holds the signing keys you trust. Alternatively
    /// give --root-trust and --registry.
    #[arg(long, required_unless_present = "root_trust")]
    pub federation: Option<PathBuf>,
    /// The GFMD root trust file (root-trust.toml): trust the registry versions given with
    /// --registry, verified as a chain from these root keys, instead of a member file.
    #[arg(long, requires = "registry")]
    pub root_trust: Option<PathBuf>,
    /// Registry versions 1, 2, … (DSSE JSON, as `rcpfed registry fetch` writes them), in order.
    #[arg(long, num_args = 1..)]
    pub registry: Vec<PathBuf>,
    /// How many distinct witnesses must have cosigned the checkpoint.
    #[arg(long, default_value_t = 2)]
    pub quorum: usize,
    /// The hub's log key as a C2SP verifier key (name+hash+base64), instead of the hub's key
    /// in the member file.
    #[arg(long)]
    pub log_key: Option<String>,
    /// A witness cosignature key (C2SP verifier key, type 0x04); repeat for each witness.
    /// When given, only these witness keys are trusted, instead of the member file's.
    #[arg(long = "witness-key")]
    pub witness_keys: Vec<String>,
}

/// `rcpfed export …`.
#[derive(Subcommand)]
pub enum ExportCommand {
    /// Fetch a statement with its receipt, a checkpoint and the inclusion proof, and write a
    /// statement bundle that `rcpfed verify` checks offline.
    Bundle(ExportBundleArgs),
    /// Export the observations a query selects as an SDMX 2.0 data message (SDMX-CSV 2.0 or
    /// SDMX-JSON 2.0), streamed to a file (IndicatorService.ExportSdmx).
    Sdmx(crate::query::ExportSdmxArgs),
}

/// Arguments of `rcpfed export bundle`.
#[derive(Args)]
pub struct ExportBundleArgs {
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
    /// Identity to call the hub as (needs the reader role).
    #[arg(long, env = "RCPFED_IDENTITY", default_value = "operator")]
    pub identity: String,
    /// The statement's resource name, "nodes/{node_id}/statements/{seq}".
    #[arg(long)]
    pub statement: String,
    /// Write the bundle here instead of to standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Prove inclusion in the latest checkpoint that reached the witness quorum, instead of
    /// the latest checkpoint.
    #[arg(long = "final")]
    pub final_only: bool,
}

fn read_bundle(path: &Path) -> Result<Bundle> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut text = String::new();
    file.take(MAX_BUNDLE_BYTES + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("reading {}", path.display()))?;
    if text.len() as u64 > MAX_BUNDLE_BYTES {
        bail!(
            "{} is larger than {MAX_BUNDLE_BYTES} bytes; it is not a statement bundle",
            path.display()
        );
    }
    Bundle::from_json(&text).with_context(|| format!("{}", path.display()))
}

/// The federation of the latest registry version, verified as a chain from the root keys.
/// Expiry is not held against it: an offline check of an old statement may well use an old
/// registry.
fn federation_from_registry(trust: &Path, versions: &[PathBuf]) -> Result<Federation> {
    let text = std::fs::read_to_string(trust)
        .with_context(|| format!("reading root trust file {}", trust.display()))?;
    let file = rcpfed_core::registry::RootTrustFile::from_toml(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", trust.display()))?;
    let root = file
        .to_root_set()
        .map_err(|e| anyhow::anyhow!("{}: {e}", trust.display()))?;
    let envelopes = versions
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading registry version {}", p.display()))?;
            crate::registry_cmd::envelope_from_json(&text)
                .with_context(|| format!("registry version {}", p.display()))
        })
        .collect::<Result<Vec<_>>>()?;
    let registry = rcpfed_core::registry::verify_chain(
        &root,
        &file.federation_id,
        &envelopes,
        time::OffsetDateTime::UNIX_EPOCH,
    )
    .map_err(|e| anyhow::anyhow!("the registry versions do not verify from the root keys: {e}"))?;
    println!(
        "trusting registry version {} of {}, verified from {} root keys (threshold {})",
        registry.version,
        registry.federation_id,
        registry.root.keys.len(),
        registry.root.threshold
    );
    registry.to_federation().map_err(|e| anyhow::anyhow!("{e}"))
}

fn load_federation(path: &Path) -> Result<Federation> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading member file {}", path.display()))?;
    Federation::from_toml(&text).with_context(|| format!("member file {}", path.display()))
}

/// The trust anchors: the member file, with the log and witness keys overridden if asked.
fn anchors(args: &VerifyArgs, federation: Federation) -> Result<TrustAnchors> {
    let log = match &args.log_key {
        Some(vkey) => {
            let v = parse_verifier_key(vkey).context("--log-key")?;
            if v.alg != ALG_ED25519 {
                bail!(
                    "--log-key must be an ed25519 note key (type 0x01), not type 0x{:02x}",
                    v.alg
                );
            }
            v
        }
        None => logkeys::log_verifier(&federation).with_context(|| {
            format!(
                "the hub member {} has no key in the member file; pass --log-key",
                federation.hub_id
            )
        })?,
    };
    let witnesses = if args.witness_keys.is_empty() {
        logkeys::witness_verifiers(&federation)
    } else {
        let mut out = Vec::new();
        for vkey in &args.witness_keys {
            let v = parse_verifier_key(vkey).with_context(|| format!("--witness-key {vkey}"))?;
            if v.alg != ALG_COSIGNATURE_V1 {
                bail!(
                    "--witness-key {} must be a cosignature key (type 0x04), not type 0x{:02x}",
                    v.name,
                    v.alg
                );
            }
            // Name the witness by the member that owns the key, if any.
            let label = federation
                .key_owner(&v.key.key_id)
                .map(|(m, _)| m.id.clone())
                .unwrap_or_else(|| v.name.clone());
            out.push((label, v));
        }
        out
    };
    Ok(TrustAnchors {
        federation,
        log,
        witnesses,
        quorum: args.quorum,
    })
}

/// `rcpfed verify`: no network; exit status 0 only if every step passes.
pub fn verify(args: VerifyArgs) -> Result<ExitCode> {
    let federation = match (&args.federation, &args.root_trust) {
        (Some(path), _) => load_federation(path)?,
        (None, Some(trust)) => federation_from_registry(trust, &args.registry)?,
        (None, None) => bail!("give --federation, or --root-trust with --registry"),
    };
    let bundle = read_bundle(&args.bundle)?;
    let t = anchors(&args, federation)?;
    let mut witness_ids: Vec<&str> = t.witnesses.iter().map(|(id, _)| id.as_str()).collect();
    witness_ids.dedup();
    println!(
        "verifying {} against federation {} (log key {}+{}; witnesses {}; quorum {})",
        args.bundle.display(),
        t.federation.federation_id,
        t.log.name,
        hex::encode(t.log.key_hash),
        if witness_ids.is_empty() {
            "none".to_string()
        } else {
            witness_ids.join(", ")
        },
        t.quorum
    );
    let steps = verify_bundle(&bundle, &t);
    for s in &steps {
        println!("{} {}: {}", if s.ok { "✓" } else { "✗" }, s.name, s.detail);
        if s.ok && s.name == STEP_STATEMENT && bundle.receipt.is_none() {
            println!("- {STEP_RECEIPT}: the bundle has no receipt (optional; not checked)");
        }
    }
    let mut all = vec![STEP_STATEMENT_SIGNATURE, STEP_STATEMENT];
    if bundle.receipt.is_some() {
        all.push(STEP_RECEIPT);
    }
    all.extend([STEP_CHECKPOINT_SIGNATURE, STEP_INCLUSION, STEP_WITNESSES]);
    let skipped: Vec<&str> = all
        .into_iter()
        .filter(|name| !steps.iter().any(|s| s.name == *name))
        .collect();
    if all_ok(&steps) {
        println!("verified: every check passed");
        Ok(ExitCode::SUCCESS)
    } else {
        let failed = steps
            .iter()
            .find(|s| !s.ok)
            .map_or("verification", |s| s.name);
        if !skipped.is_empty() {
            println!("not checked: {}", skipped.join(", "));
        }
        println!("NOT verified: the {failed} check failed");
        Ok(ExitCode::FAILURE)
    }
}

/// The note with the same checkpoint text and the most signature lines: the hub may have
/// gathered more cosignatures between the two calls.
fn fuller_checkpoint(a: String, b: String) -> String {
    match (parse_note(&a), parse_note(&b)) {
        (Ok(na), Ok(nb)) if na.text == nb.text && nb.signatures.len() > na.signatures.len() => b,
        _ => a,
    }
}

/// Fetches a statement, the latest (or latest final) checkpoint and the statement's inclusion
/// proof against it, as a bundle that verifies offline.
pub async fn fetch_bundle(
    hub: &mut HubServiceClient<Channel>,
    statement: &str,
    final_only: bool,
) -> Result<(Bundle, v1::GetCheckpointResponse, &'static str)> {
    let logged = fetch_statement(hub, statement).await?;
    let leaf_index = logged.leaf_index;
    let (cp, which) = fetch_checkpoint_including(hub, final_only, leaf_index).await?;
    let (inclusion_proof, proof_checkpoint) =
        fetch_inclusion_proof(hub, logged.envelope.digest(), leaf_index, cp.tree_size).await?;
    let checkpoint = if proof_checkpoint.is_empty() {
        cp.checkpoint.clone()
    } else {
        fuller_checkpoint(cp.checkpoint.clone(), proof_checkpoint)
    };
    let bundle = Bundle {
        federation_id: logged.federation_id,
        envelope: logged.envelope,
        receipt: logged.receipt,
        log: BundleLog {
            leaf_index,
            tree_size: cp.tree_size,
            inclusion_proof,
            checkpoint,
        },
    };
    Ok((bundle, cp, which))
}

/// A statement as the hub logged it.
struct LoggedStatement {
    envelope: SignedEnvelope,
    receipt: Option<SignedEnvelope>,
    /// From the statement's own header.
    federation_id: String,
    leaf_index: u64,
}

/// The statement named `statement`, its receipt and its place in the log.
async fn fetch_statement(
    hub: &mut HubServiceClient<Channel>,
    statement: &str,
) -> Result<LoggedStatement> {
    let record = hub
        .get_statement(v1::GetStatementRequest {
            name: statement.to_string(),
        })
        .await
        .map_err(client::status_error)
        .with_context(|| format!("GetStatement {}", statement))?
        .into_inner()
        .statement
        .context("the hub answered GetStatement without a statement")?;
    let envelope = SignedEnvelope::from_proto(
        record
            .envelope
            .context("the hub's statement record has no envelope")?,
    );
    let receipt = record.receipt.map(SignedEnvelope::from_proto);
    let federation_id = Statement::decode(&envelope.payload)
        .map_err(|e| anyhow::anyhow!("the statement's payload does not decode: {e}"))?
        .header
        .federation_id;
    let Some(leaf_index) = record.feed_index.checked_sub(1) else {
        bail!("the hub's statement record has feed index 0");
    };
    Ok(LoggedStatement {
        envelope,
        receipt,
        federation_id,
        leaf_index,
    })
}

/// The latest (or latest final) checkpoint, which must already include `leaf_index`; with
/// the words that name which one it is.
async fn fetch_checkpoint_including(
    hub: &mut HubServiceClient<Channel>,
    final_only: bool,
    leaf_index: u64,
) -> Result<(v1::GetCheckpointResponse, &'static str)> {
    let cp = hub
        .get_checkpoint(v1::GetCheckpointRequest {
            final_only,
            ..Default::default()
        })
        .await
        .map_err(client::status_error)
        .context("GetCheckpoint")?
        .into_inner();
    let which = if final_only {
        "latest final checkpoint"
    } else {
        "latest checkpoint"
    };
    if cp.tree_size <= leaf_index {
        bail!(
            "the {which} has tree size {}, which does not yet include this statement (leaf {leaf_index}){}",
            cp.tree_size,
            if final_only {
                "; wait until the witnesses cosign a newer checkpoint, or export without --final"
            } else {
                "; try again shortly"
            }
        );
    }
    Ok((cp, which))
}

/// The inclusion proof of the statement with `digest` at `leaf_index` in the tree of
/// `tree_size`: its hashes, and the checkpoint text the hub sent with it (empty if none).
async fn fetch_inclusion_proof(
    hub: &mut HubServiceClient<Channel>,
    digest: rcpfed_core::Digest,
    leaf_index: u64,
    tree_size: u64,
) -> Result<(Vec<Hash>, String)> {
    let proof = hub
        .get_inclusion_proof(v1::GetInclusionProofRequest {
            leaf: Some(v1::get_inclusion_proof_request::Leaf::StatementDigest(
                digest.0.to_vec(),
            )),
            tree_size,
        })
        .await
        .map_err(client::status_error)
        .context("GetInclusionProof")?
        .into_inner()
        .proof
        .context("the hub answered GetInclusionProof without a proof")?;
    if proof.tree_size != tree_size || proof.leaf_index != leaf_index {
        bail!(
            "the hub's inclusion proof is for leaf {} in a tree of size {}, but leaf {leaf_index} in size {tree_size} was asked for",
            proof.leaf_index,
            proof.tree_size,
        );
    }
    let inclusion_proof = proof
        .inclusion_proof
        .iter()
        .enumerate()
        .map(|(i, h)| {
            Hash::try_from(h.as_slice()).map_err(|_| {
                anyhow::anyhow!(
                    "inclusion proof hash {i} from the hub is {} bytes, not 32",
                    h.len()
                )
            })
        })
        .collect::<Result<Vec<Hash>>>()?;
    Ok((inclusion_proof, proof.checkpoint))
}

/// `rcpfed export bundle`.
pub async fn export(command: ExportCommand) -> Result<ExitCode> {
    let args = match command {
        ExportCommand::Bundle(args) => args,
        ExportCommand::Sdmx(args) => return crate::query::export_sdmx(&args).await,
    };
    let tls = client::identity_files(&args.pki, &args.identity)?;
    let mut hub = client::hub_client(&args.hub, "--hub", &tls).await?;

    let (bundle, cp, which) = fetch_bundle(&mut hub, &args.statement, args.final_only).await?;
    let json = bundle.to_json() + "\n";
    match &args.out {
        Some(path) => {
            std::fs::write(path, &json).with_context(|| format!("writing {}", path.display()))?
        }
        None => print!("{json}"),
    }
    eprintln!(
        "exported {}: leaf {} in the {which} (tree size {}, {} cosignatures, quorum {}{}){}",
        args.statement,
        bundle.log.leaf_index,
        cp.tree_size,
        cp.cosignature_count,
        cp.quorum,
        if cp.r#final {
            ", final"
        } else {
            ", not final yet"
        },
        args.out
            .as_ref()
            .map(|p| format!(" to {}", p.display()))
            .unwrap_or_default()
    );

    // A courtesy check against the PKI directory's member file, if there is one.
    let member_file = args.pki.join("federation.toml");
    if member_file.exists() {
        let federation = load_federation(&member_file)?;
        let quorum = usize::try_from(cp.quorum).unwrap_or(usize::MAX);
        match TrustAnchors::from_federation(federation, quorum) {
            Some(t) => {
                let steps = verify_bundle(&bundle, &t);
                match steps.iter().find(|s| !s.ok) {
                    None => eprintln!(
                        "checked: the bundle verifies against {} with quorum {quorum}",
                        member_file.display()
                    ),
                    Some(s) => eprintln!(
                        "warning: against {} the bundle fails the {} check: {}",
                        member_file.display(),
                        s.name,
                        s.detail
                    ),
                }
            }
            None => eprintln!(
                "warning: {} has no hub key; the bundle was not checked",
                member_file.display()
            ),
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;
    use rcpfed_core::checkpoint::{Checkpoint, cosign, cosignature_line, sign_checkpoint};
    use rcpfed_core::envelope::STATEMENT_PAYLOAD_TYPE;
    use rcpfed_core::keys::SecretKey;
    use rcpfed_core::merkle::{MemorySource, inclusion_proof, leaf_hash, root_from_leaves};
    use rcpfed_core::note::{ALG_COSIGNATURE_V1, NoteVerifier};
    use rcpfed_core::receipt::Receipt;

    fn key(pki: &Path, id: &str) -> SecretKey {
        let text = std::fs::read_to_string(pki.join("members").join(id).join("signing.key"))
            .expect("signing key");
        SecretKey::from_file_text(&text).expect("key")
    }

    /// A PKI (member file and keys) and a bundle for colombo's statement at leaf 1 of 3,
    /// cosigned by colombo and midwa.
    fn setup() -> (tempfile::TempDir, PathBuf, Bundle) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let pki = tmp.path().join("pki");
        crate::commands::pki_init(&crate::commands::PkiInitArgs {
            dir: pki.clone(),
            federation: "rcp-federation".into(),
            nodes: vec!["colombo".into(), "abu-dhabi".into(), "midwa".into()],
            operators: vec!["operator".into()],
            hosts: vec!["localhost".into()],
            member_hosts: Vec::new(),
            hub_endpoint: "https://localhost:50051".into(),
            synthetic_nodes: 0,
        })
        .expect("pki init");
        let fed = "rcp-federation";
        let payload = v1::Statement {
            header: Some(v1::StatementHeader {
                federation_id: fed.into(),
                node_id: "colombo".into(),
                seq: 1,
                issued_at: Some(prost_types::Timestamp {
                    seconds: 1_715_940_000,
                    nanos: 0,
                }),
                kind: v1::DocumentKind::PolicySummary as i32,
                schema_version: 1,
                document: "regions/colombo/policies/dhaka".into(),
                revision: 1,
                ..Default::default()
            }),
            body: Some(v1::statement::Body::PolicySummary(v1::PolicySummary {
                title: vec![v1::LocalizedText {
                    language: "en".into(),
                    text: "Dhaka Declaration".into(),
                }],
                status: v1::PolicyStatus::Adopted as i32,
                ..Default::default()
            })),
        }
        .encode_to_vec();
        let envelope = SignedEnvelope::sign(STATEMENT_PAYLOAD_TYPE, payload, &key(&pki, "colombo"));
        let leaves = vec![
            leaf_hash(b"first"),
            envelope.leaf_hash(),
            leaf_hash(b"third"),
        ];
        let src = MemorySource::from_leaves(&leaves);
        let cp = Checkpoint {
            origin: logkeys::log_origin(fed),
            size: 3,
            root: root_from_leaves(&leaves),
            extensions: vec![],
        };
        let hub = key(&pki, "gfmd");
        let mut note = sign_checkpoint(&cp, &cp.origin, &hub).expect("sign");
        for id in ["colombo", "midwa"] {
            let sig = cosign(
                &cp,
                &logkeys::witness_name(fed, id),
                &key(&pki, id),
                1_715_940_100,
            );
            note.push_str(&cosignature_line(&sig));
        }
        let receipt = Receipt {
            federation_id: fed.into(),
            hub_id: "gfmd".into(),
            node_id: "colombo".into(),
            seq: 1,
            statement_digest: envelope.digest(),
            feed_index: 2,
            accepted_at: time::OffsetDateTime::from_unix_timestamp(1_715_940_001).expect("time"),
        }
        .sign(&hub);
        let bundle = Bundle {
            federation_id: fed.into(),
            envelope,
            receipt: Some(receipt),
            log: BundleLog {
                leaf_index: 1,
                tree_size: 3,
                inclusion_proof: inclusion_proof(&src, 1, 3).expect("proof"),
                checkpoint: note,
            },
        };
        (tmp, pki, bundle)
    }

    fn run(tmp: &Path, pki: &Path, bundle: &Bundle, edit: impl Fn(&mut VerifyArgs)) -> ExitCode {
        let path = tmp.join("bundle.json");
        std::fs::write(&path, bundle.to_json()).expect("write");
        let mut args = VerifyArgs {
            bundle: path,
            federation: Some(pki.join("federation.toml")),
            root_trust: None,
            registry: vec![],
            quorum: 2,
            log_key: None,
            witness_keys: vec![],
        };
        edit(&mut args);
        verify(args).expect("verify runs")
    }

    #[test]
    fn verify_command_exit_status() {
        let (tmp, pki, bundle) = setup();
        let dir = tmp.path();
        assert_eq!(run(dir, &pki, &bundle, |_| {}), ExitCode::SUCCESS);
        assert_eq!(run(dir, &pki, &bundle, |a| a.quorum = 3), ExitCode::FAILURE);

        let mut bad = bundle.clone();
        bad.log.inclusion_proof[0][5] ^= 1;
        assert_eq!(run(dir, &pki, &bad, |_| {}), ExitCode::FAILURE);

        // Explicit keys: the right log key passes; only abu-dhabi trusted as a witness fails.
        let hub_vkey = NoteVerifier::new(
            &logkeys::log_origin("rcp-federation"),
            ALG_ED25519,
            key(&pki, "gfmd").verify_key().clone(),
        )
        .expect("vkey")
        .to_vkey();
        let witness_vkey = |id: &str| {
            NoteVerifier::new(
                &logkeys::witness_name("rcp-federation", id),
                ALG_COSIGNATURE_V1,
                key(&pki, id).verify_key().clone(),
            )
            .expect("vkey")
            .to_vkey()
        };
        assert_eq!(
            run(dir, &pki, &bundle, |a| a.log_key = Some(hub_vkey.clone())),
            ExitCode::SUCCESS
        );
        let other_log = NoteVerifier::new(
            &logkeys::log_origin("rcp-federation"),
            ALG_ED25519,
            key(&pki, "colombo").verify_key().clone(),
        )
        .expect("vkey")
        .to_vkey();
        assert_eq!(
            run(dir, &pki, &bundle, |a| a.log_key = Some(other_log.clone())),
            ExitCode::FAILURE
        );
        let (colombo, midwa, abu) = (
            witness_vkey("colombo"),
            witness_vkey("midwa"),
            witness_vkey("abu-dhabi"),
        );
        assert_eq!(
            run(dir, &pki, &bundle, |a| a.witness_keys =
                vec![colombo.clone(), midwa.clone()]),
            ExitCode::SUCCESS
        );
        assert_eq!(
            run(dir, &pki, &bundle, |a| a.witness_keys =
                vec![colombo.clone(), abu.clone()]),
            ExitCode::FAILURE
        );

        // A witness key passed as the log key is refused before anything is checked.
        let path = dir.join("bundle.json");
        let args = VerifyArgs {
            bundle: path.clone(),
            federation: Some(pki.join("federation.toml")),
            root_trust: None,
            registry: vec![],
            quorum: 2,
            log_key: Some(colombo.clone()),
            witness_keys: vec![],
        };
        assert!(verify(args).is_err());
        // A malformed bundle is an error (exit status 1 from main).
        std::fs::write(&path, "{}").expect("write");
        let args = VerifyArgs {
            bundle: path,
            federation: Some(pki.join("federation.toml")),
            root_trust: None,
            registry: vec![],
            quorum: 2,
            log_key: None,
            witness_keys: vec![],
        };
        assert!(verify(args).is_err());
    }

    #[test]
    fn fuller_checkpoint_prefers_more_cosignatures_of_the_same_text() {
        let (_tmp, _pki, bundle) = setup();
        let full = bundle.log.checkpoint.clone();
        let Some(cut) = full.trim_end().rfind('\n') else {
            panic!("no lines");
        };
        let fewer = full[..=cut].to_owned();
        assert_eq!(fuller_checkpoint(fewer.clone(), full.clone()), full);
        assert_eq!(fuller_checkpoint(full.clone(), fewer.clone()), full);
        assert_eq!(fuller_checkpoint(fewer.clone(), "garbage".into()), fewer);
    }
}
