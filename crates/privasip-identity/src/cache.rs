//! Token -> real ID, per dialog, bounded in size and time: only the first
//! message of a dialog pays for a public-key decryption (PrivaSIP papers:
//! "some caching method ... for the correspondence between real and
//! encrypted IDs").

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::RealId;

/// A cache key: SHA-256 of the token and its context, so long RSA tokens
/// cost 32 bytes each and the cache holds no token text.
type Key = [u8; 32];

fn key(token: &str, context: &[u8]) -> Key {
    let mut h = Sha256::new();
    h.update((token.len() as u32).to_be_bytes());
    h.update(token.as_bytes());
    h.update(context);
    h.finalize().into()
}

/// A bounded map from (token, context) to the real ID it decrypted to.
/// Entries live at most `ttl`; past `capacity` the oldest go first. Time
/// comes in as an argument.
pub struct IdCache {
    map: HashMap<Key, (RealId, Instant)>,
    order: VecDeque<(Key, Instant)>,
    capacity: usize,
    ttl: Duration,
}

impl IdCache {
    /// A cache of at most `capacity` dialogs, each kept `ttl`.
    pub fn new(capacity: usize, ttl: Duration) -> IdCache {
        IdCache {
            map: HashMap::with_capacity(capacity.min(1 << 16)),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            ttl,
        }
    }

    /// How many entries are held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The ID cached for this token in this context, if still fresh.
    pub fn get(&mut self, token: &str, context: &[u8], now: Instant) -> Option<RealId> {
        self.expire(now);
        self.map.get(&key(token, context)).map(|(id, _)| id.clone())
    }

    /// Remembers what a token decrypted to.
    pub fn insert(&mut self, token: &str, context: &[u8], id: RealId, now: Instant) {
        self.expire(now);
        let k = key(token, context);
        while self.map.len() >= self.capacity && !self.map.contains_key(&k) {
            let Some((old, at)) = self.order.pop_front() else {
                break;
            };
            // Skip queue entries a later insert of the same key superseded.
            if self.map.get(&old).is_some_and(|(_, t)| *t == at) {
                self.map.remove(&old);
            }
        }
        self.map.insert(k, (id, now));
        self.order.push_back((k, now));
    }

    /// Forgets a dialog's entry (on BYE, say).
    pub fn remove(&mut self, token: &str, context: &[u8]) {
        self.map.remove(&key(token, context));
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&(k, at)) = self.order.front() {
            if now.saturating_duration_since(at) < self.ttl {
                break;
            }
            self.order.pop_front();
            if self.map.get(&k).is_some_and(|(_, t)| *t == at) {
                self.map.remove(&k);
            }
        }
    }
}

#[cfg(test)]
// Tests need some starting instant; which one does not matter.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;

    fn id(s: &str) -> RealId {
        RealId::new(s).expect("id")
    }

    #[test]
    fn hit_miss_expiry_and_capacity() {
        let t0 = Instant::now();
        let mut c = IdCache::new(2, Duration::from_secs(10));
        c.insert("ps1h.a.b", b"call-1", id("alice"), t0);
        assert_eq!(c.get("ps1h.a.b", b"call-1", t0), Some(id("alice")));
        // Same token, other dialog: a miss.
        assert_eq!(c.get("ps1h.a.b", b"call-2", t0), None);
        c.insert("ps1h.c.d", b"call-2", id("bob"), t0);
        c.insert("ps1h.e.f", b"call-3", id("carol"), t0);
        assert_eq!(c.len(), 2);
        assert_eq!(c.get("ps1h.a.b", b"call-1", t0), None, "oldest evicted");
        let later = t0 + Duration::from_secs(10);
        assert_eq!(c.get("ps1h.e.f", b"call-3", later), None, "expired");
        assert!(c.is_empty());
    }

    #[test]
    fn reinsert_keeps_the_newer_entry() {
        let t0 = Instant::now();
        let mut c = IdCache::new(1, Duration::from_secs(10));
        c.insert("t", b"x", id("alice"), t0);
        c.insert("t", b"x", id("alice"), t0 + Duration::from_secs(5));
        assert_eq!(
            c.get("t", b"x", t0 + Duration::from_secs(12)),
            Some(id("alice"))
        );
    }
}
