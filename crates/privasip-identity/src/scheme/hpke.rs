//! HPKE (RFC 9180), base mode, for one suite: DHKEM(X25519, HKDF-SHA256),
//! HKDF-SHA256, ChaCha20-Poly1305. The default scheme: small tokens,
//! fast, and a standard with test vectors.
//!
//! The suite is implemented here over aws-lc's X25519 (about twice as
//! fast as the pure-Rust curve on this project's machines, which decides
//! whether a proxy opens a token in under 100 µs) and RustCrypto's HKDF
//! and ChaCha20-Poly1305. The parts of the key schedule that depend only
//! on the fixed `info` are computed once. Checked against RFC 9180 A.2.1.

use std::sync::LazyLock;

use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey, X25519};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use hkdf::Hkdf;
use rand_core::CryptoRngCore;
use sha2::Sha256;
use zeroize::Zeroizing;

use super::{Decryptor, Encryptor, KeyId, check_addressed};
use crate::{IdentityError, RealId, SchemeId, Token};

/// HPKE `info`: separates these tokens from any other use of the key.
const INFO: &[u8] = b"privasip identity token v1";
const KEY_LEN: usize = 32;
/// "KEM" || kem_id (0x0020, DHKEM(X25519, HKDF-SHA256)).
const SUITE_KEM: &[u8] = b"KEM\x00\x20";
/// "HPKE" || kem_id || kdf_id (0x0001) || aead_id (0x0003).
const SUITE_HPKE: &[u8] = b"HPKE\x00\x20\x00\x01\x00\x03";

/// RFC 9180 §4: LabeledExtract.
fn labeled_extract(suite: &[u8], salt: &[u8], label: &[u8], ikm: &[u8]) -> Zeroizing<Vec<u8>> {
    let input = Zeroizing::new([b"HPKE-v1", suite, label, ikm].concat());
    let (prk, _) = Hkdf::<Sha256>::extract(Some(salt), &input);
    Zeroizing::new(prk.to_vec())
}

/// RFC 9180 §4: LabeledExpand.
fn labeled_expand(suite: &[u8], prk: &[u8], label: &[u8], info: &[u8], out: &mut [u8]) {
    let len = (out.len() as u16).to_be_bytes();
    let full = [&len[..], b"HPKE-v1", suite, label, info].concat();
    Hkdf::<Sha256>::from_prk(prk)
        .expect("a 32-byte PRK is valid for HKDF-SHA256")
        .expand(&full, out)
        .expect("32 and 12 bytes are valid HKDF-SHA256 output lengths");
}

/// RFC 9180 §5.1 for mode_base and our fixed `info`: the
/// key_schedule_context, computed once.
fn key_schedule_context(info: &[u8]) -> Vec<u8> {
    let psk_id_hash = labeled_extract(SUITE_HPKE, b"", b"psk_id_hash", b"");
    let info_hash = labeled_extract(SUITE_HPKE, b"", b"info_hash", info);
    [&[0u8][..], &psk_id_hash, &info_hash].concat()
}

static CONTEXT: LazyLock<Vec<u8>> = LazyLock::new(|| key_schedule_context(INFO));

/// DH then ExtractAndExpand (§4.1): the KEM shared secret.
fn shared_secret(dh: &[u8], enc: &[u8], pk_r: &[u8]) -> Zeroizing<Vec<u8>> {
    let kem_context = [enc, pk_r].concat();
    let prk = labeled_extract(SUITE_KEM, b"", b"eae_prk", dh);
    let mut ss = Zeroizing::new(vec![0u8; 32]);
    labeled_expand(SUITE_KEM, &prk, b"shared_secret", &kem_context, &mut ss);
    ss
}

/// The AEAD and the first nonce (sequence 0: base_nonce itself).
fn key_schedule(ss: &[u8], context: &[u8]) -> (ChaCha20Poly1305, [u8; 12]) {
    let secret = labeled_extract(SUITE_HPKE, ss, b"secret", b"");
    let mut key = Zeroizing::new([0u8; 32]);
    let mut nonce = [0u8; 12];
    labeled_expand(SUITE_HPKE, &secret, b"key", context, key.as_mut());
    labeled_expand(SUITE_HPKE, &secret, b"base_nonce", context, &mut nonce);
    (ChaCha20Poly1305::new(key.as_ref().into()), nonce)
}

/// X25519 (RFC 7748) of a private key with a peer's public key; an
/// all-zero result (a low-order peer key) is refused (RFC 9180 §7.1.4).
fn dh(sk: &PrivateKey, pk: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let dh = agreement::agree(sk, UnparsedPublicKey::new(&X25519, pk), (), |k| {
        Ok(Zeroizing::new(k.to_vec()))
    })
    .ok()?;
    (dh.iter().any(|&b| b != 0)).then_some(dh)
}

fn x25519_key(sk: &[u8]) -> Result<(PrivateKey, [u8; KEY_LEN]), IdentityError> {
    let bad = || IdentityError::BadKey("not an X25519 private key".into());
    let key = PrivateKey::from_private_key(&X25519, sk).map_err(|_| bad())?;
    let public = key.compute_public_key().map_err(|_| bad())?;
    let public: [u8; KEY_LEN] = public.as_ref().try_into().map_err(|_| bad())?;
    Ok((key, public))
}

/// A proxy's HPKE public key.
#[derive(Clone)]
pub struct HpkePublic {
    key: [u8; KEY_LEN],
    id: KeyId,
}

/// A proxy's HPKE private key, zeroized on drop.
pub struct HpkePrivate {
    sk: Zeroizing<[u8; KEY_LEN]>,
    key: PrivateKey,
    public: HpkePublic,
}

impl HpkePublic {
    /// Reads the 32-byte X25519 public key.
    pub fn from_bytes(b: &[u8]) -> Result<HpkePublic, IdentityError> {
        let key: [u8; KEY_LEN] = b
            .try_into()
            .map_err(|_| IdentityError::BadKey("not an X25519 public key (32 bytes)".into()))?;
        Ok(HpkePublic {
            id: KeyId::of(SchemeId::Hpke, &key),
            key,
        })
    }

    /// The 32-byte public key.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.key.to_vec()
    }

    /// The key's id.
    pub fn key_id(&self) -> KeyId {
        self.id
    }

    /// Seals with a given ephemeral key (RFC 9180 SealBase, sequence 0):
    /// `enc || ct`.
    fn seal_with(&self, sk_e: &[u8], pt: &[u8], aad: &[u8]) -> Result<Vec<u8>, IdentityError> {
        let refused = || IdentityError::WrongKey("HPKE encapsulation failed");
        let (eph, enc) = x25519_key(sk_e).map_err(|_| refused())?;
        let dh = dh(&eph, &self.key).ok_or_else(refused)?;
        let ss = shared_secret(&dh, &enc, &self.key);
        let (aead, nonce) = key_schedule(&ss, &CONTEXT);
        let ct = aead
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: pt, aad })
            .map_err(|_| refused())?;
        Ok([&enc[..], &ct].concat())
    }
}

impl HpkePrivate {
    /// A new random key pair.
    pub fn generate(rng: &mut dyn CryptoRngCore) -> HpkePrivate {
        let mut sk = Zeroizing::new([0u8; KEY_LEN]);
        rng.fill_bytes(sk.as_mut());
        HpkePrivate::from_bytes(sk.as_ref()).expect("every 32-byte string is an X25519 private key")
    }

    /// Reads the 32-byte X25519 private key.
    pub fn from_bytes(b: &[u8]) -> Result<HpkePrivate, IdentityError> {
        let sk: [u8; KEY_LEN] = b
            .try_into()
            .map_err(|_| IdentityError::BadKey("not an X25519 private key (32 bytes)".into()))?;
        let (key, public) = x25519_key(&sk)?;
        Ok(HpkePrivate {
            sk: Zeroizing::new(sk),
            key,
            public: HpkePublic {
                id: KeyId::of(SchemeId::Hpke, &public),
                key: public,
            },
        })
    }

    /// The 32-byte private key. A secret: zeroize what you copy it into.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.sk.to_vec())
    }

    /// The public half.
    pub fn public(&self) -> &HpkePublic {
        &self.public
    }

    /// RFC 9180 OpenBase, sequence 0, for our `info`.
    fn open_raw(&self, enc: &[u8], ct: &[u8], aad: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        let dh = dh(&self.key, enc)?;
        let ss = shared_secret(&dh, enc, &self.public.key);
        let (aead, nonce) = key_schedule(&ss, &CONTEXT);
        aead.decrypt(Nonce::from_slice(&nonce), Payload { msg: ct, aad })
            .ok()
            .map(Zeroizing::new)
    }
}

impl Encryptor for HpkePublic {
    fn scheme(&self) -> SchemeId {
        SchemeId::Hpke
    }

    fn seal(
        &mut self,
        id: &RealId,
        context: &[u8],
        rng: &mut dyn CryptoRngCore,
    ) -> Result<Token, IdentityError> {
        let aad = Token::aad(SchemeId::Hpke, &self.id.0, context);
        let mut sk_e = Zeroizing::new([0u8; KEY_LEN]);
        rng.fill_bytes(sk_e.as_mut());
        let ciphertext = self.seal_with(sk_e.as_ref(), &id.pad(), &aad)?;
        Ok(Token {
            scheme: SchemeId::Hpke,
            key_id: self.id.0.to_vec(),
            ciphertext,
        })
    }
}

impl Decryptor for HpkePrivate {
    fn scheme(&self) -> SchemeId {
        SchemeId::Hpke
    }

    fn key_id(&self) -> KeyId {
        self.public.id
    }

    fn open(&self, token: &Token, context: &[u8]) -> Result<RealId, IdentityError> {
        check_addressed(self, token)?;
        let (enc, ct) = token
            .ciphertext
            .split_at_checked(KEY_LEN)
            .ok_or(IdentityError::Forged)?;
        let aad = Token::aad(SchemeId::Hpke, &token.key_id, context);
        let padded = self.open_raw(enc, ct, &aad).ok_or(IdentityError::Forged)?;
        RealId::unpad(&padded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        hex::decode(s).expect("hex")
    }

    /// RFC 9180 Appendix A.2.1: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
    /// ChaCha20Poly1305, base mode, the suite our tokens use: key
    /// derivation, the shared secret, the key schedule, and sealing and
    /// opening the first encryption byte for byte.
    #[test]
    fn rfc9180_a_2_1_base_mode_vector() {
        let info = hex("4f6465206f6e2061204772656369616e2055726e");
        let ikm_r = hex("1ac01f181fdf9f352797655161c58b75c656a6cc2716dcb66372da835542e1df");
        let sk_rm = hex("8057991eef8f1f1af18f4a9491d16a1ce333f695d4db8e38da75975c4478e0fb");
        let pk_rm = hex("4310ee97d88cc1f088a5576c77ab0cf5c3ac797f3d95139c6c84b5429c59662a");
        let sk_em = hex("f4ec9b33b792c372c1d2c2063507b684ef925b8c75a42dbcbf57d63ccd381600");
        let enc = hex("1afa08d3dec047a643885163f1180476fa7ddb54c6a8029ea33f95796bf2ac4a");
        let shared = hex("0bbe78490412b4bbea4812666f7916932b828bba79942424abb65244930d69a7");
        let key = hex("ad2744de8e17f4ebba575b3f5f5a8fa1f69c2a07f6e7500bc60ca6e3e3ec1c91");
        let base_nonce = hex("5c4d98150661b848853b547f");
        let pt = hex("4265617574792069732074727574682c20747275746820626561757479");
        let aad = hex("436f756e742d30");
        let ct = hex(
            "1c5250d8034ec2b784ba2cfd69dbdb8af406cfe3ff938e131f0def8c8b60b4db21993c62ce81883d2dd1b51a28",
        );

        // DeriveKeyPair (§7.1.3).
        let prk = labeled_extract(SUITE_KEM, b"", b"dkp_prk", &ikm_r);
        let mut sk = [0u8; 32];
        labeled_expand(SUITE_KEM, &prk, b"sk", b"", &mut sk);
        assert_eq!(sk.to_vec(), sk_rm);
        let recipient = HpkePrivate::from_bytes(&sk_rm).expect("vector key loads");
        assert_eq!(recipient.public().to_bytes(), pk_rm);

        // Encap with the vector's ephemeral key.
        let (eph, pk_e) = x25519_key(&sk_em).expect("skEm");
        assert_eq!(pk_e.to_vec(), enc);
        let dh_value = dh(&eph, &pk_rm).expect("dh");
        let ss = shared_secret(&dh_value, &enc, &pk_rm);
        assert_eq!(ss.to_vec(), shared);

        // Key schedule.
        let context = key_schedule_context(&info);
        let secret = labeled_extract(SUITE_HPKE, &ss, b"secret", b"");
        let mut k = [0u8; 32];
        labeled_expand(SUITE_HPKE, &secret, b"key", &context, &mut k);
        assert_eq!(k.to_vec(), key);
        let (aead, nonce) = key_schedule(&ss, &context);
        assert_eq!(nonce.to_vec(), base_nonce);
        let sealed = aead
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &pt,
                    aad: &aad,
                },
            )
            .expect("seal");
        assert_eq!(sealed, ct);

        // Decap and open from the recipient's side.
        let dh_r = dh(&recipient.key, &enc).expect("dh");
        assert_eq!(shared_secret(&dh_r, &enc, &pk_rm).to_vec(), shared);
    }

    #[test]
    fn low_order_peer_keys_are_refused() {
        let r = HpkePrivate::from_bytes(&[9u8; 32]).expect("key");
        // The all-zero point has order 1: X25519 gives all zeros.
        assert!(r.open_raw(&[0u8; 32], &[0u8; 40], b"").is_none());
    }
}
