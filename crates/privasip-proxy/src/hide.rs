//! Topology hiding: what a proxy takes out of a message before it crosses
//! a hidden link (a Tor link, by default), sealed under the proxy's own
//! key inside the headers it adds, so that it can be put back on what
//! comes back. Stateless, like Kamailio's topoh: nothing is kept per
//! call, and since the key comes from the secret in the store, dialogs
//! survive a restart (doc/privasip.md, "Topology hiding").
//!
//! - The Vias below ours go inside our Via (`psv`), with the From host we
//!   replaced, and come back on the responses.
//! - The Record-Route entries below ours go inside ours (`psh`), and come
//!   back on the responses, so that the user behind us still has a route
//!   set through us.
//! - A Contact becomes a handle at our own name (`sip:HANDLE@us`): the
//!   real Contact sealed and bound to the Call-ID. A request to a handle
//!   is sent to the Contact inside; with another Call-ID, or after the
//!   dialog's BYE, it opens to nothing.
//!
//! Every seal has a fresh random nonce: two calls of the same party look
//! unrelated.

use aws_lc_rs::aead::{AES_256_GCM_SIV, Aad, LessSafeKey, Nonce, UnboundKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use rand_core::RngCore;

use crate::mac::derive;

/// The Via parameter that carries the hidden Vias.
pub(crate) const VIA_PARAM: &str = "psv";
/// The Record-Route parameter that carries the hidden Record-Routes.
pub(crate) const ROUTES_PARAM: &str = "psh";
/// How [`ROUTES_PARAM`] shows in a header (a cheap test before parsing).
pub(crate) const ROUTES_MARKER: &str = ";psh=";
/// The host From names on a hidden link in place of our domain (RFC 3323
/// §4.1.1.3).
pub const ANONYMOUS_HOST: &str = "anonymous.invalid";

/// What is sealed at most, in bytes (a few Vias; more is refused rather
/// than hidden half).
pub(crate) const MAX_SEALED: usize = 2048;

/// AES-GCM-SIV's nonce: random, and a repeat would show only that two
/// seals hold the same plaintext (the mode resists nonce misuse).
const NONCE: usize = 12;
const TAG: usize = 16;

/// Which links a proxy hides its side's topology on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Hiding {
    /// Nowhere: messages pass as RFC 3261 proxies pass them.
    Off,
    /// On links to and from Tor peers (the default): what crosses Tor
    /// names no address, Contact or domain of our side.
    #[default]
    Tor,
    /// On every link.
    All,
}

/// What a seal is for: each kind opens only as itself.
#[derive(Clone, Copy)]
pub(crate) enum Kind {
    Vias = 1,
    Routes = 2,
    Contact = 3,
}

/// Seals and opens what the proxy hides.
pub(crate) struct Sealer {
    aead: LessSafeKey,
}

impl Sealer {
    pub(crate) fn new(secret: &[u8; 32]) -> Sealer {
        let key = derive(secret, b"privasip topology v1");
        let key = UnboundKey::new(&AES_256_GCM_SIV, key.as_ref())
            .expect("AES-256-GCM-SIV takes a 32-byte key");
        Sealer {
            aead: LessSafeKey::new(key),
        }
    }

    /// `parts` sealed for `kind` in `context` (the Call-ID, our branch),
    /// as base64url; `None` if they are more than [`MAX_SEALED`] bytes.
    #[cfg(test)]
    pub(crate) fn seal(
        &self,
        rng: &mut dyn RngCore,
        kind: Kind,
        context: &[&str],
        parts: &[&str],
    ) -> Option<String> {
        let mut out = String::new();
        self.seal_into(&mut out, rng, kind, context, parts)?;
        Some(out)
    }

    /// [`Sealer::seal`], appended to `out` (which is left as it was if
    /// the parts are too large).
    pub(crate) fn seal_into(
        &self,
        out: &mut String,
        rng: &mut dyn RngCore,
        kind: Kind,
        context: &[&str],
        parts: &[&str],
    ) -> Option<()> {
        let len: usize = parts.iter().map(|p| 2 + p.len()).sum();
        if len > MAX_SEALED {
            return None;
        }
        // One buffer: the nonce, the parts sealed in place, the tag.
        let mut buf = Vec::with_capacity(NONCE + len + TAG);
        buf.resize(NONCE, 0);
        rng.fill_bytes(&mut buf);
        let nonce: [u8; NONCE] = buf.as_slice().try_into().ok()?;
        for p in parts {
            let len = u16::try_from(p.len()).ok()?;
            buf.extend_from_slice(&len.to_be_bytes());
            buf.extend_from_slice(p.as_bytes());
        }
        let aad = associated(kind, context);
        let tag = self
            .aead
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&aad),
                buf.get_mut(NONCE..)?,
            )
            .ok()?;
        buf.extend_from_slice(tag.as_ref());
        B64.encode_string(&buf, out);
        Some(())
    }

    /// The parts `sealed` holds, if we sealed it for `kind` in `context`.
    pub(crate) fn open(&self, kind: Kind, context: &[&str], sealed: &str) -> Option<Vec<String>> {
        // Base64 of the nonce, the tag and at most MAX_SEALED bytes.
        if sealed.len() > (NONCE + TAG + MAX_SEALED) * 4 / 3 + 4 {
            return None;
        }
        let mut bytes = B64.decode(sealed.as_bytes()).ok()?;
        let nonce: [u8; NONCE] = bytes.get(..NONCE)?.try_into().ok()?;
        let aad = associated(kind, context);
        let plain = self
            .aead
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&aad),
                bytes.get_mut(NONCE..)?,
            )
            .ok()?;
        let mut parts = Vec::new();
        let mut rest: &[u8] = plain;
        while !rest.is_empty() {
            let (len, tail) = rest.split_at_checked(2)?;
            let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
            let (part, tail) = tail.split_at_checked(len)?;
            parts.push(String::from_utf8(part.to_vec()).ok()?);
            rest = tail;
        }
        Some(parts)
    }
}

fn associated(kind: Kind, context: &[&str]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(1 + context.iter().map(|c| 8 + c.len()).sum::<usize>());
    aad.push(kind as u8);
    for c in context {
        aad.extend_from_slice(&(c.len() as u64).to_be_bytes());
        aad.extend_from_slice(c.as_bytes());
    }
    aad
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn opens_only_as_sealed() {
        let s = Sealer::new(&[1; 32]);
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let parts = ["SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKx", ""];
        let sealed = s
            .seal(&mut rng, Kind::Vias, &["call", "b1"], &parts)
            .expect("small");
        assert_eq!(
            s.open(Kind::Vias, &["call", "b1"], &sealed).expect("opens"),
            parts
        );
        // Another call, branch, kind or key: nothing.
        assert!(s.open(Kind::Vias, &["call2", "b1"], &sealed).is_none());
        assert!(s.open(Kind::Vias, &["call", "b2"], &sealed).is_none());
        assert!(s.open(Kind::Contact, &["call", "b1"], &sealed).is_none());
        assert!(
            Sealer::new(&[2; 32])
                .open(Kind::Vias, &["call", "b1"], &sealed)
                .is_none()
        );
        // Sealed twice, two unrelated strings.
        let again = s
            .seal(&mut rng, Kind::Vias, &["call", "b1"], &parts)
            .expect("small");
        assert_ne!(sealed, again);
    }

    #[test]
    fn junk_and_oversize_open_to_nothing() {
        let s = Sealer::new(&[1; 32]);
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        for junk in ["", "a", "!!!!", &"A".repeat(10_000)] {
            assert!(s.open(Kind::Contact, &["c"], junk).is_none());
        }
        let big = "x".repeat(MAX_SEALED);
        assert!(s.seal(&mut rng, Kind::Vias, &["c"], &[&big]).is_none());
    }
}
