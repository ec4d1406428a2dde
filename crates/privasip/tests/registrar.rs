//! The registrar and Digest with foreign clients (SIPp, sipsak), and a
//! restart: registrations and accounting live in the SQLite store. Needs
//! `sipp` and `sipsak` (scripts/test.sh installs them).

mod common;

use std::process::{Command, Output, Stdio};

use common::{Running, add_user, local_proxy, proxy, scenario, stop, wait_for_port, write_config};

fn sipp(dir: &std::path::Path, args: &[&str]) -> Output {
    common::require("sipp", "sip-tester");
    Command::new("sipp")
        .args(args)
        .args(["-nostdin", "-timeout", "60s", "-trace_err"])
        .current_dir(dir)
        .output()
        .expect("sipp runs")
}

#[test]
fn sipp_registers_with_digest_and_calls_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (port, uas_port) = (27060u16, 27070u16);
    let mut cfg = local_proxy("b.example", port);
    cfg.proxy.authenticate = true;
    // SIPp answers only the first challenge, and only MD5.
    cfg.proxy.digest = vec!["MD5".into()];
    cfg.store.path = "test.db".into();
    let config = write_config(dir.path(), &cfg);
    add_user(&config, "alice", "wonderland");
    add_user(&config, "bob", "zanzibar");
    let target = format!("127.0.0.1:{port}");
    let mut running = Running(vec![proxy(&config, port)]);

    // Many registrations with Digest (401, then 200), at the uas's address.
    let reg = |pw: &str, calls: &str| {
        sipp(
            dir.path(),
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
                pw,
                "-i",
                "127.0.0.1",
                "-p",
                &uas_port.to_string(),
                &target,
                "-m",
                calls,
                "-r",
                "100",
            ],
        )
    };
    let ok = reg("zanzibar", "200");
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        common::sipp_errors(dir.path())
    );
    // A wrong password fails (403).
    let bad = reg("guess", "1");
    assert_ne!(
        bad.status.code(),
        Some(0),
        "a wrong password must not register"
    );

    // Restart: the registration comes back from the store.
    stop(&mut running.0[0]);
    running.0[0] = proxy(&config, port);
    running.0.push(
        Command::new("sipp")
            .args([
                "-sf",
                &scenario("uas_rr.xml"),
                "-i",
                "127.0.0.1",
                "-p",
                &uas_port.to_string(),
            ])
            .args(["-m", "20", "-nostdin", "-timeout", "60s"])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sipp uas"),
    );
    wait_for_port(uas_port, false);
    // alice (authenticated, 407) calls bob@b.example: routed to bob's
    // restored contact.
    let calls = sipp(
        dir.path(),
        &[
            "-sf",
            &scenario("uac_auth.xml"),
            "-s",
            "bob",
            "-key",
            "user",
            "alice",
            "-key",
            "domain",
            "b.example",
            "-key",
            "to_domain",
            "b.example",
            "-au",
            "alice",
            "-ap",
            "wonderland",
            "-i",
            "127.0.0.1",
            "-p",
            "27090",
            &target,
            "-m",
            "20",
            "-r",
            "20",
        ],
    );
    assert_eq!(
        calls.status.code(),
        Some(0),
        "calls to the restored registration failed\n{}",
        common::sipp_errors(dir.path())
    );
    stop(&mut running.0[0]);

    // Accounting: one row per call, the real caller, start and end.
    let mut store = privasip_store::Store::open(&dir.path().join("test.db")).expect("store");
    let rows = store.calls().expect("calls");
    assert_eq!(rows.len(), 20);
    assert!(
        rows.iter()
            .all(|r| r.caller == "alice" && r.callee == "sip:bob@b.example")
    );
    assert!(
        rows.iter().all(|r| r.ended_unix.is_some()),
        "every BYE recorded"
    );
}

#[test]
fn sipsak_registers_and_pings() {
    common::require("sipsak", "sipsak");
    let dir = tempfile::tempdir().expect("tempdir");
    let port = 28060u16;
    // sipsak needs a resolvable domain and registers for 15 s.
    let mut cfg = local_proxy("127.0.0.1", port);
    cfg.proxy.authenticate = true;
    cfg.proxy.digest = vec!["MD5".into()];
    cfg.registrar.min_expires = 1;
    let config = write_config(dir.path(), &cfg);
    add_user(&config, "bob", "zanzibar");
    let _running = Running(vec![proxy(&config, port)]);
    let uri = format!("sip:bob@127.0.0.1:{port}");
    let sipsak = |args: &[&str]| {
        Command::new("sipsak")
            .args(args)
            .current_dir(dir.path())
            .output()
            .expect("sipsak runs")
    };
    // Register, call itself through the registrar, unregister.
    let out = sipsak(&["-U", "-s", &uri, "-a", "zanzibar", "-u", "bob"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = sipsak(&["-U", "-s", &uri, "-a", "wrong", "-u", "bob"]);
    assert_ne!(out.status.code(), Some(0));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("403"), "{said}");
    // OPTIONS to the proxy itself.
    let out = sipsak(&["-s", &format!("sip:127.0.0.1:{port}")]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
