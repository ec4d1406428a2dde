//! Client transactions (RFC 3261 §17.1; RFC 6026 §7.2 for INVITE's
//! Accepted state).

use std::time::{Duration, Instant};

use privasip_message::{HeaderName, Limits, Message};

use crate::layer::{Armed, Out};
use crate::timers::{Timer, TimerConfig};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// INVITE sent, nothing heard (ICT).
    Calling,
    /// Request sent, nothing heard (NICT).
    Trying,
    Proceeding,
    Completed,
    /// A 2xx to INVITE arrived; more 2xx may follow (RFC 6026).
    Accepted,
    Terminated,
}

/// What the transaction user should do with a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    PassUp,
    Absorb,
}

pub(crate) struct Client {
    pub(crate) invite: bool,
    pub(crate) state: State,
    pub(crate) reliable: bool,
    request: Vec<u8>,
    ack: Option<Vec<u8>>,
    interval: Duration,
    pub(crate) armed: Armed,
}

impl Client {
    /// Whether no final response has come yet.
    pub(crate) fn awaits_final(&self) -> bool {
        matches!(
            self.state,
            State::Calling | State::Trying | State::Proceeding
        )
    }

    /// Sends the request and arms the timers (§17.1.1.2, §17.1.2.2).
    pub(crate) fn start(
        now: Instant,
        cfg: &TimerConfig,
        invite: bool,
        request: Vec<u8>,
        reliable: bool,
        out: &mut Out,
    ) -> Client {
        out.send(request.clone());
        let mut armed = Armed::default();
        let (retransmit, timeout) = if invite {
            (Timer::A, Timer::B)
        } else {
            (Timer::E, Timer::F)
        };
        if !reliable {
            armed.arm(retransmit, now + cfg.t1);
        }
        armed.arm(timeout, now + cfg.t1x64());
        Client {
            invite,
            state: if invite {
                State::Calling
            } else {
                State::Trying
            },
            reliable,
            request,
            ack: None,
            interval: cfg.t1,
            armed,
        }
    }

    pub(crate) fn on_response(
        &mut self,
        now: Instant,
        cfg: &TimerConfig,
        status: u16,
        response: &Message<'_>,
        out: &mut Out,
    ) -> Verdict {
        use State::*;
        let provisional = status < 200;
        let success = (200..300).contains(&status);
        match (self.invite, self.state) {
            (true, Calling | Proceeding) if provisional => {
                // §17.1.1.2: no more retransmissions once something is heard.
                self.armed.disarm(Timer::A);
                self.state = Proceeding;
                Verdict::PassUp
            }
            (true, Calling | Proceeding) if success => {
                self.armed.clear();
                self.state = Accepted;
                self.armed.arm(Timer::M, now + cfg.t1x64());
                Verdict::PassUp
            }
            (true, Calling | Proceeding) => {
                self.armed.clear();
                let ack = build_ack(&self.request, response);
                if let Some(ack) = &ack {
                    out.send(ack.clone());
                }
                self.ack = ack;
                self.state = Completed;
                self.arm_or_end(Timer::D, now, cfg.timer_d(self.reliable));
                Verdict::PassUp
            }
            // RFC 6026 §7.2: every 2xx goes up, so the TU can ACK each.
            (true, Accepted) if success => Verdict::PassUp,
            (true, Completed) if !provisional && !success => {
                if let Some(ack) = &self.ack {
                    out.send(ack.clone());
                }
                Verdict::Absorb
            }
            (false, Trying | Proceeding) if provisional => {
                self.state = Proceeding;
                Verdict::PassUp
            }
            (false, Trying | Proceeding) => {
                self.armed.clear();
                self.state = Completed;
                self.arm_or_end(Timer::K, now, cfg.t4_unless_reliable(self.reliable));
                Verdict::PassUp
            }
            _ => Verdict::Absorb,
        }
    }

    /// A timer fired. Returns true if the transaction timed out (B, F):
    /// the transaction user must be told.
    pub(crate) fn on_timer(
        &mut self,
        now: Instant,
        cfg: &TimerConfig,
        timer: Timer,
        out: &mut Out,
    ) -> bool {
        match timer {
            Timer::A if self.state == State::Calling => {
                out.send(self.request.clone());
                self.interval *= 2;
                self.armed.arm(Timer::A, now + self.interval);
                false
            }
            Timer::E if matches!(self.state, State::Trying | State::Proceeding) => {
                out.send(self.request.clone());
                // §17.1.2.2: doubling up to T2 while Trying, T2 once Proceeding.
                self.interval = if self.state == State::Trying {
                    (self.interval * 2).min(cfg.t2)
                } else {
                    cfg.t2
                };
                self.armed.arm(Timer::E, now + self.interval);
                false
            }
            Timer::B if self.state == State::Calling => {
                self.terminate();
                true
            }
            Timer::F if matches!(self.state, State::Trying | State::Proceeding) => {
                self.terminate();
                true
            }
            Timer::D | Timer::K | Timer::M => {
                self.terminate();
                false
            }
            _ => false,
        }
    }

    fn arm_or_end(&mut self, timer: Timer, now: Instant, after: Duration) {
        if after.is_zero() {
            self.terminate();
        } else {
            self.armed.arm(timer, now + after);
        }
    }

    fn terminate(&mut self) {
        self.armed.clear();
        self.state = State::Terminated;
    }
}

/// The ACK for a non-2xx final response (§17.1.1.3): Request-URI, Call-ID,
/// From, CSeq number, the top Via and any Route of the original request;
/// To from the response (it carries the tag).
fn build_ack(request: &[u8], response: &Message<'_>) -> Option<Vec<u8>> {
    let req = Message::parse_datagram(request, &Limits::default()).ok()?;
    let mut ack = format!("ACK {} SIP/2.0\r\n", req.request_uri()?);
    let via = req.header(HeaderName::Via)?.value();
    // Only the top Via value.
    let top_via = via.split(',').next().unwrap_or(via).trim();
    ack.push_str(&format!("Via: {top_via}\r\n"));
    ack.push_str("Max-Forwards: 70\r\n");
    ack.push_str(&format!(
        "From: {}\r\n",
        req.header(HeaderName::From)?.value()
    ));
    ack.push_str(&format!(
        "To: {}\r\n",
        response.header(HeaderName::To)?.value()
    ));
    ack.push_str(&format!("Call-ID: {}\r\n", req.call_id()?));
    ack.push_str(&format!("CSeq: {} ACK\r\n", req.cseq()?.seq));
    for route in req.values(HeaderName::Route) {
        ack.push_str(&format!("Route: {route}\r\n"));
    }
    ack.push_str("Content-Length: 0\r\n\r\n");
    Some(ack.into_bytes())
}
