//! Tor's latency on loopback: a per-link delay model, the delays drawn
//! for one network (`DIR/latency.json`), and where each node dials from.
//!
//! Every relay advertises an OR port on which our forwarder listens
//! ([`crate::forward`]) and listens itself on another that it does not
//! advertise. The forwarder learns who dialled from the kernel (which of
//! the network's tor processes owns the other end of the connection:
//! tor binds no source address for loopback destinations, so addresses
//! cannot tell) and holds every byte, both ways, for the one-way delay
//! drawn for that pair of nodes. Every link of every circuit pays it:
//! client to guard, relay to relay, onion host to its guard, C tor and
//! arti alike. doc/latency.md gives the model's sources.

use std::collections::BTreeMap;
use std::path::Path;

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::TestnetError;

/// The file in the network's directory with the model and the delays.
pub const LATENCY_FILE: &str = "latency.json";

/// The name under which connections from any other process (an arti
/// client, a tool) are known: they share one delay to each relay.
pub const OTHER_CLIENT: &str = "client";

/// Which latency the network emulates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// Loopback as it is: microseconds per link.
    #[default]
    None,
    /// The live Tor network's per-link delays (doc/latency.md).
    Live,
}

impl Profile {
    /// The name used in files and reports.
    pub fn name(self) -> &'static str {
        match self {
            Profile::None => "none",
            Profile::Live => "live",
        }
    }

    /// The per-link model, if the profile adds delay.
    pub fn model(self) -> Option<Model> {
        match self {
            Profile::None => None,
            Profile::Live => Some(Model::LIVE),
        }
    }
}

/// The per-link model: a one-way delay drawn once per pair of nodes
/// from a lognormal distribution, plus per-chunk jitter that never
/// reorders bytes.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Model {
    /// The lognormal's median one-way delay of a link, in ms.
    pub median_ms: f64,
    /// The lognormal's shape (the standard deviation of the log).
    pub sigma: f64,
    /// The mean of the exponential jitter added to each chunk, in ms.
    pub jitter_mean_ms: f64,
}

impl Model {
    /// Fitted to Sharma et al. (PoPETs 2020): a mean one-way delay of
    /// ~280 ms over a 3-hop circuit to a server (4 links: 3 Tor links
    /// and the exit's) and ~458 ms between two Tor endpoints (7 links: 3
    /// from the client to the rendezvous point, 4 from the onion
    /// service). A least-squares mean per link of 66.6 ms gives 266 ms and
    /// 466 ms; sigma 0.5 keeps 90% of links between 0.44x and 2.3x the
    /// median.
    pub const LIVE: Model = Model {
        median_ms: 58.8,
        sigma: 0.5,
        jitter_mean_ms: 2.0,
    };

    /// The mean one-way delay of a link, in ms (without jitter).
    pub fn mean_ms(&self) -> f64 {
        self.median_ms * (self.sigma * self.sigma / 2.0).exp()
    }

    /// A link's one-way delay, from `rng`.
    fn draw(&self, rng: &mut ChaCha20Rng) -> f64 {
        // Box-Muller: a standard normal from two uniforms in (0, 1].
        let u1 = unit(rng);
        let u2 = unit(rng);
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        self.median_ms * (self.sigma * z).exp()
    }
}

/// A uniform number in (0, 1].
pub(crate) fn unit(rng: &mut dyn RngCore) -> f64 {
    // 53 random bits, shifted off zero.
    ((rng.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64
}

/// A relay's two OR ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrPorts {
    /// The port in the consensus, where the forwarder listens.
    pub advertised: u16,
    /// The port tor listens on.
    pub real: u16,
}

/// One pair of nodes and the one-way delay of the link between them (the
/// same both ways, whoever dials: tor reuses a connection either side
/// opened).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Link {
    /// The two nodes, in name order.
    pub between: [String; 2],
    /// The one-way delay, in ms.
    pub one_way_ms: f64,
}

/// What `DIR/latency.json` holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The profile.
    pub profile: Profile,
    /// The seed the delays were drawn from.
    pub seed: u64,
    /// The model they were drawn from, and its mean per link.
    pub model: Model,
    /// The model's mean one-way delay per link, in ms.
    pub mean_link_ms: f64,
    /// The nodes that dial relays: every relay and client daemon (and
    /// [`OTHER_CLIENT`] for anything else).
    pub diallers: Vec<String>,
    /// Each relay's OR ports.
    pub relays: BTreeMap<String, OrPorts>,
    /// Every link a circuit can use: relay to relay, and every dialler
    /// ([`OTHER_CLIENT`] included) to every relay.
    pub links: Vec<Link>,
}

impl Plan {
    /// Draws the delays for a network of `relays` (with their OR ports)
    /// and `clients` (daemons with addresses of their own).
    pub(crate) fn draw(
        profile: Profile,
        model: Model,
        seed: u64,
        relays: BTreeMap<String, OrPorts>,
        diallers: Vec<String>,
    ) -> Plan {
        let mut links = Vec::new();
        let other = OTHER_CLIENT.to_owned();
        for from in diallers.iter().chain([&other]) {
            for to in relays.keys() {
                if from == to {
                    continue;
                }
                let mut between = [from.clone(), to.clone()];
                between.sort();
                if links.iter().any(|l: &Link| l.between == between) {
                    continue;
                }
                let mut rng = ChaCha20Rng::seed_from_u64(pair_seed(seed, &between));
                let one_way_ms = (model.draw(&mut rng) * 10.0).round() / 10.0;
                links.push(Link {
                    between,
                    one_way_ms,
                });
            }
        }
        Plan {
            profile,
            seed,
            mean_link_ms: (model.mean_ms() * 10.0).round() / 10.0,
            model,
            diallers,
            relays,
            links,
        }
    }

    /// The one-way delay between two nodes, in ms (None if no link).
    pub fn delay_ms(&self, a: &str, b: &str) -> Option<f64> {
        let mut between = [a.to_owned(), b.to_owned()];
        between.sort();
        self.links
            .iter()
            .find(|l| l.between == between)
            .map(|l| l.one_way_ms)
    }

    /// Reads `DIR/latency.json`; None when the network has no latency.
    pub fn load(dir: &Path) -> Result<Option<Plan>, TestnetError> {
        let path = dir.join(LATENCY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| TestnetError::Step(format!("{} is malformed: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) fn save(&self, dir: &Path) -> Result<(), TestnetError> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| TestnetError::Step(format!("writing {LATENCY_FILE}: {e}")))?;
        std::fs::write(dir.join(LATENCY_FILE), text + "\n")?;
        Ok(())
    }
}

/// A pair's own seed: the network's seed and the two names, so adding a
/// node changes no other pair's delay.
fn pair_seed(seed: u64, between: &[String; 2]) -> u64 {
    // FNV-1a: stable across builds and platforms, unlike std's hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in between[0].bytes().chain([0]).chain(between[1].bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(seed: u64) -> Plan {
        let relays: BTreeMap<String, OrPorts> = (0..8)
            .map(|i| {
                (
                    format!("relay{i}"),
                    OrPorts {
                        advertised: 100 + i,
                        real: 200 + i,
                    },
                )
            })
            .collect();
        let diallers = (0..10)
            .map(|i| {
                if i < 8 {
                    format!("relay{i}")
                } else {
                    format!("client-{i}")
                }
            })
            .collect();
        Plan::draw(Profile::Live, Model::LIVE, seed, relays, diallers)
    }

    #[test]
    fn delays_are_symmetric_seeded_and_near_the_model() {
        let p = plan(7);
        assert_eq!(p, plan(7), "the same seed draws the same delays");
        assert_ne!(p.links, plan(8).links);
        assert_eq!(
            p.delay_ms("relay1", "relay5"),
            p.delay_ms("relay5", "relay1")
        );
        assert!(p.delay_ms("relay1", "relay1").is_none());
        assert!(p.delay_ms(OTHER_CLIENT, "relay3").is_some());
        // 8 relays: 28 pairs; 2 client daemons and the other clients: 24.
        assert_eq!(p.links.len(), 28 + 24);
    }

    #[test]
    fn the_model_s_mean_matches_the_published_circuits() {
        let mean = Model::LIVE.mean_ms();
        // Sharma et al.: ~280 ms over 4 links, ~458 ms over 7.
        assert!((4.0 * mean - 280.0).abs() / 280.0 < 0.06, "{mean}");
        assert!((7.0 * mean - 458.0).abs() / 458.0 < 0.03, "{mean}");
        // Many draws average to it.
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let n = 20_000;
        let avg = (0..n).map(|_| Model::LIVE.draw(&mut rng)).sum::<f64>() / f64::from(n);
        assert!((avg - mean).abs() / mean < 0.03, "{avg} vs {mean}");
    }
}
