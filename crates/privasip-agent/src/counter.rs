//! The user agent's PrivaSIP-AES counter on disk.
//!
//! Every AES token uses the next value of a counter that doubles as the
//! AES-GCM nonce, so a value must never be used twice under one key: the
//! core asks for the counter to be saved before a token leaves, and this
//! file saves it so that a crash at any instant cannot bring an older
//! value back. The file also holds a fingerprint of the key, so that a new
//! password (a new key, which the proxy starts at 0 as well) starts the
//! counter afresh.
//!
//! Format: one line, `NEXT FINGERPRINT`. A save writes a temporary file,
//! syncs it, renames it over the counter file and syncs the directory:
//! until the directory is synced the rename itself may not survive a
//! crash (ext4, XFS), and the old counter would come back.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

/// What the counter file needs of a filesystem: a trait so that a test
/// can crash it between any two steps.
pub(crate) trait Disk: Send {
    /// The file's contents, or None if there is no such file.
    fn read(&self, path: &Path) -> io::Result<Option<String>>;
    /// Creates or truncates `path` (mode 0600), writes `text` and syncs
    /// the file's data.
    fn write_synced(&mut self, path: &Path, text: &str) -> io::Result<()>;
    /// Renames `from` over `to`.
    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()>;
    /// Syncs the directory `dir` (its entries: a rename in it).
    fn sync_dir(&mut self, dir: &Path) -> io::Result<()>;
}

/// The real filesystem.
struct Os;

impl Disk for Os {
    fn read(&self, path: &Path) -> io::Result<Option<String>> {
        match std::fs::read_to_string(path) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn write_synced(&mut self, path: &Path, text: &str) -> io::Result<()> {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(path)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()
    }

    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn sync_dir(&mut self, dir: &Path) -> io::Result<()> {
        std::fs::File::open(dir)?.sync_all()
    }
}

/// The counter file of one user agent.
pub struct CounterFile {
    path: PathBuf,
    fingerprint: String,
    saved: u64,
    disk: Box<dyn Disk>,
}

impl std::fmt::Debug for CounterFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CounterFile")
            .field("saved", &self.saved)
            .finish_non_exhaustive()
    }
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
        Self::open_on(Box::new(Os), path, secret)
    }

    pub(crate) fn open_on(
        disk: Box<dyn Disk>,
        path: &Path,
        secret: &[u8],
    ) -> Result<(CounterFile, u64)> {
        let fingerprint = fingerprint(secret);
        let text = disk
            .read(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let next = match text {
            Some(text) => {
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
            None => 0,
        };
        let mut file = CounterFile {
            path: path.to_owned(),
            fingerprint,
            saved: next,
            disk,
        };
        file.write(next)?;
        Ok((file, next))
    }

    /// Records that no token uses a counter below `next` any more.
    /// Returns once that survives a crash; a no-op if it already does.
    pub fn save(&mut self, next: u64) -> Result<()> {
        if next != self.saved {
            self.write(next)?;
        }
        Ok(())
    }

    fn write(&mut self, next: u64) -> Result<()> {
        let tmp = self.path.with_extension("tmp");
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        let fail = || format!("cannot write the AES counter to {}", self.path.display());
        let text = format!("{next} {}\n", self.fingerprint);
        self.disk.write_synced(&tmp, &text).with_context(fail)?;
        self.disk.rename(&tmp, &self.path).with_context(fail)?;
        self.disk.sync_dir(&dir).with_context(fail)?;
        self.saved = next;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

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

    /// A filesystem that loses, at a crash, whatever was not synced: a
    /// file's data survives once the file is synced, a name (a new file,
    /// a rename) once its directory is. Each step may be the last before
    /// the crash (`crash_after` counts them).
    #[derive(Default)]
    struct Crashing {
        /// What a reader sees now: name -> contents.
        live: HashMap<PathBuf, String>,
        /// What survives a crash.
        durable: HashMap<PathBuf, String>,
        /// Synced contents whose names are not durable yet.
        synced: HashMap<PathBuf, String>,
        steps: usize,
        crash_after: Option<usize>,
    }

    impl Crashing {
        fn step(&mut self) -> io::Result<()> {
            if self.crash_after.is_some_and(|n| self.steps >= n) {
                return Err(io::Error::other("crashed"));
            }
            self.steps += 1;
            Ok(())
        }

        /// The machine restarts: only what was durable is there.
        fn crash(&mut self) {
            self.live = self.durable.clone();
            self.synced.clear();
            self.crash_after = None;
        }
    }

    /// Shares one crashing disk between the file and the test.
    struct Shared(Arc<Mutex<Crashing>>);

    impl Disk for Shared {
        fn read(&self, path: &Path) -> io::Result<Option<String>> {
            Ok(self.0.lock().expect("lock").live.get(path).cloned())
        }

        fn write_synced(&mut self, path: &Path, text: &str) -> io::Result<()> {
            let mut d = self.0.lock().expect("lock");
            d.step()?;
            d.live.insert(path.to_owned(), text.to_owned());
            d.synced.insert(path.to_owned(), text.to_owned());
            Ok(())
        }

        fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
            let mut d = self.0.lock().expect("lock");
            d.step()?;
            let text = d.live.remove(from).ok_or(io::ErrorKind::NotFound)?;
            d.live.insert(to.to_owned(), text);
            if let Some(t) = d.synced.remove(from) {
                d.synced.insert(to.to_owned(), t);
            }
            Ok(())
        }

        fn sync_dir(&mut self, _dir: &Path) -> io::Result<()> {
            let mut d = self.0.lock().expect("lock");
            d.step()?;
            // The directory's names become durable, with the data synced
            // under them.
            let live = d.live.clone();
            d.durable.retain(|p, _| live.contains_key(p));
            let synced: Vec<(PathBuf, String)> = d.synced.drain().collect();
            for (p, t) in synced {
                if live.get(&p) == Some(&t) {
                    d.durable.insert(p, t);
                }
            }
            Ok(())
        }
    }

    /// Saves counters 1..=6 and crashes after every possible step, then
    /// restarts: the counter a restarted user agent starts from is never
    /// below one whose save returned (so no token's counter, which the
    /// core sends only after its save returned, is ever used again).
    #[test]
    fn no_crash_point_brings_an_older_counter_back() {
        let path = Path::new("/ua/alice.aes-counter");
        let mut crash_points = 0;
        for crash_after in 0.. {
            let disk = Arc::new(Mutex::new(Crashing::default()));
            let open = |d: &Arc<Mutex<Crashing>>| {
                CounterFile::open_on(Box::new(Shared(d.clone())), path, b"key")
            };
            let (mut f, _) = open(&disk).expect("open");
            {
                let mut d = disk.lock().expect("lock");
                d.steps = 0;
                d.crash_after = Some(crash_after);
            }
            let mut acknowledged = 0;
            let mut crashed = false;
            for next in 1..=6 {
                match f.save(next) {
                    Ok(()) => acknowledged = next,
                    Err(_) => {
                        crashed = true;
                        break;
                    }
                }
            }
            disk.lock().expect("lock").crash();
            let (_, start) = open(&disk).expect("reopen after the crash");
            assert!(
                start >= acknowledged,
                "crash after step {crash_after}: restarted at {start}, \
                 but {acknowledged} had been saved"
            );
            if !crashed {
                break;
            }
            crash_points += 1;
        }
        // Three steps a save (write+sync, rename, sync the directory).
        assert_eq!(crash_points, 18);
    }
}
