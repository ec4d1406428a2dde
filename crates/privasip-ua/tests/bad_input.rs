//! Whatever arrives, a user agent neither panics nor sends anything it
//! could not parse itself: torture and realistic messages with random
//! bytes changed or cut short, while idle and while it has a call.

mod common;
#[path = "../../privasip-proxy/tests/common/mutated.rs"]
mod mutated;

use std::time::{Duration, Instant};

use mutated::mutated;
use privasip_message::{Limits, Message};
use privasip_ua::{Answer, Privacy};
use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;

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
