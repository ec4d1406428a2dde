//! Staging the paper's set-up on this machine: a private Tor network,
//! Proxy A (LAN side), Proxy B (an onion service) and Bob behind Tor, as
//! child processes of this binary. Used by `privasip demo` and
//! `privasip bench paper`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

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
    start_network(net_dir, base_port, opts.quickack)?;
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
fn start_network(net_dir: PathBuf, base_port: u16, quickack: bool) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let opts = privasip_testnet::Options {
        base_port,
        quickack,
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

/// A `[tor]` section. Proxy B and Bob embed arti; Proxy A drives the C
/// tor daemon of the network's client a: both backends meet in every
/// call.
fn tor_section(backend: &str, client: &str, keys: &str, onion: u16, isolation: &str) -> String {
    format!(
        "[tor]\nbackend = \"{backend}\"\ntestnet = \"net\"\ntestnet_client = \"{client}\"\n\
         onion_port = {onion}\nkey_dir = \"{keys}\"\nisolation = \"{isolation}\"\n"
    )
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
    std::fs::write(
        d.join("proxy-b.toml"),
        format!(
            "[proxy]\ndomains = [\"b.example\"]\nsent_by = \"{PROXY_B_IP}:{b_port}\"\nauthenticate = true\n\
             topology_hiding = \"{hiding}\"\n\
             [listen]\nudp = \"{PROXY_B_IP}:{b_port}\"\n[store]\npath = \"proxy-b.db\"\n\
             [peers.federation]\nkey_file = \"keys-peer/peer.key\"\n\
             [privasip]\nkeys = [\"keys-b/{scheme}.key\"]\n{}",
            tor_section("arti", "b", "keys-b", 5060, "per-call")
        ),
    )?;
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
    std::fs::write(
        d.join("bob.toml"),
        format!(
            "[ua]\nuser = \"bob\"\ndomain = \"b.example\"\npassword = \"zanzibar\"\n\
             local = \"{BOB_IP}:{bob_port}\"\nproxy = \"tor:{b_onion}:5060\"\n\
             [privasip]\nmode = \"privasip-1\"\nhome_key = \"keys-b/{scheme}.pub\"\n{}",
            tor_section("arti", "b", "keys-bob", onion_port, "shared")
        ),
    )?;
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
    std::fs::write(
        d.join(format!("{name}.toml")),
        format!(
            "[proxy]\ndomains = [\"a.example\"]\nsent_by = \"{PROXY_A_IP}:{port}\"\nauthenticate = true\n\
             topology_hiding = \"{hiding}\"\n\
             [relay]\nallow_networks = [\"127.0.0.0/8\"]\n\
             [listen]\nudp = \"{PROXY_A_IP}:{port}\"\n[store]\npath = \"{name}.db\"\n\
             [peers.federation]\nkey_file = \"keys-peer/peer.key\"\nsends_to = [\"b.example\"]\n\
             [privasip]\nkeys = [\"keys-a/{scheme}.key\"]\n{}\
             [tor.routes]\n\"b.example\" = \"{b_onion}:5060\"\n",
            tor_section("c-tor", "a", &format!("keys-a{suffix}"), 5060, isolation)
        ),
    )?;
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
        AliceHop::Lan => (format!("udp:{PROXY_A_IP}:{proxy_port}"), String::new()),
        AliceHop::Tor => (
            format!("tor:{}:5060", read(d, "keys-a/sip.onion").trim()),
            format!(
                "[tor]\nbackend = \"arti\"\ntestnet = \"net\"\ntestnet_client = \"a\"\n\
                 onion_port = 0\nkey_dir = \"keys-{name}\"\nisolation = \"per-call\"\n"
            ),
        ),
    };
    std::fs::write(
        d.join(format!("{name}.toml")),
        format!(
            "[ua]\nuser = \"alice\"\ndisplay_name = \"Alice Liddell\"\ndomain = \"a.example\"\n\
             password = \"wonderland\"\n\
             local = \"{ALICE_IP}:{local_port}\"\nproxy = \"{proxy}\"\n\
             [privasip]\nmode = \"{mode}\"\nhome_key = \"keys-a/{scheme}.pub\"\n\
             [privasip.callee_keys]\n\"b.example\" = \"keys-b/{scheme}.pub\"\n{tor}"
        ),
    )?;
    Ok(())
}
