//! The message: a parsed index over the received bytes, typed access on
//! demand.

use std::borrow::Cow;
use std::fmt;

use crate::error::ParseError;
use crate::header::auth::AuthValue;
use crate::header::name_addr::{self, ContactValue, NameAddr};
use crate::header::scalar::{self, CSeq, MediaType};
use crate::header::via::{self, Via};
use crate::limits::Limits;
use crate::method::Method;
use crate::name::HeaderName;
use crate::scan::{find_byte, is_token, is_token_str, swar, trim_end_ws, trim_lws};
use crate::uri::Uri;

/// A SIP request or response.
///
/// It borrows from the buffer it was parsed from; untouched parts are
/// printed back byte for byte.
///
/// Parsing frames the message (start line, header lines, Content-Length,
/// body) and checks the Request-URI; a header value is checked against its
/// grammar when it is first read, or all at once by [`Message::validate`].
/// RFC 3261 §16.3 step 1 lets a proxy check only what it routes on and
/// forward the rest untouched; privasip's proxy and user agent validate
/// every message they receive and answer 400 when that fails. Typed
/// accessors return `None` for a header that is absent or malformed.
#[derive(Clone)]
pub struct Message<'a> {
    pub(crate) start: StartLine<'a>,
    pub(crate) headers: Vec<Header<'a>>,
    pub(crate) body: Cow<'a, [u8]>,
    /// The headers every element reads, kept by [`Message::validate`] so
    /// that reading them costs nothing; edits forget what they touch.
    pub(crate) typed: Typed<'a>,
}

/// Typed values of the headers every element reads, from validation.
#[derive(Clone, Default)]
pub(crate) struct Typed<'a> {
    top_via: Option<Via<'a>>,
    from: Option<NameAddr<'a>>,
    to: Option<NameAddr<'a>>,
    cseq: Option<CSeq<'a>>,
    call_id: Option<&'a str>,
}

impl Typed<'_> {
    /// Drops what an edit of `name` may have changed.
    pub(crate) fn forget(&mut self, name: HeaderName) {
        match name {
            HeaderName::Via => self.top_via = None,
            HeaderName::From => self.from = None,
            HeaderName::To => self.to = None,
            HeaderName::CSeq => self.cseq = None,
            HeaderName::CallId => self.call_id = None,
            _ => {}
        }
    }
}

#[derive(Clone)]
pub(crate) enum StartLine<'a> {
    Request {
        method: Method<'a>,
        uri: Cow<'a, str>,
        /// The line as received, while it is unchanged.
        raw: Option<&'a str>,
    },
    Response {
        code: u16,
        reason: Cow<'a, str>,
        raw: Option<&'a str>,
    },
}

/// One header field line (with its folded continuation lines).
#[derive(Clone)]
pub struct Header<'a> {
    pub(crate) name: HeaderName,
    pub(crate) name_raw: Cow<'a, str>,
    pub(crate) value: Cow<'a, str>,
    /// The field as received, without its final CRLF, while unchanged.
    pub(crate) raw: Option<&'a str>,
}

impl<'a> Header<'a> {
    /// The header's name, folded to a known variant when there is one.
    pub fn name(&self) -> HeaderName {
        self.name
    }

    /// The name as written (`v`, `VIA`, `X-Foo`).
    pub fn name_str(&self) -> &str {
        &self.name_raw
    }

    /// The value, trimmed; folded lines are kept as they are (CRLF and
    /// white space count as white space wherever the grammar allows it).
    pub fn value(&self) -> &str {
        &self.value
    }

    pub(crate) fn new(name: HeaderName, name_raw: Cow<'a, str>, value: Cow<'a, str>) -> Self {
        Header {
            name,
            name_raw,
            value,
            raw: None,
        }
    }
}

// Header values carry identities: Debug shows the name only.
impl fmt::Debug for Header<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Header({}: [redacted])", self.name_raw)
    }
}

impl fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Message");
        match &self.start {
            StartLine::Request { method, .. } => d.field("method", method),
            StartLine::Response { code, .. } => d.field("status", code),
        };
        d.field("headers", &self.headers.len())
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

impl<'a> Message<'a> {
    /// Parses one message received as a datagram (RFC 3261 §18.3): the
    /// whole buffer is the message; octets after Content-Length are dropped
    /// (RFC 4475 §3.1.1.8); without Content-Length the body runs to the end.
    pub fn parse_datagram(buf: &'a [u8], limits: &Limits) -> Result<Message<'a>, ParseError> {
        if buf.len() > limits.max_message_size {
            return Err(ParseError::MessageTooLarge {
                size: buf.len(),
                limit: limits.max_message_size,
            });
        }
        // RFC 3261 §7.5: ignore CRLFs before the start line.
        let lead = leading_crlfs(buf);
        let buf = &buf[lead..];
        if buf.is_empty() {
            return Err(ParseError::Empty);
        }
        let (head_len, body_start) = match END_OF_HEAD.find(buf) {
            Some(i) => (i + 2, i + 4),
            // Tolerate a datagram whose last header line is not followed by
            // the empty line: there is no body to misframe.
            None if buf.ends_with(b"\r\n") => (buf.len(), buf.len()),
            None => {
                return Err(ParseError::HeaderLine {
                    line: count_lines(buf),
                    reason: "header section does not end with an empty line",
                });
            }
        };
        let head = std::str::from_utf8(&buf[..head_len]).map_err(|_| ParseError::NotUtf8)?;
        // Built in place: the typed values are large, and each move of the
        // message would copy them.
        let mut msg = Message {
            start: StartLine::Response {
                code: 0,
                reason: Cow::Borrowed(""),
                raw: None,
            },
            // 13 headers cover most messages and keep the buffer under
            // glibc's 1 KiB large-chunk line (a larger request makes malloc
            // consolidate its fast bins first, which showed in profiles).
            headers: Vec::with_capacity(13),
            body: Cow::Borrowed(&[]),
            typed: Typed::default(),
        };
        let content_length = parse_head(head, limits, &mut msg)?;
        let available = buf.len() - body_start;
        let body = match content_length {
            Some(declared) if declared > available => {
                return Err(ParseError::BodyTruncated {
                    declared,
                    available,
                });
            }
            Some(declared) => &buf[body_start..body_start + declared],
            None => &buf[body_start..],
        };
        msg.body = Cow::Borrowed(body);
        Ok(msg)
    }

    /// Parses one message from the front of a stream buffer (TCP, TLS, Tor;
    /// RFC 3261 §18.3: Content-Length is required). Returns the message and
    /// how many bytes it took, or `None` if more bytes are needed. For
    /// keep-alives and incremental reads use [`crate::StreamDecoder`].
    pub fn parse_stream(
        buf: &'a [u8],
        limits: &Limits,
    ) -> Result<Option<(Message<'a>, usize)>, ParseError> {
        let mut decoder = crate::StreamDecoder::new(limits.clone());
        let mut offset = 0;
        loop {
            match decoder.decode(&buf[offset..])? {
                crate::Frame::Partial => return Ok(None),
                // A CRLFCRLF keep-alive in front: skip it and go on.
                crate::Frame::KeepAlive { len } => offset += len,
                crate::Frame::Message { skip, len } => {
                    let start = offset + skip;
                    let m = Message::parse_datagram(&buf[start..start + len], limits)?;
                    return Ok(Some((m, start + len)));
                }
            }
        }
    }

    /// True for a request.
    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// The method of a request.
    pub fn method(&self) -> Option<Method<'a>> {
        match &self.start {
            StartLine::Request { method, .. } => Some(*method),
            StartLine::Response { .. } => None,
        }
    }

    /// The Request-URI of a request, as written.
    pub fn request_uri(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { uri, .. } => Some(uri),
            StartLine::Response { .. } => None,
        }
    }

    /// The Request-URI of a request, parsed.
    pub fn request_uri_parsed(&self) -> Option<Uri<'_>> {
        // Checked when the message was parsed or the URI was set.
        self.request_uri().and_then(|u| Uri::parse(u).ok())
    }

    /// The status code of a response.
    pub fn status(&self) -> Option<u16> {
        match &self.start {
            StartLine::Response { code, .. } => Some(*code),
            StartLine::Request { .. } => None,
        }
    }

    /// The reason phrase of a response.
    pub fn reason(&self) -> Option<&str> {
        match &self.start {
            StartLine::Response { reason, .. } => Some(reason),
            StartLine::Request { .. } => None,
        }
    }

    /// The method a response answers (from CSeq), or the request's method.
    pub fn cseq_method(&self) -> Option<Method<'_>> {
        self.cseq().map(|c| c.method)
    }

    /// Every header field, in order.
    pub fn headers(&self) -> &[Header<'a>] {
        &self.headers
    }

    /// The first header called `name`.
    pub fn header(&self, name: HeaderName) -> Option<&Header<'a>> {
        self.headers.iter().find(|h| h.name == name)
    }

    /// The first header whose name is `name` (any spelling, compact forms
    /// included).
    pub fn header_str(&self, name: &str) -> Option<&Header<'a>> {
        match HeaderName::lookup(name) {
            HeaderName::Other => self
                .headers
                .iter()
                .find(|h| h.name == HeaderName::Other && h.name_raw.eq_ignore_ascii_case(name)),
            known => self.header(known),
        }
    }

    /// The values of every header called `name`.
    pub fn values(&self, name: HeaderName) -> impl Iterator<Item = &str> {
        self.headers
            .iter()
            .filter(move |h| h.name == name)
            .map(|h| h.value())
    }

    /// The message body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The topmost Via value.
    pub fn top_via(&self) -> Option<Via<'_>> {
        if let Some(v) = &self.typed.top_via {
            return Some(v.clone());
        }
        let mut c = crate::scan::Cursor::new(self.header(HeaderName::Via)?.value());
        let via = Via::parse(&mut c).ok()?;
        // The whole value, up to the next one: not a well-formed prefix.
        c.skip_lws();
        (c.at_end() || c.peek() == Some(b',')).then_some(via)
    }

    /// Every Via value, top first (empty if one is malformed).
    pub fn vias(&self) -> Vec<Via<'_>> {
        let mut out = Vec::new();
        for v in self.values(HeaderName::Via) {
            if via::parse_list(v, |x| out.push(x)).is_err() {
                return Vec::new();
            }
        }
        out
    }

    /// From (RFC 3261 §20.20).
    pub fn from(&self) -> Option<NameAddr<'_>> {
        match &self.typed.from {
            Some(f) => Some(f.clone()),
            None => self.name_addr(HeaderName::From),
        }
    }

    /// To (RFC 3261 §20.39).
    pub fn to(&self) -> Option<NameAddr<'_>> {
        match &self.typed.to {
            Some(t) => Some(t.clone()),
            None => self.name_addr(HeaderName::To),
        }
    }

    fn name_addr(&self, name: HeaderName) -> Option<NameAddr<'_>> {
        NameAddr::parse_single(self.header(name)?.value()).ok()
    }

    /// Call-ID.
    pub fn call_id(&self) -> Option<&str> {
        if let Some(c) = self.typed.call_id {
            return Some(c);
        }
        let v = self.header(HeaderName::CallId)?.value();
        scalar::check_call_id(v).ok().map(|()| v)
    }

    /// CSeq.
    pub fn cseq(&self) -> Option<CSeq<'_>> {
        if let Some(c) = self.typed.cseq {
            return Some(c);
        }
        CSeq::parse(self.header(HeaderName::CSeq)?.value()).ok()
    }

    /// Max-Forwards.
    pub fn max_forwards(&self) -> Option<u8> {
        scalar::parse_max_forwards(self.header(HeaderName::MaxForwards)?.value()).ok()
    }

    /// Contact values of every Contact header; `Some(Star)` for `*`.
    pub fn contacts(&self) -> Option<ContactValue<'_>> {
        let mut all: Option<ContactValue<'_>> = None;
        for v in self.values(HeaderName::Contact) {
            match (ContactValue::parse(v).ok()?, &mut all) {
                (ContactValue::Star, _) => return Some(ContactValue::Star),
                (ContactValue::Addrs(a), Some(ContactValue::Addrs(acc))) => acc.extend(a),
                (addrs, slot) => *slot = Some(addrs),
            }
        }
        all
    }

    /// Route values, top first (empty if one is malformed).
    pub fn routes(&self) -> Vec<NameAddr<'_>> {
        self.name_addr_list(HeaderName::Route)
    }

    /// Record-Route values, top first (empty if one is malformed).
    pub fn record_routes(&self) -> Vec<NameAddr<'_>> {
        self.name_addr_list(HeaderName::RecordRoute)
    }

    /// Each address of every `name` header (Route, Record-Route,
    /// Contact) as written, top first, parameters included; empty if one
    /// is malformed.
    pub fn address_texts(&self, name: HeaderName) -> Vec<&str> {
        let mut out = Vec::new();
        for v in self.values(name) {
            let mut spans = Vec::new();
            if name_addr::parse_list(v, false, |na| spans.push(na.span)).is_err() {
                return Vec::new();
            }
            out.extend(spans.into_iter().filter_map(|(a, b)| v.get(a..b)));
        }
        out
    }

    fn name_addr_list(&self, name: HeaderName) -> Vec<NameAddr<'_>> {
        let mut out = Vec::new();
        for v in self.values(name) {
            // All or nothing, like `vias`: not a well-formed prefix.
            if name_addr::parse_list(v, false, |na| out.push(na)).is_err() {
                return Vec::new();
            }
        }
        out
    }

    /// The Content-Length header's value, if present.
    pub fn content_length(&self) -> Option<usize> {
        scalar::parse_content_length(self.header(HeaderName::ContentLength)?.value()).ok()
    }

    /// Content-Type.
    pub fn content_type(&self) -> Option<MediaType<'_>> {
        MediaType::parse(self.header(HeaderName::ContentType)?.value()).ok()
    }

    /// Expires, in seconds (saturated at 2**32-1).
    pub fn expires(&self) -> Option<u32> {
        scalar::parse_delta_seconds(self.header(HeaderName::Expires)?.value()).ok()
    }

    /// The option tags of every header called `name` (Require,
    /// Proxy-Require, Supported, Unsupported; also Allow's methods).
    pub fn option_tags(&self, name: HeaderName) -> impl Iterator<Item = &str> {
        self.values(name)
            .flat_map(scalar::split_list)
            .filter(|t| !t.is_empty())
    }

    /// The credentials or challenges of every header called `name`
    /// (Authorization, Proxy-Authorization, WWW-Authenticate,
    /// Proxy-Authenticate).
    pub fn auth_values(&self, name: HeaderName) -> impl Iterator<Item = AuthValue<'_>> {
        self.values(name).filter_map(|v| AuthValue::parse(v).ok())
    }

    /// RFC 3261 §8.1.1: a request carries To, From, Call-ID, CSeq and Via,
    /// and §7.3.1: single-valued headers appear once. A proxy or UA answers
    /// 400 when this fails (RFC 4475 §3.3.1, §3.3.8, §3.3.9).
    pub fn check_mandatory_headers(&self) -> Result<(), ParseError> {
        const MANDATORY: [HeaderName; 5] = [
            HeaderName::To,
            HeaderName::From,
            HeaderName::CallId,
            HeaderName::CSeq,
            HeaderName::Via,
        ];
        for name in MANDATORY {
            if self.header(name).is_none() {
                return Err(ParseError::MissingHeader(name));
            }
        }
        for (i, h) in self.headers.iter().enumerate() {
            if h.name.is_single_valued() && self.headers[i + 1..].iter().any(|o| o.name == h.name) {
                return Err(ParseError::DuplicateHeader(h.name));
            }
        }
        Ok(())
    }

    /// Checks every known header against its grammar (RFC 3261 §25), the
    /// number of Via values against `limits`, and that a request's CSeq
    /// names its method (§8.1.1.5, RFC 4475 §3.1.2.17); keeps the typed
    /// values every element reads (top Via, From, To, CSeq, Call-ID) so
    /// that reading them later costs nothing. The first problem, in header
    /// order, is the error.
    ///
    /// Parsing only frames the message, so a proxy can forward what it
    /// does not route on as it came (RFC 3261 §16.3 step 1); a user agent
    /// validates a request before acting on it.
    pub fn validate(&mut self, limits: &Limits) -> Result<(), ParseError> {
        let mut typed = Typed::default();
        let mut vias = 0usize;
        // Whether a From, To, CSeq or Call-ID came already: only the first
        // of each is kept.
        let mut seen = [false; 4];
        for h in &self.headers {
            let name = h.name;
            let bad = |reason| ParseError::Header {
                header: name,
                reason,
            };
            let first = kept_index(name).is_some_and(|i| !std::mem::replace(&mut seen[i], true));
            // Only a value still borrowed from the input can be kept; an
            // edited one is checked here and read again on access.
            let borrowed = match h.value {
                Cow::Borrowed(v) => Some(v),
                Cow::Owned(_) => None,
            };
            match (name, borrowed) {
                (HeaderName::Via, Some(v)) => {
                    let top = vias == 0;
                    via::parse_list(v, |via| {
                        if top && typed.top_via.is_none() {
                            typed.top_via = Some(via);
                        }
                        vias += 1;
                    })
                    .map_err(bad)?;
                }
                (HeaderName::Via, None) => {
                    via::parse_list(h.value(), |_| vias += 1).map_err(bad)?;
                }
                (HeaderName::From, Some(v)) => {
                    let from = NameAddr::parse_single(v).map_err(bad)?;
                    if first {
                        typed.from = Some(from);
                    }
                }
                (HeaderName::To, Some(v)) => {
                    let to = NameAddr::parse_single(v).map_err(bad)?;
                    if first {
                        typed.to = Some(to);
                    }
                }
                (HeaderName::CSeq, Some(v)) => {
                    let cseq = CSeq::parse(v).map_err(bad)?;
                    if first {
                        typed.cseq = Some(cseq);
                    }
                }
                (HeaderName::CallId, Some(v)) => {
                    scalar::check_call_id(v).map_err(bad)?;
                    if first {
                        typed.call_id = Some(v);
                    }
                }
                _ => check_value(name, h.value()).map_err(bad)?,
            }
            if vias > limits.max_vias {
                return Err(ParseError::TooManyVias {
                    limit: limits.max_vias,
                });
            }
        }
        if let (Some(method), Some(cseq)) = (self.method(), typed.cseq.or_else(|| self.cseq()))
            && cseq.method != method
        {
            return Err(ParseError::CSeqMethodMismatch);
        }
        self.typed = typed;
        Ok(())
    }

    /// True for a request that can be answered even if another of its
    /// headers is malformed: the headers a response copies (RFC 3261
    /// §8.2.6.2) and that key its transaction read fine. An ACK is never
    /// answered (§17.2.1).
    pub fn can_be_answered(&self) -> bool {
        // A response copies every Via value.
        self.method().is_some_and(|m| m != Method::Ack)
            && !self.vias().is_empty()
            && self.from().is_some()
            && self.to().is_some()
            && self.call_id().is_some()
            && self.cseq().is_some()
    }

    /// Parses and validates a datagram received from the network, sorted
    /// the way a SIP element handles it: `None` to drop (it does not
    /// frame, or it is malformed and cannot be answered); `Some((msg,
    /// None))` to act on; `Some((msg, Some(error)))` for a request to
    /// reject with `error`'s [`crate::HasSipStatus::rejection`] (RFC 3261
    /// §16.3 step 1, RFC 4475 §3.1.2).
    pub fn parse_received(
        buf: &'a [u8],
        limits: &Limits,
    ) -> Option<(Message<'a>, Option<ParseError>)> {
        let mut msg = Message::parse_datagram(buf, limits).ok()?;
        match msg.validate(limits) {
            Ok(()) => Some((msg, None)),
            Err(e) => msg.can_be_answered().then_some((msg, Some(e))),
        }
    }

    /// [`Message::validate`], for a chain: `Message::parse_datagram(buf,
    /// limits).and_then(|m| m.validated(limits))`.
    pub fn validated(mut self, limits: &Limits) -> Result<Self, ParseError> {
        self.validate(limits)?;
        Ok(self)
    }

    /// The privacy values requested (RFC 3323 §4.2), lower-case as written.
    pub fn privacy(&self) -> impl Iterator<Item = &str> {
        self.values(HeaderName::Privacy)
            .flat_map(|v| v.split(';').map(trim_lws))
    }

    /// A CANCEL for this request as sent (RFC 3261 §9.1): its
    /// Request-URI, Call-ID, From, To, CSeq number, Route headers and only
    /// its top Via. `None` if one of them is missing.
    pub fn cancel_request(&self) -> Option<Vec<u8>> {
        let ruri = self.request_uri()?;
        let via = self.values(HeaderName::Via).next()?;
        let top_via = via.split(',').next().unwrap_or(via).trim();
        let (from, to) = (self.header(HeaderName::From)?, self.header(HeaderName::To)?);
        let (call_id, cseq) = (self.call_id()?, self.cseq()?);
        let mut cancel = format!(
            "CANCEL {ruri} SIP/2.0\r\nVia: {top_via}\r\nMax-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\n\
             Call-ID: {call_id}\r\nCSeq: {} CANCEL\r\n",
            from.value(),
            to.value(),
            cseq.seq
        );
        for r in self.values(HeaderName::Route) {
            cancel.push_str("Route: ");
            cancel.push_str(r);
            cancel.push_str("\r\n");
        }
        cancel.push_str("Content-Length: 0\r\n\r\n");
        Some(cancel.into_bytes())
    }
}

/// Searching for CRLFCRLF with a prebuilt searcher (building one per call
/// costs more than the search).
pub(crate) static END_OF_HEAD: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\r\n\r\n"));

fn leading_crlfs(buf: &[u8]) -> usize {
    let mut i = 0;
    while buf.get(i..i + 2) == Some(b"\r\n") {
        i += 2;
    }
    i
}

fn count_lines(buf: &[u8]) -> usize {
    memchr::memchr_iter(b'\n', buf).count() + 1
}

/// Parses the start line and header fields into `msg`; returns the
/// Content-Length. `head` ends with the CRLF of its last line.
fn parse_head<'a>(
    head: &'a str,
    limits: &Limits,
    msg: &mut Message<'a>,
) -> Result<Option<usize>, ParseError> {
    let bytes = head.as_bytes();
    let mut lines = LineIter {
        head,
        pos: 0,
        number: 0,
        max: limits.max_line_length,
    };
    let first = lines.next_line()?.ok_or(ParseError::Empty)?;
    msg.start = parse_start_line(first)?;

    let mut content_length = None;
    // (line start, colon, end) of the field being read.
    let mut current: Option<(usize, usize, usize)> = None;
    loop {
        let line = lines.next_line()?;
        let (line_start, line_end) = match line {
            Some(l) => {
                let s = l.as_ptr() as usize - head.as_ptr() as usize;
                (s, s + l.len())
            }
            None => (bytes.len(), bytes.len()),
        };
        // A line that starts with white space continues the field (folding).
        if line.is_some() && matches!(bytes.get(line_start), Some(b' ' | b'\t')) {
            match current.as_mut() {
                Some(cur) => cur.2 = line_end,
                None => {
                    return Err(ParseError::HeaderLine {
                        line: lines.number,
                        reason: "continuation line before any header",
                    });
                }
            }
            continue;
        }
        if let Some((s, colon, e)) = current.take() {
            if msg.headers.len() == limits.max_headers {
                return Err(ParseError::TooManyHeaders {
                    limit: limits.max_headers,
                });
            }
            let h = finish_header(head, s, colon, e);
            // The one value framing depends on; the rest is checked when
            // read (or by `validate`).
            if h.name == HeaderName::ContentLength && content_length.is_none() {
                let n = scalar::parse_content_length(&h.value).map_err(|reason| {
                    ParseError::Header {
                        header: HeaderName::ContentLength,
                        reason,
                    }
                })?;
                content_length = Some(n);
            }
            msg.headers.push(h);
        }
        let Some(l) = line else { break };
        let colon = header_colon(l.as_bytes()).map_err(|reason| ParseError::HeaderLine {
            line: lines.number,
            reason,
        })?;
        current = Some((line_start, line_start + colon, line_end));
    }

    Ok(content_length)
}

/// Where the colon after a header line's name is: `token *(SP / HTAB)
/// ":"`, checked in one pass.
fn header_colon(line: &[u8]) -> Result<usize, &'static str> {
    let name_end = line
        .iter()
        .position(|&b| !is_token(b))
        .unwrap_or(line.len());
    let mut i = name_end;
    while matches!(line.get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    match line.get(i) {
        Some(b':') if name_end > 0 => Ok(i),
        _ if find_byte(line, b':').is_none() => Err("header line without ':'"),
        _ => Err("bad header name"),
    }
}

/// Yields the lines of the head without their CRLF, checking line ends and
/// lengths.
struct LineIter<'a> {
    head: &'a str,
    pos: usize,
    number: usize,
    max: usize,
}

impl<'a> LineIter<'a> {
    fn next_line(&mut self) -> Result<Option<&'a str>, ParseError> {
        let b = self.head.as_bytes();
        if self.pos >= b.len() {
            return Ok(None);
        }
        self.number += 1;
        // The first CR or LF must be the CR of a CRLF.
        let cr = find_line_end(b, self.pos).ok_or(ParseError::BareLineEnd { line: self.number })?;
        if b[cr] != b'\r' || b.get(cr + 1) != Some(&b'\n') {
            return Err(ParseError::BareLineEnd { line: self.number });
        }
        let line = self.head.get(self.pos..cr).unwrap_or_default();
        if line.len() > self.max {
            return Err(ParseError::LineTooLong { limit: self.max });
        }
        self.pos = cr + 2;
        Ok(Some(line))
    }
}

/// The first CR or LF at or after `from`. Header lines are a few dozen
/// bytes, too short for a vector search to pay for its set-up: this looks
/// at eight bytes per step.
fn find_line_end(b: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    // Not `swar::load`: the loop compiles tighter on the slice itself.
    while let Some(chunk) = b.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        let hits = swar::eq(w, b'\r') | swar::eq(w, b'\n');
        if hits != 0 {
            return Some(i + (hits.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    b[i.min(b.len())..]
        .iter()
        .position(|&c| c == b'\r' || c == b'\n')
        .map(|p| i + p)
}

fn finish_header(head: &str, start: usize, colon: usize, end: usize) -> Header<'_> {
    let name_raw = trim_end_ws(head.get(start..colon).unwrap_or_default());
    let value = trim_lws(head.get(colon + 1..end).unwrap_or_default());
    Header {
        name: HeaderName::lookup_in(&head.as_bytes()[start..], name_raw.len()),
        name_raw: Cow::Borrowed(name_raw),
        value: Cow::Borrowed(value),
        raw: Some(head.get(start..end).unwrap_or_default()),
    }
}

/// Which of the single headers [`Message::validate`] keeps `name` is.
fn kept_index(name: HeaderName) -> Option<usize> {
    match name {
        HeaderName::From => Some(0),
        HeaderName::To => Some(1),
        HeaderName::CSeq => Some(2),
        HeaderName::CallId => Some(3),
        _ => None,
    }
}

/// Checks one value of a known header; other headers pass untouched.
pub(crate) fn check_value(name: HeaderName, v: &str) -> Result<(), &'static str> {
    match name {
        HeaderName::Via => via::parse_list(v, |_| ()),
        HeaderName::From | HeaderName::To => NameAddr::parse_single(v).map(drop),
        HeaderName::Contact => ContactValue::check(v),
        HeaderName::Route | HeaderName::RecordRoute => name_addr::parse_list(v, true, drop),
        HeaderName::PAssertedIdentity | HeaderName::PPreferredIdentity => {
            name_addr::parse_list(v, false, drop)
        }
        HeaderName::CallId => scalar::check_call_id(v),
        HeaderName::CSeq => CSeq::parse(v).map(drop),
        HeaderName::MaxForwards => scalar::parse_max_forwards(v).map(drop),
        HeaderName::ContentLength => scalar::parse_content_length(v).map(drop),
        HeaderName::ContentType => MediaType::parse(v).map(drop),
        HeaderName::Expires | HeaderName::MinExpires => scalar::parse_delta_seconds(v).map(drop),
        HeaderName::Require | HeaderName::ProxyRequire => scalar::check_token_list(v, false),
        HeaderName::Supported | HeaderName::Unsupported | HeaderName::Allow => {
            scalar::check_token_list(v, true)
        }
        HeaderName::Authorization
        | HeaderName::ProxyAuthorization
        | HeaderName::WwwAuthenticate
        | HeaderName::ProxyAuthenticate => AuthValue::parse(v).map(drop),
        HeaderName::Privacy => scalar::check_privacy(v),
        HeaderName::Date => scalar::check_date(v),
        _ => Ok(()),
    }
}

/// Parses the request line (RFC 3261 §7.1) or status line (§7.2).
fn parse_start_line(line: &str) -> Result<StartLine<'_>, ParseError> {
    // Byte comparison: the line may hold multi-byte UTF-8 anywhere.
    if line
        .as_bytes()
        .get(..4)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"SIP/"))
    {
        return parse_status_line(line);
    }
    let b = line.as_bytes();
    let spaces = find_byte(b, b' ').and_then(|a| {
        let c = a + 1 + find_byte(&b[a + 1..], b' ')?;
        find_byte(&b[c + 1..], b' ').is_none().then_some((a, c))
    });
    let Some((method, uri, version)) = spaces.map(|(a, c)| {
        (
            line.get(..a).unwrap_or_default(),
            line.get(a + 1..c).unwrap_or_default(),
            line.get(c + 1..).unwrap_or_default(),
        )
    }) else {
        return Err(ParseError::RequestLine(
            if line.contains("  ") || line.ends_with(' ') || line.starts_with(' ') {
                "elements must be separated by exactly one SP"
            } else if line.split(' ').count() > 3 {
                "white space inside the Request-URI"
            } else {
                "expected METHOD SP Request-URI SP SIP/2.0"
            },
        ));
    };
    if method.is_empty() || uri.is_empty() || version.is_empty() {
        return Err(ParseError::RequestLine(
            "elements must be separated by exactly one SP",
        ));
    }
    if !is_token_str(method) {
        return Err(ParseError::RequestLine("method is not a token"));
    }
    check_version(version).map_err(|e| e.unwrap_or(ParseError::RequestLine("bad SIP version")))?;
    if uri.starts_with('<') {
        // RFC 4475 §3.1.2.7
        return Err(ParseError::RequestUri(
            "a Request-URI is not enclosed in <>",
        ));
    }
    match Uri::parse(uri).map_err(ParseError::RequestUri)? {
        // RFC 3261 §19.1.1 table 1: no headers in a Request-URI.
        Uri::Sip(u) if u.headers.is_some() => {
            return Err(ParseError::RequestUri(
                "headers are not allowed in a Request-URI",
            ));
        }
        _ => {}
    }
    Ok(StartLine::Request {
        method: Method::from_token(method),
        uri: Cow::Borrowed(uri),
        raw: Some(line),
    })
}

fn parse_status_line(line: &str) -> Result<StartLine<'_>, ParseError> {
    let sp = find_byte(line.as_bytes(), b' ').ok_or(ParseError::StatusLine("no status code"))?;
    check_version(line.get(..sp).unwrap_or_default())
        .map_err(|e| e.unwrap_or(ParseError::StatusLine("bad SIP version")))?;
    let rest = line.get(sp + 1..).unwrap_or_default();
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits != 3 {
        return Err(ParseError::StatusLine("status code is not three digits"));
    }
    let code: u16 = rest
        .get(..3)
        .unwrap_or_default()
        .parse()
        .map_err(|_| ParseError::StatusLine("status code is not three digits"))?;
    if !(100..=699).contains(&code) {
        return Err(ParseError::StatusLine("status code outside 100-699"));
    }
    let reason = match rest.get(3..).unwrap_or_default() {
        "" => "",
        r => r
            .strip_prefix(' ')
            .ok_or(ParseError::StatusLine("no SP after status code"))?,
    };
    Ok(StartLine::Response {
        code,
        reason: Cow::Borrowed(reason),
        raw: Some(line),
    })
}

/// `Err(Some(Version))` for another SIP version, `Err(None)` for junk.
fn check_version(v: &str) -> Result<(), Option<ParseError>> {
    if v.eq_ignore_ascii_case("SIP/2.0") {
        return Ok(());
    }
    let b = v.as_bytes();
    let looks_like_version = v.len() > 4
        && b[..4].eq_ignore_ascii_case(b"SIP/")
        && b[4..].iter().all(|&c| c.is_ascii_digit() || c == b'.');
    Err(looks_like_version.then_some(ParseError::Version))
}
