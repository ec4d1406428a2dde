//! The edits a proxy and PrivaSIP make. Each checks what it writes, so the
//! message stays valid; everything not edited is still printed byte for
//! byte as it arrived.

use std::borrow::Cow;

use crate::error::ParseError;
use crate::header::name_addr::{self, NameAddr};
use crate::header::via::Via;
use crate::message::{Header, Message, StartLine, check_value};
use crate::name::HeaderName;
use crate::scan::{Cursor, is_escaped_run, is_token_str, is_user, trim_lws};
use crate::uri::Uri;

fn bad(header: HeaderName, reason: &'static str) -> ParseError {
    ParseError::Header { header, reason }
}

/// Checks a value about to be written into a header named `name`.
fn check_new(name: HeaderName, value: &str) -> Result<(), ParseError> {
    // A new value is one line: no CR or LF that could start a new header.
    if value.bytes().any(|b| b == b'\r' || b == b'\n') {
        return Err(bad(name, "line break in a new value"));
    }
    check_value(name, value).map_err(|r| bad(name, r))
}

impl<'a> Message<'a> {
    /// Replaces the Request-URI (RFC 3261 §16.5, §16.6 step 2).
    pub fn set_request_uri(&mut self, new: impl Into<Cow<'a, str>>) -> Result<(), ParseError> {
        let new = new.into();
        match Uri::parse(&new).map_err(ParseError::RequestUri)? {
            Uri::Sip(u) if u.headers.is_some() => {
                return Err(ParseError::RequestUri(
                    "headers are not allowed in a Request-URI",
                ));
            }
            _ => {}
        }
        match &mut self.start {
            StartLine::Request { uri, raw, .. } => {
                *uri = new;
                *raw = None;
                Ok(())
            }
            StartLine::Response { .. } => {
                Err(ParseError::RequestLine("a response has no Request-URI"))
            }
        }
    }

    /// Adds a Via value on top (RFC 3261 §16.6 step 8).
    pub fn push_via(&mut self, value: impl Into<Cow<'a, str>>) -> Result<(), ParseError> {
        self.push_front(HeaderName::Via, value.into())
    }

    /// Adds a Via value on top without checking its grammar again: for a
    /// value this program parsed and validated before and kept where no
    /// one could change it (a proxy's own sealed copy). Line breaks are
    /// still refused.
    pub fn push_checked_via(&mut self, value: impl Into<Cow<'a, str>>) -> Result<(), ParseError> {
        let value = value.into();
        if value.bytes().any(|b| b == b'\r' || b == b'\n') {
            return Err(bad(HeaderName::Via, "line break in a new value"));
        }
        self.typed.forget(HeaderName::Via);
        let at = self
            .headers
            .iter()
            .position(|h| h.name == HeaderName::Via)
            .unwrap_or(0);
        self.headers.insert(
            at,
            Header::new(HeaderName::Via, Cow::Borrowed("Via"), value),
        );
        Ok(())
    }

    /// Removes the topmost Via value (RFC 3261 §16.7 step 3). Returns false
    /// if there was none.
    pub fn pop_via(&mut self) -> bool {
        self.typed.forget(HeaderName::Via);
        self.pop_front(HeaderName::Via, |c| Via::parse(c).is_ok())
    }

    /// Adds a Record-Route value on top (RFC 3261 §16.6 step 4).
    pub fn push_record_route(&mut self, value: impl Into<Cow<'a, str>>) -> Result<(), ParseError> {
        self.push_front(HeaderName::RecordRoute, value.into())
    }

    /// Adds a Route value on top (RFC 3261 §16.6 step 7 for strict routers,
    /// and for a UA's pre-loaded route set).
    pub fn push_route(&mut self, value: impl Into<Cow<'a, str>>) -> Result<(), ParseError> {
        self.push_front(HeaderName::Route, value.into())
    }

    /// Removes the topmost Route value (RFC 3261 §16.4). Returns false if
    /// there was none.
    pub fn pop_route(&mut self) -> bool {
        self.pop_front(HeaderName::Route, |c| NameAddr::parse(c, true).is_ok())
    }

    /// Sets Max-Forwards (RFC 3261 §16.6 step 3).
    pub fn set_max_forwards(&mut self, n: u8) {
        // A number always passes the check.
        let _ = self.set_header(HeaderName::MaxForwards, n.to_string());
    }

    /// Replaces every header called `name` by one with `value`, where the
    /// first one stood (or at the end).
    pub fn set_header(
        &mut self,
        name: HeaderName,
        value: impl Into<Cow<'a, str>>,
    ) -> Result<(), ParseError> {
        let canonical = name
            .canonical()
            .ok_or(bad(name, "use set_header_str for extension headers"))?;
        let value = value.into();
        check_new(name, &value)?;
        self.typed.forget(name);
        let h = Header::new(name, Cow::Borrowed(canonical), value);
        match self.headers.iter().position(|h| h.name == name) {
            Some(i) => {
                self.headers[i] = h;
                let mut seen = false;
                self.headers.retain(|h| {
                    let keep = h.name != name || !seen;
                    seen |= h.name == name;
                    keep
                });
            }
            None => self.headers.push(h),
        }
        Ok(())
    }

    /// Appends a header field. Known names are checked against their grammar.
    pub fn append_header(
        &mut self,
        name: impl Into<Cow<'a, str>>,
        value: impl Into<Cow<'a, str>>,
    ) -> Result<(), ParseError> {
        let name_raw = name.into();
        let value = value.into();
        if !is_token_str(&name_raw) {
            return Err(ParseError::HeaderLine {
                line: 0,
                reason: "bad header name",
            });
        }
        let name = HeaderName::lookup(&name_raw);
        check_new(name, &value)?;
        self.typed.forget(name);
        self.headers.push(Header::new(name, name_raw, value));
        Ok(())
    }

    /// Removes every header called `name`; returns how many went.
    pub fn remove_header(&mut self, name: HeaderName) -> usize {
        self.typed.forget(name);
        let before = self.headers.len();
        self.headers.retain(|h| h.name != name);
        before - self.headers.len()
    }

    /// Removes the credentials (`Authorization` or `Proxy-Authorization`
    /// values) for `realm`: a proxy that checked them does not pass them
    /// on (RFC 3261 §22.3). Returns how many went.
    pub fn remove_credentials(&mut self, name: HeaderName, realm: &str) -> usize {
        let before = self.headers.len();
        self.headers.retain(|h| {
            h.name != name
                || !crate::header::auth::AuthValue::parse(&h.value)
                    .is_ok_and(|a| a.param("realm").as_deref() == Some(realm))
        });
        before - self.headers.len()
    }

    /// Removes every `name` header (Authorization, Proxy-Authorization)
    /// whose credentials use `scheme`; returns how many went.
    pub fn remove_auth_scheme(&mut self, name: HeaderName, scheme: &str) -> usize {
        let before = self.headers.len();
        self.headers.retain(|h| {
            h.name != name
                || !crate::header::auth::AuthValue::parse(&h.value)
                    .is_ok_and(|a| a.scheme.eq_ignore_ascii_case(scheme))
        });
        before - self.headers.len()
    }

    /// Removes every header whose name is `name` (any spelling).
    pub fn remove_header_str(&mut self, name: &str) -> usize {
        match HeaderName::lookup(name) {
            HeaderName::Other => {
                let before = self.headers.len();
                self.headers.retain(|h| {
                    !(h.name == HeaderName::Other && h.name_raw.eq_ignore_ascii_case(name))
                });
                before - self.headers.len()
            }
            known => self.remove_header(known),
        }
    }

    /// Replaces the user part of the SIP URI in every value of `name` (From,
    /// To, Contact, Route...), dropping any password; adds a user part where
    /// there was none. Returns how many URIs changed.
    pub fn set_user(&mut self, name: HeaderName, user: &str) -> Result<usize, ParseError> {
        if user.is_empty() || !is_escaped_run(user, is_user) {
            return Err(bad(name, "bad user part"));
        }
        self.rewrite_addrs(name, |na, value| {
            let Uri::Sip(sip) = &na.uri else {
                return Err("not a SIP URI");
            };
            let uri = na.uri_raw;
            let scheme_len = if sip.secure { 5 } else { 4 };
            let after_user = match uri.find('@') {
                Some(at) => uri.get(at + 1..).unwrap_or_default(),
                None => uri.get(scheme_len..).unwrap_or_default(),
            };
            let new_uri = format!(
                "{}{user}@{after_user}",
                uri.get(..scheme_len).unwrap_or_default()
            );
            Ok(Some(format!(
                "{}{new_uri}{}",
                value.get(na.span.0..na.uri_span.0).unwrap_or_default(),
                value.get(na.uri_span.1..na.span.1).unwrap_or_default()
            )))
        })
    }

    /// Replaces the host (and port) of the SIP URI in every value of
    /// `name` (From, To...), keeping user, parameters and headers.
    /// Returns how many URIs changed.
    pub fn set_host(&mut self, name: HeaderName, host: &str) -> Result<usize, ParseError> {
        let ok = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'.';
        if host.is_empty() || !host.bytes().all(ok) {
            return Err(bad(name, "bad host"));
        }
        self.rewrite_addrs(name, |na, value| {
            let Uri::Sip(sip) = &na.uri else {
                return Err("not a SIP URI");
            };
            let uri = na.uri_raw;
            let start = match uri.find('@') {
                Some(at) => at + 1,
                None => {
                    if sip.secure {
                        5
                    } else {
                        4
                    }
                }
            };
            let hostport = uri.get(start..).unwrap_or_default();
            let end = hostport.find([';', '?']).unwrap_or(hostport.len());
            Ok(Some(format!(
                "{}{}{host}{}{}",
                value.get(na.span.0..na.uri_span.0).unwrap_or_default(),
                uri.get(..start).unwrap_or_default(),
                hostport.get(end..).unwrap_or_default(),
                value.get(na.uri_span.1..na.span.1).unwrap_or_default()
            )))
        })
    }

    /// Removes the display names in every value of `name` (PrivaSIP: display
    /// names identify). Returns how many were removed.
    pub fn remove_display_names(&mut self, name: HeaderName) -> Result<usize, ParseError> {
        self.rewrite_addrs(name, |na, value| {
            // A display name always comes with <>, right before the URI.
            Ok(na.display_span.map(|_| {
                value
                    .get(na.uri_span.0 - 1..na.span.1)
                    .unwrap_or_default()
                    .to_owned()
            }))
        })
    }

    /// Replaces the body; Content-Length follows on output.
    pub fn set_body(&mut self, body: impl Into<Cow<'a, [u8]>>) {
        self.body = body.into();
    }

    /// Calls `f` on every address in every header called `name`; where it
    /// returns new text, that text replaces the address (parameters
    /// included).
    fn rewrite_addrs(
        &mut self,
        name: HeaderName,
        f: impl Fn(&NameAddr<'_>, &str) -> Result<Option<String>, &'static str>,
    ) -> Result<usize, ParseError> {
        let mut changed = 0;
        let mut updates = Vec::new();
        for (i, h) in self.headers.iter().enumerate() {
            if h.name != name || (name == HeaderName::Contact && h.value() == "*") {
                continue;
            }
            let value = h.value();
            let mut addrs = Vec::new();
            let single = matches!(name, HeaderName::From | HeaderName::To);
            if single {
                addrs.push(NameAddr::parse_single(value).map_err(|r| bad(name, r))?);
            } else {
                name_addr::parse_list(value, false, |na| addrs.push(na))
                    .map_err(|r| bad(name, r))?;
            }
            let mut out = String::with_capacity(value.len() + 16);
            let mut last = 0;
            let mut any = false;
            for na in &addrs {
                if let Some(new) = f(na, value).map_err(|r| bad(name, r))? {
                    out.push_str(value.get(last..na.span.0).unwrap_or_default());
                    out.push_str(&new);
                    last = na.span.1;
                    any = true;
                    changed += 1;
                }
            }
            if any {
                out.push_str(value.get(last..).unwrap_or_default());
                let out = trim_lws(&out).to_owned();
                check_value(name, &out).map_err(|r| bad(name, r))?;
                updates.push((i, out));
            }
        }
        self.typed.forget(name);
        for (i, v) in updates {
            let h = &mut self.headers[i];
            h.value = Cow::Owned(v);
            h.raw = None;
        }
        Ok(changed)
    }

    fn push_front(&mut self, name: HeaderName, value: Cow<'a, str>) -> Result<(), ParseError> {
        check_new(name, &value)?;
        self.typed.forget(name);
        let canonical = name.canonical().unwrap_or("X");
        let at = self
            .headers
            .iter()
            .position(|h| h.name == name)
            .unwrap_or(0);
        self.headers
            .insert(at, Header::new(name, Cow::Borrowed(canonical), value));
        Ok(())
    }

    /// Removes the first comma-separated value of the first header called
    /// `name`; `parse_one` consumes one value from a cursor.
    fn pop_front(&mut self, name: HeaderName, parse_one: impl Fn(&mut Cursor<'_>) -> bool) -> bool {
        let Some(i) = self.headers.iter().position(|h| h.name == name) else {
            return false;
        };
        let h = &mut self.headers[i];
        let mut c = Cursor::new(h.value());
        let rest_at = if parse_one(&mut c) && c.eat_sep(b',') {
            Some(c.pos())
        } else {
            None
        };
        match rest_at {
            None => {
                self.headers.remove(i);
            }
            Some(at) => {
                h.value = match std::mem::take(&mut h.value) {
                    Cow::Borrowed(v) => Cow::Borrowed(v.get(at..).unwrap_or_default()),
                    Cow::Owned(v) => Cow::Owned(v.get(at..).unwrap_or_default().to_owned()),
                };
                h.raw = None;
            }
        }
        true
    }
}
