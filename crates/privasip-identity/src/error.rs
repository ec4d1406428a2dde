//! What can go wrong with identities, tokens and keys.

/// An error from this crate. Messages never contain a real ID or key
/// material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The string is not a PrivaSIP token (wrong shape, tag or base64).
    #[error("not a PrivaSIP token: {0}")]
    NotAToken(&'static str),
    /// The token names a scheme this build does not know.
    #[error("unknown PrivaSIP scheme tag {0:?}")]
    UnknownScheme(char),
    /// No key (or, for AES, no user) here matches the token's key id.
    #[error("no key for this token (unknown key id, rotated key, or a replayed AES token)")]
    UnknownKey,
    /// Decryption failed: a forged, altered, truncated or misdirected token,
    /// or one bound to another dialog.
    #[error("token does not decrypt: forged, altered, or for another key or dialog")]
    Forged,
    /// The plaintext inside an authentic token is not a padded ID.
    #[error("decrypted token does not hold a well-formed ID")]
    BadPlaintext,
    /// The ID cannot be encrypted: empty, too long, or not a SIP user part.
    #[error("an ID must be 1-255 bytes with no spaces, controls, '@' or ':'")]
    BadId,
    /// The ID is too long for this scheme's key size.
    #[error("ID too long for this key (RSA-2048 carries at most 127 bytes)")]
    IdTooLong,
    /// A key file or key string could not be read.
    #[error("bad key: {0}")]
    BadKey(String),
    /// The scheme's key does not fit the operation (e.g. a public key given
    /// where a private one is needed).
    #[error("wrong key: {0}")]
    WrongKey(&'static str),
}
