//! The `[tor]` section of a proxy configuration, and setting Tor up.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::config_relative as relative;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use privasip_server::{TorRoute, TorRoutes, TorSetup};
use privasip_tor::{CTor, CTorConfig, OnionSpec, TorBackend};
use serde::{Deserialize, Serialize};

/// `[tor]`: how this proxy reaches Tor and which domains are behind it.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TorSection {
    /// `arti`: Tor embedded in this process (default); `c-tor`: an
    /// external tor daemon (SOCKS and control port).
    #[serde(default = "arti")]
    pub backend: String,
    /// A `privasip testnet` directory to take the daemon's ports from
    /// (relative to the configuration file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub testnet: Option<PathBuf>,
    /// Which of the testnet's client daemons (`a` or `b`), for `c-tor`.
    #[serde(default = "client_a")]
    pub testnet_client: String,
    /// The daemon's SOCKS port (with IsolateSOCKSAuth), without a testnet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socks: Option<SocketAddr>,
    /// The daemon's control port (cookie authentication), without a testnet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control: Option<SocketAddr>,
    /// Host an onion service for SIP on this port (0: none).
    #[serde(default)]
    pub onion_port: u16,
    /// Tor's proof-of-work defence for our onion service (C tor: clients
    /// are asked for effort only while introductions flood in). On by
    /// default; arti's service side has none yet.
    #[serde(default = "yes")]
    pub onion_pow: bool,
    /// Where onion keys (and arti's state) persist, relative to the
    /// configuration file.
    #[serde(default = "keys_dir")]
    pub key_dir: PathBuf,
    /// `per-call`: a fresh circuit for every call; `shared`: one circuit.
    #[serde(default = "per_call")]
    pub isolation: String,
    /// SIP domain (or onion host) -> `ONION:PORT`.
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    pub routes: HashMap<String, String>,
}

fn yes() -> bool {
    true
}

fn arti() -> String {
    "arti".into()
}
fn client_a() -> String {
    "a".into()
}
fn keys_dir() -> PathBuf {
    "keys".into()
}
fn per_call() -> String {
    "per-call".into()
}

/// Tor, ready for the driver.
pub struct Tor {
    /// Driver settings.
    pub setup: TorSetup,
    /// Resolver entries: lowercased domain or onion host -> route index.
    pub hosts: HashMap<String, u16>,
    /// Our name on Tor links.
    pub name: String,
    /// Whether each call rides a circuit of its own (the proxy core's
    /// [`privasip_proxy::Proxy::set_call_circuits`]).
    pub per_call: bool,
}

fn parse_target(s: &str) -> Result<(String, u16)> {
    let (host, port) = s
        .rsplit_once(':')
        .with_context(|| format!("[tor.routes] {s:?}: expected ONION:PORT"))?;
    let port: u16 = port
        .parse()
        .with_context(|| format!("[tor.routes] {s:?}: bad port"))?;
    if host.is_empty() {
        bail!("[tor.routes] {s:?}: no host");
    }
    Ok((host.to_ascii_lowercase(), port))
}

impl TorSection {
    /// Tor through `backend` (`arti` or `c-tor`), every other setting at
    /// its default: no onion service, a fresh circuit per call.
    pub fn new(backend: &str) -> TorSection {
        TorSection {
            backend: backend.to_owned(),
            testnet: None,
            testnet_client: client_a(),
            socks: None,
            control: None,
            onion_port: 0,
            onion_pow: yes(),
            key_dir: keys_dir(),
            isolation: per_call(),
            routes: HashMap::new(),
        }
    }

    /// Tor from the `privasip testnet` directory `net` (relative to the
    /// configuration file), as its client `client` (`a` or `b`).
    pub fn testnet(backend: &str, net: impl Into<PathBuf>, client: &str) -> TorSection {
        TorSection {
            testnet: Some(net.into()),
            testnet_client: client.to_owned(),
            ..TorSection::new(backend)
        }
    }

    /// The onion service's virtual port (0: none).
    pub fn onion_port(&self) -> u16 {
        self.onion_port
    }

    /// The domains `[tor.routes]` names, lowercased (explicit routes, for
    /// the relay policy).
    pub fn route_domains(&self) -> impl Iterator<Item = String> + '_ {
        self.routes.keys().map(|d| d.to_ascii_lowercase())
    }

    /// The onion host `[tor.routes]` gives `domain`, lowercased.
    pub fn route_host(&self, domain: &str) -> Option<String> {
        let target = self
            .routes
            .iter()
            .find(|(d, _)| d.eq_ignore_ascii_case(domain))?
            .1;
        parse_target(target).ok().map(|(host, _)| host)
    }

    /// Whether every call gets a fresh circuit.
    pub fn per_call(&self) -> bool {
        self.isolation == "per-call"
    }

    /// Checks what serde cannot: the backend's name, and what it needs.
    pub fn check(&self) -> Result<()> {
        if !matches!(self.backend.as_str(), "arti" | "c-tor") {
            bail!(
                "[tor] backend {:?}: use \"arti\" or \"c-tor\"",
                self.backend
            );
        }
        if !matches!(self.isolation.as_str(), "per-call" | "shared") {
            bail!("[tor] isolation must be \"per-call\" or \"shared\"");
        }
        if self.backend == "c-tor"
            && self.testnet.is_none()
            && (self.socks.is_none() || self.control.is_none())
        {
            bail!("[tor] backend c-tor needs testnet = \"DIR\", or both socks and control");
        }
        for t in self.routes.values() {
            parse_target(t)?;
        }
        Ok(())
    }
}

/// The file where a proxy writes its onion address (next to its keys).
pub fn address_file(key_dir: &Path) -> PathBuf {
    key_dir.join("sip.onion")
}

/// Embedded arti, its state in `key_dir` (the binary builds this crate
/// with the `arti` feature; without it, only the C tor daemon).
#[cfg(feature = "arti")]
async fn start_arti(
    key_dir: &Path,
    testnet: Option<&privasip_testnet::Testnet>,
) -> Result<Arc<dyn TorBackend>> {
    tracing::info!("starting arti (embedded Tor) and bootstrapping");
    let arti = privasip_arti::Arti::start(privasip_arti::ArtiConfig {
        state_dir: key_dir.join("arti-state"),
        cache_dir: key_dir.join("arti-cache"),
        network: testnet.map(|n| n.network.clone()),
    })
    .await
    .context("cannot start arti")?;
    Ok(Arc::new(arti))
}

#[cfg(not(feature = "arti"))]
async fn start_arti(
    _key_dir: &Path,
    _testnet: Option<&privasip_testnet::Testnet>,
) -> Result<Arc<dyn TorBackend>> {
    bail!("this build has no embedded arti: use [tor] backend = \"c-tor\"")
}

/// The backend a `[tor]` section names, started (arti bootstraps here).
pub async fn backend(t: &TorSection, config: &Path) -> Result<Arc<dyn TorBackend>> {
    t.check()?;
    let key_dir = relative(config, &t.key_dir);
    let testnet = match &t.testnet {
        Some(dir) => Some(privasip_testnet::Testnet::load(&relative(config, dir))?),
        None => None,
    };
    if t.backend == "arti" {
        return start_arti(&key_dir, testnet.as_ref()).await;
    }
    let ctor_cfg = match &testnet {
        Some(net) => net
            .ctor(&t.testnet_client, key_dir)
            .with_context(|| format!("the testnet has no client {:?}", t.testnet_client))?,
        None => CTorConfig {
            socks: t.socks.context("[tor] socks")?,
            control: t.control.context("[tor] control")?,
            key_dir,
        },
    };
    Ok(Arc::new(CTor::new(ctor_cfg)))
}

/// Hosts our SIP onion service when `onion_port` asks for one, and writes
/// its address to KEY_DIR/sip.onion.
pub async fn onion_service(
    t: &TorSection,
    config: &Path,
    backend: &dyn TorBackend,
) -> Result<Option<privasip_tor::OnionService>> {
    if t.onion_port == 0 {
        return Ok(None);
    }
    let key_dir = relative(config, &t.key_dir);
    tracing::info!("publishing the onion service (can take a few seconds)");
    let s = backend
        .host_onion(OnionSpec {
            nickname: "sip".into(),
            port: t.onion_port,
            pow: t.onion_pow,
        })
        .await
        .context("cannot host the onion service")?;
    std::fs::create_dir_all(&key_dir).ok();
    let file = address_file(&key_dir);
    std::fs::write(&file, format!("{}\n", s.address.expose()))
        .context("cannot write the onion address file")?;
    // The address is what the service hides behind: it goes to the file
    // the operator hands out, never into a log that may be shipped.
    tracing::info!(
        port = s.port,
        file = %file.display(),
        "onion service published; its address is in the file"
    );
    Ok(Some(s))
}

/// Connects the backend, hosts the onion service (when asked) and builds
/// the routes.
pub async fn setup(t: &TorSection, config: &Path) -> Result<Tor> {
    let backend = backend(t, config).await?;
    let service = onion_service(t, config, backend.as_ref()).await?;
    let name = match &service {
        Some(s) => format!("{}:{}", s.address.expose(), s.port),
        // No service: a name that says nothing about us.
        None => "anonymous.invalid".to_owned(),
    };
    let per_call = t.per_call();
    let routes = TorRoutes::default();
    let mut hosts = HashMap::new();
    let mut domains: Vec<(&String, &String)> = t.routes.iter().collect();
    domains.sort();
    for (domain, target) in domains {
        let (host, port) = parse_target(target)?;
        let i = routes
            .add(TorRoute { host, port })
            .context("too many [tor.routes]")?;
        hosts.insert(domain.to_ascii_lowercase(), i);
    }
    Ok(Tor {
        setup: TorSetup {
            backend,
            service,
            routes,
        },
        hosts,
        name,
        per_call,
    })
}
