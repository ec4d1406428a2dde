//! Nothing acknowledged is lost when the proxy dies: a burst of
//! registrations answered 200, the proxy killed with SIGKILL the instant
//! the last 200 arrives, and after a restart from the SQLite store every
//! one of those bindings is there. (Before the 200 waited for the store's
//! commit, this lost all 300.)

mod common;

use std::collections::HashSet;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::{proxy, write_config};

const PORT: u16 = 27360;
const USERS: usize = 300;

fn register(user: usize, contact: bool) -> Vec<u8> {
    let contact = if contact {
        format!("Contact: <sip:user{user}@127.0.0.1:40000>\r\nExpires: 3600\r\n")
    } else {
        String::new()
    };
    format!(
        "REGISTER sip:b.example SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{{port}};branch=z9hG4bKcrash{user}{}\r\n\
         Max-Forwards: 70\r\nTo: <sip:user{user}@b.example>\r\n\
         From: <sip:user{user}@b.example>;tag=c{user}\r\nCall-ID: crash-{user}-{contact_flag}\r\n\
         CSeq: 1 REGISTER\r\n{contact}Content-Length: 0\r\n\r\n",
        u8::from(!contact.is_empty()),
        contact_flag = u8::from(!contact.is_empty()),
    )
    .into_bytes()
}

/// Sends one REGISTER per user from `sock` (again to those not answered
/// within 300 ms) until each has a final answer; `on_ok` sees each 200.
/// Returns the users answered 200.
fn burst(sock: &UdpSocket, contact: bool, mut on_ok: impl FnMut(usize, &str)) -> HashSet<usize> {
    let port = sock.local_addr().expect("addr").port();
    let to = ("127.0.0.1", PORT);
    let mut answered = HashSet::new();
    let mut ok = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut buf = vec![0u8; 65_536];
    while answered.len() < USERS {
        assert!(
            Instant::now() < deadline,
            "{} of {USERS} answered",
            answered.len()
        );
        for u in (0..USERS).filter(|u| !answered.contains(u)) {
            let msg = String::from_utf8(register(u, contact))
                .expect("ascii")
                .replace("{port}", &port.to_string());
            sock.send_to(msg.as_bytes(), to).expect("send");
        }
        let wait_until = Instant::now() + Duration::from_millis(300);
        while Instant::now() < wait_until && answered.len() < USERS {
            let Ok(n) = sock.recv(&mut buf) else { continue };
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            let Some(status) = text.get(8..11).and_then(|s| s.parse::<u16>().ok()) else {
                continue;
            };
            let Some(user) = text
                .lines()
                .find_map(|l| l.strip_prefix("Call-ID: crash-"))
                .and_then(|r| r.split('-').next())
                .and_then(|u| u.parse::<usize>().ok())
            else {
                continue;
            };
            if status >= 200 && answered.insert(user) && status == 200 {
                ok.insert(user);
                on_ok(user, &text);
            }
        }
    }
    ok
}

#[test]
fn every_registration_answered_200_survives_a_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(
        dir.path(),
        &format!(
            "[proxy]\ndomains = [\"b.example\"]\nsent_by = \"127.0.0.1:{PORT}\"\n\
             [relay]\nallow_networks = [\"127.0.0.0/8\"]\n\
             [limits]\nrequests_per_second = 100000\nrequests_burst = 100000\n\
             [listen]\nudp = \"127.0.0.1:{PORT}\"\n[store]\npath = \"bindings.db\"\n"
        ),
    );
    let mut child = proxy(&config, PORT);
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_millis(20)))
        .expect("timeout");

    // The burst; the proxy dies the instant the last 200 is in.
    let mut seen = 0;
    let acknowledged = burst(&sock, true, |_, _| {
        seen += 1;
        if seen == USERS {
            let _ = child.kill();
        }
    });
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(acknowledged.len(), USERS, "every REGISTER got its 200");

    // Restarted from the same store: each user's binding is there (a
    // REGISTER without Contact lists them).
    let mut again = proxy(&config, PORT);
    let mut missing = Vec::new();
    burst(&sock, false, |user, text| {
        if !text.contains(&format!("<sip:user{user}@127.0.0.1:40000>")) {
            missing.push(user);
        }
    });
    let _ = again.kill();
    let _ = again.wait();
    assert!(
        missing.is_empty(),
        "{} of {USERS} acknowledged bindings lost: {missing:?}",
        missing.len()
    );
}
