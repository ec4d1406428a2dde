//! Real user IDs: redacted when printed, zeroized when dropped, padded
//! before encryption so that a token's length says nothing about them.

use std::fmt;

use zeroize::{Zeroize, Zeroizing};

use crate::IdentityError;

/// The longest real ID (a SIP user part) a token can carry.
pub const MAX_ID_LEN: usize = 255;

/// Padded plaintext sizes. Every ID up to 63 bytes (nearly all of them)
/// encrypts to the same length; longer ones fall into the next bucket.
pub(crate) const BUCKETS: [usize; 3] = [64, 128, 256];

/// A real user ID: the user part of a SIP URI (`alice` in
/// `sip:alice@a.example`). A secret: `Debug` and `Display` redact it;
/// [`RealId::expose`] is the one way to read it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RealId(String);

impl RealId {
    /// Takes a user part. It must be 1 to [`MAX_ID_LEN`] bytes of visible
    /// ASCII or UTF-8 with no control characters, spaces, `@` or `:`.
    pub fn new(id: impl Into<String>) -> Result<RealId, IdentityError> {
        let id = id.into();
        let ok = !id.is_empty()
            && id.len() <= MAX_ID_LEN
            && !id
                .chars()
                .any(|c| c.is_control() || c.is_whitespace() || c == '@' || c == ':');
        if ok {
            Ok(RealId(id))
        } else {
            let mut id = id;
            id.zeroize();
            Err(IdentityError::BadId)
        }
    }

    /// The real ID. Every call site is a place where it can leak: keep them
    /// few and never log the result.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `len || id || zeros`, to the smallest bucket that fits.
    pub(crate) fn pad(&self) -> Zeroizing<Vec<u8>> {
        let id = self.0.as_bytes();
        let size = BUCKETS
            .iter()
            .copied()
            .find(|&b| b > id.len())
            .unwrap_or(BUCKETS[BUCKETS.len() - 1]);
        let mut out = Zeroizing::new(vec![0u8; size]);
        // MAX_ID_LEN < 256 = the largest bucket: the length fits in a byte
        // and the ID after it.
        out[0] = id.len() as u8;
        out[1..=id.len()].copy_from_slice(id);
        out
    }

    /// Reverses [`RealId::pad`], insisting on canonical padding.
    pub(crate) fn unpad(padded: &[u8]) -> Result<RealId, IdentityError> {
        if !BUCKETS.contains(&padded.len()) {
            return Err(IdentityError::BadPlaintext);
        }
        let len = usize::from(padded[0]);
        let (id, rest) = padded[1..]
            .split_at_checked(len)
            .ok_or(IdentityError::BadPlaintext)?;
        if rest.iter().any(|&b| b != 0) {
            return Err(IdentityError::BadPlaintext);
        }
        let id = std::str::from_utf8(id).map_err(|_| IdentityError::BadPlaintext)?;
        RealId::new(id).map_err(|_| IdentityError::BadPlaintext)
    }
}

impl Drop for RealId {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for RealId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RealId([redacted])")
    }
}

impl fmt::Display for RealId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_hides_length_and_round_trips() {
        let short = RealId::new("al").expect("id");
        let long = RealId::new("a".repeat(63)).expect("id");
        assert_eq!(short.pad().len(), long.pad().len());
        assert_eq!(RealId::new("a".repeat(64)).expect("id").pad().len(), 128);
        assert_eq!(RealId::new("a".repeat(255)).expect("id").pad().len(), 256);
        for id in [short, long] {
            assert_eq!(RealId::unpad(&id.pad()).expect("unpad"), id);
        }
    }

    #[test]
    fn bad_ids_and_bad_padding_are_rejected() {
        for bad in ["", "a b", "a@b", "a:b", "a\r\nb"] {
            assert_eq!(RealId::new(bad), Err(IdentityError::BadId), "{bad:?}");
        }
        assert!(RealId::new("x".repeat(256)).is_err());
        let mut p = RealId::new("bob").expect("id").pad().to_vec();
        p[10] = 1;
        assert!(RealId::unpad(&p).is_err());
        p[10] = 0;
        p[0] = 200;
        assert!(RealId::unpad(&p).is_err());
        assert!(RealId::unpad(&p[..63]).is_err());
    }

    #[test]
    fn printing_never_shows_the_id() {
        let id = RealId::new("alice").expect("id");
        assert!(!format!("{id:?} {id}").contains("alice"));
    }
}
