//! The user agent's driver in process, against a real proxy (the
//! `privasip-server` driver around the proxy core) on loopback sockets:
//! registration over TCP, a call over TCP streams, reconnection after the
//! proxy restarts, and one Tor stream per call over a stub Tor backend
//! that records the isolation each stream asked for.

// The driver's clock, in tests.
#![allow(clippy::disallowed_methods)]

use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use privasip_agent::{Agent, ProxyAt, Setup, TorAccess};
use privasip_digest::Algorithm;
use privasip_proxy::{Proxy, ProxyConfig};
use privasip_server::{Listen, Stats, TcpLimits};
use privasip_tor::{
    BoxFuture, Isolation, OnionService, OnionSpec, TorBackend, TorError, TorStream,
};
use privasip_ua::{UaConfig, UaEvent};
use tokio::sync::oneshot;
use zeroize::Zeroizing;

/// A free loopback port (bound, then released for the proxy to take).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A proxy for b.example on `port` (TCP), in a thread and runtime of its
/// own, until the returned sender is dropped or fired: then the runtime
/// goes, and every connection with it, as when the process dies. Every
/// request is to its own domain: no relaying.
fn start_proxy(port: u16) -> oneshot::Sender<()> {
    let (stop, stopped) = oneshot::channel::<()>();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        rt.block_on(run_proxy(port, stopped));
    });
    stop
}

async fn run_proxy(port: u16, stopped: oneshot::Receiver<()>) {
    let proxy = Proxy::new(
        ProxyConfig {
            digest: vec![Algorithm::Sha256],
            ..ProxyConfig::new("b.example", format!("127.0.0.1:{port}"))
        },
        Box::new(|_: &str, _: Option<u16>, _: &str| None),
        [5; 32],
        Instant::now(),
    );
    let listen = Listen {
        udp: None,
        tcp: Some(SocketAddr::from(([127, 0, 0, 1], port))),
        tcp_limits: TcpLimits::default(),
        tor: None,
    };
    let _ = privasip_server::run(
        proxy,
        listen,
        Arc::new(Stats::default()),
        None,
        None,
        async {
            let _ = stopped.await;
        },
    )
    .await;
}

/// A proxy on a free loopback port, listening: its port, how to stop it,
/// and how a user agent reaches it over TCP.
async fn proxy_on_loopback() -> (u16, oneshot::Sender<()>, ProxyAt) {
    let port = free_port();
    let stop = start_proxy(port);
    wait_listening(port).await;
    (
        port,
        stop,
        ProxyAt::Tcp(SocketAddr::from(([127, 0, 0, 1], port))),
    )
}

async fn wait_listening(port: u16) {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the proxy did not listen on {port}");
}

fn ua(user: &str, local: SocketAddr) -> UaConfig {
    UaConfig {
        reliable: true,
        expires: 600,
        ..UaConfig::new(
            user,
            "b.example",
            Zeroizing::new("secret".into()),
            local.to_string(),
        )
    }
}

async fn agent(user: &str, proxy: ProxyAt, tor: Option<TorAccess>) -> Agent {
    let local = SocketAddr::from(([127, 0, 0, 1], free_port()));
    Agent::start(Setup {
        // Over Tor, the core gives each call a circuit of its own.
        ua: UaConfig {
            call_circuits: tor.is_some(),
            ..ua(user, local)
        },
        local,
        proxy,
        tor,
        aes: None,
        trace: None,
    })
    .await
    .expect("the agent starts")
}

/// Bob answers until his side of a call ends (or 20 s pass).
async fn answer_one(bob: &mut Agent) -> bool {
    bob.run_until(Some(Instant::now() + Duration::from_secs(20)), |_, ev| {
        matches!(ev, UaEvent::Ended { .. })
    })
    .await
    .expect("bob runs")
}

#[tokio::test]
async fn registers_and_calls_over_tcp() {
    let (_, _proxy, at) = proxy_on_loopback().await;
    let mut bob = agent("bob", at.clone(), None).await;
    assert_eq!(bob.register().await.expect("bob registers"), 600);
    let mut alice = agent("alice", at, None).await;
    let (call, ended) = tokio::join!(
        alice.call("sip:bob@b.example", 0.1, None),
        answer_one(&mut bob)
    );
    let call = call.expect("the call runs");
    assert!(call.answered_ms.is_some(), "answered: {call:?}");
    assert!(call.ended, "BYE answered: {call:?}");
    assert!(ended, "Bob saw the call end");
    assert!(bob.unregister().await.expect("bob unregisters"));
}

#[tokio::test]
async fn reconnects_and_registers_again_after_the_proxy_restarts() {
    let (port, stop, at) = proxy_on_loopback().await;
    let mut bob = agent("bob", at.clone(), None).await;
    bob.register().await.expect("bob registers");
    // The proxy goes, with every binding (no store here), and comes back.
    let _ = stop.send(());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _proxy = start_proxy(port);
    wait_listening(port).await;
    // Bob notices the closed connection, reconnects with backoff and
    // registers again at once: he is reachable without waiting for his
    // refresh.
    let reregistered = bob
        .run_until(Some(Instant::now() + Duration::from_secs(20)), |_, ev| {
            matches!(ev, UaEvent::Registered { .. })
        })
        .await
        .expect("bob runs");
    assert!(reregistered, "Bob registered again after the restart");
    let mut alice = agent("alice", at, None).await;
    let (call, _) = tokio::join!(
        alice.call("sip:bob@b.example", 0.0, None),
        answer_one(&mut bob)
    );
    assert!(call.expect("the call runs").answered_ms.is_some());
}

/// A Tor backend that reaches everything over loopback TCP to one port
/// and records the isolation each stream asked for. Each stream is
/// bridged by a task the test can end, as a dying circuit ends a stream.
struct StubTor {
    port: u16,
    isolations: Mutex<Vec<Isolation>>,
    cuts: Mutex<Vec<oneshot::Sender<()>>>,
}

impl StubTor {
    fn new(port: u16) -> Arc<StubTor> {
        Arc::new(StubTor {
            port,
            isolations: Mutex::new(Vec::new()),
            cuts: Mutex::new(Vec::new()),
        })
    }

    /// Ends the `i`th stream opened (its circuit "died").
    fn cut(&self, i: usize) {
        let mut cuts = self.cuts.lock().expect("lock");
        let (tx, _) = oneshot::channel();
        let _ = std::mem::replace(&mut cuts[i], tx).send(());
    }
}

impl TorBackend for StubTor {
    fn name(&self) -> &'static str {
        "stub"
    }

    fn connect<'a>(
        &'a self,
        _host: &'a str,
        _port: u16,
        isolation: Isolation,
    ) -> BoxFuture<'a, Result<TorStream, TorError>> {
        self.isolations.lock().expect("lock").push(isolation);
        Box::pin(async move {
            let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await?;
            let (ours, mut theirs) = tokio::io::duplex(64 * 1024);
            let (cut, cut_rx) = oneshot::channel::<()>();
            self.cuts.lock().expect("lock").push(cut);
            tokio::spawn(async move {
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut s, &mut theirs) => {}
                    _ = cut_rx => {}
                }
            });
            let (r, w) = tokio::io::split(ours);
            Ok(TorStream::new(r, w))
        })
    }

    fn host_onion(&self, _spec: OnionSpec) -> BoxFuture<'_, Result<OnionService, TorError>> {
        Box::pin(async { Err(TorError::Timeout("the stub hosts no onion service")) })
    }
}

#[tokio::test]
async fn every_call_gets_a_stream_of_its_own_over_tor() {
    let (port, _proxy, at) = proxy_on_loopback().await;
    let stub = StubTor::new(port);
    let onion = || ProxyAt::Tor("proxyb.onion".into(), 5060);
    let mut bob = agent("bob", at, None).await;
    bob.register().await.expect("bob registers");
    let mut alice = agent(
        "alice",
        onion(),
        Some(TorAccess {
            backend: stub.clone(),
            service: None,
        }),
    )
    .await;
    for _ in 0..2 {
        let (call, _) = tokio::join!(
            alice.call("sip:bob@b.example", 0.0, None),
            answer_one(&mut bob)
        );
        assert!(call.expect("the call runs").answered_ms.is_some());
    }
    let seen = stub.isolations.lock().expect("lock").clone();
    // The stream to the proxy is shared; each call opened one more, on a
    // circuit never used by another stream.
    assert_eq!(
        seen,
        [Isolation::Shared, Isolation::Fresh, Isolation::Fresh],
        "one shared stream, then one fresh one per call"
    );
}

/// The proxy's RFC 5626 keep-alive ping on our registration stream gets
/// its pong, as the proxy's own streams answer ours: one framing loop
/// (privasip-stream) for both drivers.
#[tokio::test]
async fn a_keepalive_ping_from_the_proxy_gets_a_pong() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let at = ProxyAt::Tcp(listener.local_addr().expect("addr"));
    let mut bob = agent("bob", at, None).await;
    let (mut s, _) = listener.accept().await.expect("the agent connects");
    // The REGISTER goes unanswered; Bob waits for it while we ping.
    let proxy_side = async {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).await.expect("read");
            assert!(n > 0, "the agent closed the stream");
            got.extend_from_slice(&buf[..n]);
        }
        assert!(
            got.starts_with(b"REGISTER "),
            "{}",
            String::from_utf8_lossy(&got)
        );
        s.write_all(b"\r\n\r\n").await.expect("ping");
        let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
            .await
            .expect("a pong in time")
            .expect("read");
        buf[..n].to_vec()
    };
    let (_, pong) = tokio::join!(
        tokio::time::timeout(Duration::from_secs(3), bob.register()),
        proxy_side
    );
    assert_eq!(pong, b"\r\n");
}

/// A call whose own circuit dies while it is up is ended by the agent:
/// a BYE saying why (RFC 3326 Reason) goes on a new circuit, and the far
/// end hangs up too, instead of holding a call nobody hears.
#[tokio::test]
async fn a_call_whose_circuit_dies_is_ended_with_a_bye_that_says_why() {
    let (port, _proxy, at) = proxy_on_loopback().await;
    let stub = StubTor::new(port);
    let dir = tempfile::tempdir().expect("tempdir");
    let local = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut bob = Agent::start(Setup {
        ua: ua("bob", local),
        local,
        proxy: at,
        tor: None,
        aes: None,
        trace: Some(std::fs::File::create(dir.path().join("bob.trace")).expect("trace file")),
    })
    .await
    .expect("bob starts");
    bob.register().await.expect("bob registers");
    let mut alice = agent(
        "alice",
        ProxyAt::Tor("proxyb.onion".into(), 5060),
        Some(TorAccess {
            backend: stub.clone(),
            service: None,
        }),
    )
    .await;
    let cut_when_answered = async {
        // Streams: 0 the shared one, 1 the call's.
        while stub.cuts.lock().expect("lock").len() < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        stub.cut(1);
    };
    let (call, ended, ()) = tokio::join!(
        tokio::time::timeout(
            Duration::from_secs(20),
            alice.call("sip:bob@b.example", 30.0, None)
        ),
        answer_one(&mut bob),
        cut_when_answered,
    );
    let call = call
        .expect("ended long before the hold")
        .expect("the call runs");
    assert!(call.answered_ms.is_some(), "answered: {call:?}");
    assert!(call.ended, "Alice's side ended: {call:?}");
    assert!(ended, "Bob's side ended");
    let trace = std::fs::read_to_string(dir.path().join("bob.trace")).expect("bob's trace");
    assert!(
        trace.contains("BYE sip:") && trace.contains("Reason: SIP ;cause=503"),
        "Bob got a BYE with its reason:\n{trace}"
    );
    assert_eq!(
        stub.isolations.lock().expect("lock").clone(),
        [Isolation::Shared, Isolation::Fresh, Isolation::Fresh],
        "the BYE took a new circuit"
    );
}

/// The agent's loop drops its wait for the wire whenever a timer fires
/// or a caller's deadline passes; a reconnection begun meanwhile must go
/// on regardless (it once went with the dropped wait, and the agent never
/// reconnected).
#[tokio::test]
async fn a_reconnection_outlives_the_loop_that_started_it() {
    let (port, stop, at) = proxy_on_loopback().await;
    let mut bob = agent("bob", at, None).await;
    bob.register().await.expect("bob registers");
    let _ = stop.send(());
    // While the proxy is away, the agent is run in short slices, each
    // ending with the wait for the wire dropped.
    let away = Instant::now() + Duration::from_secs(2);
    while Instant::now() < away {
        bob.run_until(Some(Instant::now() + Duration::from_millis(100)), |_, _| {
            false
        })
        .await
        .expect("bob runs");
    }
    let _proxy = start_proxy(port);
    let reregistered = bob
        .run_until(Some(Instant::now() + Duration::from_secs(20)), |_, ev| {
            matches!(ev, UaEvent::Registered { .. })
        })
        .await
        .expect("bob runs");
    assert!(reregistered, "Bob reconnected and registered again");
}
