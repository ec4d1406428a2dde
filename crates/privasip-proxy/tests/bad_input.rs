//! Whatever arrives, the proxy core neither panics nor sends anything it
//! could not parse itself: torture and realistic messages with random
//! bytes changed, cut short or run together, with and without Digest.

// Tests need some starting instant; which one does not matter.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::{Duration, Instant};

use common::mutated::mutated;
use common::proxy;
use privasip_message::{Limits, Message};
use proptest::prelude::*;

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
