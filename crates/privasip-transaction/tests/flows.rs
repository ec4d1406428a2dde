//! Whole transaction flows on virtual time (RFC 3261 §17 figures 5-8,
//! RFC 6026): every retransmission and every timeout at the instant the
//! RFC says, a 32-second Timer B in microseconds.

// Tests need some starting instant; which one does not matter.
#![allow(clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use privasip_message::{Limits, Message};
use privasip_transaction::{Circuit, Event, Received, TimerConfig, Transactions, TxError};

const PEER: &str = "peer";

fn request(method: &str, branch: &str) -> Vec<u8> {
    format!(
        "{method} sip:bob@b.example SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.1:5060;branch={branch}\r\n\
         Max-Forwards: 70\r\nTo: <sip:bob@b.example>\r\n\
         From: <sip:alice@a.example>;tag=a1\r\nCall-ID: call-1\r\n\
         CSeq: 7 {method}\r\nRoute: <sip:p1.example;lr>\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn response(status: u16, method: &str, branch: &str) -> Vec<u8> {
    let to_tag = if status > 100 { ";tag=b1" } else { "" };
    format!(
        "SIP/2.0 {status} Whatever\r\n\
         Via: SIP/2.0/UDP 192.0.2.1:5060;branch={branch}\r\n\
         To: <sip:bob@b.example>{to_tag}\r\n\
         From: <sip:alice@a.example>;tag=a1\r\nCall-ID: call-1\r\n\
         CSeq: 7 {method}\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn parse(b: &[u8]) -> Message<'_> {
    Message::parse_datagram(b, &Limits::default()).expect("test message parses")
}

fn feed(
    layer: &mut Transactions<&'static str>,
    now: Instant,
    bytes: &[u8],
    reliable: bool,
) -> Received {
    layer.receive(now, &parse(bytes), PEER, reliable)
}

/// Runs the clock until nothing is armed or `until`; returns the offsets
/// (from t0) at which something was sent, and the events.
fn run(
    layer: &mut Transactions<&'static str>,
    t0: Instant,
    until: Duration,
) -> (Vec<Duration>, Vec<Event>) {
    let mut sent = Vec::new();
    let mut events = Vec::new();
    while let Some(at) = layer.poll_timeout() {
        if at - t0 > until {
            break;
        }
        layer.handle_timeout(at);
        while layer.poll_transmit().is_some() {
            sent.push(at - t0);
        }
        events.extend(std::iter::from_fn(|| layer.poll_event()));
    }
    (sent, events)
}

fn ms(v: &[u64]) -> Vec<Duration> {
    v.iter().map(|&m| Duration::from_millis(m)).collect()
}

#[test]
fn non_invite_over_udp_retransmits_up_to_t2_then_times_out() {
    let mut layer = Transactions::default();
    let t0 = Instant::now();
    let tx = layer
        .send_request(
            t0,
            request("OPTIONS", "z9hG4bKe1"),
            PEER,
            false,
            Circuit::Shared,
        )
        .expect("starts");
    assert_eq!(layer.poll_transmit().map(|t| t.to), Some(PEER));
    let (sent, events) = run(&mut layer, t0, Duration::from_secs(60));
    // Timer E: 0.5, 1.5, 3.5, 7.5, then every T2 = 4 s until Timer F (32 s).
    assert_eq!(
        sent,
        ms(&[
            500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500
        ])
    );
    assert_eq!(events, vec![Event::Timeout(tx)]);
    assert!(layer.is_empty());
}

#[test]
fn every_send_of_a_request_rides_the_circuit_it_was_given() {
    let mut layer = Transactions::default();
    let t0 = Instant::now();
    layer
        .send_request(
            t0,
            request("INVITE", "z9hG4bKcirc"),
            PEER,
            false,
            Circuit::Call(7),
        )
        .expect("starts");
    let mut circuits = vec![layer.poll_transmit().expect("sent").circuit];
    while let Some(at) = layer.poll_timeout() {
        layer.handle_timeout(at);
        circuits.extend(std::iter::from_fn(|| layer.poll_transmit()).map(|t| t.circuit));
    }
    // Timer A's six retransmissions too, not only the first send.
    assert_eq!(circuits, vec![Circuit::Call(7); 7]);
}

#[test]
fn non_invite_over_tcp_never_retransmits() {
    let mut layer = Transactions::default();
    let t0 = Instant::now();
    let tx = layer
        .send_request(
            t0,
            request("REGISTER", "z9hG4bKe2"),
            PEER,
            true,
            Circuit::Shared,
        )
        .expect("starts");
    layer.poll_transmit();
    let (sent, events) = run(&mut layer, t0, Duration::from_secs(60));
    assert!(sent.is_empty());
    assert_eq!(events, vec![Event::Timeout(tx)]);
}

#[test]
fn non_invite_completes_absorbs_retransmissions_and_lingers_t4() {
    let mut layer = Transactions::default();
    let t0 = Instant::now();
    let tx = layer
        .send_request(
            t0,
            request("OPTIONS", "z9hG4bKe3"),
            PEER,
            false,
            Circuit::Shared,
        )
        .expect("starts");
    layer.poll_transmit();
    let t1 = t0 + Duration::from_millis(100);
    assert_eq!(
        feed(
            &mut layer,
            t1,
            &response(100, "OPTIONS", "z9hG4bKe3"),
            false
        ),
        Received::Response(tx, 100)
    );
    // Proceeding: Timer E still fires (then every T2).
    let (sent, _) = run(&mut layer, t0, Duration::from_millis(550));
    assert_eq!(sent, ms(&[500]));
    let t2 = t0 + Duration::from_millis(600);
    assert_eq!(
        feed(
            &mut layer,
            t2,
            &response(200, "OPTIONS", "z9hG4bKe3"),
            false
        ),
        Received::Response(tx, 200)
    );
    assert_eq!(
        feed(
            &mut layer,
            t2,
            &response(200, "OPTIONS", "z9hG4bKe3"),
            false
        ),
        Received::Absorbed
    );
    let (sent, events) = run(&mut layer, t0, Duration::from_secs(60));
    assert!(sent.is_empty(), "no retransmission after the 200: {sent:?}");
    assert!(events.is_empty());
    assert!(layer.is_empty(), "Timer K ended it");
}

#[test]
fn invite_over_udp_retransmits_doubling_until_timer_b() {
    let mut layer = Transactions::default();
    let t0 = Instant::now();
    let tx = layer
        .send_request(
            t0,
            request("INVITE", "z9hG4bKi1"),
            PEER,
            false,
            Circuit::Shared,
        )
        .expect("starts");
    layer.poll_transmit();
    let (sent, events) = run(&mut layer, t0, Duration::from_secs(60));
    // Timer A: 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s; Timer B at 32 s.
    assert_eq!(sent, ms(&[500, 1500, 3500, 7500, 15500, 31500]));
    assert_eq!(events, vec![Event::Timeout(tx)]);
}

#[test]
fn invite_rejected_is_acked_by_the_transaction() {
    let mut layer = Transactions::default();
    let t0 = Instant::now();
    let tx = layer
        .send_request(
            t0,
            request("INVITE", "z9hG4bKi2"),
            PEER,
            false,
            Circuit::Shared,
        )
        .expect("starts");
    layer.poll_transmit();
    let t1 = t0 + Duration::from_millis(200);
    assert_eq!(
        feed(&mut layer, t1, &response(180, "INVITE", "z9hG4bKi2"), false),
        Received::Response(tx, 180)
    );
    let t2 = t0 + Duration::from_secs(2);
    assert_eq!(
        feed(&mut layer, t2, &response(486, "INVITE", "z9hG4bKi2"), false),
        Received::Response(tx, 486)
    );
    let ack = layer.poll_transmit().expect("ACK sent").bytes;
    let ack = parse(&ack);
    assert_eq!(ack.method().map(|m| m.as_str()), Some("ACK"));
    assert_eq!(ack.request_uri(), Some("sip:bob@b.example"));
    assert_eq!(ack.top_via().and_then(|v| v.branch()), Some("z9hG4bKi2"));
    assert_eq!(ack.to().and_then(|t| t.tag()), Some("b1"));
    assert_eq!(
        ack.cseq().map(|c| (c.seq, c.method.as_str())),
        Some((7, "ACK"))
    );
    assert_eq!(ack.routes().len(), 1);
    // The 486 again: the same ACK again, nothing for the TU.
    assert_eq!(
        feed(&mut layer, t2, &response(486, "INVITE", "z9hG4bKi2"), false),
        Received::Absorbed
    );
    assert!(layer.poll_transmit().is_some());
    // No request retransmissions after the 180; Timer D (32 s) ends it.
    let (sent, events) = run(&mut layer, t0, Duration::from_secs(60));
    assert!(sent.is_empty(), "{sent:?}");
    assert!(events.is_empty());
    assert!(layer.is_empty());
}

#[test]
fn invite_accepted_passes_every_2xx_up_until_timer_m() {
    let mut layer = Transactions::default();
    let t0 = Instant::now();
    let tx = layer
        .send_request(
            t0,
            request("INVITE", "z9hG4bKi3"),
            PEER,
            true,
            Circuit::Shared,
        )
        .expect("starts");
    layer.poll_transmit();
    for _ in 0..2 {
        assert_eq!(
            feed(&mut layer, t0, &response(200, "INVITE", "z9hG4bKi3"), true),
            Received::Response(tx, 200)
        );
    }
    assert!(layer.poll_transmit().is_none(), "the TU ACKs a 2xx");
    let (_, events) = run(&mut layer, t0, Duration::from_secs(60));
    assert!(events.is_empty());
    assert!(layer.is_empty());
}

#[test]
fn invite_server_retransmits_its_final_response_until_acked() {
    let mut layer = Transactions::default();
    let t0 = Instant::now();
    let inv = request("INVITE", "z9hG4bKs1");
    let Received::NewRequest(tx) = feed(&mut layer, t0, &inv, false) else {
        panic!("a new server transaction");
    };
    // A retransmission before any response: nothing to resend.
    assert_eq!(feed(&mut layer, t0, &inv, false), Received::Absorbed);
    assert!(layer.poll_transmit().is_none());
    layer
        .respond(t0, tx, response(180, "INVITE", "z9hG4bKs1"))
        .expect("180");
    layer.poll_transmit();
    assert_eq!(feed(&mut layer, t0, &inv, false), Received::Absorbed);
    assert!(layer.poll_transmit().is_some(), "the 180 is resent");
    layer
        .respond(t0, tx, response(486, "INVITE", "z9hG4bKs1"))
        .expect("486");
    layer.poll_transmit();
    // Timer G: 0.5, 1.5, 3.5, 7.5, 11.5 s (capped at T2); ACK at 10 s.
    let (sent, _) = run(&mut layer, t0, Duration::from_secs(10));
    assert_eq!(sent, ms(&[500, 1500, 3500, 7500]));
    let ack = String::from_utf8(request("ACK", "z9hG4bKs1")).expect("utf8");
    let t_ack = t0 + Duration::from_secs(10);
    assert_eq!(
        feed(&mut layer, t_ack, ack.as_bytes(), false),
        Received::Absorbed
    );
    let (sent, events) = run(&mut layer, t0, Duration::from_secs(60));
    assert!(sent.is_empty(), "Confirmed: no more 486s");
    assert!(events.is_empty());
    assert!(layer.is_empty(), "Timer I ended it");
    assert_eq!(
        layer.respond(t_ack, tx, response(200, "INVITE", "z9hG4bKs1")),
        Err(TxError::Gone)
    );
}

#[test]
fn invite_server_without_ack_reports_timer_h() {
    let mut layer = Transactions::default();
    let t0 = Instant::now();
    let Received::NewRequest(tx) = feed(&mut layer, t0, &request("INVITE", "z9hG4bKs2"), true)
    else {
        panic!("new");
    };
    layer
        .respond(t0, tx, response(603, "INVITE", "z9hG4bKs2"))
        .expect("603");
    layer.poll_transmit();
    let (sent, events) = run(&mut layer, t0, Duration::from_secs(60));
    assert!(sent.is_empty(), "reliable: no Timer G");
    assert_eq!(events, vec![Event::NoAck(tx)]);
}

#[test]
fn invite_server_2xx_passes_acks_to_the_tu_and_absorbs_invites() {
    let mut layer = Transactions::default();
    let t0 = Instant::now();
    let inv = request("INVITE", "z9hG4bKs3");
    let Received::NewRequest(tx) = feed(&mut layer, t0, &inv, false) else {
        panic!("new");
    };
    layer
        .respond(t0, tx, response(200, "INVITE", "z9hG4bKs3"))
        .expect("200");
    layer.poll_transmit();
    assert_eq!(feed(&mut layer, t0, &inv, false), Received::Absorbed);
    assert!(
        layer.poll_transmit().is_none(),
        "the TU retransmits 2xx itself"
    );
    layer
        .respond(t0, tx, response(200, "INVITE", "z9hG4bKs3"))
        .expect("a 2xx retransmission passes");
    assert!(layer.poll_transmit().is_some());
    let ack = request("ACK", "z9hG4bKs3");
    assert_eq!(feed(&mut layer, t0, &ack, false), Received::AckFor2xx(tx));
    assert_eq!(
        layer.respond(t0, tx, response(180, "INVITE", "z9hG4bKs3")),
        Err(TxError::WrongState)
    );
    run(&mut layer, t0, Duration::from_secs(60));
    assert!(layer.is_empty(), "Timer L ended it");
}

#[test]
fn non_invite_server_resends_its_response_until_timer_j() {
    let mut layer = Transactions::default();
    let t0 = Instant::now();
    let reg = request("REGISTER", "z9hG4bKs4");
    let Received::NewRequest(tx) = feed(&mut layer, t0, &reg, false) else {
        panic!("new");
    };
    assert_eq!(feed(&mut layer, t0, &reg, false), Received::Absorbed);
    assert!(layer.poll_transmit().is_none(), "Trying: nothing to resend");
    layer
        .respond(t0, tx, response(200, "REGISTER", "z9hG4bKs4"))
        .expect("200");
    layer.poll_transmit();
    let t1 = t0 + Duration::from_secs(5);
    assert_eq!(feed(&mut layer, t1, &reg, false), Received::Absorbed);
    assert!(layer.poll_transmit().is_some(), "Completed: the 200 again");
    run(&mut layer, t0, Duration::from_secs(31));
    assert_eq!(layer.len(), 1, "Timer J is 32 s");
    run(&mut layer, t0, Duration::from_secs(33));
    assert!(layer.is_empty());
}

#[test]
fn cancel_and_invite_share_a_branch_but_not_a_transaction() {
    let mut layer = Transactions::default();
    let t0 = Instant::now();
    let inv = layer
        .send_request(
            t0,
            request("INVITE", "z9hG4bKc1"),
            PEER,
            true,
            Circuit::Shared,
        )
        .expect("invite");
    let cancel = layer
        .send_request(
            t0,
            request("CANCEL", "z9hG4bKc1"),
            PEER,
            true,
            Circuit::Shared,
        )
        .expect("cancel");
    assert_ne!(inv, cancel);
    assert_eq!(
        feed(&mut layer, t0, &response(200, "CANCEL", "z9hG4bKc1"), true),
        Received::Response(cancel, 200)
    );
    assert_eq!(
        feed(&mut layer, t0, &response(487, "INVITE", "z9hG4bKc1"), true),
        Received::Response(inv, 487)
    );
    assert_eq!(
        layer
            .send_request(
                t0,
                request("INVITE", "z9hG4bKc2"),
                PEER,
                true,
                Circuit::Shared
            )
            .and(layer.send_request(
                t0,
                request("INVITE", "z9hG4bKc2"),
                PEER,
                true,
                Circuit::Shared
            )),
        Err(TxError::Duplicate)
    );
}

#[test]
fn strays_misuse_and_rfc2543_peers() {
    let mut layer = Transactions::default();
    let t0 = Instant::now();
    assert_eq!(
        feed(
            &mut layer,
            t0,
            &response(200, "INVITE", "z9hG4bKnone"),
            false
        ),
        Received::Stray
    );
    assert_eq!(
        feed(&mut layer, t0, &request("ACK", "z9hG4bKnone"), false),
        Received::Stray
    );
    assert_eq!(
        layer.send_request(t0, request("ACK", "z9hG4bKx"), PEER, false, Circuit::Shared),
        Err(TxError::AckIsNotATransaction)
    );
    assert_eq!(
        layer.send_request(
            t0,
            request("INVITE", "old-branch"),
            PEER,
            false,
            Circuit::Shared
        ),
        Err(TxError::NoBranch)
    );
    assert!(
        layer
            .send_request(t0, b"junk".to_vec(), PEER, false, Circuit::Shared)
            .is_err()
    );
    // An RFC 2543 client (no cookie): matched by the fallback key.
    let old = request("OPTIONS", "1234");
    assert!(matches!(
        feed(&mut layer, t0, &old, false),
        Received::NewRequest(_)
    ));
    assert_eq!(feed(&mut layer, t0, &old, false), Received::Absorbed);
    let cfg = TimerConfig::default();
    assert_eq!(cfg.t1 * 64, Duration::from_secs(32));
}

#[test]
fn many_transactions_keep_their_own_timers() {
    let mut layer = Transactions::default();
    let t0 = Instant::now();
    for i in 0..1000u32 {
        let at = t0 + Duration::from_millis(u64::from(i));
        layer
            .send_request(
                at,
                request("OPTIONS", &format!("z9hG4bKm{i}")),
                PEER,
                true,
                Circuit::Shared,
            )
            .expect("starts");
    }
    while layer.poll_transmit().is_some() {}
    assert_eq!(layer.len(), 1000);
    let (_, events) = run(&mut layer, t0, Duration::from_secs(40));
    assert_eq!(events.len(), 1000);
    assert!(layer.is_empty());
}

/// §17.1.4: a request whose stream died ends at once with a transport
/// error (the TU answers 503), not 32 s later with Timer B; only the
/// transactions on that peer and circuit, and only before a final
/// response.
#[test]
fn a_transport_failure_ends_the_transactions_sent_that_way() {
    let t0 = Instant::now();
    let mut layer: Transactions<&'static str> = Transactions::new(TimerConfig::default());
    let call = |n: u64| Circuit::Call(n);
    let on_one = layer
        .send_request(t0, request("INVITE", "z9hG4bK1"), PEER, true, call(1))
        .expect("sent");
    let on_two = layer
        .send_request(t0, request("INVITE", "z9hG4bK2"), PEER, true, call(2))
        .expect("sent");
    let elsewhere = layer
        .send_request(t0, request("INVITE", "z9hG4bK3"), "other", true, call(1))
        .expect("sent");
    let answered = layer
        .send_request(t0, request("OPTIONS", "z9hG4bK4"), PEER, true, call(1))
        .expect("sent");
    feed(&mut layer, t0, &response(200, "OPTIONS", "z9hG4bK4"), true);
    while layer.poll_event().is_some() {}

    assert_eq!(layer.transport_failed(&PEER, Some(call(1))), 1);
    assert_eq!(layer.poll_event(), Some(Event::TransportError(on_one)));
    assert_eq!(layer.poll_event(), None);
    // A late response to it is a stray now; the others live on.
    assert_eq!(
        feed(&mut layer, t0, &response(180, "INVITE", "z9hG4bK1"), true),
        Received::Stray
    );
    assert!(matches!(
        feed(&mut layer, t0, &response(180, "INVITE", "z9hG4bK2"), true),
        Received::Response(tx, 180) if tx == on_two
    ));
    assert!(matches!(
        feed(&mut layer, t0, &response(180, "INVITE", "z9hG4bK3"), true),
        Received::Response(tx, 180) if tx == elsewhere
    ));
    let _ = answered;
    assert_eq!(
        layer.transport_failed(&PEER, Some(call(1))),
        0,
        "nothing left there"
    );
    // A connection lost whole: every circuit to the peer.
    assert_eq!(layer.transport_failed(&PEER, None), 1);
    assert_eq!(layer.poll_event(), Some(Event::TransportError(on_two)));
}
