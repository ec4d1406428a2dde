//! What Tor peers may cost: each incoming circuit is a source, all of
//! Tor's strangers together share ten times one source's budget, and a
//! peer proxy that signs its requests with a shared key has a budget of
//! its own, so a flood over many circuits cannot starve it. Counts, never
//! times.

// Tests need some starting instant; which one does not matter.
#![allow(clippy::disallowed_methods)]

use std::time::Instant;

use privasip_digest::Algorithm;
use privasip_identity::{Keyring, PrivateKey, RealId, SchemeId};
use privasip_message::{HeaderName, Limits, Message};
use privasip_proxy::{
    Next, Origin, PEER_SCHEME, PeerKey, PeerKeys, Proxy, ProxyConfig, RelayPolicy,
};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

/// Peers: 0 is a stream we opened; `n` > 0 arrived on incoming circuit n;
/// `ALICE` is a LAN user of Proxy A.
type Peer = u64;
const ALICE: Peer = u64::MAX;
const BOB: Peer = u64::MAX - 1;
const PER_SECOND: u32 = 5;
const BURST: u32 = 10;
/// Ten times a source's burst, for all of Tor's strangers.
const WIDE_BURST: u64 = 10 * BURST as u64;

fn origin(p: &Peer) -> Origin {
    match *p {
        ALICE => Origin::Ip("192.168.1.7".parse().expect("address")),
        BOB => Origin::Tor { circuit: None },
        0 => Origin::Tor { circuit: None },
        n => Origin::Tor { circuit: Some(n) },
    }
}

fn proxy(domain: &str, routed: &[&str], key: Option<PeerKey>) -> Proxy<Peer> {
    let cfg = ProxyConfig {
        digest: vec![Algorithm::Sha256],
        relay: RelayPolicy {
            routed_domains: routed.iter().map(|d| (*d).to_owned()).collect(),
            trusted: vec!["192.168.0.0/16".parse().expect("network")],
            ..RelayPolicy::default()
        },
        ..ProxyConfig::new(domain, format!("{domain}:5060"))
    };
    let mut p = Proxy::new(
        cfg,
        Box::new(|host: &str, _: Option<u16>, _: &str| {
            let peer = match host {
                "b.example" => 0,
                "bob.invalid" => BOB,
                _ => return None,
            };
            Some(Next {
                peer,
                reliable: true,
            })
        }),
        [3; 32],
        Instant::now(),
    );
    p.set_origin(Box::new(origin));
    p.set_request_budget(PER_SECOND, BURST);
    if let Some(k) = key {
        p.set_peer_keys(PeerKeys::new(vec![k]).expect("one key"));
    }
    p
}

fn drain(p: &mut Proxy<Peer>) -> Vec<(Peer, Vec<u8>)> {
    std::iter::from_fn(|| p.poll_transmit().map(|t| (t.to, t.bytes))).collect()
}

fn parse(b: &[u8]) -> Message<'_> {
    Message::parse_datagram(b, &Limits::default()).expect("proxy output parses")
}

fn options(i: u32) -> Vec<u8> {
    format!(
        "OPTIONS sip:b.example SIP/2.0\r\nVia: SIP/2.0/TCP x.invalid;branch=z9hG4bKo{i}\r\n\
         Max-Forwards: 70\r\nTo: <sip:b.example>\r\nFrom: <sip:x@x.invalid>;tag=f{i}\r\n\
         Call-ID: o-{i}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn invite(user: &str, call: u32) -> Vec<u8> {
    format!(
        "INVITE sip:{user}@b.example SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.168.1.7:5062;branch=z9hG4bKi{call}\r\n\
         Max-Forwards: 70\r\nTo: <sip:{user}@b.example>\r\n\
         From: <sip:alice@a.example>;tag=a{call}\r\nCall-ID: call-{call}\r\n\
         CSeq: 1 INVITE\r\nContact: <sip:alice@192.168.1.7:5062>\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// Strangers flood from `circuits` fresh circuits, 20 requests each; how
/// many got an answer.
fn flood(b: &mut Proxy<Peer>, circuits: std::ops::Range<u64>, now: Instant) -> u64 {
    let mut answered = 0;
    for c in circuits {
        for i in 0..20 {
            b.receive(now, &options(i), c, true);
            answered += drain(b).len() as u64;
        }
    }
    answered
}

#[test]
fn each_circuit_is_a_source_and_tor_strangers_share_a_ceiling() {
    let now = Instant::now();
    let mut b = proxy("b.example", &[], None);
    // One circuit: its own burst, then nothing.
    assert_eq!(flood(&mut b, 1..2, now), u64::from(BURST));
    // A second circuit has a budget of its own...
    assert_eq!(flood(&mut b, 2..3, now), u64::from(BURST));
    // ...but a thousand fresh circuits together get no more than all of
    // Tor's strangers may (ten times one source).
    let more = flood(&mut b, 3..1003, now);
    assert_eq!(2 * u64::from(BURST) + more, WIDE_BURST);
}

/// Proxy A forwards Alice's INVITE to b.example with the shared key.
fn signed_invite(a: &mut Proxy<Peer>, user: &str, call: u32) -> Vec<u8> {
    a.receive(Instant::now(), &invite(user, call), ALICE, false);
    let out = drain(a);
    let (_, fwd) = out
        .into_iter()
        .find(|(to, b)| *to == 0 && parse(b).is_request())
        .expect("forwarded to b.example");
    fwd
}

fn peer_key(sends_to: &[&str]) -> PeerKey {
    PeerKey::new(
        "federation",
        [0x42; 32],
        sends_to.iter().map(|s| (*s).to_owned()).collect(),
    )
}

#[test]
fn a_signing_peer_gets_through_a_flood_of_strangers() {
    let now = Instant::now();
    let mut a = proxy("a.example", &["b.example"], Some(peer_key(&["b.example"])));
    let mut b = proxy("b.example", &[], Some(peer_key(&[])));
    // Bob is registered at B (over a stream of his).
    let reg = "REGISTER sip:b.example SIP/2.0\r\nVia: SIP/2.0/TCP bob.invalid;branch=z9hG4bKr\r\n\
               Max-Forwards: 70\r\nTo: <sip:bob@b.example>\r\nFrom: <sip:bob@b.example>;tag=r\r\n\
               Call-ID: reg\r\nCSeq: 1 REGISTER\r\nContact: <sip:bob@bob.invalid;transport=tcp>\r\n\
               Expires: 600\r\nContent-Length: 0\r\n\r\n";
    b.receive(now, reg.as_bytes(), BOB, true);
    assert_eq!(parse(&drain(&mut b)[0].1).status(), Some(200));

    // Strangers spend every budget Tor has.
    flood(&mut b, 1..1001, now);
    let dropped = b.dropped_requests();
    b.receive(now, &options(0), 5000, true);
    assert!(
        drain(&mut b).is_empty(),
        "a stranger's new circuit is dropped"
    );

    // Proxy A's INVITE, on yet another fresh circuit, is signed: it is
    // charged to the peer key's own budget and reaches Bob, without the
    // credential.
    let fwd = signed_invite(&mut a, "bob", 1);
    let m = parse(&fwd);
    let cred = m
        .values(HeaderName::ProxyAuthorization)
        .next()
        .expect("a peer credential");
    assert!(cred.starts_with(PEER_SCHEME), "{cred}");
    b.receive(now, &fwd, 5001, true);
    let out = drain(&mut b);
    let to_bob = out
        .iter()
        .find(|(to, _)| *to == BOB)
        .expect("the INVITE reached Bob");
    assert_eq!(
        parse(&to_bob.1)
            .values(HeaderName::ProxyAuthorization)
            .count(),
        0,
        "the credential ends at B"
    );
    assert_eq!(b.dropped_requests(), dropped + 1, "only the stranger's");

    // The same INVITE with its MAC altered is a stranger's, and dropped.
    let text = String::from_utf8(fwd).expect("text");
    let forged = text.replacen("mac=\"", "mac=\"A", 1);
    b.receive(now, forged.as_bytes(), 5002, true);
    assert!(drain(&mut b).is_empty(), "a forged credential buys nothing");
    // A credential for one request does not sign another.
    let other = text.replace("Call-ID: call-1", "Call-ID: call-2");
    b.receive(now, other.as_bytes(), 5003, true);
    assert!(
        drain(&mut b).is_empty(),
        "a credential is for its own request"
    );
}

#[test]
fn without_a_shared_key_nothing_is_signed() {
    let mut a = proxy("a.example", &["b.example"], Some(peer_key(&["c.example"])));
    let fwd = signed_invite(&mut a, "bob", 1);
    assert_eq!(
        parse(&fwd).values(HeaderName::ProxyAuthorization).count(),
        0
    );
}

#[test]
fn token_opens_from_many_circuits_share_tors_ceiling() {
    let now = Instant::now();
    let mut rng = ChaCha20Rng::seed_from_u64(8);
    let key = PrivateKey::generate(SchemeId::Hpke, 0, &mut rng).expect("key");
    let mut enc = key.public().encryptor();
    let mut ring = Keyring::default();
    ring.add_key(key.into_decryptor());
    let mut b = proxy("b.example", &[], None);
    b.set_keyring(ring);
    b.set_token_budget(2, 4);
    // Forged callee tokens (sealed for another dialog), each on a fresh
    // circuit and Call-ID: every one would be public-key work.
    let bob = RealId::new("bob").expect("id");
    let token = enc
        .seal(&bob, b"elsewhere", &mut rng)
        .expect("seal")
        .to_string();
    for c in 1..=500u32 {
        let req = String::from_utf8(invite(&token, c))
            .expect("text")
            .replace("192.168.1.7", "x.invalid");
        b.receive(now, req.as_bytes(), u64::from(c), true);
        drain(&mut b);
    }
    // Each circuit could open 4; all of them together, 40.
    assert_eq!(b.token_open_attempts(), 40);
}
