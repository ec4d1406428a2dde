//! `privasip ua` against `privasip proxy`, real processes on loopback:
//! Bob listens, Alice calls him with PrivaSIP-2 (HPKE) over UDP and over
//! TCP, Digest everywhere; Bob sees only tokens; a wrong password is
//! refused; a call hung up while it rings is cancelled (487), a busy
//! callee gives 486 and one not registered 480; an unknown user cannot
//! register. PrivaSIP-AES across restarts of the proxy. The paper's two
//! proxies on loopback UDP with every scheme.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Running;

fn privasip() -> Command {
    Command::new(env!("CARGO_BIN_EXE_privasip"))
}

fn ua_config(dir: &Path, name: &str, user: &str, password: &str, port: u16, proxy: &str) {
    ua_config_with(dir, name, user, password, port, proxy, |_| {});
}

/// `tune` sets what differs in the `[ua]` section (answer, ring_ms).
fn ua_config_with(
    dir: &Path,
    name: &str,
    user: &str,
    password: &str,
    port: u16,
    proxy: &str,
    tune: impl FnOnce(&mut common::UaFile),
) {
    let mut cfg = common::local_ua(user, "example.com", password, port, proxy);
    cfg.privasip.mode = Some("privasip-2".into());
    cfg.privasip.home_key = Some("keys/hpke.pub".into());
    cfg.privasip
        .callee_keys
        .insert("example.com".into(), "keys/hpke.pub".into());
    tune(&mut cfg);
    common::write_file(dir, &format!("{name}.toml"), &cfg.to_toml());
}

#[test]
fn two_user_agents_call_through_the_proxy_with_privasip2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let proxy_port = 23060u16;
    let out = privasip()
        .args(["keygen", "--scheme", "hpke", "--out"])
        .arg(d.join("keys"))
        .output()
        .expect("keygen");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut cfg = common::local_proxy("example.com", proxy_port);
    cfg.proxy.authenticate = true;
    cfg.listen.tcp = Some(common::loopback(proxy_port));
    cfg.privasip.keys = vec!["keys/hpke.key".into()];
    let config = common::write_config(d, &cfg);
    common::add_user(&config, "alice", "wonderland");
    common::add_user(&config, "bob", "zanzibar");
    common::add_user(&config, "carol", "sesame");
    common::add_user(&config, "dave", "hunter2");
    let mut running = Running(Vec::new());
    let proxy_log = d.join("proxy.log");
    running.0.push(
        privasip()
            .args(["proxy", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&proxy_log).expect("log"))
            .spawn()
            .expect("proxy starts"),
    );
    common::wait_for_port(proxy_port, false);

    let udp = format!("udp:127.0.0.1:{proxy_port}");
    let tcp = format!("tcp:127.0.0.1:{proxy_port}");
    ua_config(d, "bob", "bob", "zanzibar", 23070, &udp);
    ua_config(d, "alice", "alice", "wonderland", 23080, &udp);
    ua_config(d, "alice-tcp", "alice", "wonderland", 23081, &tcp);
    ua_config(d, "mallory", "alice", "guess", 23082, &udp);
    // Carol lets it ring for 5 s; Dave is busy.
    ua_config_with(d, "carol", "carol", "sesame", 23071, &udp, |c| {
        c.ua.ring_ms = 5000
    });
    ua_config_with(d, "dave", "dave", "hunter2", 23072, &udp, |c| {
        c.ua.answer = "busy".into()
    });

    let bob_out = d.join("bob.out");
    for callee in ["bob", "carol", "dave"] {
        running.0.push(common::ua_listen(d, callee, 60).0);
    }

    for caller in ["alice", "alice-tcp"] {
        let out = privasip()
            .args(["ua", "--config"])
            .arg(d.join(format!("{caller}.toml")))
            .args(["call", "sip:bob@example.com", "--count", "3", "--json"])
            .output()
            .expect("alice calls");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{caller}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 3, "{stdout}");
        for l in lines {
            assert!(l.contains("\"outcome\":\"answered\""), "{l}");
            assert!(!l.contains("\"ringing_ms\":null"), "{l}");
        }
    }

    // Hung up while it rings: CANCEL, 487, exit 0 (the cancel worked).
    let call = |args: &[&str]| {
        let out = privasip()
            .args(["ua", "--config"])
            .arg(d.join("alice.toml"))
            .arg("call")
            .args(args)
            .output()
            .expect("alice calls");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (ok, stdout) = call(&["sip:carol@example.com", "--cancel-after", "0.5"]);
    assert!(ok, "{stdout}");
    assert!(
        stdout.starts_with("call 1: cancelled (487), 100 "),
        "{stdout}"
    );
    assert!(stdout.contains(", 180 "), "{stdout}");
    let (ok, stdout) = call(&["sip:dave@example.com"]);
    assert!(
        !ok && stdout.starts_with("call 1: failed (486)"),
        "{stdout}"
    );
    let (ok, stdout) = call(&["sip:erin@example.com"]);
    assert!(
        !ok && stdout.starts_with("call 1: failed (480)"),
        "{stdout}"
    );

    // A wrong password: refused, exit 1, a reason.
    let out = privasip()
        .args(["ua", "--config"])
        .arg(d.join("mallory.toml"))
        .arg("register")
        .output()
        .expect("register");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("registration refused"), "{err}");

    drop(running);
    // Bob saw six calls, each from a token, never from alice.
    let seen = std::fs::read_to_string(&bob_out).unwrap_or_default();
    let incoming: Vec<&str> = seen.lines().filter(|l| l.contains("incoming")).collect();
    assert_eq!(incoming.len(), 6, "{seen}");
    for l in incoming {
        assert!(l.contains("from ps1h."), "{l}");
        assert!(!l.contains("alice"), "{l}");
    }
    let log = std::fs::read_to_string(&proxy_log).unwrap_or_default();
    assert!(!log.contains("alice") && !log.contains("bob"), "{log}");
}

/// PrivaSIP-AES end to end: no key files, the proxy keys its users by
/// their stored HA1; both sides keep the token counter across restarts
/// (the UA in a file written before each token leaves, the proxy in its
/// store), so calls keep working after either restarts.
#[test]
fn aes_calls_keep_working_across_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let port = 23090u16;
    let mut cfg = common::local_proxy("example.com", port);
    cfg.proxy.authenticate = true;
    cfg.privasip.aes = true;
    let config = common::write_config(d, &cfg);
    common::add_user(&config, "alice", "wonderland");
    common::add_user(&config, "bob", "zanzibar");
    let proxy_log = d.join("proxy.log");
    let start_proxy = || {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&proxy_log)
            .expect("log");
        let child = privasip()
            .args(["proxy", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("proxy starts");
        common::wait_for_port(port, false);
        child
    };
    let mut running = Running(vec![start_proxy()]);
    for (name, user, password, local) in [
        ("alice", "alice", "wonderland", 23091),
        ("bob", "bob", "zanzibar", 23092),
    ] {
        let proxy = format!("udp:127.0.0.1:{port}");
        let mut cfg = common::local_ua(user, "example.com", password, local, &proxy);
        cfg.privasip.mode = Some("privasip-1".into());
        cfg.privasip.aes = true;
        common::write_file(d, &format!("{name}.toml"), &cfg.to_toml());
    }
    running.0.push(common::ua_listen(d, "bob", 60).0);
    let call = |count: &str| {
        let out = privasip()
            .args(["ua", "--config"])
            .arg(d.join("alice.toml"))
            .args(["call", "sip:bob@example.com", "--count", count])
            .output()
            .expect("alice calls");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{stdout}\n{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&proxy_log).unwrap_or_default()
        );
        assert_eq!(
            stdout.matches("answered").count(),
            count.parse().unwrap_or(0)
        );
    };
    let counter = || {
        std::fs::read_to_string(d.join("alice.toml.aes-counter"))
            .expect("the counter file")
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            .expect("a counter")
    };
    call("2");
    // Counters are reserved on disk four at a time, before a token of the
    // block leaves: the two calls' tokens (0 and 1) came from one block.
    assert_eq!(counter(), 4, "one block reserved");
    // The proxy restarts: the tokens it saw must stay used, new ones open.
    // Alice's next run starts after the block (skipping 2 and 3, within
    // the proxy's window) and reserves the next one.
    let mut first = running.0.remove(0);
    common::stop(&mut first);
    running.0.push(start_proxy());
    call("1");
    assert_eq!(counter(), 8);
    drop(running);
    let seen = std::fs::read_to_string(d.join("bob.out")).unwrap_or_default();
    let incoming: Vec<&str> = seen.lines().filter(|l| l.contains("incoming")).collect();
    assert_eq!(incoming.len(), 3, "{seen}");
    assert!(incoming.iter().all(|l| l.contains("from ps1a.")), "{seen}");
    let log = std::fs::read_to_string(&proxy_log).unwrap_or_default();
    assert!(log.contains("PrivaSIP-AES users loaded"), "{log}");
    assert!(!log.contains("alice") && !log.contains("bob"), "{log}");
}

/// A callee on TCP listens on no port: calls reach it over the connection
/// it registered on. When the proxy restarts, that connection is gone; the
/// user agent reconnects, registers again at once, and is reachable again.
#[test]
fn a_tcp_callee_registers_again_after_losing_its_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let port = 23100u16;
    let mut cfg = common::local_proxy("example.com", port);
    cfg.proxy.authenticate = true;
    cfg.listen.tcp = Some(common::loopback(port));
    let config = common::write_config(d, &cfg);
    common::add_user(&config, "alice", "wonderland");
    common::add_user(&config, "bob", "zanzibar");
    let mut running = Running(vec![common::proxy(&config, port)]);
    for (name, password, local, transport) in [
        ("alice", "wonderland", 23101, "udp"),
        ("bob", "zanzibar", 23102, "tcp"),
    ] {
        let proxy = format!("{transport}:127.0.0.1:{port}");
        let cfg = common::local_ua(name, "example.com", password, local, &proxy);
        common::write_file(d, &format!("{name}.toml"), &cfg.to_toml());
    }
    let bob_err = d.join("bob.err");
    running.0.push(
        privasip()
            .args(["ua", "--config"])
            .arg(d.join("bob.toml"))
            .args(["listen", "--for", "60"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&bob_err).expect("err"))
            .spawn()
            .expect("bob listens"),
    );
    let wait_for = |what: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let err = std::fs::read_to_string(&bob_err).unwrap_or_default();
            if err.contains(what) {
                return;
            }
            assert!(Instant::now() < deadline, "bob never said {what:?}:\n{err}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let call = || {
        let out = privasip()
            .args(["ua", "--config"])
            .arg(d.join("alice.toml"))
            .args(["call", "sip:bob@example.com"])
            .output()
            .expect("alice calls");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success() && stdout.starts_with("call 1: answered"),
            "{stdout}\n{}",
            std::fs::read_to_string(&bob_err).unwrap_or_default()
        );
    };
    wait_for("registered");
    call();
    // The proxy restarts: Bob's connection closes under him.
    let mut first = running.0.remove(0);
    common::stop(&mut first);
    running.0.push(common::proxy(&config, port));
    wait_for("reconnected to the proxy");
    wait_for("registration refreshed");
    call();
}

/// The paper's set-up on loopback UDP, for every scheme: Alice at proxy A
/// (a.example), Bob at proxy B (b.example), PrivaSIP-2; Bob sees a token
/// of the scheme. AES is a caller scheme (the key comes from Alice's
/// password, which only A shares): with it Bob's ID is encrypted to B's
/// ECIES key.
#[test]
fn privasip2_across_two_proxies_with_every_scheme() {
    for (i, scheme) in ["hpke", "ecies", "rsa", "aes"].into_iter().enumerate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let base = 23500 + 10 * i as u16;
        let (pa, pb, bob_port, alice_port) = (base, base + 1, base + 2, base + 3);
        let key_scheme = if scheme == "aes" { "ecies" } else { scheme };
        for side in ["a", "b"] {
            let out = privasip()
                .args(["keygen", "--scheme", key_scheme, "--out"])
                .arg(d.join(format!("keys-{side}")))
                .output()
                .expect("keygen");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let aes = scheme == "aes";
        let home = |cfg: &mut common::UaFile, side: &str| {
            if aes {
                cfg.privasip.aes = true;
            } else {
                cfg.privasip.home_key = Some(format!("keys-{side}/{key_scheme}.pub").into());
            }
        };
        let proxy_for = |domain: &str, side: &str, port: u16| {
            let mut cfg = common::local_proxy(domain, port);
            cfg.proxy.authenticate = true;
            cfg.store.path = format!("{side}.db").into();
            cfg.privasip.keys = vec![format!("keys-{side}/{key_scheme}.key").into()];
            cfg.privasip.aes = aes;
            cfg
        };
        let mut a = proxy_for("a.example", "a", pa);
        a.routes
            .insert("b.example".into(), format!("udp:127.0.0.1:{pb}"));
        let ca = common::write_file(d, "a.toml", &a.to_toml());
        let cb = common::write_file(d, "b.toml", &proxy_for("b.example", "b", pb).to_toml());
        common::add_user(&ca, "alice", "wonderland");
        common::add_user(&cb, "bob", "zanzibar");
        let mut running = Running(vec![common::proxy(&ca, pa), common::proxy(&cb, pb)]);
        let to = |port: u16| format!("udp:127.0.0.1:{port}");
        let loopback = common::loopback;
        let mut bob =
            common::UaFile::new("bob", "b.example", "zanzibar", loopback(bob_port), to(pb));
        bob.privasip.mode = Some("privasip-1".into());
        home(&mut bob, "b");
        common::write_file(d, "bob.toml", &bob.to_toml());
        let mut alice = common::UaFile::new(
            "alice",
            "a.example",
            "wonderland",
            loopback(alice_port),
            to(pa),
        );
        alice.privasip.mode = Some("privasip-2".into());
        home(&mut alice, "a");
        alice.privasip.callee_keys.insert(
            "b.example".into(),
            format!("keys-b/{key_scheme}.pub").into(),
        );
        common::write_file(d, "alice.toml", &alice.to_toml());
        let (bob, bob_out) = common::ua_listen(d, "bob", 30);
        running.0.push(bob);
        let out = privasip()
            .args(["ua", "--config"])
            .arg(d.join("alice.toml"))
            .args(["call", "sip:bob@b.example"])
            .output()
            .expect("alice calls");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.starts_with("call 1: answered"),
            "{scheme}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let tag = format!("from ps1{}.", scheme.get(..1).unwrap_or_default());
        let seen = std::fs::read_to_string(&bob_out).unwrap_or_default();
        assert!(seen.contains(&tag), "{scheme}: Bob saw {seen}");
        assert!(!seen.contains("alice"), "{scheme}: {seen}");
    }
}

#[test]
fn an_unknown_user_cannot_register() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let port = 23590u16;
    let mut cfg = common::local_proxy("example.com", port);
    cfg.proxy.authenticate = true;
    let config = common::write_config(d, &cfg);
    common::add_user(&config, "alice", "wonderland");
    let _running = Running(vec![common::proxy(&config, port)]);
    let zed = common::UaFile::new(
        "zed",
        "example.com",
        "whatever",
        common::loopback(port + 1),
        format!("udp:127.0.0.1:{port}"),
    );
    common::write_file(d, "zed.toml", &zed.to_toml());
    let out = privasip()
        .args(["ua", "--config"])
        .arg(d.join("zed.toml"))
        .arg("register")
        .output()
        .expect("register");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("registration refused: 403"), "{err}");
}
