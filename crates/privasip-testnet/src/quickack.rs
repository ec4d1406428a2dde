//! Opt-in: quick ACKs on the loopback routes, for measurements.
//!
//! tor leaves Nagle's algorithm on, and on loopback a second write waits
//! for the delayed ACK of the first: ~43 ms per step, which on the real
//! network hides inside the round-trip time but here dominates and
//! quantises every timing. `quickack 1` on the local routes removes it
//! (measured: 43 ms -> 0.5 ms per stream). It changes the machine's
//! routing table (root only) until `down` restores it, so it is never on
//! by default.

use std::path::Path;
use std::process::Command;

use crate::TestnetError;

/// The marker in the network's directory: `down` restores the routes.
pub(crate) const MARKER: &str = "quickack";

const ROUTES: [&str; 2] = ["127.0.0.1", "127.0.0.0/8"];

/// Sets (or clears) quickack on the loopback routes.
pub(crate) fn set(on: bool) -> Result<(), TestnetError> {
    for route in ROUTES {
        let out = Command::new("ip")
            .args(["route", "change", "local", route, "dev", "lo"])
            .args(["proto", "kernel", "scope", "host", "src", "127.0.0.1"])
            .args(["table", "local", "quickack", if on { "1" } else { "0" }])
            .output()
            .map_err(|e| TestnetError::Step(format!("cannot run ip (iproute2): {e}")))?;
        if !out.status.success() {
            return Err(TestnetError::Step(format!(
                "ip route change {route} quickack: {} (needs root)",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
    }
    Ok(())
}

/// Restores the routes if this network's `up` changed them.
pub(crate) fn restore(dir: &Path) {
    let marker = dir.join(MARKER);
    if marker.exists() && set(false).is_ok() {
        let _ = std::fs::remove_file(marker);
    }
}
