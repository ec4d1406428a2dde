//! A proxy's identity keys: every private key it serves (several schemes,
//! old and new keys during rotation), its AES users, and the per-dialog
//! cache in front of them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::scheme::aes::AesDirectory;
use crate::{Decryptor, IdCache, IdentityError, KeyId, RealId, SchemeId, Token};

/// Default cache: 100 000 dialogs for 2 hours.
pub const DEFAULT_CACHE_CAPACITY: usize = 100_000;
/// How long a dialog's decrypted ID stays cached by default.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(2 * 3600);

/// What [`Keyring::open`] found.
#[derive(Debug)]
pub struct Opened {
    /// The real ID.
    pub id: RealId,
    /// Whether it came from the cache (no decryption done).
    pub cached: bool,
    /// For an AES token: the user's next acceptable counter, to persist.
    pub aes_next_counter: Option<u64>,
}

/// Opens tokens addressed to this proxy. The work per token does not grow
/// with the number of users or keys: one cache lookup, else one key lookup
/// by (scheme, key id) and one decryption.
pub struct Keyring {
    keys: HashMap<(SchemeId, KeyId), Box<dyn Decryptor>>,
    aes: AesDirectory,
    /// AES users whose counter moved since the last
    /// [`Keyring::take_aes_counters`].
    aes_moved: Vec<(RealId, u64)>,
    cache: IdCache,
}

impl Default for Keyring {
    fn default() -> Self {
        Keyring::new(DEFAULT_CACHE_CAPACITY, DEFAULT_CACHE_TTL)
    }
}

impl Keyring {
    /// An empty keyring with a cache of `capacity` dialogs kept `ttl`.
    pub fn new(capacity: usize, ttl: Duration) -> Keyring {
        Keyring {
            keys: HashMap::new(),
            aes: AesDirectory::default(),
            aes_moved: Vec::new(),
            cache: IdCache::new(capacity, ttl),
        }
    }

    /// Adds a private key. Returns false if a key with that id was there
    /// already (it is replaced).
    pub fn add_key(&mut self, key: Box<dyn Decryptor>) -> bool {
        self.keys
            .insert((key.scheme(), key.key_id()), key)
            .is_none()
    }

    /// The schemes this keyring can open (AES if any AES user is known).
    pub fn schemes(&self) -> Vec<SchemeId> {
        let mut s: Vec<SchemeId> = self.keys.keys().map(|(s, _)| *s).collect();
        if !self.aes.is_empty() {
            s.push(SchemeId::Aes);
        }
        s.sort();
        s.dedup();
        s
    }

    /// The AES users, to add and remove them.
    pub fn aes_mut(&mut self) -> &mut AesDirectory {
        &mut self.aes
    }

    /// Opens `token` (a token string from a SIP message) bound to
    /// `context` (the message's Call-ID).
    pub fn open(
        &mut self,
        token: &str,
        context: &[u8],
        now: Instant,
    ) -> Result<Opened, IdentityError> {
        if let Some(id) = self.cache.get(token, context, now) {
            return Ok(Opened {
                id,
                cached: true,
                aes_next_counter: None,
            });
        }
        let parsed = Token::parse(token)?;
        let (id, aes_next_counter) = match parsed.scheme {
            SchemeId::Aes => {
                let o = self.aes.open(&parsed, context)?;
                self.aes_moved.push((o.id.clone(), o.next_counter));
                (o.id, Some(o.next_counter))
            }
            _ => (self.key_for(&parsed)?.open(&parsed, context)?, None),
        };
        self.cache.insert(token, context, id.clone(), now);
        Ok(Opened {
            id,
            cached: false,
            aes_next_counter,
        })
    }

    /// The ID of a token this keyring opened for `context` before and
    /// still caches: no decryption.
    pub fn cached(&mut self, token: &str, context: &[u8], now: Instant) -> Option<RealId> {
        self.cache.get(token, context, now)
    }

    /// What can be known of `token` without decrypting: it parses, and a
    /// key of ours (or PrivaSIP-AES) could open it. A proxy checks this
    /// before spending public-key work on a token anyone could have sent.
    pub fn precheck(&self, token: &str) -> Result<(), IdentityError> {
        let parsed = Token::parse(token)?;
        if parsed.scheme != SchemeId::Aes {
            self.key_for(&parsed)?;
        }
        Ok(())
    }

    /// The key of ours a public-key token names.
    fn key_for(&self, parsed: &Token) -> Result<&dyn Decryptor, IdentityError> {
        let kid = KeyId(
            parsed
                .key_id
                .as_slice()
                .try_into()
                .map_err(|_| IdentityError::UnknownKey)?,
        );
        self.keys
            .get(&(parsed.scheme, kid))
            .map(|k| k.as_ref())
            .ok_or(IdentityError::UnknownKey)
    }

    /// The AES users whose next acceptable counter moved, with the new
    /// value, since the last call: persist them, so that after a restart
    /// a used token does not open again.
    pub fn take_aes_counters(&mut self) -> Vec<(RealId, u64)> {
        std::mem::take(&mut self.aes_moved)
    }

    /// Forgets a dialog's cached ID (after BYE).
    pub fn forget(&mut self, token: &str, context: &[u8]) {
        self.cache.remove(token, context);
    }
}
