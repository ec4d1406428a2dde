//! How messages find their transaction (RFC 3261 §17.1.3, §17.2.3).

use std::sync::Arc;

use privasip_message::{BRANCH_COOKIE, Message};

/// A client transaction: the branch it put in its Via and its method.
/// A response matches on its top Via branch and its CSeq method, so that
/// an INVITE and the CANCEL sharing its branch stay apart.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ClientKey {
    branch: String,
    method: String,
}

impl ClientKey {
    pub(crate) fn of_request(m: &Message<'_>) -> Option<ClientKey> {
        Some(ClientKey {
            branch: m.top_via()?.branch()?.to_owned(),
            method: m.method()?.as_str().to_owned(),
        })
    }

    pub(crate) fn of_response(m: &Message<'_>) -> Option<ClientKey> {
        Some(ClientKey {
            branch: m.top_via()?.branch()?.to_owned(),
            method: m.cseq()?.method.as_str().to_owned(),
        })
    }
}

/// A server transaction. With an RFC 3261 branch (magic cookie): the
/// branch, the top Via's sent-by, and the method, with ACK counted as
/// INVITE. Without one (RFC 2543 peers): the Request-URI, From tag,
/// Call-ID, CSeq number, top Via and method. (The To tag is left out: the
/// ACK for a non-2xx carries the tag our response added.)
///
/// Shared, not copied, between the key index and the transaction: a
/// non-INVITE transaction over UDP lingers for Timer J (32 s), so at
/// thousands of requests a second its bytes add up.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ServerKey(Arc<str>);

impl ServerKey {
    pub(crate) fn of_request(m: &Message<'_>) -> Option<ServerKey> {
        let method = match m.method()?.as_str() {
            "ACK" => "INVITE",
            other => other,
        };
        ServerKey::with_method(m, method)
    }

    /// The key of the INVITE a CANCEL cancels.
    pub(crate) fn for_cancelled_invite(m: &Message<'_>) -> Option<ServerKey> {
        ServerKey::with_method(m, "INVITE")
    }

    fn with_method(m: &Message<'_>, method: &str) -> Option<ServerKey> {
        let via = m.top_via()?;
        let port = via.port.map(|p| p.to_string()).unwrap_or_default();
        match via.branch() {
            Some(b) if b.starts_with(BRANCH_COOKIE) => Some(ServerKey(
                format!("3261\0{b}\0{}:{port}\0{method}", via.host).into(),
            )),
            _ => {
                let from_tag = m.from()?.tag().unwrap_or("").to_owned();
                Some(ServerKey(
                    format!(
                        "2543\0{}\0{from_tag}\0{}\0{}\0{}:{port}\0{}\0{method}",
                        m.request_uri()?,
                        m.call_id()?,
                        m.cseq()?.seq,
                        via.host,
                        via.branch().unwrap_or("")
                    )
                    .into(),
                ))
            }
        }
    }
}
