//! Character classes of the RFC 3261 §25.1 grammar and a small cursor that
//! walks a header value, treating linear white space (folded lines included)
//! as the grammar does.

/// One bit per character class, looked up in [`CLASS`].
const TOKEN: u16 = 1;
const UNRESERVED: u16 = 2;
const USER: u16 = 4;
const PASSWORD: u16 = 8;
const PARAM: u16 = 16;
const HNV: u16 = 32;
const WORD: u16 = 64;
const URIC: u16 = 128;
/// `hostname` characters, dots included (and `_`, see `is_hostname`).
const HOST: u16 = 256;
/// `gen-value` without the quoted form: token, plus the IPv6 reference
/// characters of `host`.
const GEN_VALUE: u16 = 512;

const fn build_table() -> [u16; 256] {
    let mut t = [0u16; 256];
    let mut c = 0usize;
    while c < 256 {
        let b = c as u8;
        let alnum = b.is_ascii_alphanumeric();
        let mut v = 0u16;
        // token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
        if alnum
            || matches!(
                b,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            )
        {
            v |= TOKEN | WORD;
        }
        // word adds ( ) < > : \ DQUOTE / [ ] ? { }
        if matches!(
            b,
            b'(' | b')'
                | b'<'
                | b'>'
                | b':'
                | b'\\'
                | b'"'
                | b'/'
                | b'['
                | b']'
                | b'?'
                | b'{'
                | b'}'
        ) {
            v |= WORD;
        }
        // unreserved = alphanum / mark
        let unreserved = alnum
            || matches!(
                b,
                b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
            );
        if unreserved {
            v |= UNRESERVED | USER | PASSWORD | PARAM | HNV | URIC;
        }
        if matches!(b, b'&' | b'=' | b'+' | b'$' | b',' | b';' | b'?' | b'/') {
            v |= USER;
        }
        if matches!(b, b'&' | b'=' | b'+' | b'$' | b',') {
            v |= PASSWORD;
        }
        if matches!(b, b'[' | b']' | b'/' | b':' | b'&' | b'+' | b'$') {
            v |= PARAM;
        }
        if matches!(b, b'[' | b']' | b'/' | b'?' | b':' | b'+' | b'$') {
            v |= HNV;
        }
        // uric = reserved / unreserved / escaped (RFC 2396); "%" is checked separately
        if matches!(
            b,
            b';' | b'/' | b'?' | b':' | b'@' | b'&' | b'=' | b'+' | b'$' | b',' | b'%'
        ) {
            v |= URIC;
        }
        if alnum || matches!(b, b'-' | b'_' | b'.') {
            v |= HOST;
        }
        if v & TOKEN != 0 || matches!(b, b'[' | b']' | b':') {
            v |= GEN_VALUE;
        }
        t[c] = v;
        c += 1;
    }
    t
}

static CLASS: [u16; 256] = build_table();

/// Bytes a quoted string holds as they are: everything but `"`, `\` and
/// controls other than linear white space.
static QDTEXT: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0usize;
    while c < 256 {
        let b = c as u8;
        t[c] = (b >= 0x20 && b != b'"' && b != b'\\') || matches!(b, b' ' | b'\t' | b'\r' | b'\n');
        c += 1;
    }
    t
};

#[inline]
pub(crate) fn is_token(b: u8) -> bool {
    CLASS[b as usize] & TOKEN != 0
}
#[inline]
pub(crate) fn is_word(b: u8) -> bool {
    CLASS[b as usize] & WORD != 0
}
#[inline]
pub(crate) fn is_user(b: u8) -> bool {
    CLASS[b as usize] & USER != 0
}
#[inline]
pub(crate) fn is_password(b: u8) -> bool {
    CLASS[b as usize] & PASSWORD != 0
}
#[inline]
pub(crate) fn is_param(b: u8) -> bool {
    CLASS[b as usize] & PARAM != 0
}
#[inline]
pub(crate) fn is_hnv(b: u8) -> bool {
    CLASS[b as usize] & HNV != 0
}
#[inline]
pub(crate) fn is_uric(b: u8) -> bool {
    CLASS[b as usize] & URIC != 0
}
#[inline]
pub(crate) fn is_gen_value(b: u8) -> bool {
    CLASS[b as usize] & GEN_VALUE != 0
}
#[inline]
pub(crate) fn is_host(b: u8) -> bool {
    CLASS[b as usize] & HOST != 0
}
#[inline]
pub(crate) fn is_unreserved(b: u8) -> bool {
    CLASS[b as usize] & UNRESERVED != 0
}

/// Position of the first `c` in a short slice (a plain loop beats a SIMD
/// search's set-up on the few bytes of a URI or header name).
#[inline]
pub(crate) fn find_byte(b: &[u8], c: u8) -> Option<usize> {
    b.iter().position(|&x| x == c)
}

/// True when `s` is a non-empty token.
pub(crate) fn is_token_str(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token)
}

/// Checks that `s` holds only `allowed` characters and well-formed `%HH`
/// escapes. Returns false on anything else.
pub(crate) fn is_escaped_run(s: &str, allowed: impl Fn(u8) -> bool) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if i + 2 >= b.len() {
                return false;
            }
            if !(b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit()) {
                return false;
            }
            i += 3;
        } else if allowed(b[i]) {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

/// Linear white space inside a header value: SP, HTAB and the CRLF of a
/// folded line (the message parser has already checked that every CRLF inside
/// a value is followed by SP or HTAB).
#[inline]
pub(crate) fn is_lws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Trims linear white space at both ends.
pub(crate) fn trim_lws(s: &str) -> &str {
    let b = s.as_bytes();
    let mut start = 0;
    let mut end = b.len();
    while start < end && is_lws(b[start]) {
        start += 1;
    }
    while end > start && is_lws(b[end - 1]) {
        end -= 1;
    }
    // Only ASCII was trimmed, so both ends are char boundaries.
    s.get(start..end).unwrap_or_default()
}

/// Trims SP and HTAB at the end.
pub(crate) fn trim_end_ws(s: &str) -> &str {
    let b = s.as_bytes();
    let mut end = b.len();
    while end > 0 && matches!(b[end - 1], b' ' | b'\t') {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

/// A cursor over one header value.
#[derive(Clone, Debug)]
pub(crate) struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(s: &'a str) -> Self {
        Cursor { s, pos: 0 }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    pub(crate) fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    pub(crate) fn rest(&self) -> &'a str {
        self.s.get(self.pos..).unwrap_or_default()
    }

    pub(crate) fn slice(&self, from: usize, to: usize) -> &'a str {
        self.s.get(from..to).unwrap_or_default()
    }

    /// Moves `n` bytes on; the caller knows they are there and end on a
    /// char boundary.
    pub(crate) fn advance(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.s.len());
    }

    /// Skips linear white space; returns whether any was skipped.
    pub(crate) fn skip_lws(&mut self) -> bool {
        let start = self.pos;
        let b = self.s.as_bytes();
        while self.pos < b.len() && is_lws(b[self.pos]) {
            self.pos += 1;
        }
        self.pos != start
    }

    /// Consumes `c` if it is next.
    pub(crate) fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Consumes `c` surrounded by optional white space (the grammar's SEMI,
    /// COMMA, EQUAL, SLASH, COLON). Leaves the cursor untouched otherwise.
    pub(crate) fn eat_sep(&mut self, c: u8) -> bool {
        let save = self.pos;
        self.skip_lws();
        if self.eat(c) {
            self.skip_lws();
            true
        } else {
            self.pos = save;
            false
        }
    }

    /// Consumes the longest run of bytes for which `f` holds.
    pub(crate) fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a str {
        let start = self.pos;
        let b = self.s.as_bytes();
        while self.pos < b.len() && f(b[self.pos]) {
            self.pos += 1;
        }
        // Only ASCII predicates are used, so `pos` is on a char boundary.
        self.s.get(start..self.pos).unwrap_or_default()
    }

    /// Consumes a token, or returns `None` without moving.
    pub(crate) fn token(&mut self) -> Option<&'a str> {
        let t = self.take_while(is_token);
        (!t.is_empty()).then_some(t)
    }

    /// Consumes a quoted string (RFC 3261 §25.1 `quoted-string`) and returns
    /// it with its quotes. `None` if it is not there or never closes.
    pub(crate) fn quoted_string(&mut self) -> Option<&'a str> {
        let b = self.s.as_bytes();
        let start = self.pos;
        if b.get(start) != Some(&b'"') {
            return None;
        }
        let mut i = start + 1;
        while i < b.len() {
            // The plain run first: eight bytes at a time while none of them
            // is '"', '\\' or a control, then one table look-up per byte.
            while let Some(w) = swar::load(b, i) {
                if swar::eq(w, b'"') | swar::eq(w, b'\\') | swar::below(w, 0x20) != 0 {
                    break;
                }
                i += 8;
            }
            while i < b.len() && QDTEXT[b[i] as usize] {
                i += 1;
            }
            let Some(&c) = b.get(i) else { break };
            match c {
                b'"' => {
                    self.pos = i + 1;
                    return Some(self.s.get(start..self.pos).unwrap_or_default());
                }
                // quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F)
                b'\\' => match b.get(i + 1) {
                    Some(&n) if n <= 0x7f && n != b'\n' && n != b'\r' => i += 2,
                    _ => return None,
                },
                // Neither qdtext (the run above took all of it) nor a
                // quoted-pair: a control character.
                _ => return None,
            }
        }
        None
    }
}

/// Eight bytes at a time in a `u64` (safe code, no target features): for
/// the short runs of a SIP head this beats a vector search's set-up.
pub(crate) mod swar {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const HIGH: u64 = ONES << 7;

    /// The eight bytes at `i`, first byte lowest; `None` near the end.
    #[inline]
    pub(crate) fn load(b: &[u8], i: usize) -> Option<u64> {
        let chunk = b.get(i..i + 8)?;
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        Some(u64::from_le_bytes(word))
    }

    /// The high bit of each byte below `n` (`n` at most 0x80). The lowest
    /// bit set is exact; bits above it may be false.
    #[inline]
    pub(crate) fn below(w: u64, n: u8) -> u64 {
        w.wrapping_sub(ONES * u64::from(n)) & !w & HIGH
    }

    /// The high bit of each byte equal to `c`, exact in the same way.
    #[inline]
    pub(crate) fn eq(w: u64, c: u8) -> u64 {
        below(w ^ (ONES * u64::from(c)), 1)
    }
}

/// Removes the quotes and quoted-pair escapes of a quoted string.
pub(crate) fn unquote(q: &str) -> std::borrow::Cow<'_, str> {
    let inner = q
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(q);
    if !inner.contains('\\') {
        return std::borrow::Cow::Borrowed(inner);
    }
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        assert!(is_token(b'~') && !is_token(b'(') && is_word(b'('));
        assert!(is_user(b';') && !is_password(b';'));
        assert!(is_escaped_run("a%20b", is_user));
        assert!(!is_escaped_run("a%2", is_user));
        assert!(!is_escaped_run("a%zz", is_user));
    }

    #[test]
    fn quoted() {
        let mut c = Cursor::new(r#""a \"b\"" rest"#);
        assert_eq!(c.quoted_string(), Some(r#""a \"b\"""#));
        assert_eq!(unquote(r#""a \"b\"""#), r#"a "b""#);
        assert_eq!(Cursor::new("\"open").quoted_string(), None);
    }
}
