//! Parsing frames a message; `validate` checks every known header. A proxy
//! forwards what it does not route on as it came (RFC 3261 §16.3 step 1),
//! so a malformed header it never reads costs it nothing and breaks
//! nothing.

use privasip_message::{HeaderName, Limits, Message, ParseError};

fn request(extra: &str) -> Vec<u8> {
    format!(
        "OPTIONS sip:bob@example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
         To: <sip:bob@example.com>\r\n\
         From: <sip:alice@example.com>;tag=7\r\n\
         Call-ID: c1\r\n\
         CSeq: 1 OPTIONS\r\n\
         {extra}Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn header_error(bytes: &[u8]) -> Option<HeaderName> {
    let mut m = Message::parse_datagram(bytes, &Limits::default()).expect("frames");
    match m.validate(&Limits::default()) {
        Err(ParseError::Header { header, .. }) => Some(header),
        Err(e) => panic!("not a header error: {e}"),
        Ok(()) => None,
    }
}

#[test]
fn a_malformed_header_frames_forwards_as_it_came_and_fails_validation() {
    let bytes = request("Date: yesterday\r\n");
    let m = Message::parse_datagram(&bytes, &Limits::default()).expect("frames");
    assert_eq!(m.to_bytes(), bytes, "forwarded byte for byte");
    assert_eq!(m.cseq().map(|c| c.seq), Some(1), "what is routed on reads");
    assert_eq!(header_error(&bytes), Some(HeaderName::Date));
    assert_eq!(header_error(&request("")), None);
}

#[test]
fn accessors_answer_none_for_a_malformed_value() {
    let bytes = b"OPTIONS sip:bob@example.com SIP/2.0\r\n\
        Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
        To: <sip:bob@example.com\r\n\
        From: <sip:alice@example.com>;tag=7\r\n\
        Call-ID: c 1\r\n\
        CSeq: one OPTIONS\r\n\
        Content-Length: 0\r\n\r\n";
    let m = Message::parse_datagram(bytes, &Limits::default()).expect("frames");
    assert!(m.to().is_none() && m.cseq().is_none() && m.call_id().is_none());
    assert!(m.from().is_some() && m.top_via().is_some());
    assert_eq!(header_error(bytes), Some(HeaderName::To), "first in order");
}

#[test]
fn validation_keeps_what_it_read_and_edits_forget_it() {
    let bytes = request("");
    let mut m = Message::parse_datagram(&bytes, &Limits::default()).expect("frames");
    m.validate(&Limits::default()).expect("valid");
    assert_eq!(
        m.from().and_then(|f| f.tag().map(str::to_owned)).as_deref(),
        Some("7")
    );
    m.set_header(HeaderName::CSeq, "2 OPTIONS").expect("edit");
    assert_eq!(m.cseq().map(|c| c.seq), Some(2));
    m.set_header(HeaderName::From, "<sip:x@example.com>;tag=8")
        .expect("edit");
    m.validate(&Limits::default()).expect("still valid");
    assert_eq!(
        m.from().and_then(|f| f.tag().map(str::to_owned)).as_deref(),
        Some("8")
    );
}

#[test]
fn message_wide_rules_are_part_of_validation() {
    let limits = Limits {
        max_vias: 2,
        ..Limits::default()
    };
    let three = request("Via: SIP/2.0/UDP a.example;branch=z9hG4bK2, SIP/2.0/UDP b.example\r\n");
    let mut m = Message::parse_datagram(&three, &limits).expect("frames");
    assert!(matches!(
        m.validate(&limits),
        Err(ParseError::TooManyVias { limit: 2 })
    ));
    let mismatch = String::from_utf8(request(""))
        .expect("utf8")
        .replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE");
    let m = Message::parse_datagram(mismatch.as_bytes(), &limits).expect("frames");
    assert!(matches!(
        m.validated(&limits),
        Err(ParseError::CSeqMethodMismatch)
    ));
}

#[test]
fn a_well_formed_prefix_is_not_a_value() {
    // The top Via's host runs into a NUL: `SIP/2.0/UDP t` would parse.
    let text = String::from_utf8(request(""))
        .expect("utf8")
        .replace("192.0.2.1;branch", "t\0.example.com;branch");
    let m = Message::parse_datagram(text.as_bytes(), &Limits::default()).expect("frames");
    assert!(m.top_via().is_none() && m.vias().is_empty());
    assert!(!m.can_be_answered(), "a response would copy the bad Via");
    assert_eq!(header_error(text.as_bytes()), Some(HeaderName::Via));
}

#[test]
fn received_messages_are_sorted_into_act_reject_and_drop() {
    let limits = Limits::default();
    let valid = request("");
    assert!(matches!(
        Message::parse_received(&valid, &limits),
        Some((_, None))
    ));
    let bad_date = request("Date: yesterday\r\n");
    assert!(matches!(
        Message::parse_received(&bad_date, &limits),
        Some((
            _,
            Some(ParseError::Header {
                header: HeaderName::Date,
                ..
            })
        ))
    ));
    let bad_to = String::from_utf8(request(""))
        .expect("utf8")
        .replace("To: <sip:bob@example.com>", "To: <sip:bob");
    assert!(Message::parse_received(bad_to.as_bytes(), &limits).is_none());
    assert!(Message::parse_received(b"not sip", &limits).is_none());
}
