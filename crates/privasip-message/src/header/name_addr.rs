//! `name-addr` and `addr-spec` values: From, To, Contact, Route,
//! Record-Route and friends (RFC 3261 §20.10, §20.20, §20.39, §25.1).

use std::borrow::Cow;
use std::fmt;

use crate::params::Params;
use crate::scan::{Cursor, find_byte, is_lws, unquote};
use crate::uri::Uri;

/// One `name-addr` or `addr-spec` with its header parameters.
#[derive(Clone)]
pub struct NameAddr<'a> {
    /// The display name as written (quotes included), if any.
    pub display_name: Option<&'a str>,
    /// The URI.
    pub uri: Uri<'a>,
    /// The URI as written.
    pub uri_raw: &'a str,
    /// Whether the URI was enclosed in `<` `>`.
    pub bracketed: bool,
    /// Header parameters after the address (`;tag=…`, `;expires=…`).
    pub params: Params<'a>,
    /// Byte range of the whole value in the string it was parsed from.
    pub(crate) span: (usize, usize),
    /// Byte range of the display name, if any.
    pub(crate) display_span: Option<(usize, usize)>,
    /// Byte range of the URI.
    pub(crate) uri_span: (usize, usize),
}

impl<'a> NameAddr<'a> {
    /// The `tag` parameter (RFC 3261 §19.3).
    pub fn tag(&self) -> Option<&'a str> {
        self.params.get("tag").flatten()
    }

    /// The display name without quotes and escapes.
    pub fn display_name_text(&self) -> Option<Cow<'a, str>> {
        self.display_name.map(|d| {
            if d.starts_with('"') {
                unquote(d)
            } else {
                Cow::Borrowed(d)
            }
        })
    }

    /// Parses one value from `c`; in a `list` a comma ends an `addr-spec`.
    pub(crate) fn parse(c: &mut Cursor<'a>, list: bool) -> Result<NameAddr<'a>, &'static str> {
        c.skip_lws();
        let start = c.pos();
        let mut display = None;
        let bracketed = match c.peek() {
            Some(b'"') => {
                let q = c
                    .quoted_string()
                    .ok_or("unterminated quoted display name")?;
                display = Some((start, start + q.len()));
                c.skip_lws();
                if !c.eat(b'<') {
                    return Err("display name not followed by <URI>");
                }
                true
            }
            Some(b'<') => {
                c.eat(b'<');
                true
            }
            _ => {
                // Either `*(token LWS) "<"` or a bare addr-spec.
                let save = c.clone();
                let mut end = start;
                while c.token().is_some() {
                    end = c.pos();
                    c.skip_lws();
                }
                if end > start && c.eat(b'<') {
                    display = Some((start, end));
                    true
                } else {
                    *c = save;
                    false
                }
            }
        };
        let (uri_start, uri_raw) = if bracketed {
            let rest = c.rest();
            let close = find_byte(rest.as_bytes(), b'>').ok_or("missing > after URI")?;
            let at = c.pos();
            c.advance(close + 1);
            (at, rest.get(..close).unwrap_or_default())
        } else {
            let at = c.pos();
            let raw = c.take_while(|b| !is_lws(b) && b != b';' && !(list && b == b','));
            // RFC 3261 §20.10: a URI with ',', ';' or '?' must be in <>.
            if raw.contains('?') {
                return Err("URI with headers must be enclosed in <>");
            }
            (at, raw)
        };
        // No URI grammar allows white space, so it is looked for only to
        // name the error.
        let uri = Uri::parse(uri_raw).map_err(|e| {
            if bracketed && uri_raw.bytes().any(is_lws) {
                "white space inside <URI>"
            } else if display.is_none() && !bracketed {
                "bad display name or URI"
            } else {
                e
            }
        })?;
        let uri_end = uri_start + uri_raw.len();
        let params = Params::parse_header(c)?;
        Ok(NameAddr {
            display_name: display.map(|(s, e)| c.slice(s, e)),
            uri,
            uri_raw,
            bracketed,
            params,
            span: (start, c.pos()),
            display_span: display,
            uri_span: (uri_start, uri_end),
        })
    }

    /// Parses a header value holding exactly one value (From, To).
    pub(crate) fn parse_single(value: &'a str) -> Result<NameAddr<'a>, &'static str> {
        let mut c = Cursor::new(value);
        let na = NameAddr::parse(&mut c, false)?;
        c.skip_lws();
        if !c.at_end() {
            return Err("unexpected text after the address");
        }
        Ok(na)
    }
}

/// Parses a comma-separated list of name-addr values (Contact, Route,
/// Record-Route...). `bracketed_only` enforces `name-addr` (RFC 3261 §20.30,
/// §20.34: routes are always in brackets).
pub(crate) fn parse_list<'a>(
    value: &'a str,
    bracketed_only: bool,
    mut each: impl FnMut(NameAddr<'a>),
) -> Result<(), &'static str> {
    let mut c = Cursor::new(value);
    loop {
        let na = NameAddr::parse(&mut c, true)?;
        if bracketed_only && !na.bracketed {
            return Err("route URI must be enclosed in <>");
        }
        each(na);
        c.skip_lws();
        if c.at_end() {
            return Ok(());
        }
        if !c.eat(b',') {
            return Err("unexpected text after the address");
        }
    }
}

/// The value of a Contact header: `*` or a list of addresses.
#[derive(Clone, Debug)]
pub enum ContactValue<'a> {
    /// `Contact: *` (RFC 3261 §10.2.2: remove all bindings).
    Star,
    /// One or more addresses.
    Addrs(Vec<NameAddr<'a>>),
}

impl<'a> ContactValue<'a> {
    pub(crate) fn parse(value: &'a str) -> Result<ContactValue<'a>, &'static str> {
        if value == "*" {
            return Ok(ContactValue::Star);
        }
        let mut v = Vec::new();
        parse_list(value, false, |na| v.push(na))?;
        Ok(ContactValue::Addrs(v))
    }

    /// Checks a Contact value without collecting it.
    pub(crate) fn check(value: &str) -> Result<(), &'static str> {
        if value == "*" {
            return Ok(());
        }
        parse_list(value, false, drop)
    }
}

impl fmt::Debug for NameAddr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NameAddr")
            .field("display_name", &self.display_name.map(|_| "[redacted]"))
            .field("uri", &self.uri)
            .field("bracketed", &self.bracketed)
            .field("params", &self.params)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let na = NameAddr::parse_single(
            "\"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>\r\n  ;\r\n  tag = 98asjd8",
        )
        .expect("valid");
        assert_eq!(na.display_name_text().as_deref(), Some("J Rosenberg \\\""));
        assert_eq!(na.tag(), Some("98asjd8"));
        let na = NameAddr::parse_single("caller<sip:caller@example.com>;tag=323").expect("valid");
        assert_eq!(na.display_name, Some("caller"));
        let na = NameAddr::parse_single("sip:user@example.com;tag=1").expect("valid");
        assert!(!na.bracketed);
        assert_eq!(na.uri_raw, "sip:user@example.com");
        assert_eq!(na.tag(), Some("1"));
        let na = NameAddr::parse_single("token1~` token2'+_ token3*%!.- <sip:mundane@example.com>")
            .expect("valid");
        assert_eq!(na.display_name, Some("token1~` token2'+_ token3*%!.-"));
    }

    #[test]
    fn rejects() {
        for bad in [
            "Bell, Alexander <sip:a.g.bell@example.com>;tag=43",
            "\"Watson, Thomas\" < sip:t.watson@example.org >",
            "\"Mr. J. User <sip:j.user@example.com>",
            "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
            "\"Joe\" <sip:joe@example.org>;;;;",
        ] {
            assert!(NameAddr::parse_single(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn contact_list() {
        match ContactValue::parse("<sip:a@b>;q=0.5, sip:c@d ;expires=60").expect("valid") {
            ContactValue::Addrs(v) => {
                assert_eq!(v.len(), 2);
                assert_eq!(v[1].params.get("expires"), Some(Some("60")));
            }
            ContactValue::Star => panic!("not a star"),
        }
    }
}
