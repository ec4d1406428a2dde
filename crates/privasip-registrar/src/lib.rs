#![doc = include_str!("../README.md")]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use privasip_message::{
    ContactValue, HasSipStatus, HeaderName, Message, NameAddr, Rejection, Sensitive, Uri,
    parse_delta_seconds,
};

/// Registrar limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistrarConfig {
    /// Shortest registration accepted, seconds (below: 423). Default 60.
    pub min_expires: u32,
    /// Longest registration granted, seconds (longer ones are cut to
    /// this). Default 3600.
    pub max_expires: u32,
    /// Granted when the request names no expiry. Default 3600.
    pub default_expires: u32,
    /// Most contacts per address of record (beyond: 403). Default 10.
    pub max_contacts: usize,
    /// Most addresses of record with bindings at once (beyond, a new one
    /// gets 503 until some lapse). Default 100 000.
    pub max_aors: usize,
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        RegistrarConfig {
            min_expires: 60,
            max_expires: 3600,
            default_expires: 3600,
            max_contacts: 10,
            max_aors: 100_000,
        }
    }
}

/// One contact bound to an address of record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    /// The contact URI, as the user agent wrote it (without `<>`).
    pub contact: Sensitive<String>,
    /// Preference, 0-1000 (q=0.5 is 500); 1000 when not given.
    pub q: u16,
    /// When it lapses.
    pub expires_at: Instant,
    /// The Call-ID of the REGISTER that made or refreshed it.
    pub call_id: Sensitive<String>,
    /// And its CSeq number.
    pub cseq: u32,
}

impl Binding {
    /// Seconds left at `now` (for the Contact `expires` of a 200).
    pub fn remaining(&self, now: Instant) -> u32 {
        u32::try_from(self.expires_at.saturating_duration_since(now).as_secs()).unwrap_or(u32::MAX)
    }
}

/// Why a REGISTER was refused, with the status to answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterError {
    /// 400: a malformed Contact, Expires or q, or `*` misused.
    #[error("{0}")]
    BadRequest(&'static str),
    /// 423: an expiry below the minimum (answer with Min-Expires).
    #[error("registration interval too brief (minimum {min_expires} s)")]
    IntervalTooBrief {
        /// The value for Min-Expires.
        min_expires: u32,
    },
    /// 500: the same Call-ID with a CSeq not above the stored one.
    #[error("REGISTER out of order (CSeq not above the binding's)")]
    OutOfOrder,
    /// 403: more contacts than allowed for one address of record.
    #[error("too many contacts for this address of record")]
    TooManyContacts,
    /// 503: as many addresses of record as allowed have bindings.
    #[error("the registrar holds as many addresses of record as allowed")]
    Full,
}

impl HasSipStatus for RegisterError {
    fn sip_status(&self) -> u16 {
        match self {
            RegisterError::BadRequest(_) => 400,
            RegisterError::IntervalTooBrief { .. } => 423,
            RegisterError::OutOfOrder => 500,
            RegisterError::TooManyContacts => 403,
            RegisterError::Full => 503,
        }
    }

    fn rejection(&self) -> Rejection {
        let reason = match self {
            RegisterError::BadRequest(why) => (*why).to_owned(),
            RegisterError::IntervalTooBrief { .. } => "Interval Too Brief".to_owned(),
            RegisterError::OutOfOrder => "REGISTER Out Of Order".to_owned(),
            RegisterError::TooManyContacts => "Too Many Contacts".to_owned(),
            RegisterError::Full => "Service Unavailable (registrar full)".to_owned(),
        };
        Rejection {
            code: self.sip_status(),
            reason,
        }
    }
}

/// What a REGISTER did ([`Registrar::register_changes`]). Contacts name
/// users and hosts: `Debug` shows neither.
#[derive(Debug)]
pub struct Registered {
    /// The bindings now in force.
    pub bindings: Vec<Binding>,
    /// The contacts it changed, as a store keys them: each it named, and
    /// the stored spelling of each binding those matched; none for a
    /// query; None when it changed them all (`Contact: *`). A shared store
    /// writes just these and keeps what another instance registered.
    pub touched: Option<Sensitive<Vec<String>>>,
}

/// The location service: address of record -> bindings.
#[derive(Default)]
pub struct Registrar {
    cfg: RegistrarConfig,
    bindings: HashMap<String, Vec<Binding>>,
}

/// What one Contact in a REGISTER asks for.
struct Wanted {
    contact: String,
    q: u16,
    expires: u32,
}

impl Registrar {
    /// An empty location service.
    pub fn new(cfg: RegistrarConfig) -> Registrar {
        Registrar {
            cfg,
            bindings: HashMap::new(),
        }
    }

    /// How many addresses of record have bindings (some may have lapsed).
    pub fn len(&self) -> usize {
        self.bindings.len()
    }

    /// Whether no address of record is bound.
    pub fn is_empty(&self) -> bool {
        self.bindings.is_empty()
    }

    /// Applies a REGISTER for `aor` (RFC 3261 §10.3 steps 5-8; the caller
    /// did 1-4). Returns the bindings now in force, for the 200's Contact
    /// header (with [`Binding::remaining`] as `expires`). Nothing changes
    /// when it fails.
    pub fn register(
        &mut self,
        aor: &str,
        msg: &Message<'_>,
        now: Instant,
    ) -> Result<Vec<Binding>, RegisterError> {
        self.register_changes(aor, msg, now).map(|r| r.bindings)
    }

    /// Like [`Registrar::register`], and also says which contacts the
    /// REGISTER changed, as a store keys them ([`Registered::touched`]).
    pub fn register_changes(
        &mut self,
        aor: &str,
        msg: &Message<'_>,
        now: Instant,
    ) -> Result<Registered, RegisterError> {
        let call_id = msg
            .call_id()
            .ok_or(RegisterError::BadRequest("no Call-ID"))?
            .to_owned();
        let cseq = msg.cseq().ok_or(RegisterError::BadRequest("no CSeq"))?.seq;
        let header_expires = msg.expires();
        let current = self.lookup(aor, now);
        let contacts = msg.contacts();
        let wanted = match contacts {
            // A query: no Contact (§10.3 step 8 returns the current list).
            None => {
                return Ok(Registered {
                    bindings: current,
                    touched: Some(Sensitive::new(Vec::new())),
                });
            }
            // §10.3 step 6: "*" only with Expires: 0 and alone.
            Some(ContactValue::Star) => {
                if header_expires != Some(0) || msg.values(HeaderName::Contact).count() != 1 {
                    return Err(RegisterError::BadRequest(
                        "Contact: * needs Expires: 0 and no other Contact",
                    ));
                }
                if current
                    .iter()
                    .any(|b| *b.call_id.expose() == call_id && cseq <= b.cseq)
                {
                    return Err(RegisterError::OutOfOrder);
                }
                self.bindings.remove(aor);
                return Ok(Registered {
                    bindings: Vec::new(),
                    touched: None,
                });
            }
            Some(ContactValue::Addrs(addrs)) => addrs
                .iter()
                .map(|na| self.wanted(na, header_expires))
                .collect::<Result<Vec<Wanted>, RegisterError>>()?,
        };

        // Validate everything first, then apply: a failure changes nothing.
        let mut next = current;
        let mut touched = Vec::with_capacity(wanted.len());
        for w in &wanted {
            let existing = next
                .iter()
                .position(|b| same_contact(b.contact.expose(), &w.contact));
            touched.push(w.contact.clone());
            // The same contact stored in another spelling (host case).
            if let Some(i) = existing
                && *next[i].contact.expose() != w.contact
            {
                touched.push(next[i].contact.expose().clone());
            }
            if let Some(i) = existing
                && *next[i].call_id.expose() == call_id
                && cseq <= next[i].cseq
            {
                return Err(RegisterError::OutOfOrder);
            }
            match (existing, w.expires) {
                (Some(i), 0) => {
                    next.remove(i);
                }
                (None, 0) => {}
                (existing, secs) => {
                    let b = Binding {
                        contact: Sensitive::new(w.contact.clone()),
                        q: w.q,
                        expires_at: now + Duration::from_secs(u64::from(secs)),
                        call_id: Sensitive::new(call_id.clone()),
                        cseq,
                    };
                    match existing {
                        Some(i) => next[i] = b,
                        None => next.push(b),
                    }
                }
            }
        }
        if next.len() > self.cfg.max_contacts {
            return Err(RegisterError::TooManyContacts);
        }
        sort_by_q(&mut next);
        if next.is_empty() {
            self.bindings.remove(aor);
        } else if let Some(slot) = self.bindings.get_mut(aor) {
            // A refresh: no new key to allocate.
            slot.clone_from(&next);
        } else {
            // A new address of record: within the bound, making room from
            // lapsed bindings first.
            if self.bindings.len() >= self.cfg.max_aors {
                self.expire(now);
            }
            if self.bindings.len() >= self.cfg.max_aors {
                return Err(RegisterError::Full);
            }
            self.bindings.insert(aor.to_owned(), next.clone());
        }
        Ok(Registered {
            bindings: next,
            touched: Some(Sensitive::new(touched)),
        })
    }

    fn wanted(
        &self,
        na: &NameAddr<'_>,
        header_expires: Option<u32>,
    ) -> Result<Wanted, RegisterError> {
        let expires = match na.params.get("expires") {
            Some(Some(v)) => parse_delta_seconds(v)
                .map_err(|_| RegisterError::BadRequest("bad Contact expires parameter"))?,
            Some(None) => return Err(RegisterError::BadRequest("Contact expires without a value")),
            None => header_expires.unwrap_or(self.cfg.default_expires),
        };
        // §10.3 step 7: too brief (but not 0, which removes) -> 423.
        if expires != 0 && expires < self.cfg.min_expires {
            return Err(RegisterError::IntervalTooBrief {
                min_expires: self.cfg.min_expires,
            });
        }
        let q = match na.params.get("q") {
            Some(Some(v)) => parse_q(v).ok_or(RegisterError::BadRequest("bad q value"))?,
            Some(None) => return Err(RegisterError::BadRequest("q without a value")),
            None => 1000,
        };
        Ok(Wanted {
            contact: na.uri_raw.to_owned(),
            q,
            expires: expires.min(self.cfg.max_expires),
        })
    }

    /// The unexpired contacts of `aor`, best q first. Drops lapsed ones.
    pub fn lookup(&mut self, aor: &str, now: Instant) -> Vec<Binding> {
        let Some(list) = self.bindings.get_mut(aor) else {
            return Vec::new();
        };
        list.retain(|b| b.expires_at > now);
        let out = list.clone();
        if list.is_empty() {
            self.bindings.remove(aor);
        }
        out
    }

    /// Drops every lapsed binding; returns how many went.
    pub fn expire(&mut self, now: Instant) -> usize {
        let mut gone = 0;
        self.bindings.retain(|_, list| {
            let before = list.len();
            list.retain(|b| b.expires_at > now);
            gone += before - list.len();
            !list.is_empty()
        });
        gone
    }

    /// Restores bindings (from the store, at start-up).
    pub fn restore(&mut self, aor: &str, mut bindings: Vec<Binding>) {
        sort_by_q(&mut bindings);
        self.bindings.insert(aor.to_owned(), bindings);
    }

    /// Replaces every binding with `all` (a resynchronisation from a
    /// shared store): addresses of record not in it lose their bindings,
    /// as they would have heard had they been listening.
    pub fn replace_all(&mut self, all: HashMap<String, Vec<Binding>>) {
        self.bindings.clear();
        for (aor, list) in all {
            self.restore(&aor, list);
        }
    }
}

fn sort_by_q(list: &mut [Binding]) {
    list.sort_by_key(|b| std::cmp::Reverse(b.q));
}

/// RFC 3261 §10.3 step 7 compares contacts with the URI comparison rules
/// of §19.1.4; this compares scheme and host case-insensitively and the
/// rest exactly, which those rules make equal in the common cases.
fn same_contact(a: &str, b: &str) -> bool {
    match (Uri::parse(a), Uri::parse(b)) {
        (Ok(Uri::Sip(x)), Ok(Uri::Sip(y))) => {
            x.secure == y.secure
                && x.user == y.user
                && x.host.eq_ignore_ascii_case(y.host)
                && x.port == y.port
                && x.params.as_str().eq_ignore_ascii_case(y.params.as_str())
        }
        _ => a == b,
    }
}

/// `qvalue = ("0" ["." 0*3DIGIT]) / ("1" ["." 0*3("0")])`, as thousandths.
fn parse_q(v: &str) -> Option<u16> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac_val: u16 = format!("{frac:0<3}").parse().ok()?;
    match int {
        "0" => Some(frac_val),
        "1" if frac_val == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q_values() {
        assert_eq!(parse_q("1"), Some(1000));
        assert_eq!(parse_q("1.000"), Some(1000));
        assert_eq!(parse_q("0.5"), Some(500));
        assert_eq!(parse_q("0.33"), Some(330));
        assert_eq!(parse_q("0"), Some(0));
        assert_eq!(parse_q("1.5"), None);
        assert_eq!(parse_q("0.1234"), None);
        assert_eq!(parse_q("2"), None);
        assert_eq!(parse_q(""), None);
    }

    #[test]
    fn contact_comparison() {
        assert!(same_contact("sip:bob@HOST.example", "sip:bob@host.example"));
        assert!(!same_contact(
            "sip:bob@host.example",
            "sip:BOB@host.example"
        ));
        assert!(!same_contact(
            "sip:bob@host.example:5060",
            "sip:bob@host.example"
        ));
    }
}
