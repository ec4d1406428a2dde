//! Server transactions (RFC 3261 §17.2; RFC 6026 §7.1 for INVITE's
//! Accepted state).

use std::time::{Duration, Instant};

use crate::layer::{Armed, Out};
use crate::timers::{Timer, TimerConfig};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// NIST: request received, nothing sent.
    Trying,
    Proceeding,
    Completed,
    /// IST: ACK received for a non-2xx final response.
    Confirmed,
    /// IST: a 2xx was sent; absorbs INVITE retransmissions (RFC 6026).
    Accepted,
    Terminated,
}

/// What an incoming request did to an existing transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Retransmit {
    /// A retransmission, handled here.
    Absorbed,
    /// An ACK for a 2xx: the transaction user's business.
    AckForAccepted,
}

pub(crate) struct Server {
    pub(crate) invite: bool,
    pub(crate) state: State,
    reliable: bool,
    /// Boxed slice: exactly its length, and a pointer narrower than a Vec.
    last_response: Option<Box<[u8]>>,
    interval: Duration,
    pub(crate) armed: Armed,
}

impl Server {
    pub(crate) fn new(invite: bool, reliable: bool, cfg: &TimerConfig) -> Server {
        Server {
            invite,
            state: if invite {
                State::Proceeding
            } else {
                State::Trying
            },
            reliable,
            last_response: None,
            interval: cfg.t1,
            armed: Armed::default(),
        }
    }

    /// The same request again, or an ACK (§17.2.1, §17.2.2).
    pub(crate) fn on_request(
        &mut self,
        now: Instant,
        is_ack: bool,
        cfg: &TimerConfig,
        out: &mut Out,
    ) -> Retransmit {
        match (self.invite, is_ack, self.state) {
            (true, true, State::Completed) => {
                self.armed.clear();
                self.state = State::Confirmed;
                if self.reliable {
                    self.state = State::Terminated;
                } else {
                    self.armed.arm(Timer::I, now + cfg.t4);
                }
                Retransmit::Absorbed
            }
            (true, true, State::Accepted) => Retransmit::AckForAccepted,
            (true, false, State::Proceeding | State::Completed)
            | (false, false, State::Proceeding | State::Completed) => {
                if let Some(r) = &self.last_response {
                    out.send(r.to_vec());
                }
                Retransmit::Absorbed
            }
            _ => Retransmit::Absorbed,
        }
    }

    /// The transaction user sends a response (§17.2.1, §17.2.2).
    pub(crate) fn respond(
        &mut self,
        now: Instant,
        cfg: &TimerConfig,
        status: u16,
        response: Vec<u8>,
        out: &mut Out,
    ) -> bool {
        let provisional = status < 200;
        let ok = match (self.invite, self.state) {
            (true, State::Proceeding) if provisional => true,
            (true, State::Proceeding) if status < 300 => {
                self.state = State::Accepted;
                self.armed.arm(Timer::L, now + cfg.t1x64());
                true
            }
            (true, State::Proceeding) => {
                self.state = State::Completed;
                if !self.reliable {
                    self.armed.arm(Timer::G, now + cfg.t1);
                }
                self.armed.arm(Timer::H, now + cfg.t1x64());
                true
            }
            // RFC 6026 §7.1: the TU's 2xx retransmissions pass through.
            (true, State::Accepted) => (200..300).contains(&status),
            (false, State::Trying | State::Proceeding) if provisional => {
                self.state = State::Proceeding;
                true
            }
            (false, State::Trying | State::Proceeding) => {
                self.state = State::Completed;
                let j = cfg.timer_j(self.reliable);
                if j.is_zero() {
                    self.state = State::Terminated;
                } else {
                    self.armed.arm(Timer::J, now + j);
                }
                true
            }
            _ => false,
        };
        if ok {
            // The copy is the one kept, at its exact length; the original
            // may carry spare capacity.
            self.last_response = Some(response.as_slice().into());
            out.send(response);
        }
        ok
    }

    /// A timer fired. Returns true if Timer H fired: no ACK came.
    pub(crate) fn on_timer(
        &mut self,
        now: Instant,
        cfg: &TimerConfig,
        timer: Timer,
        out: &mut Out,
    ) -> bool {
        match timer {
            Timer::G if self.state == State::Completed => {
                if let Some(r) = &self.last_response {
                    out.send(r.to_vec());
                }
                self.interval = (self.interval * 2).min(cfg.t2);
                self.armed.arm(Timer::G, now + self.interval);
                false
            }
            Timer::H if self.state == State::Completed => {
                self.terminate();
                true
            }
            Timer::I | Timer::J | Timer::L => {
                self.terminate();
                false
            }
            _ => false,
        }
    }

    fn terminate(&mut self) {
        self.armed.clear();
        self.state = State::Terminated;
    }
}
