//! The SQLite backend: one file next to the configuration, for a proxy
//! that runs alone.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

use crate::{BindingRow, CallRow, SCHEMA_VERSION, Sensitive, StoreError, UserRow, Write};

/// The SQLite store: one file, one proxy.
pub(crate) struct SqliteStore {
    conn: Connection,
}

impl SqliteStore {
    /// Opens (creating if needed, mode 0600) and migrates the store.
    pub(crate) fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        // Created private, before SQLite writes anything to it: there is
        // no moment when another user could open it.
        #[cfg(unix)]
        {
            use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(path)
                .map_err(StoreError::Permissions)?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(StoreError::Permissions)?;
        }
        let conn = Connection::open(path)?;
        // One writer, readers alongside; survive a crash mid-write.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew(version));
        }
        if version < 1 {
            conn.execute_batch(
                "BEGIN;
                 CREATE TABLE users (
                     realm TEXT NOT NULL, user TEXT NOT NULL,
                     ha1_md5 TEXT NOT NULL, ha1_sha256 TEXT NOT NULL,
                     PRIMARY KEY (realm, user));
                 CREATE TABLE bindings (
                     aor TEXT NOT NULL, contact TEXT NOT NULL, q INTEGER NOT NULL,
                     expires_unix INTEGER NOT NULL, call_id TEXT NOT NULL, cseq INTEGER NOT NULL,
                     PRIMARY KEY (aor, contact));
                 CREATE TABLE calls (
                     id INTEGER PRIMARY KEY, caller TEXT NOT NULL, callee TEXT NOT NULL,
                     call_id TEXT NOT NULL, started_unix INTEGER NOT NULL, ended_unix INTEGER);
                 CREATE INDEX calls_by_call_id ON calls (call_id);
                 PRAGMA user_version = 1;
                 COMMIT;",
            )?;
        }
        if version < 2 {
            conn.execute_batch(
                "BEGIN;
                 ALTER TABLE users ADD COLUMN aes_next INTEGER NOT NULL DEFAULT 0;
                 PRAGMA user_version = 2;
                 COMMIT;",
            )?;
        }
        if version < 3 {
            conn.execute_batch(
                "BEGIN;
                 CREATE TABLE secrets (name TEXT PRIMARY KEY, value BLOB NOT NULL);
                 PRAGMA user_version = 3;
                 COMMIT;",
            )?;
        }
        Ok(SqliteStore { conn })
    }

    /// The secret called `name`, `fresh` stored as it if there is none.
    pub(crate) fn secret(&mut self, name: &str, fresh: &[u8; 32]) -> Result<Vec<u8>, StoreError> {
        self.conn.execute(
            "INSERT INTO secrets (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
            params![name, &fresh[..]],
        )?;
        Ok(self.conn.query_row(
            "SELECT value FROM secrets WHERE name = ?1",
            params![name],
            |r| r.get(0),
        )?)
    }

    /// Adds or replaces a user's credentials (`aes_next` is not taken
    /// from `u`: see [`UserRow::aes_next`]).
    pub(crate) fn put_user(&mut self, u: &UserRow) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO users (realm, user, ha1_md5, ha1_sha256) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (realm, user) DO UPDATE SET ha1_md5 = ?3, ha1_sha256 = ?4,
                 aes_next = CASE WHEN ha1_sha256 = ?4 THEN aes_next ELSE 0 END",
            params![
                u.realm,
                u.user.expose(),
                u.ha1_md5.expose(),
                u.ha1_sha256.expose()
            ],
        )?;
        Ok(())
    }

    /// Removes a user; true if there was one.
    pub(crate) fn delete_user(&mut self, realm: &str, user: &str) -> Result<bool, StoreError> {
        Ok(self.conn.execute(
            "DELETE FROM users WHERE realm = ?1 AND user = ?2",
            params![realm, user],
        )? > 0)
    }

    /// Every user, by realm and name.
    pub(crate) fn users(&mut self) -> Result<Vec<UserRow>, StoreError> {
        let mut st = self.conn.prepare(
            "SELECT realm, user, ha1_md5, ha1_sha256, aes_next FROM users ORDER BY realm, user",
        )?;
        let rows = st.query_map([], |r| {
            Ok(UserRow {
                realm: r.get(0)?,
                user: Sensitive::new(r.get(1)?),
                ha1_md5: Sensitive::new(r.get(2)?),
                ha1_sha256: Sensitive::new(r.get(3)?),
                aes_next: u64::try_from(r.get::<_, i64>(4)?).unwrap_or(0),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Makes `writes` in one transaction.
    pub(crate) fn apply(&mut self, writes: &[Write]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        for w in writes {
            write(&tx, w)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Makes one write on its own; the number of rows it changed.
    pub(crate) fn write_one(&mut self, w: &Write) -> Result<usize, StoreError> {
        write(&self.conn, w)
    }

    /// Every binding that has not expired at `now_unix`, by AOR.
    pub(crate) fn bindings(
        &mut self,
        now_unix: i64,
    ) -> Result<Vec<(Sensitive<String>, BindingRow)>, StoreError> {
        let mut st = self.conn.prepare(
            "SELECT aor, contact, q, expires_unix, call_id, cseq FROM bindings
             WHERE expires_unix > ?1 ORDER BY aor",
        )?;
        let rows = st.query_map(params![now_unix], |r| {
            Ok((
                Sensitive::new(r.get(0)?),
                BindingRow {
                    contact: Sensitive::new(r.get(1)?),
                    q: r.get(2)?,
                    expires_unix: r.get(3)?,
                    call_id: Sensitive::new(r.get(4)?),
                    cseq: r.get(5)?,
                },
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The unexpired bindings of one address of record.
    pub(crate) fn bindings_of(
        &mut self,
        aor: &str,
        now_unix: i64,
    ) -> Result<Vec<BindingRow>, StoreError> {
        let mut st = self.conn.prepare(
            "SELECT contact, q, expires_unix, call_id, cseq FROM bindings
             WHERE aor = ?1 AND expires_unix > ?2",
        )?;
        let rows = st.query_map(params![aor, now_unix], |r| {
            Ok(BindingRow {
                contact: Sensitive::new(r.get(0)?),
                q: r.get(1)?,
                expires_unix: r.get(2)?,
                call_id: Sensitive::new(r.get(3)?),
                cseq: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every accounted call, oldest first.
    pub(crate) fn calls(&mut self) -> Result<Vec<CallRow>, StoreError> {
        let mut st = self.conn.prepare(
            "SELECT caller, callee, call_id, started_unix, ended_unix FROM calls ORDER BY id",
        )?;
        let rows = st.query_map([], |r| {
            Ok(CallRow {
                caller: Sensitive::new(r.get(0)?),
                callee: Sensitive::new(r.get(1)?),
                call_id: Sensitive::new(r.get(2)?),
                started_unix: r.get(3)?,
                ended_unix: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Whether a user exists.
    pub(crate) fn has_user(&mut self, realm: &str, user: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM users WHERE realm = ?1 AND user = ?2",
                params![realm, user],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }
}

/// Inserts `rows` as bindings of `aor`; how many.
fn insert_bindings(conn: &Connection, aor: &str, rows: &[BindingRow]) -> Result<usize, StoreError> {
    let mut insert = conn.prepare_cached(
        "INSERT INTO bindings (aor, contact, q, expires_unix, call_id, cseq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    let mut n = 0;
    for b in rows {
        n += insert.execute(params![
            aor,
            b.contact.expose(),
            b.q,
            b.expires_unix,
            b.call_id.expose(),
            b.cseq
        ])?;
    }
    Ok(n)
}

/// One write on `conn` (a transaction or not); the rows it changed.
/// Statements are prepared once per connection and cached.
fn write(conn: &Connection, w: &Write) -> Result<usize, StoreError> {
    Ok(match w {
        Write::Bindings { aor, rows } => {
            let n = conn
                .prepare_cached("DELETE FROM bindings WHERE aor = ?1")?
                .execute(params![aor.expose()])?;
            n + insert_bindings(conn, aor.expose(), rows)?
        }
        Write::Contacts { aor, rows, touched } => {
            let mut n = 0;
            let mut delete =
                conn.prepare_cached("DELETE FROM bindings WHERE aor = ?1 AND contact = ?2")?;
            for c in touched.expose() {
                n += delete.execute(params![aor.expose(), c])?;
            }
            n + insert_bindings(conn, aor.expose(), rows)?
        }
        Write::CallStarted {
            caller,
            callee,
            call_id,
            at_unix,
        } => conn
            .prepare_cached(
                "INSERT INTO calls (caller, callee, call_id, started_unix) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![
                caller.expose(),
                callee.expose(),
                call_id.expose(),
                at_unix
            ])?,
        Write::CallEnded { call_id, at_unix } => conn
            .prepare_cached(
                "UPDATE calls SET ended_unix = ?2 WHERE call_id = ?1 AND ended_unix IS NULL",
            )?
            .execute(params![call_id.expose(), at_unix])?,
        Write::AesNext { user, next } => conn
            .prepare_cached("UPDATE users SET aes_next = MAX(aes_next, ?2) WHERE user = ?1")?
            .execute(params![
                user.expose(),
                i64::try_from(*next).unwrap_or(i64::MAX)
            ])?,
    })
}
