//! Property tests: generated messages survive print-then-parse unchanged,
//! and no input, however broken, makes the parser panic.

use privasip_message::{Limits, Message, StreamDecoder};
use proptest::prelude::*;

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9.!%*_+`'~-]{1,12}"
}

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,10}(\\.[a-z][a-z0-9]{0,8}){0,3}",
        (0u8..=255, 0u8..=255, 0u8..=255, 1u8..=254)
            .prop_map(|(a, b, c, d)| format!("{a}.{b}.{c}.{d}")),
        "\\[2001:db8::[0-9a-f]{1,4}(:[0-9a-f]{1,4}){0,4}\\]",
    ]
}

fn sip_uri() -> impl Strategy<Value = String> {
    (
        proptest::option::of("[A-Za-z0-9_.!~*'()&=+$,;?/-]{1,10}|[a-z]{1,4}%[0-9A-F]{2}"),
        host(),
        proptest::option::of(1u16..),
        proptest::collection::vec(
            (
                "[a-z0-9_.!~*'()-]{1,8}",
                proptest::option::of("[A-Za-z0-9:&+$-]{1,8}"),
            ),
            0..3,
        ),
    )
        .prop_map(|(user, host, port, params)| {
            let mut s = String::from("sip:");
            if let Some(u) = user {
                s.push_str(&u);
                s.push('@');
            }
            s.push_str(&host);
            if let Some(p) = port {
                s.push_str(&format!(":{p}"));
            }
            for (n, v) in params {
                s.push(';');
                s.push_str(&n);
                if let Some(v) = v {
                    s.push('=');
                    s.push_str(&v);
                }
            }
            s
        })
}

fn display_name() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(prop_oneof![
        "\"[ -!#-\\[\\]-~é日]{0,12}\"",
        "[A-Za-z]{1,6}( [A-Za-z]{1,6}){0,2}",
    ])
}

fn name_addr() -> impl Strategy<Value = String> {
    (display_name(), sip_uri(), proptest::option::of(token())).prop_map(|(d, u, tag)| {
        let mut s = match d {
            Some(d) => format!("{d} <{u}>"),
            None => format!("<{u}>"),
        };
        if let Some(t) = tag {
            s.push_str(";tag=");
            s.push_str(&t);
        }
        s
    })
}

/// Inserts a fold (CRLF + white space) at some of the spaces of a value.
fn fold(value: &str, at: &[bool]) -> String {
    let mut out = String::new();
    let mut i = 0;
    for c in value.chars() {
        if c == ' ' && at.get(i).copied().unwrap_or(false) {
            out.push_str("\r\n ");
        } else {
            out.push(c);
        }
        if c == ' ' {
            i += 1;
        }
    }
    out
}

fn message() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![
            Just("INVITE".to_owned()),
            Just("REGISTER".to_owned()),
            Just("BYE".to_owned()),
            "[A-Z]{3,10}"
        ],
        sip_uri(),
        proptest::collection::vec((host(), token()), 1..4),
        (name_addr(), name_addr(), name_addr()),
        (
            "[A-Za-z0-9.!%*_+-]{1,20}(@[a-z0-9.]{1,12})?",
            any::<u32>(),
            0u8..=255,
        ),
        proptest::collection::vec(("X-[A-Za-z0-9-]{1,10}", "[!-~]([ !-~]{0,30}[!-~])?"), 0..5),
        proptest::collection::vec(any::<bool>(), 0..8),
        proptest::collection::vec(any::<u8>(), 0..200),
        any::<bool>(),
    )
        .prop_map(
            |(
                method,
                ruri,
                vias,
                (from, to, contact),
                (call_id, seq, mf),
                ext,
                folds,
                body,
                compact,
            )| {
                let mut m = format!("{method} {ruri} SIP/2.0\r\n");
                for (h, branch) in &vias {
                    let name = if compact { "v" } else { "Via" };
                    m.push_str(&format!(
                        "{name}: SIP/2.0/UDP {h};branch=z9hG4bK{branch}\r\n"
                    ));
                }
                m.push_str(&format!("From: {}\r\n", fold(&from, &folds)));
                m.push_str(&format!("To: {to}\r\n"));
                m.push_str(&format!("Contact: {contact}\r\n"));
                m.push_str(&format!(
                    "Call-ID: {call_id}\r\nCSeq: {seq} {method}\r\nMax-Forwards: {mf}\r\n"
                ));
                for (n, v) in &ext {
                    m.push_str(&format!("{n}: {}\r\n", fold(v, &folds)));
                }
                m.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
                let mut bytes = m.into_bytes();
                bytes.extend_from_slice(&body);
                bytes
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn print_then_parse_is_identity(bytes in message()) {
        let limits = Limits::default();
        let msg = Message::parse_datagram(&bytes, &limits)
            .and_then(|m| m.validated(&limits))
            .map_err(|e| TestCaseError::fail(format!("{e}: {}", String::from_utf8_lossy(&bytes))))?;
        let printed = msg.to_bytes();
        prop_assert_eq!(&printed, &bytes);
        let again = Message::parse_datagram(&printed, &limits).expect("printed form parses");
        prop_assert!(again == msg);
        // The same bytes on a stream, split anywhere, frame identically.
        let (streamed, used) = Message::parse_stream(&bytes, &limits).expect("valid").expect("complete");
        prop_assert_eq!(used, bytes.len());
        prop_assert!(streamed == msg);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let limits = Limits::default();
        if let Ok(mut m) = Message::parse_datagram(&bytes, &limits) {
            // Unvalidated, every accessor answers; validation gives a
            // verdict.
            let _ = (m.top_via(), m.vias(), m.from(), m.to(), m.cseq(), m.call_id());
            let _ = (m.contacts(), m.routes(), m.content_type(), m.expires());
            let _ = m.validate(&limits);
        }
        let _ = Message::parse_stream(&bytes, &limits);
        let mut d = StreamDecoder::new(limits);
        for n in 0..bytes.len().min(64) {
            if d.decode(&bytes[..n]).is_err() {
                break;
            }
        }
    }

    #[test]
    fn mutated_messages_never_panic(
        bytes in message(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let mut bytes = bytes;
        for (i, b) in edits {
            let i = i.index(bytes.len());
            bytes[i] = b;
        }
        let limits = Limits::default();
        if let Ok(mut m) = Message::parse_datagram(&bytes, &limits) {
            // Whatever was accepted can be read, validated and printed.
            let _ = (m.top_via(), m.from(), m.to(), m.cseq(), m.contacts(), m.routes());
            let _ = m.validate(&limits);
            let printed = m.to_bytes();
            let again = Message::parse_datagram(&printed, &limits).expect("printed form parses");
            prop_assert!(again == m);
        }
    }
}
