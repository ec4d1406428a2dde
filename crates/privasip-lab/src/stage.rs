//! Staging the paper's set-up on this machine: a private Tor network,
//! Proxy A (LAN side), Proxy B (an onion service) and Bob behind Tor, as
//! child processes of this binary. Used by `privasip demo` and
//! `privasip bench paper`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use privasip_node::proxy::{Config as ProxyFile, PeerSection};
use privasip_node::tor::TorSection;
use privasip_node::ua::Config as UaFile;

/// Each party on a loopback address of its own, so that an audit can tell
/// whose address leaked where (Tor's nodes are on 127.0.0.1).
pub const ALICE_IP: &str = "127.0.0.2";
/// Proxy A's address (its LAN side).
pub const PROXY_A_IP: &str = "127.0.0.3";
/// Bob's user agent's address.
pub const BOB_IP: &str = "127.0.0.4";
/// Proxy B's address (its local side: it is reached as an onion).
pub const PROXY_B_IP: &str = "127.0.0.5";

/// Children killed (and the network stopped) when the demo ends.
pub struct Cleanup {
    /// The processes started.
    pub children: Vec<Child>,
    /// The testnet directory, if we started one.
    pub net: Option<PathBuf>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(net) = &self.net {
            let _ = privasip_testnet::down(net);
        }
    }
}

/// The `privasip` binary we run in (the lab starts more of it).
pub fn exe() -> Result<PathBuf> {
    std::env::current_exe().context("cannot find the privasip binary")
}

/// A progress line on stderr, with the seconds since `started`.
pub fn say(started: Instant, msg: &str) {
    eprintln!("[{:5.1}s] {msg}", started.elapsed().as_secs_f64());
}

/// Runs `cmd` to its end; its stdout, or an error with both outputs.
pub fn run_ok(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd.output().with_context(|| format!("cannot run {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Polls `ok` every 100 ms until it holds or `timeout` passes.
pub fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !ok() {
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Starts `privasip ARGS` in `dir`, its output in `LOG.out` and `LOG.log`.
pub fn spawn(args: &[&str], dir: &Path, log: &str) -> Result<Child> {
    let stdout = std::fs::File::create(dir.join(format!("{log}.out")))?;
    let stderr = std::fs::File::create(dir.join(format!("{log}.log")))?;
    Command::new(exe()?)
        .args(args)
        .current_dir(dir)
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("cannot start {log}"))
}

/// Adds `user` with `password` to the store of the proxy configured in
/// `dir/config`.
pub fn add_user(dir: &Path, config: &str, user: &str, password: &str) -> Result<()> {
    use std::io::Write;
    let mut child = Command::new(exe()?)
        .args(["user", "add", "--config", config, user])
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(format!("{password}\n").as_bytes())?;
    if !child.wait()?.success() {
        bail!("privasip user add {user} failed");
    }
    Ok(())
}

/// `dir/f`, or nothing.
pub fn read(dir: &Path, f: &str) -> String {
    std::fs::read_to_string(dir.join(f)).unwrap_or_default()
}

/// The staged set-up.
pub struct Stage {
    /// Stops everything when dropped.
    pub cleanup: Cleanup,
    /// Proxy A's UDP port (Alice's outbound proxy).
    pub a_port: u16,
    /// Proxy B's onion address.
    pub b_onion: String,
}

/// How calls reach Bob behind Tor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CalleeReach {
    /// At his own onion service, named in his Contact (the paper's set-up:
    /// Bob a Tor node of his own).
    Onion,
    /// Over the Tor stream he registered on (`;ob` in his Contact): no
    /// onion service of his own.
    Registration,
}

/// How the staged set-up runs.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Tor's relays acknowledge at once (privasip testnet --quickack).
    pub quickack: bool,
    /// The proxies' `[proxy] topology_hiding` ("tor", or "off" to show
    /// what plain SIP proxies forward).
    pub hiding: &'static str,
    /// The latency the network's links pay, and the seed of its delays.
    pub latency: privasip_testnet::Profile,
    /// The seed of the links' delays.
    pub seed: u64,
}

/// Starts the network, both proxies and Bob in `d`, with keys of
/// `scheme` (hpke, ecies, rsa). Extra proxies A with other isolation
/// settings: `extra_a` names (suffix, isolation) pairs; their UDP ports
/// follow A's.
pub fn stage(
    d: &Path,
    base_port: u16,
    scheme: &str,
    extra_a: &[(&str, &str)],
    reach: CalleeReach,
    opts: Options,
    started: Instant,
) -> Result<Stage> {
    let net_dir = d.join("net");
    let mut cleanup = Cleanup {
        children: Vec::new(),
        net: Some(net_dir.clone()),
    };
    say(
        started,
        "starting a private Tor network (3 authorities, 5 relays, 2 clients)",
    );
    start_network(net_dir, base_port, opts)?;
    say(
        started,
        &format!("keys for a.example and b.example ({scheme}), users alice and bob"),
    );
    make_keys(d, scheme)?;
    let set = Setting {
        d,
        scheme,
        hiding: opts.hiding,
        a_port: base_port + 200,
        b_port: base_port + 202,
        bob_port: base_port + 211,
    };
    say(started, "Proxy B: publishing its onion service");
    let b_onion = start_proxy_b(&set, &mut cleanup)?;
    say(
        started,
        match reach {
            CalleeReach::Onion => "Bob: behind Tor, with his own onion service, registering with B",
            CalleeReach::Registration => {
                "Bob: behind Tor, registering with B; reached over that stream (no onion of his own)"
            }
        },
    );
    start_bob(&set, &b_onion, reach, &mut cleanup)?;
    say(
        started,
        "Proxy A: Alice's home proxy, plain SIP on the LAN side",
    );
    let mut proxies_a = vec![("", "per-call")];
    proxies_a.extend_from_slice(extra_a);
    for (i, (suffix, isolation)) in proxies_a.iter().enumerate() {
        let port = set.a_port + 20 * i as u16;
        start_proxy_a(&set, port, suffix, isolation, &b_onion, &mut cleanup)?;
    }
    Ok(Stage {
        cleanup,
        a_port: set.a_port,
        b_onion,
    })
}

/// What every party of one staging shares.
struct Setting<'a> {
    /// The working directory.
    d: &'a Path,
    /// The PrivaSIP scheme's key file names.
    scheme: &'a str,
    /// `[proxy] topology_hiding`.
    hiding: &'a str,
    a_port: u16,
    b_port: u16,
    bob_port: u16,
}

/// The private Tor network in `net_dir`, a spinner while it comes up.
fn start_network(net_dir: PathBuf, base_port: u16, o: Options) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let opts = privasip_testnet::Options {
        base_port,
        quickack: o.quickack,
        latency: o.latency,
        seed: o.seed,
        forwarder: Some(exe()?),
        ..privasip_testnet::Options::new(net_dir)
    };
    let steps = crate::progress::Steps::new("testnet");
    rt.block_on(privasip_testnet::up(&opts, &|m: &str| steps.step(m)))?;
    steps.finish();
    Ok(())
}

/// Both domains' PrivaSIP keys, and the peer key A and B share (B tells
/// A's requests from strangers' by it).
fn make_keys(d: &Path, scheme: &str) -> Result<()> {
    for (out, scheme) in [
        ("keys-a", scheme),
        ("keys-b", scheme),
        ("keys-peer", "peer"),
    ] {
        run_ok(
            Command::new(exe()?)
                .args(["keygen", "--scheme", scheme, "--out"])
                .arg(d.join(out)),
            &format!("privasip keygen --scheme {scheme}"),
        )?;
    }
    Ok(())
}

/// A `[tor]` section on the staged network. Proxy B and Bob embed arti;
/// Proxy A drives the C tor daemon of the network's client a: both
/// backends meet in every call.
fn tor_section(backend: &str, client: &str, keys: &str, onion: u16, isolation: &str) -> TorSection {
    TorSection {
        onion_port: onion,
        key_dir: keys.into(),
        isolation: isolation.to_owned(),
        ..TorSection::testnet(backend, "net", client)
    }
}

/// A proxy of the staged set-up: authenticating its users, hiding
/// topology as `hiding` says, its store and address named after it.
fn staged_proxy(domain: &str, ip: &str, port: u16, name: &str, hiding: &str) -> ProxyFile {
    let mut cfg = ProxyFile::new(&[domain], format!("{ip}:{port}"));
    cfg.proxy.authenticate = true;
    cfg.proxy.topology_hiding = hiding.to_owned();
    cfg.listen.udp = Some(SocketAddr::new(ip.parse().expect("a staged IP"), port));
    cfg.store.path = format!("{name}.db").into();
    cfg
}

/// The peer key both proxies hold; Proxy A signs what it sends to
/// `sends_to`.
fn federation(sends_to: &[&str]) -> PeerSection {
    PeerSection {
        key_file: "keys-peer/peer.key".into(),
        sends_to: sends_to.iter().map(|d| (*d).to_owned()).collect(),
    }
}

/// Proxy B, Bob's home proxy, an onion service only; its onion address.
fn start_proxy_b(set: &Setting<'_>, cleanup: &mut Cleanup) -> Result<String> {
    let Setting {
        d,
        scheme,
        hiding,
        b_port,
        ..
    } = *set;
    let mut cfg = staged_proxy("b.example", PROXY_B_IP, b_port, "proxy-b", hiding);
    cfg.peers.insert("federation".into(), federation(&[]));
    cfg.privasip.keys = vec![format!("keys-b/{scheme}.key").into()];
    cfg.tor = Some(tor_section("arti", "b", "keys-b", 5060, "per-call"));
    std::fs::write(d.join("proxy-b.toml"), cfg.to_toml())?;
    add_user(d, "proxy-b.toml", "bob", "zanzibar")?;
    cleanup
        .children
        .push(spawn(&["proxy", "--config", "proxy-b.toml"], d, "proxy-b")?);
    wait_for("Proxy B's onion service", Duration::from_secs(150), || {
        d.join("keys-b/sip.onion").exists()
    })?;
    Ok(read(d, "keys-b/sip.onion").trim().to_owned())
}

/// Bob, behind Tor, registered with Proxy B and listening.
fn start_bob(
    set: &Setting<'_>,
    b_onion: &str,
    reach: CalleeReach,
    cleanup: &mut Cleanup,
) -> Result<()> {
    let Setting {
        d,
        scheme,
        bob_port,
        ..
    } = *set;
    let onion_port = if reach == CalleeReach::Onion { 5060 } else { 0 };
    let mut cfg = UaFile::new(
        "bob",
        "b.example",
        "zanzibar",
        SocketAddr::new(BOB_IP.parse().expect("a staged IP"), bob_port),
        format!("tor:{b_onion}:5060"),
    );
    cfg.privasip.mode = Some("privasip-1".into());
    cfg.privasip.home_key = Some(format!("keys-b/{scheme}.pub").into());
    cfg.tor = Some(tor_section("arti", "b", "keys-bob", onion_port, "shared"));
    std::fs::write(d.join("bob.toml"), cfg.to_toml())?;
    cleanup.children.push(spawn(
        &[
            "ua",
            "--config",
            "bob.toml",
            "--trace",
            "bob.trace",
            "listen",
        ],
        d,
        "bob",
    )?);
    wait_for("Bob's registration", Duration::from_secs(150), || {
        read(d, "bob.log").contains("registered for")
    })
}

/// A Proxy A (`proxy-a{suffix}`) on UDP `port`, routing b.example to
/// `b_onion` with circuits `isolation`.
fn start_proxy_a(
    set: &Setting<'_>,
    port: u16,
    suffix: &str,
    isolation: &str,
    b_onion: &str,
    cleanup: &mut Cleanup,
) -> Result<()> {
    let Setting {
        d, scheme, hiding, ..
    } = *set;
    let name = format!("proxy-a{suffix}");
    let mut cfg = staged_proxy("a.example", PROXY_A_IP, port, &name, hiding);
    cfg.relay.allow_networks = vec!["127.0.0.0/8".into()];
    cfg.peers
        .insert("federation".into(), federation(&["b.example"]));
    cfg.privasip.keys = vec![format!("keys-a/{scheme}.key").into()];
    let mut tor = tor_section("c-tor", "a", &format!("keys-a{suffix}"), 5060, isolation);
    tor.routes
        .insert("b.example".into(), format!("{b_onion}:5060"));
    cfg.tor = Some(tor);
    std::fs::write(d.join(format!("{name}.toml")), cfg.to_toml())?;
    add_user(d, &format!("{name}.toml"), "alice", "wonderland")?;
    cleanup.children.push(spawn(
        &["proxy", "--config", &format!("{name}.toml")],
        d,
        &name,
    )?);
    let keys = d.join(format!("keys-a{suffix}/sip.onion"));
    wait_for("Proxy A", Duration::from_secs(150), || {
        keys.exists() && std::net::UdpSocket::bind((PROXY_A_IP, port)).is_err()
    })
}

/// How Alice reaches her home proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AliceHop {
    /// Plain SIP over UDP on the trusted LAN (the paper's set-up):
    /// PrivaSIP hides the IDs, not that Alice calls.
    Lan,
    /// Through Tor to Proxy A's onion service (embedded arti), each call
    /// on a fresh circuit: the LAN sees only Tor.
    Tor,
}

/// Writes an Alice configuration `name.toml`: `mode` plain or
/// privasip-2, to Proxy A on `proxy_port` (LAN) or at `a_onion` (Tor).
pub fn write_alice(
    d: &Path,
    name: &str,
    mode: &str,
    scheme: &str,
    local_port: u16,
    proxy_port: u16,
    hop: AliceHop,
) -> Result<()> {
    let (proxy, tor) = match hop {
        AliceHop::Lan => (format!("udp:{PROXY_A_IP}:{proxy_port}"), None),
        AliceHop::Tor => (
            format!("tor:{}:5060", read(d, "keys-a/sip.onion").trim()),
            Some(tor_section(
                "arti",
                "a",
                &format!("keys-{name}"),
                0,
                "per-call",
            )),
        ),
    };
    let mut cfg = UaFile::new(
        "alice",
        "a.example",
        "wonderland",
        SocketAddr::new(ALICE_IP.parse().expect("a staged IP"), local_port),
        proxy,
    );
    cfg.ua.display_name = Some("Alice Liddell".into());
    cfg.privasip.mode = Some(mode.to_owned());
    cfg.privasip.home_key = Some(format!("keys-a/{scheme}.pub").into());
    cfg.privasip
        .callee_keys
        .insert("b.example".into(), format!("keys-b/{scheme}.pub").into());
    cfg.tor = tor;
    std::fs::write(d.join(format!("{name}.toml")), cfg.to_toml())?;
    Ok(())
}
