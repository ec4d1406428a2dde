//! PrivaSIP-AES: the caller's ID encrypted under a key only the caller and
//! the home proxy hold, derived from the secret they already share for
//! Digest (the user's SHA-256 HA1).
//!
//! A symmetric token must tell the proxy *whose* key opens it without
//! naming the user, and without the proxy trying every user's key. Each
//! token therefore carries a one-time index:
//!
//! ```text
//! K_index, K_enc = HKDF-SHA256(salt = "privasip aes v1", ikm = secret,
//!                              info = "index" / "encrypt")
//! index(c)   = HMAC-SHA256(K_index, c)[..16]      c = the user's counter
//! ciphertext = AES-256-GCM(K_enc, nonce = c, padded ID, aad)
//! ```
//!
//! The proxy keeps, for every user, the indexes of the next few counters in
//! a hash table ([`AesDirectory`]), so finding the user is one lookup.
//! Indexes are pseudo-random and used once: two tokens of one user cannot
//! be linked, and a used token opens nothing a second time. The window
//! (default 8) tolerates tokens that never reached the proxy.

use std::collections::HashMap;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand_core::CryptoRngCore;
use sha2::Sha256;
use zeroize::Zeroizing;

use super::Encryptor;
use crate::{IdentityError, RealId, SchemeId, Token};

const INDEX_LEN: usize = 16;
/// How many future counters per user the proxy recognises by default.
pub const DEFAULT_WINDOW: u64 = 8;

type Index = [u8; INDEX_LEN];

/// The two keys derived from a user's shared secret.
struct AesKeys {
    index: Zeroizing<[u8; 32]>,
    enc: Zeroizing<[u8; 32]>,
}

impl AesKeys {
    fn derive(secret: &[u8]) -> AesKeys {
        let hk = Hkdf::<Sha256>::new(Some(b"privasip aes v1"), secret);
        let mut index = Zeroizing::new([0u8; 32]);
        let mut enc = Zeroizing::new([0u8; 32]);
        hk.expand(b"index", index.as_mut())
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        hk.expand(b"encrypt", enc.as_mut())
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        AesKeys { index, enc }
    }

    fn index(&self, counter: u64) -> Index {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.index.as_ref())
            .expect("HMAC takes a key of any length");
        mac.update(&counter.to_be_bytes());
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; INDEX_LEN];
        out.copy_from_slice(&full[..INDEX_LEN]);
        out
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(self.enc.as_ref().into())
    }
}

/// The counter is unique per key, so it is a safe GCM nonce.
fn nonce(counter: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_be_bytes());
    n
}

/// The user agent's side: its own secret and the next counter to use.
/// Persist [`AesSender::next_counter`] after each token, or the proxy will
/// stop recognising tokens once the window is exhausted.
pub struct AesSender {
    keys: AesKeys,
    next: u64,
}

impl AesSender {
    /// From the secret shared with the home proxy (the SHA-256 HA1 bytes)
    /// and the counter to start at.
    pub fn new(secret: &[u8], next_counter: u64) -> AesSender {
        AesSender {
            keys: AesKeys::derive(secret),
            next: next_counter,
        }
    }

    /// The counter the next token will use.
    pub fn next_counter(&self) -> u64 {
        self.next
    }
}

impl Encryptor for AesSender {
    fn scheme(&self) -> SchemeId {
        SchemeId::Aes
    }

    fn seal(
        &mut self,
        id: &RealId,
        context: &[u8],
        _rng: &mut dyn CryptoRngCore,
    ) -> Result<Token, IdentityError> {
        let c = self.next;
        self.next = c
            .checked_add(1)
            .ok_or(IdentityError::WrongKey("AES counter exhausted"))?;
        let index = self.keys.index(c);
        let aad = Token::aad(SchemeId::Aes, &index, context);
        let padded = id.pad();
        let ciphertext = self
            .keys
            .cipher()
            .encrypt(
                Nonce::from_slice(&nonce(c)),
                Payload {
                    msg: &padded,
                    aad: &aad,
                },
            )
            .map_err(|_| IdentityError::WrongKey("AES-GCM refused the plaintext"))?;
        Ok(Token {
            scheme: SchemeId::Aes,
            key_id: index.to_vec(),
            ciphertext,
        })
    }

    fn next_counter(&self) -> Option<u64> {
        Some(self.next)
    }
}

struct Slot {
    id: RealId,
    keys: AesKeys,
    /// The lowest counter still accepted.
    next: u64,
}

/// What opening an AES token tells the proxy.
#[derive(Debug)]
pub struct AesOpened {
    /// Whose token it was.
    pub id: RealId,
    /// The user's next acceptable counter: persist it, so a restart does
    /// not accept this token again.
    pub next_counter: u64,
}

/// The home proxy's side: every AES user's keys and the index table.
pub struct AesDirectory {
    window: u64,
    slots: HashMap<u64, Slot>,
    by_user: HashMap<String, u64>,
    by_index: HashMap<Index, (u64, u64)>,
    next_slot: u64,
}

impl Default for AesDirectory {
    fn default() -> Self {
        AesDirectory::new(DEFAULT_WINDOW)
    }
}

impl AesDirectory {
    /// An empty directory that accepts `window` counters ahead per user.
    pub fn new(window: u64) -> AesDirectory {
        AesDirectory {
            window: window.max(1),
            slots: HashMap::new(),
            by_user: HashMap::new(),
            by_index: HashMap::new(),
            next_slot: 0,
        }
    }

    /// How many users are in the directory.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether the directory is empty.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Adds (or replaces) a user with their shared secret and the lowest
    /// counter to accept; a user already here with the same secret keeps
    /// the higher of the two counters. Costs `window` HMACs.
    pub fn add_user(&mut self, id: RealId, secret: &[u8], next_counter: u64) {
        let keys = AesKeys::derive(secret);
        let next_counter = match self.slot_of(&id) {
            Some(s) if *s.keys.enc == *keys.enc => s.next.max(next_counter),
            _ => next_counter,
        };
        self.insert(id, keys, next_counter);
    }

    /// Raises a user's lowest accepted counter to `next` (their token was
    /// seen elsewhere, e.g. by another proxy sharing the store); never
    /// lowers it. False if the user is not here.
    pub fn raise(&mut self, id: &RealId, next: u64) -> bool {
        let Some(s) = self.slot_of(id) else {
            return false;
        };
        if s.next < next {
            let keys = AesKeys {
                index: s.keys.index.clone(),
                enc: s.keys.enc.clone(),
            };
            self.insert(id.clone(), keys, next);
        }
        true
    }

    fn slot_of(&self, id: &RealId) -> Option<&Slot> {
        self.slots.get(self.by_user.get(id.expose())?)
    }

    fn insert(&mut self, id: RealId, keys: AesKeys, next_counter: u64) {
        self.remove_user(&id);
        let slot = self.next_slot;
        self.next_slot += 1;
        for c in next_counter..next_counter.saturating_add(self.window) {
            self.by_index.insert(keys.index(c), (slot, c));
        }
        self.by_user.insert(id.expose().to_owned(), slot);
        self.slots.insert(
            slot,
            Slot {
                id,
                keys,
                next: next_counter,
            },
        );
    }

    /// Removes a user; their tokens stop opening.
    pub fn remove_user(&mut self, id: &RealId) -> bool {
        let Some(slot) = self.by_user.remove(id.expose()) else {
            return false;
        };
        if let Some(s) = self.slots.remove(&slot) {
            for c in s.next..s.next.saturating_add(self.window) {
                self.by_index.remove(&s.keys.index(c));
            }
        }
        true
    }

    /// Opens a token: one table lookup, one AES-GCM decryption. A token
    /// whose index is unknown (never issued, or already used) fails with
    /// [`IdentityError::UnknownKey`]; an altered one with
    /// [`IdentityError::Forged`], without using up the index.
    pub fn open(&mut self, token: &Token, context: &[u8]) -> Result<AesOpened, IdentityError> {
        if token.scheme != SchemeId::Aes {
            return Err(IdentityError::WrongKey("token is for another scheme"));
        }
        let index: Index = token
            .key_id
            .as_slice()
            .try_into()
            .map_err(|_| IdentityError::UnknownKey)?;
        let &(slot_no, c) = self.by_index.get(&index).ok_or(IdentityError::UnknownKey)?;
        let slot = self
            .slots
            .get_mut(&slot_no)
            .expect("every index entry points at a live slot");
        let aad = Token::aad(SchemeId::Aes, &index, context);
        let padded = Zeroizing::new(
            slot.keys
                .cipher()
                .decrypt(
                    Nonce::from_slice(&nonce(c)),
                    Payload {
                        msg: &token.ciphertext,
                        aad: &aad,
                    },
                )
                .map_err(|_| IdentityError::Forged)?,
        );
        let id = RealId::unpad(&padded)?;
        if id != slot.id {
            // Authentic under this user's key but naming someone else: the
            // user's own software is broken or hostile. Not theirs to claim.
            return Err(IdentityError::Forged);
        }
        // Slide the window past c: everything up to c is used up.
        let old_end = slot.next.saturating_add(self.window);
        for used in slot.next..=c {
            self.by_index.remove(&slot.keys.index(used));
        }
        slot.next = c.saturating_add(1);
        let new_end = slot.next.saturating_add(self.window);
        for fresh in old_end.max(slot.next)..new_end {
            self.by_index
                .insert(slot.keys.index(fresh), (slot_no, fresh));
        }
        Ok(AesOpened {
            id,
            next_counter: slot.next,
        })
    }
}
