//! The paper's set-up in memory, on virtual time: Alice at proxy A
//! (a.example), Bob at proxy B (b.example), a PrivaSIP-2 call between them
//! with every scheme. Each proxy learns only its own user, Bob only a
//! token, no real ID crosses any link, and only A accounts the call.

mod common;

use std::time::{Duration, Instant};

use common::Net;
use privasip_identity::{PrivateKey, SchemeId};
use privasip_proxy::StoreEvent;
use privasip_ua::{Answer, Home, Privacy, UaEvent};

/// A's scheme for Alice's token; B's key scheme for Bob's (AES is a
/// caller scheme only: the callee's proxy shares no password with Alice).
fn paper_call(scheme: SchemeId) {
    #[allow(clippy::disallowed_methods)] // some starting instant
    let mut net = Net::new(Instant::now());
    let key_scheme = if scheme == SchemeId::Aes {
        SchemeId::Ecies
    } else {
        scheme
    };
    let key_a = PrivateKey::generate(key_scheme, 2048, &mut net.rng).expect("key A");
    let key_b = PrivateKey::generate(key_scheme, 2048, &mut net.rng).expect("key B");
    let aes = scheme == SchemeId::Aes;
    let home = |key: &PrivateKey| {
        if aes {
            Home::Aes { next_counter: 0 }
        } else {
            Home::Key(key.public())
        }
    };
    let alice = Privacy::PrivaSip {
        home: home(&key_a),
        callee_keys: [("b.example".to_owned(), key_b.public())].into(),
    };
    let bob = Privacy::PrivaSip {
        home: home(&key_b),
        callee_keys: Default::default(),
    };
    let copy = |k: &PrivateKey| PrivateKey::from_text(&k.to_text()).expect("key text");
    let pa = common::proxy(net.now, "pa", "a.example", vec![copy(&key_a)], aes);
    let pb = common::proxy(net.now, "pb", "b.example", vec![copy(&key_b)], aes);
    net.proxies.insert("pa", pa);
    net.proxies.insert("pb", pb);
    common::alice_and_bob(&mut net, alice, bob);
    for who in ["alice", "bob"] {
        assert!(
            net.saw(who, |e| matches!(e, UaEvent::Registered { .. })),
            "{scheme:?}: {who} did not register: {:?}",
            net.events
        );
    }
    let now = net.now;
    let mut rng = net.rng.clone();
    let call = net
        .ua("alice")
        .call(now, "sip:bob@b.example", &mut rng)
        .expect("call");
    net.run(Duration::from_secs(10));
    assert!(
        net.saw("alice", |e| *e == UaEvent::Answered { call }),
        "{scheme:?}: {:?}",
        net.events
    );
    let caller = net.caller_seen_by("bob").expect("bob was called");
    let tag = format!("ps1{}.", scheme.tag());
    assert!(caller.starts_with(&tag), "{scheme:?}: Bob sees {caller}");
    let now = net.now;
    net.ua("alice").hangup(now, call, &mut rng).expect("hangup");
    net.run(Duration::from_secs(10));
    assert!(net.saw("alice", |e| *e == UaEvent::Ended { call }));
    assert!(net.saw("bob", |e| matches!(e, UaEvent::Ended { .. })));

    // No link carried a real ID or a display name.
    for (from, to, text) in net.texts() {
        for secret in ["alice", "bob@", ":bob", "Liddell"] {
            assert!(
                !text.contains(secret),
                "{scheme:?}: {secret:?} on {from} -> {to}:\n{text}"
            );
        }
    }
    // Only the home proxy accounts, under the real caller.
    let accounted: Vec<(&str, &str)> = net
        .stored
        .iter()
        .filter_map(|(p, e)| match e {
            StoreEvent::CallStarted { caller, .. } => Some((*p, caller.expose().as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(accounted, [("pa", "alice")], "{scheme:?}");
    if aes {
        // A used AES token never opens again, also after a restart.
        let counters: Vec<(&str, u64)> = net
            .stored
            .iter()
            .filter_map(|(p, e)| match e {
                StoreEvent::AesCounter { user, next } if *p == "pa" => {
                    assert_eq!(*user, "alice");
                    Some((*p, *next))
                }
                _ => None,
            })
            .collect();
        assert!(
            counters.len() >= 2,
            "a REGISTER and an INVITE token: {counters:?}"
        );
        assert!(counters.windows(2).all(|w| w[0].1 < w[1].1), "{counters:?}");
        assert_eq!(
            net.ua("alice").aes_next_counter(),
            counters.last().map(|c| c.1),
            "the proxy is where Alice's counter is"
        );
    }
}

#[test]
fn privasip2_between_two_proxies_with_rsa() {
    paper_call(SchemeId::Rsa);
}

#[test]
fn privasip2_between_two_proxies_with_ecies() {
    paper_call(SchemeId::Ecies);
}

#[test]
fn privasip2_between_two_proxies_with_hpke() {
    paper_call(SchemeId::Hpke);
}

#[test]
fn privasip2_between_two_proxies_with_aes() {
    paper_call(SchemeId::Aes);
}

#[test]
fn aes_registration_refreshes_take_fresh_tokens() {
    #[allow(clippy::disallowed_methods)] // some starting instant
    let mut net = Net::new(Instant::now());
    let pa = common::proxy(net.now, "pa", "a.example", Vec::new(), true);
    net.proxies.insert("pa", pa);
    let privacy = Privacy::PrivaSip {
        home: Home::Aes { next_counter: 0 },
        callee_keys: Default::default(),
    };
    let ua = common::ua(
        "alice",
        "wonderland",
        "a.example",
        "pa",
        privacy,
        Answer::Accept,
    );
    net.uas.insert("alice", ua);
    net.register("alice");
    // 600 s granted, refreshed at 80%: three rounds in 1100 s.
    net.run(Duration::from_secs(1100));
    let registered = net
        .events
        .iter()
        .filter(|(_, e)| matches!(e, UaEvent::Registered { .. }))
        .count();
    assert!(registered >= 2, "{:?}", net.events);
    assert!(
        !net.saw("alice", |e| matches!(e, UaEvent::RegistrationFailed { .. })),
        "{:?}",
        net.events
    );
    let froms: std::collections::BTreeSet<String> = net
        .texts()
        .filter(|(f, _, t)| *f == "alice" && t.starts_with("REGISTER"))
        .filter_map(|(_, _, t)| {
            t.lines()
                .find(|l| l.starts_with("From:"))
                .map(str::to_owned)
        })
        .collect();
    assert!(froms.len() >= registered, "one token per round: {froms:?}");
}

#[test]
fn aes_tokens_from_a_wrong_password_do_not_open() {
    #[allow(clippy::disallowed_methods)] // some starting instant
    let mut net = Net::new(Instant::now());
    let pa = common::proxy(net.now, "pa", "a.example", Vec::new(), true);
    net.proxies.insert("pa", pa);
    let privacy = Privacy::PrivaSip {
        home: Home::Aes { next_counter: 0 },
        callee_keys: Default::default(),
    };
    let ua = common::ua("alice", "guess", "a.example", "pa", privacy, Answer::Accept);
    net.uas.insert("alice", ua);
    net.register("alice");
    assert!(
        net.saw("alice", |e| matches!(
            e,
            UaEvent::RegistrationFailed { status: 403 | 404 }
        )),
        "{:?}",
        net.events
    );
    assert!(
        net.stored
            .iter()
            .all(|(_, e)| !matches!(e, StoreEvent::AesCounter { .. }))
    );
}
