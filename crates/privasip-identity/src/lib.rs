#![doc = include_str!("../README.md")]

mod cache;
mod error;
mod id;
mod keyring;
mod keys;
mod scheme;
mod token;
pub mod transform;

pub use cache::IdCache;
pub use error::IdentityError;
pub use id::{MAX_ID_LEN, RealId};
pub use keyring::{DEFAULT_CACHE_CAPACITY, DEFAULT_CACHE_TTL, Keyring, Opened};
pub use keys::{PrivateKey, PublicKey};
pub use scheme::aes::{AesDirectory, AesOpened, AesSender, DEFAULT_WINDOW};
pub use scheme::ecies::{EciesPrivate, EciesPublic};
pub use scheme::hpke::{HpkePrivate, HpkePublic};
pub use scheme::rsa::{RSA_BITS, RsaPrivate, RsaPublic};
pub use scheme::{Decryptor, Encryptor, KeyId};
pub use token::{MAX_TOKEN_LEN, SchemeId, Token};
