//! The user agent's driver: a [`privasip_ua::Ua`] core on real sockets
//! and Tor streams, with the PrivaSIP-AES counter saved before a token
//! leaves, and an optional trace of every message.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use privasip_tor::{Isolation, OnionService, TorBackend, TorStream};
use privasip_ua::{CallId, Sensitive, Ua, UaConfig, UaEvent};
use rand_core::OsRng;
use tokio::net::{TcpStream, UdpSocket};

use crate::counter::CounterFile;
use crate::wire::{
    Incoming, Link, Opening, PROXY_STREAM, Reader, Streams, Wire, Writer, connect_patiently,
};

/// Where the user agent's proxy is.
#[derive(Clone, Debug)]
pub enum ProxyAt {
    /// UDP to this address.
    Udp(SocketAddr),
    /// One TCP connection to this address.
    Tcp(SocketAddr),
    /// Tor streams to this onion (or other) host and port.
    Tor(String, u16),
}

/// How long the first Tor stream to the proxy may take to open, over
/// several attempts: a service published moments ago may not have its
/// descriptor on the directories yet ("Unable to download hidden service
/// descriptor").
const TOR_FIRST_PATIENCE: std::time::Duration = std::time::Duration::from_secs(90);

/// How long one attempt to open a Tor stream to the proxy may take (a
/// fresh onion connection builds a rendezvous circuit: seconds at most).
const TOR_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Tor, for a user agent that reaches its proxy through it.
pub struct TorAccess {
    /// The backend streams are opened through.
    pub backend: Arc<dyn TorBackend>,
    /// Our own onion service, where calls arrive (without one, calls come
    /// over the stream we register on). Whether each call gets a circuit
    /// of its own is the core's to say ([`UaConfig::call_circuits`]).
    pub service: Option<OnionService>,
}

/// How an [`Agent`] starts.
pub struct Setup {
    /// The core's configuration (its `local`, `outbound` and `reliable`
    /// are set here from the transport).
    pub ua: UaConfig,
    /// Our address: the UDP socket, or where we listen for TCP.
    pub local: SocketAddr,
    /// The proxy.
    pub proxy: ProxyAt,
    /// Tor, for [`ProxyAt::Tor`].
    pub tor: Option<TorAccess>,
    /// The PrivaSIP-AES counter file, when the home proxy takes AES tokens.
    pub aes: Option<CounterFile>,
    /// Where every message sent and received is written (it holds Digest
    /// responses: create it private).
    pub trace: Option<std::fs::File>,
}

impl Agent {
    /// Opens the transports `setup` names and starts the core.
    pub async fn start(setup: Setup) -> Result<Agent> {
        let Setup {
            ua: mut cfg,
            local,
            proxy,
            tor,
            aes,
            trace,
        } = setup;
        let (wire, peer) = match proxy {
            ProxyAt::Udp(addr) => (
                Wire::Udp(
                    UdpSocket::bind(local)
                        .await
                        .with_context(|| format!("cannot bind {local}"))?,
                ),
                Link::Addr(addr),
            ),
            ProxyAt::Tcp(addr) => {
                let connect = move |_: Isolation| -> Opening {
                    Box::pin(async move {
                        let stream = TcpStream::connect(addr)
                            .await
                            .context("cannot connect to the proxy")?;
                        stream.set_nodelay(true)?;
                        let (r, w) = stream.into_split();
                        Ok((Box::new(r) as Reader, Box::new(w) as Writer))
                    })
                };
                // Calls come over the connection we register on when the
                // registrar keeps flows (`;ob`, privasip does); others
                // connect to our Contact's port, where we listen too.
                cfg.outbound = true;
                let incoming = listen_tcp(local).await?;
                let proxy = connect(Isolation::Shared).await?;
                (
                    Wire::Streams(Streams::new(
                        proxy,
                        Some(incoming),
                        Some(std::sync::Arc::new(connect)),
                    )),
                    PROXY_STREAM,
                )
            }
            ProxyAt::Tor(host, port) => {
                let TorAccess { backend, service } = tor.context("a proxy over Tor needs Tor")?;
                // Behind Tor our Contact and Via name our onion service.
                // Without one, calls come over the stream we register on:
                // our Contact names a random, unresolvable host the proxy
                // binds to that stream (`;ob`).
                cfg.local = Sensitive::new(match &service {
                    Some(s) => format!("{}:{}", s.address.expose(), s.port),
                    None => {
                        cfg.outbound = true;
                        privasip_ua::flow_host(&mut OsRng)
                    }
                });
                let connect = move |isolation: Isolation| -> Opening {
                    let backend = backend.clone();
                    let host = host.clone();
                    Box::pin(async move {
                        // An attempt that hangs (a restarted onion service
                        // whose old introduction points the client still
                        // tries) must end, so the next one can start.
                        let stream = tokio::time::timeout(
                            TOR_CONNECT_TIMEOUT,
                            backend.connect(&host, port, isolation),
                        )
                        .await
                        .map_err(|_| {
                            anyhow::anyhow!(
                                "no Tor stream to the proxy within {} s",
                                TOR_CONNECT_TIMEOUT.as_secs()
                            )
                        })?
                        .context("cannot reach the proxy through Tor")?;
                        let (r, w) = stream.into_split();
                        Ok((Box::new(r) as Reader, Box::new(w) as Writer))
                    })
                };
                let proxy =
                    connect_patiently(&connect, Isolation::Shared, TOR_FIRST_PATIENCE).await?;
                let incoming = service.map(|s| s.incoming);
                (
                    Wire::Streams(Streams::new(
                        proxy,
                        incoming,
                        Some(std::sync::Arc::new(connect)),
                    )),
                    PROXY_STREAM,
                )
            }
        };
        Ok(Agent {
            ua: Ua::new(cfg, peer),
            aes,
            registered: false,
            wire,
            trace,
        })
    }
}

/// A user agent at work: the core, its transports, its counter file and
/// its trace.
pub struct Agent {
    ua: Ua<Link>,
    /// PrivaSIP-AES: the counter on disk, saved before a token leaves.
    aes: Option<CounterFile>,
    /// Whether we registered (and so register again after reconnecting).
    registered: bool,
    wire: Wire,
    trace: Option<std::fs::File>,
}

impl Agent {
    fn trace(&mut self, dir: &str, bytes: &[u8]) {
        use std::io::Write;
        if let Some(f) = self.trace.as_mut() {
            let _ = writeln!(f, "=== {dir}");
            let _ = f.write_all(bytes);
            let _ = writeln!(f);
        }
    }
}

impl Agent {
    async fn flush(&mut self) -> Result<()> {
        // The core holds every message until a new AES counter is on disk.
        if let Some(next) = self.ua.aes_to_persist() {
            if let Some(file) = self.aes.as_mut() {
                file.save(next)?;
            }
            self.ua.aes_persisted(next);
        }
        let mut undelivered = Vec::new();
        while let Some(t) = self.ua.poll_transmit() {
            self.trace("sent", &t.bytes);
            if !self.wire.send(t.to, t.circuit, t.bytes).await? && !undelivered.contains(&t.circuit)
            {
                undelivered.push(t.circuit);
            }
        }
        // What could not go fails now, not at Timer B (the next flush
        // sends what the core does about it).
        for circuit in undelivered {
            self.ua
                .transport_failed(Instant::now(), &PROXY_STREAM, Some(circuit), &mut OsRng);
        }
        Ok(())
    }

    /// Runs until `on_event` returns true for an event (then true), or
    /// until `deadline` or Ctrl-C (then false).
    pub async fn run_until(
        &mut self,
        deadline: Option<Instant>,
        mut on_event: impl FnMut(Instant, UaEvent) -> bool,
    ) -> Result<bool> {
        loop {
            self.flush().await?;
            while let Some(ev) = self.ua.poll_event() {
                if on_event(Instant::now(), ev) {
                    self.flush().await?;
                    return Ok(true);
                }
            }
            let next = [self.ua.poll_timeout(), deadline]
                .into_iter()
                .flatten()
                .min();
            let sleep = async {
                match next {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = self.wire.recv() => { match r? {
                    Incoming::Message(bytes, from) => {
                        self.trace("received", &bytes);
                        self.ua.receive(Instant::now(), &bytes, from, &mut OsRng);
                    }
                    // The proxy lost our flow with the old connection (and
                    // maybe everything else, if it restarted): register
                    // again now rather than at the next refresh.
                    Incoming::Reconnected if self.registered => {
                        self.ua.register(Instant::now(), &mut OsRng)?;
                    }
                    Incoming::Reconnected => {}
                    Incoming::Lost(circuit) => {
                        self.ua.transport_failed(Instant::now(), &PROXY_STREAM, Some(circuit), &mut OsRng);
                    }
                } }
                () = sleep => {
                    let now = Instant::now();
                    if deadline.is_some_and(|d| now >= d) {
                        return Ok(false);
                    }
                    self.ua.handle_timeout(now, &mut OsRng);
                }
                _ = tokio::signal::ctrl_c() => return Ok(false),
            }
        }
    }

    /// Registers, and waits for the answer: the binding's lifetime in
    /// seconds, or why it was refused.
    pub async fn register(&mut self) -> Result<u32> {
        self.ua.register(Instant::now(), &mut OsRng)?;
        self.registered = true;
        let mut result = None;
        self.run_until(
            Some(Instant::now() + Duration::from_secs(40)),
            |_, ev| match ev {
                UaEvent::Registered { expires } => {
                    result = Some(Ok(expires));
                    true
                }
                UaEvent::RegistrationFailed { status } => {
                    result = Some(Err(status));
                    true
                }
                _ => false,
            },
        )
        .await?;
        match result {
            Some(Ok(e)) => Ok(e),
            Some(Err(status)) => bail!("registration refused: {status}"),
            None => bail!("no answer to REGISTER"),
        }
    }

    /// Removes our registration (if we made one), waiting a little for
    /// the registrar's answer: a user agent going away says so. False if
    /// the registrar did not confirm it in time.
    pub async fn unregister(&mut self) -> Result<bool> {
        if !self.registered {
            return Ok(true);
        }
        self.registered = false;
        self.ua.unregister(Instant::now(), &mut OsRng)?;
        let done = self
            .run_until(Some(Instant::now() + Duration::from_secs(5)), |_, ev| {
                matches!(
                    ev,
                    UaEvent::Unregistered | UaEvent::RegistrationFailed { .. }
                )
            })
            .await?;
        Ok(done)
    }
}

/// Accepts TCP connections on `local` (our Contact's address), handing
/// each over as a stream.
pub(crate) async fn listen_tcp(
    local: SocketAddr,
) -> Result<tokio::sync::mpsc::Receiver<TorStream>> {
    let listener = tokio::net::TcpListener::bind(local)
        .await
        .with_context(|| format!("cannot listen on {local} (TCP)"))?;
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let (r, w) = stream.into_split();
            if tx.send(TorStream::new(r, w)).await.is_err() {
                break;
            }
        }
    });
    Ok(rx)
}

/// What became of one call, in milliseconds since its INVITE left.
#[derive(Clone, Debug, Default)]
pub struct CallRecord {
    /// 100 Trying arrived.
    pub trying_ms: Option<f64>,
    /// 180 or 183 arrived.
    pub ringing_ms: Option<f64>,
    /// The 200 arrived.
    pub answered_ms: Option<f64>,
    /// The final status, if any.
    pub status: Option<u16>,
    /// Our BYE was answered.
    pub ended: bool,
    /// We hung up before an answer (CANCEL).
    pub cancelled: bool,
}

fn ms(since: Instant, at: Instant) -> f64 {
    at.saturating_duration_since(since).as_secs_f64() * 1000.0
}

impl Agent {
    /// Calls `target`, holds an answered call for `hold` seconds and hangs
    /// up; with `cancel_after`, cancels a call not answered by then. Over
    /// Tor the call's requests take a stream on a circuit of its own when
    /// the core gives it one; the stream closes with the call.
    pub async fn call(
        &mut self,
        target: &str,
        hold: f64,
        cancel_after: Option<f64>,
    ) -> Result<CallRecord> {
        let sent = Instant::now();
        let call = self.ua.call(sent, target, &mut OsRng)?;
        let circuit = self.ua.circuit(call);
        let rec = follow_call(self, call, sent, hold, cancel_after).await;
        if let Some(c) = circuit {
            self.wire.close(c);
        }
        rec
    }
}

/// Follows the call placed at `sent` until it ends.
async fn follow_call(
    agent: &mut Agent,
    call: CallId,
    sent: Instant,
    hold: f64,
    cancel_after: Option<f64>,
) -> Result<CallRecord> {
    let mut rec = CallRecord::default();
    let give_up = sent + Duration::from_secs(60);
    let cancel_at = cancel_after.map(|s| (sent + Duration::from_secs_f64(s)).min(give_up));
    let mut on_event = |at: Instant, ev: UaEvent| match ev {
        UaEvent::Response { call: c, status } if c == call => {
            match status {
                100 => rec.trying_ms = rec.trying_ms.or(Some(ms(sent, at))),
                180 | 183 => rec.ringing_ms = rec.ringing_ms.or(Some(ms(sent, at))),
                s if s >= 200 => rec.status = Some(s),
                _ => {}
            }
            false
        }
        UaEvent::Answered { call: c } if c == call => {
            rec.answered_ms = Some(ms(sent, at));
            true
        }
        UaEvent::Failed { call: c, status } if c == call => {
            rec.status = Some(status);
            true
        }
        _ => false,
    };
    let decided = agent
        .run_until(Some(cancel_at.unwrap_or(give_up)), &mut on_event)
        .await?;
    let cancelled = !decided && cancel_at.is_some();
    if cancelled {
        // CANCEL now (or at the first provisional response); the INVITE
        // then ends with 487, or, if the answer crossed the CANCEL, the
        // user agent hangs up by itself.
        agent.ua.hangup(Instant::now(), call, &mut OsRng)?;
        agent
            .run_until(
                Some(Instant::now() + Duration::from_secs(40)),
                &mut on_event,
            )
            .await?;
    }
    rec.cancelled = cancelled;
    if cancelled {
        return Ok(rec);
    }
    if rec.answered_ms.is_some() {
        if hold > 0.0 {
            // The call can end while held: the far end hangs up, or its
            // circuit dies (the core then sends a BYE saying so).
            let until = Some(Instant::now() + Duration::from_secs_f64(hold));
            rec.ended = agent
                .run_until(until, |_, ev| ev == (UaEvent::Ended { call }))
                .await?;
            if rec.ended {
                return Ok(rec);
            }
        }
        agent.ua.hangup(Instant::now(), call, &mut OsRng)?;
        let until = Some(Instant::now() + Duration::from_secs(35));
        agent
            .run_until(until, |_, ev| {
                if ev == (UaEvent::Ended { call }) {
                    rec.ended = true;
                    return true;
                }
                false
            })
            .await?;
    }
    Ok(rec)
}
