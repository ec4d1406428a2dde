//! SIPp, a foreign SIP implementation, calls through `privasip proxy`:
//! uac -> privasip -> uas over UDP and over TCP, with Record-Route so
//! that ACK and BYE cross the proxy too. Thousands of calls, none may
//! fail. Needs `sipp` (Debian package sip-tester; scripts/test.sh installs
//! it).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{Running, scenario, wait_for_port};

fn sipp() -> &'static str {
    common::require("sipp", "sip-tester");
    "sipp"
}

fn config(dir: &Path, proxy_port: u16, transport: &str) -> PathBuf {
    let path = dir.join("proxy.toml");
    std::fs::write(
        &path,
        format!(
            "[proxy]\ndomains = [\"b.example\"]\nsent_by = \"127.0.0.1:{proxy_port}\"\n\
             default_transport = \"{transport}\"\n\
             [listen]\nudp = \"127.0.0.1:{proxy_port}\"\ntcp = \"127.0.0.1:{proxy_port}\"\n"
        ),
    )
    .expect("write config");
    path
}

fn calls_through_the_proxy(transport: &str, base: u16, calls: u32, rate: u32) {
    let sipp = sipp();
    let dir = tempfile::tempdir().expect("tempdir");
    let (proxy_port, uas_port, uac_port) = (base, base + 10, base + 30);
    let t = if transport == "tcp" { "t1" } else { "u1" };
    let mut running = Running(Vec::new());
    running.0.push(
        Command::new(env!("CARGO_BIN_EXE_privasip"))
            .args(["proxy", "--config"])
            .arg(config(dir.path(), proxy_port, transport))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("privasip proxy starts"),
    );
    wait_for_port(proxy_port, true);
    let uas_port_s = uas_port.to_string();
    let calls_s = calls.to_string();
    running.0.push(
        Command::new(sipp)
            .args(["-sf", &scenario("uas_rr.xml"), "-t", t, "-i", "127.0.0.1"])
            .args([
                "-p",
                &uas_port_s,
                "-m",
                &calls_s,
                "-nostdin",
                "-timeout",
                "120s",
            ])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sipp uas starts"),
    );
    wait_for_port(uas_port, transport == "tcp");
    let out = Command::new(sipp)
        .args(["-sf", &scenario("uac_rr.xml"), "-t", t, "-s", "service"])
        .args(["-i", "127.0.0.1", "-p", &uac_port.to_string()])
        .args(["-rsa", &format!("127.0.0.1:{proxy_port}")])
        .arg(format!("127.0.0.1:{uas_port}"))
        .args(["-m", &calls_s, "-r", &rate.to_string()])
        .args(["-nostdin", "-timeout", "100s", "-trace_err", "-trace_stat"])
        .args(["-default_behaviors", "all,-abortunexp"])
        .current_dir(dir.path())
        .output()
        .expect("sipp uac runs");
    let screen = String::from_utf8_lossy(&out.stdout);
    let errors = common::sipp_errors(dir.path());
    assert_eq!(
        out.status.code(),
        Some(0),
        "SIPp uac over {transport}: some calls failed\n{screen}\n{errors}"
    );
    let ok_line = screen
        .lines()
        .find(|l| l.contains("Successful call"))
        .expect("SIPp summary");
    assert!(ok_line.contains(&calls_s), "{ok_line}");
}

#[test]
fn sipp_calls_through_the_proxy_over_udp() {
    calls_through_the_proxy("udp", 25060, 2000, 400);
}

#[test]
fn sipp_calls_through_the_proxy_over_tcp() {
    calls_through_the_proxy("tcp", 26060, 2000, 400);
}
