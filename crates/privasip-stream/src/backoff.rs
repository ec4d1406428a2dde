//! Retrying a connection with exponential backoff, within a patience:
//! the one policy both drivers use (the user agent reopening its stream
//! to the proxy, the proxy opening a Tor stream to a peer).

use std::time::{Duration, Instant};

/// The pauses between attempts: `first`, doubling up to `max`, for as
/// long as the next attempt would still start within the patience.
#[derive(Clone, Debug)]
pub struct Backoff {
    pause: Duration,
    max: Duration,
    give_up: Instant,
}

impl Backoff {
    /// Attempts from `now` for up to `patience`.
    pub fn new(now: Instant, first: Duration, max: Duration, patience: Duration) -> Backoff {
        Backoff {
            pause: first,
            max,
            give_up: now + patience,
        }
    }

    /// An attempt failed at `now`: how long to wait before the next, or
    /// `None` if the next would start after the patience ran out.
    pub fn after_failure(&mut self, now: Instant) -> Option<Duration> {
        if now + self.pause >= self.give_up {
            return None;
        }
        let pause = self.pause;
        self.pause = (self.pause * 2).min(self.max);
        Some(pause)
    }

    /// How much of the patience is left at `now` (an attempt begun then
    /// must end within it).
    pub fn left(&self, now: Instant) -> Duration {
        self.give_up.saturating_duration_since(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_gives_up_with_the_patience() {
        #[allow(clippy::disallowed_methods)] // any starting instant
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut b = Backoff::new(t0, ms(250), ms(1000), ms(3000));
        let mut now = t0;
        let mut pauses = Vec::new();
        while let Some(p) = b.after_failure(now) {
            pauses.push(p);
            now += p;
        }
        // 250, 500, 1000, 1000: the next 1000 would start at 3750 > 3000.
        assert_eq!(pauses, [ms(250), ms(500), ms(1000), ms(1000)]);
        assert_eq!(b.left(now), ms(250));
        assert_eq!(b.left(t0), ms(3000));
    }
}
