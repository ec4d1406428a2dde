//! The main job, short: `privasip demo` on a private Tor network (Debian's
//! tor; scripts/test.sh installs it and tcpdump). Alice (plain UDP to
//! Proxy A) calls Bob (behind Tor, his own onion service) through Proxy
//! B's onion service with PrivaSIP-2; the audit of a tcpdump capture of
//! the LAN hop, both proxies' logs and what Bob and Alice received finds
//! no real ID, display name, address, onion or domain of the other side,
//! and nothing repeated from one call to the next; Bob's Contact, called
//! from outside its call, is refused; every process stopped at the end. The same call in
//! plain SIP must be caught by the same audit, or the audit proves nothing;
//! that run reaches Bob over the Tor stream he registered on instead of
//! his onion service. A third run puts Alice's own hop on Tor as well (a
//! fresh circuit per call to Proxy A's onion): the capture of every Tor
//! link is clean.

mod common;

use std::process::{Command, Output};

fn demo(mode: &str, reach: &str, alice_hop: &str) -> (Output, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_privasip"))
        .args(["demo", "--calls", "2", "--mode", mode])
        .args(["--callee-reach", reach, "--base-port", "19000"])
        .args(["--alice-hop", alice_hop])
        .output()
        .expect("privasip demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

fn nothing_left_running() {
    let left = Command::new("pgrep")
        .args(["-f", "privasip-demo-"])
        .output()
        .expect("pgrep");
    assert!(
        String::from_utf8_lossy(&left.stdout).trim().is_empty(),
        "processes left: {}",
        String::from_utf8_lossy(&left.stdout)
    );
}

#[test]
fn demo_hides_both_ids_under_privasip2_and_the_audit_catches_plain_sip() {
    common::require("tor", "tor");
    common::require("tcpdump", "tcpdump");

    for hop in ["lan", "tor"] {
        let (out, stdout, stderr) = demo("privasip-2", "onion", hop);
        assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
        let answered = stdout
            .lines()
            .filter(|l| l.contains(": answered (200)"))
            .count();
        assert_eq!(answered, 2, "{stdout}");
        for clean in [
            "LAN capture, tcpdump (",
            "Proxy A's log (",
            "Proxy B's log (",
            "What Bob received, for Alice's side (",
            "What Alice received, for Bob's side (",
        ] {
            let line = stdout
                .lines()
                .find(|l| l.contains(clean))
                .unwrap_or_else(|| panic!("no audit line {clean:?}:\n{stdout}"));
            assert!(line.ends_with("): clean"), "{line}");
        }
        assert!(stdout.contains("incoming from ps1h."), "{stdout}");
        assert!(
            stdout.contains("called from outside that call: refused (404)"),
            "{stdout}"
        );
        if hop == "tor" {
            assert!(
                stdout.contains("Alice --Tor, A's onion, a circuit per call--> Proxy A"),
                "{stdout}"
            );
        }
        assert!(stderr.contains("every process stopped"), "{stderr}");
        nothing_left_running();
    }

    // The plain run also reaches Bob the other way a callee behind Tor
    // can be reached: over the stream he registered on, with no onion
    // service of his own.
    let (out, stdout, stderr) = demo("plain", "registration", "lan");
    assert!(
        out.status.success(),
        "plain demo failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("--Tor, the stream Bob registered on--> Bob"),
        "{stdout}"
    );
    let answered = stdout
        .lines()
        .filter(|l| l.contains(": answered (200)"))
        .count();
    assert_eq!(answered, 2, "{stdout}");
    let lan = stdout
        .lines()
        .find(|l| l.contains("LAN capture, tcpdump ("))
        .unwrap_or_else(|| panic!("no LAN audit line:\n{stdout}"));
    assert!(
        lan.contains("), first: lan.pcap: packet ")
            && lan.contains("user ID \"alice\" in header From:"),
        "the audit missed plain SIP's From: {lan}"
    );
    let bob = stdout
        .lines()
        .find(|l| l.contains("What Bob received"))
        .unwrap_or_else(|| panic!("no Bob audit line:\n{stdout}"));
    assert!(bob.contains("finding(s)"), "{bob}");
    // Plain SIP proxies forward Alice's address and domain too.
    for kind in ["user ID", "address", "domain"] {
        assert!(bob.contains(kind), "the audit missed Alice's {kind}: {bob}");
    }
    nothing_left_running();
}
