//! What one offline guess at a sniffed Digest exchange costs. A LAN
//! observer of the first hop holds nonce, cnonce, nc, method, uri and the
//! response; one guess of (user, password) is one HA1 and one response
//! to compare (HA2 is the same for every guess). The paper's model
//! trusts the LAN; this says how much that trust is worth
//! (doc/privasip.md, threat model).

#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use privasip_digest::{Algorithm, Challenge, Ha1};

fn guess(c: &mut Criterion) {
    for (name, alg) in [("md5", Algorithm::Md5), ("sha256", Algorithm::Sha256)] {
        let challenge = Challenge {
            algorithm: alg,
            nonce: "f1Zq0Yd9v3Qm5c2Hk7Lr8Tn4Wb6Xe1Sa0Pu3Gj5Ko9Iy",
            qop: Some("auth"),
        };
        c.bench_function(&format!("digest/offline-guess/{name}"), |b| {
            b.iter(|| {
                let ha1 = Ha1::from_password(alg, "alice", "a.example", black_box("wonderland"));
                challenge.response(
                    &ha1,
                    "INVITE",
                    "sip:ps1h.token@b.example",
                    "00000001",
                    "0a4f113b",
                )
            })
        });
    }
}

criterion_group!(benches, guess);
criterion_main!(benches);
