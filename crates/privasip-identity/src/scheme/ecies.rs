//! ECIES as the PrivaSIP papers use it, made concrete: an ephemeral P-256
//! key agreed with the proxy's static key (ECDH), HKDF-SHA256 over the
//! shared x-coordinate salted with both public keys, and AES-256-GCM under
//! the derived one-time key (so a fixed nonce is safe).
//!
//! ciphertext = compressed ephemeral point (33) || AES-GCM(padded ID) || tag

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use aws_lc_rs::agreement::{self, ECDH_P256, PrivateKey, UnparsedPublicKey};
use rand_core::CryptoRngCore;
use sha2::Sha256;
use zeroize::Zeroizing;

use super::{Decryptor, Encryptor, KeyId, check_addressed};
use crate::{IdentityError, RealId, SchemeId, Token};

const INFO: &[u8] = b"privasip ecies p256 aes256gcm v1";
const POINT_LEN: usize = 33;
const SCALAR_LEN: usize = 32;

/// A proxy's ECIES (P-256) public key, kept as its compressed point.
#[derive(Clone)]
pub struct EciesPublic {
    point: [u8; POINT_LEN],
    id: KeyId,
}

/// A proxy's ECIES (P-256) private key, zeroized on drop. The ECDH runs
/// in aws-lc (constant-time, about 3x the pure-Rust curve's speed here).
pub struct EciesPrivate {
    scalar: Zeroizing<[u8; SCALAR_LEN]>,
    key: PrivateKey,
    public: EciesPublic,
}

/// SEC1 compression of an uncompressed point `04 || x || y`.
fn compress(uncompressed: &[u8]) -> Option<[u8; POINT_LEN]> {
    if uncompressed.len() != 65 || uncompressed[0] != 4 {
        return None;
    }
    let mut out = [0u8; POINT_LEN];
    out[0] = 2 | (uncompressed[64] & 1);
    out[1..].copy_from_slice(&uncompressed[1..33]);
    Some(out)
}

impl EciesPublic {
    /// Reads a SEC1 point (compressed or not), checking it is on the curve.
    pub fn from_bytes(b: &[u8]) -> Result<EciesPublic, IdentityError> {
        use p256::elliptic_curve::sec1::ToEncodedPoint;
        let key = p256::PublicKey::from_sec1_bytes(b)
            .map_err(|_| IdentityError::BadKey("not a P-256 public key".into()))?;
        let point: [u8; POINT_LEN] = key
            .to_encoded_point(true)
            .as_bytes()
            .try_into()
            .map_err(|_| IdentityError::BadKey("not a P-256 public key".into()))?;
        Ok(EciesPublic::new(point))
    }

    fn new(point: [u8; POINT_LEN]) -> EciesPublic {
        EciesPublic {
            id: KeyId::of(SchemeId::Ecies, &point),
            point,
        }
    }

    /// The compressed SEC1 point.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.point.to_vec()
    }

    /// The key's id.
    pub fn key_id(&self) -> KeyId {
        self.id
    }
}

/// A P-256 key from a scalar, with its compressed public point; `None`
/// for 0 or a scalar not below the group order.
fn p256_key(scalar: &[u8]) -> Option<(PrivateKey, [u8; POINT_LEN])> {
    let key = PrivateKey::from_private_key(&ECDH_P256, scalar).ok()?;
    let public = key.compute_public_key().ok()?;
    let point = compress(public.as_ref())?;
    Some((key, point))
}

impl EciesPrivate {
    /// A new random key pair.
    pub fn generate(rng: &mut dyn CryptoRngCore) -> EciesPrivate {
        loop {
            let mut scalar = Zeroizing::new([0u8; SCALAR_LEN]);
            rng.fill_bytes(scalar.as_mut());
            // Fails only for the ~2^-32 of strings not below the order.
            if let Ok(k) = EciesPrivate::from_bytes(scalar.as_ref()) {
                return k;
            }
        }
    }

    /// Reads the 32-byte scalar.
    pub fn from_bytes(b: &[u8]) -> Result<EciesPrivate, IdentityError> {
        let bad = || IdentityError::BadKey("not a P-256 private key".into());
        let scalar: [u8; SCALAR_LEN] = b.try_into().map_err(|_| bad())?;
        let (key, point) = p256_key(&scalar).ok_or_else(bad)?;
        Ok(EciesPrivate {
            scalar: Zeroizing::new(scalar),
            key,
            public: EciesPublic::new(point),
        })
    }

    /// The 32-byte scalar. A secret.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.scalar.to_vec())
    }

    /// The public half.
    pub fn public(&self) -> &EciesPublic {
        &self.public
    }
}

/// ECDH's shared x-coordinate, then the one-time AEAD key for an
/// ephemeral point and the recipient's point.
fn derive(key: &PrivateKey, peer: &[u8], eph: &[u8], recipient: &[u8]) -> Option<Aes256Gcm> {
    let shared = agreement::agree(key, UnparsedPublicKey::new(&ECDH_P256, peer), (), |x| {
        Ok(Zeroizing::new(x.to_vec()))
    })
    .ok()?;
    let salt = [eph, recipient].concat();
    let hk = hkdf::Hkdf::<Sha256>::new(Some(&salt), &shared);
    let mut okm = Zeroizing::new([0u8; 32]);
    hk.expand(INFO, okm.as_mut())
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    Some(Aes256Gcm::new(okm.as_ref().into()))
}

impl Encryptor for EciesPublic {
    fn scheme(&self) -> SchemeId {
        SchemeId::Ecies
    }

    fn seal(
        &mut self,
        id: &RealId,
        context: &[u8],
        rng: &mut dyn CryptoRngCore,
    ) -> Result<Token, IdentityError> {
        let (eph, eph_point) = loop {
            let mut scalar = Zeroizing::new([0u8; SCALAR_LEN]);
            rng.fill_bytes(scalar.as_mut());
            if let Some(k) = p256_key(scalar.as_ref()) {
                break k;
            }
        };
        let aead = derive(&eph, &self.point, &eph_point, &self.point)
            .ok_or(IdentityError::WrongKey("ECDH with this public key failed"))?;
        let aad = Token::aad(SchemeId::Ecies, &self.id.0, context);
        let padded = id.pad();
        // The key is used once: a zero nonce is safe.
        let ct = aead
            .encrypt(
                Nonce::from_slice(&[0u8; 12]),
                Payload {
                    msg: &padded,
                    aad: &aad,
                },
            )
            .map_err(|_| IdentityError::WrongKey("AES-GCM refused the plaintext"))?;
        let mut ciphertext = eph_point.to_vec();
        ciphertext.extend_from_slice(&ct);
        Ok(Token {
            scheme: SchemeId::Ecies,
            key_id: self.id.0.to_vec(),
            ciphertext,
        })
    }
}

impl Decryptor for EciesPrivate {
    fn scheme(&self) -> SchemeId {
        SchemeId::Ecies
    }

    fn key_id(&self) -> KeyId {
        self.public.id
    }

    fn open(&self, token: &Token, context: &[u8]) -> Result<RealId, IdentityError> {
        check_addressed(self, token)?;
        let (eph, ct) = token
            .ciphertext
            .split_at_checked(POINT_LEN)
            .ok_or(IdentityError::Forged)?;
        let aead = derive(&self.key, eph, eph, &self.public.point).ok_or(IdentityError::Forged)?;
        let aad = Token::aad(SchemeId::Ecies, &token.key_id, context);
        let padded = aead
            .decrypt(
                Nonce::from_slice(&[0u8; 12]),
                Payload { msg: ct, aad: &aad },
            )
            .map_err(|_| IdentityError::Forged)?;
        RealId::unpad(&Zeroizing::new(padded))
    }
}
