//! The TCP transport under bad peers, on real loopback sockets: too many
//! connections from one source, an idle connection, a peer too slow to
//! finish its message, an endless header. Each is cut off; the messages a
//! peer completed before misbehaving are still answered; well-behaved
//! connections carry on.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use privasip_digest::Algorithm;
use privasip_proxy::{Proxy, ProxyConfig};
use privasip_server::{Listen, Stats, TcpLimits};

/// OPTIONS to the proxy's own domain: it answers 200 itself.
fn options(n: u32) -> String {
    format!(
        "OPTIONS sip:b.example SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKlim{n}\r\n\
         Max-Forwards: 70\r\nTo: <sip:b.example>\r\nFrom: <sip:probe@b.example>;tag=p{n}\r\n\
         Call-ID: lim-{n}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
}

/// Starts a proxy on `port` with these TCP limits, in a thread of its own.
fn start(port: u16, limits: TcpLimits) -> Arc<Stats> {
    let stats = Arc::new(Stats::default());
    let s = stats.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        #[allow(clippy::disallowed_methods)] // the driver's clock
        let now = Instant::now();
        let proxy = Proxy::new(
            ProxyConfig {
                digest: vec![Algorithm::Sha256],
                ..ProxyConfig::new("b.example", format!("127.0.0.1:{port}"))
            },
            Box::new(|_: &str, _: Option<u16>, _: &str| None),
            [3; 32],
            now,
        );
        let listen = Listen {
            udp: None,
            tcp: Some(SocketAddr::from(([127, 0, 0, 1], port))),
            tcp_limits: limits,
            tor: None,
        };
        let _ = rt.block_on(privasip_server::run(
            proxy,
            listen,
            s,
            None,
            None,
            std::future::pending(),
        ));
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the proxy did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    stats
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s
}

/// Reads until the peer closes (true) or `within` passes (false),
/// returning what came.
fn read_until_closed(s: &mut TcpStream, within: Duration) -> (bool, String) {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return (true, String::from_utf8_lossy(&got).into_owned()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return (true, String::from_utf8_lossy(&got).into_owned()),
        }
    }
    (false, String::from_utf8_lossy(&got).into_owned())
}

/// One OPTIONS on its own connection answers 200.
fn healthy(port: u16, n: u32) {
    let mut s = connect(port);
    s.write_all(options(n).as_bytes()).expect("write");
    let mut buf = [0u8; 4096];
    let k = s.read(&mut buf).expect("an answer");
    assert!(
        String::from_utf8_lossy(&buf[..k]).starts_with("SIP/2.0 200"),
        "{}",
        String::from_utf8_lossy(&buf[..k])
    );
}

#[test]
fn one_source_gets_only_its_share_of_connections() {
    let port = 23301;
    let stats = start(
        port,
        TcpLimits {
            max_per_source: 3,
            ..TcpLimits::default()
        },
    );
    // start()'s readiness probe must have left first.
    std::thread::sleep(Duration::from_millis(300));
    let held: Vec<TcpStream> = (0..3).map(|_| connect(port)).collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut fourth = connect(port);
    let (closed, _) = read_until_closed(&mut fourth, Duration::from_secs(5));
    assert!(closed, "the fourth connection from one address is refused");
    assert!(
        stats
            .refused_connections
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    drop(held);
    std::thread::sleep(Duration::from_millis(200));
    healthy(port, 1);
}

#[test]
fn idle_and_slow_peers_are_cut_off_after_their_complete_messages_are_answered() {
    let port = 23302;
    let stats = start(
        port,
        TcpLimits {
            idle_timeout: Duration::from_millis(600),
            message_timeout: Duration::from_millis(1500),
            ..TcpLimits::default()
        },
    );
    // Idle: one message answered, then silence closes the connection.
    let mut idle = connect(port);
    idle.write_all(options(2).as_bytes()).expect("write");
    let (closed, got) = read_until_closed(&mut idle, Duration::from_secs(5));
    assert!(got.starts_with("SIP/2.0 200"), "{got}");
    assert!(closed, "an idle connection is closed");

    // Slow: a complete message, then the next dribbles in a byte at a
    // time, each well within the idle timeout; the message deadline ends
    // it.
    let mut slow = connect(port);
    slow.write_all(options(3).as_bytes()).expect("write");
    let next = options(4);
    let started = Instant::now();
    let mut answered_first = String::new();
    let mut cut = false;
    for b in next.as_bytes().iter().take(next.len() - 4) {
        if slow.write_all(&[*b]).is_err() {
            cut = true;
            break;
        }
        let (closed, got) = read_until_closed(&mut slow, Duration::from_millis(200));
        answered_first.push_str(&got);
        if closed {
            cut = true;
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the slow peer was never cut off"
        );
    }
    assert!(
        cut,
        "a message that takes too long to arrive ends the connection"
    );
    assert!(
        answered_first.starts_with("SIP/2.0 200"),
        "{answered_first}"
    );
    assert!(started.elapsed() >= Duration::from_millis(1400));
    assert!(stats.bad_streams.load(std::sync::atomic::Ordering::Relaxed) >= 1);
    healthy(port, 5);
}

#[test]
fn an_endless_header_is_cut_off_and_the_message_before_it_answered() {
    let port = 23303;
    let stats = start(port, TcpLimits::default());
    let mut s = connect(port);
    s.write_all(options(6).as_bytes()).expect("write");
    // Then a header that never ends: 200 KiB without a line break.
    let mut flood = b"OPTIONS sip:b.example SIP/2.0\r\nX-Flood: ".to_vec();
    flood.extend(std::iter::repeat_n(b'a', 200 * 1024));
    let _ = s.write_all(&flood);
    let (closed, got) = read_until_closed(&mut s, Duration::from_secs(5));
    assert!(got.starts_with("SIP/2.0 200"), "the first message: {got}");
    assert!(closed, "the flood ends the connection");
    assert!(stats.bad_streams.load(std::sync::atomic::Ordering::Relaxed) >= 1);
    healthy(port, 7);
}
