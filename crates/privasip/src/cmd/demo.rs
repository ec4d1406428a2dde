//! `privasip demo`: a whole PrivaSIP-over-Tor call on a private network.

use std::path::PathBuf;

use anyhow::Result;
use privasip_lab::stage::{AliceHop, CalleeReach};

use super::LatencyArg;

/// Place a PrivaSIP-2 call over Tor from Alice to Bob, on this machine.
///
/// Starts a private Tor network (Debian's tor), Proxy A (Alice's home
/// domain a.example, plain SIP towards Alice on the "LAN"), Proxy B (Bob's
/// domain b.example, reachable only as an onion service), Bob's user agent
/// (behind Tor, with its own onion service) and Alice's; registers both;
/// Alice calls Bob with PrivaSIP-2 (HPKE) on a fresh circuit per call.
/// Then it shows what each vantage point saw and audits it: a tcpdump
/// capture of the LAN hop, both proxies' logs, and what Alice and Bob
/// received, for real IDs, display names, the other parties' addresses
/// (each party has a loopback address of its own: Alice 127.0.0.2, Proxy
/// A 127.0.0.3, Bob 127.0.0.4, Proxy B 127.0.0.5), onion addresses and
/// domains, and for values that repeat from call to call (they link
/// calls); it calls Bob's Contact from the last call from outside that
/// call, which must be refused. Then it cleans everything up. Under
/// PrivaSIP any finding fails the demo; with --mode plain (plain SIP, and
/// proxies that forward every header as RFC 3261 proxies do) they are the
/// point.
///
/// Needs Debian's tor package, and tcpdump (run as root) for the LAN
/// capture: sudo apt-get install -y tor tcpdump
///
/// Examples:
///   privasip demo
///   privasip demo --mode plain           # the same call without PrivaSIP
///   privasip demo --alice-hop tor        # Alice reaches her proxy over Tor too
///   privasip demo --latency live         # every Tor link as slow as on the live network
///   privasip demo --calls 5 --keep --dir /tmp/privasip-demo
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub(crate) struct Args {
    /// How many calls Alice places (two or more let the audit look for
    /// values that link calls).
    #[arg(long, default_value_t = 2)]
    calls: usize,
    /// Where to put everything (default: a new temporary directory).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Leave the network, proxies and Bob running (and the directory) for
    /// inspection; prints how to stop them.
    #[arg(long)]
    keep: bool,
    /// First port of the private network's range (BASE..BASE+100).
    #[arg(long, default_value_t = 18000, value_name = "BASE")]
    base_port: u16,
    /// Identity protection for Alice's calls.
    #[arg(long, default_value = "privasip-2", value_parser = ["plain", "privasip-1", "privasip-2"])]
    mode: String,
    /// How calls reach Bob behind Tor: at his own onion service, or over
    /// the Tor stream he registered on.
    #[arg(long, value_enum, default_value = "onion")]
    callee_reach: CalleeReach,
    /// How Alice reaches her home proxy: plain SIP on the LAN (the
    /// paper's set-up), or through Tor as well.
    #[arg(long, value_enum, default_value = "lan")]
    alice_hop: AliceHop,
    /// The latency the network's links pay: none (loopback's), or live
    /// (the live Tor network's, per link; doc/latency.md).
    #[arg(long, value_enum, default_value_t = LatencyArg::None)]
    latency: LatencyArg,
    /// The seed the links' delays are drawn from (with --latency).
    #[arg(long, default_value_t = 1, value_name = "N")]
    seed: u64,
}

pub(crate) fn run(args: &Args) -> Result<()> {
    privasip_lab::demo::run(&privasip_lab::demo::Demo {
        calls: args.calls,
        dir: args.dir.clone(),
        keep: args.keep,
        base_port: args.base_port,
        mode: args.mode.clone(),
        callee_reach: args.callee_reach,
        alice_hop: args.alice_hop,
        latency: args.latency.into(),
        seed: args.seed,
    })
}
