//! RSA-OAEP with SHA-256 (RFC 8017 §7.1) to a proxy's public key, 2048 or
//! 3072 bits, as in the PrivaSIP papers. The OAEP label carries the token's
//! associated data, so a token bound to one dialog fails in another.
//!
//! Decryption, the proxy's side and the one a timing attack would target,
//! runs in aws-lc (constant-time, unlike the `rsa` crate's, see
//! RUSTSEC-2023-0071 "Marvin", and about twice as fast). Key generation and
//! encryption use the `rsa` crate, which takes the caller's randomness.

use aws_lc_rs::rsa::{OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, PrivateDecryptingKey};
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

/// A proxy's RSA private key: its PKCS#8 DER (zeroized on drop) and
/// aws-lc's decrypting key.
pub struct RsaPrivate {
    der: Zeroizing<Vec<u8>>,
    decrypting: OaepPrivateDecryptingKey,
    public: RsaPublic,
}

/// The OAEP label: lowercase hex of SHA-256 of the associated data (the
/// `rsa` crate takes labels as strings).
fn label(aad: &[u8]) -> String {
    hex::encode(Sha256::digest(aad))
}

/// OAEP-SHA256 with MGF1-SHA256 and that label, for the `rsa` crate.
fn padding(aad: &[u8]) -> Oaep {
    Oaep::new_with_label::<Sha256, _>(label(aad))
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
        let der = key
            .to_pkcs8_der()
            .map_err(|_| IdentityError::BadKey("RSA key does not encode".into()))?;
        RsaPrivate::from_der(der.as_bytes())
    }

    /// Reads a DER PKCS#8 private key.
    pub fn from_der(der: &[u8]) -> Result<RsaPrivate, IdentityError> {
        let bad = || IdentityError::BadKey("not an RSA private key (PKCS#8 DER)".into());
        let key = RsaPrivateKey::from_pkcs8_der(der).map_err(|_| bad())?;
        let public = RsaPublic::new(key.to_public_key())?;
        let decrypting = PrivateDecryptingKey::from_pkcs8(der)
            .map_err(|_| bad())
            .and_then(|k| OaepPrivateDecryptingKey::new(k).map_err(|_| bad()))?;
        Ok(RsaPrivate {
            der: Zeroizing::new(der.to_vec()),
            decrypting,
            public,
        })
    }

    /// The DER PKCS#8 private key. A secret.
    pub fn to_der(&self) -> Zeroizing<Vec<u8>> {
        self.der.clone()
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
        let size = self.public.key.size();
        if token.ciphertext.len() != size {
            return Err(IdentityError::Forged);
        }
        let aad = Token::aad(SchemeId::Rsa, &token.key_id, context);
        let mut out = Zeroizing::new(vec![0u8; size]);
        let padded = self
            .decrypting
            .decrypt(
                &OAEP_SHA256_MGF1SHA256,
                &token.ciphertext,
                &mut out,
                Some(label(&aad).as_bytes()),
            )
            .map_err(|_| IdentityError::Forged)?;
        RealId::unpad(padded)
    }
}
