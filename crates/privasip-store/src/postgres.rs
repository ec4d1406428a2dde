//! The PostgreSQL backend: one database shared by several proxy
//! instances. Each change is announced on the channel [`CHANNEL`] so the
//! other instances update their in-memory copy at once (see
//! [`crate::Listener`]).

use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, GenericClient, NoTls};

use crate::{BindingRow, CallRow, Change, SCHEMA_VERSION, Sensitive, StoreError, UserRow, Write};

/// The NOTIFY channel.
pub(crate) const CHANNEL: &str = "privasip_store";

/// The server's errors carry a DETAIL that may quote row values (a user
/// name): keep the code and message only, since errors reach the logs.
fn pg(e: postgres::Error) -> StoreError {
    StoreError::Postgres(match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    })
}

/// A connection to the shared database.
pub(crate) struct PgStore {
    client: Client,
    /// Names this instance in notifications, so it skips its own.
    instance: String,
}

fn connect(url: &str) -> Result<Client, StoreError> {
    let mut config: postgres::Config = url
        .parse()
        .map_err(|e: postgres::Error| StoreError::Postgres(format!("bad URL: {e}")))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    let mut client = config.connect(NoTls).map_err(pg)?;
    // A hung database must not hang the writer (and so the 200s waiting
    // for it) for longer than this; the writer then retries.
    client.batch_execute(STATEMENT_TIMEOUT).map_err(pg)?;
    Ok(client)
}

/// How long one statement may run.
const STATEMENT_TIMEOUT: &str = "SET statement_timeout = '5s'";

impl PgStore {
    /// Connects and creates or migrates the schema. `instance` names this
    /// process in change notifications.
    pub(crate) fn open(url: &str, instance: &str) -> Result<PgStore, StoreError> {
        let mut client = connect(url)?;
        // Two instances starting at once must not both create the schema.
        let mut tx = client.transaction().map_err(pg)?;
        tx.batch_execute(
            "SELECT pg_advisory_xact_lock(7212381043);
             CREATE TABLE IF NOT EXISTS privasip_schema (version BIGINT NOT NULL)",
        )
        .map_err(pg)?;
        let version: i64 = tx
            .query_opt("SELECT version FROM privasip_schema", &[])
            .map_err(pg)?
            .map_or(0, |r| r.get(0));
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew(version));
        }
        if version < 2 {
            // Version 2 is the first one PostgreSQL knows: users with the
            // AES counter from the start.
            tx.batch_execute(
                "CREATE TABLE users (
                     realm TEXT NOT NULL, name TEXT NOT NULL,
                     ha1_md5 TEXT NOT NULL, ha1_sha256 TEXT NOT NULL,
                     aes_next BIGINT NOT NULL DEFAULT 0,
                     PRIMARY KEY (realm, name));
                 CREATE TABLE bindings (
                     aor TEXT NOT NULL, contact TEXT NOT NULL, q INTEGER NOT NULL,
                     expires_unix BIGINT NOT NULL, call_id TEXT NOT NULL, cseq BIGINT NOT NULL,
                     PRIMARY KEY (aor, contact));
                 CREATE TABLE calls (
                     id BIGSERIAL PRIMARY KEY, caller TEXT NOT NULL, callee TEXT NOT NULL,
                     call_id TEXT NOT NULL, started_unix BIGINT NOT NULL, ended_unix BIGINT);
                 CREATE INDEX calls_by_call_id ON calls (call_id);
                 DELETE FROM privasip_schema;
                 INSERT INTO privasip_schema VALUES (2);",
            )
            .map_err(pg)?;
        }
        if version < 3 {
            tx.batch_execute(
                "CREATE TABLE secrets (name TEXT PRIMARY KEY, value BYTEA NOT NULL);
                 DELETE FROM privasip_schema;
                 INSERT INTO privasip_schema VALUES (3);",
            )
            .map_err(pg)?;
        }
        tx.commit().map_err(pg)?;
        Ok(PgStore {
            client,
            instance: instance.to_owned(),
        })
    }

    /// The secret called `name`, `fresh` stored as it if there is none
    /// (the first instance to ask decides for all).
    pub(crate) fn secret(&mut self, name: &str, fresh: &[u8; 32]) -> Result<Vec<u8>, StoreError> {
        self.client
            .execute(
                "INSERT INTO secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                &[&name, &&fresh[..]],
            )
            .map_err(pg)?;
        let row = self
            .client
            .query_one("SELECT value FROM secrets WHERE name = $1", &[&name])
            .map_err(pg)?;
        Ok(row.get(0))
    }

    fn notify(&mut self, change: &Change) -> Result<(), StoreError> {
        notify(&mut self.client, &self.instance, change)
    }

    pub(crate) fn put_user(&mut self, u: &UserRow) -> Result<(), StoreError> {
        self.client
            .execute(
                "INSERT INTO users (realm, name, ha1_md5, ha1_sha256) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (realm, name) DO UPDATE SET ha1_md5 = $3, ha1_sha256 = $4,
                     aes_next = CASE WHEN users.ha1_sha256 = $4 THEN users.aes_next ELSE 0 END",
                &[
                    &u.realm,
                    u.user.expose(),
                    u.ha1_md5.expose(),
                    u.ha1_sha256.expose(),
                ],
            )
            .map_err(pg)?;
        self.notify(&Change::Users)
    }

    pub(crate) fn delete_user(&mut self, realm: &str, user: &str) -> Result<bool, StoreError> {
        let n = self
            .client
            .execute(
                "DELETE FROM users WHERE realm = $1 AND name = $2",
                &[&realm, &user],
            )
            .map_err(pg)?;
        self.notify(&Change::Users)?;
        Ok(n > 0)
    }

    pub(crate) fn users(&mut self) -> Result<Vec<UserRow>, StoreError> {
        let rows = self
            .client
            .query(
                "SELECT realm, name, ha1_md5, ha1_sha256, aes_next FROM users
                 ORDER BY realm, name",
                &[],
            )
            .map_err(pg)?;
        Ok(rows
            .iter()
            .map(|r| UserRow {
                realm: r.get(0),
                user: Sensitive::new(r.get(1)),
                ha1_md5: Sensitive::new(r.get(2)),
                ha1_sha256: Sensitive::new(r.get(3)),
                aes_next: u64::try_from(r.get::<_, i64>(4)).unwrap_or(0),
            })
            .collect())
    }

    pub(crate) fn has_user(&mut self, realm: &str, user: &str) -> Result<bool, StoreError> {
        Ok(self
            .client
            .query_opt(
                "SELECT 1 FROM users WHERE realm = $1 AND name = $2",
                &[&realm, &user],
            )
            .map_err(pg)?
            .is_some())
    }

    /// Makes `writes` in one transaction; their notifications go out
    /// when it commits.
    pub(crate) fn apply(&mut self, writes: &[Write]) -> Result<(), StoreError> {
        let mut tx = self.client.transaction().map_err(pg)?;
        for w in writes {
            write(&mut tx, &self.instance, w)?;
        }
        tx.commit().map_err(pg)
    }

    /// Makes one write on its own; the number of rows it changed.
    pub(crate) fn write_one(&mut self, w: &Write) -> Result<usize, StoreError> {
        write(&mut self.client, &self.instance, w)
    }

    fn binding(r: &postgres::Row, at: usize) -> BindingRow {
        BindingRow {
            contact: Sensitive::new(r.get(at)),
            q: u16::try_from(r.get::<_, i32>(at + 1)).unwrap_or(1000),
            expires_unix: r.get(at + 2),
            call_id: Sensitive::new(r.get(at + 3)),
            cseq: u32::try_from(r.get::<_, i64>(at + 4)).unwrap_or(0),
        }
    }

    pub(crate) fn bindings(
        &mut self,
        now_unix: i64,
    ) -> Result<Vec<(Sensitive<String>, BindingRow)>, StoreError> {
        let rows = self
            .client
            .query(
                "SELECT aor, contact, q, expires_unix, call_id, cseq FROM bindings
                 WHERE expires_unix > $1 ORDER BY aor",
                &[&now_unix],
            )
            .map_err(pg)?;
        Ok(rows
            .iter()
            .map(|r| (Sensitive::new(r.get(0)), Self::binding(r, 1)))
            .collect())
    }

    pub(crate) fn bindings_of(
        &mut self,
        aor: &str,
        now_unix: i64,
    ) -> Result<Vec<BindingRow>, StoreError> {
        let rows = self
            .client
            .query(
                "SELECT contact, q, expires_unix, call_id, cseq FROM bindings
                 WHERE aor = $1 AND expires_unix > $2",
                &[&aor, &now_unix],
            )
            .map_err(pg)?;
        Ok(rows.iter().map(|r| Self::binding(r, 0)).collect())
    }

    pub(crate) fn calls(&mut self) -> Result<Vec<CallRow>, StoreError> {
        let rows = self
            .client
            .query(
                "SELECT caller, callee, call_id, started_unix, ended_unix FROM calls ORDER BY id",
                &[],
            )
            .map_err(pg)?;
        Ok(rows
            .iter()
            .map(|r| CallRow {
                caller: Sensitive::new(r.get(0)),
                callee: Sensitive::new(r.get(1)),
                call_id: Sensitive::new(r.get(2)),
                started_unix: r.get(3),
                ended_unix: r.get(4),
            })
            .collect())
    }
}

/// Announces `change` to the other instances (at commit, inside a
/// transaction).
fn notify(c: &mut impl GenericClient, instance: &str, change: &Change) -> Result<(), StoreError> {
    let payload = change.encode(instance);
    c.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload])
        .map_err(pg)?;
    Ok(())
}

/// One write on `c` (a transaction or not), announced to the other
/// instances when it changes what they hold; the rows it changed.
/// Inserts `rows` as bindings of `aor`; how many.
fn insert_bindings(
    c: &mut impl GenericClient,
    aor: &String,
    rows: &[BindingRow],
) -> Result<u64, StoreError> {
    let mut n = 0;
    for b in rows {
        n += c
            .execute(
                "INSERT INTO bindings (aor, contact, q, expires_unix, call_id, cseq)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    aor,
                    b.contact.expose(),
                    &i32::from(b.q),
                    &b.expires_unix,
                    b.call_id.expose(),
                    &i64::from(b.cseq),
                ],
            )
            .map_err(pg)?;
    }
    Ok(n)
}

fn write(c: &mut impl GenericClient, instance: &str, w: &Write) -> Result<usize, StoreError> {
    let n = match w {
        Write::Bindings { aor, rows } => {
            let mut n = c
                .execute("DELETE FROM bindings WHERE aor = $1", &[aor.expose()])
                .map_err(pg)?;
            n += insert_bindings(c, aor.expose(), rows)?;
            notify(c, instance, &Change::Bindings { aor: aor.clone() })?;
            n
        }
        Write::Contacts { aor, rows, touched } => {
            let mut n = 0;
            for contact in touched.expose() {
                n += c
                    .execute(
                        "DELETE FROM bindings WHERE aor = $1 AND contact = $2",
                        &[aor.expose(), contact],
                    )
                    .map_err(pg)?;
            }
            n += insert_bindings(c, aor.expose(), rows)?;
            notify(c, instance, &Change::Bindings { aor: aor.clone() })?;
            n
        }
        Write::CallStarted {
            caller,
            callee,
            call_id,
            at_unix,
        } => c
            .execute(
                "INSERT INTO calls (caller, callee, call_id, started_unix)
                 VALUES ($1, $2, $3, $4)",
                &[caller.expose(), callee.expose(), call_id.expose(), at_unix],
            )
            .map_err(pg)?,
        Write::CallEnded { call_id, at_unix } => c
            .execute(
                "UPDATE calls SET ended_unix = $2 WHERE call_id = $1 AND ended_unix IS NULL",
                &[call_id.expose(), at_unix],
            )
            .map_err(pg)?,
        Write::AesNext { user, next } => {
            let next = i64::try_from(*next).unwrap_or(i64::MAX);
            let n = c
                .execute(
                    "UPDATE users SET aes_next = GREATEST(aes_next, $2) WHERE name = $1",
                    &[user.expose(), &next],
                )
                .map_err(pg)?;
            if n > 0 {
                let change = Change::AesCounter {
                    user: user.clone(),
                    next: next as u64,
                };
                notify(c, instance, &change)?;
            }
            n
        }
    };
    Ok(usize::try_from(n).unwrap_or(usize::MAX))
}

/// A connection that waits for other instances' changes.
pub(crate) struct PgListener {
    client: Client,
    instance: String,
}

impl PgListener {
    pub(crate) fn open(url: &str, instance: &str) -> Result<PgListener, StoreError> {
        let mut client = connect(url)?;
        client
            .batch_execute(&format!("LISTEN {CHANNEL}"))
            .map_err(pg)?;
        Ok(PgListener {
            client,
            instance: instance.to_owned(),
        })
    }

    /// Changes by other instances: waits up to `wait` for the first,
    /// then takes what else has arrived.
    pub(crate) fn next(&mut self, wait: Duration) -> Result<Vec<Change>, StoreError> {
        let instance = self.instance.clone();
        let mut out = Vec::new();
        let mut notes = self.client.notifications();
        let mut keep = |n: postgres::Notification| {
            if let Some(c) = Change::decode(n.payload(), &instance) {
                out.push(c);
            }
        };
        let Some(first) = notes.timeout_iter(wait).next().map_err(pg)? else {
            return Ok(out);
        };
        keep(first);
        let mut rest = notes.iter();
        while let Some(n) = rest.next().map_err(pg)? {
            keep(n);
        }
        Ok(out)
    }
}
