//! Test messages with random bytes changed or cut short, for the
//! bad-input property tests of the proxy core and (included by path) the
//! user agent.

use std::path::Path;

use proptest::prelude::*;

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

/// One of them with up to 8 bytes changed, maybe cut short.
pub(crate) fn mutated() -> impl Strategy<Value = Vec<u8>> {
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
