//! The schemes behind one pair of traits, so that a proxy can accept
//! several at once and keys can rotate: [`Encryptor`] for the side that
//! hides an ID (the user agent), [`Decryptor`] for the proxy that may read
//! it.

pub(crate) mod aes;
pub(crate) mod ecies;
pub(crate) mod hpke;
pub(crate) mod rsa;

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use rand_core::CryptoRngCore;
use sha2::{Digest, Sha256};

use crate::{IdentityError, RealId, SchemeId, Token};

/// Names a public key: the first 6 bytes of
/// `SHA-256("privasip key id v1" || scheme tag || public key bytes)`.
/// Public, like the key; the same for every user of a domain, so it links
/// nothing.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 6]);

impl KeyId {
    pub(crate) fn of(scheme: SchemeId, public_key: &[u8]) -> KeyId {
        let mut h = Sha256::new();
        h.update(b"privasip key id v1");
        h.update([scheme.tag() as u8]);
        h.update(public_key);
        let d = h.finalize();
        let mut id = [0u8; 6];
        id.copy_from_slice(&d[..6]);
        KeyId(id)
    }

    /// Parses the base64url form shown by `privasip keygen`.
    pub fn parse(s: &str) -> Option<KeyId> {
        let v = B64.decode(s).ok()?;
        Some(KeyId(v.try_into().ok()?))
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&B64.encode(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// Hides IDs: what a user agent holds for each proxy it encrypts to.
pub trait Encryptor: Send + Sync {
    /// The scheme of the tokens made.
    fn scheme(&self) -> SchemeId;

    /// Encrypts `id`, bound to `context` (the dialog's Call-ID): a token
    /// moved to another dialog does not decrypt. Every call gives a fresh,
    /// unlinkable token of the same length for every ID up to 63 bytes;
    /// within a dialog, keep and reuse the first one.
    fn seal(
        &mut self,
        id: &RealId,
        context: &[u8],
        rng: &mut dyn CryptoRngCore,
    ) -> Result<Token, IdentityError>;

    /// For a scheme with a counter (AES): the counter the next token will
    /// use. Persist it before sending a token, so a restart never reuses
    /// one. None for the public-key schemes.
    fn next_counter(&self) -> Option<u64> {
        None
    }
}

/// Reads IDs: what a proxy holds for each private key it serves.
pub trait Decryptor: Send + Sync {
    /// The scheme this key opens.
    fn scheme(&self) -> SchemeId;

    /// The key's id, as tokens carry it.
    fn key_id(&self) -> KeyId;

    /// Decrypts a token made for this key and `context`. Forged, altered,
    /// truncated and misbound tokens all fail with
    /// [`IdentityError::Forged`].
    fn open(&self, token: &Token, context: &[u8]) -> Result<RealId, IdentityError>;
}

/// Checks a token's scheme and key id against a decryptor's.
pub(crate) fn check_addressed(d: &dyn Decryptor, token: &Token) -> Result<(), IdentityError> {
    if token.scheme != d.scheme() {
        return Err(IdentityError::WrongKey("token is for another scheme"));
    }
    if token.key_id != d.key_id().0 {
        return Err(IdentityError::UnknownKey);
    }
    Ok(())
}
