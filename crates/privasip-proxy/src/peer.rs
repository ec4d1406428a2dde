//! Peer proxies that prove who they are, so that they are budgeted apart
//! from strangers.
//!
//! Over Tor every peer is anonymous: a call from another provider's proxy
//! and an attacker's flood arrive the same way, and per-circuit budgets
//! alone let a flood of fresh circuits starve everyone. So two proxies
//! may share a key (or a federation of them share one). The sender signs
//! each request it forwards to a peer with a `Proxy-Authorization:
//! PrivaSIP-Peer` credential (RFC 3261 §22.3: credentials for a proxy,
//! consumed by it); the receiver checks it with an HMAC (no public-key
//! work), charges the request to that key's own budget instead of the
//! shared Tor one, and removes the credential before forwarding.
//!
//! What the receiver learns is which key signed: with a key per peer,
//! which provider sent the call; with one key for a federation, only that
//! a member did. The MAC covers the method, Request-URI, Call-ID and
//! CSeq, so a credential is good for that one request only; only the two
//! ends of an (end-to-end encrypted) Tor stream ever see it.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use privasip_message::{HeaderName, Message};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// The credential's scheme.
pub const PEER_SCHEME: &str = "PrivaSIP-Peer";

/// Keys a proxy may share: each credential is tried against all of them.
pub const MAX_PEER_KEYS: usize = 32;

/// A key shared with a peer proxy (or a federation of them). `Debug`
/// shows its name only.
pub struct PeerKey {
    name: String,
    key: Zeroizing<[u8; 32]>,
    sends_to: Vec<String>,
}

impl fmt::Debug for PeerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerKey")
            .field("name", &self.name)
            .field("key", &"<redacted>")
            .field("sends_to", &self.sends_to.len())
            .finish()
    }
}

impl Clone for PeerKey {
    fn clone(&self) -> Self {
        PeerKey {
            name: self.name.clone(),
            key: Zeroizing::new(*self.key),
            sends_to: self.sends_to.clone(),
        }
    }
}

impl PeerKey {
    /// A key called `name` (for logs and configuration), used to sign
    /// requests whose next hop is one of `sends_to` (domains or onion
    /// hosts; empty: a key we only check).
    pub fn new(name: impl Into<String>, key: [u8; 32], sends_to: Vec<String>) -> PeerKey {
        PeerKey {
            name: name.into(),
            key: Zeroizing::new(key),
            sends_to: sends_to.iter().map(|h| h.to_ascii_lowercase()).collect(),
        }
    }

    /// A key as a peer key file holds it (base64url, 43 characters).
    pub fn encode(key: &[u8; 32]) -> String {
        B64.encode(key)
    }

    /// The key in a peer key file's text (surrounding white space
    /// ignored); `None` unless it is 32 bytes in base64url.
    pub fn decode(text: &str) -> Option<Zeroizing<[u8; 32]>> {
        let bytes = Zeroizing::new(B64.decode(text.trim().as_bytes()).ok()?);
        let key: [u8; 32] = bytes.as_slice().try_into().ok()?;
        Some(Zeroizing::new(key))
    }

    /// The name it was configured under.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn mac(&self, method: &str, ruri: &str, call_id: &str, cseq: u32) -> [u8; 32] {
        let mut m =
            <Hmac<Sha256> as Mac>::new_from_slice(&*self.key).expect("HMAC takes any key length");
        m.update(b"privasip peer v1");
        for p in [method.as_bytes(), ruri.as_bytes(), call_id.as_bytes()] {
            m.update(&(p.len() as u64).to_be_bytes());
            m.update(p);
        }
        m.update(&cseq.to_be_bytes());
        m.finalize().into_bytes().into()
    }
}

/// The keys this proxy shares with peers.
#[derive(Clone, Debug, Default)]
pub struct PeerKeys {
    keys: Vec<PeerKey>,
}

/// More keys than [`MAX_PEER_KEYS`].
#[derive(Debug, PartialEq, Eq)]
pub struct TooManyPeerKeys;

impl fmt::Display for TooManyPeerKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "more than {MAX_PEER_KEYS} peer keys (share one key among a federation instead)"
        )
    }
}

impl std::error::Error for TooManyPeerKeys {}

impl PeerKeys {
    /// At most [`MAX_PEER_KEYS`]: each credential is checked against
    /// every key, and that work is done before any budget is charged.
    pub fn new(keys: Vec<PeerKey>) -> Result<PeerKeys, TooManyPeerKeys> {
        if keys.len() > MAX_PEER_KEYS {
            return Err(TooManyPeerKeys);
        }
        Ok(PeerKeys { keys })
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The credential for `req`, about to go to `hop_host`, if we share a
    /// key with that host.
    pub(crate) fn credential(&self, hop_host: &str, req: &Message<'_>) -> Option<String> {
        let host = hop_host.to_ascii_lowercase();
        let key = self.keys.iter().find(|k| k.sends_to.contains(&host))?;
        let (method, ruri, call_id, cseq) = signed_fields(req)?;
        let mac = B64.encode(key.mac(method, ruri, call_id, cseq));
        Some(format!("{PEER_SCHEME} realm=\"{host}\", mac=\"{mac}\""))
    }

    /// Which key (an index, stable while the configuration is) signed
    /// `req`'s peer credential, if any did.
    pub(crate) fn verify(&self, req: &Message<'_>) -> Option<u16> {
        if self.keys.is_empty() {
            return None;
        }
        let got = peer_macs(req).next()?;
        let (method, ruri, call_id, cseq) = signed_fields(req)?;
        self.keys
            .iter()
            .position(|k| bool::from(k.mac(method, ruri, call_id, cseq).ct_eq(&got)))
            .and_then(|i| u16::try_from(i).ok())
    }
}

/// What a credential covers.
fn signed_fields<'m>(req: &'m Message<'_>) -> Option<(&'m str, &'m str, &'m str, u32)> {
    let method = req.method()?.as_str();
    let ruri = req.request_uri()?;
    let call_id = req.call_id()?;
    let cseq = req.cseq()?.seq;
    Some((method, ruri, call_id, cseq))
}

/// The MACs of the request's peer credentials (32 bytes each; others
/// are skipped).
fn peer_macs<'m>(req: &'m Message<'_>) -> impl Iterator<Item = [u8; 32]> + 'm {
    req.auth_values(HeaderName::ProxyAuthorization)
        .filter_map(|a| {
            if !a.scheme.eq_ignore_ascii_case(PEER_SCHEME) {
                return None;
            }
            let mac = a.param("mac")?;
            let bytes = B64.decode(mac.as_bytes()).ok()?;
            <[u8; 32]>::try_from(bytes.as_slice()).ok()
        })
}

/// Removes every peer credential from `m` (they end at the first proxy
/// that reads them, verified or not). Returns how many went.
pub(crate) fn remove_peer_credentials(m: &mut Message<'_>) -> usize {
    m.remove_auth_scheme(HeaderName::ProxyAuthorization, PEER_SCHEME)
}
