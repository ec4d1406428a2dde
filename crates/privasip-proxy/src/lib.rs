#![doc = include_str!("../README.md")]

mod auth;
mod budget;
mod gate;
mod hide;
mod mac;
mod peer;
mod proxy;
mod relay;
mod response;
mod timer_c;

pub use auth::{
    Credentials, FAILURE_WINDOW, KNOWN_SOURCE_FOR, MAX_FAILURES, MAX_SOURCE_FAILURES,
    MAX_USER_FAILURES,
};
pub use budget::SourceKey;
pub use gate::{OPENS_BURST, OPENS_PER_SECOND};
pub use hide::{ANONYMOUS_HOST, Hiding};
pub use peer::{MAX_PEER_KEYS, PEER_SCHEME, PeerKey, PeerKeys, TooManyPeerKeys};
pub use privasip_transaction::Circuit;
pub use proxy::{
    Next, Notice, Proxy, ProxyConfig, REQUESTS_BURST, REQUESTS_PER_SECOND, Resolver, StoreEvent,
};
pub use relay::{BadNetwork, Network, Origin, Refusal, RelayPolicy, is_internal};
pub use response::response_for;
pub use timer_c::{DEFAULT_TIMER_C, MAX_TIMER_C};
