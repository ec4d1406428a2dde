//! Whatever arrives, a user agent neither panics nor sends anything it
//! could not parse itself: torture and realistic messages with random
//! bytes changed or cut short, while idle and while it has a call.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use privasip_message::{Limits, Message};
use privasip_ua::{Answer, Privacy};
use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;

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
        cases: 1000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn mutated_messages_never_panic_and_every_output_parses(
        msgs in proptest::collection::vec(mutated(), 1..4),
        seed in any::<u64>(),
    ) {
        #[allow(clippy::disallowed_methods)] // some starting instant
        let t0 = Instant::now();
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let mut ua = common::ua("bob", "zanzibar", "example.com", "proxy", Privacy::Plain, Answer::Accept);
        for (k, bytes) in msgs.iter().enumerate() {
            let now = t0 + Duration::from_millis(10 * k as u64);
            ua.receive(now, bytes, "proxy", &mut rng);
            ua.receive(now, bytes, "proxy", &mut rng);
            ua.handle_timeout(now + Duration::from_millis(400), &mut rng);
            while let Some(t) = ua.poll_transmit() {
                let out = Message::parse_datagram(&t.bytes, &Limits::default())
                    .and_then(|m| m.validated(&Limits::default()));
                prop_assert!(out.is_ok(), "sent something unparseable: {:?}", out.err());
            }
        }
        ua.handle_timeout(t0 + Duration::from_secs(64), &mut rng);
        while ua.poll_transmit().is_some() {}
    }
}
