//! `privasip proxy`'s configuration, and the daemon that runs it: the
//! proxy core on `privasip-server`, its store, its keys and Tor.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use privasip_proxy::{Network, Next, Origin, Proxy, ProxyConfig, RelayPolicy, Resolver};
use privasip_registrar::RegistrarConfig;
use privasip_sensitive::Sensitive;
use privasip_server::{Listen, Peer, Stats, TcpLimits};
use serde::{Deserialize, Serialize};

/// A proxy's configuration file (examples/proxy-*.toml say what each
/// section means).
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[proxy]`.
    pub proxy: ProxySection,
    /// `[listen]`.
    pub listen: ListenSection,
    /// `[tcp]`.
    #[serde(default)]
    pub tcp: TcpSection,
    /// `[registrar]`.
    #[serde(default)]
    pub registrar: RegistrarSection,
    /// `[routes]`: domain -> `udp:IP:PORT` or `tcp:IP:PORT`.
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    pub routes: HashMap<String, String>,
    /// `[store]`.
    #[serde(default)]
    pub store: StoreSection,
    /// `[tor]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tor: Option<crate::tor::TorSection>,
    /// `[privasip]`.
    #[serde(default)]
    pub privasip: PrivaSipSection,
    /// `[relay]`.
    #[serde(default)]
    pub relay: RelaySection,
    /// `[limits]`.
    #[serde(default)]
    pub limits: LimitsSection,
    /// `[peers.NAME]`.
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    pub peers: HashMap<String, PeerSection>,
}

impl Config {
    /// A proxy for `domains`, naming itself `sent_by` (`host:port`) in
    /// its Via, listening nowhere yet: every other setting at its
    /// default, as an empty section in a file would have it.
    pub fn new(domains: &[&str], sent_by: impl Into<String>) -> Config {
        Config {
            proxy: ProxySection {
                domains: domains.iter().map(|d| (*d).to_owned()).collect(),
                sent_by: sent_by.into(),
                record_route: yes(),
                default_transport: udp(),
                authenticate: false,
                digest: both_digests(),
                timer_c_secs: timer_c(),
                topology_hiding: hide_tor(),
            },
            listen: ListenSection {
                udp: None,
                tcp: None,
            },
            tcp: TcpSection::default(),
            registrar: RegistrarSection::default(),
            routes: HashMap::new(),
            store: StoreSection::default(),
            tor: None,
            privasip: PrivaSipSection::default(),
            relay: RelaySection::default(),
            limits: LimitsSection::default(),
            peers: HashMap::new(),
        }
    }

    /// The file that says all of this: what the lab and the tests write
    /// instead of templates, so a renamed setting cannot go unnoticed.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a proxy configuration is plain TOML")
    }
}

/// `[peers.NAME]`: a key shared with a peer proxy, or with a federation
/// of them (`privasip keygen --scheme peer`). Requests signed with it are
/// a peer's: they have a budget of their own, apart from Tor's strangers.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PeerSection {
    /// The key file (relative to the configuration file; mode 0600).
    pub key_file: PathBuf,
    /// Domains whose proxies we sign requests to with this key (their
    /// [tor.routes] onions too). Empty: a key we only check.
    #[serde(default)]
    pub sends_to: Vec<String>,
}

/// `[relay]`: whom the proxy relays for and where it may send
/// (doc/relay.md). Our authenticated users, our domains, our own
/// Record-Route and the domains in `[routes]`/`[tor.routes]` need nothing
/// here.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelaySection {
    /// Sources relayed for without authentication (CIDR), e.g. a load
    /// generator or a peer proxy on a private link. Empty by default.
    pub trusted: Vec<String>,
    /// Internal networks (loopback, private, link-local) that may be
    /// dialled: a LAN proxy names its LAN. None by default.
    pub allow_networks: Vec<String>,
}

fn networks(key: &str, list: &[String]) -> Result<Vec<Network>> {
    list.iter()
        .map(|n| n.parse().with_context(|| format!("[relay] {key}")))
        .collect()
}

/// `[limits]`: what one source may cost (trusted sources excepted).
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    /// Requests one source (an IPv4 address, an IPv6 /64) may send a
    /// second; past it they are dropped. All of Tor gets ten times this.
    pub requests_per_second: u32,
    /// ...and at once.
    pub requests_burst: u32,
    /// PrivaSIP tokens one source may open a second (public-key work).
    pub token_opens_per_second: u32,
    /// ...and at once.
    pub token_opens_burst: u32,
}

impl Default for LimitsSection {
    fn default() -> Self {
        LimitsSection {
            requests_per_second: privasip_proxy::REQUESTS_PER_SECOND,
            requests_burst: privasip_proxy::REQUESTS_BURST,
            token_opens_per_second: privasip_proxy::OPENS_PER_SECOND,
            token_opens_burst: privasip_proxy::OPENS_BURST,
        }
    }
}

/// `[privasip]`: the domain's private keys, to open PrivaSIP tokens.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PrivaSipSection {
    /// Private key files (`privasip keygen`), relative to the
    /// configuration file; mode 0600.
    #[serde(default)]
    pub keys: Vec<PathBuf>,
    /// Accept PrivaSIP-AES caller tokens from our users, keyed by their
    /// stored SHA-256 HA1 (no key files needed).
    #[serde(default)]
    pub aes: bool,
}

/// `[store]`: where users and registrations are kept.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSection {
    /// The SQLite file, relative to the configuration file.
    pub path: PathBuf,
    /// A PostgreSQL database shared with other proxy instances, instead
    /// of the file (e.g. "host=/run/postgresql dbname=privasip").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<Sensitive<String>>,
}

impl Default for StoreSection {
    fn default() -> Self {
        StoreSection {
            path: "privasip.db".into(),
            url: None,
        }
    }
}

/// `[proxy]`: what the proxy serves and how it forwards.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProxySection {
    /// The domains it is registrar and home proxy for.
    pub domains: Vec<String>,
    /// `host:port` for its Via (sent-by) and Record-Route.
    pub sent_by: String,
    /// Record-Route on dialog-creating requests.
    #[serde(default = "yes")]
    pub record_route: bool,
    /// `udp` or `tcp`: how to reach a target URI without `;transport`.
    #[serde(default = "udp")]
    pub default_transport: String,
    /// Require Digest credentials from our domains' users.
    #[serde(default)]
    pub authenticate: bool,
    /// Digest algorithms offered, most preferred first.
    #[serde(default = "both_digests")]
    pub digest: Vec<String>,
    /// Timer C: seconds an INVITE branch may ring unanswered before the
    /// proxy cancels it (RFC 3261: more than 180).
    #[serde(default = "timer_c")]
    pub timer_c_secs: u64,
    /// Topology hiding: "tor" (the default) takes the Vias, Record-Routes,
    /// Contacts and our users' domain out of what crosses Tor links (sealed
    /// in our own headers, put back on the way back); "all" does so on
    /// every link; "off" forwards as RFC 3261 proxies do.
    #[serde(default = "hide_tor")]
    pub topology_hiding: String,
}

fn hide_tor() -> String {
    "tor".into()
}

/// The `[proxy] topology_hiding` setting.
fn hiding(value: &str) -> Result<privasip_proxy::Hiding> {
    Ok(match value {
        "tor" => privasip_proxy::Hiding::Tor,
        "all" => privasip_proxy::Hiding::All,
        "off" => privasip_proxy::Hiding::Off,
        other => bail!("[proxy] topology_hiding {other:?}: use \"tor\", \"all\" or \"off\""),
    })
}

fn timer_c() -> u64 {
    privasip_proxy::DEFAULT_TIMER_C.as_secs()
}

fn both_digests() -> Vec<String> {
    vec!["SHA-256".into(), "MD5".into()]
}

fn yes() -> bool {
    true
}

fn udp() -> String {
    "udp".into()
}

/// `[listen]`: where the proxy takes SIP.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListenSection {
    /// A UDP socket's address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub udp: Option<SocketAddr>,
    /// A TCP listener's address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp: Option<SocketAddr>,
}

/// `[tcp]`: limits on TCP connections.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TcpSection {
    /// Connections open at once.
    pub max_connections: usize,
    /// ...from one source.
    pub max_per_source: usize,
    /// A connection silent this long is closed.
    pub idle_timeout_secs: u64,
    /// A message begun must arrive whole within this many seconds.
    pub message_timeout_secs: u64,
}

impl Default for TcpSection {
    fn default() -> Self {
        let d = TcpLimits::default();
        TcpSection {
            max_connections: d.max_connections,
            max_per_source: d.max_per_source,
            idle_timeout_secs: d.idle_timeout.as_secs(),
            message_timeout_secs: d.message_timeout.as_secs(),
        }
    }
}

/// `[registrar]`: how long bindings last, and how many.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrarSection {
    /// Shortest registration accepted, seconds (below: 423).
    pub min_expires: u32,
    /// Longest granted, seconds.
    pub max_expires: u32,
    /// Granted when the REGISTER names none.
    pub default_expires: u32,
    /// Contacts per address of record.
    pub max_contacts: usize,
    /// Most addresses of record with bindings at once.
    pub max_aors: usize,
}

impl Default for RegistrarSection {
    fn default() -> Self {
        let d = RegistrarConfig::default();
        RegistrarSection {
            min_expires: d.min_expires,
            max_expires: d.max_expires,
            default_expires: d.default_expires,
            max_contacts: d.max_contacts,
            max_aors: d.max_aors,
        }
    }
}

/// A route: `udp:HOST:PORT` or `tcp:HOST:PORT` with an IP host.
fn parse_route(s: &str) -> Result<(bool, SocketAddr)> {
    let (t, addr) = s
        .split_once(':')
        .with_context(|| format!("route {s:?}: expected udp:IP:PORT or tcp:IP:PORT"))?;
    let reliable = match t {
        "udp" => false,
        "tcp" => true,
        other => bail!("route {s:?}: transport {other:?} is not udp or tcp"),
    };
    let addr: SocketAddr = addr
        .parse()
        .with_context(|| format!("route {s:?}: {addr:?} is not IP:PORT"))?;
    Ok((reliable, addr))
}

/// Reads and checks the proxy configuration at `path`.
pub fn load(path: &Path) -> Result<Config> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let cfg: Config = toml::from_str(&text)
        .with_context(|| format!("{} is not a valid proxy configuration", path.display()))?;
    if cfg.listen.udp.is_none() && cfg.listen.tcp.is_none() {
        bail!("[listen] needs udp, tcp or both");
    }
    if cfg.proxy.domains.is_empty() {
        bail!("[proxy] domains is empty: name at least one domain this proxy serves");
    }
    if !matches!(cfg.proxy.default_transport.as_str(), "udp" | "tcp") {
        bail!("[proxy] default_transport must be \"udp\" or \"tcp\"");
    }
    for r in cfg.routes.values() {
        parse_route(r)?;
    }
    if let Some(t) = &cfg.tor {
        t.check()?;
    }
    if cfg.proxy.digest.is_empty() {
        bail!("[proxy] digest is empty: offer \"SHA-256\", \"MD5\" or both");
    }
    hiding(&cfg.proxy.topology_hiding)?;
    if cfg.proxy.timer_c_secs > privasip_proxy::MAX_TIMER_C.as_secs() {
        bail!(
            "[proxy] timer_c_secs {} is longer than a day ({}): no call rings that long",
            cfg.proxy.timer_c_secs,
            privasip_proxy::MAX_TIMER_C.as_secs()
        );
    }
    let relay = cfg.relay_policy()?;
    if cfg.onion_only() {
        if !cfg.routes.is_empty() {
            bail!(
                "[routes] with an onion service ([tor] onion_port): a proxy behind an onion \
                 service dials no address on the internet, which would unmask it; use \
                 [tor.routes], or a registration flow (;ob) for users on its LAN"
            );
        }
        if let Some(n) = relay.allow_networks.iter().find(|n| !n.is_internal()) {
            bail!(
                "[relay] allow_networks {n:?} with an onion service ([tor] onion_port): a \
                 proxy behind an onion service may dial its LAN only (loopback, private, \
                 link-local networks), never the internet"
            );
        }
    }
    Ok(cfg)
}

impl Config {
    /// Whether this proxy serves an onion service, and so must never
    /// dial anything outside Tor.
    fn onion_only(&self) -> bool {
        self.tor.as_ref().is_some_and(|t| t.onion_port() != 0)
    }

    /// The relay policy this configuration asks for.
    fn relay_policy(&self) -> Result<RelayPolicy> {
        let mut routed: Vec<String> = self.routes.keys().map(|d| d.to_ascii_lowercase()).collect();
        if let Some(t) = &self.tor {
            routed.extend(t.route_domains());
        }
        Ok(RelayPolicy {
            trusted: networks("trusted", &self.relay.trusted)?,
            allow_networks: networks("allow_networks", &self.relay.allow_networks)?,
            routed_domains: routed,
            onion_only: self.onion_only(),
        })
    }
}

/// The `[peers]` keys, each signing for its domains and their onions.
fn peer_keys(cfg: &Config, config: &std::path::Path) -> Result<privasip_proxy::PeerKeys> {
    let mut names: Vec<&String> = cfg.peers.keys().collect();
    names.sort();
    let mut keys = Vec::new();
    for name in names {
        let p = &cfg.peers[name];
        let path = crate::config_relative(config, &p.key_file);
        let text = crate::keyfile::read_secret(&path)?;
        let key = privasip_proxy::PeerKey::decode(&text).with_context(|| {
            format!(
                "[peers.{name}] {} is not a peer key (privasip keygen --scheme peer)",
                path.display()
            )
        })?;
        let mut hosts = Vec::new();
        for domain in &p.sends_to {
            hosts.push(domain.to_ascii_lowercase());
            if let Some(onion) = cfg.tor.as_ref().and_then(|t| t.route_host(domain)) {
                hosts.push(onion);
            }
        }
        keys.push(privasip_proxy::PeerKey::new(name.clone(), *key, hosts));
    }
    privasip_proxy::PeerKeys::new(keys).context("[peers]")
}

/// What the relay policy and the budgets know of a peer.
fn origin(p: &Peer) -> Origin {
    match p {
        Peer::Udp(a) | Peer::Tcp(a) => Origin::Ip(a.ip()),
        Peer::Stream { circuit, .. } => Origin::Tor { circuit: *circuit },
        Peer::Onion(_) => Origin::Tor { circuit: None },
    }
}

/// Tor as the resolver sees it: configured domains, and the table that
/// any other onion host is added to.
#[derive(Default)]
struct TorResolve {
    hosts: HashMap<String, u16>,
    routes: Option<privasip_server::TorRoutes>,
}

fn resolver(cfg: &Config, tor: TorResolve) -> Result<Resolver<Peer>> {
    let mut routes: HashMap<String, (bool, SocketAddr)> = HashMap::new();
    for (domain, r) in &cfg.routes {
        routes.insert(domain.to_ascii_lowercase(), parse_route(r)?);
    }
    let default_tcp = cfg.proxy.default_transport == "tcp";
    Ok(Box::new(
        move |host: &str, port: Option<u16>, transport: &str| {
            // Tor first: a domain named in [tor.routes], or any onion host
            // (a callee's onion Contact, a proxy's onion Record-Route),
            // dialled through Tor and never looked up outside it (RFC
            // 7686). Without Tor an onion host has no route.
            let lower = host.to_ascii_lowercase();
            if let Some(&i) = tor.hosts.get(&lower) {
                return Some(Next {
                    peer: Peer::Onion(i),
                    reliable: true,
                });
            }
            if privasip_tor::is_onion(&lower) {
                let i = tor.routes.as_ref()?.add(privasip_server::TorRoute {
                    host: lower,
                    port: port.unwrap_or(5060),
                })?;
                return Some(Next {
                    peer: Peer::Onion(i),
                    reliable: true,
                });
            }
            let reliable = match transport {
                "TCP" => true,
                "UDP" => false,
                _ => default_tcp,
            };
            let (reliable, addr) = if let Some(&(r, a)) = routes.get(&host.to_ascii_lowercase()) {
                (r, a)
            } else {
                let ip: IpAddr = host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse()
                    .ok()?;
                (reliable, SocketAddr::new(ip, port.unwrap_or(5060)))
            };
            let peer = if reliable {
                Peer::Tcp(addr)
            } else {
                Peer::Udp(addr)
            };
            Some(Next { peer, reliable })
        },
    ))
}

/// Runs the proxy `config` describes until Ctrl-C or SIGTERM.
pub fn run(config: &Path) -> Result<()> {
    let cfg = load(config)?;
    crate::init_logs();
    let proxy_cfg = ProxyConfig {
        domains: cfg.proxy.domains.clone(),
        sent_by: cfg.proxy.sent_by.clone(),
        record_route: cfg.proxy.record_route,
        authenticate: cfg.proxy.authenticate,
        digest: cfg
            .proxy
            .digest
            .iter()
            .map(|a| privasip_digest::Algorithm::parse(Some(a)))
            .collect::<Option<Vec<_>>>()
            .context("[proxy] digest: use \"SHA-256\" and/or \"MD5\"")?,
        relay: cfg.relay_policy()?,
        registrar: RegistrarConfig {
            min_expires: cfg.registrar.min_expires,
            max_expires: cfg.registrar.max_expires,
            default_expires: cfg.registrar.default_expires,
            max_contacts: cfg.registrar.max_contacts,
            max_aors: cfg.registrar.max_aors,
        },
    };
    let now = std::time::Instant::now();
    // One thread carries the proxy best; Tor backends get a second.
    let rt = if cfg.tor.is_some() {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    }
    .context("cannot start the async runtime")?;
    let tor = match &cfg.tor {
        Some(t) => Some(rt.block_on(crate::tor::setup(t, config))?),
        None => None,
    };
    let tor_resolve = match &tor {
        Some(t) => TorResolve {
            hosts: t.hosts.clone(),
            routes: Some(t.setup.routes.clone()),
        },
        None => TorResolve::default(),
    };
    let instance = crate::store::instance_name();
    let mut store = crate::store::open(config, &cfg, &instance)?;
    // The secret that signs nonces, Record-Routes and Vias outlives the
    // process (dialogs survive a restart) and is shared by the instances
    // of a shared store.
    let mut fresh = zeroize::Zeroizing::new([0u8; 32]);
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, fresh.as_mut());
    let secret = zeroize::Zeroizing::new(
        store
            .secret("proxy", &fresh)
            .context("cannot read the proxy's secret from the store")?,
    );
    let mut proxy = Proxy::new(proxy_cfg, resolver(&cfg, tor_resolve)?, *secret, now);
    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, seed.as_mut());
    proxy.reseed(*seed);
    proxy.set_origin(Box::new(origin));
    proxy.set_request_budget(cfg.limits.requests_per_second, cfg.limits.requests_burst);
    proxy.set_token_budget(
        cfg.limits.token_opens_per_second,
        cfg.limits.token_opens_burst,
    );
    proxy.set_timer_c(Duration::from_secs(cfg.proxy.timer_c_secs));
    proxy.set_topology_hiding(hiding(&cfg.proxy.topology_hiding)?);
    if !cfg.peers.is_empty() {
        proxy.set_peer_keys(peer_keys(&cfg, config)?);
        tracing::info!(keys = cfg.peers.len(), "peer keys loaded");
    }
    if let Some(t) = &tor {
        proxy.set_tor_name(t.name.clone(), Box::new(|p: &Peer| p.is_tor()));
        proxy.set_call_circuits(t.per_call);
    }
    if !cfg.privasip.keys.is_empty() {
        let mut ring = privasip_identity::Keyring::default();
        for k in &cfg.privasip.keys {
            let key = crate::keyfile::read_private(&crate::config_relative(config, k))?;
            ring.add_key(key.into_decryptor());
        }
        proxy.set_keyring(ring);
        tracing::info!(keys = cfg.privasip.keys.len(), "PrivaSIP keys loaded");
    }
    let (users, bindings) = crate::store::restore(&mut proxy, &mut store, now, cfg.privasip.aes)?;
    tracing::info!(users, bindings, "store loaded");
    // What the store's threads tell the running proxy: commits, and other
    // instances' changes.
    let (updates_tx, updates) = tokio::sync::mpsc::channel(1024);
    if crate::store::listener(
        &crate::store::location(config, &cfg),
        &instance,
        cfg.privasip.aes,
        updates_tx.clone(),
    )? {
        tracing::info!("store shared (PostgreSQL): other instances' changes apply here at once");
    }
    // A 200 to a REGISTER waits for its bindings' commit.
    proxy.set_store_commits(true);
    let reopen = {
        let (at, instance) = (crate::store::location(config, &cfg), instance.clone());
        move || Ok(privasip_store::Store::open_at(&at, &instance)?)
    };
    let (store_tx, store_thread) = crate::store::writer(store, reopen, updates_tx);
    let listen = Listen {
        udp: cfg.listen.udp,
        tcp: cfg.listen.tcp,
        tcp_limits: TcpLimits {
            max_connections: cfg.tcp.max_connections,
            max_per_source: cfg.tcp.max_per_source,
            idle_timeout: Duration::from_secs(cfg.tcp.idle_timeout_secs),
            message_timeout: Duration::from_secs(cfg.tcp.message_timeout_secs),
            ..TcpLimits::default()
        },
        tor: tor.map(|t| t.setup),
    };
    let stats = Arc::new(Stats::default());
    rt.block_on(async {
        tracing::info!(
            domains = cfg.proxy.domains.len(),
            udp = cfg.listen.udp.is_some(),
            tcp = cfg.listen.tcp.is_some(),
            "proxy running; Ctrl-C or SIGTERM stops it"
        );
        let shutdown = async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
            match term.as_mut() {
                Ok(t) => {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = t.recv() => {}
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        };
        privasip_server::run(
            proxy,
            listen,
            stats.clone(),
            Some(store_tx),
            Some(updates),
            shutdown,
        )
        .await
        .context("the proxy stopped")
    })?;
    // The sender went with the proxy: the writer drains and ends.
    let _ = store_thread.join();
    tracing::info!(
        received = stats.received.load(std::sync::atomic::Ordering::Relaxed),
        sent = stats.sent.load(std::sync::atomic::Ordering::Relaxed),
        "proxy stopped"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        toml::from_str(&format!(
            "[proxy]\ndomains = [\"b.example\"]\nsent_by = \"127.0.0.1:5060\"\n\
             default_transport = \"udp\"\n[listen]\nudp = \"127.0.0.1:5060\"\n{extra}"
        ))
        .expect("a valid configuration")
    }

    fn tor_resolve(domain: &str, onion: &str) -> TorResolve {
        let table = privasip_server::TorRoutes::default();
        let i = table
            .add(privasip_server::TorRoute {
                host: onion.into(),
                port: 5060,
            })
            .expect("room");
        TorResolve {
            hosts: HashMap::from([(domain.to_owned(), i)]),
            routes: Some(table),
        }
    }

    #[test]
    fn onion_hosts_go_through_tor_or_nowhere() {
        // RFC 7686: an onion name is never looked up or dialled outside
        // Tor; without Tor it has no route at all.
        let plain = resolver(&config(""), TorResolve::default()).expect("resolver");
        assert!(plain("bob.onion", Some(5060), "TCP").is_none());
        assert!(plain("BOB.ONION.", None, "").is_none());
        let tor = resolver(&config(""), tor_resolve("c.example", "c.onion")).expect("resolver");
        for host in ["bob.onion", "BOB.Onion", "bob.onion."] {
            let next = tor(host, Some(5070), "UDP").expect("a route");
            assert!(matches!(next.peer, Peer::Onion(_)), "{host}");
            assert!(next.reliable, "Tor streams are reliable");
        }
    }

    #[test]
    fn tor_routes_win_over_everything_else() {
        let cfg = config("[routes]\n\"c.example\" = \"udp:127.0.0.9:5060\"\n");
        let tor = resolver(&cfg, tor_resolve("c.example", "c.onion")).expect("resolver");
        let next = tor("C.example", None, "UDP").expect("a route");
        assert!(matches!(next.peer, Peer::Onion(0)));
    }

    #[test]
    fn names_are_never_looked_up() {
        let r = resolver(&config(""), TorResolve::default()).expect("resolver");
        assert!(r("unknown.example", Some(5060), "UDP").is_none());
        assert!(r("localhost", None, "").is_none());
    }

    #[test]
    fn addresses_and_static_routes() {
        let cfg = config("[routes]\n\"c.example\" = \"tcp:127.0.0.9:5070\"\n");
        let r = resolver(&cfg, TorResolve::default()).expect("resolver");
        let udp = SocketAddr::from(([127, 0, 0, 7], 5060));
        assert_eq!(
            r("127.0.0.7", None, "").map(|n| n.peer),
            Some(Peer::Udp(udp))
        );
        assert_eq!(
            r("127.0.0.7", None, "TCP").map(|n| n.peer),
            Some(Peer::Tcp(udp))
        );
        let v6 = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 5080));
        assert_eq!(
            r("[::1]", Some(5080), "UDP").map(|n| n.peer),
            Some(Peer::Udp(v6))
        );
        let routed = SocketAddr::from(([127, 0, 0, 9], 5070));
        assert_eq!(
            r("C.EXAMPLE", None, "UDP").map(|n| n.peer),
            Some(Peer::Tcp(routed))
        );
    }

    #[test]
    fn bad_routes_are_refused_with_their_reason() {
        for (route, why) in [
            ("127.0.0.9", "expected udp:IP:PORT"),
            ("127.0.0.9:5060", "is not udp or tcp"),
            ("sctp:127.0.0.9:5060", "is not udp or tcp"),
            ("udp:c.example:5060", "is not IP:PORT"),
        ] {
            let err = parse_route(route).expect_err(route);
            assert!(format!("{err:#}").contains(why), "{route}: {err:#}");
        }
    }
}

#[cfg(test)]
mod examples {
    /// Every proxy example is a valid configuration (what `privasip
    /// proxy --check` says of it).
    #[test]
    fn every_proxy_example_loads() {
        let found = crate::examples("proxy");
        assert!(found.len() >= 3, "only {} proxy examples", found.len());
        for path in found {
            super::load(&path).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
        }
    }

    /// What the lab and the tests write is what `load` reads: every
    /// example, written out from the types, reads back to the same file.
    #[test]
    fn a_written_configuration_reads_back_the_same() {
        for path in crate::examples("proxy") {
            let cfg = super::load(&path).expect("loads");
            let written = cfg.to_toml();
            let again: super::Config = toml::from_str(&written)
                .unwrap_or_else(|e| panic!("{}: {e}\n{written}", path.display()));
            assert_eq!(again.to_toml(), written, "{}", path.display());
        }
        let mut cfg = super::Config::new(&["b.example"], "127.0.0.1:5060");
        cfg.listen.udp = Some("127.0.0.1:5060".parse().expect("an address"));
        cfg.store.url = Some("host=/run/postgresql dbname=x".into());
        let written = cfg.to_toml();
        assert!(
            written.contains("dbname=x"),
            "a file holds the value:\n{written}"
        );
        assert!(!format!("{cfg:?}").contains("dbname"), "a log does not");
        let again: super::Config = toml::from_str(&written).expect("reads back");
        assert_eq!(again.proxy.domains, ["b.example"]);
    }
}
