#![doc = include_str!("../README.md")]

mod control;
mod ctor;
mod network;
mod quickack;
mod socks;

use std::fmt;
use std::future::Future;
use std::pin::Pin;

pub use privasip_sensitive::Sensitive;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

pub use control::{ControlConn, ControlError, Reply};
pub use ctor::{CTor, CTorConfig};
pub use network::{DirAuthority, PrivateNetwork};
pub use socks::{SocksError, socks5_connect};

/// A stream through Tor, whichever backend made it, as its two halves.
///
/// Backends hand over halves they split themselves: arti's `DataStream`
/// shares state between reading and writing that a generic split would
/// starve (seen here: a pending read never woke once a write was polled
/// on the same stream).
pub struct TorStream {
    reader: Box<dyn AsyncRead + Send + Unpin>,
    writer: Box<dyn AsyncWrite + Send + Unpin>,
    circuit: Option<u64>,
}

impl TorStream {
    /// A stream from its two halves.
    pub fn new(
        reader: impl AsyncRead + Send + Unpin + 'static,
        writer: impl AsyncWrite + Send + Unpin + 'static,
    ) -> Self {
        TorStream {
            reader: Box::new(reader),
            writer: Box::new(writer),
            circuit: None,
        }
    }

    /// Marks an incoming stream with the circuit it arrived on (a number
    /// the backend gives each incoming circuit, never reused by this
    /// process). The proxy counts what a circuit may cost by it.
    #[must_use]
    pub fn on_circuit(mut self, circuit: u64) -> Self {
        self.circuit = Some(circuit);
        self
    }

    /// The incoming circuit this stream arrived on, when the backend can
    /// tell (arti can; the C tor daemon, through `ADD_ONION`, cannot).
    pub fn circuit(&self) -> Option<u64> {
        self.circuit
    }

    /// A stream from a TCP connection that tor writes to (a SOCKS
    /// connection, an onion service's local target): Nagle off on our
    /// side, and ACKs sent at once so tor's own Nagle never waits on them.
    pub fn from_tcp(s: tokio::net::TcpStream) -> Self {
        let _ = s.set_nodelay(true);
        let (r, w) = s.into_split();
        TorStream::new(quickack::QuickAckReader::new(r), w)
    }

    /// The two halves, to read and write from different tasks.
    pub fn into_split(
        self,
    ) -> (
        Box<dyn AsyncRead + Send + Unpin>,
        Box<dyn AsyncWrite + Send + Unpin>,
    ) {
        (self.reader, self.writer)
    }
}

impl AsyncRead for TorStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.reader).poll_read(cx, buf)
    }
}

impl AsyncWrite for TorStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        Pin::new(&mut self.writer).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.writer).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.writer).poll_shutdown(cx)
    }
}

impl fmt::Debug for TorStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TorStream")
    }
}

/// Streams one incoming circuit may hold open at once on our onion
/// service; the circuit is closed when it asks for more (C tor's
/// `MaxStreams` with `MaxStreamsCloseCircuit`; arti: we refuse them and
/// drop the circuit). A peer needs one stream per call at most; a client
/// that opens more is flooding.
pub const MAX_STREAMS_PER_CIRCUIT: u16 = 16;

/// Incoming circuits (rendezvous) an onion service serves at once, where
/// the backend lets us count them (arti); further introductions wait.
pub const MAX_CIRCUITS: usize = 256;

/// A boxed future, so the trait stays object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Which circuit a new stream may share.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isolation {
    /// One long-lived circuit per destination for everything so marked.
    Shared,
    /// A circuit of its own, never used by another stream.
    Fresh,
    /// Streams with the same group number share a circuit, and no other.
    Group(u64),
}

/// What went wrong talking to Tor.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TorError {
    /// The backend could not be reached or failed locally.
    #[error("tor backend: {0}")]
    Backend(String),
    /// Tor could not open the stream (no circuit, rendezvous failed,
    /// refused by the far end).
    #[error("tor could not connect")]
    Connect(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
    /// The onion service could not be set up or published.
    #[error("onion service: {0}")]
    Onion(String),
    /// The step did not finish in time.
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// A local I/O error.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// An onion service we host.
#[derive(Debug)]
pub struct OnionService {
    /// Its address, `<56 base32 characters>.onion` (it names us: never
    /// logged).
    pub address: Sensitive<String>,
    /// The virtual port clients connect to.
    pub port: u16,
    /// Incoming streams, as clients open them.
    pub incoming: mpsc::Receiver<TorStream>,
}

/// What an onion service needs.
#[derive(Clone, Debug)]
pub struct OnionSpec {
    /// A short name for the service (arti's nickname; a file name for C tor).
    pub nickname: String,
    /// The virtual port clients connect to.
    pub port: u16,
    /// Tor's proof-of-work defence against introduction floods (proposal
    /// 327), where the backend has it (C tor; arti's service side has
    /// none yet). On unless there is a reason (a measurement of it).
    pub pow: bool,
}

/// A way to reach Tor: the embedded arti client or the C tor daemon.
pub trait TorBackend: Send + Sync + 'static {
    /// Short name for logs and reports (`arti`, `c-tor`).
    fn name(&self) -> &'static str;

    /// Opens a stream to `host:port` through Tor. `host` is a name (a
    /// `.onion` address or a DNS name the exit resolves) or an IP address;
    /// it is never resolved locally.
    fn connect<'a>(
        &'a self,
        host: &'a str,
        port: u16,
        isolation: Isolation,
    ) -> BoxFuture<'a, Result<TorStream, TorError>>;

    /// Hosts an onion service with a key that persists across restarts and
    /// returns once it is published (reachable by clients).
    fn host_onion(&self, spec: OnionSpec) -> BoxFuture<'_, Result<OnionService, TorError>>;

    /// Forgets what this client learned of onion services (descriptors,
    /// introduction points that failed, which directories were asked
    /// lately), so that the next stream to one starts over; for after
    /// attempts to reach one kept failing. arti keeps that knowledge per
    /// isolation, and a fresh isolation already starts over: nothing to
    /// do (the default). Streams already open are never touched.
    fn forget_onion_state(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// True for a `.onion` host name (RFC 7686: never resolved outside Tor).
/// Compares bytes, so any text is safe here, a host from the wire
/// included (a multi-byte character never splits).
pub fn is_onion(host: &str) -> bool {
    let h = host.trim_end_matches('.').as_bytes();
    h.len() > 6 && h[h.len() - 6..].eq_ignore_ascii_case(b".onion")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn onion_names() {
        assert!(is_onion("abc.onion"));
        assert!(is_onion("ABC.ONION."));
        assert!(!is_onion(".onion"));
        assert!(!is_onion("onion.example"));
    }

    #[test]
    fn any_text_is_safe() {
        // A multi-byte character where ".onion" would start (the host
        // of a hostile Via that once panicked the proxy).
        for h in [
            "[\u{e9}abcd]",
            "\u{e9}\u{e9}\u{e9}\u{e9}",
            "x\u{1F600}onion",
            "",
            ".",
        ] {
            assert!(!is_onion(h), "{h:?}");
        }
        assert!(is_onion("abcd.onion"));
    }
}
