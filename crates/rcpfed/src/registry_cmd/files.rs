//! Files: written new (never over an existing one) or replaced atomically; keys and the root
//! trust file read.

use super::json::describe;
use anyhow::{Context as _, Result, anyhow};
use rcpfed_core::keys::SecretKey;
use rcpfed_core::registry::{RootSet, RootTrustFile};
use std::path::Path;
use time::OffsetDateTime;
/// Creates `path` (refusing to overwrite) with `text`; secret files get mode 0600.
pub(super) fn write_new(path: &Path, text: &str, secret: bool) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    if secret {
        options.mode(0o600);
    }
    let mut f = options
        .open(path)
        .with_context(|| format!("cannot create {} (it must not exist yet)", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    f.sync_all()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Replaces `path` with `text` atomically (write a sibling file, then rename).
pub(super) fn write_replace(path: &Path, text: &str) -> Result<()> {
    let mut tmp_name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let _ = std::fs::remove_file(&tmp);
    write_new(&tmp, text, false)?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))
}

pub(super) fn load_secret_key(path: &Path) -> Result<SecretKey> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading key {}", path.display()))?;
    SecretKey::from_file_text(&text).with_context(|| format!("key {}", path.display()))
}

pub(super) fn load_trust(path: &Path) -> Result<(RootTrustFile, RootSet)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading root trust file {}", path.display()))?;
    let file = RootTrustFile::from_toml(&text)
        .map_err(|e| anyhow!("{}: {}", path.display(), describe(&e)))?;
    let root = file
        .to_root_set()
        .map_err(|e| anyhow!("{}: {}", path.display(), describe(&e)))?;
    Ok((file, root))
}

pub(super) fn now_seconds() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(0).unwrap_or(now)
}
