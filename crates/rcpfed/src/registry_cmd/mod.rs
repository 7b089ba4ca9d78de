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
//!
//! Layout: [`json`] (DSSE JSON on disk), [`draft_file`] (the TOML draft), [`files`],
//! [`bootstrap`] (used by `rcpfed pki init`), [`edit`] (draft, build, sign), [`show`], [`hub`]
//! (publish, fetch); this file holds the subcommands and their arguments.

mod bootstrap;
mod draft_file;
mod edit;
mod files;
mod hub;
mod json;
mod show;
#[cfg(test)]
mod tests;

pub use bootstrap::{create_first_version, create_root_keys};
pub use hub::fetch_versions;
pub use json::{describe, envelope_from_json};

use anyhow::Result;
use clap::{Args, Subcommand};
use edit::{build, draft, sign};
use files::now_seconds;
use hub::{fetch, publish};
use show::show;
use std::path::PathBuf;
use std::process::ExitCode;
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
