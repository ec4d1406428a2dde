//! The user agent's PrivaSIP-AES counter on disk.
//!
//! Every AES token uses the next value of a counter that doubles as the
//! AES-GCM nonce, so a value must never be used twice under one key: the
//! counter is written (and synced) before a token leaves. The file also
//! holds a fingerprint of the key, so that a new password (a new key,
//! which the proxy starts at 0 as well) starts the counter afresh.
//!
//! Format: one line, `NEXT FINGERPRINT`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

/// The counter file of one user agent.
pub struct CounterFile {
    path: PathBuf,
    fingerprint: String,
    saved: u64,
}

/// Names the key without revealing it (the file sits next to the
/// password anyway).
fn fingerprint(secret: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(b"privasip aes counter file v1");
    h.update(secret);
    hex::encode(&h.finalize()[..8])
}

impl CounterFile {
    /// Opens (or starts) the counter at `path` for the key from `secret`
    /// (the SHA-256 HA1 in hex); returns it and the counter to start at.
    pub fn open(path: &Path, secret: &[u8]) -> Result<(CounterFile, u64)> {
        let fingerprint = fingerprint(secret);
        let next = match std::fs::read_to_string(path) {
            Ok(text) => {
                let mut parts = text.split_whitespace();
                let (Some(n), Some(fp), None) = (parts.next(), parts.next(), parts.next()) else {
                    bail!(
                        "{} is not a PrivaSIP-AES counter file (\"NEXT FINGERPRINT\")",
                        path.display()
                    );
                };
                let n: u64 = n
                    .parse()
                    .with_context(|| format!("{}: bad counter {n:?}", path.display()))?;
                if fp == fingerprint {
                    n
                } else {
                    tracing::warn!(
                        "the password changed, so the AES key did: its counter starts at 0"
                    );
                    0
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let mut file = CounterFile {
            path: path.to_owned(),
            fingerprint,
            saved: next,
        };
        file.write(next)?;
        Ok((file, next))
    }

    /// Records that the next token uses `next`. Returns once it is on
    /// disk; a no-op if it is already.
    pub fn save(&mut self, next: u64) -> Result<()> {
        if next != self.saved {
            self.write(next)?;
        }
        Ok(())
    }

    fn write(&mut self, next: u64) -> Result<()> {
        let tmp = self.path.with_extension("tmp");
        let fail = || format!("cannot write the AES counter to {}", self.path.display());
        {
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            let mut f = opts.open(&tmp).with_context(fail)?;
            writeln!(f, "{next} {}", self.fingerprint).with_context(fail)?;
            f.sync_all().with_context(fail)?;
        }
        std::fs::rename(&tmp, &self.path).with_context(fail)?;
        self.saved = next;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counter_survives_and_restarts_with_a_new_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("alice.aes-counter");
        let (mut f, next) = CounterFile::open(&path, b"key one").expect("open");
        assert_eq!(next, 0);
        f.save(5).expect("save");
        let (_, next) = CounterFile::open(&path, b"key one").expect("reopen");
        assert_eq!(next, 5);
        let (_, next) = CounterFile::open(&path, b"key two").expect("new key");
        assert_eq!(next, 0);
        std::fs::write(&path, "garbage").expect("write");
        assert!(CounterFile::open(&path, b"key two").is_err());
    }
}
