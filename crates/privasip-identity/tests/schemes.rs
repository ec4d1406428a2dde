//! The four properties every scheme must have (unlinkable, no per-user
//! work, fits SIP, bound to its dialog), plus authenticity and key files.

// Tests need some starting instant; which one does not matter.
#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::{PUBLIC_SCHEMES, private_key, rng};
use privasip_identity::{
    AesDirectory, AesSender, Encryptor, IdentityError, Keyring, PrivateKey, PublicKey, RealId,
    SchemeId, Token,
};

fn id(s: &str) -> RealId {
    RealId::new(s).expect("valid id")
}

/// An encryptor and a keyring that opens its tokens, for every scheme.
fn pairs() -> Vec<(String, Box<dyn Encryptor>, Keyring)> {
    let mut out = Vec::new();
    for (scheme, bits) in PUBLIC_SCHEMES {
        let key = private_key(scheme, bits);
        let enc = key.public().encryptor();
        let mut ring = Keyring::default();
        ring.add_key(key.into_decryptor());
        out.push((format!("{scheme}{bits}"), enc, ring));
    }
    let secret = b"sha-256 HA1 of alice, in bytes...";
    let mut ring = Keyring::default();
    ring.aes_mut().add_user(id("alice"), secret, 0);
    out.push((
        "aes".to_owned(),
        Box::new(AesSender::new(secret, 0)) as Box<dyn Encryptor>,
        ring,
    ));
    out
}

#[test]
fn round_trip_for_every_scheme() {
    let mut r = rng(1);
    let now = Instant::now();
    for (name, mut enc, mut ring) in pairs() {
        let t = enc.seal(&id("alice"), b"call-1", &mut r).expect("seal");
        let s = t.to_string();
        assert_eq!(Token::parse(&s).expect("parses"), t, "{name}");
        let opened = ring.open(&s, b"call-1", now).expect("opens");
        assert_eq!(opened.id, id("alice"), "{name}");
        assert!(!opened.cached);
        // The dialog's next message is served from the cache.
        assert!(
            ring.open(&s, b"call-1", now).expect("cached").cached,
            "{name}"
        );
    }
}

/// Property 1: two dialogs' tokens differ, and their lengths say nothing
/// about which user (or which ID length up to 63 bytes) they hide.
#[test]
fn tokens_are_unlinkable_and_length_hiding() {
    let mut r = rng(2);
    for (scheme, bits) in PUBLIC_SCHEMES {
        let mut enc = private_key(scheme, bits).public().encryptor();
        let mut seen = HashSet::new();
        let mut lengths = HashSet::new();
        for who in [
            "al",
            "alice",
            "a-very-long-user-name.with.dots-and-numbers-1234567890-xyzw",
        ] {
            for call in [&b"c1"[..], b"c2", b"c2"] {
                let t = enc.seal(&id(who), call, &mut r).expect("seal").to_string();
                lengths.insert(t.len());
                assert!(seen.insert(t), "{scheme}{bits}: a token repeated");
            }
        }
        assert_eq!(lengths.len(), 1, "{scheme}{bits}: lengths {lengths:?}");
    }
    // AES: the same, per user and across users.
    let mut lengths = HashSet::new();
    let mut seen = HashSet::new();
    for (who, secret) in [
        ("al", &b"k1"[..]),
        ("a-much-longer-user-name-0123456789", b"k2"),
    ] {
        let mut s = AesSender::new(secret, 0);
        for _ in 0..3 {
            let t = s.seal(&id(who), b"c", &mut r).expect("seal").to_string();
            lengths.insert(t.len());
            assert!(seen.insert(t));
        }
    }
    assert_eq!(lengths.len(), 1, "aes lengths {lengths:?}");
}

/// Property 2: opening costs one lookup, whatever the number of users.
/// AES, the hard case, must find the user by index, not by trying keys:
/// with many users, each token still opens to exactly its owner.
#[test]
fn aes_finds_the_user_by_index_among_many() {
    let mut dir = AesDirectory::new(4);
    let users = 2000u32;
    for u in 0..users {
        dir.add_user(id(&format!("user{u}")), &u.to_be_bytes(), 0);
    }
    assert_eq!(dir.len(), users as usize);
    let mut r = rng(3);
    for u in [0, 1, 977, users - 1] {
        let mut s = AesSender::new(&u.to_be_bytes(), 0);
        let t = s
            .seal(&id(&format!("user{u}")), b"c", &mut r)
            .expect("seal");
        let o = dir.open(&t, b"c").expect("opens");
        assert_eq!(o.id, id(&format!("user{u}")));
        assert_eq!(o.next_counter, 1);
    }
}

#[test]
fn aes_window_tolerates_lost_tokens_and_persists_counters() {
    let mut r = rng(4);
    let mut dir = AesDirectory::new(4);
    dir.add_user(id("alice"), b"secret", 10);
    let mut s = AesSender::new(b"secret", 10);
    // Three tokens never reach the proxy; the fourth still opens.
    for _ in 0..3 {
        s.seal(&id("alice"), b"lost", &mut r).expect("seal");
    }
    let t = s.seal(&id("alice"), b"c", &mut r).expect("seal");
    assert_eq!(dir.open(&t, b"c").expect("within window").next_counter, 14);
    // Now five are lost: beyond a window of four.
    for _ in 0..5 {
        s.seal(&id("alice"), b"lost", &mut r).expect("seal");
    }
    let t = s.seal(&id("alice"), b"c", &mut r).expect("seal");
    assert_eq!(
        dir.open(&t, b"c").expect_err("must be refused"),
        IdentityError::UnknownKey
    );
    // A proxy restarted from the persisted counter resynchronises with a
    // sender that is within the window again.
    let mut dir = AesDirectory::new(4);
    dir.add_user(id("alice"), b"secret", 14);
    let mut s = AesSender::new(b"secret", 14);
    let t = s.seal(&id("alice"), b"c", &mut r).expect("seal");
    assert!(dir.open(&t, b"c").is_ok());
    // A user whose secret another user's key cannot open.
    let mut other = AesSender::new(b"other secret", 14);
    let t = other.seal(&id("alice"), b"c", &mut r).expect("seal");
    assert_eq!(
        dir.open(&t, b"c").expect_err("must be refused"),
        IdentityError::UnknownKey
    );
}

/// Property 3: tokens fit a SIP URI user part and a quoted Digest
/// username, and carry their scheme and key id.
#[test]
fn tokens_fit_sip_and_name_their_scheme_and_key() {
    let mut r = rng(5);
    for (name, mut enc, _) in pairs() {
        let t = enc
            .seal(&id("alice"), b"c", &mut r)
            .expect("seal")
            .to_string();
        assert!(Token::looks_like(&t), "{name}");
        let scheme = Token::parse(&t).expect("parse").scheme;
        assert_eq!(enc.scheme(), scheme);
        assert!(t.starts_with(&format!("ps1{}.", scheme.tag())));
        let msg = format!(
            "INVITE sip:{t}@b.example SIP/2.0\r\n\
             Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n\
             From: <sip:{t}@a.example>;tag=1\r\nTo: <sip:{t}@b.example>\r\n\
             Call-ID: c\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n\
             Authorization: Digest username=\"{t}\", realm=\"a.example\", nonce=\"n\", \
             uri=\"sip:b.example\", response=\"00\"\r\nContent-Length: 0\r\n\r\n"
        );
        let m = privasip_message::Message::parse_datagram(
            msg.as_bytes(),
            &privasip_message::Limits::default(),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            privasip_identity::transform::caller_token(&m).as_deref(),
            Some(t.as_str())
        );
        assert_eq!(
            privasip_identity::transform::callee_token(&m).as_deref(),
            Some(t.as_str())
        );
        let auth = m
            .auth_values(privasip_message::HeaderName::Authorization)
            .next()
            .expect("authorization");
        assert_eq!(auth.param("username").as_deref(), Some(t.as_str()));
    }
}

/// Property 4: a token moved to another dialog opens nothing, and an AES
/// token opens once.
#[test]
fn tokens_are_bound_to_their_dialog() {
    let mut r = rng(6);
    let now = Instant::now();
    for (name, mut enc, mut ring) in pairs() {
        let t = enc
            .seal(&id("alice"), b"call-A", &mut r)
            .expect("seal")
            .to_string();
        let err = ring.open(&t, b"call-B", now).expect_err("must be refused");
        assert!(
            matches!(err, IdentityError::Forged),
            "{name}: replay in a new dialog gave {err:?}"
        );
        assert!(ring.open(&t, b"call-A", now).is_ok(), "{name}");
    }
    // AES: once opened, the index is spent; after the dialog's cache entry
    // is gone, the same token opens nothing, even in its own dialog.
    let mut ring = Keyring::new(10, Duration::from_secs(60));
    ring.aes_mut().add_user(id("alice"), b"s", 0);
    let t = AesSender::new(b"s", 0)
        .seal(&id("alice"), b"call-A", &mut r)
        .expect("seal")
        .to_string();
    assert!(ring.open(&t, b"call-A", now).is_ok());
    let later = now + Duration::from_secs(61);
    assert_eq!(
        ring.open(&t, b"call-A", later)
            .expect_err("must be refused"),
        IdentityError::UnknownKey
    );
}

/// Authenticity: any change to a token is caught.
#[test]
fn forged_altered_and_truncated_tokens_are_rejected() {
    let mut r = rng(8);
    let now = Instant::now();
    for (name, mut enc, mut ring) in pairs() {
        let t = enc.seal(&id("alice"), b"c", &mut r).expect("seal");
        // Flip one bit at every position of the ciphertext.
        for i in 0..t.ciphertext.len() {
            let mut bad = t.clone();
            bad.ciphertext[i] ^= 0x01;
            let err = ring
                .open(&bad.to_string(), b"c", now)
                .expect_err("must be refused");
            assert_eq!(err, IdentityError::Forged, "{name}: bit flip at {i}");
        }
        for cut in [1, t.ciphertext.len() / 2, t.ciphertext.len() - 1] {
            let mut bad = t.clone();
            bad.ciphertext.truncate(cut);
            assert_eq!(
                ring.open(&bad.to_string(), b"c", now)
                    .expect_err("must be refused"),
                IdentityError::Forged,
                "{name}: truncated to {cut}"
            );
        }
        let mut bad = t.clone();
        bad.key_id[0] ^= 0x80;
        assert_eq!(
            ring.open(&bad.to_string(), b"c", now)
                .expect_err("must be refused"),
            IdentityError::UnknownKey,
            "{name}: altered key id"
        );
        let s = t.to_string();
        assert!(matches!(
            ring.open(s.get(..s.len() - 3).unwrap_or_default(), b"c", now),
            Err(IdentityError::Forged | IdentityError::NotAToken(_))
        ));
    }
}

#[test]
fn a_token_for_another_key_is_refused() {
    let mut r = rng(9);
    let now = Instant::now();
    let mut ours = Keyring::default();
    ours.add_key(
        PrivateKey::generate(SchemeId::Hpke, 0, &mut r)
            .expect("keygen")
            .into_decryptor(),
    );
    let theirs = PrivateKey::generate(SchemeId::Hpke, 0, &mut r).expect("keygen");
    let t = theirs
        .public()
        .encryptor()
        .seal(&id("bob"), b"c", &mut r)
        .expect("seal");
    assert_eq!(
        ours.open(&t.to_string(), b"c", now)
            .expect_err("must be refused"),
        IdentityError::UnknownKey
    );
}

#[test]
fn keys_rotate_old_and_new_open_side_by_side() {
    let mut r = rng(10);
    let now = Instant::now();
    let old = private_key(SchemeId::Ecies, 0);
    let new = private_key(SchemeId::Hpke, 0);
    let (mut e_old, mut e_new) = (old.public().encryptor(), new.public().encryptor());
    let mut ring = Keyring::default();
    ring.add_key(old.into_decryptor());
    ring.add_key(new.into_decryptor());
    assert_eq!(ring.schemes(), vec![SchemeId::Ecies, SchemeId::Hpke]);
    for enc in [&mut e_old, &mut e_new] {
        let t = enc.seal(&id("carol"), b"c", &mut r).expect("seal");
        assert_eq!(
            ring.open(&t.to_string(), b"c", now).expect("opens").id,
            id("carol")
        );
    }
}

#[test]
fn key_files_round_trip_and_catch_damage() {
    for (scheme, bits) in PUBLIC_SCHEMES {
        let text = common::key_text(scheme, bits);
        let key = PrivateKey::from_text(text).expect("private reads");
        let public = key.public();
        let pub_text = public.to_text();
        let back = PublicKey::from_text(&pub_text).expect("public reads");
        assert_eq!(back.key_id(), public.key_id());
        assert_eq!(back.scheme(), scheme);
        // A public file where a private one belongs, and the reverse.
        let e = PrivateKey::from_text(&pub_text).err().expect("refused");
        assert!(e.to_string().contains("public key"), "{e}");
        assert!(PublicKey::from_text(text).is_err());
        // An edited key id.
        let kid_line = text
            .lines()
            .find(|l| l.starts_with("key-id:"))
            .expect("kid");
        let edited = text.replace(kid_line, "key-id: AAAAAAAA");
        let e = PrivateKey::from_text(&edited).err().expect("refused");
        assert!(e.to_string().contains("does not match"), "{e}");
        // A truncated key.
        let truncated = text.get(..text.len() - 20).unwrap_or_default();
        assert!(PrivateKey::from_text(truncated).is_err());
    }
    assert!(PrivateKey::from_text("hello").is_err());
    assert!(PrivateKey::generate(SchemeId::Aes, 0, &mut rng(0)).is_err());
    assert!(PrivateKey::generate(SchemeId::Rsa, 1024, &mut rng(0)).is_err());
}

#[test]
fn rsa_2048_carries_ids_up_to_127_bytes() {
    let mut r = rng(11);
    let mut enc = private_key(SchemeId::Rsa, 2048).public().encryptor();
    assert!(enc.seal(&id(&"x".repeat(127)), b"c", &mut r).is_ok());
    assert_eq!(
        enc.seal(&id(&"x".repeat(128)), b"c", &mut r)
            .expect_err("must be refused"),
        IdentityError::IdTooLong
    );
    let mut enc = private_key(SchemeId::Rsa, 3072).public().encryptor();
    assert!(enc.seal(&id(&"x".repeat(255)), b"c", &mut r).is_ok());
}

#[test]
fn errors_and_debug_output_never_show_ids_or_keys() {
    let key = private_key(SchemeId::Hpke, 0);
    let text = key.to_text();
    let secret_b64 = text
        .lines()
        .find_map(|l| l.strip_prefix("key: "))
        .expect("key line")
        .to_owned();
    let shown = format!("{:?} {:?}", key.public().key_id(), id("alice"));
    assert!(!shown.contains("alice") && !shown.contains(&secret_b64));
    let e = PrivateKey::from_text(&text.replace(&secret_b64, "!!"))
        .err()
        .expect("bad");
    assert!(!e.to_string().contains(&secret_b64));
}

#[test]
fn aes_counters_never_go_back_for_the_same_key() {
    let mut dir = AesDirectory::new(4);
    let secret = b"shared secret";
    dir.add_user(id("alice"), secret, 10);
    // The same key again at a lower counter: tokens 0..10 stay refused.
    dir.add_user(id("alice"), secret, 0);
    let mut r = rng(5);
    let old = AesSender::new(secret, 3)
        .seal(&id("alice"), b"c", &mut r)
        .expect("seal");
    assert!(dir.open(&old, b"c").is_err());
    // Raised from elsewhere: 10..20 are used up too.
    assert!(dir.raise(&id("alice"), 20));
    let used = AesSender::new(secret, 12)
        .seal(&id("alice"), b"c", &mut r)
        .expect("seal");
    assert!(dir.open(&used, b"c").is_err());
    let fresh = AesSender::new(secret, 20)
        .seal(&id("alice"), b"c", &mut r)
        .expect("seal");
    assert_eq!(dir.open(&fresh, b"c").expect("opens").next_counter, 21);
    // A new key (new password) starts where it is told.
    dir.add_user(id("alice"), b"new secret", 0);
    let new = AesSender::new(b"new secret", 0)
        .seal(&id("alice"), b"c", &mut r)
        .expect("seal");
    assert!(dir.open(&new, b"c").is_ok());
    assert!(!dir.raise(&id("bob"), 1));
}
