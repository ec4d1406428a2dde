#![doc = include_str!("../README.md")]

mod postgres;
pub mod scratch;
mod sqlite;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use privasip_sensitive::Sensitive;

use crate::postgres::{PgListener, PgStore};
use crate::sqlite::SqliteStore;

/// A store error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite said no.
    #[error("store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL said no (or could not be reached).
    #[error("store (PostgreSQL): {0}")]
    Postgres(String),
    /// The file is from a newer privasip.
    #[error("store schema version {0} is newer than this privasip understands ({SCHEMA_VERSION})")]
    TooNew(i64),
    /// Setting the file's permissions failed.
    #[error("store: cannot make the file private: {0}")]
    Permissions(std::io::Error),
    /// A stored secret is not 32 bytes (the store was edited by hand).
    #[error("store: the secret {0:?} is not 32 bytes")]
    BadSecret(String),
}

/// The schema version this code writes.
pub const SCHEMA_VERSION: i64 = 3;

/// A user's stored credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRow {
    /// The realm (one of the proxy's domains).
    pub realm: String,
    /// The real user name.
    pub user: Sensitive<String>,
    /// MD5 HA1, hex.
    pub ha1_md5: Sensitive<String>,
    /// SHA-256 HA1, hex.
    pub ha1_sha256: Sensitive<String>,
    /// PrivaSIP-AES: the lowest token counter still accepted. Kept when
    /// the user is put again with the same password, reset to 0 with a
    /// new one (a new key may start its counter afresh).
    pub aes_next: u64,
}

/// One registered contact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindingRow {
    /// The contact URI.
    pub contact: Sensitive<String>,
    /// q in thousandths.
    pub q: u16,
    /// Expiry, seconds since the Unix epoch.
    pub expires_unix: i64,
    /// The registering Call-ID.
    pub call_id: Sensitive<String>,
    /// Its CSeq.
    pub cseq: u32,
}

/// One accounted call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallRow {
    /// The authenticated caller (real ID).
    pub caller: Sensitive<String>,
    /// The callee as routed (a token under PrivaSIP-2).
    pub callee: Sensitive<String>,
    /// The dialog's Call-ID.
    pub call_id: Sensitive<String>,
    /// Answered at, seconds since the Unix epoch.
    pub started_unix: i64,
    /// Ended at (BYE answered), if it has.
    pub ended_unix: Option<i64>,
}

/// One write of a batch given to [`Store::apply`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Write {
    /// The bindings of an address of record are now these (none: it has
    /// none left).
    Bindings {
        /// The address of record.
        aor: Sensitive<String>,
        /// Its bindings.
        rows: Vec<BindingRow>,
    },
    /// Some contacts of an address of record changed: each of `touched`
    /// is now as in `rows`, or gone if `rows` lacks it. Its other
    /// contacts stay as they are (another instance of a shared store may
    /// have registered them meanwhile).
    Contacts {
        /// The address of record.
        aor: Sensitive<String>,
        /// The touched contacts that remain.
        rows: Vec<BindingRow>,
        /// Every contact the change is about.
        touched: Sensitive<Vec<String>>,
    },
    /// A call was answered.
    CallStarted {
        /// The authenticated caller (real ID).
        caller: Sensitive<String>,
        /// The callee as routed.
        callee: Sensitive<String>,
        /// The dialog's Call-ID.
        call_id: Sensitive<String>,
        /// When, seconds since the Unix epoch.
        at_unix: i64,
    },
    /// A call ended.
    CallEnded {
        /// The dialog's Call-ID.
        call_id: Sensitive<String>,
        /// When, seconds since the Unix epoch.
        at_unix: i64,
    },
    /// A user's AES counter rose to `next` (it never goes down).
    AesNext {
        /// The user (every realm).
        user: Sensitive<String>,
        /// The lowest counter still accepted.
        next: u64,
    },
}

/// Where the store lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A SQLite file (created if missing, mode 0600): one proxy.
    Sqlite(PathBuf),
    /// A PostgreSQL database, by connection URL
    /// (`postgresql://user@host/db` or `host=/run/postgresql dbname=..`):
    /// shared by several proxies.
    Postgres(Sensitive<String>),
}

/// A change another instance made to a shared store.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {
    /// Users were added, changed or removed: read them again.
    Users,
    /// The bindings of this address of record changed.
    Bindings {
        /// The address of record.
        aor: Sensitive<String>,
    },
    /// A user's AES counter rose.
    AesCounter {
        /// The user.
        user: Sensitive<String>,
        /// The lowest counter still accepted.
        next: u64,
    },
}

impl Change {
    /// `KIND INSTANCE [ARG...]`, one line.
    fn encode(&self, instance: &str) -> String {
        match self {
            Change::Users => format!("u {instance}"),
            Change::Bindings { aor } => format!("b {instance} {}", aor.expose()),
            Change::AesCounter { user, next } => format!("a {instance} {next} {}", user.expose()),
        }
    }

    /// A change from `payload`, unless `instance` made it.
    fn decode(payload: &str, instance: &str) -> Option<Change> {
        let mut parts = payload.splitn(3, ' ');
        let kind = parts.next()?;
        if parts.next()? == instance {
            return None;
        }
        match (kind, parts.next()) {
            ("u", _) => Some(Change::Users),
            ("b", Some(aor)) => Some(Change::Bindings {
                aor: Sensitive::new(aor.to_owned()),
            }),
            ("a", Some(rest)) => {
                let (next, user) = rest.split_once(' ')?;
                Some(Change::AesCounter {
                    user: Sensitive::new(user.to_owned()),
                    next: next.parse().ok()?,
                })
            }
            _ => None,
        }
    }
}

/// The store: SQLite for one proxy, PostgreSQL for several.
pub struct Store(Backend);

enum Backend {
    Sqlite(SqliteStore),
    Postgres(Box<PgStore>),
}

macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match &mut $self.0 {
            Backend::Sqlite($s) => $e,
            Backend::Postgres($s) => $e,
        }
    };
}

impl Store {
    /// Opens (creating and migrating as needed) a SQLite file.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Ok(Store(Backend::Sqlite(SqliteStore::open(path)?)))
    }

    /// Opens the store at `location`. `instance` names this process in
    /// the change notifications of a shared store (a random string does).
    pub fn open_at(location: &Location, instance: &str) -> Result<Store, StoreError> {
        Ok(Store(match location {
            Location::Sqlite(p) => Backend::Sqlite(SqliteStore::open(p)?),
            Location::Postgres(url) => {
                Backend::Postgres(Box::new(PgStore::open(url.expose(), instance)?))
            }
        }))
    }

    /// Adds or replaces a user's credentials (`aes_next` is not taken
    /// from `u`: see [`UserRow::aes_next`]).
    pub fn put_user(&mut self, u: &UserRow) -> Result<(), StoreError> {
        each!(self, s => s.put_user(u))
    }

    /// The 32-byte secret called `name`: the one stored, or `fresh`,
    /// stored now, if there is none. Instances sharing a store share it.
    pub fn secret(&mut self, name: &str, fresh: &[u8; 32]) -> Result<[u8; 32], StoreError> {
        let v = each!(self, s => s.secret(name, fresh))?;
        <[u8; 32]>::try_from(v.as_slice()).map_err(|_| StoreError::BadSecret(name.to_owned()))
    }

    /// Raises the AES counter of `user` (in every realm) to `next`; it
    /// never goes down. False if no such user.
    pub fn set_aes_next(&mut self, user: &str, next: u64) -> Result<bool, StoreError> {
        let w = Write::AesNext {
            user: Sensitive::new(user.to_owned()),
            next,
        };
        Ok(each!(self, s => s.write_one(&w))? > 0)
    }

    /// Removes a user; true if there was one.
    pub fn delete_user(&mut self, realm: &str, user: &str) -> Result<bool, StoreError> {
        each!(self, s => s.delete_user(realm, user))
    }

    /// Every user, by realm and name.
    pub fn users(&mut self) -> Result<Vec<UserRow>, StoreError> {
        each!(self, s => s.users())
    }

    /// Whether a user exists.
    pub fn has_user(&mut self, realm: &str, user: &str) -> Result<bool, StoreError> {
        each!(self, s => s.has_user(realm, user))
    }

    /// Replaces the bindings of `aor` (none: removes them).
    pub fn put_bindings(&mut self, aor: &str, bindings: &[BindingRow]) -> Result<(), StoreError> {
        self.apply(&[Write::Bindings {
            aor: Sensitive::new(aor.to_owned()),
            rows: bindings.to_vec(),
        }])
    }

    /// Makes all of `writes`, in order, in one transaction: all of them
    /// or (on an error) none. One commit for many writes is what lets a
    /// busy registrar keep its store up to date.
    pub fn apply(&mut self, writes: &[Write]) -> Result<(), StoreError> {
        each!(self, s => s.apply(writes))
    }

    /// Every binding that has not expired at `now_unix`, by AOR.
    pub fn bindings(
        &mut self,
        now_unix: i64,
    ) -> Result<Vec<(Sensitive<String>, BindingRow)>, StoreError> {
        each!(self, s => s.bindings(now_unix))
    }

    /// The unexpired bindings of one address of record.
    pub fn bindings_of(&mut self, aor: &str, now_unix: i64) -> Result<Vec<BindingRow>, StoreError> {
        each!(self, s => s.bindings_of(aor, now_unix))
    }

    /// Records an answered call.
    pub fn call_started(
        &mut self,
        caller: &str,
        callee: &str,
        call_id: &str,
        at_unix: i64,
    ) -> Result<(), StoreError> {
        let w = Write::CallStarted {
            caller: Sensitive::new(caller.to_owned()),
            callee: Sensitive::new(callee.to_owned()),
            call_id: Sensitive::new(call_id.to_owned()),
            at_unix,
        };
        each!(self, s => s.write_one(&w)).map(drop)
    }

    /// Records the end of a call; false if no open call has that Call-ID.
    pub fn call_ended(&mut self, call_id: &str, at_unix: i64) -> Result<bool, StoreError> {
        let w = Write::CallEnded {
            call_id: Sensitive::new(call_id.to_owned()),
            at_unix,
        };
        Ok(each!(self, s => s.write_one(&w))? > 0)
    }

    /// Every accounted call, oldest first.
    pub fn calls(&mut self) -> Result<Vec<CallRow>, StoreError> {
        each!(self, s => s.calls())
    }
}

/// Other instances' changes to a shared store, as they happen.
pub struct Listener(PgListener);

impl Listener {
    /// Listens on the store at `location`; None for a store that is not
    /// shared (SQLite).
    pub fn open(location: &Location, instance: &str) -> Result<Option<Listener>, StoreError> {
        match location {
            Location::Sqlite(_) => Ok(None),
            Location::Postgres(url) => {
                Ok(Some(Listener(PgListener::open(url.expose(), instance)?)))
            }
        }
    }

    /// Waits up to `wait` for changes; returns those that arrived (none
    /// on a timeout). An error means the connection is gone.
    pub fn next(&mut self, wait: Duration) -> Result<Vec<Change>, StoreError> {
        self.0.next(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::Change;

    #[test]
    fn changes_round_trip_and_skip_their_own() {
        for c in [
            Change::Users,
            Change::Bindings {
                aor: "sip:bob@b.example".into(),
            },
            Change::AesCounter {
                user: "alice".into(),
                next: 42,
            },
        ] {
            assert_eq!(Change::decode(&c.encode("p1"), "p2"), Some(c.clone()));
            assert_eq!(Change::decode(&c.encode("p1"), "p1"), None);
        }
        assert_eq!(Change::decode("x", "p"), None);
        assert_eq!(Change::decode("a p1 notanumber bob", "p2"), None);
    }
}
