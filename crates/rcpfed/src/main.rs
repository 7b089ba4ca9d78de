//! `rcpfed`: one binary for the GFMD hub, regional nodes, PKI set-up, publishing and the demo.

mod backup;
mod client;
mod commands;
mod config;
mod data_dir;
mod delivery;
mod demo;
mod logging;
mod pbjson;
mod publish;
mod query;
mod registry_cmd;
mod report;
mod table;
mod tiles_cmd;
mod verify;
mod view;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "rcpfed",
    version,
    about = "Federation of the Regional Consultative Processes on migration and the GFMD: signed policy summaries and indicator snapshots over mTLS gRPC"
)]
struct Cli {
    /// Log line format on stderr: text (colour only on a terminal) or json (one object per
    /// line). The filter comes from RCPFED_LOG (default info); an invalid filter is an error.
    #[arg(
        long,
        global = true,
        value_enum,
        env = "RCPFED_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: logging::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the GFMD hub.
    Hub(commands::ServeArgs),
    /// Run a regional node.
    Node(commands::ServeArgs),
    /// Create and manage the federation PKI.
    Pki {
        #[command(subcommand)]
        command: commands::PkiCommand,
    },
    /// Write a new Ed25519 statement signing key.
    Keygen {
        /// Where to write the secret key (mode 0600; refuses to overwrite).
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign and publish a document through a node.
    Publish(commands::PublishArgs),
    /// Start a hub and three regional nodes on loopback and exchange the bundled sample data.
    Demo(demo::DemoArgs),
    /// Verify a statement bundle offline: signature, receipt, checkpoint, inclusion, witnesses.
    Verify(verify::VerifyArgs),
    /// Query indicator observations across all regions (hub or a node's mirror).
    Query {
        #[command(subcommand)]
        command: query::QueryCommand,
    },
    /// Read the hub's signed reports (verified before printing).
    Report {
        #[command(subcommand)]
        command: report::ReportCommand,
    },
    /// Export verifiable data (statement bundles) and SDMX data messages from the hub.
    Export {
        #[command(subcommand)]
        command: verify::ExportCommand,
    },
    /// Back up a hub's or node's database while it serves (checked before it is reported written).
    Backup {
        #[command(subcommand)]
        command: backup::BackupCommand,
    },
    /// Put a backup in place of a stopped hub's or node's database (checked first; the
    /// database it replaces is kept).
    Restore {
        #[command(subcommand)]
        command: backup::RestoreCommand,
    },
    /// Publish the hub's log as C2SP tlog-tiles files for a static web server or CDN.
    Tiles {
        #[command(subcommand)]
        command: tiles_cmd::TilesCommand,
    },
    /// Draft, build, sign (offline), inspect, publish and fetch threshold-signed registry versions.
    Registry {
        #[command(subcommand)]
        command: registry_cmd::RegistryCommand,
    },
}

fn main() -> std::process::ExitCode {
    // One crypto provider for the whole process, installed before anything touches TLS.
    if rustls::crypto::ring::default_provider()
        .install_default()
        .is_err()
    {
        eprintln!("error: a rustls crypto provider was already installed");
        return std::process::ExitCode::FAILURE;
    }
    let cli = Cli::parse();
    if let Err(e) = logging::init(cli.log_format) {
        eprintln!("error: {e:#}");
        return std::process::ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<std::process::ExitCode> {
    match cli.command {
        Command::Hub(args) => commands::run_hub(args).await,
        Command::Node(args) => commands::run_node(args).await,
        Command::Pki { command } => commands::pki(command),
        Command::Keygen { out } => commands::keygen(&out),
        Command::Publish(args) => commands::publish(args).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Verify(args) => verify::verify(args),
        Command::Query { command } => query::run(command).await,
        Command::Report { command } => report::run(command).await,
        Command::Export { command } => verify::export(command).await,
        Command::Registry { command } => registry_cmd::run(command).await,
        Command::Backup { command } => backup::backup(command).await,
        Command::Restore { command } => backup::restore(command).await,
        Command::Tiles { command } => tiles_cmd::run(command),
    }
}
