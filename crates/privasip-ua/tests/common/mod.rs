//! An in-memory network of user agents and proxy cores on virtual time.
//! Peers are names; the network is a queue; nothing opens a socket.

// Tests need some starting instant; which one does not matter.
#![allow(clippy::disallowed_methods, dead_code, unreachable_pub, missing_docs)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use privasip_digest::{Algorithm, Ha1};
use privasip_identity::{Keyring, PrivateKey};
use privasip_proxy::{Credentials, Next, Proxy, ProxyConfig, StoreEvent};
use privasip_ua::{Answer, Privacy, Ua, UaConfig, UaEvent};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;
use zeroize::Zeroizing;

/// Every user, their password and the host their user agent runs on (a
/// name that says nothing about them).
pub const USERS: [(&str, &str, &str); 2] = [
    ("alice", "wonderland", "ua1.host"),
    ("bob", "zanzibar", "ua2.host"),
];

/// Hosts to peers: user agents by host, proxies by host or domain.
fn resolve(host: &str) -> Option<&'static str> {
    Some(match host {
        "ua1.host" => "alice",
        "ua2.host" => "bob",
        "proxy.host" => "proxy",
        "pa.host" | "a.example" | "pa-onion.onion" => "pa",
        "pb.host" | "b.example" | "pb-onion.onion" => "pb",
        _ => return None,
    })
}

/// A proxy core named `name` (its host is `NAME.host`) serving `domain`,
/// with both users, authenticating, and these keys. With `aes`, its users
/// may use PrivaSIP-AES.
pub fn proxy(
    t0: Instant,
    name: &str,
    domain: &str,
    keys: Vec<PrivateKey>,
    aes: bool,
) -> Proxy<&'static str> {
    let cfg = ProxyConfig {
        authenticate: true,
        ..ProxyConfig::new(domain, format!("{name}.host:5060"))
    };
    let mut p = Proxy::new(
        cfg,
        Box::new(|host: &str, _port: Option<u16>, _t: &str| {
            resolve(host).map(|peer| Next {
                peer,
                reliable: false,
            })
        }),
        // A secret of its own per proxy, the same for the same name (a
        // restarted proxy keeps its secret in its store).
        std::array::from_fn(|i| name.as_bytes()[i % name.len()]),
        t0,
    );
    if !keys.is_empty() {
        let mut ring = Keyring::default();
        for k in keys {
            ring.add_key(k.into_decryptor());
        }
        p.set_keyring(ring);
    }
    for (user, pw, _) in USERS {
        let sha256 = Ha1::from_password(Algorithm::Sha256, user, domain, pw);
        if aes {
            assert!(p.set_aes_user(user, &sha256, 0));
        }
        p.set_user(
            domain,
            user,
            Credentials {
                md5: Ha1::from_password(Algorithm::Md5, user, domain, pw),
                sha256,
            },
        );
    }
    p
}

/// A user agent for `user` of `domain` whose outbound proxy is `proxy`.
pub fn ua(
    user: &str,
    password: &str,
    domain: &str,
    proxy: &'static str,
    privacy: Privacy,
    answer: Answer,
) -> Ua<&'static str> {
    let host = USERS
        .iter()
        .find(|(u, _, _)| *u == user)
        .map_or("unknown.host", |(_, _, h)| h);
    Ua::new(
        UaConfig {
            display_name: (user == "alice").then(|| "Alice Liddell".into()),
            expires: 600,
            privacy,
            answer,
            ring_time: Duration::from_millis(300),
            ..UaConfig::new(
                user,
                domain,
                Zeroizing::new(password.into()),
                format!("{host}:5060"),
            )
        },
        proxy,
    )
}

/// Alice (at "pa", a.example) and Bob (at "pb", b.example), both
/// answering, added to `net` and registered.
pub fn alice_and_bob(net: &mut Net, alice: Privacy, bob: Privacy) {
    let ua_a = ua(
        "alice",
        "wonderland",
        "a.example",
        "pa",
        alice,
        Answer::Accept,
    );
    let ua_b = ua("bob", "zanzibar", "b.example", "pb", bob, Answer::Accept);
    net.uas.insert("alice", ua_a);
    net.uas.insert("bob", ua_b);
    net.register("alice");
    net.register("bob");
}

/// The network.
pub struct Net {
    pub now: Instant,
    pub proxies: BTreeMap<&'static str, Proxy<&'static str>>,
    pub uas: BTreeMap<&'static str, Ua<&'static str>>,
    pub events: Vec<(&'static str, UaEvent)>,
    /// What each proxy asked to persist.
    pub stored: Vec<(&'static str, StoreEvent)>,
    pub rng: ChaCha20Rng,
    /// Every message that crossed the network: from, to, bytes.
    pub wire: Vec<(&'static str, &'static str, Vec<u8>)>,
}

impl Net {
    pub fn new(t0: Instant) -> Net {
        Net {
            now: t0,
            proxies: BTreeMap::new(),
            uas: BTreeMap::new(),
            events: Vec::new(),
            stored: Vec::new(),
            rng: ChaCha20Rng::seed_from_u64(11),
            wire: Vec::new(),
        }
    }

    /// Delivers messages and runs timers until nothing moves, up to
    /// `limit` of virtual time.
    pub fn run(&mut self, limit: Duration) {
        let end = self.now + limit;
        loop {
            let mut queue: Vec<(&'static str, &'static str, Vec<u8>)> = Vec::new();
            for (name, ua) in &mut self.uas {
                // A driver's disk, in memory: every AES counter persists.
                if let Some(next) = ua.aes_to_persist() {
                    ua.aes_persisted(next);
                }
                while let Some(t) = ua.poll_transmit() {
                    queue.push((name, t.to, t.bytes));
                }
                while let Some(ev) = ua.poll_event() {
                    self.events.push((name, ev));
                }
            }
            for (name, p) in &mut self.proxies {
                while let Some(t) = p.poll_transmit() {
                    queue.push((name, t.to, t.bytes));
                }
                while let Some(e) = p.poll_store_event() {
                    self.stored.push((name, e));
                }
            }
            let moved = !queue.is_empty();
            for (from, to, bytes) in queue {
                if let Some(p) = self.proxies.get_mut(to) {
                    p.receive(self.now, &bytes, from, false);
                } else if let Some(ua) = self.uas.get_mut(to) {
                    ua.receive(self.now, &bytes, from, &mut self.rng);
                }
                self.wire.push((from, to, bytes));
            }
            if moved {
                continue;
            }
            let next = self
                .uas
                .values_mut()
                .filter_map(|u| u.poll_timeout())
                .chain(self.proxies.values_mut().filter_map(|p| p.poll_timeout()))
                .min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    for ua in self.uas.values_mut() {
                        ua.handle_timeout(self.now, &mut self.rng);
                    }
                    for p in self.proxies.values_mut() {
                        p.handle_timeout(self.now);
                    }
                }
                _ => break,
            }
        }
    }

    pub fn ua(&mut self, name: &'static str) -> &mut Ua<&'static str> {
        self.uas.get_mut(name).expect("ua")
    }

    pub fn register(&mut self, name: &'static str) {
        let now = self.now;
        let ua = self.uas.get_mut(name).expect("ua");
        ua.register(now, &mut self.rng).expect("register");
        self.run(Duration::from_secs(5));
    }

    pub fn saw(&self, who: &str, pred: impl Fn(&UaEvent) -> bool) -> bool {
        self.events.iter().any(|(n, e)| *n == who && pred(e))
    }

    /// What `who` was told of its incoming call's caller.
    pub fn caller_seen_by(&self, who: &str) -> Option<String> {
        self.events.iter().find_map(|(n, e)| match e {
            UaEvent::Incoming { caller, .. } if *n == who => Some(caller.expose().clone()),
            _ => None,
        })
    }

    /// Every message as text.
    pub fn texts(&self) -> impl Iterator<Item = (&'static str, &'static str, String)> + '_ {
        self.wire
            .iter()
            .map(|(f, t, b)| (*f, *t, String::from_utf8_lossy(b).into_owned()))
    }
}

/// Alice's settings on her own (plain SIP, at "alice.host"), for tests of
/// one user agent talking to a proxy named "proxy".
pub fn alice_config() -> UaConfig {
    UaConfig::new(
        "alice",
        "a.example",
        Zeroizing::new("wonderland".into()),
        "alice.host:5060",
    )
}
