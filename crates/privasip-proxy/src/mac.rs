//! What the proxy signs in its own headers, so that what comes back can
//! be told from what an attacker wrote: the Record-Route a dialog's
//! requests must follow, and the Via a stray response is sent on by.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use privasip_message::Via;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

type HmacSha256 = Hmac<Sha256>;

/// The Record-Route parameter that carries the route tag.
pub(crate) const ROUTE_PARAM: &str = "psr";

/// 96 bits: enough that guessing one is hopeless at any request rate.
const TAG_BYTES: usize = 12;

/// The keys, derived from the proxy's secret (one label each).
pub(crate) struct Signer {
    route: Zeroizing<[u8; 32]>,
    via: Zeroizing<[u8; 32]>,
    branch: Zeroizing<[u8; 32]>,
}

/// `HMAC-SHA256(secret, label)`: a key of its own for each use.
pub(crate) fn derive(secret: &[u8; 32], label: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut m = <HmacSha256 as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    m.update(label);
    Zeroizing::new(m.finalize().into_bytes().into())
}

fn tag(key: &[u8; 32], parts: &[&[u8]]) -> String {
    let mut m = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        // Length-prefixed, so no two lists of parts sign the same bytes.
        m.update(&(p.len() as u64).to_be_bytes());
        m.update(p);
    }
    let full = m.finalize().into_bytes();
    B64.encode(&full[..TAG_BYTES])
}

fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

impl Signer {
    pub(crate) fn new(secret: &[u8; 32]) -> Signer {
        Signer {
            route: derive(secret, b"privasip record-route v1"),
            via: derive(secret, b"privasip via v1"),
            branch: derive(secret, b"privasip branch v1"),
        }
    }

    /// The branch of a request identified by `parts`: the same for the
    /// same request (a loop comes back with it), unpredictable and
    /// unrelated to any other proxy's for anyone without our secret.
    pub(crate) fn branch(&self, parts: &[&[u8]]) -> String {
        tag(&self.branch, parts)
    }

    /// The tag our Record-Route carries in a dialog with this Call-ID.
    pub(crate) fn route_tag(&self, call_id: &str) -> String {
        tag(&self.route, &[call_id.as_bytes()])
    }

    /// Whether `got` is the route tag of this Call-ID.
    pub(crate) fn route_ok(&self, call_id: &str, got: &str) -> bool {
        same(&self.route_tag(call_id), got)
    }

    /// The To tag of a stateless reply to a request with this Call-ID
    /// and From tag: the same for every retransmission, and recognisable
    /// in the ACK that answers it, with nothing kept.
    pub(crate) fn reply_tag(&self, call_id: &str, from_tag: &str) -> String {
        tag(
            &self.route,
            &[b"reply", call_id.as_bytes(), from_tag.as_bytes()],
        )
    }

    /// The tag our Via carries over the Via below it (the hop we took the
    /// request from), so that a response arriving without a transaction
    /// is only ever sent where the request came from.
    pub(crate) fn via_tag(&self, our_branch: &str, upstream: &Via<'_>) -> String {
        let port = upstream.port.unwrap_or(0).to_be_bytes();
        tag(
            &self.via,
            &[
                our_branch.as_bytes(),
                upstream.transport.to_ascii_uppercase().as_bytes(),
                upstream.host.to_ascii_lowercase().as_bytes(),
                &port,
                upstream.received().unwrap_or("").as_bytes(),
                upstream.rport().flatten().unwrap_or("").as_bytes(),
                upstream.branch().unwrap_or("").as_bytes(),
            ],
        )
    }

    /// Whether `got` is the tag of this branch over `upstream`.
    pub(crate) fn via_ok(&self, our_branch: &str, upstream: &Via<'_>, got: &str) -> bool {
        same(&self.via_tag(our_branch, upstream), got)
    }
}
