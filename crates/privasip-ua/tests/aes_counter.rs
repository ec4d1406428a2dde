//! PrivaSIP-AES: no token leaves before its counter is durable. The core
//! asks the driver to persist the next counter and holds every message
//! until the driver says it did (a counter used twice is an AES-GCM nonce
//! used twice, and a crash between sending and saving would do that).

// Tests need some starting instant; which one does not matter.
#![allow(clippy::disallowed_methods)]

mod common;

use std::time::Instant;

use privasip_ua::{AES_BLOCK, Home, Privacy, Ua, UaConfig};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;

fn alice(next_counter: u64) -> Ua<&'static str> {
    Ua::new(
        UaConfig {
            privacy: Privacy::PrivaSip {
                home: Home::Aes { next_counter },
                callee_keys: Default::default(),
            },
            ..common::alice_config()
        },
        "proxy",
    )
}

#[test]
fn a_token_waits_for_its_counter_to_be_persisted() {
    let now = Instant::now();
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let mut ua = alice(5);
    assert_eq!(ua.aes_to_persist(), None, "nothing used yet");

    ua.register(now, &mut rng).expect("registers");
    // The REGISTER's token used counter 5, not yet reserved: a block of
    // four (5..=8) must be on disk first, so a restart begins at 9.
    assert_eq!(ua.aes_to_persist(), Some(5 + AES_BLOCK));
    assert!(ua.poll_transmit().is_none(), "held until persisted");
    // An older value (a late answer from the disk) releases nothing.
    ua.aes_persisted(5);
    assert!(ua.poll_transmit().is_none());
    ua.aes_persisted(9);
    assert_eq!(ua.aes_to_persist(), None);
    assert!(ua.poll_transmit().is_some(), "the REGISTER leaves");

    // Counters 6, 7 and 8 are reserved already: those calls' INVITEs
    // leave at once.
    for _ in 6..=8 {
        ua.call(now, "sip:bob@b.example", &mut rng).expect("calls");
        assert_eq!(ua.aes_to_persist(), None);
        assert!(ua.poll_transmit().is_some(), "the INVITE leaves");
    }
    // Counter 9 starts the next block.
    ua.call(now, "sip:bob@b.example", &mut rng).expect("calls");
    assert_eq!(ua.aes_to_persist(), Some(13));
    assert!(ua.poll_transmit().is_none());

    // A crash now: the next run starts where the disk says (9), and the
    // INVITE that used 9 never left. No counter is used twice, and at
    // most three are skipped (the proxy's window is 8).
    let restarted = alice(9);
    assert_eq!(restarted.aes_next_counter(), Some(9));
}

#[test]
fn other_schemes_never_wait() {
    let now = Instant::now();
    let mut rng = ChaCha20Rng::seed_from_u64(6);
    let mut ua = Ua::new(common::alice_config(), "proxy");
    ua.register(now, &mut rng).expect("registers");
    assert_eq!(ua.aes_to_persist(), None);
    assert!(ua.poll_transmit().is_some());
}
