//! SIP over Tor streams: our onion service's incoming streams, and
//! outgoing streams per route: one shared, and one on a fresh circuit for
//! each call the core gave a [`Circuit`] of its own.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use privasip_proxy::Circuit;
use privasip_stream::Backoff;
use privasip_tor::{Isolation, OnionService, TorBackend, TorStream};
use tokio::sync::mpsc;

use crate::tcp::{self, TcpLimits};
use crate::{Inbound, Peer, Stats};

/// How long one attempt to open a Tor stream may take (a fresh onion
/// connection builds a rendezvous circuit).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Marks a circuit number that is really an incoming stream's own.
const OWN_CIRCUIT: u64 = 1 << 63;
/// How long to keep trying to open a stream before the messages for it
/// are dropped (the transaction layer then answers 408; Timer B is 32 s).
/// Retries back off from 250 ms to 4 s. Where an onion time period turns
/// over, a C tor client found no descriptor of an arti service for ~22 s
/// (arti's periods follow the consensus's valid-after, C tor's the
/// clock: a voting interval apart, 20 s in the test network); waiting
/// that out turns a lost call into a slow one.
const CONNECT_PATIENCE: Duration = Duration::from_secs(28);
/// Call circuits remembered per route (each an open stream; an entry goes
/// when its stream closes); beyond this all are forgotten at once (later
/// requests of those calls open new streams).
const MAX_CALLS: usize = 100_000;

/// A SIP domain reached through Tor.
#[derive(Clone, Debug)]
pub struct TorRoute {
    /// The host to connect to: an onion address (or a name an exit
    /// resolves; never resolved here).
    pub host: String,
    /// Its port.
    pub port: u16,
}

/// The Tor destinations, indexed by [`Peer::Onion`]: the configured
/// routes first, then onion hosts met in messages (a callee's onion
/// Contact, a peer proxy's onion Record-Route), added by the resolver.
/// Shared between the resolver and the driver.
#[derive(Clone, Debug, Default)]
pub struct TorRoutes(Arc<Mutex<Vec<TorRoute>>>);

impl TorRoutes {
    /// The index of `route` (its host and port), added if new; `None`
    /// once the table is full.
    pub fn add(&self, route: TorRoute) -> Option<u16> {
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = t
            .iter()
            .position(|r| r.host.eq_ignore_ascii_case(&route.host) && r.port == route.port)
        {
            return u16::try_from(i).ok();
        }
        let i = u16::try_from(t.len()).ok()?;
        t.push(route);
        Some(i)
    }

    fn get(&self, i: u16) -> Option<TorRoute> {
        let t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        t.get(usize::from(i)).cloned()
    }
}

/// Tor in the driver.
pub struct TorSetup {
    /// The backend (arti or C tor).
    pub backend: Arc<dyn TorBackend>,
    /// Our onion service, if we host one.
    pub service: Option<OnionService>,
    /// Where [`Peer::Onion`] peers lead.
    pub routes: TorRoutes,
}

impl std::fmt::Debug for TorSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TorSetup")
            .field("backend", &self.backend.name())
            .field("service", &self.service)
            .field("routes", &self.routes)
            .finish()
    }
}

struct RouteState {
    route: TorRoute,
    /// The stream most requests take.
    current: Option<Peer>,
    /// A stream on a fresh circuit, opened before the next call needs it
    /// (once the route has seen a call with a circuit of its own).
    spare: Option<Peer>,
    /// A call's circuit -> the stream it took.
    calls: HashMap<u64, Peer>,
}

pub(crate) struct Driver {
    backend: Arc<dyn TorBackend>,
    incoming: Option<mpsc::Receiver<TorStream>>,
    table: TorRoutes,
    routes: Vec<RouteState>,
    next_id: u64,
    stats: Arc<Stats>,
}

/// The next incoming stream on our onion service (never, without one).
pub(crate) async fn accept(d: Option<&mut Driver>) -> Option<TorStream> {
    match d.and_then(|d| d.incoming.as_mut()) {
        Some(rx) => match rx.recv().await {
            Some(s) => Some(s),
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

impl Driver {
    pub(crate) fn new(setup: TorSetup, stats: Arc<Stats>) -> Self {
        Driver {
            backend: setup.backend,
            incoming: setup.service.map(|s| s.incoming),
            table: setup.routes,
            routes: Vec::new(),
            next_id: 0,
            stats,
        }
    }

    /// A stream we open.
    fn new_peer(&mut self) -> Peer {
        self.next_id += 1;
        Peer::Stream {
            id: self.next_id,
            circuit: None,
        }
    }

    /// An incoming stream on `circuit`, or standing for its own circuit
    /// when the backend does not say (numbered apart from the backend's
    /// circuits by the top bit).
    fn incoming_peer(&mut self, circuit: Option<u64>) -> Peer {
        self.next_id += 1;
        Peer::Stream {
            id: self.next_id,
            circuit: Some(circuit.unwrap_or(self.next_id | OWN_CIRCUIT)),
        }
    }

    pub(crate) fn spawn_incoming(
        &mut self,
        s: TorStream,
        inbound: mpsc::Sender<Inbound>,
        limits: TcpLimits,
        guard: tcp::SourceGuard,
    ) {
        let peer = self.incoming_peer(s.circuit());
        let (r, w) = s.into_split();
        tokio::spawn(tcp::run(
            r,
            w,
            peer,
            inbound,
            limits,
            self.stats.clone(),
            Some(guard),
        ));
    }

    /// A stream closed: forget it wherever a route held it.
    /// Forgets the stream `peer`; the route and circuit it carried, if it
    /// carried one (a spare carried nothing yet).
    pub(crate) fn closed(&mut self, peer: Peer) -> Option<(u16, Circuit)> {
        let mut carried = None;
        for (i, r) in self.routes.iter_mut().enumerate() {
            let route = u16::try_from(i).ok();
            if r.current == Some(peer) {
                r.current = None;
                carried = route.map(|n| (n, Circuit::Shared));
            }
            if r.spare == Some(peer) {
                r.spare = None;
            }
            r.calls.retain(|call, p| {
                if *p == peer {
                    carried = route.map(|n| (n, Circuit::Call(*call)));
                }
                *p != peer
            });
        }
        carried
    }

    /// Every call's stream, with its call's circuit.
    pub(crate) fn call_streams(&self) -> impl Iterator<Item = (Peer, Circuit)> + '_ {
        self.routes
            .iter()
            .flat_map(|r| r.calls.iter().map(|(n, p)| (*p, Circuit::Call(*n))))
    }

    /// The stream a message to `route` on `circuit` takes, opening one
    /// if needed; `None` for a route the table does not hold.
    pub(crate) fn stream_for(
        &mut self,
        route: u16,
        circuit: Circuit,
        conns: &HashMap<Peer, mpsc::Sender<Vec<u8>>>,
        waiting: &mut HashMap<Peer, Vec<Vec<u8>>>,
        inbound: &mpsc::Sender<Inbound>,
        limits: &TcpLimits,
    ) -> Option<Peer> {
        let alive = |p: &Peer, waiting: &HashMap<Peer, Vec<Vec<u8>>>| {
            conns.contains_key(p) || waiting.contains_key(p)
        };
        let idx = usize::from(route);
        // Routes the resolver added since we last looked.
        while self.routes.len() <= idx {
            let r = u16::try_from(self.routes.len())
                .ok()
                .and_then(|i| self.table.get(i))?;
            self.routes.push(RouteState {
                route: r,
                current: None,
                spare: None,
                calls: HashMap::new(),
            });
        }
        let Circuit::Call(call) = circuit else {
            if let Some(p) = self.routes[idx].current
                && alive(&p, waiting)
            {
                return Some(p);
            }
            let p = self.open(idx, Isolation::Shared, waiting, inbound, limits);
            self.routes[idx].current = Some(p);
            return Some(p);
        };
        if let Some(p) = self.routes[idx].calls.get(&call).copied()
            && alive(&p, waiting)
        {
            return Some(p);
        }
        // A call we have not seen: the spare's circuit was built before it
        // came; build the next call's now.
        let chosen = match self.routes[idx].spare.take() {
            Some(p) if alive(&p, waiting) => p,
            _ => self.open(idx, Isolation::Fresh, waiting, inbound, limits),
        };
        let next = self.open(idx, Isolation::Fresh, waiting, inbound, limits);
        let r = &mut self.routes[idx];
        r.spare = Some(next);
        if r.calls.len() >= MAX_CALLS {
            r.calls.clear();
        }
        r.calls.insert(call, chosen);
        Some(chosen)
    }

    fn open(
        &mut self,
        idx: usize,
        iso: Isolation,
        waiting: &mut HashMap<Peer, Vec<Vec<u8>>>,
        inbound: &mpsc::Sender<Inbound>,
        limits: &TcpLimits,
    ) -> Peer {
        let peer = self.new_peer();
        waiting.insert(peer, Vec::new());
        let route = self.routes[idx].route.clone();
        let backend = self.backend.clone();
        let stats = self.stats.clone();
        let inbound = inbound.clone();
        let limits = limits.clone();
        tokio::spawn(async move {
            let mut last;
            let started = Instant::now();
            let mut backoff = Backoff::new(
                started,
                Duration::from_millis(250),
                Duration::from_secs(4),
                CONNECT_PATIENCE,
            );
            let mut attempt = 0u32;
            let mut iso = iso;
            loop {
                attempt += 1;
                // Never past the patience: a stream opened after the
                // transaction gave up would deliver a request nobody
                // waits for.
                let left = backoff.left(Instant::now());
                match tokio::time::timeout(
                    CONNECT_TIMEOUT.min(left.max(Duration::from_secs(1))),
                    backend.connect(&route.host, route.port, iso),
                )
                .await
                {
                    Ok(Ok(s)) => {
                        let (r, w) = s.into_split();
                        tcp::run(r, w, peer, inbound, limits, stats, None).await;
                        return;
                    }
                    Ok(Err(e)) => last = e.to_string(),
                    Err(_) => last = "no stream before the timeout".to_owned(),
                }
                tracing::debug!(route = idx, attempt, "Tor stream failed: {last}");
                // What the client knows of the service may be stale (a
                // dead introduction point, a descriptor from before the
                // service moved): the next attempt, this stream's or the
                // next call's, starts over.
                if privasip_tor::is_onion(&route.host) {
                    backend.forget_onion_state().await;
                }
                match backoff.after_failure(Instant::now()) {
                    Some(pause) => tokio::time::sleep(pause).await,
                    None => break,
                }
                // arti keeps what it knows of an onion service per
                // isolation, and after the service restarted that can stay
                // stale for minutes; a fresh isolation starts over (and
                // isolates no less).
                iso = Isolation::Fresh;
            }
            stats.send_failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                route = idx,
                backend = backend.name(),
                "cannot open a Tor stream after {attempt} attempts in {:.0?}: {last}",
                started.elapsed()
            );
            let _ = inbound.send(Inbound::Closed(peer)).await;
        });
        peer
    }
}
