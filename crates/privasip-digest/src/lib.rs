#![doc = include_str!("../README.md")]

mod nonce;

use std::fmt;

use md5::Md5;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

pub use nonce::{NonceCheck, Nonces};

/// A Digest algorithm (RFC 8760 §2). The `-sess` variants are not offered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `MD5`, RFC 3261's only algorithm; what most SIP clients still send.
    Md5,
    /// `SHA-256`, RFC 8760.
    Sha256,
}

impl Algorithm {
    /// The token in `algorithm=` parameters.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// Parses an `algorithm=` value; a missing one means MD5 (RFC 3261 §22.4).
    pub fn parse(s: Option<&str>) -> Option<Algorithm> {
        match s {
            None => Some(Algorithm::Md5),
            Some(a) if a.eq_ignore_ascii_case("MD5") => Some(Algorithm::Md5),
            Some(a) if a.eq_ignore_ascii_case("SHA-256") => Some(Algorithm::Sha256),
            Some(_) => None,
        }
    }

    /// Lower-case hex of the hash of `parts` joined by ':'.
    fn hex(self, parts: &[&[u8]]) -> String {
        fn run<D: Digest>(parts: &[&[u8]]) -> String {
            let mut d = D::new();
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    d.update(b":");
                }
                d.update(p);
            }
            hex::encode(d.finalize())
        }
        match self {
            Algorithm::Md5 => run::<Md5>(parts),
            Algorithm::Sha256 => run::<Sha256>(parts),
        }
    }
}

/// `H(user ":" realm ":" password)` in lower-case hex: what a server stores
/// instead of the password.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct Ha1 {
    hex: String,
}

impl Ha1 {
    /// Computes HA1 from the real user name, realm and password.
    pub fn from_password(alg: Algorithm, user: &str, realm: &str, password: &str) -> Ha1 {
        Ha1 {
            hex: alg.hex(&[user.as_bytes(), realm.as_bytes(), password.as_bytes()]),
        }
    }

    /// Takes a stored HA1; `None` unless it is hex of the algorithm's length.
    pub fn from_hex(alg: Algorithm, hex: &str) -> Option<Ha1> {
        let len = match alg {
            Algorithm::Md5 => 32,
            Algorithm::Sha256 => 64,
        };
        (hex.len() == len && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| Ha1 {
            hex: hex.to_ascii_lowercase(),
        })
    }

    /// The hex string, for storing. Handle as a secret.
    pub fn expose_hex(&self) -> &str {
        &self.hex
    }
}

impl fmt::Debug for Ha1 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Ha1([redacted])")
    }
}

/// What a server put in its challenge and a client answers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Challenge<'a> {
    /// The algorithm of the challenge.
    pub algorithm: Algorithm,
    /// The server's nonce.
    pub nonce: &'a str,
    /// `Some("auth")` for qop=auth; `None` for the RFC 2069 form.
    pub qop: Option<&'a str>,
}

impl Challenge<'_> {
    /// The `response` value: `H(HA1:nonce:nc:cnonce:qop:HA2)` with qop,
    /// `H(HA1:nonce:HA2)` without; `HA2 = H(method:uri)` (RFC 7616 §3.4.1,
    /// §3.4.3). `nc` and `cnonce` are ignored without qop.
    pub fn response(&self, ha1: &Ha1, method: &str, uri: &str, nc: &str, cnonce: &str) -> String {
        let alg = self.algorithm;
        let ha2 = alg.hex(&[method.as_bytes(), uri.as_bytes()]);
        match self.qop {
            Some(qop) => alg.hex(&[
                ha1.hex.as_bytes(),
                self.nonce.as_bytes(),
                nc.as_bytes(),
                cnonce.as_bytes(),
                qop.as_bytes(),
                ha2.as_bytes(),
            ]),
            None => alg.hex(&[ha1.hex.as_bytes(), self.nonce.as_bytes(), ha2.as_bytes()]),
        }
    }

    /// Checks a client's `response` in constant time.
    pub fn verify(
        &self,
        ha1: &Ha1,
        method: &str,
        uri: &str,
        nc: &str,
        cnonce: &str,
        response: &str,
    ) -> bool {
        let expected = self.response(ha1, method, uri, nc, cnonce);
        let given = response.to_ascii_lowercase();
        expected.len() == given.len() && bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7616 §3.9.1 (HTTP, but the arithmetic is the same): user
    // "Mufasa", realm "http-auth@example.org", password "Circle of Life".
    const NONCE: &str = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
    const CNONCE: &str = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";

    #[test]
    fn rfc7616_md5_vector() {
        let ha1 = Ha1::from_password(
            Algorithm::Md5,
            "Mufasa",
            "http-auth@example.org",
            "Circle of Life",
        );
        let c = Challenge {
            algorithm: Algorithm::Md5,
            nonce: NONCE,
            qop: Some("auth"),
        };
        let r = c.response(&ha1, "GET", "/dir/index.html", "00000001", CNONCE);
        assert_eq!(r, "8ca523f5e9506fed4657c9700eebdbec");
    }

    #[test]
    fn rfc7616_sha256_vector() {
        let ha1 = Ha1::from_password(
            Algorithm::Sha256,
            "Mufasa",
            "http-auth@example.org",
            "Circle of Life",
        );
        let c = Challenge {
            algorithm: Algorithm::Sha256,
            nonce: NONCE,
            qop: Some("auth"),
        };
        let r = c.response(&ha1, "GET", "/dir/index.html", "00000001", CNONCE);
        assert_eq!(
            r,
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
        assert!(c.verify(&ha1, "GET", "/dir/index.html", "00000001", CNONCE, &r));
        assert!(!c.verify(&ha1, "GET", "/dir/index.html", "00000002", CNONCE, &r));
    }

    #[test]
    fn rfc2617_no_qop_and_algorithm_names() {
        let ha1 = Ha1::from_password(Algorithm::Md5, "bob", "biloxi.com", "zanzibar");
        let c = Challenge {
            algorithm: Algorithm::Md5,
            nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            qop: None,
        };
        let r = c.response(&ha1, "INVITE", "sip:bob@biloxi.com", "", "");
        assert_eq!(r.len(), 32);
        assert!(c.verify(&ha1, "INVITE", "sip:bob@biloxi.com", "x", "y", &r));
        assert_eq!(Algorithm::parse(None), Some(Algorithm::Md5));
        assert_eq!(Algorithm::parse(Some("sha-256")), Some(Algorithm::Sha256));
        assert_eq!(Algorithm::parse(Some("SHA-512-256")), None);
        assert!(Ha1::from_hex(Algorithm::Md5, ha1.expose_hex()).is_some());
        assert!(Ha1::from_hex(Algorithm::Sha256, ha1.expose_hex()).is_none());
        assert_eq!(format!("{ha1:?}"), "Ha1([redacted])");
    }
}
