//! `privasip testnet`: a private Tor network on loopback.

use std::path::PathBuf;

use anyhow::{Context, Result};
use privasip_testnet::{Options, Profile, Scheduler, Testnet};

use super::LatencyArg;

/// Run a private Tor network on this machine, for the demo, tests and
/// benchmarks.
///
/// `up` starts 3 directory authorities, 5 relays (exit and HSDir) and two
/// client daemons (a and b) from Debian's tor, all on 127.0.0.1, waits until
/// an onion service hosted on b answers through a, and writes DIR/testnet.toml
/// with the ports and identities that other privasip commands read
/// (`--testnet DIR`). It takes about 20-30 s; Ctrl-C while it starts stops
/// everything it started. The daemons keep running after `up` returns until
/// `down`.
///
/// Needs Debian's tor package (tor, tor-gencert): sudo apt-get install -y tor
///
/// Examples:
///   privasip testnet up --dir /tmp/privasip-net
///   privasip testnet status --dir /tmp/privasip-net
///   privasip testnet down --dir /tmp/privasip-net
///
/// With `--latency live`, every link of every circuit pays a one-way delay
/// drawn per pair of nodes from the live Tor network's measured latency
/// (doc/latency.md; DIR/latency.json lists the model and every delay), by
/// a forwarder in front of each relay's OR port: no root, no netem. Start
/// up then takes a minute or more.
///   privasip testnet up --dir /tmp/privasip-net --latency live --seed 7
///
/// For fault tests, one node can be killed (SIGKILL, as a machine dies)
/// and started again with its keys and ports:
///   privasip testnet kill --dir /tmp/privasip-net relay2
///   privasip testnet restart --dir /tmp/privasip-net relay2
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub(crate) struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Start the network and wait until it carries onion traffic.
    Up {
        /// The network's directory (keys, torrcs, logs, testnet.toml).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// First port of the range the network uses (BASE..BASE+100).
        #[arg(long, default_value_t = 15000, value_name = "BASE")]
        base_port: u16,
        /// Relays besides the 3 authorities (at least 2).
        #[arg(long, default_value_t = 5)]
        relays: usize,
        /// Packet scheduler of every node: vanilla is 10-20x faster on
        /// loopback; kist is tor's default on the real network.
        #[arg(long, value_enum, default_value_t = SchedulerArg::Vanilla)]
        scheduler: SchedulerArg,
        /// Quick ACKs on the loopback routes until `down` (root only):
        /// removes the ~43 ms steps of tor's Nagle meeting delayed ACKs
        /// that loopback adds to every Tor timing. Changes this machine's
        /// routing table while the network runs; off by default.
        #[arg(long)]
        quickack: bool,
        /// The latency every link pays: none (loopback's microseconds) or
        /// live (the live Tor network's, per link; doc/latency.md).
        #[arg(long, value_enum, default_value_t = LatencyArg::None)]
        latency: LatencyArg,
        /// The seed the links' delays are drawn from (with --latency).
        #[arg(long, default_value_t = 1, value_name = "N")]
        seed: u64,
    },
    /// Show which nodes run and how to reach the client daemons.
    Status {
        /// The network's directory.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
    /// Stop every process of the network.
    Down {
        /// The network's directory.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
    /// Kill one node with SIGKILL (`status` lists them): a relay, an
    /// authority, or a client daemon (client-a, client-b).
    Kill {
        /// The network's directory.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The node.
        node: String,
    },
    /// Start a killed node again, with its keys, ports and data; a
    /// client daemon is waited for until it has bootstrapped.
    Restart {
        /// The network's directory.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The node.
        node: String,
    },
    /// The latency forwarder (`up --latency` starts it, `down` stops it).
    #[command(hide = true)]
    Forward {
        /// The network's directory.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum SchedulerArg {
    Vanilla,
    Kist,
}

pub(crate) fn run(args: &Args) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match &args.action {
        Action::Up {
            dir,
            base_port,
            relays,
            scheduler,
            quickack,
            latency,
            seed,
        } => {
            let latency = Profile::from(*latency);
            let opts = Options {
                latency,
                seed: *seed,
                forwarder: Some(
                    std::env::current_exe().context("cannot find the privasip program")?,
                ),
                quickack: *quickack,
                dir: dir.clone(),
                base_port: *base_port,
                relays: *relays,
                scheduler: match scheduler {
                    SchedulerArg::Vanilla => Scheduler::Vanilla,
                    SchedulerArg::Kist => Scheduler::Kist,
                },
            };
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let steps = privasip_lab::progress::Steps::new("testnet:");
            let progress = |m: &str| steps.step(m);
            let net = rt.block_on(async {
                tokio::select! {
                    r = privasip_testnet::up(&opts, &progress) => r.map_err(anyhow::Error::from),
                    _ = tokio::signal::ctrl_c() => {
                        let n = privasip_testnet::down(dir).unwrap_or(0);
                        Err(anyhow::anyhow!("interrupted; stopped {n} tor processes"))
                    }
                }
            })?;
            steps.finish();
            print_clients(&net);
            println!(
                "stop it with: privasip testnet down --dir {}",
                dir.display()
            );
            Ok(())
        }
        Action::Status { dir } => {
            let nodes = privasip_testnet::status(dir)?;
            if nodes.is_empty() {
                println!("no testnet in {}", dir.display());
                return Ok(());
            }
            let running = nodes.iter().filter(|n| n.pid.is_some()).count();
            for n in &nodes {
                match n.pid {
                    Some(pid) => println!("{:<10} running (pid {pid})", n.name),
                    None => println!("{:<10} stopped", n.name),
                }
            }
            println!("{running} of {} nodes running", nodes.len());
            if let Some(pid) = privasip_testnet::forwarder_pid(dir) {
                println!("latency forwarder running (pid {pid})");
            }
            if let Ok(net) = Testnet::load(dir) {
                print_clients(&net);
            }
            Ok(())
        }
        Action::Down { dir } => {
            let n = privasip_testnet::down(dir)?;
            println!("stopped {n} tor processes");
            Ok(())
        }
        Action::Kill { dir, node } => {
            if privasip_testnet::kill(dir, node)? {
                println!("killed {node}");
            } else {
                println!("{node} was not running");
            }
            Ok(())
        }
        Action::Forward { dir } => {
            privasip_node::init_logs();
            rt.block_on(privasip_testnet::run_forwarder(dir))
                .map_err(anyhow::Error::from)
        }
        Action::Restart { dir, node } => {
            rt.block_on(privasip_testnet::restart(dir, node))?;
            println!("{node} is running again");
            Ok(())
        }
    }
}

fn print_clients(net: &Testnet) {
    println!(
        "testnet: {} nodes, scheduler {}, latency {}",
        net.nodes.len(),
        net.scheduler.name(),
        net.latency.name()
    );
    for (name, c) in &net.clients {
        println!(
            "client {name}: SOCKS {} (IsolateSOCKSAuth), control {} (cookie)",
            c.socks, c.control
        );
    }
}
