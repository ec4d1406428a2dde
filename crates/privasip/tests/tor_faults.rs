//! Parts of the Tor network die under calls, and privasip recovers by
//! itself, on a real private Tor network the test starts:
//!
//!   SIPp uac -> proxy A (UDP) -> tor a -> relays -> B's onion (tor b) -> proxy B -> SIPp uas
//!
//! In turn, with calls running: a relay is killed (SIGKILL, as a machine
//! dies), then the guard tor a's circuits enter by, then tor b (which
//! hosts B's onion service: proxy B must add it again when tor is back),
//! then tor a (proxy A's way into Tor). After each fault nobody is told
//! anything; the test runs batches of calls until one all succeeds, within
//! a bound. How long each recovery took is
//! printed (on stderr: `cargo test --test tor_faults -- --nocapture`).

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Running, proxy_logged, scenario, sipp, wait_for_port};

/// The network's ports (apart from the other Tor tests').
const NET_BASE: &str = "18000";
/// The proxies' and SIPp's ports.
const A_PORT: u16 = 24060;
const B_PORT: u16 = 24062;
const UAS_PORT: u16 = 24070;
const UAC_PORT: u16 = 24090;
const ALICE_PORT: u16 = 24094;

/// How long recovery from one fault may take: tor must notice the dead
/// relay or daemon, build new circuits, and for an onion service publish a
/// new descriptor that clients fetch.
const RECOVERY: Duration = Duration::from_secs(150);

/// Calls that must all succeed once a fault is recovered from.
const BATCH: &str = "5";

/// `privasip testnet ACTION --dir NET NODE`.
fn testnet(net: &Path, action: &str, node: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_privasip"))
        .args(["testnet", action, "--dir"])
        .arg(net)
        .arg(node)
        .output()
        .unwrap();
    common::succeeded(&out, &format!("testnet {action} {node}"));
}

/// Runs `calls` calls through proxy A (2 per second); SIPp's verdict,
/// the number that succeeded, and its report.
fn calls(d: &Path, calls: &str) -> (bool, usize, String) {
    let (ok, report) = sipp(
        d,
        &[
            "-sf",
            &scenario("uac_rr.xml"),
            "-s",
            "service",
            "-key",
            "to_domain",
            "b.example",
            "-i",
            "127.0.0.1",
            "-p",
            &UAC_PORT.to_string(),
            "-rsa",
            &format!("127.0.0.1:{A_PORT}"),
            &format!("127.0.0.1:{UAS_PORT}"),
            "-m",
            calls,
            "-r",
            "2",
            "-recv_timeout",
            "20000",
        ],
    );
    let succeeded = report
        .lines()
        .find(|l| l.contains("Successful call"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    (ok, succeeded, report)
}

/// After a fault: runs batches of calls (up to [`RECOVERY`]) until one
/// batch all succeeds. Tor routes around a dead relay in steps (the
/// client's guard state, a descriptor naming a dead introduction point,
/// a rendezvous point chosen from a consensus that still lists the dead
/// relay until the authorities' next votes), so single calls can fail
/// for a while after one got through. Returns the time to the batch that
/// all succeeded.
fn recovers(d: &Path, fault: &str, logs: &dyn Fn() -> String) -> Duration {
    let start = Instant::now();
    let mut batches = 0;
    loop {
        batches += 1;
        let (_, n, report) = calls(d, BATCH);
        if n.to_string() == BATCH {
            break;
        }
        assert!(
            start.elapsed() < RECOVERY,
            "after {fault}, no batch of {BATCH} calls all succeeded within {} s \
             (the last: {n}):\n{report}\n{}",
            RECOVERY.as_secs(),
            logs()
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    let took = start.elapsed();
    eprintln!("{fault}: {BATCH} of {BATCH} calls after {took:.1?} ({batches} batches)");
    took
}

/// The OR ports a process holds connections to (from `ss`): for a tor
/// client daemon, its guards.
fn or_peers(pid: u32, relays: &[(String, String)]) -> Vec<String> {
    let out = Command::new("ss")
        .args(["-tnpH"])
        .output()
        .expect("ss runs (iproute2)");
    let text = String::from_utf8_lossy(&out.stdout);
    relays
        .iter()
        .filter(|(_, port)| {
            text.lines()
                .any(|l| l.contains(&format!("pid={pid},")) && l.contains(port.as_str()))
        })
        .map(|(name, _)| name.clone())
        .collect()
}

/// Every non-authority relay: (name, its OR address as ss prints it).
fn relays(net: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(net.join("nodes")).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("relay") {
            continue;
        }
        let torrc = std::fs::read_to_string(e.path().join("torrc")).unwrap();
        if let Some(addr) = torrc.lines().find_map(|l| l.strip_prefix("ORPort ")) {
            out.push((name, format!(" {addr} ")));
        }
    }
    out.sort();
    out
}

fn pid_of(net: &Path, node: &str) -> u32 {
    std::fs::read_to_string(net.join("nodes").join(node).join("tor.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Alice calls through proxy A and holds the call for 300 s; returned
/// once it had time to be answered.
fn hold_a_call(d: &Path) -> Running {
    let alice = common::local_ua(
        "alice",
        "a.example",
        "unused",
        ALICE_PORT,
        &format!("udp:127.0.0.1:{A_PORT}"),
    );
    let alice_cfg = common::write_file(d, "alice.toml", &alice.to_toml());
    let held = Command::new(env!("CARGO_BIN_EXE_privasip"))
        .args(["ua", "--config"])
        .arg(&alice_cfg)
        .args(["call", "sip:service@b.example", "--hold", "300", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Answered within a few seconds (the batches before took about one).
    std::thread::sleep(Duration::from_secs(8));
    Running(vec![held])
}

/// Alice's held call ended within 150 s of `killed`, answered, and proxy
/// A's log says it ended a call whose circuit died.
fn held_call_was_ended(d: &Path, mut held: Running, killed: Instant, logs: &dyn Fn() -> String) {
    let ended = loop {
        if let Some(status) = held.0[0].try_wait().unwrap() {
            break Some(status);
        }
        if killed.elapsed() > Duration::from_secs(150) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let record = {
        use std::io::Read;
        let mut out = String::new();
        if ended.is_some()
            && let Some(o) = held.0[0].stdout.as_mut()
        {
            o.read_to_string(&mut out).unwrap();
        }
        out
    };
    drop(held);
    assert!(
        ended.is_some_and(|s| s.success()),
        "Alice's call, held for 300 s, was not ended within 150 s of its circuit's death \
         ({ended:?}): {record}\n{}",
        logs()
    );
    assert!(record.contains("\"outcome\":\"answered\""), "{record}");
    eprintln!(
        "a call whose circuit died with tor b: ended by proxy A after {:.1?}",
        killed.elapsed()
    );
    assert!(
        std::fs::read_to_string(d.join("a.log"))
            .unwrap()
            .contains("Tor circuit died under it"),
        "proxy A said nothing of the call it ended:\n{}",
        logs()
    );
}

#[test]
fn calls_survive_dead_relays_guards_and_tor_daemons() {
    common::require("sipp", "sip-tester");
    common::require("tor", "tor");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let net = d.join("net");
    let _net = common::Testnet::up(&net, NET_BASE);

    // Proxy B serves b.example at an onion service of tor b.
    let mut b = common::ProxyFile::new(&["b.example"], format!("127.0.0.1:{B_PORT}"));
    b.listen.udp = Some(common::loopback(B_PORT));
    b.store.path = "b.db".into();
    b.tor = Some(common::TorSection {
        onion_port: 5060,
        key_dir: "keys-b".into(),
        ..common::TorSection::testnet("c-tor", "net", "b")
    });
    let b_cfg = common::write_file(d, "b.toml", &b.to_toml());
    let mut running = Running(Vec::new());
    running
        .0
        .push(proxy_logged(&b_cfg, B_PORT, &d.join("b.log")));
    let onion = std::fs::read_to_string(d.join("keys-b/sip.onion"))
        .unwrap()
        .trim()
        .to_owned();

    // Proxy A routes b.example there through tor a, a circuit per call.
    let mut a = common::local_proxy("a.example", A_PORT);
    a.store.path = "a.db".into();
    let mut tor = common::TorSection {
        key_dir: "keys-a".into(),
        isolation: "per-call".into(),
        ..common::TorSection::testnet("c-tor", "net", "a")
    };
    tor.routes
        .insert("b.example".into(), format!("{onion}:5060"));
    a.tor = Some(tor);
    let a_cfg = common::write_file(d, "a.toml", &a.to_toml());
    running
        .0
        .push(proxy_logged(&a_cfg, A_PORT, &d.join("a.log")));
    let logs = || {
        let read = |f: &str| std::fs::read_to_string(d.join(f)).unwrap_or_default();
        let tail = |t: String| {
            let lines: Vec<&str> = t.lines().rev().take(40).collect();
            lines.into_iter().rev().collect::<Vec<_>>().join("\n")
        };
        format!(
            "--- proxy A log (end):\n{}\n--- proxy B log (end):\n{}\n\
             --- tor a's log (end):\n{}\n--- tor b's log (end):\n{}",
            tail(read("a.log")),
            tail(read("b.log")),
            tail(read("net/nodes/client-a/notice.log")),
            tail(read("net/nodes/client-b/notice.log"))
        )
    };

    // The callee: SIPp's uas, a user of B on B's LAN, reached over the
    // flow it registered (B serves an onion service: it dials nothing).
    let (ok, report) = sipp(
        d,
        &[
            "-sf",
            &scenario("reg_ob.xml"),
            "-key",
            "user",
            "service",
            "-key",
            "domain",
            "b.example",
            "-i",
            "127.0.0.1",
            "-p",
            &UAS_PORT.to_string(),
            &format!("127.0.0.1:{B_PORT}"),
            "-m",
            "1",
        ],
    );
    assert!(ok, "the uas's flow registration failed:\n{report}");
    let uas_scenario = d.join("uas_ob.xml");
    std::fs::write(
        &uas_scenario,
        std::fs::read_to_string(scenario("uas_rr.xml"))
            .unwrap()
            .replace(";transport=[transport]>", ";transport=[transport];ob>"),
    )
    .unwrap();
    running.0.push(
        Command::new("sipp")
            .arg("-sf")
            .arg(&uas_scenario)
            .args(["-i", "127.0.0.1", "-p", &UAS_PORT.to_string()])
            .args(["-nostdin", "-timeout", "600s"])
            .current_dir(d)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sipp uas starts"),
    );
    wait_for_port(UAS_PORT, false);

    recovers(d, "the start", &logs);

    let relays = relays(&net);
    // 1. A relay that is not tor a's guard dies, with calls running.
    let guards = or_peers(pid_of(&net, "client-a"), &relays);
    assert!(!guards.is_empty(), "tor a holds no connection to a relay");
    let victim = relays
        .iter()
        .map(|(n, _)| n.clone())
        .find(|n| !guards.contains(n))
        .expect("a relay that is not a's guard");
    let during = std::thread::scope(|s| {
        let load = s.spawn(|| calls(d, "6").1);
        std::thread::sleep(Duration::from_secs(2));
        testnet(&net, "kill", &victim);
        load.join().unwrap()
    });
    eprintln!("a relay killed under 6 calls: {during} succeeded");
    recovers(d, "a relay's death", &logs);
    // It comes back before the next fault: the authorities list a relay
    // as Running for 45 minutes after they last reached it, so a dead one
    // stays in every client's and service's choice of paths. On the live
    // network that is a few relays of thousands; here two dead of eight
    // would fail a quarter of all hops, which tests the network's size,
    // not our recovery.
    testnet(&net, "restart", &victim);

    // 2. The guard tor a enters by dies.
    let guards = or_peers(pid_of(&net, "client-a"), &relays);
    let guard = guards.first().expect("tor a has a guard").clone();
    let during = std::thread::scope(|s| {
        let load = s.spawn(|| calls(d, "6").1);
        std::thread::sleep(Duration::from_secs(2));
        testnet(&net, "kill", &guard);
        load.join().unwrap()
    });
    eprintln!("tor a's guard killed under 6 calls: {during} succeeded");
    recovers(d, "the guard's death", &logs);
    testnet(&net, "restart", &guard);

    // 3. tor b dies and comes back: B's onion service went with it, and
    // proxy B adds it again by itself.
    //
    // With PRIVASIP_FAULTS_HELD_CALL set (scripts/faults.sh sets it), a
    // call is up when it dies (Alice, a privasip user agent, holds it for
    // minutes): proxy A, which gave the call a circuit of its own, must
    // see that circuit die and end the call with a BYE to Alice (RFC
    // 3326), long before she would hang up. Not in CI yet: it passed 4
    // runs of 5 (RELIABILITY.md), and the fifth is not understood.
    let held = std::env::var_os("PRIVASIP_FAULTS_HELD_CALL")
        .is_some()
        .then(|| hold_a_call(d));
    let killed = Instant::now();
    testnet(&net, "kill", "client-b");
    std::thread::sleep(Duration::from_secs(2));
    testnet(&net, "restart", "client-b");
    if let Some(held) = held {
        held_call_was_ended(d, held, killed, &logs);
    }
    recovers(d, "tor b's restart", &logs);
    assert!(
        std::fs::read_to_string(d.join("b.log"))
            .unwrap()
            .contains("the onion service is published again"),
        "proxy B said nothing of its onion service:\n{}",
        logs()
    );

    // 4. tor a dies: calls fail at once (503, nothing waits for Timer B)
    // until it is back.
    testnet(&net, "kill", "client-a");
    let (_, n, report) = calls(d, "1");
    assert_eq!(n, 0, "a call got through with tor a dead:\n{report}");
    testnet(&net, "restart", "client-a");
    recovers(d, "tor a's restart", &logs);
    drop(running);
}
