//! Nothing acknowledged is lost when the proxy or its database dies.
//!
//! - A burst of registrations answered 200, the proxy killed with SIGKILL
//!   the instant the last 200 arrives: after a restart from the SQLite
//!   store every one of those bindings is there. (Before a 200 waited for
//!   the store's commit, this lost all 300.)
//! - PostgreSQL restarted while registrations go on: the proxy reconnects
//!   by itself, answers 503 (never 200) while the database is away, and
//!   every binding it answered 200 is in the database afterwards.

mod common;

use std::net::UdpSocket;
use std::path::Path;
use std::time::Duration;

use common::{local_proxy, proxy, register_all, write_config};
use privasip_node::proxy::StoreSection;
use privasip_store::scratch::ScratchPostgres;

const USERS: usize = 300;

/// A proxy for b.example whose store is `store`.
fn config(dir: &Path, port: u16, store: StoreSection) -> std::path::PathBuf {
    let mut cfg = local_proxy("b.example", port);
    cfg.limits.requests_per_second = 100_000;
    cfg.limits.requests_burst = 100_000;
    cfg.store = store;
    write_config(dir, &cfg)
}

fn client() -> UdpSocket {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_millis(20)))
        .expect("timeout");
    sock
}

/// Queries every user's bindings; the users whose Contact is missing.
fn missing(sock: &UdpSocket, port: u16, users: std::ops::Range<usize>) -> Vec<usize> {
    let mut missing = Vec::new();
    register_all(sock, port, users, false, |n, text| {
        if !text.contains(&format!("<sip:user{n}@127.0.0.1:40000>")) {
            missing.push(n);
        }
    });
    missing
}

#[test]
fn every_registration_answered_200_survives_a_kill_9() {
    let port = 27360;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = StoreSection {
        path: "bindings.db".into(),
        url: None,
    };
    let config = config(dir.path(), port, store);
    let mut running = common::Running(vec![proxy(&config, port)]);
    let sock = client();

    // The burst; the proxy dies the instant the last 200 is in.
    let mut acknowledged = 0;
    register_all(&sock, port, 0..USERS, true, |_, _| {
        acknowledged += 1;
        if acknowledged == USERS {
            let _ = running.0[0].kill();
        }
    });
    drop(running);
    assert_eq!(acknowledged, USERS);

    // Restarted from the same store: each user's binding is there.
    let _again = common::Running(vec![proxy(&config, port)]);
    let lost = missing(&sock, port, 0..USERS);
    assert!(
        lost.is_empty(),
        "{} of {USERS} acknowledged bindings lost: {lost:?}",
        lost.len()
    );
}

/// Shows a proxy's log if the test fails while it is held.
struct ShowLog(std::path::PathBuf);

impl Drop for ShowLog {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "proxy log:\n{}",
                std::fs::read_to_string(&self.0).unwrap_or_default()
            );
        }
    }
}

/// A proxy whose log goes to `log`.
fn logged_proxy(config: &Path, port: u16, log: &Path) -> std::process::Child {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_privasip"))
        .args(["proxy", "--config"])
        .arg(config)
        .stderr(file)
        .spawn()
        .expect("proxy starts");
    common::wait_for_port(port, false);
    child
}

#[test]
fn a_postgresql_restart_loses_no_acknowledged_registration() {
    let port = 27362;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut pg = ScratchPostgres::start(&dir.path().join("pg"), 27363).expect("postgres starts");
    let store = StoreSection {
        url: Some(pg.url().into()),
        ..StoreSection::default()
    };
    let config = config(dir.path(), port, store);
    let log = dir.path().join("proxy.log");
    let _show = ShowLog(log.clone());
    let running = common::Running(vec![logged_proxy(&config, port, &log)]);
    let sock = client();

    register_all(&sock, port, 0..100, true, |_, _| {});
    // The database restarts (every connection cut) while the next users
    // register: they are answered once it is back, each 200 after its
    // commit.
    pg.restart().expect("postgres restarts");
    let pg_log = std::fs::read_to_string(dir.path().join("pg/postgres.log")).unwrap_or_default();
    assert_eq!(
        pg_log.matches("ready to accept connections").count(),
        2,
        "postgres really restarted:\n{pg_log}"
    );
    // (register_all fails the test if that takes over 60 s.)
    register_all(&sock, port, 100..200, true, |_, _| {});
    let proxy_log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        proxy_log.contains("store batch failed") && proxy_log.contains("reconnecting"),
        "the writer met the restart and reconnected"
    );

    // Every acknowledged binding is in the database: a fresh proxy on it
    // (the old one killed) finds them all.
    drop(running);
    let _again = common::Running(vec![logged_proxy(&config, port, &log)]);
    let lost = missing(&sock, port, 0..200);
    assert!(lost.is_empty(), "acknowledged bindings lost: {lost:?}");
}
