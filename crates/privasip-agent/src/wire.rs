//! The user agent's transports: a UDP socket, one TCP connection to the
//! proxy, or Tor streams (one to the proxy's onion service, and those
//! that arrive at our own onion service).

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use privasip_message::Limits;
use privasip_stream::{Backoff, Timeouts, read_messages};
use privasip_tor::{Isolation, TorStream};
use privasip_ua::Circuit;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Our streams are never idle-closed (the proxy's side decides that, and
/// our registration must outlive quiet hours); a message begun must be
/// complete within 32 s (64*T1), as the proxy asks of us.
const STREAM_TIMEOUTS: Timeouts = Timeouts {
    idle: None,
    message: Duration::from_secs(32),
};

/// Where a message goes or came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Link {
    /// A UDP peer, or the TCP connection to the proxy.
    Addr(SocketAddr),
    /// A stream: 0 is the one to the proxy; others arrived at our onion
    /// service (or any accepted connection).
    Stream(u64),
}

/// The stream to the proxy.
pub(crate) const PROXY_STREAM: Link = Link::Stream(0);

/// One direction of a stream, boxed (TCP or Tor).
pub(crate) type Reader = Box<dyn AsyncRead + Send + Unpin>;
/// The other direction.
pub(crate) type Writer = Box<dyn AsyncWrite + Send + Unpin>;
/// A stream to the proxy being opened.
pub(crate) type Opening = Pin<Box<dyn Future<Output = Result<(Reader, Writer)>> + Send>>;
/// Opens a new stream to the proxy: after the last one closed (shared
/// circuit), or for one call (fresh circuit).
pub(crate) type Connect = Arc<dyn Fn(Isolation) -> Opening + Send + Sync>;

/// How often a stream we opened carries an RFC 5626 keep-alive (CRLFCRLF,
/// which the proxy answers with CRLF): well inside the proxy's idle
/// timeout (600 s by default), so a quiet registration flow or a long
/// call's circuit is not closed for being idle.
const KEEPALIVE: Duration = Duration::from_secs(120);

/// How long to keep trying to reopen the stream to the proxy.
const RECONNECT_PATIENCE: Duration = Duration::from_secs(300);

/// A stream to the proxy, tried again with backoff (250 ms doubling to
/// 8 s) until `patience` is spent; then the last attempt's error. The
/// first attempt asks for `first`; every later one for a fresh circuit.
/// arti keeps what it knows of an onion service (its descriptor, which
/// introduction points worked, a circuit to it) per isolation, and after
/// the service restarted that knowledge can stay stale for minutes: an
/// attempt on the same isolation then hangs until our timeout, again and
/// again. A fresh isolation starts from nothing, fetching the service's
/// new descriptor (the stream to the proxy is the only one on its
/// circuit either way).
pub(crate) async fn connect_patiently(
    connect: &(dyn Fn(Isolation) -> Opening + Send + Sync),
    first: Isolation,
    patience: Duration,
) -> Result<(Reader, Writer)> {
    let mut backoff = Backoff::new(
        Instant::now(),
        Duration::from_millis(250),
        Duration::from_secs(8),
        patience,
    );
    let mut isolation = first;
    loop {
        match connect(isolation).await {
            Ok(s) => return Ok(s),
            Err(e) => match backoff.after_failure(Instant::now()) {
                Some(pause) => {
                    tracing::info!("the proxy is not reachable ({e:#}); again in {pause:?}");
                    tokio::time::sleep(pause).await;
                    isolation = Isolation::Fresh;
                }
                None => return Err(e),
            },
        }
    }
}

/// What [`Wire::recv`] got.
pub(crate) enum Incoming {
    /// A message, and where it came from.
    Message(Vec<u8>, Link),
    /// The stream to the proxy closed and a new one is open: whatever
    /// the proxy knew about the old one (our registration's flow) is gone.
    Reconnected,
    /// The stream of this circuit to the proxy closed under us (the
    /// shared one is being reopened meanwhile): requests sent on it will
    /// get no answer.
    Lost(Circuit),
}

pub(crate) enum Wire {
    Udp(UdpSocket),
    Streams(Streams),
}

/// Framed streams, each read by its own task.
pub(crate) struct Streams {
    rx: mpsc::Receiver<(u64, Option<Vec<u8>>)>,
    tx: mpsc::Sender<(u64, Option<Vec<u8>>)>,
    writers: HashMap<u64, mpsc::Sender<Vec<u8>>>,
    incoming: Option<mpsc::Receiver<TorStream>>,
    next: u64,
    connect: Option<Connect>,
    /// The streams opened for the calls the core gave circuits of their
    /// own; an entry goes when its call ends or its stream closes.
    circuits: HashMap<Circuit, u64>,
    /// The stream to the proxy being reopened, in a task of its own: the
    /// agent's loop drops [`Wire::recv`] whenever a timer fires, and a
    /// reopening that lived inside it was dropped with it (the agent then
    /// never reconnected).
    reopening: Option<JoinHandle<Result<(Reader, Writer)>>>,
}

impl Streams {
    /// `proxy`: the stream to the proxy (id 0); `incoming`: streams that
    /// arrive at our onion service.
    /// `connect`: how to reopen the proxy's stream when it closes
    /// (without, its closing is an error), and open one on a fresh circuit
    /// for each call the core gives a circuit of its own.
    pub(crate) fn new<R, W>(
        proxy: (R, W),
        incoming: Option<mpsc::Receiver<TorStream>>,
        connect: Option<Connect>,
    ) -> Streams
    where
        R: AsyncRead + Send + Unpin + 'static,
        W: AsyncWrite + Send + Unpin + 'static,
    {
        let (tx, rx) = mpsc::channel(1024);
        let mut s = Streams {
            rx,
            tx,
            writers: HashMap::new(),
            incoming,
            next: 1,
            connect,
            circuits: HashMap::new(),
            reopening: None,
        };
        s.add(0, proxy.0, proxy.1, true);
        s
    }

    /// Starts reopening the stream to the proxy, with backoff, for up to
    /// [`RECONNECT_PATIENCE`].
    fn reopen(&mut self) -> Result<()> {
        let Some(connect) = self.connect.clone() else {
            bail!("the connection to the proxy closed");
        };
        self.writers.remove(&0);
        tracing::warn!("the connection to the proxy closed; reconnecting");
        self.reopening = Some(tokio::spawn(async move {
            // The proxy may have restarted: nothing known of the old
            // connection's circuit is worth keeping.
            connect_patiently(connect.as_ref(), Isolation::Fresh, RECONNECT_PATIENCE)
                .await
                .map_err(|e| {
                    e.context(format!(
                        "the connection to the proxy closed and did not reopen in {} s",
                        RECONNECT_PATIENCE.as_secs()
                    ))
                })
        }));
        Ok(())
    }

    /// Reads and writes stream `id`; `ours`: we opened it, so it carries
    /// keep-alives.
    fn add<R, W>(&mut self, id: u64, mut rd: R, mut wr: W, ours: bool)
    where
        R: AsyncRead + Send + Unpin + 'static,
        W: AsyncWrite + Send + Unpin + 'static,
    {
        let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(256);
        self.writers.insert(id, out_tx);
        tokio::spawn(async move {
            let mut keepalive = tokio::time::interval(KEEPALIVE);
            keepalive.reset();
            loop {
                let b = tokio::select! {
                    b = out_rx.recv() => match b {
                        Some(b) => b,
                        None => break,
                    },
                    _ = keepalive.tick(), if ours => b"\r\n\r\n".to_vec(),
                };
                if wr.write_all(&b).await.is_err() || wr.flush().await.is_err() {
                    break;
                }
            }
        });
        let tx = self.tx.clone();
        // Weak: closing the link (dropping its writer) must still end the
        // writer task, and so the stream.
        let pong_tx = self.writers.get(&id).map(mpsc::Sender::downgrade);
        tokio::spawn(async move {
            let end = read_messages(
                &mut rd,
                Limits::default(),
                STREAM_TIMEOUTS,
                // RFC 5626: a CRLFCRLF ping gets a CRLF pong.
                move || {
                    if let Some(w) = pong_tx.as_ref().and_then(mpsc::WeakSender::upgrade) {
                        let _ = w.try_send(b"\r\n".to_vec());
                    }
                },
                |m| {
                    let tx = &tx;
                    async move { tx.send((id, Some(m))).await.is_ok() }
                },
            )
            .await;
            tracing::debug!("stream to the proxy ended: {end:?}");
            let _ = tx.send((id, None)).await;
        });
    }
}

impl Streams {
    /// The stream a message to the proxy on `circuit` takes: the proxy's
    /// usual one, or for a call's own circuit a stream opened for it on a
    /// fresh Tor circuit at its first message.
    async fn proxy_stream(&mut self, circuit: Circuit) -> Result<u64> {
        let Circuit::Call(_) = circuit else {
            return Ok(0);
        };
        if let Some(&id) = self.circuits.get(&circuit)
            && self.writers.contains_key(&id)
        {
            return Ok(id);
        }
        let Some(connect) = self.connect.as_ref() else {
            return Ok(0);
        };
        // One per call, and calls end: more than this many at once is a
        // leak, not a workload.
        if self.circuits.len() >= MAX_CALL_STREAMS {
            bail!("{MAX_CALL_STREAMS} calls already have streams of their own");
        }
        let (r, w) = connect(Isolation::Fresh).await?;
        let id = self.next;
        self.next += 1;
        self.add(id, r, w, true);
        self.circuits.insert(circuit, id);
        Ok(id)
    }
}

/// Calls with streams of their own at once (a user agent places calls one
/// at a time; this bounds a fault, not a workload).
const MAX_CALL_STREAMS: usize = 64;

impl Wire {
    /// Closes the stream a call's circuit had (our side; the proxy closes
    /// its side), once the call is over.
    pub(crate) fn close(&mut self, circuit: Circuit) {
        if let Wire::Streams(s) = self
            && let Some(id) = s.circuits.remove(&circuit)
        {
            s.writers.remove(&id);
        }
    }

    /// Sends `bytes`; false when a message for the proxy found no stream
    /// (the shared one is being reopened, or the call's would not open):
    /// the core must hear of it ([`privasip_ua::Ua::transport_failed`]).
    /// A message to a caller whose stream went away only loses its
    /// answer.
    pub(crate) async fn send(
        &mut self,
        to: Link,
        circuit: Circuit,
        bytes: Vec<u8>,
    ) -> Result<bool> {
        match (self, to) {
            (Wire::Udp(s), Link::Addr(a)) => {
                s.send_to(&bytes, a).await?;
            }
            (Wire::Streams(s), Link::Stream(0)) => {
                let id = match s.proxy_stream(circuit).await {
                    Ok(id) => id,
                    Err(e) => {
                        tracing::warn!("no stream to the proxy for a call: {e:#}");
                        return Ok(false);
                    }
                };
                return Ok(match s.writers.get(&id) {
                    Some(w) => w.send(bytes).await.is_ok(),
                    None => false,
                });
            }
            (Wire::Streams(s), Link::Stream(id)) => {
                if let Some(w) = s.writers.get(&id) {
                    let _ = w.send(bytes).await;
                }
            }
            _ => {}
        }
        Ok(true)
    }

    /// The next message and where it came from; or news that the
    /// stream to the proxy was reopened.
    pub(crate) async fn recv(&mut self) -> Result<Incoming> {
        match self {
            Wire::Udp(s) => {
                let mut buf = vec![0u8; 65_536];
                let (n, from) = s.recv_from(&mut buf).await?;
                buf.truncate(n);
                Ok(Incoming::Message(buf, Link::Addr(from)))
            }
            Wire::Streams(s) => loop {
                let incoming = async {
                    match s.incoming.as_mut() {
                        Some(rx) => rx.recv().await,
                        None => std::future::pending().await,
                    }
                };
                let reopened = async {
                    match s.reopening.as_mut() {
                        Some(task) => task.await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    st = incoming => match st {
                        Some(st) => {
                            let id = s.next;
                            s.next += 1;
                            let (r, w) = st.into_split();
                            s.add(id, r, w, false);
                        }
                        None => s.incoming = None,
                    },
                    r = reopened => {
                        s.reopening = None;
                        let (r, w) = r.context("reconnecting to the proxy")??;
                        s.add(0, r, w, true);
                        tracing::info!("reconnected to the proxy");
                        return Ok(Incoming::Reconnected);
                    }
                    m = s.rx.recv() => match m {
                        Some((id, Some(bytes))) => return Ok(Incoming::Message(bytes, Link::Stream(id))),
                        Some((0, None)) => {
                            s.reopen()?;
                            return Ok(Incoming::Lost(Circuit::Shared));
                        }
                        None => bail!("the connection to the proxy closed"),
                        Some((id, None)) => {
                            s.writers.remove(&id);
                            let lost = s.circuits.iter().find(|&(_, v)| *v == id).map(|(c, _)| *c);
                            if let Some(c) = lost {
                                s.circuits.remove(&c);
                                return Ok(Incoming::Lost(c));
                            }
                        }
                    },
                }
            },
        }
    }
}
