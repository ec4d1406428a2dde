//! Attacks on a real `privasip proxy` on loopback (SECURITY.md): what
//! once crashed it, made it an open relay or locked a user out. Every
//! packet goes to 127.0.0.0/8; the "victim" services are sockets this test
//! opens on loopback itself.

mod common;

use std::io::Read;
use std::net::{TcpListener, UdpSocket};
use std::time::Duration;

use common::{ProxyFile, Running, add_user, local_proxy, loopback, proxy, write_config};
use privasip_digest::{Algorithm, Challenge, Ha1};
use privasip_message::{HeaderName, Limits, Message};

const REALM: &str = "b.example";

/// A UDP socket on `ip` that waits at most `secs` for an answer.
fn socket(ip: &str, secs: u64) -> UdpSocket {
    let s = UdpSocket::bind((ip, 0)).expect("bind");
    s.set_read_timeout(Some(Duration::from_secs(secs)))
        .expect("timeout");
    s
}

/// Sends `msg` to the proxy and returns the first answer, if any.
fn ask(s: &UdpSocket, port: u16, msg: &str) -> Option<String> {
    s.send_to(msg.as_bytes(), ("127.0.0.1", port))
        .expect("send");
    let mut buf = [0u8; 65536];
    loop {
        let (n, _) = s.recv_from(&mut buf).ok()?;
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        // 100 Trying is not an answer.
        if !text.starts_with("SIP/2.0 100 ") {
            return Some(text);
        }
    }
}

fn status(text: &str) -> u16 {
    text.get(8..11).and_then(|c| c.parse().ok()).unwrap_or(0)
}

fn request(method: &str, ruri: &str, from_sock: &UdpSocket, branch: &str, extra: &str) -> String {
    let local = from_sock.local_addr().expect("local");
    format!(
        "{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{branch}\r\n\
         Max-Forwards: 70\r\nTo: <sip:x@x.example>\r\nFrom: <sip:m@m.example>;tag=m1\r\n\
         Call-ID: {branch}\r\nCSeq: 1 {method}\r\n{extra}Content-Length: 0\r\n\r\n"
    )
}

#[test]
fn hostile_datagrams_do_not_crash_or_relay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = 24700u16;
    // The default relay policy: nothing internal may be dialled.
    let mut cfg = ProxyFile::new(&[REALM], format!("127.0.0.1:{port}"));
    cfg.listen.udp = Some(loopback(port));
    cfg.listen.tcp = Some(loopback(port));
    let config = write_config(dir.path(), &cfg);
    let mut running = Running(vec![proxy(&config, port)]);
    // The services an attacker would reach through the proxy.
    let victim_udp = UdpSocket::bind("127.0.0.1:24701").expect("victim udp");
    victim_udp
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let victim_tcp = TcpListener::bind("127.0.0.1:24702").expect("victim tcp");
    victim_tcp.set_nonblocking(true).expect("nonblocking");
    let m = socket("127.0.0.1", 2);

    // The stray response that once panicked the proxy (exit 101).
    let crash = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:24700;branch=z9hG4bKx.0.AAAA\r\n\
                 Via: SIP/2.0/UDP [\u{e9}abcd];branch=z9hG4bKy\r\nTo: <sip:a@b>;tag=1\r\n\
                 From: <sip:c@d>;tag=2\r\nCall-ID: crash\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    m.send_to(crash.as_bytes(), ("127.0.0.1", port))
        .expect("send");

    // Open-relay and SSRF attempts: each answered 403, none reaching the
    // victims.
    let attempts = [
        request("OPTIONS", "sip:x@127.0.0.1:24701", &m, "o1", ""),
        request("MESSAGE", "sip:x@127.0.0.1:24701", &m, "o2", ""),
        request(
            "INVITE",
            "sip:x@127.0.0.1:24702;transport=tcp",
            &m,
            "o3",
            "Contact: <sip:m@127.0.0.1>\r\n",
        ),
        request(
            "OPTIONS",
            "sip:x@b.example",
            &m,
            "o4",
            "Route: <sip:127.0.0.1:24701;lr>\r\n",
        ),
    ];
    for req in &attempts {
        let answer = ask(&m, port, req).expect("an answer");
        assert_eq!(status(&answer), 403, "{req}\n-> {answer}");
        assert!(answer.contains("Relay Forbidden"), "{answer}");
    }
    // A stray ACK with a body, to a TCP service: no answer, no connection.
    let body = "GET / HTTP/1.0\r\n\r\n";
    let ack = format!(
        "ACK sip:x@127.0.0.1:24702;transport=tcp SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKack\r\n\
         Max-Forwards: 70\r\nTo: <sip:x@x.example>;tag=t\r\nFrom: <sip:m@m.example>;tag=m1\r\n\
         Call-ID: ack\r\nCSeq: 1 ACK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    m.send_to(ack.as_bytes(), ("127.0.0.1", port))
        .expect("send");

    // Still alive, and still answering.
    let ping = request("OPTIONS", "sip:127.0.0.1:24700", &m, "alive", "");
    let answer = ask(&m, port, &ping).expect("the proxy answers after the attacks");
    assert_eq!(status(&answer), 200, "{answer}");
    assert!(
        running.0[0].try_wait().expect("wait").is_none(),
        "the proxy is running"
    );
    let mut buf = [0u8; 2048];
    assert!(
        victim_udp.recv_from(&mut buf).is_err(),
        "the UDP victim got nothing"
    );
    match victim_tcp.accept() {
        Ok((mut c, _)) => {
            let mut got = String::new();
            let _ = c.read_to_string(&mut got);
            panic!("the proxy connected to the TCP victim and wrote {got:?}");
        }
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock),
    }
}

/// A REGISTER for bob from `s`, with credentials answering `challenge`
/// under `password`, or none.
fn register(s: &UdpSocket, cseq: u32, auth: &str) -> String {
    let local = s.local_addr().expect("local");
    format!(
        "REGISTER sip:{REALM} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKreg{cseq}{}\r\n\
         Max-Forwards: 70\r\nTo: <sip:bob@{REALM}>\r\nFrom: <sip:bob@{REALM}>;tag=r{cseq}\r\n\
         Call-ID: reg-{}\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:bob@{local}>\r\n{auth}\
         Content-Length: 0\r\n\r\n",
        local.port(),
        local.port()
    )
}

/// Registers bob from `s` with `password`: the final status.
fn login(s: &UdpSocket, port: u16, cseq: u32, password: &str) -> u16 {
    let challenge = ask(s, port, &register(s, cseq, "")).expect("a challenge");
    if status(&challenge) != 401 {
        return status(&challenge);
    }
    let m = Message::parse_datagram(challenge.as_bytes(), &Limits::default()).expect("parses");
    let nonce = m
        .auth_values(HeaderName::WwwAuthenticate)
        .find_map(|a| a.param("nonce").map(|n| n.into_owned()))
        .expect("nonce");
    let c = Challenge {
        algorithm: Algorithm::Md5,
        nonce: &nonce,
        qop: Some("auth"),
    };
    let ha1 = Ha1::from_password(Algorithm::Md5, "bob", REALM, password);
    let uri = format!("sip:{REALM}");
    let response = c.response(&ha1, "REGISTER", &uri, "00000001", "c0ffee");
    let auth = format!(
        "Authorization: Digest username=\"bob\", realm=\"{REALM}\", nonce=\"{nonce}\", \
         uri=\"{uri}\", response=\"{response}\", algorithm=MD5, qop=auth, nc=00000001, \
         cnonce=\"c0ffee\"\r\n"
    );
    status(&ask(s, port, &register(s, cseq + 1, &auth)).expect("an answer"))
}

#[test]
fn a_password_guesser_cannot_lock_the_real_user_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = 24705u16;
    let mut cfg = local_proxy(REALM, port);
    cfg.proxy.authenticate = true;
    cfg.proxy.digest = vec!["MD5".into()];
    let config = write_config(dir.path(), &cfg);
    add_user(&config, "bob", "zanzibar");
    let _running = Running(vec![proxy(&config, port)]);
    // 60 wrong passwords for bob from 127.0.0.1: locked out there.
    let attacker = socket("127.0.0.1", 2);
    let mut answers = Vec::new();
    for i in 0..60 {
        answers.push(login(&attacker, port, 10 + 2 * i, "guess"));
    }
    assert!(answers.iter().all(|&s| s == 403), "{answers:?}");
    assert_eq!(login(&attacker, port, 500, "zanzibar"), 403);
    // Bob, from another address, with his password: registered.
    let bob = socket("127.0.0.2", 2);
    assert_eq!(login(&bob, port, 1, "zanzibar"), 200);
}

#[test]
fn configurations_that_would_unmask_an_onion_proxy_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = "[proxy]\ndomains = [\"b.example\"]\nsent_by = \"127.0.0.1:24709\"\n\
                [listen]\nudp = \"127.0.0.1:24709\"\n[tor]\nonion_port = 5060\n";
    for (extra, says) in [
        (
            "[relay]\nallow_networks = [\"0.0.0.0/0\"]\n",
            "never the internet",
        ),
        (
            "[routes]\n\"c.example\" = \"udp:127.0.0.1:5070\"\n",
            "[routes] with an onion service",
        ),
        (
            "[relay]\ntrusted = [\"127.0.0.0/33\"]\n",
            "is not an IP network",
        ),
    ] {
        let path = dir.path().join("p.toml");
        std::fs::write(&path, format!("{base}{extra}")).expect("write");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_privasip"))
            .args(["proxy", "--check", "--config"])
            .arg(&path)
            .output()
            .expect("privasip runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{extra} accepted");
        assert!(err.contains(says), "{extra}: {err}");
    }
}
