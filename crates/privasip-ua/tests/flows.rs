//! Two user agents and one proxy core, in memory, on virtual time: Digest
//! registration, a PrivaSIP-2 call answered and hung up, busy, an offline
//! callee, a wrong password, a call cancelled while it rings.

mod common;

use std::time::{Duration, Instant};

use common::Net;
use privasip_identity::{PrivateKey, SchemeId};
use privasip_ua::{Answer, Home, Privacy, UaEvent};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;

const DOMAIN: &str = "example.com";

/// Alice and Bob at one proxy ("proxy"), PrivaSIP-2 with HPKE or plain.
fn one_proxy(privasip: bool, bob_answer: Answer, alice_pw: &str) -> Net {
    #[allow(clippy::disallowed_methods)] // some starting instant
    let mut net = Net::new(Instant::now());
    let key = PrivateKey::generate(SchemeId::Hpke, 0, &mut net.rng).expect("key");
    let privacy = || {
        if privasip {
            Privacy::PrivaSip {
                home: Home::Key(key.public()),
                callee_keys: [(DOMAIN.to_owned(), key.public())].into(),
            }
        } else {
            Privacy::Plain
        }
    };
    let keys = if privasip {
        vec![PrivateKey::from_text(&key.to_text()).expect("key text")]
    } else {
        Vec::new()
    };
    let proxy = common::proxy(net.now, "proxy", DOMAIN, keys, false);
    net.proxies.insert("proxy", proxy);
    net.uas.insert(
        "alice",
        common::ua(
            "alice",
            alice_pw,
            DOMAIN,
            "proxy",
            privacy(),
            Answer::Accept,
        ),
    );
    net.uas.insert(
        "bob",
        common::ua("bob", "zanzibar", DOMAIN, "proxy", privacy(), bob_answer),
    );
    net
}

fn call_flow(privasip: bool) {
    let mut net = one_proxy(privasip, Answer::Accept, "wonderland");
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
    let caller = net.caller_seen_by("bob").expect("bob was called");
    if privasip {
        assert!(caller.starts_with("ps1h."), "bob sees a token: {caller}");
        // No real ID of either party in anything that crossed the wire.
        for (_, _, text) in net.texts() {
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
            .texts()
            .map(|(_, _, t)| t)
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
    let mut net = one_proxy(true, Answer::Busy, "wonderland");
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
    let mut net = one_proxy(false, Answer::Accept, "wonderland");
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
    let mut net = one_proxy(false, Answer::Accept, "not-the-password");
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
    let mut net = one_proxy(false, Answer::Accept, "wonderland");
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
        let mut net = one_proxy(privasip, Answer::Accept, "wonderland");
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
            .texts()
            .map(|(_, _, t)| t)
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

#[test]
fn a_request_with_a_malformed_header_is_answered_400_naming_it() {
    let mut net = one_proxy(false, Answer::Accept, "wonderland");
    let bad = b"OPTIONS sip:bob@example.com SIP/2.0\r\n\
        Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKbad1\r\n\
        To: <sip:bob@example.com>\r\n\
        From: <sip:x@example.com>;tag=1\r\n\
        Call-ID: bad1\r\n\
        CSeq: 1 OPTIONS\r\n\
        Max-Forwards: 70\r\n\
        Contact: <sip:x@192.0.2.1\r\n\
        Content-Length: 0\r\n\r\n";
    let (now, rng) = (net.now, &mut net.rng);
    let bob = net.uas.get_mut("bob").expect("bob");
    bob.receive(now, bad, "proxy", rng);
    let answer = bob.poll_transmit().expect("an answer");
    let text = String::from_utf8(answer.bytes).expect("utf8");
    let status = text.lines().next().unwrap_or_default();
    assert!(
        status.starts_with("SIP/2.0 400 Bad Request") && status.contains("Contact"),
        "{status}"
    );
    assert!(text.contains("To: <sip:bob@example.com>;tag="), "{text}");
    // An ACK, or a request whose To cannot be read, cannot be answered.
    for unanswerable in [
        String::from_utf8_lossy(bad).replace("OPTIONS", "ACK"),
        String::from_utf8_lossy(bad).replace("To: <sip:bob@example.com>", "To: <sip:bob"),
    ] {
        bob.receive(now, unanswerable.as_bytes(), "proxy", rng);
        assert!(bob.poll_transmit().is_none());
    }
}
