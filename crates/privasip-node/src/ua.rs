//! `privasip ua`'s configuration, and starting a user agent from it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use privasip_agent::{Agent, CounterFile, ProxyAt, Setup, TorAccess};
use privasip_digest::{Algorithm, Ha1};
use privasip_ua::{Answer, Home, Privacy, Sensitive, UaConfig};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::config_relative;
use crate::keyfile::read_public;

/// A user agent's configuration file (examples/ua-*.toml say what each
/// setting means).
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[ua]`.
    pub ua: UaSection,
    /// `[privasip]`.
    #[serde(default)]
    pub privasip: PrivaSipSection,
    /// Reach the proxy through Tor (`proxy = "tor:ONION:PORT"`), and host
    /// our own onion service for incoming calls (`onion_port`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tor: Option<crate::tor::TorSection>,
}

impl Config {
    /// `user` at `domain` with `password`, bound to `local`, registering
    /// with `proxy` (`udp:IP:PORT`, `tcp:IP:PORT`, `tor:ONION:PORT`):
    /// plain SIP, every other setting at its default.
    pub fn new(
        user: &str,
        domain: &str,
        password: &str,
        local: SocketAddr,
        proxy: impl Into<String>,
    ) -> Config {
        Config {
            ua: UaSection {
                user: Sensitive::new(user.to_owned()),
                display_name: None,
                domain: domain.to_owned(),
                password: Some(Sensitive::new(password.to_owned())),
                local,
                proxy: proxy.into(),
                expires: default_expires(),
                answer: accept(),
                ring_ms: 0,
            },
            privasip: PrivaSipSection::default(),
            tor: None,
        }
    }

    /// The file that says all of this (see `proxy::Config::to_toml`).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a user agent configuration is plain TOML")
    }
}

/// `[ua]`: who we are and where our proxy is.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UaSection {
    /// The user name (real ID).
    pub user: Sensitive<String>,
    /// A display name for From; sent in plain mode only (PrivaSIP removes
    /// display names).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<Sensitive<String>>,
    /// The home domain.
    pub domain: String,
    /// The Digest password (keep the file private), or use the
    /// PRIVASIP_PASSWORD environment variable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<Sensitive<String>>,
    /// Local address to bind (also our Via/Contact host:port; behind
    /// Tor our onion address replaces it).
    pub local: SocketAddr,
    /// The home proxy: "udp:IP:PORT", "tcp:IP:PORT" or, with [tor],
    /// "tor:ONION:PORT".
    pub proxy: String,
    /// Registration lifetime asked for, seconds.
    #[serde(default = "default_expires")]
    pub expires: u32,
    /// Incoming calls: "accept", "busy" or "decline".
    #[serde(default = "accept")]
    pub answer: String,
    /// Incoming calls: ring this long before answering.
    #[serde(default)]
    pub ring_ms: u64,
}

fn default_expires() -> u32 {
    3600
}
fn accept() -> String {
    "accept".into()
}

/// `[privasip]`: which IDs to hide, with which keys.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PrivaSipSection {
    /// "plain", "privasip-1" or "privasip-2".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// The home proxy's public key file (relative to this file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub home_key: Option<PathBuf>,
    /// PrivaSIP-AES instead of `home_key`: our token under a key from our
    /// password, which the home proxy (`[privasip] aes = true`) shares.
    #[serde(default)]
    pub aes: bool,
    /// Where the AES token counter is kept (relative to this file;
    /// default: this file's name + `.aes-counter`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aes_counter: Option<PathBuf>,
    /// PrivaSIP-2: callee domain -> its public key file.
    #[serde(default)]
    pub callee_keys: HashMap<String, PathBuf>,
}

/// A user agent's configuration, read: what [`start`] needs.
pub struct Loaded {
    /// The core's configuration.
    pub cfg: UaConfig,
    /// The PrivaSIP-AES counter file, opened.
    pub aes: Option<CounterFile>,
    /// Our address.
    pub local: SocketAddr,
    /// The proxy.
    pub proxy: ProxyAt,
    /// `[tor]`, if the proxy is reached through Tor.
    pub tor: Option<crate::tor::TorSection>,
}

/// Reads and checks the user agent's configuration at `path` (key files
/// and the counter file relative to it).
pub fn load(path: &Path) -> Result<Loaded> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let cfg: Config = toml::from_str(&text)
        .with_context(|| format!("{} is not a valid user agent configuration", path.display()))?;
    if cfg.ua.password.is_some() {
        warn_if_readable(path);
    }
    let password = match (&cfg.ua.password, std::env::var("PRIVASIP_PASSWORD")) {
        (_, Ok(p)) => p,
        (Some(p), Err(_)) => p.expose().clone(),
        (None, Err(_)) => bail!("[ua] password is missing (or set PRIVASIP_PASSWORD)"),
    };
    let proxy = match cfg.ua.proxy.split_once(':') {
        Some(("udp", a)) => ProxyAt::Udp(a.parse().context("[ua] proxy: not IP:PORT")?),
        Some(("tcp", a)) => ProxyAt::Tcp(a.parse().context("[ua] proxy: not IP:PORT")?),
        Some(("tor", a)) => {
            let (h, p) = a.rsplit_once(':').context("[ua] proxy: tor:HOST:PORT")?;
            if cfg.tor.is_none() {
                bail!("[ua] proxy over tor needs a [tor] section");
            }
            ProxyAt::Tor(h.to_owned(), p.parse().context("[ua] proxy: bad port")?)
        }
        _ => bail!("[ua] proxy must be \"udp:IP:PORT\", \"tcp:IP:PORT\" or \"tor:ONION:PORT\""),
    };
    let reliable = !matches!(proxy, ProxyAt::Udp(_));
    let answer = match cfg.ua.answer.as_str() {
        "accept" => Answer::Accept,
        "busy" => Answer::Busy,
        "decline" => Answer::Decline,
        other => bail!("[ua] answer {other:?}: use accept, busy or decline"),
    };
    let mode = cfg.privasip.mode.as_deref().unwrap_or("plain");
    let mut aes = None;
    let privacy = match mode {
        "plain" => Privacy::Plain,
        "privasip-1" | "privasip-2" => {
            let home = match (&cfg.privasip.home_key, cfg.privasip.aes) {
                (Some(key), false) => Home::Key(read_public(&config_relative(path, key))?),
                (None, true) => {
                    let counter = match &cfg.privasip.aes_counter {
                        Some(p) => config_relative(path, p),
                        None => {
                            let mut name = path.file_name().unwrap_or_default().to_owned();
                            name.push(".aes-counter");
                            path.with_file_name(name)
                        }
                    };
                    let secret = Ha1::from_password(
                        Algorithm::Sha256,
                        cfg.ua.user.expose(),
                        &cfg.ua.domain,
                        &password,
                    );
                    let (file, next_counter) =
                        CounterFile::open(&counter, secret.expose_hex().as_bytes())?;
                    aes = Some(file);
                    Home::Aes { next_counter }
                }
                (Some(_), true) => bail!("[privasip] set home_key or aes = true, not both"),
                (None, false) => {
                    bail!(
                        "[privasip] PrivaSIP needs home_key (the home proxy's public key) or aes = true"
                    )
                }
            };
            let mut callee_keys = HashMap::new();
            if mode == "privasip-2" {
                for (domain, key) in &cfg.privasip.callee_keys {
                    callee_keys.insert(
                        domain.to_ascii_lowercase(),
                        read_public(&config_relative(path, key))?,
                    );
                }
            }
            Privacy::PrivaSip { home, callee_keys }
        }
        other => bail!("[privasip] mode {other:?}: use plain, privasip-1 or privasip-2"),
    };
    Ok(Loaded {
        cfg: UaConfig {
            user: cfg.ua.user,
            display_name: cfg.ua.display_name,
            domain: cfg.ua.domain,
            password: Zeroizing::new(password).into(),
            local: cfg.ua.local.to_string().into(),
            reliable,
            outbound: false,
            expires: cfg.ua.expires,
            privacy,
            answer,
            ring_time: Duration::from_millis(cfg.ua.ring_ms),
            call_circuits: matches!(proxy, ProxyAt::Tor(..))
                && cfg.tor.as_ref().is_some_and(|t| t.per_call()),
        },
        aes,
        local: cfg.ua.local,
        proxy,
        tor: cfg.tor,
    })
}

/// A password in a file others can read is not a secret: say so (as ssh
/// does for keys), but go on.
fn warn_if_readable(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    "{} holds a password and others can read it (mode {mode:o}): \
                     chmod 600 it, or set PRIVASIP_PASSWORD instead",
                    path.display()
                );
            }
        }
    }
}

/// Starts the user agent `loaded` describes (`config` is its file, for
/// Tor's key directory), tracing every message to `trace` if given.
pub async fn start(loaded: Loaded, config: &Path, trace: Option<std::fs::File>) -> Result<Agent> {
    let tor = match (&loaded.proxy, &loaded.tor) {
        (ProxyAt::Tor(..), Some(t)) => {
            let backend = crate::tor::backend(t, config).await?;
            let service = crate::tor::onion_service(t, config, backend.as_ref()).await?;
            Some(TorAccess { backend, service })
        }
        _ => None,
    };
    Agent::start(Setup {
        ua: loaded.cfg,
        local: loaded.local,
        proxy: loaded.proxy,
        tor,
        aes: loaded.aes,
        trace,
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every user agent example parses (its key files are the reader's to
    /// make: `load` reads them, this does not).
    #[test]
    fn every_user_agent_example_parses() {
        let found = crate::examples("ua");
        assert!(found.len() >= 2, "only {} user agent examples", found.len());
        for path in found {
            let text = std::fs::read_to_string(&path).expect("readable");
            let cfg: Config =
                toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            if let Some(t) = &cfg.tor {
                t.check()
                    .unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
            }
            let written = cfg.to_toml();
            let again: Config = toml::from_str(&written)
                .unwrap_or_else(|e| panic!("{}: {e}\n{written}", path.display()));
            assert_eq!(again.to_toml(), written, "{}", path.display());
        }
    }

    #[test]
    fn a_written_configuration_loads_and_its_log_holds_no_password() {
        let dir = tempfile::tempdir().expect("a directory");
        let mut cfg = Config::new(
            "alice",
            "a.example",
            "wonderland",
            "127.0.0.1:5070".parse().expect("an address"),
            "udp:127.0.0.1:5060",
        );
        cfg.ua.expires = 600;
        cfg.ua.display_name = Some("Alice Liddell".into());
        let shown = format!("{cfg:?}");
        for secret in ["wonderland", "alice", "Alice"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        let path = dir.path().join("ua.toml");
        std::fs::write(&path, cfg.to_toml()).expect("written");
        let loaded = load(&path).expect("loads");
        assert_eq!(loaded.cfg.expires, 600);
        assert_eq!(*loaded.cfg.password.expose().as_str(), *"wonderland");
    }
}
