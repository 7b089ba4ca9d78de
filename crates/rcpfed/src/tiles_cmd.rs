//! `rcpfed tiles write`: the hub's log as a C2SP tlog-tiles directory (checkpoint, hash tiles,
//! entry bundles) that any static web server, object store or CDN can serve under a prefix.

use crate::config::{HubConfig, ListenOverrides};
use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};
use rcpfed_store::SqliteHubStore;
use std::path::PathBuf;
use std::process::ExitCode;

/// `rcpfed tiles …`.
#[derive(Subcommand)]
pub enum TilesCommand {
    /// Write (or bring up to date) the log as tlog-tiles files in a directory. Reads the hub's
    /// database, also while the hub runs; only what is new since the directory's checkpoint
    /// is written, and the checkpoint last.
    Write(WriteArgs),
}

/// Arguments of `rcpfed tiles write`.
#[derive(Args)]
pub struct WriteArgs {
    /// The hub's configuration file: the database is `hub.sqlite` in its `data_dir`.
    #[arg(long, env = "RCPFED_CONFIG", conflicts_with = "db")]
    pub config: Option<PathBuf>,
    /// The hub's database file, instead of --config.
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// The directory to write: `checkpoint` and `tile/…` go directly in it, so serve it as
    /// the log's prefix.
    #[arg(long)]
    pub dir: PathBuf,
}

/// Runs `rcpfed tiles …`.
pub fn run(command: TilesCommand) -> Result<ExitCode> {
    let TilesCommand::Write(args) = command;
    let db = match (&args.config, &args.db) {
        (_, Some(db)) => db.clone(),
        (Some(config), None) => {
            crate::data_dir::hub_db(&HubConfig::load(config, &ListenOverrides::default())?.data_dir)
        }
        (None, None) => bail!("name the hub's database: --config hub.toml or --db hub.sqlite"),
    };
    // Opening a missing file would create an empty database.
    if !db.is_file() {
        bail!("the hub database {} does not exist", db.display());
    }
    let store = SqliteHubStore::open(&db)
        .with_context(|| format!("opening the hub database {}", db.display()))?;
    let started = std::time::Instant::now();
    let summary = rcpfed_hub::tiles::write_dir(&store, &args.dir)?;
    for skipped in &summary.skipped {
        eprintln!("warning: not written: {skipped}");
    }
    println!(
        "{}: tree size {} (was {}): {} tiles and entry bundles written ({} bytes) and the checkpoint, in {:.2} s",
        args.dir.display(),
        summary.tree_size,
        summary.old_size,
        summary.tiles_written,
        summary.bytes_written,
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}
