//! The RFC 4475 messages whose right handling is an element's business
//! (classes application, transaction, compat) through the proxy core, and
//! the invalid ones: rejected or dropped, never forwarded.

// Tests need some starting instant; which one does not matter.
#![allow(clippy::disallowed_methods)]

mod common;

use std::path::Path;
use std::time::Instant;

use common::{proxy, torture};
use privasip_message::{Limits, Message};
use privasip_proxy::Proxy;

/// What the proxy did with a message: the status it answered with (the
/// last final or provisional response it sent back), or "forwarded", or
/// "dropped".
fn outcome(p: &mut Proxy<&'static str>, bytes: &[u8]) -> String {
    let t0 = Instant::now();
    p.receive(t0, bytes, "client", false);
    let out: Vec<_> = std::iter::from_fn(|| p.poll_transmit()).collect();
    if let Some(t) = out.iter().rev().find(|t| t.to == "client") {
        let m = Message::parse_datagram(&t.bytes, &Limits::default()).expect("response parses");
        if m.status() != Some(100) {
            return m.status().map(|s| s.to_string()).unwrap_or_default();
        }
    }
    if out.iter().any(|t| t.to == "next") {
        "forwarded".into()
    } else {
        "dropped".into()
    }
}

#[test]
fn application_transaction_and_compat_messages() {
    let mut p = proxy(false);
    // user@example.com and UserB@example.com are registered, so requests
    // for them are forwarded.
    for user in ["user", "UserB"] {
        let reg = format!(
            "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKreg{user}\r\n\
             Max-Forwards: 70\r\nTo: <sip:{user}@example.com>\r\nFrom: <sip:{user}@example.com>;tag=1\r\n\
             Call-ID: reg-{user}\r\nCSeq: 1 REGISTER\r\nContact: <sip:{user}@next.example>\r\n\
             Content-Length: 0\r\n\r\n"
        );
        assert_eq!(outcome(&mut p, reg.as_bytes()), "200");
    }
    let expected = [
        ("insuf.dat", "400"),           // §3.3.1 missing required headers
        ("unkscm.dat", "416"),          // §3.3.2 unknown Request-URI scheme
        ("novelsc.dat", "416"),         // §3.3.3 a scheme a proxy does not route
        ("bext01.dat", "420"),          // §3.3.5 Proxy-Require
        ("invut.dat", "forwarded"),     // §3.3.6 Content-Type is the UAS's business
        ("multi01.dat", "400"),         // §3.3.8 several values in single-value fields
        ("mcl01.dat", "400"),           // §3.3.9 conflicting Content-Lengths
        ("bcast.dat", "dropped"),       // §3.3.10 a response not for us
        ("zeromf.dat", "483"),          // §3.3.11 Max-Forwards 0
        ("cparam01.dat", "200"),        // §3.3.12 Contact parameters
        ("cparam02.dat", "200"),        // §3.3.13 URI parameters in Contact
        ("regescrt.dat", "200"),        // §3.3.14 escaped headers in Contact
        ("sdp01.dat", "forwarded"),     // §3.3.15 Accept is the UAS's business
        ("inv2543.dat", "forwarded"),   // §3.4.1 RFC 2543 syntax
        ("badbranch.dat", "forwarded"), // §3.2.1 no magic cookie
    ];
    let mut wrong = Vec::new();
    for (file, want) in expected {
        let got = outcome(&mut p, &torture(file));
        if got != want {
            wrong.push(format!("{file}: want {want}, got {got}"));
        }
    }
    // §3.3.4: unknown schemes in To: a registrar cannot bind it.
    let got = outcome(&mut p, &torture("unksm2.dat"));
    if !got.starts_with('4') {
        wrong.push(format!("unksm2.dat: want a 4xx, got {got}"));
    }
    // §3.3.7: an unknown Authorization scheme is no credential: challenge.
    let mut authenticating = proxy(true);
    let got = outcome(&mut authenticating, &torture("regaut01.dat"));
    if got != "401" {
        wrong.push(format!("regaut01.dat: want 401, got {got}"));
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn invalid_messages_are_rejected_or_dropped_never_forwarded() {
    let mut p = proxy(false);
    let manifest = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/rfc4475/MANIFEST.tsv"),
    )
    .expect("manifest");
    let mut outcomes = Vec::new();
    for line in manifest.lines() {
        let mut cols = line.split('\t');
        let (Some(file), Some(_), Some("invalid")) = (cols.next(), cols.next(), cols.next()) else {
            continue;
        };
        outcomes.push((file, outcome(&mut p, &torture(file))));
    }
    assert_eq!(outcomes.len(), 19);
    let wrong: Vec<_> = outcomes
        .iter()
        .filter(|(_, o)| !(o == "dropped" || o.starts_with('4') || o.starts_with('5')))
        .collect();
    assert!(wrong.is_empty(), "forwarded or accepted: {wrong:?}");
    // Answerable ones are answered (§16.3 step 1: act as a UAS).
    for (file, want) in [
        ("baddate.dat", "400"),
        ("regbadct.dat", "400"),
        ("mismatch01.dat", "400"),
    ] {
        let got = outcomes
            .iter()
            .find(|(f, _)| *f == file)
            .map(|(_, o)| o.as_str());
        assert_eq!(got, Some(want), "{file}; all: {outcomes:?}");
    }
}
