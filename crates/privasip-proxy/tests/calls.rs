//! Whole calls through the proxy core, in memory, on virtual time: the
//! user agents are byte strings, the network is a queue.

// Tests need some starting instant; which one does not matter.
#![allow(clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use privasip_message::{Limits, Message};
use privasip_proxy::{Circuit, Next, Proxy, ProxyConfig, RelayPolicy};

type Sent = Vec<(&'static str, Vec<u8>)>;

fn proxy() -> Proxy<&'static str> {
    let cfg = ProxyConfig {
        // c.example is an explicit route, as [routes] would make it.
        relay: RelayPolicy {
            routed_domains: vec!["c.example".into()],
            ..RelayPolicy::default()
        },
        ..ProxyConfig::new("b.example", "192.0.2.10:5060")
    };
    Proxy::new(
        cfg,
        Box::new(|host: &str, _port: Option<u16>, _t: &str| {
            let peer = match host {
                "alice.host" => "alice",
                "bob.host" => "bob",
                "bob2.host" => "bob2",
                "c.example" => "proxy-c",
                _ => return None,
            };
            Some(Next {
                peer,
                reliable: false,
            })
        }),
        [7; 32],
        Instant::now(),
    )
}

fn drain(p: &mut Proxy<&'static str>) -> Sent {
    std::iter::from_fn(|| p.poll_transmit().map(|t| (t.to, t.bytes))).collect()
}

fn parse(b: &[u8]) -> Message<'_> {
    Message::parse_datagram(b, &Limits::default()).expect("proxy output parses")
}

fn status(b: &[u8]) -> Option<u16> {
    parse(b).status()
}

fn register(p: &mut Proxy<&'static str>, now: Instant, contact_host: &str, user: &str) -> Sent {
    let req = format!(
        "REGISTER sip:b.example SIP/2.0\r\nVia: SIP/2.0/UDP {contact_host};branch=z9hG4bKreg{contact_host}\r\n\
         Max-Forwards: 70\r\nTo: <sip:{user}@b.example>\r\nFrom: <sip:{user}@b.example>;tag=r1\r\n\
         Call-ID: reg-{contact_host}\r\nCSeq: 1 REGISTER\r\nContact: <sip:{user}@{contact_host}>\r\n\
         Expires: 600\r\nContent-Length: 0\r\n\r\n"
    );
    p.receive(now, req.as_bytes(), "bob", false);
    drain(p)
}

fn invite(ruri: &str, branch: &str, max_forwards: u8, extra: &str) -> Vec<u8> {
    format!(
        "INVITE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP alice.host;branch={branch}\r\n\
         Max-Forwards: {max_forwards}\r\nTo: <sip:bob@b.example>\r\nFrom: <sip:alice@a.example>;tag=a1\r\n\
         Call-ID: call-1\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@alice.host>\r\n{extra}\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// The response a user agent sends to a request it received.
fn answer(req: &[u8], code: u16, to_tag: &str) -> Vec<u8> {
    let m = parse(req);
    privasip_proxy::response_for(
        &m,
        code,
        "Answer",
        to_tag,
        &["Contact: <sip:bob@bob.host>".into()],
    )
}

#[test]
fn register_then_call_ringing_answered_acked() {
    let mut p = proxy();
    let t0 = Instant::now();
    let out = register(&mut p, t0, "bob.host", "bob");
    assert_eq!(out.len(), 1);
    assert_eq!(status(&out[0].1), Some(200));
    assert!(String::from_utf8_lossy(&out[0].1).contains("Contact: <sip:bob@bob.host>;expires=600"));

    p.receive(
        t0,
        &invite("sip:bob@b.example", "z9hG4bKa1", 70, ""),
        "alice",
        false,
    );
    let out = drain(&mut p);
    assert_eq!(out.len(), 2, "100 Trying up, INVITE down");
    assert_eq!((out[0].0, status(&out[0].1)), ("alice", Some(100)));
    assert_eq!(out[1].0, "bob");
    let fwd = out[1].1.clone();
    let m = parse(&fwd);
    assert_eq!(m.request_uri(), Some("sip:bob@bob.host"));
    assert_eq!(m.max_forwards(), Some(69));
    assert_eq!(m.vias().len(), 2);
    assert_eq!(m.top_via().map(|v| v.host), Some("192.0.2.10"));
    assert_eq!(m.record_routes().len(), 1);

    // Bob rings and answers; each goes up with the proxy's Via removed.
    for code in [180, 200] {
        p.receive(t0, &answer(&fwd, code, "b1"), "bob", false);
        let out = drain(&mut p);
        assert_eq!(out.len(), 1, "{code}");
        assert_eq!(out[0].0, "alice");
        let up = parse(&out[0].1);
        assert_eq!(up.status(), Some(code));
        assert_eq!(up.vias().len(), 1);
        assert_eq!(up.top_via().and_then(|v| v.branch()), Some("z9hG4bKa1"));
    }
    // Alice's ACK for the 2xx: to Bob's contact, through the proxy (it
    // Record-Routed), statelessly. Its Route is the Record-Route as the
    // proxy wrote it, tag and all.
    let rr = parse(&fwd).record_routes()[0].uri_raw.to_owned();
    let ack = |route: &str| {
        format!(
            "ACK sip:bob@bob.host SIP/2.0\r\nVia: SIP/2.0/UDP alice.host;branch=z9hG4bKack1\r\n\
             Max-Forwards: 70\r\nRoute: <{route}>\r\nTo: <sip:bob@b.example>;tag=b1\r\n\
             From: <sip:alice@a.example>;tag=a1\r\nCall-ID: call-1\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
        )
    };
    p.receive(t0, ack(&rr).as_bytes(), "alice", false);
    let out = drain(&mut p);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0, "bob");
    let m = parse(&out[0].1);
    assert!(m.routes().is_empty(), "our Route was removed");
    assert_eq!(m.vias().len(), 2);
    // The same ACK along a Route that names us without our tag is not a
    // dialog's: dropped.
    p.receive(t0, ack("sip:192.0.2.10:5060;lr").as_bytes(), "alice", false);
    assert!(drain(&mut p).is_empty());
}

#[test]
fn validation_failures_get_their_status() {
    let mut p = proxy();
    let t0 = Instant::now();
    let cases: [(Vec<u8>, u16); 4] = [
        (invite("sip:bob@b.example", "z9hG4bKv1", 0, ""), 483),
        (invite("tel:+15551234", "z9hG4bKv2", 70, ""), 416),
        (
            invite(
                "sip:bob@b.example",
                "z9hG4bKv3",
                70,
                "Proxy-Require: foo\r\n",
            ),
            420,
        ),
        (invite("sip:nobody@b.example", "z9hG4bKv4", 70, ""), 480),
    ];
    for (req, code) in cases {
        p.receive(t0, &req, "alice", false);
        let out = drain(&mut p);
        let last = out.last().expect("an answer");
        assert_eq!(status(&last.1), Some(code));
        if code == 420 {
            assert!(String::from_utf8_lossy(&last.1).contains("Unsupported: foo"));
        }
    }
    // A domain that is neither ours nor routed: a stranger may not relay
    // there at all.
    p.receive(
        t0,
        &invite("sip:x@nowhere.example", "z9hG4bKv5", 70, ""),
        "alice",
        false,
    );
    let out = drain(&mut p);
    assert_eq!(status(&out.last().expect("answer").1), Some(403));
}

#[test]
fn a_request_that_comes_back_is_a_loop() {
    let mut p = proxy();
    let t0 = Instant::now();
    // Forward to c.example, then feed the forwarded copy back in.
    p.receive(
        t0,
        &invite("sip:carol@c.example", "z9hG4bKl1", 70, ""),
        "alice",
        false,
    );
    let out = drain(&mut p);
    let fwd = &out
        .iter()
        .find(|(to, _)| *to == "proxy-c")
        .expect("forwarded")
        .1;
    // The next hop sends it back unchanged but for its own Via.
    let text = String::from_utf8_lossy(fwd).replacen(
        "Via: ",
        "Via: SIP/2.0/UDP c.example;branch=z9hG4bKc1\r\nVia: ",
        1,
    );
    p.receive(t0, text.as_bytes(), "proxy-c", false);
    let out = drain(&mut p);
    assert_eq!(status(&out.last().expect("answer").1), Some(482));
}

#[test]
fn forking_takes_the_2xx_and_cancels_the_other_branch() {
    let mut p = proxy();
    let t0 = Instant::now();
    register(&mut p, t0, "bob.host", "bob");
    register(&mut p, t0, "bob2.host", "bob");
    p.receive(
        t0,
        &invite("sip:bob@b.example", "z9hG4bKf1", 70, ""),
        "alice",
        false,
    );
    let out = drain(&mut p);
    let to_bob = out
        .iter()
        .find(|(to, _)| *to == "bob")
        .expect("branch 1")
        .1
        .clone();
    assert!(out.iter().any(|(to, _)| *to == "bob2"), "branch 2");
    p.receive(t0, &answer(&to_bob, 200, "b1"), "bob", false);
    let out = drain(&mut p);
    assert!(
        out.iter()
            .any(|(to, b)| *to == "alice" && status(b) == Some(200))
    );
    let cancel = out
        .iter()
        .find(|(to, _)| *to == "bob2")
        .expect("CANCEL to bob2");
    assert_eq!(
        parse(&cancel.1).method().map(|m| m.as_str()),
        Some("CANCEL")
    );
}

#[test]
fn all_branches_fail_the_best_answer_goes_up() {
    let mut p = proxy();
    let t0 = Instant::now();
    register(&mut p, t0, "bob.host", "bob");
    register(&mut p, t0, "bob2.host", "bob");
    p.receive(
        t0,
        &invite("sip:bob@b.example", "z9hG4bKf2", 70, ""),
        "alice",
        false,
    );
    let out = drain(&mut p);
    let b1 = out
        .iter()
        .find(|(to, _)| *to == "bob")
        .expect("b1")
        .1
        .clone();
    let b2 = out
        .iter()
        .find(|(to, _)| *to == "bob2")
        .expect("b2")
        .1
        .clone();
    p.receive(t0, &answer(&b1, 486, "x1"), "bob", false);
    let out = drain(&mut p);
    assert!(
        out.iter().all(|(to, _)| *to != "alice"),
        "waits for the other branch"
    );
    p.receive(t0, &answer(&b2, 404, "x2"), "bob2", false);
    let out = drain(&mut p);
    let up = out.iter().find(|(to, _)| *to == "alice").expect("final up");
    assert_eq!(status(&up.1), Some(404), "lowest class wins");
}

#[test]
fn cancel_from_upstream_reaches_the_branch_and_487_goes_up() {
    let mut p = proxy();
    let t0 = Instant::now();
    register(&mut p, t0, "bob.host", "bob");
    let inv = invite("sip:bob@b.example", "z9hG4bKx1", 70, "");
    p.receive(t0, &inv, "alice", false);
    let fwd = drain(&mut p)
        .into_iter()
        .find(|(to, _)| *to == "bob")
        .expect("fwd")
        .1;
    p.receive(t0, &answer(&fwd, 180, "b1"), "bob", false);
    drain(&mut p);
    let cancel = String::from_utf8_lossy(&inv)
        .replace("INVITE sip", "CANCEL sip")
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    p.receive(t0, cancel.as_bytes(), "alice", false);
    let out = drain(&mut p);
    assert!(
        out.iter()
            .any(|(to, b)| *to == "alice" && status(b) == Some(200))
    );
    let down = out
        .iter()
        .find(|(to, _)| *to == "bob")
        .expect("CANCEL down");
    assert_eq!(parse(&down.1).method().map(|m| m.as_str()), Some("CANCEL"));
    p.receive(t0, &answer(&fwd, 487, "b1"), "bob", false);
    let out = drain(&mut p);
    assert!(
        out.iter()
            .any(|(to, b)| *to == "alice" && status(b) == Some(487))
    );
    // A CANCEL for nothing: 481.
    let stray = cancel.replace("z9hG4bKx1", "z9hG4bKnone");
    p.receive(t0, stray.as_bytes(), "alice", false);
    let out = drain(&mut p);
    assert_eq!(status(&out.last().expect("answer").1), Some(481));
}

#[test]
fn a_silent_branch_times_out_as_408() {
    let mut p = proxy();
    let t0 = Instant::now();
    register(&mut p, t0, "bob.host", "bob");
    let opts = "OPTIONS sip:bob@b.example SIP/2.0\r\nVia: SIP/2.0/UDP alice.host;branch=z9hG4bKo1\r\n\
                Max-Forwards: 70\r\nTo: <sip:bob@b.example>\r\nFrom: <sip:alice@a.example>;tag=a1\r\n\
                Call-ID: o-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    p.receive(t0, opts.as_bytes(), "alice", false);
    drain(&mut p);
    let mut last = Vec::new();
    while let Some(at) = p.poll_timeout() {
        if at - t0 > Duration::from_secs(40) {
            break;
        }
        p.handle_timeout(at);
        last.extend(drain(&mut p));
    }
    let up = last.iter().find(|(to, _)| *to == "alice").expect("408 up");
    assert_eq!(status(&up.1), Some(408));
}

/// A next hop the driver cannot reach (a Tor stream that never opened,
/// a connection that closed) ends the branch at once, not 32 s later
/// with 408; a branch elsewhere is untouched.
#[test]
fn an_unreachable_next_hop_is_a_503_at_once() {
    let mut p = proxy();
    let t0 = Instant::now();
    register(&mut p, t0, "bob.host", "bob");
    p.receive(
        t0,
        &invite("sip:bob@b.example", "z9hG4bKu1", 70, ""),
        "alice",
        false,
    );
    let out = drain(&mut p);
    assert!(out.iter().any(|(to, _)| *to == "bob"), "forwarded");
    p.transport_failed(t0, &"elsewhere", None);
    assert!(
        drain(&mut p).is_empty(),
        "another peer's failure changes nothing"
    );
    p.transport_failed(t0 + Duration::from_millis(5), &"bob", None);
    let out = drain(&mut p);
    let up = out
        .iter()
        .find(|(to, _)| *to == "alice")
        .expect("an answer up");
    // The branch ended as 503; a proxy sends that up as 500 (§16.7
    // step 6: a 503 would say the proxy itself is out of service).
    assert_eq!(status(&up.1), Some(500));
    // Nothing more later: the branch is over.
    assert!(
        run_timers(&mut p, t0 + Duration::from_secs(40))
            .iter()
            .all(|(to, b)| *to != "alice" || status(b) != Some(408))
    );
}

#[test]
fn a_flow_bound_contact_is_reached_over_the_connection_it_registered_on() {
    let mut p = proxy();
    let t0 = Instant::now();
    // Bob registers over a stream ("bob-stream"), asking to be reached
    // over it: `;ob`, and a host nobody can resolve.
    let req = "REGISTER sip:b.example SIP/2.0\r\nVia: SIP/2.0/TCP f1.invalid;branch=z9hG4bKob1\r\n\
         Max-Forwards: 70\r\nTo: <sip:bob@b.example>\r\nFrom: <sip:bob@b.example>;tag=r1\r\n\
         Call-ID: reg-ob\r\nCSeq: 1 REGISTER\r\nContact: <sip:bob@f1.invalid;transport=tcp;ob>\r\n\
         Expires: 600\r\nContent-Length: 0\r\n\r\n";
    p.receive(t0, req.as_bytes(), "bob-stream", true);
    let sent = drain(&mut p);
    assert_eq!(status(&sent[0].1), Some(200));
    assert_eq!(p.flows(), 1);

    p.receive(
        t0,
        &invite("sip:bob@b.example", "z9hG4bKf1", 70, ""),
        "alice",
        false,
    );
    let sent = drain(&mut p);
    let to_bob: Vec<_> = sent.iter().filter(|(to, _)| *to == "bob-stream").collect();
    assert_eq!(to_bob.len(), 1, "{sent:?}");
    let fwd = parse(&to_bob[0].1);
    assert_eq!(
        fwd.request_uri(),
        Some("sip:bob@f1.invalid;transport=tcp;ob")
    );
    assert!(fwd.top_via().is_some_and(|v| v.transport == "TCP"));

    // The stream closes: Bob cannot be reached, and nothing is sent to
    // the unresolvable host instead.
    p.flow_closed(&"bob-stream");
    assert_eq!(p.flows(), 0);
    p.receive(
        t0,
        &invite("sip:bob@b.example", "z9hG4bKf2", 70, ""),
        "alice",
        false,
    );
    let sent = drain(&mut p);
    assert!(sent.iter().all(|(to, _)| *to == "alice"), "{sent:?}");
    assert!(
        sent.iter()
            .any(|(_, b)| status(b).is_some_and(|s| s >= 400))
    );

    // Another user binding the same Contact over their own connection
    // does not take the flow over: Bob's calls never reach Mallory, while
    // Bob's binding lives.
    let steal = req
        .replace("sip:bob@", "sip:mallory@")
        .replace("reg-ob", "reg-steal")
        .replace("z9hG4bKob1", "z9hG4bKob2");
    p.receive(t0, steal.as_bytes(), "mallory-stream", true);
    assert_eq!(status(&drain(&mut p)[0].1), Some(200));
    p.receive(
        t0,
        &invite("sip:bob@b.example", "z9hG4bKf3", 70, ""),
        "alice",
        false,
    );
    let sent = drain(&mut p);
    assert!(sent.iter().all(|(to, _)| *to == "alice"), "{sent:?}");
    // Once Bob's binding lapsed, the sweep lets the key go.
    let later = t0 + Duration::from_secs(601);
    p.handle_timeout(later);
    drain(&mut p);
    p.receive(
        later,
        steal.replace("CSeq: 1", "CSeq: 2").as_bytes(),
        "mallory-stream",
        true,
    );
    assert_eq!(status(&drain(&mut p)[0].1), Some(200));
    assert_eq!(p.flows(), 1);
}

/// Runs the proxy's timers up to `until`, collecting what it sends.
fn run_timers(p: &mut Proxy<&'static str>, until: Instant) -> Sent {
    let mut out = Vec::new();
    while let Some(at) = p.poll_timeout() {
        if at > until {
            break;
        }
        p.handle_timeout(at);
        out.extend(drain(p));
    }
    out
}

#[test]
fn timer_c_cancels_a_branch_that_rings_too_long() {
    for callee_ignores_cancel in [false, true] {
        let mut p = proxy();
        let t0 = Instant::now();
        register(&mut p, t0, "bob.host", "bob");
        p.receive(
            t0,
            &invite("sip:bob@b.example", "z9hG4bKc1", 70, ""),
            "alice",
            false,
        );
        let fwd = drain(&mut p)
            .into_iter()
            .find(|(to, _)| *to == "bob")
            .expect("fwd")
            .1;
        // Bob rings, and rings again at 100 s: Timer C starts over.
        p.receive(t0, &answer(&fwd, 180, "b1"), "bob", false);
        let t100 = t0 + Duration::from_secs(100);
        let quiet = run_timers(&mut p, t100);
        p.receive(t100, &answer(&fwd, 180, "b1"), "bob", false);
        drain(&mut p);
        let out = run_timers(&mut p, t0 + Duration::from_secs(280));
        assert!(
            !quiet
                .iter()
                .chain(&out)
                .any(|(_, b)| parse(b).method().is_some_and(|m| m.as_str() == "CANCEL")),
            "no CANCEL before 3 minutes after the last 180"
        );
        let out = run_timers(&mut p, t0 + Duration::from_secs(283));
        let cancel = out
            .iter()
            .find(|(to, b)| {
                *to == "bob" && parse(b).method().is_some_and(|m| m.as_str() == "CANCEL")
            })
            .expect("Timer C sends a CANCEL");
        let t_cancel = t0 + Duration::from_secs(283);
        p.receive(t_cancel, &answer(&cancel.1, 200, "b1"), "bob", false);
        let expected = if callee_ignores_cancel {
            // No 487 comes: the branch ends as 408 after 64*T1.
            let out = run_timers(&mut p, t_cancel + Duration::from_secs(40));
            out.into_iter().find(|(to, _)| *to == "alice")
        } else {
            p.receive(t_cancel, &answer(&fwd, 487, "b1"), "bob", false);
            drain(&mut p).into_iter().find(|(to, _)| *to == "alice")
        };
        let up = expected.expect("a final response goes up");
        assert_eq!(
            status(&up.1),
            Some(if callee_ignores_cancel { 408 } else { 487 })
        );
    }
}

#[test]
fn a_final_response_with_only_our_via_still_ends_the_branch() {
    let mut p = proxy();
    let t0 = Instant::now();
    register(&mut p, t0, "bob.host", "bob");
    for (i, method) in ["INVITE", "OPTIONS"].into_iter().enumerate() {
        let req = String::from_utf8(invite(
            "sip:bob@b.example",
            &format!("z9hG4bKov{i}"),
            70,
            "",
        ))
        .expect("text")
        .replace("INVITE", method);
        p.receive(t0, req.as_bytes(), "alice", false);
        let out = drain(&mut p);
        let fwd = &out
            .iter()
            .find(|(to, _)| *to == "bob")
            .expect("forwarded")
            .1;
        // Bob answers with a response that keeps only the proxy's Via.
        let text = String::from_utf8(answer(fwd, 486, "b1")).expect("text");
        let only_ours: String = text
            .split("\r\n")
            .filter(|l| !l.contains("alice.host"))
            .collect::<Vec<_>>()
            .join("\r\n");
        p.receive(t0, only_ours.as_bytes(), "bob", false);
        let up: Vec<_> = drain(&mut p)
            .into_iter()
            .filter(|(to, b)| *to == "alice" && status(b).is_some_and(|s| s >= 200))
            .collect();
        assert_eq!(up.len(), 1, "{method}: one final answer up");
        assert_eq!(status(&up[0].1), Some(502), "{method}");
    }
}

fn drain_circuits(p: &mut Proxy<&'static str>) -> Vec<(&'static str, Circuit, Vec<u8>)> {
    std::iter::from_fn(|| p.poll_transmit().map(|t| (t.to, t.circuit, t.bytes))).collect()
}

/// The circuit of the one request sent to `to` in `out`.
fn circuit_to(out: &[(&'static str, Circuit, Vec<u8>)], to: &str) -> Circuit {
    let mut sent = out
        .iter()
        .filter(|(t, _, b)| *t == to && status(b).is_none());
    let (_, c, _) = sent.next().expect("a request");
    assert!(sent.next().is_none(), "one request to {to}");
    *c
}

#[test]
fn each_call_names_a_circuit_of_its_own_and_keeps_it() {
    let mut p = proxy();
    p.set_call_circuits(true);
    let t0 = Instant::now();
    register(&mut p, t0, "bob.host", "bob");

    // Call 1: INVITE, 200, ACK.
    p.receive(
        t0,
        &invite("sip:bob@b.example", "z9hG4bKc1", 70, ""),
        "alice",
        false,
    );
    let out = drain_circuits(&mut p);
    let first = circuit_to(&out, "bob");
    assert!(matches!(first, Circuit::Call(_)));
    let fwd = out
        .iter()
        .find(|(t, ..)| *t == "bob")
        .expect("down")
        .2
        .clone();
    // Retransmissions of the INVITE (UDP, Timer A) ride it too.
    let later = t0 + Duration::from_millis(600);
    p.handle_timeout(later);
    let again = drain_circuits(&mut p);
    assert!(!again.is_empty(), "Timer A fired");
    assert!(again.iter().all(|(t, c, _)| *t == "bob" && *c == first));
    // Responses go back the way the request came: shared.
    p.receive(later, &answer(&fwd, 200, "b1"), "bob", false);
    let up = drain_circuits(&mut p);
    assert!(up.iter().all(|(_, c, _)| *c == Circuit::Shared));
    let rr = parse(&fwd).record_routes()[0].uri_raw.to_owned();
    let ack = format!(
        "ACK sip:bob@bob.host SIP/2.0\r\nVia: SIP/2.0/UDP alice.host;branch=z9hG4bKack9\r\n\
         Max-Forwards: 70\r\nRoute: <{rr}>\r\nTo: <sip:bob@b.example>;tag=b1\r\n\
         From: <sip:alice@a.example>;tag=a1\r\nCall-ID: call-1\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
    );
    p.receive(later, ack.as_bytes(), "alice", false);
    assert_eq!(circuit_to(&drain_circuits(&mut p), "bob"), first, "the ACK");
    let bye = ack
        .replace("ACK sip", "BYE sip")
        .replace("CSeq: 1 ACK", "CSeq: 2 BYE")
        .replace("z9hG4bKack9", "z9hG4bKbye9");
    p.receive(later, bye.as_bytes(), "alice", false);
    assert_eq!(circuit_to(&drain_circuits(&mut p), "bob"), first, "the BYE");

    // Call 2: another circuit; its CANCEL follows its INVITE.
    let inv2 = String::from_utf8_lossy(&invite("sip:bob@b.example", "z9hG4bKc2", 70, ""))
        .replace("call-1", "call-2");
    p.receive(later, inv2.as_bytes(), "alice", false);
    let second = circuit_to(&drain_circuits(&mut p), "bob");
    assert!(matches!(second, Circuit::Call(_)));
    assert_ne!(second, first);
    let cancel = inv2
        .replace("INVITE sip", "CANCEL sip")
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    p.receive(later, cancel.as_bytes(), "alice", false);
    assert_eq!(
        circuit_to(&drain_circuits(&mut p), "bob"),
        second,
        "the CANCEL"
    );
}

/// A call set up on a circuit of its own, answered and ACKed; the
/// circuit and the INVITE as Bob got it.
fn call_on_its_circuit(p: &mut Proxy<&'static str>, now: Instant) -> (Circuit, Vec<u8>) {
    register(p, now, "bob.host", "bob");
    p.receive(
        now,
        &invite("sip:bob@b.example", "z9hG4bKw1", 70, ""),
        "alice",
        false,
    );
    let out = drain_circuits(p);
    let circuit = circuit_to(&out, "bob");
    let fwd = out
        .iter()
        .find(|(t, ..)| *t == "bob")
        .expect("down")
        .2
        .clone();
    // Bob's 200 copies the Record-Route (RFC 3261 §12.1.1).
    let m = parse(&fwd);
    let mut extra = vec!["Contact: <sip:bob@bob.host>".to_owned()];
    extra.extend(
        m.values(privasip_message::HeaderName::RecordRoute)
            .map(|v| format!("Record-Route: {v}")),
    );
    let ok = privasip_proxy::response_for(&m, 200, "OK", "b1", &extra);
    p.receive(now, &ok, "bob", false);
    let up = drain_circuits(p);
    assert!(
        up.iter()
            .any(|(t, _, b)| *t == "alice" && status(b) == Some(200))
    );
    (circuit, fwd)
}

/// The requests among `out`, by whom they went to.
fn requests_to<'a>(
    out: &'a [(&'static str, Circuit, Vec<u8>)],
    to: &str,
) -> Vec<&'a (&'static str, Circuit, Vec<u8>)> {
    out.iter()
        .filter(|(t, _, b)| *t == to && status(b).is_none())
        .collect()
}

/// An INFO Bob sends in call-1's dialog (CSeq 7), along `rr`.
fn info_from_bob(rr: &str, branch: &str) -> String {
    format!(
        "INFO sip:alice@alice.host SIP/2.0\r\nVia: SIP/2.0/UDP bob.host;branch={branch}\r\n\
         Max-Forwards: 70\r\nRoute: <{rr}>\r\nFrom: <sip:bob@b.example>;tag=b1\r\n\
         To: <sip:alice@a.example>;tag=a1\r\nCall-ID: call-1\r\nCSeq: 7 INFO\r\nContent-Length: 0\r\n\r\n"
    )
}

/// RFC 3326 and issue "faults survived": a call whose own circuit dies is
/// ended towards each side with a BYE saying why; the caller's goes on
/// its link, the callee's on the call's circuit (a new stream: it arrives
/// if the far side can still be reached).
#[test]
fn a_call_whose_circuit_dies_is_ended_with_a_bye_each_way() {
    let mut p = proxy();
    p.set_call_circuits(true);
    let t0 = Instant::now();
    let (circuit, _) = call_on_its_circuit(&mut p, t0);
    assert!(p.watches(t0, circuit));
    assert_eq!(p.live_calls(), 1);

    // The shared stream closing takes no call with it.
    p.transport_failed(t0, &"bob", Some(Circuit::Shared));
    assert!(drain_circuits(&mut p).is_empty());
    assert!(p.watches(t0, circuit));

    let later = t0 + Duration::from_secs(30);
    p.transport_failed(later, &"bob", Some(circuit));
    let out = drain_circuits(&mut p);
    let up = requests_to(&out, "alice");
    let down = requests_to(&out, "bob");
    assert_eq!((up.len(), down.len()), (1, 1), "{out:?}");
    let to_alice = parse(&up[0].2);
    assert_eq!(
        to_alice.method().map(|m| m.as_str().to_owned()).as_deref(),
        Some("BYE")
    );
    assert_eq!(to_alice.request_uri(), Some("sip:alice@alice.host"));
    assert_eq!(to_alice.from().and_then(|f| f.tag()), Some("b1"));
    assert_eq!(to_alice.to().and_then(|t| t.tag()), Some("a1"));
    assert_eq!(to_alice.call_id(), Some("call-1"));
    let to_bob = parse(&down[0].2);
    assert_eq!(to_bob.request_uri(), Some("sip:bob@bob.host"));
    assert_eq!(to_bob.from().and_then(|f| f.tag()), Some("a1"));
    assert_eq!(to_bob.to().and_then(|t| t.tag()), Some("b1"));
    assert_eq!(
        to_bob.cseq().map(|c| c.seq),
        Some(2),
        "after the INVITE's 1"
    );
    assert_eq!(down[0].1, circuit, "on the call's circuit");
    for m in [&to_alice, &to_bob] {
        assert_eq!(
            m.header_str("Reason").map(|h| h.value()),
            Some("SIP ;cause=503 ;text=\"Tor circuit lost\""),
        );
        assert_eq!(m.vias().len(), 1, "our Via alone");
    }
    assert!(!p.watches(later, circuit));
    assert_eq!(p.live_calls(), 0);
    assert_eq!(
        p.poll_notice(),
        Some(privasip_proxy::Notice::CallCircuitLost)
    );

    // Their answers end here.
    let ok = answer(&up[0].2, 200, "x");
    p.receive(later, &ok, "alice", false);
    assert!(drain_circuits(&mut p).is_empty());
    // Once ended, a second failure sends nothing.
    p.transport_failed(later, &"bob", Some(circuit));
    assert!(requests_to(&drain_circuits(&mut p), "alice").is_empty());
}

/// A call that ended with its own BYE is no longer watched: its circuit
/// may then idle out and close without anyone being told anything.
#[test]
fn a_call_ended_by_its_users_is_no_longer_watched() {
    let mut p = proxy();
    p.set_call_circuits(true);
    let t0 = Instant::now();
    let (circuit, fwd) = call_on_its_circuit(&mut p, t0);
    let rr = parse(&fwd).record_routes()[0].uri_raw.to_owned();
    // Bob sends a request in the dialog (CSeq 7), then Alice hangs up.
    let info = info_from_bob(&rr, "z9hG4bKi1");
    p.receive(t0, info.as_bytes(), "bob", false);
    assert_eq!(requests_to(&drain_circuits(&mut p), "alice").len(), 1);
    // Had the circuit died now, Alice's BYE would have had CSeq 8.
    let bye = format!(
        "BYE sip:bob@bob.host SIP/2.0\r\nVia: SIP/2.0/UDP alice.host;branch=z9hG4bKb1\r\n\
         Max-Forwards: 70\r\nRoute: <{rr}>\r\nTo: <sip:bob@b.example>;tag=b1\r\n\
         From: <sip:alice@a.example>;tag=a1\r\nCall-ID: call-1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
    );
    p.receive(t0, bye.as_bytes(), "alice", false);
    assert_eq!(requests_to(&drain_circuits(&mut p), "bob").len(), 1);
    assert!(!p.watches(t0, circuit));
    p.transport_failed(t0, &"bob", Some(circuit));
    assert!(requests_to(&drain_circuits(&mut p), "alice").is_empty());
}

/// The BYE towards the caller carries a CSeq above every request the
/// callee sent in the dialog (RFC 3261 §12.2.2 refuses a lower one).
#[test]
fn the_bye_to_the_caller_comes_after_the_callees_requests() {
    let mut p = proxy();
    p.set_call_circuits(true);
    let t0 = Instant::now();
    let (circuit, fwd) = call_on_its_circuit(&mut p, t0);
    let rr = parse(&fwd).record_routes()[0].uri_raw.to_owned();
    let info = info_from_bob(&rr, "z9hG4bKi2");
    p.receive(t0, info.as_bytes(), "bob", false);
    drain_circuits(&mut p);
    p.transport_failed(t0, &"bob", Some(circuit));
    let out = drain_circuits(&mut p);
    let up = requests_to(&out, "alice");
    assert_eq!(parse(&up[0].2).cseq().map(|c| c.seq), Some(8));
    let down = requests_to(&out, "bob");
    assert_eq!(parse(&down[0].2).cseq().map(|c| c.seq), Some(2));
}

#[test]
fn without_call_circuits_everything_is_shared() {
    let mut p = proxy();
    let t0 = Instant::now();
    register(&mut p, t0, "bob.host", "bob");
    p.receive(
        t0,
        &invite("sip:bob@b.example", "z9hG4bKs1", 70, ""),
        "alice",
        false,
    );
    let out = drain_circuits(&mut p);
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|(_, c, _)| *c == Circuit::Shared));
}

/// RFC 6026: the callee retransmits its 200 until an ACK comes; each one
/// must reach the caller, or a lost ACK (or a lost 200) fails the call.
#[test]
fn every_2xx_retransmission_goes_up_while_the_invite_is_accepted() {
    let mut p = proxy();
    let t0 = Instant::now();
    register(&mut p, t0, "bob.host", "bob");
    p.receive(
        t0,
        &invite("sip:bob@b.example", "z9hG4bK6026", 70, ""),
        "alice",
        false,
    );
    let fwd = drain(&mut p)
        .into_iter()
        .find(|(to, _)| *to == "bob")
        .expect("the INVITE goes down")
        .1;
    let ok = answer(&fwd, 200, "b1");
    p.receive(t0, &ok, "bob", false);
    let first = drain(&mut p);
    assert_eq!(first.len(), 1);
    assert_eq!((first[0].0, status(&first[0].1)), ("alice", Some(200)));
    // The 200 (or Alice's ACK) was lost: Bob sends it again at 0.5 s, 1.5 s
    // and 3.5 s (Timer G); each goes up, the same as the first.
    for ms in [500, 1500, 3500] {
        let at = t0 + Duration::from_millis(ms);
        p.handle_timeout(at);
        drain(&mut p);
        p.receive(at, &ok, "bob", false);
        let again = drain(&mut p);
        assert_eq!(again.len(), 1, "at {ms} ms");
        assert_eq!(again[0].0, "alice");
        assert_eq!(again[0].1, first[0].1, "the same 200 as the first");
    }
}

/// A 200 to a REGISTER promises the binding exists: with store commits
/// on, it leaves only once the driver says the store committed it, and a
/// store that never does gets the user agent a 503 to try again, not a
/// 200 for a binding a crash would lose.
#[test]
fn a_register_is_answered_once_its_binding_is_committed() {
    let mut p = proxy();
    p.set_store_commits(true);
    let t0 = Instant::now();
    assert!(register(&mut p, t0, "bob.host", "bob").is_empty(), "held");
    let events: Vec<_> = std::iter::from_fn(|| p.poll_store_event()).collect();
    assert_eq!(events.len(), 1, "the binding, for the store");
    assert!(drain(&mut p).is_empty(), "still held");
    p.store_committed(t0, 1);
    let out = drain(&mut p);
    assert_eq!(out.len(), 1);
    assert_eq!(status(&out[0].1), Some(200));

    // A store that does not commit: 503 with Retry-After after 5 s.
    assert!(register(&mut p, t0, "bob2.host", "bob2").is_empty());
    while p.poll_store_event().is_some() {}
    p.handle_timeout(t0 + Duration::from_secs(4));
    assert!(drain(&mut p).is_empty(), "not yet");
    p.handle_timeout(t0 + Duration::from_secs(5));
    let out = drain(&mut p);
    assert_eq!(out.len(), 1);
    assert_eq!(status(&out[0].1), Some(503));
    assert!(String::from_utf8_lossy(&out[0].1).contains("Retry-After: 5"));
    // A late commit sends nothing more.
    p.store_committed(t0 + Duration::from_secs(6), 2);
    assert!(drain(&mut p).is_empty());
}
