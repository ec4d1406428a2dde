//! Per-source budgets: what an unauthenticated peer may cost the proxy.
//! Every map here is keyed by outside input, so every map is bounded
//! (SECURITY.md lists the bounds and what happens at them).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::relay::Origin;

/// Whom a budget is charged to. IPv6 sources count by /64 (one host is
/// handed a /64 and can use all of it); a Tor circuit is a source when the
/// backend names it, and all of Tor is one source when it does not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SourceKey {
    /// An IPv4 address.
    V4([u8; 4]),
    /// An IPv6 /64.
    V6([u8; 8]),
    /// One incoming Tor circuit.
    Circuit(u64),
    /// Tor, circuit unknown.
    Tor,
    /// A peer the driver gave no address for (a hash of it).
    Peer(u64),
    /// A peer proxy that signed its request with a shared key (by key).
    PeerProxy(u16),
}

impl SourceKey {
    /// The key of a peer whose origin is `origin`; `fallback` (only
    /// called then) for a peer the driver says nothing about.
    pub fn of(origin: Origin, fallback: impl FnOnce() -> u64) -> SourceKey {
        match origin {
            Origin::Ip(ip) => match ip {
                IpAddr::V4(a) => SourceKey::V4(a.octets()),
                IpAddr::V6(a) => match a.to_ipv4_mapped() {
                    Some(v4) => SourceKey::V4(v4.octets()),
                    None => {
                        let o = a.octets();
                        let mut p = [0; 8];
                        p.copy_from_slice(&o[..8]);
                        SourceKey::V6(p)
                    }
                },
            },
            Origin::Tor { circuit: Some(c) } => SourceKey::Circuit(c),
            Origin::Tor { circuit: None } => SourceKey::Tor,
            Origin::Unknown => SourceKey::Peer(fallback()),
        }
    }
}

/// A map of at most `cap` entries. When full, entries `stale` says may
/// go are dropped; if that frees nothing, the older half goes (by the
/// instant `age` reads), so a flood of new keys costs O(log n) each.
pub(crate) struct Bounded<K, V> {
    map: HashMap<K, V>,
    cap: usize,
}

impl<K: Hash + Eq + Clone, V> Bounded<K, V> {
    pub(crate) fn new(cap: usize) -> Self {
        Bounded {
            map: HashMap::new(),
            cap: cap.max(2),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn get(&self, k: &K) -> Option<&V> {
        self.map.get(k)
    }

    pub(crate) fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        self.map.get_mut(k)
    }

    pub(crate) fn remove(&mut self, k: &K) -> Option<V> {
        self.map.remove(k)
    }

    /// Keeps only the entries `keep` says may stay.
    pub(crate) fn retain(&mut self, keep: impl Fn(&V) -> bool) {
        self.map.retain(|_, v| keep(v));
    }

    /// The entry for `k`, made with `new` if absent (evicting first when
    /// full).
    pub(crate) fn entry(
        &mut self,
        k: K,
        new: impl FnOnce() -> V,
        stale: impl Fn(&V) -> bool,
        age: impl Fn(&V) -> Instant,
    ) -> &mut V {
        if !self.map.contains_key(&k) && self.map.len() >= self.cap {
            self.map.retain(|_, v| !stale(v));
            if self.map.len() >= self.cap {
                let mut ages: Vec<Instant> = self.map.values().map(&age).collect();
                let mid = ages.len() / 2;
                let (_, median, _) = ages.select_nth_unstable(mid);
                let median = *median;
                self.map.retain(|_, v| age(v) > median);
            }
        }
        self.map.entry(k).or_insert_with(new)
    }
}

/// A token bucket per source: `rate` a second, up to `burst` at once.
pub(crate) struct Budgets<K> {
    rate: f64,
    burst: f64,
    buckets: Bounded<K, Bucket>,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl<K: Hash + Eq + Clone> Budgets<K> {
    pub(crate) fn new(rate: u32, burst: u32, cap: usize) -> Self {
        Budgets {
            rate: f64::from(rate.max(1)),
            burst: f64::from(burst.max(1)),
            buckets: Bounded::new(cap),
        }
    }

    /// Takes one unit from `key`'s budget; false if there is none left.
    pub(crate) fn take(&mut self, key: K, now: Instant) -> bool {
        let (rate, burst) = (self.rate, self.burst);
        // A bucket that refilled is the same as no bucket.
        let refill = Duration::from_secs_f64(burst / rate);
        let b = self.buckets.entry(
            key,
            || Bucket {
                tokens: burst,
                at: now,
            },
            |b| now.saturating_duration_since(b.at) >= refill,
            |b| b.at,
        );
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// How many sources are tracked.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.buckets.len()
    }
}

/// All of Tor's strangers together, and each peer key, get this many
/// times the budget of one source.
pub(crate) const WIDE_FACTOR: u32 = 10;

/// A budget per source, and a wide one ([`WIDE_FACTOR`] times as much)
/// for all of Tor's strangers together and for each peer key: a Tor
/// circuit spends from its own and from Tor's, so fresh circuits cannot
/// add up to more than Tor's; a peer key spends only its own.
pub(crate) struct Tiered {
    each: Budgets<SourceKey>,
    wide: Budgets<SourceKey>,
}

impl Tiered {
    /// `sources`: how many per-source budgets are tracked; `wide_keys`:
    /// how many wide ones (Tor and every peer key).
    pub(crate) fn new(rate: u32, burst: u32, sources: usize, wide_keys: usize) -> Tiered {
        Tiered {
            each: Budgets::new(rate, burst, sources),
            wide: Budgets::new(
                rate.saturating_mul(WIDE_FACTOR),
                burst.saturating_mul(WIDE_FACTOR),
                wide_keys,
            ),
        }
    }

    /// Takes one unit for `key`; false if its budget (or Tor's) is spent.
    pub(crate) fn take(&mut self, key: SourceKey, now: Instant) -> bool {
        match key {
            SourceKey::Tor | SourceKey::PeerProxy(_) => self.wide.take(key, now),
            SourceKey::Circuit(_) => {
                self.each.take(key, now) && self.wide.take(SourceKey::Tor, now)
            }
            _ => self.each.take(key, now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::disallowed_methods)]
    fn a_bucket_spends_then_refills() {
        let t0 = Instant::now();
        let mut b = Budgets::new(10, 20, 100);
        let n = (0..100).filter(|_| b.take(1u32, t0)).count();
        assert_eq!(n, 20);
        // Another source has its own budget.
        assert!(b.take(2, t0));
        // 10 a second come back.
        let n = (0..100)
            .filter(|_| b.take(1, t0 + Duration::from_secs(1)))
            .count();
        assert_eq!(n, 10);
    }

    #[test]
    #[allow(clippy::disallowed_methods)]
    fn many_sources_stay_bounded() {
        let t0 = Instant::now();
        let mut b = Budgets::new(1, 5, 1000);
        for i in 0..100_000u32 {
            b.take(i, t0 + Duration::from_micros(u64::from(i)));
            assert!(b.len() <= 1000);
        }
    }

    #[test]
    fn sources_by_address_and_prefix() {
        let ip = |s: &str| Origin::Ip(s.parse().expect("address"));
        let key = |o: Origin| SourceKey::of(o, || 7);
        assert_eq!(
            key(ip("2001:db8:1:2:aaaa::1")),
            key(ip("2001:db8:1:2:bbbb::9"))
        );
        assert_ne!(key(ip("2001:db8:1:2::1")), key(ip("2001:db8:1:3::1")));
        assert_eq!(key(ip("::ffff:192.0.2.1")), key(ip("192.0.2.1")));
        assert_eq!(key(Origin::Tor { circuit: None }), SourceKey::Tor);
        assert_eq!(key(Origin::Unknown), SourceKey::Peer(7));
    }
}
