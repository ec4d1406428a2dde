//! RSA-OAEP with SHA-256 (RFC 8017 §7.1) to a proxy's public key, 2048 or
//! 3072 bits, as in the PrivaSIP papers. The OAEP label carries the token's
//! associated data, so a token bound to one dialog fails in another.
//!
//! The `rsa` crate's decryption is not constant-time (RUSTSEC-2023-0071,
//! the "Marvin" timing attack). A proxy that offers RSA should answer every
//! failed decryption the same way and at the same time (it does: 403 after
//! Digest) and prefer HPKE; RSA is here because the paper measured it.

use rand_core::CryptoRngCore;
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use rsa::traits::PublicKeyParts;
use rsa::{Oaep, RsaPrivateKey, RsaPublicKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::{Decryptor, Encryptor, KeyId, check_addressed};
use crate::{IdentityError, RealId, SchemeId, Token};

/// The key sizes offered.
pub const RSA_BITS: [usize; 2] = [2048, 3072];

/// A proxy's RSA public key.
#[derive(Clone)]
pub struct RsaPublic {
    key: RsaPublicKey,
    id: KeyId,
}

/// A proxy's RSA private key; the `rsa` crate zeroizes it on drop.
pub struct RsaPrivate {
    key: RsaPrivateKey,
    public: RsaPublic,
}

/// OAEP-SHA256 with a label that commits to the associated data (the
/// `rsa` crate takes labels as strings: hex of its SHA-256).
fn padding(aad: &[u8]) -> Oaep {
    let digest = Sha256::digest(aad);
    let label: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    Oaep::new_with_label::<Sha256, _>(label)
}

impl RsaPublic {
    /// Reads a DER SubjectPublicKeyInfo.
    pub fn from_der(der: &[u8]) -> Result<RsaPublic, IdentityError> {
        let key = RsaPublicKey::from_public_key_der(der)
            .map_err(|_| IdentityError::BadKey("not an RSA public key (SPKI DER)".into()))?;
        RsaPublic::new(key)
    }

    fn new(key: RsaPublicKey) -> Result<RsaPublic, IdentityError> {
        if !RSA_BITS.contains(&(key.size() * 8)) {
            return Err(IdentityError::BadKey(format!(
                "RSA key of {} bits; use 2048 or 3072",
                key.size() * 8
            )));
        }
        let der = key
            .to_public_key_der()
            .map_err(|_| IdentityError::BadKey("RSA key does not encode".into()))?;
        Ok(RsaPublic {
            id: KeyId::of(SchemeId::Rsa, der.as_bytes()),
            key,
        })
    }

    /// The DER SubjectPublicKeyInfo.
    pub fn to_der(&self) -> Vec<u8> {
        self.key
            .to_public_key_der()
            .map(|d| d.as_bytes().to_vec())
            .unwrap_or_default()
    }

    /// The key's id.
    pub fn key_id(&self) -> KeyId {
        self.id
    }

    /// The modulus size in bits.
    pub fn bits(&self) -> usize {
        self.key.size() * 8
    }
}

impl RsaPrivate {
    /// A new random key of `bits` (2048 or 3072). Takes seconds.
    pub fn generate(
        mut rng: &mut dyn CryptoRngCore,
        bits: usize,
    ) -> Result<RsaPrivate, IdentityError> {
        if !RSA_BITS.contains(&bits) {
            return Err(IdentityError::BadKey(format!(
                "RSA-{bits}; use 2048 or 3072"
            )));
        }
        let key = RsaPrivateKey::new(&mut rng, bits)
            .map_err(|e| IdentityError::BadKey(format!("RSA key generation failed: {e}")))?;
        RsaPrivate::new(key)
    }

    fn new(key: RsaPrivateKey) -> Result<RsaPrivate, IdentityError> {
        let public = RsaPublic::new(key.to_public_key())?;
        Ok(RsaPrivate { key, public })
    }

    /// Reads a DER PKCS#8 private key.
    pub fn from_der(der: &[u8]) -> Result<RsaPrivate, IdentityError> {
        let key = RsaPrivateKey::from_pkcs8_der(der)
            .map_err(|_| IdentityError::BadKey("not an RSA private key (PKCS#8 DER)".into()))?;
        RsaPrivate::new(key)
    }

    /// The DER PKCS#8 private key. A secret.
    pub fn to_der(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(
            self.key
                .to_pkcs8_der()
                .map(|d| d.as_bytes().to_vec())
                .unwrap_or_default(),
        )
    }

    /// The public half.
    pub fn public(&self) -> &RsaPublic {
        &self.public
    }
}

impl Encryptor for RsaPublic {
    fn scheme(&self) -> SchemeId {
        SchemeId::Rsa
    }

    fn seal(
        &mut self,
        id: &RealId,
        context: &[u8],
        mut rng: &mut dyn CryptoRngCore,
    ) -> Result<Token, IdentityError> {
        let aad = Token::aad(SchemeId::Rsa, &self.id.0, context);
        let padded = id.pad();
        let ciphertext = self
            .key
            .encrypt(&mut rng, padding(&aad), &padded)
            .map_err(|_| IdentityError::IdTooLong)?;
        Ok(Token {
            scheme: SchemeId::Rsa,
            key_id: self.id.0.to_vec(),
            ciphertext,
        })
    }
}

impl Decryptor for RsaPrivate {
    fn scheme(&self) -> SchemeId {
        SchemeId::Rsa
    }

    fn key_id(&self) -> KeyId {
        self.public.id
    }

    fn open(&self, token: &Token, context: &[u8]) -> Result<RealId, IdentityError> {
        check_addressed(self, token)?;
        if token.ciphertext.len() != self.key.size() {
            return Err(IdentityError::Forged);
        }
        let aad = Token::aad(SchemeId::Rsa, &token.key_id, context);
        let padded = self
            .key
            .decrypt(padding(&aad), &token.ciphertext)
            .map_err(|_| IdentityError::Forged)?;
        RealId::unpad(&Zeroizing::new(padded))
    }
}
