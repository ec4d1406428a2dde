//! `privasip ua` against `privasip proxy`, real processes on loopback:
//! Bob listens, Alice calls him with PrivaSIP-2 (HPKE) over UDP and over
//! TCP, Digest everywhere; Bob sees only tokens; a wrong password is
//! refused.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Running;

fn privasip() -> Command {
    Command::new(env!("CARGO_BIN_EXE_privasip"))
}

fn ua_config(dir: &Path, name: &str, user: &str, password: &str, port: u16, proxy: &str) {
    std::fs::write(
        dir.join(format!("{name}.toml")),
        format!(
            "[ua]\nuser = \"{user}\"\ndomain = \"example.com\"\npassword = \"{password}\"\n\
             local = \"127.0.0.1:{port}\"\nproxy = \"{proxy}\"\nexpires = 300\n\
             [privasip]\nmode = \"privasip-2\"\nhome_key = \"keys/hpke.pub\"\n\
             [privasip.callee_keys]\n\"example.com\" = \"keys/hpke.pub\"\n"
        ),
    )
    .expect("write ua config");
}

#[test]
fn two_user_agents_call_through_the_proxy_with_privasip2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let proxy_port = 23060u16;
    let out = privasip()
        .args(["keygen", "--scheme", "hpke", "--out"])
        .arg(d.join("keys"))
        .output()
        .expect("keygen");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = common::write_config(
        d,
        &format!(
            "[proxy]\ndomains = [\"example.com\"]\nsent_by = \"127.0.0.1:{proxy_port}\"\n\
             authenticate = true\n\
             [listen]\nudp = \"127.0.0.1:{proxy_port}\"\ntcp = \"127.0.0.1:{proxy_port}\"\n\
             [privasip]\nkeys = [\"keys/hpke.key\"]\n"
        ),
    );
    common::add_user(&config, "alice", "wonderland");
    common::add_user(&config, "bob", "zanzibar");
    let mut running = Running(Vec::new());
    let proxy_log = d.join("proxy.log");
    running.0.push(
        privasip()
            .args(["proxy", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&proxy_log).expect("log"))
            .spawn()
            .expect("proxy starts"),
    );
    common::wait_for_port(proxy_port, false);

    let udp = format!("udp:127.0.0.1:{proxy_port}");
    let tcp = format!("tcp:127.0.0.1:{proxy_port}");
    ua_config(d, "bob", "bob", "zanzibar", 23070, &udp);
    ua_config(d, "alice", "alice", "wonderland", 23080, &udp);
    ua_config(d, "alice-tcp", "alice", "wonderland", 23081, &tcp);
    ua_config(d, "mallory", "alice", "guess", 23082, &udp);

    let bob_out = d.join("bob.out");
    let bob_err = d.join("bob.err");
    running.0.push(
        privasip()
            .args(["ua", "--config"])
            .arg(d.join("bob.toml"))
            .args(["listen", "--for", "60"])
            .stdout(std::fs::File::create(&bob_out).expect("out"))
            .stderr(std::fs::File::create(&bob_err).expect("err"))
            .spawn()
            .expect("bob listens"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&bob_err)
        .unwrap_or_default()
        .contains("registered")
    {
        assert!(
            Instant::now() < deadline,
            "bob did not register: {}",
            std::fs::read_to_string(&bob_err).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    for caller in ["alice", "alice-tcp"] {
        let out = privasip()
            .args(["ua", "--config"])
            .arg(d.join(format!("{caller}.toml")))
            .args(["call", "sip:bob@example.com", "--count", "3", "--json"])
            .output()
            .expect("alice calls");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{caller}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 3, "{stdout}");
        for l in lines {
            assert!(l.contains("\"outcome\":\"answered\""), "{l}");
            assert!(!l.contains("\"ringing_ms\":null"), "{l}");
        }
    }

    // A wrong password: refused, exit 1, a reason.
    let out = privasip()
        .args(["ua", "--config"])
        .arg(d.join("mallory.toml"))
        .arg("register")
        .output()
        .expect("register");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("registration refused"), "{err}");

    drop(running);
    // Bob saw six calls, each from a token, never from alice.
    let seen = std::fs::read_to_string(&bob_out).unwrap_or_default();
    let incoming: Vec<&str> = seen.lines().filter(|l| l.contains("incoming")).collect();
    assert_eq!(incoming.len(), 6, "{seen}");
    for l in incoming {
        assert!(l.contains("from ps1h."), "{l}");
        assert!(!l.contains("alice"), "{l}");
    }
    let log = std::fs::read_to_string(&proxy_log).unwrap_or_default();
    assert!(!log.contains("alice") && !log.contains("bob"), "{log}");
}
