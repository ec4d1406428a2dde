//! Digest authentication of our users (RFC 3261 §22, RFC 7616, RFC 8760),
//! with PrivaSIP tokens as user names (doc/privasip.md §4), and limits on
//! failed attempts that an attacker cannot turn against the real user:
//! per user and source, per source, and a slower one per user that spares
//! the sources the user authenticated from before.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use privasip_digest::{Algorithm, Challenge, Ha1, NonceCheck, Nonces};
use privasip_identity::{Keyring, Token};
use privasip_message::{HeaderName, Message};

use crate::budget::{Bounded, SourceKey};
use crate::gate::{Gate, Refused};

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

/// Failed attempts allowed for one user from one source in
/// [`FAILURE_WINDOW`].
pub const MAX_FAILURES: u32 = 10;
/// Failed attempts allowed from one source, whatever the user, in
/// [`FAILURE_WINDOW`] (guessing across many user names).
pub const MAX_SOURCE_FAILURES: u32 = 30;
/// Failed attempts allowed for one user from all sources together in
/// [`FAILURE_WINDOW`] (guessing spread over many sources). Past it, only
/// sources that authenticated as that user within [`KNOWN_SOURCE_FOR`]
/// may still try.
pub const MAX_USER_FAILURES: u32 = 100;
/// The window failed attempts are counted in.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// How long a source that authenticated as a user stays exempt from that
/// user's global limit.
pub const KNOWN_SOURCE_FOR: Duration = Duration::from_secs(24 * 3600);
/// Failure counters and known sources kept, each.
const TRACKED: usize = 65_536;

/// What checking a request's credentials gave.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Authenticated as this real user.
    Ok(String),
    /// Answer 401/407 with fresh challenges (`stale` per RFC 7616 §3.3).
    Challenge { stale: bool },
    /// Answer 403 with this reason.
    Forbidden(&'static str),
    /// The source spent its budget for token opens: answer 503.
    Busy,
}

pub(crate) struct Authenticator {
    /// (realm, real user) -> credentials.
    users: HashMap<(String, String), Credentials>,
    nonces: Nonces,
    /// Failures counted, and since when.
    failures: Bounded<Failure, (u32, Instant)>,
    /// (user, source) that authenticated, and when last.
    known: Bounded<(String, SourceKey), Instant>,
    /// Offered in this order, and the only ones accepted.
    algorithms: Vec<Algorithm>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum Failure {
    /// One user from one source.
    Pair(String, SourceKey),
    /// One source, any user.
    Source(SourceKey),
    /// One user, all sources.
    User(String),
}

impl Failure {
    fn limit(&self) -> u32 {
        match self {
            Failure::Pair(..) => MAX_FAILURES,
            Failure::Source(_) => MAX_SOURCE_FAILURES,
            Failure::User(_) => MAX_USER_FAILURES,
        }
    }
}

impl Authenticator {
    pub(crate) fn new(nonce_key: [u8; 32], epoch: Instant, algorithms: Vec<Algorithm>) -> Self {
        Authenticator {
            algorithms,
            users: HashMap::new(),
            nonces: Nonces::new(nonce_key, epoch, Duration::from_secs(300)),
            failures: Bounded::new(TRACKED),
            known: Bounded::new(TRACKED),
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

    fn locked_out(&self, key: &Failure, now: Instant) -> bool {
        self.failures.get(key).is_some_and(|(n, since)| {
            now.saturating_duration_since(*since) < FAILURE_WINDOW && *n >= key.limit()
        })
    }

    fn fail(&mut self, key: Failure, now: Instant) {
        let e = self.failures.entry(
            key,
            || (0, now),
            |(_, since)| now.saturating_duration_since(*since) >= FAILURE_WINDOW,
            |(_, since)| *since,
        );
        if now.saturating_duration_since(e.1) >= FAILURE_WINDOW {
            *e = (0, now);
        }
        e.0 = e.0.saturating_add(1);
    }

    /// Whether `user` is locked out for `source`: too many failures for
    /// the pair, or for the user from everywhere unless this source
    /// authenticated as the user lately.
    fn user_locked(&self, user: &str, source: SourceKey, now: Instant) -> bool {
        if self.locked_out(&Failure::Pair(user.to_owned(), source), now) {
            return true;
        }
        self.locked_out(&Failure::User(user.to_owned()), now)
            && self
                .known
                .get(&(user.to_owned(), source))
                .is_none_or(|at| now.saturating_duration_since(*at) >= KNOWN_SOURCE_FOR)
    }

    /// A wrong password (or an unknown user) for `user` from `source`.
    fn fail_user(&mut self, user: &str, known_user: bool, source: SourceKey, now: Instant) {
        self.fail(Failure::Source(source), now);
        self.fail(Failure::Pair(user.to_owned(), source), now);
        if known_user {
            self.fail(Failure::User(user.to_owned()), now);
        }
    }

    /// Checks the credentials in `header` (Authorization or
    /// Proxy-Authorization) for `realm`. PrivaSIP tokens as user names are
    /// opened with the keyring, bound to the Call-ID, through the gate
    /// (and only once the nonce is known good).
    pub(crate) fn check(
        &mut self,
        msg: &Message<'_>,
        header: HeaderName,
        realm: &str,
        source: SourceKey,
        opener: Option<(&mut Keyring, &mut Gate)>,
        now: Instant,
    ) -> Verdict {
        let source_key = Failure::Source(source);
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
        // The nonce first: it is cheap, and a token is opened only for a
        // request that answers a challenge of ours. Nothing is recorded
        // until the response is verified.
        match self.nonces.peek(&nonce, nc.as_deref(), now) {
            NonceCheck::Valid => {}
            NonceCheck::Stale => return Verdict::Challenge { stale: true },
            NonceCheck::Unknown => return Verdict::Challenge { stale: false },
            NonceCheck::Replayed => {
                self.fail(source_key, now);
                return Verdict::Forbidden("Replayed nonce count");
            }
        }
        // The user: a token opens to the real one (doc/privasip.md §4).
        let user = if Token::looks_like(&username) {
            let (Some((ring, gate)), Some(call_id)) = (opener, msg.call_id()) else {
                return Verdict::Forbidden("PrivaSIP token not accepted here");
            };
            let from_user = msg
                .from()
                .and_then(|f| f.uri.as_sip().and_then(|u| u.user).map(str::to_owned));
            if from_user.as_deref() != Some(username.as_str()) {
                self.fail(source_key, now);
                return Verdict::Forbidden("Credentials and From name different users");
            }
            match gate.open(ring, &username, call_id.as_bytes(), source, now) {
                Ok(id) => id,
                Err(Refused::Busy) => return Verdict::Busy,
                Err(Refused::DoesNotOpen | Refused::NoKey { .. } | Refused::NoKeys) => {
                    self.fail(source_key, now);
                    return Verdict::Forbidden("PrivaSIP token does not open");
                }
            }
        } else {
            username
        };
        if self.user_locked(&user, source, now) {
            return Verdict::Forbidden("Too many failed attempts");
        }
        let Some(stored) = self.users.get(&(realm.to_owned(), user.clone())) else {
            self.fail_user(&user, false, source, now);
            return Verdict::Forbidden("Wrong user name or password");
        };
        let method = msg.method().map(|m| m.as_str()).unwrap_or_default();
        let cnonce = param("cnonce").unwrap_or_default();
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
            self.nonces.record(&nonce, nc.as_deref(), now);
            *self.known.entry(
                (user.clone(), source),
                || now,
                |at| now.saturating_duration_since(*at) >= KNOWN_SOURCE_FOR,
                |at| *at,
            ) = now;
            Verdict::Ok(user)
        } else {
            self.fail_user(&user, true, source, now);
            Verdict::Forbidden("Wrong user name or password")
        }
    }
}
