#![doc = include_str!("../README.md")]

mod build;
mod ua;

use std::collections::HashMap;
use std::time::Duration;

use privasip_identity::PublicKey;
pub use privasip_message::Sensitive;
use zeroize::Zeroizing;

pub use privasip_transaction::Circuit;
pub use ua::{AES_BLOCK, CallId, Ua, UaEvent, flow_host};

/// How this user agent protects identities.
#[derive(Default)]
pub enum Privacy {
    /// Plain SIP: real IDs in From, To, Contact and the Digest user name.
    #[default]
    Plain,
    /// PrivaSIP: the caller's ID encrypted to `home` (PrivaSIP-1); the
    /// callee's too when `callee_keys` has its domain (PrivaSIP-2).
    PrivaSip {
        /// How the caller's ID is hidden from all but the home proxy.
        home: Home,
        /// Public keys of callee domains, by domain.
        callee_keys: HashMap<String, PublicKey>,
    },
}

impl std::fmt::Debug for Privacy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Privacy::Plain => f.write_str("Plain"),
            Privacy::PrivaSip { callee_keys, .. } => f
                .debug_struct("PrivaSip")
                .field("callee_domains", &callee_keys.len())
                .finish_non_exhaustive(),
        }
    }
}

/// How the caller's token is made for the home proxy.
pub enum Home {
    /// Encrypted to the home proxy's public key (RSA, ECIES, HPKE).
    Key(PublicKey),
    /// PrivaSIP-AES: under a key derived from our SHA-256 HA1, which the
    /// home proxy stores anyway. Each token uses a counter: the user
    /// agent asks the driver to persist it ([`Ua::aes_to_persist`]) and
    /// sends nothing until told it is done; the next run starts from it.
    Aes {
        /// The counter the first token uses.
        next_counter: u64,
    },
}

/// What to do with an incoming call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Ring, then answer with 200.
    Accept,
    /// 486 Busy Here.
    Busy,
    /// 603 Decline.
    Decline,
}

/// The user agent's settings.
#[derive(Debug)]
pub struct UaConfig {
    /// The user (real ID; never sent under PrivaSIP).
    pub user: Sensitive<String>,
    /// A display name for From (sent in plain SIP only: PrivaSIP removes
    /// display names).
    pub display_name: Option<Sensitive<String>>,
    /// The home domain (registrar, Digest realm).
    pub domain: String,
    /// The Digest password.
    pub password: Sensitive<Zeroizing<String>>,
    /// `host:port` for Via and Contact (an onion name behind Tor).
    pub local: Sensitive<String>,
    /// Whether the transport to the proxy is reliable (TCP, Tor).
    pub reliable: bool,
    /// Ask to be reached over the connection we register on (RFC 5626
    /// style: `;ob` in our Contact). Behind Tor without an onion service
    /// of our own, that is how calls reach us.
    pub outbound: bool,
    /// Requested registration lifetime, seconds.
    pub expires: u32,
    /// Identity protection.
    pub privacy: Privacy,
    /// Incoming calls: what to answer.
    pub answer: Answer,
    /// Incoming calls: how long to ring before answering.
    pub ring_time: Duration,
    /// Give each call we place a Tor circuit of its own: all its requests
    /// name one [`privasip_transaction::Circuit`] that no other call's do
    /// (registrations and calls to us share one).
    pub call_circuits: bool,
}

impl UaConfig {
    /// A user agent for `user` at `domain`, proving itself with
    /// `password`, named `local` (`host:port`) in Via and Contact; plain
    /// SIP over UDP, registering for an hour (RFC 3261's default),
    /// answering calls at once, all on one circuit.
    pub fn new(
        user: impl Into<String>,
        domain: impl Into<String>,
        password: Zeroizing<String>,
        local: impl Into<String>,
    ) -> UaConfig {
        UaConfig {
            user: Sensitive::new(user.into()),
            display_name: None,
            domain: domain.into(),
            password: Sensitive::new(password),
            local: Sensitive::new(local.into()),
            reliable: false,
            outbound: false,
            expires: 3600,
            privacy: Privacy::Plain,
            answer: Answer::Accept,
            ring_time: Duration::ZERO,
            call_circuits: false,
        }
    }
}

/// A user agent's refusal to do something.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UaError {
    /// The target is not a SIP URI.
    #[error("not a SIP URI: {0}")]
    BadTarget(String),
    /// An identity could not be encrypted.
    #[error("PrivaSIP: the identity could not be encrypted")]
    Identity(#[from] privasip_identity::IdentityError),
    /// PrivaSIP could not be applied to a request.
    #[error("PrivaSIP: the request could not be protected")]
    Protect(#[from] privasip_identity::transform::TransformError),
    /// A message this user agent built does not parse or edit.
    #[error("cannot build the message")]
    Build(#[from] privasip_message::ParseError),
    /// The transaction layer refused the request.
    #[error("cannot send")]
    Send(#[from] privasip_transaction::TxError),
    /// The call has no dialog yet (or any more) to send in.
    #[error("the call is not established")]
    NotEstablished,
    /// Our own INVITE gave no CANCEL.
    #[error("cannot build a CANCEL from our INVITE")]
    NoCancel,
    /// No such call.
    #[error("no such call")]
    NoCall,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_in_a_log_names_no_user_password_or_address() {
        let mut cfg = UaConfig::new(
            "alice",
            "a.example",
            Zeroizing::new("wonderland".into()),
            "abcdefghijklmnop.onion:5060",
        );
        cfg.display_name = Some(Sensitive::new("Alice Liddell".into()));
        let shown = format!("{cfg:?} {cfg:#?}");
        for secret in ["alice", "Alice", "wonderland", "abcdefghijklmnop"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(
            shown.contains("a.example"),
            "the domain is routing, not a secret"
        );
    }
}
