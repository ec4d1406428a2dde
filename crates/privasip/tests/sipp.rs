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

/// A proxy for b.example relaying for SIPp (trusted) over UDP and TCP.
fn config(dir: &Path, proxy_port: u16, transport: &str) -> PathBuf {
    let mut cfg = common::local_proxy("b.example", proxy_port);
    cfg.proxy.default_transport = transport.into();
    cfg.relay.trusted = vec!["127.0.0.1".into()];
    cfg.listen.tcp = Some(common::loopback(proxy_port));
    common::write_config(dir, &cfg)
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
        .args(["-key", "to_domain", &format!("127.0.0.1:{uas_port}")])
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

/// Kamailio (SER's descendant, the paper's proxy family) as the next hop:
/// SIPp uac -> privasip -> Kamailio -> SIPp uas, both proxies
/// record-routing, plain SIP over UDP. privasip hides the topology on
/// every link (Vias, Record-Routes and Contacts sealed or replaced), and
/// the dialogs still complete through a proxy that knows nothing of it.
#[test]
fn kamailio_as_the_next_hop() {
    let sipp = sipp();
    common::require("kamailio", "kamailio");
    let dir = tempfile::tempdir().expect("tempdir");
    let (proxy_port, kam_port, uas_port) = (29060u16, 29080u16, 29070u16);
    let rundir = dir.path().join("kamailio-run");
    std::fs::create_dir_all(&rundir).expect("rundir");
    let template = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/kamailio/relay.cfg"),
    )
    .expect("relay.cfg");
    let kam_cfg = dir.path().join("kamailio.cfg");
    std::fs::write(
        &kam_cfg,
        template
            .replace("@PORT@", &kam_port.to_string())
            .replace("@NEXT@", &format!("sip:127.0.0.1:{uas_port}")),
    )
    .expect("write kamailio.cfg");
    let mut cfg = common::local_proxy("b.example", proxy_port);
    cfg.proxy.topology_hiding = "all".into();
    cfg.relay.trusted = vec!["127.0.0.1".into()];
    cfg.routes
        .insert("c.example".into(), format!("udp:127.0.0.1:{kam_port}"));
    let config = common::write_config(dir.path(), &cfg);
    // Kamailio forks: its children go by their command line.
    let _kamailio = common::KillMatching(kam_cfg.display().to_string());
    let mut running = Running(Vec::new());
    running.0.push(
        Command::new("kamailio")
            .arg("-f")
            .arg(&kam_cfg)
            .args(["-DD", "-E", "-n", "1", "-m", "64", "-M", "8", "-Y"])
            .arg(&rundir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("kamailio starts"),
    );
    wait_for_port(kam_port, false);
    running.0.push(common::proxy(&config, proxy_port));
    running.0.push(
        Command::new(sipp)
            .args(["-sf", &scenario("uas_rr.xml"), "-i", "127.0.0.1"])
            .args([
                "-p",
                &uas_port.to_string(),
                "-m",
                "500",
                "-nostdin",
                "-timeout",
                "60s",
            ])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sipp uas starts"),
    );
    wait_for_port(uas_port, false);
    let out = Command::new(sipp)
        .args(["-sf", &scenario("uac_rr.xml"), "-s", "service"])
        .args(["-key", "to_domain", "c.example"])
        .args(["-i", "127.0.0.1", "-p", "29090"])
        .args(["-rsa", &format!("127.0.0.1:{proxy_port}")])
        .arg(format!("127.0.0.1:{proxy_port}"))
        .args([
            "-m",
            "500",
            "-r",
            "250",
            "-nostdin",
            "-timeout",
            "50s",
            "-trace_err",
        ])
        .args(["-default_behaviors", "all,-abortunexp"])
        .current_dir(dir.path())
        .output()
        .expect("sipp uac runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "calls through privasip and Kamailio failed\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        common::sipp_errors(dir.path())
    );
}
