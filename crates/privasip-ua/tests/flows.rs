//! Two user agents and the proxy core, in memory, on virtual time: Digest
//! registration, a PrivaSIP-2 call answered and hung up, busy, an offline
//! callee, a wrong password. The network is a queue; nothing here opens
//! a socket.

// Tests need some starting instant; which one does not matter.
#![allow(clippy::disallowed_methods)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use privasip_digest::{Algorithm, Ha1};
use privasip_identity::{Keyring, PrivateKey, SchemeId};
use privasip_proxy::{Credentials, Next, Proxy, ProxyConfig};
use privasip_registrar::RegistrarConfig;
use privasip_ua::{Answer, Privacy, Ua, UaConfig, UaEvent};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;
use zeroize::Zeroizing;

const DOMAIN: &str = "example.com";

struct Net {
    now: Instant,
    proxy: Proxy<&'static str>,
    uas: HashMap<&'static str, Ua<&'static str>>,
    events: Vec<(&'static str, UaEvent)>,
    rng: ChaCha20Rng,
    /// Every message that crossed the network.
    wire: Vec<Vec<u8>>,
}

fn proxy(t0: Instant, key: Option<PrivateKey>) -> Proxy<&'static str> {
    let cfg = ProxyConfig {
        domains: vec![DOMAIN.into()],
        sent_by: "192.0.2.1:5060".into(),
        record_route: true,
        authenticate: true,
        registrar: RegistrarConfig::default(),
        digest: vec![Algorithm::Sha256, Algorithm::Md5],
    };
    let mut p = Proxy::new(
        cfg,
        Box::new(|host: &str, _port: Option<u16>, _t: &str| {
            let peer = match host {
                "ua1.host" => "alice",
                "ua2.host" => "bob",
                _ => return None,
            };
            Some(Next {
                peer,
                reliable: false,
            })
        }),
        [9; 32],
        t0,
    );
    for (user, pw) in [("alice", "wonderland"), ("bob", "zanzibar")] {
        p.set_user(
            DOMAIN,
            user,
            Credentials {
                md5: Ha1::from_password(Algorithm::Md5, user, DOMAIN, pw),
                sha256: Ha1::from_password(Algorithm::Sha256, user, DOMAIN, pw),
            },
        );
    }
    if let Some(k) = key {
        let mut ring = Keyring::default();
        ring.add_key(k.into_decryptor());
        p.set_keyring(ring);
    }
    p
}

/// A user agent on a host whose name says nothing about its user.
fn ua(user: &str, password: &str, privacy: Privacy, answer: Answer) -> Ua<&'static str> {
    let host = if user == "alice" {
        "ua1.host"
    } else {
        "ua2.host"
    };
    Ua::new(
        UaConfig {
            display_name: (user == "alice").then(|| "Alice Liddell".to_owned()),
            user: user.into(),
            domain: DOMAIN.into(),
            password: Zeroizing::new(password.into()),
            local: format!("{host}:5060"),
            reliable: false,
            outbound: false,
            expires: 600,
            privacy,
            answer,
            ring_time: Duration::from_millis(300),
        },
        "proxy",
    )
}

impl Net {
    fn new(privasip: bool, bob_answer: Answer, alice_pw: &str) -> Net {
        let t0 = Instant::now();
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        let key = PrivateKey::generate(SchemeId::Hpke, 0, &mut rng).expect("key");
        let privacy = || {
            if privasip {
                Privacy::PrivaSip {
                    home: key.public(),
                    callee_keys: [(DOMAIN.to_owned(), key.public())].into(),
                }
            } else {
                Privacy::Plain
            }
        };
        let mut uas = HashMap::new();
        uas.insert("alice", ua("alice", alice_pw, privacy(), Answer::Accept));
        uas.insert("bob", ua("bob", "zanzibar", privacy(), bob_answer));
        let copy = PrivateKey::from_text(&key.to_text()).expect("key text");
        let proxy = proxy(t0, privasip.then_some(copy));
        Net {
            now: t0,
            proxy,
            uas,
            events: Vec::new(),
            rng,
            wire: Vec::new(),
        }
    }

    /// Delivers messages and runs timers until nothing moves, up to
    /// `limit` of virtual time.
    fn run(&mut self, limit: Duration) {
        let end = self.now + limit;
        loop {
            let mut moved = false;
            let mut queue: Vec<(&'static str, &'static str, Vec<u8>)> = Vec::new();
            for (name, ua) in &mut self.uas {
                while let Some(t) = ua.poll_transmit() {
                    queue.push((name, t.to, t.bytes));
                }
                while let Some(ev) = ua.poll_event() {
                    self.events.push((name, ev));
                }
            }
            while let Some(t) = self.proxy.poll_transmit() {
                queue.push(("proxy", t.to, t.bytes));
            }
            for (from, to, bytes) in queue {
                moved = true;
                self.wire.push(bytes.clone());
                if to == "proxy" {
                    self.proxy.receive(self.now, &bytes, from, false);
                } else if let Some(ua) = self.uas.get_mut(to) {
                    ua.receive(self.now, &bytes, "proxy", &mut self.rng);
                }
            }
            if moved {
                continue;
            }
            let next = self
                .uas
                .values_mut()
                .filter_map(|u| u.poll_timeout())
                .chain(self.proxy.poll_timeout())
                .min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    for ua in self.uas.values_mut() {
                        ua.handle_timeout(self.now, &mut self.rng);
                    }
                    self.proxy.handle_timeout(self.now);
                }
                _ => break,
            }
        }
    }

    fn ua(&mut self, name: &'static str) -> &mut Ua<&'static str> {
        self.uas.get_mut(name).expect("ua")
    }

    fn register(&mut self, name: &'static str) {
        let now = self.now;
        let ua = self.uas.get_mut(name).expect("ua");
        ua.register(now, &mut self.rng).expect("register");
        self.run(Duration::from_secs(5));
    }

    fn saw(&self, who: &str, pred: impl Fn(&UaEvent) -> bool) -> bool {
        self.events.iter().any(|(n, e)| *n == who && pred(e))
    }
}

fn call_flow(privasip: bool) {
    let mut net = Net::new(privasip, Answer::Accept, "wonderland");
    net.register("alice");
    net.register("bob");
    assert!(
        net.saw("alice", |e| matches!(e, UaEvent::Registered { .. })),
        "{:?}",
        net.events
    );
    assert!(
        net.saw("bob", |e| matches!(e, UaEvent::Registered { .. })),
        "{:?}",
        net.events
    );

    let now = net.now;
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let call = net
        .ua("alice")
        .call(now, &format!("sip:bob@{DOMAIN}"), &mut rng)
        .expect("call");
    net.run(Duration::from_secs(10));
    assert!(net.saw("alice", |e| *e == UaEvent::Response { call, status: 180 }));
    assert!(
        net.saw("alice", |e| *e == UaEvent::Answered { call }),
        "{:?}",
        net.events
    );
    let caller = net
        .events
        .iter()
        .find_map(|(n, e)| match e {
            UaEvent::Incoming { caller, .. } if *n == "bob" => Some(caller.clone()),
            _ => None,
        })
        .expect("bob was called");
    if privasip {
        assert!(caller.starts_with("ps1h."), "bob sees a token: {caller}");
        // No real ID of either party in anything that crossed the wire.
        for m in &net.wire {
            let text = String::from_utf8_lossy(m);
            assert!(!text.contains("alice"), "alice's ID on the wire:\n{text}");
            assert!(!text.contains("bob"), "bob's ID on the wire:\n{text}");
            assert!(
                !text.contains("Liddell"),
                "a display name on the wire:\n{text}"
            );
        }
    } else {
        assert_eq!(caller, "alice");
        let invite = net
            .wire
            .iter()
            .map(|m| String::from_utf8_lossy(m))
            .find(|t| t.starts_with("INVITE"))
            .expect("an INVITE crossed");
        assert!(
            invite.contains("From: \"Alice Liddell\" <sip:alice@"),
            "plain SIP carries the display name:\n{invite}"
        );
    }

    let now = net.now;
    net.ua("alice").hangup(now, call, &mut rng).expect("hangup");
    net.run(Duration::from_secs(10));
    assert!(net.saw("alice", |e| *e == UaEvent::Ended { call }));
    assert!(net.saw("bob", |e| matches!(e, UaEvent::Ended { .. })));
}

#[test]
fn plain_call_registered_answered_and_hung_up() {
    call_flow(false);
}

#[test]
fn privasip2_call_shows_the_callee_only_a_token() {
    call_flow(true);
}

#[test]
fn busy_callee_gives_486() {
    let mut net = Net::new(true, Answer::Busy, "wonderland");
    net.register("alice");
    net.register("bob");
    let now = net.now;
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    let call = net
        .ua("alice")
        .call(now, &format!("sip:bob@{DOMAIN}"), &mut rng)
        .expect("call");
    net.run(Duration::from_secs(10));
    assert!(
        net.saw("alice", |e| *e == UaEvent::Failed { call, status: 486 }),
        "{:?}",
        net.events
    );
}

#[test]
fn offline_callee_gives_480() {
    let mut net = Net::new(false, Answer::Accept, "wonderland");
    net.register("alice");
    let now = net.now;
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let call = net
        .ua("alice")
        .call(now, &format!("sip:bob@{DOMAIN}"), &mut rng)
        .expect("call");
    net.run(Duration::from_secs(10));
    assert!(
        net.saw("alice", |e| *e == UaEvent::Failed { call, status: 480 }),
        "{:?}",
        net.events
    );
}

#[test]
fn wrong_password_is_refused() {
    let mut net = Net::new(false, Answer::Accept, "not-the-password");
    net.register("alice");
    assert!(
        net.saw("alice", |e| matches!(
            e,
            UaEvent::RegistrationFailed { status: 401 | 403 }
        )),
        "{:?}",
        net.events
    );
}

#[test]
fn registration_is_refreshed_before_it_expires() {
    let mut net = Net::new(false, Answer::Accept, "wonderland");
    net.register("alice");
    // 600 s granted: a refresh at 80%, well before the end.
    net.run(Duration::from_secs(590));
    let n = net
        .events
        .iter()
        .filter(|(n, e)| *n == "alice" && matches!(e, UaEvent::Registered { .. }))
        .count();
    assert!(n >= 2, "registered {n} times: {:?}", net.events);
}

#[test]
fn hanging_up_while_it_rings_cancels_the_call() {
    for privasip in [false, true] {
        let mut net = Net::new(privasip, Answer::Accept, "wonderland");
        net.register("alice");
        net.register("bob");
        let now = net.now;
        let mut rng = ChaCha20Rng::seed_from_u64(6);
        let call = net
            .ua("alice")
            .call(now, &format!("sip:bob@{DOMAIN}"), &mut rng)
            .expect("call");
        // Bob rings for 300 ms; hang up after the 180, before the answer.
        net.run(Duration::from_millis(100));
        assert!(net.saw("alice", |e| *e == UaEvent::Response { call, status: 180 }));
        let now = net.now;
        net.ua("alice").hangup(now, call, &mut rng).expect("cancel");
        net.run(Duration::from_secs(10));
        assert!(
            net.saw("alice", |e| *e == UaEvent::Failed { call, status: 487 }),
            "{:?}",
            net.events
        );
        assert!(net.saw("bob", |e| matches!(e, UaEvent::Failed { status: 487, .. })));
        assert!(!net.saw("bob", |e| matches!(e, UaEvent::Answered { .. })));
        let cancel = net
            .wire
            .iter()
            .map(|m| String::from_utf8_lossy(m).into_owned())
            .find(|t| t.starts_with("CANCEL "))
            .expect("a CANCEL crossed");
        if privasip {
            assert!(
                !cancel.contains("alice") && !cancel.contains("bob"),
                "{cancel}"
            );
        }
    }
}
