//! `rcpfed backup` and `rcpfed restore`: a consistent copy of a hub's or node's database taken
//! while it serves, checked before it is reported written; and its return into place, checked
//! again, with the database it replaces kept aside. A hub on PostgreSQL is backed up into the
//! same SQLite file format (a logical copy from one snapshot of the database), and restored
//! from such a file into an empty PostgreSQL database; so a backup also moves a hub between
//! the two stores.

use crate::config::{HubConfig, ListenOverrides, NodeConfig};
use crate::data_dir::{hub_db, lock_data_dir, node_db, restore_marker};
use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};
use rcpfed_store::backup::{
    discard_staged, install_restore, sqlite_backup, sqlite_integrity, stage_restore,
};
use rcpfed_store::{NodeStore as _, SqliteHubStore, SqliteNodeStore};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Which process's database.
#[derive(Subcommand, Debug)]
pub enum BackupCommand {
    /// Back up the hub's database (online: the hub keeps serving).
    Hub(BackupArgs),
    /// Back up a node's database (online: the node keeps serving).
    Node(BackupArgs),
}

/// Which process's database.
#[derive(Subcommand, Debug)]
pub enum RestoreCommand {
    /// Restore the hub's database (the hub must be stopped).
    Hub(RestoreArgs),
    /// Restore a node's database (the node must be stopped).
    Node(RestoreArgs),
}

#[derive(Args, Debug)]
pub struct BackupArgs {
    /// The hub's or node's configuration file (where its database is: `data_dir`).
    #[arg(long, env = "RCPFED_CONFIG")]
    pub config: PathBuf,
    /// Overrides `data_dir` of the configuration.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The backup file to write (must not exist).
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// The hub's or node's configuration file (where its database goes: `data_dir`).
    #[arg(long, env = "RCPFED_CONFIG")]
    pub config: PathBuf,
    /// Overrides `data_dir` of the configuration.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The backup file to restore.
    #[arg(long)]
    pub from: PathBuf,
    /// Restore even though a database is in place (it is kept, renamed, never deleted).
    #[arg(long)]
    pub force: bool,
}

fn overrides(data_dir: &Option<PathBuf>) -> ListenOverrides {
    ListenOverrides {
        data_dir: data_dir.clone(),
        ..ListenOverrides::default()
    }
}

/// `rcpfed backup`.
pub async fn backup(command: BackupCommand) -> Result<ExitCode> {
    tokio::task::spawn_blocking(move || match command {
        BackupCommand::Hub(args) => {
            let config = HubConfig::load(&args.config, &overrides(&args.data_dir))?;
            let bytes = match &config.database_url {
                Some(url) => {
                    let report = rcpfed_store::pg_copy::pg_hub_to_sqlite(url, &args.out)
                        .context("backing up the hub's PostgreSQL database")?;
                    println!(
                        "copied {} rows from PostgreSQL ({})",
                        report.rows(),
                        report
                            .tables
                            .iter()
                            .map(|(t, n)| format!("{t} {n}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                    std::fs::metadata(&args.out)?.len()
                }
                None => {
                    let db = hub_db(&config.data_dir);
                    sqlite_backup(&db, &args.out)
                        .with_context(|| format!("backing up {}", db.display()))?
                }
            };
            let summary = check_hub_file(&config, &args.out)
                .with_context(|| format!("the backup {} does not check", args.out.display()))?;
            println!(
                "hub backup written: {} ({bytes} bytes); {summary}",
                args.out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        BackupCommand::Node(args) => {
            let config = NodeConfig::load(&args.config, &overrides(&args.data_dir))?;
            let db = node_db(&config.data_dir);
            let bytes = sqlite_backup(&db, &args.out)
                .with_context(|| format!("backing up {}", db.display()))?;
            let summary = check_node_file(&args.out)
                .with_context(|| format!("the backup {} does not check", args.out.display()))?;
            println!(
                "node backup written: {} ({bytes} bytes); {summary}",
                args.out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    })
    .await
    .context("backup task panicked")?
}

/// `rcpfed restore`.
pub async fn restore(command: RestoreCommand) -> Result<ExitCode> {
    tokio::task::spawn_blocking(move || {
        // The hub's configuration, to check a hub backup with; None for a node.
        let (role, args, data_dir, hub_config) = match &command {
            RestoreCommand::Hub(args) => {
                let config = HubConfig::load(&args.config, &overrides(&args.data_dir))?;
                if let Some(url) = &config.database_url {
                    return restore_hub_to_postgres(&config, url, &args.from);
                }
                ("hub", args, config.data_dir.clone(), Some(config))
            }
            RestoreCommand::Node(args) => (
                "node",
                args,
                NodeConfig::load(&args.config, &overrides(&args.data_dir))?.data_dir,
                None,
            ),
        };
        let _lock = lock_data_dir(&data_dir, role)?;
        let db = if role == "hub" {
            hub_db(&data_dir)
        } else {
            node_db(&data_dir)
        };
        // Checked as a copy beside the database (the backup is only read), before anything
        // else in the data directory changes; the copy checked is the one put in place.
        let staged = stage_restore(&args.from, &db)
            .with_context(|| format!("copying the backup {}", args.from.display()))?;
        let checked = match &hub_config {
            Some(config) => check_hub_file(config, &staged),
            None => check_node_file(&staged),
        };
        let summary = match checked {
            Ok(summary) => summary,
            Err(e) => {
                discard_staged(&staged);
                return Err(e)
                    .with_context(|| format!("the backup {} does not check", args.from.display()));
            }
        };
        if db.exists() && !args.force {
            discard_staged(&staged);
            bail!(
                "a database is already at {}; nothing changed. Give --force to restore anyway \
                 (the database in place is kept, renamed with the suffix .before-restore-<time>)",
                db.display()
            );
        }
        if role == "node" {
            // Before the database: a crash in between leaves a marker with the old database,
            // which costs one wait for the feed, never a reused sequence number.
            let marker = restore_marker(&data_dir);
            std::fs::write(
                &marker,
                "restored from a backup; removed once the mirror caught up\n",
            )
            .with_context(|| format!("writing {}", marker.display()))?;
        }
        let stamp = time::OffsetDateTime::now_utc().unix_timestamp();
        let aside = install_restore(&staged, &db, &format!(".before-restore-{stamp}"))
            .with_context(|| format!("restoring into {}", db.display()))?;
        if let Some(aside) = aside {
            println!("kept the previous database as {}", aside.display());
        }
        println!("{role} database restored to {}; {summary}", db.display());
        if role == "node" {
            println!(
                "note: the node signs nothing new until its mirror has caught up with the hub's \
                 feed; statements it signed after the backup are taken back from the feed."
            );
        }
        if role == "hub" {
            println!(
                "note: the hub's log now ends where the backup does. Witnesses that cosigned a \
                 larger checkpoint will refuse a different continuation, so restore the latest \
                 backup, and only when the hub's own database is lost (deploy/README.md, Backups)."
            );
        }
        Ok(ExitCode::SUCCESS)
    })
    .await
    .context("restore task panicked")?
}

/// `rcpfed restore hub` for a hub on PostgreSQL: the file is checked, copied into the (empty)
/// database in one transaction, and the database checked again.
fn restore_hub_to_postgres(config: &HubConfig, url: &str, from: &Path) -> Result<ExitCode> {
    // Checked and copied from a copy, so the backup itself is only read.
    let scratch = tempfile::tempdir().context("a scratch directory for the backup's copy")?;
    let staged = stage_restore(from, &scratch.path().join("hub.sqlite"))
        .with_context(|| format!("copying the backup {}", from.display()))?;
    let summary = check_hub_file(config, &staged)
        .with_context(|| format!("the backup {} does not check", from.display()))?;
    println!("backup checked: {summary}");
    let report = rcpfed_store::pg_copy::sqlite_hub_to_pg(&staged, url)
        .context("restoring into the hub's PostgreSQL database")?;
    let store = rcpfed_store::PgHubStore::open(url)?;
    let summary = check_hub_store(config, &store)
        .context("the restored PostgreSQL database does not check")?;
    println!(
        "hub database restored into PostgreSQL ({} rows); {summary}",
        report.rows()
    );
    println!(
        "note: the hub's log now ends where the backup does. Witnesses that cosigned a larger \
         checkpoint will refuse a different continuation, so restore the latest backup, and \
         only when the hub's own database is lost (deploy/README.md, Backups)."
    );
    Ok(ExitCode::SUCCESS)
}

/// Checks a hub database file: SQLite's integrity check, then [`check_hub_store`].
fn check_hub_file(config: &HubConfig, file: &Path) -> Result<String> {
    sqlite_integrity(file)?;
    let store = SqliteHubStore::open(file)?;
    Ok(format!(
        "integrity ok; {}",
        check_hub_store(config, &store)?
    ))
}

/// Checks a hub store: the whole log against its latest checkpoint and the hub's log key from
/// the registry in force (verified from the root keys).
fn check_hub_store(config: &HubConfig, store: &dyn rcpfed_store::HubStore) -> Result<String> {
    let (trust, federation_id) = crate::commands::load_trust(&config.root_trust_file)?;
    let initial = crate::commands::load_registry_file(&config.registry_file)?;
    let loaded = rcpfed_hub::registry::load(store, &trust, &federation_id, &initial)
        .map_err(anyhow::Error::msg)?;
    let federation = loaded.state.registry.to_federation()?;
    let log = rcpfed_core::logkeys::log_verifier(&federation)
        .context("the registry names no hub key to verify checkpoints with")?;
    let check = rcpfed_hub::log::verify_stored_log(store, &log)?;
    Ok(format!(
        "log of {} entries reproduces the latest checkpoint's root {} and its signature verifies ({} witness cosignatures); registry version {}",
        check.size,
        hex::encode(check.root),
        check.cosignatures,
        loaded.state.registry.version
    ))
}

/// Checks a node database file: SQLite's integrity check, then it opens as a node store.
fn check_node_file(file: &Path) -> Result<String> {
    sqlite_integrity(file)?;
    let store = SqliteNodeStore::open(file)?;
    let counts = store.outbox_counts()?;
    let mirrored = store.mirror_cursor()?;
    let witnessed = store.trusted_checkpoint()?.map_or(0, |t| t.size);
    Ok(format!(
        "integrity ok; outbox {} pending, {} delivered, {} refused; mirror {} entries; witnessed log size {}",
        counts.pending, counts.delivered, counts.rejected, mirrored, witnessed
    ))
}
