//! Topology hiding between two proxies on virtual time: Alice on A's LAN,
//! the A-B link and the B-Bob link over Tor (as in the demo). A
//! PrivaSIP-2 call, its ACK, a re-INVITE and BYEs from either side work;
//! what crosses Tor names no address, Contact or domain of the other
//! side; every handle is per dialog and refused outside it; and a proxy
//! restarted in the middle of a dialog still routes it.

mod common;

use std::time::Duration;

use common::Net;
use privasip_identity::{PrivateKey, SchemeId};
use privasip_message::{HeaderName, Limits, Message};
use privasip_proxy::Proxy;
use privasip_ua::{CallId, Home, Privacy, UaEvent};

const A_ONION: &str = "pa-onion.onion:5060";
const B_ONION: &str = "pb-onion.onion:5060";

fn parse(b: &[u8]) -> Message<'_> {
    Message::parse_datagram(b, &Limits::default()).expect("parses")
}

/// A proxy whose links to the peers in `tor` are Tor links.
fn proxy_b(net: &Net, key: &PrivateKey) -> Proxy<&'static str> {
    let copy = PrivateKey::from_text(&key.to_text()).expect("key text");
    let mut p = common::proxy(net.now, "pb", "b.example", vec![copy], false);
    p.set_tor_name(
        B_ONION.into(),
        Box::new(|peer: &&'static str| matches!(*peer, "pa" | "bob")),
    );
    p
}

struct Setup {
    net: Net,
    key_b: PrivateKey,
}

fn setup() -> Setup {
    #[allow(clippy::disallowed_methods)] // some starting instant
    let mut net = Net::new(std::time::Instant::now());
    let key_a = PrivateKey::generate(SchemeId::Hpke, 0, &mut net.rng).expect("key A");
    let key_b = PrivateKey::generate(SchemeId::Hpke, 0, &mut net.rng).expect("key B");
    let copy = |k: &PrivateKey| PrivateKey::from_text(&k.to_text()).expect("key text");
    let mut pa = common::proxy(net.now, "pa", "a.example", vec![copy(&key_a)], false);
    pa.set_tor_name(
        A_ONION.into(),
        Box::new(|peer: &&'static str| *peer == "pb"),
    );
    let pb = proxy_b(&net, &key_b);
    net.proxies.insert("pa", pa);
    net.proxies.insert("pb", pb);
    let alice = Privacy::PrivaSip {
        home: Home::Key(key_a.public()),
        callee_keys: [("b.example".to_owned(), key_b.public())].into(),
    };
    let bob = Privacy::PrivaSip {
        home: Home::Key(key_b.public()),
        callee_keys: Default::default(),
    };
    common::alice_and_bob(&mut net, alice, bob);
    Setup { net, key_b }
}

/// Alice calls Bob; the call is answered. Returns Alice's and Bob's ids
/// of it, and where the wire stood before it.
fn call(net: &mut Net) -> (CallId, CallId, usize) {
    let start = net.wire.len();
    let now = net.now;
    let mut rng = net.rng.clone();
    let a = net
        .ua("alice")
        .call(now, "sip:bob@b.example", &mut rng)
        .expect("call");
    net.run(Duration::from_secs(10));
    assert!(net.saw("alice", |e| *e == UaEvent::Answered { call: a }));
    let b = net
        .events
        .iter()
        .rev()
        .find_map(|(n, e)| match e {
            UaEvent::Incoming { call, .. } if *n == "bob" => Some(*call),
            _ => None,
        })
        .expect("Bob was called");
    (a, b, start)
}

/// The messages of one call on the link between `x` and `y`, both ways.
fn link(net: &Net, from: usize, x: &str, y: &str) -> Vec<String> {
    net.wire
        .get(from..)
        .unwrap_or_default()
        .iter()
        .filter(|(f, t, _)| (*f == x && *t == y) || (*f == y && *t == x))
        .map(|(_, _, b)| String::from_utf8_lossy(b).into_owned())
        .collect()
}

fn assert_absent(msgs: &[String], what: &[&str], link: &str) {
    for m in msgs {
        for w in what {
            assert!(!m.contains(w), "{w:?} crossed {link}:\n{m}");
        }
    }
}

/// The Contact of the first message on the wire from `from` to `to`
/// (after `start`) that is `first_line`.
fn contact_seen(net: &Net, start: usize, from: &str, to: &str, first_line: &str) -> String {
    net.wire
        .get(start..)
        .unwrap_or_default()
        .iter()
        .filter(|(f, t, _)| *f == from && *t == to)
        .map(|(_, _, b)| parse(b))
        .find(|m| {
            m.status().map_or_else(
                || m.method().is_some_and(|x| x.as_str() == first_line),
                |s| s.to_string() == first_line,
            )
        })
        .and_then(|m| m.values(HeaderName::Contact).next().map(str::to_owned))
        .expect("a Contact")
}

#[test]
fn nothing_of_either_side_crosses_tor_and_dialogs_still_work() {
    let Setup { mut net, .. } = setup();
    let (a1, _b1, start1) = call(&mut net);

    // A-B: no address, Contact host or domain of Alice's, none of Bob's.
    let ab = link(&net, start1, "pa", "pb");
    assert!(!ab.is_empty());
    assert_absent(
        &ab,
        &["ua1.host", "ua2.host", "a.example", "pa.host", "pb.host"],
        "A-B",
    );
    // B-Bob: nothing of Alice's side, not even A's onion.
    let bob_link = link(&net, start1, "pb", "bob");
    assert_absent(
        &bob_link,
        &["ua1.host", "a.example", "pa-onion", "pa.host"],
        "B-Bob",
    );
    // Alice's LAN: nothing of Bob's (B's onion, the callee's provider, is
    // what she called).
    let alice_link = link(&net, start1, "alice", "pa");
    assert_absent(&alice_link, &["ua2.host"], "Alice-A");

    // Bob's Contact as Alice sees it is a handle at B; Alice's as Bob sees
    // it, a handle at B too.
    let bob_contact = contact_seen(&net, start1, "pa", "alice", "200");
    assert!(bob_contact.contains(B_ONION), "{bob_contact}");
    let alice_contact = contact_seen(&net, start1, "pb", "bob", "INVITE");
    assert!(alice_contact.contains(B_ONION), "{alice_contact}");

    // A second call: every handle differs.
    let now = net.now;
    let mut rng = net.rng.clone();
    net.ua("alice").hangup(now, a1, &mut rng).expect("hangup");
    net.run(Duration::from_secs(10));
    assert!(net.saw("alice", |e| *e == UaEvent::Ended { call: a1 }));
    let (_a2, b2, start2) = call(&mut net);
    assert_ne!(
        bob_contact,
        contact_seen(&net, start2, "pa", "alice", "200")
    );
    assert_ne!(
        alice_contact,
        contact_seen(&net, start2, "pb", "bob", "INVITE")
    );

    // This time Bob hangs up: his BYE finds Alice through both handles.
    let now = net.now;
    net.ua("bob").hangup(now, b2, &mut rng).expect("hangup");
    net.run(Duration::from_secs(10));
    assert!(net.saw("bob", |e| *e == UaEvent::Ended { call: b2 }));
    let alice_ended = net
        .events
        .iter()
        .filter(|(n, e)| *n == "alice" && matches!(e, UaEvent::Ended { .. }))
        .count();
    assert_eq!(alice_ended, 2, "{:?}", net.events);
    let all = link(&net, start1, "pa", "pb");
    assert_absent(&all, &["ua1.host", "ua2.host", "a.example"], "A-B");
}

/// One side of the dialog, as the wire showed it to that side.
struct Side {
    /// Where the side sends (its proxy) and its own name.
    proxy: &'static str,
    me: &'static str,
    /// The other side's name, and the host its real Contact has.
    peer: &'static str,
    peer_host: &'static str,
    /// Remote target, route set, local and remote URIs with tags.
    target: String,
    routes: Vec<String>,
    local: String,
    remote: String,
    call_id: String,
    via_host: &'static str,
}

/// The dialog as `who` sees it after `call` (RFC 3261 §12.1: the callee
/// takes the route set from the INVITE's Record-Route as it is, the
/// caller from the 200's, reversed).
fn side(net: &Net, start: usize, who: &str) -> Side {
    let find = |from: &str, to: &str, request: bool| {
        net.wire
            .get(start..)
            .unwrap_or_default()
            .iter()
            .find(|(f, t, b)| {
                *f == from
                    && *t == to
                    && if request {
                        parse(b).method().is_some_and(|m| m.as_str() == "INVITE")
                    } else {
                        parse(b).status() == Some(200)
                    }
            })
            .map(|(_, _, b)| b.clone())
            .expect("a message of the call")
    };
    let first = |m: &Message<'_>, h: HeaderName| m.values(h).next().expect("header").to_owned();
    let contact = |m: &Message<'_>| match m.contacts() {
        Some(privasip_message::ContactValue::Addrs(a)) => {
            a.first().map(|n| n.uri_raw.to_owned()).expect("contact")
        }
        _ => panic!("no contact"),
    };
    let invite_to_bob = find("pb", "bob", true);
    let ok_from_bob = find("bob", "pb", false);
    let ok_to_alice = find("pa", "alice", false);
    if who == "bob" {
        let inv = parse(&invite_to_bob);
        Side {
            proxy: "pb",
            me: "bob",
            peer: "alice",
            peer_host: "ua1.host",
            target: contact(&inv),
            routes: inv
                .address_texts(HeaderName::RecordRoute)
                .into_iter()
                .map(str::to_owned)
                .collect(),
            local: first(&parse(&ok_from_bob), HeaderName::To),
            remote: first(&inv, HeaderName::From),
            call_id: inv.call_id().expect("call-id").to_owned(),
            via_host: "ua2.host",
        }
    } else {
        let ok = parse(&ok_to_alice);
        let mut routes: Vec<String> = ok
            .address_texts(HeaderName::RecordRoute)
            .into_iter()
            .map(str::to_owned)
            .collect();
        routes.reverse();
        Side {
            proxy: "pa",
            me: "alice",
            peer: "bob",
            peer_host: "ua2.host",
            target: contact(&ok),
            routes,
            local: first(&ok, HeaderName::From),
            remote: first(&ok, HeaderName::To),
            call_id: ok.call_id().expect("call-id").to_owned(),
            via_host: "ua1.host",
        }
    }
}

/// A re-INVITE from `who` along the dialog it was given, and its ACK.
fn re_invite(who: &str) {
    let Setup { mut net, .. } = setup();
    let (_a, _b, start) = call(&mut net);
    let s = side(&net, start, who);
    let request = |method: &str, cseq: u32| {
        format!(
            "{method} {} SIP/2.0\r\nVia: SIP/2.0/UDP {}:5060;branch=z9hG4bKre{method}{cseq}\r\n\
             Max-Forwards: 70\r\nRoute: {}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\n\
             CSeq: {cseq} {method}\r\nContact: <sip:me@{}:5060>\r\nContent-Length: 0\r\n\r\n",
            s.target,
            s.via_host,
            s.routes.join(", "),
            s.local,
            s.remote,
            s.call_id,
            s.via_host
        )
    };
    // Sends `method` from the side to its proxy; where the wire stood.
    let send = |net: &mut Net, method: &str| {
        let before = net.wire.len();
        let now = net.now;
        net.proxies.get_mut(s.proxy).expect("proxy").receive(
            now,
            request(method, 7).as_bytes(),
            s.me,
            false,
        );
        net.run(Duration::from_secs(5));
        before
    };
    let before = send(&mut net, "INVITE");
    let got = net.wire.get(before..).unwrap_or_default();
    let reached = got
        .iter()
        .find(|(_, t, b)| *t == s.peer && parse(b).is_request())
        .map(|(_, _, b)| parse(b).request_uri().unwrap_or_default().to_owned())
        .unwrap_or_else(|| panic!("{who}'s re-INVITE did not reach {}", s.peer));
    assert!(
        reached.contains(s.peer_host),
        "to the real Contact: {reached}"
    );
    let answered = got
        .iter()
        .any(|(f, t, b)| *f == s.proxy && *t == s.me && parse(b).status() == Some(200));
    assert!(answered, "the 200 came back to {who}");
    let crossing = link(&net, before, "pa", "pb");
    assert_absent(&crossing, &["ua1.host", "ua2.host", "a.example"], "A-B");

    // Its ACK takes the same way.
    let before = send(&mut net, "ACK");
    let acked = net
        .wire
        .get(before..)
        .unwrap_or_default()
        .iter()
        .any(|(_, t, b)| *t == s.peer && parse(b).method().is_some_and(|m| m.as_str() == "ACK"));
    assert!(acked, "the ACK reached {}", s.peer);
}

#[test]
fn a_re_invite_from_the_callee_reaches_the_caller() {
    re_invite("bob");
}

#[test]
fn a_re_invite_from_the_caller_reaches_the_callee() {
    re_invite("alice");
}

#[test]
fn handles_are_refused_outside_their_dialog_and_after_it() {
    let Setup { mut net, .. } = setup();
    let (a, _b, start) = call(&mut net);
    let handle = contact_seen(&net, start, "pa", "alice", "200");
    let uri = handle
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_owned();
    let stranger = |call_id: &str| {
        format!(
            "OPTIONS {uri} SIP/2.0\r\nVia: SIP/2.0/UDP x.invalid;branch=z9hG4bKs{call_id}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:x@x.invalid>;tag=s\r\nTo: <{uri}>\r\n\
             Call-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let answer_to = |net: &mut Net, req: String| {
        let before = net.wire.len();
        let now = net.now;
        net.proxies
            .get_mut("pb")
            .expect("pb")
            .receive(now, req.as_bytes(), "pa", false);
        net.run(Duration::from_secs(1));
        let reached_bob = net
            .wire
            .get(before..)
            .unwrap_or_default()
            .iter()
            .any(|(f, t, _)| *f == "pb" && *t == "bob");
        let status = net
            .wire
            .get(before..)
            .unwrap_or_default()
            .iter()
            .find(|(f, t, _)| *f == "pb" && *t == "pa")
            .and_then(|(_, _, b)| parse(b).status());
        (reached_bob, status)
    };
    // From outside the dialog (another Call-ID): nobody there.
    assert_eq!(
        answer_to(&mut net, stranger("other-call")),
        (false, Some(404))
    );
    // After the dialog's BYE, not even with its Call-ID.
    let call_id = net
        .wire
        .get(start..)
        .unwrap_or_default()
        .iter()
        .find_map(|(f, _, b)| (*f == "alice").then(|| parse(b).call_id().map(str::to_owned)))
        .flatten()
        .expect("call-id");
    let now = net.now;
    let mut rng = net.rng.clone();
    net.ua("alice").hangup(now, a, &mut rng).expect("hangup");
    net.run(Duration::from_secs(10));
    assert_eq!(answer_to(&mut net, stranger(&call_id)), (false, Some(404)));
}

#[test]
fn a_dialog_survives_a_restart_of_the_callees_proxy() {
    let Setup { mut net, key_b } = setup();
    let (a, b, _) = call(&mut net);
    // Proxy B restarts: same secret (kept in its store), nothing else.
    let fresh = proxy_b(&net, &key_b);
    net.proxies.insert("pb", fresh);
    let now = net.now;
    let mut rng = net.rng.clone();
    net.ua("alice").hangup(now, a, &mut rng).expect("hangup");
    net.run(Duration::from_secs(10));
    assert!(net.saw("alice", |e| *e == UaEvent::Ended { call: a }));
    assert!(
        net.saw("bob", |e| *e == UaEvent::Ended { call: b }),
        "Bob got the BYE through the restarted proxy: {:?}",
        net.events
    );
}
