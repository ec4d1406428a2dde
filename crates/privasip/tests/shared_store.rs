//! Two `privasip proxy` instances on one real PostgreSQL (Debian's
//! `postgresql`; scripts/test.sh installs it). Bob registers at the first,
//! Alice calls through the second, which finds Bob's registration in the
//! shared store; a user added while both run is known to both at once; a
//! restarted instance reads everything back; accounting lands in one
//! place.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Running;
use privasip_store::scratch::ScratchPostgres;
use privasip_store::{Location, Store};

fn privasip() -> Command {
    Command::new(env!("CARGO_BIN_EXE_privasip"))
}

fn proxy_config(dir: &Path, name: &str, port: u16, url: &str) -> std::path::PathBuf {
    let mut cfg = common::local_proxy("example.com", port);
    cfg.proxy.authenticate = true;
    cfg.store.url = Some(url.into());
    common::write_file(dir, &format!("{name}.toml"), &cfg.to_toml())
}

fn ua_config(dir: &Path, user: &str, password: &str, local: u16, proxy: u16) {
    let proxy = format!("udp:127.0.0.1:{proxy}");
    let cfg = common::local_ua(user, "example.com", password, local, &proxy);
    common::write_file(dir, &format!("{user}.toml"), &cfg.to_toml());
}

fn start_proxy(config: &Path, port: u16, log: &Path) -> std::process::Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log");
    let child = privasip()
        .args(["proxy", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("proxy starts");
    common::wait_for_port(port, false);
    child
}

#[test]
fn two_proxies_share_users_registrations_and_accounting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let pg = ScratchPostgres::start(&d.join("pg"), 23220).expect("postgres starts");
    let (p1, p2) = (23221u16, 23222u16);
    let c1 = proxy_config(d, "p1", p1, &pg.url());
    let c2 = proxy_config(d, "p2", p2, &pg.url());
    common::add_user(&c1, "alice", "wonderland");
    let (log1, log2) = (d.join("p1.log"), d.join("p2.log"));
    let mut running = Running(vec![
        start_proxy(&c1, p1, &log1),
        start_proxy(&c2, p2, &log2),
    ]);

    // Bob is added while both run, through the second's configuration.
    common::add_user(&c2, "bob", "zanzibar");
    ua_config(d, "bob", "zanzibar", 23223, p1);
    ua_config(d, "alice", "wonderland", 23224, p2);
    // The first proxy learns of bob within a moment: retry the
    // registration until it does.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = privasip()
            .args(["ua", "--config"])
            .arg(d.join("bob.toml"))
            .arg("register")
            .output()
            .expect("bob registers");
        if out.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "proxy 1 never learnt the user added through proxy 2: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Now Bob listens, registered at proxy 1.
    running.0.push(common::ua_listen(d, "bob", 60).0);

    let call = || {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = privasip()
                .args(["ua", "--config"])
                .arg(d.join("alice.toml"))
                .args(["call", "sip:bob@example.com"])
                .output()
                .expect("alice calls");
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            if out.status.success() && stdout.starts_with("call 1: answered") {
                return;
            }
            // Only "not there yet" may be retried.
            assert!(
                stdout.contains("(480)") && Instant::now() < deadline,
                "{stdout}\n{}",
                std::fs::read_to_string(&log2).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    // Alice calls through proxy 2, which learnt Bob's registration from
    // the shared store.
    call();

    // Proxy 2 restarts: it reads users and registrations back.
    let mut second = running.0.remove(1);
    common::stop(&mut second);
    running.0.insert(1, start_proxy(&c2, p2, &log2));
    call();
    drop(running);

    // Accounting: proxy 2 authenticated Alice, both calls in one table.
    let mut store = Store::open_at(&Location::Postgres(pg.url().into()), "test").expect("store");
    let rows = store.calls().expect("calls");
    assert_eq!(
        rows.len(),
        2,
        "one row per call: {rows:?}\n{}\n{}",
        std::fs::read_to_string(&log1).unwrap_or_default(),
        std::fs::read_to_string(&log2).unwrap_or_default()
    );
    assert!(rows.iter().all(|r| r.caller == "alice"));
    for log in [&log1, &log2] {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        assert!(text.contains("store shared (PostgreSQL)"), "{text}");
        assert!(!text.contains("alice") && !text.contains("bob"), "{text}");
    }
}
