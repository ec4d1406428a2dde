//! The main job, short: `privasip demo` on a private Tor network (Debian's
//! tor; scripts/test.sh installs it). Alice (plain UDP to Proxy A) calls
//! Bob (behind Tor, his own onion service) through Proxy B's onion service
//! with PrivaSIP-2; no real ID on the LAN hop, in either proxy's log, or
//! in what Bob received; every process stopped at the end.

mod common;

use std::process::Command;

#[test]
fn demo_calls_bob_over_tor_with_privasip2_and_leaks_no_id() {
    common::require("tor", "tor");
    let out = Command::new(env!("CARGO_BIN_EXE_privasip"))
        .args(["demo", "--calls", "2", "--base-port", "19000"])
        .output()
        .expect("privasip demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    let answered = stdout
        .lines()
        .filter(|l| l.contains(": answered (200)"))
        .count();
    assert_eq!(answered, 2, "{stdout}");
    for vantage in [
        "real IDs on the LAN hop: none",
        "Proxy A's log",
        "Alice's real ID in what Bob received: none",
    ] {
        assert!(stdout.contains(vantage), "missing {vantage:?}:\n{stdout}");
    }
    for l in stdout.lines().filter(|l| l.contains("log (")) {
        assert!(l.ends_with("real IDs: none"), "{l}");
    }
    assert!(stdout.contains("incoming from ps1h."), "{stdout}");
    assert!(stderr.contains("every process stopped"), "{stderr}");
    // Nothing of the demo's network is left running.
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
