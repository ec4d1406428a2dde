//! Parameters: URI parameters (`;lr;transport=tcp`) and header parameters
//! (`;tag=x ; q = 0.5`), kept as written and read on demand.

use std::fmt;

use crate::scan::{Cursor, is_gen_value};

/// A parameter list, borrowed from the message and validated when it was
/// parsed. Lookups compare names case-insensitively.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Params<'a> {
    raw: &'a str,
    /// Header parameters allow white space around `;` and `=`, and quoted
    /// values; URI parameters allow neither.
    header: bool,
}

impl<'a> Params<'a> {
    pub(crate) fn from_uri(raw: &'a str) -> Self {
        Params { raw, header: false }
    }

    /// Consumes `*( SEMI generic-param )` from a header value (RFC 3261
    /// §25.1), checking it, and returns what it consumed.
    pub(crate) fn parse_header(c: &mut Cursor<'a>) -> Result<Params<'a>, &'static str> {
        let start = c.pos();
        let mut end = start;
        while c.eat_sep(b';') {
            c.token().ok_or("empty or bad parameter name")?;
            if c.eat_sep(b'=') {
                if c.peek() == Some(b'"') {
                    c.quoted_string()
                        .ok_or("unterminated quoted parameter value")?;
                } else if c.take_while(is_gen_value).is_empty() {
                    return Err("empty or bad parameter value");
                }
            }
            end = c.pos();
        }
        Ok(Params {
            raw: c.slice(start, end),
            header: true,
        })
    }

    /// True if there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// The parameters as written.
    pub fn as_str(&self) -> &'a str {
        self.raw
    }

    /// The value of the first parameter called `name`: `Some(None)` for a
    /// parameter without value, `None` if absent. Quoted values keep their
    /// quotes.
    pub fn get(&self, name: &str) -> Option<Option<&'a str>> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// True if a parameter called `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// All parameters in order.
    pub fn iter(&self) -> ParamIter<'a> {
        ParamIter {
            cursor: Cursor::new(self.raw),
            header: self.header,
        }
    }
}

/// Iterator over `(name, value)` pairs of a [`Params`].
#[derive(Debug)]
pub struct ParamIter<'a> {
    cursor: Cursor<'a>,
    header: bool,
}

impl<'a> Iterator for ParamIter<'a> {
    type Item = (&'a str, Option<&'a str>);

    fn next(&mut self) -> Option<Self::Item> {
        let c = &mut self.cursor;
        if self.header {
            if !c.eat_sep(b';') {
                return None;
            }
            let name = c.token()?;
            let value = if c.eat_sep(b'=') {
                let v = if c.peek() == Some(b'"') {
                    c.quoted_string()
                } else {
                    Some(c.take_while(is_gen_value))
                };
                Some(v?)
            } else {
                None
            };
            Some((name, value))
        } else {
            if c.at_end() {
                return None;
            }
            let rest = c.rest();
            let seg_len = rest.find(';').unwrap_or(rest.len());
            let seg = rest.get(..seg_len).unwrap_or_default();
            // Advance past the segment and its ';'.
            c.take_while(|b| b != b';');
            c.eat(b';');
            Some(match seg.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (seg, None),
            })
        }
    }
}

// Parameter values can carry identities (tags are random, but `user=`,
// `received=` and friends are not): Debug shows names only.
impl fmt::Debug for Params<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter().map(|(n, _)| n)).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_params() {
        let mut c = Cursor::new(" ;   tag    = 1918181833n ; q=0.5;lr;x=\"a;b\" rest");
        let p = Params::parse_header(&mut c).expect("valid");
        assert_eq!(p.get("TAG"), Some(Some("1918181833n")));
        assert_eq!(p.get("lr"), Some(None));
        assert_eq!(p.get("x"), Some(Some("\"a;b\"")));
        assert_eq!(p.iter().count(), 4);
        assert_eq!(c.rest(), " rest");
        assert!(Params::parse_header(&mut Cursor::new(";;")).is_err());
        assert!(Params::parse_header(&mut Cursor::new(";a=")).is_err());
    }

    #[test]
    fn uri_params() {
        let p = Params::from_uri("transport=tcp;lr;maddr=10.0.0.1");
        let v: Vec<_> = p.iter().collect();
        assert_eq!(
            v,
            [
                ("transport", Some("tcp")),
                ("lr", None),
                ("maddr", Some("10.0.0.1"))
            ]
        );
    }
}
