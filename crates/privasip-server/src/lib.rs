#![doc = include_str!("../README.md")]

mod tcp;
mod tor;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use privasip_proxy::{Circuit, Proxy, StoreEvent};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;

pub use tcp::TcpLimits;
pub use tor::{TorRoute, TorRoutes, TorSetup};

/// Where a message goes or came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Peer {
    /// A UDP address.
    Udp(SocketAddr),
    /// A TCP connection's remote address (one connection per address).
    Tcp(SocketAddr),
    /// One open Tor stream (incoming on our onion service, or one we
    /// opened), by number, with what the budgets count it as.
    Stream {
        /// Unique per stream in this process.
        id: u64,
        /// The incoming circuit it stands for: the backend's circuit
        /// number, or (C tor, which does not name circuits) the stream
        /// itself, of which tor lets one circuit hold at most
        /// [`privasip_tor::MAX_STREAMS_PER_CIRCUIT`]. `None` for streams
        /// we opened.
        circuit: Option<u64>,
    },
    /// A configured Tor route (an index into [`TorSetup::routes`]): the
    /// driver picks or opens the stream.
    Onion(u16),
}

impl Peer {
    /// Whether this peer is reached through Tor.
    pub fn is_tor(&self) -> bool {
        matches!(self, Peer::Stream { .. } | Peer::Onion(_))
    }
}

/// What to listen on.
#[derive(Debug)]
pub struct Listen {
    /// UDP socket address, if any.
    pub udp: Option<SocketAddr>,
    /// TCP listening address, if any.
    pub tcp: Option<SocketAddr>,
    /// TCP connection limits (also applied to Tor streams' framing).
    pub tcp_limits: TcpLimits,
    /// Tor: the backend, our onion service, the routes.
    pub tor: Option<TorSetup>,
}

/// Counters for operators (and tests).
#[derive(Debug, Default)]
pub struct Stats {
    /// Datagrams and stream messages received.
    pub received: AtomicUsize,
    /// Messages sent.
    pub sent: AtomicUsize,
    /// Messages that could not be sent (no route, connect failed).
    pub send_failures: AtomicUsize,
    /// TCP connections refused by the limits.
    pub refused_connections: AtomicUsize,
    /// Streams closed for broken framing or oversized messages.
    pub bad_streams: AtomicUsize,
}

/// What connection tasks tell the core task.
pub(crate) enum Inbound {
    Message(Peer, Vec<u8>),
    Opened(Peer, mpsc::Sender<Vec<u8>>),
    Closed(Peer),
}

/// A change to apply to the running proxy (users or registrations that
/// another instance sharing the store changed).
pub type Update = Box<dyn FnOnce(&mut Proxy<Peer>, Instant) + Send>;

/// Runs the proxy on the given sockets until `shutdown` completes. What
/// the proxy wants persisted goes to `store` (a thread that owns the
/// database), so no message waits on the disk; what others changed in a
/// shared store comes in through `updates`.
pub async fn run(
    mut proxy: Proxy<Peer>,
    mut listen: Listen,
    stats: Arc<Stats>,
    store: Option<std::sync::mpsc::Sender<StoreEvent>>,
    mut updates: Option<mpsc::Receiver<Update>>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let udp = match listen.udp {
        Some(a) => Some(bind_udp(a)?),
        None => None,
    };
    let tcp = match listen.tcp {
        Some(a) => Some(TcpListener::bind(a).await?),
        None => None,
    };
    let (in_tx, mut in_rx) = mpsc::channel::<Inbound>(4096);
    let mut conns: HashMap<Peer, mpsc::Sender<Vec<u8>>> = HashMap::new();
    // Messages waiting for an outgoing connection to open (an entry, even
    // empty, means the connection is being opened).
    let mut waiting: HashMap<Peer, Vec<Vec<u8>>> = HashMap::new();
    // Connections and streams a request went out on: only their closing
    // can leave a transaction unanswered, so only theirs costs the core a
    // look (no larger than `conns` and `waiting`; each goes when it closes).
    let mut asked: HashSet<Peer> = HashSet::new();
    let mut tor = listen
        .tor
        .take()
        .map(|t| tor::Driver::new(t, stats.clone()));
    let per_source: Arc<tcp::PerSource> = Arc::default();
    let mut buf = vec![0u8; 65_536];
    // After a failed accept (out of file descriptors), wait a little
    // instead of spinning on the error.
    let mut accept_pause: Option<tokio::time::Instant> = None;
    tokio::pin!(shutdown);
    let mut keepalive = tokio::time::interval(CALL_KEEPALIVE);
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let deadline = proxy.poll_timeout();
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = &mut shutdown => break,
            r = recv_udp(udp.as_ref(), &mut buf) => {
                if let Ok((n, from)) = r {
                    stats.received.fetch_add(1, Ordering::Relaxed);
                    proxy.receive(Instant::now(), &buf[..n], Peer::Udp(from), false);
                }
            }
            r = accept_tcp(tcp.as_ref(), accept_pause) => match r {
                Ok((stream, from)) => {
                    accept_pause = None;
                    if let Some(guard) = per_source.admit(from.ip(), conns.len(), &listen.tcp_limits) {
                        tcp::spawn(stream, from, in_tx.clone(), listen.tcp_limits.clone(), stats.clone(), Some(guard));
                    } else {
                        stats.refused_connections.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!("TCP connection refused by the limits");
                    }
                }
                Err(e) => {
                    tracing::warn!("accepting a TCP connection failed: {e}; pausing accepts");
                    accept_pause = Some(tokio::time::Instant::now() + ACCEPT_PAUSE);
                }
            },
            Some(s) = tor::accept(tor.as_mut()) => {
                // Incoming onion streams come through the connection limits
                // too: all of Tor is one source (its streams all arrive from
                // the local tor), allowed every connection slot.
                let tor_limits = TcpLimits {
                    max_per_source: listen.tcp_limits.max_connections,
                    ..listen.tcp_limits.clone()
                };
                match (tor.as_mut(), per_source.admit(tcp::TOR_SOURCE, conns.len(), &tor_limits)) {
                    (Some(t), Some(guard)) => {
                        t.spawn_incoming(s, in_tx.clone(), listen.tcp_limits.clone(), guard);
                    }
                    _ => {
                        stats.refused_connections.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!("onion stream refused by the limits");
                    }
                }
            }
            Some(ev) = in_rx.recv() => match ev {
                Inbound::Message(from, bytes) => {
                    stats.received.fetch_add(1, Ordering::Relaxed);
                    proxy.receive(Instant::now(), &bytes, from, true);
                }
                Inbound::Opened(addr, writer) => {
                    for m in waiting.remove(&addr).unwrap_or_default() {
                        let _ = writer.try_send(m);
                    }
                    conns.insert(addr, writer);
                }
                Inbound::Closed(addr) => {
                    conns.remove(&addr);
                    waiting.remove(&addr);
                    proxy.flow_closed(&addr);
                    let carried = tor.as_mut().and_then(|t| t.closed(addr));
                    // What went out on it unanswered will not be answered:
                    // 503 now rather than Timer B's 408 in 32 s. A call's
                    // own stream, kept alive while its call is watched,
                    // closes when its circuit dies: the core ends the call
                    // whether or not anything was waiting.
                    let now = Instant::now();
                    let asked_here = asked.remove(&addr);
                    if asked_here {
                        proxy.transport_failed(now, &addr, None);
                    }
                    match carried {
                        Some((route, c @ Circuit::Call(_))) => {
                            proxy.transport_failed(now, &Peer::Onion(route), Some(c));
                        }
                        Some((route, c)) if asked_here => {
                            proxy.transport_failed(now, &Peer::Onion(route), Some(c));
                        }
                        _ => {}
                    }
                }
            },
            Some(update) = next_update(updates.as_mut()) => update(&mut proxy, Instant::now()),
            () = sleep => proxy.handle_timeout(Instant::now()),
            _ = keepalive.tick() => {
                // RFC 5626 pings on the streams of watched calls, so that
                // neither end closes them for being idle while the call
                // lasts (the far side's idle timeout is 600 s by default).
                if let Some(t) = tor.as_ref() {
                    let now = Instant::now();
                    for (peer, c) in t.call_streams() {
                        if proxy.watches(now, c) && let Some(w) = conns.get(&peer) {
                            let _ = w.try_send(b"\r\n\r\n".to_vec());
                        }
                    }
                }
            }
        }
        while let Some(t) = proxy.poll_transmit() {
            let request = !t.bytes.starts_with(b"SIP/2.0 ");
            // The connection or stream it goes out on.
            let mut carrier = None;
            let ok = match t.to {
                Peer::Udp(addr) => match &udp {
                    Some(sock) => sock.try_send_to(&t.bytes, addr).is_ok(),
                    None => false,
                },
                Peer::Stream { .. } => match conns.get(&t.to) {
                    Some(w) => {
                        carrier = Some(t.to);
                        w.try_send(t.bytes).is_ok()
                    }
                    None => match waiting.get_mut(&t.to) {
                        Some(q) if q.len() < MAX_WAITING => {
                            carrier = Some(t.to);
                            q.push(t.bytes);
                            true
                        }
                        _ => false,
                    },
                },
                Peer::Onion(route) => {
                    let stream = tor.as_mut().and_then(|d| {
                        d.stream_for(
                            route,
                            t.circuit,
                            &conns,
                            &mut waiting,
                            &in_tx,
                            &listen.tcp_limits,
                        )
                    });
                    carrier = stream;
                    match stream {
                        Some(s) => match conns.get(&s) {
                            Some(w) => w.try_send(t.bytes).is_ok(),
                            // Opening: it is sent when the stream opens.
                            None => {
                                let q = waiting.entry(s).or_default();
                                let room = q.len() < MAX_WAITING;
                                if room {
                                    q.push(t.bytes);
                                }
                                room
                            }
                        },
                        None => false,
                    }
                }
                Peer::Tcp(addr) => match conns.get(&t.to) {
                    Some(w) => {
                        carrier = Some(t.to);
                        w.try_send(t.bytes).is_ok()
                    }
                    None => {
                        carrier = Some(t.to);
                        let first = !waiting.contains_key(&t.to);
                        let q = waiting.entry(t.to).or_default();
                        if q.len() >= MAX_WAITING {
                            false
                        } else {
                            q.push(t.bytes);
                            if first {
                                tcp::connect(
                                    addr,
                                    in_tx.clone(),
                                    listen.tcp_limits.clone(),
                                    stats.clone(),
                                );
                            }
                            true
                        }
                    }
                },
            };
            if let Some(c) = carrier.filter(|_| ok && request) {
                asked.insert(c);
            }
            let counter = if ok {
                &stats.sent
            } else {
                &stats.send_failures
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        while let Some(n) = proxy.poll_notice() {
            tracing::warn!("{n}");
        }
        while let Some(e) = proxy.poll_store_event() {
            if let Some(tx) = &store {
                let _ = tx.send(e);
            }
        }
    }
    Ok(())
}

async fn next_update(updates: Option<&mut mpsc::Receiver<Update>>) -> Option<Update> {
    match updates {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Socket buffers for bursts: a proxy under load receives faster than one
/// task drains in short spikes, and the kernel's default (~200 KiB) drops.
const UDP_BUFFER: usize = 4 << 20;

fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // The kernel may cap these (net.core.rmem_max); a smaller buffer is
    // still a working socket.
    let _ = sock.set_recv_buffer_size(UDP_BUFFER);
    let _ = sock.set_send_buffer_size(UDP_BUFFER);
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    UdpSocket::from_std(sock.into())
}

async fn recv_udp(sock: Option<&UdpSocket>, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
    match sock {
        Some(s) => s.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

async fn accept_tcp(
    l: Option<&TcpListener>,
    pause_until: Option<tokio::time::Instant>,
) -> io::Result<(tokio::net::TcpStream, SocketAddr)> {
    if let Some(t) = pause_until {
        tokio::time::sleep_until(t).await;
    }
    match l {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// How long accepting pauses after it failed (e.g. out of descriptors).
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Messages queued for one connection while it opens; more are dropped.
const MAX_WAITING: usize = 64;

/// How often the stream of a call watched by the core (a call on a Tor
/// circuit of its own) carries a keep-alive: well inside the 600 s idle
/// timeout of either end.
const CALL_KEEPALIVE: Duration = Duration::from_secs(120);

/// The default idle timeout for TCP connections.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(600);
