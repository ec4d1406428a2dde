//! SIP between two privasip proxies over a Tor onion service, on a real
//! private Tor network that the test starts (`privasip testnet`, from
//! Debian's tor; scripts/test.sh installs it):
//!
//!   SIPp uac -> proxy A (UDP) -> Tor -> B's onion service -> proxy B -> SIPp uas
//!
//! with a fresh circuit per call, a REGISTER with Digest across the same
//! path, a check that fresh isolation really gives distinct circuits, and a
//! check that proxy A talks to nothing but its tor daemon.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{Running, scenario, sipp, wait_for_port};

use common::proxy_logged as proxy;
use privasip_tor::{CTor, Isolation, TorBackend};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The remote ends of a process's TCP and UDP sockets (from `ss`).
fn peers_of(pid: u32) -> Vec<String> {
    let out = Command::new("ss")
        .args(["-tunapH"])
        .output()
        .expect("ss runs (iproute2)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&format!("pid={pid},")))
        .filter_map(|l| l.split_whitespace().nth(5).map(str::to_owned))
        .collect()
}

/// One private network; three pairings of backends on it: C tor to C tor,
/// arti to arti, and an arti client calling a C tor onion service.
#[test]
fn sip_between_proxies_over_an_onion_service() {
    common::require("sipp", "sip-tester");
    let dir = tempfile::tempdir().expect("tempdir");
    let net_dir = dir.path().join("net");
    let _net = common::Testnet::up(&net_dir, "16000");
    let net = privasip_testnet::Testnet::load(&net_dir).unwrap();
    for (i, (a, b)) in [("c-tor", "c-tor"), ("arti", "arti"), ("arti", "c-tor")]
        .into_iter()
        .enumerate()
    {
        let d = dir.path().join(format!("{a}-to-{b}"));
        std::fs::create_dir_all(&d).unwrap();
        std::os::unix::fs::symlink(&net_dir, d.join("net")).unwrap();
        calls_over_tor(&d, &net, a, b, 22000 + 100 * i as u16);
    }
}

fn calls_over_tor(
    d: &Path,
    net: &privasip_testnet::Testnet,
    a_backend: &str,
    b_backend: &str,
    base: u16,
) {
    let (a_port, b_port, uas_port, uac_port) = (base + 60, base + 62, base + 70, base + 90);
    let mut b = common::ProxyFile::new(&["b.example"], format!("127.0.0.1:{b_port}"));
    b.proxy.digest = vec!["MD5".into()];
    b.listen.udp = Some(common::loopback(b_port));
    b.store.path = "b.db".into();
    b.tor = Some(common::TorSection {
        onion_port: 5060,
        key_dir: "keys-b".into(),
        ..common::TorSection::testnet(b_backend, "net", "b")
    });
    let b_cfg = common::write_file(d, "b.toml", &b.to_toml());
    common::add_user(&b_cfg, "bob", "zanzibar");
    let mut running = Running(Vec::new());
    running.0.push(proxy(&b_cfg, b_port, &d.join("b.log")));
    let onion = std::fs::read_to_string(d.join("keys-b/sip.onion"))
        .unwrap()
        .trim()
        .to_owned();
    assert!(privasip_tor::is_onion(&onion), "{onion}");

    // Fresh isolation gives distinct circuits: two streams to B's onion
    // service from client a, then a's control port says which circuit
    // each stream rides.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        if a_backend == "arti" {
            distinct_circuits_arti(d, net, &onion).await;
        } else {
            distinct_circuits_c_tor(d, net, &onion).await;
        }
    });

    let mut a = common::local_proxy("a.example", a_port);
    a.store.path = "a.db".into();
    let mut tor = common::TorSection {
        key_dir: "keys-a".into(),
        isolation: "per-call".into(),
        ..common::TorSection::testnet(a_backend, "net", "a")
    };
    tor.routes
        .insert("b.example".into(), format!("{onion}:5060"));
    a.tor = Some(tor);
    let a_cfg = common::write_file(d, "a.toml", &a.to_toml());
    running.0.push(proxy(&a_cfg, a_port, &d.join("a.log")));
    let a_pid = running.0.last().unwrap().id();
    let context = format!("A ({a_backend}) -> B ({b_backend})");
    let logs = || {
        let read = |f: &str| std::fs::read_to_string(d.join(f)).unwrap_or_default();
        format!(
            "--- proxy A log:\n{}\n--- proxy B log:\n{}",
            read("a.log"),
            read("b.log")
        )
    };

    // REGISTER with Digest: SIPp -> A -> Tor -> B's registrar.
    let (ok, report) = sipp(
        d,
        &[
            "-sf",
            &scenario("reg_auth.xml"),
            "-s",
            "b.example",
            "-key",
            "user",
            "bob",
            "-au",
            "bob",
            "-ap",
            "zanzibar",
            "-i",
            "127.0.0.1",
            "-p",
            &uac_port.to_string(),
            &format!("127.0.0.1:{a_port}"),
            "-m",
            "3",
        ],
    );
    assert!(
        ok,
        "{context}: REGISTER over Tor failed:\n{report}\n{}",
        logs()
    );

    // SIPp's uas is a user of B on B's LAN. B serves an onion service, so
    // it never dials an address: the uas registers a flow (;ob) and B
    // reaches it over that, its Contact in the dialog included.
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
            &uas_port.to_string(),
            &format!("127.0.0.1:{b_port}"),
            "-m",
            "1",
        ],
    );
    assert!(
        ok,
        "{context}: the uas's flow registration failed:\n{report}"
    );
    let uas_scenario = d.join("uas_ob.xml");
    std::fs::write(
        &uas_scenario,
        std::fs::read_to_string(scenario("uas_rr.xml"))
            .unwrap()
            .replace(";transport=[transport]>", ";transport=[transport];ob>"),
    )
    .unwrap();

    // Calls, each on a fresh circuit: INVITE, ACK and BYE cross both
    // proxies (both record-route).
    let calls = "10";
    running.0.push(
        Command::new("sipp")
            .arg("-sf")
            .arg(&uas_scenario)
            .args(["-i", "127.0.0.1"])
            .args(["-p", &uas_port.to_string(), "-m", calls])
            .args(["-nostdin", "-timeout", "120s"])
            .current_dir(d)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sipp uas starts"),
    );
    wait_for_port(uas_port, false);
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
            &(uac_port + 1).to_string(),
            "-rsa",
            &format!("127.0.0.1:{a_port}"),
            &format!("127.0.0.1:{uas_port}"),
            "-m",
            calls,
            "-r",
            "2",
        ],
    );
    assert!(
        ok,
        "{context}: calls over Tor failed:\n{report}\n{}",
        logs()
    );
    let summary = report
        .lines()
        .find(|l| l.contains("Successful call"))
        .unwrap_or_default()
        .to_owned();
    assert!(summary.contains(calls), "{summary}");

    // Proxy A's sockets: its UDP listener, and TCP only to its tor
    // daemon's SOCKS and control ports. Nothing to port 53, nothing off
    // the machine.
    // (With arti, A is a Tor client itself: its peers are relays' OR
    // ports, all in the private network.)
    let client = &net.clients["a"];
    let mut allowed = vec![client.socks.to_string(), client.control.to_string()];
    if a_backend == "arti" {
        allowed.extend(relay_or_ports(d));
    }
    for peer in peers_of(a_pid) {
        let listening = peer.ends_with(":*") || peer == "*:*" || peer.starts_with("0.0.0.0:");
        assert!(
            listening || allowed.contains(&peer),
            "{context}: proxy A talks to {peer} (allowed: {allowed:?})"
        );
        assert!(!peer.ends_with(":53"), "proxy A made a DNS query: {peer}");
    }
    drop(running);
}

/// Every relay's OR port in the network (from the nodes' torrcs).
fn relay_or_ports(d: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(d.join("net/nodes")).unwrap() {
        let torrc = std::fs::read_to_string(e.unwrap().path().join("torrc")).unwrap_or_default();
        for l in torrc.lines() {
            if let Some(addr) = l.strip_prefix("ORPort ") {
                out.push(addr.trim().to_owned());
            }
        }
    }
    out
}

/// Two fresh streams from C tor client a ride two circuits (its control
/// port's stream-status says which).
async fn distinct_circuits_c_tor(d: &Path, net: &privasip_testnet::Testnet, onion: &str) {
    let a = CTor::new(net.ctor("a", d.join("keys-probe")).unwrap());
    let mut streams = Vec::new();
    for _ in 0..2 {
        let mut s = a.connect(onion, 5060, Isolation::Fresh).await.unwrap();
        ping(&mut s).await;
        streams.push(s);
    }
    let mut ctl = a.control().await.unwrap();
    let status = ctl.command("GETINFO stream-status").await.unwrap();
    let circuits: Vec<String> = status
        .lines
        .join("\n")
        .lines()
        .filter(|l| l.contains(".onion:5060"))
        .filter_map(|l| l.split_whitespace().nth(2).map(str::to_owned))
        .collect();
    assert_eq!(circuits.len(), 2, "{status:?}");
    assert_ne!(circuits[0], circuits[1], "fresh streams share a circuit");
}

/// Two fresh streams from an arti client ride two circuits (arti's own
/// circuit ids).
async fn distinct_circuits_arti(d: &Path, net: &privasip_testnet::Testnet, onion: &str) {
    let arti = privasip_arti::Arti::start(privasip_arti::ArtiConfig {
        state_dir: d.join("probe-arti/state"),
        cache_dir: d.join("probe-arti/cache"),
        network: Some(net.network.clone()),
    })
    .await
    .unwrap();
    let mut ids = Vec::new();
    let mut streams = Vec::new();
    for _ in 0..2 {
        let mut s = arti
            .connect_stream(onion, 5060, Isolation::Fresh)
            .await
            .unwrap();
        ping(&mut s).await;
        ids.push(privasip_arti::circuit_id(&s).expect("a circuit"));
        streams.push(s);
    }
    assert_ne!(ids[0], ids[1], "fresh streams share a circuit");
}

/// A CRLF keep-alive answered across Tor by proxy B.
async fn ping<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(s: &mut S) {
    s.write_all(b"\r\n\r\n").await.unwrap();
    s.flush().await.unwrap();
    let mut pong = [0u8; 2];
    s.read_exact(&mut pong).await.unwrap();
    assert_eq!(&pong, b"\r\n", "CRLF keep-alive answered over Tor");
}
