//! Key pairs of every public-key scheme behind two enums, and the text
//! format `privasip keygen` writes:
//!
//! ```text
//! privasip private key v1          (or: privasip public key v1)
//! scheme: hpke                     (rsa, ecies, hpke)
//! key-id: Zm9vYmFy                 (base64url, as in tokens)
//! key: <base64url>                 (RSA: PKCS#8 / SPKI DER; ECIES: P-256
//!                                   scalar / compressed point; HPKE: X25519)
//! ```
//!
//! Lines starting with `#` are comments. Reading checks that the key id
//! matches the key, so a truncated or edited file is caught at start-up.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use rand_core::CryptoRngCore;
use zeroize::Zeroizing;

use crate::scheme::ecies::{EciesPrivate, EciesPublic};
use crate::scheme::hpke::{HpkePrivate, HpkePublic};
use crate::scheme::rsa::{RsaPrivate, RsaPublic};
use crate::{Decryptor, Encryptor, IdentityError, KeyId, SchemeId};

const PRIVATE_MAGIC: &str = "privasip private key v1";
const PUBLIC_MAGIC: &str = "privasip public key v1";

/// A domain's published key, for any public-key scheme.
#[derive(Clone)]
#[non_exhaustive]
pub enum PublicKey {
    /// RSA-OAEP.
    Rsa(RsaPublic),
    /// ECIES on P-256.
    Ecies(EciesPublic),
    /// HPKE with X25519.
    Hpke(HpkePublic),
}

/// A proxy's private key, for any public-key scheme.
#[non_exhaustive]
pub enum PrivateKey {
    /// RSA-OAEP (boxed: an RSA key is several times the size of the others).
    Rsa(Box<RsaPrivate>),
    /// ECIES on P-256.
    Ecies(EciesPrivate),
    /// HPKE with X25519.
    Hpke(HpkePrivate),
}

impl PublicKey {
    /// The scheme.
    pub fn scheme(&self) -> SchemeId {
        match self {
            PublicKey::Rsa(_) => SchemeId::Rsa,
            PublicKey::Ecies(_) => SchemeId::Ecies,
            PublicKey::Hpke(_) => SchemeId::Hpke,
        }
    }

    /// The key id.
    pub fn key_id(&self) -> KeyId {
        match self {
            PublicKey::Rsa(k) => k.key_id(),
            PublicKey::Ecies(k) => k.key_id(),
            PublicKey::Hpke(k) => k.key_id(),
        }
    }

    fn bytes(&self) -> Vec<u8> {
        match self {
            PublicKey::Rsa(k) => k.to_der(),
            PublicKey::Ecies(k) => k.to_bytes(),
            PublicKey::Hpke(k) => k.to_bytes(),
        }
    }

    /// An encryptor to this key.
    pub fn encryptor(&self) -> Box<dyn Encryptor> {
        match self {
            PublicKey::Rsa(k) => Box::new(k.clone()),
            PublicKey::Ecies(k) => Box::new(k.clone()),
            PublicKey::Hpke(k) => Box::new(k.clone()),
        }
    }

    /// The public key file's text.
    pub fn to_text(&self) -> String {
        format!(
            "{PUBLIC_MAGIC}\n# Publish this: user agents encrypt IDs to it.\nscheme: {}\nkey-id: {}\nkey: {}\n",
            self.scheme(),
            self.key_id(),
            B64.encode(self.bytes())
        )
    }

    /// Reads a public key file's text.
    pub fn from_text(text: &str) -> Result<PublicKey, IdentityError> {
        let f = Fields::parse(text, PUBLIC_MAGIC)?;
        let key = match f.scheme {
            SchemeId::Rsa => PublicKey::Rsa(RsaPublic::from_der(&f.key)?),
            SchemeId::Ecies => PublicKey::Ecies(EciesPublic::from_bytes(&f.key)?),
            SchemeId::Hpke => PublicKey::Hpke(HpkePublic::from_bytes(&f.key)?),
            SchemeId::Aes => return Err(no_aes_files()),
        };
        f.check_id(key.key_id())?;
        Ok(key)
    }
}

fn no_aes_files() -> IdentityError {
    IdentityError::BadKey(
        "AES keys are derived from each user's password, not stored in key files".into(),
    )
}

impl PrivateKey {
    /// A new random key. `rsa_bits` is used by RSA only (2048 or 3072).
    pub fn generate(
        scheme: SchemeId,
        rsa_bits: usize,
        rng: &mut dyn CryptoRngCore,
    ) -> Result<PrivateKey, IdentityError> {
        Ok(match scheme {
            SchemeId::Rsa => PrivateKey::Rsa(Box::new(RsaPrivate::generate(rng, rsa_bits)?)),
            SchemeId::Ecies => PrivateKey::Ecies(EciesPrivate::generate(rng)),
            SchemeId::Hpke => PrivateKey::Hpke(HpkePrivate::generate(rng)),
            SchemeId::Aes => return Err(no_aes_files()),
        })
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        match self {
            PrivateKey::Rsa(k) => PublicKey::Rsa(k.public().clone()),
            PrivateKey::Ecies(k) => PublicKey::Ecies(k.public().clone()),
            PrivateKey::Hpke(k) => PublicKey::Hpke(k.public().clone()),
        }
    }

    /// Turns the key into a decryptor for a [`crate::Keyring`].
    pub fn into_decryptor(self) -> Box<dyn Decryptor> {
        match self {
            PrivateKey::Rsa(k) => k,
            PrivateKey::Ecies(k) => Box::new(k),
            PrivateKey::Hpke(k) => Box::new(k),
        }
    }

    /// The private key file's text. A secret: write it with mode 0600.
    pub fn to_text(&self) -> Zeroizing<String> {
        let bytes = match self {
            PrivateKey::Rsa(k) => k.to_der(),
            PrivateKey::Ecies(k) => k.to_bytes(),
            PrivateKey::Hpke(k) => k.to_bytes(),
        };
        let public = self.public();
        Zeroizing::new(format!(
            "{PRIVATE_MAGIC}\n# Secret: only this domain's proxy reads it. Mode 0600.\nscheme: {}\nkey-id: {}\nkey: {}\n",
            public.scheme(),
            public.key_id(),
            B64.encode(&*bytes)
        ))
    }

    /// Reads a private key file's text.
    pub fn from_text(text: &str) -> Result<PrivateKey, IdentityError> {
        let f = Fields::parse(text, PRIVATE_MAGIC)?;
        let key = match f.scheme {
            SchemeId::Rsa => PrivateKey::Rsa(Box::new(RsaPrivate::from_der(&f.key)?)),
            SchemeId::Ecies => PrivateKey::Ecies(EciesPrivate::from_bytes(&f.key)?),
            SchemeId::Hpke => PrivateKey::Hpke(HpkePrivate::from_bytes(&f.key)?),
            SchemeId::Aes => return Err(no_aes_files()),
        };
        f.check_id(key.public().key_id())?;
        Ok(key)
    }
}

struct Fields {
    scheme: SchemeId,
    key_id: Option<String>,
    key: Zeroizing<Vec<u8>>,
}

impl Fields {
    fn parse(text: &str, magic: &str) -> Result<Fields, IdentityError> {
        let bad = |why: &str| IdentityError::BadKey(why.to_owned());
        let mut lines = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'));
        match lines.next() {
            Some(l) if l == magic => {}
            Some(l) if l == PRIVATE_MAGIC || l == PUBLIC_MAGIC => {
                return Err(bad(&format!("this is a {l}, expected a {magic}")));
            }
            _ => {
                return Err(bad(&format!(
                    "not a privasip key file (first line is not {magic:?})"
                )));
            }
        }
        let (mut scheme, mut key_id, mut key) = (None, None, None);
        for line in lines {
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| bad("a line without ':'"))?;
            let value = value.trim();
            match name.trim() {
                "scheme" => {
                    scheme = Some(
                        SchemeId::from_name(value)
                            .ok_or_else(|| bad(&format!("unknown scheme {value:?}")))?,
                    );
                }
                "key-id" => key_id = Some(value.to_owned()),
                "key" => {
                    key = Some(Zeroizing::new(
                        B64.decode(value).map_err(|_| bad("key is not base64url"))?,
                    ));
                }
                other => return Err(bad(&format!("unknown field {other:?}"))),
            }
        }
        Ok(Fields {
            scheme: scheme.ok_or_else(|| bad("no scheme line"))?,
            key_id,
            key: key.ok_or_else(|| bad("no key line"))?,
        })
    }

    fn check_id(&self, actual: KeyId) -> Result<(), IdentityError> {
        match &self.key_id {
            Some(id) if *id != actual.to_string() => Err(IdentityError::BadKey(format!(
                "key-id {id} does not match the key (its id is {actual}): file edited or truncated?"
            ))),
            _ => Ok(()),
        }
    }
}
