//! Logging set-up: a filter from `RCPFED_LOG` that must parse (a typo such as `degub` is an
//! error at start-up, not silence), text or JSON lines, and colour only on a terminal.

use anyhow::{Result, bail};
use std::io::IsTerminal as _;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (colour only when stderr is a terminal and NO_COLOR is unset).
    #[default]
    Text,
    /// One JSON object per line, for journald, Loki, Elasticsearch and the like.
    Json,
}

const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// Checks a filter the way an operator means it. `tracing`'s own parser accepts any bare word
/// as a target name, so `RCPFED_LOG=degub` would silently filter out everything; here a bare
/// word must be a level, and a `target=level` directive must name a level.
pub fn check_filter(filter: &str) -> Result<()> {
    for directive in filter.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let level = match directive.rsplit_once('=') {
            Some((_, level)) => level,
            None if directive.contains("::") || directive.starts_with("rcpfed") => continue,
            None => directive,
        };
        if !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            let closest = LEVELS
                .iter()
                .min_by_key(|known| {
                    rcpfed_core::suggest::edit_distance(known, &level.to_ascii_lowercase())
                })
                .copied()
                .unwrap_or("info");
            bail!(
                "RCPFED_LOG: {level:?} in {directive:?} is not a log level (did you mean {closest:?}?); \
                 use one of {}, or target=level, e.g. RCPFED_LOG=info,rcpfed_hub=debug",
                LEVELS.join(", ")
            );
        }
    }
    Ok(())
}

/// Installs the global subscriber. `RCPFED_LOG` (default `info`) is checked first.
pub fn init(format: LogFormat) -> Result<()> {
    let filter_text = std::env::var("RCPFED_LOG").unwrap_or_else(|_| "info".to_string());
    check_filter(&filter_text)?;
    let filter = tracing_subscriber::EnvFilter::try_new(&filter_text)
        .map_err(|e| anyhow::anyhow!("RCPFED_LOG={filter_text:?} is not a valid filter: {e}"))?;
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(colour).init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_targets_pass() {
        for ok in [
            "info",
            "DEBUG",
            "warn,rcpfed_hub=debug",
            "rcpfed_node::mirror=trace",
            "rcpfed_grpc",
            "h2=off,info",
            "",
        ] {
            assert!(check_filter(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn a_typo_is_refused_with_the_closest_level() {
        let error = check_filter("degub").err().map(|e| e.to_string());
        assert!(
            error.as_deref().is_some_and(|e| e.contains("\"debug\"")),
            "{error:?}"
        );
        assert!(check_filter("rcpfed_hub=verbose").is_err());
        assert!(check_filter("info,tonic=lots").is_err());
    }
}
