//! Digest authentication of our users (RFC 3261 §22, RFC 7616, RFC 8760),
//! with PrivaSIP tokens as user names (doc/privasip.md §4), and a limit
//! on failed attempts per user and per source.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

use privasip_digest::{Algorithm, Challenge, Ha1, NonceCheck, Nonces};
use privasip_identity::{Keyring, Token};
use privasip_message::{HeaderName, Message};

/// A user's stored credentials: HA1 for each algorithm, never the password.
#[derive(Clone, Debug)]
pub struct Credentials {
    /// `MD5(user:realm:password)`.
    pub md5: Ha1,
    /// `SHA-256(user:realm:password)`.
    pub sha256: Ha1,
}

impl Credentials {
    /// From a password (for `privasip user add`).
    pub fn from_password(user: &str, realm: &str, password: &str) -> Credentials {
        Credentials {
            md5: Ha1::from_password(Algorithm::Md5, user, realm, password),
            sha256: Ha1::from_password(Algorithm::Sha256, user, realm, password),
        }
    }

    fn ha1(&self, alg: Algorithm) -> &Ha1 {
        match alg {
            Algorithm::Md5 => &self.md5,
            Algorithm::Sha256 => &self.sha256,
        }
    }
}

/// Failed attempts allowed per user and per source in [`FAILURE_WINDOW`].
pub const MAX_FAILURES: u32 = 10;
/// The window failed attempts are counted in.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// What checking a request's credentials gave.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Authenticated as this real user.
    Ok(String),
    /// Answer 401/407 with fresh challenges (`stale` per RFC 7616 §3.3).
    Challenge { stale: bool },
    /// Answer 403 with this reason.
    Forbidden(&'static str),
}

pub(crate) struct Authenticator<P> {
    /// (realm, real user) -> credentials.
    users: HashMap<(String, String), Credentials>,
    nonces: Nonces,
    failures: HashMap<Failure<P>, (u32, Instant)>,
    /// Offered in this order, and the only ones accepted.
    algorithms: Vec<Algorithm>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum Failure<P> {
    User(String),
    Source(P),
}

impl<P: Clone + Eq + Hash> Authenticator<P> {
    pub(crate) fn new(nonce_key: [u8; 32], epoch: Instant, algorithms: Vec<Algorithm>) -> Self {
        Authenticator {
            algorithms,
            users: HashMap::new(),
            nonces: Nonces::new(nonce_key, epoch, Duration::from_secs(300)),
            failures: HashMap::new(),
        }
    }

    pub(crate) fn set_user(&mut self, realm: &str, user: &str, creds: Credentials) {
        self.users
            .insert((realm.to_owned(), user.to_owned()), creds);
    }

    pub(crate) fn remove_user(&mut self, realm: &str, user: &str) {
        self.users.remove(&(realm.to_owned(), user.to_owned()));
    }

    pub(crate) fn knows(&self, realm: &str, user: &str) -> bool {
        self.users
            .contains_key(&(realm.to_owned(), user.to_owned()))
    }

    /// The WWW-/Proxy-Authenticate values, most preferred first (RFC 8760
    /// §2.4).
    pub(crate) fn challenges(&mut self, realm: &str, stale: bool, now: Instant) -> Vec<String> {
        let nonce = self.nonces.issue(now);
        let stale = if stale { ", stale=true" } else { "" };
        self.algorithms
            .iter()
            .map(|a| {
                format!(
                    "Digest realm=\"{realm}\", nonce=\"{nonce}\", algorithm={}, qop=\"auth\"{stale}",
                    a.as_str()
                )
            })
            .collect()
    }

    fn locked_out(&mut self, key: &Failure<P>, now: Instant) -> bool {
        match self.failures.get(key) {
            Some((n, since)) if now.saturating_duration_since(*since) < FAILURE_WINDOW => {
                *n >= MAX_FAILURES
            }
            Some(_) => {
                self.failures.remove(key);
                false
            }
            None => false,
        }
    }

    fn fail(&mut self, key: Failure<P>, now: Instant) {
        let e = self.failures.entry(key).or_insert((0, now));
        if now.saturating_duration_since(e.1) >= FAILURE_WINDOW {
            *e = (0, now);
        }
        e.0 += 1;
    }

    /// Checks the credentials in `header` (Authorization or
    /// Proxy-Authorization) for `realm`. PrivaSIP tokens as user names are
    /// opened with `keyring`, bound to the Call-ID.
    pub(crate) fn check(
        &mut self,
        msg: &Message<'_>,
        header: HeaderName,
        realm: &str,
        source: &P,
        keyring: Option<&mut Keyring>,
        now: Instant,
    ) -> Verdict {
        let source_key = Failure::Source(source.clone());
        if self.locked_out(&source_key, now) {
            return Verdict::Forbidden("Too many failed attempts");
        }
        let Some(creds) = msg
            .auth_values(header)
            .filter(|a| a.is_digest())
            .find(|a| a.param("realm").as_deref() == Some(realm))
        else {
            return Verdict::Challenge { stale: false };
        };
        let param = |n: &str| creds.param(n).map(|c| c.into_owned());
        let (Some(username), Some(nonce), Some(uri), Some(response)) = (
            param("username"),
            param("nonce"),
            param("uri"),
            param("response"),
        ) else {
            self.fail(source_key, now);
            return Verdict::Forbidden("Incomplete credentials");
        };
        // The user: a token opens to the real one (doc/privasip.md §4).
        let user = if Token::looks_like(&username) {
            let (Some(ring), Some(call_id)) = (keyring, msg.call_id()) else {
                return Verdict::Forbidden("PrivaSIP token not accepted here");
            };
            let from_user = msg
                .from()
                .and_then(|f| f.uri.as_sip().and_then(|u| u.user).map(str::to_owned));
            if from_user.as_deref() != Some(username.as_str()) {
                self.fail(source_key, now);
                return Verdict::Forbidden("Credentials and From name different users");
            }
            match ring.open(&username, call_id.as_bytes(), now) {
                Ok(o) => o.id.expose().to_owned(),
                Err(_) => {
                    self.fail(source_key, now);
                    return Verdict::Forbidden("PrivaSIP token does not open");
                }
            }
        } else {
            username
        };
        let user_key = Failure::User(user.clone());
        if self.locked_out(&user_key, now) {
            return Verdict::Forbidden("Too many failed attempts");
        }
        let Some(alg) =
            Algorithm::parse(param("algorithm").as_deref()).filter(|a| self.algorithms.contains(a))
        else {
            return Verdict::Challenge { stale: false };
        };
        let qop = param("qop");
        if qop.as_deref() != Some("auth") {
            // We offer qop=auth only; RFC 2069 answers get a new challenge.
            return Verdict::Challenge { stale: false };
        }
        let nc = param("nc");
        let cnonce = param("cnonce").unwrap_or_default();
        match self.nonces.check(&nonce, nc.as_deref(), now) {
            NonceCheck::Valid => {}
            NonceCheck::Stale => return Verdict::Challenge { stale: true },
            NonceCheck::Unknown => return Verdict::Challenge { stale: false },
            NonceCheck::Replayed => {
                self.fail(source_key, now);
                return Verdict::Forbidden("Replayed nonce count");
            }
        }
        let Some(stored) = self.users.get(&(realm.to_owned(), user.clone())) else {
            self.fail(source_key, now);
            self.fail(user_key, now);
            return Verdict::Forbidden("Wrong user name or password");
        };
        let method = msg.method().map(|m| m.as_str()).unwrap_or_default();
        let c = Challenge {
            algorithm: alg,
            nonce: &nonce,
            qop: Some("auth"),
        };
        if c.verify(
            stored.ha1(alg),
            method,
            &uri,
            nc.as_deref().unwrap_or(""),
            &cnonce,
            &response,
        ) {
            Verdict::Ok(user)
        } else {
            self.fail(source_key, now);
            self.fail(user_key, now);
            Verdict::Forbidden("Wrong user name or password")
        }
    }
}
