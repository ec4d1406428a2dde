//! Requests and responses as the user agent writes them.

use std::fmt::Write as _;

use privasip_message::{HeaderName, Message};

/// One request's parts.
pub(crate) struct Req<'a> {
    pub(crate) method: &'a str,
    pub(crate) ruri: &'a str,
    pub(crate) local: &'a str,
    pub(crate) transport: &'a str,
    pub(crate) branch: &'a str,
    pub(crate) from: &'a str,
    pub(crate) from_name: Option<&'a str>,
    pub(crate) from_tag: &'a str,
    pub(crate) to: &'a str,
    pub(crate) to_tag: Option<&'a str>,
    pub(crate) call_id: &'a str,
    pub(crate) cseq: u32,
    pub(crate) contact: Option<&'a str>,
    pub(crate) routes: &'a [String],
    pub(crate) extra: &'a [String],
    pub(crate) sdp: Option<&'a [u8]>,
}

pub(crate) fn request(r: &Req<'_>) -> Vec<u8> {
    let mut s = String::with_capacity(512);
    let _ = write!(s, "{} {} SIP/2.0\r\n", r.method, r.ruri);
    let _ = write!(
        s,
        "Via: SIP/2.0/{} {};branch={};rport\r\n",
        r.transport, r.local, r.branch
    );
    s.push_str("Max-Forwards: 70\r\n");
    for route in r.routes {
        let _ = write!(s, "Route: {route}\r\n");
    }
    s.push_str("From: ");
    if let Some(name) = r.from_name {
        quoted(&mut s, name);
        s.push(' ');
    }
    let _ = write!(s, "<{}>;tag={}\r\n", r.from, r.from_tag);
    match r.to_tag {
        Some(t) => {
            let _ = write!(s, "To: <{}>;tag={t}\r\n", r.to);
        }
        None => {
            let _ = write!(s, "To: <{}>\r\n", r.to);
        }
    }
    let _ = write!(s, "Call-ID: {}\r\n", r.call_id);
    let _ = write!(s, "CSeq: {} {}\r\n", r.cseq, r.method);
    if let Some(c) = r.contact {
        let _ = write!(s, "Contact: <{c}>\r\n");
    }
    for e in r.extra {
        s.push_str(e);
        s.push_str("\r\n");
    }
    with_body(s, r.sdp)
}

/// Appends `text` as a SIP quoted-string (RFC 3261 §25.1): `"` and `\`
/// escaped, control characters dropped.
fn quoted(s: &mut String, text: &str) {
    s.push('"');
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                s.push('\\');
                s.push(c);
            }
            c if c.is_control() => {}
            c => s.push(c),
        }
    }
    s.push('"');
}

/// Ends the header section (Content-Type and Content-Length) and appends
/// the SDP body, if any.
fn with_body(mut head: String, sdp: Option<&[u8]>) -> Vec<u8> {
    match sdp {
        Some(body) => {
            let _ = write!(
                head,
                "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            let mut v = head.into_bytes();
            v.extend_from_slice(body);
            v
        }
        None => {
            head.push_str("Content-Length: 0\r\n\r\n");
            head.into_bytes()
        }
    }
}

/// A response to `req` (RFC 3261 §8.2.6): its Via, From, To (with our tag
/// if given), Call-ID and CSeq; for responses that make a dialog (to an
/// INVITE) its Record-Route too (§12.1.1).
pub(crate) fn response(
    req: &Message<'_>,
    code: u16,
    reason: &str,
    to_tag: Option<&str>,
    contact: Option<&str>,
    sdp: Option<&[u8]>,
) -> Vec<u8> {
    let mut s = format!("SIP/2.0 {code} {reason}\r\n");
    for v in req.values(HeaderName::Via) {
        let _ = write!(s, "Via: {v}\r\n");
    }
    let makes_dialog = req.method().is_some_and(|m| m.as_str() == "INVITE");
    if makes_dialog && (101..300).contains(&code) {
        for rr in req.values(HeaderName::RecordRoute) {
            let _ = write!(s, "Record-Route: {rr}\r\n");
        }
    }
    for (name, h) in [
        ("From", HeaderName::From),
        ("Call-ID", HeaderName::CallId),
        ("CSeq", HeaderName::CSeq),
    ] {
        if let Some(v) = req.header(h).map(|x| x.value()) {
            let _ = write!(s, "{name}: {v}\r\n");
        }
    }
    if let Some(to) = req.header(HeaderName::To).map(|x| x.value()) {
        match to_tag {
            Some(t) if !to.contains(";tag=") => {
                let _ = write!(s, "To: {to};tag={t}\r\n");
            }
            _ => {
                let _ = write!(s, "To: {to}\r\n");
            }
        }
    }
    if let Some(c) = contact {
        let _ = write!(s, "Contact: <{c}>\r\n");
    }
    with_body(s, sdp)
}

/// A minimal audio offer that names nobody (signalling only: no media
/// flows). RFC 8866: `o=-` and `s=-` are allowed.
pub(crate) fn sdp(session: u64) -> Vec<u8> {
    sdp_with(session, "0", "a=rtpmap:0 PCMU/8000\r\n")
}

fn sdp_with(session: u64, format: &str, rtpmap: &str) -> Vec<u8> {
    format!(
        "v=0\r\no=- {session} 1 IN IP4 0.0.0.0\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n\
         m=audio 9 RTP/AVP {format}\r\n{rtpmap}a=inactive\r\n"
    )
    .into_bytes()
}

/// The answer to an SDP offer (RFC 3264 §6): the offer's first audio
/// format (with its rtpmap line, if any), inactive, since no media flows;
/// an audio stream the offer rejected (port 0) or no audio at all gets
/// our own offer's format. Only the first `m=` line is answered: ours is
/// a one-stream signalling agent.
pub(crate) fn sdp_answer(session: u64, offer: &[u8]) -> Vec<u8> {
    let offer = String::from_utf8_lossy(offer);
    let first_audio = offer.lines().find_map(|l| {
        let mut f = l.strip_prefix("m=audio ")?.split_whitespace();
        let port = f.next()?;
        let _proto = f.next()?;
        let format = f.next()?;
        (port != "0").then(|| format.to_owned())
    });
    let Some(format) = first_audio.filter(|f| f.bytes().all(|b| b.is_ascii_digit())) else {
        return sdp(session);
    };
    let rtpmap = offer
        .lines()
        .find(|l| {
            l.strip_prefix("a=rtpmap:")
                .and_then(|r| r.split_whitespace().next())
                == Some(format.as_str())
        })
        .map_or(String::new(), |l| format!("{}\r\n", l.trim_end()));
    sdp_with(session, &format, &rtpmap)
}

#[cfg(test)]
mod tests {
    use super::sdp_answer;

    fn answer(offer: &str) -> String {
        String::from_utf8(sdp_answer(7, offer.as_bytes())).expect("text")
    }

    #[test]
    fn the_answer_takes_the_offers_first_audio_format() {
        let a = answer(
            "v=0\r\no=x 1 1 IN IP4 192.0.2.2\r\ns=-\r\nc=IN IP4 192.0.2.2\r\nt=0 0\r\n\
             m=audio 4000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n",
        );
        assert!(a.contains("m=audio 9 RTP/AVP 8\r\n"), "{a}");
        assert!(a.contains("a=rtpmap:8 PCMA/8000\r\n"), "{a}");
        assert!(!a.contains("101"), "{a}");
        assert!(a.contains("a=inactive"), "{a}");
        assert!(!a.contains("192.0.2.2"), "names nobody: {a}");
    }

    #[test]
    fn no_usable_offer_gets_our_own() {
        for offer in [
            "",
            "v=0\r\nm=video 5000 RTP/AVP 96\r\n",
            "m=audio 0 RTP/AVP 0\r\n",
        ] {
            assert!(
                answer(offer).contains("m=audio 9 RTP/AVP 0\r\n"),
                "{offer:?}"
            );
        }
    }
}
