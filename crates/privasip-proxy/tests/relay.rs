//! The relay policy (doc/relay.md), rule by rule, in the sans-IO core: the
//! attacks that made the proxy an open relay and an SSRF gadget, each
//! answered here. Peers are names; the addresses they stand for are what
//! `set_origin` says, so no test sends anything anywhere.

// Tests need some starting instant; which one does not matter.
#![allow(clippy::disallowed_methods)]

use std::net::IpAddr;
use std::time::{Duration, Instant};

use privasip_digest::Algorithm;
use privasip_message::{Limits, Message};
use privasip_proxy::{Next, Origin, Proxy, ProxyConfig, RelayPolicy};

type Sent = Vec<(&'static str, Vec<u8>)>;

/// Who each peer is.
fn origin(peer: &&'static str) -> Origin {
    let ip = |s: &str| Origin::Ip(s.parse::<IpAddr>().expect("an address"));
    match *peer {
        "alice" => ip("198.51.100.7"),
        "bob" => ip("198.51.100.8"),
        "mallory" => ip("203.0.113.66"),
        "loopback" => ip("127.0.0.1"),
        "lan" => ip("192.168.1.20"),
        "tor" => Origin::Tor { circuit: None },
        _ => Origin::Unknown,
    }
}

fn proxy(relay: RelayPolicy) -> Proxy<&'static str> {
    let cfg = ProxyConfig {
        digest: vec![Algorithm::Sha256],
        relay,
        ..ProxyConfig::new("b.example", "192.0.2.10:5060")
    };
    let mut p = Proxy::new(
        cfg,
        Box::new(|host: &str, _port: Option<u16>, _t: &str| {
            let peer = match host {
                "alice.host" => "alice",
                "bob.host" => "bob",
                "127.0.0.1" | "[::1]" => "loopback",
                "192.168.1.20" | "c.example" => "lan",
                "203.0.113.66" => "mallory",
                "dave.onion" => "tor",
                _ => return None,
            };
            Some(Next {
                peer,
                reliable: false,
            })
        }),
        [5; 32],
        Instant::now(),
    );
    p.set_origin(Box::new(origin));
    p
}

/// The default policy, with c.example routed explicitly (to the LAN).
fn strict() -> Proxy<&'static str> {
    proxy(RelayPolicy {
        routed_domains: vec!["c.example".into()],
        ..RelayPolicy::default()
    })
}

fn drain(p: &mut Proxy<&'static str>) -> Sent {
    std::iter::from_fn(|| p.poll_transmit().map(|t| (t.to, t.bytes))).collect()
}

fn parse(b: &[u8]) -> Message<'_> {
    Message::parse_datagram(b, &Limits::default()).expect("proxy output parses")
}

/// A request from `from_host`: `extra` holds any further header lines.
fn request(method: &str, ruri: &str, branch: &str, to_tag: &str, extra: &str) -> Vec<u8> {
    let tag = if to_tag.is_empty() {
        String::new()
    } else {
        format!(";tag={to_tag}")
    };
    format!(
        "{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP alice.host;branch={branch}\r\n\
         Max-Forwards: 70\r\nTo: <sip:bob@b.example>{tag}\r\nFrom: <sip:alice@a.example>;tag=a1\r\n\
         Call-ID: call-1\r\nCSeq: 1 {method}\r\nContact: <sip:alice@alice.host>\r\n{extra}\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn register(p: &mut Proxy<&'static str>, user: &str, contact: &str, from: &'static str) {
    let req = format!(
        "REGISTER sip:b.example SIP/2.0\r\nVia: SIP/2.0/UDP reg.host;branch=z9hG4bKreg{user}\r\n\
         Max-Forwards: 70\r\nTo: <sip:{user}@b.example>\r\nFrom: <sip:{user}@b.example>;tag=r1\r\n\
         Call-ID: reg-{user}\r\nCSeq: 1 REGISTER\r\nContact: <{contact}>\r\n\
         Expires: 600\r\nContent-Length: 0\r\n\r\n"
    );
    p.receive(Instant::now(), req.as_bytes(), from, true);
    let out = drain(p);
    assert_eq!(parse(&out[0].1).status(), Some(200), "{user} registered");
}

/// Everything sent, and to whom, as `(peer, status or method)`.
fn summary(out: &Sent) -> Vec<(&'static str, String)> {
    out.iter()
        .map(|(to, b)| {
            let m = parse(b);
            let what = match m.status() {
                Some(s) => s.to_string(),
                None => m
                    .method()
                    .map(|x| x.as_str().to_owned())
                    .unwrap_or_default(),
            };
            (*to, what)
        })
        .collect()
}

#[test]
fn strangers_are_not_relayed_for() {
    let mut p = strict();
    let t0 = Instant::now();
    let attacks: [(&str, Vec<u8>); 6] = [
        (
            "OPTIONS to a loopback port",
            request("OPTIONS", "sip:x@127.0.0.1:5070", "z9hG4bKs1", "", ""),
        ),
        (
            "MESSAGE to an address the attacker watches",
            request("MESSAGE", "sip:x@203.0.113.66", "z9hG4bKs2", "", ""),
        ),
        (
            "INVITE with any To tag, as if in a dialog",
            request("INVITE", "sip:x@203.0.113.66", "z9hG4bKs3", "t9", ""),
        ),
        (
            "INVITE for our domain with a preloaded Route elsewhere",
            request(
                "INVITE",
                "sip:bob@b.example",
                "z9hG4bKs4",
                "",
                "Route: <sip:203.0.113.66;lr>\r\n",
            ),
        ),
        (
            "INVITE to a LAN address",
            request("INVITE", "sip:x@192.168.1.20", "z9hG4bKs5", "", ""),
        ),
        (
            "BYE along a Route that names us without our tag",
            request(
                "BYE",
                "sip:x@127.0.0.1:22;transport=tcp",
                "z9hG4bKs6",
                "t9",
                "Route: <sip:192.0.2.10:5060;lr>\r\n",
            ),
        ),
    ];
    for (what, req) in attacks {
        p.receive(t0, &req, "mallory", false);
        let out = summary(&drain(&mut p));
        assert_eq!(out, [("mallory", "403".to_owned())], "{what}");
    }
}

#[test]
fn a_stray_ack_goes_nowhere() {
    let mut p = strict();
    let t0 = Instant::now();
    // The ACK that once opened a TCP connection to a local service and
    // wrote its body into it.
    let body = "GET / HTTP/1.0\r\n\r\n";
    let ack = format!(
        "ACK sip:x@127.0.0.1:8080;transport=tcp SIP/2.0\r\nVia: SIP/2.0/UDP m.host;branch=z9hG4bKack9\r\n\
         Max-Forwards: 70\r\nTo: <sip:x@127.0.0.1>;tag=t1\r\nFrom: <sip:m@m.example>;tag=f1\r\n\
         Call-ID: stray\r\nCSeq: 1 ACK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    p.receive(t0, ack.as_bytes(), "mallory", false);
    assert!(drain(&mut p).is_empty());
    // Nor along our name without our tag, nor with the tag of another dialog.
    for route in [
        "<sip:192.0.2.10:5060;lr>",
        "<sip:192.0.2.10:5060;lr;psr=AAAAAAAAAAAAAAAA>",
    ] {
        let ack = ack.replace(
            "Max-Forwards: 70\r\n",
            &format!("Max-Forwards: 70\r\nRoute: {route}\r\n"),
        );
        p.receive(t0, ack.as_bytes(), "mallory", false);
        assert!(drain(&mut p).is_empty(), "{route}");
    }
}

#[test]
fn our_domain_and_explicit_routes_are_open_to_anyone() {
    let mut p = strict();
    let t0 = Instant::now();
    register(&mut p, "bob", "sip:bob@bob.host", "bob");
    p.receive(
        t0,
        &request("INVITE", "sip:bob@b.example", "z9hG4bKo1", "", ""),
        "mallory",
        false,
    );
    assert_eq!(
        summary(&drain(&mut p)),
        [("mallory", "100".to_owned()), ("bob", "INVITE".to_owned())]
    );
    // An explicit route is the operator's word, even to a LAN address.
    p.receive(
        t0,
        &request("INVITE", "sip:carol@c.example", "z9hG4bKo2", "", ""),
        "mallory",
        false,
    );
    assert_eq!(
        summary(&drain(&mut p)),
        [("mallory", "100".to_owned()), ("lan", "INVITE".to_owned())]
    );
}

#[test]
fn a_dialog_follows_our_signed_record_route() {
    let mut p = strict();
    let t0 = Instant::now();
    register(&mut p, "bob", "sip:bob@bob.host", "bob");
    p.receive(
        t0,
        &request("INVITE", "sip:bob@b.example", "z9hG4bKd1", "", ""),
        "alice",
        false,
    );
    let out = drain(&mut p);
    let fwd = parse(&out[1].1);
    let rr = fwd.record_routes()[0].uri_raw.to_owned();
    assert!(rr.contains(";psr="), "{rr}");
    // Bob hangs up: along the Record-Route, to Alice's Contact.
    let bye = |route: &str, call_id: &str| {
        format!(
            "BYE sip:alice@alice.host SIP/2.0\r\nVia: SIP/2.0/UDP bob.host;branch=z9hG4bKbye{call_id}\r\n\
             Max-Forwards: 70\r\nRoute: <{route}>\r\nFrom: <sip:bob@b.example>;tag=b1\r\n\
             To: <sip:alice@a.example>;tag=a1\r\nCall-ID: {call_id}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes()
    };
    p.receive(t0, &bye(&rr, "call-1"), "bob", false);
    assert_eq!(summary(&drain(&mut p)), [("alice", "BYE".to_owned())]);
    // The tag is bound to its Call-ID: another dialog cannot borrow it.
    p.receive(t0, &bye(&rr, "call-2"), "mallory", false);
    assert_eq!(summary(&drain(&mut p)), [("mallory", "403".to_owned())]);
}

#[test]
fn trusted_sources_and_internal_destinations() {
    let t0 = Instant::now();
    let trusted = RelayPolicy {
        trusted: vec!["198.51.100.0/24".parse().expect("a network")],
        ..RelayPolicy::default()
    };
    let mut p = proxy(trusted.clone());
    // A trusted source is relayed for, to the internet...
    p.receive(
        t0,
        &request("MESSAGE", "sip:x@203.0.113.66", "z9hG4bKt1", "", ""),
        "alice",
        false,
    );
    assert_eq!(summary(&drain(&mut p)), [("mallory", "MESSAGE".to_owned())]);
    // ...but never into loopback or a LAN the configuration does not name
    // (the check is on the address the host resolved to).
    for (i, ruri) in ["sip:x@127.0.0.1:5070", "sip:x@[::1]", "sip:x@192.168.1.20"]
        .into_iter()
        .enumerate()
    {
        p.receive(
            t0,
            &request("MESSAGE", ruri, &format!("z9hG4bKt2{i}"), "", ""),
            "alice",
            false,
        );
        let out = drain(&mut p);
        assert_eq!(summary(&out), [("alice", "403".to_owned())], "{ruri}");
        assert!(String::from_utf8_lossy(&out[0].1).contains("destination not allowed"));
    }
    // Named, loopback is fine.
    let mut p = proxy(RelayPolicy {
        allow_networks: vec!["127.0.0.0/8".parse().expect("a network")],
        ..trusted
    });
    p.receive(
        t0,
        &request("MESSAGE", "sip:x@127.0.0.1:5070", "z9hG4bKt3", "", ""),
        "alice",
        false,
    );
    assert_eq!(
        summary(&drain(&mut p)),
        [("loopback", "MESSAGE".to_owned())]
    );
}

#[test]
fn a_proxy_behind_an_onion_service_dials_nothing_outside_tor() {
    let mut p = proxy(RelayPolicy {
        onion_only: true,
        ..RelayPolicy::default()
    });
    let t0 = Instant::now();
    // A user of ours registers a Contact the attacker watches, then calls
    // it: the proxy would dial it and hand over its own address.
    register(&mut p, "mallory", "sip:m@203.0.113.66", "tor");
    p.receive(
        t0,
        &request("INVITE", "sip:mallory@b.example", "z9hG4bKn1", "", ""),
        "tor",
        false,
    );
    let out = summary(&drain(&mut p));
    assert_eq!(out.last(), Some(&("tor", "403".to_owned())));
    assert!(out.iter().all(|(to, _)| *to == "tor"), "{out:?}");
    // Users reached over Tor, or over the flow they registered on, are.
    register(&mut p, "dave", "sip:dave@dave.onion", "tor");
    p.receive(
        t0,
        &request("INVITE", "sip:dave@b.example", "z9hG4bKn2", "", ""),
        "tor",
        false,
    );
    assert_eq!(drain(&mut p).last().map(|(to, _)| *to), Some("tor"));
    register(&mut p, "carol", "sip:carol@192.168.1.20:5060;ob", "lan");
    p.receive(
        t0,
        &request("INVITE", "sip:carol@b.example", "z9hG4bKn3", "", ""),
        "tor",
        false,
    );
    assert_eq!(
        summary(&drain(&mut p)).last(),
        Some(&("lan", "INVITE".to_owned()))
    );
}

#[test]
fn stray_responses_go_only_where_the_request_came_from() {
    let mut p = strict();
    let t0 = Instant::now();
    register(&mut p, "bob", "sip:bob@bob.host", "bob");
    p.receive(
        t0,
        &request("INVITE", "sip:bob@b.example", "z9hG4bKr1", "", ""),
        "alice",
        false,
    );
    let out = drain(&mut p);
    let fwd = out[1].1.clone();
    let ok = privasip_proxy::response_for(&parse(&fwd), 200, "OK", "b1", &[]);
    p.receive(t0, &ok, "bob", false);
    assert_eq!(summary(&drain(&mut p)), [("alice", "200".to_owned())]);
    // Long after the transaction, a retransmission of the 200 is stray:
    // it goes up the Via the request came with, and only that one.
    let later = t0 + Duration::from_secs(64);
    p.handle_timeout(later);
    drain(&mut p);
    p.receive(later, &ok, "bob", false);
    assert_eq!(summary(&drain(&mut p)), [("alice", "200".to_owned())]);
    // The same response with the Via below ours rewritten is dropped:
    // to a local service over TCP, or to an address the attacker watches
    // (which the deny-list alone would let through).
    let text = String::from_utf8(ok.clone()).expect("text");
    for via in [
        "Via: SIP/2.0/TCP 127.0.0.1:22;branch=z9hG4bKr1",
        "Via: SIP/2.0/UDP 203.0.113.66;branch=z9hG4bKr1",
    ] {
        let forged = text.replace("Via: SIP/2.0/UDP alice.host;branch=z9hG4bKr1", via);
        assert_ne!(forged, text);
        p.receive(later, forged.as_bytes(), "mallory", false);
        assert!(drain(&mut p).is_empty(), "{via}");
    }
    // The datagram that once crashed the proxy: a second Via host that is
    // not ASCII. It is refused at parsing, long before routing.
    let crash = text.replace(
        "Via: SIP/2.0/UDP alice.host;branch=z9hG4bKr1",
        "Via: SIP/2.0/UDP [\u{e9}abcd];branch=z9hG4bKr1",
    );
    p.receive(later, crash.as_bytes(), "mallory", false);
    assert!(drain(&mut p).is_empty());
}

#[test]
fn a_flood_from_one_source_is_dropped_and_no_one_else_notices() {
    let mut p = strict();
    p.set_request_budget(100, 200);
    let t0 = Instant::now();
    let ping = |branch: &str| {
        format!(
            "OPTIONS sip:192.0.2.10:5060 SIP/2.0\r\nVia: SIP/2.0/UDP m.host;branch=z9hG4bK{branch}\r\n\
             Max-Forwards: 70\r\nTo: <sip:b.example>\r\nFrom: <sip:m@m.example>;tag=m\r\n\
             Call-ID: {branch}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes()
    };
    let mut answered = 0;
    for i in 0..5000 {
        p.receive(t0, &ping(&format!("f{i}")), "mallory", false);
        answered += drain(&mut p).len();
    }
    // The burst is answered; the rest dropped without a word (an answer
    // to a spoofed source would be a reflection), and no transaction kept.
    assert_eq!(answered, 200);
    assert_eq!(p.dropped_requests(), 4800);
    // Another source is answered at once.
    p.receive(t0, &ping("other"), "alice", false);
    assert_eq!(summary(&drain(&mut p)), [("alice", "200".to_owned())]);
    // A second later, mallory has 100 more.
    let later = t0 + Duration::from_secs(1);
    let n: usize = (0..500)
        .map(|i| {
            p.receive(later, &ping(&format!("g{i}")), "mallory", false);
            drain(&mut p).len()
        })
        .sum();
    assert_eq!(n, 100);
    // A trusted source is not counted.
    let mut q = proxy(RelayPolicy {
        trusted: vec!["203.0.113.66".parse().expect("a network")],
        ..RelayPolicy::default()
    });
    q.set_request_budget(1, 1);
    for i in 0..50 {
        q.receive(t0, &ping(&format!("t{i}")), "mallory", false);
        assert_eq!(drain(&mut q).len(), 1);
    }
}

#[test]
fn a_refusal_is_stateless_and_sent_once() {
    let mut p = strict();
    let t0 = Instant::now();
    let invite = request("INVITE", "sip:x@203.0.113.66", "z9hG4bKsl1", "", "");
    p.receive(t0, &invite, "mallory", false);
    let first = drain(&mut p);
    assert_eq!(summary(&first).last(), Some(&("mallory", "403".to_owned())));
    assert_eq!(p.transactions(), 0, "nothing kept for a refused request");
    // No retransmissions of the 403 to a possibly spoofed source.
    for s in 1..40 {
        p.handle_timeout(t0 + Duration::from_secs(s));
        assert!(drain(&mut p).is_empty());
    }
    // A retransmitted INVITE gets the same answer, To tag and all...
    p.receive(t0, &invite, "mallory", false);
    let again = drain(&mut p);
    let refusal = |out: &Sent| out.last().expect("an answer").1.clone();
    let tag = |b: &[u8]| {
        parse(b)
            .to()
            .and_then(|t| t.tag().map(str::to_owned))
            .expect("a To tag")
    };
    assert_eq!(tag(&refusal(&first)), tag(&refusal(&again)));
    // ...and its ACK ends at the proxy.
    let ack = String::from_utf8(request(
        "ACK",
        "sip:x@203.0.113.66",
        "z9hG4bKsl1",
        &tag(&refusal(&first)),
        "",
    ))
    .expect("text");
    p.receive(t0, ack.as_bytes(), "mallory", false);
    assert!(drain(&mut p).is_empty());
    assert_eq!(p.transactions(), 0);
}
