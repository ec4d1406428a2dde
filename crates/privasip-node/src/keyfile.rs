//! Key files on disk: written with mode 0600, refused when anyone but the
//! owner could read a private key.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, Result, bail};
use privasip_identity::{PrivateKey, PublicKey};
use zeroize::Zeroizing;

/// Writes `text` to `path`, creating it with `mode`; refuses to replace an
/// existing file unless `force`.
pub fn write(path: &Path, text: &str, mode: u32, force: bool) -> Result<()> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).mode(mode);
    if force {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    let mut f = opts.open(path).with_context(|| {
        if path.exists() && !force {
            format!("{} exists (use --force to replace it)", path.display())
        } else {
            format!("cannot create {}", path.display())
        }
    })?;
    // create() keeps an old file's mode; make sure of it.
    f.set_permissions(fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set the mode of {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Reads a secret file, refusing one that others can read.
pub fn read_secret(path: &Path) -> Result<Zeroizing<String>> {
    let meta = fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!(
            "{} is readable by others (mode {mode:03o}); a secret must be private: chmod 600 {}",
            path.display(),
            path.display()
        );
    }
    let text =
        fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(Zeroizing::new(text))
}

/// Loads a private key file (`privasip keygen`'s DIR/<scheme>.key).
pub fn read_private(path: &Path) -> Result<PrivateKey> {
    let text = read_secret(path)?;
    PrivateKey::from_text(&text)
        .with_context(|| format!("{} is not a usable private key", path.display()))
}

/// Loads a public key file (DIR/<scheme>.pub).
pub fn read_public(path: &Path) -> Result<PublicKey> {
    let text =
        fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    PublicKey::from_text(&text)
        .with_context(|| format!("{} is not a usable public key", path.display()))
}
