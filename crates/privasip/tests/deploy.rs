//! doc/deploy.md, followed as a new user would: the paper's topology by
//! hand from the files in `examples/`, on a private Tor network, up to an
//! answered call.
//!
//!   Alice --UDP--> Proxy A ==Tor==> Proxy B (onion) ==Tor==> Bob (onion)
//!
//! The example files are copied as they are; the only edits are the ones
//! the page makes (B's onion address) and where the test network lives
//! (a temporary directory rather than /tmp/privasip-net). Each command run
//! here is checked to be on the page, so the page cannot drift from what
//! works.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Running;

const PAGE: &str = include_str!("../../../doc/deploy.md");
const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");

/// The test network's port range: apart from the other Tor tests'.
const BASE_PORT: &str = "17000";

/// A `privasip` command line, checked to be on the page first.
fn privasip(dir: &Path, args: &str) -> Command {
    assert!(
        PAGE.contains(args),
        "doc/deploy.md no longer says `{args}`: update the page or this test"
    );
    let mut c = Command::new(env!("CARGO_BIN_EXE_privasip"));
    c.args(args.split_whitespace().skip(1)).current_dir(dir);
    c
}

/// A daemon of the walk-through, its stderr to `log` in `dir`.
fn start(dir: &Path, args: &str, log: &str, password: Option<&str>) -> Child {
    let mut c = privasip(dir, args);
    if let Some(p) = password {
        c.env("PRIVASIP_PASSWORD", p);
    }
    c.env("RUST_LOG", "info")
        .stdout(std::fs::File::create(dir.join(format!("{log}.out"))).unwrap())
        .stderr(std::fs::File::create(dir.join(log)).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("{args}: {e}"))
}

/// Waits up to `secs` for `done`, showing `log` if it never comes.
fn wait_for(dir: &Path, secs: u64, what: &str, log: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what} within {secs} s; {log}:\n{}",
            std::fs::read_to_string(dir.join(log)).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Replaces `from` with `to` in `file`, which must contain it.
fn edit(file: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(file).unwrap();
    assert!(text.contains(from), "{} has no {from}", file.display());
    std::fs::write(file, text.replace(from, to)).unwrap();
}

fn udp_bound(port: u16) -> bool {
    std::net::UdpSocket::bind(("127.0.0.1", port)).is_err()
}

#[test]
fn the_deployment_page_works_from_the_example_files() {
    common::require("tor", "tor");
    let tmp = tempfile::tempdir().unwrap();
    let net = tmp.path().join("net");
    let dir = tmp.path().join("deploy");
    std::fs::create_dir_all(&dir).unwrap();

    // 1. The test network, and copies of the examples.
    assert!(PAGE.contains("privasip testnet up --dir /tmp/privasip-net"));
    let _net = common::Testnet::up(&net, BASE_PORT);
    let files = [
        "proxy-a-tor.toml",
        "proxy-b-onion.toml",
        "ua-alice.toml",
        "ua-bob-tor.toml",
    ];
    for f in files {
        assert!(PAGE.contains(f), "the page names {f}");
        std::fs::copy(Path::new(EXAMPLES).join(f), dir.join(f)).unwrap();
        if f != "ua-alice.toml" {
            edit(&dir.join(f), "/tmp/privasip-net", net.to_str().unwrap());
        }
    }

    // Keys and users.
    for args in [
        "privasip keygen --scheme hpke --out keys-a",
        "privasip keygen --scheme hpke --out keys-b",
        "privasip keygen --scheme peer --out keys-peer",
    ] {
        common::succeeded(&privasip(&dir, args).output().unwrap(), args);
    }
    for (args, password) in [
        (
            "privasip user add --config proxy-a-tor.toml alice",
            "wonderland",
        ),
        (
            "privasip user add --config proxy-b-onion.toml bob",
            "zanzibar",
        ),
    ] {
        assert!(PAGE.contains(&format!("echo '{password}'")));
        let mut child = privasip(&dir, args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
        common::succeeded(&child.wait_with_output().unwrap(), args);
    }

    // Proxy B publishes its onion service.
    let mut running = Running(Vec::new());
    running.0.push(start(
        &dir,
        "privasip proxy --config proxy-b-onion.toml",
        "b.log",
        None,
    ));
    let onion_file = dir.join("keys-b/sip.onion");
    wait_for(&dir, 180, "Proxy B's onion address", "b.log", || {
        onion_file.exists() && udp_bound(5062)
    });
    let onion = std::fs::read_to_string(&onion_file).unwrap();
    let onion = onion.trim();
    assert!(onion.ends_with(".onion"), "{onion}");

    // Proxy A routes b.example there.
    edit(
        &dir.join("proxy-a-tor.toml"),
        "REPLACE-WITH-B-ADDRESS.onion",
        onion,
    );
    running.0.push(start(
        &dir,
        "privasip proxy --config proxy-a-tor.toml",
        "a.log",
        None,
    ));
    wait_for(&dir, 180, "Proxy A listening", "a.log", || udp_bound(5060));

    // Bob registers through Tor and listens at his own onion service.
    edit(
        &dir.join("ua-bob-tor.toml"),
        "REPLACE-WITH-PROXY-B.onion",
        onion,
    );
    running.0.push(start(
        &dir,
        "privasip ua --config ua-bob-tor.toml listen",
        "bob.log",
        Some("zanzibar"),
    ));
    wait_for(&dir, 180, "Bob registered", "bob.log", || {
        ["bob.log", "bob.log.out"].iter().any(|f| {
            std::fs::read_to_string(dir.join(f))
                .unwrap_or_default()
                .contains("registered for")
        })
    });

    // Alice calls him. A fresh onion service can take a while to be
    // reachable from every client: a failed first call is tried again.
    let call = "privasip ua --config ua-alice.toml call sip:bob@b.example --register --hold 1";
    assert!(PAGE.contains(
        "privasip ua --config ua-alice.toml \\\n  call sip:bob@b.example --register --hold 1"
    ));
    let alice_calls = |what: &str, tries: usize| {
        let mut outcomes = Vec::new();
        for _ in 0..tries {
            let out = Command::new(env!("CARGO_BIN_EXE_privasip"))
                .args(call.split_whitespace().skip(1))
                .current_dir(&dir)
                .env("PRIVASIP_PASSWORD", "wonderland")
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let answered = out.status.success() && text.contains("call 1: answered (200)");
            outcomes.push(format!("{text}{}", String::from_utf8_lossy(&out.stderr)));
            if answered {
                return;
            }
            std::thread::sleep(Duration::from_secs(5));
        }
        let logs: Vec<String> = ["a.log", "b.log", "b2.log", "bob.log"]
            .iter()
            .map(|f| {
                let text = std::fs::read_to_string(dir.join(f)).unwrap_or_default();
                format!("{f}:\n{text}")
            })
            .collect();
        panic!(
            "Alice's call {what} was not answered:\n{}\n{}",
            outcomes.join("\n---\n"),
            logs.join("\n")
        );
    };
    alice_calls("", 3);
    // Bob heard it, and learnt nothing of who called (PrivaSIP-2).
    wait_for(&dir, 30, "Bob's side of the call", "bob.log.out", || {
        std::fs::read_to_string(dir.join("bob.log.out"))
            .unwrap_or_default()
            .contains("ended")
    });
    let bob = std::fs::read_to_string(dir.join("bob.log.out")).unwrap();
    assert!(!bob.contains("alice"), "Bob learnt the caller:\n{bob}");

    // A fault: Proxy B dies (kill -9) and comes back from its store and
    // key directory at the same onion address. Nobody is told: Bob's
    // agent reconnects and registers again by itself, Proxy A opens a new
    // stream to B's onion, and the next call is answered.
    let killed = Instant::now();
    let b = &mut running.0[0];
    let _ = b.kill();
    let _ = b.wait();
    running.0[0] = start(
        &dir,
        "privasip proxy --config proxy-b-onion.toml",
        "b2.log",
        None,
    );
    wait_for(&dir, 180, "Proxy B back", "b2.log", || {
        udp_bound(5062)
            && std::fs::read_to_string(dir.join("b2.log"))
                .unwrap_or_default()
                .contains("onion service published")
    });
    wait_for(&dir, 180, "Bob registered again", "bob.log", || {
        std::fs::read_to_string(dir.join("bob.log"))
            .unwrap_or_default()
            .contains("reconnected to the proxy")
    });
    let reregistered = killed.elapsed();
    alice_calls("after Proxy B's restart", 8);
    eprintln!(
        "Proxy B killed and restarted: Bob registered again after {reregistered:.1?}, \
         Alice's call answered after {:.1?}",
        killed.elapsed()
    );
    drop(running);
}
