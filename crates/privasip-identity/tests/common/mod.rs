#![allow(dead_code, unreachable_pub, missing_docs)]
//! Keys shared by the tests of one binary: RSA key generation is slow in
//! debug builds, so each size is made once.

use std::sync::OnceLock;

use privasip_identity::{PrivateKey, SchemeId};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

pub fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

/// The text of a private key for each public-key scheme (and RSA size).
pub fn key_text(scheme: SchemeId, bits: usize) -> &'static str {
    static KEYS: OnceLock<Vec<(SchemeId, usize, String)>> = OnceLock::new();
    let keys = KEYS.get_or_init(|| {
        let mut r = rng(7);
        [
            (SchemeId::Rsa, 2048),
            (SchemeId::Rsa, 3072),
            (SchemeId::Ecies, 0),
            (SchemeId::Hpke, 0),
        ]
        .into_iter()
        .map(|(s, b)| {
            let k = PrivateKey::generate(s, b, &mut r).expect("keygen");
            (s, b, k.to_text().to_string())
        })
        .collect()
    });
    &keys
        .iter()
        .find(|(s, b, _)| *s == scheme && *b == bits)
        .expect("a test key of that kind")
        .2
}

pub fn private_key(scheme: SchemeId, bits: usize) -> PrivateKey {
    PrivateKey::from_text(key_text(scheme, bits)).expect("test key reads back")
}

/// Every public-key scheme and size under test.
pub const PUBLIC_SCHEMES: [(SchemeId, usize); 4] = [
    (SchemeId::Rsa, 2048),
    (SchemeId::Rsa, 3072),
    (SchemeId::Ecies, 0),
    (SchemeId::Hpke, 0),
];
