//! The proxy's link to its store: load users and registrations at start,
//! write what the proxy reports from a thread of its own, and (with a
//! shared PostgreSQL store) apply what other instances change, as they
//! change it.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use privasip_digest::{Algorithm, Ha1};
use privasip_proxy::{Credentials, Proxy, StoreEvent};
use privasip_server::{Peer, Update};
use privasip_store::{Change, Listener, Location, Sensitive, Store, UserRow};
use tokio::sync::mpsc;

use crate::proxy::Config;

/// Where a configuration's store is: `[store] url` (PostgreSQL) or
/// `path` (SQLite, relative to the configuration file).
pub fn location(config: &Path, cfg: &Config) -> Location {
    if let Some(url) = &cfg.store.url {
        return Location::Postgres(url.clone());
    }
    Location::Sqlite(match config.parent() {
        Some(dir) if cfg.store.path.is_relative() => dir.join(&cfg.store.path),
        _ => cfg.store.path.clone(),
    })
}

/// A name for this process in a shared store's change notifications.
pub fn instance_name() -> String {
    let mut b = [0u8; 8];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
    hex::encode(b)
}

/// Opens the store a configuration names.
pub fn open(config: &Path, cfg: &Config, instance: &str) -> Result<Store> {
    let at = location(config, cfg);
    Store::open_at(&at, instance).with_context(|| match &at {
        Location::Sqlite(p) => format!("cannot open the store {}", p.display()),
        _ => "cannot open the PostgreSQL store ([store] url)".to_owned(),
    })
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A user as the proxy takes it.
struct User {
    realm: String,
    name: String,
    creds: Credentials,
    aes_next: u64,
}

/// Parses stored users; a malformed HA1 is skipped with an error.
fn users(rows: Vec<UserRow>) -> Vec<User> {
    rows.into_iter()
        .filter_map(|u| {
            let md5 = Ha1::from_hex(Algorithm::Md5, u.ha1_md5.expose());
            let sha256 = Ha1::from_hex(Algorithm::Sha256, u.ha1_sha256.expose());
            let (Some(md5), Some(sha256)) = (md5, sha256) else {
                tracing::error!(realm = %u.realm, "the store holds a malformed HA1; user skipped");
                return None;
            };
            Some(User {
                realm: u.realm,
                name: u.user.into_inner(),
                creds: Credentials { md5, sha256 },
                aes_next: u.aes_next,
            })
        })
        .collect()
}

/// Sets `list` in the proxy (AES keys too, with `aes`); returns how many
/// users got AES.
fn apply_users(proxy: &mut Proxy<Peer>, list: Vec<User>, aes: bool) -> usize {
    // An AES token names no realm: a name in two realms cannot use AES.
    let mut realms_of: HashMap<&str, usize> = HashMap::new();
    for u in &list {
        *realms_of.entry(u.name.as_str()).or_default() += 1;
    }
    let ambiguous: HashSet<String> = realms_of
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(name, _)| name.to_owned())
        .collect();
    let mut aes_users = 0;
    for u in list {
        if aes {
            if ambiguous.contains(&u.name) {
                tracing::warn!(
                    realm = %u.realm,
                    "a user name exists in several realms; PrivaSIP-AES is off for it"
                );
            } else if proxy.set_aes_user(&u.name, &u.creds.sha256, u.aes_next) {
                aes_users += 1;
            }
        }
        proxy.set_user(&u.realm, &u.name, u.creds);
    }
    aes_users
}

/// Bindings from rows, their wall-clock expiry turned into instants.
fn bindings(rows: &[privasip_store::BindingRow], now: Instant) -> Vec<privasip_registrar::Binding> {
    let unix = unix_now();
    rows.iter()
        .map(|b| privasip_registrar::Binding {
            contact: b.contact.clone(),
            q: b.q,
            expires_at: now
                + Duration::from_secs(u64::try_from(b.expires_unix - unix).unwrap_or(0)),
            call_id: b.call_id.clone(),
            cseq: b.cseq,
        })
        .collect()
}

/// Users and unexpired registrations from the store into the proxy.
/// Returns (users, bindings).
pub fn restore(
    proxy: &mut Proxy<Peer>,
    store: &mut Store,
    now: Instant,
    aes: bool,
) -> Result<(usize, usize)> {
    let list = users(store.users()?);
    let count = list.len();
    let aes_users = apply_users(proxy, list, aes);
    if aes {
        tracing::info!(users = aes_users, "PrivaSIP-AES users loaded");
    }
    let rows = store.bindings(unix_now())?;
    let mut by_aor: HashMap<String, Vec<privasip_store::BindingRow>> = HashMap::new();
    for (aor, b) in &rows {
        by_aor
            .entry(aor.expose().clone())
            .or_default()
            .push(b.clone());
    }
    for (aor, list) in by_aor {
        proxy.registrar_mut().restore(&aor, bindings(&list, now));
    }
    Ok((count, rows.len()))
}

/// How long the writer keeps retrying a batch the store refused before
/// it gives the batch up (longer than the proxy holds a REGISTER's 200
/// for it, so nothing given up was acknowledged).
const WRITE_PATIENCE: Duration = Duration::from_secs(10);

/// The most events written in one transaction.
const MAX_BATCH: usize = 10_000;

/// Events waiting to be written, as store writes: the bindings of one AOR
/// and the AES counter of one user are written once per batch, with the
/// latest value.
struct Batch {
    writes: Vec<privasip_store::Write>,
    /// Proxy events taken in (several may become one write).
    events: u64,
    /// Index in `writes` of each AOR's bindings and each user's counter.
    bindings_at: HashMap<String, usize>,
    /// The contacts each AOR's changes in this batch touched (None: all).
    touched_of: HashMap<String, Option<HashSet<String>>>,
    counter_at: HashMap<String, usize>,
    started: Instant,
    unix_at_start: i64,
}

impl Batch {
    fn new() -> Batch {
        Batch {
            writes: Vec::new(),
            events: 0,
            bindings_at: HashMap::new(),
            touched_of: HashMap::new(),
            counter_at: HashMap::new(),
            started: Instant::now(),
            unix_at_start: unix_now(),
        }
    }

    fn len(&self) -> usize {
        self.writes.len()
    }

    fn push(&mut self, e: StoreEvent) {
        use privasip_store::Write;
        self.events += 1;
        let (w, slot) = match e {
            StoreEvent::Bindings {
                aor,
                bindings,
                touched,
            } => {
                let rows: Vec<privasip_store::BindingRow> = bindings
                    .iter()
                    .map(|b| privasip_store::BindingRow {
                        contact: b.contact.clone(),
                        q: b.q,
                        expires_unix: self.unix_at_start
                            + b.expires_at
                                .saturating_duration_since(self.started)
                                .as_secs() as i64,
                        call_id: b.call_id.clone(),
                        cseq: b.cseq,
                    })
                    .collect();
                let key = aor.expose();
                let slot = self.bindings_at.get(key).copied();
                if slot.is_none() {
                    self.bindings_at.insert(key.clone(), self.writes.len());
                }
                // Several changes of one AOR in a batch: the contacts they
                // touched together, as the latest list has them (it holds
                // the earlier changes too); one that touched all wins.
                let merged = match (self.touched_of.remove(key), touched) {
                    (Some(None), _) | (_, None) => None,
                    (Some(Some(mut before)), Some(now)) => {
                        before.extend(now.into_inner());
                        Some(before)
                    }
                    (None, Some(now)) => Some(now.into_inner().into_iter().collect::<HashSet<_>>()),
                };
                self.touched_of.insert(key.clone(), merged.clone());
                let w = match merged {
                    None => Write::Bindings { aor, rows },
                    Some(touched) => Write::Contacts {
                        aor,
                        rows: rows
                            .into_iter()
                            .filter(|r| touched.contains(r.contact.expose()))
                            .collect(),
                        touched: Sensitive::new(touched.into_iter().collect()),
                    },
                };
                (w, slot)
            }
            StoreEvent::AesCounter { user, next } => {
                let slot = self.counter_at.get(user.expose()).copied();
                if slot.is_none() {
                    self.counter_at
                        .insert(user.expose().clone(), self.writes.len());
                }
                (Write::AesNext { user, next }, slot)
            }
            StoreEvent::CallStarted {
                caller,
                callee,
                call_id,
            } => (
                Write::CallStarted {
                    caller,
                    callee,
                    call_id,
                    at_unix: unix_now(),
                },
                None,
            ),
            StoreEvent::CallEnded { call_id } => (
                Write::CallEnded {
                    call_id,
                    at_unix: unix_now(),
                },
                None,
            ),
            _ => return,
        };
        match slot {
            // Counters only rise; bindings are replaced whole.
            Some(i) => self.writes[i] = w,
            None => self.writes.push(w),
        }
    }

    /// Writes the batch in one transaction; if that fails, each write on
    /// its own, so one bad write costs only itself. If none of them goes
    /// in either, the store itself is away (a restarted database took the
    /// connection with it): reconnect (`reopen`) and try the rest again,
    /// with backoff, for [`WRITE_PATIENCE`]. Whether every write is
    /// committed.
    fn write(&self, store: &mut Store, reopen: &dyn Fn() -> Result<Store>) -> bool {
        if self.writes.is_empty() || store.apply(&self.writes).is_ok() {
            return true;
        }
        let mut pending: Vec<&privasip_store::Write> = self.writes.iter().collect();
        let mut backoff = privasip_stream::Backoff::new(
            Instant::now(),
            Duration::from_millis(100),
            Duration::from_secs(2),
            WRITE_PATIENCE,
        );
        let mut last = None;
        loop {
            let before = pending.len();
            pending.retain(|w| match store.apply(std::slice::from_ref(*w)) {
                Ok(()) => false,
                Err(e) => {
                    last = Some(e);
                    true
                }
            });
            if pending.is_empty() {
                return true;
            }
            if pending.len() < before {
                // The store works: what is left is bad in itself.
                break;
            }
            match backoff.after_failure(Instant::now()) {
                Some(pause) => {
                    tracing::warn!(
                        writes = pending.len(),
                        "store batch failed, no write went in ({}); reconnecting, retrying in {pause:?}",
                        last.as_ref().map(ToString::to_string).unwrap_or_default()
                    );
                    std::thread::sleep(pause);
                    match reopen() {
                        Ok(fresh) => *store = fresh,
                        Err(e) => tracing::warn!("store: cannot reconnect yet: {e:#}"),
                    }
                }
                None => break,
            }
        }
        tracing::error!(
            failed = pending.len(),
            "store writes lost ({})",
            last.as_ref().map(ToString::to_string).unwrap_or_default()
        );
        false
    }
}

/// The thread that owns the store and writes what the proxy reports.
/// Group commit: each transaction takes every event that queued while the
/// last one committed, so a burst costs a few commits, and no event waits
/// for a timer. After each commit it tells the proxy (through `commits`)
/// how many events are now durable, which releases the 200s that waited
/// for them ([`Proxy::store_committed`]). It ends once the proxy has
/// dropped the sender and everything sent is written.
pub fn writer(
    mut store: Store,
    reopen: impl Fn() -> Result<Store> + Send + 'static,
    commits: mpsc::Sender<Update>,
) -> (
    std::sync::mpsc::Sender<StoreEvent>,
    std::thread::JoinHandle<()>,
) {
    let (tx, rx) = std::sync::mpsc::channel::<StoreEvent>();
    let handle = std::thread::spawn(move || {
        let mut done: u64 = 0;
        while let Ok(first) = rx.recv() {
            let mut batch = Batch::new();
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(e) => batch.push(e),
                    Err(_) => break,
                }
            }
            // A batch that could not be written is given up only after
            // the proxy stopped waiting for it (WRITE_PATIENCE): counting
            // it done then releases nothing that was held for it.
            batch.write(&mut store, &reopen);
            done += batch.events;
            let update: Update = Box::new(move |proxy: &mut Proxy<Peer>, now| {
                proxy.store_committed(now, done);
            });
            // The proxy stopped: nothing waits for the answer.
            let _ = commits.blocking_send(update);
        }
    });
    (tx, handle)
}

/// How long the listener waits for a change before checking whether the
/// proxy still runs.
const LISTEN_TICK: Duration = Duration::from_secs(1);

/// With a shared store: a thread that turns other instances' changes
/// into updates for the running proxy, sent to `tx`. False (and no
/// thread) for a store of our own.
pub fn listener(
    at: &Location,
    instance: &str,
    aes: bool,
    tx: mpsc::Sender<Update>,
) -> Result<bool> {
    let Some(listener) =
        Listener::open(at, instance).context("cannot listen for changes to the shared store")?
    else {
        return Ok(false);
    };
    let mut reader = Store::open_at(at, instance)?;
    let mut known: HashSet<(String, String)> = reader
        .users()?
        .into_iter()
        .map(|u| (u.realm, u.user.into_inner()))
        .collect();
    let (at, instance) = (at.clone(), instance.to_owned());
    std::thread::spawn(move || {
        let mut link = Some((listener, reader));
        while !tx.is_closed() {
            let changes = match link.as_mut() {
                Some((listener, _)) => match listener.next(LISTEN_TICK) {
                    Ok(changes) => changes,
                    Err(e) => {
                        tracing::warn!("shared store: {e}; reconnecting");
                        link = None;
                        continue;
                    }
                },
                None => {
                    // Changes made while we were away were not announced
                    // to us: read everything again.
                    std::thread::sleep(Duration::from_secs(2));
                    let (Ok(Some(l)), Ok(mut r)) = (
                        Listener::open(&at, &instance),
                        Store::open_at(&at, &instance),
                    ) else {
                        continue;
                    };
                    tracing::info!("shared store: reconnected");
                    // Every binding as the store has it now: additions and
                    // removals made while we were away alike.
                    match r.bindings(unix_now()) {
                        Ok(rows) => {
                            if tx.blocking_send(resync(rows)).is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            tracing::warn!("shared store: cannot read the bindings again: {e}");
                            continue;
                        }
                    }
                    link = Some((l, r));
                    vec![Change::Users]
                }
            };
            let Some((_, reader)) = link.as_mut() else {
                continue;
            };
            for c in changes {
                match update_for(reader, c, aes, &mut known) {
                    Ok(u) => {
                        if tx.blocking_send(u).is_err() {
                            return;
                        }
                    }
                    Err(e) => tracing::error!("shared store: cannot read a change: {e}"),
                }
            }
        }
    });
    Ok(true)
}

/// Replaces the running proxy's bindings with `rows` (every unexpired
/// binding in the shared store).
fn resync(rows: Vec<(Sensitive<String>, privasip_store::BindingRow)>) -> Update {
    let mut by_aor: HashMap<String, Vec<privasip_store::BindingRow>> = HashMap::new();
    for (aor, row) in rows {
        by_aor.entry(aor.into_inner()).or_default().push(row);
    }
    Box::new(move |proxy: &mut Proxy<Peer>, now| {
        let all = by_aor
            .into_iter()
            .map(|(aor, rows)| {
                let list = bindings(&rows, now);
                (aor, list)
            })
            .collect();
        proxy.registrar_mut().replace_all(all);
    })
}

/// What the running proxy must do about `change`.
fn update_for(
    reader: &mut Store,
    change: Change,
    aes: bool,
    known: &mut HashSet<(String, String)>,
) -> Result<Update> {
    Ok(match change {
        Change::Users => {
            let list = users(reader.users()?);
            let now: HashSet<(String, String)> = list
                .iter()
                .map(|u| (u.realm.clone(), u.name.clone()))
                .collect();
            let gone: Vec<(String, String)> = known.difference(&now).cloned().collect();
            *known = now;
            Box::new(move |proxy: &mut Proxy<Peer>, _| {
                for (realm, name) in gone {
                    proxy.remove_user(&realm, &name);
                }
                apply_users(proxy, list, aes);
            })
        }
        Change::Bindings { aor } => {
            let aor = aor.into_inner();
            let rows = reader.bindings_of(&aor, unix_now())?;
            Box::new(move |proxy: &mut Proxy<Peer>, now| {
                proxy.registrar_mut().restore(&aor, bindings(&rows, now));
            })
        }
        Change::AesCounter { user, next } => Box::new(move |proxy: &mut Proxy<Peer>, _| {
            proxy.raise_aes_counter(user.expose(), next);
        }),
        _ => Box::new(|_: &mut Proxy<Peer>, _| {}),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use privasip_store::Write;

    fn bindings(aor: &str, contact: &str) -> StoreEvent {
        StoreEvent::Bindings {
            aor: aor.into(),
            bindings: vec![privasip_registrar::Binding {
                contact: contact.into(),
                q: 1000,
                expires_at: Instant::now() + Duration::from_secs(60),
                call_id: "c".into(),
                cseq: 1,
            }],
            touched: None,
        }
    }

    #[test]
    fn changes_of_one_aor_in_a_batch_write_the_contacts_they_touched() {
        let mut b = Batch::new();
        let event = |contacts: &[&str], touched: &[&str]| StoreEvent::Bindings {
            aor: "sip:a@x".into(),
            bindings: contacts
                .iter()
                .map(|c| privasip_registrar::Binding {
                    contact: (*c).into(),
                    q: 1000,
                    expires_at: Instant::now() + Duration::from_secs(60),
                    call_id: "c".into(),
                    cseq: 1,
                })
                .collect(),
            touched: Some(Sensitive::new(
                touched.iter().map(|c| (*c).to_owned()).collect(),
            )),
        };
        // One contact registered, then a second (the list then has both,
        // and a third this instance learnt of from the other instance).
        b.push(event(&["sip:a@1"], &["sip:a@1"]));
        b.push(event(&["sip:a@1", "sip:a@2", "sip:a@3"], &["sip:a@2"]));
        assert_eq!(b.len(), 1);
        let Write::Contacts { rows, touched, .. } = &b.writes[0] else {
            panic!("a per-contact write");
        };
        let mut touched = touched.expose().clone();
        touched.sort();
        assert_eq!(touched, ["sip:a@1", "sip:a@2"]);
        let rows: Vec<&str> = rows.iter().map(|r| r.contact.expose().as_str()).collect();
        assert_eq!(
            rows.len(),
            2,
            "the other instance's contact is not rewritten"
        );
        assert!(!rows.contains(&"sip:a@3"));
    }

    #[test]
    fn a_batch_keeps_the_latest_bindings_and_counter_and_every_call() {
        let mut b = Batch::new();
        b.push(bindings("sip:a@x", "sip:a@192.0.2.1"));
        b.push(StoreEvent::AesCounter {
            user: "a".into(),
            next: 5,
        });
        b.push(bindings("sip:b@x", "sip:b@192.0.2.2"));
        b.push(bindings("sip:a@x", "sip:a@192.0.2.9"));
        b.push(StoreEvent::AesCounter {
            user: "a".into(),
            next: 7,
        });
        for _ in 0..2 {
            b.push(StoreEvent::CallStarted {
                caller: "a".into(),
                callee: "b".into(),
                call_id: "k".into(),
            });
        }
        assert_eq!(b.len(), 5);
        let Write::Bindings { aor, rows } = &b.writes[0] else {
            panic!("bindings first");
        };
        assert_eq!(
            (aor.expose().as_str(), rows[0].contact.expose().as_str()),
            ("sip:a@x", "sip:a@192.0.2.9")
        );
        assert!(rows[0].expires_unix >= unix_now() + 59);
        assert!(matches!(&b.writes[1], Write::AesNext { next: 7, .. }));
        assert!(matches!(&b.writes[3], Write::CallStarted { .. }));
        assert!(matches!(&b.writes[4], Write::CallStarted { .. }));
    }
}
