//! Authorization, Proxy-Authorization, WWW-Authenticate and
//! Proxy-Authenticate (RFC 3261 §20.7, §20.27, §20.28, §20.44; RFC 8760).

use std::borrow::Cow;
use std::fmt;

use crate::scan::{Cursor, is_token, unquote};

/// Credentials or a challenge: a scheme and its `name=value` parameters.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct AuthValue<'a> {
    /// `Digest` or any other scheme, as written.
    pub scheme: &'a str,
    params: &'a str,
}

impl<'a> AuthValue<'a> {
    pub(crate) fn parse(value: &'a str) -> Result<AuthValue<'a>, &'static str> {
        let mut c = Cursor::new(value);
        let scheme = c.token().ok_or("missing scheme")?;
        if c.at_end() {
            return Ok(AuthValue { scheme, params: "" });
        }
        if !c.skip_lws() {
            return Err("missing white space after scheme");
        }
        let start = c.pos();
        loop {
            c.skip_lws();
            parse_param(&mut c).ok_or("bad auth parameter")?;
            c.skip_lws();
            if c.at_end() {
                break;
            }
            if !c.eat(b',') {
                return Err("unexpected text after auth parameter");
            }
        }
        Ok(AuthValue {
            scheme,
            params: c.slice(start, value.len()),
        })
    }

    /// True for the Digest scheme.
    pub fn is_digest(&self) -> bool {
        self.scheme.eq_ignore_ascii_case("Digest")
    }

    /// The value of parameter `name`, unquoted.
    pub fn param(&self, name: &str) -> Option<Cow<'a, str>> {
        self.raw_param(name).map(|v| {
            if v.starts_with('"') {
                unquote(v)
            } else {
                Cow::Borrowed(v)
            }
        })
    }

    /// The value of parameter `name` as written (quotes kept).
    pub fn raw_param(&self, name: &str) -> Option<&'a str> {
        self.params()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// All parameters as written.
    pub fn params(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        let mut c = Cursor::new(self.params);
        std::iter::from_fn(move || {
            c.skip_lws();
            let p = parse_param(&mut c)?;
            c.skip_lws();
            c.eat(b',');
            Some(p)
        })
    }
}

/// `auth-param = token EQUAL ( token / quoted-string )`.
fn parse_param<'a>(c: &mut Cursor<'a>) -> Option<(&'a str, &'a str)> {
    let name = c.token()?;
    if !c.eat_sep(b'=') {
        return None;
    }
    let value = if c.peek() == Some(b'"') {
        c.quoted_string()?
    } else {
        // Tokens, plus ':' '/' for unquoted values some peers send (uri).
        let v = c.take_while(|b| is_token(b) || matches!(b, b':' | b'/' | b'@'));
        if v.is_empty() {
            return None;
        }
        v
    };
    Some((name, value))
}

// Parameters hold user names, nonces and responses: Debug shows names only.
impl fmt::Debug for AuthValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthValue")
            .field("scheme", &self.scheme)
            .field("params", &self.params().map(|(n, _)| n).collect::<Vec<_>>())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest() {
        let a = AuthValue::parse(
            "Digest username=\"bob\", realm=\"biloxi.com\",\r\n nonce=\"dcd98b\", uri=\"sip:bob@biloxi.com\", qop=auth, nc=00000001, cnonce=\"0a4f113b\", response=\"6629fae4\", algorithm=SHA-256",
        )
        .expect("valid");
        assert!(a.is_digest());
        assert_eq!(a.param("username").as_deref(), Some("bob"));
        assert_eq!(a.param("NC").as_deref(), Some("00000001"));
        assert_eq!(a.param("algorithm").as_deref(), Some("SHA-256"));
        assert_eq!(a.params().count(), 9);
    }

    #[test]
    fn other() {
        let a = AuthValue::parse("NoOneKnowsThisScheme opaque-data=here").expect("valid");
        assert_eq!(a.param("opaque-data").as_deref(), Some("here"));
        assert!(AuthValue::parse("Digest username").is_err());
        assert!(AuthValue::parse("Digest a=\"open").is_err());
        assert!(!format!("{a:?}").contains("here"));
    }
}
