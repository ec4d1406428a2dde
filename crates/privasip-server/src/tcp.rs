//! TCP connections: framing, keep-alives, idle timeout, limits.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use privasip_message::Limits;
use privasip_stream::{Timeouts, read_messages};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::{Inbound, Peer, Stats};

/// Limits on TCP connections.
#[derive(Clone, Debug)]
pub struct TcpLimits {
    /// Connections open at once, in all.
    pub max_connections: usize,
    /// Connections open at once from one source address.
    pub max_per_source: usize,
    /// A connection with no traffic for this long is closed.
    pub idle_timeout: Duration,
    /// A message begun must be complete within this long, however slowly
    /// its bytes keep coming (a slow peer holds a connection and a buffer
    /// otherwise).
    pub message_timeout: Duration,
    /// Message limits for the stream decoder.
    pub message: Limits,
}

impl Default for TcpLimits {
    fn default() -> Self {
        TcpLimits {
            max_connections: 10_000,
            max_per_source: 64,
            idle_timeout: crate::DEFAULT_IDLE,
            message_timeout: Duration::from_secs(32),
            message: Limits::default(),
        }
    }
}

/// The source every incoming onion stream counts under (they all arrive
/// from the local tor): a reserved address no TCP peer can have.
pub(crate) const TOR_SOURCE: IpAddr = IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED);

/// Connections per source address.
#[derive(Default)]
pub(crate) struct PerSource(Mutex<HashMap<IpAddr, usize>>);

/// Holds a source's slot while its connection lives.
pub(crate) struct SourceGuard {
    table: Arc<PerSource>,
    ip: IpAddr,
}

impl Drop for SourceGuard {
    fn drop(&mut self) {
        let mut t = self.table.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = t.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                t.remove(&self.ip);
            }
        }
    }
}

impl PerSource {
    pub(crate) fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        open: usize,
        limits: &TcpLimits,
    ) -> Option<SourceGuard> {
        if open >= limits.max_connections {
            return None;
        }
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = t.entry(ip).or_default();
        if *n >= limits.max_per_source {
            return None;
        }
        *n += 1;
        Some(SourceGuard {
            table: self.clone(),
            ip,
        })
    }
}

/// Opens a connection to `addr` and runs it.
pub(crate) fn connect(
    addr: SocketAddr,
    inbound: mpsc::Sender<Inbound>,
    limits: TcpLimits,
    stats: Arc<Stats>,
) {
    tokio::spawn(async move {
        match tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                let (r, w) = stream.into_split();
                run(r, w, Peer::Tcp(addr), inbound, limits, stats, None).await;
            }
            _ => {
                stats.send_failures.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("outgoing TCP connection failed");
                let _ = inbound.send(Inbound::Closed(Peer::Tcp(addr))).await;
            }
        }
    });
}

/// Runs an accepted connection.
pub(crate) fn spawn(
    stream: TcpStream,
    addr: SocketAddr,
    inbound: mpsc::Sender<Inbound>,
    limits: TcpLimits,
    stats: Arc<Stats>,
    guard: Option<SourceGuard>,
) {
    let _ = stream.set_nodelay(true);
    let (r, w) = stream.into_split();
    tokio::spawn(run(r, w, Peer::Tcp(addr), inbound, limits, stats, guard));
}

/// Runs one SIP stream (a TCP connection or a Tor stream) until it closes:
/// RFC 3261 §18.3 framing in, a writer task out.
pub(crate) async fn run<R, W>(
    mut rd: R,
    mut wr: W,
    addr: Peer,
    inbound: mpsc::Sender<Inbound>,
    limits: TcpLimits,
    stats: Arc<Stats>,
    _guard: Option<SourceGuard>,
) where
    R: AsyncRead + Send + Unpin + 'static,
    W: AsyncWrite + Send + Unpin + 'static,
{
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(1024);
    if inbound
        .send(Inbound::Opened(addr, out_tx.clone()))
        .await
        .is_err()
    {
        return;
    }
    let writer = tokio::spawn(async move {
        while let Some(bytes) = out_rx.recv().await {
            // Tor streams buffer into cells until flushed.
            if let Err(e) = wr.write_all(&bytes).await {
                tracing::debug!("stream write failed: {e}");
                break;
            }
            if let Err(e) = wr.flush().await {
                tracing::debug!("stream flush failed: {e}");
                break;
            }
            tracing::trace!(bytes = bytes.len(), "stream message written");
        }
    });
    let kind = if addr.is_tor() { "Tor" } else { "TCP" };
    tracing::debug!("{kind} stream open");
    let timeouts = Timeouts {
        idle: Some(limits.idle_timeout),
        message: limits.message_timeout,
    };
    let pong_tx = out_tx.clone();
    let end = read_messages(
        &mut rd,
        limits.message.clone(),
        timeouts,
        // RFC 5626: a CRLFCRLF ping gets a CRLF pong.
        move || {
            let _ = pong_tx.try_send(b"\r\n".to_vec());
        },
        |msg| {
            let inbound = &inbound;
            async move { inbound.send(Inbound::Message(addr, msg)).await.is_ok() }
        },
    )
    .await;
    if end.is_peers_fault() {
        stats.bad_streams.fetch_add(1, Ordering::Relaxed);
    }
    tracing::debug!("{kind} stream ended: {end:?}");
    // Reading is over, but answers to the messages already passed on may
    // still be on their way: the proxy handles those before it sees
    // Closed, and the writer ends once it has written them (its senders
    // gone), or gives up after a while on a peer that does not read.
    drop(out_tx);
    let _ = inbound.send(Inbound::Closed(addr)).await;
    let mut writer = writer;
    if tokio::time::timeout(WRITE_GRACE, &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
}

/// How long a closing stream may take to write what was already answered.
const WRITE_GRACE: Duration = Duration::from_secs(5);
