#![doc = include_str!("../README.md")]

mod forward;
mod latency;
mod launch;
mod process;
mod quickack;
mod torrc;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use privasip_tor::{CTorConfig, PrivateNetwork};
use serde::{Deserialize, Serialize};

pub use forward::run as run_forwarder;
pub use latency::{LATENCY_FILE, Link, Model, OTHER_CLIENT, OrPorts, Plan, Profile};
pub use launch::{Options, restart, up};
pub use process::{NodeState, down, forwarder_pid, kill, status};

/// The file in the network's directory that describes it.
pub const STATE_FILE: &str = "testnet.toml";

/// Which packet scheduler every node runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Scheduler {
    /// `Schedulers Vanilla`: 10-20x faster than KIST on loopback.
    #[default]
    Vanilla,
    /// `Schedulers KIST,KISTLite,Vanilla`: tor's default, as on the real
    /// network.
    Kist,
}

impl Scheduler {
    fn torrc(self) -> &'static str {
        match self {
            Scheduler::Vanilla => "Vanilla",
            Scheduler::Kist => "KIST,KISTLite,Vanilla",
        }
    }

    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Scheduler::Vanilla => "vanilla",
            Scheduler::Kist => "kist",
        }
    }
}

/// A C tor client daemon of the network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Client {
    /// Its SOCKS port (with `IsolateSOCKSAuth`).
    pub socks: SocketAddr,
    /// Its control port (cookie authentication).
    pub control: SocketAddr,
}

/// A running network, as `DIR/testnet.toml` records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Testnet {
    /// Every node's name (its directory under `DIR/nodes`).
    pub nodes: Vec<String>,
    /// The scheduler the nodes run.
    pub scheduler: Scheduler,
    /// The latency its links pay (`DIR/latency.json` has the delays).
    #[serde(default)]
    pub latency: Profile,
    /// The C tor client daemons, by name (`a`, `b`).
    pub clients: BTreeMap<String, Client>,
    /// What an arti client needs to join.
    pub network: PrivateNetwork,
}

impl Testnet {
    /// Reads `DIR/testnet.toml`.
    pub fn load(dir: &Path) -> Result<Self, TestnetError> {
        let path = dir.join(STATE_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            TestnetError::NotRunning(format!(
                "{}: {e} (start one with `privasip testnet up --dir {}`)",
                path.display(),
                dir.display()
            ))
        })?;
        toml::from_str(&text)
            .map_err(|e| TestnetError::Step(format!("{} is malformed: {e}", path.display())))
    }

    /// The C tor backend settings for client daemon `name` (`a` or `b`),
    /// with onion keys kept in `key_dir`.
    pub fn ctor(&self, name: &str, key_dir: PathBuf) -> Option<CTorConfig> {
        self.clients.get(name).map(|c| CTorConfig {
            socks: c.socks,
            control: c.control,
            key_dir,
        })
    }
}

/// What went wrong with the network.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestnetError {
    /// A program the network needs is not installed.
    #[error(
        "`{0}` is not installed; install Debian's tor package: sudo apt-get install -y tor (it provides tor and tor-gencert)"
    )]
    Missing(&'static str),
    /// A network already runs in that directory.
    #[error("a testnet is already running in {0} (stop it with `privasip testnet down --dir {0}`)")]
    AlreadyRunning(String),
    /// No network runs there.
    #[error("no testnet: {0}")]
    NotRunning(String),
    /// A step failed.
    #[error("{0}")]
    Step(String),
    /// A step took too long.
    #[error("timed out {0}")]
    Timeout(String),
    /// Local I/O.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}
