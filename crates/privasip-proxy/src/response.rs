//! Responses made by this element (RFC 3261 §8.2.6).

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
    let mut out = format!("SIP/2.0 {code} {reason}\r\n");
    for v in req.values(HeaderName::Via) {
        out.push_str(&format!("Via: {v}\r\n"));
    }
    if let Some(from) = req.header(HeaderName::From) {
        out.push_str(&format!("From: {}\r\n", from.value()));
    }
    if let Some(to) = req.header(HeaderName::To) {
        let tagged = req.to().is_some_and(|t| t.tag().is_some());
        if tagged || code == 100 {
            out.push_str(&format!("To: {}\r\n", to.value()));
        } else {
            out.push_str(&format!("To: {};tag={to_tag}\r\n", to.value()));
        }
    }
    if let Some(call_id) = req.call_id() {
        out.push_str(&format!("Call-ID: {call_id}\r\n"));
    }
    if let Some(cseq) = req.cseq() {
        out.push_str(&format!("CSeq: {} {}\r\n", cseq.seq, cseq.method.as_str()));
    }
    for line in extra {
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out.into_bytes()
}
