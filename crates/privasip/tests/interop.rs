//! The user agent against SIP software nobody here wrote, all Debian
//! packages the tests start themselves, in plain SIP on loopback:
//! baresip calls a privasip UA through a privasip proxy that hides the
//! topology, and the other way round, each side hanging up; privasip UAs
//! register and call each other through Kamailio (UDP, TCP, and across);
//! a privasip UA calls SIPp's uas (UDP and TCP).

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{KillMatching, Running};

fn privasip() -> Command {
    Command::new(env!("CARGO_BIN_EXE_privasip"))
}

/// A plain-SIP user agent configuration `name.toml`.
fn ua_config(dir: &Path, name: &str, user: &str, password: &str, local: u16, proxy: &str) {
    let mut cfg = common::local_ua(user, "example.com", password, local, proxy);
    cfg.ua.ring_ms = 200;
    common::write_file(dir, &format!("{name}.toml"), &cfg.to_toml());
}

/// Waits until `file` says `what`.
fn wait_for_text(file: &Path, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        if text.contains(what) || Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A proxy for example.com with alice and bob, hiding the topology on
/// every link; baresip 1.0's Digest stops at the first challenge that is
/// not MD5 (RFC 8760 puts SHA-256 first): it is offered MD5 alone.
fn hiding_proxy(d: &Path, port: u16) -> Running {
    let mut cfg = common::local_proxy("example.com", port);
    cfg.proxy.authenticate = true;
    cfg.proxy.digest = vec!["MD5".into()];
    cfg.proxy.topology_hiding = "all".into();
    cfg.listen.tcp = Some(common::loopback(port));
    let config = common::write_config(d, &cfg);
    common::add_user(&config, "alice", "alicepw");
    common::add_user(&config, "bob", "bobpw");
    Running(vec![common::proxy(&config, port)])
}

/// baresip as alice, without a sound card (aubridge stands in for audio),
/// registered through the proxy on `port`; `answer` makes it pick up.
fn baresip_config(d: &Path, port: u16, listen: u16, answer: bool) -> std::path::PathBuf {
    let conf = d.join("baresip");
    std::fs::create_dir_all(&conf).expect("baresip dir");
    std::fs::write(
        conf.join("config"),
        format!(
            "poll_method epoll\nsip_listen 127.0.0.1:{listen}\n\
             audio_player aubridge,nodev\naudio_source aubridge,nodev\naudio_alert aubridge,nodev\n\
             module_path /usr/lib/baresip/modules\nmodule g711.so\nmodule aubridge.so\n\
             module_tmp account.so\nmodule_app menu.so\n"
        ),
    )
    .expect("baresip config");
    std::fs::write(
        conf.join("accounts"),
        format!(
            "<sip:alice@example.com>;auth_user=alice;auth_pass=alicepw;\
             outbound=\"sip:127.0.0.1:{port};transport=udp\";regint=300;audio_codecs=pcmu{}\n",
            if answer { ";answermode=auto" } else { "" }
        ),
    )
    .expect("baresip accounts");
    conf
}

/// baresip calls a privasip UA and hangs up (its BYE); the proxy hides
/// each side's Via, Record-Route and Contact from the other.
#[test]
fn baresip_calls_a_privasip_ua_through_the_privasip_proxy() {
    common::require("baresip", "baresip-core");
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (port, bob_port, baresip_port) = (23400u16, 23401u16, 23402u16);
    let mut running = hiding_proxy(d, port);
    ua_config(
        d,
        "bob",
        "bob",
        "bobpw",
        bob_port,
        &format!("udp:127.0.0.1:{port}"),
    );
    let (bob, bob_out) = common::ua_listen(d, "bob", 30);
    running.0.push(bob);
    let conf = baresip_config(d, port, baresip_port, false);
    // -t: hang up (BYE), unregister and quit after 4 s.
    let out = Command::new("timeout")
        .arg("20")
        .arg("baresip")
        .arg("-f")
        .arg(&conf)
        .args(["-s", "-e", "/dial sip:bob@example.com", "-t", "4"])
        .output()
        .expect("baresip runs");
    let said = text(&out);
    for sign in [
        "alice@example.com: {0/UDP/v4} 200 OK",
        "Call established: sip:bob@example.com",
        "Call with sip:bob@example.com terminated",
    ] {
        assert!(said.contains(sign), "baresip did not say {sign:?}:\n{said}");
    }
    let bob_saw = wait_for_text(&bob_out, "call 1: ended");
    assert!(bob_saw.contains("call 1: incoming from alice"), "{bob_saw}");
    assert!(bob_saw.contains("call 1: ended"), "{bob_saw}");
}

/// The other way: a privasip UA calls baresip (which answers by itself)
/// and hangs up; baresip's dialog ends on that BYE, which reached it
/// through the handle the proxy gave in place of baresip's Contact.
#[test]
fn a_privasip_ua_calls_baresip_and_hangs_up() {
    common::require("baresip", "baresip-core");
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (port, bob_port, baresip_port) = (23430u16, 23431u16, 23432u16);
    let _proxy = hiding_proxy(d, port);
    ua_config(
        d,
        "bob",
        "bob",
        "bobpw",
        bob_port,
        &format!("udp:127.0.0.1:{port}"),
    );
    let conf = baresip_config(d, port, baresip_port, true);
    let log = d.join("baresip.out");
    // Killed when the test ends, whatever happens; -t quits by itself.
    let mut baresip = Running(vec![
        Command::new("baresip")
            .arg("-f")
            .arg(&conf)
            .args(["-s", "-t", "12"])
            .stdout(std::fs::File::create(&log).expect("log"))
            .stderr(Stdio::null())
            .spawn()
            .expect("baresip runs"),
    ]);
    let registered = wait_for_text(&log, "200 OK");
    assert!(
        registered.contains("alice@example.com: {0/UDP/v4} 200 OK"),
        "{registered}"
    );
    let out = privasip()
        .args(["ua", "--config"])
        .arg(d.join("bob.toml"))
        .args(["call", "sip:alice@example.com", "--hold", "1"])
        .output()
        .expect("privasip ua runs");
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("call 1: answered (200)"), "{said}");
    let seen = wait_for_text(&log, "terminated");
    assert!(seen.contains("terminated"), "baresip saw no BYE:\n{seen}");
    if let Some(c) = baresip.0.first_mut() {
        let _ = c.kill();
    }
}

#[test]
fn privasip_uas_register_and_call_through_kamailio() {
    common::require("kamailio", "kamailio");
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (port, bob_port, alice_port) = (23410u16, 23411u16, 23412u16);
    let cfg = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/kamailio/registrar.cfg"),
    )
    .expect("registrar.cfg")
    .replace("@PORT@", &port.to_string());
    let cfg_path = d.join("kamailio-registrar.cfg");
    std::fs::write(&cfg_path, cfg).expect("write cfg");
    let run = d.join("run");
    std::fs::create_dir_all(&run).expect("run dir");
    let _kamailio = KillMatching(cfg_path.display().to_string());
    let log = d.join("kamailio.log");
    let mut running = Running(vec![
        Command::new("kamailio")
            .arg("-f")
            .arg(&cfg_path)
            .args(["-DD", "-E", "-n", "2", "-m", "64", "-M", "8", "-Y"])
            .arg(&run)
            .arg("-P")
            .arg(run.join("kamailio.pid"))
            .arg("-w")
            .arg(d)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("kamailio starts"),
    ]);
    common::wait_for_port(port, true);

    for (alice_t, bob_t) in [("udp", "udp"), ("tcp", "tcp"), ("udp", "tcp")] {
        let proxy = |t: &str| format!("{t}:127.0.0.1:{port}");
        ua_config(d, "bob", "bob", "bobpw", bob_port, &proxy(bob_t));
        ua_config(d, "alice", "alice", "alicepw", alice_port, &proxy(alice_t));
        let (bob, bob_out) = common::ua_listen(d, "bob", 20);
        running.0.push(bob);
        let out = privasip()
            .args(["ua", "--config"])
            .arg(d.join("alice.toml"))
            .args(["call", "sip:bob@example.com", "--register", "--hold", "0.5"])
            .output()
            .expect("alice calls");
        let said = text(&out);
        assert!(
            out.status.success() && said.contains("call 1: answered (200)"),
            "{alice_t} -> {bob_t}: {said}\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        let bob_saw = wait_for_text(&bob_out, "call 1: ended");
        assert!(
            bob_saw.contains("call 1: incoming from alice") && bob_saw.contains("call 1: ended"),
            "{alice_t} -> {bob_t}: {bob_saw}"
        );
        if let Some(mut bob) = running.0.pop() {
            common::stop(&mut bob);
        }
    }
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        log.contains("auth ok: alice"),
        "Kamailio authenticated alice"
    );
    assert!(log.contains("IN BYE"), "BYE crossed Kamailio");
}

#[test]
fn a_privasip_ua_calls_sipps_uas_over_udp_and_tcp() {
    common::require("sipp", "sip-tester");
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (port, alice_port) = (23420u16, 23421u16);
    // SIPp's own uas, minus its 4 s wait after the BYE: over TCP that wait
    // counts our (proper) closing of the connection as a failed call.
    let dump = Command::new("sipp")
        .args(["-sd", "uas"])
        .output()
        .expect("sipp -sd");
    let scenario: String = String::from_utf8_lossy(&dump.stdout)
        .lines()
        .filter(|l| !l.contains("<timewait"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(scenario.contains("<scenario"), "sipp -sd uas: {scenario}");
    std::fs::write(d.join("uas.xml"), scenario).expect("scenario");
    for (transport, flag) in [("udp", "u1"), ("tcp", "t1")] {
        let mut sipp = Running(vec![
            Command::new("sipp")
                .arg("-sf")
                .arg(d.join("uas.xml"))
                .args(["-i", "127.0.0.1", "-p", &port.to_string(), "-t", flag])
                .args(["-m", "1", "-nostdin", "-timeout", "30s"])
                .current_dir(d)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("sipp uas starts"),
        ]);
        common::wait_for_port(port, transport == "tcp");
        ua_config(
            d,
            "alice",
            "alice",
            "unused",
            alice_port,
            &format!("{transport}:127.0.0.1:{port}"),
        );
        let out = privasip()
            .args(["ua", "--config"])
            .arg(d.join("alice.toml"))
            .args([
                "call",
                &format!("sip:service@127.0.0.1:{port}"),
                "--hold",
                "0.5",
            ])
            .output()
            .expect("alice calls");
        let said = text(&out);
        assert!(
            out.status.success() && said.contains("call 1: answered (200)"),
            "{transport}: {said}"
        );
        let mut uas = sipp.0.remove(0);
        let deadline = Instant::now() + Duration::from_secs(15);
        let status = loop {
            if let Some(s) = uas.try_wait().expect("wait") {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "{transport}: sipp never finished"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(
            status.success(),
            "{transport}: sipp counted a failed call\n{}",
            common::sipp_errors(d)
        );
    }
}
