//! URIs: `sip:` and `sips:` (RFC 3261 §19.1), `tel:` (RFC 3966), and any
//! other absolute URI kept opaque (RFC 3261 §25.1 `absoluteURI`).

use std::fmt;

use crate::params::Params;
use crate::scan::{
    find_byte, is_escaped_run, is_hnv, is_host, is_param, is_password, is_unreserved, is_uric,
    is_user,
};

/// A parsed URI, borrowing from the message.
#[derive(Clone, PartialEq, Eq)]
pub enum Uri<'a> {
    /// `sip:` or `sips:`.
    Sip(SipUri<'a>),
    /// `tel:`; the number and its parameters, unparsed.
    Tel(&'a str),
    /// Any other scheme, e.g. `http:`, kept as written.
    Other {
        /// The scheme, without the colon.
        scheme: &'a str,
        /// Everything after the colon.
        rest: &'a str,
    },
}

/// A `sip:` or `sips:` URI. Text fields are as on the wire (escapes kept).
#[derive(Clone, PartialEq, Eq)]
pub struct SipUri<'a> {
    /// `sips:` rather than `sip:`.
    pub secure: bool,
    /// The user part, if any.
    pub user: Option<&'a str>,
    /// The password after the user, if any (deprecated by RFC 3261 §19.1.1).
    pub password: Option<&'a str>,
    /// The host: a name, an IPv4 address or an IPv6 reference in brackets.
    pub host: &'a str,
    /// The port, if written.
    pub port: Option<u16>,
    /// URI parameters (`;lr;transport=tcp`).
    pub params: Params<'a>,
    /// The header part after `?`, without the `?`.
    pub headers: Option<&'a str>,
}

/// Why a URI was rejected.
pub type UriError = &'static str;

impl<'a> Uri<'a> {
    /// Parses a complete URI.
    pub fn parse(s: &'a str) -> Result<Uri<'a>, UriError> {
        let colon = find_byte(s.as_bytes(), b':').ok_or("no scheme")?;
        let scheme = s.get(..colon).unwrap_or_default();
        let rest = s.get(colon + 1..).unwrap_or_default();
        if !is_scheme(scheme) {
            return Err("bad scheme");
        }
        if scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips") {
            let secure = scheme.len() == 4;
            // Most URIs take the one-pass path; the rest, and every error,
            // go through the grammar-shaped one.
            return match SipUri::parse_common(rest, secure) {
                Some(u) => Ok(Uri::Sip(u)),
                None => SipUri::parse_after_scheme(rest, secure).map(Uri::Sip),
            };
        }
        if rest.is_empty() || !is_escaped_run(rest, is_uric) {
            return Err("bad characters in URI");
        }
        if scheme.eq_ignore_ascii_case("tel") {
            return Ok(Uri::Tel(rest));
        }
        Ok(Uri::Other { scheme, rest })
    }

    /// The scheme as written.
    pub fn scheme(&self) -> &'a str {
        match self {
            Uri::Sip(u) if u.secure => "sips",
            Uri::Sip(_) => "sip",
            Uri::Tel(_) => "tel",
            Uri::Other { scheme, .. } => scheme,
        }
    }

    /// The SIP URI, if this is one.
    pub fn as_sip(&self) -> Option<&SipUri<'a>> {
        match self {
            Uri::Sip(u) => Some(u),
            _ => None,
        }
    }
}

fn is_scheme(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphabetic()
        && b[1..]
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
}

impl<'a> SipUri<'a> {
    /// One pass over the common shape, `[user "@"] host [":" port]
    /// *(";" param)` with a host name or IPv4 address. `None` for anything
    /// else (a password, an IPv6 reference, headers, an error): the caller
    /// then takes [`SipUri::parse_after_scheme`], which accepts a superset
    /// and gives the same result wherever this one does.
    fn parse_common(s: &'a str, secure: bool) -> Option<SipUri<'a>> {
        let b = s.as_bytes();
        // `user` characters are a superset of a host's, and '@' is not one of
        // them: a run that stops at '@' is the user part; any other stop
        // means there is none, unless an '@' follows (an error, or a
        // password: the other path says which).
        let run = scan_escaped(b, 0, is_user)?;
        let (user, host_at) = match b.get(run) {
            Some(b'@') if run > 0 => (Some(s.get(..run).unwrap_or_default()), run + 1),
            Some(b'@') => return None,
            Some(_) if find_byte(&b[run..], b'@').is_some() => return None,
            _ => (None, 0),
        };
        // hostname / IPv4address: labels of alphanumerics, '-' and '_'
        // between single dots (as `is_hostname`).
        let mut i = host_at;
        let mut prev_dot = true;
        while let Some(&c) = b.get(i).filter(|&&c| is_host(c)) {
            let dot = c == b'.';
            if dot && prev_dot {
                return None;
            }
            prev_dot = dot;
            i += 1;
        }
        let host = s.get(host_at..i).unwrap_or_default();
        if host.is_empty() || host.len() > 255 || b[host_at] == b'-' {
            return None;
        }
        let port = if b.get(i) == Some(&b':') {
            let start = i + 1;
            i = start + b[start..].iter().take_while(|c| c.is_ascii_digit()).count();
            Some(parse_port(s.get(start..i).unwrap_or_default())?)
        } else {
            None
        };
        let params_at = i;
        i = scan_uri_params(b, i).ok()?;
        if i != b.len() {
            return None;
        }
        let params = if i > params_at {
            s.get(params_at + 1..i).unwrap_or_default()
        } else {
            ""
        };
        Some(SipUri {
            secure,
            user,
            password: None,
            host,
            port,
            params: Params::from_uri(params),
            headers: None,
        })
    }

    /// One forward pass over `[userinfo "@"] hostport *(";" param) ["?" headers]`.
    fn parse_after_scheme(s: &'a str, secure: bool) -> Result<SipUri<'a>, UriError> {
        let b = s.as_bytes();
        // No character after the userinfo may be '@' (RFC 3261 §25.1), so the
        // first '@' ends the userinfo.
        let (user, password, host_at) = match find_byte(b, b'@') {
            None => (None, None, 0),
            Some(at) => {
                let user_end = scan_escaped(b, 0, is_user).ok_or("bad user part")?;
                let (user_end, password) = match b.get(user_end) {
                    Some(b':') => {
                        let p_end = scan_escaped(b, user_end + 1, is_password)
                            .ok_or("bad password part")?;
                        if p_end != at {
                            return Err("bad password part");
                        }
                        (user_end, Some(s.get(user_end + 1..at).unwrap_or_default()))
                    }
                    _ => (user_end, None),
                };
                if user_end == 0 || (password.is_none() && user_end != at) {
                    return Err("bad user part");
                }
                (
                    Some(s.get(..user_end).unwrap_or_default()),
                    password,
                    at + 1,
                )
            }
        };
        let hp_end = b[host_at..]
            .iter()
            .position(|&c| c == b';' || c == b'?')
            .map_or(b.len(), |i| host_at + i);
        let (host, port) = parse_hostport(s.get(host_at..hp_end).unwrap_or_default())?;
        let params_start = (hp_end + 1).min(b.len());
        let i = scan_uri_params(b, hp_end)?;
        let params = if i > hp_end {
            s.get(params_start..i).unwrap_or_default()
        } else {
            ""
        };
        let headers = match b.get(i) {
            None => None,
            Some(b'?') => {
                let h = s.get(i + 1..).unwrap_or_default();
                for hv in h.split('&') {
                    let (name, value) = hv.split_once('=').ok_or("URI header without '='")?;
                    if name.is_empty()
                        || !is_escaped_run(name, hnv_or_unreserved)
                        || !is_escaped_run(value, hnv_or_unreserved)
                    {
                        return Err("bad URI header");
                    }
                }
                Some(h)
            }
            Some(_) => return Err("bad character in URI"),
        };
        Ok(SipUri {
            secure,
            user,
            password,
            host,
            port,
            params: Params::from_uri(params),
            headers,
        })
    }
}

/// Scans `*(";" pname ["=" pvalue])` from `i` (RFC 3261 §19.1.1 URI
/// parameters); returns where it ends.
fn scan_uri_params(b: &[u8], mut i: usize) -> Result<usize, UriError> {
    while b.get(i) == Some(&b';') {
        let name_end = scan_escaped(b, i + 1, is_param).ok_or("bad URI parameter")?;
        if name_end == i + 1 {
            return Err("bad URI parameter");
        }
        i = name_end;
        if b.get(i) == Some(&b'=') {
            let v_end = scan_escaped(b, i + 1, is_param).ok_or("bad URI parameter value")?;
            if v_end == i + 1 {
                return Err("bad URI parameter value");
            }
            i = v_end;
        }
    }
    Ok(i)
}

/// Scans `allowed` characters and `%HH` escapes from `i`; returns where
/// they end, or `None` on a broken escape.
fn scan_escaped(b: &[u8], mut i: usize, allowed: impl Fn(u8) -> bool) -> Option<usize> {
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            if !(b.get(i + 1)?.is_ascii_hexdigit() && b.get(i + 2)?.is_ascii_hexdigit()) {
                return None;
            }
            i += 3;
        } else if allowed(c) {
            i += 1;
        } else {
            break;
        }
    }
    Some(i)
}

fn hnv_or_unreserved(b: u8) -> bool {
    is_hnv(b) || is_unreserved(b)
}

/// Splits and checks `host[:port]`.
pub(crate) fn parse_hostport(s: &str) -> Result<(&str, Option<u16>), UriError> {
    let b = s.as_bytes();
    let host_end = if b.first() == Some(&b'[') {
        let close = find_byte(b, b']').ok_or("unclosed IPv6 reference")?;
        if !is_ipv6_reference(s.get(..=close).unwrap_or_default()) {
            return Err("bad IPv6 reference");
        }
        close + 1
    } else {
        let end = find_byte(b, b':').unwrap_or(b.len());
        if !is_hostname(s.get(..end).unwrap_or_default()) {
            return Err("bad host");
        }
        end
    };
    let port = match s.get(host_end..).unwrap_or_default() {
        "" => None,
        p => Some(p.strip_prefix(':').and_then(parse_port).ok_or("bad port")?),
    };
    Ok((s.get(..host_end).unwrap_or_default(), port))
}

pub(crate) fn parse_port(p: &str) -> Option<u16> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    p.parse().ok()
}

/// `hostname` or `IPv4address` (RFC 3261 §25.1): labels of letters, digits
/// and hyphens between single dots. Underscores are let through: they occur
/// in deployed host names and harm nothing here.
pub(crate) fn is_hostname(h: &str) -> bool {
    let b = h.as_bytes();
    if b.is_empty() || b.len() > 255 || b[0] == b'.' || b[0] == b'-' {
        return false;
    }
    let mut prev_dot = false;
    for &c in b {
        let dot = c == b'.';
        if (dot && prev_dot) || !(c.is_ascii_alphanumeric() || dot || c == b'-' || c == b'_') {
            return false;
        }
        prev_dot = dot;
    }
    true
}

/// `IPv6reference` (RFC 3261 §25.1): an IPv6 address in brackets.
pub(crate) fn is_ipv6_reference(h: &str) -> bool {
    h.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .is_some_and(is_ipv6_address)
}

/// `IPv6address`, the form std parses (which is the RFC 4291 text form,
/// an embedded IPv4 tail included), ASCII only.
pub(crate) fn is_ipv6_address(h: &str) -> bool {
    h.len() <= 45 && h.is_ascii() && h.parse::<std::net::Ipv6Addr>().is_ok()
}

impl fmt::Display for Uri<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Uri::Sip(u) => u.fmt(f),
            Uri::Tel(n) => write!(f, "tel:{n}"),
            Uri::Other { scheme, rest } => write!(f, "{scheme}:{rest}"),
        }
    }
}

impl fmt::Display for SipUri<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.secure { "sips:" } else { "sip:" })?;
        if let Some(u) = self.user {
            f.write_str(u)?;
            if let Some(p) = self.password {
                write!(f, ":{p}")?;
            }
            f.write_str("@")?;
        }
        f.write_str(self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        if !self.params.is_empty() {
            write!(f, ";{}", self.params.as_str())?;
        }
        if let Some(h) = self.headers {
            write!(f, "?{h}")?;
        }
        Ok(())
    }
}

// Debug redacts the user part and password: they are real identities and
// secrets, and Debug output ends up in logs.
impl fmt::Debug for SipUri<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SipUri")
            .field("secure", &self.secure)
            .field("user", &self.user.map(|_| "[redacted]"))
            .field("password", &self.password.map(|_| "[redacted]"))
            .field("host", &redact_ip(self.host))
            .field("port", &self.port)
            .field("params", &self.params.as_str())
            .finish_non_exhaustive()
    }
}

/// Domain names route and stay visible; IP literals locate a person.
fn redact_ip(host: &str) -> &str {
    if host.starts_with('[') || host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        "[redacted IP]"
    } else {
        host
    }
}

impl fmt::Debug for Uri<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Uri::Sip(u) => u.fmt(f),
            Uri::Tel(_) => f.write_str("Tel([redacted])"),
            Uri::Other { scheme, .. } => write!(f, "Other({scheme}:[redacted])"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sip(s: &str) -> SipUri<'_> {
        match Uri::parse(s) {
            Ok(Uri::Sip(u)) => u,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn sip_uris() {
        let u = sip("sip:alice:pw@[2001:db8::1]:5061;transport=tcp;lr?subject=x&h=y");
        assert_eq!(u.user, Some("alice"));
        assert_eq!(u.password, Some("pw"));
        assert_eq!(u.host, "[2001:db8::1]");
        assert_eq!(u.port, Some(5061));
        assert_eq!(u.params.get("transport"), Some(Some("tcp")));
        assert_eq!(u.params.get("LR"), Some(None));
        assert_eq!(u.headers, Some("subject=x&h=y"));
        let u = sip("sip:user;par=u%40example.net@example.com");
        assert_eq!(u.user, Some("user;par=u%40example.net"));
        let u = sip(
            "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com",
        );
        assert_eq!(u.host, "example.com");
        assert!(sip("SIPS:abc.onion").secure);
    }

    #[test]
    fn bad_uris() {
        for bad in [
            "sip:",
            "sip:user@",
            "sip:us er@example.com",
            "sip:host:99999",
            "sip:host;;",
            "sip:host;=x",
            "sip:a%zz@host",
            "sip:[::1",
            "sip:host?noequals",
            "nocolon",
            "1x:abc",
        ] {
            assert!(Uri::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn one_pass_takes_the_common_shapes() {
        for common in [
            "alice@atlanta.example.com",
            "bob@192.0.2.4:5060",
            "registrar.biloxi.example.com",
            "p1.example.com;lr",
            "user;par=u%40example.net@example.com:6000;transport=tcp;maddr=10.0.0.1",
        ] {
            let fast = SipUri::parse_common(common, false);
            assert!(fast.is_some(), "{common}");
            assert_eq!(fast.ok_or(""), SipUri::parse_after_scheme(common, false));
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 4000,
            failure_persistence: None,
            ..Default::default()
        })]

        /// Wherever the one-pass parser answers, the grammar-shaped one
        /// gives the same URI.
        #[test]
        fn one_pass_agrees(s in "[a-c0-9@:;=.%_?&\\-\\[\\]]{0,20}") {
            if let Some(fast) = SipUri::parse_common(&s, true) {
                proptest::prop_assert_eq!(Ok(fast), SipUri::parse_after_scheme(&s, true));
            }
        }
    }

    #[test]
    fn other_schemes() {
        assert_eq!(Uri::parse("tel:+1-555-0100").map(|u| u.scheme()), Ok("tel"));
        assert_eq!(
            Uri::parse("soap.beep://192.0.2.103:3002").map(|u| u.scheme()),
            Ok("soap.beep")
        );
        assert!(Uri::parse("http://a b").is_err());
    }

    #[test]
    fn debug_redacts_user() {
        let s = format!("{:?}", sip("sip:alice:secret@example.com"));
        assert!(!s.contains("alice") && !s.contains("secret"), "{s}");
    }
}
