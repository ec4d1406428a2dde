//! Responses made by this element (RFC 3261 §8.2.6).

use std::fmt::Write as _;

use privasip_message::{HeaderName, Message};

/// A response to `req`: its Vias, From, Call-ID and CSeq; To with `to_tag`
/// added if the request's To has none and the status is above 100;
/// `extra` header lines (each "Name: value"); no body.
pub fn response_for(
    req: &Message<'_>,
    code: u16,
    reason: &str,
    to_tag: &str,
    extra: &[String],
) -> Vec<u8> {
    // Writing to a String cannot fail; the results are ignored.
    let mut out = String::with_capacity(512);
    let _ = write!(out, "SIP/2.0 {code} {reason}\r\n");
    for v in req.values(HeaderName::Via) {
        let _ = write!(out, "Via: {v}\r\n");
    }
    if let Some(from) = req.header(HeaderName::From) {
        let _ = write!(out, "From: {}\r\n", from.value());
    }
    if let Some(to) = req.header(HeaderName::To) {
        let tagged = req.to().is_some_and(|t| t.tag().is_some());
        if tagged || code == 100 {
            let _ = write!(out, "To: {}\r\n", to.value());
        } else {
            let _ = write!(out, "To: {};tag={to_tag}\r\n", to.value());
        }
    }
    if let Some(call_id) = req.call_id() {
        let _ = write!(out, "Call-ID: {call_id}\r\n");
    }
    if let Some(cseq) = req.cseq() {
        let _ = write!(out, "CSeq: {} {}\r\n", cseq.seq, cseq.method.as_str());
    }
    for line in extra {
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out.into_bytes()
}
