//! The user agent: registration, calls out and in, dialogs.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use privasip_digest::{Algorithm, Challenge, Ha1};
use privasip_identity::transform::{self, DialogTokens};
use privasip_identity::{AesSender, Encryptor, RealId};
use privasip_message::{HasSipStatus, HeaderName, Limits, Message, Sensitive, Uri};
use privasip_transaction::{Circuit, ClientTx, Event, Received, ServerTx, Transactions, Transmit};
use rand_core::CryptoRngCore;

use crate::build::{self, Req};
use crate::{Answer, Home, Privacy, UaConfig, UaError};

/// A call's handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub u64);

/// What happened, for the driver to report (it stamps the time).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UaEvent {
    /// The registrar accepted our binding for this many seconds.
    Registered {
        /// Granted lifetime.
        expires: u32,
    },
    /// Our binding is removed ([`Ua::unregister`]).
    Unregistered,
    /// The registrar refused (or never answered: 408).
    RegistrationFailed {
        /// The final status.
        status: u16,
    },
    /// A response to our INVITE arrived (100, 180, 200...).
    Response {
        /// The call.
        call: CallId,
        /// Its status.
        status: u16,
    },
    /// Our call was answered and ACKed.
    Answered {
        /// The call.
        call: CallId,
    },
    /// A call failed with this final status (408 when nothing came).
    Failed {
        /// The call.
        call: CallId,
        /// The final status.
        status: u16,
    },
    /// A call ended (BYE, either side).
    Ended {
        /// The call.
        call: CallId,
    },
    /// Someone calls us; `caller` is what the From says (under PrivaSIP a
    /// token: the callee never learns the real caller).
    Incoming {
        /// The call.
        call: CallId,
        /// The caller as presented (a per-call token under PrivaSIP); kept
        /// out of `Debug`.
        caller: Sensitive<String>,
    },
}

/// A dialog (RFC 3261 §12) as one side sees it.
struct Dialog {
    call_id: String,
    local_tag: String,
    remote_tag: Option<String>,
    /// From (ours) and To (theirs) URIs as sent in the first request.
    local_uri: String,
    remote_uri: String,
    route_set: Vec<String>,
    remote_target: String,
    cseq: u32,
}

enum State {
    /// Our INVITE is out.
    Calling {
        retried: bool,
    },
    /// Their INVITE is ringing here.
    Ringing {
        stx: ServerTx,
        request: Vec<u8>,
        answer_at: Instant,
    },
    Established,
}

struct Call {
    dialog: Dialog,
    /// The Tor circuit this call's requests ride (to the proxy, like
    /// every request): its own for a call we place when
    /// [`UaConfig::call_circuits`] says so, else the shared one.
    circuit: Circuit,
    state: State,
    /// Outgoing: the Request-URI of our INVITE, and its tokens.
    target: String,
    /// The Request-URI as sent (PrivaSIP-2: with the callee token); the
    /// Digest `uri` must be this one, or it would carry the real ID.
    sent_ruri: String,
    tokens: Option<DialogTokens>,
    invite_cseq: u32,
    /// Outgoing: our INVITE as last sent, to build a CANCEL from.
    invite: Vec<u8>,
    /// Outgoing: a provisional response came (§9.1: only then may a
    /// CANCEL go).
    early: bool,
    /// Outgoing: hung up before an answer; CANCEL sent or waiting for the
    /// first provisional response.
    cancelling: bool,
    /// Our BYE is out.
    ending: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Owner {
    Register,
    Invite(u64),
    Bye(u64),
    Cancel(u64),
}

struct Registration {
    call_id: String,
    from_tag: String,
    cseq: u32,
    tokens: Option<DialogTokens>,
    /// PrivaSIP: our Contact's user part, the first token, kept when the
    /// tokens change (AES) so that a refresh updates our binding instead
    /// of adding one.
    contact_user: Option<String>,
    retried: bool,
    refresh_at: Option<Instant>,
    /// The REGISTER out removes our binding (Expires: 0).
    removing: bool,
}

/// A user agent. `P` names the outbound proxy and peers (an address, a
/// connection).
pub struct Ua<P> {
    cfg: UaConfig,
    proxy: P,
    tx: Transactions<P>,
    limits: Limits,
    reg: Option<Registration>,
    calls: HashMap<u64, Call>,
    by_call_id: HashMap<String, u64>,
    by_client: HashMap<ClientTx, Owner>,
    next: u64,
    events: VecDeque<UaEvent>,
    outbox: VecDeque<Transmit<P>>,
    home: Option<Box<dyn Encryptor>>,
    callee_keys: HashMap<String, Box<dyn Encryptor>>,
    /// PrivaSIP-AES: the counter the driver last said is on disk as the
    /// next to use (see [`Ua::aes_to_persist`]).
    aes_durable: Option<u64>,
}

/// PrivaSIP-AES counters reserved on disk at once. A crash skips the
/// unused rest of a block, which the proxy's window of future counters
/// (8 by default) must cover: half of it, leaving room for tokens lost on
/// the way.
pub const AES_BLOCK: u64 = 4;

fn hex(rng: &mut dyn CryptoRngCore, bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rng.fill_bytes(&mut b);
    hex::encode(b)
}

/// A random host nobody can resolve (RFC 6761 `.invalid`), for the
/// Contact of a user agent reached over the connection it registers on
/// (`outbound`): it names the flow, and nothing about the user or host.
pub fn flow_host(rng: &mut dyn CryptoRngCore) -> String {
    format!("f{}.invalid", hex(rng, 8))
}

impl<P: Clone + Eq + std::hash::Hash> Ua<P> {
    /// A user agent that sends everything to `proxy`.
    pub fn new(cfg: UaConfig, proxy: P) -> Ua<P> {
        let aes_durable = match &cfg.privacy {
            Privacy::PrivaSip {
                home: Home::Aes { next_counter },
                ..
            } => Some(*next_counter),
            _ => None,
        };
        let (home, callee_keys) = match &cfg.privacy {
            Privacy::Plain => (None, HashMap::new()),
            Privacy::PrivaSip { home, callee_keys } => (
                Some(match home {
                    Home::Key(key) => key.encryptor(),
                    Home::Aes { next_counter } => {
                        let secret = Ha1::from_password(
                            Algorithm::Sha256,
                            cfg.user.expose(),
                            &cfg.domain,
                            cfg.password.expose(),
                        );
                        Box::new(AesSender::new(
                            secret.expose_hex().as_bytes(),
                            *next_counter,
                        )) as Box<dyn Encryptor>
                    }
                }),
                callee_keys
                    .iter()
                    .map(|(d, k)| (d.to_ascii_lowercase(), k.encryptor()))
                    .collect(),
            ),
        };
        Ua {
            cfg,
            proxy,
            tx: Transactions::default(),
            limits: Limits::default(),
            reg: None,
            calls: HashMap::new(),
            by_call_id: HashMap::new(),
            by_client: HashMap::new(),
            next: 0,
            events: VecDeque::new(),
            outbox: VecDeque::new(),
            aes_durable,
            home,
            callee_keys,
        }
    }

    fn transport(&self) -> &'static str {
        transport(self.cfg.reliable)
    }

    fn aor(&self) -> String {
        format!("sip:{}@{}", self.cfg.user.expose(), self.cfg.domain)
    }

    /// The display name for From: plain SIP only, PrivaSIP removes it.
    fn display_name(&self) -> Option<&str> {
        match self.cfg.privacy {
            Privacy::Plain => self.cfg.display_name.as_ref().map(|n| n.expose().as_str()),
            _ => None,
        }
    }

    /// Our Contact URI, with a user part or without.
    fn contact(&self, user: Option<&str>) -> String {
        let at = user.map_or(String::new(), |u| format!("{u}@"));
        let tcp = if self.cfg.reliable {
            ";transport=tcp"
        } else {
            ""
        };
        let ob = if self.cfg.outbound { ";ob" } else { "" };
        format!("sip:{at}{}{tcp}{ob}", self.cfg.local.expose())
    }

    /// Our Contact in responses: under PrivaSIP without a user part (a
    /// Contact's user part is free text, and often the real ID).
    fn response_contact(&self) -> String {
        if self.home.is_some() {
            self.contact(None)
        } else {
            self.contact(Some(self.cfg.user.expose()))
        }
    }

    fn new_call_id(&self, rng: &mut dyn CryptoRngCore) -> String {
        // PrivaSIP: 160 random bits, nothing else; plain SIP too (a host
        // part would only say where we are).
        transform::private_call_id(rng)
    }

    fn seal(
        enc: &mut dyn Encryptor,
        id: &str,
        call_id: &str,
        rng: &mut dyn CryptoRngCore,
    ) -> Result<String, UaError> {
        let real = RealId::new(id)?;
        Ok(enc.seal(&real, call_id.as_bytes(), rng)?.to_string())
    }

    /// Applies PrivaSIP to an out-of-dialog request, when configured;
    /// `contact_user` replaces the token in Contact.
    fn protect(
        &self,
        bytes: Vec<u8>,
        tokens: Option<&DialogTokens>,
        contact_user: Option<&str>,
    ) -> Result<Vec<u8>, UaError> {
        let Some(tokens) = tokens else {
            return Ok(bytes);
        };
        let mut m = Message::parse_datagram(&bytes, &self.limits)?;
        transform::protect_request(&mut m, tokens)?;
        if let Some(user) = contact_user {
            m.set_user(HeaderName::Contact, user)?;
        }
        Ok(m.to_bytes())
    }

    fn send(
        &mut self,
        now: Instant,
        bytes: Vec<u8>,
        circuit: Circuit,
        owner: Owner,
    ) -> Result<ClientTx, UaError> {
        let to = self.proxy.clone();
        let tx = self
            .tx
            .send_request(now, bytes, to, self.cfg.reliable, circuit)?;
        self.by_client.insert(tx, owner);
        Ok(tx)
    }

    /// The circuit a call's requests ride (None once it is over).
    pub fn circuit(&self, call: CallId) -> Option<Circuit> {
        self.calls.get(&call.0).map(|c| c.circuit)
    }

    /// PrivaSIP-AES: the counter the next token will use; None for other
    /// schemes.
    pub fn aes_next_counter(&self) -> Option<u64> {
        self.home.as_deref().and_then(|h| h.next_counter())
    }

    /// PrivaSIP-AES: a token was made with a counter not yet reserved on
    /// disk, so the counter to start from after a crash must now be this
    /// one, durably (a counter used twice is an AES-GCM nonce used twice).
    /// It reserves [`AES_BLOCK`] counters at once, so most tokens need no
    /// write. Until the driver says it is saved with
    /// [`Ua::aes_persisted`], [`Ua::poll_transmit`] gives nothing: no
    /// token leaves before its counter is safe.
    pub fn aes_to_persist(&self) -> Option<u64> {
        let next = self.aes_next_counter()?;
        (next > self.aes_durable?).then(|| next - 1 + AES_BLOCK)
    }

    /// PrivaSIP-AES: `next` (from [`Ua::aes_to_persist`]) is on disk.
    pub fn aes_persisted(&mut self, next: u64) {
        if let Some(d) = self.aes_durable.as_mut() {
            *d = (*d).max(next);
        }
    }

    /// Removes our binding from the registrar (REGISTER with Expires: 0),
    /// as a user agent going away should; [`UaEvent::Unregistered`] says
    /// when it is done. Nothing happens if we never registered.
    pub fn unregister(&mut self, now: Instant, rng: &mut dyn CryptoRngCore) -> Result<(), UaError> {
        let Some(reg) = self.reg.as_mut() else {
            return Ok(());
        };
        reg.removing = true;
        reg.refresh_at = None;
        self.fresh_aes_token(rng)?;
        self.send_register(now, rng, None)
    }

    /// An AES token opens once (the proxy forgets it after a restart or a
    /// while): every registration round takes a fresh one.
    fn fresh_aes_token(&mut self, rng: &mut dyn CryptoRngCore) -> Result<(), UaError> {
        if let (Some(reg), Some(enc)) = (self.reg.as_mut(), self.home.as_deref_mut())
            && enc.next_counter().is_some()
        {
            reg.tokens = Some(DialogTokens {
                caller: Self::seal(enc, self.cfg.user.expose(), &reg.call_id, rng)?,
                callee: None,
            });
        }
        Ok(())
    }

    /// Registers (or refreshes) our binding with the home registrar.
    pub fn register(&mut self, now: Instant, rng: &mut dyn CryptoRngCore) -> Result<(), UaError> {
        self.fresh_aes_token(rng)?;
        if self.reg.is_none() {
            let call_id = self.new_call_id(rng);
            let tokens = match self.home.as_deref_mut() {
                Some(enc) => Some(DialogTokens {
                    caller: Self::seal(enc, self.cfg.user.expose(), &call_id, rng)?,
                    callee: None,
                }),
                None => None,
            };
            self.reg = Some(Registration {
                call_id,
                from_tag: hex(rng, 6),
                cseq: 0,
                contact_user: tokens.as_ref().map(|t| t.caller.clone()),
                removing: false,
                tokens,
                retried: false,
                refresh_at: None,
            });
        }
        self.send_register(now, rng, None)
    }

    fn send_register(
        &mut self,
        now: Instant,
        rng: &mut dyn CryptoRngCore,
        auth: Option<String>,
    ) -> Result<(), UaError> {
        let aor = self.aor();
        let from_name = self.display_name().map(str::to_owned);
        let contact = self.contact(Some(self.cfg.user.expose()));
        let ruri = format!("sip:{}", self.cfg.domain);
        let Some(reg) = self.reg.as_mut() else {
            return Err(UaError::NoCall);
        };
        reg.cseq += 1;
        reg.refresh_at = None;
        let expires = if reg.removing { 0 } else { self.cfg.expires };
        let mut extra = vec![format!("Expires: {expires}")];
        extra.extend(auth);
        let bytes = build::request(&Req {
            method: "REGISTER",
            ruri: &ruri,
            local: self.cfg.local.expose(),
            transport: transport(self.cfg.reliable),
            branch: &format!("z9hG4bK{}", hex(rng, 8)),
            from: &aor,
            from_name: from_name.as_deref(),
            from_tag: &reg.from_tag,
            to: &aor,
            to_tag: None,
            call_id: &reg.call_id,
            cseq: reg.cseq,
            contact: Some(&contact),
            routes: &[],
            extra: &extra,
            sdp: None,
        });
        let tokens = reg.tokens.clone();
        let contact_user = reg.contact_user.clone();
        let bytes = self.protect(bytes, tokens.as_ref(), contact_user.as_deref())?;
        self.send(now, bytes, Circuit::Shared, Owner::Register)?;
        Ok(())
    }

    /// Calls `target` (a SIP URI). Under PrivaSIP-2 the callee's ID is
    /// encrypted to its domain's key, when we have one. With
    /// [`UaConfig::call_circuits`], every request of the call names a
    /// [`Circuit`] of its own.
    pub fn call(
        &mut self,
        now: Instant,
        target: &str,
        rng: &mut dyn CryptoRngCore,
    ) -> Result<CallId, UaError> {
        let (callee_user, callee_host) = match Uri::parse(target) {
            Ok(Uri::Sip(u)) => (u.user.map(str::to_owned), u.host.to_ascii_lowercase()),
            _ => return Err(UaError::BadTarget(target.to_owned())),
        };
        let call_id = self.new_call_id(rng);
        let tokens = match self.home.as_deref_mut() {
            Some(enc) => {
                let caller = Self::seal(enc, self.cfg.user.expose(), &call_id, rng)?;
                let callee = match (self.callee_keys.get_mut(&callee_host), &callee_user) {
                    (Some(enc), Some(user)) => Some(Self::seal(enc.as_mut(), user, &call_id, rng)?),
                    _ => None,
                };
                Some(DialogTokens { caller, callee })
            }
            None => None,
        };
        self.next += 1;
        let id = self.next;
        let circuit = if self.cfg.call_circuits {
            Circuit::Call(id)
        } else {
            Circuit::Shared
        };
        let mut call = Call {
            circuit,
            dialog: Dialog {
                call_id: call_id.clone(),
                local_tag: hex(rng, 6),
                remote_tag: None,
                local_uri: self.aor(),
                remote_uri: target.to_owned(),
                route_set: Vec::new(),
                remote_target: target.to_owned(),
                cseq: 1,
            },
            state: State::Established,
            target: target.to_owned(),
            sent_ruri: target.to_owned(),
            tokens,
            invite_cseq: 1,
            invite: Vec::new(),
            early: false,
            cancelling: false,
            ending: false,
        };
        let bytes = self.invite_bytes(&mut call, rng, None)?;
        call.invite = bytes.clone();
        self.send(now, bytes, call.circuit, Owner::Invite(id))?;
        call.state = State::Calling { retried: false };
        self.by_call_id.insert(call_id, id);
        self.calls.insert(id, call);
        Ok(CallId(id))
    }

    fn invite_bytes(
        &self,
        call: &mut Call,
        rng: &mut dyn CryptoRngCore,
        auth: Option<String>,
    ) -> Result<Vec<u8>, UaError> {
        let contact = self.contact(Some(self.cfg.user.expose()));
        let sdp = build::sdp(rng.next_u64() >> 1);
        let extra: Vec<String> = auth.into_iter().collect();
        let bytes = build::request(&Req {
            method: "INVITE",
            ruri: &call.target,
            local: self.cfg.local.expose(),
            transport: self.transport(),
            branch: &format!("z9hG4bK{}", hex(rng, 8)),
            from: &self.aor(),
            from_name: self.display_name(),
            from_tag: &call.dialog.local_tag,
            to: &call.target,
            to_tag: None,
            call_id: &call.dialog.call_id,
            cseq: call.invite_cseq,
            contact: Some(&contact),
            routes: &[],
            extra: &extra,
            sdp: Some(&sdp),
        });
        let bytes = self.protect(bytes, call.tokens.as_ref(), None)?;
        // The dialog's URIs are the protected ones.
        if let Ok(m) = Message::parse_datagram(&bytes, &self.limits) {
            if let Some(f) = m.from() {
                call.dialog.local_uri = f.uri_raw.to_owned();
            }
            if let Some(t) = m.to() {
                call.dialog.remote_uri = t.uri_raw.to_owned();
            }
            if let Some(r) = m.request_uri() {
                call.sent_ruri = r.to_owned();
            }
        }
        Ok(bytes)
    }

    /// Ends a call: BYE when established; CANCEL for our own call not yet
    /// answered (sent once a provisional response has come, §9.1; the
    /// call then fails with 487, or is answered and at once hung up if
    /// the 200 crossed the CANCEL).
    pub fn hangup(
        &mut self,
        now: Instant,
        call: CallId,
        rng: &mut dyn CryptoRngCore,
    ) -> Result<(), UaError> {
        let c = self.calls.get_mut(&call.0).ok_or(UaError::NoCall)?;
        if matches!(c.state, State::Calling { .. }) {
            if !c.cancelling {
                c.cancelling = true;
                if c.early {
                    self.send_cancel(now, call.0)?;
                }
            }
            return Ok(());
        }
        if !matches!(c.state, State::Established) {
            return Err(UaError::NotEstablished);
        }
        self.bye(now, call.0, &[], rng)
    }

    /// Sends the BYE of established call `id` (once), with `extra`
    /// headers.
    fn bye(
        &mut self,
        now: Instant,
        id: u64,
        extra: &[String],
        rng: &mut dyn CryptoRngCore,
    ) -> Result<(), UaError> {
        let c = self.calls.get_mut(&id).ok_or(UaError::NoCall)?;
        if c.ending {
            return Ok(());
        }
        c.ending = true;
        c.dialog.cseq += 1;
        let bytes = in_dialog(
            &c.dialog,
            "BYE",
            c.dialog.cseq,
            self.cfg.local.expose(),
            transport(self.cfg.reliable),
            extra,
            rng,
        );
        let circuit = c.circuit;
        self.send(now, bytes, circuit, Owner::Bye(id))?;
        Ok(())
    }

    /// The driver lost its way to `peer` on `circuit` (`None`: on every
    /// circuit): a stream that closed under us, or one that would not
    /// open. Requests sent that way and still unanswered end now
    /// (RFC 3261 §17.1.4: a call being set up fails with 503, a REGISTER
    /// is refused with 503), rather than at Timer B's 32 s. A call that
    /// rode a circuit of its own ([`UaConfig::call_circuits`]) has lost
    /// its only path: it is ended with a BYE carrying a Reason header
    /// (RFC 3326), which the driver sends on a new circuit, so the far
    /// end and the proxies that account the call learn it is over.
    pub fn transport_failed(
        &mut self,
        now: Instant,
        peer: &P,
        circuit: Option<Circuit>,
        rng: &mut dyn CryptoRngCore,
    ) {
        self.tx.transport_failed(peer, circuit);
        self.transaction_events();
        let orphaned: Vec<u64> = self
            .calls
            .iter()
            .filter(|(_, c)| {
                matches!(c.circuit, Circuit::Call(_))
                    && circuit.is_none_or(|lost| lost == c.circuit)
                    && matches!(c.state, State::Established)
                    && !c.ending
            })
            .map(|(id, _)| *id)
            .collect();
        let reason = [String::from(
            "Reason: SIP ;cause=503 ;text=\"Tor circuit lost\"",
        )];
        for id in orphaned {
            if self.bye(now, id, &reason, rng).is_err() {
                self.end(id);
            }
        }
    }

    /// Feeds a message from `from`.
    pub fn receive(&mut self, now: Instant, bytes: &[u8], from: P, rng: &mut dyn CryptoRngCore) {
        // A user agent acts on the whole message: every header is checked,
        // and a request that fails is answered with 400 naming the problem
        // when it can be answered at all (RFC 4475 §3.1.2).
        let Some((msg, invalid)) = Message::parse_received(bytes, &self.limits) else {
            return;
        };
        let received = self.tx.receive(now, &msg, from, self.cfg.reliable);
        if let Some(e) = invalid {
            if let Received::NewRequest(stx) = received {
                let r = e.rejection();
                let tag = hex(rng, 6);
                self.respond(now, stx, &msg, r.code, &r.reason, Some(&tag), None, None);
            }
            return;
        }
        match received {
            Received::NewRequest(stx) => self.on_request(now, stx, &msg, bytes, rng),
            Received::Response(ctx, status) => self.on_response(now, ctx, status, &msg, rng),
            Received::Stray => {
                // A 2xx retransmission after our INVITE transaction ended:
                // the ACK was lost; send it again (§13.2.2.4).
                if msg.status().is_some_and(|s| (200..300).contains(&s))
                    && msg.cseq_method().is_some_and(|m| m.as_str() == "INVITE")
                    && let Some(id) = msg.call_id().and_then(|c| self.by_call_id.get(c)).copied()
                {
                    self.send_ack(id, rng);
                }
            }
            Received::AckFor2xx(_) | Received::Absorbed => {}
        }
    }

    fn on_response(
        &mut self,
        now: Instant,
        ctx: ClientTx,
        status: u16,
        msg: &Message<'_>,
        rng: &mut dyn CryptoRngCore,
    ) {
        let Some(&owner) = self.by_client.get(&ctx) else {
            return;
        };
        if status >= 200 {
            self.by_client.remove(&ctx);
        }
        match owner {
            Owner::Register => self.on_register_response(now, status, msg, rng),
            Owner::Invite(id) => self.on_invite_response(now, id, status, msg, rng),
            Owner::Bye(id) => {
                if status >= 200 {
                    self.end(id);
                }
            }
            // The INVITE's 487 (or 200) says how the call ended.
            Owner::Cancel(_) => {}
        }
    }

    /// The call failed with `status`: say so and forget it.
    fn fail(&mut self, id: u64, status: u16) {
        self.events.push_back(UaEvent::Failed {
            call: CallId(id),
            status,
        });
        self.forget(id);
    }

    /// §9.1: a CANCEL for our INVITE as sent (so under PrivaSIP with the
    /// tokens).
    fn send_cancel(&mut self, now: Instant, id: u64) -> Result<(), UaError> {
        let c = self.calls.get(&id).ok_or(UaError::NoCall)?;
        let cancel = Message::parse_datagram(&c.invite, &self.limits)
            .ok()
            .and_then(|inv| inv.cancel_request())
            .ok_or(UaError::NoCancel)?;
        let circuit = c.circuit;
        self.send(now, cancel, circuit, Owner::Cancel(id))?;
        Ok(())
    }

    fn on_register_response(
        &mut self,
        now: Instant,
        status: u16,
        msg: &Message<'_>,
        rng: &mut dyn CryptoRngCore,
    ) {
        if status < 200 {
            return;
        }
        let Some(reg) = self.reg.as_mut() else { return };
        if (status == 401 || status == 407) && !reg.retried {
            reg.retried = true;
            let user = reg
                .tokens
                .as_ref()
                .map_or_else(|| self.cfg.user.expose().clone(), |t| t.caller.clone());
            let uri = format!("sip:{}", self.cfg.domain);
            if let Some(auth) = self.credentials(msg, status, &user, "REGISTER", &uri, rng) {
                let _ = self.send_register(now, rng, Some(auth));
                return;
            }
        }
        let Some(reg) = self.reg.as_mut() else { return };
        reg.retried = false;
        if reg.removing {
            self.reg = None;
            self.events.push_back(if (200..300).contains(&status) {
                UaEvent::Unregistered
            } else {
                UaEvent::RegistrationFailed { status }
            });
            return;
        }
        if (200..300).contains(&status) {
            let granted = granted_expires(msg).unwrap_or(self.cfg.expires);
            // Refresh before the binding lapses: at 80% of its life.
            let after = Duration::from_millis(u64::from(granted) * 800).max(Duration::from_secs(1));
            reg.refresh_at = Some(now + after);
            self.events
                .push_back(UaEvent::Registered { expires: granted });
        } else {
            self.events
                .push_back(UaEvent::RegistrationFailed { status });
        }
    }

    fn on_invite_response(
        &mut self,
        now: Instant,
        id: u64,
        status: u16,
        msg: &Message<'_>,
        rng: &mut dyn CryptoRngCore,
    ) {
        self.events.push_back(UaEvent::Response {
            call: CallId(id),
            status,
        });
        if status < 200 {
            let cancel_now = match self.calls.get_mut(&id) {
                Some(c) if !c.early => {
                    c.early = true;
                    c.cancelling
                }
                _ => false,
            };
            if cancel_now {
                let _ = self.send_cancel(now, id);
            }
            return;
        }
        if (200..300).contains(&status) {
            let Some(c) = self.calls.get_mut(&id) else {
                return;
            };
            c.dialog.remote_tag = msg.to().and_then(|t| t.tag()).map(str::to_owned);
            // §12.1.2: the route set is the Record-Route in reverse.
            c.dialog.route_set = msg
                .record_routes()
                .iter()
                .rev()
                .map(|r| format!("<{}>", r.uri_raw))
                .collect();
            if let Some(target) = first_contact(msg) {
                c.dialog.remote_target = target;
            }
            c.state = State::Established;
            let cancelled = c.cancelling;
            self.send_ack(id, rng);
            self.events
                .push_back(UaEvent::Answered { call: CallId(id) });
            // The answer crossed our CANCEL: the call is up, so end it.
            if cancelled {
                let _ = self.hangup(now, CallId(id), rng);
            }
            return;
        }
        let retried = matches!(
            self.calls.get(&id).map(|c| &c.state),
            Some(State::Calling { retried: true, .. })
        );
        let cancelling = self.calls.get(&id).is_some_and(|c| c.cancelling);
        if (status == 401 || status == 407) && !retried && !cancelling {
            let user = self
                .calls
                .get(&id)
                .and_then(|c| c.tokens.as_ref().map(|t| t.caller.clone()))
                .unwrap_or_else(|| self.cfg.user.expose().clone());
            let target = self.calls.get(&id).map(|c| c.sent_ruri.clone());
            if let Some(target) = target
                && let Some(auth) = self.credentials(msg, status, &user, "INVITE", &target, rng)
                && let Some(mut c) = self.calls.remove(&id)
            {
                c.invite_cseq += 1;
                c.dialog.cseq = c.invite_cseq;
                // A new INVITE transaction: a CANCEL waits for its own
                // provisional response.
                c.early = false;
                let sent = self.invite_bytes(&mut c, rng, Some(auth)).and_then(|b| {
                    c.invite = b.clone();
                    self.send(now, b, c.circuit, Owner::Invite(id))
                });
                if sent.is_ok() {
                    c.state = State::Calling { retried: true };
                    self.calls.insert(id, c);
                    return;
                }
                self.calls.insert(id, c);
            }
        }
        self.fail(id, status);
    }

    fn send_ack(&mut self, id: u64, rng: &mut dyn CryptoRngCore) {
        let Some(c) = self.calls.get(&id) else { return };
        let bytes = in_dialog(
            &c.dialog,
            "ACK",
            c.invite_cseq,
            self.cfg.local.expose(),
            self.transport(),
            &[],
            rng,
        );
        self.outbox.push_back(Transmit {
            to: self.proxy.clone(),
            circuit: c.circuit,
            bytes,
        });
    }

    /// Digest credentials for a 401/407 (SHA-256 preferred).
    fn credentials(
        &self,
        msg: &Message<'_>,
        status: u16,
        user: &str,
        method: &str,
        uri: &str,
        rng: &mut dyn CryptoRngCore,
    ) -> Option<String> {
        let (challenge_h, answer_h) = if status == 407 {
            (HeaderName::ProxyAuthenticate, "Proxy-Authorization")
        } else {
            (HeaderName::WwwAuthenticate, "Authorization")
        };
        struct Offer {
            alg: Algorithm,
            realm: String,
            nonce: String,
            qop: Option<String>,
            opaque: Option<String>,
        }
        let mut best: Option<Offer> = None;
        for a in msg.auth_values(challenge_h).filter(|a| a.is_digest()) {
            let Some(alg) = Algorithm::parse(a.param("algorithm").as_deref()) else {
                continue;
            };
            let realm = a.param("realm").map(|r| r.into_owned()).unwrap_or_default();
            let Some(nonce) = a.param("nonce").map(|n| n.into_owned()) else {
                continue;
            };
            let qop = a
                .param("qop")
                .filter(|q| q.split(',').any(|x| x.trim() == "auth"))
                .map(|_| "auth".to_owned());
            let opaque = a.param("opaque").map(|o| o.into_owned());
            let better = match &best {
                None => true,
                Some(b) => b.alg == Algorithm::Md5 && alg == Algorithm::Sha256,
            };
            if better {
                best = Some(Offer {
                    alg,
                    realm,
                    nonce,
                    qop,
                    opaque,
                });
            }
        }
        let Offer {
            alg,
            realm,
            nonce,
            qop,
            opaque,
        } = best?;
        let ha1 = Ha1::from_password(
            alg,
            self.cfg.user.expose(),
            &realm,
            self.cfg.password.expose(),
        );
        let cnonce = hex(rng, 8);
        let nc = "00000001";
        let c = Challenge {
            algorithm: alg,
            nonce: &nonce,
            qop: qop.as_deref(),
        };
        let response = c.response(&ha1, method, uri, nc, &cnonce);
        let mut h = format!(
            "{answer_h}: Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", \
             uri=\"{uri}\", response=\"{response}\", algorithm={}",
            alg.as_str()
        );
        if qop.is_some() {
            h.push_str(&format!(", qop=auth, nc={nc}, cnonce=\"{cnonce}\""));
        }
        if let Some(o) = opaque {
            h.push_str(&format!(", opaque=\"{o}\""));
        }
        Some(h)
    }

    fn on_request(
        &mut self,
        now: Instant,
        stx: ServerTx,
        msg: &Message<'_>,
        bytes: &[u8],
        rng: &mut dyn CryptoRngCore,
    ) {
        let method = msg
            .method()
            .map(|m| m.as_str().to_owned())
            .unwrap_or_default();
        let in_dialog = msg.to().is_some_and(|t| t.tag().is_some());
        let call = msg.call_id().and_then(|c| self.by_call_id.get(c)).copied();
        match method.as_str() {
            "INVITE" if !in_dialog => self.on_invite(now, stx, msg, bytes, rng),
            "INVITE" => {
                // A re-INVITE: keep the session as it is.
                let contact = self.response_contact();
                let sdp = build::sdp_answer(1, msg.body());
                self.respond(now, stx, msg, 200, "OK", None, Some(&contact), Some(&sdp));
            }
            "BYE" => match call {
                Some(id) => {
                    self.respond(now, stx, msg, 200, "OK", None, None, None);
                    self.end(id);
                }
                None => {
                    self.respond(
                        now,
                        stx,
                        msg,
                        481,
                        "Call/Transaction Does Not Exist",
                        None,
                        None,
                        None,
                    );
                }
            },
            "CANCEL" => {
                let invite = self.tx.invite_for_cancel(msg);
                self.respond(now, stx, msg, 200, "OK", None, None, None);
                if let (Some(id), Some(istx)) = (call, invite)
                    && let Some(c) = self.calls.get(&id)
                    && let State::Ringing { request, .. } = &c.state
                {
                    let request = request.clone();
                    let tag = c.dialog.local_tag.clone();
                    if let Ok(inv) = Message::parse_datagram(&request, &self.limits) {
                        let resp = build::response(
                            &inv,
                            487,
                            "Request Terminated",
                            Some(&tag),
                            None,
                            None,
                        );
                        let _ = self.tx.respond(now, istx, resp);
                    }
                    self.fail(id, 487);
                }
            }
            "OPTIONS" => {
                let allow = "INVITE, ACK, CANCEL, BYE, OPTIONS";
                let resp = build::response(msg, 200, "OK", Some(&hex(rng, 6)), None, None);
                let resp = add_header(resp, &format!("Allow: {allow}"));
                let _ = self.tx.respond(now, stx, resp);
            }
            _ => {
                self.respond(now, stx, msg, 501, "Not Implemented", None, None, None);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn respond(
        &mut self,
        now: Instant,
        stx: ServerTx,
        req: &Message<'_>,
        code: u16,
        reason: &str,
        tag: Option<&str>,
        contact: Option<&str>,
        sdp: Option<&[u8]>,
    ) {
        let resp = build::response(req, code, reason, tag, contact, sdp);
        let _ = self.tx.respond(now, stx, resp);
    }

    fn on_invite(
        &mut self,
        now: Instant,
        stx: ServerTx,
        msg: &Message<'_>,
        bytes: &[u8],
        rng: &mut dyn CryptoRngCore,
    ) {
        let Some(call_id) = msg.call_id().map(str::to_owned) else {
            return;
        };
        let local_tag = hex(rng, 6);
        let caller = msg
            .from()
            .and_then(|f| f.uri.as_sip().and_then(|u| u.user).map(str::to_owned))
            .unwrap_or_else(|| "anonymous".to_owned());
        match self.cfg.answer {
            Answer::Busy => {
                self.respond(
                    now,
                    stx,
                    msg,
                    486,
                    "Busy Here",
                    Some(&local_tag),
                    None,
                    None,
                );
                return;
            }
            Answer::Decline => {
                self.respond(now, stx, msg, 603, "Decline", Some(&local_tag), None, None);
                return;
            }
            Answer::Accept => {}
        }
        self.next += 1;
        let id = self.next;
        let dialog = Dialog {
            call_id: call_id.clone(),
            local_tag: local_tag.clone(),
            remote_tag: msg.from().and_then(|f| f.tag()).map(str::to_owned),
            local_uri: msg.to().map(|t| t.uri_raw.to_owned()).unwrap_or_default(),
            remote_uri: msg.from().map(|f| f.uri_raw.to_owned()).unwrap_or_default(),
            // §12.1.1: the UAS's route set is the Record-Route in order.
            route_set: msg
                .record_routes()
                .iter()
                .map(|r| format!("<{}>", r.uri_raw))
                .collect(),
            remote_target: first_contact(msg).unwrap_or_default(),
            cseq: 0,
        };
        let contact = self.response_contact();
        self.respond(
            now,
            stx,
            msg,
            180,
            "Ringing",
            Some(&local_tag),
            Some(&contact),
            None,
        );
        self.calls.insert(
            id,
            Call {
                // Calls to us: our requests in them go the way our
                // registration does.
                circuit: Circuit::Shared,
                dialog,
                state: State::Ringing {
                    stx,
                    request: bytes.to_vec(),
                    answer_at: now + self.cfg.ring_time,
                },
                target: String::new(),
                sent_ruri: String::new(),
                tokens: None,
                invite_cseq: msg.cseq().map_or(1, |c| c.seq),
                invite: Vec::new(),
                early: false,
                cancelling: false,
                ending: false,
            },
        );
        self.by_call_id.insert(call_id, id);
        self.events.push_back(UaEvent::Incoming {
            call: CallId(id),
            caller: Sensitive::new(caller),
        });
    }

    fn end(&mut self, id: u64) {
        if self.calls.contains_key(&id) {
            self.events.push_back(UaEvent::Ended { call: CallId(id) });
        }
        self.forget(id);
    }

    fn forget(&mut self, id: u64) {
        if let Some(c) = self.calls.remove(&id) {
            self.by_call_id.remove(&c.dialog.call_id);
        }
    }

    /// When [`Ua::handle_timeout`] should run next.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        let rings = self.calls.values().filter_map(|c| match &c.state {
            State::Ringing { answer_at, .. } => Some(*answer_at),
            _ => None,
        });
        let refresh = self.reg.as_ref().and_then(|r| r.refresh_at);
        self.tx
            .poll_timeout()
            .into_iter()
            .chain(rings)
            .chain(refresh)
            .min()
    }

    /// Runs timers due at `now`: retransmissions and timeouts, answering
    /// ringing calls, refreshing the registration.
    pub fn handle_timeout(&mut self, now: Instant, rng: &mut dyn CryptoRngCore) {
        self.tx.handle_timeout(now);
        self.transaction_events();
        let due: Vec<u64> = self
            .calls
            .iter()
            .filter_map(|(id, c)| match &c.state {
                State::Ringing { answer_at, .. } if *answer_at <= now => Some(*id),
                _ => None,
            })
            .collect();
        for id in due {
            self.answer(now, id, rng);
        }
        if self
            .reg
            .as_ref()
            .and_then(|r| r.refresh_at)
            .is_some_and(|t| t <= now)
        {
            let _ = self.register(now, rng);
        }
    }

    /// Acts on what the transaction layer reports: timeouts and transport
    /// errors end the requests they hit.
    fn transaction_events(&mut self) {
        while let Some(ev) = self.tx.poll_event() {
            // No answer (Timer B or F) counts as 408; a request the
            // driver could not deliver as 503 (§8.1.3.1).
            let (ctx, status) = match ev {
                Event::Timeout(ctx) => (ctx, 408),
                Event::TransportError(ctx) => (ctx, 503),
                Event::NoAck(_) => continue,
            };
            if let Some(owner) = self.by_client.remove(&ctx) {
                match owner {
                    Owner::Register => {
                        if let Some(r) = self.reg.as_mut() {
                            r.retried = false;
                        }
                        self.events
                            .push_back(UaEvent::RegistrationFailed { status });
                    }
                    Owner::Invite(id) => {
                        self.fail(id, status);
                    }
                    Owner::Bye(id) => self.end(id),
                    // §9.1: no final response to the INVITE within 64*T1
                    // of our CANCEL: the call is over.
                    Owner::Cancel(id) => {
                        if self.calls.contains_key(&id) {
                            self.fail(id, status);
                        }
                    }
                }
            }
        }
    }

    fn answer(&mut self, now: Instant, id: u64, rng: &mut dyn CryptoRngCore) {
        let contact = self.response_contact();
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let State::Ringing { stx, request, .. } = &c.state else {
            return;
        };
        let (stx, request) = (*stx, request.clone());
        c.state = State::Established;
        let tag = c.dialog.local_tag.clone();
        let session = rng.next_u64() >> 1;
        if let Ok(inv) = Message::parse_datagram(&request, &self.limits) {
            let sdp = build::sdp_answer(session, inv.body());
            let resp = build::response(&inv, 200, "OK", Some(&tag), Some(&contact), Some(&sdp));
            let _ = self.tx.respond(now, stx, resp);
        }
    }

    /// The next message to send; none while a PrivaSIP-AES counter
    /// waits to be persisted ([`Ua::aes_to_persist`]).
    pub fn poll_transmit(&mut self) -> Option<Transmit<P>> {
        if self.aes_to_persist().is_some() {
            return None;
        }
        self.outbox.pop_front().or_else(|| self.tx.poll_transmit())
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<UaEvent> {
        self.events.pop_front()
    }
}

/// The Via transport token.
fn transport(reliable: bool) -> &'static str {
    if reliable { "TCP" } else { "UDP" }
}

/// A request inside a dialog (§12.2.1.1): to the remote target, through
/// the route set, with the dialog's tags.
fn in_dialog(
    d: &Dialog,
    method: &str,
    cseq: u32,
    local: &str,
    transport: &str,
    extra: &[String],
    rng: &mut dyn CryptoRngCore,
) -> Vec<u8> {
    build::request(&Req {
        method,
        ruri: &d.remote_target,
        local,
        transport,
        branch: &format!("z9hG4bK{}", hex(rng, 8)),
        from: &d.local_uri,
        from_name: None,
        from_tag: &d.local_tag,
        to: &d.remote_uri,
        to_tag: d.remote_tag.as_deref(),
        call_id: &d.call_id,
        cseq,
        contact: None,
        routes: &d.route_set,
        extra,
        sdp: None,
    })
}

/// The URI of the first Contact.
fn first_contact(msg: &Message<'_>) -> Option<String> {
    match msg.contacts()? {
        privasip_message::ContactValue::Addrs(a) => a.first().map(|c| c.uri_raw.to_owned()),
        privasip_message::ContactValue::Star => None,
    }
}

/// The lifetime the registrar granted our binding: the Contact's expires
/// parameter, else the Expires header.
fn granted_expires(msg: &Message<'_>) -> Option<u32> {
    let from_contact = match msg.contacts() {
        Some(privasip_message::ContactValue::Addrs(a)) => a
            .first()
            .and_then(|c| c.params.get("expires").flatten())
            .and_then(|e| e.parse().ok()),
        _ => None,
    };
    from_contact.or_else(|| msg.expires())
}

fn add_header(mut resp: Vec<u8>, header: &str) -> Vec<u8> {
    // Before the blank line that ends the header section.
    if let Some(pos) = resp.windows(4).position(|w| w == b"\r\n\r\n") {
        let insert = format!("\r\n{header}");
        resp.splice(pos..pos, insert.bytes());
    }
    resp
}
