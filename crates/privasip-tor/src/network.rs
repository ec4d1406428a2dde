//! A private Tor network's description, as clients need it.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// What a client needs to join a private Tor network instead of the public
/// one: its directory authorities (also used as fallback directories).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrivateNetwork {
    /// The directory authorities.
    pub authorities: Vec<DirAuthority>,
    /// The authorities' `V3AuthVotingInterval`, in seconds. A test network
    /// derives its hidden-service directory period from it
    /// (24 * interval / 60 minutes), and arti must be told the same.
    pub voting_interval_secs: u32,
}

impl PrivateNetwork {
    /// The hidden-service directory period, in minutes.
    pub fn hsdir_interval_minutes(&self) -> u32 {
        (24 * self.voting_interval_secs / 60).max(1)
    }
}

/// One directory authority.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirAuthority {
    /// Its nickname.
    pub nickname: String,
    /// Its v3 authority identity (the certificate's fingerprint, hex).
    pub v3ident: String,
    /// Its relay RSA identity fingerprint (hex, 40 digits).
    pub fingerprint: String,
    /// Its relay Ed25519 identity (unpadded base64).
    pub ed25519: String,
    /// Its OR port.
    pub or_addr: SocketAddr,
    /// Its directory port.
    pub dir_addr: SocketAddr,
}
