//! Calls on Tor circuits of their own, watched while they last: when the
//! circuit a call was set up on dies under it, the call is ended towards
//! each side with a BYE that says why (RFC 3326), as a user agent ends
//! its own call when its circuit dies.
//!
//! Only calls with a circuit of their own (`set_call_circuits`) are
//! watched: a shared stream that closes takes no call with it (the next
//! request opens another), while a call's own circuit is its path, and
//! with media on it, its voice. The driver keeps such a circuit's stream
//! alive for as long as [`Proxy::watches`] says, so it closes only when
//! it dies.

use std::time::Duration;

use super::*;

/// Calls watched at once; when full, those idle past [`WATCH_IDLE`] go,
/// then the older half.
const LIVE_CALLS: usize = 65_536;

/// A call with no request through us for this long is no longer watched:
/// its users may be gone without a BYE, and its circuit then idles out.
const WATCH_IDLE: Duration = Duration::from_secs(4 * 3600);

/// What RFC 3326 has the BYE say.
const REASON: &str = "SIP ;cause=503 ;text=\"Tor circuit lost\"";

/// A call this proxy set up on a circuit of its own and record-routed.
pub(super) struct LiveCall {
    call_id: String,
    /// The From tag of the caller's requests (whose CSeq is which).
    caller_tag: String,
    /// Towards the caller, on the callee's behalf.
    up: Leg,
    /// Towards the callee, on the caller's behalf.
    down: Leg,
    /// The highest CSeq of each side's requests through us.
    caller_cseq: u32,
    callee_cseq: Option<u32>,
    /// Whether this proxy accounts the call (it authenticated the caller).
    accounted: bool,
    /// The last request of the call through us.
    last: Instant,
}

/// A BYE's parts towards one side, as that side's link has them.
struct Leg {
    /// The Request-URI: that side's Contact.
    target: String,
    /// The Route set from us towards it.
    routes: Vec<String>,
    from: String,
    to: String,
}

/// What [`Proxy::watch_call`] reads.
pub(super) struct Answered<'a, 'm> {
    /// The INVITE as it reached us.
    pub(super) received: &'a [u8],
    /// The INVITE as we sent it down this branch.
    pub(super) forwarded: &'a [u8],
    /// The 2xx as it reached us.
    pub(super) answer: &'a Message<'m>,
    /// The 2xx as we sent it up.
    pub(super) up: &'a Message<'m>,
    pub(super) accounted: bool,
}

pub(super) fn table() -> Bounded<u64, LiveCall> {
    Bounded::new(LIVE_CALLS)
}

impl<P: Clone + Eq + std::hash::Hash> Proxy<P> {
    /// The circuit number of `call_id`'s call, when calls have circuits.
    fn call_number(&self, call_id: &str) -> Option<u64> {
        match self.circuit_for("BYE", call_id) {
            Circuit::Call(n) => Some(n),
            Circuit::Shared => None,
        }
    }

    /// An INVITE we forwarded on a circuit of its own was answered 2xx:
    /// remember how to end the call from here.
    pub(super) fn watch_call(&mut self, now: Instant, a: &Answered<'_, '_>) {
        if !self.cfg.record_route || self.call_circuits.is_none() {
            return;
        }
        let Some(call) = self.live_call(now, a) else {
            return;
        };
        let Some(n) = self.call_number(&call.call_id) else {
            return;
        };
        let live = self.live.entry(
            n,
            || call,
            |c| now.saturating_duration_since(c.last) >= WATCH_IDLE,
            |c| c.last,
        );
        live.last = now;
    }

    /// The call's record, or None when the messages do not say enough
    /// (no Contact, or no Record-Route of ours in the answer).
    fn live_call(&self, now: Instant, a: &Answered<'_, '_>) -> Option<LiveCall> {
        let received = Message::parse_datagram(a.received, &self.limits).ok()?;
        let forwarded = Message::parse_datagram(a.forwarded, &self.limits).ok()?;
        let contact = |m: &Message<'_>| match m.contacts() {
            Some(ContactValue::Addrs(v)) => v.first().map(|c| c.uri_raw.to_owned()),
            _ => None,
        };
        let header = |m: &Message<'_>, name| m.header(name).map(|h| h.value().to_owned());
        // The answer's Record-Route: the callee's side above ours, the
        // caller's below.
        let rr = a.answer.address_texts(HeaderName::RecordRoute);
        let ours = a
            .answer
            .record_routes()
            .iter()
            .position(|r| matches!(&r.uri, Uri::Sip(u) if self.is_us(u)))?;
        let down = Leg {
            target: contact(a.answer)?,
            routes: rr
                .get(..ours)?
                .iter()
                .rev()
                .map(|r| (*r).to_owned())
                .collect(),
            from: header(&forwarded, HeaderName::From)?,
            to: header(a.answer, HeaderName::To)?,
        };
        let up = Leg {
            target: contact(&received)?,
            routes: received
                .address_texts(HeaderName::RecordRoute)
                .into_iter()
                .map(str::to_owned)
                .collect(),
            from: header(a.up, HeaderName::To)?,
            to: header(&received, HeaderName::From)?,
        };
        Some(LiveCall {
            call_id: received.call_id()?.to_owned(),
            caller_tag: received.from()?.tag()?.to_owned(),
            up,
            down,
            caller_cseq: received.cseq()?.seq,
            callee_cseq: None,
            accounted: a.accounted,
            last: now,
        })
    }

    /// A request of a dialog we record-routed went through: a BYE ends
    /// the watch, anything else moves its side's CSeq on.
    pub(super) fn call_request(&mut self, now: Instant, msg: &Message<'_>) {
        let Some(n) = msg.call_id().and_then(|id| self.call_number(id)) else {
            return;
        };
        if msg.method().is_some_and(|m| m.as_str() == "BYE") {
            self.live.remove(&n);
            return;
        }
        let (Some(call), Some(seq)) = (self.live.get_mut(&n), msg.cseq().map(|c| c.seq)) else {
            return;
        };
        if msg.from().and_then(|f| f.tag()) == Some(call.caller_tag.as_str()) {
            call.caller_cseq = call.caller_cseq.max(seq);
        } else {
            call.callee_cseq = Some(call.callee_cseq.map_or(seq, |s| s.max(seq)));
        }
        call.last = now;
    }

    /// Whether the call on `circuit` is watched: the driver keeps that
    /// circuit's stream alive while it is (so it closes only when it
    /// dies, never for being idle).
    pub fn watches(&self, now: Instant, circuit: Circuit) -> bool {
        match circuit {
            Circuit::Call(n) => self
                .live
                .get(&n)
                .is_some_and(|c| now.saturating_duration_since(c.last) < WATCH_IDLE),
            Circuit::Shared => false,
        }
    }

    /// Calls watched now.
    pub fn live_calls(&self) -> usize {
        self.live.len()
    }

    /// The circuit of call `n` died: the call ends, with a BYE towards
    /// the caller (on its still-working link) and one towards the callee
    /// (on a new circuit: it arrives if the far side can still be
    /// reached), each saying why; its accounting record is closed.
    pub(super) fn call_circuit_lost(&mut self, now: Instant, n: u64) {
        let Some(call) = self.live.remove(&n) else {
            return;
        };
        let circuit = Circuit::Call(n);
        let up_cseq = call.callee_cseq.map_or(1, |s| s.saturating_add(1));
        let down_cseq = call.caller_cseq.saturating_add(1);
        self.send_bye(now, &call.call_id, &call.up, up_cseq, circuit);
        self.send_bye(now, &call.call_id, &call.down, down_cseq, circuit);
        if call.accounted {
            self.store_events.push_back(StoreEvent::CallEnded {
                call_id: Sensitive::new(call.call_id.clone()),
            });
        }
        self.ended.entry(call.call_id, || now, |_| false, |at| *at);
        self.notice(now, Notice::CallCircuitLost);
    }

    /// A BYE of our own along `leg`, in a client transaction whose
    /// answer ends here.
    fn send_bye(&mut self, now: Instant, call_id: &str, leg: &Leg, cseq: u32, circuit: Circuit) {
        let mut text = format!("BYE {} SIP/2.0\r\nMax-Forwards: 70\r\n", leg.target);
        for r in &leg.routes {
            text.push_str("Route: ");
            text.push_str(r);
            text.push_str("\r\n");
        }
        text.push_str(&format!(
            "From: {}\r\nTo: {}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} BYE\r\nReason: {REASON}\r\n\
             Content-Length: 0\r\n\r\n",
            leg.from, leg.to
        ));
        let Ok(mut bye) = Message::parse_datagram(text.as_bytes(), &self.limits) else {
            return;
        };
        let hop = match bye.routes().first() {
            Some(r) => r.uri_raw.to_owned(),
            None => leg.target.clone(),
        };
        let Ok(next) = self.next_hop(&hop) else {
            return;
        };
        let branch = self.tag();
        let via = format!(
            "SIP/2.0/{} {};branch={BRANCH_COOKIE}{branch}",
            via_transport(&next),
            self.sent_by_for(&[&next.peer]),
        );
        if bye.push_via(via).is_err() {
            return;
        }
        let _ = self
            .tx
            .send_request(now, bye.to_bytes(), next.peer, next.reliable, circuit);
    }
}
