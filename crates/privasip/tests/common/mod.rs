//! Helpers for tests that run privasip next to foreign SIP software.
#![allow(dead_code, unused_imports, unreachable_pub, missing_docs)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub use privasip_node::proxy::Config as ProxyFile;
pub use privasip_node::tor::TorSection;
pub use privasip_node::ua::Config as UaFile;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills what it holds when the test ends, however it ends.
pub struct Running(pub Vec<Child>);

impl Drop for Running {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Kills, when dropped, every process whose command line contains a
/// pattern (a daemon's unique temporary config path): for programs that
/// fork children of their own, like Kamailio.
pub struct KillMatching(pub String);

impl Drop for KillMatching {
    fn drop(&mut self) {
        let _ = Command::new("pkill")
            .args(["-KILL", "-f", &self.0])
            .status();
    }
}

/// Asks a child to stop (SIGTERM) and waits for it.
pub fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Fails with how to install it if `tool` is missing.
pub fn require(tool: &str, package: &str) {
    let found = Command::new(tool)
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(
        found,
        "{tool} is not installed: `apt-get install {package}` (scripts/test.sh does it)"
    );
}

pub fn scenario(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/sipp")
        .join(name)
        .display()
        .to_string()
}

/// Waits until something listens on the UDP or TCP port.
pub fn wait_for_port(port: u16, tcp: bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let busy = if tcp {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        } else {
            std::net::UdpSocket::bind(("127.0.0.1", port)).is_err()
        };
        if busy {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on port {port}");
}

/// Starts `privasip proxy --config FILE`, waiting for its UDP socket.
pub fn proxy(config: &Path, port: u16) -> Child {
    let child = Command::new(env!("CARGO_BIN_EXE_privasip"))
        .args(["proxy", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("privasip proxy starts");
    wait_for_port(port, false);
    child
}

/// Starts `privasip proxy --config FILE` with its log in `log` (proxy
/// debug lines included), waiting up to 150 s for its UDP socket (a proxy
/// with Tor sets that up first).
pub fn proxy_logged(config: &Path, port: u16, log: &Path) -> Child {
    let child = Command::new(env!("CARGO_BIN_EXE_privasip"))
        .args(["proxy", "--config"])
        .arg(config)
        .env(
            "RUST_LOG",
            "privasip_server=debug,privasip=info,privasip_tor=info,error",
        )
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log file"))
        .spawn()
        .expect("privasip proxy starts");
    let deadline = Instant::now() + Duration::from_secs(150);
    while std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
        assert!(
            Instant::now() < deadline,
            "proxy on {port} did not start:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    child
}

/// Runs SIPp in `dir` to the end (120 s at most, unexpected messages
/// tolerated); whether it passed, and its screen and error log.
pub fn sipp(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("sipp")
        .args(args)
        .args(["-nostdin", "-timeout", "120s", "-trace_err"])
        .args(["-default_behaviors", "all,-abortunexp"])
        .current_dir(dir)
        .output()
        .expect("sipp runs");
    let screen = String::from_utf8_lossy(&out.stdout).into_owned();
    (
        out.status.code() == Some(0),
        format!("{screen}\n{}", sipp_errors(dir)),
    )
}

/// Writes a proxy configuration.
pub fn write_config(dir: &Path, cfg: &ProxyFile) -> PathBuf {
    write_file(dir, "proxy.toml", &cfg.to_toml())
}

/// Writes `text` to `dir/name`; its path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write config");
    path
}

/// `127.0.0.1:port`.
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// `user` of `domain` on 127.0.0.1:`port`, registering with `proxy`
/// (`udp:IP:PORT`...) for 300 s: plain SIP, the rest at its defaults.
pub fn local_ua(user: &str, domain: &str, password: &str, port: u16, proxy: &str) -> UaFile {
    let mut cfg = UaFile::new(user, domain, password, loopback(port), proxy);
    cfg.ua.expires = 300;
    cfg
}

/// A proxy for `domain` on 127.0.0.1:`port` (UDP), that may send to
/// loopback (where every test's peers are): the rest at its defaults.
pub fn local_proxy(domain: &str, port: u16) -> ProxyFile {
    let mut cfg = ProxyFile::new(&[domain], format!("127.0.0.1:{port}"));
    cfg.listen.udp = Some(loopback(port));
    cfg.relay.allow_networks = vec!["127.0.0.0/8".into()];
    cfg
}

/// `privasip user add`, the password on stdin.
pub fn add_user(config: &Path, user: &str, password: &str) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_privasip"))
        .args(["user", "add", "--config"])
        .arg(config)
        .arg(user)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("privasip user add");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{password}\n").as_bytes())
        .expect("password");
    assert!(child.wait().expect("exits").success(), "user add {user}");
}

/// SIPp's error log lines, for a failure message.
pub fn sipp_errors(dir: &Path) -> String {
    std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with("errors.log"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect()
}

/// `privasip ua --config DIR/NAME.toml listen --for SECONDS`, its stdout
/// in DIR/NAME.out and stderr in DIR/NAME.err; returns once it
/// registered (failing, with what it said, if it does not in 20 s).
pub fn ua_listen(dir: &Path, name: &str, seconds: u32) -> (Child, PathBuf) {
    let out = dir.join(format!("{name}.out"));
    let err = dir.join(format!("{name}.err"));
    // Killed if it never registers.
    let mut guard = Running(vec![
        Command::new(env!("CARGO_BIN_EXE_privasip"))
            .args(["ua", "--config"])
            .arg(dir.join(format!("{name}.toml")))
            .args(["listen", "--for", &seconds.to_string()])
            .stdout(std::fs::File::create(&out).expect("out"))
            .stderr(std::fs::File::create(&err).expect("err"))
            .spawn()
            .expect("ua listens"),
    ]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let said = std::fs::read_to_string(&err).unwrap_or_default();
        if said.contains("registered for")
            && let Some(child) = guard.0.pop()
        {
            return (child, out);
        }
        assert!(Instant::now() < deadline, "{name} did not register: {said}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A private Tor network (`privasip testnet up`), stopped when dropped,
/// pass or fail.
pub struct Testnet(std::path::PathBuf);

impl Testnet {
    /// Starts one in `dir` on ports from `base` (Debian's tor must be
    /// installed: scripts/test.sh does it).
    pub fn up(dir: &Path, base: &str) -> Testnet {
        Testnet::up_with(dir, base, &[])
    }

    /// The same, with more `testnet up` arguments (`--latency live`).
    pub fn up_with(dir: &Path, base: &str, args: &[&str]) -> Testnet {
        require("tor", "tor");
        let guard = Testnet(dir.to_owned());
        let out = Command::new(env!("CARGO_BIN_EXE_privasip"))
            .args(["testnet", "up", "--dir"])
            .arg(dir)
            .args(["--base-port", base])
            .args(args)
            .output()
            .expect("privasip testnet up runs");
        succeeded(&out, "testnet up");
        guard
    }
}

impl Drop for Testnet {
    fn drop(&mut self) {
        let _ = Command::new(env!("CARGO_BIN_EXE_privasip"))
            .args(["testnet", "down", "--dir"])
            .arg(&self.0)
            .stdout(Stdio::null())
            .status();
    }
}

/// The standard output of a command that must have succeeded; both
/// outputs in the failure if it did not.
pub fn succeeded(out: &std::process::Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A REGISTER for `user{n}@b.example` sent from 127.0.0.1:`from_port`:
/// with a Contact at 127.0.0.1:40000 for an hour, or none (a query of
/// the bindings). `attempt` makes it a new transaction (branch, CSeq), as
/// a user agent's next try after a 503 is.
pub fn register_request(n: usize, contact: bool, from_port: u16, attempt: u32) -> Vec<u8> {
    let (flag, contact) = if contact {
        (
            1,
            format!("Contact: <sip:user{n}@127.0.0.1:40000>\r\nExpires: 3600\r\n"),
        )
    } else {
        (0, String::new())
    };
    format!(
        "REGISTER sip:b.example SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{from_port};branch=z9hG4bKreg{n}x{flag}a{attempt}\r\n\
         Max-Forwards: 70\r\nTo: <sip:user{n}@b.example>\r\n\
         From: <sip:user{n}@b.example>;tag=r{n}\r\nCall-ID: reg-{n}-{flag}\r\n\
         CSeq: {attempt} REGISTER\r\n{contact}Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// Registers every user in `users` with the proxy on UDP `port` (or
/// queries them, without `contact`), sending again to those not answered
/// 200 within 300 ms (a 503 from a proxy whose store is away is tried
/// again, each try a new transaction), until each got its 200; fails the
/// test after 60 s. `on_ok` sees each 200.
pub fn register_all(
    sock: &std::net::UdpSocket,
    port: u16,
    users: std::ops::Range<usize>,
    contact: bool,
    mut on_ok: impl FnMut(usize, &str),
) {
    let from = sock.local_addr().expect("bound").port();
    let mut done = std::collections::HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut buf = vec![0u8; 65_536];
    let mut attempt = 0;
    while done.len() < users.len() {
        attempt += 1;
        assert!(
            Instant::now() < deadline,
            "{} of {} answered 200",
            done.len(),
            users.len()
        );
        for n in users.clone().filter(|n| !done.contains(n)) {
            let request = register_request(n, contact, from, attempt);
            let _ = sock.send_to(&request, ("127.0.0.1", port));
        }
        let wait_until = Instant::now() + Duration::from_millis(300);
        while Instant::now() < wait_until && done.len() < users.len() {
            let Ok(len) = sock.recv(&mut buf) else {
                continue;
            };
            let text = String::from_utf8_lossy(&buf[..len]).into_owned();
            if !text.starts_with("SIP/2.0 200") {
                continue;
            }
            let Some(n) = text
                .lines()
                .find_map(|l| l.strip_prefix("Call-ID: reg-"))
                .and_then(|r| r.split('-').next())
                .and_then(|n| n.parse::<usize>().ok())
            else {
                continue;
            };
            if users.contains(&n) && done.insert(n) {
                on_ok(n, &text);
            }
        }
    }
}
