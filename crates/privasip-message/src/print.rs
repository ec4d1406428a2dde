//! Printing: untouched lines byte for byte, edited ones in canonical form,
//! and a Content-Length that always matches the body.

use std::io::Write as _;

use crate::header::scalar::parse_content_length;
use crate::message::{Message, StartLine};
use crate::name::HeaderName;

impl Message<'_> {
    /// Appends the message as it goes on the wire.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        match &self.start {
            StartLine::Request { raw: Some(r), .. } | StartLine::Response { raw: Some(r), .. } => {
                out.extend_from_slice(r.as_bytes());
            }
            StartLine::Request {
                method,
                uri,
                raw: None,
            } => {
                let _ = write!(out, "{method} {uri} SIP/2.0");
            }
            StartLine::Response {
                code,
                reason,
                raw: None,
            } => {
                let _ = write!(out, "SIP/2.0 {code} {reason}");
            }
        }
        out.extend_from_slice(b"\r\n");
        let body_len = self.body.len();
        let mut length_written = false;
        for h in &self.headers {
            if h.name == HeaderName::ContentLength {
                // RFC 3261 §20.14: one Content-Length, equal to the body.
                if length_written {
                    continue;
                }
                length_written = true;
                match h.raw {
                    Some(raw) if parse_content_length(h.value()) == Ok(body_len) => {
                        out.extend_from_slice(raw.as_bytes());
                    }
                    _ => {
                        let _ = write!(out, "{}: {body_len}", h.name_str());
                    }
                }
            } else if let Some(raw) = h.raw {
                out.extend_from_slice(raw.as_bytes());
            } else {
                out.extend_from_slice(h.name_str().as_bytes());
                out.extend_from_slice(b": ");
                out.extend_from_slice(h.value().as_bytes());
            }
            out.extend_from_slice(b"\r\n");
        }
        if !length_written {
            let _ = write!(out, "Content-Length: {body_len}\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
    }

    /// The message as it goes on the wire.
    pub fn to_bytes(&self) -> Vec<u8> {
        let estimate = 64
            + self
                .headers
                .iter()
                .map(|h| {
                    h.raw
                        .map_or(h.name_str().len() + h.value().len() + 4, |r| r.len() + 2)
                })
                .sum::<usize>()
            + self.body.len();
        let mut out = Vec::with_capacity(estimate);
        self.write_to(&mut out);
        out
    }
}

/// Two messages are equal when they say the same thing: the same start
/// line, the same header fields with the same values in the same order
/// (Content-Length aside, which follows the body), and the same body.
impl PartialEq for Message<'_> {
    fn eq(&self, other: &Self) -> bool {
        let start_eq = match (&self.start, &other.start) {
            (
                StartLine::Request {
                    method: m1,
                    uri: u1,
                    ..
                },
                StartLine::Request {
                    method: m2,
                    uri: u2,
                    ..
                },
            ) => m1 == m2 && u1 == u2,
            (
                StartLine::Response {
                    code: c1,
                    reason: r1,
                    ..
                },
                StartLine::Response {
                    code: c2,
                    reason: r2,
                    ..
                },
            ) => c1 == c2 && r1 == r2,
            _ => false,
        };
        let fields = |m: &Self| {
            m.headers
                .iter()
                .filter(|h| h.name != HeaderName::ContentLength)
                .map(|h| {
                    (
                        h.name,
                        h.name_str().to_ascii_lowercase(),
                        h.value().to_owned(),
                    )
                })
                .collect::<Vec<_>>()
        };
        start_eq && self.body == other.body && fields(self) == fields(other)
    }
}
