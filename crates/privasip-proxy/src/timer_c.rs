//! Timer C (RFC 3261 §16.6 step 11, §16.7 step 2, §16.8): a proxy's
//! bound on how long an INVITE branch may ring. Timer B ends a branch
//! that never answers; once a provisional response arrives only Timer C
//! does. When it fires the branch is cancelled; if the callee ignores the
//! CANCEL too, the branch ends as 408 after 64*T1 more.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant};

use privasip_transaction::ClientTx;

/// RFC 3261: "greater than 3 minutes".
pub const DEFAULT_TIMER_C: Duration = Duration::from_secs(181);

/// How long a cancelled branch may take to end (64*T1).
const AFTER_CANCEL: Duration = Duration::from_secs(32);

/// What a fired Timer C asks of the proxy.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Expiry {
    /// The branch rang too long: send it a CANCEL.
    Cancel(ClientTx),
    /// The branch is over: treat it as 408.
    Timeout(ClientTx),
}

struct Branch {
    due: Instant,
    provisional: bool,
    cancelled: bool,
}

/// The longest Timer C accepted.
pub const MAX_TIMER_C: Duration = Duration::from_secs(24 * 3600);

/// Timer C of every ringing INVITE branch.
pub(crate) struct TimerC {
    interval: Duration,
    branches: HashMap<ClientTx, Branch>,
    /// Due times; an entry whose branch is gone or moved is stale.
    heap: BinaryHeap<Reverse<(Instant, ClientTx)>>,
}

impl TimerC {
    pub(crate) fn new(interval: Duration) -> TimerC {
        TimerC {
            interval,
            branches: HashMap::new(),
            heap: BinaryHeap::new(),
        }
    }

    /// At most [`MAX_TIMER_C`]: a longer one could overflow an
    /// `Instant` (and no call rings for a day).
    pub(crate) fn set_interval(&mut self, interval: Duration) {
        self.interval = interval.min(MAX_TIMER_C);
    }

    fn arm(&mut self, ctx: ClientTx, due: Instant) {
        self.heap.push(Reverse((due, ctx)));
    }

    /// An INVITE branch went out.
    pub(crate) fn start(&mut self, now: Instant, ctx: ClientTx) {
        let due = now + self.interval;
        self.branches.insert(
            ctx,
            Branch {
                due,
                provisional: false,
                cancelled: false,
            },
        );
        self.arm(ctx, due);
    }

    /// A provisional response (101-199) on the branch: the timer starts
    /// over (§16.7 step 2).
    pub(crate) fn provisional(&mut self, now: Instant, ctx: ClientTx) {
        let due = now + self.interval;
        let Some(b) = self.branches.get_mut(&ctx) else {
            return;
        };
        b.provisional = true;
        if !b.cancelled {
            b.due = due;
            self.arm(ctx, due);
        }
    }

    /// The branch has its final response.
    pub(crate) fn stop(&mut self, ctx: ClientTx) {
        self.branches.remove(&ctx);
    }

    /// The next due time.
    pub(crate) fn poll_timeout(&mut self) -> Option<Instant> {
        while let Some(&Reverse((due, ctx))) = self.heap.peek() {
            if self.branches.get(&ctx).is_some_and(|b| b.due == due) {
                return Some(due);
            }
            self.heap.pop();
        }
        None
    }

    /// The branches whose timer fired by `now`, and what to do.
    pub(crate) fn expired(&mut self, now: Instant) -> Vec<Expiry> {
        let mut out = Vec::new();
        while let Some(&Reverse((due, ctx))) = self.heap.peek() {
            if due > now {
                break;
            }
            self.heap.pop();
            let Some(b) = self.branches.get_mut(&ctx).filter(|b| b.due == due) else {
                continue;
            };
            if b.provisional && !b.cancelled {
                b.cancelled = true;
                b.due = now + AFTER_CANCEL;
                let due = b.due;
                self.arm(ctx, due);
                out.push(Expiry::Cancel(ctx));
            } else {
                self.branches.remove(&ctx);
                out.push(Expiry::Timeout(ctx));
            }
        }
        out
    }
}
