//! `privasip proxy`: the SIP proxy and registrar.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use privasip_proxy::{Next, Proxy, ProxyConfig, Resolver};
use privasip_registrar::RegistrarConfig;
use privasip_server::{Listen, Peer, Stats, TcpLimits};
use serde::Deserialize;

/// Run a SIP proxy and registrar.
///
/// The proxy is a registrar and location service for its own domains and
/// forwards everything else by Request-URI: to the address in the URI when
/// it is an IP address, to the static route for its domain otherwise (no
/// DNS lookups in this version). It keeps transaction state (RFC 3261
/// §16), Record-Routes when asked, forks to every registered contact, and
/// speaks UDP and TCP.
///
/// The configuration is a TOML file; examples/ has commented examples
/// (examples/proxy-sipp.toml relays for SIPp on 127.0.0.1:5060).
///
/// Logs go to stderr; RUST_LOG=debug shows more. No log line carries a
/// user ID, display name or peer address.
///
/// Example:
///   privasip proxy --config examples/proxy-sipp.toml
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub(crate) struct Args {
    /// The proxy's TOML configuration.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,

    /// Check the configuration and exit.
    #[arg(long)]
    check: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    proxy: ProxySection,
    listen: ListenSection,
    #[serde(default)]
    tcp: TcpSection,
    #[serde(default)]
    registrar: RegistrarSection,
    #[serde(default)]
    routes: HashMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProxySection {
    domains: Vec<String>,
    sent_by: String,
    #[serde(default = "yes")]
    record_route: bool,
    #[serde(default = "udp")]
    default_transport: String,
    /// Require Digest credentials from our domains' users.
    #[serde(default)]
    authenticate: bool,
}

fn yes() -> bool {
    true
}

fn udp() -> String {
    "udp".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListenSection {
    udp: Option<SocketAddr>,
    tcp: Option<SocketAddr>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct TcpSection {
    max_connections: usize,
    max_per_source: usize,
    idle_timeout_secs: u64,
}

impl Default for TcpSection {
    fn default() -> Self {
        let d = TcpLimits::default();
        TcpSection {
            max_connections: d.max_connections,
            max_per_source: d.max_per_source,
            idle_timeout_secs: d.idle_timeout.as_secs(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RegistrarSection {
    min_expires: u32,
    max_expires: u32,
    default_expires: u32,
    max_contacts: usize,
}

impl Default for RegistrarSection {
    fn default() -> Self {
        let d = RegistrarConfig::default();
        RegistrarSection {
            min_expires: d.min_expires,
            max_expires: d.max_expires,
            default_expires: d.default_expires,
            max_contacts: d.max_contacts,
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

fn load(path: &PathBuf) -> Result<Config> {
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
    Ok(cfg)
}

fn resolver(cfg: &Config) -> Result<Resolver<Peer>> {
    let mut routes: HashMap<String, (bool, SocketAddr)> = HashMap::new();
    for (domain, r) in &cfg.routes {
        routes.insert(domain.to_ascii_lowercase(), parse_route(r)?);
    }
    let default_tcp = cfg.proxy.default_transport == "tcp";
    Ok(Box::new(
        move |host: &str, port: Option<u16>, transport: &str| {
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

pub(crate) fn run(args: &Args) -> Result<()> {
    let cfg = load(&args.config)?;
    if args.check {
        println!("{}: ok", args.config.display());
        return Ok(());
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let proxy_cfg = ProxyConfig {
        domains: cfg.proxy.domains.clone(),
        sent_by: cfg.proxy.sent_by.clone(),
        record_route: cfg.proxy.record_route,
        authenticate: cfg.proxy.authenticate,
        registrar: RegistrarConfig {
            min_expires: cfg.registrar.min_expires,
            max_expires: cfg.registrar.max_expires,
            default_expires: cfg.registrar.default_expires,
            max_contacts: cfg.registrar.max_contacts,
        },
    };
    let mut nonce_key = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce_key);
    let proxy = Proxy::new(
        proxy_cfg,
        resolver(&cfg)?,
        nonce_key,
        std::time::Instant::now(),
    );
    let listen = Listen {
        udp: cfg.listen.udp,
        tcp: cfg.listen.tcp,
        tcp_limits: TcpLimits {
            max_connections: cfg.tcp.max_connections,
            max_per_source: cfg.tcp.max_per_source,
            idle_timeout: Duration::from_secs(cfg.tcp.idle_timeout_secs),
            ..TcpLimits::default()
        },
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
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
        privasip_server::run(proxy, listen, stats.clone(), shutdown)
            .await
            .context("the proxy stopped")
    })?;
    tracing::info!(
        received = stats.received.load(std::sync::atomic::Ordering::Relaxed),
        sent = stats.sent.load(std::sync::atomic::Ordering::Relaxed),
        "proxy stopped"
    );
    Ok(())
}
