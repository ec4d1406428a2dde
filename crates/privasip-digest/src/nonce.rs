//! Server nonces: self-authenticating (no table to look a nonce up in),
//! expiring (`stale=true` after their lifetime, RFC 7616 §3.3), and each
//! `nc` accepted once per nonce, in increasing order (RFC 7616 §3.4: replay
//! protection with qop=auth).
//!
//! A nonce carries its issue time and a serial number, but enciphered
//! (one AES block under a key of the server's): to anyone else it is 32
//! random-looking bytes, so nonces tell no one the server's uptime or how
//! many challenges it has made.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

const TAG_LEN: usize = 16;

/// What a nonce in an Authorization header is worth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NonceCheck {
    /// Ours, fresh, and this `nc` is new: check the response.
    Valid,
    /// Ours but expired: challenge again with `stale=true` (the client
    /// retries without asking its user).
    Stale,
    /// Ours and fresh, but this `nc` was seen already: a replay.
    Replayed,
    /// Not a nonce this server made (forged, or from before a restart).
    Unknown,
}

/// Makes and checks nonces. Its key is random per process: a restart
/// invalidates outstanding nonces, which clients answer by retrying.
pub struct Nonces {
    key: Zeroizing<[u8; 32]>,
    /// Enciphers the issue time and serial.
    cipher: aes::Aes128,
    epoch: Instant,
    lifetime: Duration,
    /// Highest nc seen per nonce still alive, with its issue time, by
    /// serial number: serials rise with issue time, so the oldest are
    /// first and expire from the front.
    seen: BTreeMap<u64, (u32, Instant)>,
    /// At most this many nonces are tracked; past it the oldest is
    /// forgotten and every nonce up to it counts as stale.
    max_tracked: usize,
    /// Nonces with a lower serial that are not tracked are stale: they
    /// were forgotten to bound memory, and accepting them again would let
    /// a replay through.
    forgotten_below: u64,
    /// Makes nonces issued in the same millisecond distinct: two clients
    /// challenged at once must not share a nonce, or the second one's
    /// nc=1 would look like a replay of the first's.
    issued: u64,
}

impl Nonces {
    /// `key`: 32 random bytes; `epoch`: any instant before all uses;
    /// `lifetime`: how long a nonce is fresh (e.g. 5 minutes).
    pub fn new(key: [u8; 32], epoch: Instant, lifetime: Duration) -> Nonces {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&key).expect("HMAC takes a key of any length");
        mac.update(b"privasip nonce fields v1");
        let sub: Zeroizing<[u8; 32]> = Zeroizing::new(mac.finalize().into_bytes().into());
        Nonces {
            cipher: aes::Aes128::new(aes::cipher::generic_array::GenericArray::from_slice(
                sub.get(..16).unwrap_or(&[0; 16]),
            )),
            key: Zeroizing::new(key),
            epoch,
            lifetime,
            seen: BTreeMap::new(),
            max_tracked: 1_000_000,
            forgotten_below: 0,
            issued: 0,
        }
    }

    fn tag(&self, millis: u64, serial: u64) -> [u8; TAG_LEN] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.key.as_ref())
            .expect("HMAC takes a key of any length");
        mac.update(&millis.to_be_bytes());
        mac.update(&serial.to_be_bytes());
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(&full[..TAG_LEN]);
        out
    }

    /// A fresh nonce, never issued before: its issue time, a serial
    /// number and a MAC over both.
    pub fn issue(&mut self, now: Instant) -> String {
        let millis = u64::try_from(now.saturating_duration_since(self.epoch).as_millis())
            .unwrap_or(u64::MAX);
        self.issued += 1;
        let serial = self.issued;
        let mut fields = [0u8; 16];
        fields[..8].copy_from_slice(&millis.to_be_bytes());
        fields[8..].copy_from_slice(&serial.to_be_bytes());
        let mut block = aes::Block::from(fields);
        self.cipher.encrypt_block(&mut block);
        let mut raw = block.to_vec();
        raw.extend_from_slice(&self.tag(millis, serial));
        B64.encode(raw)
    }

    /// Checks a nonce and its `nc` (hex, as sent; `None` without qop,
    /// which counts as nc 1). Constant time in the number of nonces
    /// tracked (logarithmic).
    pub fn check(&mut self, nonce: &str, nc: Option<&str>, now: Instant) -> NonceCheck {
        self.judge(nonce, nc, now, true)
    }

    /// What [`Nonces::check`] would answer, recording nothing: a server
    /// checks the response first and then calls [`Nonces::record`], so
    /// that a sniffed nonce sent with a forged response and a high `nc`
    /// cannot make the real client's next request look like a replay.
    pub fn peek(&mut self, nonce: &str, nc: Option<&str>, now: Instant) -> NonceCheck {
        self.judge(nonce, nc, now, false)
    }

    /// Records `nc` as used for `nonce` (after a response was verified).
    pub fn record(&mut self, nonce: &str, nc: Option<&str>, now: Instant) {
        self.judge(nonce, nc, now, true);
    }

    fn judge(&mut self, nonce: &str, nc: Option<&str>, now: Instant, record: bool) -> NonceCheck {
        let Some((serial, issued)) = self.issued_at(nonce) else {
            return NonceCheck::Unknown;
        };
        self.expire(now);
        if now.saturating_duration_since(issued) >= self.lifetime {
            return NonceCheck::Stale;
        }
        let nc = match nc {
            None => 1,
            Some(hex) => match u32::from_str_radix(hex, 16) {
                Ok(n) if n > 0 => n,
                _ => return NonceCheck::Replayed,
            },
        };
        match self.seen.get_mut(&serial) {
            Some((last, _)) if nc <= *last => NonceCheck::Replayed,
            Some((last, _)) => {
                if record {
                    *last = nc;
                }
                NonceCheck::Valid
            }
            None if serial < self.forgotten_below => NonceCheck::Stale,
            None if !record => NonceCheck::Valid,
            None => {
                self.seen.insert(serial, (nc, issued));
                while self.seen.len() > self.max_tracked {
                    if let Some((oldest, _)) = self.seen.pop_first() {
                        self.forgotten_below = self.forgotten_below.max(oldest + 1);
                    }
                }
                NonceCheck::Valid
            }
        }
    }

    /// The serial number and issue time of one of our nonces.
    fn issued_at(&self, nonce: &str) -> Option<(u64, Instant)> {
        let raw = B64.decode(nonce).ok()?;
        if raw.len() != 16 + TAG_LEN {
            return None;
        }
        let mut block = aes::Block::clone_from_slice(raw.get(..16)?);
        self.cipher.decrypt_block(&mut block);
        let millis = u64::from_be_bytes(block.get(..8)?.try_into().ok()?);
        let serial = u64::from_be_bytes(block.get(8..16)?.try_into().ok()?);
        let expected = self.tag(millis, serial);
        // Constant-time comparison of the MAC.
        let ok = subtle::ConstantTimeEq::ct_eq(&expected[..], &raw[16..]);
        bool::from(ok).then(|| (serial, self.epoch + Duration::from_millis(millis)))
    }

    /// Forgets the nonces past their lifetime (answered Stale anyway, so
    /// nothing is lost): the oldest first, stopping at the first fresh.
    fn expire(&mut self, now: Instant) {
        while let Some(entry) = self.seen.first_entry() {
            if now.saturating_duration_since(entry.get().1) < self.lifetime {
                break;
            }
            entry.remove();
        }
    }
}

#[cfg(test)]
// Tests need some starting instant; which one does not matter.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    /// Nonces used to start with the milliseconds since start and a
    /// serial: anyone could read the uptime and count challenges. Now two
    /// nonces made in the same instant share no structure.
    #[test]
    fn nonces_carry_no_readable_time_or_counter() {
        let t0 = Instant::now();
        let mut n = Nonces::new([3; 32], t0, Duration::from_secs(300));
        let a = B64.decode(n.issue(t0)).expect("base64");
        let b = B64.decode(n.issue(t0)).expect("base64");
        let same = a.iter().zip(&b).filter(|(x, y)| x == y).count();
        assert!(same < 8, "{same} equal bytes in {a:?} and {b:?}");
        assert!(a.get(..8) != Some(&[0u8; 8][..]), "no plain time");
    }

    /// Regression: two clients challenged in the same millisecond got the
    /// same nonce, and the second one's first answer was refused as a
    /// replay (seen with three SIPp registrations at once through Tor).
    #[test]
    fn nonces_issued_at_once_are_distinct() {
        let t0 = Instant::now();
        let mut n = Nonces::new([7; 32], t0, Duration::from_secs(300));
        let a = n.issue(t0);
        let b = n.issue(t0);
        assert_ne!(a, b);
        assert_eq!(n.check(&a, Some("00000001"), t0), NonceCheck::Valid);
        assert_eq!(n.check(&b, Some("00000001"), t0), NonceCheck::Valid);
    }

    #[test]
    fn fresh_stale_forged_and_replayed() {
        let t0 = Instant::now();
        let mut n = Nonces::new([7; 32], t0, Duration::from_secs(300));
        let nonce = n.issue(t0 + Duration::from_secs(10));
        let t = t0 + Duration::from_secs(20);
        assert_eq!(n.check(&nonce, Some("00000001"), t), NonceCheck::Valid);
        assert_eq!(n.check(&nonce, Some("00000001"), t), NonceCheck::Replayed);
        assert_eq!(n.check(&nonce, Some("00000002"), t), NonceCheck::Valid);
        assert_eq!(n.check(&nonce, Some("zz"), t), NonceCheck::Replayed);
        let late = t0 + Duration::from_secs(310);
        assert_eq!(n.check(&nonce, Some("00000003"), late), NonceCheck::Stale);
        // Another server key (or a restart): unknown.
        let mut other = Nonces::new([8; 32], t0, Duration::from_secs(300));
        assert_eq!(
            other.check(&nonce, Some("00000001"), t),
            NonceCheck::Unknown
        );
        assert_eq!(n.check("bogus", None, t), NonceCheck::Unknown);
        let mut forged = B64.decode(&nonce).expect("b64");
        forged[0] ^= 1;
        assert_eq!(n.check(&B64.encode(forged), None, t), NonceCheck::Unknown);
    }

    /// Regression: with `max_tracked` fresh nonces tracked, every check
    /// scanned them all (a registrar at 10,000 registrations/s collapsed
    /// after 10 s). Now the oldest is forgotten and counts as stale, so a
    /// replay of it still fails.
    #[test]
    fn past_the_bound_the_oldest_nonce_turns_stale_not_replayable() {
        let t0 = Instant::now();
        let mut n = Nonces::new([7; 32], t0, Duration::from_secs(300));
        n.max_tracked = 3;
        let nonces: Vec<String> = (0..5).map(|_| n.issue(t0)).collect();
        for x in &nonces[..4] {
            assert_eq!(n.check(x, Some("00000001"), t0), NonceCheck::Valid);
        }
        assert_eq!(n.seen.len(), 3);
        assert_eq!(n.check(&nonces[0], Some("00000002"), t0), NonceCheck::Stale);
        assert_eq!(
            n.check(&nonces[1], Some("00000001"), t0),
            NonceCheck::Replayed
        );
        assert_eq!(n.check(&nonces[4], Some("00000001"), t0), NonceCheck::Valid);
        // Expired ones leave the table from the front.
        let late = t0 + Duration::from_secs(301);
        let fresh = n.issue(late);
        assert_eq!(n.check(&fresh, None, late), NonceCheck::Valid);
        assert_eq!(n.seen.len(), 1);
    }
}
