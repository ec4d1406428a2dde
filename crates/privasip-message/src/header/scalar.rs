//! Small typed headers: CSeq, numbers, Call-ID, Date, option-tag lists,
//! Content-Type and Privacy.

use crate::method::Method;
use crate::params::Params;
use crate::scan::{Cursor, is_token, is_word};

/// CSeq (RFC 3261 §20.16).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CSeq<'a> {
    /// The sequence number (RFC 3261 §8.1.1.5: below 2**31 when we choose
    /// it; up to 2**32-1 accepted).
    pub seq: u32,
    /// The method.
    pub method: Method<'a>,
}

impl<'a> CSeq<'a> {
    pub(crate) fn parse(value: &'a str) -> Result<CSeq<'a>, &'static str> {
        let mut c = Cursor::new(value);
        let digits = c.take_while(|b| b.is_ascii_digit());
        let seq = parse_decimal(digits).ok_or("sequence number missing or too large")?;
        if !c.skip_lws() {
            return Err("missing white space after sequence number");
        }
        let method = c.token().ok_or("missing method")?;
        if !c.at_end() {
            return Err("unexpected text after method");
        }
        Ok(CSeq {
            seq,
            method: Method::from_token(method),
        })
    }
}

/// Parses `1*DIGIT` into a `u32`; `None` if empty, not digits, or too large.
pub(crate) fn parse_decimal(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut v: u32 = 0;
    for b in s.bytes() {
        v = v.checked_mul(10)?.checked_add(u32::from(b - b'0'))?;
    }
    Some(v)
}

/// Max-Forwards (RFC 3261 §20.22): 0..=255.
pub(crate) fn parse_max_forwards(value: &str) -> Result<u8, &'static str> {
    parse_decimal(value)
        .and_then(|v| u8::try_from(v).ok())
        .ok_or("not a number from 0 to 255")
}

/// Content-Length (RFC 3261 §20.14).
pub(crate) fn parse_content_length(value: &str) -> Result<usize, &'static str> {
    parse_decimal(value)
        .map(|v| v as usize)
        .ok_or("not a non-negative number")
}

/// `delta-seconds` (Expires, Min-Expires, contact `expires`). RFC 4475 §3.1.2.4
/// lets an element treat an overlarge value as a default; we saturate at
/// 2**32-1 so the registrar's maximum applies.
pub fn parse_delta_seconds(value: &str) -> Result<u32, &'static str> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err("not a number of seconds");
    }
    Ok(parse_decimal(value).unwrap_or(u32::MAX))
}

/// Call-ID = word [ "@" word ] (RFC 3261 §25.1).
pub(crate) fn check_call_id(value: &str) -> Result<(), &'static str> {
    let b = value.as_bytes();
    let word_end = |from: usize| {
        b[from..]
            .iter()
            .position(|&c| !is_word(c))
            .map_or(b.len(), |i| from + i)
    };
    let first = word_end(0);
    let ok = first > 0
        && match b.get(first) {
            None => true,
            Some(b'@') => first + 1 < b.len() && word_end(first + 1) == b.len(),
            Some(_) => false,
        };
    if ok { Ok(()) } else { Err("not word[@word]") }
}

/// Date = rfc1123-date, and only in GMT (RFC 3261 §20.17).
pub(crate) fn check_date(value: &str) -> Result<(), &'static str> {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    // "Sat, 13 Nov 2010 23:29:00 GMT"
    let b = value.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    let ok = b.len() == 29
        && DAYS.iter().any(|d| d.as_bytes() == &b[..3])
        && &b[3..5] == b", "
        && digits(5..7)
        && b[7] == b' '
        && MONTHS.iter().any(|m| m.as_bytes() == &b[8..11])
        && b[11] == b' '
        && digits(12..16)
        && b[16] == b' '
        && digits(17..19)
        && b[19] == b':'
        && digits(20..22)
        && b[22] == b':'
        && digits(23..25)
        && value.get(25..).unwrap_or_default() == " GMT";
    if ok {
        Ok(())
    } else {
        Err("not an RFC 1123 date in GMT")
    }
}

/// A comma-separated token list (Require, Proxy-Require, Supported,
/// Unsupported, Allow). `may_be_empty` for Supported and Allow.
pub(crate) fn check_token_list(value: &str, may_be_empty: bool) -> Result<(), &'static str> {
    if value.is_empty() {
        return if may_be_empty {
            Ok(())
        } else {
            Err("empty list")
        };
    }
    let mut c = Cursor::new(value);
    loop {
        c.skip_lws();
        c.token().ok_or("not a list of tokens")?;
        c.skip_lws();
        if c.at_end() {
            return Ok(());
        }
        if !c.eat(b',') {
            return Err("not a list of tokens");
        }
    }
}

/// Splits a comma-separated list of simple values, trimming white space.
pub(crate) fn split_list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(crate::scan::trim_lws)
}

/// Content-Type (RFC 3261 §20.15): `type/subtype *(;param)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MediaType<'a> {
    /// e.g. `application`
    pub kind: &'a str,
    /// e.g. `sdp`
    pub subtype: &'a str,
    /// e.g. `;boundary=…`
    pub params: Params<'a>,
}

impl<'a> MediaType<'a> {
    pub(crate) fn parse(value: &'a str) -> Result<MediaType<'a>, &'static str> {
        let mut c = Cursor::new(value);
        let kind = c.token().ok_or("missing media type")?;
        if !c.eat_sep(b'/') {
            return Err("missing / in media type");
        }
        let subtype = c.token().ok_or("missing media subtype")?;
        let params = Params::parse_header(&mut c)?;
        c.skip_lws();
        if !c.at_end() {
            return Err("unexpected text after media type");
        }
        Ok(MediaType {
            kind,
            subtype,
            params,
        })
    }

    /// True for `application/sdp`, compared case-insensitively.
    pub fn is(&self, kind: &str, subtype: &str) -> bool {
        self.kind.eq_ignore_ascii_case(kind) && self.subtype.eq_ignore_ascii_case(subtype)
    }
}

/// Privacy (RFC 3323 §4.2): `priv-value *(";" priv-value)`.
pub(crate) fn check_privacy(value: &str) -> Result<(), &'static str> {
    if value
        .split(';')
        .map(crate::scan::trim_lws)
        .all(|v| !v.is_empty() && v.bytes().all(is_token))
    {
        Ok(())
    } else {
        Err("not a list of privacy values")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cseq() {
        let c = CSeq::parse("0009\r\n  INVITE").expect("valid");
        assert_eq!((c.seq, c.method), (9, Method::Invite));
        assert!(CSeq::parse("36893488147419103232 REGISTER").is_err());
        assert!(CSeq::parse("8INVITE").is_err());
        assert!(CSeq::parse("-1 INVITE").is_err());
        assert_eq!(CSeq::parse("4294967295 ACK").map(|c| c.seq), Ok(u32::MAX));
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_max_forwards("0068"), Ok(68));
        assert!(parse_max_forwards("300").is_err());
        assert!(parse_content_length("-999").is_err());
        assert_eq!(parse_delta_seconds("1".repeat(40).as_str()), Ok(u32::MAX));
    }

    #[test]
    fn dates() {
        assert!(check_date("Sat, 15 Oct 2005 04:44:56 GMT").is_ok());
        assert!(check_date("Fri, 01 Jan 2010 16:00:00 EST").is_err());
    }

    #[test]
    fn call_ids() {
        assert!(check_call_id("intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{").is_ok());
        assert!(check_call_id("a@b@c").is_err());
        assert!(check_call_id("has space").is_err());
    }

    #[test]
    fn media() {
        let m = MediaType::parse("multipart/mixed;boundary=7a9cbec02ceef655").expect("valid");
        assert!(m.is("Multipart", "MIXED"));
        assert_eq!(m.params.get("boundary"), Some(Some("7a9cbec02ceef655")));
    }
}
