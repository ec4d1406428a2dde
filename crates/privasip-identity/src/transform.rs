//! PrivaSIP-1 and PrivaSIP-2 on parsed SIP messages.
//!
//! - The caller's user agent ([`protect_request`]) puts the caller token in
//!   From (and, when it answers a challenge, as the Digest `username`),
//!   with PrivaSIP-2 the callee token in the Request-URI and To, removes
//!   display names, and drops headers that name the user or their software
//!   (RFC 3323 §5.1 "header" privacy). The Call-ID must carry no host
//!   ([`private_call_id`]).
//! - The home proxy reads [`caller_token`], opens it with its
//!   [`crate::Keyring`] to authenticate and account, and forwards the
//!   message with the token untouched.
//! - The callee's proxy reads [`callee_token`], opens it to find the
//!   registered contact, and rewrites only the Request-URI; To stays
//!   encrypted, so the callee never sees a real ID but their own contact.
//!
//! Every token is bound to the dialog's Call-ID ([`context`]).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use privasip_message::{HeaderName, Message, ParseError, Uri};
use rand_core::CryptoRngCore;

use crate::Token;

/// Headers that name or describe the user, their organisation or their
/// software; a PrivaSIP user agent never sends them.
pub const IDENTIFYING_HEADERS: [HeaderName; 11] = [
    HeaderName::UserAgent,
    HeaderName::Server,
    HeaderName::Organization,
    HeaderName::Subject,
    HeaderName::CallInfo,
    HeaderName::ReplyTo,
    HeaderName::InReplyTo,
    HeaderName::AlertInfo,
    HeaderName::Warning,
    HeaderName::PAssertedIdentity,
    HeaderName::PPreferredIdentity,
];

/// What went wrong protecting a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransformError {
    /// An edit failed on a malformed header.
    #[error(transparent)]
    Message(#[from] ParseError),
    /// The Call-ID names a host; generate it with [`private_call_id`].
    #[error("Call-ID carries a host part (use private_call_id)")]
    CallIdHasHost,
    /// The message has no Call-ID to bind tokens to.
    #[error("no Call-ID")]
    NoCallId,
    /// PrivaSIP-2 needs a sip: or sips: Request-URI.
    #[error("Request-URI is not a SIP URI")]
    NotSipUri,
    /// The transform applies to requests only.
    #[error("not a request")]
    NotARequest,
}

/// The tokens of one dialog, made once and reused for all its messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DialogTokens {
    /// The caller's token (From, Digest username).
    pub caller: String,
    /// PrivaSIP-2: the callee's token (Request-URI, To).
    pub callee: Option<String>,
}

/// A Call-ID of 160 random bits, base64url: no host, no MAC, no time.
pub fn private_call_id(rng: &mut dyn CryptoRngCore) -> String {
    let mut b = [0u8; 20];
    rng.fill_bytes(&mut b);
    B64.encode(b)
}

/// The bytes tokens are bound to: the Call-ID.
pub fn context<'m>(msg: &'m Message<'_>) -> Option<&'m [u8]> {
    msg.call_id().map(str::as_bytes)
}

/// The caller's token: the From URI's user part, if it is one.
pub fn caller_token(msg: &Message<'_>) -> Option<String> {
    let from = msg.from()?;
    let user = from.uri.as_sip()?.user?;
    Token::looks_like(user).then(|| user.to_owned())
}

/// The callee's token: the Request-URI's user part, if it is one.
pub fn callee_token(msg: &Message<'_>) -> Option<String> {
    let uri = msg.request_uri_parsed()?;
    let user = uri.as_sip()?.user?;
    Token::looks_like(user).then(|| user.to_owned())
}

/// `uri` with its user part replaced by `user` (sip:/sips: only).
pub fn with_user(uri: &str, user: &str) -> Result<String, TransformError> {
    let parsed = Uri::parse(uri).map_err(|_| TransformError::NotSipUri)?;
    let sip = parsed.as_sip().ok_or(TransformError::NotSipUri)?;
    let scheme_len = if sip.secure { 5 } else { 4 };
    let after_user = match sip.user {
        Some(_) => uri
            .find('@')
            .map(|at| uri.get(at + 1..).unwrap_or_default())
            .ok_or(TransformError::NotSipUri)?,
        None => uri.get(scheme_len..).unwrap_or_default(),
    };
    Ok(format!(
        "{}{user}@{after_user}",
        uri.get(..scheme_len).unwrap_or_default()
    ))
}

/// Removes display names, identifying headers and the identifying lines
/// of an SDP body: what both the caller's and the callee's user agent do
/// to everything they send.
pub fn strip_identifying(msg: &mut Message<'_>) -> Result<(), TransformError> {
    for name in [HeaderName::From, HeaderName::To, HeaderName::Contact] {
        msg.remove_display_names(name)?;
    }
    for name in IDENTIFYING_HEADERS {
        msg.remove_header(name);
    }
    let is_sdp = msg.content_type().is_some_and(|t| {
        t.kind.eq_ignore_ascii_case("application") && t.subtype.eq_ignore_ascii_case("sdp")
    });
    if is_sdp && let Some(clean) = anonymous_sdp(msg.body()) {
        msg.set_body(clean);
    }
    Ok(())
}

/// An SDP body (RFC 8866) without what names its user: the origin's
/// username becomes "-" (§5.2 allows it), the session name "-"; session
/// information, URI, e-mail and phone lines go. `None` if nothing changed.
pub fn anonymous_sdp(body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(body.len());
    let mut changed = false;
    for line in body.split_inclusive(|&b| b == b'\n') {
        let content = line.strip_suffix(b"\n").unwrap_or(line);
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        let eol = &line[content.len()..];
        match content.get(..2) {
            Some(b"o=") => {
                // o=<username> <sess-id> <sess-version> <nettype> <addrtype> <addr>
                let rest = &content[2..];
                let after_user = rest
                    .iter()
                    .position(|&b| b == b' ')
                    .map_or(&[][..], |i| &rest[i..]);
                let new: Vec<u8> = [&b"o=-"[..], after_user].concat();
                changed |= new != content;
                out.extend_from_slice(&new);
                out.extend_from_slice(eol);
            }
            Some(b"s=") => {
                changed |= content != b"s=-";
                out.extend_from_slice(b"s=-");
                out.extend_from_slice(eol);
            }
            Some(b"i=" | b"u=" | b"e=" | b"p=") => changed = true,
            _ => out.extend_from_slice(line),
        }
    }
    changed.then_some(out)
}

/// The caller's user agent: applies PrivaSIP-1 (`tokens.callee` is None)
/// or PrivaSIP-2 to an outgoing request.
pub fn protect_request(msg: &mut Message<'_>, tokens: &DialogTokens) -> Result<(), TransformError> {
    if !msg.is_request() {
        return Err(TransformError::NotARequest);
    }
    let call_id = msg.call_id().ok_or(TransformError::NoCallId)?;
    if call_id.contains('@') {
        return Err(TransformError::CallIdHasHost);
    }
    strip_identifying(msg)?;
    msg.set_user(HeaderName::From, &tokens.caller)?;
    // The Contact's user part is free text and often the real ID.
    msg.set_user(HeaderName::Contact, &tokens.caller)?;
    // REGISTER: To is the caller's own address of record.
    if msg.method().is_some_and(|m| m.as_str() == "REGISTER") {
        msg.set_user(HeaderName::To, &tokens.caller)?;
    }
    if let Some(callee) = &tokens.callee {
        msg.set_user(HeaderName::To, callee)?;
        let ruri = msg.request_uri().ok_or(TransformError::NotARequest)?;
        let new = with_user(ruri, callee)?;
        msg.set_request_uri(new)?;
    }
    Ok(())
}
