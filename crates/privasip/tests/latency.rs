//! `privasip testnet up --latency live` really delays every link: a
//! stream through a 3-hop exit circuit from tor a to an echo server on
//! loopback must take, per round trip, twice the sum of the one-way
//! delays `DIR/latency.json` drew for the circuit's three links (tor
//! reports which relays the circuit crosses; conflux is off for the
//! probe, so the stream rides that one circuit). So the emulation cannot
//! silently stop working.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use privasip_testnet::Plan;
use privasip_tor::{CTor, Isolation, TorBackend};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The network's ports (apart from the other Tor tests').
const NET_BASE: &str = "19000";

#[test]
fn every_link_of_a_circuit_pays_its_drawn_delay() {
    let dir = tempfile::tempdir().unwrap();
    let net_dir = dir.path().join("net");
    let started = Instant::now();
    let _net = common::Testnet::up_with(&net_dir, NET_BASE, &["--latency", "live", "--seed", "7"]);
    eprintln!("testnet up --latency live: {:.1?}", started.elapsed());
    let plan = Plan::load(&net_dir).unwrap().expect("a latency plan");
    let net = privasip_testnet::Testnet::load(&net_dir).unwrap();
    assert_eq!(net.latency, privasip_testnet::Profile::Live);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = echo.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let a = CTor::new(net.ctor("a", dir.path().join("keys-a")).unwrap());
        // Conflux (tor 0.4.8+) splits an exit stream over two linked
        // circuits and sends on the quicker, so one circuit's delays would
        // not account for its round trip: off for this client, and a
        // stream that still lands on a linked circuit (built before) is
        // dropped for another.
        let mut ctl = a.control().await.unwrap();
        ctl.command("SETCONF ConfluxEnabled=0").await.unwrap();
        let target = format!("127.0.0.1:{port}");
        let mut attempt = 0;
        let (mut s, path) = loop {
            attempt += 1;
            let s = tokio::time::timeout(
                Duration::from_secs(60),
                a.connect("127.0.0.1", port, Isolation::Fresh),
            )
            .await
            .expect("a stream within 60 s")
            .unwrap();
            // The circuit the stream rides, and its relays.
            let streams = ctl.command("GETINFO stream-status").await.unwrap();
            let circuit = streams
                .lines
                .join("\n")
                .lines()
                .rfind(|l| l.contains(&target))
                .and_then(|l| l.split_whitespace().nth(2).map(str::to_owned))
                .unwrap_or_else(|| panic!("no stream to {target}: {streams:?}"));
            let circuits = ctl.command("GETINFO circuit-status").await.unwrap();
            let text = circuits.lines.join("\n");
            let line = text
                .lines()
                .find(|l| l.split_whitespace().next() == Some(circuit.as_str()))
                .unwrap_or_else(|| panic!("no circuit {circuit}: {text}"))
                .to_owned();
            if line.contains("CONFLUX") {
                assert!(attempt < 10, "every stream rode a conflux set: {line}");
                drop(s);
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            let path: Vec<String> = line
                .split_whitespace()
                .nth(2)
                .unwrap_or_default()
                .split(',')
                .map(|hop| hop.split('~').nth(1).unwrap_or(hop).to_owned())
                .collect();
            break (s, path);
        };
        let mut rtts = Vec::new();
        for _ in 0..5 {
            let sent = Instant::now();
            s.write_all(b"ping").await.unwrap();
            let mut got = [0u8; 4];
            s.read_exact(&mut got).await.unwrap();
            rtts.push(sent.elapsed());
        }
        let measured = rtts.iter().min().unwrap().as_secs_f64() * 1000.0;
        assert_eq!(path.len(), 3, "an exit circuit of 3 hops: {path:?}");
        let mut one_way = 0.0;
        let mut from = "client-a".to_owned();
        for hop in &path {
            one_way += plan
                .delay_ms(&from, hop)
                .unwrap_or_else(|| panic!("no drawn delay from {from} to {hop}"));
            from = hop.clone();
        }
        let expected = 2.0 * one_way;
        eprintln!(
            "circuit {path:?}: round trip {measured:.1} ms (min of 5), drawn {expected:.1} ms"
        );
        assert!(
            measured >= expected - 1.0 && measured <= expected * 1.1 + 30.0,
            "round trip {measured:.1} ms over {path:?}; the drawn delays add up to {expected:.1} ms; \
             the forwarder's links:\n{}",
            std::fs::read_to_string(net_dir.join("forwarder.log")).unwrap_or_default()
        );
    });

    // The latency belongs to the network: a bench on it that expects
    // another profile is refused before it measures anything.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_privasip"))
        .args([
            "bench",
            "tor",
            "--samples",
            "1",
            "--latency",
            "none",
            "--testnet",
        ])
        .arg(&net_dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("runs with --latency live, not none"),
        "{err}"
    );
}
