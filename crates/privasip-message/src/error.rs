//! Why a message was rejected, and what a SIP element answers for it.

use crate::name::HeaderName;

/// A SIP status code with its reason phrase, as an element sends it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// The status code, 400..=599.
    pub code: u16,
    /// A reason phrase that names the problem.
    pub reason: String,
}

/// Maps an error to the SIP response it should produce (like arti's
/// `HasKind`).
pub trait HasSipStatus {
    /// The status code an element answers a request with.
    fn sip_status(&self) -> u16;

    /// The status code with a reason phrase that says what was wrong.
    fn rejection(&self) -> Rejection;
}

/// Why a byte sequence is not a SIP message we accept.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// Nothing but white space.
    #[error("empty message")]
    Empty,
    /// The message (head plus declared body) is over the configured limit.
    #[error("message of {size} bytes is over the {limit}-byte limit")]
    MessageTooLarge {
        /// What the message needs.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The declared body would take the message over the configured limit.
    #[error("body of {size} bytes takes the message over the {limit}-byte limit")]
    BodyTooLarge {
        /// The Content-Length value.
        size: usize,
        /// The configured message limit.
        limit: usize,
    },
    /// More header fields than the configured limit.
    #[error("more than {limit} header fields")]
    TooManyHeaders {
        /// The configured limit.
        limit: usize,
    },
    /// A line is longer than the configured limit.
    #[error("a line is longer than {limit} bytes")]
    LineTooLong {
        /// The configured limit.
        limit: usize,
    },
    /// More Via values than the configured limit.
    #[error("more than {limit} Via values")]
    TooManyVias {
        /// The configured limit.
        limit: usize,
    },
    /// The header section is not valid UTF-8 (RFC 3261 §7.3: UTF-8 text).
    #[error("header section is not UTF-8")]
    NotUtf8,
    /// A line ends in a bare CR or LF instead of CRLF.
    #[error("line {line} does not end with CRLF")]
    BareLineEnd {
        /// 1-based line number.
        line: usize,
    },
    /// The request line does not follow RFC 3261 §7.1.
    #[error("bad request line: {0}")]
    RequestLine(&'static str),
    /// The status line does not follow RFC 3261 §7.2.
    #[error("bad status line: {0}")]
    StatusLine(&'static str),
    /// A SIP version other than 2.0.
    #[error("SIP version is not 2.0")]
    Version,
    /// The Request-URI does not follow RFC 3261 §19.1 / RFC 3986.
    #[error("bad Request-URI: {0}")]
    RequestUri(&'static str),
    /// A header line with no name, no colon or a bad name.
    #[error("line {line}: {reason}")]
    HeaderLine {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// A known header whose value does not follow its grammar.
    #[error("bad {header} header: {reason}")]
    Header {
        /// Which header.
        header: HeaderName,
        /// What is wrong.
        reason: &'static str,
    },
    /// Content-Length declares more body than the datagram holds.
    #[error("Content-Length {declared} is larger than the {available}-byte body")]
    BodyTruncated {
        /// The Content-Length value.
        declared: usize,
        /// Octets after the header section.
        available: usize,
    },
    /// A stream-transported message without Content-Length (RFC 3261 §18.3).
    #[error("message on a stream has no Content-Length")]
    MissingContentLength,
    /// The CSeq method is not the request method (RFC 3261 §8.1.1.5).
    #[error("CSeq method differs from the request method")]
    CSeqMethodMismatch,
    /// A mandatory header is missing (RFC 3261 §8.1.1).
    #[error("missing {0} header")]
    MissingHeader(HeaderName),
    /// A header that must appear once appears more often (RFC 3261 §7.3.1).
    #[error("more than one {0} header")]
    DuplicateHeader(HeaderName),
}

impl HasSipStatus for ParseError {
    fn sip_status(&self) -> u16 {
        match self {
            // RFC 3261 §21.5.7 513 Message Too Large
            ParseError::MessageTooLarge { .. } => 513,
            // RFC 3261 §21.4.13 413 Request Entity Too Large
            ParseError::BodyTooLarge { .. } => 413,
            // RFC 3261 §21.5.8 505 Version Not Supported
            ParseError::Version => 505,
            _ => 400,
        }
    }

    fn rejection(&self) -> Rejection {
        let code = self.sip_status();
        let reason = match code {
            513 => "Message Too Large".to_owned(),
            413 => "Request Entity Too Large".to_owned(),
            505 => "Version Not Supported".to_owned(),
            // The text goes into a status line: keep it to one line of TEXT.
            _ => format!("Bad Request ({self})").replace(['\r', '\n'], " "),
        };
        Rejection { code, reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(ParseError::Version.sip_status(), 505);
        let e = ParseError::Header {
            header: HeaderName::CSeq,
            reason: "sequence number too large",
        };
        assert_eq!(
            e.rejection(),
            Rejection {
                code: 400,
                reason: "Bad Request (bad CSeq header: sequence number too large)".into()
            }
        );
    }
}
