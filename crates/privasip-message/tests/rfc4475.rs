//! The RFC 4475 torture messages: valid ones parse and round-trip, invalid
//! ones are rejected with the error their section describes.

use std::path::PathBuf;

use privasip_message::{HeaderName, Limits, Message, ParseError};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/rfc4475")
}

/// (file, class) from MANIFEST.tsv.
fn manifest() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(dir().join("MANIFEST.tsv")).expect("MANIFEST.tsv");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[0].to_owned(), f[2].to_owned())
        })
        .collect()
}

fn read(file: &str) -> Vec<u8> {
    std::fs::read(dir().join(file)).expect("test message")
}

/// The error each invalid message must get, as RFC 4475 §3.1.2 explains it.
fn expected_error(file: &str) -> fn(&ParseError) -> bool {
    use HeaderName as H;
    use ParseError as E;
    match file {
        "badinv01.dat" => |e| matches!(e, E::Header { header: H::Via, .. }),
        "clerr.dat" => |e| matches!(e, E::BodyTruncated { declared: 9999, .. }),
        "ncl.dat" => |e| {
            matches!(
                e,
                E::Header {
                    header: H::ContentLength,
                    ..
                }
            )
        },
        "scalar02.dat" | "scalarlg.dat" => |e| {
            matches!(
                e,
                E::Header {
                    header: H::CSeq,
                    ..
                }
            )
        },
        "quotbal.dat" | "badaspec.dat" => |e| matches!(e, E::Header { header: H::To, .. }),
        "ltgtruri.dat" | "escruri.dat" => |e| matches!(e, E::RequestUri(_)),
        "lwsruri.dat" | "lwsstart.dat" | "trws.dat" => |e| matches!(e, E::RequestLine(_)),
        "baddate.dat" => |e| {
            matches!(
                e,
                E::Header {
                    header: H::Date,
                    ..
                }
            )
        },
        "regbadct.dat" => |e| {
            matches!(
                e,
                E::Header {
                    header: H::Contact,
                    ..
                }
            )
        },
        "baddn.dat" => |e| {
            matches!(
                e,
                E::Header {
                    header: H::From,
                    ..
                }
            )
        },
        "badvers.dat" => |e| matches!(e, E::Version),
        "mismatch01.dat" | "mismatch02.dat" => |e| matches!(e, E::CSeqMethodMismatch),
        "bigcode.dat" => |e| matches!(e, E::StatusLine(_)),
        other => panic!("no expectation for {other}"),
    }
}

#[test]
fn every_message_is_classified_as_the_rfc_says() {
    let limits = Limits::default();
    let m = manifest();
    assert_eq!(m.len(), 49, "the RFC has 49 messages");
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for (file, class) in &m {
        *counts.entry(class.as_str()).or_default() += 1;
        let bytes = read(file);
        let parsed = Message::parse_datagram(&bytes, &limits).and_then(|m| m.validated(&limits));
        match class.as_str() {
            "invalid" => {
                let err = parsed.err().unwrap_or_else(|| panic!("{file}: accepted"));
                assert!(expected_error(file)(&err), "{file}: wrong error: {err}");
            }
            _ => {
                let msg = parsed.unwrap_or_else(|e| panic!("{file}: rejected: {e}"));
                round_trip(file, &bytes, &msg);
            }
        }
    }
    assert_eq!(counts["valid"], 13);
    assert_eq!(counts["invalid"], 19);
}

fn round_trip(file: &str, input: &[u8], msg: &Message<'_>) {
    let printed = msg.to_bytes();
    let again = Message::parse_datagram(&printed, &Limits::default())
        .unwrap_or_else(|e| panic!("{file}: printed form rejected: {e}"));
    assert!(&again == msg, "{file}: printed form differs");
    // With a right Content-Length and nothing after the body, printing an
    // unedited message gives back the exact bytes.
    let head_len = input
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4);
    let one_length = msg
        .headers()
        .iter()
        .filter(|h| h.name() == HeaderName::ContentLength)
        .count()
        == 1;
    if one_length
        && msg.content_length() == Some(msg.body().len())
        && head_len.map(|h| h + msg.body().len()) == Some(input.len())
    {
        assert_eq!(printed, input, "{file}: not byte-exact");
    }
}

#[test]
fn datagram_trailing_octets_are_dropped() {
    // RFC 4475 §3.1.1.8: only the REGISTER counts; the INVITE after it is
    // not a second message.
    let bytes = read("dblreq.dat");
    let msg = Message::parse_datagram(&bytes, &Limits::default()).expect("valid");
    assert_eq!(msg.method().map(|m| m.as_str()), Some("REGISTER"));
    assert!(msg.body().is_empty());
    assert!(msg.to_bytes().len() < bytes.len());
}

#[test]
fn typed_access_on_torture_messages() {
    let bytes = read("wsinv.dat");
    let msg = Message::parse_datagram(&bytes, &Limits::default()).expect("valid");
    assert_eq!(msg.max_forwards(), Some(68));
    assert_eq!(msg.cseq().map(|c| c.seq), Some(9));
    assert_eq!(msg.to().and_then(|t| t.tag()), Some("1918181833n"));
    assert_eq!(msg.from().and_then(|f| f.tag()), Some("98asjd8"));
    let vias = msg.vias();
    assert_eq!(vias.len(), 3);
    assert_eq!(vias[1].branch(), Some("z9hG4bK9ikj8"));
    assert_eq!(vias[2].branch(), Some("z9hG4bK30239"));
    assert_eq!(msg.routes().len(), 1);
    assert!(msg.header_str("NewFangledHeader").is_some());
    assert_eq!(msg.header_str("s").map(|h| h.value()), Some(""));

    let bytes = read("longreq.dat");
    let msg = Message::parse_datagram(&bytes, &Limits::default()).expect("valid");
    assert_eq!(msg.vias().len(), 34);

    let bytes = read("esc02.dat");
    let msg = Message::parse_datagram(&bytes, &Limits::default()).expect("valid");
    assert_eq!(msg.method().map(|m| m.as_str()), Some("RE%47IST%45R"));
    assert_eq!(
        msg.values(HeaderName::Contact).count(),
        2,
        "C%6Fntact is not Contact"
    );

    let bytes = read("regaut01.dat");
    let msg = Message::parse_datagram(&bytes, &Limits::default()).expect("valid");
    let auth = msg
        .auth_values(HeaderName::Authorization)
        .next()
        .expect("one");
    assert_eq!(auth.scheme, "NoOneKnowsThisScheme");
}

#[test]
fn element_checks_catch_the_application_cases() {
    let check = |f: &str| {
        let bytes = read(f);
        let msg = Message::parse_datagram(&bytes, &Limits::default()).expect("parses");
        msg.check_mandatory_headers()
    };
    assert_eq!(
        check("insuf.dat"),
        Err(ParseError::MissingHeader(HeaderName::To))
    );
    assert!(matches!(
        check("multi01.dat"),
        Err(ParseError::DuplicateHeader(_))
    ));
    assert_eq!(
        check("mcl01.dat"),
        Err(ParseError::DuplicateHeader(HeaderName::ContentLength))
    );
    assert_eq!(check("wsinv.dat"), Ok(()));
}

#[test]
fn stream_framing_of_every_valid_message() {
    // Back to back on one stream, each must come out whole.
    let mut stream = Vec::new();
    let mut expected = Vec::new();
    for (file, class) in manifest() {
        if class != "valid" {
            continue;
        }
        let bytes = read(&file);
        let msg = Message::parse_datagram(&bytes, &Limits::default()).expect("valid");
        let wire = msg.to_bytes();
        stream.extend_from_slice(&wire);
        expected.push(wire);
    }
    let mut at = 0;
    for wire in &expected {
        let (msg, used) = Message::parse_stream(&stream[at..], &Limits::default())
            .expect("valid")
            .expect("complete");
        assert_eq!(used, wire.len());
        assert_eq!(msg.to_bytes(), *wire);
        at += used;
    }
    assert_eq!(at, stream.len());
}
