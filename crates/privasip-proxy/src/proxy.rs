//! The proxy: RFC 3261 §16 on top of the transaction layer.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use privasip_digest::Ha1;
use privasip_identity::{Keyring, RealId, Token};
use privasip_message::{
    BRANCH_COOKIE, ContactValue, HasSipStatus, HeaderName, Limits, Message, Sensitive, SipUri, Uri,
    Via,
};
use privasip_registrar::{Registrar, RegistrarConfig};
use privasip_transaction::{Circuit, ClientTx, Event, Received, ServerTx, Transactions, Transmit};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

use crate::auth::{Authenticator, Credentials, Verdict};
use crate::budget::{Bounded, SourceKey, Tiered};
use crate::gate::{Gate, OPENS_BURST, OPENS_PER_SECOND, Refused};
use crate::hide::{ANONYMOUS_HOST, Hiding, Kind, ROUTES_MARKER, ROUTES_PARAM, Sealer, VIA_PARAM};
use crate::mac::{ROUTE_PARAM, Signer, derive};
use crate::peer::{MAX_PEER_KEYS, PeerKeys, remove_peer_credentials};
use crate::relay::{Origin, Refusal, RelayPolicy};
use crate::response::response_for;
use crate::timer_c::{DEFAULT_TIMER_C, Expiry, TimerC};

/// Where a hop goes, as the driver's resolver decides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Next<P> {
    /// The peer to send to.
    pub peer: P,
    /// Whether that transport is reliable (TCP, TLS, Tor).
    pub reliable: bool,
}

/// Maps a next-hop host, port and transport (`UDP`, `TCP`, or empty when
/// the URI names none) from a URI or a Via to a peer. No DNS happens in the core: the driver decides (static routes,
/// onion addresses, a resolver of its own).
pub type Resolver<P> = Box<dyn Fn(&str, Option<u16>, &str) -> Option<Next<P>> + Send>;

mod hiding;
mod live_calls;
mod request;

/// The proxy's settings.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// The domains this proxy is responsible for (registrar and location
    /// service); requests for others are forwarded by Request-URI.
    pub domains: Vec<String>,
    /// Our sent-by (`host:port`) for Via, and how Route headers name us.
    pub sent_by: String,
    /// Whether to add Record-Route (stay in the path of dialogs).
    pub record_route: bool,
    /// Whether requests from our domains must carry Digest credentials
    /// (REGISTER always does when users are configured).
    pub authenticate: bool,
    /// Registrar limits.
    pub registrar: RegistrarConfig,
    /// Digest algorithms, most preferred first (RFC 8760: SHA-256, MD5).
    /// Clients that take the first challenge whatever it is (SIPp) need
    /// MD5 alone.
    pub digest: Vec<privasip_digest::Algorithm>,
    /// Whom we relay for and where we may send (doc/relay.md).
    pub relay: RelayPolicy,
}

impl ProxyConfig {
    /// A proxy for `domain`, naming itself `sent_by`, with the safe
    /// defaults: it record-routes, authenticates REGISTER only (set
    /// `authenticate` for every request from our domain), offers SHA-256
    /// then MD5, and relays for nobody outside its domain
    /// ([`RelayPolicy::default`]).
    pub fn new(domain: impl Into<String>, sent_by: impl Into<String>) -> ProxyConfig {
        ProxyConfig {
            domains: vec![domain.into()],
            sent_by: sent_by.into(),
            record_route: true,
            authenticate: false,
            registrar: RegistrarConfig::default(),
            digest: vec![
                privasip_digest::Algorithm::Sha256,
                privasip_digest::Algorithm::Md5,
            ],
            relay: RelayPolicy::default(),
        }
    }
}

/// What the driver should persist (the core does no I/O). It carries real
/// IDs, each [`Sensitive`]: `Debug` shows which kind of event it is.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreEvent {
    /// The bindings of an address of record are now these.
    Bindings {
        /// The address of record (real, never a token).
        aor: Sensitive<String>,
        /// Its bindings.
        bindings: Vec<privasip_registrar::Binding>,
        /// The contacts this change is about: a shared store writes just
        /// these (those in `bindings` kept, the others removed) and keeps
        /// the rest, which another instance may have registered. None:
        /// all of them (`Contact: *`).
        touched: Option<Sensitive<Vec<String>>>,
    },
    /// A call this proxy authenticated was answered (accounting).
    CallStarted {
        /// The authenticated caller (real ID).
        caller: Sensitive<String>,
        /// The callee as routed (a token under PrivaSIP-2).
        callee: Sensitive<String>,
        /// The dialog's Call-ID.
        call_id: Sensitive<String>,
    },
    /// A BYE was answered with 2xx.
    CallEnded {
        /// The dialog's Call-ID.
        call_id: Sensitive<String>,
    },
    /// A PrivaSIP-AES token of this user opened: tokens below `next` must
    /// never open again, also after a restart.
    AesCounter {
        /// The user (real ID).
        user: Sensitive<String>,
        /// The lowest counter still accepted.
        next: u64,
    },
}

/// A forwarded request and its branches.
struct Fwd<P> {
    /// Where the request came from (responses go back there).
    from: P,
    invite: bool,
    bye: bool,
    /// The authenticated caller, for accounting.
    caller: Option<String>,
    /// The request as received (for responses we make).
    request: Vec<u8>,
    /// Branches still without a final response: client tx and the bytes
    /// sent (to build a CANCEL from).
    pending: Vec<(ClientTx, Vec<u8>)>,
    /// The best final response so far (§16.7 step 6).
    best: Option<(u16, Vec<u8>)>,
    /// A final response went upstream.
    done: bool,
    /// What a hidden branch took out of the request (our user's From host,
    /// then the Vias below ours; module `hide`): put back on its responses
    /// without opening the seal in our Via, which is there for responses
    /// that outlive this state.
    hidden_vias: Option<Vec<String>>,
}

/// A branch whose INVITE got a 2xx: where its 2xx retransmissions go.
struct Accepted<P> {
    /// The server transaction they are sent in (in its Accepted state).
    stx: ServerTx,
    /// Where the INVITE came from (for topology hiding of the Contact).
    from: P,
    /// When the server transaction's Timer L ends them.
    until: Instant,
}

/// A response held until the store has committed what it promises: a
/// REGISTER's 200 (its bindings), a 2xx the home proxy accounts (the
/// call's start or end).
struct Held {
    /// The ordinal of the store event that must be committed first.
    needs: u64,
    stx: ServerTx,
    /// The response.
    ok: Vec<u8>,
    /// What is sent instead if the store has not committed in time: a 503
    /// for a REGISTER; None for a call, whose 2xx goes up anyway (the
    /// callee answered; the record waits in the queue and is lost only if
    /// the proxy dies).
    refusal: Option<Vec<u8>>,
    until: Instant,
}

/// How long a held response may wait for the store; then a REGISTER is
/// refused with 503 (the user agent tries again; nothing it believes is
/// lost) and a call's 2xx goes up anyway.
const STORE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

/// REGISTERs waiting for the store at once; beyond, 503 at once.
const MAX_HELD: usize = 65_536;

/// Store events handed to the driver and not yet committed; beyond,
/// REGISTERs get 503 at once (the writer's queue stays bounded).
const MAX_UNCOMMITTED: u64 = 131_072;

/// RFC 6026 Timer L (and M): 64*T1.
const TIMER_L: std::time::Duration = std::time::Duration::from_secs(32);

/// INVITE branches remembered as answered: 32 s of calls at over 8,000
/// calls a second; when full, expired ones go, then the older half.
const ACCEPTED_BRANCHES: usize = 262_144;

/// A stateful proxy and registrar for the domains in its configuration.
pub struct Proxy<P> {
    cfg: ProxyConfig,
    limits: Limits,
    tx: Transactions<P>,
    registrar: Registrar,
    resolve: Resolver<P>,
    calls: HashMap<ServerTx, Fwd<P>>,
    by_client: HashMap<ClientTx, ServerTx>,
    /// Whether a REGISTER's 200 waits for the store's commit
    /// ([`Proxy::set_store_commits`]), and the 200s that wait.
    store_commits: bool,
    held: VecDeque<Held>,
    /// The server transactions of the calls among `held` (so a 2xx
    /// retransmission does not overtake the first 2xx): no larger than
    /// `held`.
    held_calls: HashSet<ServerTx>,
    /// Store events handed to the driver so far, and the most it said
    /// are committed.
    store_polled: u64,
    store_committed: u64,
    /// INVITE branches that got a 2xx, for the retransmissions of that
    /// 2xx (RFC 6026: every one goes up, until Timer L ends).
    accepted: Bounded<ClientTx, Accepted<P>>,
    outbox: VecDeque<Transmit<P>>,
    /// Tags (RFC 3261 §19.3: random, at least 32 bits).
    rng: ChaCha20Rng,
    /// Signs our Record-Route and Via.
    signer: Signer,
    /// What the driver says a peer is.
    origin_of: Box<dyn Fn(&P) -> Origin + Send>,
    /// Token opens, within a budget per source.
    gate: Gate,
    /// Requests, within a budget per source (pike-like), and for Tor's
    /// strangers together and each peer key.
    requests: Tiered,
    /// Keys shared with peer proxies.
    peers: PeerKeys,
    /// The budget key of the request being handled, when it is not the
    /// peer's own (a peer proxy that signed it).
    signed_by: Option<SourceKey>,
    /// Requests dropped for a spent budget.
    dropped: u64,
    auth: Authenticator,
    keyring: Option<Keyring>,
    store_events: VecDeque<StoreEvent>,
    tor: Option<TorName<P>>,
    /// Flow-bound contacts (RFC 5626 style): a UA whose registered Contact
    /// carries `;ob` is reached over the connection it registered on,
    /// keyed by the Contact's `host:port`, owned by the address of record
    /// that bound it for as long as that binding lives, connected or not
    /// (no other may take it over). Behind Tor this is the registration
    /// stream: the UA needs no onion service. At most one per live
    /// binding: the sweep drops those whose binding lapsed.
    flows: HashMap<String, Flow<P>>,
    timer_c: TimerC,
    /// When lapsed bindings and their flows are next dropped.
    next_sweep: Option<Instant>,
    /// Which links we hide our side's topology on.
    hiding: Hiding,
    /// Seals what we hide.
    sealer: Sealer,
    /// Dialogs whose BYE went through one of our Contact handles: their
    /// handles open to nothing now.
    ended: Bounded<String, Instant>,
    /// Calls on circuits of their own, by circuit number: ended with a
    /// BYE each way if that circuit dies (module `live_calls`).
    live: Bounded<u64, live_calls::LiveCall>,
    /// Handles made lately, by a keyed hash of (Call-ID, Contact): a
    /// dialog's 180, 200 and later requests name the same Contact, and get
    /// the same handle without sealing it again. Cleared when full.
    handles: HashMap<u64, Handle>,
    /// Keys the hash of [`Proxy::handles`].
    handle_keys: std::hash::RandomState,
    /// Whether each call rides a Tor circuit of its own, and the key of
    /// the hash that numbers calls for that (see [`Proxy::circuit_for`]).
    call_circuits: Option<std::hash::RandomState>,
    /// What the operator should hear of, and when the next may be queued.
    notices: VecDeque<Notice>,
    next_notice: Option<Instant>,
}

/// Notices waiting for the driver, at most.
const MAX_NOTICES: usize = 16;

/// Something the operator should hear of: the driver logs it. It never
/// names a user, an address or a token's owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// A PrivaSIP token named a key this proxy does not hold: tokens for
    /// it cannot open here (is its private key in `[privasip] keys`?).
    UnknownKey {
        /// The token's scheme (`hpke`, `ecies`, `rsa`).
        scheme: &'static str,
        /// The first bytes of the key id the token names, in hex.
        key_id: String,
    },
    /// A PrivaSIP token arrived and this proxy holds no PrivaSIP keys.
    NoKeys,
    /// A call's own Tor circuit died: the call was ended with a BYE each
    /// way.
    CallCircuitLost,
}

impl std::fmt::Display for Notice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Notice::UnknownKey { scheme, key_id } => write!(
                f,
                "a PrivaSIP token ({scheme}) names key {key_id}..., which this proxy does not \
                 hold: if it is ours, add its private key file to [privasip] keys"
            ),
            Notice::CallCircuitLost => f.write_str(
                "a call's Tor circuit died under it: ended the call with a BYE to each side \
                 (Reason: Tor circuit lost)",
            ),
            Notice::NoKeys => f.write_str(
                "a PrivaSIP token arrived, and this proxy holds no PrivaSIP keys: \
                 add its private key file to [privasip] keys",
            ),
        }
    }
}

/// A Contact handle made lately, with what it was made for (compared on
/// a hit: the hash is only 64 bits).
struct Handle {
    call_id: String,
    contact: String,
    handle: String,
}

/// Handles remembered for reuse (a cache: losing one costs a seal).
const HANDLE_CACHE: usize = 4096;

/// Dialogs remembered as ended (their handles refused).
const ENDED_DIALOGS: usize = 65_536;

/// Requests a source may send a second, by default.
pub const REQUESTS_PER_SECOND: u32 = 500;
/// Requests a source may send at once, by default.
pub const REQUESTS_BURST: u32 = 1000;
/// Sources tracked for the request budget.
const REQUEST_SOURCES: usize = 65_536;

/// How often lapsed bindings and flows are dropped.
const SWEEP: std::time::Duration = std::time::Duration::from_secs(60);

/// A flow-bound contact's owner and connection (none while it is
/// closed: the user is registered but unreachable until it registers
/// again).
struct Flow<P> {
    aor: String,
    next: Option<Next<P>>,
}

/// The key of a flow-bound URI: `host:port`, lowercase; `None` unless
/// the URI carries `;ob`.
fn flow_key(uri: &str) -> Option<String> {
    let Ok(Uri::Sip(u)) = Uri::parse(uri) else {
        return None;
    };
    u.params.get("ob")?;
    Some(format!(
        "{}:{}",
        u.host.to_ascii_lowercase(),
        u.port.map_or(String::new(), |p| p.to_string())
    ))
}

/// Whether our name `name` (`host` or `host:port`) is what `host` and
/// `port` say: the same host and port, or the same host with no port.
fn names(name: &str, host: &str, port: Option<u16>) -> bool {
    let Some(rest) = name
        .get(..host.len())
        .filter(|h| h.eq_ignore_ascii_case(host))
        .and_then(|_| name.get(host.len()..))
    else {
        return false;
    };
    match port {
        Some(p) => rest
            .strip_prefix(':')
            .and_then(|r| r.parse::<u16>().ok())
            .is_some_and(|ours| ours == p),
        None => rest.is_empty() || rest.starts_with(':'),
    }
}

/// How the proxy names itself on Tor links.
struct TorName<P> {
    /// The name (our onion address, `host:port` or `host`).
    name: String,
    /// Whether a peer is reached over Tor.
    is_tor: Box<dyn Fn(&P) -> bool + Send>,
}

impl<P: Clone + Eq + std::hash::Hash> Proxy<P> {
    /// A proxy with this configuration and resolver. `secret` (32 random
    /// bytes, kept across restarts so that dialogs survive one) keys what
    /// the proxy signs: Digest nonces, its Record-Route and Via; it also
    /// seeds tags until [`Proxy::reseed`]. `epoch` is any instant before
    /// every use.
    pub fn new(
        cfg: ProxyConfig,
        resolve: Resolver<P>,
        secret: [u8; 32],
        epoch: Instant,
    ) -> Proxy<P> {
        let registrar = Registrar::new(cfg.registrar.clone());
        let nonce_key = derive(&secret, b"privasip digest nonce v1");
        Proxy {
            auth: Authenticator::new(*nonce_key, epoch, cfg.digest.clone()),
            rng: ChaCha20Rng::from_seed(*derive(&secret, b"privasip tags v1")),
            signer: Signer::new(&secret),
            origin_of: Box::new(|_| Origin::Unknown),
            gate: Gate::new(OPENS_PER_SECOND, OPENS_BURST),
            requests: request_budget(REQUESTS_PER_SECOND, REQUESTS_BURST),
            peers: PeerKeys::default(),
            signed_by: None,
            dropped: 0,
            keyring: None,
            store_events: VecDeque::new(),
            tor: None,
            flows: HashMap::new(),
            next_sweep: None,
            timer_c: TimerC::new(DEFAULT_TIMER_C),
            hiding: Hiding::default(),
            sealer: Sealer::new(&secret),
            ended: Bounded::new(ENDED_DIALOGS),
            live: live_calls::table(),
            handles: HashMap::new(),
            handle_keys: std::hash::RandomState::new(),
            call_circuits: None,
            notices: VecDeque::new(),
            next_notice: None,
            cfg,
            limits: Limits::default(),
            tx: Transactions::default(),
            registrar,
            resolve,
            calls: HashMap::new(),
            by_client: HashMap::new(),
            accepted: Bounded::new(ACCEPTED_BRANCHES),
            store_commits: false,
            held: VecDeque::new(),
            held_calls: HashSet::new(),
            store_polled: 0,
            store_committed: 0,
            outbox: VecDeque::new(),
        }
    }

    /// Seeds the generator of tags with fresh randomness (the driver's
    /// OS randomness), so that tags after a restart differ from before.
    pub fn reseed(&mut self, seed: [u8; 32]) {
        self.rng = ChaCha20Rng::from_seed(seed);
    }

    /// Tells the core what a peer is (an IP address, Tor), for the relay
    /// policy and the per-source budgets. Without it every peer is
    /// [`Origin::Unknown`]: never trusted, never refused as an address.
    pub fn set_origin(&mut self, origin_of: Box<dyn Fn(&P) -> Origin + Send>) {
        self.origin_of = origin_of;
    }

    /// Sets how many PrivaSIP tokens a source may open a second, and at
    /// once (default [`OPENS_PER_SECOND`], [`OPENS_BURST`]).
    pub fn set_token_budget(&mut self, per_second: u32, burst: u32) {
        self.gate = Gate::new(per_second, burst);
    }

    /// Sets how many requests a source may send a second, and at once,
    /// before the rest are dropped (default [`REQUESTS_PER_SECOND`],
    /// [`REQUESTS_BURST`]). Each Tor circuit is a source, and all of
    /// Tor's strangers together get ten times one source's budget; a
    /// peer proxy that signs its requests (see [`Proxy::set_peer_keys`])
    /// gets ten times as much of its own instead. Trusted sources are
    /// not counted.
    pub fn set_request_budget(&mut self, per_second: u32, burst: u32) {
        self.requests = request_budget(per_second, burst);
    }

    /// The keys shared with peer proxies: requests we forward to a peer
    /// are signed with its key, and requests signed with one are counted
    /// against that key's budget, not Tor's (module `peer`).
    pub fn set_peer_keys(&mut self, peers: PeerKeys) {
        self.peers = peers;
    }

    /// Our peer credential for a request to `hop`, if we share a key with
    /// its host (nothing is parsed when we share none).
    fn peer_credential(&self, hop: &str, m: &Message<'_>) -> Option<String> {
        if self.peers.is_empty() {
            return None;
        }
        hop_host(hop).and_then(|h| self.peers.credential(&h, m))
    }

    /// Transactions alive (tests, metrics).
    pub fn transactions(&self) -> usize {
        self.tx.len()
    }

    /// Requests dropped so far because their source spent its budget.
    pub fn dropped_requests(&self) -> u64 {
        self.dropped
    }

    /// Whether a request from `from` is within its source's budget.
    fn within_budget(&mut self, from: &P, now: Instant) -> bool {
        let origin = (self.origin_of)(from);
        if self.cfg.relay.is_trusted(origin) {
            return true;
        }
        let key = self.source_of(from);
        self.requests.take(key, now)
    }

    /// How many token opens cost public-key work so far.
    pub fn token_open_attempts(&self) -> u64 {
        self.gate.attempts
    }

    /// The budget key of a peer (of the request being handled: the peer
    /// key that signed it, if one did).
    fn source_of(&self, peer: &P) -> SourceKey {
        self.signed_by
            .unwrap_or_else(|| source_key(peer, (self.origin_of)(peer)))
    }

    /// Gives each call a Tor circuit of its own (the paper's worst case,
    /// and what keeps a peer's relays from linking two calls by their
    /// circuit): every request we send, except a REGISTER, names its call's
    /// [`Circuit`] in what [`Proxy::poll_transmit`] gives, the same for
    /// all of a call's requests (INVITE, CANCEL, ACK, BYE, re-INVITE) and
    /// for no other call's. Off, everything is [`Circuit::Shared`].
    pub fn set_call_circuits(&mut self, on: bool) {
        self.call_circuits = on.then(std::hash::RandomState::new);
    }

    /// The circuit a request of `method` in call `call_id` rides: one per
    /// Call-ID, numbered by a keyed hash (so the number is equal for a
    /// call's requests without any state kept per call, and says nothing
    /// outside this process).
    fn circuit_for(&self, method: &str, call_id: &str) -> Circuit {
        match &self.call_circuits {
            Some(keys) if method != "REGISTER" => {
                Circuit::Call(std::hash::BuildHasher::hash_one(keys, call_id))
            }
            _ => Circuit::Shared,
        }
    }

    /// Names this proxy on Tor links: Via and Record-Route on a hop to or
    /// from a peer for which `is_tor` holds carry `name` (our onion
    /// address) instead of `sent_by`, so no local address crosses Tor.
    /// Route headers naming either are ours.
    pub fn set_tor_name(&mut self, name: String, is_tor: Box<dyn Fn(&P) -> bool + Send>) {
        self.tor = Some(TorName { name, is_tor });
    }

    /// The driver lost the connection to `peer`: contacts bound to it can
    /// no longer be reached (requests to them fail as unreachable, as
    /// RFC 5626 has it, rather than go to the Contact's address).
    /// The flow stays its owner's until the binding lapses.
    pub fn flow_closed(&mut self, peer: &P) {
        for f in self.flows.values_mut() {
            if f.next.as_ref().is_some_and(|n| n.peer == *peer) {
                f.next = None;
            }
        }
    }

    /// How many flow-bound contacts are reachable now.
    pub fn flows(&self) -> usize {
        self.flows.values().filter(|f| f.next.is_some()).count()
    }

    /// Drops lapsed bindings, and flows whose binding lapsed.
    fn sweep(&mut self, now: Instant) {
        self.registrar.expire(now);
        let registrar = &mut self.registrar;
        self.flows.retain(|key, f| {
            registrar
                .lookup(&f.aor, now)
                .iter()
                .any(|b| flow_key(b.contact.expose()).as_deref() == Some(key.as_str()))
        });
        self.accepted.retain(|a| a.until > now);
        self.next_sweep = Some(now + SWEEP);
    }

    /// The name for Via and Record-Route on a hop.
    fn sent_by_for(&self, peers: &[&P]) -> &str {
        match &self.tor {
            Some(t) if peers.iter().any(|p| (t.is_tor)(p)) => &t.name,
            _ => &self.cfg.sent_by,
        }
    }

    /// Whether `host[:port]` is one of our names.
    fn is_our_name(&self, host_port: &str) -> bool {
        host_port.eq_ignore_ascii_case(&self.cfg.sent_by)
            || self
                .tor
                .as_ref()
                .is_some_and(|t| host_port.eq_ignore_ascii_case(&t.name))
    }

    /// Adds or replaces a user of `realm` (one of our domains).
    pub fn set_user(&mut self, realm: &str, user: &str, creds: Credentials) {
        self.auth.set_user(realm, user, creds);
    }

    /// Removes a user (and their PrivaSIP-AES key).
    pub fn remove_user(&mut self, realm: &str, user: &str) {
        self.auth.remove_user(realm, user);
        if let (Ok(id), Some(ring)) = (RealId::new(user), self.keyring.as_mut()) {
            ring.aes_mut().remove_user(&id);
        }
    }

    /// Accepts PrivaSIP tokens opened with these keys: caller tokens in
    /// From and Digest usernames (home proxy), callee tokens in the
    /// Request-URI (callee's proxy). Replaces AES users set before.
    pub fn set_keyring(&mut self, keyring: Keyring) {
        self.keyring = Some(keyring);
    }

    /// Lets `user` hide their ID from everyone but us with PrivaSIP-AES,
    /// keyed by their SHA-256 HA1; tokens below `next_counter` are refused
    /// (persisted from [`StoreEvent::AesCounter`]). For a user already
    /// here with the same key, the higher counter stays.
    pub fn set_aes_user(&mut self, user: &str, sha256: &Ha1, next_counter: u64) -> bool {
        let Ok(id) = RealId::new(user) else {
            return false;
        };
        self.keyring
            .get_or_insert_with(Keyring::default)
            .aes_mut()
            .add_user(id, sha256.expose_hex().as_bytes(), next_counter);
        true
    }

    /// Raises a PrivaSIP-AES user's counter (another proxy sharing our
    /// store saw their token): tokens below `next` stop opening here too.
    pub fn raise_aes_counter(&mut self, user: &str, next: u64) {
        if let (Ok(id), Some(ring)) = (RealId::new(user), self.keyring.as_mut()) {
            ring.aes_mut().raise(&id, next);
        }
    }

    /// The real user behind a user part: a PrivaSIP token opened with our
    /// keys (within `source`'s budget), or the user part itself.
    fn real_user(
        &mut self,
        user: &str,
        call_id: &str,
        source: &P,
        now: Instant,
    ) -> Result<String, Refused> {
        if !Token::looks_like(user) {
            return Ok(user.to_owned());
        }
        let key = self.source_of(source);
        let ring = self.keyring.as_mut().ok_or(Refused::NoKeys)?;
        self.gate.open(ring, user, call_id.as_bytes(), key, now)
    }

    /// Answers a token that gave no user: 404, or 503 when the source
    /// spent its budget.
    fn refuse_token(&mut self, now: Instant, stx: ServerTx, msg: &Message<'_>, why: Refused) {
        // Saying which it is tells the sender only what its own token
        // named; the operator hears of a key we lack (Notice).
        const NO_KEY: &str = "Not Found (no key for this token)";
        match why {
            Refused::DoesNotOpen => self.reply(now, stx, msg, 404, "Not Found", &[]),
            Refused::NoKey { scheme, key_id } => {
                self.notice(
                    now,
                    Notice::UnknownKey {
                        scheme: scheme.name(),
                        key_id: hex::encode(key_id),
                    },
                );
                self.reply(now, stx, msg, 404, NO_KEY, &[]);
            }
            Refused::NoKeys => {
                self.notice(now, Notice::NoKeys);
                self.reply(now, stx, msg, 404, NO_KEY, &[]);
            }
            Refused::Busy => self.reply(
                now,
                stx,
                msg,
                503,
                "Service Unavailable",
                &["Retry-After: 5".to_owned()],
            ),
        }
    }

    /// Runs Digest for `realm`; answers 401/407/403 itself and returns
    /// None unless the request is authenticated.
    fn authenticate(
        &mut self,
        now: Instant,
        stx: ServerTx,
        msg: &Message<'_>,
        realm: &str,
        proxy_auth: bool,
        source: &P,
    ) -> Option<String> {
        let header = if proxy_auth {
            HeaderName::ProxyAuthorization
        } else {
            HeaderName::Authorization
        };
        let key = self.source_of(source);
        let opener = self.keyring.as_mut().map(|r| (r, &mut self.gate));
        match self.auth.check(msg, header, realm, key, opener, now) {
            Verdict::Ok(user) => Some(user),
            Verdict::Busy => {
                self.refuse_token(now, stx, msg, Refused::Busy);
                None
            }
            Verdict::Challenge { stale } => {
                let (code, reason, name) = if proxy_auth {
                    (407, "Proxy Authentication Required", "Proxy-Authenticate")
                } else {
                    (401, "Unauthorized", "WWW-Authenticate")
                };
                let extra: Vec<String> = self
                    .auth
                    .challenges(realm, stale, now)
                    .into_iter()
                    .map(|c| format!("{name}: {c}"))
                    .collect();
                self.reply(now, stx, msg, code, reason, &extra);
                None
            }
            Verdict::Forbidden(why) => {
                self.reply(now, stx, msg, 403, why, &[]);
                None
            }
        }
    }

    /// The location service, e.g. to restore bindings from a store.
    pub fn registrar_mut(&mut self) -> &mut Registrar {
        &mut self.registrar
    }

    /// Feeds bytes that arrived from `from`. A request with a malformed
    /// or missing header is answered with 400 naming the problem when it
    /// can be answered at all (Via, From, To, Call-ID and CSeq readable);
    /// anything else that is malformed is dropped.
    pub fn receive(&mut self, now: Instant, bytes: &[u8], from: P, reliable: bool) {
        // Every known header is checked, not only those routed on: the
        // registrar, Digest and PrivaSIP read most of them. What cannot be
        // answered has no Via to answer to: RFC 3261 §16.3 lets a proxy
        // drop it.
        if self.next_sweep.is_none() {
            self.next_sweep = Some(now + SWEEP);
        }
        let Some((msg, invalid)) = Message::parse_received(bytes, &self.limits) else {
            return;
        };
        // A peer proxy's signature (an HMAC per key, no public-key work)
        // decides whose budget the request is charged to.
        self.signed_by = if msg.is_request() {
            self.peers.verify(&msg).map(SourceKey::PeerProxy)
        } else {
            None
        };
        // Before any state is made for it: a request past its source's
        // budget is dropped without an answer (an answer to a spoofed
        // address would be a reflection).
        if msg.is_request() && !self.within_budget(&from, now) {
            self.dropped += 1;
            return;
        }
        let received = self.tx.receive(now, &msg, from.clone(), reliable);
        if let Some(e) = invalid {
            // §16.3 step 1: act as a UAS and reject it. Retransmissions are
            // absorbed by the transaction, which repeats the answer.
            if let Received::NewRequest(stx) = received {
                let r = e.rejection();
                self.reply(now, stx, &msg, r.code, &r.reason, &[]);
            }
            return;
        }
        match received {
            Received::NewRequest(stx) => self.on_request(now, stx, &msg, bytes, &from),
            Received::Response(ctx, status) => self.on_response(now, ctx, status, &msg),
            Received::AckFor2xx(_) => self.forward_stateless(&msg, &from),
            Received::Stray if msg.is_request() => self.forward_stateless(&msg, &from),
            Received::Stray => self.forward_stray_response(&msg),
            Received::Absorbed => {}
        }
        self.signed_by = None;
    }

    /// Sets Timer C, how long an INVITE branch may ring without an answer
    /// before we cancel it (default [`DEFAULT_TIMER_C`]; RFC 3261 asks for
    /// more than 3 minutes).
    pub fn set_timer_c(&mut self, interval: std::time::Duration) {
        self.timer_c.set_interval(interval);
    }

    /// When to call [`Proxy::handle_timeout`] next.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        [
            self.tx.poll_timeout(),
            self.timer_c.poll_timeout(),
            self.next_sweep,
            self.held.front().map(|h| h.until),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Runs the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.next_sweep.is_some_and(|t| now >= t) {
            self.sweep(now);
        }
        self.expire_held(now);
        for e in self.timer_c.expired(now) {
            match e {
                // §16.8: a branch that rang too long is cancelled...
                Expiry::Cancel(ctx) => {
                    let sent = self
                        .by_client
                        .get(&ctx)
                        .and_then(|stx| self.calls.get(stx))
                        .and_then(|c| c.pending.iter().find(|(c, _)| *c == ctx))
                        .map(|(_, b)| b.clone());
                    if let Some(sent) = sent {
                        self.send_cancel(now, &sent);
                    }
                }
                // ...and one that never rang, or ignored the CANCEL, ends
                // as 408, its transaction dropped.
                Expiry::Timeout(ctx) => {
                    self.tx.abandon(ctx);
                    self.branch_failed(now, ctx, 408, None);
                }
            }
        }
        self.tx.handle_timeout(now);
        self.on_tx_events(now);
    }

    /// The driver could not reach `peer` on `circuit` (None: on any): a
    /// Tor stream that did not open, a connection that closed. Every
    /// branch sent that way and not yet answered ends now as a 503 (RFC
    /// 3261 §17.1.4; upstream it goes as 500, §16.7 step 6), instead of
    /// 32 s later as a 408. When `circuit` is a call's own, the call is
    /// over too: it is ended with a BYE each way (module `live_calls`).
    pub fn transport_failed(&mut self, now: Instant, peer: &P, circuit: Option<Circuit>)
    where
        P: PartialEq,
    {
        if self.tx.transport_failed(peer, circuit) > 0 {
            self.on_tx_events(now);
        }
        if let Some(Circuit::Call(n)) = circuit {
            self.call_circuit_lost(now, n);
        }
    }

    /// What the transaction layer reported.
    fn on_tx_events(&mut self, now: Instant) {
        while let Some(e) = self.tx.poll_event() {
            match e {
                // §16.7 step 10... a branch that timed out counts as 408.
                Event::Timeout(ctx) => self.branch_failed(now, ctx, 408, None),
                // ...and one whose next hop could not be reached as 503.
                Event::TransportError(ctx) => self.branch_failed(now, ctx, 503, None),
                Event::NoAck(stx) => {
                    self.calls.remove(&stx);
                }
            }
        }
    }

    /// The next thing an operator should hear of (the driver logs it).
    pub fn poll_notice(&mut self) -> Option<Notice> {
        self.notices.pop_front()
    }

    /// Queues `n` for the operator, at most one a second (anyone can send
    /// tokens naming made-up keys; the log must not be theirs to fill).
    fn notice(&mut self, now: Instant, n: Notice) {
        if self.next_notice.is_some_and(|at| now < at) || self.notices.len() >= MAX_NOTICES {
            return;
        }
        self.next_notice = Some(now + std::time::Duration::from_secs(1));
        self.notices.push_back(n);
    }

    /// The next change to persist. With [`Proxy::set_store_commits`],
    /// the driver counts what it hands the store in this order and says
    /// how many are committed with [`Proxy::store_committed`].
    pub fn poll_store_event(&mut self) -> Option<StoreEvent> {
        self.queue_aes_counters();
        let e = self.store_events.pop_front()?;
        self.store_polled += 1;
        Some(e)
    }

    /// PrivaSIP-AES counters the keyring raised (tokens it opened), as
    /// store events.
    fn queue_aes_counters(&mut self) {
        if let Some(ring) = self.keyring.as_mut() {
            for (id, next) in ring.take_aes_counters() {
                self.store_events.push_back(StoreEvent::AesCounter {
                    user: Sensitive::new(id.expose().to_owned()),
                    next,
                });
            }
        }
    }

    /// A 200 to a REGISTER promises the binding exists: with this on, it
    /// waits until the driver says the store committed the bindings
    /// ([`Proxy::store_committed`]), and becomes a 503 with Retry-After if
    /// that takes longer than 5 s or too many wait. A 2xx the home proxy
    /// accounts (a call answered, a BYE answered) waits the same way for
    /// its record, and goes up anyway after 5 s. Off (no store, or
    /// tests), everything leaves at once.
    pub fn set_store_commits(&mut self, on: bool) {
        self.store_commits = on;
    }

    /// The first `events` store events [`Proxy::poll_store_event`] gave
    /// are committed: the 200s that waited for them leave.
    pub fn store_committed(&mut self, now: Instant, events: u64) {
        self.store_committed = self.store_committed.max(events);
        while self
            .held
            .front()
            .is_some_and(|h| h.needs <= self.store_committed)
        {
            if let Some(h) = self.held.pop_front() {
                self.held_calls.remove(&h.stx);
                let _ = self.tx.respond(now, h.stx, h.ok);
            }
        }
    }

    /// 200s that waited too long for the store are refused instead.
    fn expire_held(&mut self, now: Instant) {
        while self.held.front().is_some_and(|h| now >= h.until) {
            if let Some(h) = self.held.pop_front() {
                self.held_calls.remove(&h.stx);
                let _ = self.tx.respond(now, h.stx, h.refusal.unwrap_or(h.ok));
            }
        }
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit<P>> {
        self.outbox.pop_front().or_else(|| self.tx.poll_transmit())
    }

    /// A tag: 72 random bits, nothing else (no counter, no clock).
    fn tag(&mut self) -> String {
        let mut b = [0u8; 9];
        self.rng.fill_bytes(&mut b);
        B64.encode(b)
    }

    /// Answers a request ourselves. A refusal (3xx and up) is stateless:
    /// sent once, nothing kept, its To tag derived from the request so
    /// that a retransmission gets the same answer and the ACK of a refused
    /// INVITE is recognised (Kamailio's `sl_send_reply`). A refused
    /// request so costs no memory, and a spoofed source gets one answer,
    /// not eleven. Anything else goes through the server transaction.
    fn reply(
        &mut self,
        now: Instant,
        stx: ServerTx,
        req: &Message<'_>,
        code: u16,
        reason: &str,
        extra: &[String],
    ) {
        if code >= 300 {
            let tag = self.signer.reply_tag(
                req.call_id().unwrap_or_default(),
                req.from().and_then(|f| f.tag()).unwrap_or_default(),
            );
            let resp = response_for(req, code, reason, &tag, extra);
            let _ = self.tx.respond_once(stx, resp);
            return;
        }
        let tag = self.tag();
        let resp = response_for(req, code, reason, &tag, extra);
        // The transaction exists and has sent no final response yet.
        let _ = self.tx.respond(now, stx, resp);
    }

    /// Whether `ack` acknowledges one of our stateless refusals.
    fn acks_our_refusal(&self, ack: &Message<'_>) -> bool {
        let (Some(call_id), Some(to_tag)) = (ack.call_id(), ack.to().and_then(|t| t.tag())) else {
            return false;
        };
        let from_tag = ack.from().and_then(|f| f.tag()).unwrap_or_default();
        self.signer.reply_tag(call_id, from_tag) == to_tag
    }

    fn is_us(&self, uri: &SipUri<'_>) -> bool {
        [
            Some(self.cfg.sent_by.as_str()),
            self.tor.as_ref().map(|t| t.name.as_str()),
        ]
        .into_iter()
        .flatten()
        .any(|name| names(name, uri.host, uri.port))
    }

    fn is_our_domain(&self, host: &str) -> bool {
        self.cfg
            .domains
            .iter()
            .any(|d| d.eq_ignore_ascii_case(host))
    }

    /// §16.6 step 8: a branch that is a hash of what identifies the
    /// request and does not change from hop to hop (so not the top Via),
    /// so that the same request coming back is a loop (§16.3 step 4) and a
    /// spiral (changed Request-URI) is not. The method is in it so that an
    /// ACK forwarded statelessly does not share its INVITE's branch.
    fn branch_for(&self, req: &Message<'_>) -> String {
        let seq = req.cseq().map_or([0; 4], |c| c.seq.to_be_bytes());
        let mut parts: Vec<&[u8]> = vec![
            req.request_uri().unwrap_or_default().as_bytes(),
            req.from()
                .and_then(|f| f.tag())
                .unwrap_or_default()
                .as_bytes(),
            req.to()
                .and_then(|t| t.tag())
                .unwrap_or_default()
                .as_bytes(),
            req.call_id().unwrap_or_default().as_bytes(),
            &seq,
            req.cseq_method().map_or("", |m| m.as_str()).as_bytes(),
        ];
        parts.extend(req.values(HeaderName::ProxyRequire).map(str::as_bytes));
        parts.extend(req.values(HeaderName::Route).map(str::as_bytes));
        format!("{BRANCH_COOKIE}{}", self.signer.branch(&parts))
    }

    /// Pops the top Route if it names us; true if it also carried our
    /// route tag for this Call-ID (a dialog we record-routed).
    fn pop_our_route(&self, m: &mut Message<'_>) -> bool {
        let ours = match m.routes().first() {
            Some(top) => match &top.uri {
                Uri::Sip(u) if self.is_us(u) => Some(
                    u.params
                        .get(ROUTE_PARAM)
                        .flatten()
                        .zip(m.call_id())
                        .is_some_and(|(tag, call_id)| self.signer.route_ok(call_id, tag)),
                ),
                _ => None,
            },
            None => None,
        };
        let Some(proof) = ours else {
            return false;
        };
        m.pop_route();
        proof
    }

    /// §16.6: one copy of the request to one target.
    fn forward(
        &mut self,
        now: Instant,
        msg: &Message<'_>,
        target: &str,
        branch: &str,
        source: &P,
        hidden: &mut Option<Vec<String>>,
    ) -> Result<(ClientTx, Vec<u8>), NoHop> {
        let mut m = msg.clone();
        m.set_request_uri(target.to_owned())
            .map_err(|_| NoHop::Unroutable)?;
        let mf = msg.max_forwards().map_or(70, |n| n.saturating_sub(1));
        m.set_max_forwards(mf);
        // §16.6 step 6: the next hop is the top Route, else the target.
        let hop = match m.routes().first() {
            Some(r) => r.uri_raw.to_owned(),
            None => target.to_owned(),
        };
        let next = self.next_hop(&hop)?;
        let call_id = msg.call_id().unwrap_or_default().to_owned();
        // Topology hiding (module `hide`): on a hidden link the Vias and
        // Record-Routes below ours, our user's domain and Contact stay
        // behind, sealed in what we add.
        let hide = self.hides(&next.peer);
        let mut hidden_vias = Vec::new();
        let mut hidden_routes = Vec::new();
        if hide {
            hidden_vias = m.values(HeaderName::Via).map(str::to_owned).collect();
            m.remove_header(HeaderName::Via);
            let from_host = m
                .from()
                .and_then(|f| f.uri.as_sip().map(|u| u.host.to_owned()))
                .filter(|h| self.is_our_domain(h));
            hidden_vias.insert(0, from_host.clone().unwrap_or_default());
            if from_host.is_some() {
                m.set_host(HeaderName::From, ANONYMOUS_HOST)
                    .map_err(|_| NoHop::Unroutable)?;
            }
            if self.cfg.record_route {
                hidden_routes = m
                    .address_texts(HeaderName::RecordRoute)
                    .into_iter()
                    .map(str::to_owned)
                    .collect();
                m.remove_header(HeaderName::RecordRoute);
            }
            if msg.method().is_some_and(|x| x.as_str() != "REGISTER") {
                let t = via_transport(&next).to_ascii_lowercase();
                self.mask_contact(&mut m, &call_id, &next.peer, &t);
            }
        }
        // §16.6 step 4. The Record-Route travels both ways (in this request
        // and in responses), so a dialog touching Tor on either side sees
        // only our Tor name. Its tag lets the dialog's requests through
        // the relay policy.
        if self.cfg.record_route {
            let tag = self.signer.route_tag(&call_id);
            let mut entry = String::with_capacity(128);
            entry.push_str("<sip:");
            entry.push_str(self.sent_by_for(&[source, &next.peer]));
            entry.push_str(";lr;");
            entry.push_str(ROUTE_PARAM);
            entry.push('=');
            entry.push_str(&tag);
            if !hidden_routes.is_empty() {
                let parts: Vec<&str> = hidden_routes.iter().map(String::as_str).collect();
                entry.push(';');
                entry.push_str(ROUTES_PARAM);
                entry.push('=');
                self.sealer
                    .seal_into(&mut entry, &mut self.rng, Kind::Routes, &[&call_id], &parts)
                    .ok_or(NoHop::TooLarge)?;
            }
            entry.push('>');
            m.push_record_route(entry).map_err(|_| NoHop::Unroutable)?;
        }
        // The branch carries a tag over the Via below ours, so that a
        // response that arrives after the transaction is sent on only to
        // where this request came from (see forward_stray_response).
        let via_tag = msg
            .top_via()
            .map(|v| self.signer.via_tag(branch, &v))
            .unwrap_or_default();
        let full_branch = format!("{branch}.{via_tag}");
        let mut via = String::with_capacity(if hide { 512 } else { 128 });
        via.push_str("SIP/2.0/");
        via.push_str(via_transport(&next));
        via.push(' ');
        via.push_str(self.sent_by_for(&[&next.peer]));
        via.push_str(";branch=");
        via.push_str(&full_branch);
        if hide {
            let parts: Vec<&str> = hidden_vias.iter().map(String::as_str).collect();
            via.push(';');
            via.push_str(VIA_PARAM);
            via.push('=');
            self.sealer
                .seal_into(
                    &mut via,
                    &mut self.rng,
                    Kind::Vias,
                    &[&call_id, &full_branch],
                    &parts,
                )
                .ok_or(NoHop::TooLarge)?;
        }
        m.push_via(via).map_err(|_| NoHop::Unroutable)?;
        if hide && hidden.is_none() {
            *hidden = Some(hidden_vias);
        }
        if let Some(c) = self.peer_credential(&hop, &m) {
            m.append_header("Proxy-Authorization", c)
                .map_err(|_| NoHop::Unroutable)?;
        }
        let bytes = m.to_bytes();
        let circuit = self.circuit_for(msg.method().map_or("", |x| x.as_str()), &call_id);
        let ctx = self
            .tx
            .send_request(now, bytes.clone(), next.peer, next.reliable, circuit)
            .map_err(|_| NoHop::Unroutable)?;
        Ok((ctx, bytes))
    }

    /// Where a hop goes: a flow-bound URI (`;ob`) over its flow and
    /// nowhere else once that flow is gone (RFC 5626: never a new
    /// connection to the Contact's address); any other URI as the
    /// resolver says, if the relay policy lets us dial what it resolved
    /// to.
    fn next_hop(&self, uri: &str) -> Result<Next<P>, NoHop> {
        if let Some(key) = flow_key(uri) {
            return self
                .flows
                .get(&key)
                .and_then(|f| f.next.clone())
                .ok_or(NoHop::FlowGone);
        }
        let Ok(Uri::Sip(u)) = Uri::parse(uri) else {
            return Err(NoHop::Unroutable);
        };
        // No transport parameter: the resolver picks ("" here).
        let transport = u
            .params
            .get("transport")
            .flatten()
            .unwrap_or("")
            .to_ascii_uppercase();
        self.dial(u.host, u.port, &transport)
    }

    /// Resolves `host` and checks the address it resolved to against the
    /// relay policy: the address finally dialled is what counts.
    fn dial(&self, host: &str, port: Option<u16>, transport: &str) -> Result<Next<P>, NoHop> {
        let next = (self.resolve)(host, port, transport).ok_or(NoHop::Unroutable)?;
        self.cfg
            .relay
            .may_dial((self.origin_of)(&next.peer), self.cfg.relay.is_routed(host))
            .map_err(NoHop::Refused)?;
        Ok(next)
    }

    fn on_register(&mut self, now: Instant, stx: ServerTx, msg: &Message<'_>, source: &P) {
        let Some(to) = msg.to() else {
            self.reply(now, stx, msg, 400, "No To", &[]);
            return;
        };
        let Some(user) = to.uri.as_sip().and_then(|u| u.user) else {
            self.reply(now, stx, msg, 400, "To has no user", &[]);
            return;
        };
        let host = to
            .uri
            .as_sip()
            .map(|u| u.host.to_ascii_lowercase())
            .unwrap_or_default();
        if !self.is_our_domain(&host) {
            self.reply(now, stx, msg, 403, "Not Our Domain", &[]);
            return;
        }
        let call_id = msg.call_id().unwrap_or_default().to_owned();
        // Credentials first where they are required: checking them is
        // cheap, and a token in To is then opened only for a request that
        // answers our challenge (and usually from the cache, as the
        // Digest user name is the same token).
        let mut who = None;
        if self.cfg.authenticate {
            match self.authenticate(now, stx, msg, &host, false, source) {
                Some(w) => who = Some(w),
                None => return,
            }
        }
        let user = match self.real_user(user, &call_id, source, now) {
            Ok(user) => user,
            Err(why) => {
                self.refuse_token(now, stx, msg, why);
                return;
            }
        };
        // With users configured, a registration needs their credentials,
        // and one may register only oneself.
        if who.is_none() && self.auth.knows(&host, &user) {
            match self.authenticate(now, stx, msg, &host, false, source) {
                Some(w) => who = Some(w),
                None => return,
            }
        }
        if who.as_ref().is_some_and(|w| *w != user) {
            self.reply(now, stx, msg, 403, "Not Your Address Of Record", &[]);
            return;
        }
        if self.store_is_behind() {
            let retry = ["Retry-After: 5".to_owned()];
            self.reply(now, stx, msg, 503, "Store Busy", &retry);
            return;
        }
        let aor = format!("sip:{user}@{host}");
        match self.registrar.register_changes(&aor, msg, now) {
            Ok(privasip_registrar::Registered { bindings, touched }) => {
                self.bind_flows(&aor, msg, source, &bindings);
                let extra: Vec<String> = bindings
                    .iter()
                    .map(|b| {
                        format!(
                            "Contact: <{}>;expires={}",
                            b.contact.expose(),
                            b.remaining(now)
                        )
                    })
                    .collect();
                self.store_events.push_back(StoreEvent::Bindings {
                    aor: Sensitive::new(aor),
                    bindings,
                    touched,
                });
                if self.store_commits {
                    self.hold_until_committed(now, stx, msg, &extra);
                } else {
                    self.reply(now, stx, msg, 200, "OK", &extra);
                }
            }
            Err(e) => {
                let mut extra = Vec::new();
                if let privasip_registrar::RegisterError::IntervalTooBrief { min_expires } = &e {
                    extra.push(format!("Min-Expires: {min_expires}"));
                }
                let r = e.rejection();
                self.reply(now, stx, msg, r.code, &r.reason, &extra);
            }
        }
    }

    /// Whether the store is too far behind to take another REGISTER: too
    /// many 200s wait for it, or too many events are not yet committed
    /// (a hung database must not grow the writer's queue without end).
    fn store_is_behind(&self) -> bool {
        let uncommitted = (self.store_polled + self.store_events.len() as u64)
            .saturating_sub(self.store_committed);
        self.store_commits && (self.held.len() >= MAX_HELD || uncommitted >= MAX_UNCOMMITTED)
    }

    /// Keeps a REGISTER's 200 until the store event just queued is
    /// committed.
    fn hold_until_committed(
        &mut self,
        now: Instant,
        stx: ServerTx,
        msg: &Message<'_>,
        extra: &[String],
    ) {
        let retry = ["Retry-After: 5".to_owned()];
        let tag = self.tag();
        let ok = response_for(msg, 200, "OK", &tag, extra);
        let refusal = response_for(msg, 503, "Store Unavailable", &tag, &retry);
        // The AES counter the REGISTER's token raised is committed with
        // its bindings: a token answered 200 never opens again, even
        // after a crash.
        self.queue_aes_counters();
        self.hold_response(now, stx, ok, Some(refusal));
    }

    /// Keeps `ok` (for `stx`) until every store event queued so far is
    /// committed; `refusal` (or, without one, `ok`) goes after
    /// [`STORE_PATIENCE`].
    fn hold_response(
        &mut self,
        now: Instant,
        stx: ServerTx,
        ok: Vec<u8>,
        refusal: Option<Vec<u8>>,
    ) {
        let needs = self.store_polled + self.store_events.len() as u64;
        self.held.push_back(Held {
            needs,
            stx,
            ok,
            refusal,
            until: now + STORE_PATIENCE,
        });
    }

    /// Binds each `;ob` Contact of a successful REGISTER to the
    /// connection it came over. The Via's transport says whether that
    /// flow is reliable.
    fn bind_flows(
        &mut self,
        aor: &str,
        msg: &Message<'_>,
        source: &P,
        bindings: &[privasip_registrar::Binding],
    ) {
        // The registrar has applied expires=0 and Contact: *; a flow lives
        // as long as its binding.
        let live: std::collections::HashSet<String> = bindings
            .iter()
            .filter_map(|b| flow_key(b.contact.expose()))
            .collect();
        self.flows
            .retain(|key, f| f.aor != aor || live.contains(key));
        let Some(privasip_message::ContactValue::Addrs(addrs)) = msg.contacts() else {
            return;
        };
        let reliable = msg
            .top_via()
            .is_some_and(|v| !v.transport.eq_ignore_ascii_case("UDP"));
        for a in addrs {
            let Some(key) = flow_key(a.uri_raw).filter(|k| live.contains(k)) else {
                continue;
            };
            // Someone else's flow stays theirs.
            if self.flows.get(&key).is_some_and(|f| f.aor != aor) {
                continue;
            }
            self.flows.insert(
                key,
                Flow {
                    aor: aor.to_owned(),
                    next: Some(Next {
                        peer: source.clone(),
                        reliable,
                    }),
                },
            );
        }
    }

    /// §16.10: answer the CANCEL, then cancel every pending branch.
    fn on_cancel(&mut self, now: Instant, stx: ServerTx, msg: &Message<'_>) {
        let Some(invite_stx) = self.tx.invite_for_cancel(msg) else {
            self.reply(now, stx, msg, 481, "Call/Transaction Does Not Exist", &[]);
            return;
        };
        self.reply(now, stx, msg, 200, "OK", &[]);
        let pending: Vec<Vec<u8>> = self
            .calls
            .get(&invite_stx)
            .map(|c| c.pending.iter().map(|(_, b)| b.clone()).collect())
            .unwrap_or_default();
        for sent in pending {
            self.send_cancel(now, &sent);
        }
    }

    /// A CANCEL for a branch we forwarded (§9.1): same Request-URI, Call-ID,
    /// From, To, CSeq number and our top Via; a transaction of its own.
    fn send_cancel(&mut self, now: Instant, forwarded: &[u8]) {
        let Ok(inv) = Message::parse_datagram(forwarded, &self.limits) else {
            return;
        };
        let Some(cancel) = inv.cancel_request() else {
            return;
        };
        let hop = inv
            .routes()
            .first()
            .map(|r| r.uri_raw.to_owned())
            .or_else(|| inv.request_uri().map(str::to_owned));
        if let Some(next) = hop.and_then(|h| self.next_hop(&h).ok()) {
            let circuit = self.circuit_for("CANCEL", inv.call_id().unwrap_or_default());
            let _ = self
                .tx
                .send_request(now, cancel, next.peer, next.reliable, circuit);
        }
    }

    /// §16.7: a response on one of our branches.
    fn on_response(&mut self, now: Instant, ctx: ClientTx, status: u16, msg: &Message<'_>) {
        let Some(&stx) = self.by_client.get(&ctx) else {
            if (200..300).contains(&status) {
                self.forward_2xx_again(now, ctx, msg);
            }
            // Otherwise a response to a CANCEL we sent, or a branch long
            // done.
            return;
        };
        if status == 100 {
            return;
        }
        let from = self.calls.get(&stx).map(|c| c.from.clone());
        let up = self.upstream(msg, stx, from.as_ref());
        if up.vias().is_empty() {
            // Only our Via: nothing to send up as it is. A final one still
            // ends the branch (as 502), or the server transaction and the
            // call would wait for an answer forever.
            if status >= 200 {
                self.branch_failed(now, ctx, 502, None);
            }
            return;
        }
        let bytes = up.to_bytes();
        if status < 200 {
            self.timer_c.provisional(now, ctx);
            let _ = self.tx.respond(now, stx, bytes);
            return;
        }
        self.timer_c.stop(ctx);
        if (200..300).contains(&status) {
            // Every 2xx goes up at once (§16.7 step 5), unless the home
            // proxy accounts it: then once the record is committed.
            let mut accounted = false;
            let call_id = msg.call_id().unwrap_or_default().to_owned();
            let mut answered = None;
            let others: Vec<Vec<u8>> = match self.calls.get_mut(&stx) {
                Some(call) => {
                    // A call on a circuit of its own is watched from its
                    // first 2xx (module `live_calls`).
                    if call.invite && !call.done && self.call_circuits.is_some() {
                        let sent = call.pending.iter().find(|(c, _)| *c == ctx);
                        answered = sent
                            .map(|(_, b)| (call.request.clone(), b.clone(), call.caller.is_some()));
                    }
                    if call.invite {
                        let from = call.from.clone();
                        self.accepted.entry(
                            ctx,
                            || Accepted {
                                stx,
                                from,
                                until: now + TIMER_L,
                            },
                            |a| a.until <= now,
                            |a| a.until,
                        );
                    }
                    // Accounting: the home proxy records its user's call
                    // once, on the first 2xx; the callee as routed.
                    if call.invite
                        && !call.done
                        && let Some(caller) = call.caller.clone()
                    {
                        let callee = Message::parse_datagram(&call.request, &self.limits)
                            .ok()
                            .and_then(|r| r.request_uri().map(str::to_owned))
                            .unwrap_or_default();
                        self.store_events.push_back(StoreEvent::CallStarted {
                            caller: Sensitive::new(caller),
                            callee: Sensitive::new(callee),
                            call_id: Sensitive::new(call_id.clone()),
                        });
                        accounted = true;
                    }
                    if call.bye && !call.done {
                        self.store_events.push_back(StoreEvent::CallEnded {
                            call_id: Sensitive::new(call_id.clone()),
                        });
                        accounted = true;
                    }
                    call.done = true;
                    call.pending.retain(|(c, _)| *c != ctx);
                    if call.invite {
                        call.pending.iter().map(|(_, b)| b.clone()).collect()
                    } else {
                        Vec::new()
                    }
                }
                None => Vec::new(),
            };
            if let Some((received, forwarded, billed)) = answered {
                let a = live_calls::Answered {
                    received: &received,
                    forwarded: &forwarded,
                    answer: msg,
                    up: &up,
                    accounted: billed,
                };
                self.watch_call(now, &a);
            }
            if self.store_commits && accounted && self.held.len() < MAX_HELD {
                // With the counter the caller's AES token raised: a token
                // whose call was answered never opens again.
                self.queue_aes_counters();
                self.hold_response(now, stx, bytes, None);
                self.held_calls.insert(stx);
            } else {
                let _ = self.tx.respond(now, stx, bytes);
            }
            // Other branches of an INVITE are cancelled (§16.7 step 10).
            for sent in others {
                self.send_cancel(now, &sent);
            }
            self.by_client.remove(&ctx);
            self.finish_if_done(stx);
            return;
        }
        self.branch_failed(now, ctx, status, Some(bytes));
    }

    /// §16.7 step 3 for a response on one of our branches of `stx`: our
    /// Via goes, what we hid comes back, and its Contact is masked for
    /// `from` (where the request came from) when that link is hidden.
    fn upstream<'m>(&mut self, msg: &Message<'m>, stx: ServerTx, from: Option<&P>) -> Message<'m> {
        let mut up = msg.clone();
        up.pop_via();
        if let Some(top) = msg.top_via() {
            let known = self.calls.get(&stx).and_then(|c| c.hidden_vias.as_deref());
            self.unhide_response(&mut up, &top, known);
        }
        if let Some(from) = from {
            self.mask_response_contact(&mut up, from);
        }
        up
    }

    /// A retransmission of the 2xx an INVITE branch got (its ACK was lost,
    /// or the first 2xx was): RFC 6026 sends each one up, in the server
    /// transaction's Accepted state, so the caller ACKs again. Without it
    /// one lost UDP 200 or ACK fails the call.
    fn forward_2xx_again(&mut self, now: Instant, ctx: ClientTx, msg: &Message<'_>) {
        let Some(a) = self.accepted.get(&ctx).filter(|a| now < a.until) else {
            return;
        };
        let (stx, from) = (a.stx, a.from.clone());
        // The first 2xx still waits for its accounting record: it goes
        // up with it, and the callee retransmits until it is ACKed.
        if self.held_calls.contains(&stx) {
            return;
        }
        let up = self.upstream(msg, stx, Some(&from));
        if !up.vias().is_empty() {
            let _ = self.tx.respond(now, stx, up.to_bytes());
        }
    }

    /// A branch ended without success: keep the best answer, and send it
    /// when no branch is left (§16.7 steps 4 and 6).
    fn branch_failed(
        &mut self,
        now: Instant,
        ctx: ClientTx,
        status: u16,
        response: Option<Vec<u8>>,
    ) {
        self.timer_c.stop(ctx);
        let Some(stx) = self.by_client.remove(&ctx) else {
            return;
        };
        let tag = self.tag();
        let Some(call) = self.calls.get_mut(&stx) else {
            return;
        };
        call.pending.retain(|(c, _)| *c != ctx);
        let response = match response {
            Some(r) => r,
            None => match Message::parse_datagram(&call.request, &self.limits) {
                Ok(req) => {
                    let reason = match status {
                        408 => "Request Timeout",
                        503 => "Next Hop Unreachable",
                        _ => "Bad Gateway",
                    };
                    response_for(&req, status, reason, &tag, &[])
                }
                Err(_) => return,
            },
        };
        if better(status, call.best.as_ref().map(|b| b.0)) {
            call.best = Some((status, response));
        }
        if call.pending.is_empty() && !call.done {
            call.done = true;
            if let Some((code, best)) = call.best.take() {
                // §16.7 step 6: a 503 goes up as 500.
                let best = if code == 503 {
                    to_500(&best).unwrap_or(best)
                } else {
                    best
                };
                let _ = self.tx.respond(now, stx, best);
            }
        }
        self.finish_if_done(stx);
    }

    fn finish_if_done(&mut self, stx: ServerTx) {
        if self
            .calls
            .get(&stx)
            .is_some_and(|c| c.done && c.pending.is_empty())
        {
            self.calls.remove(&stx);
        }
    }

    /// ACK for a 2xx and other requests outside transactions (§16.11):
    /// only along our own signed Record-Route, or for a trusted peer.
    fn forward_stateless(&mut self, msg: &Message<'_>, source: &P) {
        // The ACK of an INVITE we refused ourselves ends here.
        if msg.method().is_some_and(|m| m.as_str() == "ACK") && self.acks_our_refusal(msg) {
            return;
        }
        let mut m = msg.clone();
        let route_proof = self.pop_our_route(&mut m);
        // The ACK of a 2xx to one of our Contact handles goes to the
        // Contact it stands for.
        let call_id = msg.call_id().unwrap_or_default().to_owned();
        let handle = match msg.request_uri_parsed() {
            Some(Uri::Sip(u)) => self.open_handle(&u, &call_id),
            _ => None,
        };
        if let Some(contact) = &handle
            && m.set_request_uri(contact.clone()).is_err()
        {
            return;
        }
        if !route_proof && handle.is_none() && !self.cfg.relay.is_trusted((self.origin_of)(source))
        {
            return;
        }
        let hop = match m.routes().first() {
            Some(r) => r.uri_raw.to_owned(),
            None => match m.request_uri() {
                Some(u) => u.to_owned(),
                None => return,
            },
        };
        // An ACK for a 2xx targets the callee's Contact, never our domain
        // (RFC 3261 §13.2.2.4); one that does has nowhere to go.
        if let Ok(Uri::Sip(u)) = Uri::parse(&hop)
            && self.is_our_domain(u.host)
            && m.routes().is_empty()
        {
            return;
        }
        let Ok(next) = self.next_hop(&hop) else {
            return;
        };
        let mf = msg.max_forwards().map_or(70, |n| n.saturating_sub(1));
        if mf == 0 {
            return;
        }
        m.set_max_forwards(mf);
        let branch = self.branch_for(msg);
        // On a hidden link an ACK needs no Via below ours (no response
        // comes back to it), no Contact (the dialog's target is set), nor
        // our user's domain.
        if self.hides(&next.peer) {
            m.remove_header(HeaderName::Via);
            if msg.method().is_some_and(|x| x.as_str() == "ACK") {
                m.remove_header(HeaderName::Contact);
            } else {
                let t = via_transport(&next).to_ascii_lowercase();
                self.mask_contact(&mut m, &call_id, &next.peer, &t);
            }
            let ours = m
                .from()
                .and_then(|f| f.uri.as_sip().map(|u| self.is_our_domain(u.host)))
                .unwrap_or(false);
            if ours && m.set_host(HeaderName::From, ANONYMOUS_HOST).is_err() {
                return;
            }
        }
        if m.push_via(format!(
            "SIP/2.0/{} {};branch={branch}",
            via_transport(&next),
            self.sent_by_for(&[&next.peer])
        ))
        .is_err()
        {
            return;
        }
        remove_peer_credentials(&mut m);
        if let Some(c) = self.peer_credential(&hop, &m)
            && m.append_header("Proxy-Authorization", c).is_err()
        {
            return;
        }
        let circuit = self.circuit_for("ACK", &call_id);
        self.outbox.push_back(Transmit {
            to: next.peer,
            circuit,
            bytes: m.to_bytes(),
        });
    }

    /// A response matching no transaction (a 2xx retransmission after the
    /// INVITE transaction ended): pop our Via, send to the next one, but
    /// only if our branch's tag vouches for it (the Via below ours is the
    /// one the request came with), and only where we may dial.
    fn forward_stray_response(&mut self, msg: &Message<'_>) {
        let Some(top) = msg.top_via() else { return };
        let ours = match top.port {
            Some(p) => format!("{}:{p}", top.host),
            None => top.host.to_owned(),
        };
        if !self.is_our_name(&ours) {
            return;
        }
        let Some((branch, tag)) = top.branch().and_then(|b| b.rsplit_once('.')) else {
            return;
        };
        let mut m = msg.clone();
        m.pop_via();
        self.unhide_response(&mut m, &top, None);
        let Some(next_via) = m.top_via() else { return };
        if !self.signer.via_ok(branch, &next_via, tag) {
            return;
        }
        // §18.2.2: received and rport say where the request really came from.
        let host = next_via.received().unwrap_or(next_via.host).to_owned();
        let port = match next_via.rport() {
            Some(Some(p)) => p.parse().ok(),
            _ => next_via.port,
        };
        let transport = next_via.transport.to_ascii_uppercase();
        if let Ok(next) = self.dial(&host, port, &transport) {
            self.mask_response_contact(&mut m, &next.peer);
            // Back towards the caller on the call's circuit, like the
            // call's requests.
            let circuit = self.circuit_for("", msg.call_id().unwrap_or_default());
            self.outbox.push_back(Transmit {
                to: next.peer,
                circuit,
                bytes: m.to_bytes(),
            });
        }
    }
}

/// Why a request could not be sent to a target, worst last: the answer
/// names the most telling one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum NoHop {
    /// No route: the resolver knows no such host.
    Unroutable,
    /// The relay policy refuses to dial where it resolved to.
    Refused(Refusal),
    /// A flow-bound contact whose connection is gone.
    FlowGone,
    /// More to hide than fits in our headers.
    TooLarge,
}

/// The budget key of a peer whose origin is known; a hash of the peer
/// itself when the driver gives no address.
fn source_key<P: Hash>(peer: &P, origin: Origin) -> SourceKey {
    SourceKey::of(origin, || {
        let mut h = DefaultHasher::new();
        peer.hash(&mut h);
        h.finish()
    })
}

/// The host of a hop's URI, lowercase.
fn hop_host(uri: &str) -> Option<String> {
    match Uri::parse(uri) {
        Ok(Uri::Sip(u)) => Some(u.host.to_ascii_lowercase()),
        _ => None,
    }
}

/// The request budgets for `per_second` and `burst` a source.
fn request_budget(per_second: u32, burst: u32) -> Tiered {
    Tiered::new(per_second, burst, REQUEST_SOURCES, MAX_PEER_KEYS + 1)
}

/// The Via transport token for a hop.
fn via_transport<P>(next: &Next<P>) -> &'static str {
    if next.reliable { "TCP" } else { "UDP" }
}

/// §16.7 step 6: is `new` a better final response than `old`? 6xx wins;
/// otherwise the lowest class.
fn better(new: u16, old: Option<u16>) -> bool {
    let rank = |s: u16| if s >= 600 { 0 } else { s };
    match old {
        None => true,
        Some(old) => rank(new) < rank(old),
    }
}

fn to_500(resp: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(resp).ok()?;
    let (_, rest) = text.split_once("\r\n")?;
    Some(format!("SIP/2.0 500 Server Internal Error\r\n{rest}").into_bytes())
}

#[cfg(test)]
mod tests {
    use super::names;

    #[test]
    fn our_names_match_host_and_port() {
        assert!(names("192.0.2.10:5060", "192.0.2.10", Some(5060)));
        assert!(names("192.0.2.10:5060", "192.0.2.10", None));
        assert!(names("P.example", "p.EXAMPLE", None));
        assert!(names("[::1]:5060", "[::1]", Some(5060)));
        assert!(!names("192.0.2.10:5060", "192.0.2.10", Some(5061)));
        assert!(!names("192.0.2.10", "192.0.2.10", Some(5060)));
        assert!(!names("192.0.2.10:5060", "192.0.2.1", None));
        assert!(!names("192.0.2.1", "192.0.2.10", None));
        // Multi-byte text never splits a character.
        assert!(!names("é:5060", "e", None));
        assert!(!names("ab", "é", None));
    }
}
