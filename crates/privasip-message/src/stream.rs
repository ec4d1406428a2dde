//! Framing SIP on a byte stream (TCP, TLS, a Tor stream): RFC 3261 §18.3
//! with RFC 5626 §4.4.1 CRLF keep-alives.

use crate::error::ParseError;
use crate::limits::Limits;
use crate::name::HeaderName;
use crate::scan::trim_lws;

/// What the front of a stream buffer holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame {
    /// Not enough bytes yet; read more and call again with the grown buffer.
    Partial,
    /// A `CRLFCRLF` keep-alive ping of `len` bytes: consume it and answer
    /// with a single CRLF (RFC 5626 §4.4.1).
    KeepAlive {
        /// Bytes to consume.
        len: usize,
    },
    /// A complete message at `buf[skip..skip + len]`; consume `skip + len`.
    Message {
        /// Stray CRLFs before the message (RFC 3261 §7.5), to discard.
        skip: usize,
        /// Length of the message, head and body.
        len: usize,
    },
}

/// Finds message boundaries in a stream, resuming where the last call
/// stopped, so a peer that trickles bytes in cannot make us rescan the
/// buffer (quadratic work) or buffer more than the message limit.
///
/// Call [`StreamDecoder::decode`] with the buffered bytes whenever more
/// arrive. Until it returns a frame the buffer must only grow at the end;
/// after a frame, drop the consumed bytes and keep calling.
#[derive(Clone, Debug)]
pub struct StreamDecoder {
    limits: Limits,
    /// Bytes of the buffer already searched for the end of the head.
    scanned: usize,
    /// `(skip, total length)` once the head is complete.
    pending: Option<(usize, usize)>,
}

impl StreamDecoder {
    /// A decoder enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        StreamDecoder {
            limits,
            scanned: 0,
            pending: None,
        }
    }

    /// Looks at the front of `buf`.
    pub fn decode(&mut self, buf: &[u8]) -> Result<Frame, ParseError> {
        if let Some((skip, len)) = self.pending {
            return Ok(self.complete_if(buf, skip, len));
        }
        if buf.starts_with(b"\r\n\r\n") {
            self.reset();
            return Ok(Frame::KeepAlive { len: 4 });
        }
        let skip = if buf.starts_with(b"\r\n") { 2 } else { 0 };
        if buf.len() == skip {
            return Ok(Frame::Partial);
        }
        let from = self.scanned.saturating_sub(3).max(skip);
        let Some(end) = crate::message::END_OF_HEAD
            .find(&buf[from..])
            .map(|i| from + i)
        else {
            self.scanned = buf.len();
            let size = buf.len() - skip;
            if size > self.limits.max_message_size {
                return Err(ParseError::MessageTooLarge {
                    size,
                    limit: self.limits.max_message_size,
                });
            }
            return Ok(Frame::Partial);
        };
        let head_len = end + 4 - skip;
        if head_len > self.limits.max_message_size {
            return Err(ParseError::MessageTooLarge {
                size: head_len,
                limit: self.limits.max_message_size,
            });
        }
        let body = content_length(&buf[skip..end + 2])?.ok_or(ParseError::MissingContentLength)?;
        let len = head_len + body;
        if len > self.limits.max_message_size {
            return Err(ParseError::BodyTooLarge {
                size: body,
                limit: self.limits.max_message_size,
            });
        }
        self.pending = Some((skip, len));
        Ok(self.complete_if(buf, skip, len))
    }

    fn complete_if(&mut self, buf: &[u8], skip: usize, len: usize) -> Frame {
        if buf.len() >= skip + len {
            self.reset();
            Frame::Message { skip, len }
        } else {
            Frame::Partial
        }
    }

    fn reset(&mut self) {
        self.scanned = 0;
        self.pending = None;
    }
}

/// Reads Content-Length from a head without parsing anything else; the full
/// parse follows once the message is complete.
fn content_length(head: &[u8]) -> Result<Option<usize>, ParseError> {
    let bad = |reason| ParseError::Header {
        header: HeaderName::ContentLength,
        reason,
    };
    let mut found: Option<usize> = None;
    for line in head.split(|&b| b == b'\n') {
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        if matches!(line.first(), Some(b' ' | b'\t')) {
            continue;
        }
        let name = line[..colon].trim_ascii_end();
        if !(name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l")) {
            continue;
        }
        let value = std::str::from_utf8(&line[colon + 1..]).map_err(|_| ParseError::NotUtf8)?;
        let value = trim_lws(value);
        if value.is_empty() || value.len() > 9 || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("not a non-negative number"));
        }
        let n: usize = value
            .parse()
            .map_err(|_| bad("not a non-negative number"))?;
        match found {
            Some(prev) if prev != n => return Err(bad("conflicting values")),
            _ => found = Some(n),
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nl: 3\r\n\r\nabc";

    #[test]
    fn trickled_bytes() {
        let mut d = StreamDecoder::new(Limits::default());
        for n in 0..MSG.len() {
            assert_eq!(d.decode(&MSG[..n]), Ok(Frame::Partial), "{n}");
        }
        assert_eq!(
            d.decode(MSG),
            Ok(Frame::Message {
                skip: 0,
                len: MSG.len()
            })
        );
    }

    #[test]
    fn keepalive_and_stray_crlf() {
        let mut d = StreamDecoder::new(Limits::default());
        assert_eq!(d.decode(b"\r\n\r\nOPT"), Ok(Frame::KeepAlive { len: 4 }));
        assert_eq!(d.decode(b"\r\n"), Ok(Frame::Partial));
        let mut buf = b"\r\n".to_vec();
        buf.extend_from_slice(MSG);
        assert_eq!(
            d.decode(&buf),
            Ok(Frame::Message {
                skip: 2,
                len: MSG.len()
            })
        );
    }

    #[test]
    fn limits() {
        let mut d = StreamDecoder::new(Limits {
            max_message_size: 64,
            ..Limits::default()
        });
        assert!(matches!(
            d.decode(&[b'a'; 65]),
            Err(ParseError::MessageTooLarge { .. })
        ));
        let mut d = StreamDecoder::new(Limits::default());
        assert_eq!(
            d.decode(b"OPTIONS sip:a@b SIP/2.0\r\n\r\n"),
            Err(ParseError::MissingContentLength)
        );
        assert!(matches!(
            d.decode(b"OPTIONS sip:a@b SIP/2.0\r\nl: 99999999\r\n\r\n"),
            Err(ParseError::BodyTooLarge { .. })
        ));
        assert!(matches!(
            StreamDecoder::new(Limits::default())
                .decode(b"OPTIONS sip:a@b SIP/2.0\r\nl: 1\r\nContent-Length: 2\r\n\r\n"),
            Err(ParseError::Header { .. })
        ));
    }
}
