//! The transaction layer: owns every transaction, matches what arrives,
//! and runs the timers.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::time::Instant;

use privasip_message::{Limits, Message};

use crate::client::{self, Client};
use crate::key::{ClientKey, ServerKey};
use crate::server::{self, Server};
use crate::timers::{Timer, TimerConfig};

/// A client transaction's handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientTx(u64);

/// A server transaction's handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerTx(u64);

/// Bytes to send to a peer. `P` is whatever the driver uses to name a
/// destination (an address, a connection id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit<P> {
    /// Where to.
    pub to: P,
    /// Which Tor circuit it may share (drivers without Tor ignore it).
    pub circuit: Circuit,
    /// The message.
    pub bytes: Vec<u8>,
}

/// Which Tor circuit a message may ride, as the transaction user decided:
/// the decision that keeps two calls from being linked by a shared
/// circuit belongs to the core that knows what a call is, not to a driver
/// re-reading SIP. A driver maps each value to a stream of its own per
/// destination (for Tor) and ignores it for other transports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Circuit {
    /// Whatever circuit the destination's usual stream uses: responses
    /// (they go back the way the request came), registrations, and
    /// everything when calls share circuits.
    #[default]
    Shared,
    /// The circuit of one call, away from every other call's: every
    /// request of the call carries the same number, no other call's does.
    /// The number is opaque (it names nothing outside the process).
    Call(u64),
}

/// What the transaction user must hear about, besides what `receive`
/// returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// Timer B or F: no final response came (the TU acts as on a 408).
    Timeout(ClientTx),
    /// The driver could not deliver the request, or lost the connection
    /// its answer would have come back on, before a final response
    /// (§17.1.4: the TU acts as on a 503). The transaction is gone.
    TransportError(ClientTx),
    /// Timer H: a non-2xx final response to INVITE was never ACKed.
    NoAck(ServerTx),
}

/// What an incoming message was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    /// A new request: a server transaction now exists for it; answer with
    /// [`Transactions::respond`].
    NewRequest(ServerTx),
    /// A response for a client transaction, for the TU to act on.
    Response(ClientTx, u16),
    /// An ACK for a 2xx the TU sent (RFC 6026): the TU's business.
    AckFor2xx(ServerTx),
    /// A retransmission or a response the transaction handled itself.
    Absorbed,
    /// Matches no transaction: an ACK for a 2xx that went through another
    /// element, or a stray response (a proxy forwards it statelessly,
    /// RFC 3261 §16.7 step 10... or drops it).
    Stray,
}

/// A misuse of the layer by the transaction user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TxError {
    /// The request has no RFC 3261 branch in its top Via, or no method.
    #[error("request has no top Via branch with the z9hG4bK cookie")]
    NoBranch,
    /// ACK is not sent in a transaction of its own (§17.1.1.3, §13.2.2.4).
    #[error("ACK is sent by the transaction user, not in a transaction")]
    AckIsNotATransaction,
    /// A client transaction with this branch and method is alive.
    #[error("a transaction with this branch and method already exists")]
    Duplicate,
    /// The bytes are not a SIP message of the right kind.
    #[error("not a valid {0}")]
    Malformed(&'static str),
    /// No such transaction (it ended).
    #[error("no such transaction")]
    Gone,
    /// The response does not fit the transaction's state (a 1xx after the
    /// final response, say).
    #[error("response not allowed in the transaction's state")]
    WrongState,
}

/// The timers a transaction has armed, and which of them were armed since
/// the layer last scheduled them (only these go on the heap: re-pushing
/// unchanged timers after every message would fill it with duplicates).
///
/// Inline and small: no transaction has more than two timers armed at
/// once (A and B, E and F, G and H), and a non-INVITE server transaction
/// over UDP lingers 32 s for Timer J, so tens of thousands of these are
/// alive on a busy registrar.
#[derive(Default, Debug)]
pub(crate) struct Armed {
    slots: [Option<Slot>; ARMED_SLOTS],
}

/// As many as any state needs.
const ARMED_SLOTS: usize = 2;

#[derive(Clone, Copy, Debug)]
struct Slot {
    timer: Timer,
    at: Instant,
    /// Armed since the last `take_new`.
    new: bool,
}

impl Armed {
    /// Arms `t` for `at`, replacing its earlier deadline if it had one.
    pub(crate) fn arm(&mut self, t: Timer, at: Instant) {
        let slot = Slot {
            timer: t,
            at,
            new: true,
        };
        let i = self
            .slots
            .iter()
            .position(|s| s.is_some_and(|s| s.timer == t))
            .or_else(|| self.slots.iter().position(Option::is_none));
        match i {
            Some(i) => self.slots[i] = Some(slot),
            None => {
                // Unreachable by the state machines; keep the newest
                // rather than panic.
                debug_assert!(false, "more than {ARMED_SLOTS} timers armed");
                self.slots[0] = Some(slot);
            }
        }
    }

    /// Timers armed since the last call and still armed.
    fn take_new(&mut self) -> impl Iterator<Item = (Timer, Instant)> + use<> {
        let mut fresh = [None; ARMED_SLOTS];
        for (s, f) in self.slots.iter_mut().flatten().zip(&mut fresh) {
            if std::mem::take(&mut s.new) {
                *f = Some((s.timer, s.at));
            }
        }
        fresh.into_iter().flatten()
    }

    pub(crate) fn disarm(&mut self, t: Timer) {
        for s in &mut self.slots {
            if s.is_some_and(|s| s.timer == t) {
                *s = None;
            }
        }
    }

    pub(crate) fn clear(&mut self) {
        self.slots = [None; ARMED_SLOTS];
    }

    /// Whether `t` is armed for exactly `at` (else a heap entry is stale).
    fn is(&self, t: Timer, at: Instant) -> bool {
        self.slots
            .iter()
            .flatten()
            .any(|s| s.timer == t && s.at == at)
    }
}

/// Messages a transaction wants sent to its peer.
#[derive(Default)]
pub(crate) struct Out(Vec<Vec<u8>>);

impl Out {
    pub(crate) fn send(&mut self, bytes: Vec<u8>) {
        self.0.push(bytes);
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Which {
    Client(u64),
    Server(u64),
}

struct ClientEntry<P> {
    tx: Client,
    key: ClientKey,
    peer: P,
    circuit: Circuit,
}

struct ServerEntry<P> {
    tx: Server,
    key: ServerKey,
    peer: P,
}

/// Every transaction of one SIP element.
pub struct Transactions<P> {
    cfg: TimerConfig,
    limits: Limits,
    next_id: u64,
    clients: HashMap<u64, ClientEntry<P>>,
    /// Boxed: a map keeps up to twice its length in slots, and an
    /// entry is large; tens of thousands linger for Timer J.
    servers: HashMap<u64, Box<ServerEntry<P>>>,
    client_keys: HashMap<ClientKey, u64>,
    server_keys: HashMap<ServerKey, u64>,
    timers: BinaryHeap<Reverse<(Instant, Which, Timer)>>,
    transmits: VecDeque<Transmit<P>>,
    events: VecDeque<Event>,
}

impl<P: Clone> Default for Transactions<P> {
    fn default() -> Self {
        Transactions::new(TimerConfig::default())
    }
}

impl<P: Clone> Transactions<P> {
    /// An empty layer with these timer values.
    pub fn new(cfg: TimerConfig) -> Self {
        Transactions {
            cfg,
            limits: Limits::default(),
            next_id: 0,
            clients: HashMap::new(),
            servers: HashMap::new(),
            client_keys: HashMap::new(),
            server_keys: HashMap::new(),
            timers: BinaryHeap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Drops a client transaction its user has given up on (a proxy's
    /// branch that Timer C ended): no more events or sends for it; a late
    /// response is then a stray.
    pub fn abandon(&mut self, tx: ClientTx) {
        if let Some(e) = self.clients.remove(&tx.0) {
            self.client_keys.remove(&e.key);
        }
    }

    /// The driver could not reach `peer` on `circuit` (None: on any), a
    /// stream that did not open or that closed: every client transaction
    /// sent there that has no final response yet ends with
    /// [`Event::TransportError`], as §17.1.4 asks, rather than waiting for
    /// Timer B or F. Returns how many.
    pub fn transport_failed(&mut self, peer: &P, circuit: Option<Circuit>) -> usize
    where
        P: PartialEq,
    {
        let failed: Vec<u64> = self
            .clients
            .iter()
            .filter(|(_, e)| {
                e.peer == *peer && circuit.is_none_or(|c| c == e.circuit) && e.tx.awaits_final()
            })
            .map(|(id, _)| *id)
            .collect();
        for id in &failed {
            if let Some(e) = self.clients.remove(id) {
                self.client_keys.remove(&e.key);
            }
            self.events.push_back(Event::TransportError(ClientTx(*id)));
        }
        failed.len()
    }

    /// How many transactions are alive.
    pub fn len(&self) -> usize {
        self.clients.len() + self.servers.len()
    }

    /// Whether no transaction is alive.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Starts a client transaction for `request` (which must carry an RFC
    /// 3261 branch in its top Via) towards `peer`. `reliable` is true over
    /// TCP, TLS and Tor: no retransmissions, no lingering. Every send of
    /// it (retransmissions too) rides `circuit`.
    pub fn send_request(
        &mut self,
        now: Instant,
        request: Vec<u8>,
        peer: P,
        reliable: bool,
        circuit: Circuit,
    ) -> Result<ClientTx, TxError> {
        let (key, invite) = {
            let m = Message::parse_datagram(&request, &self.limits)
                .map_err(|_| TxError::Malformed("request"))?;
            let method = m.method().ok_or(TxError::Malformed("request"))?;
            if method.as_str() == "ACK" {
                return Err(TxError::AckIsNotATransaction);
            }
            if !m.top_via().is_some_and(|v| v.has_rfc3261_branch()) {
                return Err(TxError::NoBranch);
            }
            let key = ClientKey::of_request(&m).ok_or(TxError::NoBranch)?;
            (key, method.as_str() == "INVITE")
        };
        if self.client_keys.contains_key(&key) {
            return Err(TxError::Duplicate);
        }
        let id = self.fresh_id();
        let mut out = Out::default();
        let tx = Client::start(now, &self.cfg, invite, request, reliable, &mut out);
        self.client_keys.insert(key.clone(), id);
        self.clients.insert(
            id,
            ClientEntry {
                tx,
                key,
                peer,
                circuit,
            },
        );
        self.after_client(id, out);
        Ok(ClientTx(id))
    }

    /// Feeds a parsed message that arrived from `peer` (over a reliable
    /// transport or not). Says what it was; any retransmission it causes is
    /// queued for [`Transactions::poll_transmit`].
    pub fn receive(
        &mut self,
        now: Instant,
        msg: &Message<'_>,
        peer: P,
        reliable: bool,
    ) -> Received {
        match msg.status() {
            Some(status) => self.receive_response(now, msg, status),
            None => self.receive_request(now, msg, peer, reliable),
        }
    }

    fn receive_response(&mut self, now: Instant, msg: &Message<'_>, status: u16) -> Received {
        let Some(&id) = ClientKey::of_response(msg).and_then(|k| self.client_keys.get(&k)) else {
            return Received::Stray;
        };
        let mut out = Out::default();
        let verdict = match self.clients.get_mut(&id) {
            Some(e) => e.tx.on_response(now, &self.cfg, status, msg, &mut out),
            None => return Received::Stray,
        };
        self.after_client(id, out);
        match verdict {
            client::Verdict::PassUp => Received::Response(ClientTx(id), status),
            client::Verdict::Absorb => Received::Absorbed,
        }
    }

    fn receive_request(
        &mut self,
        now: Instant,
        msg: &Message<'_>,
        peer: P,
        reliable: bool,
    ) -> Received {
        let Some(key) = ServerKey::of_request(msg) else {
            return Received::Stray;
        };
        let is_ack = msg.method().is_some_and(|m| m.as_str() == "ACK");
        if let Some(&id) = self.server_keys.get(&key) {
            let mut out = Out::default();
            let r = match self.servers.get_mut(&id) {
                Some(e) => e.tx.on_request(now, is_ack, &self.cfg, &mut out),
                None => return Received::Stray,
            };
            self.after_server(id, out);
            return match r {
                server::Retransmit::Absorbed => Received::Absorbed,
                server::Retransmit::AckForAccepted => Received::AckFor2xx(ServerTx(id)),
            };
        }
        if is_ack {
            return Received::Stray;
        }
        let invite = msg.method().is_some_and(|m| m.as_str() == "INVITE");
        let id = self.fresh_id();
        let tx = Server::new(invite, reliable, &self.cfg);
        self.server_keys.insert(key.clone(), id);
        self.servers
            .insert(id, Box::new(ServerEntry { tx, key, peer }));
        Received::NewRequest(ServerTx(id))
    }

    /// Sends a response in a server transaction.
    pub fn respond(
        &mut self,
        now: Instant,
        tx: ServerTx,
        response: Vec<u8>,
    ) -> Result<(), TxError> {
        let status = status_of(&response).ok_or(TxError::Malformed("response"))?;
        let e = self.servers.get_mut(&tx.0).ok_or(TxError::Gone)?;
        let mut out = Out::default();
        let ok = e.tx.respond(now, &self.cfg, status, response, &mut out);
        self.after_server(tx.0, out);
        if ok { Ok(()) } else { Err(TxError::WrongState) }
    }

    /// Answers once and forgets the transaction: a stateless reply (RFC
    /// 3261 §16.11, what Kamailio's `sl_send_reply` does) for a request
    /// the element refuses outright. Nothing is kept and nothing is
    /// retransmitted, so a refused request costs no memory and a spoofed
    /// source is not sent the answer again and again; a retransmitted
    /// request is a new one and is answered again.
    pub fn respond_once(&mut self, tx: ServerTx, response: Vec<u8>) -> Result<(), TxError> {
        let e = self.servers.remove(&tx.0).ok_or(TxError::Gone)?;
        self.server_keys.remove(&e.key);
        self.transmits.push_back(Transmit {
            to: e.peer,
            circuit: Circuit::Shared,
            bytes: response,
        });
        Ok(())
    }

    /// The INVITE server transaction a CANCEL is for (RFC 3261 §9.2: same
    /// top Via, Request-URI, Call-ID, From, To and CSeq number; with RFC
    /// 3261 branches, the same branch and sent-by).
    pub fn invite_for_cancel(&self, cancel: &Message<'_>) -> Option<ServerTx> {
        let key = ServerKey::for_cancelled_invite(cancel)?;
        let &id = self.server_keys.get(&key)?;
        self.servers
            .get(&id)
            .is_some_and(|e| e.tx.invite)
            .then_some(ServerTx(id))
    }

    /// When [`Transactions::handle_timeout`] should next be called.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        while let Some(&Reverse((at, which, timer))) = self.timers.peek() {
            if self.is_live(which, timer, at) {
                return Some(at);
            }
            self.timers.pop();
        }
        None
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&Reverse((at, which, timer))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            if !self.is_live(which, timer, at) {
                continue;
            }
            let mut out = Out::default();
            match which {
                Which::Client(id) => {
                    let Some(e) = self.clients.get_mut(&id) else {
                        continue;
                    };
                    e.tx.armed.disarm(timer);
                    if e.tx.on_timer(now, &self.cfg, timer, &mut out) {
                        self.events.push_back(Event::Timeout(ClientTx(id)));
                    }
                    self.after_client(id, out);
                }
                Which::Server(id) => {
                    let Some(e) = self.servers.get_mut(&id) else {
                        continue;
                    };
                    e.tx.armed.disarm(timer);
                    if e.tx.on_timer(now, &self.cfg, timer, &mut out) {
                        self.events.push_back(Event::NoAck(ServerTx(id)));
                    }
                    self.after_server(id, out);
                }
            }
        }
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit<P>> {
        self.transmits.pop_front()
    }

    /// The next event for the transaction user.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn is_live(&self, which: Which, timer: Timer, at: Instant) -> bool {
        match which {
            Which::Client(id) => self
                .clients
                .get(&id)
                .is_some_and(|e| e.tx.armed.is(timer, at)),
            Which::Server(id) => self
                .servers
                .get(&id)
                .is_some_and(|e| e.tx.armed.is(timer, at)),
        }
    }

    /// Queues a client transaction's sends, schedules its timers, and
    /// removes it once terminated.
    fn after_client(&mut self, id: u64, out: Out) {
        let Some(e) = self.clients.get(&id) else {
            return;
        };
        for bytes in out.0 {
            self.transmits.push_back(Transmit {
                to: e.peer.clone(),
                circuit: e.circuit,
                bytes,
            });
        }
        if e.tx.state == client::State::Terminated {
            if let Some(e) = self.clients.remove(&id) {
                self.client_keys.remove(&e.key);
            }
            return;
        }
        let Some(e) = self.clients.get_mut(&id) else {
            return;
        };
        for (t, at) in e.tx.armed.take_new() {
            self.timers.push(Reverse((at, Which::Client(id), t)));
        }
    }

    fn after_server(&mut self, id: u64, out: Out) {
        let Some(e) = self.servers.get(&id) else {
            return;
        };
        for bytes in out.0 {
            self.transmits.push_back(Transmit {
                to: e.peer.clone(),
                circuit: Circuit::Shared,
                bytes,
            });
        }
        if e.tx.state == server::State::Terminated {
            if let Some(e) = self.servers.remove(&id) {
                self.server_keys.remove(&e.key);
            }
            return;
        }
        let Some(e) = self.servers.get_mut(&id) else {
            return;
        };
        for (t, at) in e.tx.armed.take_new() {
            self.timers.push(Reverse((at, Which::Server(id), t)));
        }
    }
}

/// The status code of a response we built (`SIP/2.0 NNN ...`), without
/// parsing the rest: the transaction user printed it.
fn status_of(response: &[u8]) -> Option<u16> {
    let code = response.strip_prefix(b"SIP/2.0 ")?.get(..4)?;
    if code[3] != b' ' || !code[..3].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = code[..3]
        .iter()
        .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    (100..700).contains(&n).then_some(n)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{Armed, status_of};
    use crate::timers::Timer;

    #[test]
    #[allow(clippy::disallowed_methods)] // a test may read the clock once
    fn armed_timers_are_scheduled_once_and_rearming_replaces() {
        let t0 = Instant::now();
        let (a, b) = (
            t0 + Duration::from_millis(500),
            t0 + Duration::from_secs(32),
        );
        let mut armed = Armed::default();
        armed.arm(Timer::A, a);
        armed.arm(Timer::B, b);
        assert_eq!(
            armed.take_new().collect::<Vec<_>>(),
            [(Timer::A, a), (Timer::B, b)]
        );
        assert_eq!(armed.take_new().count(), 0, "already scheduled");

        let a2 = t0 + Duration::from_secs(1);
        armed.arm(Timer::A, a2);
        assert_eq!(armed.take_new().collect::<Vec<_>>(), [(Timer::A, a2)]);
        assert!(!armed.is(Timer::A, a), "the old deadline is stale");
        assert!(armed.is(Timer::A, a2) && armed.is(Timer::B, b));

        armed.disarm(Timer::A);
        assert!(!armed.is(Timer::A, a2) && armed.is(Timer::B, b));
        armed.arm(Timer::D, a);
        armed.clear();
        assert!(!armed.is(Timer::B, b) && !armed.is(Timer::D, a));
        assert_eq!(armed.take_new().count(), 0);
    }

    #[test]
    fn status_of_reads_the_status_line_only() {
        assert_eq!(status_of(b"SIP/2.0 180 Ringing\r\n\r\n"), Some(180));
        assert_eq!(status_of(b"SIP/2.0 699 x"), Some(699));
        for bad in [
            &b"SIP/2.0 099 x"[..],
            b"SIP/2.0 1800 x",
            b"SIP/2.0 18",
            b"SIP/2.0 1a0 x",
            b"INVITE sip:a@b SIP/2.0",
            b"",
        ] {
            assert_eq!(status_of(bad), None);
        }
    }
}
