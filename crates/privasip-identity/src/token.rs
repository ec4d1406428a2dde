//! The token that stands in a SIP message where a real ID would:
//!
//! ```text
//! token   = "ps1" scheme "." key-id "." ciphertext
//! scheme  = "a" / "r" / "e" / "h"        ; AES, RSA, ECIES, HPKE
//! key-id  = base64url                    ; which key (AES: which user slot)
//! ciphertext = base64url                 ; no padding characters
//! ```
//!
//! Every character is unreserved in a SIP URI user part (RFC 3261 §25.1)
//! and allowed in a quoted Digest `username`, so the same token goes into
//! From, To, the Request-URI and Authorization unchanged.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

use crate::IdentityError;

/// Token format version, the "1" in "ps1".
const PREFIX: &str = "ps1";
/// Longest token accepted (RSA-3072 is ~530 characters).
pub const MAX_TOKEN_LEN: usize = 1024;

/// An identity-protection scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SchemeId {
    /// AES-256-GCM under a key derived from the secret the user shares with
    /// the home proxy (PrivaSIP-1 only: nobody else holds that secret).
    Aes,
    /// RSA-OAEP-SHA256 to a proxy's public key.
    Rsa,
    /// ECIES: P-256 ECDH, HKDF-SHA256, AES-256-GCM, to a proxy's public key.
    Ecies,
    /// HPKE (RFC 9180) base mode, X25519 + HKDF-SHA256 + ChaCha20-Poly1305.
    Hpke,
}

impl SchemeId {
    /// Every scheme, in tag order.
    pub const ALL: [SchemeId; 4] = [
        SchemeId::Aes,
        SchemeId::Rsa,
        SchemeId::Ecies,
        SchemeId::Hpke,
    ];

    /// The one-letter tag in tokens.
    pub fn tag(self) -> char {
        match self {
            SchemeId::Aes => 'a',
            SchemeId::Rsa => 'r',
            SchemeId::Ecies => 'e',
            SchemeId::Hpke => 'h',
        }
    }

    /// The scheme of a tag.
    pub fn from_tag(c: char) -> Result<SchemeId, IdentityError> {
        SchemeId::ALL
            .into_iter()
            .find(|s| s.tag() == c)
            .ok_or(IdentityError::UnknownScheme(c))
    }

    /// The name used in configuration and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            SchemeId::Aes => "aes",
            SchemeId::Rsa => "rsa",
            SchemeId::Ecies => "ecies",
            SchemeId::Hpke => "hpke",
        }
    }

    /// Parses a configuration name (`aes`, `rsa`, `ecies`, `hpke`).
    pub fn from_name(s: &str) -> Option<SchemeId> {
        SchemeId::ALL.into_iter().find(|id| id.name() == s)
    }
}

impl fmt::Display for SchemeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A parsed token.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    /// The scheme that made it.
    pub scheme: SchemeId,
    /// Which key opens it: a public key's [`crate::KeyId`] bytes, or for
    /// AES the one-time index of the user's slot.
    pub key_id: Vec<u8>,
    /// The ciphertext.
    pub ciphertext: Vec<u8>,
}

impl Token {
    /// A cheap check for "this user part is a PrivaSIP token", for proxies
    /// that serve PrivaSIP and plain users side by side.
    pub fn looks_like(s: &str) -> bool {
        s.len() > PREFIX.len() + 3
            && s.starts_with(PREFIX)
            && s.bytes().filter(|&b| b == b'.').count() == 2
    }

    /// Parses a token string.
    pub fn parse(s: &str) -> Result<Token, IdentityError> {
        if s.len() > MAX_TOKEN_LEN {
            return Err(IdentityError::NotAToken("too long"));
        }
        let rest = s
            .strip_prefix(PREFIX)
            .ok_or(IdentityError::NotAToken("no ps1 prefix"))?;
        let mut parts = rest.split('.');
        let (Some(tag), Some(kid), Some(ct), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(IdentityError::NotAToken(
                "expected ps1<scheme>.<key-id>.<data>",
            ));
        };
        let mut tag_chars = tag.chars();
        let (Some(tag), None) = (tag_chars.next(), tag_chars.next()) else {
            return Err(IdentityError::NotAToken("scheme tag is not one letter"));
        };
        let scheme = SchemeId::from_tag(tag)?;
        let key_id = B64
            .decode(kid)
            .map_err(|_| IdentityError::NotAToken("key id is not base64url"))?;
        let ciphertext = B64
            .decode(ct)
            .map_err(|_| IdentityError::NotAToken("data is not base64url"))?;
        if key_id.is_empty() || ciphertext.is_empty() {
            return Err(IdentityError::NotAToken("empty field"));
        }
        Ok(Token {
            scheme,
            key_id,
            ciphertext,
        })
    }

    /// Associated data every scheme authenticates: the token's own header
    /// (version, scheme, key id) and the context it is bound to (the
    /// dialog's Call-ID), each length-prefixed.
    pub(crate) fn aad(scheme: SchemeId, key_id: &[u8], context: &[u8]) -> Vec<u8> {
        let mut aad = Vec::with_capacity(16 + key_id.len() + context.len());
        aad.extend_from_slice(PREFIX.as_bytes());
        aad.push(scheme.tag() as u8);
        for part in [key_id, context] {
            aad.extend_from_slice(&(part.len() as u32).to_be_bytes());
            aad.extend_from_slice(part);
        }
        aad
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX}{}.{}.{}",
            self.scheme.tag(),
            B64.encode(&self.key_id),
            B64.encode(&self.ciphertext)
        )
    }
}

// A token is not secret, but it is long: Debug shows its shape.
impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("scheme", &self.scheme)
            .field("key_id_len", &self.key_id.len())
            .field("ciphertext_len", &self.ciphertext.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_shape() {
        let t = Token {
            scheme: SchemeId::Hpke,
            key_id: vec![1, 2, 3, 4, 5, 6],
            ciphertext: vec![0xfb; 40],
        };
        let s = t.to_string();
        assert!(s.starts_with("ps1h.AQIDBAUG."));
        assert!(Token::looks_like(&s));
        assert!(
            s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        );
        assert_eq!(Token::parse(&s), Ok(t));
    }

    #[test]
    fn malformed_tokens_say_why() {
        let cases: &[(&str, IdentityError)] = &[
            ("alice", IdentityError::NotAToken("no ps1 prefix")),
            (
                "ps1h.AQID",
                IdentityError::NotAToken("expected ps1<scheme>.<key-id>.<data>"),
            ),
            (
                "ps1h.AQID.AQID.x",
                IdentityError::NotAToken("expected ps1<scheme>.<key-id>.<data>"),
            ),
            ("ps1x.AQID.AQID", IdentityError::UnknownScheme('x')),
            (
                "ps1hh.AQID.AQID",
                IdentityError::NotAToken("scheme tag is not one letter"),
            ),
            (
                "ps1h.A*ID.AQID",
                IdentityError::NotAToken("key id is not base64url"),
            ),
            (
                "ps1h.AQID.AQ=D",
                IdentityError::NotAToken("data is not base64url"),
            ),
            ("ps1h..AQID", IdentityError::NotAToken("empty field")),
        ];
        for (s, e) in cases {
            assert_eq!(Token::parse(s).as_ref(), Err(e), "{s}");
        }
        let long = format!("ps1h.AQID.{}", "A".repeat(MAX_TOKEN_LEN));
        assert_eq!(
            Token::parse(&long),
            Err(IdentityError::NotAToken("too long"))
        );
    }
}
