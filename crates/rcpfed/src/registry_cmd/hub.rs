//! `publish` to and `fetch` from the hub.

use super::draft_file::rfc3339;
use super::files::{load_trust, write_new};
use super::json::{describe, envelope_to_json, read_envelope, registry_of};
use super::{FetchArgs, HubArgs, PublishArgs};

use crate::client;
use anyhow::{Context as _, Result, anyhow, bail};
use rcpfed_core::envelope::SignedEnvelope;
use rcpfed_proto::v1 as pb;
use std::path::Path;
use std::process::ExitCode;
use time::OffsetDateTime;
pub(super) async fn hub_client(
    args: &HubArgs,
) -> Result<pb::hub_service_client::HubServiceClient<tonic::transport::Channel>> {
    let tls = client::identity_files(&args.pki, &args.identity)?;
    client::hub_client(&args.hub, "--hub", &tls).await
}

pub(super) async fn publish(args: &PublishArgs) -> Result<ExitCode> {
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
pub(super) fn write_or_match(path: &Path, text: &str) -> Result<bool> {
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

pub(super) async fn fetch(args: &FetchArgs, now: OffsetDateTime) -> Result<ExitCode> {
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
