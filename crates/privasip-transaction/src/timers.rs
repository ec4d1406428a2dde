//! RFC 3261 §17.1.1.1 and Table 4: T1, T2, T4 and the timers built on them.

use std::time::Duration;

/// The base timer values. Defaults are RFC 3261's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerConfig {
    /// Round-trip estimate (default 500 ms).
    pub t1: Duration,
    /// Longest retransmit interval for non-INVITE requests and INVITE
    /// responses (default 4 s).
    pub t2: Duration,
    /// How long a message may stay in the network (default 5 s).
    pub t4: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl TimerConfig {
    /// 64*T1: Timers B, F, H, J (unreliable), L and M.
    pub(crate) fn t1x64(&self) -> Duration {
        self.t1 * 64
    }

    /// Timer D: at least 32 s over unreliable transports, 0 over reliable.
    pub(crate) fn timer_d(&self, reliable: bool) -> Duration {
        if reliable {
            Duration::ZERO
        } else {
            self.t1x64().max(Duration::from_secs(32))
        }
    }

    /// Timers I and K: T4 over unreliable transports, 0 over reliable.
    pub(crate) fn t4_unless_reliable(&self, reliable: bool) -> Duration {
        if reliable { Duration::ZERO } else { self.t4 }
    }

    /// Timer J: 64*T1 over unreliable transports, 0 over reliable.
    pub(crate) fn timer_j(&self, reliable: bool) -> Duration {
        if reliable {
            Duration::ZERO
        } else {
            self.t1x64()
        }
    }
}

/// Which timer a deadline belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Timer {
    A,
    B,
    D,
    E,
    F,
    G,
    H,
    I,
    J,
    K,
    L,
    M,
}
