//! ECIES as the PrivaSIP papers use it, made concrete: an ephemeral P-256
//! key agreed with the proxy's static key (ECDH), HKDF-SHA256 over the
//! shared x-coordinate salted with both public keys, and AES-256-GCM under
//! the derived one-time key (so a fixed nonce is safe).
//!
//! ciphertext = compressed ephemeral point (33) || AES-GCM(padded ID) || tag

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::{PublicKey, SecretKey, ecdh};
use rand_core::CryptoRngCore;
use sha2::Sha256;
use zeroize::Zeroizing;

use super::{Decryptor, Encryptor, KeyId, check_addressed};
use crate::{IdentityError, RealId, SchemeId, Token};

const INFO: &[u8] = b"privasip ecies p256 aes256gcm v1";
const POINT_LEN: usize = 33;

/// A proxy's ECIES (P-256) public key.
#[derive(Clone)]
pub struct EciesPublic {
    key: PublicKey,
    id: KeyId,
}

/// A proxy's ECIES (P-256) private key; p256 zeroizes it on drop.
pub struct EciesPrivate {
    key: SecretKey,
    public: EciesPublic,
}

impl EciesPublic {
    /// Reads a SEC1 point (compressed or not).
    pub fn from_bytes(b: &[u8]) -> Result<EciesPublic, IdentityError> {
        let key = PublicKey::from_sec1_bytes(b)
            .map_err(|_| IdentityError::BadKey("not a P-256 public key".into()))?;
        Ok(EciesPublic::new(key))
    }

    fn new(key: PublicKey) -> EciesPublic {
        let id = KeyId::of(SchemeId::Ecies, key.to_encoded_point(true).as_bytes());
        EciesPublic { key, id }
    }

    /// The compressed SEC1 point.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.key.to_encoded_point(true).as_bytes().to_vec()
    }

    /// The key's id.
    pub fn key_id(&self) -> KeyId {
        self.id
    }
}

impl EciesPrivate {
    /// A new random key pair.
    pub fn generate(mut rng: &mut dyn CryptoRngCore) -> EciesPrivate {
        EciesPrivate::new(SecretKey::random(&mut rng))
    }

    fn new(key: SecretKey) -> EciesPrivate {
        let public = EciesPublic::new(key.public_key());
        EciesPrivate { key, public }
    }

    /// Reads the 32-byte scalar.
    pub fn from_bytes(b: &[u8]) -> Result<EciesPrivate, IdentityError> {
        let key = SecretKey::from_slice(b)
            .map_err(|_| IdentityError::BadKey("not a P-256 private key".into()))?;
        Ok(EciesPrivate::new(key))
    }

    /// The 32-byte scalar. A secret.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.key.to_bytes().to_vec())
    }

    /// The public half.
    pub fn public(&self) -> &EciesPublic {
        &self.public
    }
}

/// The one-time AEAD key for an ephemeral point and the recipient's key.
fn derive(shared: &ecdh::SharedSecret, eph: &[u8], recipient: &PublicKey) -> Aes256Gcm {
    let mut salt = Vec::with_capacity(2 * POINT_LEN);
    salt.extend_from_slice(eph);
    salt.extend_from_slice(recipient.to_encoded_point(true).as_bytes());
    let hk = shared.extract::<Sha256>(Some(&salt));
    let mut key = Zeroizing::new([0u8; 32]);
    hk.expand(INFO, key.as_mut())
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    Aes256Gcm::new(key.as_ref().into())
}

impl Encryptor for EciesPublic {
    fn scheme(&self) -> SchemeId {
        SchemeId::Ecies
    }

    fn seal(
        &mut self,
        id: &RealId,
        context: &[u8],
        mut rng: &mut dyn CryptoRngCore,
    ) -> Result<Token, IdentityError> {
        let eph = ecdh::EphemeralSecret::random(&mut rng);
        let eph_point = eph.public_key().to_encoded_point(true);
        let shared = eph.diffie_hellman(&self.key);
        let aead = derive(&shared, eph_point.as_bytes(), &self.key);
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
        let mut ciphertext = eph_point.as_bytes().to_vec();
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
        let eph_key = PublicKey::from_sec1_bytes(eph).map_err(|_| IdentityError::Forged)?;
        let shared = ecdh::diffie_hellman(self.key.to_nonzero_scalar(), eph_key.as_affine());
        let aead = derive(&shared, eph, &self.public.key);
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
