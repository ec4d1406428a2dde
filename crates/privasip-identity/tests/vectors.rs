//! PrivaSIP token test vectors in testdata/privasip-vectors.txt, made with
//! fixed randomness, so that another implementation can check that it
//! opens our tokens (and this one that it still makes them byte for byte).
//!
//! Regenerate after a deliberate format change with
//! `PRIVASIP_WRITE_VECTORS=1 cargo test -p privasip-identity --test vectors`.

#![allow(clippy::disallowed_methods)] // a starting instant for the keyring

use std::fmt::Write as _;
use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use privasip_identity::{
    AesDirectory, AesSender, Encryptor, Keyring, PrivateKey, RealId, SchemeId, Token,
};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

fn path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/privasip-vectors.txt")
}

const HEADER: &str = "\
# PrivaSIP token test vectors (token format ps1; see doc/privasip.md).
#
# Each block: scheme; the recipient's private key (the `key:` field of a
# privasip key file: RSA PKCS#8 DER, P-256 scalar or X25519 key, base64url
# without padding) or, for aes, the shared secret (UTF-8) and counter;
# the context (the dialog's Call-ID, UTF-8); the ID; the token. Opening the
# token with the key and context must give the ID; any other context must
# fail. `seed` is the ChaCha20 seed our implementation sealed with.
";

struct Vector {
    scheme: SchemeId,
    seed: u64,
    key: String,
    counter: u64,
    context: String,
    id: String,
    token: String,
}

fn cases() -> Vec<(SchemeId, usize, u64, &'static str, String)> {
    let long = "a.user-name_with~every+allowed!char*and'digits(0123456789)xyz";
    vec![
        (SchemeId::Hpke, 0, 1, "call-1", "alice".into()),
        (SchemeId::Hpke, 0, 2, "call-2", long.into()),
        (SchemeId::Ecies, 0, 3, "call-3", "bob".into()),
        (SchemeId::Rsa, 2048, 4, "call-4", "carol".into()),
        (SchemeId::Aes, 0, 5, "call-5", "dave".into()),
    ]
}

fn generate() -> String {
    let mut out = HEADER.to_owned();
    for (scheme, bits, seed, context, id) in cases() {
        let real = RealId::new(id.as_str()).expect("id");
        let (key, counter, mut enc): (String, u64, Box<dyn Encryptor>) = if scheme == SchemeId::Aes
        {
            let secret = "5d41402abc4b2a76b9719d911017c592";
            (
                secret.into(),
                42,
                Box::new(AesSender::new(secret.as_bytes(), 42)),
            )
        } else {
            let mut keygen_rng = ChaCha20Rng::seed_from_u64(1000 + seed);
            let k = PrivateKey::generate(scheme, bits, &mut keygen_rng).expect("keygen");
            let text = k.to_text();
            let field = text
                .lines()
                .find_map(|l| l.strip_prefix("key: "))
                .expect("key line")
                .to_owned();
            (field, 0, k.public().encryptor())
        };
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let token = enc.seal(&real, context.as_bytes(), &mut rng).expect("seal");
        writeln!(
            out,
            "\nscheme: {scheme}\nseed: {seed}\nkey: {key}\ncounter: {counter}\ncontext: {context}\nid: {id}\ntoken: {token}"
        )
        .expect("write to string");
    }
    out
}

fn parse(text: &str) -> Vec<Vector> {
    text.split("\n\n")
        .filter(|b| b.contains("token: "))
        .map(|block| {
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(&format!("{name}: ")))
                    .unwrap_or_else(|| panic!("field {name} in {block}"))
                    .to_owned()
            };
            Vector {
                scheme: SchemeId::from_name(&field("scheme")).expect("scheme"),
                seed: field("seed").parse().expect("seed"),
                key: field("key"),
                counter: field("counter").parse().expect("counter"),
                context: field("context"),
                id: field("id"),
                token: field("token"),
            }
        })
        .collect()
}

/// A key file's text around a vector's `key:` field.
fn key_file(v: &Vector) -> String {
    let key = PrivateKey::from_text(&format!(
        "privasip private key v1\nscheme: {}\nkey: {}\n",
        v.scheme, v.key
    ))
    .expect("vector key");
    key.to_text().to_string()
}

#[test]
fn vectors_open_and_reproduce() {
    if std::env::var_os("PRIVASIP_WRITE_VECTORS").is_some() {
        std::fs::write(path(), generate()).expect("write vectors");
    }
    let text = std::fs::read_to_string(path()).expect("testdata/privasip-vectors.txt");
    let vectors = parse(&text);
    assert_eq!(vectors.len(), cases().len());
    for v in &vectors {
        let id = RealId::new(v.id.as_str()).expect("id");
        let token = Token::parse(&v.token).expect("token parses");
        assert_eq!(token.scheme, v.scheme);
        // Opens to the ID with its context, and with no other.
        let (opened, mut enc): (RealId, Box<dyn Encryptor>) = if v.scheme == SchemeId::Aes {
            let mut dir = AesDirectory::default();
            dir.add_user(id.clone(), v.key.as_bytes(), v.counter);
            assert!(dir.open(&token, b"another call").is_err());
            let o = dir.open(&token, v.context.as_bytes()).expect("opens");
            (o.id, Box::new(AesSender::new(v.key.as_bytes(), v.counter)))
        } else {
            let key = PrivateKey::from_text(&key_file(v)).expect("key");
            let enc = key.public().encryptor();
            let mut ring = Keyring::default();
            ring.add_key(key.into_decryptor());
            let now = std::time::Instant::now();
            assert!(ring.open(&v.token, b"another call", now).is_err());
            (
                ring.open(&v.token, v.context.as_bytes(), now)
                    .expect("opens")
                    .id,
                enc,
            )
        };
        assert_eq!(opened, id, "{}", v.scheme);
        // This implementation still seals to the same bytes.
        let mut rng = ChaCha20Rng::seed_from_u64(v.seed);
        let again = enc.seal(&id, v.context.as_bytes(), &mut rng).expect("seal");
        assert_eq!(again.to_string(), v.token, "{} token changed", v.scheme);
        assert!(B64.decode(&v.key).is_ok() || v.scheme == SchemeId::Aes);
    }
}
