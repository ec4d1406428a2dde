//! The edits a proxy and PrivaSIP make, and that nothing else moves.

use privasip_message::{HeaderName, Limits, Message, ParseError};

const INVITE: &[u8] = b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8, SIP/2.0/UDP bigbox3.site3.atlanta.example.com;branch=z9hG4bK77ef4c2312983.1\r\n\
Max-Forwards: 70\r\n\
To: \"Bob\" <sip:bob@biloxi.example.com>\r\n\
From: Alice Liddell <sip:alice:secret@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: \"Alice\" <sip:alice@pc33.atlanta.example.com>, <sips:alice@[2001:db8::1]:5061>;q=0.5\r\n\
Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n\
X-Custom:  kept   as   is \r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

fn parse(b: &[u8]) -> Message<'_> {
    Message::parse_datagram(b, &Limits::default()).expect("valid")
}

fn text(m: &Message<'_>) -> String {
    String::from_utf8(m.to_bytes()).expect("utf8")
}

#[test]
fn unedited_is_byte_exact() {
    assert_eq!(parse(INVITE).to_bytes(), INVITE);
}

#[test]
fn via_push_and_pop() {
    let mut m = parse(INVITE);
    m.push_via("SIP/2.0/TCP proxy.example.com;branch=z9hG4bKnew")
        .expect("valid via");
    assert_eq!(m.vias().len(), 3);
    assert_eq!(m.top_via().and_then(|v| v.branch()), Some("z9hG4bKnew"));
    assert!(m.pop_via());
    assert_eq!(m.to_bytes(), INVITE, "push then pop restores the message");
    assert!(m.pop_via());
    assert_eq!(
        m.top_via().and_then(|v| v.branch()),
        Some("z9hG4bK77ef4c2312983.1")
    );
    assert!(m.pop_via());
    assert!(!m.pop_via());
    assert!(m.vias().is_empty());
}

#[test]
fn routing_edits() {
    let mut m = parse(INVITE);
    assert!(m.pop_route());
    assert_eq!(m.routes().len(), 1);
    m.push_record_route("<sip:proxy.example.com;lr>")
        .expect("valid");
    assert_eq!(m.record_routes().len(), 1);
    m.set_request_uri("sip:bob@192.0.2.4:5060").expect("valid");
    m.set_max_forwards(69);
    let t = text(&m);
    assert!(
        t.starts_with("INVITE sip:bob@192.0.2.4:5060 SIP/2.0\r\n"),
        "{t}"
    );
    assert!(t.contains("\r\nMax-Forwards: 69\r\n"));
    assert!(
        t.contains("\r\nX-Custom:  kept   as   is \r\n"),
        "untouched stays byte-exact"
    );
    assert_eq!(parse(t.as_bytes()), m);
}

#[test]
fn privasip_user_and_display_name_edits() {
    let mut m = parse(INVITE);
    assert_eq!(m.remove_display_names(HeaderName::From), Ok(1));
    assert_eq!(m.remove_display_names(HeaderName::To), Ok(1));
    assert_eq!(m.remove_display_names(HeaderName::Contact), Ok(1));
    assert_eq!(m.set_user(HeaderName::From, "tok3n-A_b"), Ok(1));
    assert_eq!(m.set_user(HeaderName::To, "tok3n-B"), Ok(1));
    assert_eq!(m.set_user(HeaderName::Contact, "anon"), Ok(2));
    let t = text(&m);
    for secret in ["Alice", "alice", "Bob", "bob@", "secret", "Liddell"] {
        let head = t
            .get(t.find("\r\nTo:").expect("To")..t.find("\r\nRoute:").expect("Route"))
            .unwrap_or_default();
        assert!(!head.contains(secret), "{secret} left in {head}");
    }
    assert!(
        t.contains("\r\nFrom: <sip:tok3n-A_b@atlanta.example.com>;tag=1928301774\r\n"),
        "{t}"
    );
    assert!(
        t.contains("\r\nTo: <sip:tok3n-B@biloxi.example.com>\r\n"),
        "{t}"
    );
    assert!(t.contains(
        "\r\nContact: <sip:anon@pc33.atlanta.example.com>, <sips:anon@[2001:db8::1]:5061>;q=0.5\r\n"
    ));
    let again = parse(t.as_bytes());
    assert_eq!(
        again.from().map(|f| f.uri_raw),
        Some("sip:tok3n-A_b@atlanta.example.com")
    );
    assert_eq!(again.from().and_then(|f| f.tag()), Some("1928301774"));
}

#[test]
fn headers_and_body() {
    let mut m = parse(INVITE);
    assert_eq!(m.remove_header_str("x-custom"), 1);
    m.append_header("Subject", "hello").expect("valid");
    m.set_header(HeaderName::CallId, "abc123").expect("valid");
    m.set_body(b"v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n".to_vec());
    let t = text(&m);
    assert!(t.contains("\r\nContent-Length: 29\r\n"), "{t}");
    assert!(t.contains("\r\nCall-ID: abc123\r\n"));
    let again = parse(t.as_bytes());
    assert_eq!(again.body().len(), 29);
    assert_eq!(again.call_id(), Some("abc123"));
}

#[test]
fn edits_refuse_what_would_break_the_message() {
    let mut m = parse(INVITE);
    let injected = m.append_header("X-A", "b\r\nVia: SIP/2.0/UDP evil");
    assert!(matches!(injected, Err(ParseError::Header { .. })));
    assert!(m.push_via("not a via").is_err());
    assert!(m.set_request_uri("sip:a@b?Route=x").is_err());
    assert!(m.set_request_uri("<sip:a@b>").is_err());
    assert!(m.set_user(HeaderName::From, "has space").is_err());
    assert!(m.set_header(HeaderName::CSeq, "1 INVITE junk").is_err());
    assert!(m.append_header("Bad Name", "x").is_err());
    assert_eq!(m.to_bytes(), INVITE, "failed edits change nothing");
}

#[test]
fn content_length_always_matches_the_body() {
    // No Content-Length in a datagram: printing adds it.
    let raw = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTo: <sip:a@b>\r\nFrom: <sip:c@d>;tag=1\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\n\r\nhi";
    let m = parse(raw);
    let t = text(&m);
    assert!(t.ends_with("Content-Length: 2\r\n\r\nhi"), "{t}");
}

#[test]
fn debug_never_shows_identities() {
    let m = parse(INVITE);
    let d = format!(
        "{m:?} {:?} {:?} {:?} {:?}",
        m.from(),
        m.to(),
        m.headers(),
        m.contacts()
    );
    for secret in ["alice", "Alice", "bob", "secret", "2001:db8"] {
        assert!(!d.contains(secret), "{secret} in {d}");
    }
}
