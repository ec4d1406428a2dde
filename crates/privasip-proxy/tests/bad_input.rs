//! Whatever arrives, the proxy core neither panics nor sends anything it
//! could not parse itself: torture and realistic messages with random
//! bytes changed, cut short or run together, with and without Digest.

// Tests need some starting instant; which one does not matter.
#![allow(clippy::disallowed_methods)]

use std::path::Path;
use std::time::{Duration, Instant};

use privasip_digest::Algorithm;
use privasip_message::{Limits, Message};
use privasip_proxy::{Next, Proxy, ProxyConfig};
use privasip_registrar::RegistrarConfig;
use proptest::prelude::*;

fn proxy(authenticate: bool) -> Proxy<&'static str> {
    let cfg = ProxyConfig {
        domains: vec!["example.com".into()],
        sent_by: "192.0.2.10:5060".into(),
        record_route: true,
        authenticate,
        registrar: RegistrarConfig::default(),
        digest: vec![Algorithm::Sha256, Algorithm::Md5],
    };
    Proxy::new(
        cfg,
        Box::new(|_: &str, _: Option<u16>, _: &str| {
            Some(Next {
                peer: "next",
                reliable: false,
            })
        }),
        [3; 32],
        Instant::now(),
    )
}

/// Every RFC 4475 message and the realistic bench messages.
fn corpus() -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata");
    ["rfc4475", "bench"]
        .iter()
        .flat_map(|d| std::fs::read_dir(root.join(d)).expect("testdata"))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "dat" || x == "sip"))
        .map(|p| std::fs::read(p).expect("read"))
        .collect()
}

fn mutated() -> impl Strategy<Value = Vec<u8>> {
    let corpus = corpus();
    let n = corpus.len();
    (
        0..n,
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        any::<prop::sample::Index>(),
        any::<bool>(),
    )
        .prop_map(move |(i, edits, cut, truncate)| {
            let mut bytes = corpus[i].clone();
            for (at, b) in edits {
                let at = at.index(bytes.len());
                bytes[at] = b;
            }
            if truncate {
                bytes.truncate(cut.index(bytes.len() + 1));
            }
            bytes
        })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 3000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn mutated_messages_never_panic_and_every_output_parses(
        msgs in proptest::collection::vec(mutated(), 1..4),
        authenticate in any::<bool>(),
    ) {
        let mut p = proxy(authenticate);
        let t0 = Instant::now();
        for (k, bytes) in msgs.iter().enumerate() {
            let now = t0 + Duration::from_millis(10 * k as u64);
            p.receive(now, bytes, "client", false);
            // A retransmission of the same bytes, as UDP may deliver it.
            p.receive(now, bytes, "client", false);
            while let Some(t) = p.poll_transmit() {
                let out = Message::parse_datagram(&t.bytes, &Limits::default())
                    .and_then(|m| m.validated(&Limits::default()));
                prop_assert!(out.is_ok(), "sent something unparseable: {:?}", out.err());
            }
        }
        // Timers fire on whatever is left, without panicking.
        p.handle_timeout(t0 + Duration::from_secs(64));
        while p.poll_transmit().is_some() {}
    }
}
