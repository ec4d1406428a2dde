//! Opening PrivaSIP tokens costs public-key work (0.3-1 ms for RSA, ECIES
//! and HPKE alike), and anyone can send a token. So a source may open
//! only so many a second, and a token that failed once is not tried
//! again.

use std::time::Instant;

use privasip_identity::{IdentityError, Keyring, SchemeId, Token};

use crate::budget::{Bounded, SourceKey, Tiered};
use crate::peer::MAX_PEER_KEYS;

/// Token opens a source may make, a second and at once.
pub const OPENS_PER_SECOND: u32 = 20;
/// See [`OPENS_PER_SECOND`].
pub const OPENS_BURST: u32 = 40;
/// Sources tracked for opens; failed tokens remembered.
const SOURCES: usize = 16_384;
const FAILED: usize = 4_096;

/// Why a token gave no user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Forged, altered or bound to another dialog.
    DoesNotOpen,
    /// It names a key we do not hold (the first bytes of its id): a
    /// stranger's, or ours missing from the configuration.
    NoKey { scheme: SchemeId, key_id: [u8; 8] },
    /// We hold no PrivaSIP keys at all.
    NoKeys,
    /// The source spent its budget: answer 503, try later.
    Busy,
}

pub(crate) struct Gate {
    /// Per source, and for Tor's strangers and each peer key.
    opens: Tiered,
    /// Tokens (with their context) that failed, and when.
    failed: Bounded<Vec<u8>, Instant>,
    /// Opens attempted with public-key work (tests and metrics).
    pub(crate) attempts: u64,
}

impl Gate {
    pub(crate) fn new(per_second: u32, burst: u32) -> Gate {
        Gate {
            opens: Tiered::new(per_second, burst, SOURCES, MAX_PEER_KEYS + 1),
            failed: Bounded::new(FAILED),
            attempts: 0,
        }
    }

    /// Opens `token` bound to `context` for `source`, within its budget.
    /// What costs no public-key work is not charged: a token the
    /// keyring's dialog cache holds, one that does not parse or names no
    /// key of ours, one that failed before.
    pub(crate) fn open(
        &mut self,
        ring: &mut Keyring,
        token: &str,
        context: &[u8],
        source: SourceKey,
        now: Instant,
    ) -> Result<String, Refused> {
        if let Some(id) = ring.cached(token, context, now) {
            return Ok(id.expose().to_owned());
        }
        if let Err(e) = ring.precheck(token) {
            return Err(match (e, Token::parse(token)) {
                (IdentityError::UnknownKey, Ok(t)) => {
                    let mut key_id = [0u8; 8];
                    for (to, from) in key_id.iter_mut().zip(&t.key_id) {
                        *to = *from;
                    }
                    Refused::NoKey {
                        scheme: t.scheme,
                        key_id,
                    }
                }
                _ => Refused::DoesNotOpen,
            });
        }
        let key = [context, b"\0", token.as_bytes()].concat();
        if self.failed.get(&key).is_some() {
            return Err(Refused::DoesNotOpen);
        }
        if !self.opens.take(source, now) {
            return Err(Refused::Busy);
        }
        self.attempts += 1;
        match ring.open(token, context, now) {
            Ok(o) => Ok(o.id.expose().to_owned()),
            Err(_) => {
                *self.failed.entry(key, || now, |_| false, |at| *at) = now;
                Err(Refused::DoesNotOpen)
            }
        }
    }
}
