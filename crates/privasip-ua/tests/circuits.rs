//! Which Tor circuit a user agent's requests ride is the core's decision:
//! with `call_circuits`, every call it places names a circuit of its own
//! for all its requests; its registration stays on the shared one.

// Tests need some starting instant; which one does not matter.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::Instant;

use privasip_message::{Limits, Message};
use privasip_ua::{Circuit, Ua, UaConfig, UaEvent};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;

fn alice(call_circuits: bool) -> Ua<&'static str> {
    Ua::new(
        UaConfig {
            reliable: true,
            call_circuits,
            ..common::alice_config()
        },
        "proxy",
    )
}

/// What the user agent sent: (method, circuit).
fn sent(ua: &mut Ua<&'static str>) -> Vec<(String, Circuit)> {
    std::iter::from_fn(|| ua.poll_transmit())
        .map(|t| {
            assert_eq!(t.to, "proxy", "every request goes to the proxy");
            let m = Message::parse_datagram(&t.bytes, &Limits::default()).expect("parses");
            (
                m.method()
                    .map(|x| x.as_str().to_owned())
                    .unwrap_or_default(),
                t.circuit,
            )
        })
        .collect()
}

fn ringing(invite: &[u8]) -> Vec<u8> {
    let m = Message::parse_datagram(invite, &Limits::default()).expect("parses");
    privasip_proxy::response_for(&m, 180, "Ringing", "b1", &[])
}

#[test]
fn each_call_rides_a_circuit_of_its_own_and_the_registration_the_shared_one() {
    let now = Instant::now();
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let mut ua = alice(true);
    ua.register(now, &mut rng).expect("registers");
    assert_eq!(sent(&mut ua), [("REGISTER".to_owned(), Circuit::Shared)]);

    let one = ua.call(now, "sip:bob@b.example", &mut rng).expect("calls");
    let invite = std::iter::from_fn(|| ua.poll_transmit())
        .next()
        .expect("INVITE");
    let first = invite.circuit;
    assert!(matches!(first, Circuit::Call(_)));
    assert_eq!(ua.circuit(one), Some(first));
    // Its CANCEL (after a provisional response, §9.1) rides it too.
    ua.receive(now, &ringing(&invite.bytes), "proxy", &mut rng);
    ua.hangup(now, one, &mut rng).expect("cancels");
    assert_eq!(sent(&mut ua), [("CANCEL".to_owned(), first)]);

    let two = ua.call(now, "sip:bob@b.example", &mut rng).expect("calls");
    let second = ua.circuit(two).expect("a circuit");
    assert!(matches!(second, Circuit::Call(_)));
    assert_ne!(second, first);
    assert_eq!(sent(&mut ua), [("INVITE".to_owned(), second)]);
}

#[test]
fn without_call_circuits_calls_share_the_registration_s_circuit() {
    let now = Instant::now();
    let mut rng = ChaCha20Rng::seed_from_u64(4);
    let mut ua = alice(false);
    let call = ua.call(now, "sip:bob@b.example", &mut rng).expect("calls");
    assert_eq!(ua.circuit(call), Some(Circuit::Shared));
    assert_eq!(sent(&mut ua), [("INVITE".to_owned(), Circuit::Shared)]);
}

fn answered(invite: &[u8]) -> Vec<u8> {
    let m = Message::parse_datagram(invite, &Limits::default()).expect("parses");
    privasip_proxy::response_for(
        &m,
        200,
        "OK",
        "b1",
        &["Contact: <sip:b.example;transport=tcp>".to_owned()],
    )
}

fn events(ua: &mut Ua<&'static str>) -> Vec<UaEvent> {
    std::iter::from_fn(|| ua.poll_event()).collect()
}

#[test]
fn a_lost_call_circuit_ends_its_call_with_a_bye_that_says_why() {
    let now = Instant::now();
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let mut ua = alice(true);
    let call = ua.call(now, "sip:bob@b.example", &mut rng).expect("calls");
    let circuit = ua.circuit(call).expect("a circuit");
    let invite = ua.poll_transmit().expect("INVITE");
    ua.receive(now, &answered(&invite.bytes), "proxy", &mut rng);
    assert_eq!(sent(&mut ua), [("ACK".to_owned(), circuit)]);
    assert!(events(&mut ua).contains(&UaEvent::Answered { call }));

    // Another circuit's loss is not this call's.
    ua.transport_failed(now, &"proxy", Some(Circuit::Shared), &mut rng);
    assert!(ua.poll_transmit().is_none());

    ua.transport_failed(now, &"proxy", Some(circuit), &mut rng);
    let bye = ua.poll_transmit().expect("a BYE");
    assert_eq!(
        bye.circuit, circuit,
        "the driver opens the call's circuit anew"
    );
    let m = Message::parse_datagram(&bye.bytes, &Limits::default()).expect("parses");
    assert_eq!(
        m.method().map(|x| x.as_str().to_owned()),
        Some("BYE".into())
    );
    let text = String::from_utf8_lossy(&bye.bytes);
    assert!(
        text.contains("\r\nReason: SIP ;cause=503 ;text=\"Tor circuit lost\"\r\n"),
        "{text}"
    );
    // Lost again before the BYE's answer: no second BYE, the call ends.
    ua.transport_failed(now, &"proxy", Some(circuit), &mut rng);
    assert!(ua.poll_transmit().is_none());
    assert!(events(&mut ua).contains(&UaEvent::Ended { call }));
}

#[test]
fn requests_on_a_lost_stream_fail_at_once_with_503() {
    let now = Instant::now();
    let mut rng = ChaCha20Rng::seed_from_u64(6);
    let mut ua = alice(true);
    ua.register(now, &mut rng).expect("registers");
    let call = ua.call(now, "sip:bob@b.example", &mut rng).expect("calls");
    let circuit = ua.circuit(call).expect("a circuit");
    assert_eq!(sent(&mut ua).len(), 2);

    ua.transport_failed(now, &"proxy", Some(Circuit::Shared), &mut rng);
    assert_eq!(
        events(&mut ua),
        [UaEvent::RegistrationFailed { status: 503 }]
    );
    ua.transport_failed(now, &"proxy", Some(circuit), &mut rng);
    assert_eq!(events(&mut ua), [UaEvent::Failed { call, status: 503 }]);
    assert!(
        ua.poll_transmit().is_none(),
        "nothing to send for a call never set up"
    );
}
