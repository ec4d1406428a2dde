//! What the RFC 4475 and bad-input tests share: a proxy core for
//! example.com whose every next hop is "next", and the test messages.

// Tests need some starting instant; which one does not matter.
#![allow(clippy::disallowed_methods, dead_code, unreachable_pub)]

pub mod mutated;

use std::path::Path;
use std::time::Instant;

use privasip_proxy::{Next, Origin, Proxy, ProxyConfig, RelayPolicy};

pub fn proxy(authenticate: bool) -> Proxy<&'static str> {
    let cfg = ProxyConfig {
        authenticate,
        // Every peer here is a trusted one: these tests are about
        // messages, not about whom the proxy relays for.
        relay: RelayPolicy {
            trusted: vec!["192.0.2.99".parse().expect("a network")],
            ..RelayPolicy::default()
        },
        ..ProxyConfig::new("example.com", "192.0.2.10:5060")
    };
    let mut p = Proxy::new(
        cfg,
        Box::new(|_: &str, _: Option<u16>, _: &str| {
            Some(Next {
                peer: "next",
                reliable: false,
            })
        }),
        [3; 32],
        Instant::now(),
    );
    p.set_origin(Box::new(|_| Origin::Ip([192, 0, 2, 99].into())));
    p
}

pub fn torture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../testdata/rfc4475")
            .join(name),
    )
    .expect("torture message")
}
