//! The proxy: RFC 3261 §16 on top of the transaction layer.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::time::Instant;

use privasip_digest::Ha1;
use privasip_identity::{Keyring, RealId, Token};
use privasip_message::{BRANCH_COOKIE, HasSipStatus, HeaderName, Limits, Message, SipUri, Uri};
use privasip_registrar::{Registrar, RegistrarConfig};
use privasip_transaction::{ClientTx, Event, Received, ServerTx, Transactions, Transmit};

use crate::auth::{Authenticator, Credentials, Verdict};
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
}

/// What the driver should persist (the core does no I/O). It carries real
/// IDs: `Debug` shows only which kind of event it is.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreEvent {
    /// The bindings of an address of record are now these.
    Bindings {
        /// The address of record (real, never a token).
        aor: String,
        /// Its bindings.
        bindings: Vec<privasip_registrar::Binding>,
    },
    /// A call this proxy authenticated was answered (accounting).
    CallStarted {
        /// The authenticated caller (real ID).
        caller: String,
        /// The callee as routed (a token under PrivaSIP-2).
        callee: String,
        /// The dialog's Call-ID.
        call_id: String,
    },
    /// A BYE was answered with 2xx.
    CallEnded {
        /// The dialog's Call-ID.
        call_id: String,
    },
    /// A PrivaSIP-AES token of this user opened: tokens below `next` must
    /// never open again, also after a restart.
    AesCounter {
        /// The user (real ID).
        user: String,
        /// The lowest counter still accepted.
        next: u64,
    },
}

impl std::fmt::Debug for StoreEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StoreEvent::Bindings { .. } => "StoreEvent::Bindings([redacted])",
            StoreEvent::CallStarted { .. } => "StoreEvent::CallStarted([redacted])",
            StoreEvent::CallEnded { .. } => "StoreEvent::CallEnded([redacted])",
            StoreEvent::AesCounter { .. } => "StoreEvent::AesCounter([redacted])",
        })
    }
}

/// A forwarded request and its branches.
struct Fwd {
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
}

/// A stateful proxy and registrar for the domains in its configuration.
pub struct Proxy<P> {
    cfg: ProxyConfig,
    limits: Limits,
    tx: Transactions<P>,
    registrar: Registrar,
    resolve: Resolver<P>,
    calls: HashMap<ServerTx, Fwd>,
    by_client: HashMap<ClientTx, ServerTx>,
    outbox: VecDeque<Transmit<P>>,
    /// Made-here tags and branch salts.
    seq: u64,
    auth: Authenticator<P>,
    keyring: Option<Keyring>,
    store_events: VecDeque<StoreEvent>,
    tor: Option<TorName<P>>,
    /// Flow-bound contacts (RFC 5626 style): a UA whose registered Contact
    /// carries `;ob` is reached over the connection it registered on,
    /// keyed by the Contact's `host:port`, owned by the address of record
    /// that bound it (no other may rebind or unbind it). Behind Tor this
    /// is the registration stream: the UA needs no onion service.
    flows: HashMap<String, Flow<P>>,
    timer_c: TimerC,
}

/// A flow-bound contact's connection.
struct Flow<P> {
    aor: String,
    next: Next<P>,
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

/// How the proxy names itself on Tor links.
struct TorName<P> {
    /// The name (our onion address, `host:port` or `host`).
    name: String,
    /// Whether a peer is reached over Tor.
    is_tor: Box<dyn Fn(&P) -> bool + Send>,
}

impl<P: Clone + Eq + std::hash::Hash> Proxy<P> {
    /// A proxy with this configuration and resolver. `nonce_key` (32
    /// random bytes) signs Digest nonces; `epoch` is any instant before
    /// every use.
    pub fn new(
        cfg: ProxyConfig,
        resolve: Resolver<P>,
        nonce_key: [u8; 32],
        epoch: Instant,
    ) -> Proxy<P> {
        let registrar = Registrar::new(cfg.registrar.clone());
        Proxy {
            auth: Authenticator::new(nonce_key, epoch, cfg.digest.clone()),
            keyring: None,
            store_events: VecDeque::new(),
            tor: None,
            flows: HashMap::new(),
            timer_c: TimerC::new(DEFAULT_TIMER_C),
            cfg,
            limits: Limits::default(),
            tx: Transactions::default(),
            registrar,
            resolve,
            calls: HashMap::new(),
            by_client: HashMap::new(),
            outbox: VecDeque::new(),
            seq: 0,
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
    pub fn flow_closed(&mut self, peer: &P) {
        self.flows.retain(|_, f| f.next.peer != *peer);
    }

    /// How many flow-bound contacts are reachable now.
    pub fn flows(&self) -> usize {
        self.flows.len()
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
    /// keys, or the user part itself.
    fn real_user(&mut self, user: &str, call_id: &str, now: Instant) -> Option<String> {
        if !Token::looks_like(user) {
            return Some(user.to_owned());
        }
        let ring = self.keyring.as_mut()?;
        ring.open(user, call_id.as_bytes(), now)
            .ok()
            .map(|o| o.id.expose().to_owned())
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
        match self
            .auth
            .check(msg, header, realm, source, self.keyring.as_mut(), now)
        {
            Verdict::Ok(user) => Some(user),
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
        let Some((msg, invalid)) = Message::parse_received(bytes, &self.limits) else {
            return;
        };
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
            Received::AckFor2xx(_) => self.forward_stateless(&msg),
            Received::Stray if msg.is_request() => self.forward_stateless(&msg),
            Received::Stray => self.forward_stray_response(&msg),
            Received::Absorbed => {}
        }
    }

    /// Sets Timer C, how long an INVITE branch may ring without an answer
    /// before we cancel it (default [`DEFAULT_TIMER_C`]; RFC 3261 asks for
    /// more than 3 minutes).
    pub fn set_timer_c(&mut self, interval: std::time::Duration) {
        self.timer_c.set_interval(interval);
    }

    /// When to call [`Proxy::handle_timeout`] next.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        [self.tx.poll_timeout(), self.timer_c.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Runs the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
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
        while let Some(e) = self.tx.poll_event() {
            match e {
                // §16.7 step 10... a branch that timed out counts as 408.
                Event::Timeout(ctx) => self.branch_failed(now, ctx, 408, None),
                Event::NoAck(stx) => {
                    self.calls.remove(&stx);
                }
            }
        }
    }

    /// The next change to persist.
    pub fn poll_store_event(&mut self) -> Option<StoreEvent> {
        if let Some(ring) = self.keyring.as_mut() {
            for (id, next) in ring.take_aes_counters() {
                self.store_events.push_back(StoreEvent::AesCounter {
                    user: id.expose().to_owned(),
                    next,
                });
            }
        }
        self.store_events.pop_front()
    }

    /// The next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit<P>> {
        self.outbox.pop_front().or_else(|| self.tx.poll_transmit())
    }

    fn tag(&mut self) -> String {
        self.seq += 1;
        format!("psp{:x}", self.seq)
    }

    fn reply(
        &mut self,
        now: Instant,
        stx: ServerTx,
        req: &Message<'_>,
        code: u16,
        reason: &str,
        extra: &[String],
    ) {
        let tag = self.tag();
        let resp = response_for(req, code, reason, &tag, extra);
        // The transaction exists and has sent no final response yet.
        let _ = self.tx.respond(now, stx, resp);
    }

    fn is_us(&self, uri: &SipUri<'_>) -> bool {
        let ours = match uri.port {
            Some(p) => format!("{}:{p}", uri.host),
            None => uri.host.to_owned(),
        };
        self.is_our_name(&ours)
            || [
                Some(self.cfg.sent_by.as_str()),
                self.tor.as_ref().map(|t| t.name.as_str()),
            ]
            .into_iter()
            .flatten()
            .filter_map(|n| n.split(':').next())
            .any(|h| uri.port.is_none() && h.eq_ignore_ascii_case(uri.host))
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
        let mut h = DefaultHasher::new();
        req.request_uri().hash(&mut h);
        req.from().and_then(|f| f.tag()).hash(&mut h);
        req.to().and_then(|t| t.tag()).hash(&mut h);
        req.call_id().hash(&mut h);
        req.cseq()
            .map(|c| (c.seq, c.method.as_str().to_owned()))
            .hash(&mut h);
        for v in req.values(HeaderName::ProxyRequire) {
            v.hash(&mut h);
        }
        for v in req.values(HeaderName::Route) {
            v.hash(&mut h);
        }
        format!("{BRANCH_COOKIE}psp{:016x}", h.finish())
    }

    fn on_request(
        &mut self,
        now: Instant,
        stx: ServerTx,
        msg: &Message<'_>,
        bytes: &[u8],
        source: &P,
    ) {
        let method = msg
            .method()
            .map(|m| m.as_str().to_owned())
            .unwrap_or_default();
        if let Err(e) = msg.check_mandatory_headers() {
            let reason = e.rejection().reason;
            self.reply(now, stx, msg, 400, &reason, &[]);
            return;
        }
        if method == "CANCEL" {
            self.on_cancel(now, stx, msg);
            return;
        }
        // §16.3 step 3: Max-Forwards.
        if msg.max_forwards() == Some(0) {
            self.reply(now, stx, msg, 483, "Too Many Hops", &[]);
            return;
        }
        // §16.3 step 4: loop detection.
        let branch = self.branch_for(msg);
        // Our branches are `<hash>.<fork index>`.
        let ours = |b: &str| {
            b.strip_prefix(branch.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
        };
        let looped = msg.vias().iter().any(|v| {
            let sent_by = match v.port {
                Some(p) => format!("{}:{p}", v.host),
                None => v.host.to_owned(),
            };
            self.is_our_name(&sent_by) && v.branch().is_some_and(ours)
        });
        if looped {
            self.reply(now, stx, msg, 482, "Loop Detected", &[]);
            return;
        }
        // §16.3 step 5: Proxy-Require; we support no extensions.
        let unsupported: Vec<&str> = msg.option_tags(HeaderName::ProxyRequire).collect();
        if !unsupported.is_empty() {
            let extra = [format!("Unsupported: {}", unsupported.join(", "))];
            self.reply(now, stx, msg, 420, "Bad Extension", &extra);
            return;
        }
        // §16.3 step 2 (and RFC 4475 unknown schemes): sip and sips only.
        let Some(Uri::Sip(ruri)) = msg.request_uri_parsed() else {
            self.reply(now, stx, msg, 416, "Unsupported URI Scheme", &[]);
            return;
        };
        let ruri_host = ruri.host.to_owned();
        let ruri_user = ruri.user.map(str::to_owned);
        // A request addressed to this proxy itself (sipsak, keep-alives).
        let to_us = self.is_us(&ruri);

        // §16.4: a Route naming us is ours to remove.
        let mut fwd = match Message::parse_datagram(bytes, &self.limits) {
            Ok(m) => m,
            Err(_) => return,
        };
        if let Some(top) = fwd.routes().first()
            && let Uri::Sip(u) = &top.uri
            && self.is_us(u)
        {
            fwd.pop_route();
        }
        let routed = !fwd.routes().is_empty();

        if method == "REGISTER" && !routed && self.is_our_domain(&ruri_host) {
            self.on_register(now, stx, msg, source);
            return;
        }

        // A request for the proxy itself (a domain or our address, no
        // user): OPTIONS pings are answered, anything else is not allowed.
        if !routed && ruri_user.is_none() && (to_us || self.is_our_domain(&ruri_host)) {
            let allow = ["Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER".to_owned()];
            if method == "OPTIONS" {
                self.reply(now, stx, msg, 200, "OK", &allow);
            } else {
                self.reply(now, stx, msg, 405, "Method Not Allowed", &allow);
            }
            return;
        }

        // Our users' out-of-dialog requests carry credentials (RFC 3261
        // §22.3); ACK and CANCEL cannot be challenged.
        let from_host = msg
            .from()
            .and_then(|f| f.uri.as_sip().map(|u| u.host.to_ascii_lowercase()));
        let in_dialog = msg.to().is_some_and(|t| t.tag().is_some());
        let mut caller = None;
        if self.cfg.authenticate
            && !in_dialog
            && method != "ACK"
            && let Some(realm) = from_host.filter(|h| self.is_our_domain(h))
        {
            match self.authenticate(now, stx, msg, &realm, true, source) {
                Some(user) => caller = Some(user),
                None => return,
            }
            // §22.3: credentials for our realm end here.
            fwd.remove_credentials(HeaderName::ProxyAuthorization, &realm);
        }

        // §16.5: the targets.
        // (Requests for our domains without a user were answered above.)
        let targets: Vec<String> = if let (false, Some(user)) = (routed, &ruri_user)
            && self.is_our_domain(&ruri_host)
        {
            // The callee's proxy opens a PrivaSIP callee token to route.
            let call_id = msg.call_id().unwrap_or_default().to_owned();
            let Some(user) = self.real_user(user, &call_id, now) else {
                self.reply(now, stx, msg, 404, "Not Found", &[]);
                return;
            };
            let aor = format!("sip:{user}@{}", ruri_host.to_ascii_lowercase());
            let found: Vec<String> = self
                .registrar
                .lookup(&aor, now)
                .into_iter()
                .map(|b| b.contact)
                .collect();
            if found.is_empty() {
                self.reply(now, stx, msg, 480, "Temporarily Unavailable", &[]);
                return;
            }
            found
        } else {
            vec![msg.request_uri().unwrap_or_default().to_owned()]
        };

        if method == "INVITE" {
            // §16.2: 100 Trying, so the upstream stops retransmitting.
            self.reply(now, stx, msg, 100, "Trying", &[]);
        }
        let mut call = Fwd {
            invite: method == "INVITE",
            bye: method == "BYE",
            caller,
            request: bytes.to_vec(),
            pending: Vec::new(),
            best: None,
            done: false,
        };
        let mut flow_gone = false;
        for (i, target) in targets.iter().enumerate() {
            match self.forward(now, &fwd, target, &format!("{branch}.{i}"), source) {
                Some((ctx, sent)) => {
                    self.by_client.insert(ctx, stx);
                    if call.invite {
                        self.timer_c.start(now, ctx);
                    }
                    call.pending.push((ctx, sent));
                }
                None => flow_gone |= flow_key(target).is_some(),
            }
        }
        if call.pending.is_empty() && flow_gone {
            // A flow-bound contact whose connection closed: the user is
            // registered but cannot be reached until it registers again.
            self.reply(now, stx, msg, 480, "Temporarily Unavailable", &[]);
            return;
        }
        if call.pending.is_empty() {
            self.reply(
                now,
                stx,
                msg,
                404,
                "Not Found (no route to the target)",
                &[],
            );
            return;
        }
        self.calls.insert(stx, call);
    }

    /// §16.6: one copy of the request to one target.
    fn forward(
        &mut self,
        now: Instant,
        msg: &Message<'_>,
        target: &str,
        branch: &str,
        source: &P,
    ) -> Option<(ClientTx, Vec<u8>)> {
        let mut m = msg.clone();
        m.set_request_uri(target.to_owned()).ok()?;
        let mf = msg.max_forwards().map_or(70, |n| n.saturating_sub(1));
        m.set_max_forwards(mf);
        // §16.6 step 6: the next hop is the top Route, else the target.
        let hop = match m.routes().first() {
            Some(r) => r.uri_raw.to_owned(),
            None => target.to_owned(),
        };
        let next = self.next_hop(&hop)?;
        // §16.6 step 4. The Record-Route travels both ways (in this request
        // and in responses), so a dialog touching Tor on either side sees
        // only our Tor name.
        if self.cfg.record_route {
            let rr = self.sent_by_for(&[source, &next.peer]);
            m.push_record_route(format!("<sip:{rr};lr>")).ok()?;
        }
        m.push_via(format!(
            "SIP/2.0/{} {};branch={branch}",
            via_transport(&next),
            self.sent_by_for(&[&next.peer])
        ))
        .ok()?;
        let bytes = m.to_bytes();
        let ctx = self
            .tx
            .send_request(now, bytes.clone(), next.peer, next.reliable)
            .ok()?;
        Some((ctx, bytes))
    }

    /// Where a hop goes: a flow-bound URI (`;ob`) over its flow and
    /// nowhere else once that flow is gone (RFC 5626: never a new
    /// connection to the Contact's address); any other URI as the
    /// resolver says.
    fn next_hop(&self, uri: &str) -> Option<Next<P>> {
        match flow_key(uri) {
            Some(key) => self.flows.get(&key).map(|f| f.next.clone()),
            None => self.resolve_uri(uri),
        }
    }

    fn resolve_uri(&self, uri: &str) -> Option<Next<P>> {
        let Ok(Uri::Sip(u)) = Uri::parse(uri) else {
            return None;
        };
        // No transport parameter: the resolver picks ("" here).
        let transport = u
            .params
            .get("transport")
            .flatten()
            .unwrap_or("")
            .to_ascii_uppercase();
        (self.resolve)(u.host, u.port, &transport)
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
        let Some(user) = self.real_user(user, &call_id, now) else {
            self.reply(now, stx, msg, 404, "Not Found", &[]);
            return;
        };
        // With users configured, a registration needs their credentials,
        // and one may register only oneself.
        if self.cfg.authenticate || self.auth.knows(&host, &user) {
            match self.authenticate(now, stx, msg, &host, false, source) {
                Some(who) if who == user => {}
                Some(_) => {
                    self.reply(now, stx, msg, 403, "Not Your Address Of Record", &[]);
                    return;
                }
                None => return,
            }
        }
        let aor = format!("sip:{user}@{host}");
        match self.registrar.register(&aor, msg, now) {
            Ok(bindings) => {
                self.bind_flows(&aor, msg, source, &bindings);
                let extra: Vec<String> = bindings
                    .iter()
                    .map(|b| format!("Contact: <{}>;expires={}", b.contact, b.remaining(now)))
                    .collect();
                self.store_events
                    .push_back(StoreEvent::Bindings { aor, bindings });
                self.reply(now, stx, msg, 200, "OK", &extra);
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
            .filter_map(|b| flow_key(&b.contact))
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
                    next: Next {
                        peer: source.clone(),
                        reliable,
                    },
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
        if let Some(next) = hop.and_then(|h| self.next_hop(&h)) {
            let _ = self.tx.send_request(now, cancel, next.peer, next.reliable);
        }
    }

    /// §16.7: a response on one of our branches.
    fn on_response(&mut self, now: Instant, ctx: ClientTx, status: u16, msg: &Message<'_>) {
        let Some(&stx) = self.by_client.get(&ctx) else {
            // A response to a CANCEL we sent, or a branch long done.
            return;
        };
        if status == 100 {
            return;
        }
        // Step 3: our Via goes.
        let mut up = msg.clone();
        up.pop_via();
        if up.vias().is_empty() {
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
            // Every 2xx goes up at once (§16.7 step 5); other branches of
            // an INVITE are cancelled (§16.7 step 10).
            let _ = self.tx.respond(now, stx, bytes);
            let call_id = msg.call_id().unwrap_or_default().to_owned();
            let others: Vec<Vec<u8>> = match self.calls.get_mut(&stx) {
                Some(call) => {
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
                            caller,
                            callee,
                            call_id: call_id.clone(),
                        });
                    }
                    if call.bye && !call.done {
                        self.store_events.push_back(StoreEvent::CallEnded {
                            call_id: call_id.clone(),
                        });
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
            for sent in others {
                self.send_cancel(now, &sent);
            }
            self.by_client.remove(&ctx);
            self.finish_if_done(stx);
            return;
        }
        self.branch_failed(now, ctx, status, Some(bytes));
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
        let Some(call) = self.calls.get_mut(&stx) else {
            return;
        };
        call.pending.retain(|(c, _)| *c != ctx);
        let response = match response {
            Some(r) => r,
            None => match Message::parse_datagram(&call.request, &self.limits) {
                Ok(req) => response_for(&req, status, "Request Timeout", "psp-timeout", &[]),
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

    /// ACK for a 2xx and other requests outside transactions (§16.11).
    fn forward_stateless(&mut self, msg: &Message<'_>) {
        let mut m = msg.clone();
        if let Some(top) = m.routes().first()
            && let Uri::Sip(u) = &top.uri
            && self.is_us(u)
        {
            m.pop_route();
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
        let Some(next) = self.next_hop(&hop) else {
            return;
        };
        let mf = msg.max_forwards().map_or(70, |n| n.saturating_sub(1));
        if mf == 0 {
            return;
        }
        m.set_max_forwards(mf);
        let branch = self.branch_for(msg);
        if m.push_via(format!(
            "SIP/2.0/{} {};branch={branch}",
            via_transport(&next),
            self.sent_by_for(&[&next.peer])
        ))
        .is_err()
        {
            return;
        }
        self.outbox.push_back(Transmit {
            to: next.peer,
            bytes: m.to_bytes(),
        });
    }

    /// A response matching no transaction (a 2xx retransmission after the
    /// INVITE transaction ended): pop our Via, send to the next one.
    fn forward_stray_response(&mut self, msg: &Message<'_>) {
        let Some(top) = msg.top_via() else { return };
        let ours = match top.port {
            Some(p) => format!("{}:{p}", top.host),
            None => top.host.to_owned(),
        };
        if !self.is_our_name(&ours) {
            return;
        }
        let mut m = msg.clone();
        m.pop_via();
        let Some(next_via) = m.top_via() else { return };
        // §18.2.2: received and rport say where the request really came from.
        let host = next_via.received().unwrap_or(next_via.host).to_owned();
        let port = match next_via.rport() {
            Some(Some(p)) => p.parse().ok(),
            _ => next_via.port,
        };
        let transport = next_via.transport.to_ascii_uppercase();
        if let Some(next) = (self.resolve)(&host, port, &transport) {
            self.outbox.push_back(Transmit {
                to: next.peer,
                bytes: m.to_bytes(),
            });
        }
    }
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
