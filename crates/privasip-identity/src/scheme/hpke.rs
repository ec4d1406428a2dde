//! HPKE (RFC 9180), base mode: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
//! ChaCha20-Poly1305. The default scheme: small tokens, fast, and a
//! standard with test vectors.

use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};
use rand_core::CryptoRngCore;

use super::{Decryptor, Encryptor, KeyId, check_addressed};
use crate::{IdentityError, RealId, SchemeId, Token};

type Kem = X25519HkdfSha256;
/// HPKE `info`: separates these tokens from any other use of the key.
const INFO: &[u8] = b"privasip identity token v1";
const ENC_LEN: usize = 32;

/// hpke 0.13 speaks rand_core 0.9; callers hand in a rand_core 0.6 RNG.
struct Rng09<'a>(&'a mut dyn CryptoRngCore);

impl rand_core_09::RngCore for Rng09<'_> {
    fn next_u32(&mut self) -> u32 {
        self.0.next_u32()
    }

    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    fn fill_bytes(&mut self, dst: &mut [u8]) {
        self.0.fill_bytes(dst);
    }
}

impl rand_core_09::CryptoRng for Rng09<'_> {}

/// A proxy's HPKE public key.
#[derive(Clone)]
pub struct HpkePublic {
    key: <Kem as hpke::Kem>::PublicKey,
    id: KeyId,
}

/// A proxy's HPKE private key (zeroized on drop by x25519-dalek).
pub struct HpkePrivate {
    key: <Kem as hpke::Kem>::PrivateKey,
    public: HpkePublic,
}

impl HpkePublic {
    /// Reads the 32-byte X25519 public key.
    pub fn from_bytes(b: &[u8]) -> Result<HpkePublic, IdentityError> {
        let key = <Kem as hpke::Kem>::PublicKey::from_bytes(b)
            .map_err(|_| IdentityError::BadKey("not an X25519 public key".into()))?;
        Ok(HpkePublic {
            id: KeyId::of(SchemeId::Hpke, b),
            key,
        })
    }

    /// The 32-byte public key.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.key.to_bytes().to_vec()
    }

    /// The key's id.
    pub fn key_id(&self) -> KeyId {
        self.id
    }
}

impl HpkePrivate {
    /// A new random key pair.
    pub fn generate(rng: &mut dyn CryptoRngCore) -> HpkePrivate {
        let (key, public) = Kem::gen_keypair(&mut Rng09(rng));
        HpkePrivate::from_parts(key, public)
    }

    fn from_parts(key: <Kem as hpke::Kem>::PrivateKey, pk: <Kem as hpke::Kem>::PublicKey) -> Self {
        let id = KeyId::of(SchemeId::Hpke, &pk.to_bytes());
        HpkePrivate {
            key,
            public: HpkePublic { key: pk, id },
        }
    }

    /// Reads the 32-byte X25519 private key.
    pub fn from_bytes(b: &[u8]) -> Result<HpkePrivate, IdentityError> {
        let key = <Kem as hpke::Kem>::PrivateKey::from_bytes(b)
            .map_err(|_| IdentityError::BadKey("not an X25519 private key".into()))?;
        let pk = Kem::sk_to_pk(&key);
        Ok(HpkePrivate::from_parts(key, pk))
    }

    /// The 32-byte private key. A secret: zeroize what you copy it into.
    pub fn to_bytes(&self) -> zeroize::Zeroizing<Vec<u8>> {
        zeroize::Zeroizing::new(self.key.to_bytes().to_vec())
    }

    /// The public half.
    pub fn public(&self) -> &HpkePublic {
        &self.public
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
        let (enc, ct) = hpke::single_shot_seal::<ChaCha20Poly1305, HkdfSha256, Kem, _>(
            &OpModeS::Base,
            &self.key,
            INFO,
            &id.pad(),
            &aad,
            &mut Rng09(rng),
        )
        .map_err(|_| IdentityError::WrongKey("HPKE encapsulation failed"))?;
        let mut ciphertext = enc.to_bytes().to_vec();
        ciphertext.extend_from_slice(&ct);
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
            .split_at_checked(ENC_LEN)
            .ok_or(IdentityError::Forged)?;
        let enc =
            <Kem as hpke::Kem>::EncappedKey::from_bytes(enc).map_err(|_| IdentityError::Forged)?;
        let aad = Token::aad(SchemeId::Hpke, &token.key_id, context);
        let padded = hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, Kem>(
            &OpModeR::Base,
            &self.key,
            &enc,
            INFO,
            ct,
            &aad,
        )
        .map_err(|_| IdentityError::Forged)?;
        RealId::unpad(&zeroize::Zeroizing::new(padded))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    /// RFC 9180 Appendix A.2.1: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
    /// ChaCha20Poly1305, base mode, the suite our tokens use. Checks key
    /// derivation, our key loading, and opening the first encryption.
    #[test]
    fn rfc9180_a_2_1_base_mode_vector() {
        let ikm_r = hex("1ac01f181fdf9f352797655161c58b75c656a6cc2716dcb66372da835542e1df");
        let sk_rm = hex("8057991eef8f1f1af18f4a9491d16a1ce333f695d4db8e38da75975c4478e0fb");
        let pk_rm = hex("4310ee97d88cc1f088a5576c77ab0cf5c3ac797f3d95139c6c84b5429c59662a");
        let enc = hex("1afa08d3dec047a643885163f1180476fa7ddb54c6a8029ea33f95796bf2ac4a");
        let info = hex("4f6465206f6e2061204772656369616e2055726e");
        let pt = hex("4265617574792069732074727574682c20747275746820626561757479");
        let aad = hex("436f756e742d30");
        let ct = hex(
            "1c5250d8034ec2b784ba2cfd69dbdb8af406cfe3ff938e131f0def8c8b60b4db21993c62ce81883d2dd1b51a28",
        );

        let (sk, pk) = Kem::derive_keypair(&ikm_r);
        assert_eq!(sk.to_bytes().to_vec(), sk_rm);
        assert_eq!(pk.to_bytes().to_vec(), pk_rm);

        let ours = HpkePrivate::from_bytes(&sk_rm).expect("vector key loads");
        assert_eq!(ours.public().to_bytes(), pk_rm);

        let encapped = <Kem as hpke::Kem>::EncappedKey::from_bytes(&enc).expect("enc");
        let opened = hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, Kem>(
            &OpModeR::Base,
            &ours.key,
            &encapped,
            &info,
            &ct,
            &aad,
        )
        .expect("the RFC's ciphertext opens");
        assert_eq!(opened, pt);
    }
}
